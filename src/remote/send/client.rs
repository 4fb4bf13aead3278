//! One remote-write request and its retry policy: Remote-Write 1.0 (a snappy-compressed
//! `prometheus.WriteRequest` with the protocol's headers), retried with exponential backoff and
//! jitter on 5xx, 429 (waiting for `Retry-After` when given) and network errors, until it is
//! accepted or the node stops; any other 4xx is final (the samples are counted as failed and
//! the receiver's message logged), as Prometheus's queue manager does.

use std::time::Duration;

use prost::Message;
use tokio_util::sync::CancellationToken;

use super::{QueueMetrics, SendError};
use crate::http::{HttpClient, client::error_chain};
use crate::remote::{codec, proto};
use crate::topology::QueueConfig;

/// What the queue needs to post to one endpoint.
pub(super) struct Endpoint {
    pub(super) client: HttpClient,
    pub(super) url: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) timeout: Duration,
    pub(super) queue: QueueConfig,
    /// The last failure, until a request is accepted again (for the status page).
    pub(super) last_error: parking_lot::Mutex<Option<String>>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    Accepted,
    /// Refused for good (4xx other than 429): not sent again.
    Refused,
    /// The node is stopping; the samples stay unacknowledged (sent again after a restart).
    Cancelled,
}

/// One attempt's failure: retry (after `wait` if the receiver said) or give up.
enum Attempt {
    Retry { wait: Option<Duration>, why: String },
    Final { why: String },
}

/// Encodes `series` as a Remote-Write 1.0 body.
pub(super) fn encode(series: Vec<proto::TimeSeries>) -> Result<Vec<u8>, SendError> {
    let req = proto::WriteRequest { timeseries: series, metadata: Vec::new() };
    codec::compress(&req.encode_to_vec()).map_err(|e| SendError::Encode(e.to_string()))
}

/// Posts `body` (carrying `samples` samples) until it is accepted, refused for good or the node
/// stops. `seed` varies the jitter between shards.
pub(super) async fn send(
    ep: &Endpoint,
    metrics: &QueueMetrics,
    body: Vec<u8>,
    samples: u64,
    seed: u64,
    shutdown: &CancellationToken,
) -> Delivery {
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
        match res {
            Ok(()) => {
                *ep.last_error.lock() = None;
                metrics.samples.inc_by(samples as f64);
                metrics.bytes.inc_by(body.len() as f64);
                return Delivery::Accepted;
            }
            Err(Attempt::Final { why }) => {
                metrics.samples.inc_by(samples as f64);
                metrics.failed.inc_by(samples as f64);
                tracing::error!(url = %ep.url, samples, error = %why, "remote write: receiver refused the samples; dropping them (not retried)");
                *ep.last_error.lock() = Some(format!("{samples} samples refused: {why}"));
                return Delivery::Refused;
            }
            Err(Attempt::Retry { wait, why }) => {
                metrics.retried.inc_by(samples as f64);
                // xorshift: enough to spread shards' retries apart.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let jittered = backoff / 2 + backoff.mul_f64((rng % 1000) as f64 / 2000.0);
                let delay = wait.unwrap_or(jittered);
                tracing::warn!(url = %ep.url, samples, error = %why, retry_in_ms = delay.as_millis() as u64, "remote write: sending failed; retrying");
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

async fn attempt(ep: &Endpoint, body: Vec<u8>) -> Result<(), Attempt> {
    let mut req = ep
        .client
        .post(&ep.url)
        .map_err(|e| Attempt::Retry { wait: None, why: e.to_string() })?
        .header(reqwest::header::CONTENT_ENCODING, "snappy")
        .header(reqwest::header::CONTENT_TYPE, codec::PROTOBUF_CONTENT_TYPE)
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(ep.timeout);
    for (k, v) in &ep.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp =
        req.body(body).send().await.map_err(|e| Attempt::Retry { wait: None, why: error_chain(&e) })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let why = format!("HTTP {status}: {}", text.trim().chars().take(512).collect::<String>());
    if status.is_server_error() {
        Err(Attempt::Retry { wait: None, why })
    } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(Attempt::Retry { wait: retry_after, why })
    } else {
        Err(Attempt::Final { why })
    }
}
