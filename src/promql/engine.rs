//! The query engine's front: options and limits, instant and range queries over any
//! [`Queryable`], conversion of the evaluator's output into [`Value`]s, and the errors a query
//! can end with. Evaluation is synchronous and CPU-bound; async callers run it on a blocking
//! thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::annotations::{Annotations, Level};
use super::ast::{Expr, ValueType};
use super::eval::{Ctx, Evaluator, Val, cleanup_names};
use super::parser::{ParseError, parse};
use super::value::{Point, Sample, Series, Value};
use crate::model::Labels;
use crate::storage::{Queryable, StorageError};

/// Engine settings; the defaults are Prometheus's.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample.
    pub lookback_delta: Duration,
    /// Wall-clock limit of one query.
    pub timeout: Duration,
    /// Points a query may hold in memory at once.
    pub max_samples: usize,
    /// Step of subqueries written without one (`[1h:]`): the evaluation interval.
    pub default_subquery_step: Duration,
    /// Maximum points per series a range query may ask for (checked by the HTTP API).
    pub max_points_per_series: usize,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            default_subquery_step: Duration::from_secs(60),
            max_points_per_series: 11_000,
        }
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The query is well-formed but not acceptable as asked (e.g. a range vector for a range
    /// query).
    #[error("{0}")]
    BadQuery(String),
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    #[error("{0}")]
    Execution(String),
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
}

/// A query's value with its annotations and statistics.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub value: Value,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// The most points held at once.
    pub peak_samples: usize,
}

/// Which data a query's selectors may read (Thanos's `max_source_resolution`): downsampled
/// data chosen per selector by the rule in `docs/downsampling.md` (`auto`, the default), raw
/// data only, or the coarsest resolution at or below a bound. Where the chosen data is missing,
/// the nearest resolution that exists answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceResolution {
    #[default]
    Auto,
    Raw,
    /// At most this many ms.
    Max(i64),
}

impl SourceResolution {
    /// Parses `auto`, `raw`, `0s`, or a duration (`5m`, `1h`).
    pub fn parse(s: &str) -> Result<SourceResolution, String> {
        match s.trim() {
            "" | "auto" => Ok(SourceResolution::Auto),
            "raw" => Ok(SourceResolution::Raw),
            other => match crate::model::parse_duration(other) {
                Ok(d) if d.is_zero() => Ok(SourceResolution::Raw),
                Ok(d) => Ok(SourceResolution::Max(ms(d))),
                Err(_) => Err(format!(
                    "invalid max_source_resolution {other:?}: use raw, auto or a duration such as 5m or 1h"
                )),
            },
        }
    }
}

/// The PromQL engine. Cheap to share; each query evaluates independently.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
    source: SourceResolution,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts, source: SourceResolution::Auto }
    }

    /// Which data this engine's queries read.
    pub fn source(&self) -> SourceResolution {
        self.source
    }

    /// This engine with queries reading data as `source` says.
    pub fn with_source(&self, source: SourceResolution) -> Engine {
        Engine { opts: self.opts.clone(), source }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Parses and evaluates `query` at time `t` (ms).
    pub fn instant_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        t: i64,
    ) -> Result<QueryResult, QueryError> {
        let expr = parse(query)?;
        self.instant(storage, &expr, query, t)
    }

    /// Parses and evaluates `query` at `start, start+step, …, end` (ms).
    pub fn range_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        let expr = parse(query)?;
        self.range(storage, &expr, query, start, end, step)
    }

    fn ctx<'q>(&self, storage: &'q dyn Queryable, start: i64, end: i64, step: i64) -> Ctx<'q> {
        Ctx {
            storage,
            lookback: ms(self.opts.lookback_delta),
            max_samples: self.opts.max_samples,
            deadline: Instant::now().checked_add(self.opts.timeout),
            samples: 0.into(),
            peak_samples: 0.into(),
            annotations: Annotations::default().into(),
            query_start: start,
            query_end: end,
            query_step: step,
            default_subquery_step: ms(self.opts.default_subquery_step).max(1),
            source: self.source,
            coverage: std::cell::OnceCell::new(),
        }
    }

    /// Evaluates a parsed expression at `t`; `query` is its text (for annotation positions).
    pub fn instant(
        &self,
        storage: &dyn Queryable,
        expr: &Expr,
        query: &str,
        t: i64,
    ) -> Result<QueryResult, QueryError> {
        let ctx = self.ctx(storage, t, t, 0);
        let ev = Evaluator { ctx: &ctx, start: t, end: t, interval: 1 };
        let value = match ev.eval(expr)? {
            Val::Scalar(v) => Value::Scalar { t, v: v.first().copied().unwrap_or(f64::NAN) },
            Val::Str(s) => Value::String { t, v: s },
            Val::Vector(series) => Value::Vector(
                cleanup_names(series, true)?
                    .into_iter()
                    .filter_map(|s| s.points.first().map(|p| Sample { labels: s.labels, t, v: p.v }))
                    .collect(),
            ),
            Val::Matrix(series) => Value::Matrix(to_matrix(cleanup_names(series, false)?)),
        };
        Ok(finish(&ctx, value, query))
    }

    /// Evaluates a parsed expression over a range; `query` is its text.
    pub fn range(
        &self,
        storage: &dyn Queryable,
        expr: &Expr,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        if step <= 0 {
            return Err(QueryError::BadQuery(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
                    .into(),
            ));
        }
        if end < start {
            return Err(QueryError::BadQuery("end timestamp must not be before start time".into()));
        }
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            t => {
                let name = if t == ValueType::Matrix { "range vector" } else { "string" };
                return Err(QueryError::BadQuery(format!(
                    "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let ctx = self.ctx(storage, start, end, step);
        let ev = Evaluator { ctx: &ctx, start, end, interval: step };
        if ev.steps() > self.opts.max_samples {
            return Err(QueryError::TooManySamples("query preparation"));
        }
        let series = match ev.eval(expr)? {
            Val::Scalar(v) => vec![Series {
                labels: Arc::new(Labels::empty()),
                points: v.iter().enumerate().map(|(k, &v)| Point { t: ev.ts(k), v }).collect(),
            }],
            Val::Vector(series) => to_matrix(cleanup_names(series, false)?),
            _ => return Err(QueryError::BadQuery("range queries need a scalar or instant vector".into())),
        };
        Ok(finish(&ctx, Value::Matrix(series), query))
    }
}

fn to_matrix(series: Vec<super::eval::Series>) -> Vec<Series> {
    let mut out: Vec<Series> = series
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .map(|s| Series { labels: s.labels, points: s.points })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

fn finish(ctx: &Ctx<'_>, value: Value, query: &str) -> QueryResult {
    let ann = ctx.annotations.borrow();
    QueryResult {
        value,
        warnings: ann.strings(Level::Warning, query),
        infos: ann.strings(Level::Info, query),
        peak_samples: ctx.peak_samples.get(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Matcher, Sample as RawSample};
    use crate::storage::{Querier, Series as RawSeries};

    /// A storage whose every select answers one series and a warning (a remote store that
    /// failed, say).
    struct Warns;

    struct WarnsQuerier;

    impl Queryable for Warns {
        fn querier(&self, _mint: i64, _maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
            Ok(Box::new(WarnsQuerier))
        }
    }

    impl Querier for WarnsQuerier {
        fn select(&self, _matchers: &[Matcher]) -> Result<Vec<RawSeries>, StorageError> {
            Ok(vec![RawSeries {
                labels: Arc::new(Labels::from_pairs(&[("__name__", "x")])),
                samples: Box::new(vec![RawSample { t: 1000, v: 1.0 }].into_iter()),
            }])
        }

        fn label_names(&self, _matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
            Ok(Vec::new())
        }

        fn label_values(&self, _name: &str, _matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
            Ok(Vec::new())
        }

        fn warnings(&self) -> Vec<String> {
            vec!["remote_read \"old\": unreachable".into()]
        }
    }

    #[test]
    fn storage_warnings_reach_the_result_once_and_as_they_are() {
        let r = Engine::default().instant_query(&Warns, "x + x", 1000).expect("query");
        assert_eq!(r.warnings, vec!["remote_read \"old\": unreachable".to_string()]);
        match r.value {
            Value::Vector(v) => assert_eq!(v.len(), 1),
            other => panic!("{other:?}"),
        }
    }
}
