//! The node's HTTP surface apart from `/federate`: the Prometheus API v1 endpoints a node serves
//! (`/api/v1/targets` today), health and readiness, `/metrics`, and the HTML status page. Errors
//! use Prometheus's JSON shape.

pub mod dedup;
mod page;
mod targets;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::metrics::Registry;
use crate::scrape::TargetsSnapshot;

pub use page::NodeInfo;

/// What the API handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub node: Arc<NodeInfo>,
    pub registry: Arc<Registry>,
    /// Current targets (empty for nodes that do not scrape).
    pub targets: Arc<dyn Fn() -> TargetsSnapshot + Send + Sync>,
    /// `Ok` when the node can serve; otherwise the reason.
    pub ready: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
}

/// Routes everything but `/federate`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/targets", get(targets::targets))
        .with_state(state)
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods(tower_http::cors::Any),
        )
}

async fn healthy() -> &'static str {
    "promtier is Healthy.\n"
}

async fn ready(axum::extract::State(st): axum::extract::State<ApiState>) -> Response {
    match (st.ready)() {
        Ok(()) => "promtier is Ready.\n".into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("Service Unavailable: {reason}\n")).into_response()
        }
    }
}

async fn metrics(axum::extract::State(st): axum::extract::State<ApiState>) -> Response {
    let body = st.registry.render();
    ([(header::CONTENT_TYPE, crate::federate::TEXT_CONTENT_TYPE)], body).into_response()
}

/// Prometheus's API error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Unavailable,
    Internal,
    NotFound,
}

impl ErrorType {
    fn as_str(&self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Unavailable => "unavailable",
            ErrorType::Internal => "internal",
            ErrorType::NotFound => "not_found",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// An API error: shown to the user in Prometheus's shape; internal ones are also logged.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.kind == ErrorType::Internal {
            tracing::error!(error = %self.message, "internal API error");
        }
        let body =
            serde_json::json!({"status": "error", "errorType": self.kind.as_str(), "error": self.message});
        (self.kind.status(), Json(body)).into_response()
    }
}

/// A successful API response: `{"status":"success","data":…}`.
pub(crate) fn success<T: Serialize>(data: T) -> Response {
    Json(serde_json::json!({"status": "success", "data": data})).into_response()
}
