//! Measuring a ring before any client has pushed: a synthetic but realistic key set (jobs ×
//! instances, as Pushgateway-style clients and remote-write senders label their series) and the
//! balance of a ring over it. The real keys are whatever clients push; `promtier plan` and the
//! `push_ring` bench report over this sample and say so.

use super::ring::Ring;

/// How many sample keys `promtier plan` measures a ring over.
pub const SAMPLE_KEYS: usize = 10_000;

/// The sample's jobs and the port their instances listen on.
const JOBS: [(&str, u16); 20] = [
    ("node", 9100),
    ("cadvisor", 8080),
    ("kubelet", 10250),
    ("api", 8000),
    ("web", 8080),
    ("worker", 9000),
    ("backup", 9091),
    ("etl-nightly", 9091),
    ("billing-batch", 9091),
    ("postgres", 9187),
    ("redis", 9121),
    ("kafka", 9308),
    ("nginx", 9113),
    ("haproxy", 8404),
    ("blackbox", 9115),
    ("mysql", 9104),
    ("elasticsearch", 9114),
    ("rabbitmq", 15692),
    ("etcd", 2379),
    ("coredns", 9153),
];

/// `n` distinct ring keys of `ring`. Key `i` has `job` = the `i % 20`th of 20 job names and
/// `instance` = its `i / 20`th instance, `10.<job>.<hi>.<lo>:<the job's port>`; a key label other
/// than `job` and `instance` takes the value `<label>-<i>`.
pub fn sample_keys(ring: &Ring, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let (j, inst) = (i % JOBS.len(), i / JOBS.len());
            let (job, port) = JOBS[j];
            let values: Vec<String> = ring
                .key_labels()
                .iter()
                .map(|l| match l.as_str() {
                    "job" => job.to_string(),
                    "instance" => format!("10.{j}.{}.{}:{port}", (inst / 256) % 256, inst % 256),
                    other => format!("{other}-{i}"),
                })
                .collect();
            ring.key_from(|name| ring.key_labels().iter().position(|l| l == name).map(|p| values[p].as_str()))
        })
        .collect()
}

/// How the sample of `n` keys is made, for reports: `20 jobs × 500 instances`.
pub fn describe_sample(n: usize) -> String {
    format!("{} jobs × {} instances", JOBS.len().min(n), n.div_ceil(JOBS.len()))
}

/// Keys per node over a key set: the spread a ring leaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    pub min: u64,
    pub max: u64,
    /// Keys per node on average (every key counted once per owner).
    pub mean: f64,
}

impl Balance {
    /// The balance of a per-node load (`Ring::load`); all zero for no nodes.
    pub fn of(load: &[u64]) -> Balance {
        let mean = if load.is_empty() { 0.0 } else { load.iter().sum::<u64>() as f64 / load.len() as f64 };
        Balance {
            min: load.iter().copied().min().unwrap_or(0),
            max: load.iter().copied().max().unwrap_or(0),
            mean,
        }
    }

    /// The busiest node's load over the mean (1.0 is perfect balance).
    pub fn max_over_mean(&self) -> f64 {
        if self.mean == 0.0 { 1.0 } else { self.max as f64 / self.mean }
    }

    /// The idlest node's load over the mean (1.0 is perfect balance).
    pub fn min_over_mean(&self) -> f64 {
        if self.mean == 0.0 { 1.0 } else { self.min as f64 / self.mean }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::model::Labels;

    #[test]
    fn sample_keys_are_distinct_and_are_what_key_of_makes_of_such_series() {
        let ring = Ring::new(3, 2, vec!["job".into(), "instance".into()]);
        let keys = sample_keys(&ring, SAMPLE_KEYS);
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), SAMPLE_KEYS);
        let series =
            Labels::from_pairs(&[("__name__", "up"), ("instance", "10.1.0.0:8080"), ("job", "cadvisor")]);
        assert_eq!(keys[1], ring.key_of(&series));
        assert_eq!(describe_sample(SAMPLE_KEYS), "20 jobs × 500 instances");

        // Other key labels still give distinct keys.
        let tenant = Ring::new(3, 2, vec!["tenant".into()]);
        let keys = sample_keys(&tenant, 1000);
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 1000);
    }

    #[test]
    fn balance() {
        let b = Balance::of(&[90, 100, 110]);
        assert_eq!((b.min, b.max), (90, 110));
        assert!((b.max_over_mean() - 1.1).abs() < 1e-9);
        assert!((b.min_over_mean() - 0.9).abs() < 1e-9);
        assert_eq!(Balance::of(&[]).max_over_mean(), 1.0);
    }
}
