//! Failover on coverage: the elected leaf replica loses one of its two targets (a partition
//! between that leaf and one exporter) while it keeps answering the global and scraping the
//! other target — it stays fresh, only its coverage drops to 1 of 2 targets. The invariant:
//! - the election stays while the replica has been short for less than `failover_timeout`, then
//!   moves to the complete replica within a bounded time (the next election round);
//! - the reason is shown: `GET /api/v1/dedup` gives the old replica's `shortCoverage` (naming
//!   its targets) and its `coverage`, the global's log has the failover line with that reason,
//!   `/metrics` has `promtier_dedup_replica_coverage_short{…,replica=<old>} 1`;
//! - nothing is lost: the fill starts from where the old replica became short, so over the whole
//!   episode every exporter series on the global — the lost target's above all — has no two
//!   consecutive samples more than 1.5 scrape intervals apart (except where the design drops
//!   counter samples lower than the last one stored, as scrape skew at the switch), every sample
//!   is one a replica scraped, taken from the old replica and then from the new one, never
//!   interleaved, with no duplicate and no counter decrease. The lost target's series hold
//!   exactly one staleness marker: the old replica's, at its first failed scrape of that target
//!   (stored before anyone could know the replica was short; the new replica's samples follow
//!   it within 1.5 intervals);
//! - after the old replica recovers its target, the election stays where it moved.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use promtier::model::{Labels, is_stale_nan, now_ms};

use crate::common::cluster::{elected, stored};
use crate::common::{api_data, http_get, wait_until};
use crate::shard_lab::{
    DEMO, Origin, SHARD, ShardLab, Stored, by_global_key, is_counter, origin, target_host,
};

/// Scrape and federation interval.
const INTERVAL_MS: i64 = 1_000;
/// The global's `failover_timeout`.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(3);

/// One replica of the shard as `GET /api/v1/dedup` shows it.
#[derive(Debug, Clone)]
struct ReplicaInfo {
    healthy: bool,
    /// `shortCoverage`: why its coverage counts as short, if it does.
    short: Option<String>,
    /// `coverage`: targets up, targets, series.
    coverage: Option<(u64, u64, u64)>,
}

/// The shard in the global's dedup API: the elected replica, failovers, and each replica.
#[derive(Debug, Clone)]
struct DedupView {
    elected: Option<String>,
    failovers: u64,
    replicas: BTreeMap<String, ReplicaInfo>,
}

impl DedupView {
    fn replica(&self, r: &str) -> &ReplicaInfo {
        self.replicas.get(r).unwrap_or_else(|| panic!("no replica {r} in the dedup API: {self:?}"))
    }
}

fn dedup_view(global: SocketAddr) -> Option<DedupView> {
    let data = api_data(global, "/api/v1/dedup")?;
    let set = data.as_array()?.iter().find(|s| s["shard"] == SHARD)?.clone();
    let mut replicas = BTreeMap::new();
    for r in set["replicas"].as_array()? {
        let c = &r["coverage"];
        let coverage = c.is_object().then(|| {
            let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("coverage.{k} in {r}"));
            (n("targetsUp"), n("targetsTotal"), n("series"))
        });
        let info = ReplicaInfo {
            healthy: r["healthy"].as_bool()?,
            short: r["shortCoverage"].as_str().map(str::to_string),
            coverage,
        };
        replicas.insert(r["replica"].as_str()?.to_string(), info);
    }
    Some(DedupView {
        elected: set["elected"].as_str().map(str::to_string),
        failovers: set["failovers"].as_u64()?,
        replicas,
    })
}

fn metrics(global: SocketAddr) -> String {
    let (status, body) = http_get(global, "/metrics", Duration::from_secs(10)).expect("global /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The window checked `[from, until]` (ms), when the old replica lost its target, and that
/// target's `instance`.
#[derive(Debug, Clone, Copy)]
struct Episode<'a> {
    from: i64,
    until: i64,
    parted: i64,
    lost: &'a str,
}

/// Every violation of the module's invariant over the episode; also a series that was not
/// taken from the old replica before the partition and from the new one after it, or a lost
/// series without the old replica's marker (then the check did not see what it is about).
fn problems(global: &Stored, old: &Stored, new: &Stored, e: Episode<'_>) -> Vec<String> {
    let Episode { from, until, parted, lost } = e;
    let mut out = Vec::new();
    let none: Vec<(i64, f64)> = Vec::new();
    for (labels, samples) in global {
        let (o, n) = (old.get(labels).unwrap_or(&none), new.get(labels).unwrap_or(&none));
        let is_lost = labels.get("instance") == Some(lost);
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
        let mut markers = Vec::new();
        let mut last_value: Option<f64> = None;
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
                Origin::New => seen_new = true,
                _ => {}
            }
            if is_stale_nan(s.1) {
                markers.push((s.0, from_whom));
            } else {
                if is_counter(labels)
                    && let Some(v) = last_value
                    && s.1 < v
                {
                    out.push(format!("{labels}: counter went down {v} -> {} at {}", s.1, s.0));
                }
                last_value = Some(s.1);
            }
            let Some(&prev) = i.checked_sub(1).map(|p| &window[p]) else { continue };
            if s.0 <= prev.0 {
                out.push(format!("{labels}: timestamp {} after {} (duplicate or out of order)", s.0, prev.0));
            }
            if s.0 - prev.0 > INTERVAL_MS * 3 / 2 {
                // Allowed only when the replica followed from here had nothing in between but
                // counter samples lower than the last stored one (dropped as scrape skew).
                let next_replica = if from_whom == Origin::Old { o } else { n };
                let skipped: Vec<&(i64, f64)> =
                    next_replica.iter().filter(|(t, _)| *t > prev.0 && *t < s.0).collect();
                let guarded = is_counter(labels)
                    && !is_stale_nan(prev.1)
                    && !skipped.is_empty()
                    && skipped.iter().all(|(_, v)| !is_stale_nan(*v) && *v < prev.1);
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
        // The lost target's series: exactly the old replica's marker at its failed scrape (after
        // the partition), then the new replica's samples. Others: no marker at all.
        let marker_ok = match markers.as_slice() {
            [] => !is_lost,
            [(t, who)] => is_lost && *t >= parted && *who == Origin::Old,
            _ => false,
        };
        if !marker_ok {
            out.push(format!(
                "{labels}: staleness markers {markers:?} (expected {})",
                if is_lost { "one, from the old replica after the partition" } else { "none" }
            ));
        }
        if is_lost && is_stale_nan(last.1) {
            out.push(format!(
                "{labels}: ends stale at {}: the new replica's samples never filled it",
                last.0
            ));
        }
        if !old_before || !seen_new {
            out.push(format!(
                "{labels}: from the old replica before the partition: {old_before}, from the new one: {seen_new}"
            ));
        }
    }
    out
}

#[test]
fn coverage_short_replica_loses_the_election() {
    let s = ShardLab::start_with_targets(
        2,
        "{mode: failover, failover_timeout: 3s}",
        ["1s", "900ms"],
        ["1s", "900ms"],
    );
    let g = s.global;
    let old = wait_until(
        "a first election",
        Duration::from_secs(60),
        || s.context(),
        || s.observe(|| elected(g, SHARD)),
    );
    let new = if old == "a" { "b" } else { "a" }.to_string();
    wait_until(
        "both replicas covering 2 of 2 targets, none short",
        Duration::from_secs(30),
        || s.context(),
        || {
            let v = s.observe(|| dedup_view(g))?;
            let full = |r: &str| {
                let i = v.replica(r);
                i.healthy
                    && i.short.is_none()
                    && i.coverage.is_some_and(|(up, total, _)| (up, total) == (2, 2))
            };
            (full("a") && full("b")).then_some(())
        },
    );
    // Let data flow from the elected replica for a stated time (the window starts 6 s before
    // the partition).
    std::thread::sleep(Duration::from_secs(8));

    let (old_host, lost_host) = (format!("leaf-{old}"), target_host(1));
    let lost = s.target(1).to_string();
    let parted = now_ms();
    let cut = Instant::now();
    s.lab.partition(&old_host, &lost_host);

    // The global sees the old replica short; it keeps the election meanwhile.
    let (short_seen, at_short) = wait_until(
        &format!("{old} short of coverage on the global"),
        Duration::from_secs(30),
        || s.context(),
        || {
            let v = s.observe(|| dedup_view(g))?;
            v.replica(&old).short.is_some().then(|| (Instant::now(), v))
        },
    );
    assert_eq!(
        at_short.elected.as_deref(),
        Some(old.as_str()),
        "the election moved as soon as {old} was short: {at_short:?}\n{}",
        s.context()
    );
    let elected_now = wait_until(
        &format!("failover away from {old}"),
        Duration::from_secs(30),
        || s.context(),
        || {
            let v = s.observe(|| dedup_view(g))?;
            (v.elected.as_deref() != Some(old.as_str())).then_some(v)
        },
    );
    let (after_short, after_cut) = (short_seen.elapsed(), cut.elapsed());
    eprintln!(
        "{old} short {} ms after the partition; failover {old} -> {new} {} ms after that, {} ms after the partition",
        (short_seen - cut).as_millis(),
        after_short.as_millis(),
        after_cut.as_millis()
    );
    assert_eq!(elected_now.elected.as_deref(), Some(new.as_str()), "{elected_now:?}");
    // Short for failover_timeout, then the next election round (a pull or the 1 s tick); this
    // test sees the moment it became short up to one poll late.
    assert!(
        after_short >= FAILOVER_TIMEOUT - Duration::from_secs(1) && after_short <= FAILOVER_TIMEOUT * 2,
        "failover {after_short:?} after {old} was seen short (failover_timeout {FAILOVER_TIMEOUT:?})\n{}",
        s.context()
    );
    // The target is lost at the old replica's next scrape (interval 1 s, timeout 900 ms), seen
    // at the global's next pull (interval 1 s), then failover_timeout and one election round.
    assert!(
        after_cut <= FAILOVER_TIMEOUT + Duration::from_secs(7),
        "failover {after_cut:?} after the partition\n{}",
        s.context()
    );

    // Why, where an operator looks: the dedup API, the log, /metrics.
    let v = s.observe(|| dedup_view(g)).expect("the dedup API");
    let (o, n) = (v.replica(&old), v.replica(&new));
    assert!(o.healthy, "{old} lost on coverage while fresh, not on freshness: {v:?}");
    let why = o.short.clone().unwrap_or_default();
    assert!(why.contains("covers 1 of 2 targets") && why.contains("2 targets up"), "{old}: {v:?}");
    let (up, total, series) = o.coverage.unwrap_or_else(|| panic!("{old} has no coverage: {v:?}"));
    let (n_up, n_total, n_series) = n.coverage.unwrap_or_else(|| panic!("{new} has no coverage: {v:?}"));
    assert_eq!((up, total, n_up, n_total), (1, 2, 2, 2), "{v:?}");
    assert!(series > 0 && series * 10 < n_series * 8, "series {old} {series}, {new} {n_series}: {v:?}");
    assert!(n.short.is_none() && n.healthy, "{new}: {v:?}");
    assert_eq!(v.failovers, 1, "{v:?}");
    let reason = format!("reason=replica {old} covers 1 of 2 targets");
    let line = wait_until(
        "the failover line in the global's log",
        Duration::from_secs(10),
        || s.context(),
        || {
            s.log("global-a")
                .lines()
                .find(|l| l.contains("failover: new replica elected") && l.contains(&reason))
                .map(str::to_string)
        },
    );
    assert!(
        line.contains(&format!("from={old}"))
            && line.contains(&format!("to={new}"))
            && line.contains(&format!("for {FAILOVER_TIMEOUT:?}")),
        "{line}"
    );
    let m = s.observe(|| metrics(g));
    for want in [
        format!("promtier_dedup_replica_coverage_short{{shard=\"{SHARD}\",replica=\"{old}\"}} 1"),
        format!("promtier_dedup_replica_coverage_short{{shard=\"{SHARD}\",replica=\"{new}\"}} 0"),
        format!("promtier_dedup_elected{{shard=\"{SHARD}\",replica=\"{new}\"}} 1"),
        format!("promtier_dedup_failovers_total{{shard=\"{SHARD}\"}} 1"),
    ] {
        assert!(m.lines().any(|l| l == want), "/metrics has no line {want}\n{m}");
    }

    // The new replica is followed for a stated time, then the old one gets its target back: its
    // coverage recovers and the election stays where it moved.
    std::thread::sleep(Duration::from_secs(5));
    s.lab.heal(&old_host, &lost_host);
    wait_until(
        &format!("{old} complete again"),
        Duration::from_secs(30),
        || s.context(),
        || {
            let v = s.observe(|| dedup_view(g))?;
            let o = v.replica(&old);
            (o.short.is_none() && o.coverage.is_some_and(|(up, _, _)| up == 2)).then_some(())
        },
    );
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(5) {
        let now = s.observe(|| elected(g, SHARD));
        assert_eq!(now.as_deref(), Some(new.as_str()), "re-elected after recovering\n{}", s.context());
        std::thread::sleep(Duration::from_millis(500));
    }

    // Everything up to a few seconds ago is stored by now (pull interval plus lag).
    let (from, until) = (parted - 6_000, now_ms() - 3_000);
    let global: Stored = s
        .observe(|| stored(g, DEMO, from - 1))
        .into_iter()
        .filter(|(l, _)| l.metric_name().is_some_and(|n| n.starts_with("demo_")))
        .collect();
    let old_leaf = by_global_key(s.observe(|| stored(s.leaf(&old), DEMO, from - 10_000)));
    let new_leaf = by_global_key(s.observe(|| stored(s.leaf(&new), DEMO, from - 10_000)));
    let lost_series = global.keys().filter(|l| l.get("instance") == Some(lost.as_str())).count();
    assert!(
        lost_series >= 40 && global.len() >= 2 * lost_series,
        "{} exporter series in the global, {lost_series} of the lost target\n{}",
        global.len(),
        s.context()
    );
    assert_eq!(
        global.keys().collect::<Vec<_>>(),
        new_leaf.keys().collect::<Vec<_>>(),
        "series differ from the leaf's"
    );
    let found = problems(&global, &old_leaf, &new_leaf, Episode { from, until, parted, lost: &lost });
    assert!(
        found.is_empty(),
        "{} problems over {from}..{until} (partition at {parted}), e.g.:\n{}\n{}",
        found.len(),
        found[..found.len().min(12)].join("\n"),
        s.context()
    );
    let samples: usize =
        global.values().map(|v| v.iter().filter(|(t, _)| *t >= from && *t <= until).count()).sum();
    eprintln!(
        "checked {samples} samples of {} series ({lost_series} of the lost target) over {} ms",
        global.len(),
        until - from
    );
}

/// The check itself, on made-up data: a clean switch passes; each kind of violation is found.
#[test]
fn coverage_check_finds_gaps_missing_fill_and_stray_markers() {
    use promtier::model::STALE_NAN;
    let lost = Labels::from_pairs(&[("__name__", "x_total"), ("instance", "t2")]);
    let kept = Labels::from_pairs(&[("__name__", "x_total"), ("instance", "t1")]);
    // old scrapes at 0, 1000, …; new at 500, 1500, …; values grow with time. Old loses t2 at
    // 6000 (its marker there, nothing after); the switch happens at 9 s.
    let scrapes = |offset: i64| (0..20).map(move |i| (i * 1000 + offset, (i * 1000 + offset) as f64));
    let old_lost: Vec<(i64, f64)> =
        scrapes(0).filter(|(t, _)| *t < 6000).chain([(6000, STALE_NAN)]).collect();
    let old: Stored = [(lost.clone(), old_lost), (kept.clone(), scrapes(0).collect())].into();
    let new: Stored = [(lost.clone(), scrapes(500).collect()), (kept.clone(), scrapes(500).collect())].into();
    let e = Episode { from: 0, until: 19_500, parted: 5_500, lost: "t2" };
    // What the global should hold: t2 from old up to its marker, then filled from new; t1 from
    // old up to the switch, then from new.
    let clean_lost: Vec<(i64, f64)> = scrapes(0)
        .filter(|(t, _)| *t < 6000)
        .chain([(6000, STALE_NAN)])
        .chain(scrapes(500).skip(6))
        .collect();
    let clean_kept: Vec<(i64, f64)> = scrapes(0).take(10).chain(scrapes(500).skip(9)).collect();
    let run = |l: Vec<(i64, f64)>, k: Vec<(i64, f64)>| {
        problems(&[(lost.clone(), l), (kept.clone(), k)].into(), &old, &new, e)
    };
    assert_eq!(run(clean_lost.clone(), clean_kept.clone()), Vec::<String>::new());
    // Not filled: t2 resumes only at the switch.
    let unfilled: Vec<(i64, f64)> =
        clean_lost.iter().copied().filter(|(t, _)| *t <= 6000 || *t > 9000).collect();
    assert!(run(unfilled, clean_kept.clone()).iter().any(|p| p.contains("gap of")));
    // Never filled at all.
    let stale_end: Vec<(i64, f64)> = clean_lost.iter().copied().filter(|(t, _)| *t <= 6000).collect();
    let found = run(stale_end, clean_kept.clone());
    assert!(
        found.iter().any(|p| p.contains("ends stale")) && found.iter().any(|p| p.contains("covers only"))
    );
    // No marker on the lost series (the check would not have seen the target lost), or one on
    // the kept series.
    let no_marker: Vec<(i64, f64)> = clean_lost.iter().copied().filter(|(_, v)| !is_stale_nan(*v)).collect();
    assert!(run(no_marker, clean_kept.clone()).iter().any(|p| p.contains("staleness markers [] ")));
    let mut marked_kept = clean_kept.clone();
    marked_kept[3].1 = STALE_NAN;
    let found = run(clean_lost.clone(), marked_kept);
    assert!(
        found.iter().any(|p| p.contains("neither replica")) && found.iter().any(|p| p.contains("markers"))
    );
    // The old replica's sample after the new one's.
    let mut interleaved = clean_kept.clone();
    interleaved.retain(|(t, _)| *t != 12_000);
    interleaved.push((12_000, 12_000.0));
    interleaved.retain(|(t, _)| *t != 12_500);
    interleaved.sort_by_key(|(t, _)| *t);
    assert!(run(clean_lost.clone(), interleaved).iter().any(|p| p.contains("interleaved")));
    // A counter that goes down, a duplicate.
    let mut down = clean_kept.clone();
    down.insert(12, (11_700, 1.0));
    assert!(run(clean_lost.clone(), down).iter().any(|p| p.contains("went down")));
    let mut duplicate = clean_kept;
    duplicate.insert(3, duplicate[2]);
    assert!(run(clean_lost, duplicate).iter().any(|p| p.contains("duplicate")));
}
