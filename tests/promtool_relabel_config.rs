//! Holds promtier's relabel validation against the real Prometheus config loader (`promtool
//! check config`): every rule of the behaviour tables in `tests/data/relabel/` must load, and
//! every rule of the `*.bad.yaml` tables must be rejected.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::process::Command;

use common::{promtool_binary, relabel_table};
use promtier::relabel::RawRelabelConfig;

/// A config with one scrape job per rule list.
fn config(jobs: &[Vec<&RawRelabelConfig>]) -> String {
    let mut out = String::from("scrape_configs:\n");
    for (i, rules) in jobs.iter().enumerate() {
        // No targets: promtool would relabel static targets and reject rules that delete
        // `__address__`, which is about the targets, not the rules.
        let _ = writeln!(out, "  - job_name: case_{i}\n    relabel_configs:");
        for rule in rules {
            let _ = writeln!(out, "      - {}", relabel_table::rule_yaml(rule));
        }
    }
    out
}

/// Runs `promtool check config` on `config`: `Ok(output)` when it loads, `Err(output)` if not.
fn promtool_check(config: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let path = dir.path().join("prometheus.yml");
    fs::write(&path, config).expect("write the config");
    let out = Command::new(promtool_binary())
        .args(["check", "config", "--syntax-only"])
        .arg(&path)
        .output()
        .expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(text) } else { Err(text) }
}

#[test]
fn prometheus_accepts_every_rule_promtier_accepts() {
    let files = relabel_table::load();
    let jobs: Vec<Vec<&RawRelabelConfig>> =
        files.iter().flat_map(|(_, t)| &t.cases).map(|c| c.rules.iter().collect()).collect();
    assert!(jobs.len() >= 50, "the case tables went missing");
    let config = config(&jobs);
    if let Err(out) = promtool_check(&config) {
        panic!("promtool rejects rules that promtier accepts:\n{out}\n--- config ---\n{config}");
    }
}

/// The installed promtool's `(major, minor)` version.
fn promtool_version() -> (u32, u32) {
    let out = Command::new(promtool_binary()).arg("--version").output().expect("run promtool --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "promtool, version 2.42.0+ds (branch: …)"
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .and_then(relabel_table::parse_version)
        .unwrap_or_else(|| panic!("cannot read the version from `promtool --version`: {text}"))
}

#[test]
fn prometheus_rejects_every_rule_promtier_rejects() {
    let files = relabel_table::load();
    let installed = promtool_version();
    let mut accepted = Vec::new();
    let (mut count, mut skipped) = (0, 0);
    for (file, table) in &files {
        for case in &table.errors {
            count += 1;
            let since = case.prometheus_since.as_deref().map(|v| {
                relabel_table::parse_version(v)
                    .unwrap_or_else(|| panic!("{file}: {}: bad version {v:?}", case.name))
            });
            if since.is_some_and(|since| since > installed) {
                skipped += 1;
                continue;
            }
            let config = config(&[vec![&case.rule]]);
            if let Ok(out) = promtool_check(&config) {
                accepted.push(format!(
                    "{file}: {}: {}\n    promtool: {}",
                    case.name,
                    relabel_table::rule_yaml(&case.rule),
                    out.trim()
                ));
            }
        }
    }
    println!("{count} error cases; {skipped} skipped as newer than promtool {}.{}", installed.0, installed.1);
    assert!(count >= 20, "the error tables went missing");
    assert!(
        accepted.is_empty(),
        "promtool accepts rules that promtier rejects:\n  {}",
        accepted.join("\n  ")
    );
}
