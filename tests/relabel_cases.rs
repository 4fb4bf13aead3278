//! Runs the relabelling case tables in `tests/data/relabel/` (see its README) through
//! promtier's relabel engine and config validation.

mod common;

use std::collections::BTreeMap;

use common::relabel_table::{self, Case, ErrorCase};
use promtier::model::Labels;
use promtier::relabel::{RelabelConfig, relabel_labels};

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
fn relabel_case_tables() {
    let files = relabel_table::load();
    let (mut behaviour, mut errors, mut failures) = (0, 0, Vec::new());
    for (file, table) in &files {
        for case in &table.cases {
            behaviour += 1;
            if let Err(why) = run_case(case) {
                failures.push(format!("{file}: {}:\n      {why}", case.name));
            }
        }
        for case in &table.errors {
            errors += 1;
            if let Err(why) = run_error_case(case) {
                failures.push(format!("{file}: {}:\n      {why}", case.name));
            }
        }
    }
    println!("{behaviour} behaviour cases and {errors} validation cases in {} files", files.len());
    assert!(behaviour >= 50 && errors >= 20, "the case tables went missing: {behaviour} / {errors} cases");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}",
        failures.len(),
        behaviour + errors,
        failures.join("\n  ")
    );
}
