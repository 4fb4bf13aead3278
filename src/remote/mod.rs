//! Prometheus remote storage, receiving side: `POST /api/v1/write` takes Remote-Write 1.0 and
//! 2.0 requests from any sender (Prometheus, Grafana Alloy, vmagent, OpenTelemetry collectors)
//! and appends their samples through the node's `Storage` (committed, so in the WAL, before the
//! answer), keeping the metric metadata they carry ([`ReceivedMetadata`], `metadata`) for the
//! node's `/api/v1/metadata`; `POST /api/v1/read` answers remote-read queries from the node's
//! `Queryable`, as a samples response or as streamed XOR chunks. Owns the wire messages
//! (`proto`), the envelope (`codec`: snappy, content types, frames) and both handlers with their
//! limits and metrics. `send` is the sending side (`remote_write` of the topology): WAL-fed,
//! durable queues speaking 1.0 or 2.0, with metadata from a source the role passes in.
//! `read_client` asks other stores (`remote_read` of a global) and `fanout` merges their answers
//! with local data behind the `Queryable` the node's API reads. Which storage, view and metadata
//! a node passes in is the role's business. Semantics: `docs/remote-storage.md`.

pub mod codec;
pub mod fanout;
mod metadata;
pub mod proto;
mod read;
pub mod read_client;
pub mod send;
mod write;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::metrics::Registry;
use crate::model::Labels;
use crate::storage::{Queryable, Storage};

pub use metadata::ReceivedMetadata;
pub use read::ReadLimits;
pub use write::WriteLimits;

/// Why a remote-storage request was refused or failed. Each maps to the HTTP status a sender
/// acts on: 4xx are not retried by Prometheus-compatible senders (except 429), 5xx are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    #[error("unsupported Content-Type {content_type:?}: {reason}")]
    UnsupportedContentType { content_type: String, reason: String },
    #[error("Content-Encoding {0:?} is not accepted; only snappy (block format) is")]
    UnsupportedEncoding(String),
    #[error("request body too large: the limit is {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("reading the request body: {0}")]
    Body(String),
    #[error("decompressed body of {len} bytes is over the limit of {limit} bytes")]
    DecompressedTooLarge { len: usize, limit: usize },
    #[error("snappy (block format) decoding: {0}")]
    Snappy(String),
    #[error("decoding {message}: {error}")]
    Decode { message: &'static str, error: String },
    #[error("streamed response frame: {0}")]
    Frame(String),
    #[error("series {series}: label reference {reference} is out of range ({symbols} symbols)")]
    SymbolRef { series: usize, reference: u32, symbols: usize },
    #[error("series {series}: metadata reference {reference} is out of range ({symbols} symbols)")]
    MetadataSymbolRef { series: usize, reference: u32, symbols: usize },
    #[error("series {series}: {len} label references, not name/value pairs")]
    OddLabelRefs { series: usize, len: usize },
    #[error("symbol table must start with the empty string")]
    FirstSymbol,
    #[error("{count} series in one request, over the limit of {limit}")]
    TooManySeries { count: usize, limit: usize },
    #[error("{count} samples in one request, over the limit of {limit}")]
    TooManySamples { count: usize, limit: usize },
    /// Some samples were not stored (the rest were): the summary says which and why.
    #[error("{0}")]
    Refused(String),
    #[error("query {query}: {reason}")]
    BadQuery { query: usize, reason: String },
    #[error("exceeded sample limit ({limit})")]
    ReadSampleLimit { limit: usize },
    #[error("storage: {0}")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl RemoteError {
    pub fn status(&self) -> StatusCode {
        use RemoteError::*;
        match self {
            UnsupportedContentType { .. } | UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyTooLarge { .. }
            | DecompressedTooLarge { .. }
            | TooManySeries { .. }
            | TooManySamples { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Body(_)
            | Snappy(_)
            | Decode { .. }
            | Frame(_)
            | SymbolRef { .. }
            | MetadataSymbolRef { .. }
            | OddLabelRefs { .. }
            | FirstSymbol
            | Refused(_)
            | BadQuery { .. }
            | ReadSampleLimit { .. } => StatusCode::BAD_REQUEST,
            Storage(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Plain text, as Prometheus's handlers answer (senders log the body); 5xx are also logged here.
impl IntoResponse for RemoteError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "remote storage request failed");
        }
        (status, self.to_string()).into_response()
    }
}

/// What the remote-storage endpoints of one node work on.
pub struct RemoteState {
    /// Where received samples go: on a leaf or global the same (frontier-tracked) storage its
    /// scrapes or pulls commit to, so the fast link sees received samples too.
    pub storage: Arc<dyn Storage>,
    /// What remote reads see: the same view as the node's query API.
    pub queryable: Arc<dyn Queryable>,
    /// Added to series read (the series' own labels win), as Prometheus's read handler does.
    pub external_labels: Labels,
    pub write_limits: WriteLimits,
    pub read_limits: ReadLimits,
    /// Now, in milliseconds (samples more than 10 minutes ahead of it are refused).
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Where received metric metadata is kept (the node's `/api/v1/metadata` lists it too).
    pub metadata: Arc<ReceivedMetadata>,
}

/// `POST /api/v1/write` and `POST /api/v1/read`; their metrics go to `registry`.
pub fn router(state: RemoteState, registry: &Registry) -> Router {
    let writer = WriteReceiver::new(&state, registry).0;
    read_router(&state, registry).route("/api/v1/write", post(write::handle).with_state(writer))
}

/// A node's remote-write receiver as a value, for a role that routes writes itself (a push node
/// stores the series it owns and forwards the others): the same decoding, limits, storing,
/// answers and metrics as `POST /api/v1/write` of [`router`].
#[derive(Clone)]
pub struct WriteReceiver(Arc<write::Receiver>);

/// What storing one request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Samples stored (or already there with the same value).
    pub stored: u64,
    /// Samples in the request.
    pub total: u64,
    /// What was refused and why, when anything was.
    pub refused: Option<String>,
}

impl WriteReceiver {
    pub fn new(state: &RemoteState, registry: &Registry) -> WriteReceiver {
        WriteReceiver(Arc::new(write::Receiver::new(
            state.storage.clone(),
            state.write_limits,
            state.clock.clone(),
            state.metadata.clone(),
            registry,
        )))
    }

    /// The protocol of a request (from its content type and encoding) and its body, within the
    /// body limit.
    pub async fn read(
        &self,
        req: axum::extract::Request,
    ) -> Result<(codec::WriteProto, axum::body::Bytes), RemoteError> {
        let proto = write::request_proto(&req).inspect_err(|e| self.0.count_unknown(e.status()))?;
        let body = read_body(req, self.0.limits().max_body_bytes).await?;
        Ok((proto, body))
    }

    /// Decodes a body of either protocol into the 1.0 message (see `write::Receiver::decode_v1`).
    pub fn decode(&self, proto: codec::WriteProto, body: &[u8]) -> Result<proto::WriteRequest, RemoteError> {
        self.0.decode_v1(proto, body)
    }

    /// Stores a decoded request (blocking: appends, WAL write) and counts it as a request of
    /// `proto`.
    pub fn store(&self, proto: codec::WriteProto, req: &proto::WriteRequest) -> Result<Stored, RemoteError> {
        let r = self.0.store_v1(req);
        let status = match &r {
            Ok((out, _)) if out.refused_total() > 0 => StatusCode::BAD_REQUEST,
            Ok(_) => StatusCode::NO_CONTENT,
            Err(e) => e.status(),
        };
        self.0.count_request(proto, status);
        let (out, total) = r?;
        self.0.count_outcome(&out);
        Ok(Stored {
            stored: out.stored,
            total,
            refused: (out.refused_total() > 0).then(|| out.summary(total)),
        })
    }

    /// The whole `POST /api/v1/write` of a plain node.
    pub async fn handle(&self, req: axum::extract::Request) -> Response {
        write::handle(axum::extract::State(self.0.clone()), req).await
    }

    /// Sets the 2.0 written-count headers on an answer.
    pub fn written_headers(resp: &mut Response, samples: u64) {
        write::written_headers(resp, samples);
    }
}

/// `POST /api/v1/read` alone (a push node routes its writes itself).
pub fn read_router(state: &RemoteState, registry: &Registry) -> Router {
    let reader = Arc::new(read::Reader::new(
        state.queryable.clone(),
        state.external_labels.clone(),
        state.read_limits,
        registry,
    ));
    reader.register_gauge(registry);
    Router::new().route("/api/v1/read", post(read::handle).with_state(reader))
}

/// Reads a request body of at most `limit` bytes (413 at once when `Content-Length` says more,
/// else as soon as the body grows past it).
async fn read_body(req: axum::extract::Request, limit: usize) -> Result<axum::body::Bytes, RemoteError> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(RemoteError::BodyTooLarge { limit });
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(RemoteError::BodyTooLarge { limit }),
        Err(e) => Err(RemoteError::Body(e.to_string())),
    }
}

/// For the fuzz target: one snappy-compressed request body (`v2` picks the protocol) through the
/// receiver into an in-memory head, as `POST /api/v1/write` takes it; the number of samples the
/// head holds afterwards, or the request's error.
#[doc(hidden)]
pub fn fuzz_write(v2: bool, body: &[u8]) -> Result<u64, String> {
    let head = std::sync::Arc::new(crate::tsdb::Head::default());
    let rx = write::Receiver::new(
        head.clone(),
        WriteLimits::default(),
        Arc::new(|| 1_700_000_000_000),
        Arc::default(),
        &crate::metrics::Registry::new(),
    );
    let proto = if v2 { codec::WriteProto::V2 } else { codec::WriteProto::V1 };
    rx.ingest(proto, body).map(|_| head.stats().samples_appended).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use prost::Message;
    use tower::ServiceExt;

    use super::proto::{self, v2};
    use super::*;
    use crate::model::{Matcher, Sample};
    use crate::tsdb::chunkenc::XorIterator;
    use crate::tsdb::{Head, HeadOptions};

    const NOW: i64 = 1_700_000_000_000;

    fn node(limits: WriteLimits) -> (Router, Arc<Head>, Arc<Registry>) {
        let head = Arc::new(Head::new(HeadOptions::default()).unwrap());
        let registry = Arc::new(Registry::new());
        let app = router(
            RemoteState {
                storage: head.clone(),
                queryable: head.clone(),
                external_labels: Labels::from_pairs(&[("site", "x")]),
                write_limits: limits,
                read_limits: ReadLimits::default(),
                clock: Arc::new(|| NOW),
                metadata: Arc::default(),
            },
            &registry,
        );
        (app, head, registry)
    }

    fn label(n: &str, v: &str) -> proto::Label {
        proto::Label { name: n.into(), value: v.into() }
    }

    fn series(name: &str, samples: &[(i64, f64)]) -> proto::TimeSeries {
        proto::TimeSeries {
            labels: vec![label("__name__", name), label("job", "j")],
            samples: samples.iter().map(|&(timestamp, value)| proto::Sample { value, timestamp }).collect(),
            ..Default::default()
        }
    }

    fn v1(ts: Vec<proto::TimeSeries>) -> Vec<u8> {
        codec::compress(&proto::WriteRequest { timeseries: ts, metadata: Vec::new() }.encode_to_vec())
            .unwrap()
    }

    async fn post(
        app: &Router,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, String, Vec<(String, String)>) {
        let mut b = Request::post(path).header("Content-Encoding", "snappy");
        if let Some(ct) = content_type {
            b = b.header("Content-Type", ct);
        }
        let resp = app.clone().oneshot(b.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned(), headers)
    }

    fn stored(head: &Head, name: &str) -> Vec<(i64, f64)> {
        let q = head.querier(i64::MIN, i64::MAX).unwrap();
        q.select(&[Matcher::equal("__name__", name)])
            .unwrap()
            .into_iter()
            .flat_map(|s| s.samples.map(|Sample { t, v }| (t, v)).collect::<Vec<_>>())
            .collect()
    }

    fn metric(registry: &Registry, line_start: &str) -> String {
        let text = String::from_utf8(registry.render()).unwrap();
        text.lines().find(|l| l.starts_with(line_start)).unwrap_or("").to_string()
    }

    #[tokio::test]
    async fn v1_samples_are_stored_and_committed() {
        let (app, head, registry) = node(WriteLimits::default());
        let body = v1(vec![series("a", &[(NOW - 2000, 1.0), (NOW - 1000, 2.0)]), series("b", &[(NOW, 3.0)])]);
        let (status, text, _) = post(&app, "/api/v1/write", Some("application/x-protobuf"), body).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
        assert_eq!(stored(&head, "a"), vec![(NOW - 2000, 1.0), (NOW - 1000, 2.0)]);
        assert_eq!(stored(&head, "b"), vec![(NOW, 3.0)]);
        assert_eq!(
            metric(&registry, "promtier_remote_write_received_samples_total"),
            "promtier_remote_write_received_samples_total 3"
        );
        // A retry of the same request: the last sample is the same, the others are behind it.
        let body = v1(vec![series("b", &[(NOW, 3.0)])]);
        assert_eq!(post(&app, "/api/v1/write", None, body).await.0, StatusCode::NO_CONTENT);
    }

    #[tokio::test]
    async fn refused_samples_are_a_400_and_the_rest_is_stored() {
        let (app, head, registry) = node(WriteLimits::default());
        let body = v1(vec![series("a", &[(NOW - 1000, 1.0)])]);
        assert_eq!(post(&app, "/api/v1/write", None, body).await.0, StatusCode::NO_CONTENT);
        let mut hist = series("h", &[]);
        hist.histograms.push(proto::Histogram { timestamp: NOW, ..Default::default() });
        let bad_labels =
            proto::TimeSeries { labels: vec![label("job", "no-name")], ..series("x", &[(NOW, 1.0)]) };
        let body = v1(vec![
            // behind the committed sample, a duplicate with another value, then a good one
            series("a", &[(NOW - 2000, 9.0), (NOW - 1000, 5.0), (NOW, 2.0), (NOW - 500, 7.0)]),
            series("c", &[(NOW + 11 * 60_000, 1.0), (NOW, 4.0)]),
            bad_labels,
            hist,
        ]);
        let (status, text, _) = post(&app, "/api/v1/write", None, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            text.starts_with("6 of 8 samples not stored: 2 out of order, 1 duplicate timestamp"),
            "{text}"
        );
        assert!(
            text.contains("1 more than 10m in the future") && text.contains("1 invalid labels"),
            "{text}"
        );
        assert!(text.contains("1 native histograms (promtier's TSDB stores none)"), "{text}");
        assert_eq!(stored(&head, "a"), vec![(NOW - 1000, 1.0), (NOW, 2.0)]);
        assert_eq!(stored(&head, "c"), vec![(NOW, 4.0)]);
        let ooo = metric(&registry, "promtier_remote_write_rejected_samples_total{reason=\"out_of_order\"}");
        assert!(ooo.ends_with(" 2"), "{ooo}");
    }

    #[tokio::test]
    async fn v2_requests_resolve_symbols_and_report_counts() {
        let (app, head, _) = node(WriteLimits::default());
        let req = v2::Request {
            symbols: ["", "__name__", "up", "job", "j", "help"].map(String::from).to_vec(),
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![v2::Sample { value: 1.0, timestamp: NOW, start_timestamp: 0 }],
                exemplars: vec![v2::Exemplar { labels_refs: vec![], value: 1.0, timestamp: NOW }],
                ..Default::default()
            }],
        };
        let ct = Some("application/x-protobuf;proto=io.prometheus.write.v2.Request");
        let (status, text, headers) =
            post(&app, "/api/v1/write", ct, codec::compress(&req.encode_to_vec()).unwrap()).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
        let h = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        assert_eq!(h("X-Prometheus-Remote-Write-Samples-Written").as_deref(), Some("1"));
        assert_eq!(h("X-Prometheus-Remote-Write-Exemplars-Written").as_deref(), Some("0"));
        assert_eq!(stored(&head, "up"), vec![(NOW, 1.0)]);

        // A reference past the symbol table: 400, nothing of the request stored, no panic.
        let mut bad = req.clone();
        bad.timeseries[0].samples[0].timestamp = NOW + 1;
        bad.timeseries.push(v2::TimeSeries { labels_refs: vec![1, 6], ..bad.timeseries[0].clone() });
        let (status, text, headers) =
            post(&app, "/api/v1/write", ct, codec::compress(&bad.encode_to_vec()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text.contains("series 1: label reference 6 is out of range (6 symbols)"), "{text}");
        assert!(headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("X-Prometheus-Remote-Write-Samples-Written") && v == "0"));
        assert_eq!(stored(&head, "up"), vec![(NOW, 1.0)]);
        bad.timeseries[1].labels_refs = vec![1];
        let (status, text, _) =
            post(&app, "/api/v1/write", ct, codec::compress(&bad.encode_to_vec()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    }

    #[tokio::test]
    async fn received_metadata_is_kept_for_the_node() {
        let head = Arc::new(Head::new(HeadOptions::default()).unwrap());
        let registry = Registry::new();
        let received = Arc::new(ReceivedMetadata::default());
        let app = router(
            RemoteState {
                storage: head.clone(),
                queryable: head.clone(),
                external_labels: Labels::default(),
                write_limits: WriteLimits::default(),
                read_limits: ReadLimits::default(),
                clock: Arc::new(|| NOW),
                metadata: received.clone(),
            },
            &registry,
        );
        // 1.0: metadata per family, in a request of its own as Prometheus sends it.
        let req = proto::WriteRequest {
            timeseries: Vec::new(),
            metadata: vec![proto::MetricMetadata {
                r#type: 1,
                metric_family_name: "http_requests_total".into(),
                help: "Requests.".into(),
                unit: String::new(),
            }],
        };
        let body = codec::compress(&req.encode_to_vec()).unwrap();
        assert_eq!(post(&app, "/api/v1/write", None, body).await.0, StatusCode::NO_CONTENT);
        // 2.0: metadata on the series; a histogram's `_count` series files it under `rpc`.
        let req = v2::Request {
            symbols: ["", "__name__", "rpc_count", "RPCs.", "seconds"].map(String::from).to_vec(),
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![v2::Sample { value: 1.0, timestamp: NOW, start_timestamp: 0 }],
                metadata: Some(v2::Metadata { r#type: 3, help_ref: 3, unit_ref: 4 }),
                ..Default::default()
            }],
        };
        let ct = Some("application/x-protobuf;proto=io.prometheus.write.v2.Request");
        let (status, text, _) =
            post(&app, "/api/v1/write", ct, codec::compress(&req.encode_to_vec()).unwrap()).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
        let mut kept = received.list();
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        let m = |kind, help: &str, unit: &str| crate::model::MetricMetadata {
            kind,
            help: help.into(),
            unit: unit.into(),
        };
        use crate::model::MetricType;
        assert_eq!(
            kept,
            vec![
                ("http_requests_total".to_string(), m(MetricType::Counter, "Requests.", "")),
                ("rpc".to_string(), m(MetricType::Histogram, "RPCs.", "seconds")),
            ]
        );
        assert_eq!(
            metric(&registry, "promtier_remote_write_received_metadata_total"),
            "promtier_remote_write_received_metadata_total 2"
        );
        // A metadata reference past the symbol table: 400, nothing stored.
        let mut bad = req.clone();
        bad.timeseries[0].samples[0].timestamp = NOW + 1;
        bad.timeseries[0].metadata = Some(v2::Metadata { r#type: 3, help_ref: 9, unit_ref: 0 });
        let (status, text, _) =
            post(&app, "/api/v1/write", ct, codec::compress(&bad.encode_to_vec()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text.contains("series 0: metadata reference 9 is out of range (5 symbols)"), "{text}");
        assert_eq!(stored(&head, "rpc_count"), vec![(NOW, 1.0)]);
    }

    #[tokio::test]
    async fn bad_requests_get_400_413_415() {
        let (app, head, _) = node(WriteLimits {
            max_samples: 3,
            max_series: 2,
            max_decompressed_bytes: 4096,
            max_body_bytes: 8192,
        });
        let cases: Vec<(Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
            (None, b"not snappy".to_vec(), StatusCode::BAD_REQUEST, "snappy"),
            (
                None,
                codec::compress(b"\xff\xff\xff garbage").unwrap(),
                StatusCode::BAD_REQUEST,
                "decoding prometheus.WriteRequest",
            ),
            (
                None,
                codec::compress(&[0u8; 5000]).unwrap(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "over the limit of 4096 bytes",
            ),
            (None, vec![0u8; 9000], StatusCode::PAYLOAD_TOO_LARGE, "the limit is 8192 bytes"),
            (
                None,
                v1(vec![series("a", &[(NOW, 1.0), (NOW + 1, 1.0), (NOW + 2, 1.0), (NOW + 3, 1.0)])]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "4 samples in one request, over the limit of 3",
            ),
            (
                None,
                v1(vec![series("a", &[]), series("b", &[]), series("c", &[])]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "3 series",
            ),
            (
                Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"),
                v1(vec![]),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not accepted",
            ),
            (Some("application/json"), v1(vec![]), StatusCode::UNSUPPORTED_MEDIA_TYPE, "media type"),
        ];
        for (ct, body, want, msg) in cases {
            let (status, text, _) = post(&app, "/api/v1/write", ct, body).await;
            assert_eq!(status, want, "{text}");
            assert!(text.contains(msg), "{text:?} should contain {msg:?}");
        }
        assert!(stored(&head, "a").is_empty());
    }

    fn read_request(accepted: Vec<i32>) -> Vec<u8> {
        let req = proto::ReadRequest {
            queries: vec![proto::Query {
                start_timestamp_ms: NOW - 10_000,
                end_timestamp_ms: NOW,
                // `site` is an external label: matching its value matches the stored series.
                matchers: vec![
                    proto::LabelMatcher { r#type: 0, name: "__name__".into(), value: "a".into() },
                    proto::LabelMatcher { r#type: 0, name: "site".into(), value: "x".into() },
                ],
                hints: None,
            }],
            accepted_response_types: accepted,
        };
        codec::compress(&req.encode_to_vec()).unwrap()
    }

    #[tokio::test]
    async fn reads_answer_samples_and_streamed_chunks() {
        let (app, _, _) = node(WriteLimits::default());
        let samples: Vec<(i64, f64)> = (0..300).map(|i| (NOW - 20_000 + i * 100, i as f64)).collect();
        assert_eq!(
            post(&app, "/api/v1/write", None, v1(vec![series("a", &samples)])).await.0,
            StatusCode::NO_CONTENT
        );
        let want: Vec<(i64, f64)> =
            samples.iter().copied().filter(|(t, _)| (NOW - 10_000..=NOW).contains(t)).collect();
        let want_labels = vec![label("__name__", "a"), label("job", "j"), label("site", "x")];

        let resp = app
            .clone()
            .oneshot(Request::post("/api/v1/read").body(Body::from(read_request(vec![]))).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-encoding"], "snappy");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let r = proto::ReadResponse::decode(codec::decompress(&body, 1 << 20).unwrap().as_slice()).unwrap();
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.results[0].timeseries.len(), 1);
        assert_eq!(r.results[0].timeseries[0].labels, want_labels);
        let got: Vec<(i64, f64)> =
            r.results[0].timeseries[0].samples.iter().map(|s| (s.timestamp, s.value)).collect();
        assert_eq!(got, want);

        let resp = app
            .clone()
            .oneshot(Request::post("/api/v1/read").body(Body::from(read_request(vec![1, 0]))).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], codec::STREAMED_CONTENT_TYPE);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let (msg, rest) = codec::next_frame(&body).unwrap();
        assert!(rest.is_empty());
        let m = proto::ChunkedReadResponse::decode(msg).unwrap();
        assert_eq!(m.chunked_series[0].labels, want_labels);
        let got: Vec<(i64, f64)> = m.chunked_series[0]
            .chunks
            .iter()
            .flat_map(|c| XorIterator::new(c.data.as_slice()).map(|s| (s.t, s.v)).collect::<Vec<_>>())
            .collect();
        assert_eq!(got, want);

        let resp = app
            .clone()
            .oneshot(Request::post("/api/v1/read").body(Body::from(b"junk".to_vec())).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}
