//! The global tier's ingest: one puller per source (every replica of every shard of the leaf
//! groups it pulls, stacked globals, external Prometheus servers), deduplicated as configured —
//! `failover` stores the elected replica only (replica label removed) and fills the window after
//! a switch, `merge` and `none` store every replica as it comes. Promtier sources are pulled over
//! the fast link (every sample since a cursor, in bounded pages); Prometheus sources over text
//! `/federate`. Each set's watermark and each source's cursor survive restarts (`state`), and the
//! global's own fast-link frontier is what its sets have committed. Metric metadata is read
//! from the sources' `/api/v1/metadata` (`metadata`), for the global's own API and its
//! remote-write queues.
//!
//! A reload changes the source list live ([`GlobalIngest::reconfigure`]): sources are matched by
//! node name; a new one gets a puller, a removed one's puller is stopped (its child token) and it
//! leaves the targets, the sources view and `/metrics`, a kept one pulls on untouched. Changed
//! pull settings restart every puller, each resuming from its cursor (kept per node name, so a
//! source removed and added again resumes too). The elector follows the replica sets. Every
//! puller is a task of `run`'s JoinSet: a reload hands new ones to it over a channel.

mod metadata;
mod puller;
mod state;
mod stream_ingest;
mod strip;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use puller::SourceStatus;
/// For the fast-link fuzz target (`crate::fuzzing`).
pub(crate) use stream_ingest::StreamState;

use self::state::GlobalState;
pub use self::state::StateError;
use crate::dedup::{Elector, ElectorChanges, ReplicaView, ShardView};
use crate::metrics::{Counter, DURATION_BUCKETS, Family, Gauge, Histogram, MetricsWriter, Registry};
use crate::model::{Coverage, Labels, MetricMetadata, MetricType, PromDuration, now_ms};
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

    /// Drops a source's series (`[source, shard, replica]`): it left the topology.
    fn forget(&self, labels: &[&str]) {
        for f in [&self.up, &self.lag, &self.last_success, &self.behind] {
            f.remove(labels);
        }
        for f in [&self.pulls, &self.failures, &self.samples, &self.overlap, &self.guarded, &self.missed] {
            f.remove(labels);
        }
        self.duration.remove(labels);
    }
}

/// Everything a global pulls, and how. The source list, the pull settings and the elector's
/// settings change on a reload ([`GlobalIngest::reconfigure`]); the dedup mode does not.
pub struct GlobalIngest {
    live: Mutex<Live>,
    elector: Option<Arc<Elector>>,
    dedup: DedupMode,
    replica_label: String,
    storage: Arc<dyn Storage>,
    metrics: Arc<GlobalMetrics>,
    state: Arc<GlobalState>,
    /// Where pulls start when neither a watermark nor a cursor says otherwise (at start).
    initial_cursor: i64,
    created: Instant,
    /// What the sources report of metric metadata.
    metadata: Arc<metadata::SourcesMetadata>,
    /// Parent of every puller's and the metadata reader's token; cancelled when `run` stops.
    root: CancellationToken,
    /// Tasks for `run` to start (its JoinSet owns every task).
    commands: mpsc::UnboundedSender<Command>,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

/// What can change while the global runs.
struct Live {
    sources: Vec<Running>,
    settings: Arc<PullSettings>,
    failover_timeout: Duration,
    min_coverage: f64,
    /// Stops the metadata reader of the current source list.
    metadata_stop: CancellationToken,
}

/// A source and its puller.
struct Running {
    source: Source,
    status: Arc<Mutex<SourceStatus>>,
    /// Stops its puller.
    stop: CancellationToken,
    /// Cancelled once its puller has stopped (a restarted puller of the source waits for it).
    stopped: CancellationToken,
    /// Set when the source left the topology: its metrics go once its puller has stopped.
    removed: Arc<AtomicBool>,
    /// Where its first pull starts when neither a watermark nor a cursor says otherwise.
    initial_cursor: i64,
    /// The text client its metadata is read with (`None`: no client could be built).
    text_client: Option<ScrapeClient>,
}

/// A task for `run` to start.
enum Command {
    /// A source's puller, started once `after` (its previous puller) has stopped.
    Pull {
        puller: Box<puller::Puller>,
        stop: CancellationToken,
        stopped: CancellationToken,
        after: Option<CancellationToken>,
        removed: Arc<AtomicBool>,
    },
    /// The metadata reader of the current source list.
    Metadata { sources: Vec<metadata::MetadataSource>, timeout: Duration, stop: CancellationToken },
}

/// Why a reloaded topology was not applied to a global's ingest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconfigureError {
    #[error("{}", .0.join("; "))]
    NeedsRestart(Vec<String>),
}

/// What [`GlobalIngest::reconfigure`] changed (sources by node name).
#[derive(Debug, Clone, Default)]
pub struct ReconfigureReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// The same node at another address, kind or client settings: its puller restarted.
    pub changed: Vec<String>,
    pub kept: Vec<String>,
    /// Pull settings that changed (every puller restarted, resuming from its cursor).
    pub settings: Vec<String>,
    /// Failover settings that changed, and what the elector did.
    pub dedup: Vec<String>,
    pub elector: Option<ElectorChanges>,
}

impl std::fmt::Display for ReconfigureReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sources added {:?}, removed {:?}, changed {:?}, kept {:?}",
            self.added, self.removed, self.changed, self.kept
        )?;
        if self.settings.is_empty() {
            write!(f, "; pull settings unchanged")?;
        } else {
            write!(
                f,
                "; pull settings changed ({}): every puller restarted, resuming from its cursor",
                self.settings.join(", ")
            )?;
        }
        if let Some(c) = &self.elector {
            write!(
                f,
                "; replica sets added {:?}, removed {:?}; replicas added {:?}, removed {:?}",
                c.sets_added, c.sets_removed, c.replicas_added, c.replicas_removed
            )?;
            for s in &c.unpinned {
                write!(f, "; {s:?} unpinned (its pinned replica is gone)")?;
            }
            for e in &c.elections {
                write!(f, "; {:?} elected {:?} ({})", e.shard, e.to, e.reason)?;
            }
        }
        for d in &self.dedup {
            write!(f, "; {d}")?;
        }
        Ok(())
    }
}

/// How a new source list compares with the running one: sources are matched by node name (the
/// key of their cursors); a match equal in everything else (address, kind, scheme, client
/// settings, replica set) is kept, one that is not is changed.
#[derive(Debug, Default, PartialEq, Eq)]
struct SourceDiff {
    /// Indices into the new list.
    added: Vec<usize>,
    /// Indices into the old list.
    removed: Vec<usize>,
    /// (old, new) index pairs.
    changed: Vec<(usize, usize)>,
    kept: Vec<(usize, usize)>,
}

fn diff_sources(old: &[&Source], new: &[Source]) -> SourceDiff {
    let mut d = SourceDiff::default();
    let mut matched = vec![false; old.len()];
    for (j, s) in new.iter().enumerate() {
        match old.iter().enumerate().position(|(i, o)| !matched[i] && o.node == s.node) {
            Some(i) => {
                matched[i] = true;
                if *old[i] == *s { d.kept.push((i, j)) } else { d.changed.push((i, j)) }
            }
            None => d.added.push(j),
        }
    }
    d.removed = matched.iter().enumerate().filter(|(_, m)| !**m).map(|(i, _)| i).collect();
    d
}

/// The pull settings of `global` in `topology`.
fn pull_settings(topology: &Topology, global: &GlobalConfig) -> PullSettings {
    PullSettings {
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
    }
}

/// Which pull settings differ, by their name in the topology file.
fn settings_changes(old: &PullSettings, new: &PullSettings) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |differs: bool, name: &str| {
        if differs {
            out.push(name.to_string());
        }
    };
    check(old.interval != new.interval, "federate.interval");
    check(old.timeout != new.timeout, "federate.timeout");
    check(old.selectors != new.selectors, "federate.match");
    check(old.fast_link != new.fast_link, "federate.fast_link");
    check(old.page_samples != new.page_samples, "federate.page_samples");
    check(old.body_size_limit != new.body_size_limit, "federate.body_size_limit");
    check(old.honor_labels != new.honor_labels, "federate.honor_labels");
    check(
        old.strip != new.strip,
        "federate.shard_label (pulled series are stored under their new identity from now on)",
    );
    out
}

/// Replica sets and their replicas, in source order.
fn replica_sets(sources: &[Source]) -> Vec<(String, Vec<String>)> {
    let mut sets: Vec<(String, Vec<String>)> = Vec::new();
    for s in sources {
        match sets.iter_mut().find(|(shard, _)| *shard == s.shard) {
            Some((_, replicas)) => replicas.push(s.replica.clone()),
            None => sets.push((s.shard.clone(), vec![s.replica.clone()])),
        }
    }
    sets
}

/// A source's pair of clients (fast link, gzip'd text), or why it could not be built.
type ClientPair = Result<(ScrapeClient, ScrapeClient), String>;

/// The pair of clients per client settings, built once per configuration.
#[derive(Default)]
struct Clients(Vec<(ClientConfig, ClientPair)>);

impl Clients {
    fn get(&mut self, cfg: &ClientConfig, body_limit: usize) -> ClientPair {
        if let Some((_, c)) = self.0.iter().find(|(c, _)| c == cfg) {
            return c.clone();
        }
        // Every pull reads at most the body limit: a page over it is a source error, not an OOM.
        let built = ScrapeClient::with_config(cfg, false)
            .and_then(|c| {
                let t = ScrapeClient::with_config(cfg, true)?;
                Ok((c.with_body_limit(body_limit), t.with_body_limit(body_limit)))
            })
            .map_err(|e| e.to_string());
        self.0.push((cfg.clone(), built.clone()));
        built
    }
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
        let settings = Arc::new(pull_settings(topology, global));
        // With data on disk but no state (older versions), catch up from a little before the
        // newest stored sample; with nothing at all, from a few minutes ago.
        let (from_storage, initial_cursor) = start_points(storage.as_ref(), global.federate_interval);
        let elector = (global.dedup == DedupMode::Failover).then(|| {
            let sets = replica_sets(&sources);
            let e = Elector::with_options(
                &sets,
                global.failover_timeout,
                global.min_coverage,
                FILL_MARGIN_MS,
                Instant::now(),
            );
            // After a restart each set fills from its own watermark — also a set that was away
            // before the restart.
            let shards: Vec<&str> = sets.iter().map(|(s, _)| s.as_str()).collect();
            resume_sets(&e, &state, &shards, from_storage);
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
        let (commands, inbox) = mpsc::unbounded_channel();
        let root = CancellationToken::new();
        let ingest = GlobalIngest {
            live: Mutex::new(Live {
                sources: Vec::new(),
                settings,
                failover_timeout: global.failover_timeout,
                min_coverage: global.min_coverage,
                metadata_stop: root.child_token(),
            }),
            elector,
            dedup: global.dedup,
            replica_label: topology.replica_label.clone(),
            storage,
            metrics,
            state,
            initial_cursor,
            created: Instant::now(),
            metadata: Arc::default(),
            root,
            commands,
            inbox: Mutex::new(Some(inbox)),
        };
        {
            let mut live = ingest.live.lock();
            let mut clients = Clients::default();
            let settings = live.settings.clone();
            live.sources = sources
                .into_iter()
                .map(|s| ingest.start(&settings, s, Arc::default(), initial_cursor, None, &mut clients))
                .collect();
            ingest.restart_metadata(&mut live);
        }
        Ok(ingest)
    }

    /// Starts `source`'s puller (once `after` has stopped), or records why it cannot be pulled.
    fn start(
        &self,
        settings: &Arc<PullSettings>,
        source: Source,
        status: Arc<Mutex<SourceStatus>>,
        initial_cursor: i64,
        after: Option<CancellationToken>,
        clients: &mut Clients,
    ) -> Running {
        let stop = self.root.child_token();
        let stopped = CancellationToken::new();
        let removed = Arc::new(AtomicBool::new(false));
        let text_client = match clients.get(&source.client, settings.body_size_limit) {
            Ok((client, text_client)) => {
                let puller = puller::Puller {
                    source: source.clone(),
                    settings: settings.clone(),
                    client,
                    text_client: text_client.clone(),
                    storage: self.storage.clone(),
                    elector: self.elector.clone(),
                    status: status.clone(),
                    metrics: self.metrics.clone(),
                    state: self.state.clone(),
                    initial_cursor,
                };
                // `run` has stopped only at shutdown, when nothing needs to start.
                let _ = self.commands.send(Command::Pull {
                    puller: Box::new(puller),
                    stop: stop.clone(),
                    stopped: stopped.clone(),
                    after,
                    removed: removed.clone(),
                });
                Some(text_client)
            }
            Err(e) => {
                tracing::error!(group = %source.group, source = %source.node, error = %e, "cannot build the federation HTTP client; not pulling this source");
                status.lock().last_error = e;
                stopped.cancel();
                None
            }
        };
        Running { source, status, stop, stopped, removed, initial_cursor, text_client }
    }

    /// Starts reading metric metadata from the current sources (stopping the previous reader),
    /// and forgets what sets that are gone reported.
    fn restart_metadata(&self, live: &mut Live) {
        live.metadata_stop.cancel();
        live.metadata_stop = self.root.child_token();
        let sources: Vec<metadata::MetadataSource> = live
            .sources
            .iter()
            .filter_map(|r| Some((r.source.clone(), r.status.clone(), r.text_client.clone()?)))
            .collect();
        self.metadata.retain(sources.iter().map(|(s, _, _)| s.shard.as_str()));
        let _ = self.commands.send(Command::Metadata {
            sources,
            timeout: live.settings.timeout.max(Duration::from_secs(10)),
            stop: live.metadata_stop.clone(),
        });
    }

    /// What of `global` in `topology` this ingest cannot apply while it runs: a change of the
    /// dedup mode or of the replica label changes the identity of the stored series (failover
    /// stores without the replica label) and the query view (merge joins replicas at query
    /// time).
    pub fn refused(&self, topology: &Topology, global: &GlobalConfig) -> Vec<String> {
        let mut out = Vec::new();
        if global.dedup != self.dedup {
            out.push(format!(
                "dedup mode {} → {} (it changes the identity of the stored series and the query view)",
                self.dedup.as_str(),
                global.dedup.as_str()
            ));
        }
        if self.dedup != DedupMode::None && topology.replica_label != self.replica_label {
            out.push(format!(
                "replica_label {:?} → {:?} (dedup {} uses it for the identity of the stored series or the query view)",
                self.replica_label,
                topology.replica_label,
                self.dedup.as_str()
            ));
        }
        out
    }

    /// Applies `global` of a reloaded `topology` without a restart: sources that are new get a
    /// puller, removed ones have theirs stopped (and leave the targets, the sources view and
    /// `/metrics`), kept ones pull on untouched — unless the pull settings changed, which
    /// restarts every puller (each resumes from its cursor, kept across restarts). In failover
    /// mode the elector follows (new sets elect, new replicas join as standbys, a removed elected
    /// replica hands its set over) with the new `failover_timeout` and `min_coverage`. What
    /// cannot change live ([`GlobalIngest::refused`]) is refused and nothing changes.
    pub fn reconfigure(
        &self,
        topology: &Topology,
        global: &GlobalConfig,
    ) -> Result<ReconfigureReport, ReconfigureError> {
        let refused = self.refused(topology, global);
        if !refused.is_empty() {
            return Err(ReconfigureError::NeedsRestart(refused));
        }
        let new_sources = topology.sources(global);
        let settings = Arc::new(pull_settings(topology, global));
        // Sources added now start as a restarted global would: from a little before the newest
        // stored sample (their sets' fill), or a few minutes back.
        let (from_storage, initial_cursor) = start_points(self.storage.as_ref(), global.federate_interval);
        let mut live = self.live.lock();
        let mut report = ReconfigureReport {
            settings: settings_changes(&live.settings, &settings),
            ..ReconfigureReport::default()
        };
        let restart_all = !report.settings.is_empty();
        // The elector first, so that new pullers find their sets.
        if let Some(e) = &self.elector {
            let (timeout, coverage) = (global.failover_timeout, global.min_coverage);
            let changes = e.reconfigure(&replica_sets(&new_sources), timeout, coverage, Instant::now());
            let shards: Vec<&str> = changes.sets_added.iter().map(String::as_str).collect();
            resume_sets(e, &self.state, &shards, from_storage);
            for el in &changes.elections {
                puller::log_election(el);
            }
            report.elector = Some(changes);
        }
        if self.elector.is_some() && live.failover_timeout != global.failover_timeout {
            report.dedup.push(format!(
                "failover_timeout {} → {}",
                PromDuration(live.failover_timeout),
                PromDuration(global.failover_timeout)
            ));
        }
        if self.elector.is_some() && live.min_coverage != global.min_coverage {
            report.dedup.push(format!("min_coverage {} → {}", live.min_coverage, global.min_coverage));
        }
        live.failover_timeout = global.failover_timeout;
        live.min_coverage = global.min_coverage;
        let mut old: Vec<Option<Running>> = std::mem::take(&mut live.sources).into_iter().map(Some).collect();
        let diff = {
            let refs: Vec<&Source> = old.iter().filter_map(|r| r.as_ref().map(|r| &r.source)).collect();
            diff_sources(&refs, &new_sources)
        };
        let mut clients = Clients::default();
        let mut next: Vec<Option<Running>> = (0..new_sources.len()).map(|_| None).collect();
        for (i, j) in diff.kept.iter().chain(&diff.changed) {
            let Some(prev) = old[*i].take() else { continue };
            let source = new_sources[*j].clone();
            let same = prev.source == source;
            if same {
                report.kept.push(source.node.clone());
            } else {
                report.changed.push(source.node.clone());
            }
            if same && !restart_all {
                next[*j] = Some(prev);
                continue;
            }
            prev.stop.cancel();
            let labels =
                [prev.source.node.as_str(), prev.source.shard.as_str(), prev.source.replica.as_str()];
            let status = if same {
                prev.status.clone()
            } else {
                if (prev.source.shard.as_str(), prev.source.replica.as_str())
                    != (source.shard.as_str(), source.replica.as_str())
                {
                    prev.removed.store(true, Ordering::Relaxed);
                    self.metrics.forget(&labels);
                }
                Arc::default()
            };
            let after = Some(prev.stopped.clone());
            next[*j] = Some(self.start(&settings, source, status, prev.initial_cursor, after, &mut clients));
        }
        for j in &diff.added {
            let source = new_sources[*j].clone();
            report.added.push(source.node.clone());
            next[*j] =
                Some(self.start(&settings, source, Arc::default(), initial_cursor, None, &mut clients));
        }
        for prev in old.into_iter().flatten() {
            report.removed.push(prev.source.node.clone());
            prev.removed.store(true, Ordering::Relaxed);
            prev.stop.cancel();
            self.metrics.forget(&[&prev.source.node, &prev.source.shard, &prev.source.replica]);
        }
        live.sources = next.into_iter().flatten().collect();
        live.settings = settings;
        let sources_changed =
            !(report.added.is_empty() && report.removed.is_empty() && report.changed.is_empty());
        if sources_changed || restart_all {
            self.restart_metadata(&mut live);
        }
        Ok(report)
    }

    /// The global's own fast-link frontier at `now`: how far its replica sets (failover) or its
    /// sources (other modes) have committed, counting those that can still deliver (see
    /// [`Elector::frontier`]); sets that are away do not hold it back — what they store when they
    /// return is logged as a rewind.
    pub fn frontier(&self, now: i64) -> i64 {
        let at = Instant::now();
        let held = match &self.elector {
            Some(e) => e.frontier(at, self.initial_cursor),
            None => {
                let live = self.live.lock();
                let timeout = live.failover_timeout;
                live.sources
                    .iter()
                    .filter_map(|r| {
                        let st = r.status.lock();
                        let counts = st
                            .last_ok
                            .map_or(self.started_recently(at, timeout), |t| at.duration_since(t) < timeout);
                        counts.then(|| st.cursor.unwrap_or(r.initial_cursor))
                    })
                    .min()
            }
        };
        held.map_or(now - 1, |h| h.min(now - 1))
    }

    fn started_recently(&self, at: Instant, timeout: Duration) -> bool {
        at.saturating_duration_since(self.created) < timeout
    }

    /// What the global covers: the sum over its replica sets of what the elected (failover) or
    /// best (other modes) healthy source covers.
    pub fn coverage(&self) -> Coverage {
        let mut total = Coverage::default();
        let mut best: Vec<(String, Coverage)> = Vec::new();
        for (source, st) in self.sources() {
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
                None => best.push((source.shard, c)),
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

    /// Pulls every source until `shutdown`, starting the pullers a reload adds (it owns every
    /// task it starts, and stops them all before it returns).
    pub async fn run(&self, shutdown: CancellationToken) {
        let Some(mut inbox) = self.inbox.lock().take() else {
            tracing::error!("the global's ingest is already running");
            return;
        };
        let mut tasks = tokio::task::JoinSet::new();
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
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                command = inbox.recv() => match command {
                    Some(c) => self.spawn(&mut tasks, c),
                    // The sender lives as long as `self`.
                    None => {
                        shutdown.cancelled().await;
                        break;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        self.root.cancel();
        while tasks.join_next().await.is_some() {}
    }

    fn spawn(&self, tasks: &mut tokio::task::JoinSet<()>, command: Command) {
        match command {
            Command::Pull { puller, stop, stopped, after, removed } => {
                let metrics = self.metrics.clone();
                tasks.spawn(async move {
                    // Cancelled when this task ends, also by a panic: a successor never waits on it.
                    let _stopped = stopped.drop_guard();
                    if let Some(prev) = after {
                        tokio::select! {
                            () = prev.cancelled() => {}
                            () = stop.cancelled() => return,
                        }
                    }
                    let source = puller.source.clone();
                    puller.run(stop).await;
                    if removed.load(Ordering::Relaxed) {
                        metrics.forget(&[&source.node, &source.shard, &source.replica]);
                    }
                });
            }
            Command::Metadata { sources, timeout, stop } => {
                let md = self.metadata.clone();
                tasks.spawn(async move { md.run(sources, timeout, stop).await });
            }
        }
    }

    /// The metric metadata the sources report (`(family, metadata)` pairs, repeated per replica
    /// set), for `/api/v1/metadata` and remote write.
    pub fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        self.metadata.list()
    }

    /// Sources as targets, for `/api/v1/targets` and the status page.
    pub fn targets(&self) -> TargetsSnapshot {
        let mut snap = TargetsSnapshot::default();
        let settings = self.live.lock().settings.clone();
        for (source, st) in self.sources() {
            let group = &source.group;
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
                    interval: settings.interval,
                    timeout: settings.timeout,
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
        let statuses: Vec<(Source, Arc<Mutex<SourceStatus>>)> =
            self.live.lock().sources.iter().map(|r| (r.source.clone(), r.status.clone())).collect();
        statuses.into_iter().map(|(source, status)| (source, status.lock().clone())).collect()
    }

    /// Partial-response warnings: replica sets with no healthy replica (failover), or sources
    /// that are down (other modes).
    pub fn warnings(&self) -> Vec<String> {
        if let Some(e) = &self.elector {
            return failover_warnings(&e.view(Instant::now()));
        }
        // Other modes store every replica: a set is missing only when all its replicas are down.
        let mut sets: Vec<(String, bool)> = Vec::new();
        for (source, status) in self.sources() {
            let down = status.health == Health::Down;
            match sets.iter_mut().find(|(s, _)| *s == source.shard) {
                Some((_, all_down)) => *all_down &= down,
                None => sets.push((source.shard, down)),
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
        self.sources().into_iter().filter_map(|(_, s)| s.last_pull).max()
    }
}

/// Where a global's pulls start when nothing of their own says: `from_storage`, a little before
/// the newest sample it stores (two pull intervals), if it stores any; and the initial cursor,
/// the fill margin before that, or a few minutes back with nothing stored.
fn start_points(storage: &dyn Storage, interval: Duration) -> (Option<i64>, i64) {
    let from_storage = storage.max_time().map(|t| t - 2 * interval.as_millis() as i64);
    let initial =
        from_storage.map(|t| t - FILL_MARGIN_MS).unwrap_or(now_ms() - INITIAL_BACKFILL.as_millis() as i64);
    (from_storage, initial)
}

/// Where the first election of each of `shards` fills from: the watermark it had (kept across
/// restarts and reloads, so a set that comes back fills its absence), else a little before the
/// newest stored sample; and the replica it had elected is preferred again.
fn resume_sets(e: &Elector, state: &GlobalState, shards: &[&str], from_storage: Option<i64>) {
    let kept = state.watermarks();
    for (shard, replica) in state.elections() {
        if shards.contains(&shard.as_str()) {
            e.prefer(&shard, &replica);
        }
    }
    for shard in shards {
        match (kept.get(*shard), from_storage) {
            (Some(w), _) => e.set_watermark(shard, *w),
            (None, Some(t)) => e.set_watermark(shard, t),
            (None, None) => {}
        }
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

#[cfg(test)]
mod reconfigure_tests {
    use super::*;
    use crate::tsdb::{Head, HeadOptions};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A global pulling `apps` (`shards` × `replicas`, on ports from `base`, nothing listening
    /// there needed).
    fn topology(shards: u32, replicas: u32, dedup: &str, interval: &str, base: u16) -> Topology {
        let text = format!(
            "cluster: t\n\
             jobs: [{{job_name: demo, static_configs: [{{targets: ['127.0.0.1:9']}}]}}]\n\
             leaves: [{{group: apps, jobs: [demo], shards: {shards}, replicas: {replicas}, listen: '127.0.0.1:{base}'}}]\n\
             globals: [{{name: global, from: [apps], listen: '127.0.0.1:{g}', federate: {{interval: {interval}, timeout: 500ms}}, dedup: {{mode: {dedup}, failover_timeout: 5s}}}}]\n",
            g = base + 10,
        );
        crate::topology::parse(&text, std::path::Path::new("/nonexistent/t.yaml")).expect("a valid topology")
    }

    fn source(node: &str, address: &str) -> Source {
        Source {
            group: "apps".into(),
            shard: "apps-0".into(),
            replica: node.rsplit('-').next().unwrap_or("a").into(),
            node: node.into(),
            address: address.into(),
            kind: crate::topology::SourceKind::Promtier,
            scheme: "http",
            client: Arc::default(),
        }
    }

    #[test]
    fn sources_are_matched_by_node_and_compared_in_full() {
        let old = [source("apps-0-a", "h:1"), source("apps-0-b", "h:2"), source("apps-0-c", "h:3")];
        let mut moved = source("apps-0-b", "h:9");
        let mut new = vec![source("apps-0-d", "h:4"), source("apps-0-a", "h:1"), moved.clone()];
        let refs: Vec<&Source> = old.iter().collect();
        let d = diff_sources(&refs, &new);
        assert_eq!(
            d,
            SourceDiff { added: vec![0], removed: vec![2], changed: vec![(1, 2)], kept: vec![(0, 1)] }
        );
        // Other client settings make another source too.
        moved.address = "h:2".into();
        moved.client = Arc::new(ClientConfig {
            auth: Some(crate::topology::Auth::Bearer(crate::topology::Secret::Inline("x".into()))),
            ..ClientConfig::default()
        });
        new[2] = moved;
        assert_eq!(diff_sources(&refs, &new).changed, vec![(1, 2)]);
        assert_eq!(diff_sources(&refs, &old).kept, vec![(0, 0), (1, 1), (2, 2)]);
    }

    fn nodes(ingest: &GlobalIngest) -> Vec<String> {
        ingest.sources().into_iter().map(|(s, _)| s.node).collect()
    }

    /// Waits (bounded) until `f` holds.
    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_adds_and_removes_sources_and_sets_and_refuses_a_dedup_mode_change() -> TestResult {
        let base = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port().saturating_sub(20)
        };
        let t1 = topology(1, 2, "failover", "1s", base);
        let g = t1.global("global").ok_or("no global")?;
        let storage: Arc<dyn Storage> = Arc::new(Head::new(HeadOptions::default())?);
        let registry = Registry::new();
        let ingest = GlobalIngest::new(&t1, g, storage, &registry, None)?;
        let stop = CancellationToken::new();
        let sets = |i: &GlobalIngest| -> Vec<(String, Vec<String>)> {
            let view = i.elector().map(|e| e.view(Instant::now())).unwrap_or_default();
            view.into_iter().map(|v| (v.shard, v.replicas.into_iter().map(|r| r.replica).collect())).collect()
        };
        let metrics = || String::from_utf8_lossy(&registry.render()).into_owned();
        let body = async {
            assert_eq!(nodes(&ingest), ["apps-0-a", "apps-0-b"]);
            until("apps-0-b to be pulled", || metrics().contains("source=\"apps-0-b\"")).await;

            // A second shard: its sources and set are added, the first shard's pull on.
            let t2 = topology(2, 2, "failover", "1s", base);
            let r = ingest.reconfigure(&t2, t2.global("global").ok_or("no global")?)?;
            assert_eq!(
                (r.added.clone(), r.kept.clone()),
                (
                    vec!["apps-1-a".to_string(), "apps-1-b".into()],
                    vec!["apps-0-a".to_string(), "apps-0-b".into()]
                )
            );
            assert!(r.removed.is_empty() && r.changed.is_empty() && r.settings.is_empty(), "{r}");
            assert_eq!(nodes(&ingest), ["apps-0-a", "apps-0-b", "apps-1-a", "apps-1-b"]);
            assert_eq!(sets(&ingest).len(), 2);
            assert_eq!(ingest.targets().active.len(), 4);
            until("apps-1-a to be pulled", || metrics().contains("source=\"apps-1-a\"")).await;

            // One replica per shard: the b sources stop and leave the metrics and the sets.
            let t3 = topology(2, 1, "failover", "1s", base);
            let r = ingest.reconfigure(&t3, t3.global("global").ok_or("no global")?)?;
            assert_eq!(r.removed, ["apps-0-b", "apps-1-b"], "{r}");
            assert_eq!(nodes(&ingest), ["apps-0-a", "apps-1-a"]);
            assert_eq!(
                sets(&ingest),
                [
                    ("apps-0".to_string(), vec!["a".to_string()]),
                    ("apps-1".to_string(), vec!["a".to_string()])
                ]
            );
            until("apps-0-b to leave /metrics", || !metrics().contains("source=\"apps-0-b\"")).await;
            assert!(metrics().contains("source=\"apps-0-a\""));

            // A new pull interval restarts every puller; the sources stay.
            let t4 = topology(2, 1, "failover", "2s", base);
            let r = ingest.reconfigure(&t4, t4.global("global").ok_or("no global")?)?;
            assert_eq!(r.settings, ["federate.interval"], "{r}");
            assert_eq!(r.kept, ["apps-0-a", "apps-1-a"], "{r}");
            assert!(r.to_string().contains("every puller restarted"), "{r}");
            assert!(ingest.targets().active.iter().all(|t| t.target.interval == Duration::from_secs(2)));

            // Another dedup mode is refused, and nothing changes.
            let t5 = topology(1, 2, "merge", "2s", base);
            match ingest.reconfigure(&t5, t5.global("global").ok_or("no global")?) {
                Err(ReconfigureError::NeedsRestart(why)) => {
                    assert!(why.iter().any(|w| w.contains("dedup mode failover → merge")), "{why:?}")
                }
                Ok(r) => panic!("a dedup mode change was applied: {r}"),
            }
            assert_eq!(nodes(&ingest), ["apps-0-a", "apps-1-a"]);
            Ok::<(), Box<dyn std::error::Error>>(())
        };
        // Stops the ingest however the body ends (an early error too).
        let test = async {
            let r = body.await;
            stop.cancel();
            r
        };
        let ((), r) = tokio::join!(ingest.run(stop.clone()), test);
        r
    }
}
