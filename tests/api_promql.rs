//! The PromQL HTTP API through the router, without sockets: Prometheus's JSON shapes, error
//! types and status codes (bad PromQL is `400 bad_data` with a position, a query over the
//! sample limit is `422 execution`, and the node keeps answering), POST forms, `match[]`
//! lookups, status endpoints and CORS; request bodies over the limit are `413`, and queries
//! beyond the concurrent-query limit and its queue are `503` with `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use promtier::api::{
    ApiState, HeadInfo, MAX_REQUEST_BODY, NodeInfo, QueryLimiter, QueryLimits, StatusInfo, router,
};
use promtier::metrics::Registry;
use promtier::model::Labels;
use promtier::promql::{Engine, EngineOptions};
use promtier::promqltest::{load, parse_series_line};
use promtier::scrape::MetricMetadata;
use promtier::topology::WebConfig;
use promtier::tsdb::Head;
use serde_json::Value;
use tower::ServiceExt;

/// A router over a head holding 200 `load{i=…}` series and a small counter, every 15s for 10m
/// (t = 0 … 600s), with the sample limit set to `max_samples`.
fn app(max_samples: usize) -> Router {
    let head = Arc::new(Head::default());
    let mut series = Vec::new();
    for i in 0..200 {
        series.push(parse_series_line(&format!("load{{i=\"{i}\", job=\"j\"}} 0+{i}x40")).expect("series"));
    }
    series.push(parse_series_line("http_requests_total{code=\"200\"} 0+10x40").expect("series"));
    series.push(parse_series_line("http_requests_total{code=\"500\"} 0+1x40").expect("series"));
    load(&*head, Duration::from_secs(15), &series).expect("load");
    let node = NodeInfo {
        name: "test".into(),
        role: "leaf".into(),
        cluster: "c".into(),
        external_labels: Labels::empty(),
        started: SystemTime::now(),
    };
    let mut state = ApiState::minimal(node, Arc::new(Registry::new()));
    let h = head.clone();
    let head_info = move |limit| HeadInfo {
        series: h.stats().series,
        chunks: h.stats().chunks,
        min_time: h.min_time(),
        max_time: h.max_time(),
        cardinality: h.cardinality(limit),
    };
    state.status = Arc::new(StatusInfo { head: Some(Arc::new(head_info)), ..StatusInfo::default() });
    state.storage = Some(head);
    state.engine = Arc::new(Engine::new(EngineOptions { max_samples, ..EngineOptions::default() }));
    state.clock = Arc::new(|| 600_000);
    router(state)
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value, axum::http::HeaderMap) {
    let resp = app.clone().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, json, headers)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (s, j, _) = call(app, Request::get(uri).body(Body::empty()).expect("request")).await;
    (s, j)
}

fn enc(q: &str) -> String {
    url::form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

#[tokio::test]
async fn instant_query_in_prometheus_shape() {
    let app = app(1_000_000);
    let (status, j) =
        get(&app, &format!("/api/v1/query?query={}&time=600", enc("http_requests_total{code=\"200\"}")))
            .await;
    assert_eq!(status, StatusCode::OK, "{j}");
    assert_eq!(
        j,
        serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "http_requests_total", "code": "200"}, "value": [600, "400"]}
        ]}})
    );
    // The default time is "now" (the state's clock: 600s).
    let (_, j) =
        get(&app, &format!("/api/v1/query?query={}", enc("sum(rate(http_requests_total[1m]))"))).await;
    assert_eq!(j["data"]["result"][0]["value"], serde_json::json!([600, "0.7333333333333333"]));
    let (_, j) = get(&app, "/api/v1/query?query=1%2B1&time=2023-11-14T22:13:20.5Z").await;
    assert_eq!(j["data"], serde_json::json!({"resultType": "scalar", "result": [1700000000.5, "2"]}));
    let (_, j) = get(&app, "/api/v1/query?query=%22hi%22&time=1.5").await;
    assert_eq!(j["data"], serde_json::json!({"resultType": "string", "result": [1.5, "hi"]}));
}

#[tokio::test]
async fn range_query_by_post_form_with_warnings() {
    let app = app(1_000_000);
    let body = format!("query={}&start=0&end=60&step=30s", enc("sort(http_requests_total)"));
    let req = Request::post("/api/v1/query_range")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request");
    let (status, j, _) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{j}");
    assert_eq!(j["data"]["resultType"], "matrix");
    assert_eq!(
        j["data"]["result"][0],
        serde_json::json!({"metric": {"__name__": "http_requests_total", "code": "200"},
                           "values": [[0, "0"], [30, "20"], [60, "40"]]})
    );
    assert_eq!(
        j["warnings"],
        serde_json::json!([
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)"
        ])
    );
}

#[tokio::test]
async fn bad_requests_are_bad_data_with_positions() {
    let app = app(1_000_000);
    let (status, j) = get(&app, &format!("/api/v1/query?query={}", enc("sum(rate(x[5m])"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(j["status"], "error");
    assert_eq!(j["errorType"], "bad_data");
    assert_eq!(
        j["error"],
        "invalid parameter \"query\": 1:16: parse error: unexpected end of input in aggregation, expected \",\" or \")\""
    );
    let (status, j) = get(&app, &format!("/api/v1/query?query={}", enc("rate(http_requests_total)"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        j["error"].as_str().is_some_and(|e| e.starts_with("invalid parameter \"query\": 1:6: parse error:")),
        "{j}"
    );
    let (status, j) = get(&app, &format!("/api/v1/query?query={}", enc("foo{a=~\"(\"}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{j}");
    let (status, j) = get(&app, "/api/v1/query?query=up&time=yesterday").await;
    assert_eq!((status, j["errorType"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_data")));
    assert_eq!(j["error"], "invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp");
    let (status, j) = get(&app, "/api/v1/query_range?query=up&start=0&end=100000&step=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        j["error"],
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
    );
    let (status, j) =
        get(&app, &format!("/api/v1/query_range?query={}&start=0&end=60&step=15", enc("up[5m]"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        j["error"],
        "invalid parameter \"query\": invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
    );
}

#[tokio::test]
async fn sample_limit_is_an_execution_error_and_the_node_keeps_serving() {
    let app = app(1000);
    let (status, j) = get(&app, &format!("/api/v1/query?query={}&time=600", enc("sum(load)"))).await;
    assert_eq!(status, StatusCode::OK, "200 series fit: {j}");
    // 200 series x 40 samples of raw data held at once.
    let (status, j) = get(&app, &format!("/api/v1/query?query={}&time=600", enc("load[10m]"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{j}");
    assert_eq!(j["errorType"], "execution");
    assert_eq!(j["error"], "query processing would load too many samples into memory in query execution");
    let (status, _) = get(&app, &format!("/api/v1/query?query={}&time=600", enc("count(load)"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, j) =
        get(&app, &format!("/api/v1/query?query={}&time=600&timeout=0.000001", enc("sum(load)"))).await;
    assert_eq!((status, j["errorType"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("timeout")), "{j}");
}

#[tokio::test]
async fn series_and_label_lookups() {
    let app = app(1_000_000);
    let (status, j) = get(
        &app,
        &format!("/api/v1/series?match[]={}&match[]={}", enc("http_requests_total"), enc("load{i=\"7\"}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{j}");
    assert_eq!(
        j["data"],
        serde_json::json!([
            {"__name__": "http_requests_total", "code": "200"},
            {"__name__": "http_requests_total", "code": "500"},
            {"__name__": "load", "i": "7", "job": "j"}
        ])
    );
    let (status, j) = get(&app, "/api/v1/series").await;
    assert_eq!(
        (status, j["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("no match[] parameter provided"))
    );
    let (_, j) = get(&app, "/api/v1/labels").await;
    assert_eq!(j["data"], serde_json::json!(["__name__", "code", "i", "job"]));
    let (_, j) = get(&app, &format!("/api/v1/labels?match[]={}", enc("http_requests_total"))).await;
    assert_eq!(j["data"], serde_json::json!(["__name__", "code"]));
    let (_, j) = get(&app, "/api/v1/label/__name__/values").await;
    assert_eq!(j["data"], serde_json::json!(["http_requests_total", "load"]));
    let (_, j) = get(&app, "/api/v1/label/i/values?limit=2").await;
    assert_eq!(j["data"], serde_json::json!(["0", "1"]));
    assert_eq!(j["warnings"], serde_json::json!(["results truncated due to limit"]));
    // Before the data starts there is nothing.
    let (_, j) = get(
        &app,
        &format!("/api/v1/label/code/values?start=-100&end=-10&match[]={}", enc("http_requests_total")),
    )
    .await;
    assert_eq!(j["data"], serde_json::json!([]));
}

#[tokio::test]
async fn status_endpoints_and_cors_allowlist() {
    let app = app(1_000_000);
    for path in [
        "/api/v1/status/buildinfo",
        "/api/v1/status/runtimeinfo",
        "/api/v1/status/flags",
        "/api/v1/status/config",
        "/api/v1/metadata",
    ] {
        let (status, j) = get(&app, path).await;
        assert_eq!((status, j["status"].as_str()), (StatusCode::OK, Some("success")), "{path}: {j}");
    }
    let (_, j) = get(&app, "/api/v1/status/tsdb?limit=1").await;
    assert_eq!(j["data"]["headStats"]["numSeries"], 202);
    assert_eq!(j["data"]["seriesCountByMetricName"], serde_json::json!([{"name": "load", "value": 200}]));
    let (_, j) = get(&app, &format!("/api/v1/format_query?query={}", enc("sum(rate(x[5m]))by(job)"))).await;
    assert_eq!(j["data"], "sum by (job) (rate(x[5m]))");
    let (_, j) = get(&app, &format!("/api/v1/parse_query?query={}", enc("up == 1"))).await;
    assert_eq!(j["data"]["type"], "binaryExpr");
    // Same origin only by default: no CORS permission for another origin.
    let default_web = promtier::http::protect(app.clone(), &WebConfig::default()).expect("protect");
    let cross = |origin: &str| {
        Request::get("/api/v1/query?query=1")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .expect("request")
    };
    let (_, _, headers) = call(&default_web, cross("https://grafana.example")).await;
    assert_eq!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
    // `web.cors_origin` allows the origins it matches, as Prometheus's --web.cors.origin.
    let web =
        WebConfig { cors_origin: Some(r"^(?:https://grafana\.example)$".into()), ..WebConfig::default() };
    let allowed = promtier::http::protect(app.clone(), &web).expect("protect");
    let (_, _, headers) = call(&allowed, cross("https://grafana.example")).await;
    assert_eq!(
        headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).and_then(|v| v.to_str().ok()),
        Some("https://grafana.example")
    );
    let (_, _, headers) = call(&allowed, cross("https://evil.example")).await;
    assert_eq!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
}

#[tokio::test]
async fn metadata_from_the_scrapes() {
    let node = NodeInfo {
        name: "test".into(),
        role: "leaf".into(),
        cluster: "c".into(),
        external_labels: Labels::empty(),
        started: SystemTime::now(),
    };
    let mut state = ApiState::minimal(node, Arc::new(Registry::new()));
    let counter = MetricMetadata {
        kind: promtier::model::MetricType::Counter,
        help: "Requests.".into(),
        unit: String::new(),
    };
    let gauge = MetricMetadata {
        kind: promtier::model::MetricType::Gauge,
        help: "Temp.".into(),
        unit: "celsius".into(),
    };
    let (c, g) = (counter.clone(), gauge.clone());
    // Two targets report the counter identically: one entry.
    state.metadata = Arc::new(move || {
        vec![("req_total".into(), c.clone()), ("req_total".into(), c.clone()), ("temp".into(), g.clone())]
    });
    let app = router(state);
    let (_, j) = get(&app, "/api/v1/metadata").await;
    assert_eq!(
        j["data"],
        serde_json::json!({
            "req_total": [{"type": "counter", "help": "Requests.", "unit": ""}],
            "temp": [{"type": "gauge", "help": "Temp.", "unit": "celsius"}]
        })
    );
    let (_, j) = get(&app, "/api/v1/metadata?metric=temp").await;
    assert_eq!(j["data"].as_object().map(|o| o.len()), Some(1));
    let (_, j) = get(&app, "/api/v1/metadata?limit=1").await;
    assert_eq!(j["data"].as_object().map(|o| o.len()), Some(1));
}

#[tokio::test]
async fn request_bodies_over_the_limit_are_413() {
    let app = app(1_000_000);
    let form = |body: Body| {
        Request::post("/api/v1/query")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .expect("request")
    };
    // Over the limit by one byte, without a Content-Length header: the body reader stops it.
    let mut big = b"query=".to_vec();
    big.resize(MAX_REQUEST_BODY + 1, b'1');
    let (status, j, _) = call(&app, form(Body::from(big))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{j}");
    assert_eq!(j["status"], "error");
    assert_eq!(j["errorType"], "bad_data");
    assert_eq!(j["error"], format!("request body too large: the limit is {MAX_REQUEST_BODY} bytes"));
    // A Content-Length over the limit is refused before reading.
    let declared = Request::post("/api/v1/series")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, (MAX_REQUEST_BODY + 1).to_string())
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = call(&app, declared).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Within the limit, a form works as before.
    let (status, j, _) = call(&app, form(Body::from("query=1%2B1&time=600"))).await;
    assert_eq!(status, StatusCode::OK, "{j}");
}

/// A storage whose queriers wait until the gate opens: queries that hold their permit as long as
/// the test wants.
struct Gated {
    inner: Arc<Head>,
    open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl promtier::storage::Queryable for Gated {
    fn querier(
        &self,
        mint: i64,
        maxt: i64,
    ) -> Result<Box<dyn promtier::storage::Querier>, promtier::storage::StorageError> {
        let (lock, cv) = &*self.open;
        let mut open = lock.lock().expect("gate");
        while !*open {
            open = cv.wait(open).expect("gate");
        }
        drop(open);
        self.inner.querier(mint, maxt)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_beyond_the_limit_and_its_queue_are_503_with_retry_after() {
    let head = Arc::new(Head::default());
    let series = [parse_series_line("m{a=\"1\"} 1+1x10").expect("series")];
    load(&*head, Duration::from_secs(15), &series).expect("load");
    let open = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let node = NodeInfo {
        name: "test".into(),
        role: "leaf".into(),
        cluster: "c".into(),
        external_labels: Labels::empty(),
        started: SystemTime::now(),
    };
    let registry = Arc::new(Registry::new());
    let mut state = ApiState::minimal(node, registry.clone());
    state.storage = Some(Arc::new(Gated { inner: head, open: open.clone() }));
    state.clock = Arc::new(|| 150_000);
    let limits = QueryLimits { max_concurrency: 2, max_queued: 1, queue_timeout: Duration::from_secs(60) };
    state.queries = QueryLimiter::new(limits, &registry);
    let app = router(state);
    let gauge = |name: &str| -> Option<f64> {
        let text = String::from_utf8(registry.render()).ok()?;
        text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
    };
    // Two queries run (and wait at the gate), a third waits for a permit.
    let mut running = Vec::new();
    for _ in 0..3 {
        let app = app.clone();
        running.push(tokio::spawn(async move { get(&app, "/api/v1/query?query=m&time=150").await }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while gauge("prometheus_engine_queries") != Some(3.0)
        || gauge("promtier_engine_queries_waiting") != Some(1.0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "three queries never got in:\n{:?}",
            gauge("prometheus_engine_queries")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gauge("prometheus_engine_queries_concurrent_max"), Some(2.0));
    // The queue is full: every further query or lookup is refused at once.
    for uri in [
        "/api/v1/query?query=m&time=150",
        "/api/v1/query_range?query=m&start=0&end=150&step=15",
        "/api/v1/labels",
        "/api/v1/series?match[]=m",
    ] {
        let (status, j, headers) = call(&app, Request::get(uri).body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {j}");
        assert_eq!(headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("5"), "{uri}");
        assert_eq!(j["status"], "error");
        assert_eq!(j["errorType"], "unavailable");
        let msg = j["error"].as_str().unwrap_or("");
        assert!(msg.starts_with("too many concurrent queries (2 running, 1 waiting"), "{msg}");
    }
    // What does not query is not limited.
    let (status, _) = get(&app, "/api/v1/status/buildinfo").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(registry.render()).expect("utf8");
    assert!(text.contains("promtier_engine_queries_rejected_total{reason=\"queue_full\"} 4"), "{text}");
    // Open the gate: the three queries that got in answer.
    *open.0.lock().expect("gate") = true;
    open.1.notify_all();
    for r in running {
        let (status, j) = r.await.expect("query task");
        assert_eq!(status, StatusCode::OK, "{j}");
    }
    assert_eq!(gauge("prometheus_engine_queries"), Some(0.0));
}

#[tokio::test]
async fn the_timeout_holds_along_the_steps_of_wide_subquery_windows() {
    // ~10k steps of 1-day windows of 1 s subquery points: minutes of work; 200 ms allowed.
    let app = app(1_000_000);
    let started = std::time::Instant::now();
    let q = enc("stddev_over_time(vector(time())[1d:1s])");
    let (status, j) =
        get(&app, &format!("/api/v1/query_range?query={q}&start=0&end=600000&step=60&timeout=200ms")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{j}");
    assert_eq!(j["errorType"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}
