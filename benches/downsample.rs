//! Downsampling, end to end: what rolling a year of raw history up into 5m and 1h rollup blocks
//! costs (time, CPU, disk) on a real promtier global, and what it buys for long-range queries,
//! next to the same queries on raw data and on a real VictoriaMetrics holding the same samples.
//!
//! 1. Writes `DAYS` of history for `SERIES` series, one sample every `INTERVAL_S` (half counters
//!    `bench_requests_total{series="i"}` with occasional resets, half gauges
//!    `bench_gauge{series="i"}`), as imported blocks, ending on a 6-hour border at least a day
//!    ago so that every piece is final.
//! 2. Starts a global on it and waits until nothing is left to roll up: wall time, the node's
//!    `promtier_downsample_duration_seconds_total` and the process CPU used meanwhile.
//! 3. Disk: raw bytes and rollup bytes per resolution, per series and year.
//! 4. Imports the same samples into VictoriaMetrics (`/api/v1/import`, JSON lines; response cache
//!    off so that repeated rounds measure the query).
//! 5. Query latency (median of `ROUNDS`): a year at a 1h step (`sum(rate(...[6h]))`,
//!    `max(max_over_time(...[1d]))`) and the newest 30 days at a 5m step (`sum(rate(...[1h]))`),
//!    on promtier with `max_source_resolution=auto` (rollups) and `=raw`, and on VictoriaMetrics;
//!    checks that promtier's rollup and raw answers agree (aligned steps make them equal).
//! 6. Rolls up one day of `DAY_SERIES` counters at `DAY_INTERVAL_S` on a fresh global: rollup
//!    time and process CPU for that day at both resolutions.
//!
//! Run: `cargo bench --bench downsample` (needs `victoria-metrics` on PATH, or VM_BIN; the full
//! default scale takes a good half hour on two cores). Scale by environment: `SERIES` (10000),
//! `DAYS` (365), `INTERVAL_S` (300), `ROUNDS` (5), `DAY_SERIES` (100000), `DAY_INTERVAL_S` (15),
//! e.g. `SERIES=2000 DAYS=120 cargo bench --bench downsample`.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it runs at a tiny fixed scale in well
//! under a minute, skips VictoriaMetrics when it is not installed, and only checks that rollup
//! and raw answers agree. Timings are printed, never asserted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod support;

use promtier::model::Labels;
use promtier::storage::Appendable;
use promtier::tsdb::db::write_head_blocks;
use promtier::tsdb::fs::RealFs;
use promtier::tsdb::{Head, HeadOptions};
use support::{Proc, free_port, tool};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// The rollup piece: history ends on a multiple of it.
const PIECE: i64 = 6 * HOUR;
/// Samples staged per commit while writing history.
const BATCH: usize = 100_000;
/// Bytes of JSON lines per VictoriaMetrics import request.
const VM_BATCH_BYTES: usize = 32 << 20;

/// How much data, and how often each query is timed.
#[derive(Debug, Clone, Copy)]
struct Scale {
    series: usize,
    days: i64,
    interval_s: i64,
    rounds: usize,
    day_series: usize,
    day_interval_s: i64,
    /// `cargo test` mode: tiny, VictoriaMetrics optional, no settling wait.
    tiny: bool,
}

impl Scale {
    fn get() -> Scale {
        if !std::env::args().any(|a| a == "--bench") {
            return Scale {
                series: 40,
                days: 40,
                interval_s: 600,
                rounds: 1,
                day_series: 200,
                day_interval_s: 15,
                tiny: true,
            };
        }
        fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a valid number")),
                Err(_) => default,
            }
        }
        Scale {
            series: env("SERIES", 10_000),
            days: env("DAYS", 365),
            interval_s: env("INTERVAL_S", 300),
            rounds: env("ROUNDS", 5usize).max(1),
            day_series: env("DAY_SERIES", 100_000),
            day_interval_s: env("DAY_INTERVAL_S", 15),
            tiny: false,
        }
    }
}

/// Status and body of a response read to the end (`Connection: close`).
fn response(mut s: TcpStream) -> std::io::Result<(u16, String)> {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// HTTP/1.0 GET: status and body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(1800)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept-Encoding: identity\r\n\r\n")?;
    response(s)
}

/// HTTP/1.1 POST of `body` (one request per connection): status and response body.
fn post(addr: SocketAddr, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    response(s)
}

/// Polls `probe` every `every` until it returns `Some`; panics after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, every: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(every);
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The value of the sample `key` (name and labels exactly as exposed) in a `/metrics` body.
fn metric(body: &str, key: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.split(' ').next()?.trim().parse().ok())
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// SplitMix64: deterministic noise from a key.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Synthetic history: `counters` counters named `counter_name` then `gauges` gauges
/// `bench_gauge`, each with a sample at `start + k·interval` for k in 1..=points. Counter state
/// carries over between calls of [`History::fill`], so each series must be filled in time order.
struct History {
    counters: usize,
    gauges: usize,
    counter_name: &'static str,
    start: i64,
    interval: i64,
    points: i64,
    state: Vec<f64>,
}

impl History {
    fn new(
        counters: usize,
        gauges: usize,
        counter_name: &'static str,
        start: i64,
        interval: i64,
        end: i64,
    ) -> History {
        assert!(interval > 0 && (end - start) % interval == 0, "the interval must divide the span");
        History {
            counters,
            gauges,
            counter_name,
            start,
            interval,
            points: (end - start) / interval,
            state: vec![0.0; counters],
        }
    }

    fn series(&self) -> usize {
        self.counters + self.gauges
    }

    fn samples(&self) -> u64 {
        self.series() as u64 * self.points as u64
    }

    /// Metric name and `series` label value of series `i`.
    fn name(&self, i: usize) -> (&'static str, usize) {
        if i < self.counters { (self.counter_name, i) } else { ("bench_gauge", i - self.counters) }
    }

    fn labels(&self, i: usize) -> Labels {
        let (name, id) = self.name(i);
        Labels::from_pairs(&[("__name__", name), ("series", &id.to_string())])
    }

    /// Ranges of k covering the history in spans of `seg` ms.
    fn segments(&self, seg: i64) -> Vec<Range<i64>> {
        let per = (seg / self.interval).max(1);
        (0..)
            .map(|s| 1 + s * per)
            .take_while(|&a| a <= self.points)
            .map(|a| a..(a + per).min(self.points + 1))
            .collect()
    }

    /// Starts over (counters from zero), to produce the same samples again.
    fn rewind(&mut self) {
        self.state.iter_mut().for_each(|v| *v = 0.0);
    }

    /// Appends the samples `ks` of series `i` to `out`.
    fn fill(&mut self, i: usize, ks: Range<i64>, out: &mut Vec<(i64, f64)>) {
        let interval_s = (self.interval / 1000).max(1) as u64;
        if i < self.counters {
            // About one reset a month; an average rate of 0.05 to 5 per second.
            let reset_every = (30 * DAY / self.interval).max(2) as u64;
            let step = 1 + (i % 100) as u64 * interval_s / 20;
            let mut v = self.state[i];
            for k in ks {
                let h = mix(((i as u64) << 32) ^ k as u64);
                if h.is_multiple_of(reset_every) {
                    v = (h >> 40) as f64 % 3.0;
                } else {
                    v += ((h >> 16) % (2 * step + 1)) as f64;
                }
                out.push((self.start + k * self.interval, v));
            }
            self.state[i] = v;
        } else {
            let j = i - self.counters;
            let base = 1000.0 * (1 + j % 20) as f64;
            for k in ks {
                let t = self.start + k * self.interval;
                let phase = t.rem_euclid(DAY) as f64 / DAY as f64 * std::f64::consts::TAU + j as f64;
                let h = mix(((i as u64) << 32) ^ k as u64 ^ 0x5bd1_e995);
                out.push((t, base + (300.0 * phase.sin()).round() + (h % 50) as f64));
            }
        }
    }
}

/// Writes the history into `dir` as imported blocks of `block_ms`, a fresh head per `seg_ms`.
fn write_history(h: &mut History, dir: &Path, seg_ms: i64, block_ms: i64) {
    let mut buf = Vec::new();
    for ks in h.segments(seg_ms) {
        let head = Head::new(HeadOptions::default()).expect("head");
        let mut app = head.appender();
        let mut staged = 0;
        for i in 0..h.series() {
            buf.clear();
            h.fill(i, ks.clone(), &mut buf);
            let labels = h.labels(i);
            let mut r = None;
            for &(t, v) in &buf {
                match r {
                    None => r = Some(app.append(None, &labels, t, v).expect("append")),
                    Some(r) => app.append_ref(r, t, v).expect("append_ref"),
                }
                staged += 1;
                if staged >= BATCH {
                    app.commit().expect("commit");
                    app = head.appender();
                    staged = 0;
                }
            }
        }
        app.commit().expect("commit");
        write_head_blocks(dir, &head, block_ms, &RealFs, |_| {}).expect("write blocks");
    }
}

/// Sends the history to VictoriaMetrics' `/api/v1/import`; returns the time spent in requests.
fn vm_import(h: &mut History, addr: SocketAddr, seg_ms: i64) -> Duration {
    let mut posting = Duration::ZERO;
    let mut body: Vec<u8> = Vec::with_capacity(VM_BATCH_BYTES + (4 << 20));
    let mut send = |body: &mut Vec<u8>| {
        let t0 = Instant::now();
        let (status, text) = post(addr, "/api/v1/import", body).expect("import request");
        posting += t0.elapsed();
        assert!(status / 100 == 2, "VictoriaMetrics import: {status} {text:.300}");
        body.clear();
    };
    let mut buf = Vec::new();
    let (mut ib, mut fb) = (itoa::Buffer::new(), ryu::Buffer::new());
    for ks in h.segments(seg_ms) {
        for i in 0..h.series() {
            buf.clear();
            h.fill(i, ks.clone(), &mut buf);
            let (name, id) = h.name(i);
            body.extend_from_slice(b"{\"metric\":{\"__name__\":\"");
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(b"\",\"series\":\"");
            body.extend_from_slice(ib.format(id).as_bytes());
            body.extend_from_slice(b"\"},\"values\":[");
            for (n, &(_, v)) in buf.iter().enumerate() {
                if n > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(fb.format(v).as_bytes());
            }
            body.extend_from_slice(b"],\"timestamps\":[");
            for (n, &(t, _)) in buf.iter().enumerate() {
                if n > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(ib.format(t).as_bytes());
            }
            body.extend_from_slice(b"]}\n");
            if body.len() >= VM_BATCH_BYTES {
                send(&mut body);
            }
        }
    }
    if !body.is_empty() {
        send(&mut body);
    }
    posting
}

/// A range query's series (labels as JSON text → points) and its infos.
type Matrix = BTreeMap<String, Vec<(i64, f64)>>;

fn parse_matrix(what: &str, status: u16, body: &str) -> (Matrix, Vec<String>) {
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: bad JSON ({e}): {body:.300}"));
    assert!(status == 200 && json["status"] == "success", "{what}: {status} {body:.300}");
    let mut out = Matrix::new();
    for s in json["data"]["result"].as_array().unwrap_or_else(|| panic!("{what}: no matrix: {body:.300}")) {
        let points = s["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
                (t, p[1].as_str().expect("value").parse::<f64>().expect("number"))
            })
            .collect();
        out.insert(s["metric"].to_string(), points);
    }
    let infos = json["infos"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    (out, infos)
}

/// How two answers compare: largest and median relative difference over the points both have,
/// how many those are, and how many points only one of them has.
#[derive(Debug, Clone, Copy, Default)]
struct Agreement {
    max_rel: f64,
    median_rel: f64,
    common: usize,
    mismatched: usize,
}

fn compare(a: &Matrix, b: &Matrix) -> Agreement {
    let mut out = Agreement::default();
    let mut rels = Vec::new();
    for (labels, pa) in a {
        let Some(pb) = b.get(labels) else {
            out.mismatched += pa.len();
            continue;
        };
        let mb: BTreeMap<i64, f64> = pb.iter().copied().collect();
        for &(t, va) in pa {
            match mb.get(&t) {
                Some(&vb) => {
                    out.common += 1;
                    let rel = if va == vb { 0.0 } else { (va - vb).abs() / va.abs().max(vb.abs()) };
                    out.max_rel = out.max_rel.max(rel);
                    rels.push(rel);
                }
                None => out.mismatched += 1,
            }
        }
        let ta: std::collections::BTreeSet<i64> = pa.iter().map(|p| p.0).collect();
        out.mismatched += pb.iter().filter(|p| !ta.contains(&p.0)).count();
    }
    out.mismatched += b.iter().filter(|(l, _)| !a.contains_key(*l)).map(|(_, p)| p.len()).sum::<usize>();
    if !rels.is_empty() {
        out.median_rel = median(&mut rels);
    }
    out
}

/// A promtier node's `/metrics`.
fn scrape(addr: SocketAddr) -> Option<String> {
    get(addr, "/metrics").ok().filter(|(s, _)| *s == 200).map(|(_, b)| b)
}

/// A global node run on `data_root/global-a` (topology in `dir`), with its address and log.
struct Global {
    proc: Proc,
    addr: SocketAddr,
    log: PathBuf,
}

impl Global {
    fn start(dir: &Path, name: &str, data_root: &Path, retention_days: i64) -> Global {
        let (port, leaf_port) = (free_port(), free_port());
        let topology = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &topology,
            format!(
                "cluster: b\n\
                 defaults: {{data_dir: '{}'}}\n\
                 jobs:\n  - job_name: none\n    static_configs: [{{targets: ['127.0.0.1:9']}}]\n\
                 leaves:\n  - {{group: apps, jobs: [none], listen: '127.0.0.1:{leaf_port}'}}\n\
                 globals:\n  - name: global\n    from: [apps]\n    listen: '127.0.0.1:{port}'\n    \
                 retention: {retention_days}d\n    downsample: [{{resolution: 5m, retention: {retention_days}d}}, \
                 {{resolution: 1h, retention: {}d}}]\n",
                data_root.display(),
                2 * retention_days
            ),
        )
        .expect("write the topology");
        let log = dir.join(format!("{name}.log"));
        let proc = Proc::spawn(
            "promtier global",
            Command::new(env!("CARGO_BIN_EXE_promtier"))
                .arg("global")
                .arg("--topology")
                .arg(&topology)
                .args(["--node", "global-a", "--query.max-samples", "500000000", "--query.timeout", "30m"])
                .env("RUST_LOG", "info"),
            &log,
        );
        Global { proc, addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)), log }
    }

    /// `/metrics` once it answers with the downsampling metrics.
    fn wait_metrics(&mut self, timeout: Duration) -> String {
        let (addr, log) = (self.addr, self.log.clone());
        let proc = &mut self.proc;
        wait_for("the global's /metrics", timeout, Duration::from_millis(200), || {
            proc.check_alive("the global", &log);
            scrape(addr).filter(|b| b.contains("promtier_downsample_pending_pieces"))
        })
    }

    /// Waits until nothing is pending and some rollup block was written; returns `/metrics`.
    fn wait_rolled_up(&mut self, timeout: Duration) -> String {
        let (addr, log) = (self.addr, self.log.clone());
        let proc = &mut self.proc;
        wait_for("every piece to be rolled up", timeout, Duration::from_secs(1), || {
            proc.check_alive("the global", &log);
            let body = scrape(addr)?;
            let pending = metric(&body, "promtier_downsample_pending_pieces")?;
            let written = metric(&body, "promtier_downsample_blocks_total")?;
            (pending == 0.0 && written > 0.0).then_some(body)
        })
    }

    /// Waits until compaction has been quiet (same compaction count and blocks) for longer than
    /// a maintenance cycle (60 s); returns `/metrics` and how long it took.
    fn wait_settled(&mut self, timeout: Duration) -> (String, Duration) {
        let t0 = Instant::now();
        let (addr, log) = (self.addr, self.log.clone());
        let proc = &mut self.proc;
        let mut last: Option<(f64, f64)> = None;
        let mut since = Instant::now();
        let body = wait_for("compaction to settle", timeout, Duration::from_secs(2), || {
            proc.check_alive("the global", &log);
            let body = scrape(addr)?;
            let now = (
                metric(&body, "promtier_tsdb_compactions_total")?,
                metric(&body, "promtier_tsdb_blocks_loaded")?,
            );
            if last != Some(now) {
                last = Some(now);
                since = Instant::now();
            }
            (since.elapsed() > Duration::from_secs(70)).then_some(body)
        });
        (body, t0.elapsed())
    }
}

/// One line of the results table.
struct Row(String, String);

fn row(rows: &mut Vec<Row>, name: impl Into<String>, value: impl Into<String>) {
    let (name, value) = (name.into(), value.into());
    eprintln!("  {name}: {value}");
    rows.push(Row(name, value));
}

fn mb(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

fn main() {
    let scale = Scale::get();
    let vm_bin = tool("victoria-metrics", "VM_BIN");
    assert!(scale.tiny || vm_bin.is_some(), "victoria-metrics is not on PATH (or set VM_BIN)");
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("promtier-downsample-bench").tempdir().expect("tempdir");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    let end = (now - DAY) / PIECE * PIECE;
    let start = end - scale.days * DAY;
    let interval = scale.interval_s * 1000;
    assert!(DAY % interval == 0, "INTERVAL_S must divide a day");
    let long_wait = if scale.tiny { Duration::from_secs(300) } else { Duration::from_secs(7200) };
    eprintln!("downsample bench: {scale:?}, data in {}", dir.path().display());
    let mut rows: Vec<Row> = Vec::new();

    // 1. Raw history as imported blocks.
    let counters = scale.series / 2;
    let mut history =
        History::new(counters, scale.series - counters, "bench_requests_total", start, interval, end);
    let data_root = dir.path().join("data");
    let node_dir = data_root.join("global-a");
    let t0 = Instant::now();
    write_history(&mut history, &node_dir, 30 * DAY, DAY);
    let gen_s = t0.elapsed().as_secs_f64();
    row(
        &mut rows,
        format!(
            "history: {} series x {} d every {} s ({:.1} M samples) written",
            scale.series,
            scale.days,
            scale.interval_s,
            history.samples() as f64 / 1e6
        ),
        format!("{gen_s:.1} s"),
    );

    // 2. A global rolls it up.
    let retention_days = (scale.days + 35).max(400);
    let t0 = Instant::now();
    let mut global = Global::start(dir.path(), "global", &data_root, retention_days);
    let first = global.wait_metrics(Duration::from_secs(600));
    let cpu0 = metric(&first, "process_cpu_seconds_total").unwrap_or(0.0);
    let body = global.wait_rolled_up(long_wait);
    let rollup_wall = t0.elapsed().as_secs_f64();
    let m = |b: &str, k: &str| metric(b, k).unwrap_or(f64::NAN);
    let ds_secs = m(&body, "promtier_downsample_duration_seconds_total");
    let cpu = m(&body, "process_cpu_seconds_total") - cpu0;
    let written = m(&body, "promtier_downsample_blocks_total");
    let compactions = m(&body, "promtier_tsdb_compactions_total");
    row(&mut rows, "rollup: wall time from start until nothing pending", format!("{rollup_wall:.1} s"));
    row(&mut rows, "rollup: promtier_downsample_duration_seconds_total", format!("{ds_secs:.1} s"));
    row(
        &mut rows,
        "rollup: process CPU meanwhile (incl. compacting the imported blocks)",
        format!("{cpu:.1} s (+{cpu0:.2} s before /metrics answered)"),
    );
    row(
        &mut rows,
        "rollup: rollup blocks written / compactions meanwhile",
        format!("{written} (pieces x 2 = {}) / {compactions}", scale.days * 4 * 2),
    );
    row(
        &mut rows,
        "rollup: raw samples rolled up per second of rollup time (x2 resolutions)",
        format!("{:.1} M/s", 2.0 * history.samples() as f64 / ds_secs / 1e6),
    );

    // 3. Disk, once compaction is quiet.
    let body = if scale.tiny {
        body
    } else {
        let (body, took) = global.wait_settled(Duration::from_secs(1800));
        eprintln!("  compaction settled after {took:?}");
        body
    };
    let total = m(&body, "promtier_tsdb_blocks_bytes");
    let b5 = m(&body, "promtier_downsample_block_bytes{resolution=\"5m\"}");
    let b1 = m(&body, "promtier_downsample_block_bytes{resolution=\"1h\"}");
    let raw = total - b5 - b1;
    let per_year = |b: f64| b / scale.series as f64 * 365.0 / scale.days as f64;
    for (name, b) in [("raw", raw), ("5m rollups", b5), ("1h rollups", b1)] {
        row(
            &mut rows,
            format!("disk: {name} (per series per year)"),
            format!("{} ({:.0} B; raw / this = {:.1}x)", mb(b), per_year(b), raw / b),
        );
    }
    row(
        &mut rows,
        "disk: blocks in all (promtier_tsdb_blocks_loaded)",
        format!("{}", m(&body, "promtier_tsdb_blocks_loaded")),
    );

    // 4. VictoriaMetrics with the same samples.
    let vm = vm_bin.map(|bin| {
        let port = free_port();
        let vm_dir = dir.path().join("vm");
        let log = dir.path().join("vm.log");
        let mut proc = Proc::spawn(
            "victoria-metrics",
            Command::new(bin)
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                .arg(format!("-storageDataPath={}", vm_dir.display()))
                .args([
                    "-retentionPeriod=100y",
                    "-search.disableCache",
                    "-search.maxQueryDuration=30m",
                    "-search.maxSamplesPerQuery=100000000000",
                    "-search.maxUniqueTimeseries=10000000",
                    "-loggerLevel=WARN",
                ]),
            &log,
        );
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        wait_for("VictoriaMetrics to answer", Duration::from_secs(120), Duration::from_millis(200), || {
            proc.check_alive("victoria-metrics", &log);
            get(addr, "/health").ok().filter(|(s, _)| *s == 200)
        });
        history.rewind();
        let t0 = Instant::now();
        let posting = vm_import(&mut history, addr, 30 * DAY);
        let t1 = Instant::now();
        let want = history.samples() as f64;
        let (status, _) = get(addr, "/internal/force_flush").expect("force_flush");
        assert_eq!(status, 200, "force_flush");
        wait_for("VictoriaMetrics to hold every sample", long_wait, Duration::from_millis(500), || {
            proc.check_alive("victoria-metrics", &log);
            let (_, body) = get(addr, "/metrics").ok()?;
            let rows: f64 = ["vm_rows{type=\"storage/big\"}", "vm_rows{type=\"storage/small\"}"]
                .iter()
                .filter_map(|k| metric(&body, k))
                .sum();
            (rows >= want).then_some(())
        });
        let flush = t1.elapsed();
        let total = t0.elapsed().as_secs_f64();
        row(
            &mut rows,
            "VictoriaMetrics: import (POSTs + flush; JSON made here in between)",
            format!(
                "{:.1} s ({:.1} s in requests, {:.1} s flush; {:.1} s wall)",
                (posting + flush).as_secs_f64(),
                posting.as_secs_f64(),
                flush.as_secs_f64(),
                total
            ),
        );
        (proc, addr)
    });
    if vm.is_none() {
        eprintln!("victoria-metrics is not installed: skipping it (tiny mode)");
    }

    // 5. Queries.
    let year = scale.days.min(365) * DAY;
    let month = scale.days.min(30) * DAY;
    let queries = [
        (format!("{}d @1h", year / DAY), "sum(rate(bench_requests_total[6h]))", end - year, HOUR),
        (format!("{}d @1h", year / DAY), "max(max_over_time(bench_gauge[1d]))", end - year, HOUR),
        (format!("{}d @5m", month / DAY), "sum(rate(bench_requests_total[1h]))", end - month, 5 * MINUTE),
    ];
    let mut qrows: Vec<[String; 8]> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (span, q, from, step) in &queries {
        let path = |source: Option<&str>| {
            let mut p = format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                enc(q),
                from / 1000,
                end / 1000,
                step / 1000
            );
            if let Some(s) = source {
                p.push_str("&max_source_resolution=");
                p.push_str(s);
            }
            p
        };
        let (auto_path, raw_path, vm_path) = (path(Some("auto")), path(Some("raw")), path(None));
        let ask = |addr: SocketAddr, p: &str, what: &str| -> (Matrix, Vec<String>, f64) {
            let t0 = Instant::now();
            let (status, body) = get(addr, p).unwrap_or_else(|e| panic!("{what} {q}: {e}"));
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            let (mx, infos) = parse_matrix(&format!("{what} {q}"), status, &body);
            (mx, infos, ms)
        };
        // First answers: correctness (and warm-up).
        let (auto, infos, _) = ask(global.addr, &auto_path, "promtier auto");
        let (rawm, raw_infos, _) = ask(global.addr, &raw_path, "promtier raw");
        let agree = compare(&rawm, &auto);
        let points: usize = rawm.values().map(Vec::len).sum();
        eprintln!("  {q} ({span}): auto infos {infos:?}; raw infos {raw_infos:?}; auto vs raw {agree:?}");
        if !infos.iter().any(|i| i.contains("rollups")) {
            failures.push(format!("{q}: auto read no rollups ({infos:?})"));
        }
        if points == 0 || agree.mismatched > 0 || agree.max_rel > 1e-9 {
            failures.push(format!("{q}: rollup and raw answers differ: {points} raw points, {agree:?}"));
        }
        let vm_agree = vm.as_ref().map(|(_, a)| compare(&rawm, &ask(*a, &vm_path, "VictoriaMetrics").0));
        let (mut ta, mut tr, mut tv) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..scale.rounds {
            ta.push(ask(global.addr, &auto_path, "promtier auto").2);
            tr.push(ask(global.addr, &raw_path, "promtier raw").2);
            if let Some((_, a)) = &vm {
                tv.push(ask(*a, &vm_path, "VictoriaMetrics").2);
            }
        }
        let (ma, mr) = (median(&mut ta), median(&mut tr));
        let mv = if tv.is_empty() { f64::NAN } else { median(&mut tv) };
        let used = infos
            .iter()
            .find_map(|i| i.split_once("downsampled data answered: "))
            .map(|(_, s)| s.split(" for ").next().unwrap_or(s).to_string())
            .unwrap_or_else(|| "raw".into());
        qrows.push([
            format!("{q} {span}"),
            format!("{ma:.1} ({used})"),
            format!("{mr:.1}"),
            if mv.is_nan() { "-".into() } else { format!("{mv:.1}") },
            format!("{:.1}x", mr / ma),
            if mv.is_nan() { "-".into() } else { format!("{:.2}x", mv / ma) },
            format!("{:.1e} / {points}", agree.max_rel),
            vm_agree.map_or("-".into(), |a| {
                format!("{:.1e} / {:.1e} ({} unmatched)", a.max_rel, a.median_rel, a.mismatched)
            }),
        ]);
    }
    if let Some((proc, _)) = vm {
        // Stopped first: a clean shutdown writes out what VictoriaMetrics still held in memory.
        drop(proc);
        let vm_bytes = dir_bytes(&dir.path().join("vm")) as f64;
        row(
            &mut rows,
            "VictoriaMetrics: data dir after the queries and shutdown (per series per year)",
            format!(
                "{} ({:.0} B; promtier raw / this = {:.2}x)",
                mb(vm_bytes),
                per_year(vm_bytes),
                raw / vm_bytes
            ),
        );
    }
    drop(global);
    let _ = std::fs::remove_dir_all(&data_root);
    let _ = std::fs::remove_dir_all(dir.path().join("vm"));

    // 6. A day of many series.
    let day_root = dir.path().join("day-data");
    let mut day =
        History::new(scale.day_series, 0, "bench_day_total", end - DAY, scale.day_interval_s * 1000, end);
    let t0 = Instant::now();
    write_history(&mut day, &day_root.join("global-a"), PIECE, PIECE);
    row(
        &mut rows,
        format!(
            "day: {} counters x 1 d every {} s ({:.1} M samples) written",
            scale.day_series,
            scale.day_interval_s,
            day.samples() as f64 / 1e6
        ),
        format!("{:.1} s", t0.elapsed().as_secs_f64()),
    );
    let t0 = Instant::now();
    let mut g = Global::start(dir.path(), "day-global", &day_root, 400);
    let first = g.wait_metrics(Duration::from_secs(600));
    let cpu0 = metric(&first, "process_cpu_seconds_total").unwrap_or(0.0);
    let ds0 = metric(&first, "promtier_downsample_duration_seconds_total").unwrap_or(0.0);
    let body = g.wait_rolled_up(long_wait);
    let wall = t0.elapsed().as_secs_f64();
    row(&mut rows, "day: wall time from start until nothing pending", format!("{wall:.1} s"));
    row(
        &mut rows,
        "day: promtier_downsample_duration_seconds_total (5m + 1h)",
        format!(
            "{:.1} s ({:.1} s before the first /metrics)",
            m(&body, "promtier_downsample_duration_seconds_total"),
            ds0
        ),
    );
    row(
        &mut rows,
        "day: process CPU delta (first /metrics -> done)",
        format!(
            "{:.1} s (compactions meanwhile: {})",
            m(&body, "process_cpu_seconds_total") - cpu0,
            m(&body, "promtier_tsdb_compactions_total")
        ),
    );
    let (d5, d1) = (
        m(&body, "promtier_downsample_block_bytes{resolution=\"5m\"}"),
        m(&body, "promtier_downsample_block_bytes{resolution=\"1h\"}"),
    );
    row(
        &mut rows,
        "day: rollup blocks written; bytes raw / 5m / 1h (before compaction)",
        format!(
            "{} ; {} / {} / {}",
            m(&body, "promtier_downsample_blocks_total"),
            mb(m(&body, "promtier_tsdb_blocks_bytes") - d5 - d1),
            mb(d5),
            mb(d1)
        ),
    );
    row(
        &mut rows,
        "day: raw samples rolled up per second of rollup time (x2 resolutions)",
        format!(
            "{:.1} M/s",
            2.0 * day.samples() as f64 / m(&body, "promtier_downsample_duration_seconds_total") / 1e6
        ),
    );
    drop(g);

    // The table.
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    println!("\nResults ({scale:?}; {:.0} s in all)", started.elapsed().as_secs_f64());
    println!("{}", "-".repeat(w + 40));
    for Row(name, value) in &rows {
        println!("{name:<w$}  {value}");
    }
    let header = [
        "query (median ms of rounds)".to_string(),
        "auto ms".into(),
        "raw ms".into(),
        "VM ms".into(),
        "raw/auto".into(),
        "VM/auto".into(),
        "auto~raw max rel / pts".into(),
        "VM~raw max / median rel".into(),
    ];
    let widths: Vec<usize> = (0..header.len())
        .map(|c| qrows.iter().chain([&header]).map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let line = |r: &[String; 8]| {
        let mut s = format!("{:<w$}", r[0], w = widths[0]);
        for (c, cell) in r.iter().enumerate().skip(1) {
            s.push_str(&format!("  {cell:>w$}", w = widths[c]));
        }
        s
    };
    println!("{}", "-".repeat(w + 40));
    println!("{}", line(&header));
    for r in &qrows {
        println!("{}", line(r));
    }
    println!(
        "(auto: max_source_resolution=auto, rollups; raw: max_source_resolution=raw; ratios above 1 mean \
         auto is faster; 'rel' = relative difference between the answers, over common points)"
    );
    assert!(failures.is_empty(), "rollup answers disagree with raw answers:\n{}", failures.join("\n"));
}
