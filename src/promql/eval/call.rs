//! Function calls: dispatch, and the functions that look at a whole vector or scalar per step
//! (`scalar`, `vector`, `absent`, `timestamp`, `clamp`, `round`, `sort`, …). Range functions are
//! in `window`, histogram functions in `histogram`, label functions in `labels`.

use std::sync::Arc;

use super::{Evaluator, Series, Val};
use crate::model::{Labels, LabelsBuilder, METRIC_NAME, MatchOp};
use crate::promql::ast::{Call, Expr};
use crate::promql::engine::QueryError;
use crate::promql::functions::go::{go_float_g, go_max, go_min, go_sort, natural_less};
use crate::promql::functions::{Func, elementwise, is_date_function};
use crate::promql::parser::lex::go_quote_bytes;
use crate::promql::value::Point;

impl Evaluator<'_, '_> {
    pub(super) fn call(&self, c: &Call) -> Result<Val, QueryError> {
        let n = self.steps();
        let ctx = self.ctx;
        let constant = |v: f64| Ok(Val::Scalar(vec![v; n]));
        match c.func {
            Func::Time => return Ok(Val::Scalar((0..n).map(|k| self.ts(k) as f64 / 1000.0).collect())),
            Func::Pi => return constant(std::f64::consts::PI),
            Func::Start => return constant(ctx.query_start as f64 / 1000.0),
            Func::End => return constant(ctx.query_end as f64 / 1000.0),
            Func::Range => return constant((ctx.query_end - ctx.query_start) as f64 / 1000.0),
            Func::Step => {
                let step =
                    if ctx.query_start == ctx.query_end { 0.0 } else { ctx.query_step as f64 / 1000.0 };
                return constant(step);
            }
            Func::MinOf | Func::MaxOf => {
                let a = self.eval_scalar(&c.args[0])?;
                let b = self.eval_scalar(&c.args[1])?;
                let f = if c.func == Func::MinOf { go_min } else { go_max };
                return Ok(Val::Scalar(a.iter().zip(&b).map(|(x, y)| f(*x, *y)).collect()));
            }
            Func::Vector => {
                let v = self.eval_scalar(&c.args[0])?;
                let points = v.iter().enumerate().map(|(k, &v)| Point { t: self.ts(k), v }).collect();
                return Ok(Val::Vector(vec![Series {
                    labels: Arc::new(Labels::empty()),
                    points,
                    drop_name: false,
                }]));
            }
            Func::Scalar => {
                let input = self.eval_vector(&c.args[0])?;
                let mut out = vec![f64::NAN; n];
                let mut count = vec![0u32; n];
                for s in &input {
                    for p in &s.points {
                        let k = self.step_index(p.t);
                        count[k] += 1;
                        out[k] = p.v;
                    }
                }
                for (v, c) in out.iter_mut().zip(count) {
                    if c != 1 {
                        *v = f64::NAN;
                    }
                }
                return Ok(Val::Scalar(out));
            }
            Func::Absent => {
                let input = self.eval_vector(&c.args[0])?;
                let mut present = vec![false; n];
                for s in &input {
                    for p in &s.points {
                        present[self.step_index(p.t)] = true;
                    }
                }
                return Ok(Val::Vector(self.absent_series(&c.args[0], &present)));
            }
            Func::Timestamp => {
                let mut out = match c.args[0].unparen() {
                    Expr::Vector(vs) => self.selector(vs, true)?,
                    arg => {
                        let mut v = self.eval_vector(arg)?;
                        for s in &mut v {
                            s.points.iter_mut().for_each(|p| p.v = p.t as f64 / 1000.0);
                        }
                        v
                    }
                };
                out.iter_mut().for_each(|s| s.drop_name = true);
                return Ok(Val::Vector(out));
            }
            Func::LabelReplace => return self.label_replace(c),
            Func::LabelJoin => return self.label_join(c),
            Func::Sort | Func::SortDesc | Func::SortByLabel | Func::SortByLabelDesc => return self.sort(c),
            Func::HistogramQuantile => return self.histogram_quantile(c),
            Func::HistogramFraction => return self.histogram_fraction(c),
            Func::HistogramCount
            | Func::HistogramSum
            | Func::HistogramAvg
            | Func::HistogramStddev
            | Func::HistogramStdvar
            | Func::StartTimestamp => {
                // Only native histograms (or start timestamps) have these; float samples yield nothing.
                self.eval_vector(&c.args[0])?;
                return Ok(Val::Vector(Vec::new()));
            }
            Func::HistogramQuantiles => return self.histogram_quantiles(c),
            Func::Info => {
                return Err(QueryError::Execution(format!("function {} is not supported", c.func.name())));
            }
            Func::Clamp | Func::ClampMin | Func::ClampMax => return self.clamp(c),
            Func::Round => return self.round(c),
            _ => {}
        }
        if is_date_function(c.func) && c.args.is_empty() {
            let f = elementwise(c.func).ok_or_else(|| unsupported(c.func))?;
            let points = (0..n).map(|k| Point { t: self.ts(k), v: f((self.ts(k) / 1000) as f64) }).collect();
            return Ok(Val::Vector(vec![Series {
                labels: Arc::new(Labels::empty()),
                points,
                drop_name: false,
            }]));
        }
        if let Some(f) = elementwise(c.func) {
            let mut input = self.eval_vector(&c.args[0])?;
            for s in &mut input {
                s.drop_name = true;
                s.points.iter_mut().for_each(|p| p.v = f(p.v));
            }
            return Ok(Val::Vector(input));
        }
        self.range_call(c)
    }

    pub(super) fn step_index(&self, t: i64) -> usize {
        ((t - self.start) / self.interval.max(1)) as usize
    }

    /// The labels `absent(sel)` reports: the selector's equality matchers, except `__name__`
    /// and labels matched more than once.
    fn absent_labels(arg: &Expr) -> Labels {
        let matchers = match arg.unparen() {
            Expr::Vector(vs) | Expr::Matrix(vs, _, _) => &vs.matchers,
            _ => return Labels::empty(),
        };
        let mut b = LabelsBuilder::new(Labels::empty());
        let mut has: Vec<&str> = Vec::new();
        for m in matchers {
            if m.name == METRIC_NAME {
                continue;
            }
            if m.op == MatchOp::Equal && !has.contains(&m.name.as_str()) {
                b.set(&m.name, &m.value);
                has.push(&m.name);
            } else {
                b.del(&m.name);
            }
        }
        b.labels()
    }

    pub(super) fn absent_series(&self, arg: &Expr, present: &[bool]) -> Vec<Series> {
        let points: Vec<Point> = present
            .iter()
            .enumerate()
            .filter(|(_, p)| !**p)
            .map(|(k, _)| Point { t: self.ts(k), v: 1.0 })
            .collect();
        if points.is_empty() {
            return Vec::new();
        }
        vec![Series { labels: Arc::new(Self::absent_labels(arg)), points, drop_name: false }]
    }

    /// Scalar arguments (other than `skip`) evaluated over all steps.
    pub(super) fn scalar_args(&self, c: &Call, skip: usize) -> Result<Vec<Vec<f64>>, QueryError> {
        let mut out = Vec::new();
        for (i, a) in c.args.iter().enumerate() {
            if i != skip {
                out.push(self.eval_scalar(a)?);
            }
        }
        Ok(out)
    }

    fn clamp(&self, c: &Call) -> Result<Val, QueryError> {
        let mut input = self.eval_vector(&c.args[0])?;
        let n = self.steps();
        let (lo, hi) = match c.func {
            Func::Clamp => (self.eval_scalar(&c.args[1])?, self.eval_scalar(&c.args[2])?),
            Func::ClampMin => (self.eval_scalar(&c.args[1])?, vec![f64::INFINITY; n]),
            _ => (vec![f64::NEG_INFINITY; n], self.eval_scalar(&c.args[1])?),
        };
        for s in &mut input {
            s.drop_name = true;
            s.points.retain_mut(|p| {
                let k = ((p.t - self.start) / self.interval.max(1)) as usize;
                let (min, max) = (lo[k], hi[k]);
                if max < min {
                    return false;
                }
                p.v = go_max(min, go_min(max, p.v));
                true
            });
        }
        input.retain(|s| !s.points.is_empty());
        Ok(Val::Vector(input))
    }

    fn round(&self, c: &Call) -> Result<Val, QueryError> {
        let mut input = self.eval_vector(&c.args[0])?;
        let to = match c.args.get(1) {
            Some(a) => self.eval_scalar(a)?,
            None => vec![1.0; self.steps()],
        };
        for s in &mut input {
            s.drop_name = true;
            for p in &mut s.points {
                let inv = 1.0 / to[self.step_index(p.t)];
                p.v = (p.v * inv + 0.5).floor() / inv;
            }
        }
        Ok(Val::Vector(input))
    }

    fn sort(&self, c: &Call) -> Result<Val, QueryError> {
        let mut input = self.eval_vector(&c.args[0])?;
        if self.start != self.end {
            self.ctx.annotations.borrow_mut().warn(
                "sort is ineffective for range queries since results are always ordered by labels",
                c.span,
            );
            return Ok(Val::Vector(input));
        }
        let value = |s: &Series| s.points.first().map(|p| p.v).unwrap_or(f64::NAN);
        match c.func {
            // NaN sorts last either way.
            Func::Sort => go_sort(&mut input, |a, b| value(b).is_nan() || value(b) > value(a)),
            Func::SortDesc => go_sort(&mut input, |a, b| value(b).is_nan() || value(b) < value(a)),
            _ => {
                let mut names = Vec::new();
                for a in &c.args[1..] {
                    if let Expr::String(s) = a.unparen() {
                        names.push(s.value.clone());
                    }
                }
                let desc = c.func == Func::SortByLabelDesc;
                input.sort_by(|a, b| {
                    for name in &names {
                        let (x, y) = (a.labels.get_or_empty(name), b.labels.get_or_empty(name));
                        if x == y {
                            continue;
                        }
                        let ord = if natural_less(x, y) {
                            std::cmp::Ordering::Less
                        } else {
                            std::cmp::Ordering::Greater
                        };
                        return if desc { ord.reverse() } else { ord };
                    }
                    let ord = a.labels.cmp(&b.labels);
                    if desc { ord.reverse() } else { ord }
                });
            }
        }
        Ok(Val::Vector(input))
    }
}

/// The invalid-quantile warning text.
pub(super) fn invalid_quantile(q: f64) -> String {
    format!("quantile value should be between 0 and 1, got {}", go_float_g(q))
}

/// A string argument: its value, whether it is valid UTF-8, and its Go-quoted source form.
pub(super) fn string_arg(e: &Expr) -> Result<(String, bool, String), QueryError> {
    match e.unparen() {
        Expr::String(s) => Ok((s.value.clone(), s.is_utf8(), go_quote_bytes(&s.raw))),
        _ => Err(QueryError::Execution("expected a string literal".into())),
    }
}

pub(super) fn unsupported(f: Func) -> QueryError {
    QueryError::Execution(format!("function {} is not supported here", f.name()))
}
