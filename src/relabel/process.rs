//! The rule engine: applies compiled rules in order to a label set, as Prometheus's
//! `relabel.ProcessBuilder` does.

use super::case::{go_to_lower, go_to_upper};
use super::config::{Action, RelabelConfig};
use crate::model::{Label, Labels, LabelsBuilder, is_valid_label_name};
use crate::shard::hashmod;

/// Applies `rules` in order to `lb`. Returns `false` when a rule drops the label set (the
/// target or series must then be discarded; `lb` is left as it was at that point).
///
/// Contracts, all as in Prometheus:
/// - Source values are joined with the rule's separator; a missing label reads as `""`.
/// - Setting a label to `""` deletes it.
/// - `labelmap` may create a label with any name its replacement expands to, even an empty or
///   otherwise invalid one; checking the final names is the caller's job.
/// - `labelmap`, `labeldrop` and `labelkeep` visit a snapshot taken when the rule starts: the
///   labels that were in `lb` when this call began, in name order, then the labels set by
///   earlier rules of this call, in the order they were first set (Prometheus's
///   `labels.Builder` order, which decides the winner when two names map to one).
pub fn relabel(rules: &[RelabelConfig], lb: &mut LabelsBuilder) -> bool {
    let track_order = rules.iter().any(|r| r.action == Action::LabelMap);
    let mut state = State { lb, set_order: Vec::new(), track_order };
    let mut scratch = Scratch::default();
    rules.iter().all(|rule| apply(rule, &mut state, &mut scratch))
}

/// [`relabel`] on a finished label set: `None` when it is dropped.
pub fn relabel_labels(rules: &[RelabelConfig], labels: Labels) -> Option<Labels> {
    let mut lb = LabelsBuilder::new(labels);
    relabel(rules, &mut lb).then(|| lb.labels())
}

/// The builder plus what Prometheus's builder also knows: the order labels were set in.
struct State<'a> {
    lb: &'a mut LabelsBuilder,
    /// Names set during this call and still present, in first-set order; kept only when a
    /// `labelmap` rule may read it.
    set_order: Vec<String>,
    track_order: bool,
}

impl State<'_> {
    fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        self.lb.set(name, value);
        if self.track_order && !self.set_order.iter().any(|n| n == name) {
            self.set_order.push(name.to_string());
        }
    }

    fn del(&mut self, name: &str) {
        self.lb.del(name);
        if self.track_order {
            self.set_order.retain(|n| n != name);
        }
    }

    /// The current labels in Prometheus's iteration order (see [`relabel`]).
    fn snapshot(&self) -> Vec<Label> {
        let mut out: Vec<Label> =
            self.lb.iter().filter(|l| !self.set_order.contains(&l.name)).cloned().collect();
        for name in &self.set_order {
            if let Some(value) = self.lb.get(name) {
                out.push(Label::new(name.as_str(), value));
            }
        }
        out
    }
}

/// Buffers reused across the rules of one call.
#[derive(Default)]
struct Scratch {
    joined: String,
    name: String,
    value: String,
}

fn apply(rule: &RelabelConfig, st: &mut State<'_>, scratch: &mut Scratch) -> bool {
    let val = &mut scratch.joined;
    val.clear();
    for (i, name) in rule.source_labels.iter().enumerate() {
        if i > 0 {
            val.push_str(&rule.separator);
        }
        val.push_str(st.lb.get_or_empty(name));
    }
    let val = val.as_str();

    match rule.action {
        Action::Drop => return !rule.regex.is_match(val),
        Action::Keep => return rule.regex.is_match(val),
        Action::DropEqual => return st.lb.get_or_empty(&rule.target_label) != val,
        Action::KeepEqual => return st.lb.get_or_empty(&rule.target_label) == val,
        Action::Replace => {
            // No match: nothing changes.
            let Some(caps) = rule.regex.captures(val) else { return true };
            let target = match rule.target_template.literal() {
                Some(name) => name,
                None => {
                    scratch.name.clear();
                    rule.target_template.expand_into(&caps, &mut scratch.name);
                    scratch.name.as_str()
                }
            };
            // A target expanding to an invalid name skips the rule.
            if !is_valid_label_name(target) {
                return true;
            }
            scratch.value.clear();
            rule.replacement_template.expand_into(&caps, &mut scratch.value);
            st.set(target, &scratch.value);
        }
        Action::Lowercase => st.set(&rule.target_label, &go_to_lower(val)),
        Action::Uppercase => st.set(&rule.target_label, &go_to_upper(val)),
        Action::HashMod => st.set(&rule.target_label, &hashmod(val, rule.modulus).to_string()),
        Action::LabelMap => {
            for label in st.snapshot() {
                if let Some(caps) = rule.regex.captures(&label.name) {
                    scratch.name.clear();
                    rule.replacement_template.expand_into(&caps, &mut scratch.name);
                    st.set(&scratch.name, &label.value);
                }
            }
        }
        Action::LabelDrop => {
            st.lb.retain(|l| !rule.regex.is_match(&l.name));
            if st.track_order {
                st.set_order.retain(|n| !rule.regex.is_match(n));
            }
        }
        Action::LabelKeep => {
            st.lb.retain(|l| rule.regex.is_match(&l.name));
            if st.track_order {
                st.set_order.retain(|n| rule.regex.is_match(n));
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relabel::{RawRelabelConfig, RelabelError};

    fn rule(yaml_like: &[(&str, &str)]) -> Result<RelabelConfig, RelabelError> {
        let mut r = RawRelabelConfig::default();
        for (k, v) in yaml_like {
            let v = Some(v.to_string());
            match *k {
                "source_labels" => {
                    r.source_labels = Some(v.iter().flat_map(|s| s.split(',')).map(String::from).collect())
                }
                "separator" => r.separator = v,
                "regex" => r.regex = v,
                "modulus" => r.modulus = v.and_then(|s| s.parse().ok()),
                "target_label" => r.target_label = v,
                "replacement" => r.replacement = v,
                "action" => r.action = v,
                other => panic!("unknown key {other}"),
            }
        }
        r.compile()
    }

    #[test]
    fn replace_copies_and_expands() -> Result<(), RelabelError> {
        let rules = [rule(&[
            ("source_labels", "__address__"),
            ("regex", "([^:]+):(\\d+)"),
            ("target_label", "host_${2}"),
            ("replacement", "$1"),
        ])?];
        let out = relabel_labels(&rules, Labels::from_pairs(&[("__address__", "web:80")]));
        assert_eq!(out, Some(Labels::from_pairs(&[("__address__", "web:80"), ("host_80", "web")])));
        Ok(())
    }

    #[test]
    fn keep_and_drop() -> Result<(), RelabelError> {
        let keep = [rule(&[("source_labels", "job"), ("regex", "api|web"), ("action", "keep")])?];
        assert!(relabel_labels(&keep, Labels::from_pairs(&[("job", "web")])).is_some());
        assert!(relabel_labels(&keep, Labels::from_pairs(&[("job", "webx")])).is_none());
        let drop = [rule(&[("source_labels", "job"), ("regex", ""), ("action", "drop")])?];
        assert!(relabel_labels(&drop, Labels::from_pairs(&[("a", "1")])).is_none(), "missing job is \"\"");
        Ok(())
    }

    #[test]
    fn rules_stop_at_the_first_drop() -> Result<(), RelabelError> {
        let rules = [
            rule(&[("source_labels", "a"), ("regex", "1"), ("action", "drop")])?,
            rule(&[("target_label", "never"), ("replacement", "x")])?,
        ];
        let mut lb = Labels::from_pairs(&[("a", "1")]).builder();
        assert!(!relabel(&rules, &mut lb));
        assert_eq!(lb.labels(), Labels::from_pairs(&[("a", "1")]));
        Ok(())
    }

    /// Prometheus visits labels set during the call after the original ones, in set order,
    /// so here `b_x` (set first) loses to `a_x` (set second) although `a_x` sorts first.
    #[test]
    fn labelmap_visits_in_builder_order() -> Result<(), RelabelError> {
        let rules = [
            rule(&[("target_label", "b_x"), ("replacement", "from_b")])?,
            rule(&[("target_label", "a_x"), ("replacement", "from_a")])?,
            rule(&[("regex", "[ab]_x"), ("replacement", "y"), ("action", "labelmap")])?,
        ];
        let out = relabel_labels(&rules, Labels::from_pairs(&[("c", "1")]));
        let want = [("a_x", "from_a"), ("b_x", "from_b"), ("c", "1"), ("y", "from_a")];
        assert_eq!(out, Some(Labels::from_pairs(&want)));
        Ok(())
    }
}
