//! Writing API responses as JSON text directly: query results can hold hundreds of thousands of
//! series, and building a `serde_json::Value` tree for them would cost more than the query.

use std::fmt::Write;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::model::Labels;
use crate::promql::value::{Value, format_value, write_timestamp};

/// Appends `s` as a JSON string literal.
pub(crate) fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a label set as a JSON object.
pub(crate) fn labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, lab) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, lab.name);
        out.push(':');
        string(out, lab.value);
    }
    out.push('}');
}

/// Appends `[<seconds>,"<value>"]`.
fn point(out: &mut String, t: i64, v: &str) {
    out.push('[');
    write_timestamp(out, t);
    out.push(',');
    string(out, v);
    out.push(']');
}

/// Appends a query result's `data` object: `{"resultType":…,"result":…}`.
pub(crate) fn query_data(out: &mut String, value: &Value) {
    out.push_str("{\"resultType\":");
    string(out, value.type_name());
    out.push_str(",\"result\":");
    match value {
        Value::Scalar { t, v } => point(out, *t, &format_value(*v)),
        Value::String { t, v } => point(out, *t, v),
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels(out, &s.labels);
                out.push_str(",\"value\":");
                point(out, s.t, &format_value(s.v));
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels(out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, p) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    point(out, p.t, &format_value(p.v));
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
}

/// A success response around already-rendered `data`, with warnings and infos when present.
pub(crate) fn success_raw(data: &str, warnings: &[String], infos: &[String]) -> Response {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str("{\"status\":\"success\",\"data\":");
    out.push_str(data);
    annotations(&mut out, warnings, infos);
    out.push('}');
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

/// Appends `,"warnings":[…]` and `,"infos":[…]` when non-empty.
pub(crate) fn annotations(out: &mut String, warnings: &[String], infos: &[String]) {
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(out, ",\"{key}\":[");
        for (i, w) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, w);
        }
        out.push(']');
    }
}

/// An error response that also carries the query's warnings, as Prometheus sends them.
pub(crate) fn error_with(status: StatusCode, kind: &str, message: &str, warnings: &[String]) -> Response {
    let mut out = String::from("{\"status\":\"error\",\"errorType\":");
    string(&mut out, kind);
    out.push_str(",\"error\":");
    string(&mut out, message);
    annotations(&mut out, warnings, &[]);
    out.push('}');
    (status, [(header::CONTENT_TYPE, "application/json")], out).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::promql::value::Sample;

    #[test]
    fn renders_vectors_like_prometheus() {
        let v = Value::Vector(vec![Sample {
            labels: Arc::new(Labels::from_pairs(&[("__name__", "up"), ("job", "a\"b")])),
            t: 1_700_000_000_500,
            v: f64::INFINITY,
        }]);
        let mut out = String::new();
        query_data(&mut out, &v);
        assert_eq!(
            out,
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1700000000.5,"+Inf"]}]}"#
        );
    }
}
