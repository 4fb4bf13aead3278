//! Downsampling on a real global process: five weeks of synthetic history imported with
//! `promtier tsdb import` (counters with resets, gauges, a classic histogram), rolled up in the
//! background, then the same range queries asked of raw data (`max_source_resolution=raw`) and
//! of the rollups (`auto`, `5m`, `1h`): equal over windows aligned to the resolution, within the
//! documented bound otherwise. Then raw retention removes the old raw blocks and the rollups keep
//! answering the older range the same way; and a SIGKILL in the middle of writing rollups leaves
//! no partial block: the piece is rolled up again after the restart.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use promtier::model::now_ms;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Waits for background work of a debug build on a busy 2-core machine.
const BOUND: Duration = Duration::from_secs(300);

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The value of a metric line starting with `prefix` on a node's `/metrics`.
fn metric(node: SocketAddr, prefix: &str) -> Option<f64> {
    let (status, body) = http_get(node, "/metrics", Duration::from_secs(10)).ok()?;
    if status != 200 {
        return None;
    }
    body.lines().find_map(|l| l.strip_prefix(prefix)?.rsplit(' ').next()?.trim().parse().ok())
}

/// Writes an OpenMetrics file of `days` of history ending at `end` (ms), one sample a minute
/// at exact multiples of a minute (on window borders: the hardest case for left-open windows),
/// and imports it into `data_dir`.
fn import_history(dir: &Path, data_dir: &Path, end: i64, days: i64, extra_series: usize) {
    let start = end - days * DAY;
    let times: Vec<i64> = (1..=days * DAY / MINUTE).map(|i| start + i * MINUTE).collect();
    let secs = |t: i64| t as f64 / 1000.0;
    let mut f = String::with_capacity(64 << 20);
    f.push_str("# TYPE ds_requests counter\n");
    for (p, period) in [("a", 4_001usize), ("b", 2_777)] {
        let mut v = 0.0;
        for (i, t) in times.iter().enumerate() {
            // Resets every couple of days; uneven increments.
            v = if i % period == period - 1 { (i % 5) as f64 } else { v + ((i * 7) % 13) as f64 };
            let _ = writeln!(f, "ds_requests_total{{path=\"{p}\"}} {v} {}", secs(*t));
        }
    }
    f.push_str("# TYPE ds_temperature gauge\n");
    for (room, phase) in [("x", 0.0), ("y", 1.7)] {
        for (i, t) in times.iter().enumerate() {
            let v = 20.0 + 5.0 * ((i as f64) / 300.0 + phase).sin() + ((i * 31) % 17) as f64 / 10.0;
            let _ = writeln!(f, "ds_temperature{{room=\"{room}\"}} {v} {}", secs(*t));
        }
    }
    f.push_str("# TYPE ds_latency_seconds histogram\n");
    let bounds = ["0.1", "0.5", "1", "+Inf"];
    let mut buckets = [0.0f64; 4];
    let mut sum = 0.0;
    let mut rows: Vec<String> = vec![String::new(); 6];
    for (i, t) in times.iter().enumerate() {
        let n = (i % 9) as f64 + 1.0;
        let fast = ((i * 13) % 10) as f64 / 10.0;
        let adds = [n * fast * 0.5, n * fast, n * (0.5 + fast / 2.0), n];
        for (b, a) in buckets.iter_mut().zip(adds) {
            *b += a.floor();
        }
        buckets[3] = buckets[3].max(buckets[2]);
        let count = buckets[3];
        sum += n * 0.4;
        for (k, le) in bounds.iter().enumerate() {
            let _ = writeln!(rows[k], "ds_latency_seconds_bucket{{le=\"{le}\"}} {} {}", buckets[k], secs(*t));
        }
        let _ = writeln!(rows[4], "ds_latency_seconds_count {count} {}", secs(*t));
        let _ = writeln!(rows[5], "ds_latency_seconds_sum {sum} {}", secs(*t));
    }
    for r in rows {
        f.push_str(&r);
    }
    if extra_series > 0 {
        f.push_str("# TYPE ds_load gauge\n");
        for s in 0..extra_series {
            for (i, t) in times.iter().enumerate().step_by(2) {
                let _ = writeln!(f, "ds_load{{n=\"{s}\"}} {} {}", (i * (s + 3)) % 101, secs(*t));
            }
        }
    }
    f.push_str("# EOF\n");
    let input = dir.join("history.om");
    std::fs::write(&input, &f).expect("write the import file");
    let out = Command::new(promtier_binary())
        .args(["tsdb", "import", "--data-dir"])
        .arg(data_dir)
        .arg(&input)
        .output()
        .expect("run promtier tsdb import");
    assert!(out.status.success(), "import failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file(&input);
}

/// A topology with one (unreachable) leaf group and a global holding `retention` of raw data.
fn write_topology(path: &Path, global_port: u16, retention: &str) {
    std::fs::write(
        path,
        format!(
            "cluster: d\n\
             jobs:\n  - job_name: none\n    static_configs: [{{targets: ['127.0.0.1:9']}}]\n\
             leaves:\n  - {{group: apps, jobs: [none], listen: '127.0.0.1:{}'}}\n\
             globals:\n  - name: global\n    from: [apps]\n    listen: '127.0.0.1:{global_port}'\n    retention: {retention}\n    downsample:\n      - {{resolution: 5m, retention: 90d}}\n      - {{resolution: 1h, retention: 2y}}\n",
            global_port + 1
        ),
    )
    .expect("write the topology");
}

/// A range query's series (labels as JSON text → points) and its infos.
type Matrix = BTreeMap<String, Vec<(i64, f64)>>;

fn query_range(
    node: SocketAddr,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
    source: &str,
) -> (Matrix, Vec<String>) {
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={}&max_source_resolution={source}",
        enc(q),
        start / 1000,
        end / 1000,
        step / 1000
    );
    let (status, body) = http_get(node, &path, Duration::from_secs(120)).expect("query_range");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(status, 200, "{q} ({source}): {body}");
    let mut out = Matrix::new();
    for s in json["data"]["result"].as_array().expect("a matrix") {
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

/// Asserts `got` has the points of `want` (same series, same times), each value within
/// `tolerance(want_value)`.
fn assert_close(what: &str, want: &Matrix, got: &Matrix, tolerance: impl Fn(f64) -> f64) {
    assert!(!want.is_empty(), "{what}: the raw answer is empty");
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>(), "{what}: series differ");
    for (labels, w) in want {
        let g = &got[labels];
        assert_eq!(
            w.iter().map(|p| p.0).collect::<Vec<_>>(),
            g.iter().map(|p| p.0).collect::<Vec<_>>(),
            "{what} {labels}: steps differ"
        );
        for (a, b) in w.iter().zip(g) {
            let tol = tolerance(a.1);
            assert!(
                (a.1 - b.1).abs() <= tol,
                "{what} {labels} at {}: raw {} vs rollups {} (tolerance {tol})",
                a.0,
                a.1,
                b.1
            );
        }
    }
}

fn exact(v: f64) -> f64 {
    1e-9 * v.abs().max(1.0)
}

struct Global {
    guard: Option<ChildGuard>,
    addr: SocketAddr,
    topology: PathBuf,
    log: PathBuf,
    starts: u32,
}

impl Global {
    fn start(topology: &Path, addr: SocketAddr, dir: &Path) -> Global {
        let mut g = Global {
            guard: None,
            addr,
            topology: topology.to_path_buf(),
            log: dir.join("global-0.log"),
            starts: 0,
        };
        g.restart();
        g
    }

    fn restart(&mut self) {
        if let Some(mut old) = self.guard.take() {
            old.stop();
        }
        self.starts += 1;
        self.log = self.log.with_file_name(format!("global-{}.log", self.starts));
        let t = self.topology.to_str().expect("utf8");
        self.guard =
            Some(start_promtier("global", &["global", "--topology", t, "--node", "global-a"], &self.log));
        let addr = self.addr;
        wait_until("the global to answer", BOUND, || self.logs(), || api_data(addr, "/api/v1/labels"));
    }

    fn sigkill(&mut self) {
        if let Some(g) = self.guard.take() {
            let _ = kill(Pid::from_raw(g.id() as i32), Signal::SIGKILL);
            drop(g);
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until nothing is left to roll up and at least `blocks` rollup blocks were written
    /// by this process.
    fn wait_rolled_up(&self, blocks: f64) {
        let addr = self.addr;
        wait_until(
            "the history to be rolled up",
            BOUND,
            || self.logs(),
            || {
                let pending = metric(addr, "promtier_downsample_pending_pieces")?;
                let written = metric(addr, "promtier_downsample_blocks_total")?;
                (pending == 0.0 && written >= blocks).then_some(())
            },
        );
    }
}

#[test]
fn a_month_of_history_answers_from_rollups_like_raw_data_and_outlives_raw_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port_block(2);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let topology = dir.path().join("t.yaml");
    write_topology(&topology, port, "60d");
    // Five weeks ending on a 6-hour border at least a day ago.
    let end = (now_ms() - DAY) / (6 * HOUR) * (6 * HOUR);
    let days = 35;
    import_history(dir.path(), &dir.path().join("data").join("global-a"), end, days, 0);
    let mut global = Global::start(&topology, addr, dir.path());
    // At least every 6-hour piece but the newest at both resolutions (the newest is rolled up
    // too when it ends exactly at the newest sample).
    global.wait_rolled_up((2 * (days * 4 - 1)) as f64);

    // 30 days at a 1 h step: `auto` reads 1h rollups for ranges of 5h and more, 5m below.
    let (start, stop, step) = (end - 31 * DAY, end - 6 * HOUR, HOUR);
    let aligned = [
        "rate(ds_requests_total[6h])",
        "increase(ds_requests_total[1d])",
        "resets(ds_requests_total[1d])",
        "delta(ds_temperature[6h])",
        "max_over_time(ds_temperature[6h])",
        "min_over_time(ds_temperature[6h])",
        "sum_over_time(ds_temperature[6h])",
        "count_over_time(ds_temperature[6h])",
        "avg_over_time(ds_temperature[1d])",
        "last_over_time(ds_temperature[6h])",
        "changes(ds_temperature[6h])",
        "ds_temperature",
        "histogram_quantile(0.9, sum by (le) (rate(ds_latency_seconds_bucket[6h])))",
        "sum(rate(ds_requests_total[1h]))",
    ];
    let mut rollup_answers = Vec::new();
    for q in aligned {
        let (raw, raw_infos) = query_range(addr, q, start, stop, step, "raw");
        assert!(raw_infos.iter().all(|i| !i.contains("rollups")), "{q}: raw read rollups: {raw_infos:?}");
        let (auto, auto_infos) = query_range(addr, q, start, stop, step, "auto");
        assert!(
            auto_infos.iter().any(|i| i.contains("rollups")),
            "{q}: auto read no rollups: {auto_infos:?}"
        );
        assert_close(&format!("{q} (auto)"), &raw, &auto, exact);
        let (five, infos) = query_range(addr, q, start, stop, step, "5m");
        assert!(infos.iter().any(|i| i.contains("5m rollups")), "{q}: {infos:?}");
        assert_close(&format!("{q} (5m)"), &raw, &five, exact);
        let points: usize = raw.values().map(Vec::len).sum();
        eprintln!("{q}: {} series, {points} points equal; auto: {auto_infos:?}", raw.len());
        rollup_answers.push((q, auto));
    }
    let (_, infos) = query_range(addr, "rate(ds_requests_total[6h])", start, stop, step, "auto");
    assert!(infos.iter().any(|i| i.contains("1h rollups")), "{infos:?}");
    let (_, infos) = query_range(addr, "rate(ds_requests_total[1h])", start, stop, step, "auto");
    assert!(
        infos.iter().any(|i| i.contains("5m rollups")) && infos.iter().all(|i| !i.contains("1h rollups")),
        "{infos:?}"
    );

    // Steps off the 5-minute grid: rate over rollups differs from raw by at most the increase of
    // one rollup window at each end of the range (the documented bound, 2·5m/1h of the rate
    // here), and maxima can only come from a wider span: never below the raw answer by more.
    let off = start + 7 * MINUTE;
    let q = "rate(ds_requests_total[1h])";
    let (raw, _) = query_range(addr, q, off, off + 2 * DAY, HOUR, "raw");
    let (auto, _) = query_range(addr, q, off, off + 2 * DAY, HOUR, "auto");
    let bound = |v: f64| 2.0 * 5.0 / 60.0 * v.abs() + 13.0 / 60.0 + 1e-9;
    let mut reset_steps = 0;
    for (labels, w) in &raw {
        for (a, b) in w.iter().zip(&auto[labels]) {
            // A reset near a range edge can move whole windows' worth of increase; the bound is
            // for counters without a reset at the edges.
            if (a.1 - b.1).abs() > bound(a.1) {
                reset_steps += 1;
            }
        }
    }
    eprintln!("{q} off the grid: {reset_steps} steps outside the bound");
    assert!(reset_steps <= 8, "{reset_steps} steps of {q} outside the bound (resets only)");

    // Raw retention shortened to 10 days: old raw blocks go, rollups stay and answer alike.
    write_topology(&topology, port, "10d");
    global.restart();
    wait_until(
        "retention to delete the old raw blocks",
        BOUND,
        || global.logs(),
        || {
            let (raw, _) =
                query_range(addr, "count_over_time(ds_temperature[1h])", start, start + DAY, HOUR, "raw");
            raw.is_empty().then_some(())
        },
    );
    for (q, before) in &rollup_answers {
        let (after, infos) = query_range(addr, q, start, stop, step, "auto");
        assert!(infos.iter().any(|i| i.contains("rollups")), "{q}: {infos:?}");
        assert_close(&format!("{q} after raw retention"), before, &after, exact);
    }
}

#[test]
fn a_sigkill_while_rollups_are_written_leaves_no_partial_block_and_the_piece_is_redone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port_block(2);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let topology = dir.path().join("t.yaml");
    write_topology(&topology, port, "60d");
    let end = (now_ms() - DAY) / (6 * HOUR) * (6 * HOUR);
    let days = 4;
    let data_dir = dir.path().join("data").join("global-a");
    // Enough series that writing one piece takes a while.
    import_history(dir.path(), &data_dir, end, days, 1500);
    let mut global = Global::start(&topology, addr, dir.path());
    let partial = || {
        std::fs::read_dir(&data_dir).ok()?.flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = std::fs::read_to_string(e.path().join("index")).is_ok();
            (name.ends_with(".tmp") && e.path().join("chunks").exists() && !meta).then_some(name)
        })
    };
    let mut caught = None;
    for _attempt in 0..5 {
        // Kill as soon as a block is half-written (chunks written, index not yet).
        let started = std::time::Instant::now();
        while started.elapsed() < BOUND && caught.is_none() {
            // Compactions of the imported blocks come first; hunt once rollups are being written.
            if !global.logs().contains("raw data rolled up") {
                std::thread::yield_now();
                continue;
            }
            if let Some(name) = partial() {
                global.sigkill();
                // Still there after the kill: the process died before publishing it.
                caught = partial().filter(|n| *n == name);
                break;
            }
            if metric(addr, "promtier_downsample_pending_pieces") == Some(0.0) {
                break;
            }
        }
        if caught.is_some() {
            break;
        }
        // Missed this time (or everything was done): start over on a fresh copy of the import.
        global.sigkill();
        for e in std::fs::read_dir(&data_dir).expect("data dir").flatten() {
            let is_rollup =
                std::fs::read_to_string(e.path().join("meta.json")).is_ok_and(|m| m.contains("downsample"));
            if is_rollup {
                std::fs::remove_dir_all(e.path()).expect("remove a rollup block");
            }
        }
        global.restart();
    }
    let name = caught.expect("never caught a rollup block half-written in 5 attempts");
    global.restart();
    assert!(
        global.logs().contains("removing an interrupted block write"),
        "the half-written {name} was not cleaned up:\n{}",
        global.logs()
    );
    global.wait_rolled_up(1.0);
    assert!(!data_dir.join(&name).exists());
    // Every piece is there once: rollups answer as raw data does.
    let (start, stop) = (end - (days - 1) * DAY, end - 6 * HOUR);
    for q in ["max_over_time(ds_load[6h])", "increase(ds_requests_total[6h])"] {
        let (raw, _) = query_range(addr, q, start, stop, HOUR, "raw");
        let (rolled, infos) = query_range(addr, q, start, stop, HOUR, "1h");
        assert!(infos.iter().any(|i| i.contains("1h rollups")), "{infos:?}");
        assert_close(q, &raw, &rolled, exact);
    }
}
