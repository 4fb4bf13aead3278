//! Failover dedup end to end: a 2-shard × 2-replica cluster with one global in `failover` mode,
//! started with `promtier up`. SIGKILL the elected replica of shard 0 while data flows: every
//! series of that shard in the global has no gap longer than one scrape interval around the
//! kill that the surviving replica could have filled, no duplicate timestamps, and counters
//! never go down (so `increase` across the kill is the true increase); the election is visible
//! on `/metrics`. Then restart that replica, kill the other one, and check again. Every step
//! waits for the state it needs (data stored, a switch, a filled window) with a generous bound.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::*;
use common::*;
use promtier::model::{Labels, is_stale_nan, now_ms};

const INTERVAL_MS: i64 = 1000;

/// What is wrong with the stored series of the shard around a kill at `kill_ms`, up to
/// `until_ms`; `None` when a node does not answer. `survivor` is the replica elected after the
/// kill: a gap longer than an interval that reaches past the kill is wrong when the survivor
/// stored a sample inside it (the global should have filled it from there) — a scrape the
/// survivor itself missed (a busy machine) is no failover fault. Gaps before the kill are the
/// killed replica's own scrapes, which nobody can ask for any more.
fn gap_problems(
    global: SocketAddr,
    survivor: SocketAddr,
    shard: &str,
    kill_ms: i64,
    until_ms: i64,
) -> Option<Vec<String>> {
    let from = kill_ms - 8_000;
    let selector = format!("%7Bshard%3D%22{shard}%22%7D");
    let series = try_stored(global, &selector, from)?;
    // A leaf stores its series without its external labels (its stream adds them, the replica
    // label too, which failover strips): select by job there.
    let theirs: BTreeMap<Labels, Vec<(i64, f64)>> = try_stored(survivor, "%7Bjob%3D%22demo%22%7D", from)?
        .into_iter()
        .map(|(l, s)| (l.without(&["replica"]), s))
        .collect();
    let demo: Vec<(&Labels, &Vec<(i64, f64)>)> =
        series.iter().filter(|(l, _)| l.metric_name().is_some_and(|n| n.starts_with("demo_"))).collect();
    let mut problems = Vec::new();
    if demo.len() < 20 {
        problems.push(format!("too few demo series of {shard} in the global: {}", demo.len()));
    }
    for (labels, samples) in demo {
        assert!(labels.get("replica").is_none(), "failover must store without the replica label: {labels}");
        let window: Vec<&(i64, f64)> = samples.iter().filter(|(t, _)| *t >= from && *t <= until_ms).collect();
        if window.len() < 5 {
            problems.push(format!("{labels}: only {} samples in the window", window.len()));
            continue;
        }
        if !theirs.contains_key(labels) {
            problems.push(format!("{labels}: not a series of the survivor"));
        }
        if window.last().is_some_and(|(t, _)| *t + INTERVAL_MS + INTERVAL_MS / 2 < until_ms) {
            problems.push(format!("{labels}: nothing stored near the window's end {until_ms}"));
        }
        for w in window.windows(2) {
            let ((t0, v0), (t1, v1)) = (*w[0], *w[1]);
            if t1 <= t0 {
                problems.push(format!("{labels}: timestamps not increasing: {t0} then {t1}"));
            }
            // Scrapes are 1 s apart; replicas scrape at different offsets, so a switch may
            // shorten or lengthen one step, never by a whole interval.
            if t1 - t0 > INTERVAL_MS + INTERVAL_MS / 2 && t1 > kill_ms {
                let inside: Vec<i64> = theirs
                    .get(labels)
                    .map(|s| s.iter().map(|x| x.0).filter(|t| *t > t0 && *t < t1).collect())
                    .unwrap_or_default();
                if !inside.is_empty() {
                    problems.push(format!(
                        "{labels}: gap of {} ms ({t0} -> {t1}), kill at {kill_ms}; the survivor has {inside:?}",
                        t1 - t0
                    ));
                }
            }
            let counter = labels
                .metric_name()
                .is_some_and(|n| n.ends_with("_total") || n.ends_with("_count") || n.ends_with("_bucket"));
            if counter && !is_stale_nan(v0) && !is_stale_nan(v1) && v1 < v0 {
                problems.push(format!("{labels}: counter went down {v0} -> {v1} at {t1} (a false reset)"));
            }
        }
    }
    Some(problems)
}

/// Waits until the stored series of the shard around a kill at `kill_ms` are complete up to
/// `until_ms` (the global fills after a switch, so the window may close a little later): no gap
/// the survivor could fill, no duplicate timestamp, no counter going down.
fn check_no_gap(
    global: SocketAddr,
    survivor: SocketAddr,
    shard: &str,
    kill_ms: i64,
    until_ms: i64,
    context: &dyn Fn() -> String,
) {
    let last = std::cell::RefCell::new(Vec::new());
    wait_until(
        &format!("a complete window around the kill in {shard}"),
        Duration::from_secs(60),
        || {
            let p = last.borrow();
            format!("{} problems, e.g.:\n{}\n{}", p.len(), p[..p.len().min(10)].join("\n"), context())
        },
        || {
            let problems = gap_problems(global, survivor, shard, kill_ms, until_ms)?;
            let done = problems.is_empty();
            *last.borrow_mut() = problems;
            done.then_some(())
        },
    );
}

/// Whether the global holds `span_ms` of data, up to a moment ago, for 20 demo series of `shard`.
fn has_history(global: SocketAddr, shard: &str, span_ms: i64) -> Option<()> {
    let now = now_ms();
    let series = try_stored(global, &format!("%7Bshard%3D%22{shard}%22%7D"), now - span_ms - 5_000)?;
    let spanning = series
        .iter()
        .filter(|(l, _)| l.metric_name().is_some_and(|n| n.starts_with("demo_")))
        .filter(|(_, s)| {
            s.first().is_some_and(|(t, _)| *t <= now - span_ms)
                && s.last().is_some_and(|(t, _)| *t >= now - 1_500)
        })
        .count();
    (spanning >= 20).then_some(())
}

#[test]
fn failover_loses_nothing_and_never_fakes_a_counter_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(8);
    let (demo_base, leaf_base, global_port) = (base, base + 2, base + 6);
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: fo\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 2, listen: '127.0.0.1:{demo_base}', series: 60}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo_base}', '127.0.0.1:{}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], shards: 2, replicas: 2, listen: '127.0.0.1:{leaf_base}'}}\n\
             globals:\n  - name: global\n    from: [apps]\n    listen: '127.0.0.1:{global_port}'\n\
             \x20   federate: {{interval: 1s, timeout: 900ms}}\n    dedup: {{mode: failover, failover_timeout: 3s}}\n",
            demo_base + 1
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    // Which shard has a target? Use the plan; with two targets both shards usually get one.
    let plan = std::process::Command::new(promtier_binary())
        .args(["plan", t, "--format", "json"])
        .output()
        .expect("plan");
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    let shard_with_data = plan["targets"][0]["shard"].as_u64().expect("shard");
    let shard = format!("apps-{shard_with_data}");

    let log = dir.path().join("up.log");
    let _up = start_promtier("promtier up", &["up", t], &log);
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let global: SocketAddr = ([127, 0, 0, 1], global_port).into();
    let first = wait_until("a first election", Duration::from_secs(60), up_log, || elected(global, &shard));
    wait_until("4 s of data from the elected replica", Duration::from_secs(60), up_log, || {
        has_history(global, &shard, 4_000)
    });

    let mut extra_leaf = None;
    for (round, victim) in
        [first.clone(), if first == "a" { "b".to_string() } else { "a".to_string() }].iter().enumerate()
    {
        let node = format!("{shard}-{victim}");
        let pid = find_process(&["--topology", t, "--node", &node])
            .unwrap_or_else(|| panic!("no process for {node}\n{}", up_log()));
        let kill_ms = now_ms();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
            .expect("kill");
        let next = wait_until(&format!("failover away from {node}"), Duration::from_secs(60), up_log, || {
            elected(global, &shard).filter(|e| e != victim)
        });
        // Data keeps flowing from the new replica: the window runs to 2 s after the switch.
        let until = now_ms() + 2_000;
        let survivor: SocketAddr =
            ([127, 0, 0, 1], leaf_base + 2 * shard_with_data as u16 + if next == "a" { 0 } else { 1 }).into();
        check_no_gap(global, survivor, &shard, kill_ms, until, &up_log);
        // increase() across the kill on the global equals what the surviving leaf (which scraped
        // every sample itself since the start) says, within one scrape's worth. (In the second
        // round the survivor is the restarted replica, whose own history is too short.)
        if round == 0 {
            let at = (kill_ms + 3_000) as f64 / 1000.0;
            let q = "increase(demo_http_requests_total[8s])";
            let (ours, _) = instant(global, q, at);
            let (truth, _) = instant(survivor, q, at);
            assert!(!truth.is_empty());
            // The global's series carry the leaves' external labels; the leaf's own do not.
            let strip = |l: &std::collections::BTreeMap<String, String>| {
                let mut l = l.clone();
                l.retain(|k, _| k != "cluster" && k != "shard");
                l
            };
            for (labels, v) in &truth {
                let g = ours.iter().find(|(l, _)| strip(l) == *labels).map(|x| x.1).unwrap_or(f64::NAN);
                // One scrape's worth: the counter's per-second rate.
                let per_scrape = v / 8.0 + 1.0;
                assert!(
                    (g - v).abs() <= per_scrape,
                    "{labels:?}: increase {g} on the global, {v} on the leaf"
                );
            }
        }
        // The election shows on /metrics.
        let (_, metrics) = http_get(global, "/metrics", Duration::from_secs(5)).expect("metrics");
        let line = format!("promtier_dedup_elected{{shard=\"{shard}\",replica=\"{next}\"}} 1");
        assert!(metrics.contains(&line), "missing {line}");
        assert!(
            metrics.contains(&format!("promtier_dedup_failovers_total{{shard=\"{shard}\"}} {}", round + 1)),
            "{metrics}"
        );
        if round == 0 {
            // Restart the killed replica (up does not restart anything) and wait until it is healthy.
            let leaf_log = dir.path().join("restarted.log");
            extra_leaf = Some(start_promtier(
                "restarted leaf",
                &["leaf", "--topology", t, "--node", &node],
                &leaf_log,
            ));
            wait_until(&format!("{node} healthy again"), Duration::from_secs(60), up_log, || {
                let data = api_data(global, "/api/v1/dedup")?;
                let s = data.as_array()?.iter().find(|s| s["shard"] == shard.as_str())?.clone();
                s["replicas"].as_array()?.iter().all(|r| r["healthy"] == true).then_some(())
            });
            // It takes over next: let it store a few scrapes of its own first.
            let restarted: SocketAddr =
                ([127, 0, 0, 1], leaf_base + 2 * shard_with_data as u16 + if victim == "a" { 0 } else { 1 })
                    .into();
            wait_until(&format!("{node} to store three scrapes"), Duration::from_secs(60), up_log, || {
                let up = try_stored(restarted, "up", 0)?;
                (up.values().next().map_or(0, Vec::len) >= 3).then_some(())
            });
        }
    }
    drop(extra_leaf);
}
