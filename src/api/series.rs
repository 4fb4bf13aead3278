//! `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/<name>/values`: series and label
//! lookups with `match[]`, `start`, `end` and `limit`, read through the storage `Querier`. Each
//! lookup holds a permit of the concurrent-query limit while it reads.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::limit::QueryPermit;
use super::params::{MAX_TIME, MIN_TIME, Params, invalid_param, limit_param, time_param};
use super::{ApiError, ApiState, ErrorType, json};
use crate::model::{Labels, Matcher, parse_selector};
use crate::storage::{Querier, StorageError};

fn exec_error(e: StorageError) -> ApiError {
    ApiError { kind: ErrorType::Execution, message: e.to_string() }
}

/// The `match[]` selectors; `param` names the parameter in errors.
fn matcher_sets(p: &Params, param: Option<&str>) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for s in p.all("match[]") {
        let m = parse_selector(s).map_err(|e| match param {
            Some(name) => invalid_param(name, e),
            None => ApiError { kind: ErrorType::BadData, message: e.to_string() },
        })?;
        if m.iter().all(|m| m.matches_empty()) {
            let msg = "match[] must contain at least one non-empty matcher";
            return Err(match param {
                Some(name) => invalid_param(name, msg),
                None => ApiError { kind: ErrorType::BadData, message: msg.into() },
            });
        }
        sets.push(m);
    }
    Ok(sets)
}

/// A querier over the request's `start`/`end` (all time by default).
fn querier(st: &ApiState, p: &Params) -> Result<Box<dyn Querier>, ApiError> {
    let start = time_param(p, "start", MIN_TIME.saturating_mul(1000))?;
    let end = time_param(p, "end", MAX_TIME.saturating_mul(1000))?;
    let storage = st.storage.clone().ok_or(ApiError {
        kind: ErrorType::Unavailable,
        message: "this node has no local storage to query".into(),
    })?;
    storage.querier(start, end).map_err(exec_error)
}

/// A permit of the concurrent-query limit (a lookup has no timeout of its own), or the `503`.
async fn admit(st: &ApiState) -> Result<QueryPermit, Response> {
    st.queries.acquire(std::time::Duration::MAX).await.map_err(IntoResponse::into_response)
}

/// A success response for a list, truncated to `limit` with Prometheus's warning.
fn list_response(items: Vec<String>, limit: usize) -> Response {
    let mut warnings = Vec::new();
    let mut items = items;
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        warnings.push("results truncated due to limit".to_string());
    }
    let mut data = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::string(&mut data, s);
    }
    data.push(']');
    json::success_raw(&data, &warnings, &[])
}

pub(super) async fn series(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    if p.all("match[]").is_empty() {
        return Err(ApiError { kind: ErrorType::BadData, message: "no match[] parameter provided".into() });
    }
    let limit = limit_param(&p)?;
    let sets = matcher_sets(&p, Some("match[]"))?;
    let permit = match admit(&st).await {
        Ok(p) => p,
        Err(refused) => return Ok(refused),
    };
    let q = querier(&st, &p)?;
    let labels = tokio::task::spawn_blocking(move || -> Result<Vec<Labels>, StorageError> {
        let _permit = permit;
        let mut out: BTreeSet<Labels> = BTreeSet::new();
        // As Prometheus marks a series lookup (storage layers may skip the samples).
        let hints = crate::storage::SelectHints { func: Some("series".into()), ..Default::default() };
        for set in &sets {
            for s in q.select_hinted(set, &hints)? {
                out.insert((*s.labels).clone());
            }
        }
        Ok(out.into_iter().collect())
    })
    .await
    .map_err(|e| ApiError { kind: ErrorType::Internal, message: e.to_string() })?
    .map_err(exec_error)?;
    let mut warnings = Vec::new();
    let mut labels = labels;
    if limit > 0 && labels.len() > limit {
        labels.truncate(limit);
        warnings.push("results truncated due to limit".to_string());
    }
    let mut data = String::from("[");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::labels(&mut data, l);
    }
    data.push(']');
    Ok(json::success_raw(&data, &warnings, &[]))
}

pub(super) async fn label_names(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let limit = limit_param(&p)?;
    let sets = matcher_sets(&p, None)?;
    let permit = match admit(&st).await {
        Ok(p) => p,
        Err(refused) => return Ok(refused),
    };
    let q = querier(&st, &p)?;
    let names = tokio::task::spawn_blocking(move || -> Result<Vec<String>, StorageError> {
        let _permit = permit;
        if sets.is_empty() {
            return q.label_names(&[]);
        }
        let mut all = BTreeSet::new();
        for set in &sets {
            all.extend(q.label_names(set)?);
        }
        Ok(all.into_iter().collect())
    })
    .await
    .map_err(|e| ApiError { kind: ErrorType::Internal, message: e.to_string() })?
    .map_err(exec_error)?;
    Ok(list_response(names, limit))
}

pub(super) async fn label_values(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let name = unescape_name(&name);
    if name.is_empty() {
        return Err(ApiError { kind: ErrorType::BadData, message: format!("invalid label name: {name:?}") });
    }
    let limit = limit_param(&p)?;
    let sets = matcher_sets(&p, None)?;
    let permit = match admit(&st).await {
        Ok(p) => p,
        Err(refused) => return Ok(refused),
    };
    let q = querier(&st, &p)?;
    let values = tokio::task::spawn_blocking(move || -> Result<Vec<String>, StorageError> {
        let _permit = permit;
        if sets.is_empty() {
            return q.label_values(&name, &[]);
        }
        let mut all = BTreeSet::new();
        for set in &sets {
            all.extend(q.label_values(&name, set)?);
        }
        Ok(all.into_iter().collect())
    })
    .await
    .map_err(|e| ApiError { kind: ErrorType::Internal, message: e.to_string() })?
    .map_err(exec_error)?;
    Ok(list_response(values, limit))
}

/// Label names in URL paths may be escaped as `U__…` (`_` as `__`, other characters as
/// `_<hex code point>_`), as Prometheus's UTF-8 name escaping does.
fn unescape_name(s: &str) -> String {
    let Some(rest) = s.strip_prefix("U__") else { return s.to_string() };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        for h in chars.by_ref() {
            if h == '_' {
                break;
            }
            hex.push(h);
        }
        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
            Some(ch) => out.push(ch),
            None => return s.to_string(),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_utf8_names() {
        assert_eq!(unescape_name("job"), "job");
        assert_eq!(unescape_name("U__my_2e_label"), "my.label");
        assert_eq!(unescape_name("U__a__b"), "a_b");
    }
}
