//! The grouping key of a push: the URL path after `/metrics/`, `job/<job>{/<label>/<value>}`,
//! decoded the way Pushgateway 1.x decodes it (percent-decoding of the whole path first, then
//! `<name>@base64` values in base64url with optional padding), and written back as a path for
//! forwarding a push to another node.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

use crate::model::{Label, Labels, is_valid_label_name};

/// Marks a path label name whose value is base64url-encoded.
const BASE64_SUFFIX: &str = "@base64";

/// Go's `base64.RawURLEncoding` as Pushgateway uses it: URL-safe alphabet, no padding (callers
/// strip it first), and, as Go's non-strict decoder, non-zero bits after the last full byte are
/// ignored.
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Why a push path was refused; the handler answers 400 with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupingKeyError {
    #[error("the path must start with job/<job> or job@base64/<job>, found {path:?}")]
    MissingJob { path: String },
    #[error("job name is required")]
    EmptyJob,
    #[error("invalid percent-encoding in the path {path:?}")]
    PercentEncoding { path: String },
    #[error("the path {path:?} has an empty, `.` or `..` segment (Pushgateway would redirect it)")]
    UncleanPath { path: String },
    #[error("odd number of components in label string {labels:?}")]
    OddComponents { labels: String },
    #[error("improper label name {name:?}")]
    InvalidLabelName { name: String },
    #[error("label {name:?} appears more than once in the grouping key")]
    RepeatedLabel { name: String },
    #[error("invalid base64 encoding for label {name}={value:?}")]
    InvalidBase64 { name: String, value: String },
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: String },
}

/// The labels that identify a group: `job` and the other pairs of the push path, sorted by name.
///
/// Values may be empty (`…/instance@base64/=` is Pushgateway's way to push with an empty
/// `instance`): such a key is a group of its own, and the empty pairs are part of what the
/// consistency checks see, but exposed series carry no empty labels ([`GroupingKey::labels`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupingKey {
    /// Sorted by name, names unique, `job` always present with a non-empty value.
    pairs: Vec<(String, String)>,
}

impl GroupingKey {
    /// Parses the part of a push URL's path after `/metrics/` as it arrives on the wire (still
    /// percent-encoded): `job/<job>` or `job@base64/<job>`, then `/<name>/<value>` pairs, where a
    /// name ending in `@base64` takes a base64url value (padding optional; `=` or nothing for an
    /// empty value).
    ///
    /// As in Pushgateway, the whole path is percent-decoded before it is split (so `%2F` separates
    /// segments; that is what `@base64` is for), a trailing `/` after the job is ignored, and one
    /// after a label name gives that label an empty value. Unlike Pushgateway, a name given twice
    /// (including `job`) is refused instead of the last one winning, empty, `.` and `..` segments
    /// are refused instead of redirected, and values must be UTF-8.
    pub fn parse(path: &str) -> Result<GroupingKey, GroupingKeyError> {
        let decoded = percent_decode(path)?;
        let (job_base64, rest) = if let Some(rest) = decoded.strip_prefix("job/") {
            (false, rest)
        } else if let Some(rest) = decoded.strip_prefix("job@base64/") {
            (true, rest)
        } else {
            return Err(GroupingKeyError::MissingJob { path: path.to_string() });
        };
        let (job, labels) = match rest.find('/') {
            Some(k) => (&rest[..k], &rest[k..]),
            None => (rest, ""),
        };
        if job.is_empty() {
            return Err(GroupingKeyError::EmptyJob);
        }
        let unclean = || GroupingKeyError::UncleanPath { path: path.to_string() };
        if job == "." || job == ".." {
            return Err(unclean());
        }
        let job = if job_base64 { decode_base64("job", job)? } else { job.to_string() };
        if job.is_empty() {
            return Err(GroupingKeyError::EmptyJob);
        }
        let mut pairs = vec![("job".to_string(), job)];
        // Pushgateway's router takes "" and "/" as no labels; anything longer is pairs.
        if labels.len() > 1 {
            let components: Vec<&str> = labels[1..].split('/').collect();
            let last = components.len() - 1;
            // Only the very last segment (a value) may be empty: any other empty segment means
            // `//`, which Pushgateway's router redirects to the cleaned path.
            if components
                .iter()
                .enumerate()
                .any(|(i, c)| (c.is_empty() && i != last) || *c == "." || *c == "..")
            {
                return Err(unclean());
            }
            if !components.len().is_multiple_of(2) {
                return Err(GroupingKeyError::OddComponents { labels: labels.to_string() });
            }
            for pair in components.chunks_exact(2) {
                let (name, value) = (pair[0], pair[1]);
                let (name, base64) = match name.strip_suffix(BASE64_SUFFIX) {
                    Some(n) => (n, true),
                    None => (name, false),
                };
                check_label_name(name)?;
                let value = if base64 { decode_base64(name, value)? } else { value.to_string() };
                pairs.push((name.to_string(), value));
            }
        }
        GroupingKey::from_pairs(pairs)
    }

    /// A key from a job and further pairs (validated as [`GroupingKey::parse`] validates them).
    pub fn new(job: &str, labels: &[(&str, &str)]) -> Result<GroupingKey, GroupingKeyError> {
        if job.is_empty() {
            return Err(GroupingKeyError::EmptyJob);
        }
        let mut pairs = vec![("job".to_string(), job.to_string())];
        for (name, value) in labels {
            check_label_name(name)?;
            pairs.push((name.to_string(), value.to_string()));
        }
        GroupingKey::from_pairs(pairs)
    }

    /// Sorts `pairs` (job first in them) and refuses repeated names.
    fn from_pairs(mut pairs: Vec<(String, String)>) -> Result<GroupingKey, GroupingKeyError> {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(GroupingKeyError::RepeatedLabel { name: w[0].0.clone() });
        }
        Ok(GroupingKey { pairs })
    }

    /// The job.
    pub fn job(&self) -> &str {
        self.get("job").unwrap_or_default()
    }

    /// The value of `name` in the key (possibly empty), if the key has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| self.pairs[i].1.as_str())
    }

    /// Every pair, `job` included, sorted by name; values may be empty.
    pub fn pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The key as the labels its series carry (empty values dropped).
    pub fn labels(&self) -> Labels {
        Labels::new(self.pairs.iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    /// The key as a path [`GroupingKey::parse`] reads back to the same key (for forwarding a push
    /// to the node that owns the group): `job/<job>/<name>/<value>…` with a value written plainly
    /// when it is made of unreserved URL characters, else as `<name>@base64/<base64url>` (`=`
    /// for an empty value).
    pub fn to_path(&self) -> String {
        let mut out = String::new();
        let mut push = |name: &str, value: &str| {
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(name);
            let plain = !value.is_empty()
                && value != "."
                && value != ".."
                && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            if plain {
                out.push('/');
                out.push_str(value);
            } else {
                out.push_str(BASE64_SUFFIX);
                out.push('/');
                if value.is_empty() {
                    out.push('=');
                } else {
                    out.push_str(&general_purpose::URL_SAFE_NO_PAD.encode(value));
                }
            }
        };
        push("job", self.job());
        for (name, value) in self.pairs().filter(|(n, _)| *n != "job") {
            push(name, value);
        }
        out
    }
}

/// `{instance="", job="a"}`: every pair, empty values included.
impl fmt::Display for GroupingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.pairs().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// Pushgateway's rule for grouping label names: a legacy label name not starting with `__`.
fn check_label_name(name: &str) -> Result<(), GroupingKeyError> {
    if is_valid_label_name(name) && !name.starts_with("__") {
        Ok(())
    } else {
        Err(GroupingKeyError::InvalidLabelName { name: name.to_string() })
    }
}

/// Go's `RawURLEncoding.DecodeString(strings.TrimRight(s, "="))`, also skipping `\r` and `\n`
/// as Go's decoder does; the result must be UTF-8.
fn decode_base64(name: &str, value: &str) -> Result<String, GroupingKeyError> {
    let cleaned: Vec<u8> =
        value.trim_end_matches('=').bytes().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
    let bytes = URL_SAFE_LENIENT
        .decode(&cleaned)
        .map_err(|_| GroupingKeyError::InvalidBase64 { name: name.to_string(), value: value.to_string() })?;
    String::from_utf8(bytes)
        .map_err(|_| GroupingKeyError::InvalidUtf8 { what: format!("the value of label {name:?}") })
}

/// Decodes `%XX` escapes in a whole path (Go's `URL.Path`); `+` stays `+`.
fn percent_decode(path: &str) -> Result<String, GroupingKeyError> {
    if !path.contains('%') {
        return Ok(path.to_string());
    }
    let bad = || GroupingKeyError::PercentEncoding { path: path.to_string() };
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    // Which label the bad bytes belong to is not known before splitting; name the path.
    String::from_utf8(out).map_err(|_| GroupingKeyError::InvalidUtf8 { what: format!("the path {path:?}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> Vec<(String, String)> {
        match GroupingKey::parse(path) {
            Ok(k) => k.pairs().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            Err(e) => panic!("{path}: {e}"),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn err(path: &str) -> GroupingKeyError {
        match GroupingKey::parse(path) {
            Ok(k) => panic!("{path} parsed as {k}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_paths() {
        assert_eq!(key("job/a"), pairs(&[("job", "a")]));
        assert_eq!(key("job/a/"), pairs(&[("job", "a")]), "a trailing slash after the job is nothing");
        assert_eq!(
            key("job/a/instance/i1/zone/z"),
            pairs(&[("instance", "i1"), ("job", "a"), ("zone", "z")])
        );
        assert_eq!(key("job/a/x/"), pairs(&[("job", "a"), ("x", "")]), "a trailing slash is an empty value");
        assert_eq!(key("job/a/le/1"), pairs(&[("job", "a"), ("le", "1")]));
        assert_eq!(key("job/a%20b/x/c%2Dd"), pairs(&[("job", "a b"), ("x", "c-d")]));
    }

    #[test]
    fn base64_values() {
        // "a2l0" = "kit"; padding is optional and any amount of it is trimmed.
        for p in ["job@base64/a2l0", "job@base64/a2k=", "job@base64/a2k", "job@base64/a2k==="] {
            assert!(key(p)[0].1.starts_with("ki"), "{p}");
        }
        assert_eq!(key("job@base64/a2k==="), pairs(&[("job", "ki")]));
        assert_eq!(key("job/j/path@base64/L3Zhci90bXA"), pairs(&[("job", "j"), ("path", "/var/tmp")]));
        assert_eq!(key("job/j/path@base64/L3Zhci90bXA="), pairs(&[("job", "j"), ("path", "/var/tmp")]));
        // Empty values: `=` alone, or nothing after a trailing slash.
        assert_eq!(key("job/j/instance@base64/="), pairs(&[("instance", ""), ("job", "j")]));
        assert_eq!(key("job/j/instance@base64/"), pairs(&[("instance", ""), ("job", "j")]));
        // URL-safe alphabet; Go's decoder ignores bits after the last byte ("YR" reads as "a").
        assert_eq!(key("job/j/x@base64/LV8"), pairs(&[("job", "j"), ("x", "-_")]));
        assert_eq!(key("job/j/x@base64/YR"), pairs(&[("job", "j"), ("x", "a")]));
        assert_eq!(key("job/j/x@base64/YQ%3D%3D"), pairs(&[("job", "j"), ("x", "a")]));
    }

    #[test]
    fn refusals() {
        assert!(matches!(err("job"), GroupingKeyError::MissingJob { .. }));
        assert!(matches!(err("jobs/a"), GroupingKeyError::MissingJob { .. }));
        assert_eq!(err("job/"), GroupingKeyError::EmptyJob);
        assert_eq!(err("job@base64/"), GroupingKeyError::EmptyJob);
        assert_eq!(err("job@base64/="), GroupingKeyError::EmptyJob);
        assert_eq!(err("job/a/x/1/"), GroupingKeyError::OddComponents { labels: "/x/1/".into() });
        assert_eq!(err("job/a/x"), GroupingKeyError::OddComponents { labels: "/x".into() });
        assert_eq!(err("job/a/x/a%2Fb"), GroupingKeyError::OddComponents { labels: "/x/a/b".into() });
        assert_eq!(err("job/a/__x/1"), GroupingKeyError::InvalidLabelName { name: "__x".into() });
        assert_eq!(err("job/a/1x/1"), GroupingKeyError::InvalidLabelName { name: "1x".into() });
        assert_eq!(err("job/a/a-b/1"), GroupingKeyError::InvalidLabelName { name: "a-b".into() });
        assert_eq!(
            err("job/a/x@base64@base64/YQ"),
            GroupingKeyError::InvalidLabelName { name: "x@base64".into() }
        );
        assert!(matches!(err("job/a/x@base64/!!"), GroupingKeyError::InvalidBase64 { .. }));
        assert!(matches!(err("job/a/x@base64/a+/b"), GroupingKeyError::OddComponents { .. }));
        assert!(matches!(err("job/a/x@base64/YQ+"), GroupingKeyError::InvalidBase64 { .. }));
        assert!(matches!(err("job/a/x@base64/Y"), GroupingKeyError::InvalidBase64 { .. }));
        assert!(matches!(err("job/a/x@base64/-_"), GroupingKeyError::InvalidUtf8 { .. }));
        assert!(matches!(err("job/a/x/%ff"), GroupingKeyError::InvalidUtf8 { .. }));
        assert!(matches!(err("job/a/x/%zz"), GroupingKeyError::PercentEncoding { .. }));
        assert!(matches!(err("job/a/x/%2"), GroupingKeyError::PercentEncoding { .. }));
        assert_eq!(err("job/a/x/1/x/2"), GroupingKeyError::RepeatedLabel { name: "x".into() });
        assert_eq!(err("job/a/job/b"), GroupingKeyError::RepeatedLabel { name: "job".into() });
        assert_eq!(err("job/a/x@base64/YQ/x/a"), GroupingKeyError::RepeatedLabel { name: "x".into() });
        assert_eq!(err("job//x/1"), GroupingKeyError::EmptyJob);
        for unclean in ["job/a//x/1", "job/a/x//", "job/a/x/1//", "job/./x/1", "job/a/x/..", "job/a/./1"] {
            assert!(matches!(err(unclean), GroupingKeyError::UncleanPath { .. }), "{unclean}");
        }
    }

    #[test]
    fn to_path_round_trips() {
        for path in [
            "job/a",
            "job/a/instance@base64/=",
            "job@base64/L3Zhcg/x/1",
            "job/a/x@base64/w7xiZXI/y/a.b~c",
            "job/a/x@base64/Lg",
            "job/a/x@base64/YSBi",
        ] {
            let k = GroupingKey::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(k.to_path(), path);
            assert_eq!(GroupingKey::parse(&k.to_path()), Ok(k));
        }
    }

    #[test]
    fn labels_and_display() {
        let k = GroupingKey::new("a", &[("instance", ""), ("zone", "z")]).unwrap();
        assert_eq!(k.labels(), Labels::from_pairs(&[("job", "a"), ("zone", "z")]));
        assert_eq!(k.job(), "a");
        assert_eq!(k.get("instance"), Some(""));
        assert_eq!(k.to_string(), r#"{instance="", job="a", zone="z"}"#);
        assert_eq!(GroupingKey::new("", &[]), Err(GroupingKeyError::EmptyJob));
        assert_eq!(
            GroupingKey::new("a", &[("job", "b")]),
            Err(GroupingKeyError::RepeatedLabel { name: "job".into() })
        );
    }
}
