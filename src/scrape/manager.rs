//! The scrape manager: keeps one scrape loop running per target this node owns, following
//! discovery changes (new targets start, removed targets stop and go stale), and reports every
//! target's state for `/api/v1/targets`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::ScrapeClient;
use super::discovery::JobDiscovery;
use super::ingest::SampleContext;
use super::metrics::ScrapeMetrics;
use super::refused::{self, RefusalLog};
use super::scrape_loop::{ScrapeClock, ScrapeLoop, TargetStatus};
use super::target::{DroppedTarget, Target, TargetFilter, build_targets};
use crate::metrics::Registry;
use crate::storage::Storage;
use crate::topology::ScrapeConfig;

/// How often discovery files are checked for changes.
const DISCOVERY_POLL: Duration = Duration::from_secs(2);

/// One active target as the targets API shows it.
#[derive(Debug, Clone)]
pub struct ActiveTarget {
    pub job: String,
    pub target: Target,
    pub status: TargetStatus,
}

/// All targets of the node.
#[derive(Debug, Clone, Default)]
pub struct TargetsSnapshot {
    pub active: Vec<ActiveTarget>,
    pub dropped: Vec<(String, DroppedTarget)>,
}

struct Running {
    target: Target,
    in_flight: Arc<AtomicI64>,
    status: Arc<Mutex<TargetStatus>>,
    metadata: super::scrape_loop::TargetMetadata,
    removed: CancellationToken,
    handle: JoinHandle<()>,
}

impl Pool {
    fn new(job: Arc<ScrapeConfig>) -> Pool {
        let client = match ScrapeClient::new(&job) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(job = %job.job_name, error = %e, "job disabled: cannot build its HTTP client");
                None
            }
        };
        Pool { discovery: JobDiscovery::new(&job), job, client, running: HashMap::new(), dropped: Vec::new() }
    }
}

/// Whether two versions of a job scrape alike (so its loops may go on). Credentials compare
/// by value; the rest by its full description.
fn same_job(a: &ScrapeConfig, b: &ScrapeConfig) -> bool {
    a.client == b.client && format!("{a:?}") == format!("{b:?}")
}

struct Pool {
    job: Arc<ScrapeConfig>,
    discovery: JobDiscovery,
    client: Option<ScrapeClient>,
    running: HashMap<u64, Running>,
    dropped: Vec<DroppedTarget>,
}

/// Runs the scrape loops of one node.
pub struct ScrapeManager {
    storage: Arc<dyn Storage>,
    /// Which targets this node keeps (replaced by [`ScrapeManager::reconfigure`]).
    filter: Mutex<Arc<dyn TargetFilter>>,
    metrics: Arc<ScrapeMetrics>,
    offset_seed: u64,
    pools: Mutex<Vec<Pool>>,
    /// Held by a discovery round and by a reconfiguration, so neither sees the other half done.
    round: tokio::sync::Mutex<()>,
    /// Starts a discovery round at once (after a reconfiguration).
    wake: tokio::sync::Notify,
}

/// What a reconfiguration changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconfigured {
    /// Jobs started, restarted (their configuration changed), stopped, and kept as they were.
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub kept: Vec<String>,
}

impl ScrapeManager {
    /// `offset_seed` spreads this node's scrape times (derive it from the node's identity).
    pub fn new(
        jobs: Vec<Arc<ScrapeConfig>>,
        storage: Arc<dyn Storage>,
        filter: Arc<dyn TargetFilter>,
        registry: &Registry,
        offset_seed: u64,
    ) -> ScrapeManager {
        let pools = jobs.into_iter().map(Pool::new).collect();
        ScrapeManager {
            storage,
            filter: Mutex::new(filter),
            metrics: Arc::new(ScrapeMetrics::new(registry)),
            offset_seed,
            pools: Mutex::new(pools),
            round: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Applies new jobs and a new target filter (a reloaded topology) without a restart: a job
    /// whose configuration is unchanged keeps its scrape loops, and its targets are matched
    /// against the new filter at once (a target the node no longer owns stops and goes stale; the
    /// others go on without a gap); a changed job restarts its loops; a removed one stops them
    /// (their series go stale); a new one starts.
    pub async fn reconfigure(
        &self,
        jobs: Vec<Arc<ScrapeConfig>>,
        filter: Arc<dyn TargetFilter>,
    ) -> Reconfigured {
        let _round = self.round.lock().await;
        let mut report = Reconfigured::default();
        let stopping = {
            let mut pools = self.pools.lock();
            *self.filter.lock() = filter;
            let mut old: HashMap<String, Pool> =
                pools.drain(..).map(|p| (p.job.job_name.clone(), p)).collect();
            let mut stopping = Vec::new();
            let mut stop = |mut p: Pool| {
                for (_, r) in p.running.drain() {
                    r.removed.cancel();
                    stopping.push(r.handle);
                }
            };
            for job in jobs {
                match old.remove(&job.job_name) {
                    Some(mut p) if same_job(&p.job, &job) => {
                        // Read the targets again, against the new filter, in the next round.
                        p.discovery = JobDiscovery::new(&p.job);
                        report.kept.push(job.job_name.clone());
                        pools.push(p);
                    }
                    previous => {
                        match previous {
                            Some(p) => {
                                report.changed.push(job.job_name.clone());
                                stop(p);
                            }
                            None => report.added.push(job.job_name.clone()),
                        }
                        pools.push(Pool::new(job));
                    }
                }
            }
            for (name, p) in old {
                report.removed.push(name);
                stop(p);
            }
            stopping
        };
        // Stopped loops write their staleness markers before this returns.
        for h in stopping {
            let _ = h.await;
        }
        self.wake.notify_one();
        report
    }

    /// Follows discovery until `shutdown`, then stops every loop (without staleness markers:
    /// series of a stopped node simply age out, as in Prometheus).
    pub async fn run(&self, shutdown: CancellationToken) {
        let loops_shutdown = shutdown.child_token();
        loop {
            {
                let _round = self.round.lock().await;
                self.refresh(&loops_shutdown).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(DISCOVERY_POLL) => {}
                _ = self.wake.notified() => {}
            }
        }
        loops_shutdown.cancel();
        let handles: Vec<JoinHandle<()>> =
            self.pools.lock().iter_mut().flat_map(|p| p.running.drain().map(|(_, r)| r.handle)).collect();
        for h in handles {
            let _ = h.await;
        }
    }

    /// One discovery round: re-read what changed and reconcile the loops.
    async fn refresh(&self, shutdown: &CancellationToken) {
        let n = self.pools.lock().len();
        for i in 0..n {
            // File reads happen off the async workers.
            let mut discovery = {
                let mut pools = self.pools.lock();
                let fresh = JobDiscovery::new(&pools[i].job);
                std::mem::replace(&mut pools[i].discovery, fresh)
            };
            let (discovery, groups, errors) = match tokio::task::spawn_blocking(move || {
                let (g, e) = discovery.poll();
                (discovery, g, e)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "discovery task failed");
                    continue;
                }
            };
            let stopping = {
                let mut pools = self.pools.lock();
                let pool = &mut pools[i];
                pool.discovery = discovery;
                for e in &errors {
                    tracing::error!(job = %pool.job.job_name, error = %e, "file_sd: keeping the last good targets");
                }
                match groups {
                    Some(groups) => self.reconcile(pool, &groups, shutdown),
                    None => Vec::new(),
                }
            };
            // Removed targets write their staleness markers before we forget them.
            for h in stopping {
                let _ = h.await;
            }
        }
    }

    fn reconcile(
        &self,
        pool: &mut Pool,
        groups: &[crate::topology::TargetGroup],
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let filter = self.filter.lock().clone();
        let (active, dropped) = build_targets(&pool.job, groups, filter.as_ref());
        pool.dropped = dropped;
        let wanted: HashMap<u64, Target> = active.into_iter().map(|t| (t.hash(), t)).collect();
        let mut stopping = Vec::new();
        let gone: Vec<u64> = pool.running.keys().filter(|h| !wanted.contains_key(h)).copied().collect();
        for h in gone {
            if let Some(r) = pool.running.remove(&h) {
                tracing::info!(job = %pool.job.job_name, target = %r.target.url, "target removed");
                r.removed.cancel();
                stopping.push(r.handle);
            }
        }
        let Some(client) = &pool.client else { return stopping };
        for (h, target) in wanted {
            if pool.running.contains_key(&h) {
                continue;
            }
            tracing::info!(job = %pool.job.job_name, target = %target.url, "target added");
            let status = Arc::new(Mutex::new(TargetStatus::default()));
            let removed = CancellationToken::new();
            let ctx = Arc::new(SampleContext {
                target_labels: target.labels.clone(),
                honor_labels: pool.job.honor_labels,
                honor_timestamps: pool.job.honor_timestamps,
                metric_relabel_configs: pool.job.metric_relabel_configs.clone(),
                sample_limit: pool.job.sample_limit,
                label_limit: pool.job.label_limit,
                label_name_length_limit: pool.job.label_name_length_limit,
                label_value_length_limit: pool.job.label_value_length_limit,
            });
            let metadata = super::scrape_loop::TargetMetadata::default();
            let in_flight = Arc::new(AtomicI64::new(i64::MAX));
            let sl = ScrapeLoop {
                target: target.clone(),
                client: client.clone(),
                storage: self.storage.clone(),
                ctx,
                status: status.clone(),
                metadata: metadata.clone(),
                metrics: self.metrics.clone(),
                job: pool.job.job_name.clone(),
                offset_seed: self.offset_seed,
                in_flight: in_flight.clone(),
                clock: ScrapeClock::new(target.interval),
                refusal_log: RefusalLog::new(refused::LOG_EVERY),
            };
            let handle = tokio::spawn(sl.run(shutdown.clone(), removed.clone()));
            pool.running.insert(h, Running { target, in_flight, status, metadata, removed, handle });
        }
        stopping
    }

    /// The oldest timestamp a scrape in progress may still commit, or `i64::MAX` when none is
    /// in progress: everything older is already visible (the fast link's cursor).
    pub fn commit_watermark(&self) -> i64 {
        self.pools
            .lock()
            .iter()
            .flat_map(|p| p.running.values().map(|r| r.in_flight.load(Ordering::Acquire)))
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Metric metadata of every running target: (metric family, metadata) pairs, repeated per
    /// target that reports them.
    pub fn metadata(&self) -> Vec<(String, super::MetricMetadata)> {
        let pools = self.pools.lock();
        let mut out = Vec::new();
        for p in pools.iter() {
            for r in p.running.values() {
                let m = r.metadata.lock().clone();
                out.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        out
    }

    /// Targets up of all targets, and the series of the latest scrapes of those up (for the
    /// fast link's header: globals compare replicas by it).
    pub fn coverage(&self) -> crate::model::Coverage {
        let pools = self.pools.lock();
        let mut c = crate::model::Coverage::default();
        for r in pools.iter().flat_map(|p| p.running.values()) {
            let st = r.status.lock();
            c.targets_total = c.targets_total.saturating_add(1);
            if st.health == super::Health::Up {
                c.targets_up = c.targets_up.saturating_add(1);
                c.series = c.series.saturating_add(st.series);
            }
        }
        c
    }

    /// Every target with its latest state, sorted by job then URL.
    pub fn targets(&self) -> TargetsSnapshot {
        let pools = self.pools.lock();
        let mut snap = TargetsSnapshot::default();
        for p in pools.iter() {
            for r in p.running.values() {
                snap.active.push(ActiveTarget {
                    job: p.job.job_name.clone(),
                    target: r.target.clone(),
                    status: r.status.lock().clone(),
                });
            }
            snap.dropped.extend(p.dropped.iter().map(|d| (p.job.job_name.clone(), d.clone())));
        }
        snap.active.sort_by(|a, b| (&a.job, &a.target.url).cmp(&(&b.job, &b.target.url)));
        snap
    }
}
