//! Query latency side by side: a promtier leaf and a real Prometheus holding the same 101k
//! series, asked the same queries over HTTP.
//!
//! Data: 80,000 counters `x_total` and 20,000 classic-histogram buckets `h_bucket` (2,000
//! histograms of 10 buckets) with 10 minutes of samples every 15s, plus 1,000 counters
//! `long_total` with 24 hours of samples every 60s. Prometheus gets them as blocks made by
//! `promtool tsdb create-blocks-from openmetrics`; the leaf scrapes the same samples (explicit
//! timestamps, `honor_labels`) from small HTTP servers run here.
//!
//! Run: `cargo bench --bench promql_vs_prometheus` (needs `prometheus` and `promtool` on PATH,
//! or PROMETHEUS_BIN / PROMTOOL_BIN). Options by environment: `ROUNDS` (default 15).

mod support;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Proc, free_port, tool};

const X_SERIES_PER_TARGET: usize = 10_000;
const X_TARGETS: usize = 8;
const H_TARGETS: usize = 2;
const H_PER_TARGET: usize = 1_000; // histograms per target, 10 buckets each
const LONG_SERIES: usize = 1_000;
const BOUNDS: [&str; 10] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];

/// Serves one body to the first two requests and an empty one afterwards (so that the leaf's
/// later scrapes cost nothing while we measure), until dropped.
struct BodyServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BodyServer {
    fn start(body: String) -> BodyServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let body = Arc::new(body);
        let thread = std::thread::spawn(move || {
            for (served, conn) in listener.incoming().enumerate() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let mut req = [0u8; 4096];
                let _ = conn.read(&mut req);
                let payload: &str = if served < 2 { &body } else { "" };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                let _ = conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(payload.as_bytes()));
            }
        });
        BodyServer { addr, stop, thread: Some(thread) }
    }
}

impl Drop for BodyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// HTTP/1.0 GET: status and body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept-Encoding: identity\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

fn wait_for(what: &str, timeout: Duration, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Text-format body (ms timestamps) and OpenMetrics lines (seconds) for the same samples.
struct Data {
    bodies: Vec<String>,
    om: String,
}

fn generate(end: i64) -> Data {
    let mut bodies = Vec::new();
    let mut om = String::with_capacity(450 << 20);
    let mut emit = |body: &mut String, series: &str, v: f64, t: i64| {
        let _ = writeln!(body, "{series} {v} {t}");
        let _ = writeln!(om, "{series} {v} {}.{:03}", t / 1000, t % 1000);
    };
    let short_start = end - 10 * 60_000;
    for target in 0..X_TARGETS {
        let mut body = String::with_capacity(30 << 20);
        for j in 0..X_SERIES_PER_TARGET {
            let i = target * X_SERIES_PER_TARGET + j;
            let series =
                format!("x_total{{instance=\"host-{}:9100\",job=\"job-{}\",series=\"{i}\"}}", i / 10, i % 20);
            for k in 0..=40 {
                let v = (k * (1 + (i as i64 % 7)) + (i as i64 % 13)) as f64;
                emit(&mut body, &series, v, short_start + k * 15_000);
            }
        }
        bodies.push(body);
    }
    for target in 0..H_TARGETS {
        let mut body = String::with_capacity(30 << 20);
        for j in 0..H_PER_TARGET {
            let h = target * H_PER_TARGET + j;
            for (b, le) in BOUNDS.iter().enumerate() {
                let series =
                    format!("h_bucket{{instance=\"host-{}:9100\",job=\"job-{}\",le=\"{le}\"}}", h, h % 20);
                for k in 0..=40 {
                    let per_step: i64 = (0..=b as i64).map(|x| 1 + (x + h as i64) % 5).sum();
                    emit(&mut body, &series, (per_step * k) as f64, short_start + k * 15_000);
                }
            }
        }
        bodies.push(body);
    }
    let mut body = String::with_capacity(80 << 20);
    let long_start = end - 24 * 3_600_000;
    for i in 0..LONG_SERIES {
        let series = format!("long_total{{instance=\"host-{i}:9100\",job=\"job-{}\"}}", i % 10);
        for k in 0..=1440 {
            let v = (k * (1 + (i as i64 % 5))) as f64;
            emit(&mut body, &series, v, long_start + k * 60_000);
        }
    }
    bodies.push(body);
    om.push_str("# EOF\n");
    Data { bodies, om }
}

/// The API's `data.result`, for checking both servers agree.
fn result_of(body: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("bad JSON ({e}): {body:.200}"));
    assert_eq!(v["status"], "success", "{body:.300}");
    v["data"]["result"].clone()
}

/// Results as (labels, values) sorted, values rounded to 9 significant digits.
fn canonical(v: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    let round = |s: &str| s.parse::<f64>().map(|f| format!("{f:.9e}")).unwrap_or_else(|_| s.to_string());
    let mut out: Vec<(String, Vec<String>)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let pts = match (&s["value"], &s["values"]) {
                        (serde_json::Value::Array(p), _) if !p.is_empty() => {
                            vec![round(p[1].as_str().unwrap_or(""))]
                        }
                        (_, serde_json::Value::Array(ps)) => {
                            ps.iter().map(|p| round(p[1].as_str().unwrap_or(""))).collect()
                        }
                        _ => Vec::new(),
                    };
                    (s["metric"].to_string(), pts)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(15);
    let promtier = PathBuf::from(env!("CARGO_BIN_EXE_promtier"));
    let need = |name: &str, env: &str| {
        tool(name, env).unwrap_or_else(|| panic!("{name} is not on PATH (or set {env})"))
    };
    let (prometheus, promtool) = (need("prometheus", "PROMETHEUS_BIN"), need("promtool", "PROMTOOL_BIN"));
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    let end = now / 60_000 * 60_000 - 60_000;

    let t0 = Instant::now();
    let data = generate(end);
    eprintln!("generated 101,000 series ({} MB of OpenMetrics) in {:?}", data.om.len() >> 20, t0.elapsed());

    // Prometheus: blocks from promtool.
    let tsdb = dir.path().join("prom-data");
    std::fs::create_dir_all(&tsdb).expect("mkdir");
    let om_path = dir.path().join("data.om");
    std::fs::write(&om_path, &data.om).expect("write om");
    let t0 = Instant::now();
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om_path)
        .arg(&tsdb)
        .output()
        .expect("promtool");
    assert!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("promtool created blocks in {:?}", t0.elapsed());
    let _ = std::fs::remove_file(&om_path);
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(&prom_cfg, "global: {scrape_interval: 1h}\n").expect("config");
    let prom_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let prom_log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let _prom = Proc(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address={prom_addr}"))
            .arg("--query.max-samples=200000000")
            .stdin(Stdio::null())
            .stdout(prom_log.try_clone().expect("log"))
            .stderr(prom_log)
            .spawn()
            .expect("start prometheus"),
    );

    // promtier: a leaf scraping the same samples.
    let servers: Vec<BodyServer> = data.bodies.into_iter().map(BodyServer::start).collect();
    drop(data.om);
    let targets: Vec<String> = servers.iter().map(|s| format!("'{}'", s.addr)).collect();
    let leaf_port = free_port();
    let topo = dir.path().join("t.yaml");
    std::fs::write(
        &topo,
        format!(
            "cluster: bench\n\
             defaults: {{scrape_interval: 20s, scrape_timeout: 19s, retention: 3d}}\n\
             jobs:\n  - job_name: data\n    honor_labels: true\n    static_configs: [{{targets: [{}]}}]\n\
             leaves:\n  - {{group: apps, jobs: [data], listen: '127.0.0.1:{leaf_port}'}}\n",
            targets.join(", ")
        ),
    )
    .expect("topology");
    let leaf_log = std::fs::File::create(dir.path().join("leaf.log")).expect("log");
    let _leaf = Proc(
        Command::new(&promtier)
            .args(["leaf", "--topology"])
            .arg(&topo)
            .args(["--node", "apps-0-a", "--query.max-samples", "200000000"])
            .stdin(Stdio::null())
            .stdout(leaf_log.try_clone().expect("log"))
            .stderr(leaf_log)
            .spawn()
            .expect("start promtier"),
    );
    let leaf_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, leaf_port));

    let total = format!(
        "/api/v1/query?query={}&time={}",
        enc("count({__name__=~\"x_total|h_bucket|long_total\"})"),
        end / 1000
    );
    let t0 = Instant::now();
    for (name, addr) in [("the leaf to ingest", leaf_addr), ("Prometheus to load its blocks", prom_addr)] {
        wait_for(name, Duration::from_secs(600), || {
            get(addr, &total).ok().is_some_and(|(s, b)| s == 200 && b.contains("\"101000\""))
        });
    }
    eprintln!("both servers hold all 101,000 series after {:?}", t0.elapsed());

    let t = end / 1000;
    let q = |expr: &str| format!("/api/v1/query?query={}&time={t}", enc(expr));
    let queries: Vec<(&str, String)> = vec![
        ("selective lookup", q("x_total{series=\"4242\"}")),
        ("sum by (job) (rate(x[5m])), 80k series", q("sum by (job) (rate(x_total[5m]))")),
        (
            "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))), 20k series",
            q("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))"),
        ),
        (
            "24h query_range at 60s, sum by (job) (rate(long[5m])), 1k series",
            format!(
                "/api/v1/query_range?query={}&start={}&end={t}&step=60",
                enc("sum by (job) (rate(long_total[5m]))"),
                t - 86_400
            ),
        ),
    ];
    println!(
        "\n{:<72} {:>12} {:>12} {:>8}",
        "query (median of rounds)", "promtier ms", "Prometheus ms", "ratio"
    );
    for (name, path) in &queries {
        let (s1, ours) = get(leaf_addr, path).expect("promtier");
        let (s2, theirs) = get(prom_addr, path).expect("prometheus");
        assert!(s1 == 200 && s2 == 200, "{name}: {s1} {ours:.300} / {s2} {theirs:.300}");
        assert_eq!(canonical(&result_of(&ours)), canonical(&result_of(&theirs)), "{name}: results differ");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let _ = get(leaf_addr, path);
            let _ = get(prom_addr, path);
        }
        for _ in 0..rounds {
            let t0 = Instant::now();
            get(leaf_addr, path).expect("promtier");
            a.push(t0.elapsed().as_secs_f64() * 1000.0);
            let t0 = Instant::now();
            get(prom_addr, path).expect("prometheus");
            b.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        let (ma, mb) = (median(&mut a), median(&mut b));
        println!("{name:<72} {ma:>12.2} {mb:>12.2} {:>7.2}x", mb / ma);
    }
    println!("(ratio = Prometheus time / promtier time; above 1 means promtier is faster)");
    drop(servers);
}
