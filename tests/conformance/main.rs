//! Conformance runs over third-party test material, read in place from `PROMTIER_PEER_DIR` and
//! never copied into the repository: `scripts/conformance.sh DIR`, or
//! `PROMTIER_PEER_DIR=DIR cargo test --test conformance [SUITE...]`.
//!
//! Every case ends as passed, failed or skipped (skips carry a named reason). A case that passes
//! only because we deliberately share Prometheus's leniency where the material expects an error
//! is counted apart as "lenient", with its reason: never a silent pass. The run fails when any
//! case fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Declares the suite modules and collects their suites: adding a module name here adds a suite.
macro_rules! suite_modules {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*

        fn all_suites() -> Vec<Suite> {
            let mut suites = Vec::new();
            $(suites.extend_from_slice($module::SUITES);)*
            suites
        }
    };
}

suite_modules!(exposition, federate, promql);

/// One named suite: runs its cases against the peer directory and records the outcomes. A
/// report-only suite (material for experimental features) prints its failures but does not fail
/// the run.
#[derive(Clone, Copy)]
pub(crate) struct Suite {
    pub(crate) name: &'static str,
    pub(crate) run: fn(&Path, &mut Report),
    pub(crate) report_only: bool,
}

/// Outcomes of one suite's cases.
#[derive(Default)]
pub(crate) struct Report {
    passed: usize,
    failed: Vec<(String, String)>,
    skipped: Vec<(String, String)>,
    lenient: Vec<(String, String)>,
    notes: Vec<(String, String)>,
}

impl Report {
    pub(crate) fn pass(&mut self) {
        self.passed += 1;
    }

    pub(crate) fn fail(&mut self, case: impl Into<String>, reason: impl Into<String>) {
        self.failed.push((case.into(), reason.into()));
    }

    pub(crate) fn skip(&mut self, case: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push((case.into(), reason.into()));
    }

    /// Accepted although the material expects an error, because Prometheus accepts it too.
    pub(crate) fn lenient(&mut self, case: impl Into<String>, reason: impl Into<String>) {
        self.lenient.push((case.into(), reason.into()));
    }

    /// A passed case worth a remark (e.g. where we knowingly differ from Prometheus).
    pub(crate) fn note(&mut self, case: impl Into<String>, remark: impl Into<String>) {
        self.notes.push((case.into(), remark.into()));
    }

    fn print(&self, suite: &str, report_only: bool) {
        let tag = if report_only { " (report only)" } else { "" };
        println!(
            "suite {suite}{tag}: {} passed, {} failed, {} skipped, {} lenient like Prometheus",
            self.passed,
            self.failed.len(),
            self.skipped.len(),
            self.lenient.len()
        );
        for (label, list) in [("FAILED", &self.failed), ("lenient", &self.lenient), ("note", &self.notes)] {
            for (case, reason) in list {
                println!("  {label} {case}: {reason}");
            }
        }
        // Skips share a few reasons; one line per reason keeps the listing readable.
        let mut reasons: Vec<&str> = Vec::new();
        for (_, reason) in &self.skipped {
            if !reasons.contains(&reason.as_str()) {
                reasons.push(reason);
            }
        }
        for reason in reasons {
            let cases: Vec<&str> =
                self.skipped.iter().filter(|(_, r)| r == reason).map(|(c, _)| c.as_str()).collect();
            println!("  skipped {} ({reason}): {}", cases.len(), cases.join(", "));
        }
    }
}

fn main() -> ExitCode {
    let Some(dir) = std::env::var_os("PROMTIER_PEER_DIR").map(PathBuf::from) else {
        eprintln!(
            "conformance: PROMTIER_PEER_DIR is not set. It must name the shared peer-material folder, \
             e.g. `PROMTIER_PEER_DIR=../shared/peer cargo test --test conformance` or \
             `scripts/conformance.sh ../shared/peer`."
        );
        return ExitCode::from(2);
    };
    if !dir.is_dir() {
        eprintln!("conformance: PROMTIER_PEER_DIR={} is not a directory", dir.display());
        return ExitCode::from(2);
    }
    // Arguments that are not flags select suites by name, or a family of suites by the part
    // before a slash (`promql` runs `promql/functions`, …); cargo passes its own flags through.
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let selected = |name: &str| {
        wanted.is_empty()
            || wanted.iter().any(|w| w == name || name.split_once('/').is_some_and(|(family, _)| family == w))
    };
    let mut failed = false;
    let mut totals: Vec<(&str, [usize; 3])> = Vec::new();
    for suite in all_suites() {
        if !selected(suite.name) {
            continue;
        }
        let mut report = Report::default();
        (suite.run)(&dir, &mut report);
        report.print(suite.name, suite.report_only);
        if !suite.report_only {
            failed |= !report.failed.is_empty();
        }
        if let Some((family, _)) = suite.name.split_once('/') {
            let counts = [report.passed, report.failed.len(), report.skipped.len()];
            match totals.iter_mut().find(|(f, _)| *f == family) {
                Some((_, t)) => (0..3).for_each(|i| t[i] += counts[i]),
                None => totals.push((family, counts)),
            }
        }
    }
    for (family, [p, f, s]) in totals {
        println!("total {family}: {p} passed, {f} failed, {s} skipped");
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
