//! No acknowledged sample is lost to `kill -9`: a real leaf scrapes a demo target every second
//! with 2 s blocks (so cuts, checkpoints and compactions happen all the time) and is killed with
//! SIGKILL at random moments — while serving, while cutting, while starting — 22 times. Every
//! sample that a `/federate` response returned before a kill is then read back from the data
//! directory with the library's own TSDB (the process being dead), and the node starts again.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use promtier::model::parse_selector;
use promtier::storage::Queryable;
use promtier::tsdb::{Db, DbOptions};

const ROUNDS: usize = 22;
const BLOCK: &str = "2s";
const BLOCK_MS: i64 = 2000;

/// Series identity as stored: name and labels without the node's external labels.
type Key = (String, Vec<(String, String)>);

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn everything(leaf: SocketAddr) -> Option<(u16, String)> {
    http_get(leaf, "/federate?match[]=%7B__name__%3D~%22.%2B%22%7D", Duration::from_secs(2)).ok()
}

/// Reads every sample in `dir` with the library's TSDB.
fn stored(dir: &Path) -> BTreeMap<Key, BTreeSet<(i64, u64)>> {
    let db = Db::open(dir, DbOptions { block_range_ms: BLOCK_MS, ..DbOptions::default() })
        .unwrap_or_else(|e| panic!("the data directory does not open: {e}"));
    let q = db.querier(i64::MIN, i64::MAX).expect("querier");
    let mut out = BTreeMap::new();
    for s in q.select(&parse_selector("{__name__=~\".+\"}").expect("selector")).expect("select") {
        let name = s.labels.metric_name().unwrap_or_default().to_string();
        let labels: Vec<(String, String)> = s
            .labels
            .iter()
            .filter(|l| l.name != "__name__")
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        out.insert((name, labels), s.samples.map(|x| (x.t, x.v.to_bits())).collect());
    }
    out
}

#[test]
fn acknowledged_samples_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_port = free_port();
    let leaf_port = free_port();
    let topology = dir.path().join("t.yaml");
    std::fs::write(&topology, one_leaf_topology("crash", demo_port, leaf_port)).expect("write topology");
    let t = promtier::topology::load(&topology).expect("topology loads");
    let node = t.node("apps-0-a").expect("leaf node").clone();
    let external: BTreeSet<String> = node.external_labels.iter().map(|l| l.name.to_string()).collect();
    let demo_log = dir.path().join("demo.log");
    let _demo = start_promtier(
        "demo",
        &["demo", "--listen", &format!("127.0.0.1:{demo_port}"), "--series", "1500"],
        &demo_log,
    );
    let leaf: SocketAddr = ([127, 0, 0, 1], leaf_port).into();
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let mut acked: BTreeMap<Key, BTreeSet<(i64, u64)>> = BTreeMap::new();
    let record = |body: &str, acked: &mut BTreeMap<Key, BTreeSet<(i64, u64)>>| {
        for (name, labels, v, ts) in parse_text_rows(body) {
            let labels: Vec<(String, String)> =
                labels.into_iter().filter(|(n, _)| !external.contains(n)).collect();
            let ts = ts.expect("federate samples carry timestamps");
            acked.entry((name, labels)).or_default().insert((ts, v.to_bits()));
        }
    };
    let started = Instant::now();
    let (mut during_write, mut during_start) = (0, 0);
    let topo = topology.to_str().expect("utf8 path");
    let args = ["leaf", "--topology", topo, "--node", "apps-0-a", "--tsdb.block-duration", BLOCK];
    for round in 0..=ROUNDS {
        let log = dir.path().join(format!("leaf-{round}.log"));
        let mut proc = start_promtier("leaf", &args, &log);
        let logs = || std::fs::read_to_string(&log).unwrap_or_default();
        // One round in five is killed while starting (opening the TSDB, replaying the WAL).
        let kill_early = round < ROUNDS && rng.below(5) == 0;
        if !kill_early {
            wait_until(
                &format!("round {round}: the leaf to serve /federate"),
                Duration::from_secs(60),
                logs,
                || {
                    let (status, body) = everything(leaf)?;
                    (status == 200 && body.contains("demo_http_requests_total"))
                        .then(|| record(&body, &mut acked))
                },
            );
        }
        if round == ROUNDS {
            // The last start: served, its TSDB statistics on /metrics, then stopped cleanly.
            let (_, metrics) = http_get(leaf, "/metrics", Duration::from_secs(5)).expect("/metrics");
            for name in [
                "promtier_tsdb_wal_commits_total",
                "promtier_tsdb_head_cuts_total",
                "promtier_tsdb_blocks_loaded",
            ] {
                assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
            }
            proc.stop();
            assert!(logs().contains("TSDB closed"), "clean close on SIGTERM:\n{}", logs());
            break;
        }
        let mut run_for =
            Duration::from_millis(if kill_early { rng.below(400) } else { 300 + rng.below(2500) });
        if !kill_early && rng.below(2) == 0 {
            // Aim at a cut: the head gives up [k·2s, (k+1)·2s) once it holds samples from 1 s past
            // that range, and the maintenance loop looks every 200 ms.
            let now = promtier::model::now_ms();
            let phase = 1000 + rng.below(350) as i64;
            let mut at = now - now.rem_euclid(BLOCK_MS) + phase;
            while at < now + 300 {
                at += BLOCK_MS;
            }
            run_for = Duration::from_millis((at - now) as u64);
        }
        let until = Instant::now() + run_for;
        while Instant::now() < until {
            if let Some((200, body)) = everything(leaf) {
                record(&body, &mut acked);
            }
            std::thread::sleep(Duration::from_millis(rng.below(150)));
        }
        let pid = Pid::from_raw(i32::try_from(proc.id()).expect("pid"));
        kill(pid, Signal::SIGKILL).expect("SIGKILL the leaf");
        while proc.exited().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if kill_early {
            during_start += 1;
        }
        let has_tmp = |d: &Path| {
            std::fs::read_dir(d)
                .map(|rd| {
                    rd.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                })
                .unwrap_or(false)
        };
        let interrupted = has_tmp(&node.data_dir) || has_tmp(&node.data_dir.join("wal"));
        during_write += usize::from(interrupted);

        // Every acknowledged sample is on disk.
        let disk = stored(&node.data_dir);
        let mut missing = Vec::new();
        for (key, samples) in &acked {
            let have = disk.get(key);
            for s in samples {
                if !have.is_some_and(|h| h.contains(s)) {
                    missing.push(format!("{key:?} t={} v={}", s.0, f64::from_bits(s.1)));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "round {round} (seed {seed}): {} acknowledged samples lost, e.g. {:?}\n--- leaf log ---\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            logs()
        );
    }
    let samples: usize = acked.values().map(BTreeSet::len).sum();
    let blocks = std::fs::read_dir(&node.data_dir)
        .expect("data dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().join("meta.json").exists()))
        .count();
    eprintln!(
        "{ROUNDS} kills ({during_start} while starting, {during_write} interrupted a block or checkpoint write); \
         {samples} acknowledged samples of {} series checked; {blocks} blocks on disk; {:?}",
        acked.len(),
        started.elapsed()
    );
    assert!(samples > 10_000, "enough acknowledged samples to mean something: {samples}");
    assert!(blocks > 0, "blocks were cut during the test");
}
