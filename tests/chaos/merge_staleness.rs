//! Merge dedup when one replica goes stale or stops: the invariant is that every exporter series
//! the global showed before stays present — in the global's `/federate` and in an instant query
//! — at every check (every half second) while (a) one leaf replica is partitioned from its
//! target, so it marks every series stale while the other keeps scraping, and after the heal;
//! and while (b) one replica is stopped (SIGSTOP: silent, no markers) and after it continues.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use promtier::model::{is_stale_nan, now_ms};

use crate::common::cluster::{stored, try_instant};
use crate::common::{http_get, parse_text_rows, wait_until};
use crate::shard_lab::{DEMO, ShardLab};

/// The exporter's series as the global presents them: `/federate` rows (name and labels) and
/// an instant query's label sets.
#[derive(Debug, Clone, PartialEq)]
struct Presented {
    federate: BTreeSet<String>,
    instant: BTreeSet<BTreeMap<String, String>>,
}

fn presented(global: SocketAddr) -> Presented {
    let (status, body) = http_get(global, &format!("/federate?match[]={DEMO}"), Duration::from_secs(10))
        .expect("global /federate");
    assert_eq!(status, 200, "{body}");
    let federate =
        parse_text_rows(&body).into_iter().map(|(name, labels, _, _)| format!("{name}{labels:?}")).collect();
    let now_s = now_ms() as f64 / 1000.0;
    let (rows, _) = try_instant(global, r#"{__name__=~"demo_.+"}"#, now_s).expect("instant query");
    Presented { federate, instant: rows.into_iter().map(|(l, _)| l).collect() }
}

/// Panics unless the global presents exactly `want`, naming what is missing.
fn check(s: &ShardLab, want: &Presented, phase: &str, checks: &mut usize) {
    let got = s.observe(|| presented(s.global));
    *checks += 1;
    if got != *want {
        let missing: Vec<&String> = want.federate.difference(&got.federate).take(5).collect();
        let missing_q: Vec<_> = want.instant.difference(&got.instant).take(5).collect();
        panic!(
            "{phase}: /federate shows {} of {} series (missing e.g. {missing:?}), the instant query {} of {} \
             (missing e.g. {missing_q:?})\n{}",
            got.federate.len(),
            want.federate.len(),
            got.instant.len(),
            want.instant.len(),
            s.context()
        );
    }
}

/// Checks every half second for `secs` seconds.
fn check_for(s: &ShardLab, want: &Presented, phase: &str, secs: u64, checks: &mut usize) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        check(s, want, phase, checks);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether the global stored a staleness marker (newer than `since`) of replica `r`'s exporter
/// series, and a value of it newer than `since`.
fn replica_marks(s: &ShardLab, r: &str, since: i64) -> (bool, bool) {
    let sel = format!("%7B__name__%3D~%22demo_.%2B%22%2Creplica%3D%22{r}%22%7D");
    let series = s.observe(|| stored(s.global, &sel, since));
    let marker = series.values().any(|v| v.iter().any(|(_, x)| is_stale_nan(*x)));
    let value = series.values().any(|v| v.iter().any(|(_, x)| !is_stale_nan(*x)));
    (marker, value)
}

#[test]
fn merge_mode_keeps_every_series_when_one_replica_is_stale_or_stopped() {
    let s = ShardLab::start("{mode: merge}");
    wait_until(
        "both replicas' series in the global",
        Duration::from_secs(60),
        || s.context(),
        || {
            let since = now_ms() - 5_000;
            (replica_marks(&s, "a", since).1 && replica_marks(&s, "b", since).1).then_some(())
        },
    );
    // Let data flow for a stated time, then take what the global presents as the reference.
    std::thread::sleep(Duration::from_secs(5));
    let want = s.observe(|| presented(s.global));
    let leaf_series = s.observe(|| stored(s.leaf("a"), DEMO, now_ms() - 5_000)).len();
    assert!(want.federate.len() >= 40, "only {} series on /federate\n{}", want.federate.len(), s.context());
    assert_eq!(want.federate.len(), leaf_series, "one series per replica set");
    assert_eq!(want.instant.len(), leaf_series, "one series per replica set in queries");
    let mut checks = 0;

    // (a) leaf a loses its target: it marks every series stale; b keeps scraping.
    let parted = now_ms();
    s.lab.partition("leaf-a", "target");
    wait_until(
        "leaf a's staleness markers stored in the global",
        Duration::from_secs(30),
        || s.context(),
        || {
            check(&s, &want, "partition, before the markers arrive", &mut checks);
            replica_marks(&s, "a", parted).0.then_some(())
        },
    );
    check_for(&s, &want, "partition, markers stored", 10, &mut checks);
    s.lab.heal("leaf-a", "target");
    let healed = now_ms();
    wait_until(
        "leaf a scraping again",
        Duration::from_secs(30),
        || s.context(),
        || {
            check(&s, &want, "healing", &mut checks);
            let sel = "%7B__name__%3D~%22demo_.%2B%22%2Creplica%3D%22a%22%7D";
            let fresh = s.observe(|| stored(s.global, sel, healed));
            fresh.values().any(|v| v.iter().any(|(_, x)| !is_stale_nan(*x))).then_some(())
        },
    );
    check_for(&s, &want, "after the heal", 5, &mut checks);

    // (b) leaf b stops (no markers, just silence), then continues.
    let b = s.pid("apps-0-b");
    s.lab.signal(b, Signal::SIGSTOP);
    check_for(&s, &want, "replica b stopped", 12, &mut checks);
    s.lab.signal(b, Signal::SIGCONT);
    check_for(&s, &want, "replica b continued", 8, &mut checks);
    eprintln!("{checks} checks of {} series, all present", want.federate.len());
}
