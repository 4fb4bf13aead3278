//! One source's pull loop: at a stable offset within the federation interval, ask the elector
//! what to do (failover mode), then probe (a standby), or pull and store. Over the fast link a
//! pull is a run of pages: each page is fetched, stored and committed before the next, the
//! cursor advancing page by page, until the source says nothing more is ready — so a catch-up
//! after any outage takes memory bounded by the page size and resumes where it stopped. Text
//! sources are pulled as `/federate` (standbys only probe their `up` series). Health goes to the
//! elector, `/metrics`, the targets API and the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::state::{GlobalState, SourceCursor};
use super::stream_ingest::{StreamState, SwitchGuard};
use super::strip::StripLabel;
use super::{GlobalMetrics, PullSettings};
use crate::dedup::{Election, Elector, PullReport, Role};
use crate::exposition::{Entry, TextParser};
use crate::federate::stream::StreamReader;
use crate::model::{Coverage, Labels, MatchOp, Matcher, now_ms};
use crate::scrape::{Health, IngestState, SampleContext, ScrapeClient};
use crate::storage::Storage;
use crate::topology::{Source, SourceKind};

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
    /// Everything at or before it has been stored (sources that store: elected, or every source
    /// outside failover mode).
    pub cursor: Option<i64>,
    /// When a pull last succeeded.
    pub last_ok: Option<Instant>,
    /// What the source covers, as it said last.
    pub coverage: Option<Coverage>,
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
    pub(crate) state: Arc<GlobalState>,
    /// Where the first data pull starts when nothing says otherwise.
    pub(crate) initial_cursor: i64,
}

/// How often a long catch-up reports its progress in the log.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What one request produced.
#[derive(Default)]
struct Outcome {
    report_ok: bool,
    error: Option<String>,
    max_time: Option<i64>,
    coverage: Option<Coverage>,
    samples: u64,
    series: u64,
    overlap: u64,
    guarded: u64,
    newest: Option<i64>,
    /// Everything up to here is stored (sources whose data is stored).
    stored_to: Option<i64>,
}

impl Outcome {
    fn failed(e: String) -> Outcome {
        Outcome { error: Some(e), ..Outcome::default() }
    }

    fn report(&self) -> PullReport {
        PullReport {
            ok: self.report_ok,
            max_time: self.max_time,
            error: self.error.clone(),
            coverage: self.coverage,
        }
    }
}

/// The fast-link state of this puller's source.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    cursor: Option<i64>,
    /// The source's epoch and rewind-log position last seen (`None`: ask without, no rewind).
    seen: Option<(u64, u64)>,
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

    fn labels(&self) -> [&str; 3] {
        [self.source.node.as_str(), self.source.shard.as_str(), self.source.replica.as_str()]
    }

    fn match_query(&self) -> String {
        match_query(&self.settings.selectors)
    }

    /// The labels the global attaches to what this source sends (`job="federate"` and its
    /// address as `instance`, as a Prometheus federating it would), merged as
    /// `federate.honor_labels` says — on the text and the fast-link path alike.
    fn source_context(&self) -> SampleContext {
        SampleContext::unlimited(
            Labels::from_pairs(&[("instance", self.source.address.as_str()), ("job", "federate")]),
            self.settings.honor_labels,
        )
    }

    fn role(&self) -> Role {
        match &self.elector {
            Some(e) => e.role(&self.source.shard, &self.source.replica),
            None => Role::Elected { fill_from: None },
        }
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) {
        self.status.lock().fast_link = self.fast();
        let interval = self.settings.interval;
        let first = offset(&self.source.node, interval);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(first) => {}
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut link = match self.state.source(&self.source.node) {
            Some(c) => Link { cursor: Some(c.cursor), seen: Some((c.epoch, c.seq)) },
            None => Link::default(),
        };
        if let Some(c) = link.cursor {
            self.status.lock().cursor = Some(c);
        }
        let mut text_state = Some(IngestState::default());
        let mut last_success: Option<Instant> = None;
        let mut stream_state = Some(StreamState::default());
        // Text standbys probe `up` only; a source without it gets full pulls instead.
        let mut text_probe_works = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let role = self.role();
            let ok = if self.fast() {
                match role {
                    Role::Standby => {
                        let started = Instant::now();
                        let o = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            o = self.probe() => o,
                        };
                        self.finish(&o, started.elapsed());
                        o.report_ok
                    }
                    Role::Elected { fill_from } => {
                        self.pull_pages(fill_from, &mut link, &mut stream_state, &shutdown).await
                    }
                }
            } else {
                let started = Instant::now();
                let store = matches!(role, Role::Elected { .. });
                let probe = !store && text_probe_works;
                let o = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    o = self.pull_text(store, probe, &mut text_state) => o,
                };
                if probe && o.report_ok && o.newest.is_none() {
                    tracing::info!(source = %self.source.node, "the source has no `up` series to probe: standby pulls read the whole body");
                    text_probe_works = false;
                }
                self.finish(&o, started.elapsed());
                o.report_ok
            };
            if ok {
                // A text source's data between two successful pulls more than an interval apart
                // is lost for good (the fast link fetches it instead).
                if !self.fast()
                    && let Some(prev) = last_success
                {
                    let missed = prev.elapsed().saturating_sub(interval + interval / 2);
                    if !missed.is_zero() {
                        self.metrics.missed.with(&self.labels()).inc_by(missed.as_secs_f64());
                    }
                }
                last_success = Some(Instant::now());
            }
        }
    }

    /// Reports one request's outcome to the elector, `/metrics` and the status.
    fn finish(&self, o: &Outcome, duration: Duration) {
        if let Some(c) = o.stored_to {
            self.status.lock().cursor = Some(c);
            if let Some(e) = &self.elector {
                e.stored(&self.source.shard, &self.source.replica, c);
            }
            self.metrics.behind.with(&self.labels()).set(((now_ms() - c).max(0)) as f64 / 1000.0);
        }
        if let Some(e) = &self.elector
            && let Some(el) = e.report(&self.source.shard, &self.source.replica, &o.report(), Instant::now())
        {
            log_election(&el);
        }
        self.record(o, duration);
    }

    /// Header only: liveness (newest timestamp) and coverage.
    async fn probe(&self) -> Outcome {
        let url =
            format!("{}/federate/stream?v=2&probe=1&since=0&{}", self.source.base_url(), self.match_query());
        let body = match self.client.scrape(&url, self.settings.timeout).await {
            Ok(b) => b,
            Err(e) => return Outcome::failed(e.to_string()),
        };
        match StreamReader::new(&body) {
            Ok(r) => Outcome {
                report_ok: true,
                max_time: (r.header.max_time != i64::MIN).then_some(r.header.max_time),
                coverage: Some(r.header.coverage),
                ..Outcome::default()
            },
            Err(e) => Outcome::failed(e.to_string()),
        }
    }

    /// Pulls and stores pages until the source has nothing more ready (or a page fails, the
    /// replica is no longer elected, or shutdown). Returns whether the last request succeeded.
    async fn pull_pages(
        &self,
        fill_from: Option<i64>,
        link: &mut Link,
        stream_state: &mut Option<StreamState>,
        shutdown: &CancellationToken,
    ) -> bool {
        // A fill (just elected, or the first pull with nothing to resume from) starts earlier
        // than the cursor: it skips what is stored and keeps counters from looking reset. It does
        // not ask for rewinds: it re-reads that whole window anyway.
        let (mut since, guarded) = match (fill_from, link.cursor) {
            (Some(f), _) => {
                link.seen = None;
                (f, true)
            }
            (None, Some(c)) => (c, false),
            (None, None) => (self.initial_cursor, true),
        };
        let guard = if guarded {
            let storage = self.storage.clone();
            let window = 2 * self.settings.interval.as_millis() as i64;
            let from = since;
            match tokio::task::spawn_blocking(move || switch_guard(storage.as_ref(), from, window)).await {
                Ok(g) => Some(Arc::new(g)),
                Err(e) => {
                    self.finish(&Outcome::failed(format!("internal error: {e}")), Duration::ZERO);
                    return false;
                }
            }
        } else {
            None
        };
        let began = Instant::now();
        let mut last_progress = Instant::now();
        let mut pages = 0u64;
        let mut samples = 0u64;
        loop {
            let started = Instant::now();
            let page = tokio::select! {
                _ = shutdown.cancelled() => return false,
                o = self.pull_page(since, link.seen, guard.clone(), stream_state) => o,
            };
            let o = match page {
                Ok((o, header)) => {
                    link.cursor = Some(header.next_cursor);
                    link.seen = Some((header.epoch, header.seq));
                    self.state.set_source(
                        &self.source.node,
                        SourceCursor { cursor: header.next_cursor, epoch: header.epoch, seq: header.seq },
                    );
                    if header.rewound {
                        tracing::info!(source = %self.source.node, from = header.start, "the source stored samples behind our cursor: re-reading from there");
                    }
                    (o, header.more)
                }
                Err(o) => (o, false),
            };
            let (o, more) = o;
            pages += 1;
            samples += o.samples;
            self.finish(&o, started.elapsed());
            if !o.report_ok {
                if pages > 1 {
                    tracing::info!(source = %self.source.node, pages, samples, seconds = began.elapsed().as_secs_f64(), "catch-up interrupted by a failed pull (resumed at the next pull)");
                }
                return false;
            }
            let Some(next) = link.cursor else { return true };
            if !more || !matches!(self.role(), Role::Elected { .. }) {
                if pages > 1 {
                    tracing::info!(source = %self.source.node, pages, samples, seconds = began.elapsed().as_secs_f64(), behind_s = (now_ms() - next) as f64 / 1000.0, "caught up");
                }
                return true;
            }
            if pages == 1 {
                // More than a page is ready: a catch-up (after downtime, or a fill) begins.
                tracing::info!(source = %self.source.node, from = since, behind_s = (now_ms() - next) as f64 / 1000.0, "catch-up started");
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                let rate = samples as f64 / began.elapsed().as_secs_f64().max(0.001);
                tracing::info!(source = %self.source.node, pages, samples, samples_per_s = rate.round(), behind_s = (now_ms() - next) as f64 / 1000.0, "catching up");
            }
            since = next;
        }
    }

    /// One fast-link page: fetch, store, commit.
    async fn pull_page(
        &self,
        since: i64,
        seen: Option<(u64, u64)>,
        guard: Option<Arc<SwitchGuard>>,
        stream_state: &mut Option<StreamState>,
    ) -> Result<(Outcome, crate::federate::stream::StreamHeader), Outcome> {
        let strip = self.settings.strip.clone();
        let mut url = format!("{}/federate/stream?v=2&since={since}", self.source.base_url());
        if let Some((epoch, seq)) = seen {
            url.push_str(&format!("&epoch={epoch}&seq={seq}"));
        }
        if let Some(n) = self.settings.page_samples {
            url.push_str(&format!("&max_samples={n}"));
        }
        url.push('&');
        url.push_str(&self.match_query());
        let body = self
            .client
            .scrape(&url, self.settings.timeout)
            .await
            .map_err(|e| Outcome::failed(e.to_string()))?;
        let storage = self.storage.clone();
        let mut state = stream_state.take().unwrap_or_default();
        let source = self.source_context();
        let joined = tokio::task::spawn_blocking(move || {
            let r = state.ingest(storage.as_ref(), &body, &strip, &source, guard.as_deref());
            (state, r)
        })
        .await
        .map_err(|e| Outcome::failed(format!("internal error: {e}")))?;
        *stream_state = Some(joined.0);
        let (header, stats) = joined.1.map_err(|e| Outcome::failed(e.to_string()))?;
        let o = Outcome {
            report_ok: true,
            error: None,
            max_time: (header.max_time != i64::MIN).then_some(header.max_time),
            coverage: Some(header.coverage),
            samples: stats.samples,
            series: stats.series,
            overlap: stats.overlap,
            guarded: stats.guarded,
            newest: stats.newest,
            stored_to: Some(header.next_cursor),
        };
        Ok((o, header))
    }

    /// Text `/federate` (Prometheus sources, or the fast link turned off): the whole body when
    /// storing (or when the source has no `up` to probe), else a probe of its `up` series.
    async fn pull_text(&self, store: bool, probe: bool, text_state: &mut Option<IngestState>) -> Outcome {
        let query = if probe { match_query(&["{__name__=\"up\"}".to_string()]) } else { self.match_query() };
        let url = format!("{}/federate?{query}", self.source.base_url());
        let body = match self.text_client.scrape(&url, self.settings.timeout).await {
            Ok(b) => b,
            Err(e) => return Outcome::failed(e.to_string()),
        };
        let storage: Arc<dyn Storage> = if self.settings.strip.is_empty() {
            self.storage.clone()
        } else {
            Arc::new(StripLabel { inner: self.storage.clone(), labels: self.settings.strip.clone() })
        };
        let mut state = text_state.take().unwrap_or_default();
        let ctx = self.source_context();
        let joined = tokio::task::spawn_blocking(move || {
            let summary = summarize_text(&body);
            let r = if store { Some(state.ingest(storage.as_ref(), &ctx, &body, now_ms())) } else { None };
            (state, summary, r)
        })
        .await;
        let (state, summary, stored) = match joined {
            Ok(j) => j,
            Err(e) => return Outcome::failed(format!("internal error: {e}")),
        };
        *text_state = Some(state);
        let summary = match summary {
            Ok(s) => s,
            Err(e) => return Outcome::failed(format!("parse error: {e}")),
        };
        let stats = match stored {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Outcome::failed(e.to_string()),
            None => Default::default(),
        };
        Outcome {
            report_ok: true,
            error: None,
            max_time: summary.newest,
            coverage: summary.coverage(probe),
            samples: stats.post_relabel,
            series: stats.scraped,
            overlap: stats.refused.out_of_order + stats.refused.duplicates,
            guarded: 0,
            newest: summary.newest,
            // The next body's samples of each series are newer than this one's; the oldest
            // recent one bounds what can still arrive (older stragglers are logged as rewinds).
            stored_to: if store { summary.oldest_recent } else { None },
        }
    }

    fn record(&self, o: &Outcome, duration: Duration) {
        let labels = self.labels();
        let m = &self.metrics;
        m.pulls.with(&labels).inc();
        m.duration.with(&labels).observe(duration.as_secs_f64());
        m.up.with(&labels).set(if o.report_ok { 1.0 } else { 0.0 });
        let mut st = self.status.lock();
        st.last_pull = Some(SystemTime::now());
        st.last_duration = duration;
        if o.report_ok {
            if st.health == Health::Down {
                tracing::info!(source = %self.source.node, "source is reachable again");
            }
            st.health = Health::Up;
            st.last_error.clear();
            st.last_ok = Some(Instant::now());
            st.last_samples = o.samples;
            if o.coverage.is_some_and(|c| c.is_known()) {
                st.coverage = o.coverage;
            }
            st.series = o.series;
            m.samples.with(&labels).inc_by(o.samples as f64);
            m.overlap.with(&labels).inc_by(o.overlap as f64);
            m.guarded.with(&labels).inc_by(o.guarded as f64);
            m.last_success.with(&labels).set(now_ms() as f64 / 1000.0);
            if let Some(t) = o.newest {
                m.lag.with(&labels).set((now_ms() - t) as f64 / 1000.0);
            }
        } else {
            m.failures.with(&labels).inc();
            let err = o.error.clone().unwrap_or_default();
            if st.health != Health::Down || st.last_error != err {
                tracing::warn!(source = %self.source.node, address = %self.source.address, error = %err, "federation pull failed");
            }
            st.health = Health::Down;
            st.last_error = err;
        }
    }
}

fn match_query(selectors: &[String]) -> String {
    selectors
        .iter()
        .map(|m| {
            format!("match[]={}", url::form_urlencoded::byte_serialize(m.as_bytes()).collect::<String>())
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The stored latest sample of every series since an hour before `from`, to guard a replica
/// switch or a catch-up.
fn switch_guard(storage: &dyn Storage, from: i64, window_ms: i64) -> SwitchGuard {
    let now = now_ms();
    let mut last = HashMap::new();
    let all = Matcher::new(MatchOp::Regex, "__name__", ".+");
    if let (Ok(q), Ok(all)) = (storage.querier(from.min(now) - 3_600_000, now + 3_600_000), all)
        && let Ok(latest) = q.latest(&[all])
    {
        for l in latest {
            last.insert(l.labels, (l.sample.t, l.sample.v));
        }
    }
    SwitchGuard { last, window_ms }
}

/// What a text federation body says about its source.
#[derive(Debug, Default, PartialEq)]
struct TextSummary {
    /// The newest timestamp (federation bodies carry them on every line).
    newest: Option<i64>,
    /// The oldest timestamp among series updated within the last five minutes of the newest.
    oldest_recent: Option<i64>,
    series: u64,
    up_total: u32,
    up_ok: u32,
}

impl TextSummary {
    fn coverage(&self, probe: bool) -> Option<Coverage> {
        let c = Coverage {
            targets_up: self.up_ok,
            targets_total: self.up_total,
            // A probe reads `up` only: its series count says nothing.
            series: if probe { 0 } else { self.series },
        };
        c.is_known().then_some(c)
    }
}

fn summarize_text(body: &[u8]) -> Result<TextSummary, String> {
    let mut s = TextSummary::default();
    let mut times = Vec::new();
    for e in TextParser::new(body) {
        match e {
            Ok(Entry::Series(x)) => {
                s.series += 1;
                if x.name() == "up" {
                    s.up_total += 1;
                    if x.value() == 1.0 {
                        s.up_ok += 1;
                    }
                }
                if let Some(t) = x.timestamp() {
                    times.push(t);
                }
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    s.newest = times.iter().copied().max();
    if let Some(n) = s.newest {
        s.oldest_recent = times.iter().copied().filter(|t| *t >= n - 300_000).min().map(|t| t - 1);
    }
    Ok(s)
}

/// A stable offset within the interval for this source, so pulls spread out.
fn offset(node: &str, interval: Duration) -> Duration {
    let iv = interval.as_millis().max(1) as u64;
    let slot = xxhash_rust::xxh3::xxh3_64(node.as_bytes()) % iv;
    let now = now_ms() as u64 % iv;
    Duration::from_millis(if slot >= now { slot - now } else { iv - now + slot })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_summary_counts_targets_and_bounds_what_can_still_arrive() {
        let body = b"# TYPE up untyped\nup{instance=\"a\"} 1 100000\nup{instance=\"b\"} 0 99000\n\
                     x{instance=\"a\"} 5 400000\ny 1 10000\n";
        let s = summarize_text(body).expect("parses");
        assert_eq!((s.series, s.up_total, s.up_ok), (4, 2, 1));
        assert_eq!(s.newest, Some(400_000));
        // `y` and the second `up` are more than five minutes older than the newest: they do not
        // hold the cursor.
        assert_eq!(s.oldest_recent, Some(99_999));
        assert_eq!(s.coverage(true), Some(Coverage { targets_up: 1, targets_total: 2, series: 0 }));
        assert_eq!(summarize_text(b"").expect("empty").coverage(false), None);
    }
}
