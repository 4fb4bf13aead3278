//! The leaf role: scrapes the targets its shard owns into its own TSDB (in the node's data
//! directory) and serves `/federate` (and the fast link), PromQL and the rest of the Prometheus
//! HTTP API, remote write and remote read, `/metrics`, the targets API, the console and the
//! status page, and sends what it stores to its group's `remote_write` endpoints (one WAL-fed
//! queue each). The TSDB's maintenance and WAL syncing run beside the scrapes; the TSDB is closed
//! (final WAL sync) after everything stopped.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::reload::{Applied, LiveConfig, ReloadError};
use super::{NodeOptions, server, storage};
use crate::api::{self, ApiState, HeadInfo, NodeInfo, StatusInfo};
use crate::federate::frontier::TrackedStorage;
use crate::federate::{self, DEFAULT_LOOKBACK, FederateState};
use crate::model::{LabelsBuilder, PromDuration};
use crate::promql::Engine;
use crate::scrape::{ScrapeManager, TargetFilter};
use crate::shard::Sharder;
use crate::storage::Storage;
use crate::topology::{Node, NodeRole, Topology};
use crate::tsdb::Db;

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

/// What a leaf applies of a reloaded topology: its group's jobs, their targets and the shard
/// rule, through [`ScrapeManager::reconfigure`]; its group's `remote_write` needs a restart.
pub struct LeafLive {
    pub scrapes: Arc<ScrapeManager>,
}

impl LiveConfig for LeafLive {
    fn refused(&self, old: &Topology, new: &Topology, node: &Node) -> Vec<String> {
        let NodeRole::Leaf { group, .. } = &node.role else { return Vec::new() };
        match (old.leaf_group(group), new.leaf_group(group)) {
            (Some(old_g), Some(new_g)) => {
                if format!("{:?}", old_g.remote_write) != format!("{:?}", new_g.remote_write) {
                    vec![format!("leaf group {group:?}: remote_write")]
                } else {
                    Vec::new()
                }
            }
            _ => vec![format!("leaf group {group:?} is not in both topologies")],
        }
    }

    fn apply<'a>(&'a self, new: &'a Topology, node: &'a Node) -> Applied<'a> {
        Box::pin(async move {
            let gone = || ReloadError::NodeGone(node.name.clone());
            let NodeRole::Leaf { group, shard, .. } = &node.role else { return Err(gone()) };
            let new_g = new.leaf_group(group).ok_or_else(gone)?;
            let jobs: Vec<_> =
                new.jobs.iter().filter(|j| new_g.jobs.contains(&j.job_name)).cloned().collect();
            let filter =
                Arc::new(ShardFilter { sharder: new_g.sharder.clone(), shard: *shard, group: group.clone() });
            let r = self.scrapes.reconfigure(jobs, filter).await;
            Ok(format!(
                "jobs added {:?}, changed {:?}, removed {:?}, kept {:?}; shard rule: {} shards",
                r.added,
                r.changed,
                r.removed,
                r.kept,
                new_g.shards()
            ))
        })
    }
}

/// Runs the leaf `node` of `topology` until `shutdown`: binds its port first (serving the
/// starting router while the TSDB replays its WAL), then starts everything else.
pub async fn run(
    topology: &Topology,
    node: &Node,
    opts: &NodeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let NodeRole::Leaf { group, .. } = &node.role else {
        bail!("node {:?} is a {} node, not a leaf", node.name, node.role.kind());
    };
    topology.leaf_group(group).with_context(|| format!("leaf group {group:?} not in topology"))?;
    server::run_storing_node(node, "leaf", shutdown, |starting, shutdown| {
        start(topology, node, opts, starting, shutdown)
    })
    .await
}

/// Opens the TSDB, builds the leaf, switches its listener to the full router and runs until
/// `shutdown`.
async fn start(
    topology: &Topology,
    node: &Node,
    opts: &NodeOptions,
    starting: server::Starting,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let server::Starting { registry, progress, serving } = starting;
    let NodeRole::Leaf { group, shard, .. } = &node.role else {
        bail!("node {:?} is a {} node, not a leaf", node.name, node.role.kind());
    };
    let group_cfg =
        topology.leaf_group(group).with_context(|| format!("leaf group {group:?} not in topology"))?;
    let jobs: Vec<_> =
        topology.jobs.iter().filter(|j| group_cfg.jobs.contains(&j.job_name)).cloned().collect();

    let db = storage::open(node, &opts.storage, &[], progress).await?;
    let frontier = Arc::new(super::open_frontier(node)?);
    // Every commit goes through the frontier, so the fast link's cursor covers all of them.
    let stored: Arc<dyn Storage> = Arc::new(TrackedStorage::new(Arc::new(db.clone()), frontier.clone()));
    super::telemetry::register_db_metrics(&registry, db.clone());
    let filter =
        Arc::new(ShardFilter { sharder: group_cfg.sharder.clone(), shard: *shard, group: group.clone() });
    let seed = crate::model::hash_label_pairs([("node", node.name.as_str())]);
    let manager = Arc::new(ScrapeManager::new(jobs, stored.clone(), filter, &registry, seed));
    {
        let m = manager.clone();
        // A scrape in flight may still commit samples stamped from its start (publishes it before
        // taking its timestamp, which may be up to the tolerance before its clock).
        frontier.set_base(Box::new(move |now| {
            m.commit_watermark().min(now - crate::scrape::TIMESTAMP_TOLERANCE_MS) - 1
        }));
    }
    frontier.register_metrics(&registry);
    // Metadata received by remote write is listed beside the scrapes' (and sent on by the
    // remote-write queues).
    let received = Arc::new(crate::remote::ReceivedMetadata::default());
    let metadata: crate::remote::send::MetadataSource = {
        let (m, r) = (manager.clone(), received.clone());
        Arc::new(move || {
            let mut all = m.metadata();
            all.extend(r.list());
            all
        })
    };
    // Remote-write queues hold their WAL segments before anything can checkpoint it (the TSDB's
    // maintenance starts below, with the server).
    let queues = crate::remote::send::queues(
        &group_cfg.remote_write,
        &node.external_labels,
        &node.data_dir,
        db.wal_dir(),
        db.wal_holds(),
        &registry,
        Some(metadata.clone()),
    )
    .context("remote_write")?;

    let ready_storage = stored.clone();
    let fed = federate::router(FederateState {
        storage: stored.clone(),
        external_labels: node.external_labels.clone(),
        lookback: DEFAULT_LOOKBACK,
        clock: Arc::new(crate::model::now_ms),
        ready: Arc::new(move || ready_storage.ready().is_ok()),
        frontier,
        coverage: {
            let m = manager.clone();
            Arc::new(move || m.coverage())
        },
        page_limits: super::page_limits(&topology.fast_link),
    });
    let ready_storage = stored.clone();
    let targets_manager = manager.clone();
    let mut status = status_info(topology, node, opts, db.clone());
    let shown = status.config_yaml.clone();
    status.remote_write = crate::remote::send::status_source(&queues);
    let map = Arc::new(api::ClusterMap::new(topology, &node.name));
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
        storage: Some(Arc::new(db.clone())),
        raw_storage: None,
        warnings: Arc::new(Vec::new),
        engine: Arc::new(Engine::new(opts.query.clone())),
        clock: Arc::new(crate::model::now_ms),
        metadata,
        status: Arc::new(status),
        queries: api::QueryLimiter::new(opts.queries, &registry),
        cluster: Some(map.clone()),
        sources: Arc::new(Vec::new),
        elector: None,
    }));

    // Remote write lands in the same tracked storage as the scrapes (the fast link sees it);
    // remote read sees what the query API sees.
    let app = super::with_remote_routes(
        app,
        stored.clone(),
        Arc::new(db.clone()),
        node,
        received,
        opts.remote_write,
        &registry,
    );
    let live: Arc<dyn LiveConfig> = Arc::new(LeafLive { scrapes: manager.clone() });
    let reloader = Arc::new(super::reload::Reloader::new(topology, node, Some(live)).showing(map, shown));
    let app = app.merge(reloader.clone().router());
    tracing::info!(node = %node.name, listen = %node.listen, group = %group, shard, "leaf started");
    tokio::join!(
        reloader.on_sighup(shutdown.clone()),
        manager.run(shutdown.clone()),
        crate::remote::send::run_all(queues, shutdown.clone()),
        serving.serve(app),
        storage::run_until_shutdown(db.clone(), &opts.storage, shutdown.clone()),
    );
    // Scrapes and requests have stopped: the last commits are in the WAL; make them durable.
    storage::close(db).await;
    tracing::info!(node = %node.name, "leaf stopped");
    Ok(())
}

/// What `/api/v1/status/*` shows for a node with a TSDB.
pub(crate) fn status_info(topology: &Topology, node: &Node, opts: &NodeOptions, db: Db) -> StatusInfo {
    let query = &opts.query;
    StatusInfo {
        flags: [
            ("topology.file", topology.source.display().to_string()),
            ("node.name", node.name.clone()),
            ("web.listen-address", node.listen.clone()),
            ("storage.tsdb.path", node.data_dir.display().to_string()),
            ("storage.tsdb.retention.time", PromDuration(node.retention).to_string()),
            ("query.lookback-delta", PromDuration(query.lookback_delta).to_string()),
            ("query.max-samples", query.max_samples.to_string()),
            ("query.timeout", PromDuration(query.timeout).to_string()),
            ("query.max-concurrency", opts.queries.max_concurrency.to_string()),
            ("query.max-queued", opts.queries.max_queued.to_string()),
            ("query.queue-timeout", PromDuration(opts.queries.queue_timeout).to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        // As the node loaded it, secrets replaced (never the raw text: it holds passwords).
        config_yaml: crate::api::ShownConfig::read(&topology.source),
        retention: PromDuration(node.retention).to_string(),
        remote_write: None,
        head: Some(Arc::new(move |limit| {
            let head = db.head();
            let stats = head.stats();
            HeadInfo {
                series: stats.series,
                chunks: stats.chunks,
                min_time: head.min_time(),
                max_time: head.max_time(),
                cardinality: head.cardinality(limit),
            }
        })),
    }
}
