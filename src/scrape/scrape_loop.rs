//! One target's scrape loop: a stable per-target offset within the interval (so replicas and
//! targets spread out), scrape timestamps aligned to the schedule, scrape → ingest → report
//! series, health for `/api/v1/targets` (a fetched and parsed body is up; samples the storage
//! refused are its last error, see `refused`), and staleness when the target fails or is removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::client::ScrapeClient;
use super::ingest::{IngestState, IngestStats, SampleContext};
use super::metrics::ScrapeMetrics;
use super::refused::RefusalLog;
use super::target::Target;
use crate::model::now_ms;
use crate::storage::Storage;

/// How far (ms) a scrape may start off its schedule and still be stamped with the scheduled time,
/// as Prometheus does by default: timer jitter then costs no bits in the chunks (the timestamp
/// delta-of-delta stays zero). Only used when the interval is at least 100 times longer.
pub const TIMESTAMP_TOLERANCE_MS: i64 = 2;

/// The timestamp of each scrape: the scheduled time (the previous stamp plus whole intervals)
/// when the clock is within [`TIMESTAMP_TOLERANCE_MS`] of it, else the clock, which becomes the
/// new schedule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScrapeClock {
    interval_ms: i64,
    scheduled: Option<i64>,
}

impl ScrapeClock {
    pub(crate) fn new(interval: Duration) -> Self {
        ScrapeClock { interval_ms: interval.as_millis().min(i64::MAX as u128) as i64, scheduled: None }
    }

    fn stamp(&mut self, now: i64) -> i64 {
        let iv = self.interval_ms;
        let ts = match self.scheduled {
            Some(prev) if iv >= 100 * TIMESTAMP_TOLERANCE_MS && now > prev => {
                // The nearest later slot of the schedule (skipped ticks move it by whole intervals).
                let due = prev + ((now - prev + iv / 2) / iv).max(1) * iv;
                if (now - due).abs() <= TIMESTAMP_TOLERANCE_MS { due } else { now }
            }
            _ => now,
        };
        self.scheduled = Some(ts);
        ts
    }
}

/// Health of a target as `/api/v1/targets` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// The latest scrape outcome of a target.
#[derive(Debug, Clone, Default)]
pub struct TargetStatus {
    pub health: Health,
    /// Why the last scrape failed (health down), or which of its samples the storage refused
    /// (health up); empty when every sample was stored.
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
    pub last_samples: u64,
    pub series: u64,
}

/// The latest metric metadata a target reported, replaced wholesale when it changes.
pub type TargetMetadata = Arc<Mutex<Arc<std::collections::HashMap<String, super::ingest::MetricMetadata>>>>;

pub(crate) struct ScrapeLoop {
    pub(crate) target: Target,
    pub(crate) client: ScrapeClient,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) ctx: Arc<SampleContext>,
    pub(crate) status: Arc<Mutex<TargetStatus>>,
    pub(crate) metadata: TargetMetadata,
    pub(crate) metrics: Arc<ScrapeMetrics>,
    pub(crate) job: String,
    /// Mixed into the offset so that different nodes scrape the same target at different times.
    pub(crate) offset_seed: u64,
    /// The oldest timestamp this loop may still commit (`i64::MAX` between scrapes).
    pub(crate) in_flight: Arc<AtomicI64>,
    pub(crate) clock: ScrapeClock,
    /// Rate limit of the warnings about refused samples.
    pub(crate) refusal_log: RefusalLog,
}

impl ScrapeLoop {
    /// Runs until `shutdown` or `removed` fires.
    pub(crate) async fn run(self, shutdown: CancellationToken, removed: CancellationToken) {
        let interval = self.target.interval;
        let first = self.first_delay(interval);
        let mut state = IngestState::default();
        state.set_watermark(self.in_flight.clone());
        let mut this = self;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = removed.cancelled() => { this.on_removed(state).await; return; }
            _ = tokio::time::sleep(first) => {}
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = removed.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let scrape = this.scrape_once(state);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                (s, next) = scrape => { state = s; this = next; }
            }
        }
        this.on_removed(state).await;
    }

    /// Delay to this target's slot: a hash of its identity (and the node's seed) modulo the
    /// interval, measured from the current interval boundary.
    fn first_delay(&self, interval: Duration) -> Duration {
        let iv = interval.as_nanos().max(1) as u64;
        let slot = (self.target.hash() ^ self.offset_seed) % iv;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let phase = now % iv;
        Duration::from_nanos(if slot >= phase { slot - phase } else { iv - phase + slot })
    }

    async fn scrape_once(mut self, state: IngestState) -> (IngestState, ScrapeLoop) {
        let started = Instant::now();
        // From here until the report is committed, samples stamped `ts` (or older, with explicit
        // timestamps) may still become visible. Publish before taking `ts`, so that a reader who
        // sees no scrape in flight took its own clock before `ts`.
        // The stamp may be up to the tolerance older than the clock: publish that much earlier
        // (readers take `now - TIMESTAMP_TOLERANCE_MS` as their horizon, see `commit_horizon`).
        let published = now_ms() - TIMESTAMP_TOLERANCE_MS;
        self.in_flight.store(published, Ordering::Release);
        let ts = self.clock.stamp(now_ms()).max(published);
        let fetched = self.client.scrape(&self.target.url, self.target.timeout).await;
        if let Err(super::ScrapeHttpError::BodySizeLimit(_)) = &fetched {
            self.metrics.body_size_exceeded.inc();
        }
        let storage = self.storage.clone();
        let ctx = self.ctx.clone();
        let target_labels = self.target.labels.clone();
        // Parsing and appending are CPU work: keep them off the async workers.
        let joined = tokio::task::spawn_blocking(move || {
            let mut state = state;
            let outcome = match fetched {
                Ok(body) => state.ingest(storage.as_ref(), &ctx, &body, ts).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if outcome.is_err()
                && let Err(e) = state.mark_all_stale(storage.as_ref(), ts)
            {
                tracing::warn!(error = %e, "writing staleness markers failed");
            }
            let duration = started.elapsed();
            let stats = outcome.as_ref().copied().unwrap_or_default();
            let report = [
                ("up", if outcome.is_ok() { 1.0 } else { 0.0 }),
                ("scrape_duration_seconds", duration.as_secs_f64()),
                ("scrape_samples_scraped", stats.scraped as f64),
                ("scrape_samples_post_metric_relabeling", stats.post_relabel as f64),
                ("scrape_series_added", stats.series_added as f64),
            ];
            let report_err = state.append_report(storage.as_ref(), &target_labels, ts, &report).err();
            let metadata = state.take_metadata_change().map(|m| Arc::new(m.clone()));
            (state, outcome, duration, report_err, metadata)
        })
        .await;
        self.in_flight.store(i64::MAX, Ordering::Release);
        let (state, outcome, duration, report_err, metadata) = match joined {
            Ok(r) => r,
            Err(e) => {
                // The blocking task panicked: start over with a fresh cache rather than stop.
                tracing::error!(target = %self.target.url, error = %e, "scrape task failed");
                (IngestState::default(), Err(format!("internal error: {e}")), started.elapsed(), None, None)
            }
        };
        if let Some(m) = metadata {
            *self.metadata.lock() = m;
        }
        if let Some(e) = report_err {
            tracing::warn!(target = %self.target.url, error = %e, "appending report series failed");
        }
        self.record(&outcome, duration, state.cached_series() as u64);
        (state, self)
    }

    fn record(&mut self, outcome: &Result<IngestStats, String>, duration: Duration, series: u64) {
        self.metrics.observe(&self.job, outcome, duration);
        let refused = outcome.as_ref().map(|s| s.refused).unwrap_or_default();
        if let Some((r, scrapes)) = self.refusal_log.note(&refused, Instant::now()) {
            tracing::warn!(
                job = %self.job, target = %self.target.url, out_of_bounds = r.out_of_bounds,
                out_of_order = r.out_of_order, duplicate_timestamp = r.duplicates, at_commit = r.at_commit,
                scrapes, "scraped samples refused by the storage (counts since the last such line, at most one a minute)"
            );
        }
        let mut st = self.status.lock();
        st.last_scrape = Some(SystemTime::now());
        st.last_duration = duration;
        st.series = series;
        match outcome {
            Ok(stats) => {
                if st.health == Health::Down {
                    tracing::info!(job = %self.job, target = %self.target.url, "target is up again");
                }
                st.health = Health::Up;
                match stats.refused.message(stats.post_relabel) {
                    Some(m) => st.last_error = m,
                    None => st.last_error.clear(),
                }
                st.last_samples = stats.post_relabel;
            }
            Err(e) => {
                if st.health != Health::Down || st.last_error != *e {
                    tracing::warn!(job = %self.job, target = %self.target.url, error = %e, "scrape failed");
                }
                st.health = Health::Down;
                st.last_error = e.clone();
                st.last_samples = 0;
            }
        }
    }

    async fn on_removed(self, state: IngestState) {
        let storage = self.storage.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut state = state;
            state.mark_target_gone(storage.as_ref(), now_ms())
        })
        .await;
        if let Ok(Err(e)) = res {
            tracing::warn!(target = %self.target.url, error = %e, "marking removed target stale failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_snap_to_the_schedule_within_tolerance() {
        let mut c = ScrapeClock::new(Duration::from_secs(15));
        assert_eq!(c.stamp(1_000_003), 1_000_003);
        assert_eq!(c.stamp(1_015_005), 1_015_003, "2 ms late snaps");
        assert_eq!(c.stamp(1_030_001), 1_030_003, "2 ms early snaps");
        assert_eq!(c.stamp(1_045_003), 1_045_003, "on time");
        // 10 ms late: the clock wins and becomes the schedule.
        assert_eq!(c.stamp(1_060_013), 1_060_013);
        assert_eq!(c.stamp(1_075_014), 1_075_013);
        // A skipped tick: the schedule moves on by whole intervals.
        assert_eq!(c.stamp(1_105_012), 1_105_013);
        // A clock that went backwards is taken as it is.
        assert_eq!(c.stamp(1_100_000), 1_100_000);
    }

    #[test]
    fn short_intervals_keep_the_clock() {
        let mut c = ScrapeClock::new(Duration::from_millis(100));
        assert_eq!(c.stamp(1000), 1000);
        assert_eq!(c.stamp(1101), 1101);
    }
}
