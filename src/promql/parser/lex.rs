//! The PromQL tokenizer behind our position finder: byte offsets for every token, string
//! literals decoded the way Prometheus (Go) decodes them — to bytes, so that a `\xff` escape that
//! is not valid UTF-8 stays visible — and token descriptions in Prometheus's wording for error
//! messages (`<op:+>`, `identifier "foo"`, `end of input`).

use std::fmt::Write;

/// What a token is. Words (identifiers and keywords alike) stay [`Tok::Ident`]: PromQL keywords
/// are contextual (`by` is a label name inside `{…}`), so the parser decides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident,
    Number,
    Duration,
    /// A quoted string; the decoded bytes.
    Str(Vec<u8>),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    At,
    /// `+ - * / % ^ == != < <= > >= = =~ !~`
    Op(&'static str),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// A lexical error at a byte offset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct LexError {
    pub(crate) pos: usize,
    pub(crate) message: String,
}

pub(crate) const AGGREGATORS: [&str; 14] = [
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Tokenizes the whole input.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, LexError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Brackets hold durations (`[5m:1m]`), which lex like numbers with units.
    while i < b.len() {
        let c = b[i];
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let next = b.get(i + 1).copied();
        let (tok, len) = match c {
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b':' if !next.is_some_and(is_ident_start) => (Tok::Colon, 1),
            b'@' => (Tok::At, 1),
            b'+' => (Tok::Op("+"), 1),
            b'-' => (Tok::Op("-"), 1),
            b'*' => (Tok::Op("*"), 1),
            b'/' => (Tok::Op("/"), 1),
            b'%' => (Tok::Op("%"), 1),
            b'^' => (Tok::Op("^"), 1),
            b'=' if next == Some(b'=') => (Tok::Op("=="), 2),
            b'=' if next == Some(b'~') => (Tok::Op("=~"), 2),
            b'=' => (Tok::Op("="), 1),
            b'!' if next == Some(b'=') => (Tok::Op("!="), 2),
            b'!' if next == Some(b'~') => (Tok::Op("!~"), 2),
            b'!' => {
                let what = next.map(|_| char_at(src, i + 1)).map(go_quote_rune);
                return Err(LexError {
                    pos: i,
                    message: match what {
                        Some(w) => format!("unexpected character after '!': {w}"),
                        None => "unexpected end of input after '!'".to_string(),
                    },
                });
            }
            b'<' if next == Some(b'=') => (Tok::Op("<="), 2),
            b'<' => (Tok::Op("<"), 1),
            b'>' if next == Some(b'=') => (Tok::Op(">="), 2),
            b'>' => (Tok::Op(">"), 1),
            b'"' | b'\'' | b'`' => {
                let (value, end) = lex_string(src, i)?;
                out.push(Token { tok: Tok::Str(value), start, end });
                i = end;
                continue;
            }
            c if c.is_ascii_digit() || (c == b'.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let (tok, end) = lex_number(src, i)?;
                out.push(Token { tok, start, end });
                i = end;
                continue;
            }
            c if is_ident_start(c) => {
                let mut end = i + 1;
                while end < b.len() && is_ident_char(b[end]) {
                    end += 1;
                }
                (Tok::Ident, end - i)
            }
            _ => {
                return Err(LexError {
                    pos: i,
                    message: format!("unexpected character: {}", go_quote_rune(char_at(src, i))),
                });
            }
        };
        out.push(Token { tok, start, end: start + len });
        i = start + len;
    }
    out.push(Token { tok: Tok::Eof, start: b.len(), end: b.len() });
    Ok(out)
}

fn char_at(src: &str, i: usize) -> char {
    src.get(i..).and_then(|s| s.chars().next()).unwrap_or('\u{fffd}')
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

const DURATION_UNITS: [&str; 7] = ["ms", "s", "m", "h", "d", "w", "y"];

/// Lexes a number (`1`, `1.5e3`, `0x1f`, `.5`) or a duration (`5m`, `1h30m`, `100ms`).
fn lex_number(src: &str, start: usize) -> Result<(Tok, usize), LexError> {
    let b = src.as_bytes();
    let mut i = start;
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
        i += 2;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        return finish_number(src, start, i);
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    // A duration: digits followed by a unit, possibly repeated.
    if i < b.len() && DURATION_UNITS.iter().any(|u| src[i..].starts_with(u)) {
        let mut j = start;
        loop {
            let d0 = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j == d0 {
                break;
            }
            let Some(u) = ["ms", "s", "m", "h", "d", "w", "y"].iter().find(|u| src[j..].starts_with(**u))
            else {
                return Err(LexError {
                    pos: start,
                    message: format!("bad duration syntax: {:?}", &src[start..j]),
                });
            };
            j += u.len();
        }
        // A colon may follow (`[5m:1m]`), a letter or digit may not.
        if j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            let mut e = j;
            while e < b.len() && is_ident_char(b[e]) {
                e += 1;
            }
            return Err(LexError {
                pos: start,
                message: format!("bad number or duration syntax: {:?}", &src[start..e]),
            });
        }
        return Ok((Tok::Duration, j));
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    finish_number(src, start, i)
}

fn finish_number(src: &str, start: usize, end: usize) -> Result<(Tok, usize), LexError> {
    let b = src.as_bytes();
    if end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] == b'.') {
        let mut e = end;
        while e < b.len() && (is_ident_char(b[e]) || b[e] == b'.') {
            e += 1;
        }
        return Err(LexError {
            pos: start,
            message: format!("bad number or duration syntax: {:?}", &src[start..e]),
        });
    }
    Ok((Tok::Number, end))
}

/// Lexes a quoted string starting at `start`: its decoded bytes and the end offset.
fn lex_string(src: &str, start: usize) -> Result<(Vec<u8>, usize), LexError> {
    let b = src.as_bytes();
    let quote = b[start];
    let mut i = start + 1;
    if quote == b'`' {
        return match src[i..].find('`') {
            Some(n) => Ok((src.as_bytes()[i..i + n].to_vec(), i + n + 1)),
            None => Err(LexError { pos: start, message: "unterminated raw string".to_string() }),
        };
    }
    let mut out = Vec::new();
    loop {
        let Some(&c) = b.get(i) else {
            return Err(LexError { pos: start, message: "unterminated quoted string".to_string() });
        };
        match c {
            c if c == quote => return Ok((out, i + 1)),
            b'\n' => return Err(LexError { pos: start, message: "unterminated quoted string".to_string() }),
            b'\\' => i = unescape(src, i, quote, &mut out)?,
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// Decodes the Go escape at the backslash at `i` into `out`; returns the offset after it.
fn unescape(src: &str, i: usize, quote: u8, out: &mut Vec<u8>) -> Result<usize, LexError> {
    let b = src.as_bytes();
    let err = |m: &str| LexError { pos: i, message: m.to_string() };
    let Some(&e) = b.get(i + 1) else {
        return Err(err("escape sequence not terminated"));
    };
    let simple = |byte: u8, out: &mut Vec<u8>| {
        out.push(byte);
        Ok(i + 2)
    };
    match e {
        b'a' => simple(7, out),
        b'b' => simple(8, out),
        b'f' => simple(12, out),
        b'n' => simple(b'\n', out),
        b'r' => simple(b'\r', out),
        b't' => simple(b'\t', out),
        b'v' => simple(11, out),
        b'\\' => simple(b'\\', out),
        c if c == quote => simple(c, out),
        b'x' => {
            let hex = src.get(i + 2..i + 4).ok_or_else(|| err("escape sequence not terminated"))?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| err("illegal character in escape sequence"))?;
            out.push(v);
            Ok(i + 4)
        }
        b'u' | b'U' => {
            let n = if e == b'u' { 4 } else { 8 };
            let hex = src.get(i + 2..i + 2 + n).ok_or_else(|| err("escape sequence not terminated"))?;
            let code =
                u32::from_str_radix(hex, 16).map_err(|_| err("illegal character in escape sequence"))?;
            let ch = char::from_u32(code)
                .ok_or_else(|| err("escape sequence is an invalid Unicode code point"))?;
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            Ok(i + 2 + n)
        }
        b'0'..=b'7' => {
            let oct = src.get(i + 1..i + 4).ok_or_else(|| err("escape sequence not terminated"))?;
            let v = u32::from_str_radix(oct, 8).map_err(|_| err("illegal character in escape sequence"))?;
            let v = u8::try_from(v).map_err(|_| err("octal escape value > 255"))?;
            out.push(v);
            Ok(i + 4)
        }
        _ => Err(err("unknown escape sequence")),
    }
}

/// Go's `%q` of a rune, as Prometheus's lexer errors show it.
pub(crate) fn go_quote_rune(c: char) -> String {
    match c {
        '\'' => "'\\''".to_string(),
        c => format!("'{}'", c.escape_debug()),
    }
}

/// Go's `strconv.Quote` of raw bytes: invalid UTF-8 shows as `\xNN`.
pub(crate) fn go_quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    out
}

/// Go's `%.10q...` shortening used in token descriptions.
fn go_quote_short(s: &str) -> String {
    if s.chars().count() > 10 {
        let head: String = s.chars().take(10).collect();
        format!("{head:?}...")
    } else {
        format!("{s:?}")
    }
}

/// Describes a token as Prometheus's parser errors do.
pub(crate) fn describe(src: &str, t: &Token) -> String {
    let text = &src[t.start..t.end];
    match &t.tok {
        Tok::Eof => "end of input".to_string(),
        Tok::Ident => {
            let lower = text.to_ascii_lowercase();
            if matches!(lower.as_str(), "and" | "or" | "unless" | "atan2") {
                format!("<op:{text}>")
            } else if AGGREGATORS.contains(&lower.as_str()) {
                format!("<aggr:{text}>")
            } else if matches!(
                lower.as_str(),
                "offset" | "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" | "bool"
            ) {
                format!("<{text}>")
            } else {
                format!("identifier {}", go_quote_short(text))
            }
        }
        Tok::Number => format!("number {}", go_quote_short(text)),
        Tok::Duration => format!("duration {}", go_quote_short(text)),
        Tok::Str(_) => format!("string {}", go_quote_short(text)),
        Tok::Op(op) => format!("<op:{op}>"),
        _ => format!("{text:?}"),
    }
}

/// 1-based line and column of byte offset `pos`; columns count bytes, as Prometheus's do.
pub(crate) fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(src.len());
    let before = &src.as_bytes()[..pos];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&c| c == b'\n').map(|i| i + 1).unwrap_or(0);
    (line, pos - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tok> {
        match tokenize(s) {
            Ok(t) => t.into_iter().map(|t| t.tok).collect(),
            Err(e) => panic!("{s}: {e:?}"),
        }
    }

    #[test]
    fn tokenizes_promql() {
        assert_eq!(
            kinds("rate(x[5m:1m]) > bool 0x1f"),
            [
                Tok::Ident,
                Tok::LParen,
                Tok::Ident,
                Tok::LBracket,
                Tok::Duration,
                Tok::Colon,
                Tok::Duration,
                Tok::RBracket,
                Tok::RParen,
                Tok::Op(">"),
                Tok::Ident,
                Tok::Number,
                Tok::Eof
            ]
        );
        assert_eq!(kinds("a:b:c"), [Tok::Ident, Tok::Eof]);
        assert_eq!(kinds("'\\xff'"), [Tok::Str(vec![0xff]), Tok::Eof]);
        assert_eq!(go_quote_bytes(b"a\xc5z"), "\"a\\xc5z\"");
        assert!(tokenize("1 $").is_err());
    }
}
