//! The HTTP side of a scrape: one client per job (TLS, compression), the request headers
//! Prometheus sends, credentials, timeouts, and status checking.

use std::time::Duration;

use bytes::Bytes;

use crate::http::client::error_chain;
use crate::http::{ClientError, HttpClient};
use crate::topology::{ClientConfig, ScrapeConfig};

/// What we accept, in Prometheus's style: the text format first.
const ACCEPT: &str = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScrapeHttpError {
    #[error("cannot build HTTP client: {0}")]
    Client(String),
    #[error("scrape timed out after {}", crate::model::PromDuration(*.0))]
    Timeout(Duration),
    #[error("server returned HTTP status {0}")]
    Status(String),
    #[error("{0}")]
    Request(String),
    #[error("cannot read credentials: {0}")]
    Credentials(std::io::Error),
    /// The (decompressed) body grew past the limit; reading stopped there.
    #[error("body size limit exceeded ({0} bytes)")]
    BodySizeLimit(usize),
}

/// A job's HTTP client.
#[derive(Clone)]
pub struct ScrapeClient {
    http: HttpClient,
    /// Most bytes of (decompressed) body a response may have; 0: no limit.
    body_limit: usize,
}

impl ScrapeClient {
    pub fn new(job: &ScrapeConfig) -> Result<ScrapeClient, ScrapeHttpError> {
        Ok(Self::with_config(&job.client, job.enable_compression)?.with_body_limit(job.body_size_limit))
    }

    /// A client with `cfg`'s credentials and TLS settings (federation pulls use one per source
    /// group); `gzip` asks for compressed bodies.
    pub fn with_config(cfg: &ClientConfig, gzip: bool) -> Result<ScrapeClient, ScrapeHttpError> {
        let http = HttpClient::new(cfg, gzip).map_err(|e| ScrapeHttpError::Client(e.to_string()))?;
        Ok(ScrapeClient { http, body_limit: 0 })
    }

    /// GETs `url` within `timeout` and returns the (decompressed) body.
    pub async fn scrape(&self, url: &str, timeout: Duration) -> Result<Bytes, ScrapeHttpError> {
        let req = self
            .http
            .get(url)
            .map_err(|e| match e {
                ClientError::Credentials(io) => ScrapeHttpError::Credentials(io),
                other => ScrapeHttpError::Client(other.to_string()),
            })?
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", timeout.as_secs_f64()));
        let map_err = |e: reqwest::Error| {
            if e.is_timeout() {
                ScrapeHttpError::Timeout(timeout)
            } else {
                ScrapeHttpError::Request(error_chain(&e))
            }
        };
        let resp = req.send().await.map_err(map_err)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ScrapeHttpError::Status(status.to_string()));
        }
        read_body(resp, self.body_limit).await.map_err(|e| match e {
            BodyError::Http(e) => map_err(e),
            BodyError::TooLarge(limit) => ScrapeHttpError::BodySizeLimit(limit),
        })
    }
}

/// Body size limits (`body_size_limit`) and how a body is read within one.
impl ScrapeClient {
    /// The same client with responses limited to `limit` bytes of body (0: no limit).
    pub fn with_body_limit(mut self, limit: usize) -> ScrapeClient {
        self.body_limit = limit;
        self
    }
}

enum BodyError {
    Http(reqwest::Error),
    TooLarge(usize),
}

/// Reads the body chunk by chunk as it arrives (decompressed already when gzip was used), and
/// stops as soon as it grows past `limit` bytes (0: no limit), so neither a huge response nor a
/// small gzip bomb can take more memory than the limit. The `Content-Length` header only sizes
/// the first allocation, never beyond the limit or a few MiB (it is the server's word).
async fn read_body(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    const MAX_PREALLOCATION: usize = 8 << 20;
    let cap = if limit == 0 { usize::MAX } else { limit };
    let expected = resp.content_length().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let mut body = Vec::with_capacity(expected.min(cap).min(MAX_PREALLOCATION));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Http)? {
        let needed = body.len().saturating_add(chunk.len());
        if needed > cap {
            return Err(BodyError::TooLarge(limit));
        }
        if needed > body.capacity() {
            // Grow by doubling as usual, but never past the limit.
            let target = needed.max(body.capacity().saturating_mul(2)).min(cap);
            body.reserve_exact(target - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}
