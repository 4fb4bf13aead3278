//! The leaf role: scrapes the targets its shard owns into its own TSDB (in the node's data
//! directory) and serves `/federate`, `/metrics`, the targets API and the status page. Runs the
//! TSDB's maintenance (block cutting, compaction, retention) and WAL syncing as tracked tasks,
//! and closes the TSDB (final WAL sync) after everything else has stopped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::server;
use crate::api::{self, ApiState, NodeInfo};
use crate::federate::{self, DEFAULT_LOOKBACK, FederateState};
use crate::metrics::Registry;
use crate::model::LabelsBuilder;
use crate::scrape::{ScrapeManager, TargetFilter};
use crate::shard::Sharder;
use crate::storage::Storage;
use crate::topology::{Node, NodeRole, Topology};
use crate::tsdb::wal::WalSync;
use crate::tsdb::{Db, DbOptions};

/// TSDB settings of a leaf that the topology does not carry (command-line flags).
#[derive(Debug, Clone)]
pub struct LeafOptions {
    /// Span of a level-1 block (Prometheus's `--storage.tsdb.min-block-duration`).
    pub block_duration: Duration,
    /// Largest block compaction builds (`None`: the database's default).
    pub max_block_duration: Option<Duration>,
    /// Delete oldest blocks beyond this many bytes.
    pub retention_size: Option<u64>,
    pub wal_sync: WalSync,
}

impl Default for LeafOptions {
    fn default() -> LeafOptions {
        LeafOptions {
            block_duration: Duration::from_secs(2 * 3600),
            max_block_duration: None,
            retention_size: None,
            wal_sync: WalSync::Periodic(Duration::from_secs(1)),
        }
    }
}

/// Keeps the targets of one shard of a group.
pub struct ShardFilter {
    pub sharder: Sharder,
    pub shard: u32,
    pub group: String,
}

impl TargetFilter for ShardFilter {
    fn keep(&self, labels: &LabelsBuilder) -> Result<(), String> {
        let s = self.sharder.shard_of_builder(labels);
        if s == self.shard { Ok(()) } else { Err(format!("belongs to shard {}-{s}", self.group)) }
    }
}

/// Runs the leaf `node` of `topology` until `shutdown`.
pub async fn run(
    topology: &Topology,
    node: &Node,
    opts: LeafOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let NodeRole::Leaf { group, shard, .. } = &node.role else {
        bail!("node {:?} is a {} node, not a leaf", node.name, node.role.kind());
    };
    let group_cfg =
        topology.leaf_group(group).with_context(|| format!("leaf group {group:?} not in topology"))?;
    let jobs: Vec<_> =
        topology.jobs.iter().filter(|j| group_cfg.jobs.contains(&j.job_name)).cloned().collect();

    let db_opts = DbOptions {
        block_range_ms: opts.block_duration.as_millis() as i64,
        max_block_range_ms: opts.max_block_duration.map(|d| d.as_millis() as i64),
        retention_ms: Some(node.retention.as_millis() as i64),
        max_bytes: opts.retention_size,
        wal_sync: opts.wal_sync,
        ..DbOptions::default()
    };
    let dir = node.data_dir.clone();
    tracing::info!(dir = %dir.display(), "opening the TSDB (replaying the WAL)");
    let db = tokio::task::spawn_blocking(move || Db::open(&dir, db_opts))
        .await
        .context("TSDB open task failed")?
        .with_context(|| format!("cannot open the TSDB in {}", node.data_dir.display()))?;
    let storage: Arc<dyn Storage> = Arc::new(db.clone());
    let registry = Arc::new(Registry::new());
    crate::metrics::register_process_metrics(&registry, &node.name);
    super::telemetry::register_db_metrics(&registry, db.clone());
    let filter =
        Arc::new(ShardFilter { sharder: group_cfg.sharder.clone(), shard: *shard, group: group.clone() });
    let seed = crate::model::hash_label_pairs([("node", node.name.as_str())]);
    let manager = Arc::new(ScrapeManager::new(jobs, storage.clone(), filter, &registry, seed));

    let listener = server::bind(&node.listen).await?;
    tracing::info!(node = %node.name, listen = %node.listen, group = %group, shard, "leaf started");
    let ready_storage = storage.clone();
    let fed = federate::router(FederateState {
        storage: storage.clone(),
        external_labels: node.external_labels.clone(),
        lookback: DEFAULT_LOOKBACK,
        clock: Arc::new(crate::model::now_ms),
        ready: Arc::new(move || ready_storage.ready().is_ok()),
    });
    let ready_storage = storage.clone();
    let targets_manager = manager.clone();
    let app = fed.merge(api::router(ApiState {
        node: Arc::new(NodeInfo {
            name: node.name.clone(),
            role: "leaf".into(),
            cluster: topology.cluster.clone(),
            external_labels: node.external_labels.clone(),
            started: SystemTime::now(),
        }),
        registry: registry.clone(),
        targets: Arc::new(move || targets_manager.targets()),
        ready: Arc::new(move || ready_storage.ready().map_err(|e| e.to_string())),
    }));

    let sync_every = match opts.wal_sync {
        WalSync::Periodic(d) => Some(d),
        WalSync::Commit => None,
    };
    let (_, served, _, _) = tokio::join!(
        manager.run(shutdown.clone()),
        server::serve(listener, app, shutdown.clone()),
        maintenance_loop(db.clone(), opts.block_duration, shutdown.clone()),
        wal_sync_loop(db.clone(), sync_every, shutdown.clone()),
    );
    // Scrapes and requests have stopped: the last commits are in the WAL; make them durable.
    match tokio::task::spawn_blocking(move || db.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "closing the TSDB failed"),
        Err(e) => tracing::error!(error = %e, "TSDB close task failed"),
    }
    tracing::info!(node = %node.name, "leaf stopped");
    served
}

/// Cuts blocks, compacts and applies retention: at a twentieth of the block range (so a cut
/// happens soon after the head is ready for it), at least every 10 s, at most every minute.
async fn maintenance_loop(db: Db, block_duration: Duration, shutdown: CancellationToken) {
    let every = (block_duration / 20).clamp(Duration::from_millis(200), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let db = db.clone();
        // Awaited (not detached): a cycle in progress finishes before shutdown goes on.
        match tokio::task::spawn_blocking(move || db.maintain()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "TSDB maintenance failed; retrying next cycle"),
            Err(e) => tracing::error!(error = %e, "TSDB maintenance task failed"),
        }
    }
}

/// Fsyncs the WAL on the periodic policy's interval.
async fn wal_sync_loop(db: Db, every: Option<Duration>, shutdown: CancellationToken) {
    let Some(every) = every else { return };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let db = db.clone();
        match tokio::task::spawn_blocking(move || db.sync_wal()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "WAL fsync failed"),
            Err(e) => tracing::error!(error = %e, "WAL fsync task failed"),
        }
    }
}
