//! What a global knows of metric metadata: what its sources report on `/api/v1/metadata`.
//!
//! Neither thing a global pulls carries it — text `/federate` names every family `untyped`, as
//! Prometheus's does (pinned by the federation conformance cases), and the fast link's per-series
//! metric-type byte is always 0 — so the global asks one replica of each replica set for its
//! metadata once a minute (every [`RETRY`] while a set has not answered yet). A leaf lists what
//! its scrapes saw (and what remote write brought it), a stacked global what it collected, a
//! Prometheus source its targets' metadata: type, help and unit of every family, at a cost
//! independent of samples and series. The global's `/api/v1/metadata` and its remote-write
//! queues read the result; a set whose replicas all fail keeps what it reported last.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::puller::SourceStatus;
use crate::model::{MetricMetadata, MetricType};
use crate::scrape::{Health, ScrapeClient};
use crate::topology::Source;

/// How often each replica set is asked.
pub(crate) const INTERVAL: Duration = Duration::from_secs(60);
/// How soon a set that has not answered yet is asked again.
pub(crate) const RETRY: Duration = Duration::from_secs(5);
/// Largest metadata answer read (a family's entry is tens of bytes).
const MAX_BODY: usize = 32 << 20;

/// What one replica set reported: `(family, metadata)` pairs.
type Families = Arc<Vec<(String, MetricMetadata)>>;

/// One source to ask: where it is, its health, the client that pulls it.
pub(crate) type MetadataSource = (Source, Arc<Mutex<SourceStatus>>, ScrapeClient);

/// The metadata every replica set reported last, by set.
#[derive(Debug, Default)]
pub(crate) struct SourcesMetadata {
    sets: Mutex<BTreeMap<String, Families>>,
}

/// `/api/v1/metadata`'s answer.
#[derive(Deserialize)]
struct Answer {
    data: HashMap<String, Vec<Item>>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    help: String,
    #[serde(default)]
    unit: String,
}

/// Reads an `/api/v1/metadata` body; families come out sorted by name.
fn parse(body: &[u8]) -> Result<Vec<(String, MetricMetadata)>, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| format!("not a metadata answer: {e}"))?;
    let mut out: Vec<(String, MetricMetadata)> = answer
        .data
        .into_iter()
        .flat_map(|(family, items)| {
            items.into_iter().map(move |i| {
                let kind = MetricType::parse(&i.kind).unwrap_or_default();
                (family.clone(), MetricMetadata { kind, help: i.help, unit: i.unit })
            })
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl SourcesMetadata {
    /// Every set's families, `(family, metadata)` pairs (a family reported by several sets is
    /// repeated, as `/api/v1/metadata` expects from several targets).
    pub(crate) fn list(&self) -> Vec<(String, MetricMetadata)> {
        let sets: Vec<_> = self.sets.lock().values().cloned().collect();
        sets.iter().flat_map(|s| s.iter().cloned()).collect()
    }

    /// Keeps only the sets named in `shards` (the others left the topology).
    pub(crate) fn retain<'a>(&self, shards: impl Iterator<Item = &'a str>) {
        let keep: std::collections::BTreeSet<&str> = shards.collect();
        self.sets.lock().retain(|s, _| keep.contains(s.as_str()));
    }

    /// Asks every replica set until `shutdown`. `sources` come with their status (healthy
    /// replicas are asked first) and the client that pulls them.
    pub(crate) async fn run(
        &self,
        sources: Vec<MetadataSource>,
        timeout: Duration,
        shutdown: CancellationToken,
    ) {
        let mut sets: Vec<(String, Vec<MetadataSource>)> = Vec::new();
        for (s, st, c) in sources {
            let c = c.with_body_limit(MAX_BODY);
            match sets.iter_mut().find(|(shard, _)| *shard == s.shard) {
                Some((_, v)) => v.push((s, st, c)),
                None => sets.push((s.shard.clone(), vec![(s, st, c)])),
            }
        }
        // Which sets failed last time, so each failure is logged once until it answers again.
        let mut failing: HashMap<String, bool> = HashMap::new();
        loop {
            let mut all = true;
            for (shard, replicas) in &sets {
                let mut order: Vec<&(Source, Arc<Mutex<SourceStatus>>, ScrapeClient)> =
                    replicas.iter().collect();
                order.sort_by_key(|(_, st, _)| st.lock().health != Health::Up);
                let mut last_error = String::new();
                let mut got = None;
                for (source, _, client) in order {
                    let url = format!("{}/api/v1/metadata", source.base_url());
                    let body = tokio::select! {
                        () = shutdown.cancelled() => return,
                        b = client.scrape(&url, timeout) => b,
                    };
                    let parsed = match body {
                        Ok(b) => tokio::task::spawn_blocking(move || parse(&b))
                            .await
                            .unwrap_or_else(|e| Err(e.to_string())),
                        Err(e) => Err(e.to_string()),
                    };
                    match parsed {
                        Ok(m) => {
                            got = Some(m);
                            break;
                        }
                        Err(e) => last_error = format!("{}: {e}", source.node),
                    }
                }
                match got {
                    Some(m) => {
                        if failing.insert(shard.clone(), false) == Some(true) {
                            tracing::info!(set = %shard, families = m.len(), "metric metadata of the replica set read again");
                        }
                        // Checked under the lock: a reader stopped by a reload (which then
                        // forgets the sets that left) never brings a removed set back.
                        let mut sets = self.sets.lock();
                        if shutdown.is_cancelled() {
                            return;
                        }
                        sets.insert(shard.clone(), Arc::new(m));
                    }
                    None => {
                        all &= self.sets.lock().contains_key(shard);
                        if failing.insert(shard.clone(), true) != Some(true) {
                            tracing::warn!(set = %shard, error = %last_error, "cannot read the metric metadata of the replica set (/api/v1/metadata); keeping what it reported last");
                        }
                    }
                }
            }
            let wait = if all { INTERVAL } else { RETRY };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_metadata_answers() {
        let body = br#"{"status":"success","data":{
            "up":[{"type":"gauge","help":"Up.","unit":""}],
            "http_requests_total":[{"type":"counter","help":"Requests.","unit":""},{"type":"counter","help":"Other help.","unit":""}],
            "odd":[{"type":"what","help":""}]}}"#;
        let m = parse(body).unwrap();
        let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["http_requests_total", "http_requests_total", "odd", "up"]);
        assert_eq!(
            m[3].1,
            MetricMetadata { kind: MetricType::Gauge, help: "Up.".into(), unit: String::new() }
        );
        assert_eq!(m[2].1.kind, MetricType::Unknown);
        assert!(parse(b"{\"status\":\"error\"}").is_err());
        assert!(parse(b"<html>").is_err());
    }
}
