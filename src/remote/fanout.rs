//! Local storage plus the `remote_read` stores of a global, behind one [`Queryable`]: what
//! Prometheus's fanout storage does for its remote reads. Per select, each store is asked only
//! when it can add something — with `read_recent: false`, only when the range starts at or
//! before the oldest sample held locally, and then only up to that sample; never when the
//! selector lacks one of its `required_matchers` — and the answers are merged with the local
//! series by labels, keeping one sample per series and timestamp (the local one where both have
//! it: Prometheus's chain merge keeps one of them too). So nothing is counted twice where the
//! stores overlap.
//!
//! A store that fails (unreachable, a timeout, an error status, an answer that does not decode
//! or is over a limit) leaves the query to be answered from the rest: the failure becomes a
//! warning of the querier ([`Querier::warnings`], shown with the query's answer) and is counted,
//! as Prometheus treats remote reads as best effort. Label names and values come from local
//! storage only (Prometheus's remote querier has none to give), and so do series lookups
//! (selects hinted `series`), which Prometheus would send to the stores.
//!
//! The storage traits are synchronous and the engine calls them on a blocking thread; each read
//! is run as a task on the node's runtime, awaited with a bound, and aborted if its caller stops
//! waiting, so no read outlives its select. (Called on a thread of a single-threaded runtime the
//! read could not run while the select waits: it would end as a timeout warning, not a hang.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;

use super::read_client::{ReadAnswer, ReadClient, ReadClientError, ReadClientLimits, ReadQuery};
use crate::metrics::{Counter, Family, Registry};
use crate::model::{Labels, MatchOp, Matcher, Sample};
use crate::storage::{LatestSample, Querier, Queryable, SelectHints, Series, StorageError};
use crate::topology::RemoteReadConfig;
use crate::topology::redact::redact_url;

/// How much longer than its own timeout a select waits for a read task to report.
const WAIT_GRACE: Duration = Duration::from_secs(2);

/// One store to read from, with the settings that decide when and how it is asked.
struct Endpoint {
    name: String,
    /// For metrics and warnings: the configured URL with any password removed.
    url: String,
    client: ReadClient,
    timeout: Duration,
    read_recent: bool,
    required: Vec<(String, String)>,
    /// Equality matchers added to each read and the label names stripped from what comes back
    /// (the node's external labels, when `filter_external_labels`).
    external: Labels,
}

/// The counters of every endpoint of a node.
struct ReadMetrics {
    queries: Arc<Family<Counter>>,
    failures: Arc<Family<Counter>>,
    skipped: Arc<Family<Counter>>,
}

/// Local storage with remote-read stores behind it (see the module doc).
pub struct RemoteReadQueryable {
    local: Arc<dyn Queryable>,
    endpoints: Vec<Arc<Endpoint>>,
    metrics: Arc<ReadMetrics>,
    runtime: Handle,
}

/// Why the remote-read view could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FanoutError {
    #[error("remote_read {name:?}: {source}")]
    Client {
        name: String,
        #[source]
        source: ReadClientError,
    },
}

impl RemoteReadQueryable {
    /// `local` with the stores of `configs` behind it; reads run on `runtime`. `external_labels`
    /// are the node's, used by the endpoints with `filter_external_labels`.
    pub fn new(
        local: Arc<dyn Queryable>,
        configs: &[RemoteReadConfig],
        external_labels: &Labels,
        runtime: Handle,
        registry: &Registry,
    ) -> Result<RemoteReadQueryable, FanoutError> {
        Self::with_limits(local, configs, external_labels, runtime, registry, ReadClientLimits::default())
    }

    /// [`RemoteReadQueryable::new`] with other bounds on each answer.
    pub fn with_limits(
        local: Arc<dyn Queryable>,
        configs: &[RemoteReadConfig],
        external_labels: &Labels,
        runtime: Handle,
        registry: &Registry,
        limits: ReadClientLimits,
    ) -> Result<RemoteReadQueryable, FanoutError> {
        let endpoints = configs
            .iter()
            .map(|c| {
                let name = c.display_name();
                let client = ReadClient::new(c, limits)
                    .map_err(|source| FanoutError::Client { name: name.clone(), source })?;
                Ok(Arc::new(Endpoint {
                    url: redact_url(&c.url),
                    name,
                    client,
                    timeout: c.remote_timeout,
                    read_recent: c.read_recent,
                    required: c.required_matchers.clone(),
                    external: if c.filter_external_labels {
                        external_labels.clone()
                    } else {
                        Labels::empty()
                    },
                }))
            })
            .collect::<Result<Vec<_>, FanoutError>>()?;
        let metrics = Arc::new(ReadMetrics::new(registry));
        for e in &endpoints {
            metrics.failures.with(&[&e.name, &e.url, "network"]);
        }
        Ok(RemoteReadQueryable { local, endpoints, metrics, runtime })
    }

    /// Replaces the client of every endpoint (tests: a client asking for one response type).
    #[doc(hidden)]
    pub fn map_clients(mut self, f: impl Fn(ReadClient) -> ReadClient) -> RemoteReadQueryable {
        self.endpoints = self
            .endpoints
            .iter()
            .map(|e| {
                Arc::new(Endpoint {
                    name: e.name.clone(),
                    url: e.url.clone(),
                    client: f(e.client.clone()),
                    timeout: e.timeout,
                    read_recent: e.read_recent,
                    required: e.required.clone(),
                    external: e.external.clone(),
                })
            })
            .collect();
        self
    }
}

impl ReadMetrics {
    fn new(registry: &Registry) -> ReadMetrics {
        let m = ReadMetrics {
            queries: Arc::new(Family::new(
                "prometheus_remote_storage_read_queries_total",
                "Remote-read requests made, by the type of answer (samples, chunked, none) and HTTP code (or error).",
                &["remote_name", "url", "response_type", "code"],
                Counter::default,
            )),
            failures: Arc::new(Family::new(
                "promtier_remote_read_failures_total",
                "Remote reads that failed, by reason (network, timeout, http_status, decode, too_large, client); the query was answered without that store.",
                &["remote_name", "url", "reason"],
                Counter::default,
            )),
            skipped: Arc::new(Family::new(
                "promtier_remote_read_histograms_skipped_total",
                "Native-histogram samples or chunks in remote-read answers, skipped (promtier evaluates floats only).",
                &["remote_name", "url"],
                Counter::default,
            )),
        };
        registry.register(m.queries.clone());
        registry.register(m.failures.clone());
        registry.register(m.skipped.clone());
        m
    }
}

impl Queryable for RemoteReadQueryable {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        let local = self.local.querier(mint, maxt)?;
        let mut remotes = Vec::new();
        if !self.endpoints.is_empty() {
            let local_start = self.local.min_time();
            for e in &self.endpoints {
                if let Some((start, end)) = window(e.read_recent, local_start, mint, maxt) {
                    remotes.push((e.clone(), start, end));
                }
            }
        }
        Ok(Box::new(RemoteReadQuerier {
            local,
            remotes,
            metrics: self.metrics.clone(),
            runtime: self.runtime.clone(),
            warnings: Mutex::new(Vec::new()),
        }))
    }

    fn max_time(&self) -> Option<i64> {
        self.local.max_time()
    }

    fn min_time(&self) -> Option<i64> {
        self.local.min_time()
    }

    /// The local coverage; with stores to read from, raw data reaches back without bound (the
    /// stores answer what is older than local raw data).
    fn coverage(&self) -> Vec<crate::storage::rollup::Coverage> {
        let mut c = self.local.coverage();
        if !self.endpoints.is_empty() {
            for cov in c.iter_mut().filter(|c| c.resolution == 0) {
                cov.ranges = vec![(i64::MIN, i64::MAX)];
            }
        }
        c
    }

    fn rollup_querier(
        &self,
        resolution: i64,
        mint: i64,
        maxt: i64,
    ) -> Result<Option<Box<dyn crate::storage::rollup::RollupQuerier>>, StorageError> {
        self.local.rollup_querier(resolution, mint, maxt)
    }
}

/// The part of `[mint, maxt]` a store is asked for: all of it with `read_recent`; otherwise
/// nothing when the range starts after the oldest local sample, else up to that sample (which is
/// then asked of both; the merge keeps one). Empty local storage asks for all.
fn window(read_recent: bool, local_start: Option<i64>, mint: i64, maxt: i64) -> Option<(i64, i64)> {
    match local_start {
        _ if read_recent => Some((mint, maxt)),
        None => Some((mint, maxt)),
        Some(start) if mint > start => None,
        Some(start) => Some((mint, maxt.min(start))),
    }
}

struct RemoteReadQuerier {
    local: Box<dyn Querier>,
    /// The stores to ask, each with its range.
    remotes: Vec<(Arc<Endpoint>, i64, i64)>,
    metrics: Arc<ReadMetrics>,
    runtime: Handle,
    warnings: Mutex<Vec<String>>,
}

/// A read task's handle that aborts the task when dropped: a select that stops waiting (its
/// bound passed, or it failed first) leaves no read behind.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RemoteReadQuerier {
    /// The stores that this selector asks: those whose required matchers it contains.
    fn asked(&self, matchers: &[Matcher]) -> Vec<&(Arc<Endpoint>, i64, i64)> {
        self.remotes
            .iter()
            .filter(|(e, _, _)| {
                e.required.iter().all(|(n, v)| {
                    matchers.iter().any(|m| m.op == MatchOp::Equal && m.name == *n && m.value == *v)
                })
            })
            .collect()
    }

    /// Reads every asked store at once; failures become warnings. Answers come with their
    /// external labels stripped, sorted by labels.
    fn read_all(
        &self,
        asked: &[&(Arc<Endpoint>, i64, i64)],
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Vec<ReadAnswer> {
        let mut pending = Vec::with_capacity(asked.len());
        for (e, start, end) in asked.iter().map(|a| (&a.0, a.1, a.2)) {
            let (matchers, added) = with_external(matchers, &e.external);
            let q = ReadQuery { start, end, matchers, hints: hints.clone() };
            let (tx, rx) = mpsc::sync_channel(1);
            let client = e.client.clone();
            let task = self.runtime.spawn(async move {
                let _ = tx.send(client.read(&q).await);
            });
            pending.push((e.clone(), added, rx, AbortOnDrop(task)));
        }
        let mut out = Vec::with_capacity(pending.len());
        for (e, added, rx, _task) in pending {
            let result = match rx.recv_timeout(e.timeout + WAIT_GRACE) {
                Ok(r) => r,
                Err(_) => Err(ReadClientError::Timeout(e.timeout)),
            };
            match result {
                Ok(mut answer) => {
                    self.metrics.queries.with(&[&e.name, &e.url, answer.response_type, "200"]).inc();
                    if answer.skipped_histograms > 0 {
                        self.metrics
                            .skipped
                            .with(&[&e.name, &e.url])
                            .inc_by(answer.skipped_histograms as f64);
                        self.warn(format!(
                            "remote_read {:?}: {} native-histogram samples or chunks skipped (promtier evaluates floats only)",
                            e.name, answer.skipped_histograms
                        ));
                    }
                    strip(&mut answer, &added);
                    out.push(answer);
                }
                Err(err) => {
                    let code = match &err {
                        ReadClientError::Status { status, .. } => status.to_string(),
                        _ => "error".to_string(),
                    };
                    self.metrics.queries.with(&[&e.name, &e.url, "none", &code]).inc();
                    self.metrics.failures.with(&[&e.name, &e.url, err.reason()]).inc();
                    tracing::warn!(remote_name = %e.name, url = %e.url, error = %err, "remote read failed; answering without it");
                    self.warn(format!("remote_read {:?} ({}): {err}", e.name, e.url));
                }
            }
        }
        out
    }

    fn warn(&self, message: String) {
        let mut w = self.warnings.lock();
        if !w.contains(&message) {
            w.push(message);
        }
    }
}

/// `matchers` plus an equality matcher for each external label that no matcher names (one that
/// does is the user choosing another value), and the names added, which are stripped from the
/// answer: Prometheus's rule.
fn with_external(matchers: &[Matcher], external: &Labels) -> (Vec<Matcher>, Vec<String>) {
    let mut out = matchers.to_vec();
    let mut added = Vec::new();
    for l in external.iter() {
        if !matchers.iter().any(|m| m.name == l.name) {
            out.push(Matcher::equal(l.name, l.value));
            added.push(l.name.to_string());
        }
    }
    (out, added)
}

/// Removes the `added` label names from every series of `answer`, keeping it sorted and each
/// label set once (series that differ only in them are merged).
fn strip(answer: &mut ReadAnswer, added: &[String]) {
    if added.is_empty() {
        return;
    }
    let names: Vec<&str> = added.iter().map(String::as_str).collect();
    let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for s in std::mem::take(&mut answer.series) {
        let labels = s.labels.without(&names);
        match merged.remove(&labels) {
            Some(prev) => merged.insert(labels, chain_merge(prev, s.samples)),
            None => merged.insert(labels, s.samples),
        };
    }
    answer.series = merged
        .into_iter()
        .map(|(labels, samples)| super::read_client::RemoteSeries { labels, samples })
        .collect();
}

/// Two sample lists in time order, one sample per timestamp each, merged into one in time order
/// with one sample per timestamp; where both have a timestamp, `primary`'s sample is kept.
pub fn chain_merge(primary: Vec<Sample>, secondary: Vec<Sample>) -> Vec<Sample> {
    if secondary.is_empty() {
        return primary;
    }
    if primary.is_empty() {
        return secondary;
    }
    let mut out = Vec::with_capacity(primary.len() + secondary.len());
    let (mut a, mut b) = (primary.into_iter().peekable(), secondary.into_iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.t < y.t => out.extend(a.next()),
            (Some(x), Some(y)) if y.t < x.t => out.extend(b.next()),
            (Some(_), Some(_)) => {
                out.extend(a.next());
                b.next();
            }
            (Some(_), None) => out.extend(a.by_ref()),
            (None, Some(_)) => out.extend(b.by_ref()),
            (None, None) => break,
        }
    }
    out
}

/// Local series (sorted by labels) merged with remote answers (each sorted by labels): one
/// series per label set, sorted; local samples win ties. Local series that no store returned
/// keep their lazy sample iterators.
fn merge_series(local: Vec<Series>, answers: Vec<ReadAnswer>) -> Vec<Series> {
    let mut remote: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for a in answers {
        for s in a.series {
            match remote.remove(&s.labels) {
                Some(prev) => remote.insert(s.labels, chain_merge(prev, s.samples)),
                None => remote.insert(s.labels, s.samples),
            };
        }
    }
    if remote.is_empty() {
        return local;
    }
    let mut out = Vec::with_capacity(local.len() + remote.len());
    for s in local {
        // Remote series sorting before this local one come first.
        while let Some(entry) = remote.first_entry() {
            if entry.key() >= s.labels.as_ref() {
                break;
            }
            let (labels, samples) = entry.remove_entry();
            out.push(Series { labels: Arc::new(labels), samples: Box::new(samples.into_iter()) });
        }
        match remote.remove(s.labels.as_ref()) {
            Some(samples) => {
                let merged = chain_merge(s.samples.collect(), samples);
                out.push(Series { labels: s.labels, samples: Box::new(merged.into_iter()) });
            }
            None => out.push(s),
        }
    }
    out.extend(remote.into_iter().map(|(labels, samples)| Series {
        labels: Arc::new(labels),
        samples: Box::new(samples.into_iter()),
    }));
    out
}

impl Querier for RemoteReadQuerier {
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        self.select_hinted(matchers, &SelectHints::default())
    }

    fn select_hinted(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>, StorageError> {
        // A series lookup (`/api/v1/series`) is answered locally: reading every sample of a
        // store's history to list label sets is not worth it.
        if hints.func.as_deref() == Some("series") {
            return self.local.select_hinted(matchers, hints);
        }
        let asked = self.asked(matchers);
        let local = self.local.select_hinted(matchers, hints)?;
        if asked.is_empty() {
            return Ok(local);
        }
        let answers = self.read_all(&asked, matchers, hints);
        Ok(merge_series(local, answers))
    }

    fn latest(&self, matchers: &[Matcher]) -> Result<Vec<LatestSample>, StorageError> {
        if self.asked(matchers).is_empty() {
            return self.local.latest(matchers);
        }
        Ok(self
            .select(matchers)?
            .into_iter()
            .filter_map(|s| s.samples.last().map(|sample| LatestSample { labels: s.labels, sample }))
            .collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.local.label_names(matchers)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.local.label_values(name, matchers)
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = self.local.warnings();
        w.extend(self.warnings.lock().iter().cloned());
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(i64, f64)]) -> Vec<Sample> {
        pairs.iter().map(|&(t, v)| Sample { t, v }).collect()
    }

    fn local_series(name: &str, pairs: &[(i64, f64)]) -> Series {
        Series {
            labels: Arc::new(Labels::from_pairs(&[("__name__", name)])),
            samples: Box::new(s(pairs).into_iter()),
        }
    }

    fn remote(series: &[(&str, &[(i64, f64)])]) -> ReadAnswer {
        ReadAnswer {
            series: series
                .iter()
                .map(|(name, pairs)| super::super::read_client::RemoteSeries {
                    labels: Labels::from_pairs(&[("__name__", *name)]),
                    samples: s(pairs),
                })
                .collect(),
            skipped_histograms: 0,
            response_type: "samples",
        }
    }

    fn flatten(series: Vec<Series>) -> Vec<(String, Vec<(i64, f64)>)> {
        series
            .into_iter()
            .map(|x| {
                let name = x.labels.get("__name__").unwrap_or("").to_string();
                (name, x.samples.map(|p| (p.t, p.v)).collect())
            })
            .collect()
    }

    #[test]
    fn chain_merge_keeps_one_sample_per_timestamp_preferring_primary() {
        let local = s(&[(30, 3.0), (40, 4.0), (50, 5.0)]);
        let remote = s(&[(10, 1.0), (20, 2.0), (30, 99.0), (40, 99.0)]);
        let got: Vec<(i64, f64)> = chain_merge(local, remote).iter().map(|p| (p.t, p.v)).collect();
        assert_eq!(got, vec![(10, 1.0), (20, 2.0), (30, 3.0), (40, 4.0), (50, 5.0)]);
        assert_eq!(chain_merge(Vec::new(), s(&[(1, 1.0)])), s(&[(1, 1.0)]));
        assert_eq!(chain_merge(s(&[(1, 1.0)]), Vec::new()), s(&[(1, 1.0)]));
        // Interleaved.
        let got: Vec<i64> = chain_merge(s(&[(1, 0.0), (4, 0.0)]), s(&[(2, 0.0), (3, 0.0), (5, 0.0)]))
            .iter()
            .map(|p| p.t)
            .collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn series_merge_by_labels_in_order() {
        let local = vec![local_series("b", &[(30, 3.0)]), local_series("d", &[(5, 5.0)])];
        let answers = vec![
            remote(&[("a", &[(1, 1.0)]), ("b", &[(10, 1.0), (30, 7.0)]), ("c", &[(2, 2.0)])]),
            remote(&[("b", &[(20, 2.0)]), ("e", &[(9, 9.0)])]),
        ];
        let got = flatten(merge_series(local, answers));
        assert_eq!(
            got,
            vec![
                ("a".to_string(), vec![(1, 1.0)]),
                ("b".to_string(), vec![(10, 1.0), (20, 2.0), (30, 3.0)]),
                ("c".to_string(), vec![(2, 2.0)]),
                ("d".to_string(), vec![(5, 5.0)]),
                ("e".to_string(), vec![(9, 9.0)]),
            ]
        );
        // No answers: the local series as they were.
        let got = flatten(merge_series(vec![local_series("x", &[(1, 1.0)])], Vec::new()));
        assert_eq!(got, vec![("x".to_string(), vec![(1, 1.0)])]);
    }

    #[test]
    fn window_follows_prometheus_prefer_local_rule() {
        // Local data from 1000 on.
        assert_eq!(window(false, Some(1000), 0, 5000), Some((0, 1000)));
        assert_eq!(window(false, Some(1000), 1000, 5000), Some((1000, 1000)));
        assert_eq!(window(false, Some(1000), 1001, 5000), None);
        assert_eq!(window(false, Some(1000), 0, 500), Some((0, 500)));
        assert_eq!(window(true, Some(1000), 2000, 5000), Some((2000, 5000)));
        assert_eq!(window(false, None, 2000, 5000), Some((2000, 5000)), "nothing local: ask for all");
    }

    #[test]
    fn external_labels_are_added_unless_named_and_stripped() {
        let ext = Labels::from_pairs(&[("region", "eu"), ("tier", "global")]);
        let ms =
            vec![Matcher::equal("__name__", "up"), Matcher::new(MatchOp::Regex, "region", ".*").unwrap()];
        let (out, added) = with_external(&ms, &ext);
        assert_eq!(added, vec!["tier".to_string()]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2], Matcher::equal("tier", "global"));

        let mut answer = ReadAnswer {
            series: vec![
                super::super::read_client::RemoteSeries {
                    labels: Labels::from_pairs(&[("__name__", "up"), ("tier", "global")]),
                    samples: s(&[(1, 1.0)]),
                },
                super::super::read_client::RemoteSeries {
                    labels: Labels::from_pairs(&[("__name__", "up"), ("tier", "other")]),
                    samples: s(&[(1, 5.0), (2, 2.0)]),
                },
            ],
            ..ReadAnswer::default()
        };
        strip(&mut answer, &added);
        assert_eq!(answer.series.len(), 1);
        assert_eq!(answer.series[0].labels, Labels::from_pairs(&[("__name__", "up")]));
        assert_eq!(answer.series[0].samples, s(&[(1, 1.0), (2, 2.0)]));
    }

    mod against_a_read_server {
        use std::time::Duration;

        use super::*;
        use crate::remote::proto;
        use crate::remote::{ReadLimits, RemoteState, WriteLimits, router};
        use crate::storage::Appendable;
        use crate::topology::ClientConfig;
        use crate::tsdb::{Head, HeadOptions};

        fn head_with(samples: impl Iterator<Item = (i64, f64)>) -> Arc<Head> {
            let head = Arc::new(Head::new(HeadOptions::default()).unwrap());
            let labels = Labels::from_pairs(&[("__name__", "x"), ("job", "j")]);
            let mut app = head.appender();
            for (t, v) in samples {
                app.append(None, &labels, t, v).unwrap();
            }
            app.commit().unwrap();
            head
        }

        fn cfg(url: String, read_recent: bool, required: &[(&str, &str)]) -> RemoteReadConfig {
            RemoteReadConfig {
                url,
                name: Some("old".into()),
                remote_timeout: Duration::from_secs(5),
                read_recent,
                required_matchers: required.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                filter_external_labels: true,
                headers: vec![("X-Scope-OrgID".into(), "t".into())],
                client: ClientConfig::default(),
            }
        }

        /// A runtime serving the remote-read endpoint over `head` (external label `site="eu"`,
        /// like the node reading from it) on 127.0.0.1; its URL.
        fn serve(rt: &tokio::runtime::Runtime, head: Arc<Head>) -> String {
            let app = router(
                RemoteState {
                    storage: head.clone(),
                    queryable: head,
                    external_labels: Labels::from_pairs(&[("site", "eu")]),
                    write_limits: WriteLimits::default(),
                    read_limits: ReadLimits::default(),
                    clock: Arc::new(|| 0),
                    metadata: Arc::default(),
                },
                &Registry::new(),
            );
            let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
            let addr = listener.local_addr().unwrap();
            rt.spawn(async move { axum::serve(listener, app).await });
            format!("http://{addr}/api/v1/read")
        }

        fn select(q: &dyn Queryable, mint: i64, maxt: i64, ms: &[Matcher]) -> (Vec<(i64, f64)>, Vec<String>) {
            let querier = q.querier(mint, maxt).unwrap();
            let series = querier.select(ms).unwrap();
            assert!(series.len() <= 1, "one series expected, got {series:?}");
            let samples =
                series.into_iter().flat_map(|s| s.samples.map(|p| (p.t, p.v)).collect::<Vec<_>>()).collect();
            (samples, querier.warnings())
        }

        #[test]
        fn merges_remote_and_local_without_doubling_in_both_answer_types() {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            // The store holds 0s..990s, the global 500s..1500s: they overlap on 500s..990s.
            let remote = head_with((0..100).map(|i| (i * 10_000, i as f64)));
            let local = head_with((50..151).map(|i| (i * 10_000, i as f64)));
            let url = serve(&rt, remote);
            let ext = Labels::from_pairs(&[("site", "eu")]);
            let want: Vec<(i64, f64)> = (0..151).map(|i| (i * 10_000, i as f64)).collect();
            let x = [Matcher::equal("__name__", "x")];
            for read_recent in [false, true] {
                for accepted in [proto::RESPONSE_SAMPLES, proto::RESPONSE_STREAMED_XOR_CHUNKS] {
                    let registry = Registry::new();
                    let q = RemoteReadQueryable::new(
                        local.clone(),
                        &[cfg(url.clone(), read_recent, &[])],
                        &ext,
                        rt.handle().clone(),
                        &registry,
                    )
                    .unwrap()
                    .map_clients(|c| c.with_accepted(vec![accepted]));
                    let (got, warnings) = select(&q, 0, 1_500_000, &x);
                    assert!(warnings.is_empty(), "{warnings:?}");
                    assert_eq!(got, want, "read_recent {read_recent}, response type {accepted}");
                    // A range the global holds alone: the store is asked only with read_recent.
                    let (got, _) = select(&q, 600_000, 700_000, &x);
                    assert_eq!(got.len(), 11);
                    let text = String::from_utf8(registry.render()).unwrap();
                    let kind = if accepted == proto::RESPONSE_SAMPLES { "samples" } else { "chunked" };
                    let asked = if read_recent { 2 } else { 1 };
                    let line = format!(
                        "prometheus_remote_storage_read_queries_total{{remote_name=\"old\",url=\"{url}\",response_type=\"{kind}\",code=\"200\"}} {asked}"
                    );
                    assert!(text.contains(&line), "{line} in\n{text}");
                }
            }
        }

        #[test]
        fn required_matchers_limits_and_failures() {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let remote = head_with((0..100).map(|i| (i * 10_000, i as f64)));
            let local = head_with((50..151).map(|i| (i * 10_000, i as f64)));
            let url = serve(&rt, remote);
            let ext = Labels::from_pairs(&[("site", "eu")]);
            let registry = Registry::new();
            let q = RemoteReadQueryable::new(
                local.clone(),
                &[cfg(url.clone(), false, &[("job", "j")])],
                &ext,
                rt.handle().clone(),
                &registry,
            )
            .unwrap();
            let (got, _) = select(&q, 0, 1_500_000, &[Matcher::equal("__name__", "x")]);
            assert_eq!(got.len(), 101, "the selector lacks job=\"j\": local data only");
            let (got, _) =
                select(&q, 0, 1_500_000, &[Matcher::equal("__name__", "x"), Matcher::equal("job", "j")]);
            assert_eq!(got.len(), 151);
            // A series lookup stays local.
            let series = q
                .querier(0, 1_500_000)
                .unwrap()
                .select_hinted(
                    &[Matcher::equal("__name__", "x"), Matcher::equal("job", "j")],
                    &SelectHints { func: Some("series".into()), ..SelectHints::default() },
                )
                .unwrap();
            assert_eq!(series.into_iter().map(|s| s.samples.count()).sum::<usize>(), 101);

            // An error status: a warning with the status, and the local answer.
            let q = RemoteReadQueryable::new(
                local.clone(),
                &[cfg(format!("{url}/nothing-here"), false, &[])],
                &ext,
                rt.handle().clone(),
                &Registry::new(),
            )
            .unwrap();
            let (got, warnings) = select(&q, 0, 1_500_000, &[Matcher::equal("__name__", "x")]);
            assert_eq!(got.len(), 101);
            assert!(warnings.len() == 1 && warnings[0].contains("HTTP status 404"), "{warnings:?}");

            // An answer over the sample limit: a warning, and the local answer.
            let limits = ReadClientLimits { max_samples: 10, ..ReadClientLimits::default() };
            let q = RemoteReadQueryable::with_limits(
                local.clone(),
                &[cfg(url, false, &[])],
                &ext,
                rt.handle().clone(),
                &registry,
                limits,
            )
            .unwrap();
            let (got, warnings) = select(&q, 0, 1_500_000, &[Matcher::equal("__name__", "x")]);
            assert_eq!(got.len(), 101);
            assert!(
                warnings.len() == 1 && warnings[0].contains("over the limit of 10 samples"),
                "{warnings:?}"
            );

            // Nobody listening: a warning naming the store, the local answer, a counted failure.
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let dead = format!("http://{}/api/v1/read", closed.local_addr().unwrap());
            drop(closed);
            let registry = Registry::new();
            let q = RemoteReadQueryable::new(
                local,
                &[cfg(dead, false, &[])],
                &ext,
                rt.handle().clone(),
                &registry,
            )
            .unwrap();
            let (got, warnings) = select(&q, 0, 1_500_000, &[Matcher::equal("__name__", "x")]);
            assert_eq!(got.len(), 101);
            assert!(warnings.len() == 1 && warnings[0].starts_with("remote_read \"old\""), "{warnings:?}");
            let text = String::from_utf8(registry.render()).unwrap();
            assert!(text.contains("promtier_remote_read_failures_total{remote_name=\"old\""), "{text}");
            assert!(text.contains("reason=\"network\"} 1"), "{text}");
            // Under replica dedup (a merge-mode global) the warning still reaches the query.
            let merged = crate::dedup::MergeQueryable {
                inner: Arc::new(q),
                replica_label: "replica".into(),
                ingest_lag: Duration::ZERO,
            };
            let (got, warnings) = select(&merged, 0, 1_500_000, &[Matcher::equal("__name__", "x")]);
            assert_eq!(got.len(), 101);
            assert_eq!(warnings.len(), 1, "{warnings:?}");
        }
    }
}
