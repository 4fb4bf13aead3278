//! Remote write through a long outage, from a leaf (issue 11): a promtier leaf scrapes 2000 demo
//! series every second and sends them to two real VictoriaMetrics servers — `full` with the
//! default disk bound, `bounded` with `max_backlog: 1MiB` and WAL segments of 64 KiB. Both
//! receivers are stopped for several minutes (`PROMTIER_TEST_OUTAGE_SECS`, default 180) while the
//! leaf keeps scraping. During the outage the sender's memory stays flat (RSS and
//! `samples_pending`), and the bounded queue gives up its oldest segments (counted, logged). Once
//! the receivers are back, `full` holds every sample the leaf stored, each once; `bounded` holds
//! everything except a contiguous stretch of the outage per series, the newest data included, and
//! what it lacks is what the leaf counted as dropped.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use promtier::model::{Labels, now_ms};

const BOUND: Duration = Duration::from_secs(240);
const SERIES: u32 = 2000;
/// Every series the leaf stores (demo series, `up` and the scrape's own series).
const ALL_URL: &str = "%7B__name__%3D~%22.%2B%22%7D";

fn outage() -> Duration {
    let secs = std::env::var("PROMTIER_TEST_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(180);
    Duration::from_secs(secs)
}

/// Samples by series (labels as sorted pairs), stale markers left out: VictoriaMetrics 1.79
/// does not keep them.
type Series = std::collections::BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

fn leaf_series(leaf: SocketAddr) -> Option<Series> {
    Some(
        try_stored(leaf, ALL_URL, 0)?
            .into_iter()
            .map(|(l, s): (Labels, Vec<(i64, f64)>)| {
                (
                    l.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect(),
                    s.into_iter().filter(|x| !x.1.is_nan()).map(|(t, v)| (t, v.to_bits())).collect(),
                )
            })
            .collect(),
    )
}

fn vm_series(vm: &VictoriaMetrics) -> Option<Series> {
    Some(
        vm.export("{__name__=~\".+\"}")?
            .into_iter()
            .map(|(l, s)| {
                let mut s: Vec<(i64, u64)> =
                    s.into_iter().filter(|x| !x.1.is_nan()).map(|(t, v)| (t, v.to_bits())).collect();
                s.dedup();
                (l, s)
            })
            .collect(),
    )
}

fn close(a: u64, b: u64) -> bool {
    VictoriaMetrics::same_value(f64::from_bits(a), f64::from_bits(b))
}

/// For each leaf series up to `until`: the samples the receiver lacks (their timestamps), or a
/// problem (a sample the leaf does not have, a value that differs, a timestamp twice).
fn compare(leaf: &Series, vm: &Series, until: i64) -> (Vec<(String, Vec<i64>)>, Vec<String>) {
    let mut missing = Vec::new();
    let mut problems = Vec::new();
    for (labels, want) in leaf {
        let want: Vec<_> = want.iter().filter(|s| s.0 <= until).collect();
        let have = vm.get(labels).map(Vec::as_slice).unwrap_or_default();
        let have: Vec<_> = have.iter().filter(|s| s.0 <= until).collect();
        if have.windows(2).any(|w| w[0].0 == w[1].0) {
            problems.push(format!("{labels:?}: a timestamp twice"));
        }
        let mut lacks = Vec::new();
        let mut h = have.iter().peekable();
        for w in &want {
            match h.peek() {
                Some(x) if x.0 == w.0 => {
                    if !close(x.1, w.1) {
                        problems.push(format!(
                            "{labels:?} at {}: value differs: leaf {}, receiver {}",
                            w.0,
                            f64::from_bits(w.1),
                            f64::from_bits(x.1)
                        ));
                    }
                    h.next();
                }
                Some(x) if x.0 < w.0 => {
                    problems.push(format!("{labels:?}: a sample at {} the leaf does not have", x.0));
                    h.next();
                }
                _ => lacks.push(w.0),
            }
        }
        if !lacks.is_empty() {
            missing.push((format!("{labels:?}"), lacks));
        }
    }
    (missing, problems)
}

fn metric(addr: SocketAddr, prefix: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics", Duration::from_secs(10)).unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1.0)
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn a_leaf_rides_out_a_long_outage_with_bounded_memory_and_a_bounded_disk_backlog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(4);
    let (demo_port, leaf_port, full_port, bounded_port) = (base, base + 1, base + 2, base + 3);
    let mut full = VictoriaMetrics::start(full_port, &dir.path().join("vm-full"));
    let mut bounded = VictoriaMetrics::start(bounded_port, &dir.path().join("vm-bounded"));
    let queue = "batch_send_deadline: 1s, min_backoff: 50ms, max_backoff: 2s, max_samples_per_send: 2000, max_shards: 4";
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: outage\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo_port}']}}]\n\
             leaves:\n  - group: apps\n    jobs: [demo]\n    replicas: 1\n    listen: '127.0.0.1:{leaf_port}'\n\
             \x20   remote_write:\n\
             \x20     - {{url: 'http://127.0.0.1:{full_port}/api/v1/write', name: full, queue_config: {{{queue}}}}}\n\
             \x20     - {{url: 'http://127.0.0.1:{bounded_port}/api/v1/write', name: bounded, queue_config: {{{queue}, max_backlog: 1MiB}}}}\n"
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    let demo_addr = format!("127.0.0.1:{demo_port}");
    let series = SERIES.to_string();
    let _demo = start_promtier(
        "demo",
        &["demo", "--listen", &demo_addr, "--series", &series],
        &dir.path().join("demo.log"),
    );
    let log = dir.path().join("leaf.log");
    let leaf_proc = start_promtier(
        "leaf",
        &["leaf", "--topology", t, "--node", "apps-0-a", "--tsdb.wal-segment-size", "64KiB"],
        &log,
    );
    let leaf: SocketAddr = ([127, 0, 0, 1], leaf_port).into();
    let logs = || {
        let s = std::fs::read_to_string(&log).unwrap_or_default();
        let n = s.len();
        s[n.saturating_sub(6000)..].to_string()
    };
    for vm in [&full, &bounded] {
        wait_until("the demo series in VictoriaMetrics", BOUND, logs, || {
            (vm.export("{__name__=~\"demo_.+\"}")?.len() as u32 >= SERIES * 9 / 10).then_some(())
        });
    }
    // The series the sender sends carry the leaf's external labels (it is one replica of a shard).
    let sample = vm_series(&full).expect("export");
    let (labels, _) = sample.iter().find(|(l, _)| l.iter().any(|(k, _)| k == "__name__")).expect("a series");
    for want in [("cluster", "outage"), ("replica", "a"), ("shard", "apps-0")] {
        assert!(labels.iter().any(|(k, v)| (k.as_str(), v.as_str()) == want), "{want:?} not in {labels:?}");
    }

    // The outage: both receivers down for several minutes while the leaf keeps scraping.
    let pid = leaf_proc.id();
    full.stop();
    bounded.stop();
    let outage_start = now_ms();
    let rss_before = rss_bytes(pid);
    let (mut rss_max, mut pending_max) = (rss_before, 0f64);
    let round_cap = 4.0 * 2000.0;
    let started = Instant::now();
    while started.elapsed() < outage() {
        rss_max = rss_max.max(rss_bytes(pid));
        pending_max =
            pending_max.max(metric(leaf, "prometheus_remote_storage_samples_pending{remote_name=\"full\""));
        std::thread::sleep(Duration::from_secs(2));
    }
    let outage_end = now_ms();
    let bounded_url = format!("http://127.0.0.1:{bounded_port}/api/v1/write");
    let dropped_line = format!(
        "prometheus_remote_storage_samples_dropped_total{{remote_name=\"bounded\",url=\"{bounded_url}\",reason=\"backlog\"}}"
    );
    let dropped = metric(leaf, &dropped_line);
    let backlog_full = metric(leaf, "promtier_remote_storage_backlog_bytes{remote_name=\"full\"");
    let backlog_bounded = metric(leaf, "promtier_remote_storage_backlog_bytes{remote_name=\"bounded\"");
    eprintln!(
        "outage {:?}: leaf RSS {} -> max {} MiB; pending max {pending_max}; backlog full {backlog_full} B, bounded {backlog_bounded} B; dropped by bounded {dropped}",
        outage(),
        rss_before >> 20,
        rss_max >> 20
    );
    assert!(pending_max <= round_cap, "pending {pending_max} > one round ({round_cap})");
    assert!(
        rss_max < rss_before + (48 << 20),
        "the leaf's memory grew with the backlog: {} -> {} MiB",
        rss_before >> 20,
        rss_max >> 20
    );
    assert!(backlog_full > 1_048_576.0, "the full queue's backlog should pass 1MiB: {backlog_full}");
    assert!(backlog_bounded <= 1_048_576.0 + 65_536.0, "bounded backlog {backlog_bounded}");
    // The bounded queue gave up its oldest segments; counted and logged.
    assert!(dropped > 0.0, "nothing dropped by the bounded queue\n{}", logs());
    let full_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(full_log.contains("backlog over its bound"), "no warning logged\n{}", logs());

    // Back: `full` catches up with everything, `bounded` with everything it kept.
    full.restart();
    bounded.restart();
    let back = Instant::now();
    let until = outage_end + 5_000;
    wait_until("the leaf to store 5 s past the outage", BOUND, logs, || {
        let l = leaf_series(leaf)?;
        (l.values().filter_map(|s| s.last()).map(|s| s.0).max()? > until + 2_000).then_some(())
    });
    let last = std::cell::RefCell::new(String::new());
    let total = wait_until(
        "the full receiver to hold every sample the leaf stored",
        BOUND,
        || format!("{}\n{}", last.borrow(), logs()),
        || {
            let l = leaf_series(leaf)?;
            let (missing, problems) = compare(&l, &vm_series(&full)?, until);
            *last.borrow_mut() = format!(
                "{} series lack samples, e.g. {:?}; problems: {:?}",
                missing.len(),
                missing.first(),
                &problems[..problems.len().min(5)]
            );
            assert!(problems.is_empty(), "{}", last.borrow());
            missing
                .is_empty()
                .then(|| l.values().map(|s| s.iter().filter(|x| x.0 <= until).count()).sum::<usize>())
        },
    );
    let caught_up = back.elapsed();
    let outage_samples = leaf_series(leaf)
        .expect("leaf")
        .values()
        .map(|s| s.iter().filter(|x| x.0 > outage_start && x.0 <= outage_end).count())
        .sum::<usize>();
    eprintln!(
        "catch-up: {outage_samples} samples of the outage sent in {caught_up:?} ({:.0} samples/s, wall clock, VictoriaMetrics start included); {total} samples compared",
        outage_samples as f64 / caught_up.as_secs_f64()
    );
    wait_until(
        "the bounded receiver to hold the newest samples",
        BOUND,
        || format!("{}\n{}", last.borrow(), logs()),
        || {
            let l = leaf_series(leaf)?;
            let (missing, problems) = compare(&l, &vm_series(&bounded)?, until);
            assert!(problems.is_empty(), "{problems:?}");
            *last.borrow_mut() = format!("{} series lack samples, e.g. {:?}", missing.len(), missing.first());
            // What is missing is one contiguous stretch of the outage per series: the oldest
            // segments were dropped, everything after them arrived.
            for (labels, lacks) in &missing {
                let want = &l[&labels_back(labels, &l)?];
                let ts: Vec<i64> = want.iter().map(|s| s.0).filter(|t| *t <= until).collect();
                let first = ts.iter().position(|t| *t == lacks[0])?;
                if ts.get(first..first + lacks.len()) != Some(&lacks[..]) {
                    *last.borrow_mut() = format!("{labels}: missing samples are not one stretch: {lacks:?}");
                    return None;
                }
                // The queue may have been a little behind when the outage began (a busy host).
                if lacks[0] < outage_start - 60_000 {
                    *last.borrow_mut() =
                        format!("{labels}: samples missing from before the outage: {lacks:?}");
                    return None;
                }
                if *lacks.last()? > outage_end {
                    return None; // still catching up
                }
            }
            let lacking: usize = missing.iter().map(|m| m.1.len()).sum();
            // Counted now: the queue may give up more once the receiver is back and the backlog
            // is still over the bound. Stale markers (not compared) may be among what was dropped.
            let dropped = metric(leaf, &dropped_line);
            *last.borrow_mut() = format!("{lacking} samples lacking, {dropped} dropped");
            (lacking > 0 && lacking as f64 <= dropped).then_some(())
        },
    );
}

/// The leaf series whose debug rendering is `rendered`.
fn labels_back(rendered: &str, leaf: &Series) -> Option<Vec<(String, String)>> {
    leaf.keys().find(|k| format!("{k:?}") == rendered).cloned()
}
