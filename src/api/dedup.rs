//! The dedup API of a global in failover mode: which replica each replica set uses, and the
//! operator's override (`pin` / `unpin`).
//!
//! - `GET /api/v1/dedup` — every replica set: elected, pinned, replica health, failovers.
//! - `POST /api/v1/dedup/pin?shard=S&replica=R` — always use R for S (until unpinned).
//! - `POST /api/v1/dedup/unpin?shard=S` — back to automatic election.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{ApiError, ErrorType, success};
use crate::dedup::{Elector, ShardView};

#[derive(Debug, Deserialize)]
struct PinParams {
    shard: Option<String>,
    replica: Option<String>,
}

/// Routes the dedup API for `elector`.
pub fn router(elector: Arc<Elector>) -> Router {
    Router::new()
        .route("/api/v1/dedup", get(view))
        .route("/api/v1/dedup/pin", post(pin))
        .route("/api/v1/dedup/unpin", post(unpin))
        .with_state(elector)
}

fn json(v: &ShardView) -> serde_json::Value {
    serde_json::json!({
        "shard": v.shard,
        "elected": v.elected,
        "pinned": v.pinned,
        "healthy": v.healthy,
        "failovers": v.failovers,
        "replicas": v.replicas.iter().map(|r| serde_json::json!({
            "replica": r.replica,
            "healthy": r.healthy,
            "coverage": r.coverage.map(|c| serde_json::json!({
                "targetsUp": c.targets_up,
                "targetsTotal": c.targets_total,
                "series": c.series,
            })),
            // Why the replica's coverage counts as short of its best peer's (it then loses the
            // election after failover_timeout).
            "shortCoverage": r.short,
            "lastError": r.last_error,
        })).collect::<Vec<_>>(),
    })
}

async fn view(State(e): State<Arc<Elector>>) -> Response {
    success(e.view(Instant::now()).iter().map(json).collect::<Vec<_>>())
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError { kind: ErrorType::BadData, message: message.into() }
}

async fn pin(State(e): State<Arc<Elector>>, Query(p): Query<PinParams>) -> Result<Response, ApiError> {
    let shard = p.shard.ok_or_else(|| bad("shard is required"))?;
    let replica = p.replica.ok_or_else(|| bad("replica is required"))?;
    let changed = e.pin(&shard, Some(&replica), Instant::now()).map_err(|err| bad(err.to_string()))?;
    if let Some(el) = &changed {
        tracing::warn!(shard = %el.shard, to = %el.to, "replica pinned by an operator");
    }
    Ok(success(serde_json::json!({"shard": shard, "pinned": replica, "changed": changed.is_some()})))
}

async fn unpin(State(e): State<Arc<Elector>>, Query(p): Query<PinParams>) -> Result<Response, ApiError> {
    let shard = p.shard.ok_or_else(|| bad("shard is required"))?;
    e.pin(&shard, None, Instant::now()).map_err(|err| bad(err.to_string()))?;
    tracing::info!(shard = %shard, "replica unpinned");
    Ok(success(serde_json::json!({"shard": shard, "pinned": null})))
}
