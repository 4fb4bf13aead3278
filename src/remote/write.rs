//! The remote-write receiver: decodes a Remote-Write 1.0 or 2.0 request, appends its float
//! samples through one appender and commits them (in the WAL) before answering.
//!
//! Semantics (Prometheus's, except where noted in `docs/remote-storage.md`):
//! - Samples the storage refuses — out of order, a repeated timestamp with another value, older
//!   than the head accepts, more than 10 minutes in the future — and series with invalid labels
//!   are not stored; every other sample of the request is, and the answer is `400` with a
//!   summary, so senders do not retry what can never be stored. A repeated timestamp with the
//!   same value is accepted and ignored.
//! - Native histograms are refused (promtier's TSDB has none), counted and named in the `400`.
//! - Exemplars are accepted and ignored (counted). Metadata (1.0 per family, 2.0 per series) is
//!   kept in the node's [`ReceivedMetadata`], so `/api/v1/metadata` lists it.
//! - A storage failure rolls everything back and answers `500` (senders retry).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;

use super::codec::{self, WriteProto};
use super::metadata::{Entry, ReceivedMetadata};
use super::proto::{self, metric_type_from_proto, v2};
use super::{RemoteError, read_body};
use crate::metrics::{Collect, Counter, Family, Registry};
use crate::model::{Labels, METRIC_NAME, family_name, is_valid_label_name, is_valid_metric_name};
use crate::storage::{AppendError, Appender, SeriesRef, Storage, StorageError};

/// Samples further ahead of the receiver's clock than this are refused (Prometheus: 10 minutes).
const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;
/// At most one warning about refused samples per this many milliseconds.
const WARN_EVERY_MS: i64 = 60_000;

/// Bounds on one remote-write request. Senders batch far below them (Prometheus sends at most
/// `max_samples_per_send`, 2000 by default; vmagent blocks of at most 8 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Compressed body bytes (`413` beyond).
    pub max_body_bytes: usize,
    /// Bytes after snappy decompression, checked against the length the body declares before
    /// anything is allocated (`413` beyond).
    pub max_decompressed_bytes: usize,
    /// Series in one request (`413` beyond).
    pub max_series: usize,
    /// Float samples plus native histograms in one request (`413` beyond).
    pub max_samples: usize,
}

impl Default for WriteLimits {
    fn default() -> WriteLimits {
        WriteLimits {
            max_body_bytes: 32 << 20,
            max_decompressed_bytes: 64 << 20,
            max_series: 200_000,
            max_samples: 1_000_000,
        }
    }
}

/// Why a sample of a request was not stored (`reason` on `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    OutOfOrder,
    Duplicate,
    OutOfBounds,
    TooFarInFuture,
    InvalidLabels,
    NativeHistogram,
    AtCommit,
}

const REASONS: [Reason; 7] = [
    Reason::OutOfOrder,
    Reason::Duplicate,
    Reason::OutOfBounds,
    Reason::TooFarInFuture,
    Reason::InvalidLabels,
    Reason::NativeHistogram,
    Reason::AtCommit,
];

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::OutOfOrder => "out_of_order",
            Reason::Duplicate => "duplicate_timestamp",
            Reason::OutOfBounds => "out_of_bounds",
            Reason::TooFarInFuture => "too_far_in_future",
            Reason::InvalidLabels => "invalid_labels",
            Reason::NativeHistogram => "native_histogram",
            Reason::AtCommit => "refused_at_commit",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Reason::OutOfOrder => "out of order",
            Reason::Duplicate => "duplicate timestamp with another value",
            Reason::OutOfBounds => "out of bounds (too old for the storage)",
            Reason::TooFarInFuture => "more than 10m in the future",
            Reason::InvalidLabels => "invalid labels",
            Reason::NativeHistogram => "native histograms (promtier's TSDB stores none)",
            Reason::AtCommit => {
                "refused at commit (out of order against a concurrent writer, or below a new block)"
            }
        }
    }
}

/// What one request did.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Float samples stored (or already stored with the same value).
    pub(super) stored: u64,
    refused: [u64; REASONS.len()],
    exemplars: u64,
    /// Metadata entries (1.0) or series' metadata (2.0) kept, and not kept (the store is full).
    metadata: u64,
    metadata_ignored: u64,
    /// The first refusal, with its series, for the answer.
    first: Option<String>,
}

impl Outcome {
    fn refuse(&mut self, reason: Reason, n: u64, detail: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        self.refused[reason as usize] += n;
        if self.first.is_none() {
            self.first = Some(detail());
        }
    }

    pub(super) fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    /// `"3 of 10 samples not stored: 2 out of order, 1 …; first: …"`.
    pub(super) fn summary(&self, total: u64) -> String {
        let parts: Vec<String> = REASONS
            .iter()
            .filter(|r| self.refused[**r as usize] > 0)
            .map(|r| format!("{} {}", self.refused[*r as usize], r.describe()))
            .collect();
        let mut s = format!("{} of {total} samples not stored: {}", self.refused_total(), parts.join(", "));
        if let Some(f) = &self.first {
            s.push_str("; first: ");
            s.push_str(f);
        }
        s
    }
}

struct WriteMetrics {
    requests: Arc<Family<Counter>>,
    received: Arc<Family<Counter>>,
    rejected: Arc<Family<Counter>>,
    ignored: Arc<Family<Counter>>,
    metadata: Arc<Family<Counter>>,
}

/// The receiver of one node.
pub(super) struct Receiver {
    storage: Arc<dyn Storage>,
    limits: WriteLimits,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    metrics: WriteMetrics,
    /// When refused samples were last logged (ms), to log at most once a minute.
    last_warned: AtomicI64,
    /// Where received metadata is kept.
    received: Arc<ReceivedMetadata>,
}

impl Receiver {
    pub(super) fn new(
        storage: Arc<dyn Storage>,
        limits: WriteLimits,
        clock: Arc<dyn Fn() -> i64 + Send + Sync>,
        received: Arc<ReceivedMetadata>,
        registry: &Registry,
    ) -> Receiver {
        let metrics = WriteMetrics {
            requests: Arc::new(Family::new(
                "promtier_remote_write_requests_total",
                "Remote-write requests received, by protocol (1.0, 2.0, unknown) and response code.",
                &["protocol", "code"],
                Counter::default,
            )),
            received: Arc::new(Family::new(
                "promtier_remote_write_received_samples_total",
                "Float samples received by remote write and stored.",
                &[],
                Counter::default,
            )),
            rejected: Arc::new(Family::new(
                "promtier_remote_write_rejected_samples_total",
                "Samples of remote-write requests not stored, by reason (the rest of their request was).",
                &["reason"],
                Counter::default,
            )),
            ignored: Arc::new(Family::new(
                "promtier_remote_write_ignored_total",
                "Exemplars received by remote write (not stored by promtier), and metadata not kept (over the bound of families kept).",
                &["kind"],
                Counter::default,
            )),
            metadata: Arc::new(Family::new(
                "promtier_remote_write_received_metadata_total",
                "Metadata received by remote write and kept for /api/v1/metadata: 1.0 entries, 2.0 series carrying metadata.",
                &[],
                Counter::default,
            )),
        };
        metrics.metadata.with(&[]);
        metrics.received.with(&[]);
        for r in REASONS {
            metrics.rejected.with(&[r.label()]);
        }
        for k in ["exemplar", "metadata"] {
            metrics.ignored.with(&[k]);
        }
        registry.register(metrics.requests.clone() as Arc<dyn Collect>);
        registry.register(metrics.received.clone() as Arc<dyn Collect>);
        registry.register(metrics.rejected.clone() as Arc<dyn Collect>);
        registry.register(metrics.ignored.clone() as Arc<dyn Collect>);
        registry.register(metrics.metadata.clone() as Arc<dyn Collect>);
        Receiver { storage, limits, clock, metrics, last_warned: AtomicI64::new(i64::MIN), received }
    }

    pub(super) fn count_outcome(&self, out: &Outcome) {
        self.metrics.received.with(&[]).inc_by(out.stored as f64);
        for r in REASONS {
            let n = out.refused[r as usize];
            if n > 0 {
                self.metrics.rejected.with(&[r.label()]).inc_by(n as f64);
            }
        }
        if out.exemplars > 0 {
            self.metrics.ignored.with(&["exemplar"]).inc_by(out.exemplars as f64);
        }
        if out.metadata > 0 {
            self.metrics.metadata.with(&[]).inc_by(out.metadata as f64);
        }
        if out.metadata_ignored > 0 {
            self.metrics.ignored.with(&["metadata"]).inc_by(out.metadata_ignored as f64);
        }
    }

    fn warn_refused(&self, summary: &str) {
        let now = (self.clock)();
        let last = self.last_warned.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_MS
            && self.last_warned.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(%summary, "remote write: samples not stored (logged at most once a minute)");
        }
    }

    /// Decodes and stores one decompressed request body; blocking (appends, WAL write).
    pub(super) fn ingest(&self, proto: WriteProto, body: &[u8]) -> Result<(Outcome, u64), RemoteError> {
        let data = codec::decompress(body, self.limits.max_decompressed_bytes)?;
        let max_t = (self.clock)().saturating_add(MAX_AHEAD_MS);
        match proto {
            WriteProto::V1 => {
                let req = proto::WriteRequest::decode(data.as_slice())
                    .map_err(|e| RemoteError::Decode { message: codec::PROTO_V1, error: e.to_string() })?;
                self.store_v1(&req)
            }
            WriteProto::V2 => {
                let req = v2::Request::decode(data.as_slice())
                    .map_err(|e| RemoteError::Decode { message: codec::PROTO_V2, error: e.to_string() })?;
                let total = self.check_counts(
                    req.timeseries.len(),
                    req.timeseries.iter().map(|s| s.samples.len() + s.histograms.len()),
                )?;
                // Every reference is checked before anything is appended: a malformed request
                // stores nothing.
                for (i, ts) in req.timeseries.iter().enumerate() {
                    check_refs(i, &ts.labels_refs, req.symbols.len())?;
                    check_metadata_refs(i, ts.metadata.as_ref(), req.symbols.len())?;
                }
                let sym = |r: u32| req.symbols.get(r as usize).map_or("", String::as_str);
                let mut batch = Batch::new(self.storage.as_ref(), max_t);
                (batch.out.metadata, batch.out.metadata_ignored) =
                    self.received.record(req.timeseries.iter().filter_map(|ts| {
                        let m =
                            ts.metadata.filter(|m| m.r#type != 0 || m.help_ref != 0 || m.unit_ref != 0)?;
                        let name = ts.labels_refs.chunks_exact(2).find(|p| sym(p[0]) == METRIC_NAME)?;
                        let kind = metric_type_from_proto(m.r#type);
                        Some(Entry {
                            family: family_name(sym(name[1]), kind),
                            kind,
                            help: sym(m.help_ref),
                            unit: sym(m.unit_ref),
                        })
                    }));
                for ts in &req.timeseries {
                    let pairs = ts.labels_refs.chunks_exact(2).map(|p| (sym(p[0]), sym(p[1])));
                    batch.series(
                        series_labels(pairs),
                        ts.samples.iter().map(|s| (s.timestamp, s.value)),
                        &ts.histograms,
                        ts.exemplars.len(),
                    )?;
                }
                Ok((batch.commit()?, total))
            }
        }
    }

    /// Stores a decoded Remote-Write 1.0 request (the whole of it, or nothing when the storage
    /// fails); blocking. Returns what it did and the request's sample count.
    pub(super) fn store_v1(&self, req: &proto::WriteRequest) -> Result<(Outcome, u64), RemoteError> {
        let max_t = (self.clock)().saturating_add(MAX_AHEAD_MS);
        let total = self.check_counts(
            req.timeseries.len(),
            req.timeseries.iter().map(|s| s.samples.len() + s.histograms.len()),
        )?;
        let mut batch = Batch::new(self.storage.as_ref(), max_t);
        (batch.out.metadata, batch.out.metadata_ignored) =
            self.received.record(req.metadata.iter().map(|m| Entry {
                family: &m.metric_family_name,
                kind: metric_type_from_proto(m.r#type),
                help: &m.help,
                unit: &m.unit,
            }));
        for ts in &req.timeseries {
            let labels = series_labels(ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
            batch.series(
                labels,
                ts.samples.iter().map(|s| (s.timestamp, s.value)),
                &ts.histograms,
                ts.exemplars.len(),
            )?;
        }
        Ok((batch.commit()?, total))
    }

    /// Decodes a request body of either protocol into the 1.0 message (2.0's symbol references
    /// resolved and checked, its per-series metadata turned into 1.0 family metadata), within
    /// this receiver's limits: what a push node routes to the owners of each series.
    pub(super) fn decode_v1(
        &self,
        proto: WriteProto,
        body: &[u8],
    ) -> Result<proto::WriteRequest, RemoteError> {
        let data = codec::decompress(body, self.limits.max_decompressed_bytes)?;
        let req = match proto {
            WriteProto::V1 => proto::WriteRequest::decode(data.as_slice())
                .map_err(|e| RemoteError::Decode { message: codec::PROTO_V1, error: e.to_string() })?,
            WriteProto::V2 => {
                let req = v2::Request::decode(data.as_slice())
                    .map_err(|e| RemoteError::Decode { message: codec::PROTO_V2, error: e.to_string() })?;
                for (i, ts) in req.timeseries.iter().enumerate() {
                    check_refs(i, &ts.labels_refs, req.symbols.len())?;
                    check_metadata_refs(i, ts.metadata.as_ref(), req.symbols.len())?;
                    for e in &ts.exemplars {
                        check_refs(i, &e.labels_refs, req.symbols.len())?;
                    }
                }
                v2_to_v1(req)
            }
        };
        self.check_counts(
            req.timeseries.len(),
            req.timeseries.iter().map(|s| s.samples.len() + s.histograms.len()),
        )?;
        Ok(req)
    }

    /// Refuses a request over the series or sample limit; returns its sample count.
    fn check_counts(
        &self,
        series: usize,
        per_series: impl Iterator<Item = usize>,
    ) -> Result<u64, RemoteError> {
        if series > self.limits.max_series {
            return Err(RemoteError::TooManySeries { count: series, limit: self.limits.max_series });
        }
        let samples: usize = per_series.sum();
        if samples > self.limits.max_samples {
            return Err(RemoteError::TooManySamples { count: samples, limit: self.limits.max_samples });
        }
        Ok(samples as u64)
    }
}

/// A checked 2.0 request as the 1.0 message: labels and exemplars resolved, series metadata as
/// family metadata (one entry per family), created timestamps dropped (nothing stores them).
fn v2_to_v1(req: v2::Request) -> proto::WriteRequest {
    let sym = |r: u32| req.symbols.get(r as usize).cloned().unwrap_or_default();
    let labels = |refs: &[u32]| -> Vec<proto::Label> {
        refs.chunks_exact(2).map(|p| proto::Label { name: sym(p[0]), value: sym(p[1]) }).collect()
    };
    let mut metadata: Vec<proto::MetricMetadata> = Vec::new();
    let mut timeseries = Vec::with_capacity(req.timeseries.len());
    for ts in &req.timeseries {
        let l = labels(&ts.labels_refs);
        if let Some(m) = ts.metadata.filter(|m| m.r#type != 0 || m.help_ref != 0 || m.unit_ref != 0)
            && let Some(name) = l.iter().find(|l| l.name == METRIC_NAME)
        {
            let family = family_name(&name.value, metric_type_from_proto(m.r#type)).to_string();
            if !metadata.iter().any(|x| x.metric_family_name == family) {
                metadata.push(proto::MetricMetadata {
                    r#type: m.r#type,
                    metric_family_name: family,
                    help: sym(m.help_ref),
                    unit: sym(m.unit_ref),
                });
            }
        }
        timeseries.push(proto::TimeSeries {
            labels: l,
            samples: ts
                .samples
                .iter()
                .map(|s| proto::Sample { value: s.value, timestamp: s.timestamp })
                .collect(),
            exemplars: ts
                .exemplars
                .iter()
                .map(|e| proto::Exemplar {
                    labels: labels(&e.labels_refs),
                    value: e.value,
                    timestamp: e.timestamp,
                })
                .collect(),
            histograms: ts.histograms.clone(),
        });
    }
    proto::WriteRequest { timeseries, metadata }
}

/// Label references must come in name/value pairs and point into the symbol table.
fn check_refs(series: usize, refs: &[u32], symbols: usize) -> Result<(), RemoteError> {
    if !refs.len().is_multiple_of(2) {
        return Err(RemoteError::OddLabelRefs { series, len: refs.len() });
    }
    match refs.iter().find(|r| **r as usize >= symbols) {
        Some(r) => Err(RemoteError::SymbolRef { series, reference: *r, symbols }),
        None => Ok(()),
    }
}

/// A series' metadata must refer into the symbol table too (Prometheus refuses such a series;
/// here, as for label references, the whole request).
fn check_metadata_refs(series: usize, m: Option<&v2::Metadata>, symbols: usize) -> Result<(), RemoteError> {
    match m.into_iter().flat_map(|m| [m.help_ref, m.unit_ref]).find(|r| *r as usize >= symbols) {
        Some(r) => Err(RemoteError::MetadataSymbolRef { series, reference: r, symbols }),
        None => Ok(()),
    }
}

/// A series' labels, validated as Prometheus 2.x does: a metric name, legacy-valid names and
/// metric name, no name twice. Empty values mean "no such label" and are dropped.
fn series_labels<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Labels, String> {
    let mut v: Vec<(&str, &str)> = pairs.collect();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let shown = || {
        let inner: Vec<String> = v.iter().map(|(n, val)| format!("{n}={val:?}")).collect();
        format!("{{{}}}", inner.join(", "))
    };
    if let Some(w) = v.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("duplicate label name {:?} in {}", w[0].0, shown()));
    }
    if let Some((n, _)) = v.iter().find(|(n, _)| !is_valid_label_name(n)) {
        return Err(format!("invalid label name {n:?} in {}", shown()));
    }
    match v.iter().find(|(n, _)| *n == "__name__") {
        None | Some((_, "")) => return Err(format!("no metric name in {}", shown())),
        Some((_, name)) if !is_valid_metric_name(name) => {
            return Err(format!("invalid metric name {name:?} in {}", shown()));
        }
        Some(_) => {}
    }
    Ok(Labels::from_pairs(&v))
}

/// One request's appender and tally.
struct Batch<'a> {
    app: Box<dyn Appender + 'a>,
    max_t: i64,
    out: Outcome,
    /// Samples staged (a refusal at commit is subtracted).
    staged: u64,
}

impl<'a> Batch<'a> {
    fn new(storage: &'a dyn Storage, max_t: i64) -> Batch<'a> {
        Batch { app: storage.appender(), max_t, out: Outcome::default(), staged: 0 }
    }

    /// Stages one series' samples. Only a failing storage is an error (the request is then
    /// rolled back by [`Batch`]'s drop); refused samples are tallied.
    fn series(
        &mut self,
        labels: Result<Labels, String>,
        samples: impl Iterator<Item = (i64, f64)>,
        histograms: &[proto::Histogram],
        exemplars: usize,
    ) -> Result<(), RemoteError> {
        self.out.exemplars += exemplars as u64;
        let labels = match labels {
            Ok(l) => l,
            Err(why) => {
                let n = samples.count() + histograms.len();
                self.out.refuse(Reason::InvalidLabels, n as u64, || why);
                return Ok(());
            }
        };
        let mut series: Option<SeriesRef> = None;
        // The last sample staged for this series in this request: the storage checks order
        // against committed samples only.
        let mut last: Option<(i64, u64)> = None;
        for (t, v) in samples {
            if t > self.max_t {
                self.out.refuse(Reason::TooFarInFuture, 1, || format!("sample at {t} for series {labels}"));
                continue;
            }
            match last {
                Some((lt, _)) if t < lt => {
                    self.out.refuse(Reason::OutOfOrder, 1, || {
                        format!("out of order sample at {t} for series {labels}")
                    });
                    continue;
                }
                Some((lt, bits)) if t == lt => {
                    if bits == v.to_bits() {
                        self.out.stored += 1;
                    } else {
                        self.out.refuse(Reason::Duplicate, 1, || {
                            format!("duplicate sample for timestamp {t} for series {labels}")
                        });
                    }
                    continue;
                }
                _ => {}
            }
            let appended = match series {
                Some(r) => match self.app.append_ref(r, t, v) {
                    Err(AppendError::UnknownRef(_)) => {
                        self.app.append(None, &labels, t, v).map(|r| series = Some(r))
                    }
                    other => other,
                },
                None => self.app.append(None, &labels, t, v).map(|r| series = Some(r)),
            };
            match appended {
                Ok(()) => {
                    self.staged += 1;
                    last = Some((t, v.to_bits()));
                }
                Err(e) => {
                    let reason = match e {
                        AppendError::OutOfOrder => Reason::OutOfOrder,
                        AppendError::DuplicateTimestamp => Reason::Duplicate,
                        AppendError::OutOfBounds => Reason::OutOfBounds,
                        AppendError::Storage(e) => return Err(RemoteError::Storage(e.to_string())),
                        other => return Err(RemoteError::Storage(other.to_string())),
                    };
                    self.out.refuse(reason, 1, || format!("{e} at {t} for series {labels}"));
                }
            }
        }
        self.out.refuse(Reason::NativeHistogram, histograms.len() as u64, || {
            format!(
                "native histogram samples for series {labels}: promtier's TSDB stores no native histograms"
            )
        });
        Ok(())
    }

    /// Commits (the samples are in the WAL when this returns `Ok`).
    fn commit(self) -> Result<Outcome, RemoteError> {
        let Batch { app, mut out, staged, .. } = self;
        let stats = app.commit().map_err(|e: StorageError| RemoteError::Storage(e.to_string()))?;
        let rejected = stats.rejected as u64;
        out.stored += staged.saturating_sub(rejected);
        out.refuse(Reason::AtCommit, rejected, || "samples refused at commit".to_string());
        Ok(out)
    }
}

/// The protocol a write request speaks, from its headers.
pub(super) fn request_proto(req: &Request) -> Result<WriteProto, RemoteError> {
    let header = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    codec::parse_content_type(header(header::CONTENT_TYPE))
        .and_then(|p| codec::check_content_encoding(header(header::CONTENT_ENCODING)).map(|()| p))
}

impl Receiver {
    /// Counts a stored request and turns its outcome into the answer: `204`, or `400` with the
    /// summary of what was refused; 2.0 answers carry the written counts.
    pub(super) fn answer(&self, proto: WriteProto, result: Result<(Outcome, u64), RemoteError>) -> Response {
        let (status, mut resp, written) = match result {
            Ok((out, total)) => {
                self.count_outcome(&out);
                let written = out.stored;
                if out.refused_total() == 0 {
                    (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT.into_response(), written)
                } else {
                    let summary = out.summary(total);
                    self.warn_refused(&summary);
                    let e = RemoteError::Refused(summary);
                    (e.status(), e.into_response(), written)
                }
            }
            Err(e) => (e.status(), e.into_response(), 0),
        };
        self.count_request(proto, status);
        if proto == WriteProto::V2 {
            written_headers(&mut resp, written);
        }
        resp
    }

    pub(super) fn count_request(&self, proto: WriteProto, status: StatusCode) {
        self.metrics.requests.with(&[proto.as_str(), status.as_str()]).inc();
    }

    pub(super) fn count_unknown(&self, status: StatusCode) {
        self.metrics.requests.with(&["unknown", status.as_str()]).inc();
    }

    pub(super) fn limits(&self) -> WriteLimits {
        self.limits
    }
}

/// The counts a 2.0 answer carries.
pub(super) fn written_headers(resp: &mut Response, samples: u64) {
    let h = resp.headers_mut();
    h.insert("X-Prometheus-Remote-Write-Samples-Written", HeaderValue::from(samples));
    // Nothing of these is ever stored: native histograms are refused, exemplars ignored.
    h.insert("X-Prometheus-Remote-Write-Histograms-Written", HeaderValue::from(0u64));
    h.insert("X-Prometheus-Remote-Write-Exemplars-Written", HeaderValue::from(0u64));
}

/// `POST /api/v1/write`.
pub(super) async fn handle(State(rx): State<Arc<Receiver>>, req: Request) -> Response {
    let proto = match request_proto(&req) {
        Ok(p) => p,
        Err(e) => {
            rx.count_unknown(e.status());
            return e.into_response();
        }
    };
    let result = match read_body(req, rx.limits.max_body_bytes).await {
        Ok(body) => {
            let rx2 = rx.clone();
            match tokio::task::spawn_blocking(move || rx2.ingest(proto, &body)).await {
                Ok(r) => r,
                Err(e) => Err(RemoteError::Internal(format!("remote write task failed: {e}"))),
            }
        }
        Err(e) => Err(e),
    };
    rx.answer(proto, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_validated() {
        let ok = |p: &[(&str, &str)]| series_labels(p.iter().copied());
        let l = ok(&[("job", "a"), ("__name__", "up"), ("empty", "")]).unwrap();
        assert_eq!(l, Labels::from_pairs(&[("__name__", "up"), ("job", "a")]));
        assert!(ok(&[("job", "a")]).unwrap_err().contains("no metric name"));
        assert!(ok(&[("__name__", "")]).unwrap_err().contains("no metric name"));
        assert!(ok(&[("__name__", "1up")]).unwrap_err().contains("invalid metric name"));
        assert!(ok(&[("__name__", "up"), ("a-b", "x")]).unwrap_err().contains("invalid label name"));
        assert!(ok(&[("__name__", "up"), ("", "x")]).unwrap_err().contains("invalid label name"));
        let dup = ok(&[("__name__", "up"), ("a", "x"), ("a", "y")]).unwrap_err();
        assert!(dup.contains("duplicate label name \"a\""), "{dup}");
    }

    #[test]
    fn refs_are_checked() {
        assert!(check_refs(0, &[1, 2], 3).is_ok());
        assert!(matches!(check_refs(4, &[1, 2, 3], 9), Err(RemoteError::OddLabelRefs { series: 4, len: 3 })));
        assert!(matches!(
            check_refs(1, &[1, 3], 3),
            Err(RemoteError::SymbolRef { series: 1, reference: 3, symbols: 3 })
        ));
        assert!(matches!(check_refs(0, &[u32::MAX, 0], 0), Err(RemoteError::SymbolRef { .. })));
    }
}
