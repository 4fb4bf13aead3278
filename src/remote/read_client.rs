//! The remote-read client: one `POST` of a snappy-compressed `ReadRequest` (one query) to a
//! store's `/api/v1/read`, accepting streamed XOR chunks first and samples second, as
//! Prometheus's client asks; the answer — one `ReadResponse`, or CRC-checked frames of
//! `ChunkedReadResponse` — decoded into series sorted by labels, each series' samples in time
//! order with one sample per timestamp and only those inside the asked range.
//!
//! Everything about a read is bounded: the whole exchange by `remote_timeout`, the body, the
//! decompressed answer, each frame and the number of decoded samples by [`ReadClientLimits`].
//! Native-histogram samples and chunks are skipped and counted (promtier stores and evaluates
//! floats only). What to ask and what to do with the answer is `fanout`'s business.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;

use super::RemoteError;
use super::codec;
use super::proto;
use crate::http::HttpClient;
use crate::http::client::{ClientError, error_chain};
use crate::model::{Label, Labels, MatchOp, Matcher, Sample};
use crate::storage::SelectHints;
use crate::topology::RemoteReadConfig;
use crate::tsdb::chunkenc::XorIterator;

/// Bounds on one remote-read answer. A read over any of them fails (and becomes a warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadClientLimits {
    /// Response body bytes as received (compressed samples, or the whole stream).
    pub max_body_bytes: usize,
    /// A samples answer after snappy decompression (checked against the size it declares before
    /// anything is allocated).
    pub max_decompressed_bytes: usize,
    /// One frame of a streamed answer (Prometheus's `chunked_read_limit`, 50 MB).
    pub max_frame_bytes: usize,
    /// Samples decoded from one answer, over all its series.
    pub max_samples: usize,
}

impl Default for ReadClientLimits {
    fn default() -> ReadClientLimits {
        ReadClientLimits {
            max_body_bytes: 256 << 20,
            max_decompressed_bytes: 512 << 20,
            max_frame_bytes: 50_000_000,
            max_samples: 50_000_000,
        }
    }
}

/// Why one remote read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadClientError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("error sending request: {0}")]
    Request(String),
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("remote server returned HTTP status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    #[error("response body over the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("response over the limit of {limit} samples")]
    TooManySamples { limit: usize },
    #[error("{0}")]
    Envelope(#[from] RemoteError),
    #[error("decoding {message}: {error}")]
    Decode { message: &'static str, error: String },
    #[error("{0}")]
    Malformed(String),
}

impl ReadClientError {
    /// The `reason` label of the failure counter.
    pub fn reason(&self) -> &'static str {
        match self {
            ReadClientError::Client(_) => "client",
            ReadClientError::Request(_) => "network",
            ReadClientError::Timeout(_) => "timeout",
            ReadClientError::Status { .. } => "http_status",
            ReadClientError::BodyTooLarge { .. } | ReadClientError::TooManySamples { .. } => "too_large",
            ReadClientError::ContentType(_)
            | ReadClientError::Envelope(_)
            | ReadClientError::Decode { .. }
            | ReadClientError::Malformed(_) => "decode",
        }
    }
}

/// One series of an answer: labels as the store sent them, samples in time order, one per
/// timestamp, inside the asked range.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// A decoded answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReadAnswer {
    /// Sorted by labels, each labels once.
    pub series: Vec<RemoteSeries>,
    /// Native-histogram samples (samples answer) or chunks (streamed answer) skipped.
    pub skipped_histograms: usize,
    /// `samples` or `chunked`: which answer the store gave (Prometheus's `response_type`).
    pub response_type: &'static str,
}

/// What one read asks: matchers over `[start, end]` (ms, inclusive), with the engine's hints.
#[derive(Debug, Clone)]
pub struct ReadQuery {
    pub start: i64,
    pub end: i64,
    pub matchers: Vec<Matcher>,
    pub hints: SelectHints,
}

/// A client for one `remote_read` endpoint. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReadClient {
    http: HttpClient,
    url: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
    limits: ReadClientLimits,
    /// Response types asked for, in order of preference.
    accepted: Vec<i32>,
}

impl ReadClient {
    pub fn new(cfg: &RemoteReadConfig, limits: ReadClientLimits) -> Result<ReadClient, ReadClientError> {
        Ok(ReadClient {
            // Remote-read answers are snappy or raw frames: no gzip.
            http: HttpClient::new(&cfg.client, false)?,
            url: cfg.url.clone(),
            headers: cfg.headers.clone(),
            timeout: cfg.remote_timeout,
            limits,
            accepted: vec![proto::RESPONSE_STREAMED_XOR_CHUNKS, proto::RESPONSE_SAMPLES],
        })
    }

    /// The same client asking only for `accepted` response types (tests of each decoder against
    /// a real server).
    pub fn with_accepted(mut self, accepted: Vec<i32>) -> ReadClient {
        self.accepted = accepted;
        self
    }

    /// Reads one query. Never takes longer than the configured timeout.
    pub async fn read(&self, q: &ReadQuery) -> Result<ReadAnswer, ReadClientError> {
        match tokio::time::timeout(self.timeout, self.exchange(q)).await {
            Ok(r) => r,
            Err(_) => Err(ReadClientError::Timeout(self.timeout)),
        }
    }

    async fn exchange(&self, q: &ReadQuery) -> Result<ReadAnswer, ReadClientError> {
        let body = encode_request(q, &self.accepted)?;
        let mut req = self
            .http
            .post(&self.url)?
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header(reqwest::header::ACCEPT_ENCODING, "snappy")
            .header(reqwest::header::CONTENT_TYPE, codec::PROTOBUF_CONTENT_TYPE)
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .timeout(self.timeout);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req.body(body).send().await.map_err(|e| self.request_error(&e))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !status.is_success() {
            // The start of the body, for the message.
            let body = read_prefix(&mut resp, 512).await;
            let text = String::from_utf8_lossy(&body);
            return Err(ReadClientError::Status { status: status.as_u16(), body: text.trim().to_string() });
        }
        let limit = self.limits.max_body_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(ReadClientError::BodyTooLarge { limit });
        }
        let body = match read_bounded(&mut resp, limit).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => return Err(ReadClientError::BodyTooLarge { limit }),
            Err(BodyError::Read(e)) => return Err(self.request_error(&e)),
        };
        decode_response(&content_type, &body, q.start, q.end, &self.limits)
    }

    fn request_error(&self, e: &reqwest::Error) -> ReadClientError {
        if e.is_timeout() {
            ReadClientError::Timeout(self.timeout)
        } else {
            ReadClientError::Request(error_chain(e))
        }
    }
}

enum BodyError {
    TooLarge,
    Read(reqwest::Error),
}

/// The response body, refusing as soon as it grows past `limit` bytes.
async fn read_bounded(resp: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Read)? {
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// At most the first `n` bytes of the body (an error message); what could be read on failure.
async fn read_prefix(resp: &mut reqwest::Response, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < n {
        match resp.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(n - out.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// The snappy-compressed `ReadRequest` of one query.
pub fn encode_request(q: &ReadQuery, accepted: &[i32]) -> Result<Vec<u8>, ReadClientError> {
    let matchers = q
        .matchers
        .iter()
        .map(|m| proto::LabelMatcher {
            r#type: match m.op {
                MatchOp::Equal => 0,
                MatchOp::NotEqual => 1,
                MatchOp::Regex => 2,
                MatchOp::NotRegex => 3,
            },
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect();
    let req = proto::ReadRequest {
        queries: vec![proto::Query {
            start_timestamp_ms: q.start,
            end_timestamp_ms: q.end,
            matchers,
            hints: Some(proto::ReadHints {
                step_ms: q.hints.step,
                func: q.hints.func.clone().unwrap_or_default(),
                start_ms: q.start,
                end_ms: q.end,
                grouping: Vec::new(),
                by: false,
                range_ms: q.hints.range,
            }),
        }],
        accepted_response_types: accepted.to_vec(),
    };
    Ok(codec::compress(&req.encode_to_vec())?)
}

/// Decodes an answer by its `Content-Type` (as Prometheus's client: a protobuf media type is a
/// samples answer, the streamed type is frames), keeping samples in `[start, end]`.
pub fn decode_response(
    content_type: &str,
    body: &[u8],
    start: i64,
    end: i64,
    limits: &ReadClientLimits,
) -> Result<ReadAnswer, ReadClientError> {
    let ct = content_type.trim();
    if ct.starts_with("application/x-streamed-protobuf") {
        if !ct.contains("prometheus.ChunkedReadResponse") {
            return Err(ReadClientError::ContentType(content_type.to_string()));
        }
        decode_streamed(body, start, end, limits)
    } else if ct.starts_with(codec::PROTOBUF_CONTENT_TYPE) {
        decode_samples(body, start, end, limits)
    } else {
        Err(ReadClientError::ContentType(content_type.to_string()))
    }
}

/// Collects series by labels: samples of a series sent in several parts (frames, or repeated
/// entries) are joined, then put in time order with one sample per timestamp (the first sent).
#[derive(Default)]
struct Collector {
    series: BTreeMap<Labels, Vec<Sample>>,
    samples: usize,
    skipped_histograms: usize,
}

impl Collector {
    fn labels(wire: &[proto::Label]) -> Labels {
        Labels::new(wire.iter().map(|l| Label::new(l.name.as_str(), l.value.as_str())).collect())
    }

    fn add(
        &mut self,
        labels: Labels,
        samples: impl IntoIterator<Item = Sample>,
        limits: &ReadClientLimits,
    ) -> Result<(), ReadClientError> {
        let dst = self.series.entry(labels).or_default();
        for s in samples {
            self.samples += 1;
            if self.samples > limits.max_samples {
                return Err(ReadClientError::TooManySamples { limit: limits.max_samples });
            }
            dst.push(s);
        }
        Ok(())
    }

    fn finish(self, start: i64, end: i64, response_type: &'static str) -> ReadAnswer {
        let series = self
            .series
            .into_iter()
            .filter_map(|(labels, mut samples)| {
                samples.retain(|s| s.t >= start && s.t <= end);
                // Stable: among samples of one timestamp the first sent stays.
                samples.sort_by_key(|s| s.t);
                samples.dedup_by_key(|s| s.t);
                (!samples.is_empty()).then_some(RemoteSeries { labels, samples })
            })
            .collect();
        ReadAnswer { series, skipped_histograms: self.skipped_histograms, response_type }
    }
}

/// A samples answer: one snappy-compressed `ReadResponse` holding one result.
fn decode_samples(
    body: &[u8],
    start: i64,
    end: i64,
    limits: &ReadClientLimits,
) -> Result<ReadAnswer, ReadClientError> {
    let data = codec::decompress(body, limits.max_decompressed_bytes)?;
    let resp = proto::ReadResponse::decode(data.as_slice())
        .map_err(|e| ReadClientError::Decode { message: "prometheus.ReadResponse", error: e.to_string() })?;
    if resp.results.len() != 1 {
        return Err(ReadClientError::Malformed(format!("responses: want 1, got {}", resp.results.len())));
    }
    let mut c = Collector::default();
    for result in resp.results {
        for ts in result.timeseries {
            c.skipped_histograms += ts.histograms.len();
            let labels = Collector::labels(&ts.labels);
            c.add(labels, ts.samples.iter().map(|s| Sample { t: s.timestamp, v: s.value }), limits)?;
        }
    }
    Ok(c.finish(start, end, "samples"))
}

/// A streamed answer: frames of `ChunkedReadResponse`, each checked against its CRC-32C.
fn decode_streamed(
    body: &[u8],
    start: i64,
    end: i64,
    limits: &ReadClientLimits,
) -> Result<ReadAnswer, ReadClientError> {
    let mut c = Collector::default();
    let mut rest = body;
    while !rest.is_empty() {
        let mut peek = rest;
        if let Ok(len) = prost::encoding::decode_varint(&mut peek)
            && len > limits.max_frame_bytes as u64
        {
            return Err(ReadClientError::Malformed(format!(
                "frame of {len} bytes is over the limit of {} bytes",
                limits.max_frame_bytes
            )));
        }
        let (msg, tail) = codec::next_frame(rest)?;
        rest = tail;
        let frame = proto::ChunkedReadResponse::decode(msg).map_err(|e| ReadClientError::Decode {
            message: "prometheus.ChunkedReadResponse",
            error: e.to_string(),
        })?;
        if frame.query_index != 0 {
            return Err(ReadClientError::Malformed(format!(
                "frame answers query {}, only query 0 was asked",
                frame.query_index
            )));
        }
        for cs in frame.chunked_series {
            let labels = Collector::labels(&cs.labels);
            let mut samples = Vec::new();
            for chunk in &cs.chunks {
                match chunk.r#type {
                    proto::CHUNK_XOR => {}
                    // HISTOGRAM, FLOAT_HISTOGRAM and their start-timestamp variants.
                    2 | 3 | 5 | 6 => {
                        c.skipped_histograms += 1;
                        continue;
                    }
                    t => {
                        return Err(ReadClientError::Malformed(format!("unsupported chunk encoding {t}")));
                    }
                }
                // Chunks wholly outside the range are not decoded.
                if chunk.max_time_ms < start || chunk.min_time_ms > end {
                    continue;
                }
                let mut it = XorIterator::new(chunk.data.as_slice());
                samples.extend(it.by_ref());
                if let Some(e) = it.error() {
                    return Err(ReadClientError::Malformed(format!("XOR chunk: {e}")));
                }
            }
            c.add(labels, samples, limits)?;
        }
    }
    Ok(c.finish(start, end, "chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::chunkenc::XorAppender;

    fn label(n: &str, v: &str) -> proto::Label {
        proto::Label { name: n.into(), value: v.into() }
    }

    fn xor(samples: &[(i64, f64)]) -> proto::Chunk {
        let mut app = XorAppender::new();
        for &(t, v) in samples {
            app.append(t, v).unwrap();
        }
        proto::Chunk {
            min_time_ms: samples[0].0,
            max_time_ms: samples[samples.len() - 1].0,
            r#type: proto::CHUNK_XOR,
            data: app.finish().into_bytes(),
        }
    }

    fn pairs(s: &RemoteSeries) -> Vec<(i64, f64)> {
        s.samples.iter().map(|s| (s.t, s.v)).collect()
    }

    #[test]
    fn request_carries_matchers_range_and_response_types() {
        let q = ReadQuery {
            start: 10,
            end: 20,
            matchers: vec![
                Matcher::equal("__name__", "up"),
                Matcher::new(MatchOp::NotRegex, "job", "x.*").unwrap(),
            ],
            hints: SelectHints { func: Some("rate".into()), step: 5, range: 60_000 },
        };
        let body = encode_request(&q, &[1, 0]).unwrap();
        let req = proto::ReadRequest::decode(codec::decompress(&body, 1 << 20).unwrap().as_slice()).unwrap();
        assert_eq!(req.accepted_response_types, vec![1, 0]);
        let q0 = &req.queries[0];
        assert_eq!((q0.start_timestamp_ms, q0.end_timestamp_ms), (10, 20));
        assert_eq!(
            q0.matchers[1],
            proto::LabelMatcher { r#type: 3, name: "job".into(), value: "x.*".into() }
        );
        let h = q0.hints.as_ref().unwrap();
        assert_eq!((h.func.as_str(), h.step_ms, h.range_ms), ("rate", 5, 60_000));
    }

    #[test]
    fn samples_answer_is_sorted_filtered_and_joined() {
        let ts = |name: &str, samples: &[(i64, f64)]| proto::TimeSeries {
            labels: vec![label("job", "j"), label("__name__", name)],
            samples: samples.iter().map(|&(timestamp, value)| proto::Sample { value, timestamp }).collect(),
            ..Default::default()
        };
        let mut b = ts("b", &[(5, 1.0), (30, 9.0)]);
        b.histograms.push(proto::Histogram { timestamp: 7, ..Default::default() });
        let resp = proto::ReadResponse {
            results: vec![proto::QueryResult {
                timeseries: vec![b, ts("a", &[(12, 2.0), (10, 1.0)]), ts("a", &[(12, 3.0), (14, 4.0)])],
            }],
        };
        let body = codec::compress(&resp.encode_to_vec()).unwrap();
        let got =
            decode_response("application/x-protobuf", &body, 0, 20, &ReadClientLimits::default()).unwrap();
        assert_eq!(got.response_type, "samples");
        assert_eq!(got.skipped_histograms, 1);
        assert_eq!(got.series.len(), 2);
        assert_eq!(got.series[0].labels, Labels::from_pairs(&[("__name__", "a"), ("job", "j")]));
        // Out of order and repeated: sorted, the first sent of a timestamp kept.
        assert_eq!(pairs(&got.series[0]), vec![(10, 1.0), (12, 2.0), (14, 4.0)]);
        assert_eq!(pairs(&got.series[1]), vec![(5, 1.0)], "30 is outside [0, 20]");

        let limits = ReadClientLimits { max_samples: 4, ..ReadClientLimits::default() };
        let e = decode_response("application/x-protobuf", &body, 0, 20, &limits).unwrap_err();
        assert!(matches!(e, ReadClientError::TooManySamples { limit: 4 }), "{e}");
        let limits = ReadClientLimits { max_decompressed_bytes: 10, ..ReadClientLimits::default() };
        let e = decode_response("application/x-protobuf", &body, 0, 20, &limits).unwrap_err();
        assert_eq!(e.reason(), "decode", "{e}");
        assert!(decode_response("application/x-protobuf", b"junk", 0, 20, &limits).is_err());
        assert!(decode_response("text/plain", &body, 0, 20, &limits).is_err());
    }

    #[test]
    fn streamed_answer_joins_frames_and_checks_crcs() {
        let first: Vec<(i64, f64)> = (0..120).map(|i| (i * 10, i as f64)).collect();
        let second: Vec<(i64, f64)> = (120..200).map(|i| (i * 10, i as f64)).collect();
        let frame = |labels: Vec<proto::Label>, chunks: Vec<proto::Chunk>| {
            proto::ChunkedReadResponse {
                chunked_series: vec![proto::ChunkedSeries { labels, chunks }],
                query_index: 0,
            }
            .encode_to_vec()
        };
        let x = vec![label("__name__", "x")];
        let mut hist = xor(&[(5, 1.0)]);
        hist.r#type = 2;
        let mut body = Vec::new();
        codec::put_frame(&mut body, &frame(x.clone(), vec![xor(&first)]));
        codec::put_frame(&mut body, &frame(vec![label("__name__", "h")], vec![hist]));
        // The same series again, in a later frame, overlapping the first chunk by one sample.
        codec::put_frame(&mut body, &frame(x.clone(), vec![xor(&first[119..]), xor(&second)]));
        let got =
            decode_response(codec::STREAMED_CONTENT_TYPE, &body, 50, 1500, &ReadClientLimits::default())
                .unwrap();
        assert_eq!(got.response_type, "chunked");
        assert_eq!(got.skipped_histograms, 1);
        assert_eq!(got.series.len(), 1, "the histogram-only series has no float samples");
        let want: Vec<(i64, f64)> =
            first.iter().chain(&second).copied().filter(|(t, _)| (50..=1500).contains(t)).collect();
        assert_eq!(pairs(&got.series[0]), want);

        // One flipped bit in a message: the CRC catches it.
        let mut bad = body.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x10;
        let e =
            decode_response(codec::STREAMED_CONTENT_TYPE, &bad, 0, i64::MAX, &ReadClientLimits::default())
                .unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        // Cut short, a frame over the frame limit, a foreign query index, an unknown encoding.
        assert!(
            decode_response(
                codec::STREAMED_CONTENT_TYPE,
                &body[..body.len() - 1],
                0,
                9,
                &ReadClientLimits::default()
            )
            .is_err()
        );
        let limits = ReadClientLimits { max_frame_bytes: 100, ..ReadClientLimits::default() };
        let e = decode_response(codec::STREAMED_CONTENT_TYPE, &body, 0, 9, &limits).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        let mut other = Vec::new();
        let mut msg =
            proto::ChunkedReadResponse::decode(frame(x.clone(), vec![xor(&first)]).as_slice()).unwrap();
        msg.query_index = 1;
        codec::put_frame(&mut other, &msg.encode_to_vec());
        assert!(
            decode_response(codec::STREAMED_CONTENT_TYPE, &other, 0, 9, &ReadClientLimits::default())
                .is_err()
        );
        let mut odd = xor(&first);
        odd.r#type = 9;
        let mut other = Vec::new();
        codec::put_frame(&mut other, &frame(x, vec![odd]));
        assert!(
            decode_response(codec::STREAMED_CONTENT_TYPE, &other, 0, 9, &ReadClientLimits::default())
                .is_err()
        );
    }

    /// A streamed body of one series of 300 samples, for damaging.
    fn good_stream() -> Vec<u8> {
        let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 15_000, (i % 11) as f64)).collect();
        let mut body = Vec::new();
        for run in samples.chunks(120) {
            let msg = proto::ChunkedReadResponse {
                chunked_series: vec![proto::ChunkedSeries {
                    labels: vec![label("__name__", "x")],
                    chunks: vec![xor(run)],
                }],
                query_index: 0,
            };
            codec::put_frame(&mut body, &msg.encode_to_vec());
        }
        body
    }

    proptest::proptest! {
        /// Whatever a store sends — garbage, or a good answer with bytes changed or cut — the
        /// decoders answer or fail, never panic, and what they answer is sorted and in range.
        #[test]
        fn damaged_answers_never_panic(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..6),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let limits = ReadClientLimits::default();
            for ct in [codec::STREAMED_CONTENT_TYPE, codec::PROTOBUF_CONTENT_TYPE] {
                let _ = decode_response(ct, &junk, 0, i64::MAX, &limits);
            }
            let mut body = good_stream();
            // Bytes changed or cut anywhere in the stream (the CRC catches most changes).
            for (at, x) in &flips {
                let i = at % body.len();
                body[i] ^= x;
            }
            body.truncate(cut % (body.len() + 1));
            if let Ok(a) = decode_response(codec::STREAMED_CONTENT_TYPE, &body, 0, i64::MAX, &limits) {
                for s in &a.series {
                    proptest::prop_assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
                }
            }
            // Damaged chunk bytes under a valid frame: the XOR decoder must cope.
            let mut chunk = xor(&(0..120).map(|i| (i * 15_000, i as f64)).collect::<Vec<_>>());
            for (at, x) in &flips {
                let i = at % chunk.data.len();
                chunk.data[i] ^= x;
            }
            let msg = proto::ChunkedReadResponse {
                chunked_series: vec![proto::ChunkedSeries { labels: vec![label("__name__", "x")], chunks: vec![chunk] }],
                query_index: 0,
            };
            let mut framed = Vec::new();
            codec::put_frame(&mut framed, &msg.encode_to_vec());
            if let Ok(a) = decode_response(codec::STREAMED_CONTENT_TYPE, &framed, 0, i64::MAX, &limits) {
                for s in &a.series {
                    proptest::prop_assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
                }
            }
        }
    }
}
