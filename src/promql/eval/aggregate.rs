//! Aggregations (`sum`, `avg`, `topk`, `quantile`, `count_values`, …) with `by`/`without`:
//! groups are assigned once per input series, then every step folds the series that have a
//! value into their group's accumulator, with Prometheus's float arithmetic.

use std::collections::HashMap;
use std::sync::Arc;

use super::call::invalid_quantile;
use super::{Assembler, Evaluator, Series, Val, signature};
use crate::model::{Labels, METRIC_NAME};
use crate::promql::ast::{AggOp, Aggregate, Expr};
use crate::promql::engine::QueryError;
use crate::promql::functions::go::{go_float_g, go_max, go_min, go_sort};
use crate::promql::functions::stats::{kahan_inc, quantile};
use crate::promql::parser::lex::go_quote_bytes;
use crate::promql::value::{Point, format_value};

/// One group's running state at one step.
#[derive(Clone, Default)]
struct Group {
    seen: bool,
    value: f64,
    mean: f64,
    c: f64,
    count: f64,
    incremental: bool,
    values: Vec<f64>,
    drop_name: bool,
}

/// An element of a `topk`/`bottomk`/`limitk`/`limit_ratio` heap: input series and value.
#[derive(Clone, Copy)]
struct Elem {
    series: usize,
    v: f64,
}

/// The labels of a group: `by` keeps the listed labels; `without` drops them and the name.
fn group_labels(labels: &Labels, grouping: &[String], without: bool) -> Labels {
    let mut b = labels.builder();
    if without {
        for n in grouping {
            b.del(n);
        }
        b.del(METRIC_NAME);
    } else {
        b.retain(|l| grouping.contains(&l.name));
    }
    b.labels()
}

fn group_key(labels: &Labels, grouping: &[String], without: bool) -> u64 {
    if !without && grouping.is_empty() {
        return 0;
    }
    signature(labels, !without, grouping)
}

impl Evaluator<'_, '_> {
    pub(super) fn aggregate(&self, a: &Aggregate) -> Result<Val, QueryError> {
        if a.op == AggOp::CountValues {
            return self.count_values(a);
        }
        let param = match &a.param {
            Some(p) => Some(self.eval_scalar(p)?),
            None => None,
        };
        let input = self.eval_vector(&a.expr)?;
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut group_of = Vec::with_capacity(input.len());
        let mut outputs: Vec<Arc<Labels>> = Vec::new();
        for s in &input {
            let key = group_key(&s.labels, &a.grouping, a.without);
            let next = index.len();
            let g = *index.entry(key).or_insert_with(|| {
                if !a.op.selects_series() {
                    outputs.push(Arc::new(group_labels(&s.labels, &a.grouping, a.without)));
                }
                next
            });
            group_of.push(g);
        }
        let groups = index.len();
        if a.op.selects_series() {
            return self.aggregate_k(a, param.unwrap_or_default(), &input, &group_of, groups);
        }
        if a.op == AggOp::Quantile
            && let Some(q) = &param
        {
            let span = a.param.as_ref().map(|p| p.span()).unwrap_or(a.span);
            let mut ann = self.ctx.annotations.borrow_mut();
            if q.iter().any(|v| v.is_nan()) {
                ann.warn(invalid_quantile(f64::NAN), span);
            }
            let (max, min) =
                (q.iter().copied().fold(f64::MIN, go_max), q.iter().copied().fold(f64::MAX, go_min));
            if max > 1.0 {
                ann.warn(invalid_quantile(max), span);
            }
            if min < 0.0 {
                ann.warn(invalid_quantile(min), span);
            }
        }
        let mut state = vec![Group::default(); groups];
        let mut points: Vec<Vec<Point>> = vec![Vec::new(); groups];
        let mut drop: Vec<bool> = vec![false; groups];
        let mut cursors = vec![0usize; input.len()];
        for k in 0..self.steps() {
            let ts = self.ts(k);
            if k % 64 == 0 {
                self.ctx.check_time("expression evaluation")?;
            }
            for g in &mut state {
                g.seen = false;
            }
            for (i, s) in input.iter().enumerate() {
                let Some(p) = s.points.get(cursors[i]).filter(|p| p.t == ts) else { continue };
                cursors[i] += 1;
                fold(a.op, &mut state[group_of[i]], p.v, s.drop_name);
            }
            for (g, st) in state.iter_mut().enumerate() {
                if !st.seen {
                    continue;
                }
                let v = match a.op {
                    AggOp::Avg if st.incremental => st.mean + st.c,
                    AggOp::Avg => st.value / st.count + st.c / st.count,
                    AggOp::Count => st.count,
                    AggOp::Stdvar => st.value / st.count,
                    AggOp::Stddev => (st.value / st.count).sqrt(),
                    AggOp::Quantile => {
                        let q = param.as_ref().map(|p| p[k]).unwrap_or(f64::NAN);
                        quantile(q, &mut st.values)
                    }
                    AggOp::Sum => st.value + st.c,
                    _ => st.value,
                };
                points[g].push(Point { t: ts, v });
                drop[g] = st.drop_name;
            }
        }
        Ok(Val::Vector(
            outputs
                .into_iter()
                .zip(points)
                .zip(drop)
                .filter(|((_, p), _)| !p.is_empty())
                .map(|((labels, points), drop_name)| Series { labels, points, drop_name })
                .collect(),
        ))
    }

    /// `topk`, `bottomk`, `limitk`, `limit_ratio`: per step and group, a selection of the
    /// input series themselves.
    fn aggregate_k(
        &self,
        a: &Aggregate,
        param: Vec<f64>,
        input: &[Series],
        group_of: &[usize],
        groups: usize,
    ) -> Result<Val, QueryError> {
        let span = a.param.as_ref().map(|p| p.span()).unwrap_or(a.span);
        let any_nan = param.iter().any(|v| v.is_nan());
        let max = param.iter().copied().fold(f64::MIN, go_max);
        let min = param.iter().copied().fold(f64::MAX, go_min);
        let (max, min) = if param.is_empty() { (0.0, 0.0) } else { (max, min) };
        if a.op == AggOp::LimitRatio {
            if max == 0.0 && min == 0.0 {
                return Ok(Val::Vector(Vec::new()));
            }
            if any_nan {
                return Err(QueryError::Execution("Ratio value is NaN".into()));
            }
            let mut ann = self.ctx.annotations.borrow_mut();
            if max > 1.0 {
                ann.warn(
                    format!("ratio value should be between -1 and 1, got {}, capping to 1", go_float_g(max)),
                    span,
                );
            }
            if min < -1.0 {
                ann.warn(
                    format!("ratio value should be between -1 and 1, got {}, capping to -1", go_float_g(min)),
                    span,
                );
            }
        } else {
            if max < 1.0 {
                return Ok(Val::Vector(Vec::new()));
            }
            if any_nan {
                return Err(QueryError::Execution("Parameter value is NaN".into()));
            }
            if min <= i64::MIN as f64 {
                return Err(QueryError::Execution(format!(
                    "Scalar value {} underflows int64",
                    go_float_g(min)
                )));
            }
            if max >= i64::MAX as f64 {
                return Err(QueryError::Execution(format!(
                    "Scalar value {} overflows int64",
                    go_float_g(max)
                )));
            }
        }
        // Heap order: topk keeps the smallest on top (NaN smallest); bottomk the largest.
        let less: fn(f64, f64) -> bool = match a.op {
            AggOp::Bottomk => |x, y| x.is_nan() || x > y,
            _ => |x, y| x.is_nan() || x < y,
        };
        // Whether `e` beats the heap's weakest element `top` (NaN never beats anything).
        let better: fn(f64, f64) -> bool = match a.op {
            AggOp::Bottomk => |top, e| top > e,
            _ => |top, e| top < e,
        };
        let ratio_offsets: Vec<f64> = if a.op == AggOp::LimitRatio {
            input.iter().map(|s| prometheus_labels_hash(&s.labels) as f64 / u64::MAX as f64).collect()
        } else {
            Vec::new()
        };
        let mut out = Assembler::new(self.start == self.end);
        let mut slots: Vec<Option<usize>> = vec![None; input.len()];
        let mut heaps: Vec<Vec<Elem>> = vec![Vec::new(); groups];
        let mut seen = vec![false; groups];
        let mut cursors = vec![0usize; input.len()];
        for k in 0..self.steps() {
            let ts = self.ts(k);
            let p = param.get(k).copied().unwrap_or(0.0);
            seen.iter_mut().for_each(|s| *s = false);
            heaps.iter_mut().for_each(|h| h.clear());
            let mut skip_step = false;
            for (i, s) in input.iter().enumerate() {
                let Some(pt) = s.points.get(cursors[i]).filter(|p| p.t == ts) else { continue };
                cursors[i] += 1;
                if skip_step {
                    continue;
                }
                let e = Elem { series: i, v: pt.v };
                let (k_lim, ratio) = match a.op {
                    AggOp::LimitRatio => {
                        if p == 0.0 {
                            skip_step = true;
                            continue;
                        }
                        (0usize, p.clamp(-1.0, 1.0))
                    }
                    _ => {
                        let kk = (p as i64).min(input.len() as i64);
                        if kk < 1 {
                            skip_step = true;
                            continue;
                        }
                        (kk as usize, 0.0)
                    }
                };
                let g = group_of[i];
                let h = &mut heaps[g];
                if !seen[g] {
                    seen[g] = true;
                    match a.op {
                        AggOp::LimitRatio => {
                            if ratio_selects(ratio, ratio_offsets[i]) {
                                heap_push(h, e, less);
                            }
                        }
                        _ => h.push(e),
                    }
                    continue;
                }
                match a.op {
                    AggOp::Topk | AggOp::Bottomk => {
                        if h.len() < k_lim {
                            heap_push(h, e, less);
                        } else if better(h[0].v, e.v) || (h[0].v.is_nan() && !e.v.is_nan()) {
                            h[0] = e;
                            if k_lim > 1 {
                                heap_fix(h, 0, less);
                            }
                        }
                    }
                    AggOp::Limitk => {
                        if h.len() < k_lim {
                            heap_push(h, e, less);
                        }
                    }
                    _ => {
                        if ratio_selects(ratio, ratio_offsets[i]) {
                            heap_push(h, e, less);
                        }
                    }
                }
            }
            if skip_step {
                continue;
            }
            for (g, h) in heaps.iter_mut().enumerate() {
                if !seen[g] {
                    continue;
                }
                if matches!(a.op, AggOp::Topk | AggOp::Bottomk) && h.len() > 1 {
                    // Reverse heap order: biggest first for topk, smallest first for bottomk.
                    go_sort(h, |x, y| less(y.v, x.v));
                }
                for e in h.iter() {
                    let s = &input[e.series];
                    let slot = match (out.instant_mode(), slots[e.series]) {
                        (false, Some(x)) => x,
                        _ => {
                            let x = out.slot(&s.labels, s.drop_name);
                            slots[e.series] = Some(x);
                            x
                        }
                    };
                    out.push(slot, ts, e.v)?;
                }
            }
        }
        Ok(Val::Vector(out.finish()))
    }

    fn count_values(&self, a: &Aggregate) -> Result<Val, QueryError> {
        let Some(Expr::String(label)) = a.param.as_deref().map(|p| p.unparen()) else {
            return Err(QueryError::Execution("count_values needs a string parameter".into()));
        };
        if !label.is_utf8() || label.value.is_empty() {
            return Err(QueryError::Execution(format!("invalid label name {}", go_quote_bytes(&label.raw))));
        }
        let name = label.value.clone();
        let mut grouping = a.grouping.clone();
        if !a.without {
            grouping.push(name.clone());
            grouping.sort();
        }
        let input = self.eval_vector(&a.expr)?;
        let mut out = Assembler::new(self.start == self.end);
        let mut cursors = vec![0usize; input.len()];
        for k in 0..self.steps() {
            let ts = self.ts(k);
            let mut counts: Vec<(Arc<Labels>, u64, f64)> = Vec::new();
            let mut index: HashMap<u64, usize> = HashMap::new();
            for (i, s) in input.iter().enumerate() {
                let Some(p) = s.points.get(cursors[i]).filter(|p| p.t == ts) else { continue };
                cursors[i] += 1;
                let mut b = s.labels.builder();
                b.set(&name, &format_value(p.v));
                let labels = b.labels();
                let key = group_key(&labels, &grouping, a.without);
                match index.get(&key) {
                    Some(&g) => counts[g].2 += 1.0,
                    None => {
                        index.insert(key, counts.len());
                        counts.push((Arc::new(group_labels(&labels, &grouping, a.without)), key, 1.0));
                    }
                }
            }
            for (labels, _, n) in counts {
                let slot = out.slot(&labels, false);
                out.push(slot, ts, n)?;
            }
        }
        Ok(Val::Vector(out.finish()))
    }
}

/// Folds one value into a group (Prometheus's per-operator update rules).
fn fold(op: AggOp, g: &mut Group, f: f64, drop_name: bool) {
    if !g.seen {
        *g = Group { seen: true, value: f, mean: f, count: 1.0, drop_name, ..Group::default() };
        match op {
            AggOp::Stddev | AggOp::Stdvar => {
                g.value = if f.is_nan() || f.is_infinite() { f64::NAN } else { 0.0 }
            }
            AggOp::Quantile => g.values.push(f),
            AggOp::Group => g.value = 1.0,
            _ => {}
        }
        return;
    }
    g.drop_name |= drop_name;
    match op {
        AggOp::Sum => (g.value, g.c) = kahan_inc(f, g.value, g.c),
        AggOp::Avg => {
            g.count += 1.0;
            if !g.incremental {
                let (v, c) = kahan_inc(f, g.value, g.c);
                if !v.is_infinite() {
                    (g.value, g.c) = (v, c);
                    return;
                }
                g.incremental = true;
                g.mean = g.value / (g.count - 1.0);
                g.c /= g.count - 1.0;
            }
            let q = (g.count - 1.0) / g.count;
            (g.mean, g.c) = kahan_inc(f / g.count, q * g.mean, q * g.c);
        }
        AggOp::Max if g.value < f || g.value.is_nan() => g.value = f,
        AggOp::Min if g.value > f || g.value.is_nan() => g.value = f,
        AggOp::Count => g.count += 1.0,
        AggOp::Stddev | AggOp::Stdvar => {
            g.count += 1.0;
            let delta = f - g.mean;
            g.mean += delta / g.count;
            g.value += delta * (f - g.mean);
        }
        AggOp::Quantile => g.values.push(f),
        _ => {}
    }
}

fn heap_up(h: &mut [Elem], mut j: usize, less: fn(f64, f64) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(h[j].v, h[i].v) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [Elem], i0: usize, less: fn(f64, f64) -> bool) -> bool {
    let n = h.len();
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && less(h[j1 + 1].v, h[j1].v) {
            j = j1 + 1;
        }
        if !less(h[j].v, h[i].v) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    i > i0
}

/// `container/heap.Push`.
fn heap_push(h: &mut Vec<Elem>, e: Elem, less: fn(f64, f64) -> bool) {
    h.push(e);
    let j = h.len() - 1;
    heap_up(h, j, less);
}

/// `container/heap.Fix`.
fn heap_fix(h: &mut [Elem], i: usize, less: fn(f64, f64) -> bool) {
    if !heap_down(h, i, less) {
        heap_up(h, i, less);
    }
}

/// `limit_ratio`'s deterministic sampling: a positive ratio keeps series whose offset is below
/// it, a negative one those at or above `1 + ratio`.
fn ratio_selects(ratio: f64, offset: f64) -> bool {
    (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio)
}

/// Prometheus's label set hash (xxHash64 over its "stringlabels" encoding: each name and value
/// preceded by its length), which decides which series `limit_ratio` samples.
fn prometheus_labels_hash(labels: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(128);
    let mut put = |s: &str| {
        let n = s.len();
        if n < 255 {
            buf.push(n as u8);
        } else {
            buf.extend_from_slice(&[255, n as u8, (n >> 8) as u8, (n >> 16) as u8]);
        }
        buf.extend_from_slice(s.as_bytes());
    };
    for l in labels {
        put(l.name);
        put(l.value);
    }
    xxhash_rust::xxh64::xxh64(&buf, 0)
}
