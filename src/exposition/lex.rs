//! Byte-level scanning shared by the parser and the lazy label iterator: character classes,
//! quoted strings and their escapes, and the number syntax Prometheus's scraper accepts.
//!
//! Everything here works on borrowed bytes and allocates only when an escape has to be decoded.

use std::borrow::Cow;

/// The bit pattern Prometheus stores for every NaN a target exposes ("NormalNaN"), so that a
/// scraped NaN can never be mistaken for the staleness marker.
pub(crate) const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

const METRIC_START: u8 = 1;
const METRIC_CHAR: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CHAR: u8 = 8;

/// Character classes of the legacy name charset, one table lookup per byte.
static CLASS: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut f = 0;
        if c.is_ascii_alphabetic() || c == b'_' {
            f = METRIC_START | METRIC_CHAR | LABEL_START | LABEL_CHAR;
        } else if c.is_ascii_digit() {
            f = METRIC_CHAR | LABEL_CHAR;
        } else if c == b':' {
            f = METRIC_START | METRIC_CHAR;
        }
        t[i] = f;
        i += 1;
    }
    t
}

#[inline]
pub(crate) fn is_metric_start(b: u8) -> bool {
    CLASS[b as usize] & METRIC_START != 0
}

#[inline]
pub(crate) fn is_label_start(b: u8) -> bool {
    CLASS[b as usize] & LABEL_START != 0
}

/// The end of the legacy metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) starting at `start`.
#[inline]
pub(crate) fn metric_name_end(s: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < s.len() && CLASS[s[i] as usize] & METRIC_CHAR != 0 {
        i += 1;
    }
    i
}

/// The end of the legacy label name (`[a-zA-Z_][a-zA-Z0-9_]*`) starting at `start`.
#[inline]
pub(crate) fn label_name_end(s: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < s.len() && CLASS[s[i] as usize] & LABEL_CHAR != 0 {
        i += 1;
    }
    i
}

/// The first index at or after `i` that is not a space or tab.
#[inline]
pub(crate) fn skip_blanks(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
        i += 1;
    }
    i
}

/// The first index at or after `i` that is a space or tab, or `s.len()`.
#[inline]
pub(crate) fn token_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i] != b' ' && s[i] != b'\t' {
        i += 1;
    }
    i
}

/// Which escapes a quoted string may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escapes {
    /// Only `\\`, `\"` and `\n` (the 0.0.4 text format as client libraries write it).
    Strict,
    /// Any backslash pair; unknown ones are kept verbatim (Prometheus's lexers, OpenMetrics).
    Lenient,
}

/// Why a quoted string is malformed; the `usize` is the byte offset of the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuoteError {
    Unterminated(usize),
    BadEscape(usize),
    InvalidUtf8(usize),
}

/// A scanned quoted string: `end` is the index just past the closing quote, `escaped` says
/// whether the contents hold a backslash (and so need [`unescape`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quoted {
    pub(crate) end: usize,
    pub(crate) escaped: bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of the lowest byte of `w` equal to `b` is set (higher bytes may be flagged
/// spuriously, so only the lowest flag is meaningful).
#[inline]
fn bytes_equal(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGH_BITS
}

/// Scans the quoted string whose opening `"` is at `s[start]` and checks that its contents are
/// UTF-8. The caller hands in one line, so a raw newline inside the quotes shows up as an
/// unterminated string. Eight bytes are examined at a time: label values are mostly short, where
/// this beats a `memchr` call, and UTF-8 validation costs nothing for ASCII contents.
#[inline]
pub(crate) fn scan_quoted(s: &[u8], start: usize, escapes: Escapes) -> Result<Quoted, QuoteError> {
    let mut i = start + 1;
    let mut escaped = false;
    // High bits of the bytes looked at (a few past the closing quote may be included, which
    // only costs a needless validation).
    let mut high = 0u64;
    loop {
        let j = loop {
            let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk::<8>) else {
                let tail = s.get(i..).unwrap_or_default();
                high |= tail.iter().fold(0, |h, &b| h | u64::from(b & 0x80));
                match tail.iter().position(|&b| b == b'"' || b == b'\\') {
                    Some(k) => break i + k,
                    None => return Err(QuoteError::Unterminated(s.len())),
                }
            };
            let w = u64::from_le_bytes(*chunk);
            high |= w & HIGH_BITS;
            let hits = bytes_equal(w, b'"') | bytes_equal(w, b'\\');
            if hits != 0 {
                break i + (hits.trailing_zeros() / 8) as usize;
            }
            i += 8;
        };
        if s[j] == b'"' {
            if high != 0
                && let Err(e) = std::str::from_utf8(&s[start + 1..j])
            {
                return Err(QuoteError::InvalidUtf8(start + 1 + e.valid_up_to()));
            }
            return Ok(Quoted { end: j + 1, escaped });
        }
        match s.get(j + 1) {
            None => return Err(QuoteError::Unterminated(s.len())),
            Some(b'\\' | b'"' | b'n') => {}
            // The escaped byte is skipped by the scan below: count its high bit here, or a
            // non-ASCII byte right after a backslash would escape UTF-8 validation.
            Some(&b) if escapes == Escapes::Lenient => high |= u64::from(b & 0x80),
            Some(_) => return Err(QuoteError::BadEscape(j)),
        }
        escaped = true;
        i = j + 2;
    }
}

/// Decodes `\\`, `\n` and (when `quotes`) `\"`; any other backslash pair is kept as written,
/// which is what Prometheus's replacers do. Borrows when there is nothing to decode.
pub(crate) fn unescape(s: &str, quotes: bool) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Powers of ten that are exact in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

/// Parses a sample value the way Prometheus's scraper does: Go's `strconv.ParseFloat` restricted
/// to decimal syntax (no `_`, no hex, binary or octal forms), `NaN` and `Inf`/`Infinity` in any
/// case (a sign only on the infinities). Overflow is an error, as in Go. Every NaN comes back as
/// Prometheus's NormalNaN bit pattern.
pub(crate) fn parse_float(t: &[u8]) -> Option<f64> {
    let (neg, mut i) = match t.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let int_start = i;
    let mut m = Mantissa { value: 0, significant: 0, exact: true };
    let (mut seen, _) = m.take_digits(t, &mut i);
    let mut frac = 0i32;
    if t.get(i) == Some(&b'.') {
        i += 1;
        let (read, folded) = m.take_digits(t, &mut i);
        seen += read;
        // Each fraction digit folded into the mantissa scales it down by ten.
        frac = folded as i32;
    }
    if seen == 0 {
        // Not a number with digits: the only other spellings are NaN and the infinities.
        return parse_special(t, int_start);
    }
    let mut exp = 0i32;
    if let Some(b'e' | b'E') = t.get(i) {
        i += 1;
        let exp_neg = match t.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp_start = i;
        while let Some(&c) = t.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            // Clamp: anything this large is an overflow or an underflow either way.
            exp = (exp * 10 + i32::from(c - b'0')).min(100_000);
            i += 1;
        }
        if i == exp_start {
            return None;
        }
        if exp_neg {
            exp = -exp;
        }
    }
    if i != t.len() {
        return None;
    }
    let e10 = exp - frac;
    let v = if m.exact && m.value <= (1u64 << 53) && (-22..=22).contains(&e10) {
        // Both operands are exact, so one IEEE multiplication or division rounds correctly.
        let m = m.value as f64;
        if e10 >= 0 { m * POW10[e10 as usize] } else { m / POW10[(-e10) as usize] }
    } else {
        // The syntax is validated above and is a subset of what Rust's parser accepts.
        let s = std::str::from_utf8(&t[int_start..]).ok()?;
        let v: f64 = s.parse().ok()?;
        if v.is_infinite() {
            return None;
        }
        v
    };
    Some(if neg { -v } else { v })
}

/// Decimal digits folded into an integer: up to 19 significant ones, so it cannot overflow.
struct Mantissa {
    value: u64,
    significant: usize,
    /// No digit had to be dropped.
    exact: bool,
}

impl Mantissa {
    /// Folds in the digits at `t[*i..]`, advancing `i`; returns how many digits were read and
    /// how many of them were folded in (leading zeros always are).
    #[inline]
    fn take_digits(&mut self, t: &[u8], i: &mut usize) -> (usize, usize) {
        let start = *i;
        let mut folded = 0;
        while let Some(&c) = t.get(*i) {
            if !c.is_ascii_digit() {
                break;
            }
            if self.significant < 19 {
                self.value = self.value * 10 + u64::from(c - b'0');
                folded += 1;
            } else {
                self.exact = false;
            }
            if self.value != 0 {
                self.significant += 1;
            }
            *i += 1;
        }
        (*i - start, folded)
    }
}

/// `NaN`, `Inf`, `Infinity` in any letter case; a sign is allowed on the infinities only
/// (Go's `strconv` rules).
fn parse_special(t: &[u8], sign_len: usize) -> Option<f64> {
    let word = &t[sign_len..];
    if word.eq_ignore_ascii_case(b"inf") || word.eq_ignore_ascii_case(b"infinity") {
        return Some(if t.first() == Some(&b'-') { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if sign_len == 0 && word.eq_ignore_ascii_case(b"nan") {
        return Some(f64::from_bits(NORMAL_NAN_BITS));
    }
    None
}

/// Parses an integer millisecond timestamp: an optional `-` and decimal digits, within i64.
pub(crate) fn parse_timestamp(t: &[u8]) -> Option<i64> {
    let (neg, digits) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, t),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = i64::from(c - b'0');
        v = v.checked_mul(10)?;
        v = if neg { v.checked_sub(d)? } else { v.checked_add(d)? };
    }
    Some(v)
}

/// Parses an OpenMetrics timestamp (float seconds) into milliseconds, truncating like Go's
/// `int64(ts * 1000)`; NaN and the infinities are rejected.
pub(crate) fn parse_seconds_timestamp(t: &[u8]) -> Option<i64> {
    let s = parse_float(t)?;
    if !s.is_finite() {
        return None;
    }
    Some((s * 1000.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_go_parse_float() {
        let ok: &[(&str, f64)] = &[
            ("0", 0.0),
            ("1", 1.0),
            ("-1", -1.0),
            ("+1.5", 1.5),
            ("08", 8.0),
            (".3", 0.3),
            ("1.", 1.0),
            ("1.e2", 100.0),
            ("4.9351e-05", 4.9351e-05),
            ("1.7560473e+06", 1.7560473e+06),
            ("7.424100000000001e-05", 7.424100000000001e-05),
            ("-3e3", -3000.0),
            ("3.14e+42", 3.14e42),
            ("0000000000000000000000000000000000000000001.2e-1", 0.12),
            ("9223372036854775808", 9223372036854775808.0),
            ("12345678901234567890.1234567890", 12345678901234567890.1234567890),
            ("1e-400", 0.0),
            ("4.9e-324", 4.9e-324),
            ("1.7976931348623157e308", f64::MAX),
            ("+Inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("inf", f64::INFINITY),
            ("-infinity", f64::NEG_INFINITY),
            ("+INFINITY", f64::INFINITY),
        ];
        for (s, want) in ok {
            let got = parse_float(s.as_bytes());
            assert_eq!(got.map(f64::to_bits), Some(want.to_bits()), "{s}");
        }
        for s in ["NaN", "nan", "NAN"] {
            assert_eq!(parse_float(s.as_bytes()).map(f64::to_bits), Some(NORMAL_NAN_BITS), "{s}");
        }
        assert_eq!(parse_float(b"-0").map(f64::to_bits), Some((-0.0f64).to_bits()));
        let bad = [
            "",
            "+",
            "-",
            ".",
            "e5",
            "1e",
            "1e+",
            "1_2",
            "0x1p-3",
            "0x1P-3",
            "0x1",
            "0X1",
            "0b1",
            "0B1",
            "0o1",
            "0O1",
            "1e400",
            "-1e400",
            "+NaN",
            "-nan",
            "infin",
            "in",
            "true",
            "1.5.3",
            "1 ",
            " 1",
            "1\r",
            "1,0",
            "--1",
            "+-1",
            "Infinityy",
        ];
        for s in bad {
            assert_eq!(parse_float(s.as_bytes()), None, "{s:?} must be rejected");
        }
    }

    #[test]
    fn fast_path_agrees_with_std_parser() {
        for s in ["0.1", "0.7", "123.456", "1e22", "9007199254740993", "2.2250738585072014e-308", "5e-22"] {
            assert_eq!(parse_float(s.as_bytes()), s.parse::<f64>().ok(), "{s}");
        }
    }

    proptest::proptest! {
        /// Decimal syntax parses to the correctly rounded value (what Go and Rust both give),
        /// on the fast path as on the fallback; overflow is an error.
        #[test]
        fn decimals_round_correctly(int in "[0-9]{0,24}", frac in "[0-9]{0,24}", exp in -340i32..340, neg: bool) {
            let text = format!("{}{int}.{frac}e{exp}", if neg { "-" } else { "" });
            // "." with an exponent has no digits: invalid for both Go and us, "0" for nobody.
            let digits = !(int.is_empty() && frac.is_empty());
            let want = text.parse::<f64>().ok().filter(|v| digits && v.is_finite());
            proptest::prop_assert_eq!(parse_float(text.as_bytes()).map(f64::to_bits), want.map(f64::to_bits), "{}", text);
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp(b"1234567890"), Some(1234567890));
        assert_eq!(parse_timestamp(b"-2"), Some(-2));
        assert_eq!(parse_timestamp(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_timestamp(b"-9223372036854775808"), Some(i64::MIN));
        for bad in ["", "-", "9223372036854775808", "2.72", "1_2", "+1", "1e3", "0x10"] {
            assert_eq!(parse_timestamp(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse_seconds_timestamp(b"1.5e3"), Some(1_500_000));
        assert_eq!(parse_seconds_timestamp(b"1.1"), Some(1100));
        assert_eq!(parse_seconds_timestamp(b"NaN"), None);
        assert_eq!(parse_seconds_timestamp(b"-Inf"), None);
    }

    #[test]
    fn quoted_strings_and_escapes() {
        let s = br#""a\"b\\c\n" rest"#;
        let q = scan_quoted(s, 0, Escapes::Strict).map(|q| (q.end, q.escaped));
        assert_eq!(q, Ok((11, true)));
        assert_eq!(scan_quoted(br#""\t""#, 0, Escapes::Strict).map(|q| q.end), Err(QuoteError::BadEscape(1)));
        assert_eq!(scan_quoted(br#""\t""#, 0, Escapes::Lenient).map(|q| q.end), Ok(4));
        assert_eq!(
            scan_quoted(br#""abc"#, 0, Escapes::Strict).map(|q| q.end),
            Err(QuoteError::Unterminated(4))
        );
        assert_eq!(
            scan_quoted(br#""ab\"#, 0, Escapes::Lenient).map(|q| q.end),
            Err(QuoteError::Unterminated(4))
        );
        assert_eq!(
            scan_quoted(b"\"ab\xffc\"", 0, Escapes::Strict).map(|q| q.end),
            Err(QuoteError::InvalidUtf8(3))
        );
        let long = "\"0123456789abcdéf\\\"0123456789\" x";
        let q = scan_quoted(long.as_bytes(), 0, Escapes::Strict).map(|q| (q.end, q.escaped));
        assert_eq!(q, Ok((long.len() - 2, true)));
        assert_eq!(
            scan_quoted(b"\"0123456789abcdef", 0, Escapes::Strict).map(|q| q.end),
            Err(QuoteError::Unterminated(17))
        );
        assert_eq!(unescape(r#"a\"b\\c\nd\z"#, true), "a\"b\\c\nd\\z");
        assert_eq!(unescape(r#"a\"b\\c\nd"#, false), "a\\\"b\\c\nd");
        assert!(matches!(unescape("plain", true), Cow::Borrowed("plain")));
    }

    #[test]
    fn non_utf8_byte_right_after_a_backslash_is_invalid_utf8() {
        // Found by fuzzing: the escaped byte was skipped by the UTF-8 check, so the parser
        // accepted the line and its name and labels then read as empty.
        assert_eq!(
            scan_quoted(b"\"\\\xff\"", 0, Escapes::Lenient).map(|q| q.end),
            Err(QuoteError::InvalidUtf8(2))
        );
        let line = b"{\"m\\\xff\"} 0\n# EOF\n";
        let mut om =
            crate::exposition::TextParser::with_format(line, crate::exposition::TextFormat::OpenMetrics);
        assert!(matches!(om.next(), Some(Err(_))));
        let mut text = crate::exposition::TextParser::new(b"m{a=\"\\\xff\"} 1\n");
        assert!(matches!(text.next(), Some(Err(_))));
        // A valid multi-byte character after a backslash stays accepted (kept verbatim).
        assert!(scan_quoted("\"\\é\"".as_bytes(), 0, Escapes::Lenient).is_ok());
    }

    #[test]
    fn name_classes() {
        assert_eq!(metric_name_end(b"job:rate5m_x{", 0), 12);
        assert_eq!(label_name_end(b"a_1:b", 0), 3);
        assert!(is_metric_start(b':') && !is_label_start(b':'));
        assert!(!is_metric_start(b'1'));
    }
}
