//! `promtool query instant` and `promtool query range` return the same results from a promtier
//! leaf as from a real Prometheus holding the same samples.
//!
//! The samples — an hour of counters, gauges, a classic histogram and a series with a gap,
//! every 15s — reach Prometheus as blocks made by `promtool tsdb create-blocks-from
//! openmetrics`, and the leaf by scraping a tiny HTTP server serving the same samples with
//! explicit timestamps. Both then hold identical (labels, timestamp, value) triples.
//!
//! The leaf runs with a small sample limit: after the comparisons, a query over it must get
//! `422 execution`, bad PromQL `400 bad_data` with its position, and the leaf must keep serving.
//!
//! Prometheus on this host is 2.x, whose range selectors include a sample exactly at the window
//! start (Prometheus 3, which we follow, excludes it): evaluation times are therefore chosen off
//! the 15s sample grid, where both versions agree.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 241; // one hour, both ends included

/// One synthetic series: labels (without job/instance) and its value at point `k`.
struct Synth {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    value: Box<dyn Fn(i64) -> Option<f64>>,
}

fn synthetic() -> Vec<Synth> {
    let mut out = Vec::new();
    for (ci, code) in ["200", "404", "500"].iter().enumerate() {
        for (pi, path) in ["/a", "/b"].iter().enumerate() {
            let reset = *code == "500" && *path == "/b";
            out.push(Synth {
                name: "app_requests_total",
                labels: vec![("code", code.to_string()), ("path", path.to_string())],
                value: Box::new(move |k| {
                    let per = ((ci + 1) * (pi + 1)) as i64;
                    let v = (0..=k).map(|j| per * (1 + j % 3)).sum::<i64>();
                    Some(if reset && k >= 120 { (v - 120 * per * 2) as f64 / 4.0 } else { v as f64 })
                }),
            });
        }
    }
    for room in 1..=5 {
        out.push(Synth {
            name: "app_temperature_celsius",
            labels: vec![("room", format!("r{room}"))],
            value: Box::new(move |k| {
                Some(((20.0 + 10.0 * ((k as f64) / 10.0 + room as f64).sin()) * 1000.0).round() / 1000.0)
            }),
        });
    }
    let bounds = ["0.05", "0.1", "0.5", "1", "+Inf"];
    for (pi, path) in ["/a", "/b"].iter().enumerate() {
        for (bi, le) in bounds.iter().enumerate() {
            out.push(Synth {
                name: "app_latency_seconds_bucket",
                labels: vec![("le", le.to_string()), ("path", path.to_string())],
                value: Box::new(move |k| {
                    // Per step, observations fall in bucket b with weight (b+1)*(path+1) + k%4.
                    let cum: i64 = (0..=bi as i64).map(|b| (b + 1) * (pi as i64 + 1) + k % 4).sum();
                    Some((cum * (k + 1)) as f64)
                }),
            });
        }
    }
    out.push(Synth {
        name: "app_gap",
        labels: vec![],
        value: Box::new(|k| (!(100..160).contains(&k)).then_some(k as f64)),
    });
    for (i, id) in ["a", "b"].iter().enumerate() {
        out.push(Synth {
            name: "app_up",
            labels: vec![("id", id.to_string())],
            value: Box::new(move |k| Some(((k / 20 + i as i64) % 2) as f64)),
        });
    }
    out
}

fn series_text(name: &str, labels: &[(&str, String)]) -> String {
    let mut s = name.to_string();
    if !labels.is_empty() {
        s.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{k}=\"{v}\"");
        }
        s.push('}');
    }
    s
}

/// Serves one body to every HTTP request until dropped.
struct BodyServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BodyServer {
    fn start(body: String) -> BodyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = [0u8; 4096];
                let _ = conn.read(&mut req);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(body.as_bytes()));
            }
        });
        BodyServer { addr, stop, thread: Some(thread) }
    }
}

impl Drop for BodyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs promtool against `server` and returns its JSON output.
fn promtool(args: &[String]) -> Result<Value, String> {
    let out = Command::new(promtool_binary())
        .args(args)
        .output()
        .map_err(|e| format!("cannot run promtool: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "promtool {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("promtool output is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The result as label set → points (time ms, value bits), independent of order.
fn canonical(v: &Value) -> Result<BTreeMap<String, Vec<(i64, f64)>>, String> {
    let point = |p: &Value| -> Result<(i64, f64), String> {
        let t = p[0].as_f64().ok_or("timestamp")?;
        let v: f64 = match p[1].as_str().ok_or("value")? {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            s => s.parse().map_err(|e| format!("{s}: {e}"))?,
        };
        Ok(((t * 1000.0).round() as i64, v))
    };
    let mut out = BTreeMap::new();
    match v {
        // A scalar: [t, "v"].
        Value::Array(items) if items.first().is_some_and(Value::is_number) => {
            out.insert("scalar".into(), vec![point(v)?]);
        }
        Value::Array(items) => {
            for s in items {
                let metric = s["metric"].as_object().ok_or("metric")?;
                let key: BTreeMap<&String, &Value> = metric.iter().collect();
                let key = serde_json::to_string(&key).map_err(|e| e.to_string())?;
                let points = match (&s["value"], &s["values"]) {
                    (Value::Array(_), _) => vec![point(&s["value"])?],
                    (_, Value::Array(vs)) => vs.iter().map(point).collect::<Result<_, _>>()?,
                    _ => return Err(format!("no value in {s}")),
                };
                if out.insert(key.clone(), points).is_some() {
                    return Err(format!("series {key} twice"));
                }
            }
        }
        Value::Object(o) if o.contains_key("value") || o.contains_key("values") => {
            return canonical(&Value::Array(vec![v.clone()]));
        }
        other => return Err(format!("unexpected promtool output {other}")),
    }
    Ok(out)
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn compare(what: &str, ours: &Value, theirs: &Value) -> Result<usize, String> {
    let (o, t) = (canonical(ours)?, canonical(theirs)?);
    if o.keys().ne(t.keys()) {
        return Err(format!(
            "{what}: series differ\n  promtier:   {:?}\n  Prometheus: {:?}",
            o.keys(),
            t.keys()
        ));
    }
    for (k, op) in &o {
        let tp = &t[k];
        let equal = op.len() == tp.len() && op.iter().zip(tp).all(|(a, b)| a.0 == b.0 && same(a.1, b.1));
        if !equal {
            return Err(format!("{what}: {k} differs\n  promtier:   {op:?}\n  Prometheus: {tp:?}"));
        }
    }
    Ok(o.values().map(Vec::len).sum())
}

#[test]
fn promtool_queries_agree_with_prometheus() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    let end = now / 60_000 * 60_000 - 60_000;
    let start = end - (POINTS - 1) * STEP_MS;
    let series = synthetic();

    let mut body = String::new(); // text format for the leaf (ms timestamps)
    let server_placeholder = "INSTANCE";
    let mut om = String::new(); // OpenMetrics for promtool (seconds), with job and instance
    for s in &series {
        for k in 0..POINTS {
            let Some(v) = (s.value)(k) else { continue };
            let t = start + k * STEP_MS;
            let _ = writeln!(body, "{} {v} {t}", series_text(s.name, &s.labels));
            let mut labels = s.labels.clone();
            labels.push(("instance", server_placeholder.to_string()));
            labels.push(("job", "synthetic".to_string()));
            labels.sort();
            let _ = writeln!(om, "{} {v} {}.{:03}", series_text(s.name, &labels), t / 1000, t % 1000);
        }
    }
    om.push_str("# EOF\n");
    let server = BodyServer::start(body);
    let om = om.replace(server_placeholder, &server.addr.to_string());

    let dir = tempfile::tempdir().expect("tempdir");
    let om_path = dir.path().join("data.om");
    std::fs::write(&om_path, &om).expect("write OpenMetrics");
    let prom = Prometheus::start_with_data("global: {scrape_interval: 1h}\n", |data| {
        let out = Command::new(promtool_binary())
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om_path)
            .arg(data)
            .output()
            .expect("run promtool tsdb create-blocks-from");
        assert!(out.status.success(), "promtool failed: {}", String::from_utf8_lossy(&out.stderr));
    });

    let leaf_port = free_port();
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: promtool\n\
             defaults: {{scrape_interval: 5s, scrape_timeout: 4s}}\n\
             jobs:\n  - job_name: synthetic\n    static_configs: [{{targets: ['{}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [synthetic], listen: '127.0.0.1:{leaf_port}'}}\n",
            server.addr
        ),
    )
    .expect("write topology");
    let leaf_log = dir.path().join("leaf.log");
    let _leaf = start_promtier(
        "leaf",
        &[
            "leaf",
            "--topology",
            topology.to_str().expect("utf8 path"),
            "--node",
            "apps-0-a",
            "--query.max-samples",
            "5000",
        ],
        &leaf_log,
    );
    let leaf: SocketAddr = ([127, 0, 0, 1], leaf_port).into();
    let log = || std::fs::read_to_string(&leaf_log).unwrap_or_default();
    let count_query = format!(
        "/api/v1/query?query=count_over_time(app_temperature_celsius%7Broom%3D%22r1%22%7D%5B2h%5D)&time={}",
        end / 1000
    );
    wait_until("the leaf to ingest the synthetic history", Duration::from_secs(60), log, || {
        let d = api_data(leaf, &count_query)?;
        (d["result"][0]["value"][1].as_str()? == POINTS.to_string()).then_some(())
    });

    let ours = format!("http://{leaf}");
    let theirs = format!("http://{}", prom.addr());
    let secs = |t: i64| format!("{}.{:03}", t / 1000, t % 1000);
    // Off the 15s sample grid (see the module comment).
    let instants = [start + 20 * 60_000 + 7_000, start + 45 * 60_000 + 3_500, end - 1_000];
    let queries = [
        "app_temperature_celsius",
        "app_requests_total{code=~\"2..|5..\", path!=\"/a\"}",
        "rate(app_requests_total[5m])",
        "increase(app_requests_total[10m])",
        "sum by (code) (rate(app_requests_total[5m]))",
        "sum without (path) (irate(app_requests_total[1m]))",
        "resets(app_requests_total[1h])",
        "changes(app_up[30m])",
        "histogram_quantile(0.9, sum by (le) (rate(app_latency_seconds_bucket[5m])))",
        "histogram_quantile(0.5, rate(app_latency_seconds_bucket[10m]))",
        "avg_over_time(app_temperature_celsius[10m])",
        "max_over_time(app_temperature_celsius[10m]) - min_over_time(app_temperature_celsius[10m])",
        "quantile_over_time(0.9, app_temperature_celsius[15m])",
        "stddev_over_time(app_temperature_celsius[10m])",
        "deriv(app_temperature_celsius[10m])",
        "predict_linear(app_temperature_celsius[10m], 600)",
        "delta(app_temperature_celsius[5m])",
        "topk(2, app_temperature_celsius)",
        "bottomk(2, rate(app_requests_total[5m]))",
        "quantile(0.25, app_temperature_celsius)",
        "stddev(app_temperature_celsius)",
        "count_values(\"state\", app_up)",
        "app_temperature_celsius > 25",
        "app_temperature_celsius > bool 25",
        "app_requests_total / on(path) group_left sum by (path) (app_requests_total)",
        "app_temperature_celsius and on() app_up{id=\"a\"} == 1",
        "app_up unless app_up{id=\"b\"}",
        "label_replace(app_up, \"who\", \"id-$1\", \"id\", \"(.*)\")",
        "round(app_temperature_celsius, 0.5)",
        "clamp(app_temperature_celsius, 15, 25)",
        "abs(delta(app_temperature_celsius[5m]))",
        "app_gap",
        "absent(app_gap)",
        "absent_over_time(app_gap[2m])",
        "timestamp(app_gap)",
        "app_temperature_celsius offset 10m",
        "max_over_time(app_temperature_celsius[10m:1m])",
        // Subquery steps sit on the sample grid, so the inner range is off it.
        "max_over_time(rate(app_requests_total[307s])[20m:2m])",
        "sum(app_temperature_celsius) * 2",
        "scalar(sum(app_up))",
        "time() - timestamp(app_temperature_celsius)",
        "vector(1) + on() group_left count(app_up)",
    ];
    let mut compared = 0;
    let mut failures = Vec::new();
    for q in queries {
        for &t in &instants {
            let args = |server: &str| {
                vec![
                    "query".into(),
                    "instant".into(),
                    "-o".into(),
                    "json".into(),
                    format!("--time={}", secs(t)),
                    server.to_string(),
                    q.to_string(),
                ]
            };
            match promtool(&args(&ours)).and_then(|o| {
                promtool(&args(&theirs)).and_then(|p| compare(&format!("instant {q} @{t}"), &o, &p))
            }) {
                Ok(n) => compared += n,
                Err(e) => failures.push(e),
            }
        }
        // A range query over 40 minutes at a 60s step, and one at an odd step.
        // 2.5s + k * 97s is never a multiple of 15s: no step lands on the sample grid.
        for (step, from) in [("60s", start + 10 * 60_000 + 7_000), ("97s", start + 5 * 60_000 + 2_500)] {
            let args = |server: &str| {
                vec![
                    "query".into(),
                    "range".into(),
                    "-o".into(),
                    "json".into(),
                    format!("--start={}", secs(from)),
                    format!("--end={}", secs(end - 1_000)),
                    format!("--step={step}"),
                    server.to_string(),
                    q.to_string(),
                ]
            };
            match promtool(&args(&ours)).and_then(|o| {
                promtool(&args(&theirs)).and_then(|p| compare(&format!("range {q} step {step}"), &o, &p))
            }) {
                Ok(n) => compared += n,
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} comparisons differ:\n{}\n--- leaf log ---\n{}\n--- Prometheus log ---\n{}",
        failures.len(),
        queries.len() * 5,
        failures[..failures.len().min(5)].join("\n"),
        log(),
        prom.log()
    );
    assert!(compared > 10_000, "only {compared} values compared");
    eprintln!("{} queries x 5 evaluations: {compared} values identical", queries.len());

    // Limits and errors over real HTTP.
    let json = |path: &str| -> (u16, Value) {
        let (status, body) = http_get(leaf, path, Duration::from_secs(10)).expect("leaf answers");
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
    };
    let (status, j) = json("/api/v1/query?query=sum(rate(app_requests_total%5B5m%5D)");
    assert_eq!(status, 400, "{j}");
    assert_eq!(j["errorType"], "bad_data");
    assert_eq!(
        j["error"],
        "invalid parameter \"query\": 1:33: parse error: unexpected end of input in aggregation, expected \",\" or \")\""
    );
    // 28 series x 241 samples held at once is over the leaf's limit of 5000.
    let (status, j) =
        json(&format!("/api/v1/query?query=%7B__name__%3D~%22app_.%2B%22%7D%5B1h%5D&time={}", secs(end)));
    assert_eq!(status, 422, "{j}");
    assert_eq!(j["errorType"], "execution");
    assert_eq!(j["error"], "query processing would load too many samples into memory in query execution");
    let (status, j) = json(&format!("/api/v1/query?query=count(app_up)&time={}", secs(end)));
    assert_eq!((status, j["data"]["result"][0]["value"][1].as_str()), (200, Some("2")), "{j}");
    drop(prom);
}
