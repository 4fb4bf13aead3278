//! `promtier tsdb import` into a leaf's data directory, then the leaf started on it: the imported
//! blocks must never make the leaf refuse what it scrapes (issue 9), and the imported data stays
//! queryable next to the scraped data — also where both hold the same series.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::cluster::*;
use common::*;
use promtier::model::{Labels, now_ms};

/// Samples of the imported file: one every 15 s for an hour.
const STEP_MS: i64 = 15_000;
const HOUR_MS: i64 = 3_600_000;

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The value of an unlabelled metric on a node's `/metrics`.
fn metric(node: SocketAddr, name: &str) -> Option<f64> {
    let (status, body) = http_get(node, "/metrics", Duration::from_secs(10)).ok()?;
    if status != 200 {
        return None;
    }
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The demo target as `/api/v1/targets` shows it: (health, lastError).
fn demo_target(node: SocketAddr) -> Option<(String, String)> {
    let data = api_data(node, "/api/v1/targets")?;
    let t = data["activeTargets"].as_array()?.iter().find(|t| t["scrapePool"] == "demo")?.clone();
    Some((t["health"].as_str()?.to_string(), t["lastError"].as_str()?.to_string()))
}

#[test]
fn issue_9_import_ending_a_minute_ago_never_blocks_scraping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(2);
    let (demo_port, leaf_port) = (base, base + 1);
    let demo_instance = format!("127.0.0.1:{demo_port}");
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: i\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 1, listen: '{demo_instance}', series: 40}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['{demo_instance}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], listen: '127.0.0.1:{leaf_port}'}}\n"
        ),
    )
    .expect("topology");
    let data_dir = dir.path().join("data").join("apps-0-a");

    // An hour ending a minute ago: a series of its own, and the very `up` series the leaf is
    // about to write for its target (so head and blocks hold the same series).
    let end = now_ms() / 1000 * 1000 - 60_000;
    let start = end - HOUR_MS;
    let times: Vec<i64> = (0..=HOUR_MS / STEP_MS).map(|i| start + i * STEP_MS).collect();
    let mut file = String::from("# TYPE imported_requests counter\n");
    for (i, t) in times.iter().enumerate() {
        let _ = writeln!(file, "imported_requests_total{{path=\"/a\"}} {i} {}", *t as f64 / 1000.0);
    }
    file.push_str("# TYPE up gauge\n");
    for t in &times {
        let _ = writeln!(file, "up{{instance=\"{demo_instance}\",job=\"demo\"}} 1 {}", *t as f64 / 1000.0);
    }
    file.push_str("# EOF\n");
    let input = dir.path().join("hour.om");
    std::fs::write(&input, &file).expect("import file");
    let out = Command::new(promtier_binary())
        .args(["tsdb", "import", "--data-dir"])
        .arg(&data_dir)
        .arg(&input)
        .output()
        .expect("run promtier tsdb import");
    let import_log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "import failed:\n{import_log}");

    let t = topology.to_str().expect("utf8");
    let demo_log = dir.path().join("demo.log");
    let _demo = start_promtier("demo", &["demo", "--listen", &demo_instance, "--series", "40"], &demo_log);
    let leaf_log = dir.path().join("leaf.log");
    let started = now_ms();
    let _leaf = start_promtier("leaf", &["leaf", "--topology", t, "--node", "apps-0-a"], &leaf_log);
    let leaf: SocketAddr = ([127, 0, 0, 1], leaf_port).into();
    let context = || {
        format!(
            "import:\n{import_log}\n--- leaf log ---\n{}\n--- out of bounds: {:?}, target: {:?}",
            std::fs::read_to_string(&leaf_log).unwrap_or_default(),
            metric(leaf, "promtier_tsdb_out_of_bounds_samples_total"),
            demo_target(leaf),
        )
    };

    // Five scrapes stored: `up` samples newer than the leaf's start.
    let up_selector = enc("{__name__=\"up\",job=\"demo\"}");
    wait_until("five scrapes of the demo target to be stored", Duration::from_secs(60), context, || {
        let up = try_stored(leaf, &up_selector, started)?;
        (up.values().next().map_or(0, Vec::len) >= 5).then_some(())
    });

    // Every sample of every stored scrape is there: at each scrape's timestamp, as many demo
    // series hold a sample as the scrape reported after relabelling.
    let since = started - 1;
    let scraped = stored(leaf, &enc("{job=\"demo\"}"), since);
    let name = |l: &Labels| l.metric_name().unwrap_or("").to_string();
    let reported: Vec<(i64, f64)> = scraped
        .iter()
        .find(|(l, _)| name(l) == "scrape_samples_post_metric_relabeling")
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    assert!(reported.len() >= 5, "{reported:?}\n{}", context());
    let mut at: BTreeMap<i64, usize> = BTreeMap::new();
    for (l, samples) in &scraped {
        if name(l) == "up" || name(l).starts_with("scrape_") {
            continue;
        }
        for (t, _) in samples {
            *at.entry(*t).or_default() += 1;
        }
    }
    for (t, n) in &reported {
        assert_eq!(
            at.get(t).copied().unwrap_or(0) as f64,
            *n,
            "scrape at {t}: samples missing\n{}",
            context()
        );
    }
    let newest = reported.last().map_or(0.0, |x| x.1);
    assert!(newest >= 20.0, "the demo exporter serves a few dozen series: {reported:?}");
    assert_eq!(metric(leaf, "promtier_tsdb_out_of_bounds_samples_total"), Some(0.0), "{}", context());
    let (health, last_error) = demo_target(leaf).expect("the demo target");
    assert_eq!((health.as_str(), last_error.as_str()), ("up", ""), "{}", context());

    // The imported hour is all there, beside the scraped samples of the same series.
    let imported = stored(leaf, &enc("imported_requests_total"), start - 1);
    let want: Vec<(i64, f64)> = times.iter().enumerate().map(|(i, t)| (*t, i as f64)).collect();
    assert_eq!(imported.values().next(), Some(&want), "{}", context());
    let up = stored(leaf, &up_selector, start - 1);
    let up = up.values().next().cloned().unwrap_or_default();
    let (old, new): (Vec<_>, Vec<_>) = up.iter().partition(|(t, _)| *t <= end);
    assert_eq!(old.iter().map(|(t, _)| *t).collect::<Vec<_>>(), times, "imported up samples");
    assert!(new.len() >= 5 && new.iter().all(|(t, v)| *t >= started - 1000 && *v == 1.0), "{new:?}");
    // Through PromQL too: one series, the imported hour plus the scrapes.
    let now_s = now_ms() as f64 / 1000.0;
    let (rows, _) = instant(leaf, "count_over_time(imported_requests_total[2h])", now_s);
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), vec![times.len() as f64], "{rows:?}");
    let (rows, _) = instant(leaf, "count_over_time(up{job=\"demo\"}[2h])", now_s);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].1 >= (times.len() + 5) as f64, "{rows:?}");
}
