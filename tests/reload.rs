//! Live reload (issue 14): the topology file changes while the nodes run, and `POST /-/reload`
//! (or `SIGHUP`) applies it without a restart. A leaf: growing the group from one shard to two and
//! adding a job, the targets the leaf keeps are scraped on without a gap, the ones that move to
//! the new shard go stale here and are scraped by the new shard's leaf, the new job's targets
//! start; an invalid file and a change of the node's own address are refused with the reason, and
//! the running configuration stays; SIGHUP reloads as well (removing the job again). A global:
//! it takes the new shard's sources during that resize (a moved target stays one series when it
//! drops the shard label), and in failover mode a new replica set, a removed replica and a
//! refused dedup mode change, without a gap in the series it kept pulling.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use promtier::model::now_ms;

const BOUND: Duration = Duration::from_secs(60);
const TARGETS: u16 = 6;

fn topology(demo_base: u16, leaf_base: u16, shards: u32, extra_job: bool, leaf_port_shift: u16) -> String {
    let targets: Vec<String> = (0..TARGETS).map(|i| format!("'127.0.0.1:{}'", demo_base + i)).collect();
    let mut jobs =
        format!("  - job_name: demo\n    static_configs: [{{targets: [{}]}}]\n", targets.join(", "));
    let mut group_jobs = "demo".to_string();
    if extra_job {
        jobs.push_str(&format!(
            "  - job_name: extra\n    metrics_path: /metrics\n    static_configs: [{{targets: ['127.0.0.1:{demo_base}']}}]\n"
        ));
        group_jobs.push_str(", extra");
    }
    format!(
        "cluster: reload\n\
         defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
         jobs:\n{jobs}\
         leaves:\n  - {{group: apps, jobs: [{group_jobs}], shards: {shards}, listen: '127.0.0.1:{}'}}\n",
        leaf_base + leaf_port_shift
    )
}

/// The first of `TARGETS` free ports whose targets fall on both shards once there are two
/// (`hashmod` of the address), so a resize moves some and keeps some.
fn demo_ports_on_both_shards() -> u16 {
    loop {
        let b = free_port_block(TARGETS);
        let shards: BTreeSet<u64> =
            (0..TARGETS).map(|i| promtier::shard::hashmod(&format!("127.0.0.1:{}", b + i), 2)).collect();
        if shards.len() == 2 {
            return b;
        }
    }
}

/// A demo exporter on each of the `TARGETS` ports from `base`.
fn start_demos(dir: &Path, base: u16) -> Vec<ChildGuard> {
    (0..TARGETS)
        .map(|i| {
            let addr = format!("127.0.0.1:{}", base + i);
            start_promtier(
                "demo",
                &["demo", "--listen", &addr, "--series", "20", "--seed", &i.to_string()],
                &dir.join(format!("demo-{i}.log")),
            )
        })
        .collect()
}

/// `up` samples per target (instance) of `job` on `leaf` since `since`.
fn up_samples(leaf: SocketAddr, job: &str, since: i64) -> Option<BTreeMap<String, Vec<(i64, f64)>>> {
    let sel: String =
        url::form_urlencoded::byte_serialize(format!("up{{job=\"{job}\"}}").as_bytes()).collect();
    let stored = common::cluster::try_stored(leaf, &sel, since)?;
    Some(stored.into_iter().filter_map(|(l, s)| Some((l.get("instance")?.to_string(), s))).collect())
}

fn reload(leaf: SocketAddr) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{leaf}/-/reload"))
        .timeout(Duration::from_secs(30))
        .send()
        .expect("POST /-/reload");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn active_targets(leaf: SocketAddr) -> Option<BTreeSet<(String, String)>> {
    let data = api_data(leaf, "/api/v1/targets")?;
    Some(
        data["activeTargets"]
            .as_array()?
            .iter()
            .filter_map(|t| {
                Some((
                    t["labels"]["job"].as_str()?.to_string(),
                    t["labels"]["instance"].as_str()?.to_string(),
                ))
            })
            .collect(),
    )
}

#[test]
fn a_leaf_takes_a_new_shard_count_and_a_new_job_live_and_refuses_what_it_cannot_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_base = demo_ports_on_both_shards();
    let leaf_base = free_port_block(3);
    let file = dir.path().join("t.yaml");
    let t = file.to_str().expect("utf8");
    std::fs::write(&file, topology(demo_base, leaf_base, 1, false, 0)).expect("topology");
    let _demos = start_demos(dir.path(), demo_base);
    let log0 = dir.path().join("apps-0-a.log");
    let mut leaf0 = start_promtier("apps-0-a", &["leaf", "--topology", t, "--node", "apps-0-a"], &log0);
    let leaf0_addr: SocketAddr = ([127, 0, 0, 1], leaf_base).into();
    let logs = |p: &Path| {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        s[s.len().saturating_sub(4000)..].to_string()
    };
    wait_until(
        "apps-0-a to scrape every target",
        BOUND,
        || logs(&log0),
        || {
            let up = up_samples(leaf0_addr, "demo", 0)?;
            (up.len() == TARGETS as usize && up.values().all(|s| s.len() >= 3)).then_some(())
        },
    );

    // Two shards and a second job: the plan says which targets move to shard 1.
    std::fs::write(&file, topology(demo_base, leaf_base, 2, true, 0)).expect("topology v2");
    let plan = std::process::Command::new(promtier_binary())
        .args(["plan", t, "--format", "json"])
        .output()
        .expect("plan");
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    let shard_of: BTreeMap<(String, String), u64> = plan["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|x| {
            (
                (x["job"].as_str().unwrap_or("").to_string(), x["target"].as_str().unwrap_or("").to_string()),
                x["shard"].as_u64().unwrap_or(9),
            )
        })
        .collect();
    let kept: BTreeSet<String> =
        shard_of.iter().filter(|((j, _), s)| j == "demo" && **s == 0).map(|((_, t), _)| t.clone()).collect();
    let moved: BTreeSet<String> =
        shard_of.iter().filter(|((j, _), s)| j == "demo" && **s == 1).map(|((_, t), _)| t.clone()).collect();
    assert_eq!(kept.len() + moved.len(), TARGETS as usize);
    assert!(!kept.is_empty() && !moved.is_empty(), "targets on both shards: {shard_of:?}");
    let log1 = dir.path().join("apps-1-a.log");
    let _leaf1 = start_promtier("apps-1-a", &["leaf", "--topology", t, "--node", "apps-1-a"], &log1);
    let leaf1_addr: SocketAddr = ([127, 0, 0, 1], leaf_base + 1).into();
    let before = now_ms();
    let (status, text) = reload(leaf0_addr);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("added [\"extra\"]") && text.contains("kept [\"demo\"]"), "{text}");
    let want: BTreeSet<(String, String)> =
        shard_of.iter().filter(|(_, s)| **s == 0).map(|((j, t), _)| (j.clone(), t.clone())).collect();
    wait_until(
        "apps-0-a to scrape exactly what shard 0 owns",
        BOUND,
        || logs(&log0),
        || (active_targets(leaf0_addr)? == want).then_some(()),
    );
    let want1: BTreeSet<(String, String)> =
        shard_of.iter().filter(|(_, s)| **s == 1).map(|((j, t), _)| (j.clone(), t.clone())).collect();
    wait_until(
        "apps-1-a to scrape what shard 1 owns",
        BOUND,
        || logs(&log1),
        || (active_targets(leaf1_addr)? == want1).then_some(()),
    );
    // Kept targets: scraped on through the reload, no sample more than two intervals apart.
    let since = before - 10_000;
    wait_until(
        "5 s of scrapes after the reload",
        BOUND,
        || logs(&log0),
        || {
            let up = up_samples(leaf0_addr, "demo", since)?;
            kept.iter()
                .all(|k| up.get(k).and_then(|s| s.last()).is_some_and(|l| l.0 > before + 5_000))
                .then_some(())
        },
    );
    let up = up_samples(leaf0_addr, "demo", since).expect("samples");
    for k in &kept {
        let s = &up[k];
        let worst = s.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or(0);
        assert!(worst <= 2_000, "{k}: a {worst} ms gap across the reload: {s:?}");
        assert!(s.iter().all(|x| !x.1.is_nan()), "{k} went stale although it stayed: {s:?}");
    }
    // Moved targets: stale here (a staleness marker), live on the new shard.
    for m in &moved {
        let s = &up[m];
        assert!(s.last().is_some_and(|x| x.1.is_nan()), "{m} moved but is not stale here: {s:?}");
    }

    // Refused: an invalid file, and a change of the node's own address. The targets stay.
    std::fs::write(&file, "cluster: reload\njobs: [\n").expect("broken file");
    let (status, text) = reload(leaf0_addr);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not valid"), "{text}");
    std::fs::write(&file, topology(demo_base, leaf_base, 2, true, 2)).expect("moved address");
    let (status, text) = reload(leaf0_addr);
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("its address"), "{text}");
    assert_eq!(active_targets(leaf0_addr).expect("targets"), want, "a refused reload changed the targets");

    // SIGHUP reloads too: back to one job.
    std::fs::write(&file, topology(demo_base, leaf_base, 2, false, 0)).expect("topology v3");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(leaf0.id() as i32), nix::sys::signal::Signal::SIGHUP)
        .expect("SIGHUP");
    let want3: BTreeSet<(String, String)> = want.iter().filter(|(j, _)| j == "demo").cloned().collect();
    wait_until(
        "SIGHUP to drop the extra job",
        BOUND,
        || logs(&log0),
        || (active_targets(leaf0_addr)? == want3).then_some(()),
    );
    assert!(leaf0.exited().is_none(), "SIGHUP stopped the leaf\n{}", logs(&log0));
}

fn topology_with_global(demo_base: u16, leaf_base: u16, global_port: u16, shards: u32) -> String {
    format!(
        "{}globals:\n  - name: global\n    from: [apps]\n    listen: '127.0.0.1:{global_port}'\n\
         \x20   federate: {{interval: 1s, timeout: 900ms, shard_label: drop}}\n\
         \x20   dedup: {{mode: failover, failover_timeout: 5s}}\n",
        topology(demo_base, leaf_base, shards, false, 0)
    )
}

/// Resharding with a global that drops the shard label (`federate.shard_label: drop`): the group
/// grows from one shard to two (the new leaf started, then the old leaf and the global reloaded
/// live); at the global each moved target stays one series, scraped on across the move with no
/// gap and no counter reset, every sample of it one a leaf scraped (so `increase()` is exact).
#[test]
fn a_moved_target_stays_one_series_at_a_global_that_drops_the_shard_label() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_base = demo_ports_on_both_shards();
    let leaf_base = free_port_block(2);
    let global_port = free_port_block(1);
    let file = dir.path().join("t.yaml");
    let t = file.to_str().expect("utf8");
    std::fs::write(&file, topology_with_global(demo_base, leaf_base, global_port, 1)).expect("topology");
    let _demos = start_demos(dir.path(), demo_base);
    let log0 = dir.path().join("apps-0-a.log");
    let _leaf0 = start_promtier("apps-0-a", &["leaf", "--topology", t, "--node", "apps-0-a"], &log0);
    let leaf0: SocketAddr = ([127, 0, 0, 1], leaf_base).into();
    let glog = dir.path().join("global.log");
    let mut global_proc = start_promtier("global", &["global", "--topology", t, "--node", "global-a"], &glog);
    let global: SocketAddr = ([127, 0, 0, 1], global_port).into();
    let logs = |p: &Path| {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        s[s.len().saturating_sub(4000)..].to_string()
    };
    let started = now_ms();
    wait_until(
        "the global to hold every target's up",
        BOUND,
        || logs(&glog),
        || {
            let up = up_samples(global, "demo", 0)?;
            (up.len() == TARGETS as usize && up.values().all(|s| s.len() >= 3)).then_some(())
        },
    );

    // Two shards: the new leaf first (a moved target is scraped twice for a moment rather than
    // not at all), then the old leaf reloads, then the global (it adds the new shard's source).
    std::fs::write(&file, topology_with_global(demo_base, leaf_base, global_port, 2)).expect("v2");
    let moved: BTreeSet<String> = (0..TARGETS)
        .map(|i| format!("127.0.0.1:{}", demo_base + i))
        .filter(|a| promtier::shard::hashmod(a, 2) == 1)
        .collect();
    let log1 = dir.path().join("apps-1-a.log");
    let _leaf1 = start_promtier("apps-1-a", &["leaf", "--topology", t, "--node", "apps-1-a"], &log1);
    let leaf1: SocketAddr = ([127, 0, 0, 1], leaf_base + 1).into();
    wait_until(
        "apps-1-a to scrape the moved targets",
        BOUND,
        || logs(&log1),
        || {
            let up = up_samples(leaf1, "demo", 0)?;
            (up.len() == moved.len() && up.values().all(|s| s.len() >= 2)).then_some(())
        },
    );
    let (status, text) = reload(leaf0);
    assert_eq!(status, 200, "{text}");
    let (status, text) = reload(global);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("sources added [\"apps-1-a\"]") && text.contains("kept [\"apps-0-a\"]"), "{text}");
    let moved_at = now_ms();
    wait_until(
        "the global to hold 8 s past the move",
        BOUND,
        || logs(&glog),
        || {
            let up = up_samples(global, "demo", started)?;
            moved
                .iter()
                .all(|m| up.get(m).and_then(|s| s.last()).is_some_and(|l| l.0 > moved_at + 8_000))
                .then_some(())
        },
    );
    // One series per target (no shard label), continuous across the move.
    let sel: String = url::form_urlencoded::byte_serialize(b"up{job=\"demo\"}").collect();
    let stored = common::cluster::try_stored(global, &sel, started).expect("the global's data");
    assert_eq!(
        stored.len(),
        TARGETS as usize,
        "one series per target: {:?}",
        stored.keys().collect::<Vec<_>>()
    );
    for (labels, s) in &stored {
        assert!(labels.get("shard").is_none(), "{labels} kept its shard label");
        let worst = s.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or(0);
        assert!(worst <= 2_500, "{labels}: a {worst} ms gap at the global");
        assert!(s.iter().all(|x| x.1 == 1.0 || x.1.is_nan()), "{labels}: not up throughout: {s:?}");
        // The old shard's staleness marker for a moved target (written when it let the target go)
        // is the only one, and samples of the new shard follow it at once.
        let stale: Vec<usize> = s.iter().enumerate().filter(|(_, x)| x.1.is_nan()).map(|(i, _)| i).collect();
        let instance = labels.get("instance").unwrap_or("");
        if moved.contains(instance) {
            assert!(stale.len() <= 1, "{labels}: more than one staleness marker: {s:?}");
            assert!(stale.iter().all(|i| *i + 1 < s.len()), "{labels}: stale at the end: {s:?}");
        } else {
            assert!(stale.is_empty(), "{labels} stayed on its shard but went stale: {s:?}");
        }
    }
    // A demo counter of a moved target: no reset at the global across the move.
    let m = moved.iter().next().expect("a moved target");
    let q = format!("resets(demo_http_requests_total{{instance=\"{m}\"}}[10m])");
    let (rows, _) = common::cluster::instant(global, &q, now_ms() as f64 / 1000.0);
    assert!(!rows.is_empty(), "no counter of {m} at the global");
    assert!(rows.iter().all(|(_, v)| *v == 0.0), "a counter of {m} reset across the move: {rows:?}");
    // increase() across the move is exact: every sample the global holds of that counter is one
    // the old or the new shard's leaf scraped (same timestamp, same value; nothing made up at the
    // seam), and they never go down — so increase() over any window is what the target counted.
    let csel: String = url::form_urlencoded::byte_serialize(
        format!("demo_http_requests_total{{instance=\"{m}\"}}").as_bytes(),
    )
    .collect();
    let key = |l: &promtier::model::Labels| l.without(&["shard", "replica"]).to_string();
    let mut scraped: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for leaf in [leaf0, leaf1] {
        for (labels, s) in common::cluster::try_stored(leaf, &csel, started).expect("a leaf's data") {
            scraped.entry(key(&labels)).or_default().extend(s.into_iter().filter(|x| !x.1.is_nan()));
        }
    }
    let at_global = common::cluster::try_stored(global, &csel, started).expect("the global's data");
    assert!(!at_global.is_empty(), "no counter of {m} at the global");
    for (labels, s) in &at_global {
        let leaves = scraped.get(&key(labels)).unwrap_or_else(|| panic!("{labels} at no leaf"));
        let real: Vec<(i64, f64)> = s.iter().copied().filter(|x| !x.1.is_nan()).collect();
        assert!(real.iter().any(|x| x.0 > moved_at), "{labels}: nothing after the move");
        for (t, v) in &real {
            assert_eq!(leaves.get(t), Some(v), "{labels}: the global's sample at {t} is no leaf's");
        }
        assert!(real.windows(2).all(|w| w[1].1 >= w[0].1), "{labels} goes down at the global: {real:?}");
    }
    assert!(global_proc.exited().is_none(), "the global stopped\n{}", logs(&glog));
}

/// A failover global over `apps` (`shards` × `replicas` leaves, each at a fixed address so that
/// fewer replicas move no one), with `dedup` as given.
fn failover_topology(
    demo_base: u16,
    leaf_base: u16,
    global_port: u16,
    shards: u16,
    replicas: u16,
    dedup: &str,
) -> String {
    let targets: Vec<String> = (0..TARGETS).map(|i| format!("'127.0.0.1:{}'", demo_base + i)).collect();
    let nodes: Vec<String> = (0..shards)
        .flat_map(|s| {
            (0..replicas).map(move |r| {
                let letter = char::from(b'a' + r as u8);
                format!("  apps-{s}-{letter}: {{listen: '127.0.0.1:{}'}}\n", leaf_base + 2 * s + r)
            })
        })
        .collect();
    format!(
        "cluster: reload\n\
         defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
         jobs:\n  - job_name: demo\n    static_configs: [{{targets: [{}]}}]\n\
         leaves:\n  - {{group: apps, jobs: [demo], shards: {shards}, replicas: {replicas}, listen: '127.0.0.1:{leaf_base}'}}\n\
         globals:\n  - name: global\n    from: [apps]\n    listen: '127.0.0.1:{global_port}'\n\
         \x20   federate: {{interval: 1s, timeout: 900ms}}\n\
         \x20   dedup: {dedup}\n\
         nodes:\n{}",
        targets.join(", "),
        nodes.concat()
    )
}

/// The source nodes a global pulls (`/api/v1/targets`).
fn global_sources(global: SocketAddr) -> Option<BTreeSet<String>> {
    let data = api_data(global, "/api/v1/targets")?;
    Some(
        data["activeTargets"]
            .as_array()?
            .iter()
            .filter_map(|t| Some(t["labels"]["node"].as_str()?.to_string()))
            .collect(),
    )
}

/// The nodes the console's topology view draws (`/api/v1/status/topology`).
fn map_nodes(node: SocketAddr) -> BTreeSet<String> {
    let data = api_data(node, "/api/v1/status/topology").expect("topology view");
    data["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| Some(n["name"].as_str()?.to_string()))
        .collect()
}

/// A replica set as `/api/v1/dedup` shows it: its replicas, the elected and the pinned one.
type SetView = (Vec<String>, Option<String>, Option<String>);

/// Each replica set of a failover global (`/api/v1/dedup`).
fn dedup_sets(global: SocketAddr) -> Option<BTreeMap<String, SetView>> {
    let data = api_data(global, "/api/v1/dedup")?;
    Some(
        data.as_array()?
            .iter()
            .filter_map(|s| {
                let replicas =
                    s["replicas"].as_array()?.iter().filter_map(|r| Some(r["replica"].as_str()?.to_string()));
                Some((
                    s["shard"].as_str()?.to_string(),
                    (
                        replicas.collect(),
                        s["elected"].as_str().map(str::to_string),
                        s["pinned"].as_str().map(str::to_string),
                    ),
                ))
            })
            .collect(),
    )
}

/// `up` of the demo targets of replica set `shard` at `global` since `since`, by instance.
fn global_up(global: SocketAddr, shard: &str, since: i64) -> Option<BTreeMap<String, Vec<(i64, f64)>>> {
    let sel: String =
        url::form_urlencoded::byte_serialize(format!("up{{job=\"demo\",shard=\"{shard}\"}}").as_bytes())
            .collect();
    let stored = common::cluster::try_stored(global, &sel, since)?;
    Some(stored.into_iter().filter_map(|(l, s)| Some((l.get("instance")?.to_string(), s))).collect())
}

/// The largest spacing between two samples of any series, and that series.
fn worst_gap(series: &BTreeMap<String, Vec<(i64, f64)>>) -> (i64, String) {
    series
        .iter()
        .map(|(k, s)| (s.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or(0), k.clone()))
        .max()
        .unwrap_or_default()
}

/// A failover global takes a new shard, a removed replica and keeps refusing a dedup mode change,
/// all live: the sources of a second shard (its leaves started first) are added to the targets,
/// their replica set elects and its data arrives, while the first shard's series go on without a
/// gap; removing replica `b` (the pinned, elected one of the first set) hands that set back to `a`
/// (pin lifted) and drops `b`'s sources from the targets, the sets and `/metrics`; a change of
/// the dedup mode is refused with the reason (409) and the global pulls on as before.
#[test]
fn a_failover_global_takes_a_new_shard_and_a_removed_replica_live_and_refuses_a_dedup_mode_change() {
    const FAILOVER: &str = "{mode: failover, failover_timeout: 5s}";
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_base = demo_ports_on_both_shards();
    let leaf_base = free_port_block(4);
    let global_port = free_port_block(1);
    let file = dir.path().join("t.yaml");
    let t = file.to_str().expect("utf8");
    let write = |shards, replicas, dedup| {
        std::fs::write(&file, failover_topology(demo_base, leaf_base, global_port, shards, replicas, dedup))
            .expect("topology");
    };
    write(1, 2, FAILOVER);
    let _demos = start_demos(dir.path(), demo_base);
    let leaf = |name: &str| {
        start_promtier(
            name,
            &["leaf", "--topology", t, "--node", name],
            &dir.path().join(format!("{name}.log")),
        )
    };
    let _old_leaves = [leaf("apps-0-a"), leaf("apps-0-b")];
    let glog = dir.path().join("global.log");
    let mut global_proc = start_promtier("global", &["global", "--topology", t, "--node", "global-a"], &glog);
    let global: SocketAddr = ([127, 0, 0, 1], global_port).into();
    let logs = || {
        let s = std::fs::read_to_string(&glog).unwrap_or_default();
        s[s.len().saturating_sub(6000)..].to_string()
    };
    wait_until("the global to hold every target's up from apps-0", BOUND, logs, || {
        let up = global_up(global, "apps-0", 0)?;
        (up.len() == TARGETS as usize && up.values().all(|s| s.len() >= 3)).then_some(())
    });
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
    assert_eq!(global_sources(global).expect("targets"), names(&["apps-0-a", "apps-0-b"]));

    // A second shard: its leaves first, then the global reloads.
    write(2, 2, FAILOVER);
    let moved: BTreeSet<String> = (0..TARGETS)
        .map(|i| format!("127.0.0.1:{}", demo_base + i))
        .filter(|a| promtier::shard::hashmod(a, 2) == 1)
        .collect();
    let _new_leaves = [leaf("apps-1-a"), leaf("apps-1-b")];
    let leaf1: SocketAddr = ([127, 0, 0, 1], leaf_base + 2).into();
    wait_until("apps-1-a to scrape the targets of shard 1", BOUND, logs, || {
        (up_samples(leaf1, "demo", 0)?.len() == moved.len()).then_some(())
    });
    let reloaded = now_ms();
    let (status, text) = reload(global);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("sources added [\"apps-1-a\", \"apps-1-b\"]")
            && text.contains("kept [\"apps-0-a\", \"apps-0-b\"]")
            && text.contains("replica sets added [\"apps-1\"]"),
        "{text}"
    );
    assert_eq!(
        global_sources(global).expect("targets"),
        names(&["apps-0-a", "apps-0-b", "apps-1-a", "apps-1-b"])
    );
    assert_eq!(map_nodes(global), names(&["apps-0-a", "apps-0-b", "apps-1-a", "apps-1-b", "global-a"]));
    wait_until("the new replica set to elect a replica", BOUND, logs, || {
        let (replicas, elected, _) = dedup_sets(global)?.remove("apps-1")?;
        (replicas == ["a", "b"] && elected.is_some()).then_some(())
    });
    wait_until(
        "the new shard's data at the global, and the old shard's 8 s past the reload",
        BOUND,
        logs,
        || {
            let new = global_up(global, "apps-1", 0)?;
            let old = global_up(global, "apps-0", 0)?;
            (new.len() == moved.len()
                && new.values().all(|s| s.len() >= 3)
                && old.values().all(|s| s.last().is_some_and(|l| l.0 > reloaded + 8_000)))
            .then_some(())
        },
    );
    // The first shard's pullers ran on through the reload: no gap in its series.
    let old = global_up(global, "apps-0", reloaded - 10_000).expect("apps-0 at the global");
    assert_eq!(old.len(), TARGETS as usize, "{:?}", old.keys());
    let (gap, series) = worst_gap(&old);
    assert!(gap <= 2_500, "{series}: a {gap} ms gap at the global across the reload\n{}", logs());

    // Remove replica b — pinned, so elected, in apps-0: apps-0 goes back to a.
    let pin = reqwest::blocking::Client::new()
        .post(format!("http://{global}/api/v1/dedup/pin?shard=apps-0&replica=b"))
        .timeout(Duration::from_secs(30))
        .send()
        .expect("pin");
    assert_eq!(pin.status().as_u16(), 200);
    let pinned_at = now_ms();
    wait_until("b's data of apps-0 at the global", BOUND, logs, || {
        let old = global_up(global, "apps-0", pinned_at)?;
        old.values().all(|s| s.last().is_some_and(|l| l.0 > pinned_at + 3_000)).then_some(())
    });
    write(2, 1, FAILOVER);
    let removed_at = now_ms();
    let (status, text) = reload(global);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("removed [\"apps-0-b\", \"apps-1-b\"]")
            && text.contains("kept [\"apps-0-a\", \"apps-1-a\"]")
            && text.contains("\"apps-0\" unpinned")
            && text.contains("\"apps-0\" elected \"a\" (replica b was removed from the topology)"),
        "{text}"
    );
    assert_eq!(global_sources(global).expect("targets"), names(&["apps-0-a", "apps-1-a"]));
    assert_eq!(map_nodes(global), names(&["apps-0-a", "apps-1-a", "global-a"]));
    let shown = api_data(global, "/api/v1/status/config").expect("status/config");
    assert!(shown["yaml"].as_str().is_some_and(|y| y.contains("shards: 2\n  replicas: 1\n")), "{shown}");
    let sets = dedup_sets(global).expect("dedup");
    assert_eq!(sets.get("apps-0"), Some(&(vec!["a".to_string()], Some("a".to_string()), None)), "{sets:?}");
    assert_eq!(sets.get("apps-1").map(|s| &s.0), Some(&vec!["a".to_string()]), "{sets:?}");
    wait_until("b's sources to leave /metrics, and apps-0 8 s past the second reload", BOUND, logs, || {
        let (_, metrics) = http_get(global, "/metrics", Duration::from_secs(10)).ok()?;
        let old = global_up(global, "apps-0", removed_at)?;
        (!metrics.contains("source=\"apps-0-b\"")
            && !metrics.contains("replica=\"b\"")
            && metrics.contains("source=\"apps-0-a\"")
            && old.values().all(|s| s.last().is_some_and(|l| l.0 > removed_at + 8_000)))
        .then_some(())
    });
    let old = global_up(global, "apps-0", reloaded - 10_000).expect("apps-0 at the global");
    let (gap, series) = worst_gap(&old);
    assert!(gap <= 2_500, "{series}: a {gap} ms gap at the global across the replica changes\n{}", logs());

    // Another dedup mode: refused with the reason, the sources stay and are pulled on.
    write(2, 1, "{mode: merge}");
    let (status, text) = reload(global);
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("dedup mode failover → merge"), "{text}");
    assert_eq!(global_sources(global).expect("targets"), names(&["apps-0-a", "apps-1-a"]));
    let refused_at = now_ms();
    wait_until("the global to pull on after the refused reload", BOUND, logs, || {
        let new = global_up(global, "apps-1", refused_at)?;
        (new.len() == moved.len() && new.values().all(|s| s.last().is_some_and(|l| l.0 > refused_at + 2_000)))
            .then_some(())
    });
    assert!(global_proc.exited().is_none(), "the global stopped\n{}", logs());
}
