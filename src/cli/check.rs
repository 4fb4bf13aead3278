//! `promtier check`: validates a topology file with exactly the loader the nodes use, and says
//! which accepted keys are not implemented yet (none at present).

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::topology::{self, NodeRole, TopologyError};

pub(super) fn run(file: &Path) -> anyhow::Result<ExitCode> {
    match topology::load(file) {
        Ok(t) => {
            let count = |kind: &str| t.nodes.iter().filter(|n| n.role.kind() == kind).count();
            let targets: usize =
                t.jobs.iter().map(|j| j.static_configs.iter().map(|g| g.targets.len()).sum::<usize>()).sum();
            let file_sd = t.jobs.iter().filter(|j| !j.file_sd_configs.is_empty()).count();
            let demo = t.nodes.iter().filter(|n| matches!(n.role, NodeRole::Demo { .. })).count();
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{}: valid: cluster {:?}, {} jobs ({} static targets{}), {} leaf groups, {} leaves, {} globals, {} push nodes{}",
                file.display(),
                t.cluster,
                t.jobs.len(),
                targets,
                if file_sd > 0 { format!(", {file_sd} with file_sd") } else { String::new() },
                t.leaf_groups.len(),
                count("leaf"),
                count("global"),
                count("push"),
                if demo > 0 { format!(", {demo} demo targets") } else { String::new() },
            );
            for g in &t.leaf_groups {
                for r in &g.remote_write {
                    let _ = writeln!(
                        out,
                        "  leaf group {:?} (each node): {}",
                        g.name,
                        crate::plan::describe_remote_write(r)
                    );
                }
            }
            for g in &t.globals {
                for r in &g.remote_write {
                    let _ = writeln!(out, "  global {:?}: {}", g.name, crate::plan::describe_remote_write(r));
                }
                for r in &g.remote_read {
                    let _ = writeln!(out, "  global {:?}: {}", g.name, crate::plan::describe_remote_read(r));
                }
            }
            super::emit(&out)?;
            for w in &t.warnings {
                eprintln!("warning: {}", w.render(file));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ TopologyError::Invalid { .. }) => {
            eprintln!("{e}");
            let n = e.problems().len();
            eprintln!("{}: {n} problem{}", file.display(), if n == 1 { "" } else { "s" });
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
