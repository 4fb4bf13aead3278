//! Failover under a network partition: the global loses the leaf replica it elected while that
//! replica keeps scraping (it is only cut off from the global). The invariant, checked on every
//! stored sample of every exporter series over the whole window (from before the partition to
//! after the heal):
//! - no gap: consecutive samples are at most 1.5 scrape intervals apart, except where the
//!   replica followed next had only samples the failover design skips (a counter sample lower
//!   than the last one stored, dropped as scrape skew);
//! - no duplicate timestamps and no counter decrease;
//! - every sample is one that a replica scraped (same time, same value), and they come from the
//!   old replica, then from the new one, never interleaved; after the heal the old replica is
//!   not elected again and none of its samples is stored (no split-brain double ingest).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use promtier::model::{Labels, is_stale_nan, now_ms};

use crate::common::cluster::{elected, stored};
use crate::common::{api_data, http_get, wait_until};
use crate::shard_lab::{DEMO, Origin, SHARD, ShardLab, Stored, by_global_key, is_counter, origin};

/// Scrape and federation interval.
const INTERVAL_MS: i64 = 1_000;

/// Whether `replica` of the shard is healthy in the global's dedup API.
fn healthy(global: SocketAddr, replica: &str) -> Option<bool> {
    let data = api_data(global, "/api/v1/dedup")?;
    let set = data.as_array()?.iter().find(|s| s["shard"] == SHARD)?.clone();
    let r = set["replicas"].as_array()?.iter().find(|r| r["replica"] == replica)?.clone();
    r["healthy"].as_bool()
}

/// The moments the check needs: the window `[from, until]`, the partition and the heal (ms).
#[derive(Debug, Clone, Copy)]
struct Window {
    from: i64,
    until: i64,
    parted: i64,
    healed: i64,
}

/// Every violation of the module's invariant in the window; also a series that was not taken
/// from the old replica before the partition and from the new one after it (so the check saw
/// the failover it is about).
fn problems(global: &Stored, old: &Stored, new: &Stored, w: Window) -> Vec<String> {
    let Window { from, until, parted, healed } = w;
    let mut out = Vec::new();
    let none: Vec<(i64, f64)> = Vec::new();
    for (labels, samples) in global {
        let (o, n) = (old.get(labels).unwrap_or(&none), new.get(labels).unwrap_or(&none));
        let window: Vec<(i64, f64)> =
            samples.iter().copied().filter(|(t, _)| *t >= from && *t <= until).collect();
        let (Some(first), Some(last)) = (window.first(), window.last()) else {
            out.push(format!("{labels}: no sample in the window"));
            continue;
        };
        if first.0 > from + INTERVAL_MS * 3 / 2 || last.0 < until - INTERVAL_MS * 3 / 2 {
            out.push(format!("{labels}: covers only {}..{} of {from}..{until}", first.0, last.0));
        }
        let mut seen_new = false;
        let mut old_before = false;
        for (i, &s) in window.iter().enumerate() {
            let from_whom = origin(s, o, n);
            old_before |= s.0 < parted && matches!(from_whom, Origin::Old | Origin::Both);
            match from_whom {
                Origin::Neither => {
                    out.push(format!("{labels}: ({}, {}) was scraped by neither replica", s.0, s.1))
                }
                Origin::Old if seen_new => out.push(format!(
                    "{labels}: old replica's sample at {} after the new one's (interleaved)",
                    s.0
                )),
                Origin::Old if s.0 > healed => {
                    out.push(format!("{labels}: old replica's sample at {} after the heal", s.0))
                }
                Origin::New => seen_new = true,
                _ => {}
            }
            let Some(&prev) = i.checked_sub(1).map(|p| &window[p]) else { continue };
            if s.0 <= prev.0 {
                out.push(format!("{labels}: timestamp {} after {} (duplicate or out of order)", s.0, prev.0));
            }
            if is_counter(labels) && !is_stale_nan(s.1) && !is_stale_nan(prev.1) && s.1 < prev.1 {
                out.push(format!("{labels}: counter went down {} -> {} at {}", prev.1, s.1, s.0));
            }
            if s.0 - prev.0 > INTERVAL_MS * 3 / 2 {
                // Allowed only when the replica followed from here had nothing in between but
                // counter samples lower than the last stored one (dropped as scrape skew).
                let next_replica = if from_whom == Origin::Old { o } else { n };
                let skipped: Vec<&(i64, f64)> =
                    next_replica.iter().filter(|(t, _)| *t > prev.0 && *t < s.0).collect();
                let guarded = is_counter(labels) && skipped.iter().all(|(_, v)| *v < prev.1);
                if !guarded {
                    out.push(format!(
                        "{labels}: gap of {} ms ({} -> {}); the replica followed had {:?} in between",
                        s.0 - prev.0,
                        prev.0,
                        s.0,
                        skipped
                    ));
                }
            }
        }
        if !old_before || !seen_new {
            out.push(format!("{labels}: from the old replica before the partition: {old_before}, from the new one: {seen_new}"));
        }
    }
    out
}

#[test]
fn partition_between_global_and_elected_leaf_is_a_clean_failover() {
    let s = ShardLab::start("{mode: failover, failover_timeout: 3s}", ["1s", "900ms"], ["1s", "900ms"]);
    let g = s.global;
    let old = wait_until(
        "a first election",
        Duration::from_secs(60),
        || s.context(),
        || s.observe(|| elected(g, SHARD)),
    );
    // Let data flow from the elected replica for a stated time (the window starts 6 s before
    // the partition).
    std::thread::sleep(Duration::from_secs(8));

    let old_host = format!("leaf-{old}");
    let parted = now_ms();
    s.lab.partition("global", &old_host);
    let new = wait_until(
        &format!("failover away from {old}"),
        Duration::from_secs(30),
        || s.context(),
        || s.observe(|| elected(g, SHARD)).filter(|e| *e != old),
    );
    eprintln!("failover {old} -> {new} {} ms after the partition", now_ms() - parted);
    // The old replica keeps scraping behind the partition while the global follows the new one.
    std::thread::sleep(Duration::from_secs(5));
    s.lab.heal("global", &old_host);
    let healed = now_ms();
    wait_until(
        &format!("{old} healthy again (probed as a standby)"),
        Duration::from_secs(30),
        || s.context(),
        || s.observe(|| healthy(g, &old)).filter(|h| *h),
    );
    // For a stated time after the heal, the election stays where it moved.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        let now = s.observe(|| elected(g, SHARD));
        assert_eq!(now.as_deref(), Some(new.as_str()), "re-elected after the heal\n{}", s.context());
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, metrics) =
        s.observe(|| http_get(g, "/metrics", Duration::from_secs(10))).expect("global /metrics");
    let failovers = format!("promtier_dedup_failovers_total{{shard=\"{SHARD}\"}} 1");
    assert!(metrics.contains(&failovers), "expected exactly one failover ({failovers})\n{metrics}");

    // Everything up to a few seconds ago is stored by now (pull interval plus lag).
    let (from, until) = (parted - 6_000, now_ms() - 3_000);
    let global: Stored = s
        .observe(|| stored(g, DEMO, from - 1))
        .into_iter()
        .filter(|(l, _)| l.metric_name().is_some_and(|n| n.starts_with("demo_")))
        .collect();
    let old_leaf = by_global_key(s.observe(|| stored(s.leaf(&old), DEMO, from - 10_000)));
    let new_leaf = by_global_key(s.observe(|| stored(s.leaf(&new), DEMO, from - 10_000)));
    assert!(global.len() >= 40, "only {} exporter series in the global\n{}", global.len(), s.context());
    assert_eq!(
        global.keys().collect::<Vec<_>>(),
        new_leaf.keys().collect::<Vec<_>>(),
        "series differ from the leaf's"
    );
    // The old replica kept scraping behind the partition (only the global was cut off).
    let behind = old_leaf
        .values()
        .next()
        .map_or(0, |v| v.iter().filter(|(t, _)| *t > parted + 2_000 && *t < healed).count());
    assert!(
        behind >= 3,
        "the old replica stored only {behind} samples during the partition\n{}",
        s.context()
    );
    let found = problems(&global, &old_leaf, &new_leaf, Window { from, until, parted, healed });
    assert!(
        found.is_empty(),
        "{} problems over {from}..{until} (partition at {parted}, heal at {healed}), e.g.:\n{}\n{}",
        found.len(),
        found[..found.len().min(12)].join("\n"),
        s.context()
    );
    let samples: usize =
        global.values().map(|v| v.iter().filter(|(t, _)| *t >= from && *t <= until).count()).sum();
    eprintln!("checked {samples} samples of {} series over {} ms", global.len(), until - from);
}

/// The check itself, on made-up data: a clean failover passes; each kind of violation is found.
#[test]
fn failover_check_finds_gaps_interleaving_and_double_ingest() {
    let l = Labels::from_pairs(&[("__name__", "x_total")]);
    // old scrapes at 0, 1000, …; new at 500, 1500, …; values grow with time.
    let old: Stored = [(l.clone(), (0..20).map(|i| (i * 1000, i as f64 * 10.0)).collect())].into();
    let new: Stored =
        [(l.clone(), (0..20).map(|i| (i * 1000 + 500, i as f64 * 10.0 + 5.0)).collect())].into();
    let w = Window { from: 0, until: 19_500, parted: 6_000, healed: 12_000 };
    // Old up to 6 s, new from 6.5 s on.
    let clean: Vec<(i64, f64)> = (0..=6)
        .map(|i| (i * 1000, i as f64 * 10.0))
        .chain((6..20).map(|i| (i * 1000 + 500, i as f64 * 10.0 + 5.0)))
        .collect();
    let run = |samples: Vec<(i64, f64)>| problems(&[(l.clone(), samples)].into(), &old, &new, w);
    assert_eq!(run(clean.clone()), Vec::<String>::new());
    let mut gap = clean.clone();
    gap.retain(|(t, _)| !(7_000..9_000).contains(t));
    assert!(run(gap).iter().any(|p| p.contains("gap of")));
    let mut interleaved = clean.clone();
    interleaved.insert(9, (8_000, 80.0)); // an old sample among the new ones
    interleaved.sort_by_key(|(t, _)| *t);
    assert!(run(interleaved).iter().any(|p| p.contains("interleaved")));
    let mut duplicate = clean.clone();
    duplicate.insert(3, duplicate[2]);
    assert!(run(duplicate).iter().any(|p| p.contains("duplicate")));
    let mut invented = clean.clone();
    invented[4].1 += 1.0;
    assert!(run(invented).iter().any(|p| p.contains("neither replica")));
    let never_switched: Vec<(i64, f64)> = (0..20).map(|i| (i * 1000, i as f64 * 10.0)).collect();
    let found = run(never_switched);
    assert!(
        found.iter().any(|p| p.contains("after the heal"))
            && found.iter().any(|p| p.contains("from the new one: false")),
        "{found:?}"
    );
}
