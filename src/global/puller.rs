//! One source's pull loop: at a stable offset within the federation interval, ask the elector
//! what to do (failover mode), pull — the fast link's samples since the cursor, a liveness probe,
//! or text `/federate` — store what should be stored, and report health to the elector,
//! `/metrics` and the targets API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::stream_ingest::{StreamState, SwitchGuard};
use super::strip::StripLabel;
use super::{GlobalMetrics, PullSettings};
use crate::dedup::{Election, Elector, PullReport, Role};
use crate::exposition::{Entry, TextParser};
use crate::federate::stream::StreamReader;
use crate::model::{Labels, MatchOp, Matcher, now_ms};
use crate::scrape::{Health, IngestState, SampleContext, ScrapeClient};
use crate::storage::Storage;
use crate::topology::{DedupMode, Source, SourceKind};

/// A source's latest state.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    pub health: Health,
    pub last_error: String,
    pub last_pull: Option<SystemTime>,
    pub last_duration: Duration,
    pub last_samples: u64,
    pub series: u64,
    /// Whether it is pulled over the fast link.
    pub fast_link: bool,
}

pub(crate) struct Puller {
    pub(crate) source: Source,
    pub(crate) settings: Arc<PullSettings>,
    /// Client for the fast link (no gzip: the stream is already compact, CPU matters more).
    pub(crate) client: ScrapeClient,
    /// Client for text `/federate` (gzip, as Prometheus federates).
    pub(crate) text_client: ScrapeClient,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) elector: Option<Arc<Elector>>,
    pub(crate) status: Arc<Mutex<SourceStatus>>,
    pub(crate) metrics: Arc<GlobalMetrics>,
    /// Where the first data pull starts.
    pub(crate) initial_cursor: i64,
}

/// How far before a switch watermark (or a restarted global's newest data) a fill starts.
const FILL_MARGIN_MS: i64 = 5 * 60 * 1000;

/// What one pull produced.
struct Outcome {
    report: PullReport,
    samples: u64,
    series: u64,
    overlap: u64,
    guarded: u64,
    newest: Option<i64>,
    /// The cursor to use next (fast link, data pulls only).
    next_cursor: Option<i64>,
}

pub(crate) fn log_election(e: &Election) {
    match &e.from {
        Some(from) => {
            tracing::warn!(shard = %e.shard, from = %from, to = %e.to, reason = %e.reason, "failover: new replica elected")
        }
        None => tracing::info!(shard = %e.shard, to = %e.to, reason = %e.reason, "replica elected"),
    }
}

impl Puller {
    fn fast(&self) -> bool {
        self.settings.fast_link && self.source.kind == SourceKind::Promtier
    }

    fn match_query(&self) -> String {
        self.settings
            .selectors
            .iter()
            .map(|m| {
                format!("match[]={}", url::form_urlencoded::byte_serialize(m.as_bytes()).collect::<String>())
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let labels = [self.source.node.as_str(), self.source.shard.as_str(), self.source.replica.as_str()];
        self.status.lock().fast_link = self.fast();
        let interval = self.settings.interval;
        let first = offset(&self.source.node, interval);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(first) => {}
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cursor: Option<i64> = None;
        let mut text_state = Some(IngestState::default());
        let mut last_success: Option<Instant> = None;
        let mut stream_state = Some(StreamState::default());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let started = Instant::now();
            let role = match &self.elector {
                Some(e) => e.role(&self.source.shard, &self.source.replica),
                None => Role::Elected { fill_from: None },
            };
            let pulled = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.pull_once(role, cursor, &mut text_state, &mut stream_state) => r,
            };
            let duration = started.elapsed();
            let outcome = match pulled {
                Ok(o) => o,
                Err(e) => Outcome {
                    report: PullReport { ok: false, max_time: None, error: Some(e) },
                    samples: 0,
                    series: 0,
                    overlap: 0,
                    guarded: 0,
                    newest: None,
                    next_cursor: None,
                },
            };
            if let Some(c) = outcome.next_cursor {
                cursor = Some(c);
                if let Some(e) = &self.elector {
                    e.stored(&self.source.shard, &self.source.replica, c);
                }
            }
            if let Some(e) = &self.elector
                && let Some(el) =
                    e.report(&self.source.shard, &self.source.replica, &outcome.report, Instant::now())
            {
                log_election(&el);
            }
            if outcome.report.ok {
                // A text source's data between two successful pulls more than an interval apart
                // is lost for good (the fast link fetches it instead).
                if !self.fast()
                    && let Some(prev) = last_success
                {
                    let missed = prev.elapsed().saturating_sub(interval + interval / 2);
                    if !missed.is_zero() {
                        self.metrics.missed.with(&labels).inc_by(missed.as_secs_f64());
                    }
                }
                last_success = Some(Instant::now());
            }
            self.record(&labels, &outcome, duration);
        }
    }

    async fn pull_once(
        &self,
        role: Role,
        cursor: Option<i64>,
        text_state: &mut Option<IngestState>,
        stream_state: &mut Option<StreamState>,
    ) -> Result<Outcome, String> {
        let addr = &self.source.address;
        let timeout = self.settings.timeout;
        let strip = (self.settings.dedup == DedupMode::Failover).then(|| self.settings.replica_label.clone());
        if self.fast() {
            let (probe, since, fill) = match role {
                Role::Standby => (true, 0, false),
                // The previous replica's cursor says where its data was complete, but this replica
                // scrapes at other moments: some of its samples just before that cursor are newer
                // than the last ones stored. Ask from earlier; the guard skips what is stored.
                Role::Elected { fill_from: Some(w) } => (false, w - FILL_MARGIN_MS, true),
                Role::Elected { fill_from: None } => {
                    (false, cursor.unwrap_or(self.initial_cursor), cursor.is_none())
                }
            };
            let url = format!(
                "http://{addr}/federate/stream?since={since}{}&{}",
                if probe { "&probe=1" } else { "" },
                self.match_query()
            );
            let body = self.client.scrape(&url, timeout).await.map_err(|e| e.to_string())?;
            if probe {
                let header = StreamReader::new(&body).map_err(|e| e.to_string())?.header;
                return Ok(Outcome {
                    report: PullReport {
                        ok: true,
                        max_time: (header.max_time != i64::MIN).then_some(header.max_time),
                        error: None,
                    },
                    samples: 0,
                    series: 0,
                    overlap: 0,
                    guarded: 0,
                    newest: None,
                    next_cursor: None,
                });
            }
            let storage = self.storage.clone();
            let mut state = stream_state.take().unwrap_or_default();
            let window = 2 * self.settings.interval.as_millis() as i64;
            let joined = tokio::task::spawn_blocking(move || {
                // Filling after a switch, or the first pull: skip what is stored already and keep
                // counters from looking reset.
                let guard = fill.then(|| switch_guard(storage.as_ref(), window));
                let r = state.ingest(storage.as_ref(), &body, strip.as_deref(), guard.as_ref());
                (state, r)
            })
            .await
            .map_err(|e| format!("internal error: {e}"))?;
            *stream_state = Some(joined.0);
            let (header, stats) = joined.1.map_err(|e| e.to_string())?;
            return Ok(Outcome {
                report: PullReport {
                    ok: true,
                    max_time: (header.max_time != i64::MIN).then_some(header.max_time),
                    error: None,
                },
                samples: stats.samples,
                series: stats.series,
                overlap: stats.overlap,
                guarded: stats.guarded,
                newest: stats.newest,
                next_cursor: Some(header.next_cursor),
            });
        }
        // Text federation (Prometheus sources, or the fast link turned off).
        let url = format!("http://{addr}/federate?{}", self.match_query());
        let body = self.text_client.scrape(&url, timeout).await.map_err(|e| e.to_string())?;
        let store = matches!(role, Role::Elected { .. });
        let storage: Arc<dyn Storage> = match &strip {
            Some(label) => Arc::new(StripLabel { inner: self.storage.clone(), label: label.clone() }),
            None => self.storage.clone(),
        };
        let mut state = text_state.take().unwrap_or_default();
        let ctx = SampleContext {
            target_labels: Labels::from_pairs(&[("instance", addr.as_str()), ("job", "federate")]),
            honor_labels: true,
            honor_timestamps: true,
            metric_relabel_configs: Vec::new(),
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
        };
        let joined = tokio::task::spawn_blocking(move || {
            let newest = newest_timestamp(&body);
            let r = if store { Some(state.ingest(storage.as_ref(), &ctx, &body, now_ms())) } else { None };
            (state, newest, r)
        })
        .await
        .map_err(|e| format!("internal error: {e}"))?;
        *text_state = Some(joined.0);
        let newest = joined.1.map_err(|e| format!("parse error: {e}"))?;
        let stats = match joined.2 {
            Some(r) => r.map_err(|e| e.to_string())?,
            None => Default::default(),
        };
        Ok(Outcome {
            report: PullReport { ok: true, max_time: newest, error: None },
            samples: stats.post_relabel,
            series: stats.scraped,
            overlap: stats.refused.out_of_order + stats.refused.duplicates,
            guarded: 0,
            newest,
            next_cursor: None,
        })
    }

    fn record(&self, labels: &[&str; 3], o: &Outcome, duration: Duration) {
        let m = &self.metrics;
        m.pulls.with(labels).inc();
        m.duration.with(labels).observe(duration.as_secs_f64());
        m.up.with(labels).set(if o.report.ok { 1.0 } else { 0.0 });
        let mut st = self.status.lock();
        st.last_pull = Some(SystemTime::now());
        st.last_duration = duration;
        if o.report.ok {
            if st.health == Health::Down {
                tracing::info!(source = %self.source.node, "source is reachable again");
            }
            st.health = Health::Up;
            st.last_error.clear();
            st.last_samples = o.samples;
            st.series = o.series;
            m.samples.with(labels).inc_by(o.samples as f64);
            m.overlap.with(labels).inc_by(o.overlap as f64);
            m.guarded.with(labels).inc_by(o.guarded as f64);
            m.last_success.with(labels).set(now_ms() as f64 / 1000.0);
            if let Some(t) = o.newest {
                m.lag.with(labels).set((now_ms() - t) as f64 / 1000.0);
            }
        } else {
            m.failures.with(labels).inc();
            let err = o.report.error.clone().unwrap_or_default();
            if st.health != Health::Down || st.last_error != err {
                tracing::warn!(source = %self.source.node, address = %self.source.address, error = %err, "federation pull failed");
            }
            st.health = Health::Down;
            st.last_error = err;
        }
    }
}

/// The stored latest sample of every series, to guard a replica switch.
fn switch_guard(storage: &dyn Storage, window_ms: i64) -> SwitchGuard {
    let now = now_ms();
    let mut last = HashMap::new();
    let all = Matcher::new(MatchOp::Regex, "__name__", ".+");
    if let (Ok(q), Ok(all)) = (storage.querier(now - 3_600_000, now + 3_600_000), all)
        && let Ok(latest) = q.latest(&[all])
    {
        for l in latest {
            last.insert(l.labels, (l.sample.t, l.sample.v));
        }
    }
    SwitchGuard { last, window_ms }
}

/// The newest explicit timestamp in a text body (federation bodies carry them on every line).
fn newest_timestamp(body: &[u8]) -> Result<Option<i64>, String> {
    let mut newest: Option<i64> = None;
    for e in TextParser::new(body) {
        match e {
            Ok(Entry::Series(s)) => {
                if let Some(t) = s.timestamp() {
                    newest = Some(newest.map_or(t, |n| n.max(t)));
                }
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(newest)
}

/// A stable offset within the interval for this source, so pulls spread out.
fn offset(node: &str, interval: Duration) -> Duration {
    let iv = interval.as_millis().max(1) as u64;
    let slot = xxhash_rust::xxh3::xxh3_64(node.as_bytes()) % iv;
    let now = now_ms() as u64 % iv;
    Duration::from_millis(if slot >= now { slot - now } else { iv - now + slot })
}
