//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus semantics: regexes are fully anchored
//! and `.` matches newlines; a missing label matches as the empty string.

use std::fmt;

use regex::Regex;

use super::Labels;

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(&self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// A compiled regex failed to build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatcherError {
    #[error("invalid regular expression {pattern:?}: {source}")]
    BadRegex {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// Compiled, anchored regex for the regex operators.
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let value = value.into();
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(compile_anchored(&value)?),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher { name: name.into(), op, value, re })
    }

    /// Equality matcher; never fails.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher { name: name.into(), op: MatchOp::Equal, value: value.into(), re: None }
    }

    /// Whether `value` (the label's value, `""` when absent) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            // Unreachable by construction: regex ops always carry a compiled regex.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// Whether the matcher accepts a series that lacks the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Whether every matcher in `ms` accepts `labels`.
    pub fn all_match(ms: &[Matcher], labels: &Labels) -> bool {
        ms.iter().all(|m| m.matches(labels.get_or_empty(&m.name)))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// Compiles `pattern` as Prometheus does: `^(?s:pattern)$`.
pub(crate) fn compile_anchored(pattern: &str) -> Result<Regex, MatcherError> {
    Regex::new(&format!("^(?s:{pattern})$"))
        .map_err(|e| MatcherError::BadRegex { pattern: pattern.to_string(), source: Box::new(e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_dot_matches_newline() -> Result<(), MatcherError> {
        let m = Matcher::new(MatchOp::Regex, "a", "fo.")?;
        assert!(m.matches("foo"));
        assert!(!m.matches("xfoo"));
        assert!(!m.matches("foox"));
        assert!(m.matches("fo\n"));
        Ok(())
    }

    #[test]
    fn missing_label_is_empty() -> Result<(), MatcherError> {
        let l = Labels::from_pairs(&[("a", "1")]);
        assert!(Matcher::all_match(&[Matcher::equal("b", "")], &l));
        assert!(!Matcher::all_match(&[Matcher::new(MatchOp::Regex, "b", ".+")?], &l));
        assert!(Matcher::all_match(&[Matcher::new(MatchOp::NotEqual, "a", "2")?], &l));
        Ok(())
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(Matcher::new(MatchOp::Regex, "a", "(").is_err());
    }
}
