//! `/api/v1/status/*` and `/api/v1/metadata` in Prometheus's shapes: build and runtime
//! information, the node's flags and configuration, the head block's statistics (cardinality
//! from its index, as Prometheus), and metric metadata as the scrape loops saw it (`# TYPE`, `# HELP`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::params::{Params, invalid_param};
use super::targets::rfc3339;
use super::{ApiError, ApiState, ErrorType, success};
use crate::model::MetricMetadata;
use crate::storage::Cardinality;

/// Static facts about the node for the status endpoints.
#[derive(Clone, Default)]
pub struct StatusInfo {
    /// The node's settings, shown by `/api/v1/status/flags`.
    pub flags: BTreeMap<String, String>,
    /// The configuration the node runs with, shown by `/api/v1/status/config`.
    pub config_yaml: ShownConfig,
    /// How long data is kept (`15d`).
    pub retention: String,
    /// The head block's figures, its cardinality lists cut to the `limit` given.
    pub head: Option<Arc<dyn Fn(usize) -> HeadInfo + Send + Sync>>,
    /// The remote-write queues' state, shown on the status page.
    pub remote_write: Option<Arc<dyn Fn() -> Vec<crate::remote::send::QueueStatus> + Send + Sync>>,
}

/// The topology file as `/api/v1/status/config` shows it — secrets replaced, never the raw
/// text — replaced when a reload is applied.
#[derive(Clone, Default)]
pub struct ShownConfig(Arc<parking_lot::RwLock<String>>);

impl ShownConfig {
    /// The file's `text`, redacted (or why it cannot be shown).
    pub fn of_text(text: &str) -> ShownConfig {
        let c = ShownConfig::default();
        c.set(text);
        c
    }

    /// Reads and redacts `file`; a file that cannot be read shows why.
    pub fn read(file: &std::path::Path) -> ShownConfig {
        match std::fs::read_to_string(file) {
            Ok(text) => ShownConfig::of_text(&text),
            Err(e) => ShownConfig(Arc::new(parking_lot::RwLock::new(format!(
                "# cannot read {}: {e}\n",
                file.display()
            )))),
        }
    }

    /// Shows `text` (the file a reload applied) from now on.
    pub fn set(&self, text: &str) {
        *self.0.write() = crate::topology::redact::redact(text)
            .unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"));
    }

    /// What is shown.
    pub fn get(&self) -> String {
        self.0.read().clone()
    }
}

/// What `/api/v1/status/tsdb` reports: the head block only, as in Prometheus.
#[derive(Debug, Clone, Default)]
pub struct HeadInfo {
    pub series: u64,
    pub chunks: u64,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    pub cardinality: Cardinality,
}

pub(super) async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("PROMTIER_GIT_REVISION").unwrap_or("unknown"),
        "branch": option_env!("PROMTIER_GIT_BRANCH").unwrap_or("unknown"),
        "buildUser": "",
        "buildDate": "",
        "goVersion": "none (promtier is written in Rust)",
    }))
}

pub(super) async fn runtimeinfo(State(st): State<ApiState>) -> Response {
    let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    success(json!({
        "startTime": rfc3339(Some(st.node.started)),
        "CWD": cwd,
        "hostname": hostname(),
        "serverTime": rfc3339(Some(SystemTime::now())),
        "reloadConfigSuccess": true,
        "lastConfigTime": rfc3339(Some(st.node.started)),
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": threads,
        "GOMEMLIMIT": 0,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": st.status.retention,
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

pub(super) async fn flags(State(st): State<ApiState>) -> Response {
    success(&st.status.flags)
}

pub(super) async fn config(State(st): State<ApiState>) -> Response {
    success(json!({ "yaml": st.status.config_yaml.get() }))
}

/// The most entries `/api/v1/status/tsdb` lists per statistic (Prometheus's bound).
const MAX_TSDB_LIMIT: usize = 10_000;

/// `/api/v1/status/tsdb`: cardinality statistics of the head block (top `limit`, default 10), as
/// Prometheus computes them — from the head's index only, never over the blocks of all time.
pub(super) async fn tsdb(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let limit = match p.non_empty("limit") {
        None => 10,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > MAX_TSDB_LIMIT => {
                return Err(invalid_param("limit", format!("limit must not exceed {MAX_TSDB_LIMIT}")));
            }
            Ok(n) if n > 0 => n,
            _ => return Err(invalid_param("limit", "limit must be a positive number")),
        },
    };
    let Some(head) = st.status.head.clone() else {
        return Err(ApiError { kind: ErrorType::Unavailable, message: "this node has no head block".into() });
    };
    let head = tokio::task::spawn_blocking(move || head(limit))
        .await
        .map_err(|e| ApiError { kind: ErrorType::Internal, message: e.to_string() })?;
    let list = |v: &[(String, u64)]| -> serde_json::Value {
        v.iter().map(|(name, value)| json!({"name": name, "value": value})).collect()
    };
    let c = &head.cardinality;
    Ok(success(json!({
        "headStats": {
            "numSeries": head.series,
            "numLabelPairs": c.num_label_pairs,
            "chunkCount": head.chunks,
            "minTime": head.min_time.unwrap_or(i64::MAX),
            "maxTime": head.max_time.unwrap_or(i64::MIN),
        },
        "seriesCountByMetricName": list(&c.series_count_by_metric_name),
        "labelValueCountByLabelName": list(&c.label_value_count_by_label_name),
        "memoryInBytesByLabelName": list(&c.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": list(&c.series_count_by_label_value_pair),
    })))
}

/// `/api/v1/metadata`: per metric, the distinct type/help/unit triples the scrapes reported.
pub(super) async fn metadata(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let parse_limit = |name: &str| -> Result<Option<usize>, ApiError> {
        match p.non_empty(name) {
            None => Ok(None),
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n < 0 => Ok(None),
                Ok(n) => Ok(Some(n as usize)),
                Err(e) => Err(invalid_param(name, e)),
            },
        }
    };
    let limit = parse_limit("limit")?;
    let per_metric = parse_limit("limit_per_metric")?;
    let metric = p.non_empty("metric");
    let mut out: BTreeMap<String, Vec<MetricMetadata>> = BTreeMap::new();
    for (name, meta) in (st.metadata)() {
        if metric.is_some_and(|m| m != name) {
            continue;
        }
        let list = out.entry(name).or_default();
        if !list.contains(&meta) && per_metric.is_none_or(|n| list.len() < n) {
            list.push(meta);
        }
    }
    if let Some(n) = limit {
        while out.len() > n {
            out.pop_last();
        }
    }
    let data: serde_json::Map<String, serde_json::Value> = out
        .into_iter()
        .map(|(name, list)| {
            let items = list
                .iter()
                .map(|m| json!({"type": m.kind.as_str(), "help": m.help, "unit": m.unit}))
                .collect::<Vec<_>>();
            (name, serde_json::Value::Array(items))
        })
        .collect();
    Ok(success(data))
}
