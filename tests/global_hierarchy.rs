//! Stacked globals and restarts: leaf → regional global (2 replicas) → top global returns the
//! same series and samples as the regional tier; a global that is SIGKILLed and restarted fills
//! the window it missed through the fast link.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::*;
use common::*;
use promtier::model::{Labels, now_ms};

const ALL: &str = "%7B__name__%3D~%22.%2B%22%7D";

fn in_window(
    series: &BTreeMap<Labels, Vec<(i64, f64)>>,
    from: i64,
    to: i64,
) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    series
        .iter()
        .filter(|(l, _)| l.metric_name().is_some_and(|n| n.starts_with("demo_")))
        .map(|(l, s)| {
            (
                l.clone(),
                s.iter().filter(|(t, _)| *t >= from && *t <= to).map(|(t, v)| (*t, v.to_bits())).collect(),
            )
        })
        .collect()
}

#[test]
fn top_global_returns_what_the_regional_tier_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(7);
    let (demo, leaf, regional, top) = (base, base + 2, base + 4, base + 6);
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: h\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 2, listen: '127.0.0.1:{demo}', series: 40}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo}', '127.0.0.1:{}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], replicas: 2, listen: '127.0.0.1:{leaf}'}}\n\
             globals:\n\
             \x20 - {{name: regional, from: [apps], replicas: 2, listen: '127.0.0.1:{regional}', federate: {{interval: 1s, timeout: 900ms}}, dedup: {{mode: failover, failover_timeout: 3s}}}}\n\
             \x20 - {{name: top, from: [regional], listen: '127.0.0.1:{top}', federate: {{interval: 1s, timeout: 900ms}}, dedup: {{mode: failover, failover_timeout: 3s}}}}\n",
            demo + 1
        ),
    )
    .expect("topology");
    let log = dir.path().join("up.log");
    let _up = start_promtier("promtier up", &["up", topology.to_str().expect("utf8")], &log);
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let top: SocketAddr = ([127, 0, 0, 1], top).into();
    let chosen =
        wait_until("the top global to elect a regional replica", Duration::from_secs(60), up_log, || {
            elected(top, "regional")
        });
    let regional: SocketAddr = ([127, 0, 0, 1], regional + if chosen == "a" { 0 } else { 1 }).into();
    // A 4 s window from a second after the election, compared once both tiers have stored past
    // it (a tier stores a series' samples in order, so a sample after the window means the
    // window is complete there).
    let from = now_ms() + 1_000;
    let to = from + 4_000;
    let past_window = |node: SocketAddr| -> Option<usize> {
        let after = in_window(&try_stored(node, ALL, to)?, to + 1, i64::MAX);
        Some(after.values().filter(|s| !s.is_empty()).count())
    };
    wait_until("both tiers to store 40 demo series past the window", Duration::from_secs(60), up_log, || {
        (past_window(regional)? >= 40 && past_window(top)? >= past_window(regional)?).then_some(())
    });
    let theirs = in_window(&stored(regional, ALL, from - 1), from, to);
    let ours = in_window(&stored(top, ALL, from - 1), from, to);
    // The regional tier's own replica label is what the top tier removes.
    let theirs: BTreeMap<Labels, Vec<(i64, u64)>> =
        theirs.into_iter().map(|(l, s)| (l.without(&["replica"]), s)).collect();
    assert!(theirs.len() >= 40, "regional holds only {} demo series\n{}", theirs.len(), up_log());
    assert!(theirs.values().all(|s| s.len() >= 3), "too few samples in the window\n{}", up_log());
    let missing: Vec<&Labels> = theirs.keys().filter(|l| !ours.contains_key(*l)).take(3).collect();
    assert!(missing.is_empty(), "series of the regional tier missing at the top: {missing:?}");
    let differ: Vec<String> = theirs
        .iter()
        .filter(|(l, s)| ours.get(*l) != Some(*s))
        .take(3)
        .map(|(l, s)| format!("{l}: regional {s:?}, top {:?}", ours.get(l)))
        .collect();
    assert!(differ.is_empty(), "samples differ:\n{}", differ.join("\n"));
    assert_eq!(ours.len(), theirs.len(), "the top tier has series the regional tier does not");
}

#[test]
fn restarted_global_fills_the_window_it_missed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(5);
    let (demo, leaf, global) = (base, base + 1, base + 3);
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: r\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 1, listen: '127.0.0.1:{demo}', series: 40}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], replicas: 2, listen: '127.0.0.1:{leaf}'}}\n\
             globals:\n  - {{name: global, from: [apps], listen: '127.0.0.1:{global}', federate: {{interval: 1s, timeout: 900ms}}, dedup: {{mode: failover, failover_timeout: 3s}}}}\n"
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    let log = dir.path().join("up.log");
    let _up = start_promtier("promtier up", &["up", t], &log);
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let addr: SocketAddr = ([127, 0, 0, 1], global).into();
    wait_until("an election", Duration::from_secs(60), up_log, || elected(addr, "apps-0"));
    // Before the kill: 4 s of stored data for at least 20 demo series.
    wait_until("4 s of data in the global", Duration::from_secs(60), up_log, || {
        let now = now_ms();
        let series = in_window(&try_stored(addr, ALL, now - 10_000)?, i64::MIN, i64::MAX);
        let spanning = series
            .values()
            .filter(|s| {
                s.first().is_some_and(|(t, _)| *t <= now - 4_000)
                    && s.last().is_some_and(|(t, _)| *t >= now - 1_500)
            })
            .count();
        (spanning >= 20).then_some(())
    });
    let killed_at = now_ms();
    kill_node(t, "global-a");
    // The outage the restarted global has to fill: a duration, not a condition to wait for.
    std::thread::sleep(Duration::from_secs(5));
    let restart_log = dir.path().join("global.log");
    let _global = start_promtier("global", &["global", "--topology", t, "--node", "global-a"], &restart_log);
    let glog = || std::fs::read_to_string(&restart_log).unwrap_or_default();
    wait_until("the restarted global to elect", Duration::from_secs(60), glog, || elected(addr, "apps-0"));
    // From 4 s before the kill to 2 s after the new election: filled and continued, no holes.
    let (from, to) = (killed_at - 4_000, now_ms() + 2_000);
    let holes = |series: &BTreeMap<Labels, Vec<(i64, u64)>>| -> Vec<String> {
        let mut out = Vec::new();
        for (l, s) in series {
            if s.first().is_none_or(|(t, _)| *t >= killed_at) {
                out.push(format!("{l}: nothing from before the kill: {s:?}"));
            }
            if s.last().is_none_or(|(t, _)| *t + 1_500 < to) {
                out.push(format!("{l}: nothing near the window's end {to}: {s:?}"));
            }
            for w in s.windows(2).filter(|w| w[1].0 - w[0].0 > 1_500) {
                out.push(format!(
                    "{l}: a hole of {} ms at {} (killed at {killed_at})",
                    w[1].0 - w[0].0,
                    w[0].0
                ));
            }
        }
        out
    };
    let last = std::cell::RefCell::new(Vec::new());
    wait_until(
        "the window around the outage to be filled",
        Duration::from_secs(60),
        || {
            format!(
                "{} problems, e.g.:\n{}\n{}",
                last.borrow().len(),
                last.borrow().iter().take(10).cloned().collect::<Vec<_>>().join("\n"),
                glog()
            )
        },
        || {
            let series = in_window(&try_stored(addr, ALL, from - 1)?, from, to);
            let problems = holes(&series);
            let ok = series.len() >= 20 && problems.is_empty();
            *last.borrow_mut() = problems;
            ok.then_some(())
        },
    );
}
