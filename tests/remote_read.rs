//! A global's `remote_read` against a real Prometheus (2.42): the global holds only recent data
//! (written to its `/api/v1/write`), an "old" Prometheus holds the older data (blocks made by
//! `promtool tsdb create-blocks-from openmetrics`, carrying the global's external label as a
//! store fed by the global would), and a reference Prometheus holds all of it. Across the
//! boundary — where the two stores overlap for 20 minutes — raw values, `increase()` and
//! `count_over_time()` from the global equal the reference's answers exactly, whether the old
//! store is asked only for what is older than local data (`read_recent: false`) or for every
//! range (`read_recent: true`): nothing is counted twice. A global whose store is unreachable
//! answers from its own data with a warning naming the store.
//!
//! Prometheus 2.x includes a sample exactly at a range's start (Prometheus 3, which promtier
//! follows, does not): evaluation times are off the 15 s sample grid, where both agree.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use promtier::remote::{codec, proto};
use prost::Message;
use serde_json::Value;

/// How long any one condition may take to come true.
const BOUND: Duration = Duration::from_secs(120);
const STEP_MS: i64 = 15_000;
/// Sample `k` is at `t0 + k * STEP_MS`; its value is `k` (a counter rising by 1 per sample).
const POINTS: i64 = 591; // 147.5 minutes
/// The old store holds samples 0..=OLD_LAST (the first 100 minutes)…
const OLD_LAST: i64 = 400;
/// …and the global LOCAL_FIRST..POINTS (from minute 80 on): they overlap on 320..=400.
const LOCAL_FIRST: i64 = 320;
const SERIES: &str = r#"rr_requests_total{instance="a",job="app"}"#;

/// OpenMetrics text of samples `ks`, with `extra` labels (`,name="value"`) on the series.
fn openmetrics(t0: i64, ks: impl Iterator<Item = i64>, extra: &str) -> String {
    let mut om = String::new();
    for k in ks {
        let t = t0 + k * STEP_MS;
        om.push_str(&format!(
            "rr_requests_total{{instance=\"a\",job=\"app\"{extra}}} {k} {}.{:03}\n",
            t / 1000,
            t % 1000
        ));
    }
    om.push_str("# EOF\n");
    om
}

/// A Prometheus holding `om` as blocks (no scrapes of its own).
fn prometheus_with(dir: &Path, name: &str, om: &str) -> Prometheus {
    let path = dir.join(format!("{name}.om"));
    std::fs::write(&path, om).expect("write OpenMetrics");
    Prometheus::start_with_data("global: {scrape_interval: 1h}\n", |data| {
        let out = Command::new(promtool_binary())
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&path)
            .arg(data)
            .output()
            .expect("run promtool tsdb create-blocks-from");
        assert!(out.status.success(), "promtool failed: {}", String::from_utf8_lossy(&out.stderr));
    })
}

/// The snappy `WriteRequest` of samples `ks` of the series (without the external label).
fn write_body(t0: i64, ks: impl Iterator<Item = i64>) -> Vec<u8> {
    let label = |n: &str, v: &str| proto::Label { name: n.into(), value: v.into() };
    let req = proto::WriteRequest {
        timeseries: vec![proto::TimeSeries {
            labels: vec![label("__name__", "rr_requests_total"), label("instance", "a"), label("job", "app")],
            samples: ks.map(|k| proto::Sample { value: k as f64, timestamp: t0 + k * STEP_MS }).collect(),
            ..Default::default()
        }],
        metadata: Vec::new(),
    };
    codec::compress(&req.encode_to_vec()).expect("snappy")
}

fn encode(q: &str) -> String {
    url::form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

/// The whole JSON answer of a GET (status checked by the caller).
fn get_json(addr: SocketAddr, path: &str) -> Option<Value> {
    let (_, body) = http_get(addr, path, Duration::from_secs(30)).ok()?;
    serde_json::from_str(&body).ok()
}

fn warnings(answer: &Value) -> Vec<String> {
    answer["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn remote_read_warnings(answer: &Value) -> Vec<String> {
    warnings(answer).into_iter().filter(|w| w.contains("remote_read")).collect()
}

/// The single value of an instant vector answer.
fn scalar_of(answer: &Value) -> Option<f64> {
    let r = answer["data"]["result"].as_array()?;
    if r.len() != 1 {
        return None;
    }
    r[0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_global_answers_older_ranges_from_a_remote_read_store_without_double_counting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = promtier::model::now_ms();
    let t0 = (now - 150 * 60_000) / STEP_MS * STEP_MS;

    // The stores: the old one with the global's external label, the reference with everything.
    let old = prometheus_with(dir.path(), "old", &openmetrics(t0, 0..=OLD_LAST, ",cluster=\"rr\""));
    let reference = prometheus_with(dir.path(), "reference", &openmetrics(t0, 0..POINTS, ""));

    // Three globals with the same local data: the old store asked for older ranges only, for
    // every range, and one whose store is not there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let leaf_port = free_port();
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: rr\n\
             defaults: {{data_dir: '{data}'}}\n\
             jobs:\n  - {{job_name: none, static_configs: [{{targets: ['{dead}']}}]}}\n\
             leaves:\n  - {{group: l, jobs: [none], listen: '127.0.0.1:{leaf_port}'}}\n\
             globals:\n\
             \x20 - name: older\n    from: [l]\n    listen: '127.0.0.1:{p0}'\n\
             \x20   remote_read: [{{url: 'http://{old}/api/v1/read', name: old, remote_timeout: 30s}}]\n\
             \x20 - name: recent\n    from: [l]\n    listen: '127.0.0.1:{p1}'\n\
             \x20   remote_read: [{{url: 'http://{old}/api/v1/read', name: old, read_recent: true}}]\n\
             \x20 - name: missing\n    from: [l]\n    listen: '127.0.0.1:{p2}'\n\
             \x20   remote_read: [{{url: 'http://{dead}/api/v1/read', name: gone, remote_timeout: 5s}}]\n",
            data = dir.path().join("data").display(),
            old = old.addr(),
            p0 = ports[0],
            p1 = ports[1],
            p2 = ports[2],
        ),
    )
    .expect("write topology");
    let t = topology.to_str().expect("utf8 path");
    let mut globals = Vec::new();
    for (name, port) in ["older", "recent", "missing"].iter().zip(&ports) {
        let log = dir.path().join(format!("{name}.log"));
        let guard = start_promtier(name, &["global", "--topology", t, "--node", &format!("{name}-a")], &log);
        let addr: SocketAddr = ([127, 0, 0, 1], *port).into();
        globals.push((*name, guard, addr, log));
    }
    let log_of = |i: usize| {
        let (name, _, _, log) = &globals[i];
        format!("--- {name} log ---\n{}", std::fs::read_to_string(log).unwrap_or_default())
    };

    // Each global gets the recent data through its own /api/v1/write.
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    for (i, (_, _, addr, _)) in globals.iter().enumerate() {
        let status = wait_until(
            "the global to take the recent samples",
            BOUND,
            || log_of(i),
            || {
                let resp = client
                    .post(format!("http://{addr}/api/v1/write"))
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .body(write_body(t0, LOCAL_FIRST..POINTS))
                    .send()
                    .ok()?;
                Some(resp.status().as_u16())
            },
        );
        assert_eq!(status, 204, "{}", log_of(i));
    }

    // Evaluation times off the sample grid; the last one a few seconds after the last sample.
    let off = 7_500;
    let last = t0 + (POINTS - 1) * STEP_MS + off;
    let start = t0 + 30 * 60_000 + off;
    let secs = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
    let ranges = [
        // Raw values across the whole span, every minute.
        (SERIES.to_string(), t0 + off, 60_000),
        (format!("increase({SERIES}[30m])"), start, 5 * 60_000),
        (format!("count_over_time({SERIES}[30m])"), start, 5 * 60_000),
        (format!("rate({SERIES}[10m])"), start, 150_000),
    ];
    let full = format!("count_over_time({SERIES}[3h])");
    for (i, (name, _, addr, _)) in globals.iter().enumerate().take(2) {
        // Everything is there: the count over the whole span is exact (591, not 591 + the 81
        // overlapping samples, nor the 271 local ones alone).
        let count = wait_until(
            "the global to answer over both stores",
            BOUND,
            || log_of(i),
            || {
                let a =
                    get_json(*addr, &format!("/api/v1/query?query={}&time={}", encode(&full), secs(last)))?;
                scalar_of(&a)
            },
        );
        assert_eq!(count, POINTS as f64, "{name}: samples counted over both stores\n{}", log_of(i));
        for (q, from, step) in &ranges {
            let path = format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                encode(q),
                secs(*from),
                secs(last),
                secs(*step)
            );
            let ours =
                get_json(*addr, &path).unwrap_or_else(|| panic!("{name}: no answer to {q}\n{}", log_of(i)));
            let theirs = get_json(reference.addr(), &path).expect("reference answer");
            assert_eq!(theirs["status"], "success", "{theirs}");
            assert_eq!(ours["status"], "success", "{name}: {ours}");
            assert!(remote_read_warnings(&ours).is_empty(), "{name}: {ours}");
            let points: usize = theirs["data"]["result"]
                .as_array()
                .map(|r| r.iter().map(|s| s["values"].as_array().map_or(0, Vec::len)).sum())
                .unwrap_or(0);
            assert!(points > 20, "{q}: the reference has {points} points");
            assert_eq!(ours["data"], theirs["data"], "{name}: {q} differs from the reference");
        }
        // Instant queries reaching across the boundary.
        for q in [format!("increase({SERIES}[2h])"), format!("count_over_time({SERIES}[70m])"), full.clone()]
        {
            let path = format!("/api/v1/query?query={}&time={}", encode(&q), secs(last - 20 * 60_000));
            let ours = get_json(*addr, &path).expect("answer");
            let theirs = get_json(reference.addr(), &path).expect("reference answer");
            assert_eq!(ours["data"], theirs["data"], "{name}: {q} differs from the reference");
        }
        eprintln!("{name}: every answer equals the reference's");
    }

    // The global's own remote-read endpoint serves the same merged view (as Prometheus's serves
    // its fanout storage): every sample once, with the global's external label.
    let req = proto::ReadRequest {
        queries: vec![proto::Query {
            start_timestamp_ms: t0,
            end_timestamp_ms: last,
            matchers: vec![proto::LabelMatcher {
                r#type: 0,
                name: "__name__".into(),
                value: "rr_requests_total".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![proto::RESPONSE_SAMPLES],
    };
    let resp = client
        .post(format!("http://{}/api/v1/read", globals[0].2))
        .header("Content-Encoding", "snappy")
        .body(codec::compress(&req.encode_to_vec()).expect("snappy"))
        .send()
        .expect("POST /api/v1/read");
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.bytes().expect("body");
    let read = proto::ReadResponse::decode(codec::decompress(&body, 1 << 26).expect("snappy").as_slice())
        .expect("ReadResponse");
    let series = &read.results[0].timeseries;
    assert_eq!(series.len(), 1, "{series:?}");
    assert!(
        series[0].labels.iter().any(|l| l.name == "cluster" && l.value == "rr"),
        "{:?}",
        series[0].labels
    );
    let ts: Vec<i64> = series[0].samples.iter().map(|s| s.timestamp).collect();
    assert_eq!(ts, (0..POINTS).map(|k| t0 + k * STEP_MS).collect::<Vec<_>>());

    // The store that is not there: the local answer, with a warning naming it, and a failure
    // counted; the query does not hang past the store's timeout.
    let (_, _, addr, _) = &globals[2];
    let answer = wait_until(
        "the global without its store to answer from local data",
        BOUND,
        || log_of(2),
        || {
            let a = get_json(*addr, &format!("/api/v1/query?query={}&time={}", encode(&full), secs(last)))?;
            (a["status"] == "success" && scalar_of(&a).is_some()).then_some(a)
        },
    );
    assert_eq!(scalar_of(&answer), Some((POINTS - LOCAL_FIRST) as f64), "{answer}");
    let w = remote_read_warnings(&answer);
    assert!(w.len() == 1 && w[0].contains("\"gone\""), "{answer}");
    let (_, metrics) = http_get(*addr, "/metrics", Duration::from_secs(10)).expect("metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("promtier_remote_read_failures_total{remote_name=\"gone\"")
            && l.contains("reason=\"network\"")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    // A range the global holds alone does not ask the store: no warning.
    let path = format!(
        "/api/v1/query?query={}&time={}",
        encode(&format!("count_over_time({SERIES}[10m])")),
        secs(last)
    );
    let recent = get_json(*addr, &path).expect("answer");
    assert_eq!(scalar_of(&recent), Some(40.0), "{recent}");
    assert!(remote_read_warnings(&recent).is_empty(), "{recent}");
}
