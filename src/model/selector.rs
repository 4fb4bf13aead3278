//! The series-selector syntax (`name{label="v", other=~"re"}`) used by `match[]` parameters and
//! test-data series descriptors, with Prometheus's error positions and wording
//! (`1:4: parse error: unexpected <op:->`).
//!
//! Full PromQL expressions are the query engine's business; this is only the selector production
//! that Prometheus's `ParseMetricSelector` accepts.

use super::{METRIC_NAME, MatchOp, Matcher};

/// A selector that failed to parse, with the 1-based line and column of the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: parse error: {message}")]
pub struct SelectorError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses a series selector into matchers. A metric name becomes an `__name__="…"` matcher first.
pub fn parse_selector(input: &str) -> Result<Vec<Matcher>, SelectorError> {
    let mut lx = Lexer { src: input, pos: 0 };
    let mut matchers = Vec::new();
    let first = lx.next_token().map_err(|e| lx.error_at(e.0, e.1))?;
    let mut tok = first;
    match tok.kind {
        Kind::Ident => {
            matchers.push(Matcher::equal(METRIC_NAME, tok.text(input)));
            tok = lx.next_token().map_err(|e| lx.error_at(e.0, e.1))?;
            if tok.kind == Kind::LBrace {
                parse_braces(&mut lx, &mut matchers)?;
                tok = lx.next_token().map_err(|e| lx.error_at(e.0, e.1))?;
            }
        }
        Kind::LBrace => {
            parse_braces(&mut lx, &mut matchers)?;
            tok = lx.next_token().map_err(|e| lx.error_at(e.0, e.1))?;
        }
        _ => return Err(lx.unexpected(&tok, "")),
    }
    if tok.kind != Kind::Eof {
        return Err(lx.unexpected(&tok, ""));
    }
    Ok(matchers)
}

fn parse_braces(lx: &mut Lexer<'_>, out: &mut Vec<Matcher>) -> Result<(), SelectorError> {
    const CTX: &str = " in label matching";
    loop {
        let tok = lx.next_token().map_err(|e| lx.error_at(e.0, e.1))?;
        let name = match tok.kind {
            Kind::RBrace => return Ok(()),
            Kind::Ident => tok.text(lx.src).to_string(),
            Kind::Str(ref s) => s.clone(),
            _ => return Err(lx.unexpected(&tok, &format!("{CTX}, expected identifier or \"}}\""))),
        };
        let op_tok = lx.next_token().map_err(|e| lx.error_at(e.0, e.1))?;
        let op = match op_tok.kind {
            Kind::Op(op) => op,
            // A lone quoted string is a UTF-8 metric name: {"my.metric", a="b"}.
            Kind::Comma | Kind::RBrace if matches!(tok.kind, Kind::Str(_)) => {
                out.insert(0, Matcher::equal(METRIC_NAME, name));
                if op_tok.kind == Kind::RBrace {
                    return Ok(());
                }
                continue;
            }
            _ => return Err(lx.unexpected(&op_tok, &format!("{CTX}, expected label matching operator"))),
        };
        let val_tok = lx.next_token().map_err(|e| lx.error_at(e.0, e.1))?;
        let Kind::Str(value) = val_tok.kind else {
            return Err(lx.unexpected(&val_tok, &format!("{CTX}, expected string")));
        };
        let m = Matcher::new(op, name, value).map_err(|e| lx.error_at(val_tok.start, e.to_string()))?;
        out.push(m);
        let sep = lx.next_token().map_err(|e| lx.error_at(e.0, e.1))?;
        match sep.kind {
            Kind::Comma => {}
            Kind::RBrace => return Ok(()),
            _ => return Err(lx.unexpected(&sep, &format!("{CTX}, expected \",\" or \"}}\""))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident,
    Str(String),
    LBrace,
    RBrace,
    Comma,
    Op(MatchOp),
    /// Any other PromQL token, already rendered the way Prometheus describes it.
    Other(String),
    Eof,
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

impl Token {
    fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.start..self.end]
    }
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn error_at(&self, offset: usize, message: String) -> SelectorError {
        let before = &self.src[..offset.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        SelectorError { line, column: offset - line_start + 1, message }
    }

    fn unexpected(&self, tok: &Token, context: &str) -> SelectorError {
        let desc = match &tok.kind {
            Kind::Eof => "end of input".to_string(),
            Kind::Ident => format!("identifier {}", go_quote_short(tok.text(self.src))),
            Kind::Str(_) => format!("string {}", go_quote_short(tok.text(self.src))),
            Kind::LBrace => "\"{\"".to_string(),
            Kind::RBrace => "\"}\"".to_string(),
            Kind::Comma => "\",\"".to_string(),
            Kind::Op(op) => format!("<op:{}>", op.as_str()),
            Kind::Other(d) => d.clone(),
        };
        self.error_at(tok.start, format!("unexpected {desc}{context}"))
    }

    /// The next token, or `(offset, message)` for a lexical error.
    fn next_token(&mut self) -> Result<Token, (usize, String)> {
        let b = self.src.as_bytes();
        while self.pos < b.len() && matches!(b[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(&c) = b.get(start) else {
            return Ok(Token { kind: Kind::Eof, start, end: start });
        };
        let simple = |kind: Kind, len: usize, lx: &mut Lexer<'_>| {
            lx.pos = start + len;
            Ok(Token { kind, start, end: start + len })
        };
        let next = b.get(start + 1).copied();
        match c {
            b'{' => simple(Kind::LBrace, 1, self),
            b'}' => simple(Kind::RBrace, 1, self),
            b',' => simple(Kind::Comma, 1, self),
            b'=' if next == Some(b'~') => simple(Kind::Op(MatchOp::Regex), 2, self),
            b'=' if next == Some(b'=') => simple(Kind::Other("<op:==>".into()), 2, self),
            b'=' => simple(Kind::Op(MatchOp::Equal), 1, self),
            b'!' if next == Some(b'=') => simple(Kind::Op(MatchOp::NotEqual), 2, self),
            b'!' if next == Some(b'~') => simple(Kind::Op(MatchOp::NotRegex), 2, self),
            b'"' | b'\'' | b'`' => {
                let (value, end) = lex_string(self.src, start)?;
                self.pos = end;
                Ok(Token { kind: Kind::Str(value), start, end })
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let mut end = start + 1;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] == b':') {
                    end += 1;
                }
                simple(Kind::Ident, end - start, self)
            }
            c if c.is_ascii_digit() || c == b'.' => {
                let mut end = start + 1;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'.') {
                    end += 1;
                }
                let text = &self.src[start..end];
                simple(Kind::Other(format!("number {}", go_quote_short(text))), end - start, self)
            }
            b'<' | b'>' if next == Some(b'=') => {
                let op = &self.src[start..start + 2];
                simple(Kind::Other(format!("<op:{op}>")), 2, self)
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' => {
                let op = &self.src[start..start + 1];
                simple(Kind::Other(format!("<op:{op}>")), 1, self)
            }
            b'(' | b')' | b'[' | b']' => {
                let p = &self.src[start..start + 1];
                simple(Kind::Other(format!("\"{p}\"")), 1, self)
            }
            _ => {
                let ch = self.src[start..].chars().next().unwrap_or('\u{fffd}');
                Err((start, format!("unexpected character: {}", go_quote_rune(ch))))
            }
        }
    }
}

/// Lexes a quoted string starting at `start`; returns its unescaped value and the end offset.
fn lex_string(src: &str, start: usize) -> Result<(String, usize), (usize, String)> {
    let b = src.as_bytes();
    let quote = b[start];
    let mut i = start + 1;
    if quote == b'`' {
        return match src[i..].find('`') {
            Some(n) => Ok((src[i..i + n].to_string(), i + n + 1)),
            None => Err((start, "unterminated raw string".to_string())),
        };
    }
    let mut out = String::new();
    loop {
        let Some(&c) = b.get(i) else {
            return Err((start, "unterminated quoted string".to_string()));
        };
        match c {
            c if c == quote => return Ok((out, i + 1)),
            b'\n' => return Err((start, "unterminated quoted string".to_string())),
            b'\\' => {
                let (ch, next) = unescape(src, i).map_err(|m| (i, m))?;
                out.push(ch);
                i = next;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
}

/// Decodes the Go-style escape starting at the backslash at `i`.
fn unescape(src: &str, i: usize) -> Result<(char, usize), String> {
    let b = src.as_bytes();
    let Some(&e) = b.get(i + 1) else {
        return Err("escape sequence not terminated".to_string());
    };
    let simple = |c: char| Ok((c, i + 2));
    match e {
        b'a' => simple('\u{7}'),
        b'b' => simple('\u{8}'),
        b'f' => simple('\u{c}'),
        b'n' => simple('\n'),
        b'r' => simple('\r'),
        b't' => simple('\t'),
        b'v' => simple('\u{b}'),
        b'\\' => simple('\\'),
        b'"' => simple('"'),
        b'\'' => simple('\''),
        b'x' | b'u' | b'U' => {
            let n = match e {
                b'x' => 2,
                b'u' => 4,
                _ => 8,
            };
            let hex = src.get(i + 2..i + 2 + n).ok_or("escape sequence not terminated")?;
            let code = u32::from_str_radix(hex, 16)
                .map_err(|_| format!("invalid escape sequence \\{}", e as char))?;
            let ch = char::from_u32(code).ok_or("escape sequence is an invalid Unicode code point")?;
            Ok((ch, i + 2 + n))
        }
        b'0'..=b'7' => {
            let oct = src.get(i + 1..i + 4).ok_or("escape sequence not terminated")?;
            let code = u32::from_str_radix(oct, 8).map_err(|_| "invalid octal escape".to_string())?;
            let ch = char::from_u32(code).ok_or("octal escape value > 255")?;
            Ok((ch, i + 4))
        }
        other => Err(format!("unknown escape sequence {:?}", other as char)),
    }
}

/// Go's `%.10q...` shortening used in Prometheus's token descriptions.
fn go_quote_short(s: &str) -> String {
    if s.chars().count() > 10 {
        let head: String = s.chars().take(10).collect();
        format!("{head:?}...")
    } else {
        format!("{s:?}")
    }
}

fn go_quote_rune(c: char) -> String {
    match c {
        '\'' => "'\\''".to_string(),
        c => format!("'{}'", c.escape_debug()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<String> {
        match parse_selector(s) {
            Ok(ms) => ms.iter().map(|m| m.to_string()).collect(),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn err(s: &str) -> String {
        match parse_selector(s) {
            Ok(ms) => panic!("{s} parsed to {ms:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_selectors() {
        assert_eq!(ok("up"), ["__name__=\"up\""]);
        assert_eq!(ok("up{job=\"a\", x!~'b.*',}"), ["__name__=\"up\"", "job=\"a\"", "x!~\"b.*\""]);
        assert_eq!(ok("{__name__=~'.+'}"), ["__name__=~\".+\""]);
        assert_eq!(ok("{foo=''}"), ["foo=\"\""]);
        assert_eq!(ok("job:rate:sum{a=`x\\y`}"), ["__name__=\"job:rate:sum\"", "a=\"x\\\\y\""]);
        assert_eq!(ok("{\"my.metric\", \"a.b\"=\"c\\n\"}"), ["__name__=\"my.metric\"", "a.b=\"c\\n\""]);
    }

    #[test]
    fn errors_carry_prometheus_positions() {
        assert_eq!(err("-not-a-valid-metric-name"), "1:1: parse error: unexpected <op:->");
        assert_eq!(err("not-a-valid-metric-name"), "1:4: parse error: unexpected <op:->");
        assert_eq!(err(""), "1:1: parse error: unexpected end of input");
        assert_eq!(
            err("up{job}"),
            "1:7: parse error: unexpected \"}\" in label matching, expected label matching operator"
        );
        assert_eq!(err("up{job=\"x}"), "1:8: parse error: unterminated quoted string");
        assert!(err("up{a=~\"(\"}").starts_with("1:7: parse error: invalid regular expression"));
        assert_eq!(err("up #"), "1:4: parse error: unexpected character: '#'");
    }
}
