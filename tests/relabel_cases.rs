//! Runs the relabelling case tables in `tests/data/relabel/` (see its README).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use promtier::model::Labels;
use promtier::relabel::{RawRelabelConfig, RelabelConfig, relabel_labels};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    cases: Vec<Case>,
    #[serde(default)]
    errors: Vec<ErrorCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    input: BTreeMap<String, String>,
    rules: Vec<RawRelabelConfig>,
    #[serde(default)]
    output: Option<BTreeMap<String, String>>,
    #[serde(default)]
    dropped: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorCase {
    name: String,
    rule: RawRelabelConfig,
    error: String,
    field: String,
}

fn labels(map: &BTreeMap<String, String>) -> Labels {
    Labels::from_pairs(&map.iter().collect::<Vec<_>>())
}

/// One behaviour case; `Err` describes how it failed.
fn run_case(case: &Case) -> Result<(), String> {
    let rules = case
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| r.compile().map_err(|e| format!("rule {i} does not compile: {e}")))
        .collect::<Result<Vec<RelabelConfig>, String>>()?;
    let got = relabel_labels(&rules, labels(&case.input));
    let want = match (&case.output, case.dropped) {
        (Some(out), false) => Some(labels(out)),
        (None, true) => None,
        _ => return Err("a case needs exactly one of `output` and `dropped: true`".into()),
    };
    if got == want {
        Ok(())
    } else {
        let show = |l: &Option<Labels>| l.as_ref().map_or("dropped".to_string(), |l| l.to_string());
        Err(format!("got {}, want {}", show(&got), show(&want)))
    }
}

fn run_error_case(case: &ErrorCase) -> Result<(), String> {
    match case.rule.compile() {
        Ok(_) => Err(format!("compiled, want error {:?}", case.error)),
        Err(e) if e.to_string() != case.error || e.field() != case.field => Err(format!(
            "got error {:?} on field {:?}\n      want error {:?} on field {:?}",
            e.to_string(),
            e.field(),
            case.error,
            case.field
        )),
        Err(_) => Ok(()),
    }
}

#[test]
fn relabel_case_tables() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/relabel");
    let mut files: Vec<_> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();

    let (mut behaviour, mut errors, mut failures) = (0, 0, Vec::new());
    for path in &files {
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = fs::read_to_string(path)?;
        let parsed: CaseFile =
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: cannot parse: {e}", path.display()))?;
        let is_bad = file_name.ends_with(".bad.yaml");
        assert!(
            if is_bad { parsed.cases.is_empty() } else { parsed.errors.is_empty() },
            "{file_name}: `*.bad.yaml` files hold only `errors:`, other files only `cases:`"
        );
        for case in &parsed.cases {
            behaviour += 1;
            if let Err(why) = run_case(case) {
                failures.push(format!("{file_name}: {}:\n      {why}", case.name));
            }
        }
        for case in &parsed.errors {
            errors += 1;
            if let Err(why) = run_error_case(case) {
                failures.push(format!("{file_name}: {}:\n      {why}", case.name));
            }
        }
    }
    println!("{behaviour} behaviour cases and {errors} validation cases in {} files", files.len());
    assert!(behaviour >= 50 && errors >= 20, "the case tables went missing: {behaviour} / {errors} cases");
    assert!(failures.is_empty(), "{} of {} cases failed:\n  {}", failures.len(), behaviour + errors, failures.join("\n  "));
    Ok(())
}
