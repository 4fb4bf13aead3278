//! Replacement templates as Go's `regexp.Expand` reads them (`$1`, `${1}`, `$name`, `${name}`,
//! `$$`), parsed once against a rule's regex; and the check Prometheus applies to a template
//! used as a label name.
//!
//! Go's rules, which differ from `regex::Captures::expand` at the edges: a name is the longest
//! run of Unicode letters, decimal digits and `_` (so `$1x` names group `1x`); an all-digit name
//! is a group number unless it has a leading zero (`$01` names group `01`, which cannot exist);
//! `${…}` must hold such a name and its `}`; a `$` that starts no valid reference stays literal;
//! unknown or unmatched groups expand to nothing.

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// A parsed template: literal text and capture-group references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// Index of a capture group of the regex the template was parsed against.
    Group(usize),
}

impl Template {
    /// Parses `template` against `re`; references to groups `re` lacks are dropped here, since
    /// they always expand to nothing.
    pub(crate) fn parse(template: &str, re: &Regex) -> Template {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = template;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                lit.push('$');
                rest = after;
                continue;
            }
            let Some((name, after)) = reference(rest) else {
                // Malformed: the `$` is literal text and scanning resumes right after it.
                lit.push('$');
                continue;
            };
            rest = after;
            if let Some(group) = resolve(name, re) {
                if !lit.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut lit)));
                }
                parts.push(Part::Group(group));
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Template { parts }
    }

    /// The template's text when it references no group.
    pub(crate) fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Appends the expansion for one match to `out`.
    pub(crate) fn expand_into(&self, caps: &Captures<'_>, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Group(g) => out.push_str(caps.get(*g).map_or("", |m| m.as_str())),
            }
        }
    }
}

/// Splits a reference (`name` or `{name}`) off the text after a `$`.
fn reference(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let end = body.char_indices().find(|&(_, c)| !is_name_char(c)).map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let (name, rest) = body.split_at(end);
    if braced { rest.strip_prefix('}').map(|rest| (name, rest)) } else { Some((name, rest)) }
}

/// The group a reference names, if `re` has it.
fn resolve(name: &str, re: &Regex) -> Option<usize> {
    let numeric = name.bytes().all(|b| b.is_ascii_digit()) && !(name.len() > 1 && name.starts_with('0'));
    if numeric {
        // Go stops reading a number past 9 digits and treats it as a name, which no regex has.
        let index = if name.len() <= 9 { name.parse::<usize>().ok() } else { None };
        return index.filter(|&i| i < re.captures_len());
    }
    re.capture_names().position(|n| n == Some(name))
}

/// Go's `unicode.IsLetter || unicode.IsDigit || '_'`: letters of any script and decimal digits.
fn is_name_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    // General categories L and Nd; std has no query for them, the regex crate's tables do.
    static LETTER_OR_DIGIT: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^[\p{L}\p{Nd}]$").ok());
    match LETTER_OR_DIGIT.as_ref() {
        Some(re) => re.is_match(c.encode_utf8(&mut [0; 4])),
        // Only if the constant pattern failed to build: std's close approximation.
        None => c.is_alphabetic() || c.is_numeric(),
    }
}

/// Whether `s` may become a label name after expansion, as Prometheus checks a `target_label`
/// containing `$`, or a `labelmap` replacement: the pattern
/// `^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$` with ASCII `\w` — word characters and
/// `$name` / `${name}` references, not starting with a digit.
pub(crate) fn is_valid_label_name_template(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.first().is_none_or(|c| c.is_ascii_digit()) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            if !word(b[i]) {
                return false;
            }
            i += 1;
            continue;
        }
        i += 1;
        let braced = b.get(i) == Some(&b'{');
        if braced {
            i += 1;
        }
        let start = i;
        while i < b.len() && word(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if braced {
            if b.get(i) != Some(&b'}') {
                return false;
            }
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::MatcherError;

    fn expand(template: &str, pattern: &str, input: &str) -> Result<String, MatcherError> {
        let re = crate::model::compile_anchored(pattern)?;
        let t = Template::parse(template, &re);
        let mut out = String::new();
        if let Some(caps) = re.captures(input) {
            t.expand_into(&caps, &mut out);
        }
        Ok(out)
    }

    /// Expected values are what Go's `Regexp.ExpandString` returns.
    #[test]
    fn go_expand_rules() -> Result<(), MatcherError> {
        let p = "(?P<host>[^:]*):(?P<port>[0-9]*)";
        let v = "web:80";
        assert_eq!(expand("$1", p, v)?, "web");
        assert_eq!(expand("${1}x", p, v)?, "webx");
        assert_eq!(expand("$1x", p, v)?, "", "`$1x` names group `1x`");
        assert_eq!(expand("$host-$port", p, v)?, "web-80");
        assert_eq!(expand("${host}_${port}", p, v)?, "web_80");
        assert_eq!(expand("$host_$port", p, v)?, "80", "`host_` is one name");
        assert_eq!(expand("$0", p, v)?, "web:80");
        assert_eq!(expand("$01", p, v)?, "", "leading zero makes it a name");
        assert_eq!(expand("$3", p, v)?, "", "out of range");
        assert_eq!(expand("$$1", p, v)?, "$1");
        assert_eq!(expand("a$", p, v)?, "a$");
        assert_eq!(expand("$-", p, v)?, "$-");
        assert_eq!(expand("${1", p, v)?, "${1", "unterminated brace stays literal");
        assert_eq!(expand("${}", p, v)?, "${}");
        assert_eq!(expand("${a-b}", p, v)?, "${a-b}", "Go allows only name chars in braces");
        assert_eq!(expand("$é", p, v)?, "", "a Unicode letter is a name char");
        assert_eq!(expand("${1}é", p, v)?, "webé");
        assert_eq!(expand("$1٣", p, v)?, "", "Arabic-Indic digit extends the name");
        assert_eq!(expand("$1Ⅻ", p, v)?, "webⅫ", "a letter number (Nl) is no name char");
        assert_eq!(expand("$1234567890", p, v)?, "");
        assert_eq!(expand("$1", "(a)|(b)", "b")?, "", "unmatched group");
        assert_eq!(expand("$2", "(a)|(b)", "b")?, "b");
        Ok(())
    }

    #[test]
    fn literal_templates() -> Result<(), MatcherError> {
        let re = crate::model::compile_anchored("(.*)")?;
        assert_eq!(Template::parse("abc", &re).literal(), Some("abc"));
        assert_eq!(Template::parse("a$$b", &re).literal(), Some("a$b"));
        assert_eq!(Template::parse("$nope", &re).literal(), Some(""));
        assert_eq!(Template::parse("x$1", &re).literal(), None);
        Ok(())
    }

    #[test]
    fn label_name_templates() {
        for ok in ["a", "_", "$1", "${1}", "a_$1", "${1}_b", "$1$2", "__meta_$1", "$a1", "x${y}9"] {
            assert!(is_valid_label_name_template(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "$", "$$", "${}", "${1", "a.$1", "$-", "${a-b}"] {
            assert!(!is_valid_label_name_template(bad), "{bad}");
        }
    }

    proptest! {
        /// The hand-written check accepts exactly what Prometheus's regex accepts.
        #[test]
        fn label_name_template_matches_prometheus_regex(s in "[a1_${}.-]{0,8}") {
            let re = Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$");
            prop_assert!(re.is_ok());
            if let Ok(re) = re {
                prop_assert_eq!(is_valid_label_name_template(&s), re.is_match(&s), "{:?}", s);
            }
        }
    }
}
