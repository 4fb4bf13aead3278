//! The write path of a push node: a remote-write request (1.0 or 2.0) is split by the owners of
//! each series (the ring), the part this node owns is stored here, the other parts are forwarded
//! to their owners (or kept as hints for them), and the request is acknowledged only when every
//! series is in the WAL of at least `write_quorum` of its owners. A forwarded request (marked by
//! [`FORWARDED_HEADER`]) is stored here and not routed again.
//!
//! Answers: `204` when every series reached its quorum and nothing was refused; `400` with the
//! owners' reasons when samples were refused (out of order, bad labels — the rest is stored, so
//! senders must not retry); `503` when some series did not reach its quorum (senders retry; the
//! owners that stored it take the retry as duplicates with the same values).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prost::Message;

use super::catchup::CatchUp;
use super::forward::{Delivery, FORWARDED_HEADER, Peer};
use super::gateway::GroupingKey;
use super::groups::{GroupChange, Groups};
use super::hints::{Forward, Method};
use super::ring::Ring;
use crate::metrics::{Collect, Counter, Family, Registry};
use crate::remote::codec::{self, WriteProto};
use crate::remote::{RemoteError, WriteReceiver, proto};

/// What a push node's write path is made of.
pub struct TierParts {
    /// This node's index on the ring.
    pub index: u32,
    pub ring: Ring,
    pub quorum: u32,
    /// The other nodes, by index (`None` at this node's own index).
    pub peers: Vec<Option<Arc<Peer>>>,
    pub receiver: WriteReceiver,
    /// This node's own writes while it catches up after a start.
    pub catch_up: Arc<CatchUp>,
    /// The Pushgateway groups this node owns.
    pub groups: Arc<Groups>,
    /// The node's shutdown (pushes waiting for a save give up on it).
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// One push node's view of the tier: its write path.
pub struct PushTier {
    parts: TierParts,
    metrics: TierMetrics,
}

impl std::ops::Deref for PushTier {
    type Target = TierParts;

    fn deref(&self) -> &TierParts {
        &self.parts
    }
}

struct TierMetrics {
    /// Series-copies by outcome: stored here, forwarded, hinted, failed.
    copies: Arc<Family<Counter>>,
    /// Requests that did not reach their quorum.
    no_quorum: Arc<Family<Counter>>,
}

impl PushTier {
    pub fn new(parts: TierParts, registry: &Registry) -> PushTier {
        let metrics = TierMetrics {
            copies: Arc::new(Family::new(
                "promtier_push_series_copies_total",
                "Copies of pushed series by where they went: stored here (local), sent to their owner (forwarded), kept as a hint for an unreachable owner (hinted), or lost (failed).",
                &["outcome"],
                Counter::default,
            )),
            no_quorum: Arc::new(Family::new(
                "promtier_push_requests_without_quorum_total",
                "Pushes answered 503 because some series did not reach its write quorum.",
                &[],
                Counter::default,
            )),
        };
        for o in ["local", "forwarded", "hinted", "failed"] {
            metrics.copies.with(&[o]);
        }
        metrics.no_quorum.with(&[]);
        registry.register(metrics.copies.clone() as Arc<dyn Collect>);
        registry.register(metrics.no_quorum.clone() as Arc<dyn Collect>);
        PushTier { parts, metrics }
    }

    /// Splits `req` by owner: each owner's part, and each distinct owner set in the request.
    fn split(&self, req: proto::WriteRequest) -> (Vec<proto::WriteRequest>, Vec<Vec<u32>>) {
        let n = self.ring.nodes() as usize;
        let mut parts: Vec<proto::WriteRequest> = (0..n).map(|_| proto::WriteRequest::default()).collect();
        let mut sets: HashMap<Vec<u32>, ()> = HashMap::new();
        for ts in req.timeseries {
            let key = self
                .ring
                .key_from(|name| ts.labels.iter().find(|l| l.name == name).map(|l| l.value.as_str()));
            let owners = self.ring.owners(&key);
            for &o in owners.iter().skip(1) {
                parts[o as usize].timeseries.push(ts.clone());
            }
            if let Some(&first) = owners.first() {
                parts[first as usize].timeseries.push(ts);
            }
            sets.entry(owners).or_default();
        }
        for p in parts.iter_mut().filter(|p| !p.timeseries.is_empty()) {
            p.metadata = req.metadata.clone();
        }
        (parts, sets.into_keys().collect())
    }

    /// Runs the local part (if this node is an owner) and delivers every other owner its part;
    /// the outcome per owner. `series` counts the series copies each part holds (metrics).
    async fn fan_out(
        self: &Arc<Self>,
        local: Option<(LocalPart, f64)>,
        remote: Vec<(usize, Forward, f64)>,
    ) -> Vec<Option<Delivery>> {
        let mut tasks = tokio::task::JoinSet::new();
        if let Some((fut, series)) = local {
            let owner = self.index as usize;
            tasks.spawn(async move { (owner, fut.await, series) });
        }
        for (owner, f, series) in remote {
            if let Some(Some(peer)) = self.peers.get(owner) {
                let peer = peer.clone();
                tasks.spawn(async move { (owner, peer.deliver(f).await, series) });
            }
        }
        let mut out: Vec<Option<Delivery>> = vec![None; self.ring.nodes() as usize];
        while let Some(r) = tasks.join_next().await {
            let Ok((owner, d, series)) = r else { continue };
            let outcome = match (&d, owner as u32 == self.index) {
                (Delivery::Stored { .. }, true) => "local",
                (Delivery::Stored { .. }, false) => "forwarded",
                (Delivery::Hinted { .. }, _) => "hinted",
                (Delivery::Failed { .. }, _) => "failed",
            };
            self.metrics.copies.with(&[outcome]).inc_by(series);
            out[owner] = Some(d);
        }
        out
    }

    /// Stores or forwards each owner's part of a decoded remote-write request.
    async fn distribute(
        self: &Arc<Self>,
        proto_in: WriteProto,
        req: proto::WriteRequest,
    ) -> (Vec<Option<Delivery>>, Vec<Vec<u32>>) {
        let (parts, sets) = self.split(req);
        let mut local = None;
        let mut remote = Vec::new();
        for (owner, part) in parts.into_iter().enumerate() {
            if part.timeseries.is_empty() {
                continue;
            }
            let series = part.timeseries.len() as f64;
            if owner as u32 == self.index {
                let tier = self.clone();
                let fut: LocalPart = Box::pin(async move {
                    let r = tokio::task::spawn_blocking(move || {
                        tier.catch_up
                            .queue_or(|| write_forward(&part), || tier.receiver.store(proto_in, &part))
                    })
                    .await;
                    match r {
                        Ok(Ok(Some(Ok(s)))) => Delivery::Stored { refused: s.refused },
                        Ok(Ok(Some(Err(e)))) => Delivery::Failed { why: format!("here: {e}") },
                        Ok(Ok(None)) => Delivery::Hinted { why: CATCHING_UP.into() },
                        Ok(Err(e)) => Delivery::Failed { why: format!("here: {e}") },
                        Err(e) => Delivery::Failed { why: format!("here: {e}") },
                    }
                });
                local = Some((fut, series));
            } else {
                remote.push((owner, write_forward(&part), series));
            }
        }
        (self.fan_out(local, remote).await, sets)
    }

    /// Applies a write forwarded by another node, or queued while catching up (blocking).
    pub fn apply_forward(&self, f: &Forward) -> Result<(), String> {
        if f.path.starts_with("/api/v1/write") {
            let req = self.receiver.decode(WriteProto::V1, &f.body).map_err(|e| e.to_string())?;
            self.receiver.store(WriteProto::V1, &req).map(|_| ()).map_err(|e| e.to_string())
        } else if let Some(rest) = f.path.strip_prefix("/metrics/") {
            let key = GroupingKey::parse(rest).map_err(|e| e.to_string())?;
            let content_type = (!f.content_type.is_empty()).then_some(f.content_type.as_str());
            self.groups
                .apply(change_of(f.method), &key, content_type, &f.body)
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            Err(format!("no such write path {:?}", f.path))
        }
    }

    /// Whether every owner set reached the quorum: the refusals to report when it did, why
    /// not when it did not.
    fn verdict(&self, out: &[Option<Delivery>], sets: &[Vec<u32>]) -> Result<Vec<String>, String> {
        let stored = |o: u32| matches!(out.get(o as usize), Some(Some(Delivery::Stored { .. })));
        let short = sets
            .iter()
            .filter(|s| (s.iter().filter(|o| stored(**o)).count() as u32) < self.quorum.min(s.len() as u32))
            .count();
        if short > 0 {
            self.metrics.no_quorum.with(&[]).inc();
            let mut why: Vec<String> = out
                .iter()
                .filter_map(|d| match d {
                    Some(Delivery::Hinted { why } | Delivery::Failed { why }) => Some(why.clone()),
                    _ => None,
                })
                .collect();
            why.sort();
            why.dedup();
            return Err(format!(
                "write quorum ({} of {} owners) not reached for {short} owner set(s): {}",
                self.quorum,
                self.ring.replication_factor(),
                why.join("; ")
            ));
        }
        let mut refused: Vec<String> = out
            .iter()
            .filter_map(|d| match d {
                Some(Delivery::Stored { refused: Some(r) }) => Some(r.clone()),
                _ => None,
            })
            .collect();
        refused.dedup();
        Ok(refused)
    }

    /// A Pushgateway push or delete to the group `key`, routed to the group's owners.
    async fn push_group(
        self: &Arc<Self>,
        method: Method,
        key: GroupingKey,
        content_type: String,
        body: Vec<u8>,
    ) -> Response {
        let owners = self.ring.owners(&self.ring.key_from(|name| key.get(name)));
        let forward = Forward {
            method,
            path: format!("/metrics/{}", key.to_path()),
            content_type,
            content_encoding: String::new(),
            body,
        };
        let mut local = None;
        let mut remote = Vec::new();
        for &o in &owners {
            if o == self.index {
                let (tier, f) = (self.clone(), forward.clone());
                let fut: LocalPart = Box::pin(async move { tier.apply_group_locally(f).await });
                local = Some((fut, 1.0));
            } else {
                remote.push((o as usize, forward.clone(), 1.0));
            }
        }
        let out = self.fan_out(local, remote).await;
        match self.verdict(&out, &[owners]) {
            Err(msg) => (StatusCode::SERVICE_UNAVAILABLE, msg).into_response(),
            Ok(refused) if !refused.is_empty() => {
                (StatusCode::BAD_REQUEST, refused.join("; ")).into_response()
            }
            Ok(_) if method == Method::Delete => StatusCode::ACCEPTED.into_response(),
            Ok(_) => StatusCode::OK.into_response(),
        }
    }

    /// Applies a group change here (or queues it while catching up) and waits until it is saved.
    async fn apply_group_locally(self: Arc<Self>, f: Forward) -> Delivery {
        let tier = self.clone();
        let r = tokio::task::spawn_blocking(move || {
            tier.catch_up.queue_or(
                || f.clone(),
                || {
                    let key = GroupingKey::parse(f.path.trim_start_matches("/metrics/"))
                        .map_err(|e| e.to_string())?;
                    let content_type = (!f.content_type.is_empty()).then_some(f.content_type.as_str());
                    Ok::<_, String>(tier.groups.apply(change_of(f.method), &key, content_type, &f.body))
                },
            )
        })
        .await;
        match r {
            Ok(Ok(None)) => Delivery::Hinted { why: CATCHING_UP.into() },
            Ok(Ok(Some(Ok(Ok(generation))))) => {
                if self.groups.durable(generation, &self.shutdown).await {
                    Delivery::Stored { refused: None }
                } else {
                    Delivery::Failed { why: "here: the groups could not be saved".into() }
                }
            }
            Ok(Ok(Some(Ok(Err(e))))) => {
                // Refused as a whole; its failure time is recorded (and saved) all the same.
                Delivery::Stored { refused: Some(e.to_string()) }
            }
            Ok(Ok(Some(Err(e)))) => Delivery::Failed { why: format!("here: {e}") },
            Ok(Err(e)) => Delivery::Failed { why: format!("here: {e}") },
            Err(e) => Delivery::Failed { why: format!("here: {e}") },
        }
    }
}

/// `POST /api/v1/write` on a push node.
pub async fn handle_write(State(tier): State<Arc<PushTier>>, req: Request) -> Response {
    if req.headers().contains_key(FORWARDED_HEADER) {
        return tier.receiver.handle(req).await;
    }
    let (proto_in, body) = match tier.receiver.read(req).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let rx = tier.receiver.clone();
    let decoded = tokio::task::spawn_blocking(move || rx.decode(proto_in, &body)).await;
    let req = match decoded {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return RemoteError::Internal(e.to_string()).into_response(),
    };
    let samples: u64 = req.timeseries.iter().map(|t| t.samples.len() as u64).sum();
    let (out, sets) = tier.distribute(proto_in, req).await;
    match tier.verdict(&out, &sets) {
        Err(msg) => (StatusCode::SERVICE_UNAVAILABLE, msg).into_response(),
        Ok(refused) if !refused.is_empty() => (StatusCode::BAD_REQUEST, refused.join("; ")).into_response(),
        Ok(_) => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            if proto_in == WriteProto::V2 {
                WriteReceiver::written_headers(&mut resp, samples);
            }
            resp
        }
    }
}

/// Most body a Pushgateway push may have (Pushgateway itself sets none; this is the API's).
const MAX_GROUP_BODY: usize = crate::api::MAX_REQUEST_BODY;

/// `PUT`, `POST` and `DELETE /metrics/job/…` on a push node: the Pushgateway API, the group
/// routed to the owners of its grouping key (see `docs/push.md`).
pub async fn handle_group(State(tier): State<Arc<PushTier>>, req: Request) -> Response {
    let method = match *req.method() {
        axum::http::Method::PUT => Method::Put,
        axum::http::Method::POST => Method::Post,
        axum::http::Method::DELETE => Method::Delete,
        _ => return (StatusCode::METHOD_NOT_ALLOWED, "PUT, POST or DELETE").into_response(),
    };
    let forwarded = req.headers().contains_key(FORWARDED_HEADER);
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/metrics/") else {
        return (StatusCode::NOT_FOUND, "not a Pushgateway path").into_response();
    };
    let key = match GroupingKey::parse(rest) {
        Ok(k) => k,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let content_type = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match axum::body::to_bytes(req.into_body(), MAX_GROUP_BODY).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("push body over {MAX_GROUP_BODY} bytes"))
                .into_response();
        }
    };
    if forwarded {
        let f = Forward {
            method,
            path: format!("/metrics/{}", key.to_path()),
            content_type,
            content_encoding: String::new(),
            body,
        };
        return match tier.clone().apply_group_locally(f).await {
            Delivery::Stored { refused: Some(r) } => (StatusCode::BAD_REQUEST, r).into_response(),
            Delivery::Stored { refused: None } if method == Method::Delete => {
                StatusCode::ACCEPTED.into_response()
            }
            Delivery::Stored { refused: None } => StatusCode::OK.into_response(),
            // Catching up or not saved: the sender keeps it as a hint and replays it.
            Delivery::Hinted { why } | Delivery::Failed { why } => {
                (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
            }
        };
    }
    tier.push_group(method, key, content_type, body).await
}

/// The remote-write request to forward an owner its part.
fn write_forward(part: &proto::WriteRequest) -> Forward {
    Forward {
        method: Method::Post,
        path: "/api/v1/write".into(),
        content_type: codec::PROTOBUF_CONTENT_TYPE.into(),
        content_encoding: "snappy".into(),
        body: codec::compress(&part.encode_to_vec()).unwrap_or_default(),
    }
}

fn change_of(m: Method) -> GroupChange {
    match m {
        Method::Put => GroupChange::Put,
        Method::Post => GroupChange::Post,
        Method::Delete => GroupChange::Delete,
    }
}

/// Why this node's own copy waits.
const CATCHING_UP: &str = "this node is catching up after a start";

/// This node's part of a write, as a future (it may wait for a save).
type LocalPart = std::pin::Pin<Box<dyn std::future::Future<Output = Delivery> + Send>>;

/// `GET /api/v1/push/hints`: the hints this node holds per other node, and whether it is
/// catching up itself.
pub async fn handle_hints(State(tier): State<Arc<PushTier>>) -> Response {
    let mut data = serde_json::Map::new();
    for p in tier.peers.iter().flatten() {
        let s = p.hints.stats();
        data.insert(
            p.name.clone(),
            serde_json::json!({
                "pending": s.pending,
                "pending_bytes": s.pending_bytes,
                "written": s.written,
                "delivered": s.delivered,
                "dropped": s.dropped,
            }),
        );
    }
    axum::Json(serde_json::json!({
        "status": "success",
        "data": data,
        "catching_up": tier.catch_up.is_active(),
    }))
    .into_response()
}
