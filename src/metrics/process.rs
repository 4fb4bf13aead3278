//! Standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …)
//! read from `/proc`, and `promtier_build_info`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{MetricsWriter, Registry};
use crate::model::MetricType;

/// Registers the process collector for the node `node`.
pub fn register_process_metrics(registry: &Registry, node: &str) {
    let start = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let node = node.to_string();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as f64;
    registry.register(Arc::new(move |w: &mut MetricsWriter| {
        w.family("promtier_build_info", "Build and node information; always 1.", MetricType::Gauge);
        w.sample("promtier_build_info", &[("node", &node), ("version", env!("CARGO_PKG_VERSION"))], 1.0);
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
            let cpu = (num(11) + num(12)) / ticks;
            w.single(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                MetricType::Counter,
                cpu,
            );
            w.single(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                MetricType::Gauge,
                num(20),
            );
            w.single(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                MetricType::Gauge,
                num(21) * page,
            );
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            w.single(
                "process_open_fds",
                "Number of open file descriptors.",
                MetricType::Gauge,
                fds.count() as f64,
            );
        }
        w.single(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            MetricType::Gauge,
            start,
        );
    }));
}
