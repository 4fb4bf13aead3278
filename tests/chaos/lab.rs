//! A cluster lab for chaos scenarios: a topology file in a temporary directory, every node run as
//! its own process (`promtier demo|leaf|global`) so each can be killed, frozen and restarted
//! alone, logs kept per start, and the checks the scenarios share: reading what a node stored,
//! waiting for the election, comparing sample sets exactly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use promtier::model::{Labels, is_stale_nan, now_ms};

use crate::common::cluster::{elected, stored};
use crate::common::{ChildGuard, free_port_block, start_promtier};

/// URL-encoded `{__name__=~"demo_.+"}`.
pub(crate) const DEMO: &str = "%7B__name__%3D~%22demo_.%2B%22%7D";

/// Samples per series, by labels (without the replica label), values as bits so NaNs compare.
pub(crate) type Samples = BTreeMap<Labels, Vec<(i64, u64)>>;

/// Whether the outages should be long (`PROMTIER_CHAOS_SOAK=1`).
pub(crate) fn soak() -> bool {
    std::env::var("PROMTIER_CHAOS_SOAK").is_ok_and(|v| v == "1")
}

pub(crate) struct Lab {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) topology: PathBuf,
    procs: BTreeMap<String, ChildGuard>,
    starts: BTreeMap<String, u32>,
    /// Node name → the command word that runs it (`leaf`, `global`) or the demo arguments.
    kinds: BTreeMap<String, Vec<String>>,
}

impl Lab {
    /// A lab for the topology `yaml` (written to `t.yaml`).
    pub(crate) fn new(yaml: &str) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let topology = dir.path().join("t.yaml");
        std::fs::write(&topology, yaml).expect("write the topology");
        Lab { dir, topology, procs: BTreeMap::new(), starts: BTreeMap::new(), kinds: BTreeMap::new() }
    }

    pub(crate) fn topology(&self) -> &str {
        self.topology.to_str().expect("utf8 path")
    }

    /// Declares a demo exporter `name` on `addr` serving about `series` series.
    pub(crate) fn demo(&mut self, name: &str, addr: SocketAddr, series: u32, seed: u64) {
        let args = vec![
            "demo".to_string(),
            "--listen".into(),
            addr.to_string(),
            "--series".into(),
            series.to_string(),
            "--seed".into(),
            seed.to_string(),
        ];
        self.kinds.insert(name.to_string(), args);
        self.start(name);
    }

    /// Starts node `name` of the topology as `role` (`leaf` or `global`).
    pub(crate) fn node(&mut self, role: &str, name: &str) {
        let args = vec![
            role.to_string(),
            "--topology".into(),
            self.topology().to_string(),
            "--node".into(),
            name.to_string(),
        ];
        self.kinds.insert(name.to_string(), args);
        self.start(name);
    }

    /// (Re)starts a declared node; its log goes to `<name>.<n>.log`.
    pub(crate) fn start(&mut self, name: &str) {
        let n = self.starts.entry(name.to_string()).or_insert(0);
        *n += 1;
        let log = self.dir.path().join(format!("{name}.{n}.log"));
        let args = self.kinds.get(name).unwrap_or_else(|| panic!("unknown node {name}")).clone();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let guard = start_promtier(name, &argv, &log);
        self.procs.insert(name.to_string(), guard);
    }

    fn pid(&self, name: &str) -> Pid {
        let g = self.procs.get(name).unwrap_or_else(|| panic!("{name} is not running"));
        Pid::from_raw(i32::try_from(g.id()).expect("pid"))
    }

    /// SIGKILLs `name` and reaps it.
    pub(crate) fn kill(&mut self, name: &str) {
        let _ = kill(self.pid(name), Signal::SIGKILL);
        if let Some(mut g) = self.procs.remove(name) {
            let deadline = Instant::now() + Duration::from_secs(30);
            while g.exited().is_none() {
                assert!(Instant::now() < deadline, "{name} did not die after SIGKILL");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Sends `sig` (SIGSTOP, SIGCONT) to `name`.
    pub(crate) fn signal(&self, name: &str, sig: Signal) {
        kill(self.pid(name), sig).expect("signal");
    }

    /// The last lines of every log, for failure messages.
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "log")) {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            out.push_str(&format!(
                "--- {} (last {} lines) ---\n{}\n",
                f.display(),
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }

    /// Everything the global with log prefix `name` logged in all its starts.
    pub(crate) fn log_of(&self, name: &str) -> String {
        let n = self.starts.get(name).copied().unwrap_or(0);
        (1..=n)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("{name}.{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits up to `timeout` for `probe`, failing with `what` and the logs.
    pub(crate) fn wait<T>(&self, what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits up to `timeout` until `problems` returns none; fails with the last ones and the logs.
    pub(crate) fn wait_clean(
        &self,
        what: &str,
        timeout: Duration,
        mut problems: impl FnMut() -> Option<Vec<String>>,
    ) {
        let deadline = Instant::now() + timeout;
        let mut last = vec!["(not checked yet)".to_string()];
        loop {
            if let Some(p) = problems() {
                if p.is_empty() {
                    return;
                }
                last = p;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last problems:\n{}\n{}",
                    last[..last.len().min(12)].join("\n"),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits for `global` to elect a replica of `shard`.
    pub(crate) fn elected(&self, global: SocketAddr, shard: &str) -> String {
        self.wait(&format!("an election for {shard}"), Duration::from_secs(60), || elected(global, shard))
    }
}

/// The `globals:` entry of a failover global `name` pulling `from` every second
/// (`failover_timeout: 3s`); `federate_extra` adds keys to its `federate:` map.
pub(crate) fn failover_global(name: &str, from: &str, port: u16, federate_extra: &str) -> String {
    format!(
        "  - {{name: {name}, from: [{from}], listen: '127.0.0.1:{port}', \
         federate: {{interval: 1s, timeout: 900ms{federate_extra}}}, dedup: {{mode: failover, failover_timeout: 3s}}}}\n"
    )
}

/// A topology scraping every second: one leaf group `apps` (one shard of two replicas from port
/// `leaf`) over the demo exporters on `demos`, and `globals` (lines of the `globals:` list).
pub(crate) fn one_group(demos: &[u16], leaf: u16, globals: &str) -> String {
    let targets: Vec<String> = demos.iter().map(|d| format!("'127.0.0.1:{d}'")).collect();
    format!(
        "cluster: chaos\n\
         defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
         jobs:\n  - {{job_name: demo, static_configs: [{{targets: [{}]}}]}}\n\
         leaves:\n  - {{group: apps, jobs: [demo], replicas: 2, listen: '127.0.0.1:{leaf}'}}\n\
         globals:\n{globals}",
        targets.join(", ")
    )
}

/// A topology scraping every second: two leaf groups, `infra` (demos 0 and 1) and `apps` (demos
/// 2 and 3), each one shard of two replicas (from port `leaf`: infra-0-a, infra-0-b, apps-0-a,
/// apps-0-b), and one failover global pulling both; `federate_extra` as in [`failover_global`],
/// `tail` appended (e.g. `nodes:` overrides).
pub(crate) fn two_groups(demos: &[u16], leaf: u16, global: u16, federate_extra: &str, tail: &str) -> String {
    format!(
        "cluster: chaos\n\
         defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
         jobs:\n\
         \x20 - {{job_name: infra, static_configs: [{{targets: ['127.0.0.1:{}', '127.0.0.1:{}']}}]}}\n\
         \x20 - {{job_name: apps, static_configs: [{{targets: ['127.0.0.1:{}', '127.0.0.1:{}']}}]}}\n\
         leaves:\n\
         \x20 - {{group: infra, jobs: [infra], replicas: 2, listen: '127.0.0.1:{leaf}'}}\n\
         \x20 - {{group: apps, jobs: [apps], replicas: 2, listen: '127.0.0.1:{}'}}\n\
         globals:\n{}{tail}",
        demos[0],
        demos[1],
        demos[2],
        demos[3],
        leaf + 2,
        failover_global("global", "infra, apps", global, federate_extra),
    )
}

/// Starts the demo exporters on `demos` (`demo-<i>`, about `series` series each) and the four
/// leaves of [`two_groups`].
pub(crate) fn start_two_groups(lab: &mut Lab, demos: &[u16], series: u32) {
    for (i, port) in demos.iter().enumerate() {
        lab.demo(&format!("demo-{i}"), addr(*port), series, i as u64 + 1);
    }
    for n in ["infra-0-a", "infra-0-b", "apps-0-a", "apps-0-b"] {
        lab.node("leaf", n);
    }
}

/// `count` consecutive free loopback ports.
pub(crate) fn ports(count: u16) -> Vec<u16> {
    let base = free_port_block(count);
    (base..base + count).collect()
}

pub(crate) fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// The demo series a node stores in `[from, to]`, labels without `replica`.
pub(crate) fn window(node: SocketAddr, selector: &str, from: i64, to: i64) -> Samples {
    stored(node, selector, from - 1)
        .into_iter()
        .map(|(l, s)| {
            let s: Vec<(i64, u64)> = s
                .into_iter()
                .filter(|(t, _)| *t >= from && *t <= to)
                .map(|(t, v)| (t, v.to_bits()))
                .collect();
            (l.without(&["replica"]), s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

/// The differences between two sample sets, at most `max` lines; empty when equal.
pub(crate) fn diff(
    want_name: &str,
    want: &Samples,
    got_name: &str,
    got: &Samples,
    max: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (l, w) in want {
        match got.get(l) {
            None => {
                out.push(format!("{l}: {} samples in {want_name}, series missing in {got_name}", w.len()))
            }
            Some(g) if g != w => {
                let missing: Vec<i64> = w.iter().filter(|x| !g.contains(x)).map(|x| x.0).take(5).collect();
                let extra: Vec<i64> = g.iter().filter(|x| !w.contains(x)).map(|x| x.0).take(5).collect();
                out.push(format!(
                    "{l}: {want_name} {} samples, {got_name} {}; missing in {got_name} {missing:?}, extra {extra:?}",
                    w.len(),
                    g.len()
                ));
            }
            Some(_) => {}
        }
        if out.len() >= max {
            return out;
        }
    }
    for l in got.keys().filter(|l| !want.contains_key(*l)).take(max.saturating_sub(out.len())) {
        out.push(format!("{l}: in {got_name} only"));
    }
    out
}

/// What is wrong with `got` if, per series, it is not `before`'s samples up to some point
/// followed by exactly `after`'s samples newer than that point — what a global holds when it
/// stored one replica (`before`) and then another (`after`), filling from where each series
/// stopped. With the same replica on both sides, `got` must equal it.
pub(crate) fn switch_problems(got: &Samples, before: &Samples, after: &Samples, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let empty = Vec::new();
    let keys: std::collections::BTreeSet<&Labels> =
        got.keys().chain(before.keys()).chain(after.keys()).collect();
    for l in keys {
        let g = got.get(l).unwrap_or(&empty);
        let b = before.get(l).unwrap_or(&empty);
        let a = after.get(l).unwrap_or(&empty);
        let i = g.iter().zip(b).take_while(|(x, y)| x == y).count();
        let last = if i > 0 { g[i - 1].0 } else { i64::MIN };
        let rest: Vec<(i64, u64)> = a.iter().filter(|x| x.0 > last).copied().collect();
        if g[i..] != rest[..] {
            let missing: Vec<i64> =
                rest.iter().filter(|x| !g[i..].contains(x)).map(|x| x.0).take(5).collect();
            let extra: Vec<i64> = g[i..].iter().filter(|x| !rest.contains(x)).map(|x| x.0).take(5).collect();
            out.push(format!(
                "{l}: {i} samples of the first replica up to {last}, then {} stored where the second has {}; missing {missing:?}, extra {extra:?}",
                g.len() - i,
                rest.len()
            ));
        }
        if out.len() >= max {
            break;
        }
    }
    out
}

/// Continuity problems of `series` in `[from, to]`: steps longer than `max_step_ms`, timestamps
/// that do not increase, counters that go down.
pub(crate) fn continuity(series: &Samples, from: i64, to: i64, max_step_ms: i64) -> Vec<String> {
    let mut problems = Vec::new();
    for (l, s) in series {
        let w: Vec<&(i64, u64)> = s.iter().filter(|(t, _)| *t >= from && *t <= to).collect();
        let counter = l
            .metric_name()
            .is_some_and(|n| n.ends_with("_total") || n.ends_with("_count") || n.ends_with("_bucket"));
        for p in w.windows(2) {
            let ((t0, b0), (t1, b1)) = (*p[0], *p[1]);
            let (v0, v1) = (f64::from_bits(b0), f64::from_bits(b1));
            if t1 <= t0 {
                problems.push(format!("{l}: timestamps not increasing: {t0} then {t1}"));
            }
            if t1 - t0 > max_step_ms {
                problems.push(format!("{l}: gap of {} ms ({t0} -> {t1})", t1 - t0));
            }
            if counter && !is_stale_nan(v0) && !is_stale_nan(v1) && v1 < v0 {
                problems.push(format!("{l}: counter went down {v0} -> {v1} at {t1}"));
            }
        }
    }
    problems
}

/// Panics with the first problems and the logs when `problems` is not empty.
pub(crate) fn assert_none(lab: &Lab, what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problems, e.g.:\n{}\n{}",
        problems.len(),
        problems[..problems.len().min(12)].join("\n"),
        lab.logs()
    );
}

/// Milliseconds since the epoch, now.
pub(crate) fn now() -> i64 {
    now_ms()
}

/// A small deterministic random generator (xorshift), seeded and printed by the scenario.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
