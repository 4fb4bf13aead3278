//! The push role: a node of the push tier's ring. Accepts remote-write pushes from any sender
//! and routes each series to its owners (`push::distribute`: stored here when this node owns it,
//! forwarded or kept as a hint otherwise, acknowledged at the write quorum), replays the hints it
//! keeps for owners that were down (`push::forward`), and serves what it stores like a leaf:
//! `/federate`, the fast link, PromQL and the rest of the HTTP API, remote read, `/metrics`. Takes
//! Pushgateway pushes too (`PUT/POST/DELETE /metrics/job/…`): each group lives on the owners of
//! its grouping key, saved before the push is answered, its series stored every scrape interval
//! (`push::groups`).

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use axum::routing::{any, get, post};
use tokio_util::sync::CancellationToken;

use super::{NodeOptions, server, storage};
use crate::api::{self, ApiState, NodeInfo};
use crate::federate::frontier::TrackedStorage;
use crate::federate::{self, DEFAULT_LOOKBACK, FederateState};
use crate::http::client::HttpClient;
use crate::metrics::{Collect, MetricsWriter, Registry};
use crate::model::MetricType;
use crate::promql::Engine;
use crate::push::catchup::CatchUp;
use crate::push::distribute::{PushTier, TierParts, handle_group, handle_hints, handle_write};
use crate::push::forward::{HINTS_PATH, Peer};
use crate::push::groups::Groups;
use crate::push::hints::HintQueue;
use crate::push::ring::Ring;
use crate::storage::Storage;
use crate::topology::{Node, NodeRole, Topology};

/// Pushes arrive a little after their samples' time (senders batch for a few seconds): the fast
/// link promises nothing newer than this far behind the clock, and a push older than that is
/// logged as a late commit (see `federate::frontier`).
const PUSH_LAG_MS: i64 = 15_000;

/// Runs the push `node` of `topology` until `shutdown`: binds its port first (serving the
/// starting router while the TSDB replays its WAL), then starts everything else.
pub async fn run(
    topology: &Topology,
    node: &Node,
    opts: &NodeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let NodeRole::Push { .. } = &node.role else {
        bail!("node {:?} is a {} node, not a push node", node.name, node.role.kind());
    };
    topology.push.as_ref().context("the topology has no push tier")?;
    server::run_storing_node(node, "push node", shutdown, |starting, shutdown| {
        start(topology, node, opts, starting, shutdown)
    })
    .await
}

/// Opens the TSDB and the hint queues, builds the push node, switches its listener to the full
/// router and runs until `shutdown`.
async fn start(
    topology: &Topology,
    node: &Node,
    opts: &NodeOptions,
    starting: server::Starting,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let server::Starting { registry, progress, serving } = starting;
    let NodeRole::Push { index } = &node.role else {
        bail!("node {:?} is a {} node, not a push node", node.name, node.role.kind());
    };
    let cfg = topology.push.as_ref().context("the topology has no push tier")?;
    let db = storage::open(node, &opts.storage, &[], progress).await?;
    let frontier = Arc::new(super::open_frontier(node)?);
    let stored: Arc<dyn Storage> = Arc::new(TrackedStorage::new(Arc::new(db.clone()), frontier.clone()));
    super::telemetry::register_db_metrics(&registry, db.clone());
    frontier.set_base(Box::new(|now| now - PUSH_LAG_MS));
    frontier.register_metrics(&registry);

    // The other nodes of the ring, each with the hints kept for it.
    let client = HttpClient::new(&cfg.client, false).context("push: client for the other push nodes")?;
    let mut peers: Vec<Option<Arc<Peer>>> = Vec::new();
    for n in &topology.nodes {
        let NodeRole::Push { index: i } = n.role else { continue };
        if i == *index {
            peers.push(None);
            continue;
        }
        let hints = HintQueue::open(&node.data_dir.join("hints").join(&n.name), cfg.max_hint_bytes)
            .with_context(|| format!("hints for {}", n.name))?;
        let base = format!("{}://{}", n.web.scheme(), n.advertise);
        peers.push(Some(Arc::new(Peer::new(
            i,
            n.name.clone(),
            base,
            client.clone(),
            hints,
            node.name.clone(),
        ))));
    }
    register_hint_metrics(&registry, &peers);

    let received = Arc::new(crate::remote::ReceivedMetadata::default());
    let metadata: crate::remote::send::MetadataSource = {
        let r = received.clone();
        Arc::new(move || r.list())
    };
    let remote_state = crate::remote::RemoteState {
        storage: stored.clone(),
        queryable: Arc::new(db.clone()),
        external_labels: node.external_labels.clone(),
        write_limits: opts.remote_write,
        read_limits: crate::remote::ReadLimits::default(),
        clock: Arc::new(crate::model::now_ms),
        metadata: received,
    };
    let receiver = crate::remote::WriteReceiver::new(&remote_state, &registry);
    let catch_up = Arc::new(CatchUp::new(
        HintQueue::open(&node.data_dir.join("hints").join("_catch_up"), u64::MAX)
            .context("the catch-up queue")?,
    ));
    let groups = Arc::new(
        Groups::open(node.data_dir.join("push-groups.json")).context("the saved Pushgateway groups")?,
    );
    let tier = Arc::new(PushTier::new(
        TierParts {
            index: *index,
            ring: Ring::from_config(cfg),
            quorum: cfg.write_quorum,
            peers: peers.clone(),
            receiver: receiver.clone(),
            catch_up: catch_up.clone(),
            groups: groups.clone(),
            shutdown: shutdown.clone(),
        },
        &registry,
    ));

    let ready_storage = stored.clone();
    let fed = federate::router(FederateState {
        storage: stored.clone(),
        external_labels: node.external_labels.clone(),
        lookback: DEFAULT_LOOKBACK,
        clock: Arc::new(crate::model::now_ms),
        ready: Arc::new(move || ready_storage.ready().is_ok()),
        frontier,
        coverage: Arc::new(crate::model::Coverage::default),
        page_limits: super::page_limits(&topology.fast_link),
    });
    let ready_storage = stored.clone();
    let status = super::leaf::status_info(topology, node, opts, db.clone());
    let shown = status.config_yaml.clone();
    let map = Arc::new(api::ClusterMap::new(topology, &node.name));
    let app = fed
        .merge(api::router(ApiState {
            node: Arc::new(NodeInfo {
                name: node.name.clone(),
                role: format!("push (ring of {}, replication factor {})", cfg.nodes, cfg.replication_factor),
                cluster: topology.cluster.clone(),
                external_labels: node.external_labels.clone(),
                started: SystemTime::now(),
            }),
            registry: registry.clone(),
            targets: Arc::new(crate::scrape::TargetsSnapshot::default),
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
        }))
        .merge(crate::remote::read_router(&remote_state, &registry))
        .route(HINTS_PATH, get(handle_hints).with_state(tier.clone()))
        .route("/metrics/job/{*grouping}", any(handle_group).with_state(tier.clone()))
        .route("/api/v1/write", post(handle_write).with_state(tier.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(crate::api::MAX_REQUEST_BODY));

    let replays = {
        let mut set = tokio::task::JoinSet::new();
        for p in peers.iter().flatten() {
            set.spawn(p.clone().replay(shutdown.clone()));
        }
        async move { while set.join_next().await.is_some() {} }
    };
    let apply: crate::push::catchup::Apply = {
        let tier = tier.clone();
        Arc::new(move |f| tier.apply_forward(f))
    };
    let catching_up =
        catch_up.run(node.name.clone(), peers.iter().flatten().cloned().collect(), apply, shutdown.clone());
    let reloader = Arc::new(super::reload::Reloader::new(topology, node, None).showing(map, shown));
    let app = app.merge(reloader.clone().router());
    tracing::info!(
        node = %node.name,
        listen = %node.listen,
        nodes = cfg.nodes,
        replication_factor = cfg.replication_factor,
        write_quorum = cfg.write_quorum,
        "push node started"
    );
    tokio::join!(
        reloader.on_sighup(shutdown.clone()),
        catching_up,
        replays,
        groups.clone().run_saver(shutdown.clone()),
        groups.clone().run_snapshots(stored.clone(), cfg.group_interval, shutdown.clone()),
        serving.serve(app),
        storage::run_until_shutdown(db.clone(), &opts.storage, shutdown.clone()),
    );
    storage::close(db).await;
    tracing::info!(node = %node.name, "push node stopped");
    Ok(())
}

/// Hints waiting per peer, and what happened to them.
fn register_hint_metrics(registry: &Registry, peers: &[Option<Arc<Peer>>]) {
    let peers: Vec<Arc<Peer>> = peers.iter().flatten().cloned().collect();
    let collect = move |w: &mut MetricsWriter| {
        let stats: Vec<_> = peers.iter().map(|p| (p.name.as_str(), p.hints.stats())).collect();
        w.family(
            "promtier_push_hints_pending",
            "Writes kept for an unreachable owner, not delivered yet.",
            MetricType::Gauge,
        );
        for (name, s) in &stats {
            w.sample("promtier_push_hints_pending", &[("peer", name)], s.pending as f64);
        }
        w.family(
            "promtier_push_hints_pending_bytes",
            "Bytes of the hints kept for an owner.",
            MetricType::Gauge,
        );
        for (name, s) in &stats {
            w.sample("promtier_push_hints_pending_bytes", &[("peer", name)], s.pending_bytes as f64);
        }
        w.family(
            "promtier_push_hints_total",
            "Hints written, delivered, and dropped (over max_hint_size, or damaged on disk), per owner, since the node started.",
            MetricType::Counter,
        );
        for (name, s) in &stats {
            for (event, v) in [("written", s.written), ("delivered", s.delivered), ("dropped", s.dropped)] {
                w.sample("promtier_push_hints_total", &[("peer", name), ("event", event)], v as f64);
            }
        }
    };
    registry.register(Arc::new(collect) as Arc<dyn Collect>);
}
