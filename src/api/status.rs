//! `/api/v1/status/*` and `/api/v1/metadata` in Prometheus's shapes: build and runtime
//! information, the node's flags and configuration, head statistics computed through the
//! storage `Querier`, and metric metadata as the scrape loops saw it (`# TYPE`, `# HELP`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::params::{Params, invalid_param};
use super::targets::rfc3339;
use super::{ApiError, ApiState, ErrorType, success};
use crate::model::{MatchOp, Matcher};
use crate::scrape::MetricMetadata;

/// Static facts about the node for the status endpoints.
#[derive(Clone, Default)]
pub struct StatusInfo {
    /// The node's settings, shown by `/api/v1/status/flags`.
    pub flags: BTreeMap<String, String>,
    /// The configuration the node runs with, shown by `/api/v1/status/config`.
    pub config_yaml: String,
    /// How long data is kept (`15d`).
    pub retention: String,
    /// Head figures the `Querier` cannot tell (chunks, time range).
    pub head: Option<Arc<dyn Fn() -> HeadInfo + Send + Sync>>,
}

/// What `/api/v1/status/tsdb` reports about the head beyond series and labels.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadInfo {
    pub chunks: u64,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
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
    success(json!({ "yaml": st.status.config_yaml }))
}

/// `/api/v1/status/tsdb`: cardinality statistics of the stored series (top `limit`, default 10).
pub(super) async fn tsdb(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let limit = match p.non_empty("limit") {
        None => 10,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Err(invalid_param("limit", "limit must be a positive number")),
        },
    };
    let Some(storage) = st.storage.clone() else {
        return Err(ApiError {
            kind: ErrorType::Unavailable,
            message: "this node has no local storage".into(),
        });
    };
    let head = st.status.head.as_ref().map(|f| f()).unwrap_or_default();
    let stats = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
        let q = storage.querier(i64::MIN, i64::MAX).map_err(|e| e.to_string())?;
        let all = Matcher::new(MatchOp::Regex, "__name__", ".+").map_err(|e| e.to_string())?;
        let series = q.select(&[all]).map_err(|e| e.to_string())?;
        let mut by_name: HashMap<String, u64> = HashMap::new();
        let mut pairs: HashMap<(String, String), u64> = HashMap::new();
        for s in &series {
            if let Some(n) = s.labels.metric_name() {
                *by_name.entry(n.to_string()).or_default() += 1;
            }
            for l in s.labels.iter() {
                *pairs.entry((l.name.to_string(), l.value.to_string())).or_default() += 1;
            }
        }
        let mut values_per_name: HashMap<&str, u64> = HashMap::new();
        let mut bytes_per_name: HashMap<&str, u64> = HashMap::new();
        for ((n, v), count) in &pairs {
            *values_per_name.entry(n).or_default() += 1;
            *bytes_per_name.entry(n).or_default() += v.len() as u64 * count;
        }
        let top = |m: Vec<(String, u64)>| -> serde_json::Value {
            let mut m = m;
            m.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            m.truncate(limit);
            m.into_iter().map(|(name, value)| json!({"name": name, "value": value})).collect()
        };
        Ok(json!({
            "headStats": {
                "numSeries": series.len(),
                "numLabelPairs": pairs.len(),
                "chunkCount": head.chunks,
                "minTime": head.min_time.unwrap_or(i64::MAX),
                "maxTime": head.max_time.unwrap_or(i64::MIN),
            },
            "seriesCountByMetricName": top(by_name.into_iter().collect()),
            "labelValueCountByLabelName": top(values_per_name.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            "memoryInBytesByLabelName": top(bytes_per_name.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            "seriesCountByLabelValuePair": top(pairs.iter().map(|((n, v), c)| (format!("{n}={v}"), *c)).collect()),
        }))
    })
    .await
    .map_err(|e| ApiError { kind: ErrorType::Internal, message: e.to_string() })?
    .map_err(|e| ApiError { kind: ErrorType::Execution, message: e })?;
    Ok(success(stats))
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
