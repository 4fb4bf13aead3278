//! The evaluator: walks an expression once per node over all steps of the query (a range query;
//! an instant query is a range of one step), reading storage only through
//! [`Queryable`](crate::storage::Queryable).
//!
//! Every instant-vector value is a list of series with one point per step where the series has a
//! value; scalars are one value per step. Range windows are streamed per series from the storage
//! iterator, so raw samples are never all held at once. Memory is bounded by counting every
//! point held (the sample limit) and time by a deadline checked per series and step.

mod aggregate;
mod binary;
mod call;
mod histogram;
mod labels;
mod rollup;
mod window;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::annotations::Annotations;
use super::ast::{At, Expr, Subquery, VectorSelector};
use super::engine::QueryError;
use super::value::Point;
use crate::model::{Labels, METRIC_NAME, Sample, hash_label_pairs, is_stale_nan};
use crate::storage::{self, Queryable};

/// Labels that lose their meaning when a function or operator changes what a value is.
pub(crate) const METADATA_LABELS: [&str; 3] = [METRIC_NAME, "__type__", "__unit__"];

/// State shared by all evaluators of one query (subqueries get their own evaluator).
pub(crate) struct Ctx<'q> {
    pub(crate) storage: &'q dyn Queryable,
    pub(crate) lookback: i64,
    pub(crate) max_samples: usize,
    pub(crate) deadline: Option<Instant>,
    /// Points currently held by the evaluation.
    pub(crate) samples: Cell<usize>,
    pub(crate) peak_samples: Cell<usize>,
    pub(crate) annotations: RefCell<Annotations>,
    /// The query's own range, for `@ start()`, `@ end()` and `start()`/`end()`/`range()`/`step()`.
    pub(crate) query_start: i64,
    pub(crate) query_end: i64,
    pub(crate) query_step: i64,
    /// The step of subqueries written without one (`[5m:]`).
    pub(crate) default_subquery_step: i64,
    /// Which resolutions selectors may read (`max_source_resolution`).
    pub(crate) source: super::engine::SourceResolution,
    /// The storage's coverage by resolution, read once per query.
    pub(crate) coverage: std::cell::OnceCell<Vec<storage::rollup::Coverage>>,
}

impl Ctx<'_> {
    /// Where the storage holds raw data and rollups (read on first use).
    pub(crate) fn coverage(&self) -> Vec<storage::rollup::Coverage> {
        self.coverage.get_or_init(|| self.storage.coverage()).clone()
    }

    pub(crate) fn check_time(&self, env: &'static str) -> Result<(), QueryError> {
        match self.deadline {
            Some(d) if Instant::now() > d => Err(QueryError::Timeout(env)),
            _ => Ok(()),
        }
    }

    /// Accounts for `n` more points held; fails once over the limit.
    pub(crate) fn add_samples(&self, n: usize) -> Result<(), QueryError> {
        let cur = self.samples.get() + n;
        self.samples.set(cur);
        if cur > self.peak_samples.get() {
            self.peak_samples.set(cur);
        }
        if cur > self.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        Ok(())
    }

    pub(crate) fn sub_samples(&self, n: usize) {
        self.samples.set(self.samples.get().saturating_sub(n));
    }
}

/// A series inside the evaluation: points at step timestamps (or raw sample times for range
/// vectors), and whether its metric name is to be removed at the end (Prometheus 3's delayed
/// name removal: functions mark rather than drop, so `label_replace` can still read the name).
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) labels: Arc<Labels>,
    pub(crate) points: Vec<Point>,
    pub(crate) drop_name: bool,
}

/// The value of a node over all steps.
#[derive(Debug)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<Series>),
    /// A range vector (instant queries only): raw points per series.
    Matrix(Vec<Series>),
}

impl Val {
    fn points(&self) -> usize {
        match self {
            Val::Scalar(v) => v.len(),
            Val::Str(_) => 0,
            Val::Vector(s) | Val::Matrix(s) => s.iter().map(|s| s.points.len()).sum(),
        }
    }
}

/// Evaluates expressions over the steps `start, start+interval, …, end`.
pub(crate) struct Evaluator<'c, 'q> {
    pub(crate) ctx: &'c Ctx<'q>,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) interval: i64,
}

impl<'c, 'q> Evaluator<'c, 'q> {
    pub(crate) fn steps(&self) -> usize {
        if self.end < self.start {
            return 0;
        }
        ((self.end - self.start) / self.interval.max(1)) as usize + 1
    }

    pub(crate) fn ts(&self, k: usize) -> i64 {
        self.start + k as i64 * self.interval
    }

    fn at_time(&self, at: Option<At>) -> Option<i64> {
        at.map(|a| match a {
            At::Time(t) => t,
            At::Start => self.ctx.query_start,
            At::End => self.ctx.query_end,
        })
    }

    /// Evaluates `e`, accounting its result against the sample limit.
    pub(crate) fn eval(&self, e: &Expr) -> Result<Val, QueryError> {
        self.ctx.check_time("expression evaluation")?;
        let before = self.ctx.samples.get();
        let v = self.eval_node(e)?;
        self.ctx.samples.set(before);
        self.ctx.add_samples(v.points())?;
        Ok(v)
    }

    pub(crate) fn eval_scalar(&self, e: &Expr) -> Result<Vec<f64>, QueryError> {
        match self.eval(e)? {
            Val::Scalar(v) => Ok(v),
            other => Err(type_error("scalar", &other)),
        }
    }

    pub(crate) fn eval_vector(&self, e: &Expr) -> Result<Vec<Series>, QueryError> {
        match self.eval(e)? {
            Val::Vector(v) => Ok(v),
            other => Err(type_error("instant vector", &other)),
        }
    }

    fn eval_node(&self, e: &Expr) -> Result<Val, QueryError> {
        let n = self.steps();
        Ok(match e {
            Expr::Number(v, _) => Val::Scalar(vec![*v; n]),
            Expr::String(s) => Val::Str(s.value.clone()),
            Expr::Paren(inner, _) => self.eval_node(inner)?,
            Expr::Neg(inner, _) => match self.eval(inner)? {
                Val::Scalar(mut v) => {
                    v.iter_mut().for_each(|x| *x = -*x);
                    Val::Scalar(v)
                }
                Val::Vector(mut series) => {
                    for s in &mut series {
                        s.drop_name = true;
                        s.points.iter_mut().for_each(|p| p.v = -p.v);
                    }
                    Val::Vector(series)
                }
                other => return Err(type_error("scalar or instant vector", &other)),
            },
            Expr::Vector(vs) => Val::Vector(self.selector(vs, false)?),
            Expr::Matrix(vs, range, _) => Val::Matrix(self.matrix_selector(vs, *range)?),
            Expr::Subquery(sq) => Val::Matrix(self.subquery(sq)?),
            Expr::Binary(b) => self.binary(b)?,
            Expr::Aggregate(a) => self.aggregate(a)?,
            Expr::Call(c) => self.call(c)?,
        })
    }

    /// Series matching the selector (and its `or` alternatives) with samples in `[mint, maxt]`,
    /// sorted by labels.
    /// `hints` tell storage layers what the samples are for (e.g. a counter function).
    pub(crate) fn select(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        hints: &storage::SelectHints,
    ) -> Result<Vec<storage::Series>, QueryError> {
        let q = self.ctx.storage.querier(mint, maxt)?;
        let mut out = q.select_hinted(&vs.matchers, hints)?;
        if !vs.alternatives.is_empty() {
            for alt in &vs.alternatives {
                out.extend(q.select_hinted(alt, hints)?);
            }
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            out.dedup_by(|a, b| a.labels == b.labels);
        }
        let warnings = q.warnings();
        if !warnings.is_empty() {
            let mut ann = self.ctx.annotations.borrow_mut();
            warnings.into_iter().for_each(|w| ann.storage_warning(w));
        }
        Ok(out)
    }

    /// An instant vector selector: per step, the latest sample within the lookback window that is
    /// not a staleness marker. With `sample_time`, the value is the sample's timestamp in
    /// seconds (for `timestamp()`).
    pub(crate) fn selector(&self, vs: &VectorSelector, sample_time: bool) -> Result<Vec<Series>, QueryError> {
        let n = self.steps();
        if n == 0 {
            return Ok(Vec::new());
        }
        let lookback = self.ctx.lookback;
        let at = self.at_time(vs.at);
        let (first, last) = match at {
            Some(t) => (t, t),
            None => (self.start, self.ts(n - 1)),
        };
        let (mint, maxt) = (first - vs.offset - lookback + 1, last - vs.offset);
        // A window's last sample may lie up to one resolution before the step: read that much more.
        let widest = self.ctx.coverage().iter().map(|c| c.resolution).max().unwrap_or(0);
        let hints = storage::SelectHints { step: self.interval, ..Default::default() };
        if let Some(plan) = self.rollup_plan(None, 0, mint - widest, maxt) {
            let streams = self.select_rollups(vs, &plan, storage::rollup::Aggregates::LAST, &hints, true)?;
            return self.selector_over_rollups(vs, &plan, streams, at, sample_time);
        }
        let raw = self.select(vs, mint, maxt, &hints)?;
        let value = |s: &Sample| if sample_time { s.t as f64 / 1000.0 } else { s.v };
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            self.ctx.check_time("expression evaluation")?;
            let mut it = s.samples.peekable();
            let mut points = Vec::new();
            let mut latest: Option<Sample> = None;
            if let Some(t) = at {
                let r = t - vs.offset;
                while let Some(p) = it.next_if(|p| p.t <= r) {
                    latest = Some(p);
                }
                if let Some(p) = latest.filter(|p| p.t > r - lookback && !is_stale_nan(p.v)) {
                    let v = value(&p);
                    points = (0..n).map(|k| Point { t: self.ts(k), v }).collect();
                }
            } else {
                for k in 0..n {
                    let ts = self.ts(k);
                    let r = ts - vs.offset;
                    while let Some(p) = it.next_if(|p| p.t <= r) {
                        latest = Some(p);
                    }
                    if let Some(p) = latest.filter(|p| p.t > r - lookback && !is_stale_nan(p.v)) {
                        points.push(Point { t: ts, v: value(&p) });
                    }
                }
            }
            if !points.is_empty() {
                self.ctx.add_samples(points.len())?;
                out.push(Series { labels: s.labels, points, drop_name: false });
            }
        }
        Ok(out)
    }

    /// A range selector evaluated at the (single) evaluation time: the raw samples in
    /// `(t - offset - range, t - offset]`, staleness markers removed.
    fn matrix_selector(&self, vs: &VectorSelector, range: i64) -> Result<Vec<Series>, QueryError> {
        if self.start != self.end {
            return Err(QueryError::Execution("cannot do range evaluation of matrix selector".into()));
        }
        let r = self.at_time(vs.at).unwrap_or(self.start) - vs.offset;
        let hints = storage::SelectHints { range, ..Default::default() };
        let raw = self.select(vs, r - range + 1, r, &hints)?;
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            self.ctx.check_time("expression evaluation")?;
            let points: Vec<Point> = s
                .samples
                .filter(|p| p.t > r - range && p.t <= r && !is_stale_nan(p.v))
                .map(|p| Point { t: p.t, v: p.v })
                .collect();
            if !points.is_empty() {
                self.ctx.add_samples(points.len())?;
                out.push(Series { labels: s.labels, points, drop_name: false });
            }
        }
        Ok(out)
    }

    /// Evaluates a subquery's inner expression on its own step grid: steps aligned to multiples
    /// of the subquery step, after `t - offset - range` and up to `t - offset`, where `t` spans
    /// this evaluator's steps (or is the `@` time).
    pub(crate) fn subquery(&self, sq: &Subquery) -> Result<Vec<Series>, QueryError> {
        let step = sq.step.unwrap_or(self.ctx.default_subquery_step).max(1);
        let (outer_start, outer_end) = match self.at_time(sq.at) {
            Some(t) => (t, t),
            None => {
                let n = self.steps();
                if n == 0 {
                    return Ok(Vec::new());
                }
                (self.start, self.ts(n - 1))
            }
        };
        let end = outer_end - sq.offset;
        let lowest = outer_start - sq.offset - sq.range;
        let mut start = step * (lowest / step);
        if start <= lowest {
            start += step;
        }
        let inner = Evaluator { ctx: self.ctx, start, end, interval: step };
        // Every step holds at least one value: a grid larger than the limit cannot fit.
        if inner.steps() > self.ctx.max_samples {
            return Err(QueryError::TooManySamples("subquery evaluation"));
        }
        match inner.eval(&sq.expr)? {
            Val::Vector(v) => Ok(v),
            Val::Scalar(values) => Ok(vec![Series {
                labels: Arc::new(Labels::empty()),
                points: values.iter().enumerate().map(|(k, &v)| Point { t: inner.ts(k), v }).collect(),
                drop_name: false,
            }]),
            other => Err(type_error("instant vector", &other)),
        }
    }
}

fn type_error(want: &str, got: &Val) -> QueryError {
    let got = match got {
        Val::Scalar(_) => "scalar",
        Val::Str(_) => "string",
        Val::Vector(_) => "instant vector",
        Val::Matrix(_) => "range vector",
    };
    QueryError::Execution(format!("expected {want}, got {got}"))
}

/// The hash identifying `labels` restricted to (`on`) or without (`!on`, also without the metric
/// name) `names`, which must be sorted: vector matching and grouping signatures.
pub(crate) fn signature(labels: &Labels, on: bool, names: &[String]) -> u64 {
    let keep = |n: &str| {
        if on {
            names.binary_search_by(|x| x.as_str().cmp(n)).is_ok()
        } else {
            n != METRIC_NAME && names.binary_search_by(|x| x.as_str().cmp(n)).is_err()
        }
    };
    hash_label_pairs(labels.iter().filter(|l| keep(l.name)).map(|l| (l.name, l.value)))
}

/// `labels` without the metadata labels (`__name__`, `__type__`, `__unit__`).
pub(crate) fn drop_metadata(labels: &Labels) -> Labels {
    labels.without(&METADATA_LABELS)
}

/// Collects per-step outputs into series keyed by their labels. In range evaluation a second
/// output with the same labels at the same step is an error; instant queries keep every output
/// in order (duplicates are found after name removal, as Prometheus does).
pub(crate) struct Assembler {
    instant: bool,
    index: HashMap<Arc<Labels>, usize>,
    series: Vec<Series>,
}

impl Assembler {
    pub(crate) fn new(instant: bool) -> Assembler {
        Assembler { instant, index: HashMap::new(), series: Vec::new() }
    }

    pub(crate) fn instant_mode(&self) -> bool {
        self.instant
    }

    /// The slot for `labels`, created with `drop_name` when new.
    pub(crate) fn slot(&mut self, labels: &Arc<Labels>, drop_name: bool) -> usize {
        if self.instant {
            self.series.push(Series { labels: labels.clone(), points: Vec::new(), drop_name });
            return self.series.len() - 1;
        }
        if let Some(&i) = self.index.get(labels) {
            return i;
        }
        self.series.push(Series { labels: labels.clone(), points: Vec::new(), drop_name });
        self.index.insert(labels.clone(), self.series.len() - 1);
        self.series.len() - 1
    }

    /// Appends a point to slot `i`, failing on a second value at the same step.
    pub(crate) fn push(&mut self, i: usize, t: i64, v: f64) -> Result<(), QueryError> {
        let s = &mut self.series[i];
        if s.points.last().is_some_and(|p| p.t == t) {
            return Err(duplicate_labelset());
        }
        s.points.push(Point { t, v });
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<Series> {
        self.series.into_iter().filter(|s| !s.points.is_empty()).collect()
    }
}

pub(crate) fn duplicate_labelset() -> QueryError {
    QueryError::Execution("vector cannot contain metrics with the same labelset".into())
}

/// Merges series whose label sets became equal (after name removal or relabelling); their
/// points must not share a timestamp.
pub(crate) fn merge_same_labels(series: Vec<Series>) -> Result<Vec<Series>, QueryError> {
    if series.len() <= 1 {
        return Ok(series);
    }
    let mut index: HashMap<Arc<Labels>, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    let mut merged = false;
    for s in series {
        match index.get(&s.labels) {
            Some(&i) => {
                out[i].points.extend(s.points);
                merged = true;
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    if merged {
        for s in &mut out {
            s.points.sort_by_key(|p| p.t);
            if s.points.windows(2).any(|w| w[0].t == w[1].t) {
                return Err(duplicate_labelset());
            }
        }
    }
    Ok(out)
}

/// Removes the metric name from series marked for it, then checks (instant vectors) or merges
/// (range results) series whose labels became equal.
pub(crate) fn cleanup_names(series: Vec<Series>, as_vector: bool) -> Result<Vec<Series>, QueryError> {
    let series: Vec<Series> = series
        .into_iter()
        .map(|mut s| {
            if s.drop_name && METADATA_LABELS.iter().any(|n| s.labels.has(n)) {
                s.labels = Arc::new(drop_metadata(&s.labels));
            }
            s.drop_name = false;
            s
        })
        .collect();
    if as_vector {
        let mut seen = std::collections::HashSet::with_capacity(series.len());
        for s in &series {
            if !seen.insert(s.labels.clone()) {
                return Err(duplicate_labelset());
            }
        }
        Ok(series)
    } else {
        merge_same_labels(series)
    }
}
