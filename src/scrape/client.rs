//! The HTTP side of a scrape: one client per job (TLS, compression), the request headers
//! Prometheus sends, credentials, timeouts, and status checking.

use std::time::Duration;

use bytes::Bytes;

use crate::topology::{Auth, ScrapeConfig};

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
    http: reqwest::Client,
    auth: Option<Auth>,
}

impl ScrapeClient {
    pub fn new(job: &ScrapeConfig) -> Result<ScrapeClient, ScrapeHttpError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("promtier/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(job.tls.insecure_skip_verify)
            .pool_max_idle_per_host(2);
        if !job.enable_compression {
            b = b.no_gzip();
        }
        if let Some(ca) = &job.tls.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| ScrapeHttpError::Client(format!("{}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ScrapeHttpError::Client(format!("{}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| ScrapeHttpError::Client(e.to_string()))?;
        Ok(ScrapeClient { http, auth: job.auth.clone() })
    }

    /// A client without credentials, for federation between nodes.
    pub fn plain(gzip: bool) -> Result<ScrapeClient, ScrapeHttpError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("promtier/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(2);
        if !gzip {
            b = b.no_gzip();
        }
        let http = b.build().map_err(|e| ScrapeHttpError::Client(e.to_string()))?;
        Ok(ScrapeClient { http, auth: None })
    }

    /// GETs `url` within `timeout` and returns the (decompressed) body.
    pub async fn scrape(&self, url: &str, timeout: Duration) -> Result<Bytes, ScrapeHttpError> {
        let mut req = self
            .http
            .get(url)
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", timeout.as_secs_f64()));
        match &self.auth {
            Some(Auth::Basic { username, password }) => {
                let pw = password.read().map_err(ScrapeHttpError::Credentials)?;
                req = req.basic_auth(username, Some(pw));
            }
            Some(Auth::Bearer(token)) => {
                req = req.bearer_auth(token.read().map_err(ScrapeHttpError::Credentials)?);
            }
            None => {}
        }
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

/// The error with its causes, as reqwest's Display alone hides the useful part.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}
