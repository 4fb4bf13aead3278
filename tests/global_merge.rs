//! Merge (query-time) dedup end to end: every replica is stored; PromQL on the global sees one
//! series per replica set, and `rate`/`increase`/`resets` show no spike or false reset when a
//! replica dies; `dedup=false` shows the raw replicas. When every replica of a shard is gone,
//! queries still answer, with a warning naming the shard.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::*;
use common::*;
use promtier::model::now_ms;

#[test]
fn merge_mode_queries_see_one_series_and_no_false_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(4);
    let (demo, leaf, global) = (base, base + 1, base + 3);
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: m\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 1, listen: '127.0.0.1:{demo}', series: 40}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], replicas: 2, listen: '127.0.0.1:{leaf}'}}\n\
             globals:\n  - {{name: global, from: [apps], listen: '127.0.0.1:{global}', federate: {{interval: 1s, timeout: 900ms}}, dedup: {{mode: merge}}}}\n"
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    let log = dir.path().join("up.log");
    let _up = start_promtier("promtier up", &["up", t], &log);
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let g: SocketAddr = ([127, 0, 0, 1], global).into();
    let counter = "demo_http_requests_total";
    let now_s = || now_ms() as f64 / 1000.0;
    let q: String = url::form_urlencoded::byte_serialize(counter.as_bytes()).collect();
    let raw_series = || -> Option<usize> {
        let (status, raw) =
            http_get(g, &format!("/api/v1/query?query={q}&dedup=false"), Duration::from_secs(10)).ok()?;
        let raw: serde_json::Value = serde_json::from_str(&raw).ok()?;
        (status == 200).then(|| raw["data"]["result"].as_array().map_or(0, Vec::len))
    };
    // The smallest value of an instant query's rows.
    let min_value = |q: &str, at: f64| -> Option<f64> {
        let (rows, _) = try_instant(g, q, at)?;
        rows.iter().map(|r| r.1).reduce(f64::min)
    };
    // Both replicas stored, and 7 s of merged history (the rate before the kill reads 6 s).
    let deduped =
        wait_until("both replicas in the global, with 7 s of data", Duration::from_secs(60), up_log, || {
            let (deduped, _) = try_instant(g, counter, now_s())?;
            let history = min_value(&format!("count_over_time({counter}[7s])"), now_s())?;
            (!deduped.is_empty() && raw_series()? == 2 * deduped.len() && history >= 6.0).then_some(deduped)
        });
    // One series per replica set by default; both replicas with dedup=false (checked above).
    assert!(deduped.iter().all(|(l, _)| !l.contains_key("replica")), "{deduped:?}");

    // Kill replica a; the merged series continue from b without a false reset.
    let killed = now_ms();
    kill_node(t, "apps-0-a");
    let at = (killed + 4_000) as f64 / 1000.0;
    wait_until("merged data from b past 4 s after the kill", Duration::from_secs(60), up_log, || {
        (min_value(&format!("timestamp({counter})"), now_s())? >= at).then_some(())
    });
    let (resets, _) = instant(g, &format!("resets({counter}[12s])"), at);
    assert!(!resets.is_empty());
    assert!(
        resets.iter().all(|(_, v)| *v == 0.0),
        "a replica switch looked like a counter reset: {resets:?}"
    );
    // rate across the kill stays close to the rate before it (no spike).
    let (before, _) = instant(g, &format!("rate({counter}[6s])"), (killed - 1_000) as f64 / 1000.0);
    let (across, _) = instant(g, &format!("rate({counter}[6s])"), at);
    for (labels, r) in &across {
        let b = before.iter().find(|(l, _)| l == labels).map(|x| x.1).unwrap_or(f64::NAN);
        assert!(*r <= b * 2.0 + 2.0, "rate spike for {labels:?}: {b} before, {r} across the kill");
    }
    // Kill b too: nothing healthy is left; queries still answer, with a warning naming the shard.
    kill_node(t, "apps-0-b");
    let (rows, warnings) = wait_until("a partial-response warning", Duration::from_secs(60), up_log, || {
        let (rows, warnings) = try_instant(g, counter, now_s())?;
        warnings.iter().any(|w| w.contains("apps-0")).then_some((rows, warnings))
    });
    assert!(!rows.is_empty(), "still answers from what is stored: {warnings:?}");
}
