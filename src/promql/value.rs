//! Query results: scalars, strings, instant vectors and matrices, as the HTTP API and the test
//! harness see them, plus Prometheus's number formatting for the JSON wire format.

use std::sync::Arc;

use crate::model::Labels;

/// One float value at a millisecond timestamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: i64,
    pub v: f64,
}

/// An element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Arc<Labels>,
    pub t: i64,
    pub v: f64,
}

/// A series of a matrix, points in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Arc<Labels>,
    pub points: Vec<Point>,
}

/// The value of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar {
        t: i64,
        v: f64,
    },
    String {
        t: i64,
        v: String,
    },
    /// In the order the query produced (`sort`, `topk` order their output).
    Vector(Vec<Sample>),
    /// Sorted by labels.
    Matrix(Vec<Series>),
}

impl Value {
    /// Prometheus's `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Formats a sample value as Prometheus does on the wire (Go's `FormatFloat(v, 'f', -1, 64)`):
/// shortest round-tripping digits, no exponent, `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// Writes a millisecond timestamp as Prometheus's JSON does: seconds, with up to three
/// fraction digits and no trailing zeros (`1700000000`, `1.5`, `-0.001`).
pub fn write_timestamp(out: &mut String, t: i64) {
    use std::fmt::Write;
    let neg = t < 0;
    let abs = t.unsigned_abs();
    let (secs, ms) = (abs / 1000, abs % 1000);
    if neg {
        out.push('-');
    }
    let _ = write!(out, "{secs}");
    if ms != 0 {
        let frac = format!("{ms:03}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e-7), "0.0000001");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        let ts = |t| {
            let mut s = String::new();
            write_timestamp(&mut s, t);
            s
        };
        assert_eq!(ts(1_700_000_000_000), "1700000000");
        assert_eq!(ts(1_500), "1.5");
        assert_eq!(ts(-1), "-0.001");
        assert_eq!(ts(120), "0.12");
    }
}
