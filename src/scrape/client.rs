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
}

/// A job's HTTP client.
#[derive(Clone)]
pub struct ScrapeClient {
    http: HttpClient,
}

impl ScrapeClient {
    pub fn new(job: &ScrapeConfig) -> Result<ScrapeClient, ScrapeHttpError> {
        Self::with_config(&job.client, job.enable_compression)
    }

    /// A client with `cfg`'s credentials and TLS settings (federation pulls use one per source
    /// group); `gzip` asks for compressed bodies.
    pub fn with_config(cfg: &ClientConfig, gzip: bool) -> Result<ScrapeClient, ScrapeHttpError> {
        let http = HttpClient::new(cfg, gzip).map_err(|e| ScrapeHttpError::Client(e.to_string()))?;
        Ok(ScrapeClient { http })
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
        resp.bytes().await.map_err(map_err)
    }
}
