//! A real Prometheus federating a promtier leaf (`honor_labels: true`) ingests every series the
//! leaf serves on `/federate`, with identical label sets and identical samples.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;

type Key = (String, Vec<(String, String)>);

#[test]
fn prometheus_federating_a_leaf_gets_identical_series_and_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_port = free_port();
    let leaf_port = free_port();
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: fedtest\n\
             defaults: {{scrape_interval: 2s, scrape_timeout: 1s}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo_port}'], labels: {{team: \"a \\\"quoted\\\" team\"}}}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], listen: '127.0.0.1:{leaf_port}'}}\n"
        ),
    )
    .expect("write topology");
    let demo_log = dir.path().join("demo.log");
    let leaf_log = dir.path().join("leaf.log");
    let _demo = start_promtier(
        "demo",
        &["demo", "--listen", &format!("127.0.0.1:{demo_port}"), "--series", "300", "--seed", "3"],
        &demo_log,
    );
    let _leaf = start_promtier(
        "leaf",
        &["leaf", "--topology", topology.to_str().expect("utf8 path"), "--node", "apps-0-a"],
        &leaf_log,
    );
    let leaf: SocketAddr = ([127, 0, 0, 1], leaf_port).into();
    let logs = || {
        format!(
            "--- leaf log ---\n{}\n--- demo log ---\n{}",
            std::fs::read_to_string(&leaf_log).unwrap_or_default(),
            std::fs::read_to_string(&demo_log).unwrap_or_default()
        )
    };
    let everything = "/federate?match[]=%7B__name__%3D~%22.%2B%22%7D";
    // The leaf has scraped the demo target at least twice.
    wait_until("the leaf to serve the demo series", Duration::from_secs(60), logs, || {
        let (status, body) = http_get(leaf, everything, Duration::from_secs(5)).ok()?;
        let rows = parse_text_rows(&body);
        (status == 200 && rows.len() > 300 && body.contains("demo_http_requests_total")).then_some(())
    });

    let prom = Prometheus::start(&format!(
        "global: {{scrape_interval: 500ms, scrape_timeout: 400ms}}\n\
         scrape_configs:\n  - job_name: federate\n    honor_labels: true\n    metrics_path: /federate\n\
         \x20   params: {{'match[]': ['{{__name__=~\".+\"}}']}}\n\
         \x20   static_configs: [{{targets: ['{leaf}']}}]\n"
    ));
    // Let Prometheus federate the leaf.
    prom.wait_for("Prometheus to federate the leaf", Duration::from_secs(60), |p| {
        let d = p.api("/api/v1/query?query=count(%7Bcluster%3D%22fedtest%22%7D)");
        let n = d["result"][0]["value"][1].as_str()?.parse::<f64>().ok()?;
        (n > 300.0).then_some(())
    });

    // A snapshot of the leaf's /federate; then wait until Prometheus has stored every sample of
    // it (it scrapes every 500 ms, but a busy machine delays that), comparing label sets too.
    let (_, body) = http_get(leaf, everything, Duration::from_secs(10)).expect("leaf /federate");
    let ours: BTreeMap<Key, (f64, i64)> = parse_text_rows(&body)
        .into_iter()
        .map(|(name, labels, v, ts)| ((name, labels), (v, ts.expect("federate samples carry timestamps"))))
        .collect();
    assert!(ours.len() > 300, "only {} series", ours.len());
    // Every series carries the leaf's external labels and the target's quoted label intact.
    for (name, labels) in ours.keys() {
        let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("cluster"), Some("fedtest"), "{name} {labels:?}");
        assert_eq!(get("shard"), Some("apps-0"), "{name} {labels:?}");
        assert_eq!(get("replica"), Some("a"), "{name} {labels:?}");
        if name.starts_with("demo_") {
            assert_eq!(get("team"), Some("a \"quoted\" team"), "{name} {labels:?}");
        }
    }
    // What Prometheus stored of the federated series over the last 5 minutes (a window that
    // still holds the snapshot however long the wait), or why it differs from the snapshot.
    let compare = || -> Result<(), String> {
        let q = "/api/v1/query?query=%7Bcluster%3D%22fedtest%22%7D%5B5m%5D";
        let (status, body) = http_get(prom.addr(), q, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if status != 200 || json["status"] != "success" {
            return Err(format!("status {status}: {body}"));
        }
        let mut theirs: BTreeMap<Key, BTreeSet<(i64, u64)>> = BTreeMap::new();
        for series in json["data"]["result"].as_array().expect("matrix") {
            let mut labels: Vec<(String, String)> = series["metric"]
                .as_object()
                .expect("metric")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
                .collect();
            labels.sort();
            let name_idx = labels.iter().position(|(k, _)| k == "__name__").expect("__name__");
            let name = labels.remove(name_idx).1;
            let samples = series["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().expect("ts") * 1000.0).round() as i64;
                    let v: f64 = p[1].as_str().expect("value").parse().expect("float");
                    (t, v.to_bits())
                })
                .collect();
            theirs.insert((name, labels), samples);
        }
        let our_keys: BTreeSet<&Key> = ours.keys().collect();
        let their_keys: BTreeSet<&Key> = theirs.keys().collect();
        let missing: Vec<_> = our_keys.difference(&their_keys).take(5).collect();
        let extra: Vec<_> = their_keys.difference(&our_keys).take(5).collect();
        if !(missing.is_empty() && extra.is_empty()) {
            return Err(format!(
                "label sets differ: missing in Prometheus {missing:?}, only in Prometheus {extra:?}"
            ));
        }
        let mismatched: Vec<String> = ours
            .iter()
            .filter(|(key, (v, t))| !theirs[*key].contains(&(*t, v.to_bits())))
            .map(|(key, (v, t))| format!("{key:?} @{t} = {v}: Prometheus has {:?}", theirs[key]))
            .collect();
        if !mismatched.is_empty() {
            return Err(format!(
                "{} of {} samples differ, e.g.:\n{}",
                mismatched.len(),
                ours.len(),
                mismatched[..mismatched.len().min(5)].join("\n")
            ));
        }
        Ok(())
    };
    let last = std::cell::RefCell::new(String::new());
    wait_until(
        "Prometheus to hold every sample of the snapshot",
        Duration::from_secs(60),
        || format!("{}\n--- Prometheus log ---\n{}\n{}", last.borrow(), prom.log(), logs()),
        || match compare() {
            Ok(()) => Some(()),
            Err(why) => {
                *last.borrow_mut() = why;
                None
            }
        },
    );
}
