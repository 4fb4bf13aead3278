//! Function calls: range functions streamed over per-series windows, element-wise functions,
//! and the functions that look at a whole vector per step (`scalar`, `absent`, `sort`,
//! `histogram_quantile`, `label_replace`, …).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Evaluator, Series, Val, merge_same_labels};
use crate::model::{Labels, LabelsBuilder, METRIC_NAME, MatchOp, Sample, compile_anchored, is_stale_nan};
use crate::promql::ast::{Call, Expr, Span, VectorSelector};
use crate::promql::engine::QueryError;
use crate::promql::functions::histogram::{Bucket, bucket_fraction, bucket_quantile};
use crate::promql::functions::range::{self, RangeNote, Window};
use crate::promql::functions::{Func, elementwise, is_date_function};
use crate::promql::parser::lex::go_quote_bytes;
use crate::promql::value::Point;

/// Per input series its histogram group and bucket bound (`None`: bad `le`), and each group's
/// output labels.
type BucketGroups = (Vec<Option<(usize, f64)>>, Vec<Arc<Labels>>);

/// Where a range function's windows come from.
enum Source<'e> {
    Selector(&'e VectorSelector, i64),
    Subquery(Vec<Series>, i64, i64, Option<i64>),
}

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

    fn absent_series(&self, arg: &Expr, present: &[bool]) -> Vec<Series> {
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
    fn scalar_args(&self, c: &Call, skip: usize) -> Result<Vec<Vec<f64>>, QueryError> {
        let mut out = Vec::new();
        for (i, a) in c.args.iter().enumerate() {
            if i != skip {
                out.push(self.eval_scalar(a)?);
            }
        }
        Ok(out)
    }

    /// A function over a range vector: per series and step, the function of the samples in the
    /// window `(t - offset - range, t - offset]`.
    fn range_call(&self, c: &Call) -> Result<Val, QueryError> {
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
            let mut it = samples.peekable();
            let mut buf: Vec<Sample> = Vec::new();
            let mut head = 0usize;
            let mut points: Vec<Point> = Vec::new();
            let mut held = 0usize;
            // Under `@` the window is fixed; it is evaluated once unless the function also
            // depends on the step (scalar arguments, predict_linear's prediction time).
            let per_step = at.is_none() || !args.is_empty() || c.func == Func::PredictLinear;
            for k in 0..n {
                let ts = at.unwrap_or_else(|| self.ts(k));
                if at.is_none() || k == 0 {
                    let r = ts - offset;
                    while let Some(p) = it.next_if(|p| p.t <= r) {
                        if !is_stale_nan(p.v) {
                            buf.push(p);
                        }
                    }
                    while head < buf.len() && buf[head].t <= r - range {
                        head += 1;
                    }
                    if head > 1024 && head * 2 > buf.len() {
                        buf.drain(..head);
                        head = 0;
                    }
                    let len = buf.len() - head;
                    if len > held {
                        self.ctx.add_samples(len - held)?;
                    } else {
                        self.ctx.sub_samples(held - len);
                    }
                    held = len;
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
                let w = Window { samples: &buf[head..], ts, eval_ts: self.ts(k), range, offset };
                if let Some(v) =
                    range::eval(c.func, &w, &step_args, &mut notes).map_err(QueryError::Execution)?
                {
                    points.push(Point { t: self.ts(k), v });
                }
            }
            self.ctx.sub_samples(held);
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
                let raw = self.select(vs, first - vs.offset - range + 1, last - vs.offset)?;
                for s in raw {
                    let mut it = s.samples;
                    process(s.labels, false, &mut it)?;
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

    fn label_replace(&self, c: &Call) -> Result<Val, QueryError> {
        let s = |i: usize| string_arg(&c.args[i]);
        let (dst, repl, src, regex) = (s(1)?, s(2)?, s(3)?, s(4)?);
        let re = compile_anchored(&regex.0).map_err(|_| {
            QueryError::Execution(format!("invalid regular expression in label_replace(): {}", regex.0))
        })?;
        if !dst.1 || dst.0.is_empty() {
            return Err(QueryError::Execution(format!(
                "invalid destination label name in label_replace(): {}",
                dst.2
            )));
        }
        let mut input = self.eval_vector(&c.args[0])?;
        for series in &mut input {
            let src_val = series.labels.get_or_empty(&src.0);
            if let Some(caps) = re.captures(src_val) {
                let mut value = String::new();
                caps.expand(&repl.0, &mut value);
                let mut b = series.labels.builder();
                b.set(&dst.0, &value);
                series.labels = Arc::new(b.labels());
                if dst.0 == METRIC_NAME {
                    series.drop_name = false;
                }
            }
        }
        Ok(Val::Vector(merge_same_labels(input)?))
    }

    fn label_join(&self, c: &Call) -> Result<Val, QueryError> {
        let dst = string_arg(&c.args[1])?;
        let sep = string_arg(&c.args[2])?;
        let mut srcs = Vec::new();
        for a in &c.args[3..] {
            let src = string_arg(a)?;
            if !src.1 {
                return Err(QueryError::Execution(format!(
                    "invalid source label name in label_join(): {}",
                    src.2
                )));
            }
            srcs.push(src.0);
        }
        if !dst.1 || dst.0.is_empty() {
            return Err(QueryError::Execution(format!(
                "invalid destination label name in label_join(): {}",
                dst.2
            )));
        }
        let mut input = self.eval_vector(&c.args[0])?;
        for series in &mut input {
            let value: Vec<&str> = srcs.iter().map(|n| series.labels.get_or_empty(n)).collect();
            let value = value.join(&sep.0);
            let mut b = series.labels.builder();
            b.set(&dst.0, &value);
            series.labels = Arc::new(b.labels());
            if dst.0 == METRIC_NAME {
                series.drop_name = false;
            }
        }
        Ok(Val::Vector(merge_same_labels(input)?))
    }

    /// Groups classic-histogram bucket series by their labels without `le`; returns per input
    /// series its group and upper bound, the groups' output labels, and bad-`le` warnings.
    fn bucket_groups(&self, input: &[Series], arg_span: Span) -> BucketGroups {
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut groups: Vec<Arc<Labels>> = Vec::new();
        let mut per_series = Vec::with_capacity(input.len());
        let le_names = ["le".to_string()];
        for s in input {
            let le = s.labels.get_or_empty("le");
            let Ok(upper) = parse_go_float(le) else {
                let name = s.labels.metric_name().unwrap_or("");
                let msg = if name.is_empty() {
                    format!("bucket label \"le\" is missing or has a malformed value of {le:?}")
                } else {
                    format!(
                        "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {name:?}"
                    )
                };
                self.ctx.annotations.borrow_mut().warn(msg, arg_span);
                per_series.push(None);
                continue;
            };
            // The signature keeps the metric name (removed later, if at all).
            let sig = signature_with_name(&s.labels, &le_names);
            let g = *index.entry(sig).or_insert_with(|| {
                groups.push(Arc::new(s.labels.without(&["le"])));
                groups.len() - 1
            });
            per_series.push(Some((g, upper)));
        }
        (per_series, groups)
    }

    fn histogram_quantile(&self, c: &Call) -> Result<Val, QueryError> {
        let q = self.eval_scalar(&c.args[0])?;
        let input = self.eval_vector(&c.args[1])?;
        let arg_span = c.args[1].span();
        for &qv in &q {
            if qv.is_nan() || !(0.0..=1.0).contains(&qv) {
                self.ctx.annotations.borrow_mut().warn(invalid_quantile(qv), c.args[0].span());
            }
        }
        let (per_series, groups) = self.bucket_groups(&input, arg_span);
        let mut buckets: Vec<Vec<Bucket>> = vec![Vec::new(); groups.len()];
        let mut out: Vec<Vec<Point>> = vec![Vec::new(); groups.len()];
        let mut cursors = vec![0usize; input.len()];
        let mut mono: Option<Monotonicity> = None;
        for (k, &qk) in q.iter().enumerate().take(self.steps()) {
            let ts = self.ts(k);
            for b in &mut buckets {
                b.clear();
            }
            for (i, s) in input.iter().enumerate() {
                if let Some(p) = s.points.get(cursors[i]).filter(|p| p.t == ts) {
                    cursors[i] += 1;
                    if let Some((g, upper)) = per_series[i] {
                        buckets[g].push(Bucket { upper, count: p.v });
                    }
                }
            }
            for (g, b) in buckets.iter_mut().enumerate() {
                if b.is_empty() {
                    continue;
                }
                let (v, fix) = bucket_quantile(qk, b);
                if let Some(fix) = fix {
                    let name = groups[g].metric_name().unwrap_or("").to_string();
                    mono.get_or_insert_with(|| Monotonicity::new(name, ts)).add(ts, fix);
                }
                out[g].push(Point { t: ts, v });
            }
        }
        if let Some(m) = mono {
            self.ctx.annotations.borrow_mut().info(m.message(), arg_span);
        }
        Ok(Val::Vector(
            groups
                .into_iter()
                .zip(out)
                .filter(|(_, p)| !p.is_empty())
                .map(|(labels, points)| Series { labels, points, drop_name: true })
                .collect(),
        ))
    }

    /// `histogram_quantiles(v, "label", q1, q2, …)`: one series per group and quantile, the
    /// quantile in `label` (OpenMetrics float format).
    fn histogram_quantiles(&self, c: &Call) -> Result<Val, QueryError> {
        let input = self.eval_vector(&c.args[0])?;
        let (label, _, _) = string_arg(&c.args[1])?;
        let arg_span = c.args[0].span();
        let mut qs = Vec::new();
        for a in &c.args[2..] {
            let q = self.eval_scalar(a)?;
            for &qv in &q {
                if qv.is_nan() || !(0.0..=1.0).contains(&qv) {
                    self.ctx.annotations.borrow_mut().warn(invalid_quantile(qv), a.span());
                }
            }
            qs.push(q);
        }
        let (per_series, groups) = self.bucket_groups(&input, arg_span);
        let mut buckets: Vec<Vec<Bucket>> = vec![Vec::new(); groups.len()];
        let mut cursors = vec![0usize; input.len()];
        let mut out = super::Assembler::new(self.start == self.end);
        let mut labels_cache: HashMap<(usize, u64), Arc<Labels>> = HashMap::new();
        let mut mono: Option<Monotonicity> = None;
        for k in 0..self.steps() {
            let ts = self.ts(k);
            for b in &mut buckets {
                b.clear();
            }
            for (i, s) in input.iter().enumerate() {
                if let Some(p) = s.points.get(cursors[i]).filter(|p| p.t == ts) {
                    cursors[i] += 1;
                    if let Some((g, upper)) = per_series[i] {
                        buckets[g].push(Bucket { upper, count: p.v });
                    }
                }
            }
            for q in &qs {
                let q = q[k];
                for (g, b) in buckets.iter().enumerate() {
                    if b.is_empty() {
                        continue;
                    }
                    let mut b = b.clone();
                    let (v, fix) = bucket_quantile(q, &mut b);
                    if let Some(fix) = fix {
                        let name = groups[g].metric_name().unwrap_or("").to_string();
                        mono.get_or_insert_with(|| Monotonicity::new(name, ts)).add(ts, fix);
                    }
                    let labels = labels_cache
                        .entry((g, q.to_bits()))
                        .or_insert_with(|| {
                            let mut lb = groups[g].builder();
                            lb.set(&label, &format_openmetrics_float(q));
                            Arc::new(lb.labels())
                        })
                        .clone();
                    let slot = out.slot(&labels, true);
                    out.push(slot, ts, v)?;
                }
            }
        }
        if let Some(m) = mono {
            self.ctx.annotations.borrow_mut().info(m.message(), arg_span);
        }
        Ok(Val::Vector(out.finish()))
    }

    fn histogram_fraction(&self, c: &Call) -> Result<Val, QueryError> {
        let lower = self.eval_scalar(&c.args[0])?;
        let upper = self.eval_scalar(&c.args[1])?;
        let input = self.eval_vector(&c.args[2])?;
        let (per_series, groups) = self.bucket_groups(&input, c.args[2].span());
        let mut buckets: Vec<Vec<Bucket>> = vec![Vec::new(); groups.len()];
        let mut out: Vec<Vec<Point>> = vec![Vec::new(); groups.len()];
        let mut cursors = vec![0usize; input.len()];
        for k in 0..self.steps() {
            let ts = self.ts(k);
            for b in &mut buckets {
                b.clear();
            }
            for (i, s) in input.iter().enumerate() {
                if let Some(p) = s.points.get(cursors[i]).filter(|p| p.t == ts) {
                    cursors[i] += 1;
                    if let Some((g, ub)) = per_series[i] {
                        buckets[g].push(Bucket { upper: ub, count: p.v });
                    }
                }
            }
            for (g, b) in buckets.iter_mut().enumerate() {
                if !b.is_empty() {
                    out[g].push(Point { t: ts, v: bucket_fraction(lower[k], upper[k], b) });
                }
            }
        }
        Ok(Val::Vector(
            groups
                .into_iter()
                .zip(out)
                .filter(|(_, p)| !p.is_empty())
                .map(|(labels, points)| Series { labels, points, drop_name: true })
                .collect(),
        ))
    }
}

/// The histogram_quantile monotonicity info, merged over steps as Prometheus does.
struct Monotonicity {
    name: String,
    min_ts: i64,
    max_ts: i64,
    min_bucket: f64,
    max_bucket: f64,
    max_diff: f64,
    count: usize,
}

impl Monotonicity {
    fn new(name: String, ts: i64) -> Monotonicity {
        Monotonicity {
            name,
            min_ts: ts,
            max_ts: ts,
            min_bucket: f64::INFINITY,
            max_bucket: f64::NEG_INFINITY,
            max_diff: 0.0,
            count: 0,
        }
    }

    fn add(&mut self, ts: i64, fix: crate::promql::functions::histogram::MonotonicityFix) {
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        self.min_bucket = self.min_bucket.min(fix.min_bucket);
        self.max_bucket = self.max_bucket.max(fix.max_bucket);
        self.max_diff = self.max_diff.max(fix.max_diff);
        self.count += 1;
    }

    fn message(&self) -> String {
        let mut m = String::from(
            "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)",
        );
        if !self.name.is_empty() {
            m.push_str(&format!(" for metric name {:?}", self.name));
        }
        m.push_str(&format!(
            ", from buckets {} to {}, with a max diff of {}, over {} samples from {} to {}",
            go_g(self.min_bucket),
            go_g(self.max_bucket),
            go_g2(self.max_diff),
            self.count,
            rfc3339_secs(self.min_ts / 1000),
            rfc3339_secs(self.max_ts / 1000)
        ));
        m
    }
}

fn go_g(v: f64) -> String {
    crate::promql::value::format_value(v).trim_start_matches('+').to_string()
}

fn go_g2(v: f64) -> String {
    format!("{:.2}", v).trim_end_matches('0').trim_end_matches('.').to_string()
}

fn rfc3339_secs(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A float as OpenMetrics writes it: Go's shortest `%g`, with `.0` added to integers.
fn format_openmetrics_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let s = go_format_g(v);
    if s.contains(['.', 'e']) { s } else { format!("{s}.0") }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` for finite values.
pub(crate) fn go_format_g(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // Shortest round-trip digits and decimal exponent, via Rust's `{:e}`.
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

/// The invalid-quantile warning text.
pub(super) fn invalid_quantile(q: f64) -> String {
    format!("quantile value should be between 0 and 1, got {}", go_float_g(q))
}

/// Go's `%g` for the values warnings show.
pub(super) fn go_float_g(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        go_format_g(v)
    }
}

/// A string argument: its value, whether it is valid UTF-8, and its Go-quoted source form.
fn string_arg(e: &Expr) -> Result<(String, bool, String), QueryError> {
    match e.unparen() {
        Expr::String(s) => Ok((s.value.clone(), s.is_utf8(), go_quote_bytes(&s.raw))),
        _ => Err(QueryError::Execution("expected a string literal".into())),
    }
}

fn unsupported(f: Func) -> QueryError {
    QueryError::Execution(format!("function {} is not supported here", f.name()))
}

/// The grouping signature of classic histogram buckets: all labels but `names`, name included.
fn signature_with_name(labels: &Labels, names: &[String]) -> u64 {
    crate::model::hash_label_pairs(
        labels.iter().filter(|l| !names.contains(&l.name)).map(|l| (l.name.as_str(), l.value.as_str())),
    )
}

/// Go's `math.Max`: NaN wins.
pub(super) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

/// Go's `math.Min`: NaN wins.
pub(super) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}

/// Parses an `le` value as Go's `ParseFloat` does (`+Inf`, `inf`, `NaN`, `1e3`, hex).
pub(crate) fn parse_go_float(s: &str) -> Result<f64, ()> {
    let t = s.trim_start_matches('+');
    match t.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => return Ok(if s.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY }),
        "-inf" | "-infinity" => return Ok(f64::NEG_INFINITY),
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    if s.is_empty() || s.contains(char::is_whitespace) {
        return Err(());
    }
    s.parse::<f64>().map_err(|_| ())
}

/// Go's `sort.Sort` on small inputs is an insertion sort driven by `less`; we reproduce it so
/// that ties and NaNs end up in the same order as Prometheus's.
pub(super) fn go_sort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    if v.len() <= 12 {
        for i in 1..v.len() {
            let mut j = i;
            while j > 0 && less(&v[j], &v[j - 1]) {
                v.swap(j, j - 1);
                j -= 1;
            }
        }
    } else {
        v.sort_by(|a, b| {
            if less(a, b) {
                std::cmp::Ordering::Less
            } else if less(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
    }
}

/// Natural ordering of label values: digit runs compare as numbers.
fn natural_less(a: &str, b: &str) -> bool {
    fn chunks(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push(&s[start..i]);
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        if x == y {
            continue;
        }
        if let (Ok(nx), Ok(ny)) = (x.parse::<u128>(), y.parse::<u128>()) {
            if nx != ny {
                return nx < ny;
            }
            return x < y;
        }
        return x < y;
    }
    ca.len() < cb.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        assert!(natural_less("a2", "a10"));
        assert!(!natural_less("a10", "a2"));
        assert!(natural_less("abc", "abd"));
        assert!(natural_less("1", "1a"));
    }

    #[test]
    fn go_float_parsing() {
        assert_eq!(parse_go_float("+Inf"), Ok(f64::INFINITY));
        assert_eq!(parse_go_float("0.5"), Ok(0.5));
        assert!(parse_go_float("").is_err());
        assert!(parse_go_float("Hello World").is_err());
    }
}
