//! The global tier's ingest: one puller per source (every replica of every shard of the leaf
//! groups it pulls, stacked globals, external Prometheus servers), deduplicated as configured —
//! `failover` stores the elected replica only (replica label removed) and fills the window after
//! a switch, `merge` and `none` store every replica as it comes. Promtier sources are pulled over
//! the fast link (every sample since a cursor, in bounded pages); Prometheus sources over text
//! `/federate`. Each set's watermark and each source's cursor survive restarts (`state`), and the
//! global's own fast-link frontier is what its sets have committed. Metric metadata is read
//! from the sources' `/api/v1/metadata` (`metadata`), for the global's own API and its
//! remote-write queues.

mod metadata;
mod puller;
mod state;
mod stream_ingest;
mod strip;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

pub use puller::SourceStatus;
/// For the fast-link fuzz target (`crate::fuzzing`).
pub(crate) use stream_ingest::StreamState;

use self::state::GlobalState;
pub use self::state::StateError;
use crate::dedup::{Elector, ReplicaView, ShardView};
use crate::metrics::{Counter, DURATION_BUCKETS, Family, Gauge, Histogram, MetricsWriter, Registry};
use crate::model::{Coverage, Labels, MetricMetadata, MetricType, now_ms};
use crate::scrape::{ActiveTarget, Health, ScrapeClient, Target, TargetStatus, TargetsSnapshot};
use crate::storage::Storage;
use crate::topology::{ClientConfig, DedupMode, GlobalConfig, Source, Topology};

/// How far back a global with no data of its own starts pulling.
const INITIAL_BACKFILL: Duration = Duration::from_secs(300);
/// How far before a switch watermark (or a restarted global's newest data) a fill starts: the
/// new replica scrapes at other moments, so it holds samples just before the watermark that the
/// old one never delivered.
const FILL_MARGIN_MS: i64 = 5 * 60 * 1000;

/// Settings every puller of one global shares.
pub(crate) struct PullSettings {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) selectors: Vec<String>,
    pub(crate) fast_link: bool,
    /// Samples per fast-link page to ask for.
    pub(crate) page_samples: Option<usize>,
    /// Labels removed from pulled series before they are stored: the replica label in failover
    /// mode (one series per replica set), the shard label with `federate.shard_label: drop`.
    pub(crate) strip: Vec<String>,
    /// Most bytes of body one pull may read (`federate.body_size_limit`; 0: no limit).
    pub(crate) body_size_limit: usize,
    /// Whether pulled series' labels win over the labels attached to their source
    /// (`federate.honor_labels`).
    pub(crate) honor_labels: bool,
}

/// The global's federation metrics.
pub(crate) struct GlobalMetrics {
    pub(crate) up: Arc<Family<Gauge>>,
    pub(crate) pulls: Arc<Family<Counter>>,
    pub(crate) failures: Arc<Family<Counter>>,
    pub(crate) samples: Arc<Family<Counter>>,
    pub(crate) overlap: Arc<Family<Counter>>,
    pub(crate) guarded: Arc<Family<Counter>>,
    pub(crate) duration: Arc<Family<Histogram>>,
    pub(crate) lag: Arc<Family<Gauge>>,
    pub(crate) last_success: Arc<Family<Gauge>>,
    /// Text federation cannot fetch what it missed: the holes are counted instead.
    pub(crate) missed: Arc<Family<Counter>>,
    /// How far the stored data of a source is behind the clock (its cursor's age).
    pub(crate) behind: Arc<Family<Gauge>>,
}

impl GlobalMetrics {
    fn new(registry: &Registry) -> GlobalMetrics {
        const L: &[&str] = &["source", "shard", "replica"];
        let g = |n, h| Arc::new(Family::new(n, h, L, Gauge::default));
        let c = |n, h| Arc::new(Family::new(n, h, L, Counter::default));
        let m = GlobalMetrics {
            up: g("promtier_federation_up", "1 if the last pull of the source succeeded."),
            pulls: c("promtier_federation_pulls_total", "Pulls attempted (data and liveness probes)."),
            failures: c("promtier_federation_pull_failures_total", "Pulls that failed."),
            samples: c("promtier_federation_samples_total", "Samples stored from the source."),
            overlap: c(
                "promtier_federation_overlap_samples_total",
                "Samples received again (cursor overlap, other replicas) and skipped.",
            ),
            guarded: c(
                "promtier_dedup_guarded_samples_total",
                "Samples dropped at a replica switch because they would have looked like a counter reset.",
            ),
            duration: Arc::new(Family::new(
                "promtier_federation_pull_duration_seconds",
                "Pull duration including storing.",
                L,
                || Histogram::new(DURATION_BUCKETS),
            )),
            lag: g(
                "promtier_federation_lag_seconds",
                "Age of the newest sample received from the source, at the end of the last pull.",
            ),
            last_success: g(
                "promtier_federation_last_success_timestamp_seconds",
                "When the last successful pull ended.",
            ),
            missed: c(
                "promtier_federation_missed_seconds_total",
                "Seconds of data a text-federated source could not deliver (failed pulls; text /federate cannot catch up).",
            ),
            behind: g(
                "promtier_federation_behind_seconds",
                "Age of the cursor up to which a storing source's data is stored (large while catching up).",
            ),
        };
        for f in [&m.up, &m.lag, &m.last_success, &m.behind] {
            registry.register(f.clone());
        }
        for f in [&m.pulls, &m.failures, &m.samples, &m.overlap, &m.guarded, &m.missed] {
            registry.register(f.clone());
        }
        registry.register(m.duration.clone());
        m
    }
}

/// Everything a global pulls, and how.
pub struct GlobalIngest {
    sources: Vec<(Source, Arc<Mutex<SourceStatus>>)>,
    settings: Arc<PullSettings>,
    elector: Option<Arc<Elector>>,
    storage: Arc<dyn Storage>,
    metrics: Arc<GlobalMetrics>,
    group_of: Vec<String>,
    state: Arc<GlobalState>,
    /// Where pulls start when neither a watermark nor a cursor says otherwise.
    initial_cursor: i64,
    failover_timeout: Duration,
    created: Instant,
    /// What the sources report of metric metadata.
    metadata: Arc<metadata::SourcesMetadata>,
}

impl GlobalIngest {
    /// `state_path`: where set watermarks and source cursors are kept across restarts.
    pub fn new(
        topology: &Topology,
        global: &GlobalConfig,
        storage: Arc<dyn Storage>,
        registry: &Registry,
        state_path: Option<std::path::PathBuf>,
    ) -> Result<GlobalIngest, StateError> {
        let sources = topology.sources(global);
        let state = Arc::new(GlobalState::load(state_path)?);
        let settings = Arc::new(PullSettings {
            interval: global.federate_interval,
            timeout: global.federate_timeout,
            selectors: global.federate_match.clone(),
            fast_link: global.fast_link,
            page_samples: global.page_samples,
            strip: {
                let mut s = Vec::new();
                if global.dedup == DedupMode::Failover {
                    s.push(topology.replica_label.clone());
                }
                if global.drop_shard_label {
                    s.push(topology.shard_label.clone());
                }
                s
            },
            body_size_limit: global.federate_body_size_limit,
            honor_labels: global.honor_labels,
        });
        // With data on disk but no state (older versions), catch up from a little before the
        // newest stored sample; with nothing at all, from a few minutes ago.
        let from_storage = storage.max_time().map(|t| t - 2 * global.federate_interval.as_millis() as i64);
        let initial_cursor = from_storage
            .map(|t| t - FILL_MARGIN_MS)
            .unwrap_or(now_ms() - INITIAL_BACKFILL.as_millis() as i64);
        let elector = (global.dedup == DedupMode::Failover).then(|| {
            let mut sets: Vec<(String, Vec<String>)> = Vec::new();
            for s in &sources {
                match sets.iter_mut().find(|(shard, _)| *shard == s.shard) {
                    Some((_, replicas)) => replicas.push(s.replica.clone()),
                    None => sets.push((s.shard.clone(), vec![s.replica.clone()])),
                }
            }
            let e = Elector::with_options(
                &sets,
                global.failover_timeout,
                global.min_coverage,
                FILL_MARGIN_MS,
                Instant::now(),
            );
            // After a restart each set fills from its own watermark — also a set that was away
            // before the restart.
            let kept = state.watermarks();
            for (shard, replica) in state.elections() {
                e.prefer(&shard, &replica);
            }
            for (shard, _) in &sets {
                match (kept.get(shard), from_storage) {
                    (Some(w), _) => e.set_watermark(shard, *w),
                    (None, Some(t)) => e.set_watermark(shard, t),
                    (None, None) => {}
                }
            }
            Arc::new(e)
        });
        let metrics = Arc::new(GlobalMetrics::new(registry));
        if let Some(e) = &elector {
            let e = e.clone();
            registry.register(Arc::new(move |w: &mut MetricsWriter| {
                let view = e.view(Instant::now());
                type PerReplica = fn(&ShardView, &ReplicaView) -> bool;
                let gauges: [(&str, &str, PerReplica); 3] = [
                    ("promtier_dedup_elected", "1 for the replica currently elected in each replica set.", |v, r| {
                        v.elected.as_deref() == Some(r.replica.as_str())
                    }),
                    (
                        "promtier_dedup_replica_healthy",
                        "1 if the replica delivered new data within failover_timeout.",
                        |_, r| r.healthy,
                    ),
                    (
                        "promtier_dedup_replica_coverage_short",
                        "1 if the replica's coverage (targets up, series) is below min_coverage of its best peer's.",
                        |_, r| r.short.is_some(),
                    ),
                ];
                for (name, help, f) in gauges {
                    w.family(name, help, MetricType::Gauge);
                    for v in &view {
                        for r in &v.replicas {
                            let x = if f(v, r) { 1.0 } else { 0.0 };
                            w.sample(name, &[("shard", &v.shard), ("replica", &r.replica)], x);
                        }
                    }
                }
                w.family(
                    "promtier_dedup_failovers_total",
                    "Elections that moved to another replica.",
                    MetricType::Counter,
                );
                for v in &view {
                    w.sample("promtier_dedup_failovers_total", &[("shard", &v.shard)], v.failovers as f64);
                }
            }));
        }
        let group_of = sources.iter().map(|s| s.group.clone()).collect();
        let sources =
            sources.into_iter().map(|s| (s, Arc::new(Mutex::new(SourceStatus::default())))).collect();
        Ok(GlobalIngest {
            sources,
            settings,
            elector,
            storage,
            metrics,
            group_of,
            state,
            initial_cursor,
            failover_timeout: global.failover_timeout,
            created: Instant::now(),
            metadata: Arc::default(),
        })
    }

    /// The global's own fast-link frontier at `now`: how far its replica sets (failover) or its
    /// sources (other modes) have committed, counting those that can still deliver (see
    /// [`Elector::frontier`]); sets that are away do not hold it back — what they store when they
    /// return is logged as a rewind.
    pub fn frontier(&self, now: i64) -> i64 {
        let at = Instant::now();
        let held = match &self.elector {
            Some(e) => e.frontier(at, self.initial_cursor),
            None => self
                .sources
                .iter()
                .filter_map(|(_, st)| {
                    let st = st.lock();
                    let counts = st
                        .last_ok
                        .map_or(self.started_recently(at), |t| at.duration_since(t) < self.failover_timeout);
                    counts.then(|| st.cursor.unwrap_or(self.initial_cursor))
                })
                .min(),
        };
        held.map_or(now - 1, |h| h.min(now - 1))
    }

    fn started_recently(&self, at: Instant) -> bool {
        at.saturating_duration_since(self.created) < self.failover_timeout
    }

    /// What the global covers: the sum over its replica sets of what the elected (failover) or
    /// best (other modes) healthy source covers.
    pub fn coverage(&self) -> Coverage {
        let mut total = Coverage::default();
        let mut best: Vec<(&str, Coverage)> = Vec::new();
        for (source, st) in &self.sources {
            let st = st.lock();
            if st.health != Health::Up {
                continue;
            }
            if let Some(e) = &self.elector
                && !matches!(e.role(&source.shard, &source.replica), crate::dedup::Role::Elected { .. })
            {
                continue;
            }
            let Some(c) = st.coverage else { continue };
            match best.iter_mut().find(|(s, _)| *s == source.shard) {
                Some((_, b)) if c.series > b.series => *b = c,
                Some(_) => {}
                None => best.push((&source.shard, c)),
            }
        }
        for (_, c) in best {
            total.add(&c);
        }
        total
    }

    /// The elector (failover mode only), for the dedup API.
    pub fn elector(&self) -> Option<&Arc<Elector>> {
        self.elector.as_ref()
    }

    /// Pulls every source until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        // One pair of clients (fast link, gzip'd text) per source group's client settings.
        let mut clients: Vec<(Arc<ClientConfig>, ScrapeClient, ScrapeClient)> = Vec::new();
        let mut metadata_sources = Vec::new();
        for (source, status) in &self.sources {
            let (client, text_client) = match clients.iter().find(|c| Arc::ptr_eq(&c.0, &source.client)) {
                Some((_, c, t)) => (c.clone(), t.clone()),
                None => {
                    // Every pull reads at most the body limit: a page over it is a source error,
                    // not an OOM.
                    let limit = self.settings.body_size_limit;
                    let built = ScrapeClient::with_config(&source.client, false).and_then(|c| {
                        let t = ScrapeClient::with_config(&source.client, true)?;
                        Ok((c.with_body_limit(limit), t.with_body_limit(limit)))
                    });
                    match built {
                        Ok((c, t)) => {
                            clients.push((source.client.clone(), c.clone(), t.clone()));
                            (c, t)
                        }
                        Err(e) => {
                            tracing::error!(group = %source.group, error = %e, "cannot build the federation HTTP client; not pulling this source");
                            status.lock().last_error = e.to_string();
                            continue;
                        }
                    }
                }
            };
            let p = puller::Puller {
                source: source.clone(),
                settings: self.settings.clone(),
                client: client.clone(),
                text_client: text_client.clone(),
                storage: self.storage.clone(),
                elector: self.elector.clone(),
                status: status.clone(),
                metrics: self.metrics.clone(),
                state: self.state.clone(),
                initial_cursor: self.initial_cursor,
            };
            tasks.spawn(p.run(shutdown.clone()));
            metadata_sources.push((source.clone(), status.clone(), text_client));
        }
        {
            let md = self.metadata.clone();
            let timeout = self.settings.timeout.max(Duration::from_secs(10));
            let token = shutdown.clone();
            tasks.spawn(async move { md.run(metadata_sources, timeout, token).await });
        }
        // The restart state is written once a second when it changed, and at shutdown.
        {
            let state = self.state.clone();
            let elector = self.elector.clone();
            let token = shutdown.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut failing = false;
                loop {
                    let stop = tokio::select! {
                        _ = token.cancelled() => true,
                        _ = tick.tick() => false,
                    };
                    // Watermarks move only after commits, so what is written never claims more than
                    // the TSDB holds.
                    if let Some(e) = &elector {
                        state.set_watermarks(e.watermarks());
                        state.set_elections(e.elections());
                    }
                    let s = state.clone();
                    match tokio::task::spawn_blocking(move || s.flush()).await {
                        Ok(Ok(())) => failing = false,
                        Ok(Err(e)) if !failing => {
                            failing = true;
                            tracing::error!(error = %e, "cannot write the global's restart state");
                        }
                        _ => {}
                    }
                    if stop {
                        return;
                    }
                }
            });
        }
        if let Some(e) = self.elector.clone() {
            let token = shutdown.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    for el in e.tick(Instant::now()) {
                        puller::log_election(&el);
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// The metric metadata the sources report (`(family, metadata)` pairs, repeated per replica
    /// set), for `/api/v1/metadata` and remote write.
    pub fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        self.metadata.list()
    }

    /// Sources as targets, for `/api/v1/targets` and the status page.
    pub fn targets(&self) -> TargetsSnapshot {
        let mut snap = TargetsSnapshot::default();
        for ((source, status), group) in self.sources.iter().zip(&self.group_of) {
            let st = status.lock().clone();
            let labels = Labels::from_pairs(&[
                ("instance", source.address.as_str()),
                ("job", &format!("federate/{group}")),
                ("shard", source.shard.as_str()),
                ("replica", source.replica.as_str()),
                ("node", source.node.as_str()),
            ]);
            let role = self.elector.as_ref().map(|e| e.role(&source.shard, &source.replica));
            let url = format!("{}/federate{}", source.base_url(), if st.fast_link { "/stream" } else { "" });
            snap.active.push(ActiveTarget {
                job: format!("federate/{group}"),
                target: Target {
                    discovered: labels.clone(),
                    full: labels.clone(),
                    labels,
                    url,
                    interval: self.settings.interval,
                    timeout: self.settings.timeout,
                    source: match role {
                        Some(crate::dedup::Role::Elected { .. }) => "elected".into(),
                        Some(crate::dedup::Role::Standby) => "standby".into(),
                        None => String::new(),
                    },
                },
                status: TargetStatus {
                    health: st.health,
                    last_error: st.last_error.clone(),
                    last_scrape: st.last_pull,
                    last_duration: st.last_duration,
                    last_samples: st.last_samples,
                    series: st.series,
                },
            });
        }
        snap
    }

    /// Every source with its current status, for the topology view.
    pub fn sources(&self) -> Vec<(Source, SourceStatus)> {
        self.sources.iter().map(|(source, status)| (source.clone(), status.lock().clone())).collect()
    }

    /// Partial-response warnings: replica sets with no healthy replica (failover), or sources
    /// that are down (other modes).
    pub fn warnings(&self) -> Vec<String> {
        if let Some(e) = &self.elector {
            return failover_warnings(&e.view(Instant::now()));
        }
        // Other modes store every replica: a set is missing only when all its replicas are down.
        let mut sets: Vec<(&str, bool)> = Vec::new();
        for (source, status) in &self.sources {
            let down = status.lock().health == Health::Down;
            match sets.iter_mut().find(|(s, _)| *s == source.shard) {
                Some((_, all_down)) => *all_down &= down,
                None => sets.push((&source.shard, down)),
            }
        }
        sets.into_iter()
            .filter(|(_, all_down)| *all_down)
            .map(|(shard, _)| {
                format!("replica set {shard:?} has no healthy replica; its data may be incomplete")
            })
            .collect()
    }

    /// When the newest data of any source arrived (for freshness checks).
    pub fn last_pull(&self) -> Option<SystemTime> {
        self.sources.iter().filter_map(|(_, s)| s.lock().last_pull).max()
    }
}

/// Partial-response warnings of a failover global: a replica set with no healthy replica, and
/// one pinned to a replica that is not healthy (a pin overrides the election, so that set's
/// newest data stops until the replica is back or the pin is lifted).
fn failover_warnings(views: &[crate::dedup::ShardView]) -> Vec<String> {
    let mut out = Vec::new();
    for v in views {
        if !v.healthy {
            out.push(format!("replica set {:?} has no healthy replica; its data may be incomplete", v.shard));
        } else if let Some(p) = &v.pinned
            && v.replicas.iter().any(|r| &r.replica == p && !r.healthy)
        {
            out.push(format!(
                "replica set {:?} is pinned to replica {p:?}, which is not healthy; its newest data is missing until that replica is back or unpinned",
                v.shard
            ));
        }
    }
    out
}

#[cfg(test)]
mod warning_tests {
    use super::failover_warnings;
    use crate::dedup::{ReplicaView, ShardView};

    fn set(pinned: Option<&str>, healthy: [bool; 2]) -> ShardView {
        let replicas: Vec<ReplicaView> = ["a", "b"]
            .iter()
            .zip(healthy)
            .map(|(r, h)| ReplicaView {
                replica: r.to_string(),
                healthy: h,
                coverage: None,
                short: None,
                last_error: None,
            })
            .collect();
        ShardView {
            shard: "apps-0".into(),
            elected: Some("a".into()),
            pinned: pinned.map(str::to_string),
            healthy: healthy.iter().any(|h| *h),
            replicas,
            failovers: 0,
        }
    }

    #[test]
    fn a_set_pinned_to_a_dead_replica_warns_even_with_a_healthy_peer() {
        assert!(failover_warnings(&[set(None, [true, false])]).is_empty());
        assert!(failover_warnings(&[set(Some("a"), [true, false])]).is_empty());
        let w = failover_warnings(&[set(Some("b"), [true, false])]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("pinned to replica \"b\""), "{w:?}");
        let w = failover_warnings(&[set(None, [false, false])]);
        assert!(w[0].contains("no healthy replica"), "{w:?}");
    }
}
