//! Pushgateway clients against the push tier (issue 13): one client script — replace, merge,
//! base64 grouping labels, delete, a malformed push — runs against a real Pushgateway and against
//! a ring of three push nodes (RF 2, each push sent to a node that may not own the group). After
//! each step both answer alike, and the series the push tier stores (read back with PromQL from
//! each group's owners) are what a scrape of the Pushgateway shows: same labels and values, the
//! push-time gauges for the same groups, removed series gone.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use promtier::exposition::{Entry, TextParser};
use promtier::model::Labels;
use promtier::push::ring::Ring;

const BOUND: Duration = Duration::from_secs(60);

struct Step {
    method: &'static str,
    path: &'static str,
    body: &'static str,
}

const SCRIPT: &[Step] = &[
    Step {
        method: "PUT",
        path: "/metrics/job/backup/instance/db1",
        body: "# TYPE backup_last_success_seconds gauge\nbackup_last_success_seconds 1.7e+09\n\
               # TYPE backup_files_total counter\n# HELP backup_files_total Files copied.\nbackup_files_total 120\n",
    },
    Step {
        method: "POST",
        path: "/metrics/job/backup/instance/db1",
        body: "backup_duration_seconds{phase=\"copy\"} 12.5\n",
    },
    Step { method: "PUT", path: "/metrics/job/batch/instance@base64/L3Zhci9sb2c", body: "batch_items 3\n" },
    Step {
        method: "PUT",
        path: "/metrics/job/batch/instance/b2/region/eu",
        body: "batch_items 7\nbatch_errors 0\n",
    },
    // Replace: only what this push names is left in the group.
    Step { method: "PUT", path: "/metrics/job/backup/instance/db1", body: "backup_files_total 130\n" },
    Step { method: "DELETE", path: "/metrics/job/batch/instance@base64/L3Zhci9sb2c", body: "" },
    // Merge into an existing group, replacing one family and keeping the other.
    Step { method: "POST", path: "/metrics/job/batch/instance/b2/region/eu", body: "batch_items 8\n" },
    // Refused by both: not the text format, and a sample with a timestamp.
    Step { method: "POST", path: "/metrics/job/backup/instance/db1", body: "this is { not metrics\n" },
    Step { method: "POST", path: "/metrics/job/backup/instance/db1", body: "late 1 1700000000000\n" },
];

/// Series with a `job` label as (labels, value); push-time gauges as (labels, value is zero).
#[derive(Debug, Default, PartialEq)]
struct View {
    series: BTreeMap<Labels, u64>,
    push_times: BTreeMap<Labels, bool>,
}

impl View {
    fn add(&mut self, labels: Labels, v: f64) {
        match labels.metric_name() {
            Some("push_time_seconds" | "push_failure_time_seconds") => {
                self.push_times.insert(labels, v == 0.0);
            }
            _ => {
                self.series.insert(labels, v.to_bits());
            }
        }
    }
}

fn gateway_view(gw: SocketAddr) -> Option<View> {
    let (status, body) = http_get(gw, "/metrics", Duration::from_secs(10)).ok()?;
    (status == 200).then_some(())?;
    let mut view = View::default();
    for e in TextParser::new(body.as_bytes()) {
        if let Entry::Series(s) = e.ok()? {
            let l = s.to_labels();
            if l.has("job") {
                view.add(l, s.value());
            }
        }
    }
    Some(view)
}

/// What a push node answers for `{job!=""}` now (its own groups' series).
fn node_view(node: SocketAddr) -> Option<View> {
    let q: String = url::form_urlencoded::byte_serialize(b"{job!=\"\"}").collect();
    let (status, body) = http_get(node, &format!("/api/v1/query?query={q}"), Duration::from_secs(10)).ok()?;
    (status == 200).then_some(())?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut view = View::default();
    for r in v["data"]["result"].as_array()? {
        let pairs: Vec<(String, String)> = r["metric"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let value: f64 = r["value"][1].as_str()?.parse().ok()?;
        view.add(Labels::from_pairs(&refs), value);
    }
    Some(view)
}

fn send(client: &reqwest::blocking::Client, addr: SocketAddr, step: &Step) -> (u16, String) {
    let url = format!("http://{addr}{}", step.path);
    let req = match step.method {
        "PUT" => client.put(&url),
        "POST" => client.post(&url),
        _ => client.delete(&url),
    };
    let resp = req.body(step.body).send().expect("request");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

#[test]
fn a_pushgateway_client_script_gives_the_same_series_on_the_ring() {
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(3);
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: pg\ndefaults: {{data_dir: '{}', scrape_interval: 1s}}\njobs: []\n\
             push: {{nodes: 3, replication_factor: 2, listen: '127.0.0.1:{base}'}}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    let nodes: Vec<SocketAddr> = (0..3).map(|i| ([127, 0, 0, 1], base + i as u16).into()).collect();
    let _procs: Vec<ChildGuard> = (0..3)
        .map(|i| {
            start_promtier(
                &format!("push-{i}"),
                &["push", "--topology", t, "--node", &format!("push-{i}")],
                &dir.path().join(format!("push-{i}.log")),
            )
        })
        .collect();
    for n in &nodes {
        wait_until("a push node to be ready", BOUND, String::new, || {
            matches!(http_get(*n, "/-/ready", Duration::from_secs(2)), Ok((200, _))).then_some(())
        });
    }
    let ring = Ring::new(3, 2, vec!["job".into(), "instance".into()]);
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let logs = || {
        let s = std::fs::read_to_string(dir.path().join("push-0.log")).unwrap_or_default();
        format!("{}\n--- pushgateway ---\n{}", &s[s.len().saturating_sub(3000)..], gw.log())
    };
    for (k, step) in SCRIPT.iter().enumerate() {
        let what = format!("step {k}: {} {}", step.method, step.path);
        let (theirs, their_text) = send(&client, gw.addr, step);
        // Every step through push-0, which owns some groups and forwards the others.
        let (ours, our_text) = send(&client, nodes[0], step);
        assert_eq!(
            theirs / 100,
            ours / 100,
            "{what}: Pushgateway {theirs} {their_text:?}, push tier {ours} {our_text:?}"
        );
        let last = std::cell::RefCell::new(String::new());
        wait_until(
            &what,
            BOUND,
            || format!("{}\n{}", last.borrow(), logs()),
            || {
                let want = gateway_view(gw.addr)?;
                // Each group as its owners hold it, and on no other node.
                let views: Vec<View> = nodes.iter().map(|n| node_view(*n)).collect::<Option<_>>()?;
                let mut union = View::default();
                for (i, v) in views.iter().enumerate() {
                    for (l, bits) in &v.series {
                        let key = ring.key_from(|n| l.get(n));
                        if !ring.owners(&key).contains(&(i as u32)) {
                            *last.borrow_mut() = format!("push-{i} holds {l} though no owner of it");
                            return None;
                        }
                        union.series.insert(l.clone(), *bits);
                    }
                    for (l, z) in &v.push_times {
                        union.push_times.insert(l.clone(), *z);
                    }
                }
                for (i, v) in views.iter().enumerate() {
                    for l in union.series.keys() {
                        let owns = ring.owners(&ring.key_from(|n| l.get(n))).contains(&(i as u32));
                        if owns != v.series.contains_key(l) {
                            *last.borrow_mut() =
                                format!("push-{i}: owner {owns} but holds it {}: {l}", !owns);
                            return None;
                        }
                    }
                }
                if union != want {
                    *last.borrow_mut() = format!("push tier {union:?}\nPushgateway {want:?}");
                    return None;
                }
                Some(())
            },
        );
    }
    gw.stop();
}
