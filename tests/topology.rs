//! Topology loading against the files in `tests/data/topology/`: every `*.bad.yaml` must produce
//! exactly the problems listed in its `# expect: LINE:COLUMN: message` header lines (in order),
//! and every `*.good.yaml` and every example topology must load.

use std::path::{Path, PathBuf};

use promtier::topology;

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/topology")
}

#[test]
fn bad_files_report_every_problem_with_position() {
    let bad = files(&data_dir(), ".bad.yaml");
    assert!(bad.len() >= 15, "expected a table of bad files, found {}", bad.len());
    let mut failures = Vec::new();
    for f in &bad {
        let text = std::fs::read_to_string(f).expect("read");
        let expected: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# expect: ")).map(str::trim).collect();
        assert!(!expected.is_empty(), "{}: no '# expect:' lines", f.display());
        let got: Vec<String> = match topology::load(f) {
            Ok(_) => vec!["<loaded without error>".to_string()],
            Err(e) => {
                // The rendered error starts every line with the file name.
                let prefix = format!("{}:", f.display());
                for line in e.to_string().lines() {
                    assert!(line.starts_with(&prefix), "line without file prefix: {line}");
                }
                e.problems().iter().map(|p| p.to_string()).collect()
            }
        };
        if got != expected {
            failures.push(format!("{}:\n  expected: {expected:#?}\n  got:      {got:#?}", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn good_files_and_examples_load() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies");
    let mut all = files(&data_dir(), ".good.yaml");
    all.extend(files(&examples, ".yaml"));
    assert!(all.len() >= 3);
    for f in all {
        if let Err(e) = topology::load(&f) {
            panic!("{} should load:\n{e}", f.display());
        }
    }
}
