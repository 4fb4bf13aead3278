//! Our own PromQL behaviour tests: every script in `tests/data/promql` (same language as
//! Prometheus's `.test` files) must pass completely — no failures and no skips.

use std::fs;
use std::path::Path;

use promtier::promqltest::runner::{Outcome, run_script, test_engine};

#[test]
fn promql_scripts_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/promql");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scripts in {}", dir.display());
    let engine = test_engine();
    let mut problems = Vec::new();
    let mut passed = 0;
    for f in &files {
        let name = f.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_string();
        let text = fs::read_to_string(f).unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
        for c in run_script(&name, &text, &engine) {
            match c.outcome {
                Outcome::Passed => passed += 1,
                Outcome::Failed(why) => problems.push(format!("FAILED {} {}: {why}", c.case, c.query)),
                Outcome::Skipped(why) => problems.push(format!("SKIPPED {} {}: {why}", c.case, c.query)),
            }
        }
    }
    assert!(problems.is_empty(), "{} passed, {} problems:\n{}", passed, problems.len(), problems.join("\n"));
    println!("{passed} evals passed in {} scripts", files.len());
}
