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
use super::hints::{Forward, Method};
use super::ring::Ring;
use crate::metrics::{Collect, Counter, Family, Registry};
use crate::remote::codec::{self, WriteProto};
use crate::remote::{RemoteError, WriteReceiver, proto};

/// One push node's view of the tier.
pub struct PushTier {
    /// This node's index on the ring.
    pub index: u32,
    pub ring: Ring,
    pub quorum: u32,
    /// The other nodes, by index (`None` at this node's own index).
    pub peers: Vec<Option<Arc<Peer>>>,
    pub receiver: WriteReceiver,
    /// This node's own writes while it catches up after a start.
    pub catch_up: Arc<CatchUp>,
    metrics: TierMetrics,
}

struct TierMetrics {
    /// Series-copies by outcome: stored here, forwarded, hinted, failed.
    copies: Arc<Family<Counter>>,
    /// Requests that did not reach their quorum.
    no_quorum: Arc<Family<Counter>>,
}

impl PushTier {
    pub fn new(
        index: u32,
        ring: Ring,
        quorum: u32,
        peers: Vec<Option<Arc<Peer>>>,
        receiver: WriteReceiver,
        catch_up: Arc<CatchUp>,
        registry: &Registry,
    ) -> PushTier {
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
        PushTier { index, ring, quorum, peers, receiver, catch_up, metrics }
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

    /// Stores or forwards each owner's part of a decoded request; the outcome per owner.
    async fn distribute(
        self: &Arc<Self>,
        proto_in: WriteProto,
        req: proto::WriteRequest,
    ) -> (Vec<Option<Delivery>>, Vec<Vec<u32>>) {
        let (parts, sets) = self.split(req);
        let mut tasks = tokio::task::JoinSet::new();
        for (owner, part) in parts.into_iter().enumerate() {
            if part.timeseries.is_empty() {
                continue;
            }
            let series = part.timeseries.len() as f64;
            if owner as u32 == self.index {
                let tier = self.clone();
                tasks.spawn(async move {
                    let r = tokio::task::spawn_blocking(move || match tier.catch_up.queue_if_active(&part) {
                        Ok(true) => Ok(None),
                        Ok(false) => {
                            tier.receiver.store(proto_in, &part).map(Some).map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e.to_string()),
                    })
                    .await;
                    let d = match r {
                        Ok(Ok(Some(s))) => Delivery::Stored { refused: s.refused },
                        Ok(Ok(None)) => {
                            Delivery::Hinted { why: "this node is catching up after a start".into() }
                        }
                        Ok(Err(e)) => Delivery::Failed { why: format!("here: {e}") },
                        Err(e) => Delivery::Failed { why: format!("here: {e}") },
                    };
                    (owner, d, series)
                });
            } else if let Some(Some(peer)) = self.peers.get(owner) {
                let peer = peer.clone();
                tasks.spawn(async move {
                    let d = match codec::compress(&part.encode_to_vec()) {
                        Ok(body) => {
                            peer.deliver(Forward {
                                method: Method::Post,
                                path: "/api/v1/write".into(),
                                content_type: codec::PROTOBUF_CONTENT_TYPE.into(),
                                content_encoding: "snappy".into(),
                                body,
                            })
                            .await
                        }
                        Err(e) => Delivery::Failed { why: e.to_string() },
                    };
                    (owner, d, series)
                });
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
        (out, sets)
    }

    /// The answer once every owner's part has been dealt with.
    fn answer(
        &self,
        proto_in: WriteProto,
        samples: u64,
        out: &[Option<Delivery>],
        sets: &[Vec<u32>],
    ) -> Response {
        let stored = |o: u32| matches!(out.get(o as usize), Some(Some(Delivery::Stored { .. })));
        let short: Vec<&Vec<u32>> = sets
            .iter()
            .filter(|s| (s.iter().filter(|o| stored(**o)).count() as u32) < self.quorum.min(s.len() as u32))
            .collect();
        if !short.is_empty() {
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
            let msg = format!(
                "write quorum ({} of {} owners) not reached for {} owner set(s): {}",
                self.quorum,
                self.ring.replication_factor(),
                short.len(),
                why.join("; ")
            );
            return (StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
        }
        let refused: Vec<String> = out
            .iter()
            .filter_map(|d| match d {
                Some(Delivery::Stored { refused: Some(r) }) => Some(r.clone()),
                _ => None,
            })
            .collect();
        if refused.is_empty() {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            if proto_in == WriteProto::V2 {
                WriteReceiver::written_headers(&mut resp, samples);
            }
            resp
        } else {
            (StatusCode::BAD_REQUEST, refused.join("; ")).into_response()
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
    tier.answer(proto_in, samples, &out, &sets)
}

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
