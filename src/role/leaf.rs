//! The leaf role: scrapes the targets its shard owns into its own storage and serves
//! `/federate`, PromQL and the rest of the Prometheus HTTP API over that storage, `/metrics`, the
//! targets API and the status page.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::server;
use crate::api::{self, ApiState, HeadInfo, NodeInfo, StatusInfo};
use crate::federate::{self, DEFAULT_LOOKBACK, FederateState};
use crate::metrics::Registry;
use crate::model::{LabelsBuilder, PromDuration};
use crate::promql::{Engine, EngineOptions};
use crate::scrape::{ScrapeManager, TargetFilter};
use crate::shard::Sharder;
use crate::storage::Storage;
use crate::topology::{Node, NodeRole, Topology};
use crate::tsdb::{Head, HeadOptions};

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

/// Runs the leaf `node` of `topology` until `shutdown`, with Prometheus's default query limits.
pub async fn run(topology: &Topology, node: &Node, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with(topology, node, EngineOptions::default(), shutdown).await
}

/// Runs the leaf `node` of `topology` until `shutdown`, with the given query engine settings.
pub async fn run_with(
    topology: &Topology,
    node: &Node,
    query: EngineOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let NodeRole::Leaf { group, shard, .. } = &node.role else {
        bail!("node {:?} is a {} node, not a leaf", node.name, node.role.kind());
    };
    let group_cfg =
        topology.leaf_group(group).with_context(|| format!("leaf group {group:?} not in topology"))?;
    let jobs: Vec<_> =
        topology.jobs.iter().filter(|j| group_cfg.jobs.contains(&j.job_name)).cloned().collect();

    let head = Arc::new(Head::new(HeadOptions::default())?);
    let storage: Arc<dyn Storage> = head.clone();
    let registry = Arc::new(Registry::new());
    crate::metrics::register_process_metrics(&registry, &node.name);
    super::telemetry::register_head_metrics(&registry, head.clone());
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
        next_cursor: {
            let m = manager.clone();
            // `now` was taken before the watermark is read (see ScrapeLoop::scrape_once).
            Arc::new(move |now| m.commit_watermark().min(now) - 1)
        },
    });
    let ready_storage = storage.clone();
    let targets_manager = manager.clone();
    let metadata_manager = manager.clone();
    let status = status_info(topology, node, &query, head.clone());
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
        storage: Some(head.clone()),
        raw_storage: None,
        warnings: Arc::new(Vec::new),
        engine: Arc::new(Engine::new(query)),
        clock: Arc::new(crate::model::now_ms),
        metadata: Arc::new(move || metadata_manager.metadata()),
        status: Arc::new(status),
    }));

    let retention = node.retention;
    let (_, served, _) = tokio::join!(
        manager.run(shutdown.clone()),
        server::serve(listener, app, shutdown.clone()),
        retention_loop(head.clone(), retention, shutdown.clone()),
    );
    tracing::info!(node = %node.name, "leaf stopped");
    served
}

/// What `/api/v1/status/*` shows for a node with a head.
pub(crate) fn status_info(
    topology: &Topology,
    node: &Node,
    query: &EngineOptions,
    head: Arc<Head>,
) -> StatusInfo {
    StatusInfo {
        flags: [
            ("topology.file", topology.source.display().to_string()),
            ("node.name", node.name.clone()),
            ("web.listen-address", node.listen.clone()),
            ("storage.tsdb.retention.time", PromDuration(node.retention).to_string()),
            ("query.lookback-delta", PromDuration(query.lookback_delta).to_string()),
            ("query.max-samples", query.max_samples.to_string()),
            ("query.timeout", PromDuration(query.timeout).to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        config_yaml: std::fs::read_to_string(&topology.source).unwrap_or_default(),
        retention: PromDuration(node.retention).to_string(),
        head: Some(Arc::new(move || {
            let st = head.stats();
            HeadInfo { chunks: st.chunks, min_time: head.min_time(), max_time: head.max_time() }
        })),
    }
}

/// Drops data older than the retention period, once a minute.
pub(crate) async fn retention_loop(head: Arc<Head>, retention: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mint = crate::model::now_ms() - retention.as_millis() as i64;
        let head = head.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || head.truncate(mint)).await {
            tracing::error!(error = %e, "retention task failed");
        }
    }
}
