//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/format_query` and `/api/v1/parse_query`:
//! PromQL over the node's storage, evaluated on a blocking thread, answered in Prometheus's JSON
//! shapes with its error types (`bad_data` for bad input, `execution` for failed evaluation,
//! `timeout`). Each evaluation holds a permit of the concurrent-query limit (`limit`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::limit::QueryPermit;
use super::params::{Params, invalid_param, limit_param, parse_duration_ms, parse_time, time_param};
use super::{ApiError, ApiState, ErrorType, json, success};
use crate::promql::ast::{AggOp, At, BinOp, Cardinality, Expr};
use crate::promql::value::Value;
use crate::promql::{Engine, QueryError, QueryResult, SourceResolution};
use crate::storage::Queryable;

/// How a failed query is reported.
fn query_error(e: QueryError, warnings: &[String]) -> Response {
    let (status, kind, message) = match &e {
        QueryError::Parse(_) | QueryError::BadQuery(_) => {
            (StatusCode::BAD_REQUEST, ErrorType::BadData, format!("invalid parameter \"query\": {e}"))
        }
        QueryError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorType::Timeout, e.to_string()),
        QueryError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Internal, e.to_string()),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Execution, e.to_string()),
    };
    if kind == ErrorType::Internal {
        tracing::error!(error = %message, "query failed");
    }
    json::error_with(status, kind.as_str(), &message, warnings)
}

/// The storage a query reads: the deduplicated view, or the raw replicas with `dedup=false`.
fn storage(st: &ApiState, p: &Params) -> Result<Arc<dyn Queryable>, ApiError> {
    if p.get("dedup") == Some("false")
        && let Some(raw) = &st.raw_storage
    {
        return Ok(raw.clone());
    }
    st.storage.clone().ok_or(ApiError {
        kind: ErrorType::Unavailable,
        message: "this node has no local storage to query".into(),
    })
}

/// The engine for this request: the node's, with a shorter timeout when the request asks.
fn engine_for(st: &ApiState, p: &Params) -> Result<Engine, ApiError> {
    let mut opts = st.engine.options().clone();
    if let Some(t) = p.non_empty("timeout") {
        let ms = parse_duration_ms(t).map_err(|e| invalid_param("timeout", e))?;
        opts.timeout = opts.timeout.min(Duration::from_millis(ms.max(0) as u64));
    }
    if let Some(l) = p.non_empty("lookback_delta") {
        let ms = parse_duration_ms(l).map_err(|e| invalid_param("lookback_delta", e))?;
        if ms > 0 {
            opts.lookback_delta = Duration::from_millis(ms as u64);
        }
    }
    // Thanos's parameter; `max_source_resolution=raw` (or `0s`) keeps a query on raw data.
    let source = match p.non_empty("max_source_resolution") {
        Some(s) => SourceResolution::parse(s).map_err(|e| invalid_param("max_source_resolution", e))?,
        None => SourceResolution::Auto,
    };
    Ok(Engine::new(opts).with_source(source))
}

/// Waits for a permit of the concurrent-query limit; the engine comes back with the time waited
/// taken off its timeout (the wait counts against it, as in Prometheus).
async fn admit(st: &ApiState, engine: Engine) -> Result<(QueryPermit, Engine), Response> {
    let mut opts = engine.options().clone();
    let permit = st.queries.acquire(opts.timeout).await.map_err(IntoResponse::into_response)?;
    opts.timeout = opts.timeout.saturating_sub(permit.waited);
    Ok((permit, Engine::new(opts).with_source(engine.source())))
}

/// Runs `f` on a blocking thread (query evaluation is CPU-bound), holding `permit` until it
/// ends.
async fn evaluate(
    permit: QueryPermit,
    f: impl FnOnce() -> Result<QueryResult, QueryError> + Send + 'static,
) -> Result<QueryResult, QueryError> {
    let f = move || {
        let _permit = permit;
        f()
    };
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(QueryError::Execution(format!("query evaluation failed: {e}"))),
    }
}

/// Keeps at most `limit` series, adding Prometheus's warning when it cut.
fn truncate(res: &mut QueryResult, limit: usize) {
    if limit == 0 {
        return;
    }
    let cut = match &mut res.value {
        Value::Vector(v) if v.len() > limit => {
            v.truncate(limit);
            true
        }
        Value::Matrix(m) if m.len() > limit => {
            m.truncate(limit);
            true
        }
        _ => false,
    };
    if cut {
        res.warnings.push("results truncated due to limit".into());
    }
}

fn respond(res: &QueryResult) -> Response {
    let mut data = String::with_capacity(256);
    json::query_data(&mut data, &res.value);
    json::success_raw(&data, &res.warnings, &res.infos)
}

pub(super) async fn query(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let limit = limit_param(&p)?;
    let t = time_param(&p, "time", (st.clock)())?;
    let engine = engine_for(&st, &p)?;
    let storage = storage(&st, &p)?;
    let q = p.get("query").unwrap_or("").to_string();
    let (permit, engine) = match admit(&st, engine).await {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    match evaluate(permit, move || engine.instant_query(storage.as_ref(), &q, t)).await {
        Ok(mut res) => {
            truncate(&mut res, limit);
            res.warnings.extend((st.warnings)());
            Ok(respond(&res))
        }
        Err(e) => Ok(query_error(e, &(st.warnings)())),
    }
}

pub(super) async fn query_range(State(st): State<ApiState>, p: Params) -> Result<Response, ApiError> {
    let limit = limit_param(&p)?;
    let start = parse_time(p.get("start").unwrap_or("")).map_err(|e| invalid_param("start", e))?;
    let end = parse_time(p.get("end").unwrap_or("")).map_err(|e| invalid_param("end", e))?;
    if end < start {
        return Err(invalid_param("end", "end timestamp must not be before start time"));
    }
    let step = parse_duration_ms(p.get("step").unwrap_or("")).map_err(|e| invalid_param("step", e))?;
    if step <= 0 {
        return Err(invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    let max_points = st.engine.options().max_points_per_series as i64;
    if (end - start) / step > max_points {
        return Err(ApiError {
            kind: ErrorType::BadData,
            message: format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                group_thousands(max_points)
            ),
        });
    }
    let engine = engine_for(&st, &p)?;
    let storage = storage(&st, &p)?;
    let q = p.get("query").unwrap_or("").to_string();
    let (permit, engine) = match admit(&st, engine).await {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    match evaluate(permit, move || engine.range_query(storage.as_ref(), &q, start, end, step)).await {
        Ok(mut res) => {
            truncate(&mut res, limit);
            res.warnings.extend((st.warnings)());
            Ok(respond(&res))
        }
        Err(e) => Ok(query_error(e, &(st.warnings)())),
    }
}

fn group_thousands(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(super) async fn format_query(p: Params) -> Result<Response, ApiError> {
    let q = p.get("query").unwrap_or("");
    crate::promql::parse(q).map_err(|e| invalid_param("query", e))?;
    let pretty =
        promql_parser::parser::parse(q).map(|e| e.prettify()).map_err(|e| invalid_param("query", e))?;
    Ok(success(pretty))
}

pub(super) async fn parse_query(p: Params) -> Result<Response, ApiError> {
    let q = p.get("query").unwrap_or("");
    let expr = crate::promql::parse(q).map_err(|e| invalid_param("query", e))?;
    Ok(success(ast_json(&expr)))
}

/// The expression tree in the JSON shape of Prometheus's `parse_query` (as its UI reads it).
fn ast_json(e: &Expr) -> serde_json::Value {
    use serde_json::json;
    let selector = |vs: &crate::promql::ast::VectorSelector| {
        let matchers: Vec<serde_json::Value> = vs
            .matchers
            .iter()
            .map(|m| json!({"type": m.op.as_str(), "name": m.name, "value": m.value}))
            .collect();
        let (start_or_end, timestamp) = match vs.at {
            Some(At::Start) => (json!("start"), json!(null)),
            Some(At::End) => (json!("end"), json!(null)),
            Some(At::Time(t)) => (json!(null), json!(t)),
            None => (json!(null), json!(null)),
        };
        json!({
            "type": "vectorSelector",
            "name": vs.name.clone().unwrap_or_default(),
            "matchers": matchers,
            "offset": vs.offset,
            "timestamp": timestamp,
            "startOrEnd": start_or_end,
        })
    };
    match e {
        Expr::Number(v, _) => json!({"type": "numberLiteral", "val": crate::promql::value::format_value(*v)}),
        Expr::String(s) => json!({"type": "stringLiteral", "val": s.value}),
        Expr::Vector(vs) => selector(vs),
        Expr::Matrix(vs, range, _) => {
            json!({"type": "matrixSelector", "range": range, "vectorSelector": selector(vs)})
        }
        Expr::Subquery(s) => json!({
            "type": "subquery",
            "expr": ast_json(&s.expr),
            "range": s.range,
            "offset": s.offset,
            "step": s.step.unwrap_or(0),
            "timestamp": match s.at { Some(At::Time(t)) => json!(t), _ => json!(null) },
            "startOrEnd": match s.at { Some(At::Start) => json!("start"), Some(At::End) => json!("end"), _ => json!(null) },
        }),
        Expr::Paren(inner, _) => json!({"type": "parenExpr", "expr": ast_json(inner)}),
        Expr::Neg(inner, _) => json!({"type": "unaryExpr", "op": "-", "expr": ast_json(inner)}),
        Expr::Binary(b) => {
            let matching = b.matching.as_ref().map(|m| {
                json!({
                    "card": match m.card {
                        Cardinality::OneToOne => "one-to-one",
                        Cardinality::ManyToOne => "many-to-one",
                        Cardinality::OneToMany => "one-to-many",
                        Cardinality::ManyToMany => "many-to-many",
                    },
                    "labels": m.labels,
                    "on": m.on,
                    "include": m.include,
                })
            });
            json!({
                "type": "binaryExpr",
                "op": bin_op_name(b.op),
                "lhs": ast_json(&b.lhs),
                "rhs": ast_json(&b.rhs),
                "bool": b.return_bool,
                "matching": matching,
            })
        }
        Expr::Aggregate(a) => json!({
            "type": "aggregation",
            "op": agg_name(a.op),
            "expr": ast_json(&a.expr),
            "param": a.param.as_ref().map(|p| ast_json(p)),
            "grouping": a.grouping,
            "without": a.without,
        }),
        Expr::Call(c) => {
            let info = c.func.info();
            json!({
                "type": "call",
                "func": {"name": info.name, "argTypes": info.args.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                         "variadic": info.variadic, "returnType": info.ret.to_string()},
                "args": c.args.iter().map(ast_json).collect::<Vec<_>>(),
            })
        }
    }
}

fn bin_op_name(op: BinOp) -> &'static str {
    op.as_str()
}

fn agg_name(op: AggOp) -> &'static str {
    op.as_str()
}
