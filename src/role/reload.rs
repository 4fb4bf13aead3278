//! Live reload of the topology file (`SIGHUP`, `POST /-/reload`): the node reads the file again,
//! validates it with the same loader as at start, and applies what changed for it — on a leaf its
//! group's jobs and targets and the shard rule (shard count, sharding labels), through
//! `ScrapeManager::reconfigure`, without a restart and without a gap for the targets it keeps. A
//! change it cannot apply live is refused with the reason and the running configuration stays:
//! the node's own address, data directory, labels, retention and `web:`, a leaf group's
//! `remote_write`, and anything of a global or a push node (their sources, dedup and ring are
//! read at start only, today). An invalid file is refused the same way.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::leaf::ShardFilter;
use crate::scrape::ScrapeManager;
use crate::topology::{Node, NodeRole, Topology};

/// Why a reload was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("the topology file is not valid: {0}")]
    Invalid(String),
    #[error("node {0:?} is not in the new topology")]
    NodeGone(String),
    #[error("these changes need a restart of {node}: {}", .changes.join("; "))]
    NeedsRestart { node: String, changes: Vec<String> },
}

impl ReloadError {
    /// The HTTP status `POST /-/reload` answers with.
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            ReloadError::Invalid(_) => axum::http::StatusCode::BAD_REQUEST,
            ReloadError::NodeGone(_) | ReloadError::NeedsRestart { .. } => axum::http::StatusCode::CONFLICT,
        }
    }
}

/// One node's reload: its file, its running topology, and what applies changes.
pub struct Reloader {
    file: PathBuf,
    node: String,
    current: tokio::sync::Mutex<Topology>,
    scrapes: Option<Arc<ScrapeManager>>,
}

impl Reloader {
    /// For `node` running `topology`; `scrapes` is a leaf's scrape manager.
    pub fn new(topology: &Topology, node: &Node, scrapes: Option<Arc<ScrapeManager>>) -> Reloader {
        Reloader {
            file: topology.source.clone(),
            node: node.name.clone(),
            current: tokio::sync::Mutex::new(topology.clone()),
            scrapes,
        }
    }

    /// Reads the file again and applies it; what changed, or why nothing was.
    pub async fn reload(&self) -> Result<String, ReloadError> {
        let mut current = self.current.lock().await;
        let new = crate::topology::load(&self.file).map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let node = new.node(&self.node).ok_or_else(|| ReloadError::NodeGone(self.node.clone()))?;
        let old_node = current.node(&self.node).ok_or_else(|| ReloadError::NodeGone(self.node.clone()))?;
        let mut changes = node_changes(old_node, node);
        let summary = match (&node.role, &self.scrapes) {
            (NodeRole::Leaf { group, shard, .. }, Some(scrapes)) => {
                let (Some(old_g), Some(new_g)) = (current.leaf_group(group), new.leaf_group(group)) else {
                    return Err(ReloadError::NodeGone(self.node.clone()));
                };
                if format!("{:?}", old_g.remote_write) != format!("{:?}", new_g.remote_write) {
                    changes.push(format!("leaf group {group:?}: remote_write"));
                }
                if !changes.is_empty() {
                    return Err(ReloadError::NeedsRestart { node: self.node.clone(), changes });
                }
                let jobs: Vec<_> =
                    new.jobs.iter().filter(|j| new_g.jobs.contains(&j.job_name)).cloned().collect();
                let filter = Arc::new(ShardFilter {
                    sharder: new_g.sharder.clone(),
                    shard: *shard,
                    group: group.clone(),
                });
                let r = scrapes.reconfigure(jobs, filter).await;
                format!(
                    "jobs added {:?}, changed {:?}, removed {:?}, kept {:?}; shard rule: {} shards",
                    r.added,
                    r.changed,
                    r.removed,
                    r.kept,
                    new_g.shards()
                )
            }
            (role, _) => {
                if role_config(&current, role) != role_config(&new, role) {
                    changes.push(format!(
                        "the {} configuration (a {} applies a changed topology only at a restart today)",
                        role.kind(),
                        role.kind()
                    ));
                }
                if !changes.is_empty() {
                    return Err(ReloadError::NeedsRestart { node: self.node.clone(), changes });
                }
                "nothing changed for this node".to_string()
            }
        };
        *current = new;
        Ok(summary)
    }

    /// Reloads on every `SIGHUP` until `shutdown`, logging the outcome.
    pub async fn on_sighup(self: Arc<Self>, shutdown: CancellationToken) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload");
                return;
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    self.log(&self.reload().await, "SIGHUP");
                }
            }
        }
    }

    fn log(&self, r: &Result<String, ReloadError>, trigger: &str) {
        match r {
            Ok(s) => tracing::info!(node = %self.node, %trigger, changes = %s, "topology reloaded"),
            Err(e) => {
                tracing::error!(node = %self.node, %trigger, error = %e, "topology not reloaded; the running configuration stays")
            }
        }
    }

    /// `POST /-/reload`.
    pub fn router(self: Arc<Self>) -> axum::Router {
        use axum::response::IntoResponse;
        axum::Router::new().route(
            "/-/reload",
            axum::routing::post(move || {
                let me = self.clone();
                async move {
                    let r = me.reload().await;
                    me.log(&r, "POST /-/reload");
                    match r {
                        Ok(s) => (axum::http::StatusCode::OK, format!("reloaded: {s}\n")).into_response(),
                        Err(e) => (e.status(), format!("not reloaded: {e}\n")).into_response(),
                    }
                }
            }),
        )
    }
}

/// What changed in a node's own settings (none of which can change while it runs).
fn node_changes(old: &Node, new: &Node) -> Vec<String> {
    let mut out = Vec::new();
    if old.role != new.role {
        out.push("its role".into());
    }
    if old.listen != new.listen || old.advertise != new.advertise {
        out.push("its address".into());
    }
    if old.data_dir != new.data_dir {
        out.push("its data directory".into());
    }
    if old.external_labels != new.external_labels {
        out.push("its external labels".into());
    }
    if old.retention != new.retention {
        out.push("its retention".into());
    }
    if old.web != new.web {
        out.push("its web: settings".into());
    }
    out
}

/// A global's or push node's whole configuration, as text to compare.
fn role_config(t: &Topology, role: &NodeRole) -> String {
    match role {
        NodeRole::Global { name, .. } => match t.global(name) {
            Some(g) => format!("{g:?} {:?}", t.sources(g)),
            None => String::new(),
        },
        NodeRole::Push { .. } => format!(
            "{:?} {:?}",
            t.push,
            t.nodes.iter().filter(|n| matches!(n.role, NodeRole::Push { .. })).collect::<Vec<_>>()
        ),
        NodeRole::Leaf { .. } | NodeRole::Demo { .. } => String::new(),
    }
}
