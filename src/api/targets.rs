//! `/api/v1/targets` in Prometheus's JSON shape (`activeTargets`, `droppedTargets`,
//! `droppedTargetCounts`), with the `state` and `scrapePool` filters.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, ErrorType, success};
use crate::model::{Labels, PromDuration};

#[derive(Debug, Deserialize)]
pub(super) struct TargetsParams {
    state: Option<String>,
    #[serde(rename = "scrapePool")]
    scrape_pool: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ActiveJson {
    discovered_labels: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    scrape_pool: String,
    scrape_url: String,
    global_url: String,
    last_error: String,
    last_scrape: String,
    last_scrape_duration: f64,
    health: &'static str,
    scrape_interval: String,
    scrape_timeout: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DroppedJson {
    discovered_labels: BTreeMap<String, String>,
    /// Why this node does not scrape the target (a promtier addition).
    reason: String,
}

fn map(l: &Labels) -> BTreeMap<String, String> {
    l.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect()
}

/// Go's RFC 3339 with nanoseconds (trailing zeros trimmed), or Go's zero time.
pub(crate) fn rfc3339(t: Option<SystemTime>) -> String {
    match t {
        None => "0001-01-01T00:00:00Z".to_string(),
        Some(t) => {
            let s = humantime::format_rfc3339_nanos(t).to_string();
            // "2024-01-02T03:04:05.120000000Z" → "2024-01-02T03:04:05.12Z"
            match s.split_once('.') {
                Some((head, frac)) => {
                    let digits = frac.trim_end_matches('Z').trim_end_matches('0');
                    if digits.is_empty() { format!("{head}Z") } else { format!("{head}.{digits}Z") }
                }
                None => s,
            }
        }
    }
}

pub(super) async fn targets(
    State(st): State<ApiState>,
    Query(p): Query<TargetsParams>,
) -> Result<Response, ApiError> {
    let state = p.state.as_deref().unwrap_or("any").to_ascii_lowercase();
    if !matches!(state.as_str(), "any" | "active" | "dropped") {
        return Err(ApiError { kind: ErrorType::BadData, message: format!("invalid state {state:?}") });
    }
    let snap = (st.targets)();
    let pool_ok = |job: &str| p.scrape_pool.as_deref().is_none_or(|want| want == job);
    let mut dropped_counts: BTreeMap<String, usize> = BTreeMap::new();
    for (job, _) in &snap.dropped {
        *dropped_counts.entry(job.clone()).or_default() += 1;
    }
    let active: Vec<ActiveJson> = if state == "dropped" {
        Vec::new()
    } else {
        snap.active
            .iter()
            .filter(|a| pool_ok(&a.job))
            .map(|a| ActiveJson {
                discovered_labels: map(&a.target.discovered),
                labels: map(&a.target.labels),
                scrape_pool: a.job.clone(),
                scrape_url: a.target.url.clone(),
                global_url: a.target.url.clone(),
                last_error: a.status.last_error.clone(),
                last_scrape: rfc3339(a.status.last_scrape),
                last_scrape_duration: a.status.last_duration.as_secs_f64(),
                health: a.status.health.as_str(),
                scrape_interval: PromDuration(a.target.interval).to_string(),
                scrape_timeout: PromDuration(a.target.timeout).to_string(),
            })
            .collect()
    };
    let dropped: Vec<DroppedJson> = if state == "active" {
        Vec::new()
    } else {
        snap.dropped
            .iter()
            .filter(|(job, _)| pool_ok(job))
            .map(|(_, d)| DroppedJson { discovered_labels: map(&d.discovered), reason: d.reason.to_string() })
            .collect()
    };
    Ok(success(serde_json::json!({
        "activeTargets": active,
        "droppedTargets": dropped,
        "droppedTargetCounts": dropped_counts,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_like_go() {
        assert_eq!(rfc3339(None), "0001-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_120);
        assert_eq!(rfc3339(Some(t)), "2023-11-14T22:13:20.12Z");
        assert_eq!(rfc3339(Some(UNIX_EPOCH + Duration::from_secs(1))), "1970-01-01T00:00:01Z");
    }
}
