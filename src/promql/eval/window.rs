//! Range functions (`rate`, `*_over_time`, …): per series, a window of samples slid over the
//! steps — streamed from the storage iterator or from a subquery's points, staleness markers
//! dropped — and the function evaluated on each window.

use std::sync::Arc;

use super::call::{invalid_quantile, unsupported};
use super::{Evaluator, Series, Val, rollup};
use crate::model::{Labels, Sample, is_stale_nan};
use crate::promql::ast::{Call, Expr, VectorSelector};
use crate::promql::engine::QueryError;
use crate::promql::functions::Func;
use crate::promql::functions::range::{self, RangeNote, Window};
use crate::promql::functions::rollup as rollup_fns;
use crate::promql::value::Point;
use crate::storage::rollup::Aggregates;

/// Where a range function's windows come from.
enum Source<'e> {
    Selector(&'e VectorSelector, i64),
    Subquery(Vec<Series>, i64, i64, Option<i64>),
}

impl Evaluator<'_, '_> {
    /// A function over a range vector: per series and step, the function of the samples in the
    /// window `(t - offset - range, t - offset]`.
    pub(super) fn range_call(&self, c: &Call) -> Result<Val, QueryError> {
        let idx = c
            .args
            .iter()
            .position(|a| matches!(a.unparen(), Expr::Matrix(..) | Expr::Subquery(_)))
            .ok_or_else(|| unsupported(c.func))?;
        let args = self.scalar_args(c, idx)?;
        let n = self.steps();
        let arg_span = c.args[idx].span();
        let source = match c.args[idx].unparen() {
            Expr::Matrix(vs, range, _) => Source::Selector(vs, *range),
            Expr::Subquery(sq) => {
                Source::Subquery(self.subquery(sq)?, sq.range, sq.offset, self.at_time(sq.at))
            }
            _ => return Err(unsupported(c.func)),
        };
        let (range, offset, at) = match &source {
            Source::Selector(vs, r) => (*r, vs.offset, self.at_time(vs.at)),
            Source::Subquery(_, r, o, at) => (*r, *o, *at),
        };
        // last/first_over_time act like an offset and keep the name.
        let drop_name = !matches!(c.func, Func::LastOverTime | Func::FirstOverTime);
        let mut notes = Vec::new();
        let mut out: Vec<Series> = Vec::new();
        let mut step_args = vec![0.0; args.len()];
        let mut non_counter: Vec<String> = Vec::new();

        let mut process = |labels: Arc<Labels>,
                           input_drop: bool,
                           samples: &mut dyn Iterator<Item = Sample>|
         -> Result<(), QueryError> {
            self.ctx.check_time("expression evaluation")?;
            let mut window = Slider::new(samples);
            let mut points: Vec<Point> = Vec::new();
            // Under `@` the window is fixed; it is evaluated once unless the function also
            // depends on the step (scalar arguments, predict_linear's prediction time).
            let per_step = at.is_none() || !args.is_empty() || c.func == Func::PredictLinear;
            for k in 0..n {
                // Many wide windows of one series (a subquery) can take long: watch the deadline
                // along the steps too, not only per series.
                if k % 256 == 255 {
                    self.ctx.check_time("expression evaluation")?;
                }
                let ts = at.unwrap_or_else(|| self.ts(k));
                if at.is_none() || k == 0 {
                    window.advance(self.ctx, ts - offset, range, |p| p.t, |p| !is_stale_nan(p.v))?;
                }
                if !per_step && k > 0 {
                    if let Some(first) = points.first().copied() {
                        points.push(Point { t: self.ts(k), v: first.v });
                    }
                    continue;
                }
                for (a, v) in args.iter().zip(step_args.iter_mut()) {
                    *v = a[k];
                }
                let w = Window { samples: window.current(), ts, eval_ts: self.ts(k), range, offset };
                if let Some(v) =
                    range::eval(c.func, &w, &step_args, &mut notes).map_err(QueryError::Execution)?
                {
                    points.push(Point { t: self.ts(k), v });
                }
            }
            window.release(self.ctx);
            if !points.is_empty() {
                if matches!(c.func, Func::Rate | Func::Increase)
                    && let Some(name) = labels.metric_name()
                    && !["_total", "_sum", "_count", "_bucket"].iter().any(|s| name.ends_with(s))
                {
                    non_counter.push(name.to_string());
                }
                self.ctx.add_samples(points.len())?;
                out.push(Series { labels, points, drop_name: drop_name || input_drop });
            }
            Ok(())
        };

        match source {
            Source::Selector(vs, range) => {
                let (first, last) = match at {
                    Some(t) => (t, t),
                    None if n == 0 => return Ok(Val::Vector(Vec::new())),
                    None => (self.start, self.ts(n - 1)),
                };
                let (mint, maxt) = (first - vs.offset - range + 1, last - vs.offset);
                let hints = crate::storage::SelectHints {
                    func: Some(c.func.name().to_string()),
                    step: self.interval,
                    range,
                };
                if let Some(plan) = self.rollup_plan(Some(c.func), range, mint, maxt) {
                    match rollup_fns::needs(c.func) {
                        Some(need) => {
                            let streams = self.select_rollups(vs, &plan, need, &hints, false)?;
                            out = self.range_over_rollups(c.func, streams, range, vs.offset, at)?;
                        }
                        None => {
                            // Only where nothing finer is left: each window's last value as a sample.
                            let streams = self.select_rollups(vs, &plan, Aggregates::LAST, &hints, false)?;
                            if plan.iter().any(|s| s.resolution > 0) {
                                self.ctx.annotations.borrow_mut().info(
                                    format!(
                                        "{} is not kept in rollups; it was computed over the last value of each window",
                                        c.func.name()
                                    ),
                                    vs.span,
                                );
                            }
                            for (labels, rollups) in streams {
                                process(labels, false, &mut rollup::as_samples(rollups))?;
                            }
                        }
                    }
                } else {
                    let raw = self.select(vs, mint, maxt, &hints)?;
                    for s in raw {
                        let mut it = s.samples;
                        process(s.labels, false, &mut it)?;
                    }
                }
            }
            Source::Subquery(series, ..) => {
                for s in series {
                    let mut it = s.points.into_iter().map(|p| Sample { t: p.t, v: p.v });
                    process(s.labels, s.drop_name, &mut it)?;
                }
            }
        }
        let mut ann = self.ctx.annotations.borrow_mut();
        for note in notes {
            match note {
                RangeNote::InvalidQuantile(q) => ann.warn(invalid_quantile(q), c.args[0].span()),
            }
        }
        for name in non_counter {
            ann.info(
                format!(
                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
                ),
                arg_span,
            );
        }
        drop(ann);
        if c.func == Func::AbsentOverTime {
            let mut present = vec![false; n];
            for s in &out {
                for p in &s.points {
                    present[self.step_index(p.t)] = true;
                }
            }
            return Ok(Val::Vector(self.absent_series(&c.args[idx], &present)));
        }
        Ok(Val::Vector(out))
    }
}

/// A window sliding forward over a time-ordered stream (raw samples or rollups): what enters up
/// to the window's end, what leaves at its start, and the points it holds counted against the
/// query's sample limit. Shared by the raw and the rollup evaluation of range functions.
pub(super) struct Slider<I: Iterator> {
    it: std::iter::Peekable<I>,
    buf: Vec<I::Item>,
    head: usize,
    held: usize,
}

impl<I: Iterator> Slider<I> {
    pub(super) fn new(it: I) -> Slider<I> {
        Slider { it: it.peekable(), buf: Vec::new(), head: 0, held: 0 }
    }

    /// Moves the window to `(end - range, end]`: takes in every item up to `end` that `keep`
    /// accepts and lets go of those at or before `end - range` (`time` gives an item's time).
    pub(super) fn advance(
        &mut self,
        ctx: &super::Ctx<'_>,
        end: i64,
        range: i64,
        time: impl Fn(&I::Item) -> i64,
        keep: impl Fn(&I::Item) -> bool,
    ) -> Result<(), QueryError> {
        while let Some(x) = self.it.next_if(|x| time(x) <= end) {
            if keep(&x) {
                self.buf.push(x);
            }
        }
        while self.head < self.buf.len() && time(&self.buf[self.head]) <= end - range {
            self.head += 1;
        }
        if self.head > 1024 && self.head * 2 > self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        let len = self.buf.len() - self.head;
        if len > self.held {
            ctx.add_samples(len - self.held)?;
        } else {
            ctx.sub_samples(self.held - len);
        }
        self.held = len;
        Ok(())
    }

    /// The items in the window.
    pub(super) fn current(&self) -> &[I::Item] {
        &self.buf[self.head..]
    }

    /// Gives back the window's points to the sample limit.
    pub(super) fn release(self, ctx: &super::Ctx<'_>) {
        ctx.sub_samples(self.held);
    }
}
