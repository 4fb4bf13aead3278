//! A mixed fleet: two real Prometheus servers (an HA pair, Debian package) listed as external
//! leaves, next to promtier leaves, federated and deduplicated by a promtier global in failover
//! mode; stopping the elected Prometheus moves the election and data keeps arriving.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::*;
use common::*;
use promtier::model::now_ms;

#[test]
fn promtier_global_dedups_a_prometheus_ha_pair_next_to_promtier_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(5);
    let (demo, leaf, global) = (base, base + 2, base + 4);
    let demo_log = dir.path().join("demo.log");
    // The Prometheus pair scrapes its own demo exporter.
    let _legacy_target = start_promtier(
        "demo",
        &["demo", "--listen", &format!("127.0.0.1:{}", demo + 1), "--series", "40", "--seed", "9"],
        &demo_log,
    );
    let prom_config = |replica: &str| {
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 900ms, external_labels: {{cluster: mixed, shard: legacy-0, replica: {replica}}}}}\n\
             scrape_configs:\n  - job_name: legacy\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            demo + 1
        )
    };
    let mut proms = [Some(Prometheus::start(&prom_config("a"))), Some(Prometheus::start(&prom_config("b")))];
    let addr = |i: usize| proms[i].as_ref().map(|p| p.addr()).expect("prometheus");
    let (a_addr, b_addr) = (addr(0), addr(1));
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: mixed\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 1, listen: '127.0.0.1:{demo}', series: 40}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], replicas: 2, listen: '127.0.0.1:{leaf}'}}\n\
             external_leaves:\n  - {{group: legacy, shards: [['{a_addr}', '{}']]}}\n\
             globals:\n  - {{name: global, from: [apps, legacy], listen: '127.0.0.1:{global}', federate: {{interval: 1s, timeout: 900ms}}, dedup: {{mode: failover, failover_timeout: 4s}}}}\n",
            b_addr
        ),
    )
    .expect("topology");
    let log = dir.path().join("up.log");
    let _up = start_promtier("promtier up", &["up", topology.to_str().expect("utf8")], &log);
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let g: SocketAddr = ([127, 0, 0, 1], global).into();
    wait_until("elections for both replica sets", Duration::from_secs(60), up_log, || {
        Some((elected(g, "legacy-0")?, elected(g, "apps-0")?))
    });
    // One copy of each series from both kinds of leaves, without the replica label.
    let series = |job: &str| {
        let sel = format!("%7Bjob%3D%22{job}%22%7D");
        wait_until(&format!("{job} series in the global"), Duration::from_secs(60), up_log, || {
            let s = try_stored(g, &sel, now_ms() - 60_000)?;
            (s.len() >= 20).then_some(s)
        })
    };
    let legacy = series("legacy");
    let apps = series("demo");
    for l in legacy.keys().chain(apps.keys()) {
        assert!(l.get("replica").is_none(), "replica label left on {l}");
        assert_eq!(l.get("cluster"), Some("mixed"), "{l}");
    }
    assert!(legacy.keys().all(|l| l.get("shard") == Some("legacy-0")));
    let first = elected(g, "legacy-0").expect("elected");
    let (victim, other) = if first == "a" { (0, "b") } else { (1, "a") };

    // Stop the elected Prometheus: the global moves to the other and legacy data keeps arriving.
    drop(proms[victim].take());
    let stopped = now_ms();
    wait_until("failover to the other Prometheus", Duration::from_secs(60), up_log, || {
        (elected(g, "legacy-0")? == other).then_some(())
    });
    wait_until("data from the other Prometheus", Duration::from_secs(60), up_log, || {
        let s = try_stored(g, "%7Bjob%3D%22legacy%22%7D", stopped)?;
        let newest = s.values().filter_map(|v| v.last().map(|x| x.0)).max()?;
        (newest > stopped + 1_000).then_some(())
    });
    wait_until("the stopped Prometheus to show as down", Duration::from_secs(60), up_log, || {
        let (_, targets) = http_get(g, "/api/v1/targets", Duration::from_secs(10)).ok()?;
        targets.contains("\"health\":\"down\"").then_some(())
    });
}
