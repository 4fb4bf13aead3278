//! Relabel rule configuration: the raw YAML shape ([`RawRelabelConfig`]), its validation into a
//! compiled [`RelabelConfig`], and the errors a user can make in it.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer};

use super::case::go_to_lower;
use super::template::{Template, is_valid_label_name_template};
use crate::model::{MatcherError, compile_anchored, is_valid_label_name};

/// `regex` when absent: matches anything and captures it as `$1`.
pub const DEFAULT_REGEX: &str = "(.*)";
/// `replacement` when absent.
pub const DEFAULT_REPLACEMENT: &str = "$1";
/// `separator` when absent.
pub const DEFAULT_SEPARATOR: &str = ";";

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Sets `target_label` to `replacement` when `regex` matches the joined source values.
    Replace,
    /// Drops the label set unless `regex` matches the joined source values.
    Keep,
    /// Drops the label set when `regex` matches the joined source values.
    Drop,
    /// Drops the label set unless `target_label`'s value equals the joined source values.
    KeepEqual,
    /// Drops the label set when `target_label`'s value equals the joined source values.
    DropEqual,
    /// Sets `target_label` to the md5-based hash of the joined source values modulo `modulus`.
    HashMod,
    /// Copies every label whose name matches `regex` to the name `replacement` expands to.
    LabelMap,
    /// Removes every label whose name matches `regex`.
    LabelDrop,
    /// Removes every label whose name does not match `regex`.
    LabelKeep,
    /// Sets `target_label` to the joined source values in lower case.
    Lowercase,
    /// Sets `target_label` to the joined source values in upper case.
    Uppercase,
}

impl Action {
    const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    /// The name used in configuration files.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    /// Parses an action name; case-insensitive, as Prometheus is.
    pub fn parse(name: &str) -> Option<Action> {
        let lower = go_to_lower(name);
        Action::ALL.into_iter().find(|a| a.as_str() == lower)
    }

    /// Actions that write `target_label` and so require it.
    fn needs_target_label(self) -> bool {
        matches!(
            self,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mistake in one relabel rule. [`RelabelError::field`] names the YAML key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelabelError {
    #[error("relabel action cannot be empty")]
    EmptyAction,
    #[error(
        "unknown relabel action {action:?} (expected one of replace, keep, drop, keepequal, \
         dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase)"
    )]
    UnknownAction { action: String },
    #[error("{name:?} in 'source_labels' is not a valid label name (must match [a-zA-Z_][a-zA-Z0-9_]*)")]
    InvalidSourceLabel { name: String },
    #[error("invalid 'regex' {pattern:?}: {reason}")]
    InvalidRegex { pattern: String, reason: String },
    #[error("relabel configuration for hashmod requires non-zero modulus")]
    ZeroModulus,
    #[error("relabel configuration for {action} action requires 'target_label' value")]
    MissingTargetLabel { action: Action },
    #[error(
        "{target_label:?} is invalid 'target_label' for {action} action (must be a label name \
         matching [a-zA-Z_][a-zA-Z0-9_]*{})",
        if matches!(action, Action::Replace) { ", optionally with $1 / ${name} references" } else { "" }
    )]
    InvalidTargetLabel { action: Action, target_label: String },
    #[error("'replacement' can not be set for {action} action")]
    ReplacementNotAllowed { action: Action },
    #[error(
        "{replacement:?} is invalid 'replacement' for {action} action (it must expand to a label \
         name: [a-zA-Z_][a-zA-Z0-9_]* with $1 / ${{name}} references)"
    )]
    InvalidReplacement { action: Action, replacement: String },
    #[error(
        "{action} action requires only 'source_labels' and 'target_label', and no other fields (found '{field}')"
    )]
    OnlySourceAndTargetAllowed { action: Action, field: &'static str },
    #[error("{action} action requires only 'regex', and no other fields (found '{field}')")]
    OnlyRegexAllowed { action: Action, field: &'static str },
}

impl RelabelError {
    /// The YAML key of the rule that the error is about, e.g. `"target_label"`.
    pub fn field(&self) -> &'static str {
        match self {
            RelabelError::EmptyAction | RelabelError::UnknownAction { .. } => "action",
            RelabelError::InvalidSourceLabel { .. } => "source_labels",
            RelabelError::InvalidRegex { .. } => "regex",
            RelabelError::ZeroModulus => "modulus",
            RelabelError::MissingTargetLabel { .. } | RelabelError::InvalidTargetLabel { .. } => {
                "target_label"
            }
            RelabelError::ReplacementNotAllowed { .. } | RelabelError::InvalidReplacement { .. } => {
                "replacement"
            }
            RelabelError::OnlySourceAndTargetAllowed { field, .. }
            | RelabelError::OnlyRegexAllowed { field, .. } => field,
        }
    }
}

/// One relabel rule as written in YAML, with Prometheus's field names.
///
/// `None` means the key is absent, so its default applies. A key present with a null value
/// (`regex:`) reads as the empty value, not the default, exactly as Prometheus reads it: an
/// empty `regex` matches only the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelabelConfig {
    /// Labels whose values are joined with `separator` (a missing label counts as `""`).
    #[serde(default)]
    pub source_labels: Option<Vec<String>>,
    /// Default `;`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub separator: Option<String>,
    /// Matched fully anchored against the joined value (or label names); default `(.*)`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub regex: Option<String>,
    /// For `hashmod`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub modulus: Option<u64>,
    /// The label written by replace, hashmod, lowercase, uppercase; compared by keepequal/dropequal.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub target_label: Option<String>,
    /// Template for replace (the value) and labelmap (the new name); default `$1`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub replacement: Option<String>,
    /// Default `replace`; case-insensitive.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub action: Option<String>,
}

/// A present key with a null value means the zero value, as in Prometheus's YAML decoding.
fn null_as_empty<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

impl RawRelabelConfig {
    /// Applies defaults and validates the rule as Prometheus's config loader does, returning the
    /// first problem found.
    pub fn compile(&self) -> Result<RelabelConfig, RelabelError> {
        // Checks Prometheus makes while decoding single fields.
        let action = match self.action.as_deref() {
            None => Action::Replace,
            Some("") => return Err(RelabelError::EmptyAction),
            Some(name) => {
                Action::parse(name).ok_or_else(|| RelabelError::UnknownAction { action: name.into() })?
            }
        };
        let source_labels = self.source_labels.clone().unwrap_or_default();
        if let Some(bad) = source_labels.iter().find(|n| !is_valid_label_name(n)) {
            return Err(RelabelError::InvalidSourceLabel { name: bad.clone() });
        }
        let pattern = self.regex.as_deref().unwrap_or(DEFAULT_REGEX);
        let regex = compile_anchored(pattern).map_err(|e| RelabelError::InvalidRegex {
            pattern: pattern.to_string(),
            reason: regex_reason(pattern, e),
        })?;
        let separator = self.separator.as_deref().unwrap_or(DEFAULT_SEPARATOR);
        let modulus = self.modulus.unwrap_or(0);
        let target_label = self.target_label.as_deref().unwrap_or("");
        let replacement = self.replacement.as_deref().unwrap_or(DEFAULT_REPLACEMENT);

        // Whole-rule checks, in Prometheus's order.
        let writes_plain_label =
            matches!(action, Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual);
        let invalid_target =
            || RelabelError::InvalidTargetLabel { action, target_label: target_label.into() };
        if action == Action::HashMod && modulus == 0 {
            return Err(RelabelError::ZeroModulus);
        }
        if action.needs_target_label() && target_label.is_empty() {
            return Err(RelabelError::MissingTargetLabel { action });
        }
        if action == Action::Replace {
            let valid = if target_label.contains('$') {
                is_valid_label_name_template(target_label)
            } else {
                is_valid_label_name(target_label)
            };
            if !valid {
                return Err(invalid_target());
            }
        }
        if writes_plain_label && !is_valid_label_name(target_label) {
            return Err(invalid_target());
        }
        if writes_plain_label && replacement != DEFAULT_REPLACEMENT {
            return Err(RelabelError::ReplacementNotAllowed { action });
        }
        if action == Action::LabelMap && !is_valid_label_name_template(replacement) {
            return Err(RelabelError::InvalidReplacement { action, replacement: replacement.into() });
        }
        if action == Action::HashMod && !is_valid_label_name(target_label) {
            return Err(invalid_target());
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual) {
            // Any `regex` key counts, even `(.*)`: Prometheus compares it with the default by
            // identity. A non-default `replacement` was rejected above.
            let extra = [
                ("regex", self.regex.is_some()),
                ("modulus", modulus != 0),
                ("separator", separator != DEFAULT_SEPARATOR),
            ];
            if let Some((field, _)) = extra.into_iter().find(|(_, set)| *set) {
                return Err(RelabelError::OnlySourceAndTargetAllowed { action, field });
            }
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep) {
            // `source_labels: []` counts as set; an absent or null key does not.
            let extra = [
                ("source_labels", self.source_labels.is_some()),
                ("target_label", !target_label.is_empty()),
                ("modulus", modulus != 0),
                ("separator", separator != DEFAULT_SEPARATOR),
                ("replacement", replacement != DEFAULT_REPLACEMENT),
            ];
            if let Some((field, _)) = extra.into_iter().find(|(_, set)| *set) {
                return Err(RelabelError::OnlyRegexAllowed { action, field });
            }
        }

        Ok(RelabelConfig {
            action,
            target_template: Template::parse(target_label, &regex),
            replacement_template: Template::parse(replacement, &regex),
            source_labels,
            separator: separator.to_string(),
            pattern: pattern.to_string(),
            regex,
            modulus,
            target_label: target_label.to_string(),
            replacement: replacement.to_string(),
        })
    }
}

/// A one-line reason for a bad pattern, phrased about the user's pattern rather than the
/// anchored wrapper we compile.
fn regex_reason(pattern: &str, err: MatcherError) -> String {
    let message = match Regex::new(pattern) {
        Err(own) => own.to_string(),
        Ok(_) => match err {
            MatcherError::BadRegex { source, .. } => source.to_string(),
        },
    };
    match message.lines().rev().find_map(|l| l.strip_prefix("error: ")) {
        Some(reason) => reason.to_string(),
        None => message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// A validated relabel rule, ready for [`super::relabel`].
#[derive(Debug, Clone)]
pub struct RelabelConfig {
    pub(super) action: Action,
    pub(super) source_labels: Vec<String>,
    pub(super) separator: String,
    /// The pattern as written; `regex` is it compiled as `^(?s:pattern)$`.
    pattern: String,
    pub(super) regex: Regex,
    pub(super) modulus: u64,
    pub(super) target_label: String,
    replacement: String,
    /// `target_label` parsed against `regex` (used by replace).
    pub(super) target_template: Template,
    /// `replacement` parsed against `regex` (used by replace and labelmap).
    pub(super) replacement_template: Template,
}

impl RelabelConfig {
    pub fn action(&self) -> Action {
        self.action
    }

    pub fn source_labels(&self) -> &[String] {
        &self.source_labels
    }

    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// The regex as written, without the anchoring added when compiling it.
    pub fn regex(&self) -> &str {
        &self.pattern
    }

    pub fn modulus(&self) -> u64 {
        self.modulus
    }

    pub fn target_label(&self) -> &str {
        &self.target_label
    }

    pub fn replacement(&self) -> &str {
        &self.replacement
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(action: &str) -> RawRelabelConfig {
        RawRelabelConfig { action: Some(action.into()), ..RawRelabelConfig::default() }
    }

    #[test]
    fn defaults() -> Result<(), RelabelError> {
        let c =
            RawRelabelConfig { target_label: Some("t".into()), ..RawRelabelConfig::default() }.compile()?;
        assert_eq!(c.action(), Action::Replace);
        assert_eq!(c.separator(), ";");
        assert_eq!(c.regex(), "(.*)");
        assert_eq!(c.replacement(), "$1");
        assert_eq!(c.modulus(), 0);
        assert!(c.source_labels().is_empty());
        Ok(())
    }

    #[test]
    fn action_names_are_case_insensitive() {
        assert_eq!(Action::parse("LabelMap"), Some(Action::LabelMap));
        assert_eq!(Action::parse("KEEP"), Some(Action::Keep));
        // Go's ToLower maps the Kelvin sign to `k`.
        assert_eq!(Action::parse("\u{212A}eep"), Some(Action::Keep));
        assert_eq!(Action::parse("keep "), None);
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn errors_name_their_field() {
        let cases: [(RawRelabelConfig, &str); 5] = [
            (raw(""), "action"),
            (raw("hashmod"), "modulus"),
            (RawRelabelConfig { regex: Some("(".into()), ..raw("keep") }, "regex"),
            (RawRelabelConfig { separator: Some(",".into()), ..raw("labeldrop") }, "separator"),
            (
                RawRelabelConfig {
                    target_label: Some("a".into()),
                    regex: Some("(.*)".into()),
                    ..raw("keepequal")
                },
                "regex",
            ),
        ];
        for (rule, field) in cases {
            match rule.compile() {
                Err(e) => assert_eq!(e.field(), field, "{e}"),
                Ok(_) => panic!("{rule:?} compiled"),
            }
        }
    }

    #[test]
    fn regex_error_is_about_the_users_pattern() {
        let err = RawRelabelConfig { regex: Some("a(b".into()), ..raw("keep") }.compile().err();
        assert_eq!(
            err,
            Some(RelabelError::InvalidRegex { pattern: "a(b".into(), reason: "unclosed group".into() })
        );
    }

    #[test]
    fn yaml_null_is_the_empty_value_and_unknown_keys_are_errors() -> Result<(), serde_saphyr::Error> {
        let rules: Vec<RawRelabelConfig> =
            serde_saphyr::from_str("- regex:\n  separator: ~\n- {action: keep}\n")?;
        assert_eq!(rules[0].regex.as_deref(), Some(""));
        assert_eq!(rules[0].separator.as_deref(), Some(""));
        assert_eq!(rules[0].action, None);
        assert_eq!(rules[1].action.as_deref(), Some("keep"));
        assert!(serde_saphyr::from_str::<Vec<RawRelabelConfig>>("- {regxe: a}").is_err());
        Ok(())
    }
}
