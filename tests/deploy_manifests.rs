//! The deployment files checked against what they deploy (docs/deployment.md).
//!
//! - `config/kubernetes/` ([`kubernetes`]): every StatefulSet, Service and PodDisruptionBudget
//!   against the topology its ConfigMap carries, the `Dockerfile` ([`image`]) and the binary's
//!   argument parser. Each pod's start command is run with a stand-in `promtier` ([`launch`]) to
//!   see which node that pod would be, and the real binary is asked whether it accepts the
//!   arguments.
//! - `config/systemd/` ([`systemd`]): the units' settings, their `ExecStart` against the binary,
//!   their writable paths against the example topology's data directories, and `ExecReload`
//!   against how a running node takes SIGHUP.
//!
//! Every check reports into one list of problems (all of them, not the first). Each area also
//! has a test that breaks copies of the files on purpose and expects the matching problem, so
//! the checks are seen to bite.

#[path = "common/mod.rs"]
mod common;
#[path = "deploy_manifests/image.rs"]
mod image;
#[path = "deploy_manifests/kubernetes.rs"]
mod kubernetes;
#[path = "deploy_manifests/launch.rs"]
mod launch;
#[path = "deploy_manifests/objects.rs"]
mod objects;
#[path = "deploy_manifests/systemd.rs"]
mod systemd;

use std::path::Path;

/// The roles that run as their own process, each with a systemd unit and StatefulSets.
const ROLES: [&str; 3] = ["leaf", "global", "push"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Problems found, each with where it is.
#[derive(Debug, Default)]
struct Report(Vec<String>);

impl Report {
    fn add(&mut self, at: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{at}: {message}"));
    }

    fn assert_clean(&self, what: &str) {
        assert!(self.0.is_empty(), "{what}: {} problem(s):\n  {}", self.0.len(), self.0.join("\n  "));
    }

    fn assert_reports(&self, case: &str, expected: &str) {
        assert!(
            self.0.iter().any(|p| p.contains(expected)),
            "{case}: expected a problem containing {expected:?}, got:\n  {}",
            self.0.join("\n  ")
        );
    }
}
