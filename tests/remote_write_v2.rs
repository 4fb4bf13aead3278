//! Remote-Write 2.0 sending and metric metadata, against real receivers on 127.0.0.1.
//!
//! A promtier global behind a leaf that scrapes the demo exporter sends:
//! - Remote-Write 2.0 to another promtier leaf's `/api/v1/write` (our receiver speaks 2.0): the
//!   leaf ends up holding exactly the global's samples, and — from the metadata on the 2.0
//!   series alone — the demo families' type and help on its `/api/v1/metadata`, which the global
//!   itself learnt from its source's `/api/v1/metadata`;
//! - Remote-Write 2.0 to a real Prometheus 2.42 (`--web.enable-remote-write-receiver`), which
//!   only speaks 1.0: it answers 204 and stores nothing, and the global says so — in its log, on
//!   its status page and in `samples_failed_total` — naming `protobuf_message:
//!   prometheus.WriteRequest`, as Prometheus 3 treats such an answer;
//! - Remote-Write 1.0 with `metadata_config` to the same Prometheus, which accepts the metadata
//!   requests.
//!
//! A small in-test receiver then pins the answers no real peer here gives: a 415 to a 2.0
//! request, and a 2xx that says fewer samples were written than sent.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use promtier::model::{Labels, now_ms};

type Series = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

const BOUND: Duration = Duration::from_secs(120);
const DEMO: &str = "{__name__=~\"demo_.+\"}";
const DEMO_URL: &str = "%7B__name__%3D~%22demo_.%2B%22%7D";

/// What the global stores of the demo series in `[from, to]` (non-NaN samples), read through
/// its fast link (which adds its external label `tier="global"`, as the sender does).
fn global_series(global: SocketAddr, from: i64, to: i64) -> Option<Series> {
    Some(
        try_stored(global, DEMO_URL, from - 1)?
            .into_iter()
            .map(|(l, s): (Labels, Vec<(i64, f64)>)| {
                let labels = l.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect();
                (labels, window(&s, from, to))
            })
            .filter(|(_, s): &(_, Vec<_>)| !s.is_empty())
            .collect(),
    )
}

fn window(s: &[(i64, f64)], from: i64, to: i64) -> Vec<(i64, u64)> {
    s.iter().filter(|(t, v)| *t >= from && *t <= to && !v.is_nan()).map(|(t, v)| (*t, v.to_bits())).collect()
}

/// Raw samples of the demo series a node holds in `[from, to]`, through a PromQL range selector
/// (which shows the labels as stored: the receiving leaf adds none of its own).
fn query_series(node: SocketAddr, from: i64, to: i64) -> Option<Series> {
    let secs = (to - from) / 1000 + 2;
    let q: String = url::form_urlencoded::byte_serialize(format!("{DEMO}[{secs}s]").as_bytes()).collect();
    let data = api_data(node, &format!("/api/v1/query?query={q}&time={}", to as f64 / 1000.0))?;
    let mut out = Series::new();
    for s in data["result"].as_array()? {
        let mut labels: Vec<(String, String)> = s["metric"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        labels.sort();
        let samples = s["values"]
            .as_array()?
            .iter()
            .map(|p| Some(((p[0].as_f64()? * 1000.0).round() as i64, p[1].as_str()?.parse::<f64>().ok()?)))
            .collect::<Option<Vec<_>>>()?;
        let w = window(&samples, from, to);
        if !w.is_empty() {
            out.insert(labels, w);
        }
    }
    Some(out)
}

/// `metric` → its `(type, help)` entries on a node's `/api/v1/metadata`.
fn metadata(node: SocketAddr) -> BTreeMap<String, Vec<(String, String)>> {
    let Some(data) = api_data(node, "/api/v1/metadata") else { return BTreeMap::new() };
    let Some(families) = data.as_object() else { return BTreeMap::new() };
    families
        .iter()
        .map(|(name, list)| {
            let entries = list
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|m| {
                            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
                            (s("type"), s("help"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            (name.clone(), entries)
        })
        .collect()
}

/// The value of the first sample line of `/metrics` starting with `prefix`, or -1.
fn metric(addr: SocketAddr, prefix: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics", Duration::from_secs(10)).unwrap_or_default();
    value(&body, prefix)
}

fn value(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn global_sends_v2_with_metadata_to_a_leaf_and_names_a_receiver_that_only_speaks_1_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(5);
    let (demo_port, leaf_port, sink_port, global_port, dead_port) =
        (base, base + 1, base + 2, base + 3, base + 4);
    let prom = Prometheus::start_with_args(
        "global: {scrape_interval: 15s}\n",
        &|_| vec!["--web.enable-remote-write-receiver".to_string()],
        &|a| matches!(http_get(a, "/-/ready", Duration::from_secs(2)), Ok((200, _))),
    );
    let queue = "queue_config: {batch_send_deadline: 1s, min_backoff: 30ms, max_backoff: 1s, max_samples_per_send: 500}";
    let topology = dir.path().join("t.yaml");
    // The sink leaf scrapes nothing that answers: all its metadata comes by remote write.
    std::fs::write(
        &topology,
        format!(
            "cluster: rw2\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 1, listen: '127.0.0.1:{demo_port}', series: 30}}\n\
             jobs:\n\
             \x20 - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo_port}']}}]\n\
             \x20 - job_name: nothing\n    static_configs: [{{targets: ['127.0.0.1:{dead_port}']}}]\n\
             leaves:\n\
             \x20 - {{group: apps, jobs: [demo], listen: '127.0.0.1:{leaf_port}'}}\n\
             \x20 - {{group: sink, jobs: [nothing], listen: '127.0.0.1:{sink_port}'}}\n\
             globals:\n  - name: global\n    from: [apps]\n    listen: '127.0.0.1:{global_port}'\n\
             \x20   external_labels: {{tier: global}}\n\
             \x20   federate: {{interval: 1s, timeout: 900ms}}\n    dedup: {{mode: failover, failover_timeout: 3s}}\n\
             \x20   remote_write:\n\
             \x20     - {{url: 'http://127.0.0.1:{sink_port}/api/v1/write', name: sink, protobuf_message: io.prometheus.write.v2.Request, {queue}}}\n\
             \x20     - {{url: 'http://{prom}/api/v1/write', name: prom-v2, protobuf_message: io.prometheus.write.v2.Request, {queue}}}\n\
             \x20     - {{url: 'http://{prom}/api/v1/write', name: prom-v1, metadata_config: {{send_interval: 1s}}, {queue}}}\n",
            prom = prom.addr()
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    let log = dir.path().join("up.log");
    let _up = start_promtier("promtier up", &["up", t], &log);
    let global: SocketAddr = ([127, 0, 0, 1], global_port).into();
    let sink: SocketAddr = ([127, 0, 0, 1], sink_port).into();
    let logs = || {
        let s = std::fs::read_to_string(&log).unwrap_or_default();
        let n = s.len();
        s[n.saturating_sub(6000)..].to_string()
    };
    wait_until("demo series on the sink leaf", BOUND, logs, || {
        let now = now_ms();
        (query_series(sink, now - 30_000, now)?.len() >= 20).then_some(())
    });

    // 1. The sink holds exactly what the global stores.
    let from = now_ms();
    let to = from + 8_000;
    wait_until("the window to pass on the global", BOUND, logs, || {
        let newest = global_series(global, to - 30_000, i64::MAX)?
            .values()
            .filter_map(|s| s.last())
            .map(|x| x.0)
            .max();
        (newest? > to + 2_000).then_some(())
    });
    let last = std::cell::RefCell::new(String::new());
    wait_until(
        "the sink to hold the global's window",
        BOUND,
        || format!("{}\n{}", last.borrow(), logs()),
        || {
            let (g, s) = (global_series(global, from, to)?, query_series(sink, from, to)?);
            if g.len() >= 20 && g == s {
                return Some(());
            }
            let missing: Vec<_> = g.keys().filter(|k| !s.contains_key(*k)).take(3).collect();
            let extra: Vec<_> = s.keys().filter(|k| !g.contains_key(*k)).take(3).collect();
            let differ: Vec<_> = g
                .iter()
                .filter(|(k, v)| s.get(*k).is_some_and(|x| x != *v))
                .map(|(k, _)| k)
                .take(3)
                .collect();
            *last.borrow_mut() = format!(
                "global {} series, sink {}: missing {missing:?}, extra {extra:?}, different samples {differ:?}",
                g.len(),
                s.len()
            );
            None
        },
    );
    assert!(
        query_series(sink, from, to)
            .expect("sink")
            .keys()
            .all(|l| l.contains(&("tier".into(), "global".into()))),
        "every series carries the global's external label"
    );

    // 2. Metadata: the global learnt it from its source, the sink from the 2.0 series.
    let want_counter =
        ("counter".to_string(), "Requests served, by method, path and status code.".to_string());
    let want_histogram = ("histogram".to_string(), "Request latency.".to_string());
    for (who, node) in [("global", global), ("sink", sink)] {
        wait_until(&format!("demo metadata on the {who}'s /api/v1/metadata"), BOUND, logs, || {
            let m = metadata(node);
            (m.get("demo_http_requests_total")?.contains(&want_counter)
                && m.get("demo_http_request_duration_seconds")?.contains(&want_histogram))
            .then_some(())
        });
    }
    assert!(metric(sink, "promtier_remote_write_received_metadata_total") > 0.0);
    assert_eq!(metric(global, "prometheus_remote_storage_samples_failed_total{remote_name=\"sink\""), 0.0);

    // 3. 2.0 to a receiver that only speaks 1.0: refused for good, and said so.
    wait_until("the prom-v2 queue to count its samples failed", BOUND, logs, || {
        (metric(global, "prometheus_remote_storage_samples_failed_total{remote_name=\"prom-v2\"") > 0.0)
            .then_some(())
    });
    let fix = "set `protobuf_message: prometheus.WriteRequest` on this remote_write endpoint";
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let line = log_text
        .lines()
        .find(|l| l.contains("does not speak Remote-Write 2.0"))
        .unwrap_or_else(|| panic!("no log line names the cause:\n{}", logs()));
    assert!(line.contains(fix) && line.contains(&prom.addr().to_string()), "{line}");
    let (_, page) = http_get(global, "/status", Duration::from_secs(10)).expect("status page");
    assert!(
        page.contains("does not speak Remote-Write 2.0")
            && page.contains("protobuf_message: prometheus.WriteRequest"),
        "{page}"
    );
    assert!(page.contains("<td>2.0</td>") && page.contains("<td>1.0</td>"), "protocol column: {page}");
    // The 1.0 queue to the same Prometheus delivers its samples and its metadata.
    wait_until("metadata sent to Prometheus over 1.0", BOUND, logs, || {
        (metric(global, "prometheus_remote_storage_metadata_total{remote_name=\"prom-v1\"") > 0.0)
            .then_some(())
    });
    for m in ["samples_failed_total", "metadata_failed_total"] {
        let v = metric(global, &format!("prometheus_remote_storage_{m}{{remote_name=\"prom-v1\""));
        assert_eq!(v, 0.0, "{m}");
    }
    prom.wait_for("the 1.0 queue's samples in Prometheus", BOUND, |p| {
        let q: String = url::form_urlencoded::byte_serialize(format!("count({DEMO})").as_bytes()).collect();
        let n = p.api(&format!("/api/v1/query?query={q}"))["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()?;
        (n >= 20.0).then_some(())
    });
}

/// A receiver answering every request with one status and `X-Prometheus-Remote-Write-*`
/// headers, counting the requests.
#[derive(Clone)]
struct Answer {
    status: u16,
    written: Option<u64>,
    body: &'static str,
}

/// Runs one 2.0 queue over a real TSDB holding `n` samples against a receiver giving `answer`
/// until it got `requests` requests; returns the queue's status and the node's `/metrics`.
fn run_against(answer: Answer, n: i64) -> (promtier::remote::send::QueueStatus, String, usize) {
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let got = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
        let g = got.clone();
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let (g, a) = (g.clone(), answer.clone());
                async move {
                    use axum::response::IntoResponse;
                    let ct =
                        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    g.lock().push(ct);
                    let code = axum::http::StatusCode::from_u16(a.status).expect("status");
                    let mut resp = (code, a.body).into_response();
                    if let Some(w) = a.written {
                        resp.headers_mut().insert("X-Prometheus-Remote-Write-Samples-Written", w.into());
                    }
                    resp
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = tokio_util::sync::CancellationToken::new();
        let s2 = stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(s2.cancelled_owned()).await.expect("serve")
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let db = promtier::tsdb::Db::open(dir.path(), promtier::tsdb::DbOptions::default()).expect("db");
        {
            use promtier::storage::Appendable;
            let mut app = db.appender();
            let l = Labels::from_pairs(&[("__name__", "x"), ("job", "j")]);
            for t in 0..n {
                app.append(None, &l, 1_000 + t * 1000, t as f64).expect("append");
            }
            app.commit().expect("commit");
        }
        let cfg = promtier::topology::RemoteWriteConfig {
            url: format!("http://{addr}/api/v1/write"),
            name: Some("test".into()),
            remote_timeout: Duration::from_secs(10),
            headers: Vec::new(),
            client: Default::default(),
            write_relabel_configs: Vec::new(),
            queue: promtier::topology::QueueConfig {
                batch_send_deadline: Duration::from_millis(100),
                ..Default::default()
            },
            protobuf_message: promtier::topology::ProtobufMessage::RequestV2,
            metadata: Default::default(),
        };
        let registry = promtier::metrics::Registry::new();
        let queues = promtier::remote::send::queues(
            &[cfg],
            &Labels::default(),
            dir.path(),
            db.wal_dir(),
            db.wal_holds(),
            &registry,
            None,
        )
        .expect("queues");
        let queue = queues[0].clone();
        let run = tokio::spawn(promtier::remote::send::run_all(queues, stop.clone()));
        let deadline = Instant::now() + BOUND;
        while queue.status().last_error.is_none() || got.lock().is_empty() {
            assert!(Instant::now() < deadline, "timed out: {:?}", got.lock());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Nothing more is retried: give a retry the time to show up if there were one.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        run.await.expect("queues stop");
        server.await.expect("server stops");
        let requests = got.lock().clone();
        assert!(
            requests.iter().all(|ct| ct == "application/x-protobuf;proto=io.prometheus.write.v2.Request"),
            "{requests:?}"
        );
        (queue.status(), String::from_utf8(registry.render()).expect("utf8"), requests.len())
    })
}

#[test]
fn a_415_to_2_0_names_the_fix_and_a_short_write_counts_the_rest_failed() {
    let (status, metrics, requests) =
        run_against(Answer { status: 415, written: None, body: "unsupported proto" }, 100);
    assert_eq!(requests, 1, "a 415 is not retried (Prometheus 3 drops the request too)");
    let e = status.last_error.expect("last_error");
    assert!(
        e.contains("the receiver does not accept Remote-Write 2.0")
            && e.contains("415")
            && e.contains("unsupported proto")
            && e.contains("set `protobuf_message: prometheus.WriteRequest`"),
        "{e}"
    );
    assert_eq!(value(&metrics, "prometheus_remote_storage_samples_failed_total"), 100.0, "{metrics}");
    assert_eq!(value(&metrics, "prometheus_remote_storage_samples_retried_total"), 0.0, "{metrics}");

    // A 2.0 receiver that says it wrote 60 of 100 samples: accepted, 40 counted failed.
    let (status, metrics, requests) = run_against(Answer { status: 204, written: Some(60), body: "" }, 100);
    assert_eq!(requests, 1);
    let e = status.last_error.expect("last_error");
    assert!(e.contains("40 samples not written") && e.contains("wrote only 60 of 100"), "{e}");
    assert_eq!(value(&metrics, "prometheus_remote_storage_samples_total"), 100.0, "{metrics}");
    assert_eq!(value(&metrics, "prometheus_remote_storage_samples_failed_total"), 40.0, "{metrics}");
}
