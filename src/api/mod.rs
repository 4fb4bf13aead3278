//! The node's HTTP surface apart from `/federate`: the Prometheus API v1 endpoints (PromQL
//! queries, series and label lookups, metadata, status, targets), the topology as this node sees
//! it, health and readiness, `/metrics`, the web console at `/` and a plain status page at
//! `/status`; and the little a node serves while it starts ([`starting_router`]). Responses and
//! errors use Prometheus's JSON shapes; access control and CORS are the listener's (`http`).

mod console;
pub mod dedup;
mod json;
mod limit;
mod page;
mod params;
mod query;
mod series;
mod status;
mod targets;
mod topology;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::dedup::Elector;
use crate::metrics::Registry;
use crate::promql::Engine;
use crate::scrape::{MetricMetadata, TargetsSnapshot};
use crate::storage::Queryable;

pub use limit::{MAX_REQUEST_BODY, QueryLimiter, QueryLimits};
pub use page::NodeInfo;
pub use status::{HeadInfo, ShownConfig, StatusInfo};
pub use topology::{ClusterMap, SourceState};

/// What the API handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub node: Arc<NodeInfo>,
    pub registry: Arc<Registry>,
    /// Current targets (empty for nodes that do not scrape).
    pub targets: Arc<dyn Fn() -> TargetsSnapshot + Send + Sync>,
    /// `Ok` when the node can serve; otherwise the reason.
    pub ready: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
    /// The node's own storage, for PromQL and series lookups; `None` on nodes without one.
    pub storage: Option<Arc<dyn Queryable>>,
    /// The same storage without query-time dedup (a merge-mode global), for `dedup=false`.
    pub raw_storage: Option<Arc<dyn Queryable>>,
    /// Partial-response warnings added to every query answer (e.g. a shard with no healthy
    /// replica on a global).
    pub warnings: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    /// The PromQL engine and its limits.
    pub engine: Arc<Engine>,
    /// Current time in milliseconds (the default query time; a parameter so tests can fix it).
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Metric metadata seen by the scrapes: (family, metadata), repeated per target.
    pub metadata: Arc<dyn Fn() -> Vec<(String, MetricMetadata)> + Send + Sync>,
    pub status: Arc<StatusInfo>,
    /// Permits of the concurrent-query limit (PromQL, series and label lookups).
    pub queries: Arc<QueryLimiter>,
    /// The cluster this node belongs to, for `/api/v1/status/topology`; `None` outside a topology.
    pub cluster: Option<Arc<ClusterMap>>,
    /// What a global knows of the sources it pulls (empty on other nodes).
    pub sources: Arc<dyn Fn() -> Vec<SourceState> + Send + Sync>,
    /// The elections of a failover global, shown beside its sources.
    pub elector: Option<Arc<Elector>>,
}

impl ApiState {
    /// A state for a node that serves only its own pages: no storage, no targets.
    pub fn minimal(node: NodeInfo, registry: Arc<Registry>) -> ApiState {
        ApiState {
            node: Arc::new(node),
            registry,
            targets: Arc::new(TargetsSnapshot::default),
            ready: Arc::new(|| Ok(())),
            storage: None,
            raw_storage: None,
            warnings: Arc::new(Vec::new),
            engine: Arc::new(Engine::default()),
            clock: Arc::new(crate::model::now_ms),
            metadata: Arc::new(Vec::new),
            status: Arc::new(StatusInfo::default()),
            queries: QueryLimiter::new(QueryLimits::default(), &Registry::new()),
            cluster: None,
            sources: Arc::new(Vec::new),
            elector: None,
        }
    }
}

/// Routes everything but `/federate`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(console::index))
        .route("/console/{*file}", get(console::asset))
        .route("/status", get(page::index))
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/targets", get(targets::targets))
        .route("/api/v1/query", get(query::query).post(query::query))
        .route("/api/v1/query_range", get(query::query_range).post(query::query_range))
        .route("/api/v1/format_query", get(query::format_query).post(query::format_query))
        .route("/api/v1/parse_query", get(query::parse_query).post(query::parse_query))
        .route("/api/v1/series", get(series::series).post(series::series))
        .route("/api/v1/labels", get(series::label_names).post(series::label_names))
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/metadata", get(status::metadata))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route("/api/v1/status/topology", get(topology::topology))
        .with_state(state)
}

/// What a node serves on its port while it starts (its TSDB replaying the WAL, …), before
/// [`router`]'s routes: `/-/healthy` (alive, so a liveness probe does not kill a long replay),
/// `/-/ready` 503 saying what the node is doing, `/metrics` from `registry` (the replay's
/// progress), and 503 for everything else — as Prometheus answers while it starts.
pub fn starting_router(registry: Arc<Registry>, doing: Arc<dyn Fn() -> String + Send + Sync>) -> Router {
    let state = StartingState { registry, doing };
    Router::new()
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(starting_ready).head(starting_ready))
        .route("/metrics", get(starting_metrics))
        .fallback(starting_other)
        .with_state(state)
}

#[derive(Clone)]
struct StartingState {
    registry: Arc<Registry>,
    doing: Arc<dyn Fn() -> String + Send + Sync>,
}

async fn starting_ready(axum::extract::State(st): axum::extract::State<StartingState>) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("Service Unavailable: starting: {}\n", (st.doing)()))
        .into_response()
}

async fn starting_metrics(axum::extract::State(st): axum::extract::State<StartingState>) -> Response {
    ([(header::CONTENT_TYPE, crate::federate::TEXT_CONTENT_TYPE)], st.registry.render()).into_response()
}

async fn starting_other(
    axum::extract::State(st): axum::extract::State<StartingState>,
    uri: axum::http::Uri,
) -> Response {
    let message = format!("promtier is starting: {}", (st.doing)());
    if uri.path().starts_with("/api/") {
        ApiError { kind: ErrorType::Unavailable, message }.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("Service Unavailable: {message}\n")).into_response()
    }
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
    /// A request body over [`MAX_REQUEST_BODY`] (`bad_data`, status 413).
    TooLarge,
}

impl ErrorType {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Unavailable => "unavailable",
            ErrorType::Internal => "internal",
            ErrorType::NotFound => "not_found",
            ErrorType::TooLarge => "bad_data",
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
            ErrorType::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
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
