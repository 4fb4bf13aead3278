//! Live reload of the topology file (`SIGHUP`, `POST /-/reload`): the node reads the file again,
//! validates it with the same loader as at start, and applies what changed for it through its
//! role's [`LiveConfig`] — a leaf its group's jobs and targets and the shard rule (shard count,
//! sharding labels), through `ScrapeManager::reconfigure`, without a gap for the targets it
//! keeps; a global its sources (pullers added, stopped, or kept running untouched), its pull
//! settings (every puller restarted, resuming from its cursor) and its failover settings
//! (replica sets and replicas, `failover_timeout`, `min_coverage`), through
//! `GlobalIngest::reconfigure`. A change it cannot apply live is refused with the reason and the
//! running configuration stays: the node's own address, data directory, labels, retention and
//! `web:`, the fast link's page bounds, a leaf group's `remote_write`, a global's dedup mode,
//! replica label, `remote_write`, `remote_read` and `downsample`, and anything of a push node
//! (its ring is read at start only, today). An invalid file is refused the same way.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

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

/// What [`LiveConfig::apply`] returns: a summary of what changed.
pub type Applied<'a> = Pin<Box<dyn Future<Output = Result<String, ReloadError>> + Send + 'a>>;

/// What a role applies of a reloaded topology while it runs.
pub trait LiveConfig: Send + Sync {
    /// What changed between `old` and `new` for `node` that this role cannot apply live (each
    /// with its reason); the reload is refused when there is any.
    fn refused(&self, old: &Topology, new: &Topology, node: &Node) -> Vec<String>;

    /// Applies `new` for `node` (nothing was refused); a summary of what changed.
    fn apply<'a>(&'a self, new: &'a Topology, node: &'a Node) -> Applied<'a>;
}

/// One node's reload: its file, its running topology, and what applies changes.
pub struct Reloader {
    file: PathBuf,
    node: String,
    current: tokio::sync::Mutex<Topology>,
    live: Option<Arc<dyn LiveConfig>>,
    /// The console's picture of the cluster, redrawn from an applied topology.
    map: Option<Arc<crate::api::ClusterMap>>,
    /// What `/api/v1/status/config` shows, replaced by an applied file.
    shown: Option<crate::api::ShownConfig>,
}

impl Reloader {
    /// For `node` running `topology`; `live` applies its role's changes (`None`: a role that
    /// takes none live).
    pub fn new(topology: &Topology, node: &Node, live: Option<Arc<dyn LiveConfig>>) -> Reloader {
        Reloader {
            file: topology.source.clone(),
            node: node.name.clone(),
            current: tokio::sync::Mutex::new(topology.clone()),
            live,
            map: None,
            shown: None,
        }
    }

    /// Redraws `map` (the console's topology view) and replaces `shown` (the configuration
    /// `/api/v1/status/config` shows) whenever a reload is applied.
    pub fn showing(mut self, map: Arc<crate::api::ClusterMap>, shown: crate::api::ShownConfig) -> Reloader {
        self.map = Some(map);
        self.shown = Some(shown);
        self
    }

    /// Reads the file again and applies it; what changed, or why nothing was.
    pub async fn reload(&self) -> Result<String, ReloadError> {
        let mut current = self.current.lock().await;
        let text = std::fs::read_to_string(&self.file)
            .map_err(|e| ReloadError::Invalid(format!("cannot read {}: {e}", self.file.display())))?;
        let new =
            crate::topology::parse(&text, &self.file).map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let node = new.node(&self.node).ok_or_else(|| ReloadError::NodeGone(self.node.clone()))?;
        let old_node = current.node(&self.node).ok_or_else(|| ReloadError::NodeGone(self.node.clone()))?;
        let mut changes = node_changes(old_node, node);
        if current.fast_link != new.fast_link {
            changes.push("defaults.fast_link (the page bounds it serves)".into());
        }
        let summary = match &self.live {
            Some(live) => {
                changes.extend(live.refused(&current, &new, node));
                if !changes.is_empty() {
                    return Err(ReloadError::NeedsRestart { node: self.node.clone(), changes });
                }
                live.apply(&new, node).await?
            }
            None => {
                if role_config(&current, &node.role) != role_config(&new, &node.role) {
                    changes.push(format!(
                        "the {} configuration (a {} applies a changed topology only at a restart today)",
                        node.role.kind(),
                        node.role.kind()
                    ));
                }
                if !changes.is_empty() {
                    return Err(ReloadError::NeedsRestart { node: self.node.clone(), changes });
                }
                "nothing changed for this node".to_string()
            }
        };
        if let Some(map) = &self.map {
            map.update(&new);
        }
        if let Some(shown) = &self.shown {
            shown.set(&text);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Refuses what its `refuse` says, counts what it applied.
    struct Fake {
        refuse: parking_lot::Mutex<Vec<String>>,
        applied: std::sync::atomic::AtomicU32,
    }

    impl LiveConfig for Fake {
        fn refused(&self, _: &Topology, _: &Topology, _: &Node) -> Vec<String> {
            self.refuse.lock().clone()
        }

        fn apply<'a>(&'a self, _: &'a Topology, _: &'a Node) -> Applied<'a> {
            Box::pin(async move {
                self.applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok("applied".to_string())
            })
        }
    }

    fn topology(port: u16) -> String {
        format!(
            "cluster: t\n\
             jobs: [{{job_name: demo, static_configs: [{{targets: ['127.0.0.1:9']}}]}}]\n\
             leaves: [{{group: apps, jobs: [demo], listen: '127.0.0.1:{port}'}}]\n"
        )
    }

    #[tokio::test]
    async fn the_role_applies_only_when_neither_it_nor_the_node_refuses()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("t.yaml");
        std::fs::write(&file, topology(19_000))?;
        let t = crate::topology::load(&file)?;
        let node = t.node("apps-0-a").ok_or("no node")?;
        let fake =
            Arc::new(Fake { refuse: parking_lot::Mutex::new(Vec::new()), applied: Default::default() });
        let r = Reloader::new(&t, node, Some(fake.clone()));
        assert_eq!(r.reload().await?, "applied");
        // The role refuses: nothing applied, 409 with its reason.
        fake.refuse.lock().push("the moon".into());
        let e = r.reload().await.err().ok_or("applied a refused change")?;
        assert_eq!(e.status(), axum::http::StatusCode::CONFLICT);
        assert!(e.to_string().contains("the moon"), "{e}");
        // The node's own address and the role's refusal are both named.
        std::fs::write(&file, topology(19_001))?;
        let e = r.reload().await.err().ok_or("applied a refused change")?;
        assert!(e.to_string().contains("its address; the moon"), "{e}");
        // An invalid file: 400.
        std::fs::write(&file, "jobs: [\n")?;
        let e = r.reload().await.err().ok_or("applied an invalid file")?;
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(fake.applied.load(std::sync::atomic::Ordering::Relaxed), 1);
        Ok(())
    }
}
