//! The relabelling case tables in `tests/data/relabel/` (format in its README), loaded for the
//! tests that run them through promtier and through promtool.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use promtier::relabel::RawRelabelConfig;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaseFile {
    #[serde(default)]
    pub(crate) cases: Vec<Case>,
    #[serde(default)]
    pub(crate) errors: Vec<ErrorCase>,
}

/// Rules applied to `input` give `output`, or drop the set when `dropped`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) input: BTreeMap<String, String>,
    pub(crate) rules: Vec<RawRelabelConfig>,
    #[serde(default)]
    pub(crate) output: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) dropped: bool,
}

/// A rule that must not compile, the exact message and the field it points at.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorCase {
    pub(crate) name: String,
    pub(crate) rule: RawRelabelConfig,
    pub(crate) error: String,
    pub(crate) field: String,
    /// The first Prometheus version (`major.minor`) that rejects the rule, when older ones
    /// accepted it.
    #[serde(default)]
    pub(crate) prometheus_since: Option<String>,
}

/// `"2.49"` as `(2, 49)`.
pub(crate) fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Every `*.yaml` table with its file name, sorted by name. `*.bad.yaml` files hold only
/// `errors:`, the others only `cases:`.
pub(crate) fn load() -> Vec<(String, CaseFile)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/relabel");
    let mut paths: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
            let file: CaseFile =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {name}: {e}"));
            let bad = name.ends_with(".bad.yaml");
            assert!(
                if bad { file.cases.is_empty() } else { file.errors.is_empty() },
                "{name}: `*.bad.yaml` files hold only `errors:`, other files only `cases:`"
            );
            (name, file)
        })
        .collect()
}

/// A rule as YAML (a flow mapping), keeping which keys are present. Strings are written as JSON
/// strings, which YAML reads as double-quoted scalars.
pub(crate) fn rule_yaml(rule: &RawRelabelConfig) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut fields = Vec::new();
    if let Some(names) = &rule.source_labels {
        fields.push(format!(
            "source_labels: [{}]",
            names.iter().map(|n| quote(n)).collect::<Vec<_>>().join(", ")
        ));
    }
    let strings = [
        ("separator", &rule.separator),
        ("regex", &rule.regex),
        ("target_label", &rule.target_label),
        ("replacement", &rule.replacement),
        ("action", &rule.action),
    ];
    for (key, value) in strings {
        if let Some(v) = value {
            fields.push(format!("{key}: {}", quote(v)));
        }
    }
    if let Some(m) = rule.modulus {
        fields.push(format!("modulus: {m}"));
    }
    format!("{{{}}}", fields.join(", "))
}
