//! Forwarding a write to the other owners of its series: one [`Peer`] per other push node, with
//! its hint queue. A write for a peer goes straight to it while its queue is empty; once a
//! delivery fails (network error, 5xx) it and every later write for that peer go into the queue,
//! which the peer's replayer sends in order when it is back — so a peer catches up on the writes
//! this node owes it in the order they were accepted, and never gets a newer one before an
//! older one from this node.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::hints::{Forward, HintError, HintQueue, Method};
use crate::http::client::HttpClient;

/// Header marking a write one push node forwards to another: store it, do not route it again.
pub const FORWARDED_HEADER: &str = "x-promtier-forwarded";
/// Where a push node lists the hints it holds for each other node.
pub const HINTS_PATH: &str = "/api/v1/push/hints";
/// Bound on one forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What became of a write for one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The owner has it (in its WAL); `refused` says what it could not store, if anything.
    Stored { refused: Option<String> },
    /// Kept as a hint for the owner (it was unreachable, or earlier hints still wait).
    Hinted { why: String },
    /// Neither: the owner refused the request as a whole, or the hint could not be written.
    Failed { why: String },
}

/// Another push node.
pub struct Peer {
    pub index: u32,
    pub name: String,
    base_url: String,
    client: HttpClient,
    pub hints: HintQueue,
    wake: Notify,
    /// This node's name, sent in [`FORWARDED_HEADER`].
    from: String,
}

/// The answer of a peer to one request.
enum Answer {
    /// Stored (2xx), or stored except what the 400 names.
    Stored(Option<String>),
    /// Not now: retry later (network error, 5xx, 429, 401/403 until credentials are fixed).
    Retry(String),
    /// Never: the request itself is refused (413, 415, other 4xx).
    Never(String),
}

impl Peer {
    pub fn new(
        index: u32,
        name: String,
        base_url: String,
        client: HttpClient,
        hints: HintQueue,
        from: String,
    ) -> Peer {
        Peer { index, name, base_url, client, hints, wake: Notify::new(), from }
    }

    /// Delivers `f` to this peer now, or keeps it as a hint (see the module doc).
    pub async fn deliver(&self, f: Forward) -> Delivery {
        if !self.hints.is_empty() {
            return self.hint(&f, "earlier hints for it are still being delivered".into());
        }
        match self.send(&f).await {
            Answer::Stored(refused) => Delivery::Stored { refused },
            Answer::Retry(why) => self.hint(&f, why),
            Answer::Never(why) => Delivery::Failed { why },
        }
    }

    fn hint(&self, f: &Forward, why: String) -> Delivery {
        match self.hints.push(f) {
            Ok(()) => {
                self.wake.notify_one();
                Delivery::Hinted { why }
            }
            Err(e @ HintError::Io { .. }) => {
                Delivery::Failed { why: format!("{why}; and no hint kept: {e}") }
            }
        }
    }

    async fn send(&self, f: &Forward) -> Answer {
        let url = format!("{}{}", self.base_url, f.path);
        let method = match f.method {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        };
        let req = match self.client.request(method, &url) {
            Ok(r) => r,
            Err(e) => return Answer::Retry(e.to_string()),
        };
        let mut req = req.timeout(FORWARD_TIMEOUT).header(FORWARDED_HEADER, &self.from).body(f.body.clone());
        if !f.content_type.is_empty() {
            req = req.header(reqwest::header::CONTENT_TYPE, &f.content_type);
        }
        if !f.content_encoding.is_empty() {
            req = req.header(reqwest::header::CONTENT_ENCODING, &f.content_encoding);
        }
        if f.path.starts_with("/api/v1/write") {
            req = req.header("X-Prometheus-Remote-Write-Version", "0.1.0");
        }
        match req.send().await {
            Err(e) => Answer::Retry(crate::http::client::error_chain(&e)),
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let text = text.trim().to_string();
                if status.is_success() {
                    Answer::Stored(None)
                } else if status == reqwest::StatusCode::BAD_REQUEST {
                    Answer::Stored(Some(format!("{}: {text}", self.name)))
                } else if status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::UNAUTHORIZED
                    || status == reqwest::StatusCode::FORBIDDEN
                {
                    Answer::Retry(format!("{}: HTTP {status}: {text}", self.name))
                } else {
                    Answer::Never(format!("{}: HTTP {status}: {text}", self.name))
                }
            }
        }
    }

    /// How many hints this peer holds for the node named `node`; `None` when it cannot be
    /// asked.
    pub async fn hints_held_for(&self, node: &str) -> Option<u64> {
        let url = format!("{}{HINTS_PATH}", self.base_url);
        let resp = self.client.get(&url).ok()?.timeout(Duration::from_secs(5)).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.ok()?).ok()?;
        Some(v["data"][node]["pending"].as_u64().unwrap_or(0))
    }

    /// Sends this peer's hints, oldest first, whenever there are any, until `shutdown`.
    pub async fn replay(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let next = match self.hints.peek() {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(peer = %self.name, error = %e, "push: cannot read hints");
                    None
                }
            };
            let Some(f) = next else {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.wake.notified() => continue,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            };
            let answer = tokio::select! {
                () = shutdown.cancelled() => return,
                a = self.send(&f) => a,
            };
            match answer {
                Answer::Stored(refused) => {
                    if let Some(r) = refused {
                        tracing::debug!(peer = %self.name, refused = %r, "push: hint delivered, partly refused");
                    }
                    self.hints.pop();
                    if backoff > MIN_BACKOFF {
                        tracing::info!(peer = %self.name, pending = self.hints.stats().pending, "push: peer reachable again; delivering its hints");
                    }
                    backoff = MIN_BACKOFF;
                }
                Answer::Never(why) => {
                    tracing::warn!(peer = %self.name, %why, "push: a hint the peer refuses for good; dropped");
                    self.hints.pop();
                }
                Answer::Retry(why) => {
                    if backoff == MIN_BACKOFF {
                        tracing::warn!(peer = %self.name, %why, pending = self.hints.stats().pending, "push: peer unreachable; keeping its hints");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
