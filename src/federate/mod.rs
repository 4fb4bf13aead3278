//! `/federate` with Prometheus's semantics: the union of the `match[]` selectors, each series'
//! latest sample within the lookback window (stale series omitted), explicit timestamps, an
//! `instance` label on every series, the node's external labels where a series lacks them, text
//! format 0.0.4, gzip on request.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::exposition::{write_series_line, write_type_line};
use crate::model::{
    Labels, METRIC_NAME, Matcher, MetricType, Sample, SelectorError, is_stale_nan, parse_selector,
};
use crate::storage::{Queryable, StorageError};

/// Prometheus's default lookback delta.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(300);

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederateError {
    #[error(transparent)]
    BadSelector(#[from] SelectorError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Everything `/federate` needs.
#[derive(Clone)]
pub struct FederateState {
    pub storage: Arc<dyn Queryable>,
    /// Labels added to every series that lacks them.
    pub external_labels: Labels,
    pub lookback: Duration,
    /// Current time in milliseconds (a parameter so tests can fix it).
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Whether storage can serve reads (`503` otherwise).
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// Routes `/federate` (GET and POST).
pub fn router(state: FederateState) -> Router {
    Router::new().route("/federate", get(handle).post(handle)).with_state(state)
}

async fn handle(
    State(st): State<FederateState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: String,
) -> Response {
    // Selectors may come in the query string or, for POST, a form body.
    let mut selectors = match_params(query.as_deref().unwrap_or(""));
    selectors.extend(match_params(&body));
    let mut parsed = Vec::with_capacity(selectors.len());
    for s in &selectors {
        match parse_selector(s) {
            Ok(m) => parsed.push(m),
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        }
    }
    if !(st.ready)() {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response();
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().split(';').next() == Some("gzip")));
    let now = (st.clock)();
    let rendered = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(64 * 1024);
        render(st.storage.as_ref(), &parsed, &st.external_labels, now, st.lookback, &mut out)?;
        if gzip {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(out.len() / 8), flate2::Compression::fast());
            enc.write_all(&out).map_err(StorageError::Io)?;
            out = enc.finish().map_err(StorageError::Io)?;
        }
        Ok::<_, FederateError>(out)
    })
    .await;
    match rendered {
        Ok(Ok(body)) => {
            let mut resp = Response::new(Body::from(body));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_CONTENT_TYPE));
            if gzip {
                resp.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            resp
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "federation failed");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("federation failed: {e}\n")).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "federation task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

/// Every decoded `match[]` value of a query string or form body.
fn match_params(query: &str) -> Vec<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Renders the federation body for the union of `selectors` at time `now` (ms).
pub fn render(
    storage: &dyn Queryable,
    selectors: &[Vec<Matcher>],
    external: &Labels,
    now: i64,
    lookback: Duration,
    out: &mut Vec<u8>,
) -> Result<(), FederateError> {
    if selectors.is_empty() {
        return Ok(());
    }
    // Left-open lookback window (now - lookback, now], as in Prometheus 3.
    let mint = now - lookback.as_millis() as i64 + 1;
    let querier = storage.querier(mint, now)?;
    // Union of all selectors, keyed by (metric name, labels) so families come out grouped.
    let mut series: BTreeMap<(String, Arc<Labels>), Sample> = BTreeMap::new();
    for matchers in selectors {
        for l in querier.latest(matchers)? {
            if is_stale_nan(l.sample.v) {
                continue;
            }
            let name = l.labels.metric_name().unwrap_or("").to_string();
            series.entry((name, l.labels)).or_insert(l.sample);
        }
    }
    let mut current: Option<&str> = None;
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(16);
    for ((name, labels), sample) in &series {
        if current != Some(name.as_str()) {
            write_type_line(out, name, MetricType::Unknown);
            current = Some(name.as_str());
        }
        pairs.clear();
        pairs.extend(
            labels.iter().filter(|l| l.name != METRIC_NAME).map(|l| (l.name.as_str(), l.value.as_str())),
        );
        let own = pairs.len();
        for e in external.iter() {
            if !labels.has(&e.name) {
                pairs.push((&e.name, &e.value));
            }
        }
        if !pairs.iter().any(|(n, _)| *n == "instance") {
            pairs.push(("instance", ""));
        }
        if pairs.len() > own {
            pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        write_series_line(out, name, pairs.iter().copied(), sample.v, Some(sample.t));
    }
    Ok(())
}
