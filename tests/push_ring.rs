//! The push tier with real processes on 127.0.0.1 (issue 13): three push nodes with replication
//! factor 2 and a global pulling them under merge dedup. A driver plays 200 instances, each
//! pushing its own series by remote write every round to "its" node and, when that one fails, to
//! the next (as a load balancer would). Every instance's series live on exactly its two ring
//! owners; with one node SIGKILLed every push is still acknowledged and the global's answers stay
//! complete; brought back, the node catches up from the hints the others kept (its sample counts
//! equal its co-owners').

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use promtier::model::{Labels, now_ms};
use promtier::push::ring::Ring;
use promtier::remote::{codec, proto};
use prost::Message;

const INSTANCES: usize = 200;
const NODES: usize = 3;
const BOUND: Duration = Duration::from_secs(120);
const DRIVERS: usize = 8;

fn instance(i: usize) -> String {
    format!("inst-{i:03}")
}

/// One instance's push of round `round` at `t`: two counters and a gauge.
fn body(i: usize, round: u64, t: i64) -> Vec<u8> {
    let inst = instance(i);
    let series = |name: &str, extra: Option<(&str, &str)>, v: f64| {
        let mut labels = vec![
            proto::Label { name: "__name__".into(), value: name.into() },
            proto::Label { name: "instance".into(), value: inst.clone() },
            proto::Label { name: "job".into(), value: "pushtest".into() },
        ];
        if let Some((k, val)) = extra {
            labels.push(proto::Label { name: k.into(), value: val.into() });
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        proto::TimeSeries {
            labels,
            samples: vec![proto::Sample { value: v, timestamp: t }],
            ..Default::default()
        }
    };
    let r = round as f64;
    let req = proto::WriteRequest {
        timeseries: vec![
            series("pushtest_requests_total", Some(("path", "/a")), r * (i as f64 + 1.0)),
            series("pushtest_requests_total", Some(("path", "/b")), r * 2.0),
            series("pushtest_temperature", None, i as f64 + r * 0.5),
        ],
        metadata: Vec::new(),
    };
    codec::compress(&req.encode_to_vec()).expect("snappy")
}

/// Pushes one round for every instance; returns the instances whose push no node acknowledged,
/// and how many pushes went to another node than the instance's own.
fn push_round(nodes: &[SocketAddr], round: u64, t: i64) -> (Vec<String>, usize) {
    let failed = std::sync::Mutex::new(Vec::new());
    let moved = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for d in 0..DRIVERS {
            let (failed, moved) = (&failed, &moved);
            s.spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .build()
                    .expect("client");
                for i in (d..INSTANCES).step_by(DRIVERS) {
                    let b = body(i, round, t);
                    let mut last = String::new();
                    let ok = (0..nodes.len()).any(|k| {
                        let node = nodes[(i + k) % nodes.len()];
                        let r = client
                            .post(format!("http://{node}/api/v1/write"))
                            .header("Content-Type", "application/x-protobuf")
                            .header("Content-Encoding", "snappy")
                            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                            .body(b.clone())
                            .send();
                        match r {
                            Ok(resp) if resp.status().is_success() => {
                                if k > 0 {
                                    moved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                true
                            }
                            Ok(resp) => {
                                last =
                                    format!("{node}: {} {}", resp.status(), resp.text().unwrap_or_default());
                                false
                            }
                            Err(e) => {
                                last = format!("{node}: {e}");
                                false
                            }
                        }
                    });
                    if !ok {
                        failed.lock().expect("lock").push(format!("{}: {last}", instance(i)));
                    }
                }
            });
        }
    });
    (failed.into_inner().expect("lock"), moved.into_inner())
}

/// Samples per instance of `pushtest_temperature` over the last 15 minutes, as `node` answers.
fn counts(node: SocketAddr) -> Option<BTreeMap<String, f64>> {
    let (rows, _) =
        try_instant(node, "count_over_time(pushtest_temperature[15m])", now_ms() as f64 / 1000.0)?;
    Some(rows.into_iter().filter_map(|(l, v)| Some((l.get("instance")?.clone(), v))).collect())
}

fn hints_pending(node: SocketAddr, peer: &str) -> Option<u64> {
    let (status, body) = http_get(node, "/api/v1/push/hints", Duration::from_secs(5)).ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["catching_up"].as_bool().filter(|c| !c)?;
    v["data"][peer]["pending"].as_u64()
}

fn catching_up(node: SocketAddr) -> Option<bool> {
    let (status, body) = http_get(node, "/api/v1/push/hints", Duration::from_secs(5)).ok()?;
    (status == 200).then_some(())?;
    serde_json::from_str::<serde_json::Value>(&body).ok()?["catching_up"].as_bool()
}

fn start_push(dir: &Path, topology: &str, i: usize) -> ChildGuard {
    start_push_with(dir, topology, i, &[])
}

fn start_push_with(dir: &Path, topology: &str, i: usize, extra: &[&str]) -> ChildGuard {
    let name = format!("push-{i}");
    let mut args = vec!["push", "--topology", topology, "--node", &name];
    args.extend_from_slice(extra);
    start_promtier(&name, &args, &dir.join(format!("push-{i}.log")))
}

#[test]
fn three_push_nodes_rf2_survive_a_kill_and_the_returning_node_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(NODES as u16 + 1);
    let global_port = base + NODES as u16;
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: pt\n\
             defaults: {{data_dir: '{}', scrape_interval: 1s}}\n\
             jobs: []\n\
             push: {{nodes: {NODES}, replication_factor: 2, listen: '127.0.0.1:{base}'}}\n\
             globals:\n  - name: global\n    from: [push]\n    listen: '127.0.0.1:{global_port}'\n\
             \x20   federate: {{interval: 1s, timeout: 900ms}}\n    dedup: {{mode: merge}}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    let nodes: Vec<SocketAddr> = (0..NODES).map(|i| ([127, 0, 0, 1], base + i as u16).into()).collect();
    let global: SocketAddr = ([127, 0, 0, 1], global_port).into();
    let mut procs: Vec<Option<ChildGuard>> = (0..NODES).map(|i| Some(start_push(dir.path(), t, i))).collect();
    let _global = start_promtier(
        "global",
        &["global", "--topology", t, "--node", "global-a"],
        &dir.path().join("global.log"),
    );
    let logs = |name: &str| {
        let s = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default();
        s[s.len().saturating_sub(4000)..].to_string()
    };
    for (i, n) in nodes.iter().enumerate() {
        wait_until(
            &format!("push-{i} to have caught up after its start"),
            BOUND,
            || logs(&format!("push-{i}")),
            || (!catching_up(*n)?).then_some(()),
        );
    }

    let ring = Ring::new(NODES as u32, 2, vec!["job".into(), "instance".into()]);
    let owners = |i: usize| -> Vec<u32> {
        let l = Labels::from_pairs(&[("job", "pushtest"), ("instance", &instance(i))]);
        let mut o = ring.owners(&ring.key_of(&l));
        o.sort_unstable();
        o
    };
    let round = std::cell::Cell::new(0u64);
    let run_rounds = |n: u64, nodes: &[SocketAddr]| {
        let mut moved = 0;
        for _ in 0..n {
            let started = Instant::now();
            let (failed, m) = push_round(nodes, round.get(), now_ms());
            assert!(
                failed.is_empty(),
                "round {}: pushes not acknowledged: {:?}",
                round.get(),
                &failed[..failed.len().min(5)]
            );
            moved += m;
            round.set(round.get() + 1);
            // Pace the rounds about a second apart (the driver's schedule, not a wait for a state).
            std::thread::sleep(Duration::from_millis(1000).saturating_sub(started.elapsed()));
        }
        moved
    };

    // Every instance's series on exactly its two owners.
    run_rounds(5, &nodes);
    wait_until(
        "each node to hold exactly the instances it owns",
        BOUND,
        || logs("push-0"),
        || {
            for (k, n) in nodes.iter().enumerate() {
                let have: BTreeSet<String> = counts(*n)?.into_keys().collect();
                let want: BTreeSet<String> =
                    (0..INSTANCES).filter(|i| owners(*i).contains(&(k as u32))).map(instance).collect();
                if have != want {
                    return None;
                }
            }
            Some(())
        },
    );

    // One node SIGKILLed: every push is still acknowledged (the instances that pushed to it move
    // to the next node) and the global keeps answering with every sample.
    let killed = 1usize;
    if let Some(p) = procs[killed].take() {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.id() as i32), nix::sys::signal::Signal::SIGKILL)
            .expect("kill");
        drop(p);
    }
    let moved = run_rounds(10, &nodes);
    assert!(
        moved >= 10 * (INSTANCES / NODES) - 10,
        "the instances of the killed node should have moved: {moved}"
    );
    let pushed = round.get() as f64;
    wait_until(
        "the global to answer every round of every instance",
        BOUND,
        || logs("global"),
        || {
            let c = counts(global)?;
            (c.len() == INSTANCES && c.values().all(|v| *v == pushed)).then_some(())
        },
    );
    for (k, n) in nodes.iter().enumerate().filter(|(k, _)| *k != killed) {
        let pending = hints_pending(*n, &format!("push-{killed}")).expect("hints");
        assert!(pending > 0, "push-{k} keeps no hints for the killed node");
    }

    // Back: it catches up from the hints, and then holds what its co-owners hold.
    procs[killed] = Some(start_push(dir.path(), t, killed));
    run_rounds(5, &nodes);
    let total = round.get() as f64;
    let last = std::cell::RefCell::new(String::new());
    wait_until(
        "the returning node to hold every round of the instances it owns",
        BOUND,
        || format!("{}\n{}", last.borrow(), logs(&format!("push-{killed}"))),
        || {
            for (k, n) in nodes.iter().enumerate().filter(|(k, _)| *k != killed) {
                let p = hints_pending(*n, &format!("push-{killed}"))?;
                if p > 0 {
                    *last.borrow_mut() = format!("push-{k} still holds {p} hints");
                    return None;
                }
            }
            let per_node: Vec<BTreeMap<String, f64>> =
                nodes.iter().map(|n| counts(*n)).collect::<Option<_>>()?;
            for i in 0..INSTANCES {
                let o = owners(i);
                let c: Vec<f64> = o
                    .iter()
                    .map(|k| per_node[*k as usize].get(&instance(i)).copied().unwrap_or(0.0))
                    .collect();
                if c.iter().any(|x| *x != total) {
                    *last.borrow_mut() =
                        format!("{}: owners {o:?} hold {c:?} of {total} rounds", instance(i));
                    return None;
                }
            }
            Some(())
        },
    );
    // The global still answers every round once, whichever owner it reads.
    wait_until(
        "the global to answer every round after the return",
        BOUND,
        || logs("global"),
        || {
            let c = counts(global)?;
            (c.len() == INSTANCES && c.values().all(|v| *v == total)).then_some(())
        },
    );
}

fn write_topology(path: &Path, data: &Path, nodes: usize, base: u16, global_port: u16) {
    std::fs::write(
        path,
        format!(
            "cluster: pt\n\
             defaults: {{data_dir: '{}', scrape_interval: 1s}}\n\
             jobs: []\n\
             push: {{nodes: {nodes}, replication_factor: 2, listen: '127.0.0.1:{base}'}}\n\
             globals:\n  - name: global\n    from: [push]\n    listen: '127.0.0.1:{global_port}'\n\
             \x20   federate: {{interval: 1s, timeout: 900ms}}\n    dedup: {{mode: merge}}\n",
            data.display()
        ),
    )
    .expect("topology");
}

/// Growing the ring from 3 to 4 nodes while every instance keeps pushing: the new node starts,
/// the others restart one by one on the new topology, then the global. About a quarter of the
/// (series, owner) copies move to the new node; at the global every instance's series stay
/// continuous — every round once, no counter reset, the counters' increase equal to what was
/// pushed — because it merges the old and the new owners (history is not handed over; see
/// docs/push.md).
#[test]
fn adding_a_fourth_node_moves_a_quarter_of_the_copies_without_a_gap_or_a_double() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(5);
    let global_port = base + 4;
    let data = dir.path().join("data");
    let t3 = dir.path().join("t3.yaml");
    let t4 = dir.path().join("t4.yaml");
    write_topology(&t3, &data, 3, base, global_port);
    write_topology(&t4, &data, 4, base, global_port);
    let (t3, t4) = (t3.to_str().expect("utf8"), t4.to_str().expect("utf8"));
    let all: Vec<SocketAddr> = (0..4).map(|i| ([127, 0, 0, 1], base + i as u16).into()).collect();
    let global: SocketAddr = ([127, 0, 0, 1], global_port).into();
    let logs = |name: &str| {
        let s = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default();
        s[s.len().saturating_sub(4000)..].to_string()
    };
    let mut procs: Vec<Option<ChildGuard>> = (0..3).map(|i| Some(start_push(dir.path(), t3, i))).collect();
    let start_global = |t: &str| {
        start_promtier(
            "global",
            &["global", "--topology", t, "--node", "global-a"],
            &dir.path().join("global.log"),
        )
    };
    let mut global_proc = Some(start_global(t3));
    let wait_caught_up = |i: usize| {
        wait_until(
            &format!("push-{i} to have caught up after its start"),
            BOUND,
            || logs(&format!("push-{i}")),
            || (!catching_up(all[i])?).then_some(()),
        );
    };
    for i in 0..3 {
        wait_caught_up(i);
    }
    let round = std::cell::Cell::new(0u64);
    let run_rounds = |n: u64, nodes: &[SocketAddr]| {
        for _ in 0..n {
            let started = Instant::now();
            let (failed, _) = push_round(nodes, round.get(), now_ms());
            assert!(
                failed.is_empty(),
                "round {}: pushes not acknowledged: {:?}",
                round.get(),
                &failed[..failed.len().min(5)]
            );
            round.set(round.get() + 1);
            std::thread::sleep(Duration::from_millis(1000).saturating_sub(started.elapsed()));
        }
    };
    run_rounds(5, &all[..3]);

    // The new node, then each old one restarted on the new topology, pushes going on.
    procs.push(Some(start_push(dir.path(), t4, 3)));
    wait_caught_up(3);
    run_rounds(2, &all);
    for (i, proc) in procs.iter_mut().enumerate().take(3) {
        drop(proc.take()); // SIGTERM: a clean stop
        run_rounds(1, &all);
        *proc = Some(start_push(dir.path(), t4, i));
        wait_caught_up(i);
        run_rounds(1, &all);
    }
    drop(global_proc.take());
    global_proc = Some(start_global(t4));
    run_rounds(5, &all);
    let total = round.get() as f64;

    // What moved: each node holds the instances the new ring gives it (from when it owned them).
    let (r3, r4) = (
        Ring::new(3, 2, vec!["job".into(), "instance".into()]),
        Ring::new(4, 2, vec!["job".into(), "instance".into()]),
    );
    let keys: Vec<Vec<u8>> = (0..INSTANCES)
        .map(|i| r3.key_of(&Labels::from_pairs(&[("job", "pushtest"), ("instance", &instance(i))])))
        .collect();
    let m = r3.moves(&r4, keys.iter().map(Vec::as_slice));
    let copies = m.new_copies as f64 / m.copies as f64;
    eprintln!(
        "3 -> 4 nodes: {} of {} instances gained an owner, {:.1}% of the copies moved (all to push-3)",
        m.keys_moved,
        m.keys,
        copies * 100.0
    );
    assert!((copies - 0.25).abs() < 0.08, "{copies}");
    let on_new: BTreeSet<String> =
        (0..INSTANCES).filter(|i| r4.owners(&keys[*i]).contains(&3)).map(instance).collect();
    wait_until(
        "push-3 to hold the instances it owns",
        BOUND,
        || logs("push-3"),
        || {
            let have: BTreeSet<String> = counts(all[3])?.into_keys().collect();
            (have == on_new).then_some(())
        },
    );

    // At the global: every round of every instance once, no reset, the increase what was pushed.
    let last = std::cell::RefCell::new(String::new());
    wait_until(
        "the global to answer every round of every instance once",
        BOUND,
        || format!("{}\n{}", last.borrow(), logs("global")),
        || {
            let c = counts(global)?;
            let bad: Vec<_> = c.iter().filter(|(_, v)| **v != total).collect();
            *last.borrow_mut() = format!(
                "{} instances, {} not at {total}: {:?}",
                c.len(),
                bad.len(),
                &bad[..bad.len().min(5)]
            );
            (c.len() == INSTANCES && bad.is_empty()).then_some(())
        },
    );
    let now = now_ms() as f64 / 1000.0;
    let (resets, _) = instant(global, "resets(pushtest_requests_total[15m])", now);
    assert_eq!(resets.len(), 2 * INSTANCES);
    assert!(resets.iter().all(|(_, v)| *v == 0.0), "a counter reset at the global: {resets:?}");
    // Counter `/b` goes up by 2 a round: the raw delta over the whole test is 2 × (rounds − 1).
    let (delta, _) = instant(
        global,
        "max_over_time(pushtest_requests_total{path=\"/b\"}[15m]) - min_over_time(pushtest_requests_total{path=\"/b\"}[15m])",
        now,
    );
    assert_eq!(delta.len(), INSTANCES);
    assert!(delta.iter().all(|(_, v)| *v == 2.0 * (total - 1.0)), "{delta:?}");
    drop(global_proc);
}

/// Raw samples by series: sorted label pairs → (t ms, value bits).
type Raw = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

/// Raw samples of every series matching `selector` over the last `range` in Prometheus: labels
/// (without `__name__`'s absence mattering: sorted pairs) → (t ms, value bits).
fn prometheus_raw(prom: SocketAddr, selector: &str, range: &str, at: f64) -> Option<Raw> {
    let q: String = url::form_urlencoded::byte_serialize(format!("{selector}[{range}]").as_bytes()).collect();
    let (status, body) =
        http_get(prom, &format!("/api/v1/query?query={q}&time={at}"), Duration::from_secs(10)).ok()?;
    (status == 200).then_some(())?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array()? {
        let mut labels: Vec<(String, String)> = r["metric"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
        labels.sort();
        let samples = r["values"]
            .as_array()?
            .iter()
            .filter_map(|p| {
                let t = (p[0].as_f64()? * 1000.0).round() as i64;
                let v: f64 = p[1].as_str()?.parse().ok()?;
                Some((t, v.to_bits()))
            })
            .collect();
        out.insert(labels, samples);
    }
    Some(out)
}

/// A real Prometheus scraping a demo exporter, with `remote_write` pointed at one push node: its
/// series land on the owners of their `job`/`instance` key (and on no other node), with the very
/// samples Prometheus stored — malformed and oversized pushes meanwhile get 400 and 413 with the
/// reason and disturb nothing.
#[test]
fn a_real_prometheus_remote_writes_into_the_ring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(4);
    let demo_port = base + 3;
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: pt\n\
             defaults: {{data_dir: '{}'}}\n\
             jobs: []\n\
             push: {{nodes: 3, replication_factor: 2, listen: '127.0.0.1:{base}'}}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    let nodes: Vec<SocketAddr> = (0..3).map(|i| ([127, 0, 0, 1], base + i as u16).into()).collect();
    let _procs: Vec<ChildGuard> = (0..3)
        .map(|i| start_push_with(dir.path(), t, i, &["--remote-write.max-body-bytes", "1048576"]))
        .collect();
    let demo_addr = format!("127.0.0.1:{demo_port}");
    let _demo = start_promtier(
        "demo",
        &["demo", "--listen", &demo_addr, "--series", "100"],
        &dir.path().join("demo.log"),
    );
    let prom = Prometheus::start(&format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
         scrape_configs:\n  - job_name: demo\n    static_configs: [{{targets: ['{demo_addr}']}}]\n\
         remote_write:\n  - url: http://{}/api/v1/write\n    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms}}\n",
        nodes[0]
    ));
    let ring = Ring::new(3, 2, vec!["job".into(), "instance".into()]);
    let key = ring.key_of(&Labels::from_pairs(&[("job", "demo"), ("instance", &demo_addr)]));
    let owners = ring.owners(&key);
    let logs = || {
        let s = std::fs::read_to_string(dir.path().join("push-0.log")).unwrap_or_default();
        format!("{}\n{}", &s[s.len().saturating_sub(3000)..], prom.log())
    };
    // Let Prometheus scrape a while, then compare everything up to a time it has surely sent.
    wait_until("Prometheus to have scraped for 10 s", BOUND, logs, || {
        let m = prometheus_raw(prom.addr(), "up", "1m", now_ms() as f64 / 1000.0)?;
        (m.values().next()?.len() >= 10).then_some(())
    });
    // Bad pushes get a clear answer and change nothing else.
    let client = reqwest::blocking::Client::new();
    let post = |body: Vec<u8>| {
        let r = client
            .post(format!("http://{}/api/v1/write", nodes[1]))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .body(body)
            .send()
            .expect("post");
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    let (status, text) = post(b"not snappy at all".to_vec());
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("snappy"), "{text}");
    let (status, text) = post(codec::compress(b"\x0a\xff\xff\xff\xff\x0f").expect("snappy"));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("decoding"), "{text}");
    // Over the body limit: refused as soon as the declared length says so, before the body is
    // read (so only the head is sent here: a client still writing may see the connection close).
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nContent-Length: {}\r\n\r\n",
        nodes[1],
        2 << 20
    );
    let mut conn = std::net::TcpStream::connect(nodes[1]).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    std::io::Write::write_all(&mut conn, head.as_bytes()).expect("send the head");
    let mut answer = [0u8; 256];
    let n = std::io::Read::read(&mut conn, &mut answer).expect("an answer");
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let at = (now_ms() - 3_000) as f64 / 1000.0;
    let want = prometheus_raw(prom.addr(), "{job=\"demo\"}", "5m", at).expect("Prometheus data");
    assert!(want.len() >= 100, "{} series", want.len());
    let last = std::cell::RefCell::new(String::new());
    wait_until(
        "the owners to hold what Prometheus stored",
        BOUND,
        || format!("{}\n{}", last.borrow(), logs()),
        || {
            for k in 0..3u32 {
                let have = prometheus_raw(nodes[k as usize], "{job=\"demo\"}", "5m", at)?;
                if !owners.contains(&k) {
                    assert!(
                        have.is_empty(),
                        "push-{k} is no owner of the demo target but holds {} series",
                        have.len()
                    );
                    continue;
                }
                if have != want {
                    let missing = want.keys().filter(|l| have.get(*l) != want.get(*l)).count();
                    *last.borrow_mut() = format!("push-{k}: {missing} of {} series differ", want.len());
                    return None;
                }
            }
            Some(())
        },
    );
}
