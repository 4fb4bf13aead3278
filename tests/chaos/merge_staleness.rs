//! Merge dedup when one replica goes stale or stops: the invariant is that every exporter series
//! the global showed before stays present — in the global's `/federate` and in an instant query
//! — at every check (ten a second) while (a) one leaf replica is partitioned from its target,
//! so it marks every series stale while the other keeps scraping, and after the heal (three
//! times); and while (b) one replica is stopped (SIGSTOP: silent, no markers) and after it
//! continues.
//!
//! A marker hides a live series (if dedup gets staleness wrong) only until the other replica's
//! next sample is stored, so the scenario makes that moment long: the leaves scrape every 2 s
//! with a 300 ms timeout (a marker is written when the failed scrape gives up) and the global
//! pulls every 500 ms; the partitioned replica is the one after whose scrapes the other's come
//! at least 1 s later, so for most of a second the global holds the marker and nothing newer
//! from the other replica; checks run ten times a second.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use promtier::model::now_ms;

use crate::common::cluster::{stored, try_instant};
use crate::common::{http_get, parse_text_rows, wait_until};
use crate::shard_lab::{DEMO, ShardLab};

/// The leaves' scrape interval.
const SCRAPE_MS: i64 = 2_000;

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

/// Checks every 100 ms for `secs` seconds.
fn check_for(s: &ShardLab, want: &Presented, phase: &str, secs: u64, checks: &mut usize) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        check(s, want, phase, checks);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where in the scrape cycle leaf replica `r` scrapes (ms), from its newest stored timestamp.
fn scrape_phase(s: &ShardLab, r: &str) -> i64 {
    let series = s.observe(|| stored(s.leaf(r), DEMO, now_ms() - 5_000));
    let t = series.values().filter_map(|v| v.last()).map(|(t, _)| *t).max().expect("samples on the leaf");
    t.rem_euclid(SCRAPE_MS)
}

/// How many exporter series of replica `r` the global's raw data (`dedup=false`) has at this
/// moment: none once the replica's newest stored samples are staleness markers.
fn raw_series(s: &ShardLab, r: &str) -> usize {
    let q: String =
        url::form_urlencoded::byte_serialize(format!(r#"{{__name__=~"demo_.+",replica="{r}"}}"#).as_bytes())
            .collect();
    let path = format!("/api/v1/query?query={q}&time={}&dedup=false", now_ms() as f64 / 1000.0);
    let (status, body) = s.observe(|| http_get(s.global, &path, Duration::from_secs(10))).expect("raw query");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json["data"]["result"].as_array().map_or(0, Vec::len)
}

#[test]
fn merge_mode_keeps_every_series_when_one_replica_is_stale_or_stopped() {
    let s = ShardLab::start("{mode: merge}", ["2s", "300ms"], ["500ms", "400ms"]);
    wait_until(
        "both replicas' series in the global",
        Duration::from_secs(60),
        || s.context(),
        || (raw_series(&s, "a") > 0 && raw_series(&s, "b") > 0).then_some(()),
    );
    // Let data flow for a stated time, then take what the global presents as the reference.
    std::thread::sleep(Duration::from_secs(5));
    let want = s.observe(|| presented(s.global));
    let leaf_series = s.observe(|| stored(s.leaf("a"), DEMO, now_ms() - 5_000)).len();
    assert!(want.federate.len() >= 40, "only {} series on /federate\n{}", want.federate.len(), s.context());
    assert_eq!(want.federate.len(), leaf_series, "one series per replica set");
    assert_eq!(want.instant.len(), leaf_series, "one series per replica set in queries");
    assert_eq!((raw_series(&s, "a"), raw_series(&s, "b")), (leaf_series, leaf_series), "raw: both replicas");
    let mut checks = 0;

    // (a) One leaf loses its target: it marks every series stale; the other keeps scraping.
    // Partition the replica after whose scrapes the other's come at least half a cycle later.
    let (pa, pb) = (scrape_phase(&s, "a"), scrape_phase(&s, "b"));
    let (stale, other) =
        if (pb - pa).rem_euclid(SCRAPE_MS) >= SCRAPE_MS / 2 { ("a", "b") } else { ("b", "a") };
    eprintln!("scrape phases a {pa} ms, b {pb} ms: replica {stale} goes stale");
    let host = format!("leaf-{stale}");
    for round in 1..=3 {
        s.lab.partition(&host, "target");
        wait_until(
            &format!("round {round}: {stale}'s markers stored"),
            Duration::from_secs(30),
            || s.context(),
            || {
                check(&s, &want, &format!("round {round}: partition, markers on their way"), &mut checks);
                (raw_series(&s, stale) == 0).then_some(())
            },
        );
        assert_eq!(raw_series(&s, other), leaf_series, "{other} still has every series (raw)");
        check_for(&s, &want, &format!("round {round}: partition, markers stored"), 4, &mut checks);
        s.lab.heal(&host, "target");
        wait_until(
            &format!("round {round}: {stale} scraping again"),
            Duration::from_secs(30),
            || s.context(),
            || {
                check(&s, &want, &format!("round {round}: healing"), &mut checks);
                (raw_series(&s, stale) == leaf_series).then_some(())
            },
        );
        check_for(&s, &want, &format!("round {round}: healed"), 2, &mut checks);
    }

    // (b) The other replica stops (no markers, just silence), then continues.
    let pid = s.pid(&format!("apps-0-{other}"));
    s.lab.signal(pid, Signal::SIGSTOP);
    check_for(&s, &want, &format!("replica {other} stopped"), 12, &mut checks);
    s.lab.signal(pid, Signal::SIGCONT);
    check_for(&s, &want, &format!("replica {other} continued"), 8, &mut checks);
    eprintln!("{checks} checks of {} series, all present", want.federate.len());
}
