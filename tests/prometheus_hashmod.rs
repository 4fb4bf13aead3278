//! Checks hashmod sharding against a real Prometheus: for several shard counts, one Prometheus
//! server runs one scrape job per shard with the rules from `Sharder::equivalent_prometheus_rules`,
//! and the targets it keeps per job must be exactly the targets that `promtier plan` (run as a
//! user runs it, on a topology with the same targets) assigns to that shard — and that
//! `Sharder::shard_of` computes.
//!
//! Nothing is scraped for real: every scrape goes through a `proxy_url` that points at a
//! loopback port which accepts nothing, and the interval is an hour. Prometheus reports which
//! targets relabelling kept before any scrape completes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use common::{BlackHole, Prometheus};
use promtier::model::Labels;
use promtier::shard::{ShardStrategy, Sharder};

/// One static target: its address and, for some, an `env` label.
struct Target {
    address: String,
    env: Option<&'static str>,
}

impl Target {
    fn labels(&self) -> Labels {
        let mut pairs = vec![("__address__", self.address.as_str())];
        if let Some(env) = self.env {
            pairs.push(("env", env));
        }
        Labels::from_pairs(&pairs)
    }
}

/// 70 distinct targets: loopback addresses on scattered ports, hostnames, IPv6 and `localhost`;
/// a third have `env="prod"`, a third `env="dev"`, the rest no `env` at all.
fn targets() -> Vec<Target> {
    let mut addresses: Vec<String> =
        (0..40).map(|i| format!("127.0.0.1:{}", 9100 + i * 37 % 1000 + i)).collect();
    addresses.extend((0..25).map(|i| format!("node-{i}.example:9100")));
    addresses.extend(
        ["[::1]:9090", "[::1]:9100", "localhost:9090", "localhost:8080", "db.internal:5432"]
            .map(String::from),
    );
    let unique: BTreeSet<&String> = addresses.iter().collect();
    assert_eq!(unique.len(), addresses.len(), "target addresses must be distinct");
    let envs = [Some("prod"), Some("dev"), None];
    addresses.into_iter().enumerate().map(|(i, address)| Target { address, env: envs[i % 3] }).collect()
}

/// The sharding variants each server checks: the default key and a two-label key in which a
/// missing `env` hashes as "".
fn variants(shards: u32) -> Vec<(&'static str, Sharder)> {
    let sharder = |by: &[&str]| {
        Sharder::new(ShardStrategy::HashMod, shards)
            .and_then(|s| s.with_by(by.iter().map(|s| s.to_string()).collect()))
            .expect("valid sharder")
    };
    vec![("addr", sharder(&["__address__"])), ("envaddr", sharder(&["env", "__address__"]))]
}

fn job_name(variant: &str, shard: u32) -> String {
    format!("{variant}_shard{shard}")
}

/// `static_configs` entries grouping the targets by their `env`, indented for a scrape job.
fn static_configs(targets: &[Target]) -> String {
    let mut groups: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
    for t in targets {
        groups.entry(t.env).or_default().push(&t.address);
    }
    let mut out = String::from("    static_configs:\n");
    for (env, addrs) in groups {
        let list = addrs.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(out, "      - targets: [{list}]");
        if let Some(env) = env {
            let _ = writeln!(out, "        labels: {{env: {env}}}");
        }
    }
    out
}

fn prometheus_config(shards: u32, targets: &[Target], proxy: &BlackHole) -> String {
    let mut config = String::from("global:\n  scrape_interval: 1h\n  scrape_timeout: 10s\nscrape_configs:\n");
    let statics = static_configs(targets);
    for (variant, sharder) in variants(shards) {
        for shard in 0..shards {
            let rules = sharder.equivalent_prometheus_rules(shard).expect("hashmod has Prometheus rules");
            let _ = write!(
                config,
                "  - job_name: {job}\n    proxy_url: 'http://{proxy}'\n{statics}    relabel_configs:\n",
                job = job_name(variant, shard),
                proxy = proxy.addr(),
            );
            for line in rules.lines() {
                let _ = writeln!(config, "      {line}");
            }
        }
    }
    config
}

/// Active target addresses per scrape pool, once every job has processed every target
/// (`None` while discovery is still under way).
fn active_by_job(prom: &Prometheus, jobs: usize, per_job: usize) -> Option<BTreeMap<String, Vec<String>>> {
    let data = prom.api("/api/v1/targets?state=any");
    let active = data["activeTargets"].as_array()?;
    let dropped = data["droppedTargets"].as_array()?;
    if active.len() + dropped.len() < jobs * per_job {
        return None;
    }
    let mut by_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in active {
        let (Some(job), Some(address)) =
            (t["scrapePool"].as_str(), t["discoveredLabels"]["__address__"].as_str())
        else {
            prom.fail(&format!("active target without scrapePool or __address__: {t}"));
        };
        by_job.entry(job.to_string()).or_default().push(address.to_string());
    }
    Some(by_job)
}

/// Address -> shard, from `promtier plan --format json` on a one-group topology with `targets`.
fn plan_shards(shards: u32, by: &[String], targets: &[Target]) -> BTreeMap<String, u32> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.yaml");
    let by = by.iter().map(|b| format!("'{b}'")).collect::<Vec<_>>().join(", ");
    let topology = format!(
        "cluster: t\njobs:\n  - job_name: j\n{statics}leaves:\n  - {{group: g, jobs: [j], shards: {shards}, shard_by: [{by}], listen: '127.0.0.1:20000'}}\n",
        statics = static_configs(targets)
    );
    std::fs::write(&file, &topology).expect("write topology");
    let out = std::process::Command::new(common::promtier_binary())
        .args(["plan", file.to_str().expect("utf8"), "--format", "json"])
        .output()
        .expect("run promtier plan");
    assert!(
        out.status.success(),
        "promtier plan failed: {}\n{topology}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    plan["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            (t["target"].as_str().expect("target").to_string(), t["shard"].as_u64().expect("shard") as u32)
        })
        .collect()
}

fn check_against_prometheus(shards: u32) {
    let targets = targets();
    let proxy = BlackHole::new();
    let config = prometheus_config(shards, &targets, &proxy);
    let prom = Prometheus::start(&config);
    let jobs = variants(shards).len() * shards as usize;
    let mut active = prom.wait_for(
        &format!("{jobs} scrape jobs to process {} targets each", targets.len()),
        Duration::from_secs(90),
        |p| active_by_job(p, jobs, targets.len()),
    );

    let mut problems = Vec::new();
    for (variant, sharder) in variants(shards) {
        let planned = plan_shards(shards, sharder.by(), &targets);
        assert_eq!(planned.len(), targets.len(), "promtier plan lists every target once");
        let mut seen: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut non_empty = 0;
        for shard in 0..shards {
            let job = job_name(variant, shard);
            let mut got = active.remove(&job).unwrap_or_default();
            got.sort();
            let mut want: Vec<String> =
                planned.iter().filter(|(_, s)| **s == shard).map(|(a, _)| a.clone()).collect();
            want.sort();
            if got != want {
                problems.push(format!("{job}: Prometheus keeps {got:?}\n    promtier plan assigns {want:?}"));
            }
            let mut by_sharder: Vec<String> = targets
                .iter()
                .filter(|t| sharder.shard_of(&t.labels()) == shard)
                .map(|t| t.address.clone())
                .collect();
            by_sharder.sort();
            if by_sharder != want {
                problems
                    .push(format!("{job}: Sharder::shard_of {by_sharder:?} differs from the plan {want:?}"));
            }
            non_empty += usize::from(!want.is_empty());
            for address in &got {
                if let Some(t) = targets.iter().find(|t| &t.address == address) {
                    seen.entry(&t.address).or_default().push(shard);
                } else {
                    problems.push(format!("{job}: unknown active target {address}"));
                }
            }
        }
        for t in &targets {
            match seen.get(t.address.as_str()).map(Vec::as_slice) {
                Some([_]) => {}
                other => problems
                    .push(format!("{variant}: {} is active in shards {other:?}, not exactly one", t.address)),
            }
        }
        assert!(non_empty > 1, "{variant}: all targets hash to one shard; the check would be too weak");
    }
    if !active.is_empty() {
        problems.push(format!("unexpected scrape pools: {:?}", active.keys().collect::<Vec<_>>()));
    }
    if !problems.is_empty() {
        prom.fail(&format!(
            "{} shards: Prometheus and Sharder disagree:\n  {}\n--- config ---\n{config}",
            shards,
            problems.join("\n  ")
        ));
    }
}

#[test]
fn hashmod_matches_prometheus_2_shards() {
    check_against_prometheus(2);
}

#[test]
fn hashmod_matches_prometheus_3_shards() {
    check_against_prometheus(3);
}

#[test]
fn hashmod_matches_prometheus_7_shards() {
    check_against_prometheus(7);
}

/// The harness fails loudly, with Prometheus's own explanation, when the server cannot start.
#[test]
#[should_panic(expected = "--- Prometheus log ---")]
fn harness_shows_why_prometheus_did_not_start() {
    Prometheus::start("scrape_configs:\n  - job_name: x\n    relabel_configs:\n      - {action: hashmod}\n");
}
