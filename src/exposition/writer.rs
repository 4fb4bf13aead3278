//! Writing the Prometheus text format (0.0.4) byte for byte as Prometheus's own encoder
//! (`expfmt`, used by `/federate` and `/metrics`) does: Go's float spelling, the same escaping,
//! and Prometheus 3's quoted names for anything outside the legacy charset.
//!
//! Every function appends to a caller-owned `Vec<u8>`, so a handler can reuse one buffer for a
//! whole response; nothing here allocates beyond growing that buffer.

use memchr::{memchr2, memchr3};

use crate::model::{MetricType, is_valid_metric_name};

/// Appends `v` as Prometheus writes sample values: Go's `strconv.FormatFloat(v, 'g', -1, 64)`
/// (shortest round-trip digits; exponent form below 1e-4 and from 1e+06 on, with at least two
/// exponent digits) spelled `NaN`, `+Inf` and `-Inf` for the special values. Like `expfmt`, both
/// zeros are written `0` (`FormatFloat` alone would give `-0`).
///
/// The staleness marker is a NaN and comes out as `NaN`: the text format cannot carry it.
pub fn write_float(out: &mut Vec<u8>, v: f64) {
    if v == 0.0 {
        out.push(b'0');
    } else if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        // Integers below 2^53 are exact, so their shortest digits are their decimal digits.
        let n = v as i64;
        if n.unsigned_abs() < 1_000_000 {
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        } else {
            let mut buf = itoa::Buffer::new();
            let digits = buf.format(n.unsigned_abs()).as_bytes();
            let dp = digits.len() as i32;
            layout(out, n < 0, trim_zeros(digits), dp);
        }
    } else {
        let mut buf = ryu::Buffer::new();
        let (digits, len, dp) = shortest_digits(buf.format_finite(v.abs()).as_bytes());
        layout(out, v < 0.0, &digits[..len], dp);
    }
}

/// Appends `v` the way Prometheus spells `le` and `quantile` values (`FormatOpenMetricsFloat`):
/// like [`write_float`], with `.0` added when the result has neither `.` nor an exponent.
pub(crate) fn write_openmetrics_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() || v.is_infinite() {
        return write_float(out, v);
    }
    let start = out.len();
    write_float(out, v);
    if !out[start..].iter().any(|&b| b == b'.' || b == b'e') {
        out.extend_from_slice(b".0");
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let end = digits.iter().rposition(|&b| b != b'0').map_or(1, |k| k + 1);
    &digits[..end]
}

/// Splits ryu's output for a positive finite number (`123.45`, `0.0001`, `1.5e-5`, `1e16`) into
/// significant digits and Go's decimal-point position (value = 0.DIGITS × 10^dp).
fn shortest_digits(s: &[u8]) -> ([u8; 24], usize, i32) {
    let (mantissa, exp) = match s.iter().position(|&b| b == b'e') {
        Some(k) => (&s[..k], parse_exponent(&s[k + 1..])),
        None => (s, 0),
    };
    let mut digits = [0u8; 24];
    let mut len = 0;
    let mut int_digits = 0i32;
    let mut seen_point = false;
    let mut leading = true;
    for &b in mantissa {
        if b == b'.' {
            seen_point = true;
            continue;
        }
        if !seen_point {
            int_digits += 1;
        }
        if leading && b == b'0' {
            // A leading zero shifts the decimal point instead of being a digit.
            int_digits -= 1;
            continue;
        }
        leading = false;
        if len < digits.len() {
            digits[len] = b;
            len += 1;
        }
    }
    let trimmed = trim_zeros(&digits[..len.max(1)]).len();
    (digits, trimmed, int_digits + exp)
}

fn parse_exponent(s: &[u8]) -> i32 {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let e = digits.iter().fold(0i32, |e, &b| e * 10 + i32::from(b.wrapping_sub(b'0')));
    if neg { -e } else { e }
}

/// Lays out digits with decimal-point position `dp` as Go's `%g` with shortest precision does.
fn layout(out: &mut Vec<u8>, neg: bool, digits: &[u8], dp: i32) {
    if neg {
        out.push(b'-');
    }
    let exp = dp - 1;
    if !(-4..6).contains(&exp) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(itoa::Buffer::new().format(e).as_bytes());
    } else if dp <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', dp.unsigned_abs() as usize));
        out.extend_from_slice(digits);
    } else {
        let dp = dp as usize;
        if digits.len() <= dp {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', dp - digits.len()));
        } else {
            out.extend_from_slice(&digits[..dp]);
            out.push(b'.');
            out.extend_from_slice(&digits[dp..]);
        }
    }
}

/// Appends `s` with `\` and newline escaped, and `"` too when `quotes`.
fn write_escaped(out: &mut Vec<u8>, s: &str, quotes: bool) {
    let mut rest = s.as_bytes();
    loop {
        let hit = if quotes { memchr3(b'\\', b'\n', b'"', rest) } else { memchr2(b'\\', b'\n', rest) };
        let Some(k) = hit else {
            out.extend_from_slice(rest);
            return;
        };
        out.extend_from_slice(&rest[..k]);
        out.extend_from_slice(match rest[k] {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            _ => b"\\\"",
        });
        rest = &rest[k + 1..];
    }
}

/// Appends a metric or label name: as is when it fits the legacy metric-name charset
/// (`[a-zA-Z_:][a-zA-Z0-9_:]*`), otherwise double-quoted and escaped. `expfmt` applies the
/// metric-name rule to label names too, so a label name with `:` is written unquoted; that is
/// kept for byte-identical output.
pub fn write_name(out: &mut Vec<u8>, name: &str) {
    if is_valid_metric_name(name) {
        out.extend_from_slice(name.as_bytes());
    } else {
        out.push(b'"');
        write_escaped(out, name, true);
        out.push(b'"');
    }
}

/// Appends a label value in double quotes with `\`, `"` and newline escaped.
pub fn write_label_value(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    write_escaped(out, value, true);
    out.push(b'"');
}

/// Appends one sample line: `name{a="x",b="y"} value [timestamp]\n`. `labels` must not include
/// `__name__`; they are written in the order given. A name outside the legacy charset goes
/// first inside the braces (`{"my.metric",a="x"} 1`), as Prometheus 3 writes it.
pub fn write_series_line<'l>(
    out: &mut Vec<u8>,
    name: &str,
    labels: impl IntoIterator<Item = (&'l str, &'l str)>,
    value: f64,
    timestamp: Option<i64>,
) {
    let mut separator = b'{';
    let quoted = !is_valid_metric_name(name);
    if quoted {
        out.push(b'{');
        separator = b',';
    }
    write_name(out, name);
    let mut braces = quoted;
    for (n, v) in labels {
        out.push(separator);
        separator = b',';
        write_name(out, n);
        out.push(b'=');
        write_label_value(out, v);
        braces = true;
    }
    if braces {
        out.push(b'}');
    }
    out.push(b' ');
    write_float(out, value);
    if let Some(t) = timestamp {
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(t).as_bytes());
    }
    out.push(b'\n');
}

/// Appends `# TYPE name kind\n`. The 0.0.4 format knows only counter, gauge, histogram, summary
/// and untyped; every other type is written as `untyped`, which any scraper accepts.
pub fn write_type_line(out: &mut Vec<u8>, name: &str, kind: MetricType) {
    out.extend_from_slice(b"# TYPE ");
    write_name(out, name);
    out.extend_from_slice(match kind {
        MetricType::Counter => b" counter\n",
        MetricType::Gauge => b" gauge\n",
        MetricType::Histogram => b" histogram\n",
        MetricType::Summary => b" summary\n",
        _ => b" untyped\n",
    });
}

/// Appends `# HELP name text\n` with `\` and newline escaped in the text.
pub fn write_help_line(out: &mut Vec<u8>, name: &str, help: &str) {
    out.extend_from_slice(b"# HELP ");
    write_name(out, name);
    out.push(b' ');
    write_escaped(out, help, false);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::exposition::lex::parse_float;
    use crate::exposition::{Entry, TextParser};
    use crate::model::{STALE_NAN, is_valid_label_name};

    fn float(v: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, v);
        String::from_utf8(out).unwrap_or_default()
    }

    /// An independent, slow rendition of Go's `%g` with shortest precision: the shortest digit
    /// count that round-trips (from std's `{:e}`), the digits correctly rounded to that count
    /// with ties to even (Go's `ryuFtoaShortest` rule; std's shortest mode rounds ties up),
    /// computed from the exact decimal expansion, then Go's layout by plain string handling.
    fn reference(v: f64) -> String {
        if v == 0.0 {
            return "0".into();
        }
        if v.is_nan() {
            return "NaN".into();
        }
        if v.is_infinite() {
            return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
        }
        let (digits, exp) = reference_digits(v.abs());
        let sign = if v < 0.0 { "-" } else { "" };
        if !(-4..6).contains(&exp) {
            let (first, rest) = digits.split_at(1);
            let point = if rest.is_empty() { String::new() } else { format!(".{rest}") };
            let esign = if exp < 0 { '-' } else { '+' };
            return format!("{sign}{first}{point}e{esign}{:02}", exp.abs());
        }
        let dp = exp + 1;
        if dp <= 0 {
            return format!("{sign}0.{}{digits}", "0".repeat((-dp) as usize));
        }
        let dp = dp as usize;
        if digits.len() <= dp {
            format!("{sign}{digits}{}", "0".repeat(dp - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..dp], &digits[dp..])
        }
    }

    /// Significant digits (no trailing zeros) and scientific exponent of positive finite `v`.
    fn reference_digits(v: f64) -> (String, i32) {
        let split = |s: String| -> (String, i32) {
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            (m.chars().filter(char::is_ascii_digit).collect(), e.parse().unwrap_or(0))
        };
        let (short, short_exp) = split(format!("{v:e}"));
        let (exact, mut exp) = split(format!("{v:.800e}"));
        let (head, tail) = exact.split_at(short.len());
        let half = tail.as_bytes().first().copied().unwrap_or(b'0');
        let rest_zero = tail.bytes().skip(1).all(|b| b == b'0');
        let last_odd = head.as_bytes().last().is_some_and(|d| (d - b'0') % 2 == 1);
        let up = half > b'5' || (half == b'5' && (!rest_zero || last_odd));
        let mut digits: Vec<u8> = head.bytes().collect();
        if up {
            let mut k = digits.len();
            loop {
                if k == 0 {
                    digits.insert(0, b'1');
                    digits.pop();
                    exp += 1;
                    break;
                }
                k -= 1;
                if digits[k] == b'9' {
                    digits[k] = b'0';
                } else {
                    digits[k] += 1;
                    break;
                }
            }
        }
        let rounded = String::from_utf8(digits).unwrap_or_default();
        let candidate = format!("{}.{}e{exp}", &rounded[..1], &rounded[1..]);
        let (digits, exp) =
            if candidate.parse::<f64>().ok() == Some(v) { (rounded, exp) } else { (short, short_exp) };
        let trimmed = digits.trim_end_matches('0');
        (if trimmed.is_empty() { "0".to_string() } else { trimmed.to_string() }, exp)
    }

    #[test]
    fn floats_like_go() {
        let cases: &[(f64, &str)] = &[
            (1e6, "1e+06"),
            (1.5e-5, "1.5e-05"),
            (123456.7, "123456.7"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (-0.0, "0"),
            (0.0, "0"),
            (1.7e9, "1.7e+09"),
            (9.007199254740992e15, "9.007199254740992e+15"),
            (9007199254740991.0, "9.007199254740991e+15"),
            (100000.0, "100000"),
            (999999.0, "999999"),
            (-999999.0, "-999999"),
            (1234567.0, "1.234567e+06"),
            (123456789.0, "1.23456789e+08"),
            (-1.0, "-1"),
            (1.0, "1"),
            (0.1, "0.1"),
            (2.5, "2.5"),
            (-1234.5, "-1234.5"),
            (0.000123, "0.000123"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (1.7560473e6, "1.7560473e+06"),
            (7.424100000000001e-05, "7.424100000000001e-05"),
            (5e-324, "5e-324"),
            // Exactly 935644999533737.25: a tie between two shortest candidates, Go rounds to even.
            (935_644_999_533_737.3, "9.356449995337372e+14"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (STALE_NAN, "NaN"),
        ];
        for &(v, want) in cases {
            assert_eq!(float(v), want, "{v:?}");
            assert_eq!(reference(v), want, "reference for {v:?}");
        }
    }

    #[test]
    fn openmetrics_float_spelling() {
        let om = |v: f64| {
            let mut out = Vec::new();
            write_openmetrics_float(&mut out, v);
            String::from_utf8(out).unwrap_or_default()
        };
        assert_eq!(om(1.0), "1.0");
        assert_eq!(om(-0.0), "0.0");
        assert_eq!(om(1000.0), "1000.0");
        assert_eq!(om(1e6), "1e+06");
        assert_eq!(om(0.25), "0.25");
        assert_eq!(om(f64::INFINITY), "+Inf");
        assert_eq!(om(f64::NAN), "NaN");
    }

    #[test]
    fn lines_like_expfmt() {
        let mut out = Vec::new();
        write_help_line(&mut out, "up", "a \\ b\nc \"q\"");
        write_type_line(&mut out, "up", MetricType::Unknown);
        write_series_line(&mut out, "up", [("job", "a\"b\\c\nd"), ("instance", "")], 1.0, Some(-5));
        write_series_line(&mut out, "up", [], 0.5, None);
        write_type_line(&mut out, "my.metric", MetricType::GaugeHistogram);
        write_series_line(&mut out, "my.metric", [("a.b", "x"), ("c:d", "y")], 2.0, None);
        write_series_line(&mut out, "my.metric", [], 3.0, Some(7));
        let want = "# HELP up a \\\\ b\\nc \"q\"\n# TYPE up untyped\n\
                    up{job=\"a\\\"b\\\\c\\nd\",instance=\"\"} 1 -5\nup 0.5\n\
                    # TYPE \"my.metric\" untyped\n{\"my.metric\",\"a.b\"=\"x\",c:d=\"y\"} 2\n{\"my.metric\"} 3 7\n";
        assert_eq!(String::from_utf8_lossy(&out), want);
    }

    fn legacy_metric_name() -> impl Strategy<Value = String> {
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}"
    }

    /// Names the parser can read back: legacy names, or anything that the writer quotes.
    /// (`expfmt` leaves `a:b` unquoted as a label name, which no parser accepts.)
    fn label_name() -> impl Strategy<Value = String> {
        prop_oneof!["[a-zA-Z_][a-zA-Z0-9_]{0,12}", any::<String>()].prop_filter("readable label name", |n| {
            !n.is_empty() && n != "__name__" && (is_valid_label_name(n) || !is_valid_metric_name(n))
        })
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            any::<i32>().prop_map(f64::from),
            (any::<i64>(), 0u32..12).prop_map(|(m, k)| m as f64 / 10f64.powi(k as i32)),
            Just(STALE_NAN),
            Just(-0.0),
        ]
    }

    proptest! {
        #[test]
        fn float_matches_reference_and_parses_back(v in value()) {
            let s = float(v);
            prop_assert_eq!(&s, &reference(v));
            let back = parse_float(s.as_bytes());
            prop_assert!(back.is_some(), "{} does not parse", s);
            let back = back.unwrap_or_default();
            if v.is_nan() {
                prop_assert!(back.is_nan());
            } else if v == 0.0 {
                prop_assert_eq!(back.to_bits(), 0);
            } else {
                prop_assert_eq!(back.to_bits(), v.to_bits());
            }
        }

        /// Write, then parse: same name, labels, value and timestamp. Value bits survive except
        /// that every NaN (the staleness marker included: the text format cannot tell them
        /// apart) comes back as NormalNaN and -0 comes back as 0.
        #[test]
        fn series_lines_round_trip(
            name in prop_oneof![legacy_metric_name(), any::<String>().prop_filter("non-empty", |s| !s.is_empty())],
            names in proptest::collection::btree_set(label_name(), 0..6),
            values in proptest::collection::vec(any::<String>(), 6),
            v in value(),
            ts in proptest::option::of(any::<i64>()),
            help in any::<String>(),
        ) {
            let labels: Vec<(String, String)> = names.into_iter().zip(values).collect();
            let mut body = Vec::new();
            write_help_line(&mut body, &name, &help);
            write_type_line(&mut body, &name, MetricType::Gauge);
            write_series_line(&mut body, &name, labels.iter().map(|(n, v)| (n.as_str(), v.as_str())), v, ts);
            let entries: Result<Vec<_>, _> = TextParser::new(&body).collect();
            prop_assert!(entries.is_ok(), "{:?}: {:?}", String::from_utf8_lossy(&body), entries.err());
            let entries = entries.unwrap_or_default();
            prop_assert_eq!(entries.len(), 3);
            prop_assert_eq!(&entries[0], &Entry::Help { name: name.as_str().into(), text: help.as_str().into() });
            prop_assert_eq!(&entries[1], &Entry::Type { name: name.as_str().into(), kind: MetricType::Gauge });
            let Entry::Series(s) = &entries[2] else {
                return Err(TestCaseError::fail("third entry is not a series"));
            };
            prop_assert_eq!(s.name(), name.as_str());
            let got: Vec<(String, String)> = s.labels().map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
            prop_assert_eq!(&got, &labels);
            prop_assert_eq!(s.timestamp(), ts);
            if v.is_nan() {
                prop_assert!(s.value().is_nan());
            } else {
                prop_assert_eq!(s.value().to_bits(), (v + 0.0).to_bits());
            }
            let distinct: BTreeSet<_> = got.iter().map(|(n, _)| n).collect();
            prop_assert_eq!(distinct.len(), got.len());
        }
    }
}
