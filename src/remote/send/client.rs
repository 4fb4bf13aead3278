//! One remote-write request and its retry policy, for both protocols: a snappy-compressed body
//! with the protocol's headers (1.0: `Content-Type: application/x-protobuf`, version `0.1.0`;
//! 2.0: `proto=io.prometheus.write.v2.Request`, version `2.0.0`), retried with exponential
//! backoff and jitter on 5xx, 429 (waiting for `Retry-After` when given) and network errors,
//! until it is accepted or the node stops; any other 4xx is final (the samples are counted as
//! failed and the receiver's message logged), as Prometheus's queue manager does.
//!
//! The answer's `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written` headers are
//! read as Prometheus 3 reads them: when present, samples the receiver says it did not write
//! count as failed (also on a 2xx, which is logged as an error); a 2.0 request answered 2xx with
//! nothing written (no headers, or zeros) is a receiver that only speaks 1.0 and ignored the
//! body, so it is a final failure; and a 415 to a 2.0 request says the same outright. Both name
//! the fix: `protobuf_message: prometheus.WriteRequest`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{QueueMetrics, SendError};
use crate::http::{HttpClient, client::error_chain};
use crate::metrics::Counter;
use crate::remote::codec;
use crate::topology::{ProtobufMessage, QueueConfig};

/// Response headers a Remote-Write 2.0 receiver reports what it wrote in.
const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
const HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
const EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

/// What the queue needs to post to one endpoint.
pub(super) struct Endpoint {
    pub(super) client: HttpClient,
    pub(super) url: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) timeout: Duration,
    pub(super) queue: QueueConfig,
    pub(super) proto: ProtobufMessage,
    /// The last failure, until a request is accepted again (for the status page).
    pub(super) last_error: parking_lot::Mutex<Option<String>>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    Accepted,
    /// Refused for good (4xx other than 429, or a 2.0 request nothing of which was written):
    /// not sent again.
    Refused,
    /// The node is stopping; the samples stay unacknowledged (sent again after a restart).
    Cancelled,
}

/// What a request carries: samples (the queue's rounds) or metadata entries (1.0's
/// `metadata_config` sends). Each moves its own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Payload {
    Samples(u64),
    Metadata(u64),
}

impl Payload {
    fn count(self) -> u64 {
        match self {
            Payload::Samples(n) | Payload::Metadata(n) => n,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Payload::Samples(_) => "samples",
            Payload::Metadata(_) => "metadata entries",
        }
    }
}

/// The counters one payload kind moves.
struct Tally<'a> {
    sent: &'a Counter,
    failed: &'a Counter,
    retried: &'a Counter,
    bytes: &'a Counter,
}

impl QueueMetrics {
    fn tally(&self, p: Payload) -> Tally<'_> {
        match p {
            Payload::Samples(_) => Tally {
                sent: &self.samples,
                failed: &self.failed,
                retried: &self.retried,
                bytes: &self.bytes,
            },
            Payload::Metadata(_) => Tally {
                sent: &self.metadata,
                failed: &self.metadata_failed,
                retried: &self.metadata_retried,
                bytes: &self.metadata_bytes,
            },
        }
    }
}

/// What the receiver said it wrote (`X-Prometheus-Remote-Write-*-Written`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Written {
    pub(super) samples: u64,
    pub(super) histograms: u64,
    pub(super) exemplars: u64,
    /// At least one of the headers was there: the receiver speaks 2.0 and the figures count.
    pub(super) confirmed: bool,
}

impl Written {
    /// Reads the headers; one missing means 0, one that is not a number is ignored (as 0), as
    /// Prometheus's client does.
    fn parse(h: &reqwest::header::HeaderMap) -> Written {
        let mut w = Written::default();
        for (name, field) in [
            (SAMPLES_WRITTEN, &mut w.samples),
            (HISTOGRAMS_WRITTEN, &mut w.histograms),
            (EXEMPLARS_WRITTEN, &mut w.exemplars),
        ] {
            if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()) {
                w.confirmed = true;
                *field = v.trim().parse().unwrap_or(0);
            }
        }
        w
    }

    fn nothing(&self) -> bool {
        self.samples + self.histograms + self.exemplars == 0
    }

    /// Of `sent` samples, those the receiver says it did not write (0 when it does not say).
    fn unwritten(&self, sent: u64) -> u64 {
        if self.confirmed { sent.saturating_sub(self.samples) } else { 0 }
    }
}

/// One attempt's failure: retry (after `wait` if the receiver said) or give up.
enum Attempt {
    Retry { wait: Option<Duration>, why: String },
    Final { why: String, written: Written },
}

/// Compresses a request body (snappy block format).
pub(super) fn compress(body: &[u8]) -> Result<Vec<u8>, SendError> {
    codec::compress(body).map_err(|e| SendError::Encode(e.to_string()))
}

/// The fix every message about a receiver that does not take 2.0 names.
const USE_V1: &str = "set `protobuf_message: prometheus.WriteRequest` on this remote_write endpoint";

/// Posts `body` (carrying `payload`) until it is accepted, refused for good or the node stops.
/// `seed` varies the jitter between shards.
pub(super) async fn send(
    ep: &Endpoint,
    metrics: &QueueMetrics,
    body: Vec<u8>,
    payload: Payload,
    seed: u64,
    shutdown: &CancellationToken,
) -> Delivery {
    // Shared, so that each attempt hands the client the same bytes without a copy.
    let body = bytes::Bytes::from(body);
    let tally = metrics.tally(payload);
    let n = payload.count();
    let noun = payload.noun();
    let mut backoff = ep.queue.min_backoff;
    let mut rng = seed | 1;
    loop {
        if shutdown.is_cancelled() {
            return Delivery::Cancelled;
        }
        let res = tokio::select! {
            r = attempt(ep, body.clone()) => r,
            () = shutdown.cancelled() => return Delivery::Cancelled,
        };
        let res = match res {
            // Prometheus 3: a 2.0 request with data, answered 2xx with nothing written, failed.
            Ok((status, written))
                if ep.proto == ProtobufMessage::RequestV2
                    && matches!(payload, Payload::Samples(k) if k > 0)
                    && written.nothing() =>
            {
                Err(Attempt::Final {
                    why: format!(
                        "the receiver answered HTTP {status} but wrote none of them (X-Prometheus-Remote-Write-Samples-Written {}): it does not speak Remote-Write 2.0 and ignored the body; {USE_V1}",
                        if written.confirmed { "is 0" } else { "missing" }
                    ),
                    written,
                })
            }
            other => other,
        };
        match res {
            Ok((status, written)) => {
                tally.sent.inc_by(n as f64);
                tally.bytes.inc_by(body.len() as f64);
                let unwritten = if matches!(payload, Payload::Samples(_)) { written.unwritten(n) } else { 0 };
                if unwritten > 0 {
                    // As Prometheus 3: counted as failed, logged, not retried.
                    tally.failed.inc_by(unwritten as f64);
                    let why = format!(
                        "the receiver answered HTTP {status} yet wrote only {} of {n} samples",
                        written.samples
                    );
                    tracing::error!(url = %ep.url, unwritten, error = %why, "remote write: samples not written by the receiver; investigation needed");
                    *ep.last_error.lock() = Some(format!("{unwritten} samples not written: {why}"));
                } else {
                    *ep.last_error.lock() = None;
                }
                return Delivery::Accepted;
            }
            Err(Attempt::Final { why, written }) => {
                // What the receiver says it wrote of a refused request was written (Prometheus 3).
                let failed = if written.confirmed && matches!(payload, Payload::Samples(_)) {
                    written.unwritten(n)
                } else {
                    n
                };
                tally.sent.inc_by(n as f64);
                tally.failed.inc_by(failed as f64);
                tracing::error!(url = %ep.url, count = n, failed, kind = noun, error = %why, "remote write: receiver refused the request; dropping it (not retried)");
                *ep.last_error.lock() = Some(format!("{failed} {noun} refused: {why}"));
                return Delivery::Refused;
            }
            Err(Attempt::Retry { wait, why }) => {
                tally.retried.inc_by(n as f64);
                // xorshift: enough to spread shards' retries apart.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let jittered = backoff / 2 + backoff.mul_f64((rng % 1000) as f64 / 2000.0);
                let delay = wait.unwrap_or(jittered);
                tracing::warn!(url = %ep.url, count = n, kind = noun, error = %why, retry_in_ms = delay.as_millis() as u64, "remote write: sending failed; retrying");
                *ep.last_error.lock() = Some(format!("retrying: {why}"));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return Delivery::Cancelled,
                }
                backoff = (backoff * 2).min(ep.queue.max_backoff);
            }
        }
    }
}

async fn attempt(ep: &Endpoint, body: bytes::Bytes) -> Result<(reqwest::StatusCode, Written), Attempt> {
    let (content_type, version) = match ep.proto {
        ProtobufMessage::WriteRequestV1 => (codec::PROTOBUF_CONTENT_TYPE.to_string(), "0.1.0"),
        ProtobufMessage::RequestV2 => {
            (format!("{};proto={}", codec::PROTOBUF_CONTENT_TYPE, codec::PROTO_V2), "2.0.0")
        }
    };
    let mut req = ep
        .client
        .post(&ep.url)
        .map_err(|e| Attempt::Retry { wait: None, why: e.to_string() })?
        .header(reqwest::header::CONTENT_ENCODING, "snappy")
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header("X-Prometheus-Remote-Write-Version", version)
        .timeout(ep.timeout);
    for (k, v) in &ep.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp =
        req.body(body).send().await.map_err(|e| Attempt::Retry { wait: None, why: error_chain(&e) })?;
    let status = resp.status();
    let written = Written::parse(resp.headers());
    if status.is_success() {
        return Ok((status, written));
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let text = text.trim().chars().take(512).collect::<String>();
    let why = format!("HTTP {status}: {text}");
    if status.is_server_error() {
        Err(Attempt::Retry { wait: None, why })
    } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(Attempt::Retry { wait: retry_after, why })
    } else if status == reqwest::StatusCode::UNSUPPORTED_MEDIA_TYPE && ep.proto == ProtobufMessage::RequestV2
    {
        Err(Attempt::Final {
            why: format!("the receiver does not accept Remote-Write 2.0 (HTTP {status}: {text}); {USE_V1}"),
            written,
        })
    } else {
        Err(Attempt::Final { why, written })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_headers_are_read_as_prometheus_reads_them() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(Written::parse(&h), Written::default());
        assert!(Written::parse(&h).nothing());
        assert_eq!(Written::parse(&h).unwritten(10), 0, "a 1.0 receiver says nothing: trusted");
        h.insert(SAMPLES_WRITTEN, "7".parse().unwrap());
        h.insert(EXEMPLARS_WRITTEN, "junk".parse().unwrap());
        let w = Written::parse(&h);
        assert_eq!(w, Written { samples: 7, histograms: 0, exemplars: 0, confirmed: true });
        assert_eq!(w.unwritten(10), 3);
        assert_eq!(w.unwritten(5), 0);
        h.insert(SAMPLES_WRITTEN, "0".parse().unwrap());
        assert!(Written::parse(&h).nothing() && Written::parse(&h).confirmed);
    }
}
