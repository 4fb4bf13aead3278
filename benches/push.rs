//! Push throughput through the ring, next to a real Prometheus remote-write receiver taking the
//! same load on the same host in the same run.
//!
//! The load: `SERIES` series (`INSTANCES` instances of equal size), `ROUNDS` rounds of
//! `SAMPLES_PER_ROUND` samples per series, sent as Remote-Write 1.0 requests of about 2000
//! samples (what Prometheus sends by default) by `CLIENTS` client threads, spread over the
//! receiving nodes round robin. Bodies are encoded before the clock starts.
//!
//! Setups, each on fresh data directories:
//! - `promtier 1 node`: one push node (RF 1): every series is stored where it arrives.
//! - `promtier 3 nodes RF 1`: two thirds of the series are forwarded to their owner.
//! - `promtier 3 nodes RF 2`: every series stored twice, most forwarded once or twice.
//! - `prometheus`: Prometheus 2.42 with `--web.enable-remote-write-receiver`.
//!
//! Printed per setup: wall time, samples/s, server CPU seconds (all nodes, from `/proc`) and
//! samples per server CPU second (throughput per core). The extra cost of forwarding is the
//! CPU per sample of `3 nodes RF 1` over `1 node`.
//!
//! Run: `cargo bench --bench push` (needs `prometheus` on PATH, or PROMETHEUS_BIN). Scale by
//! environment: `INSTANCES` (500), `SERIES_PER_INSTANCE` (20), `ROUNDS` (100),
//! `SAMPLES_PER_ROUND` (5), `CLIENTS` (4). Without `--bench` (as `cargo test --all-targets` runs
//! it) it runs at a tiny scale and skips Prometheus when it is missing; timings are printed,
//! never asserted.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use promtier::remote::{codec, proto};
use prost::Message;
use support::{Proc, free_port, tool};

#[derive(Debug, Clone, Copy)]
struct Scale {
    instances: usize,
    series_per_instance: usize,
    rounds: usize,
    samples_per_round: usize,
    clients: usize,
}

impl Scale {
    fn get() -> Scale {
        if !std::env::args().any(|a| a == "--bench") {
            return Scale {
                instances: 20,
                series_per_instance: 10,
                rounds: 3,
                samples_per_round: 5,
                clients: 2,
            };
        }
        fn env(name: &str, default: usize) -> usize {
            std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
        }
        Scale {
            instances: env("INSTANCES", 500),
            series_per_instance: env("SERIES_PER_INSTANCE", 20),
            rounds: env("ROUNDS", 100),
            samples_per_round: env("SAMPLES_PER_ROUND", 5),
            clients: env("CLIENTS", 4),
        }
    }

    fn samples(&self) -> usize {
        self.instances * self.series_per_instance * self.rounds * self.samples_per_round
    }
}

/// Every request body, in sending order: per round, whole instances packed into requests of
/// about 2000 samples.
fn bodies(s: Scale) -> Vec<Vec<u8>> {
    let start = promtier::model::now_ms() - 20 * 60_000;
    let per_instance = s.series_per_instance * s.samples_per_round;
    let instances_per_request = (2000 / per_instance).max(1);
    let mut out = Vec::new();
    for round in 0..s.rounds {
        for chunk in (0..s.instances).collect::<Vec<_>>().chunks(instances_per_request) {
            let mut req = proto::WriteRequest::default();
            for &i in chunk {
                for k in 0..s.series_per_instance {
                    let labels = vec![
                        proto::Label { name: "__name__".into(), value: "bench_requests_total".into() },
                        proto::Label { name: "instance".into(), value: format!("host-{i:05}:9100") },
                        proto::Label { name: "job".into(), value: "bench".into() },
                        proto::Label { name: "path".into(), value: format!("/api/v1/item{k}") },
                    ];
                    let samples = (0..s.samples_per_round)
                        .map(|j| {
                            let n = (round * s.samples_per_round + j) as i64;
                            proto::Sample { value: (n * (k as i64 + 1)) as f64, timestamp: start + n * 1000 }
                        })
                        .collect();
                    req.timeseries.push(proto::TimeSeries { labels, samples, ..Default::default() });
                }
            }
            out.push(codec::compress(&req.encode_to_vec()).expect("snappy"));
        }
    }
    out
}

/// Sends `bodies` (round by round, in order within a round) to `targets` with `clients` threads;
/// wall time.
fn send(bodies: &[Vec<u8>], per_round: usize, targets: &[SocketAddr], clients: usize) -> Duration {
    let started = Instant::now();
    for round in bodies.chunks(per_round) {
        std::thread::scope(|sc| {
            for c in 0..clients {
                sc.spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(60))
                        .build()
                        .expect("client");
                    for (k, b) in round.iter().enumerate().skip(c).step_by(clients) {
                        let target = targets[k % targets.len()];
                        let resp = client
                            .post(format!("http://{target}/api/v1/write"))
                            .header("Content-Type", "application/x-protobuf")
                            .header("Content-Encoding", "snappy")
                            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                            .body(b.clone())
                            .send()
                            .expect("push");
                        let status = resp.status();
                        assert!(
                            status.is_success(),
                            "{target}: {status}: {}",
                            resp.text().unwrap_or_default()
                        );
                    }
                });
            }
        });
    }
    started.elapsed()
}

fn wait_http(addr: SocketAddr, path: &str, what: &str, procs: &mut [Proc], logs: &[std::path::PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (p, l) in procs.iter_mut().zip(logs) {
            p.check_alive(what, l);
        }
        if reqwest::blocking::get(format!("http://{addr}{path}")).is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Row {
    setup: String,
    wall: Duration,
    cpu: f64,
}

fn promtier_setup(
    dir: &Path,
    nodes: usize,
    rf: usize,
    s: Scale,
    bodies: &[Vec<u8>],
    per_round: usize,
) -> Row {
    let data = dir.join(format!("promtier-{nodes}-{rf}"));
    std::fs::create_dir_all(&data).expect("dir");
    // Consecutive ports for the nodes: take the first free one and check the others.
    let base = loop {
        let p = free_port();
        if (1..nodes as u16).all(|k| std::net::TcpListener::bind(("127.0.0.1", p + k)).is_ok()) {
            break p;
        }
    };
    let topology = data.join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: bench\ndefaults: {{data_dir: '{}'}}\njobs: []\n\
             push: {{nodes: {nodes}, replication_factor: {rf}, listen: '127.0.0.1:{base}'}}\n",
            data.display()
        ),
    )
    .expect("topology");
    let logs: Vec<_> = (0..nodes).map(|i| data.join(format!("push-{i}.log"))).collect();
    let mut procs: Vec<Proc> = (0..nodes)
        .map(|i| {
            Proc::spawn(
                "push node",
                Command::new(env!("CARGO_BIN_EXE_promtier"))
                    .args(["push", "--topology"])
                    .arg(&topology)
                    .args(["--node", &format!("push-{i}")]),
                &logs[i],
            )
        })
        .collect();
    let addrs: Vec<SocketAddr> = (0..nodes).map(|i| ([127, 0, 0, 1], base + i as u16).into()).collect();
    for a in &addrs {
        wait_http(*a, "/-/ready", "push node", &mut procs, &logs);
    }
    let cpu0: f64 = procs.iter().map(Proc::cpu_seconds).sum();
    let wall = send(bodies, per_round, &addrs, s.clients);
    let cpu = procs.iter().map(Proc::cpu_seconds).sum::<f64>() - cpu0;
    Row { setup: format!("promtier {nodes} node{} RF {rf}", if nodes > 1 { "s" } else { "" }), wall, cpu }
}

fn prometheus_setup(dir: &Path, s: Scale, bodies: &[Vec<u8>], per_round: usize) -> Option<Row> {
    let bin = tool("prometheus", "PROMETHEUS_BIN")?;
    let d = dir.join("prometheus");
    std::fs::create_dir_all(&d).expect("dir");
    std::fs::write(d.join("prometheus.yml"), "global: {scrape_interval: 1m}\n").expect("config");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let log = d.join("prometheus.log");
    let mut procs = vec![Proc::spawn(
        "prometheus",
        Command::new(bin)
            .arg(format!("--config.file={}", d.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver"),
        &log,
    )];
    wait_http(addr, "/-/ready", "prometheus", &mut procs, &[log]);
    let cpu0 = procs[0].cpu_seconds();
    let wall = send(bodies, per_round, &[addr], s.clients);
    let cpu = procs[0].cpu_seconds() - cpu0;
    Some(Row { setup: "prometheus 2.x receiver".into(), wall, cpu })
}

fn main() {
    let s = Scale::get();
    let dir = tempfile::tempdir().expect("tempdir");
    let bodies = bodies(s);
    let per_round = bodies.len() / s.rounds;
    let samples = s.samples() as f64;
    println!(
        "push: {} series ({} instances), {} samples in {} requests, {} clients",
        s.instances * s.series_per_instance,
        s.instances,
        s.samples(),
        bodies.len(),
        s.clients
    );
    let mut rows = vec![
        promtier_setup(dir.path(), 1, 1, s, &bodies, per_round),
        promtier_setup(dir.path(), 3, 1, s, &bodies, per_round),
        promtier_setup(dir.path(), 3, 2, s, &bodies, per_round),
    ];
    match prometheus_setup(dir.path(), s, &bodies, per_round) {
        Some(r) => rows.push(r),
        None => println!("prometheus not found: no reference row"),
    }
    println!("{:<26} {:>9} {:>13} {:>9} {:>18}", "setup", "wall s", "samples/s", "cpu s", "samples/cpu-s");
    for r in &rows {
        println!(
            "{:<26} {:>9.2} {:>13.0} {:>9.2} {:>18.0}",
            r.setup,
            r.wall.as_secs_f64(),
            samples / r.wall.as_secs_f64(),
            r.cpu,
            samples / r.cpu.max(1e-9)
        );
    }
    if let (Some(one), Some(three)) = (rows.first(), rows.get(1)) {
        println!(
            "forwarding: CPU per sample with 3 nodes RF 1 (2/3 forwarded) is {:.2}x that of 1 node",
            three.cpu / one.cpu.max(1e-9)
        );
    }
}
