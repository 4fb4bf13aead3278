//! The global role: pulls every source of its `from:` groups (dedup as configured), stores the
//! result, and serves `/federate` and the fast link (so globals stack), the targets API with the
//! sources' health, the dedup API, remote write and remote read, `/metrics`, the console (with
//! the topology as the global sees it) and the status page; and sends what it stores to its
//! `remote_write` endpoints (one WAL-fed queue each). Queries (the API and remote read) also see
//! its `remote_read` stores, for what is older than its own data; `/federate` and the fast link
//! serve only what it stores.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::reload::{Applied, LiveConfig, ReloadError};
use super::{NodeOptions, server};
use crate::api::{self, ApiState, NodeInfo};
use crate::dedup::MergeQueryable;
use crate::federate::frontier::TrackedStorage;
use crate::federate::{self, DEFAULT_LOOKBACK, FederateState};
use crate::global::GlobalIngest;
use crate::promql::Engine;
use crate::remote::fanout::RemoteReadQueryable;
use crate::storage::{Queryable, Storage};
use crate::topology::{DedupMode, Node, NodeRole, Topology};

/// What a global applies of a reloaded topology: its sources, pull settings and failover
/// settings, through [`GlobalIngest::reconfigure`]. Refused, needing a restart: the dedup mode
/// and the replica label (the stored series' identity and the query view), `remote_write`,
/// `remote_read`, `downsample`, and in merge mode the pull interval and timeout (the query
/// view's ingest lag follows from them).
pub struct GlobalLive {
    pub ingest: Arc<GlobalIngest>,
}

impl LiveConfig for GlobalLive {
    fn refused(&self, old: &Topology, new: &Topology, node: &Node) -> Vec<String> {
        let NodeRole::Global { name, .. } = &node.role else { return Vec::new() };
        let (Some(old_g), Some(new_g)) = (old.global(name), new.global(name)) else {
            return vec![format!("global {name:?} is not in both topologies")];
        };
        let mut out = self.ingest.refused(new, new_g);
        if format!("{:?}", old_g.remote_write) != format!("{:?}", new_g.remote_write) {
            out.push(format!("global {name:?}: remote_write"));
        }
        if old_g.remote_read != new_g.remote_read {
            out.push(format!("global {name:?}: remote_read"));
        }
        if old_g.downsample != new_g.downsample {
            out.push(format!("global {name:?}: downsample"));
        }
        if old_g.dedup == DedupMode::Merge
            && new_g.dedup == DedupMode::Merge
            && (old_g.federate_interval, old_g.federate_timeout)
                != (new_g.federate_interval, new_g.federate_timeout)
        {
            out.push(format!(
                "global {name:?}: federate.interval or timeout in merge mode (the query view's ingest lag follows from them)"
            ));
        }
        out
    }

    fn apply<'a>(&'a self, new: &'a Topology, node: &'a Node) -> Applied<'a> {
        Box::pin(async move {
            let gone = || ReloadError::NodeGone(node.name.clone());
            let NodeRole::Global { name, .. } = &node.role else { return Err(gone()) };
            let cfg = new.global(name).ok_or_else(gone)?;
            self.ingest.reconfigure(new, cfg).map(|r| r.to_string()).map_err(|e| ReloadError::NeedsRestart {
                node: node.name.clone(),
                changes: vec![e.to_string()],
            })
        })
    }
}

/// Runs the global `node` of `topology` until `shutdown`: binds its port first (serving the
/// starting router while the TSDB replays its WAL), then starts everything else.
pub async fn run(
    topology: &Topology,
    node: &Node,
    opts: &NodeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let NodeRole::Global { name, .. } = &node.role else {
        bail!("node {:?} is a {} node, not a global", node.name, node.role.kind());
    };
    topology.global(name).with_context(|| format!("global {name:?} not in topology"))?;
    server::run_storing_node(node, "global", shutdown, |starting, shutdown| {
        start(topology, node, opts, starting, shutdown)
    })
    .await
}

/// Opens the TSDB, builds the global, switches its listener to the full router and runs until
/// `shutdown`.
async fn start(
    topology: &Topology,
    node: &Node,
    opts: &NodeOptions,
    starting: server::Starting,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let server::Starting { registry, progress, serving } = starting;
    let NodeRole::Global { name, .. } = &node.role else {
        bail!("node {:?} is a {} node, not a global", node.name, node.role.kind());
    };
    let cfg = topology.global(name).with_context(|| format!("global {name:?} not in topology"))?;
    let db = super::storage::open(node, &opts.storage, &cfg.downsample, progress).await?;
    let frontier = Arc::new(super::open_frontier(node)?);
    // Every commit goes through the frontier, so the fast link's cursor covers all of them.
    let storage: Arc<dyn Storage> = Arc::new(TrackedStorage::new(Arc::new(db.clone()), frontier.clone()));
    super::telemetry::register_db_metrics(&registry, db.clone());
    let ingest = Arc::new(
        GlobalIngest::new(
            topology,
            cfg,
            storage.clone(),
            &registry,
            Some(node.data_dir.join("global-state.json")),
        )
        .context("global restart state")?,
    );
    // Metric metadata: what the sources report, and what remote write brought.
    let received = Arc::new(crate::remote::ReceivedMetadata::default());
    let metadata: crate::remote::send::MetadataSource = {
        let (ingest, received) = (ingest.clone(), received.clone());
        Arc::new(move || {
            let mut m = ingest.metadata();
            m.extend(received.list());
            m
        })
    };
    // Remote-write queues hold their WAL segments before anything can checkpoint it (the
    // storage's maintenance starts below).
    let queues = crate::remote::send::queues(
        &cfg.remote_write,
        &node.external_labels,
        &node.data_dir,
        db.wal_dir(),
        db.wal_holds(),
        &registry,
        Some(metadata.clone()),
    )
    .context("remote_write")?;
    {
        let ingest = ingest.clone();
        frontier.set_base(Box::new(move |now| ingest.frontier(now)));
    }
    frontier.register_metrics(&registry);

    // A sample is stored here up to one pull after its timestamp (plus the source's own lag).
    let ingest_lag = cfg.federate_interval + cfg.federate_timeout + Duration::from_secs(1);
    // What readers see: in merge mode one series per replica set; otherwise what is stored.
    let view: Arc<dyn Queryable> = match cfg.dedup {
        DedupMode::Merge => Arc::new(MergeQueryable {
            inner: storage.clone(),
            replica_label: topology.replica_label.clone(),
            ingest_lag,
        }),
        DedupMode::Failover | DedupMode::None => storage.clone(),
    };
    // What queries see: the stored data with the `remote_read` stores behind it (merged by
    // series before replica dedup, so a store holding replicas is deduplicated like local data).
    let (query_view, query_raw): (Arc<dyn Queryable>, Arc<dyn Queryable>) = if cfg.remote_read.is_empty() {
        (view.clone(), storage.clone())
    } else {
        let fanout: Arc<dyn Queryable> = Arc::new(
            RemoteReadQueryable::new(
                storage.clone(),
                &cfg.remote_read,
                &node.external_labels,
                tokio::runtime::Handle::current(),
                &registry,
            )
            .context("remote_read")?,
        );
        let merged: Arc<dyn Queryable> = match cfg.dedup {
            DedupMode::Merge => Arc::new(MergeQueryable {
                inner: fanout.clone(),
                replica_label: topology.replica_label.clone(),
                ingest_lag,
            }),
            DedupMode::Failover | DedupMode::None => fanout.clone(),
        };
        (merged, fanout)
    };
    for w in topology.warnings.iter().filter(|w| w.global.as_deref() == Some(name.as_str())) {
        tracing::warn!("{}", w.render(&topology.source));
    }
    let ready_storage = storage.clone();
    let mut app = federate::router(FederateState {
        storage: view.clone(),
        external_labels: node.external_labels.clone(),
        lookback: DEFAULT_LOOKBACK,
        clock: Arc::new(crate::model::now_ms),
        ready: Arc::new(move || ready_storage.ready().is_ok()),
        frontier,
        coverage: {
            let ingest = ingest.clone();
            Arc::new(move || ingest.coverage())
        },
        page_limits: super::page_limits(&topology.fast_link),
    });
    let ready_storage = storage.clone();
    let targets_ingest = ingest.clone();
    let warnings_ingest = ingest.clone();
    let sources_ingest = ingest.clone();
    let mut status = super::leaf::status_info(topology, node, opts, db.clone());
    let shown = status.config_yaml.clone();
    status.remote_write = crate::remote::send::status_source(&queues);
    let map = Arc::new(api::ClusterMap::new(topology, &node.name));
    app = app.merge(api::router(ApiState {
        node: Arc::new(NodeInfo {
            name: node.name.clone(),
            role: format!("global ({} dedup)", cfg.dedup.as_str()),
            cluster: topology.cluster.clone(),
            external_labels: node.external_labels.clone(),
            started: SystemTime::now(),
        }),
        registry: registry.clone(),
        targets: Arc::new(move || targets_ingest.targets()),
        ready: Arc::new(move || ready_storage.ready().map_err(|e| e.to_string())),
        storage: Some(query_view.clone()),
        raw_storage: (cfg.dedup == DedupMode::Merge).then(|| query_raw.clone()),
        warnings: Arc::new(move || warnings_ingest.warnings()),
        engine: Arc::new(Engine::new(opts.query.clone())),
        clock: Arc::new(crate::model::now_ms),
        metadata: metadata.clone(),
        status: Arc::new(status),
        queries: api::QueryLimiter::new(opts.queries, &registry),
        cluster: Some(map.clone()),
        sources: Arc::new(move || source_states(&sources_ingest)),
        elector: ingest.elector().cloned(),
    }));
    if let Some(e) = ingest.elector() {
        app = app.merge(api::dedup::router(e.clone()));
    }
    // Remote write lands in the global's own (tracked) storage beside the pulled data; remote
    // read sees what the query API sees (the merged view in merge mode, with the `remote_read`
    // stores behind it, as Prometheus's read endpoint serves its fanout storage).
    let app = super::with_remote_routes(
        app,
        storage.clone(),
        query_view.clone(),
        node,
        received,
        opts.remote_write,
        &registry,
    );
    let live: Arc<dyn LiveConfig> = Arc::new(GlobalLive { ingest: ingest.clone() });
    let reloader = Arc::new(super::reload::Reloader::new(topology, node, Some(live)).showing(map, shown));
    let app = app.merge(reloader.clone().router());
    tracing::info!(node = %node.name, listen = %node.listen, dedup = cfg.dedup.as_str(), sources = ingest.targets().active.len(), "global started");
    tokio::join!(
        reloader.on_sighup(shutdown.clone()),
        ingest.run(shutdown.clone()),
        crate::remote::send::run_all(queues, shutdown.clone()),
        serving.serve(app),
        super::storage::run_until_shutdown(db.clone(), &opts.storage, shutdown.clone()),
    );
    super::storage::close(db).await;
    tracing::info!(node = %node.name, "global stopped");
    Ok(())
}

/// What the topology view shows of the global's sources.
fn source_states(ingest: &GlobalIngest) -> Vec<api::SourceState> {
    ingest
        .sources()
        .into_iter()
        .map(|(source, st)| api::SourceState {
            node: source.node,
            shard: source.shard,
            replica: source.replica,
            health: st.health,
            last_error: st.last_error,
            last_pull: st.last_pull,
            stored_until: st.cursor,
        })
        .collect()
}
