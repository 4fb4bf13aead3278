//! The plan of a topology: every node with its role and address, and which nodes scrape which
//! target — computed with exactly the pipeline the leaves run (discovery, job defaults,
//! `relabel_configs`, the shard rule). With a resize, also which targets would move. A push tier
//! gets its own part (`push`): its ring, balance, key owners and what a resize of it moves.

mod push;

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::scrape::{JobDiscovery, finish_target, relabel_target};
use crate::topology::redact::redact_url;
use crate::topology::{LeafGroup, NodeRole, PUSH_TIER, Topology};

pub use push::{NodeKeys, PlanBalance, PlanPush, PlanPushKey, PushResize};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanNode {
    pub name: String,
    pub role: &'static str,
    pub group: String,
    /// Shard index within the group (leaves only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// Replica letter (leaves and globals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlanTarget {
    pub job: String,
    /// The target's address (`__address__` after relabelling).
    pub target: String,
    pub group: String,
    pub shard: u32,
    /// The leaves that scrape it (every replica of its shard).
    pub nodes: Vec<String>,
}

/// A target that a resize would move to another shard.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanMove {
    pub job: String,
    pub target: String,
    pub group: String,
    pub from_shard: u32,
    pub to_shard: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Resize {
    pub group: String,
    pub from_shards: u32,
    pub to_shards: u32,
    pub targets: usize,
    pub moves: Vec<PlanMove>,
}

/// A store a global asks for older data (`remote_read`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanRemoteRead {
    pub global: String,
    pub name: String,
    /// The URL with any password replaced.
    pub url: String,
    pub read_recent: bool,
    pub required_matchers: Vec<(String, String)>,
    pub filter_external_labels: bool,
    pub remote_timeout: String,
}

/// What a global keeps: raw data for its retention, rollups of each resolution for theirs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanStorage {
    pub global: String,
    pub raw_retention: String,
    /// (resolution, retention) of each rollup level, finest first.
    pub rollups: Vec<(String, String)>,
}

/// A remote-storage endpoint a node group sends to (each of its nodes runs its own queue).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanRemote {
    /// The leaf group or global whose nodes send.
    pub group: String,
    pub name: String,
    /// The URL with any password replaced.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub nodes: Vec<PlanNode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_read: Vec<PlanRemoteRead>,
    pub targets: Vec<PlanTarget>,
    /// Targets that discovery found but `relabel_configs` dropped or that are unusable.
    pub dropped: Vec<String>,
    /// Problems met while reading discovery files.
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resize: Vec<Resize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_write: Vec<PlanRemote>,
    pub storage: Vec<PlanStorage>,
    /// The push tier, when the topology has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PlanPush>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("--resize {0:?}: want GROUP=N with N >= 1")]
    BadResize(String),
    #[error("--resize: no leaf group {0:?}")]
    UnknownGroup(String),
    #[error("{0}: the topology has no push: tier")]
    NoPushTier(String),
    #[error("--resize {arg}: fewer push nodes than the replication factor ({replication_factor})")]
    PushBelowReplication { arg: String, replication_factor: u32 },
    #[error("--push-key {arg:?}: {reason}")]
    BadPushKey { arg: String, reason: String },
}

/// Computes the plan of `topology`, plus the effect of each `GROUP=N` resize (`push=N` resizes
/// the push tier) and the owners of each `--push-key` (`LABEL=VALUE,…`).
pub fn plan(topology: &Topology, resizes: &[String], push_keys: &[String]) -> Result<Plan, PlanError> {
    let nodes = topology
        .nodes
        .iter()
        .map(|n| {
            let (group, shard, replica) = match &n.role {
                NodeRole::Leaf { group, shard, replica } => {
                    (group.clone(), Some(*shard), Some(crate::topology::replica_letter(*replica)))
                }
                NodeRole::Global { name, replica } => {
                    (name.clone(), None, Some(crate::topology::replica_letter(*replica)))
                }
                NodeRole::Push { .. } => ("push".to_string(), None, None),
                NodeRole::Demo { .. } => ("demo".to_string(), None, None),
            };
            PlanNode {
                name: n.name.clone(),
                role: n.role.kind(),
                group,
                shard,
                replica,
                listen: n.listen.clone(),
            }
        })
        .collect();
    let remote_read = topology
        .globals
        .iter()
        .flat_map(|g| {
            g.remote_read.iter().map(|r| PlanRemoteRead {
                global: g.name.clone(),
                name: r.display_name(),
                url: redact_url(&r.url),
                read_recent: r.read_recent,
                required_matchers: r.required_matchers.clone(),
                filter_external_labels: r.filter_external_labels,
                remote_timeout: humantime::format_duration(r.remote_timeout).to_string(),
            })
        })
        .collect();
    let mut warnings = Vec::new();
    let mut dropped = Vec::new();
    let mut targets = Vec::new();
    for g in &topology.leaf_groups {
        targets.extend(assign(topology, g, g, &mut dropped, &mut warnings));
    }
    targets.sort();
    let mut resize = Vec::new();
    let mut push_resizes = Vec::new();
    for r in resizes {
        let (name, n) = r.split_once('=').ok_or_else(|| PlanError::BadResize(r.clone()))?;
        let n: u32 =
            n.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| PlanError::BadResize(r.clone()))?;
        // `push` is the push tier's name unless a leaf group has it (only possible without one).
        if name.trim() == PUSH_TIER && topology.leaf_group(PUSH_TIER).is_none() {
            push_resizes.push((r.clone(), n));
            continue;
        }
        let g = topology.leaf_group(name.trim()).ok_or_else(|| PlanError::UnknownGroup(name.to_string()))?;
        let mut resized = g.clone();
        resized.sharder = crate::shard::Sharder::new(g.sharder.strategy(), n)
            .and_then(|s| s.with_by(g.sharder.by().to_vec()))
            .map_err(|_| PlanError::BadResize(r.clone()))?;
        let after = assign(topology, g, &resized, &mut Vec::new(), &mut Vec::new());
        let before: BTreeMap<(&str, &str), u32> = targets
            .iter()
            .filter(|t| t.group == g.name)
            .map(|t| ((t.job.as_str(), t.target.as_str()), t.shard))
            .collect();
        let moves = after
            .iter()
            .filter_map(|t| {
                let from = *before.get(&(t.job.as_str(), t.target.as_str()))?;
                (from != t.shard).then(|| PlanMove {
                    job: t.job.clone(),
                    target: t.target.clone(),
                    group: g.name.clone(),
                    from_shard: from,
                    to_shard: t.shard,
                })
            })
            .collect();
        resize.push(Resize {
            group: g.name.clone(),
            from_shards: g.shards(),
            to_shards: n,
            targets: after.len(),
            moves,
        });
    }
    let sends = topology
        .leaf_groups
        .iter()
        .map(|g| (&g.name, &g.remote_write))
        .chain(topology.globals.iter().map(|g| (&g.name, &g.remote_write)));
    let remote_write = sends
        .flat_map(|(group, rws)| {
            rws.iter().map(move |rw| PlanRemote {
                group: group.clone(),
                name: crate::remote::send::queue_name(rw),
                url: redact_url(&rw.url),
            })
        })
        .collect();
    let storage = topology
        .globals
        .iter()
        .map(|g| {
            let fmt = |d: std::time::Duration| crate::model::format_duration(d);
            let raw = topology
                .nodes
                .iter()
                .find(|n| matches!(&n.role, NodeRole::Global { name, .. } if *name == g.name))
                .map(|n| n.retention)
                .unwrap_or_default();
            PlanStorage {
                global: g.name.clone(),
                raw_retention: fmt(raw),
                rollups: g
                    .downsample
                    .iter()
                    .map(|d| (fmt(d.resolution), fmt(d.retention.map_or(raw, |r| r.max(raw)))))
                    .collect(),
            }
        })
        .collect();
    let push = push::plan_push(topology, &push_resizes, push_keys)?;
    Ok(Plan { nodes, remote_read, targets, dropped, warnings, resize, remote_write, storage, push })
}

/// One line about a `remote_write` entry: name, URL (password replaced), protocol, disk bound.
pub fn describe_remote_write(r: &crate::topology::RemoteWriteConfig) -> String {
    format!(
        "remote_write {:?} {} ({}, WAL backlog kept up to {} bytes)",
        crate::remote::send::queue_name(r),
        redact_url(&r.url),
        r.protobuf_message.as_str(),
        r.queue.max_backlog_bytes
    )
}

/// One line about a `remote_read` entry: name, URL (password replaced), when it is asked.
pub fn describe_remote_read(r: &crate::topology::RemoteReadConfig) -> String {
    let when = if r.read_recent { "every query (read_recent)" } else { "ranges older than local data" };
    let mut s = format!("remote_read {:?} {} for {when}", r.display_name(), redact_url(&r.url));
    if !r.required_matchers.is_empty() {
        let ms: Vec<String> = r.required_matchers.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
        s.push_str(&format!(", only for selectors with {{{}}}", ms.join(", ")));
    }
    if !r.filter_external_labels {
        s.push_str(", external labels not used as matchers");
    }
    s.push_str(&format!(", timeout {}", humantime::format_duration(r.remote_timeout)));
    s
}

/// Assigns the targets of `group`'s jobs to shards using `sharding` (the group itself, or a
/// resized copy of it).
fn assign(
    topology: &Topology,
    group: &LeafGroup,
    sharding: &LeafGroup,
    dropped: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Vec<PlanTarget> {
    let mut out = Vec::new();
    for job in topology.jobs.iter().filter(|j| group.jobs.contains(&j.job_name)) {
        let mut d = JobDiscovery::new(job);
        let (groups, errors) = d.poll();
        warnings.extend(errors.iter().map(|e| format!("job {}: {e}", job.job_name)));
        for tg in groups.unwrap_or_default() {
            for address in &tg.targets {
                let (discovered, lb) = match relabel_target(job, &tg, address) {
                    Ok(x) => x,
                    Err(d) => {
                        dropped.push(format!("job {} target {address}: {}", job.job_name, d.reason));
                        continue;
                    }
                };
                let shard = sharding.sharder.shard_of_builder(&lb);
                match finish_target(job, &tg, discovered, lb) {
                    Ok(t) => {
                        let nodes = topology
                            .members(&group.name)
                            .filter(|n| matches!(n.role, NodeRole::Leaf { shard: s, .. } if s == shard))
                            .map(|n| n.name.clone())
                            .collect();
                        out.push(PlanTarget {
                            job: job.job_name.clone(),
                            target: t.full.get("__address__").unwrap_or(address).to_string(),
                            group: group.name.clone(),
                            shard,
                            nodes,
                        });
                    }
                    Err(d) => dropped.push(format!("job {} target {address}: {}", job.job_name, d.reason)),
                }
            }
        }
    }
    out
}

/// The plan as a human-readable report.
pub fn render_text(p: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "NODES");
    let _ =
        writeln!(s, "  {:<18} {:<7} {:<12} {:>5} {:>7}  listen", "name", "role", "group", "shard", "replica");
    for n in &p.nodes {
        let shard = n.shard.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
        let replica = n.replica.clone().unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "  {:<18} {:<7} {:<12} {:>5} {:>7}  {}",
            n.name, n.role, n.group, shard, replica, n.listen
        );
    }
    let _ = writeln!(s, "\nTARGETS ({})", p.targets.len());
    let _ = writeln!(s, "  {:<14} {:<28} {:<12} {:>5}  scraped by", "job", "target", "group", "shard");
    for t in &p.targets {
        let _ = writeln!(
            s,
            "  {:<14} {:<28} {:<12} {:>5}  {}",
            t.job,
            t.target,
            t.group,
            t.shard,
            t.nodes.join(", ")
        );
    }
    if !p.dropped.is_empty() {
        let _ = writeln!(s, "\nDROPPED ({})", p.dropped.len());
        for d in &p.dropped {
            let _ = writeln!(s, "  {d}");
        }
    }
    if !p.remote_read.is_empty() {
        let _ = writeln!(s, "\nREMOTE READ ({})", p.remote_read.len());
        for r in &p.remote_read {
            let when = if r.read_recent { "all ranges" } else { "older than local data" };
            let _ = writeln!(
                s,
                "  {:<12} {:<18} {}  ({when}, timeout {})",
                r.global, r.name, r.url, r.remote_timeout
            );
        }
    }
    for w in &p.warnings {
        let _ = writeln!(s, "\nwarning: {w}");
    }
    if !p.storage.is_empty() {
        let _ = writeln!(s, "\nSTORAGE (what each global keeps)");
        for g in &p.storage {
            let rollups: Vec<String> =
                g.rollups.iter().map(|(res, ret)| format!("{res} rollups {ret}")).collect();
            let rollups = if rollups.is_empty() { "no rollups".to_string() } else { rollups.join(", ") };
            let _ = writeln!(s, "  {:<14} raw {}; {rollups}", g.global, g.raw_retention);
        }
    }
    if !p.remote_write.is_empty() {
        let _ = writeln!(s, "\nREMOTE WRITE ({})", p.remote_write.len());
        let _ = writeln!(s, "  {:<14} {:<16} url", "from", "name");
        for r in &p.remote_write {
            let _ = writeln!(s, "  {:<14} {:<16} {}", r.group, r.name, r.url);
        }
    }
    if let Some(push) = &p.push {
        push::render_ring(push, &mut s);
    }
    for r in &p.resize {
        let pct = if r.targets == 0 { 0.0 } else { 100.0 * r.moves.len() as f64 / r.targets as f64 };
        let _ = writeln!(
            s,
            "\nRESIZE {} from {} to {} shards: {} of {} targets move ({pct:.1}%)",
            r.group,
            r.from_shards,
            r.to_shards,
            r.moves.len(),
            r.targets
        );
        for m in &r.moves {
            let _ = writeln!(s, "  {:<14} {:<28} shard {} -> {}", m.job, m.target, m.from_shard, m.to_shard);
        }
    }
    if let Some(push) = &p.push {
        push::render_resizes(push, &mut s);
    }
    s
}
