//! `/federate` with Prometheus's semantics: the union of the `match[]` selectors, each series'
//! latest sample within the lookback window (stale series omitted), explicit timestamps, an
//! `instance` label on every series, the node's external labels where a series lacks them, text
//! format 0.0.4, gzip on request.

use std::collections::{HashMap, HashSet};
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
    Coverage, Labels, METRIC_NAME, Matcher, MetricType, SelectorError, is_stale_nan, parse_selector,
};
use crate::storage::{LatestSample, Queryable, StorageError};

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

pub mod frontier;
pub mod stream;

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
    /// The fast link's cursor bookkeeping: how far nothing more can appear, and the rewinds for
    /// what was stored behind a cursor already handed out.
    pub frontier: Arc<frontier::Frontier>,
    /// What the node covers (targets up, series), sent in every stream header.
    pub coverage: Arc<dyn Fn() -> Coverage + Send + Sync>,
    /// Bounds of one fast-link response.
    pub page_limits: stream::PageLimits,
}

/// Routes `/federate` (GET and POST).
pub fn router(state: FederateState) -> Router {
    Router::new()
        .route("/federate", get(handle).post(handle))
        .route("/federate/stream", get(handle_stream))
        .with_state(state)
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
    let gzip = accepts_gzip(&headers);
    let now = (st.clock)();
    let rendered = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(64 * 1024);
        render(st.storage.as_ref(), &parsed, &st.external_labels, now, st.lookback, &mut out)?;
        if gzip {
            out = gzip_fast(&out).map_err(StorageError::Io)?;
        }
        Ok::<_, FederateError>(out)
    })
    .await;
    body_response(rendered, TEXT_CONTENT_TYPE, gzip, "federation")
}

/// The response for a body rendered on a blocking thread: the body with its content type (and
/// gzip encoding), or a 500 that names `what` failed (logged too).
fn body_response<E: std::fmt::Display>(
    rendered: Result<Result<Vec<u8>, E>, tokio::task::JoinError>,
    content_type: &'static str,
    gzip: bool,
    what: &str,
) -> Response {
    match rendered {
        Ok(Ok(body)) => {
            let mut resp = Response::new(Body::from(body));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if gzip {
                resp.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            resp
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "{what} failed");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed: {e}\n")).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "{what} task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

/// The output labels of one series: its own (without the name), the external labels it lacks,
/// and `instance=""` when it has none — all sorted by name, built by merging sorted lists.
fn series_pairs<'a>(labels: &'a Labels, externals: &[(&'a str, &'a str)], out: &mut Vec<(&'a str, &'a str)>) {
    with_external_labels(labels, externals, false, out);
    if !out.iter().any(|(n, _)| *n == "instance") {
        let at = out.partition_point(|(n, _)| *n < "instance");
        out.insert(at, ("instance", ""));
    }
}

/// A series' label pairs plus the external labels it lacks, sorted by name (a merge of two
/// sorted lists; the series' own value wins). Without the metric name unless `keep_name`.
pub(crate) fn with_external_labels<'a>(
    labels: &'a Labels,
    externals: &[(&'a str, &'a str)],
    keep_name: bool,
    out: &mut Vec<(&'a str, &'a str)>,
) {
    out.clear();
    for_each_with_external(labels, externals, keep_name, |n, v| out.push((n, v)));
}

/// Calls `f` for each pair of [`with_external_labels`], in order, without collecting them.
pub(crate) fn for_each_with_external<'a>(
    labels: &'a Labels,
    externals: &[(&'a str, &'a str)],
    keep_name: bool,
    mut f: impl FnMut(&'a str, &'a str),
) {
    let mut ext = externals.iter().copied().peekable();
    for l in labels.iter() {
        if l.name == METRIC_NAME && !keep_name {
            continue;
        }
        while let Some(e) = ext.peek().copied() {
            if e.0 < l.name {
                f(e.0, e.1);
                ext.next();
            } else {
                if e.0 == l.name {
                    ext.next(); // the series' own label wins
                }
                break;
            }
        }
        f(l.name, l.value);
    }
    for (n, v) in ext {
        f(n, v);
    }
}

/// `GET /federate/stream?match[]=…&since=<ms>[&probe=1][&v=2][&epoch=E&seq=S][&max_samples=N]`:
/// the fast link (see [`stream`]). `v=2` asks for the paged format with rewinds and coverage;
/// `epoch`/`seq` are what the client saw last; `max_samples` lowers the page size.
async fn handle_stream(
    State(st): State<FederateState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let mut since = None;
    let mut probe = false;
    let mut v1 = true;
    let (mut epoch, mut seq) = (None, None);
    let mut limits = st.page_limits;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let bad = |what: &str| (StatusCode::BAD_REQUEST, format!("{what} must be an integer, got {v:?}\n"));
        match k.as_ref() {
            "since" => match v.parse::<i64>() {
                Ok(t) => since = Some(t),
                Err(_) => return bad("since").into_response(),
            },
            "probe" => probe = v == "1" || v == "true",
            "v" => v1 = v != "2",
            "epoch" => match v.parse::<u64>() {
                Ok(e) => epoch = Some(e),
                Err(_) => return bad("epoch").into_response(),
            },
            "seq" => match v.parse::<u64>() {
                Ok(s) => seq = Some(s),
                Err(_) => return bad("seq").into_response(),
            },
            "max_samples" => match v.parse::<usize>() {
                Ok(n) if n > 0 => limits.max_samples = limits.max_samples.min(n),
                _ => return bad("max_samples (> 0)").into_response(),
            },
            _ => {}
        }
    }
    let Some(since) = since else {
        return (StatusCode::BAD_REQUEST, "since=<milliseconds> is required\n").into_response();
    };
    let mut parsed = Vec::new();
    for s in match_params(&query) {
        match parse_selector(&s) {
            Ok(m) => parsed.push(m),
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        }
    }
    if !(st.ready)() {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response();
    }
    let gzip = accepts_gzip(&headers);
    let seen = epoch.zip(seq);
    let rendered = tokio::task::spawn_blocking(move || {
        let now = (st.clock)();
        // The position is taken before the data is read: anything committed after it that the
        // read misses is either newer than the cursor or logged as a rewind.
        let pos = st.frontier.position(now, seen);
        let req = stream::PageRequest { since, now, limits, probe, v1 };
        let mut out = Vec::with_capacity(64 * 1024);
        let coverage = (st.coverage)();
        stream::encode_page(
            st.storage.as_ref(),
            &parsed,
            &st.external_labels,
            &req,
            &pos,
            coverage,
            &mut out,
        )?;
        if gzip {
            out = gzip_fast(&out).map_err(|e| stream::StreamError::Storage(StorageError::Io(e)))?;
        }
        Ok::<_, stream::StreamError>(out)
    })
    .await;
    let content_type = if v1 { stream::STREAM_CONTENT_TYPE } else { stream::STREAM_CONTENT_TYPE_V2 };
    body_response(rendered, content_type, gzip, "federation stream")
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().split(';').next() == Some("gzip")))
}

fn gzip_fast(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc =
        flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 8), flate2::Compression::fast());
    enc.write_all(body)?;
    enc.finish()
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
    let mut rows: Vec<LatestSample> = Vec::new();
    for (i, matchers) in selectors.iter().enumerate() {
        let found = querier.latest(matchers)?.into_iter().filter(|l| !is_stale_nan(l.sample.v));
        if i == 0 {
            rows.extend(found);
        } else {
            // Union: a series matched by several selectors is written once.
            let seen: HashSet<&Labels> = rows.iter().map(|r| r.labels.as_ref()).collect();
            let new: Vec<LatestSample> = found.filter(|l| !seen.contains(l.labels.as_ref())).collect();
            rows.extend(new);
        }
    }
    // Group by metric name in linear time; families come out sorted by name.
    let mut families: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        families.entry(r.labels.metric_name().unwrap_or("")).or_default().push(i);
    }
    let mut names: Vec<&str> = families.keys().copied().collect();
    names.sort_unstable();
    let externals: Vec<(&str, &str)> = external.iter().map(|l| (l.name, l.value)).collect();
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(16);
    for name in names {
        write_type_line(out, name, MetricType::Unknown);
        for &i in &families[name] {
            let r = &rows[i];
            series_pairs(&r.labels, &externals, &mut pairs);
            write_series_line(out, name, pairs.iter().copied(), r.sample.v, Some(r.sample.t));
        }
    }
    Ok(())
}
