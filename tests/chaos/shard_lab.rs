//! The cluster the scenarios share, built in a [`Lab`]: one demo exporter (host `target`; a
//! scenario may ask for more: `target-2`, `target-3`, …), one leaf shard `apps-0` with replicas
//! `a` and `b` (hosts `leaf-a`, `leaf-b`) scraping every exporter, and one global (host
//! `global`) pulling both replicas, with the intervals and the dedup mode the scenario asks for. Each node runs on its own lab address (the topology's `nodes:`
//! overrides), started one by one with `promtier demo|leaf|global`; the topology file and the
//! data directories live in a temporary directory removed after the lab is gone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::unistd::Pid;
use promtier::model::Labels;
use tempfile::TempDir;

use crate::common::{http_get, promtier_binary, wait_until};
use crate::netlab::Lab;

pub(crate) const SHARD: &str = "apps-0";
/// `{__name__=~"demo_.+"}`, URL-encoded: the exporter's series.
pub(crate) const DEMO: &str = "%7B__name__%3D~%22demo_.%2B%22%7D";

const DEMO_PORT: u16 = 9400;
const LEAF_PORT: u16 = 9100;
const GLOBAL_PORT: u16 = 9090;

pub(crate) struct ShardLab {
    // Field order matters: the lab (processes, namespaces) goes before the directory.
    pub(crate) lab: Lab,
    pub(crate) global: SocketAddr,
    pids: Vec<(String, Pid)>,
    topology: PathBuf,
    dir: TempDir,
}

impl ShardLab {
    /// Builds the lab, writes the topology with `dedup` (the global's `dedup:` value, YAML) and
    /// the timing (`scrape: [interval, timeout]`, `federate: [interval, timeout]`, e.g.
    /// `["1s", "900ms"]`), and starts every node; returns once each answers `/-/ready` (demo:
    /// `/metrics`).
    pub(crate) fn start(dedup: &str, scrape: [&str; 2], federate: [&str; 2]) -> ShardLab {
        ShardLab::start_with_targets(1, dedup, scrape, federate)
    }

    /// [`ShardLab::start`] with `targets` demo exporters (hosts [`target_host`]), each
    /// serving the same series (told apart by their `instance`), all scraped by both replicas.
    pub(crate) fn start_with_targets(
        targets: usize,
        dedup: &str,
        scrape: [&str; 2],
        federate: [&str; 2],
    ) -> ShardLab {
        assert!(targets >= 1, "at least one exporter");
        let exporters: Vec<String> = (0..targets).map(target_host).collect();
        let mut hosts: Vec<&str> = exporters.iter().map(String::as_str).collect();
        hosts.extend(["leaf-a", "leaf-b", "global"]);
        let lab = Lab::new(&hosts);
        let dir = tempfile::Builder::new().prefix("promtier-chaos-").tempdir().expect("tempdir");
        let (a, b, g) = (lab.addr("leaf-a"), lab.addr("leaf-b"), lab.addr("global"));
        let scraped: Vec<String> =
            exporters.iter().map(|h| format!("'{}:{DEMO_PORT}'", lab.addr(h))).collect();
        let topology = dir.path().join("topology.yaml");
        std::fs::write(
            &topology,
            format!(
                "cluster: chaos\n\
                 defaults: {{scrape_interval: {}, scrape_timeout: {}}}\n\
                 jobs:\n  - job_name: demo\n    static_configs: [{{targets: [{}]}}]\n\
                 leaves:\n  - {{group: apps, jobs: [demo], replicas: 2, listen: '{a}:{LEAF_PORT}'}}\n\
                 globals:\n  - name: global\n    from: [apps]\n    listen: '{g}:{GLOBAL_PORT}'\n\
                 \x20   federate: {{interval: {}, timeout: {}}}\n    dedup: {dedup}\n\
                 nodes:\n  {SHARD}-a: {{listen: '{a}:{LEAF_PORT}'}}\n  {SHARD}-b: {{listen: '{b}:{LEAF_PORT}'}}\n",
                scrape[0],
                scrape[1],
                scraped.join(", "),
                federate[0],
                federate[1]
            ),
        )
        .expect("write the topology");
        let mut s =
            ShardLab { lab, global: SocketAddr::from((g, GLOBAL_PORT)), pids: Vec::new(), topology, dir };
        for (i, host) in exporters.iter().enumerate() {
            // The first exporter keeps the name `demo` the single-exporter scenarios know.
            let node = if i == 0 { "demo".to_string() } else { format!("demo-{}", i + 1) };
            let listen = s.target(i).to_string();
            s.spawn(host, &node, &["demo", "--listen", &listen, "--series", "60"]);
            s.wait_ok(&format!("the demo exporter in {host}"), s.target(i), "/metrics");
        }
        let file = s.topology.to_string_lossy().into_owned();
        for r in ["a", "b"] {
            let node = format!("{SHARD}-{r}");
            s.spawn(&format!("leaf-{r}"), &node, &["leaf", "--topology", &file, "--node", &node]);
        }
        s.spawn("global", "global-a", &["global", "--topology", &file, "--node", "global-a"]);
        for r in ["a", "b"] {
            s.wait_ok(&format!("leaf {r}"), s.leaf(r), "/-/ready");
        }
        s.wait_ok("the global", s.global, "/-/ready");
        s
    }

    fn spawn(&mut self, host: &str, node: &str, args: &[&str]) {
        let log = self.dir.path().join(format!("{node}.log"));
        let pid = self.lab.spawn(host, node, &promtier_binary(), args, &log);
        self.pids.push((node.to_string(), pid));
    }

    fn wait_ok(&self, what: &str, addr: SocketAddr, path: &str) {
        wait_until(
            &format!("{what} at {addr} to answer {path}"),
            Duration::from_secs(60),
            || self.context(),
            || {
                self.lab
                    .observe(|| http_get(addr, path, Duration::from_secs(2)).ok())
                    .filter(|(status, _)| *status == 200)
                    .map(|_| ())
            },
        );
    }

    /// The address of exporter `i` (0-based: host [`target_host`]`(i)`).
    pub(crate) fn target(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.lab.addr(&target_host(i)), DEMO_PORT))
    }

    /// The whole log of `node` (`apps-0-a`, `global-a`, `demo`).
    pub(crate) fn log(&self, node: &str) -> String {
        let path = self.dir.path().join(format!("{node}.log"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// The address of leaf replica `r` (`a` or `b`).
    pub(crate) fn leaf(&self, r: &str) -> SocketAddr {
        SocketAddr::from((self.lab.addr(&format!("leaf-{r}")), LEAF_PORT))
    }

    /// The pid of `node` (`apps-0-a`, `global-a`, `demo`).
    pub(crate) fn pid(&self, node: &str) -> Pid {
        self.pids.iter().find(|(n, _)| n == node).map(|(_, p)| *p).unwrap_or_else(|| panic!("no node {node}"))
    }

    /// Runs `f` in the lab's hub (see [`Lab::observe`]).
    pub(crate) fn observe<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.lab.observe(f)
    }

    /// The nodes' logs, for failure messages.
    pub(crate) fn context(&self) -> String {
        self.lab.logs()
    }
}

/// The lab host of exporter `i` (0-based): `target`, then `target-2`, `target-3`, …
pub(crate) fn target_host(i: usize) -> String {
    if i == 0 { "target".to_string() } else { format!("target-{}", i + 1) }
}

/// Samples per series as a node returns them (labels → (t, v) in time order).
pub(crate) type Stored = BTreeMap<Labels, Vec<(i64, f64)>>;

/// Counter-named series (the failover guard treats them as counters).
pub(crate) fn is_counter(labels: &Labels) -> bool {
    labels.metric_name().is_some_and(|n| {
        n.ends_with("_total") || n.ends_with("_count") || n.ends_with("_sum") || n.ends_with("_bucket")
    })
}

/// A leaf's series keyed as the global stores them (failover drops the replica label).
pub(crate) fn by_global_key(leaf: Stored) -> Stored {
    leaf.into_iter().map(|(l, s)| (l.without(&["replica"]), s)).collect()
}

/// Which replica scraped the sample (t, v): `old`, `new`, both (same time and value), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Old,
    New,
    Both,
    Neither,
}

pub(crate) fn origin(sample: (i64, f64), old: &[(i64, f64)], new: &[(i64, f64)]) -> Origin {
    let has = |s: &[(i64, f64)]| s.iter().any(|&(t, v)| t == sample.0 && v.to_bits() == sample.1.to_bits());
    match (has(old), has(new)) {
        (true, true) => Origin::Both,
        (true, false) => Origin::Old,
        (false, true) => Origin::New,
        (false, false) => Origin::Neither,
    }
}
