//! A two-shard, two-replica cluster started with `promtier up` over a fleet of demo targets:
//! every target is scraped by exactly the two replicas of its shard (as `promtier plan` says)
//! and by no other leaf; killing a target's process turns it `up=0` and its series stale.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::find_process;
use common::*;

const TARGETS: u16 = 6;

fn leaf_addr(base: u16, i: u16) -> SocketAddr {
    ([127, 0, 0, 1], base + i).into()
}

#[test]
fn up_cluster_shards_targets_and_marks_killed_target_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The targets' shards follow from their addresses (hashmod): pick demo ports until the plan
    // puts targets on both shards (6 random ports all land on one about 3% of the time).
    let topology = dir.path().join("cluster.yaml");
    let t = topology.to_str().expect("utf8");
    let mut attempt = 0;
    let (demo_base, leaf_base, planned) = loop {
        attempt += 1;
        // Consecutive free ports are likely but not certain; pick bases far apart and check.
        let demo_base = free_port_block(TARGETS);
        let mut leaf_base = free_port_block(4);
        while leaf_base + 4 > demo_base && leaf_base < demo_base + TARGETS {
            leaf_base = free_port_block(4);
        }
        let targets: Vec<String> = (0..TARGETS).map(|i| format!("'127.0.0.1:{}'", demo_base + i)).collect();
        std::fs::write(
            &topology,
            format!(
                "cluster: uptest\n\
                 defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
                 demo: {{targets: {TARGETS}, listen: '127.0.0.1:{demo_base}', series: 60}}\n\
                 jobs:\n  - job_name: demo\n    static_configs: [{{targets: [{}]}}]\n\
                 leaves:\n  - {{group: apps, jobs: [demo], shards: 2, replicas: 2, listen: '127.0.0.1:{leaf_base}'}}\n",
                targets.join(", ")
            ),
        )
        .expect("write topology");

        // What the plan says.
        let plan = std::process::Command::new(promtier_binary())
            .args(["plan", t, "--format", "json"])
            .output()
            .expect("run promtier plan");
        assert!(plan.status.success(), "plan failed: {}", String::from_utf8_lossy(&plan.stderr));
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
        let mut planned: BTreeMap<String, BTreeSet<String>> = BTreeMap::new(); // target -> nodes
        for tgt in plan["targets"].as_array().expect("targets") {
            let nodes =
                tgt["nodes"].as_array().expect("nodes").iter().map(|n| n.as_str().expect("name").to_string());
            planned.insert(tgt["target"].as_str().expect("target").to_string(), nodes.collect());
        }
        assert_eq!(planned.len(), TARGETS as usize, "{plan}");
        let shards: BTreeSet<u64> =
            plan["targets"].as_array().expect("targets").iter().filter_map(|t| t["shard"].as_u64()).collect();
        if shards.len() == 2 {
            break (demo_base, leaf_base, planned);
        }
        assert!(attempt < 20, "20 sets of demo ports, every one on a single shard: {plan}");
    };

    let log = dir.path().join("up.log");
    let mut up = start_promtier("promtier up", &["up", t], &log);
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let leaves: Vec<(String, SocketAddr)> = ["apps-0-a", "apps-0-b", "apps-1-a", "apps-1-b"]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), leaf_addr(leaf_base, i as u16)))
        .collect();

    // Every leaf scrapes exactly its planned targets, and all of them are up.
    let mut actual: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, addr) in &leaves {
        let scraped =
            wait_until(&format!("{name} to scrape its targets"), Duration::from_secs(60), up_log, || {
                let data = api_data(*addr, "/api/v1/targets")?;
                let active = data["activeTargets"].as_array()?;
                let all_up = !active.is_empty() && active.iter().all(|a| a["health"] == "up");
                all_up.then(|| {
                    active
                        .iter()
                        .map(|a| a["labels"]["instance"].as_str().unwrap_or("").to_string())
                        .collect::<BTreeSet<_>>()
                })
            });
        for target in scraped {
            actual.entry(target).or_default().insert(name.clone());
        }
    }
    assert_eq!(actual, planned, "leaves scrape other targets than the plan says");
    for (target, nodes) in &actual {
        assert_eq!(nodes.len(), 2, "{target} scraped by {nodes:?}");
        let shard: BTreeSet<&str> = nodes.iter().map(|n| &n[..n.len() - 2]).collect();
        assert_eq!(shard.len(), 1, "{target} scraped by leaves of different shards: {nodes:?}");
    }

    // Kill one demo target with SIGKILL.
    let victim_port = demo_base + 2;
    let victim = format!("127.0.0.1:{victim_port}");
    let pid = find_process(&["demo", "--listen", &victim]).expect("the demo target's process");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let owners: Vec<&(String, SocketAddr)> =
        leaves.iter().filter(|(n, _)| planned[&victim].contains(n)).collect();
    assert_eq!(owners.len(), 2);
    for (name, addr) in owners {
        let path = format!("/federate?match[]=%7Binstance%3D%22{victim}%22%7D");
        // The report series are written before the target's status changes: wait for both.
        let t = wait_until(
            &format!("{name} to see {victim} down and its series stale"),
            Duration::from_secs(60),
            up_log,
            || {
                let (status, body) = http_get(*addr, &path, Duration::from_secs(5)).ok()?;
                let rows = parse_text_rows(&body);
                // Only the report series remain, and `up` is 0; every scraped series went stale.
                let up = rows.iter().find(|r| r.0 == "up")?;
                let scraped_left = rows.iter().filter(|r| r.0.starts_with("demo_")).count();
                if !(status == 200 && up.2 == 0.0 && scraped_left == 0) {
                    return None;
                }
                let data = api_data(*addr, "/api/v1/targets")?;
                let t = data["activeTargets"]
                    .as_array()?
                    .iter()
                    .find(|a| a["labels"]["instance"] == victim.as_str())?
                    .clone();
                (t["health"] == "down").then_some(t)
            },
        );
        assert!(t["lastError"].as_str().is_some_and(|e| !e.is_empty()), "{t}");
    }
    // The other targets stay up.
    for (name, addr) in &leaves {
        let data = api_data(*addr, "/api/v1/targets").expect("targets API");
        for a in data["activeTargets"].as_array().expect("active") {
            if a["labels"]["instance"] != victim.as_str() {
                assert_eq!(a["health"], "up", "{name}: {a}");
            }
        }
    }
    // `up` reports the exit when it reaps the child, which may come after the leaves noticed.
    wait_until("up to report the demo target's exit", Duration::from_secs(60), up_log, || {
        up_log().contains("node demo-2 (demo) exited").then_some(())
    });

    // SIGTERM to `up` stops every node.
    up.stop();
    for (name, addr) in &leaves {
        assert!(
            http_get(*addr, "/-/healthy", Duration::from_secs(1)).is_err(),
            "{name} still serving after up stopped"
        );
    }
    assert!(find_process(&["leaf", "--topology", t]).is_none(), "a leaf outlived `up`:\n{}", up_log());
    assert!(up_log().contains("all nodes stopped"), "{}", up_log());
}
