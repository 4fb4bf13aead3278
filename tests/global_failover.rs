//! Failover dedup end to end: a 2-shard × 2-replica cluster with one global in `failover` mode,
//! started with `promtier up`. SIGKILL the elected replica of shard 0 while data flows: every
//! series of that shard in the global has no gap longer than one scrape interval around the
//! kill, no duplicate timestamps, and counters never go down (so `increase` across the kill is
//! the true increase); the election is visible on `/metrics`. Then restart that replica, kill
//! the other one, and check again.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::*;
use common::*;
use promtier::model::{Labels, is_stale_nan, now_ms};

const INTERVAL_MS: i64 = 1000;

/// Checks the stored series of the shard around a kill at `kill_ms`.
fn check_no_gap(global: SocketAddr, shard: &str, kill_ms: i64, until_ms: i64, context: &dyn Fn() -> String) {
    let from = kill_ms - 8_000;
    let series = stored(global, &format!("%7Bshard%3D%22{shard}%22%7D"), from);
    let demo: Vec<(&Labels, &Vec<(i64, f64)>)> =
        series.iter().filter(|(l, _)| l.metric_name().is_some_and(|n| n.starts_with("demo_"))).collect();
    assert!(demo.len() >= 20, "too few demo series of {shard} in the global: {}\n{}", demo.len(), context());
    let mut problems = Vec::new();
    for (labels, samples) in demo {
        assert!(labels.get("replica").is_none(), "failover must store without the replica label: {labels}");
        let window: Vec<&(i64, f64)> = samples.iter().filter(|(t, _)| *t >= from && *t <= until_ms).collect();
        if window.len() < 5 {
            problems.push(format!("{labels}: only {} samples in the window", window.len()));
            continue;
        }
        for w in window.windows(2) {
            let ((t0, v0), (t1, v1)) = (*w[0], *w[1]);
            if t1 <= t0 {
                problems.push(format!("{labels}: timestamps not increasing: {t0} then {t1}"));
            }
            // Scrapes are 1 s apart; replicas scrape at different offsets, so a switch may
            // shorten or lengthen one step, never by a whole interval.
            if t1 - t0 > INTERVAL_MS + INTERVAL_MS / 2 {
                problems.push(format!("{labels}: gap of {} ms ({t0} -> {t1}), kill at {kill_ms}", t1 - t0));
            }
            let counter = labels
                .metric_name()
                .is_some_and(|n| n.ends_with("_total") || n.ends_with("_count") || n.ends_with("_bucket"));
            if counter && !is_stale_nan(v0) && !is_stale_nan(v1) && v1 < v0 {
                problems.push(format!("{labels}: counter went down {v0} -> {v1} at {t1} (a false reset)"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems, e.g.:\n{}\n{}",
        problems.len(),
        problems[..problems.len().min(10)].join("\n"),
        context()
    );
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
    let first = wait_until("a first election", Duration::from_secs(30), up_log, || elected(global, &shard));
    // Let data flow for a few seconds.
    std::thread::sleep(Duration::from_secs(4));

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
        let next = wait_until(&format!("failover away from {node}"), Duration::from_secs(20), up_log, || {
            elected(global, &shard).filter(|e| e != victim)
        });
        // Data keeps flowing from the new replica; then check the whole window.
        std::thread::sleep(Duration::from_secs(4));
        let until = now_ms() - 2_000;
        check_no_gap(global, &shard, kill_ms, until, &up_log);
        // increase() across the kill on the global equals what the surviving leaf (which scraped
        // every sample itself since the start) says, within one scrape's worth. (In the second
        // round the survivor is the restarted replica, whose own history is too short.)
        if round == 0 {
            let survivor: SocketAddr =
                ([127, 0, 0, 1], leaf_base + 2 * shard_with_data as u16 + if next == "a" { 0 } else { 1 })
                    .into();
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
            wait_until(&format!("{node} healthy again"), Duration::from_secs(20), up_log, || {
                let data = api_data(global, "/api/v1/dedup")?;
                let s = data.as_array()?.iter().find(|s| s["shard"] == shard.as_str())?.clone();
                s["replicas"].as_array()?.iter().all(|r| r["healthy"] == true).then_some(())
            });
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    drop(extra_leaf);
}
