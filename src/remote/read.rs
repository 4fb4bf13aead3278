//! The remote-read server: answers each query of a `ReadRequest` from the node's `Queryable`,
//! as one snappy-compressed `ReadResponse` (samples) or, when the client accepts it, as framed
//! `ChunkedReadResponse`s carrying XOR chunks in Prometheus's chunk format (our XOR chunk is
//! byte-compatible: `docs/format/chunks.md`).
//!
//! As in Prometheus: the node's external labels are added to every series returned (the series'
//! own labels win), and an equality matcher on an external label with its value matches series
//! without that label; series come sorted by their final labels. The whole answer is built
//! before it is sent, bounded by the sample limit (Prometheus streams the chunked answer).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use tokio::sync::Semaphore;

use super::codec;
use super::proto;
use super::{RemoteError, read_body};
use crate::metrics::{Collect, Counter, Family, MetricsWriter, Registry};
use crate::model::{Labels, MatchOp, Matcher, MetricType, Sample};
use crate::storage::{Queryable, SelectHints};
use crate::tsdb::chunkenc::XorAppender;

/// Samples per XOR chunk sent, as the head cuts them.
const SAMPLES_PER_CHUNK: usize = 120;

/// Bounds on remote reads (Prometheus's flags and defaults where it has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Samples in one answer, over all its queries (`--storage.remote.read-sample-limit`,
    /// 5e7); `400` beyond. Every series returned has a sample, so this bounds series too.
    pub max_samples: usize,
    /// Reads answered at once (`--storage.remote.read-concurrent-limit`, 10); more wait.
    pub max_concurrent: usize,
    /// Bytes of chunks per frame of a streamed answer
    /// (`--storage.remote.read-max-bytes-in-frame`, 1 MiB).
    pub max_bytes_in_frame: usize,
    /// Compressed request body bytes (`413` beyond).
    pub max_body_bytes: usize,
    /// Request bytes after decompression (`413` beyond).
    pub max_decompressed_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> ReadLimits {
        ReadLimits {
            max_samples: 50_000_000,
            max_concurrent: 10,
            max_bytes_in_frame: 1 << 20,
            max_body_bytes: 10 << 20,
            max_decompressed_bytes: 32 << 20,
        }
    }
}

/// Which answer a read gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Samples,
    Streamed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Samples => "samples",
            Kind::Streamed => "streamed",
        }
    }
}

/// The remote-read endpoint of one node.
pub(super) struct Reader {
    queryable: Arc<dyn Queryable>,
    external_labels: Labels,
    limits: ReadLimits,
    gate: Semaphore,
    requests: Arc<Family<Counter>>,
    samples: Arc<Family<Counter>>,
}

impl Reader {
    pub(super) fn new(
        queryable: Arc<dyn Queryable>,
        external_labels: Labels,
        limits: ReadLimits,
        registry: &Registry,
    ) -> Reader {
        let requests = Arc::new(Family::new(
            "promtier_remote_read_requests_total",
            "Remote-read requests answered, by response type (samples, streamed, none) and code.",
            &["response", "code"],
            Counter::default,
        ));
        let samples = Arc::new(Family::new(
            "promtier_remote_read_samples_total",
            "Samples sent in remote-read answers.",
            &[],
            Counter::default,
        ));
        samples.with(&[]);
        registry.register(requests.clone() as Arc<dyn Collect>);
        registry.register(samples.clone() as Arc<dyn Collect>);
        let limits = ReadLimits { max_concurrent: limits.max_concurrent.max(1), ..limits };
        Reader {
            queryable,
            external_labels,
            limits,
            gate: Semaphore::new(limits.max_concurrent),
            requests,
            samples,
        }
    }

    /// Registers `prometheus_remote_read_handler_queries` (reads running or waiting).
    pub(super) fn register_gauge(self: &Arc<Self>, registry: &Registry) {
        let r = Arc::downgrade(self);
        registry.register(Arc::new(move |w: &mut MetricsWriter| {
            let n =
                r.upgrade().map_or(0, |r| r.limits.max_concurrent.saturating_sub(r.gate.available_permits()));
            w.single(
                "prometheus_remote_read_handler_queries",
                "The current number of remote read queries being executed.",
                MetricType::Gauge,
                n as f64,
            );
        }) as Arc<dyn Collect>);
    }

    /// Answers one decoded request body: the response kind and its bytes. Blocking.
    fn answer(&self, body: &[u8]) -> Result<(Kind, Vec<u8>, u64), RemoteError> {
        let data = codec::decompress(body, self.limits.max_decompressed_bytes)?;
        let req = proto::ReadRequest::decode(data.as_slice())
            .map_err(|e| RemoteError::Decode { message: "prometheus.ReadRequest", error: e.to_string() })?;
        let kind = negotiate(&req.accepted_response_types)?;
        let mut budget = self.limits.max_samples;
        let mut out = Vec::new();
        let mut results = Vec::new();
        for (i, q) in req.queries.iter().enumerate() {
            let series = self.select(i, q)?;
            match kind {
                Kind::Samples => results.push(samples_result(series, &mut budget, self.limits.max_samples)?),
                Kind::Streamed => {
                    stream_query(&mut out, i as i64, series, &mut budget, &self.limits)?;
                }
            }
        }
        let sent = (self.limits.max_samples - budget) as u64;
        match kind {
            Kind::Samples => {
                let resp = proto::ReadResponse { results };
                Ok((kind, codec::compress(&resp.encode_to_vec())?, sent))
            }
            Kind::Streamed => Ok((kind, out, sent)),
        }
    }

    /// The series of one query with their final labels (external labels added), sorted.
    fn select(&self, i: usize, q: &proto::Query) -> Result<Vec<(Labels, Vec<Sample>)>, RemoteError> {
        let matchers = q
            .matchers
            .iter()
            .map(|m| self.matcher(m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| RemoteError::BadQuery { query: i, reason })?;
        let hints = q.hints.as_ref().map_or_else(SelectHints::default, |h| SelectHints {
            func: (!h.func.is_empty()).then(|| h.func.clone()),
            step: h.step_ms,
            range: h.range_ms,
        });
        let querier = self
            .queryable
            .querier(q.start_timestamp_ms, q.end_timestamp_ms)
            .map_err(|e| RemoteError::Storage(e.to_string()))?;
        let selected =
            querier.select_hinted(&matchers, &hints).map_err(|e| RemoteError::Storage(e.to_string()))?;
        let mut series: Vec<(Labels, Vec<Sample>)> = Vec::with_capacity(selected.len());
        for s in selected {
            let samples: Vec<Sample> = s.samples.collect();
            if samples.is_empty() {
                continue;
            }
            series.push((self.with_external(&s.labels), samples));
        }
        if !self.external_labels.is_empty() {
            series.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(series)
    }

    /// A wire matcher; an equality matcher on an external label with its value becomes `name=""`
    /// (the label is not stored, it is added on the way out).
    fn matcher(&self, m: &proto::LabelMatcher) -> Result<Matcher, String> {
        let op = match m.r#type {
            0 => MatchOp::Equal,
            1 => MatchOp::NotEqual,
            2 => MatchOp::Regex,
            3 => MatchOp::NotRegex,
            t => return Err(format!("unknown matcher type {t} for label {:?}", m.name)),
        };
        if op == MatchOp::Equal && self.external_labels.get(&m.name) == Some(m.value.as_str()) {
            return Ok(Matcher::equal(m.name.clone(), ""));
        }
        Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())
    }

    fn with_external(&self, labels: &Labels) -> Labels {
        if self.external_labels.is_empty() {
            return labels.clone();
        }
        let mut b = labels.builder();
        for l in self.external_labels.iter() {
            if !labels.has(l.name) {
                b.set(l.name, l.value);
            }
        }
        b.labels()
    }
}

/// The first accepted response type we serve; none given means samples (Prometheus's rule).
fn negotiate(accepted: &[i32]) -> Result<Kind, RemoteError> {
    if accepted.is_empty() {
        return Ok(Kind::Samples);
    }
    for t in accepted {
        match *t {
            proto::RESPONSE_SAMPLES => return Ok(Kind::Samples),
            proto::RESPONSE_STREAMED_XOR_CHUNKS => return Ok(Kind::Streamed),
            _ => {}
        }
    }
    Err(RemoteError::BadQuery {
        query: 0,
        reason: format!(
            "none of the accepted response types {accepted:?} is supported (0 samples, 1 streamed XOR chunks)"
        ),
    })
}

fn wire_labels(labels: &Labels) -> Vec<proto::Label> {
    labels.iter().map(|l| proto::Label { name: l.name.to_string(), value: l.value.to_string() }).collect()
}

/// Takes `n` samples from the answer's budget.
fn spend(budget: &mut usize, n: usize, limit: usize) -> Result<(), RemoteError> {
    *budget = budget.checked_sub(n).ok_or(RemoteError::ReadSampleLimit { limit })?;
    Ok(())
}

fn samples_result(
    series: Vec<(Labels, Vec<Sample>)>,
    budget: &mut usize,
    limit: usize,
) -> Result<proto::QueryResult, RemoteError> {
    let mut timeseries = Vec::with_capacity(series.len());
    for (labels, samples) in series {
        spend(budget, samples.len(), limit)?;
        timeseries.push(proto::TimeSeries {
            labels: wire_labels(&labels),
            samples: samples.iter().map(|s| proto::Sample { value: s.v, timestamp: s.t }).collect(),
            exemplars: Vec::new(),
            histograms: Vec::new(),
        });
    }
    Ok(proto::QueryResult { timeseries })
}

/// Appends the frames of one query: per series, XOR chunks of up to 120 samples, as many per
/// frame as fit in `max_bytes_in_frame` (at least one), each frame one `ChunkedReadResponse`
/// naming the query.
fn stream_query(
    out: &mut Vec<u8>,
    query_index: i64,
    series: Vec<(Labels, Vec<Sample>)>,
    budget: &mut usize,
    limits: &ReadLimits,
) -> Result<(), RemoteError> {
    for (labels, samples) in series {
        spend(budget, samples.len(), limits.max_samples)?;
        let wire = wire_labels(&labels);
        let labels_size: usize = wire.iter().map(|l| l.name.len() + l.value.len()).sum();
        let mut chunks = Vec::new();
        let mut frame_bytes = labels_size;
        for run in samples.chunks(SAMPLES_PER_CHUNK) {
            let mut app = XorAppender::new();
            for s in run {
                app.append(s.t, s.v).map_err(|e| RemoteError::Internal(format!("XOR chunk: {e}")))?;
            }
            let (Some(first), Some(last)) = (run.first(), run.last()) else { continue };
            let data = app.finish().into_bytes();
            frame_bytes += data.len();
            chunks.push(proto::Chunk {
                min_time_ms: first.t,
                max_time_ms: last.t,
                r#type: proto::CHUNK_XOR,
                data,
            });
            if frame_bytes >= limits.max_bytes_in_frame {
                put_series_frame(out, query_index, &wire, std::mem::take(&mut chunks));
                frame_bytes = labels_size;
            }
        }
        if !chunks.is_empty() {
            put_series_frame(out, query_index, &wire, chunks);
        }
    }
    Ok(())
}

fn put_series_frame(out: &mut Vec<u8>, query_index: i64, labels: &[proto::Label], chunks: Vec<proto::Chunk>) {
    let msg = proto::ChunkedReadResponse {
        chunked_series: vec![proto::ChunkedSeries { labels: labels.to_vec(), chunks }],
        query_index,
    };
    codec::put_frame(out, &msg.encode_to_vec());
}

/// `POST /api/v1/read`.
pub(super) async fn handle(State(reader): State<Arc<Reader>>, req: Request) -> Response {
    // Waits for a slot, as Prometheus's gate does; a client that gives up drops this future.
    let Ok(_permit) = reader.gate.acquire().await else {
        return RemoteError::Internal("remote read gate closed".into()).into_response();
    };
    let result = match read_body(req, reader.limits.max_body_bytes).await {
        Ok(body) => {
            let r = reader.clone();
            match tokio::task::spawn_blocking(move || r.answer(&body)).await {
                Ok(r) => r,
                Err(e) => Err(RemoteError::Internal(format!("remote read task failed: {e}"))),
            }
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((kind, bytes, sent)) => {
            reader.requests.with(&[kind.as_str(), "200"]).inc();
            reader.samples.with(&[]).inc_by(sent as f64);
            let headers: &[(header::HeaderName, &str)] = match kind {
                Kind::Samples => &[
                    (header::CONTENT_TYPE, codec::PROTOBUF_CONTENT_TYPE),
                    (header::CONTENT_ENCODING, "snappy"),
                ],
                Kind::Streamed => &[(header::CONTENT_TYPE, codec::STREAMED_CONTENT_TYPE)],
            };
            let mut resp = (StatusCode::OK, bytes).into_response();
            for (k, v) in headers {
                resp.headers_mut().insert(k.clone(), header::HeaderValue::from_static(v));
            }
            resp
        }
        Err(e) => {
            reader.requests.with(&["none", e.status().as_str()]).inc();
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::chunkenc::XorIterator;

    #[test]
    fn negotiation_follows_the_clients_order() {
        assert_eq!(negotiate(&[]).unwrap(), Kind::Samples);
        assert_eq!(negotiate(&[1, 0]).unwrap(), Kind::Streamed);
        assert_eq!(negotiate(&[0, 1]).unwrap(), Kind::Samples);
        assert_eq!(negotiate(&[7, 1]).unwrap(), Kind::Streamed);
        assert!(negotiate(&[7]).is_err());
    }

    #[test]
    fn streamed_frames_hold_xor_chunks_of_every_sample() {
        let samples: Vec<Sample> =
            (0..1000).map(|i| Sample { t: 1_000 + i * 15_000, v: (i % 7) as f64 }).collect();
        let series = vec![(Labels::from_pairs(&[("__name__", "x")]), samples.clone())];
        let limits = ReadLimits { max_bytes_in_frame: 300, ..ReadLimits::default() };
        let mut out = Vec::new();
        let mut budget = limits.max_samples;
        stream_query(&mut out, 3, series, &mut budget, &limits).unwrap();
        let mut rest = out.as_slice();
        let (mut got, mut frames) = (Vec::new(), 0);
        while !rest.is_empty() {
            let (msg, r) = codec::next_frame(rest).unwrap();
            rest = r;
            frames += 1;
            let m = proto::ChunkedReadResponse::decode(msg).unwrap();
            assert_eq!(m.query_index, 3);
            assert_eq!(m.chunked_series.len(), 1);
            for c in &m.chunked_series[0].chunks {
                assert_eq!(c.r#type, proto::CHUNK_XOR);
                let s: Vec<Sample> = XorIterator::new(c.data.as_slice()).collect();
                assert_eq!((s[0].t, s[s.len() - 1].t), (c.min_time_ms, c.max_time_ms));
                got.extend(s);
            }
        }
        assert_eq!(got, samples);
        assert!(frames > 1, "a 300-byte frame limit splits 9 chunks over several frames");
        assert_eq!(budget, limits.max_samples - 1000);
    }

    #[test]
    fn the_sample_limit_is_an_error() {
        let series = vec![(Labels::from_pairs(&[("__name__", "x")]), vec![Sample { t: 1, v: 1.0 }; 5])];
        let mut budget = 4;
        assert!(matches!(
            samples_result(series, &mut budget, 4),
            Err(RemoteError::ReadSampleLimit { limit: 4 })
        ));
    }
}
