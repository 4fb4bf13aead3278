//! `histogram_quantile`, `histogram_quantiles` and `histogram_fraction` over classic
//! (`_bucket`/`le`) histograms: bucket series grouped by their labels without `le`, per step.

use std::collections::HashMap;
use std::sync::Arc;

use super::call::{invalid_quantile, string_arg};
use super::{Assembler, Evaluator, Series, Val};
use crate::model::Labels;
use crate::promql::ast::{Call, Span};
use crate::promql::engine::QueryError;
use crate::promql::functions::go::{go_format_g, parse_go_float};
use crate::promql::functions::histogram::{Bucket, MonotonicityFix, bucket_fraction, bucket_quantile};
use crate::promql::value::Point;

/// Per input series its histogram group and bucket bound (`None`: bad `le`), and each group's
/// output labels.
type BucketGroups = (Vec<Option<(usize, f64)>>, Vec<Arc<Labels>>);

impl Evaluator<'_, '_> {
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

    pub(super) fn histogram_quantile(&self, c: &Call) -> Result<Val, QueryError> {
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
    pub(super) fn histogram_quantiles(&self, c: &Call) -> Result<Val, QueryError> {
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
        let mut out = Assembler::new(self.start == self.end);
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

    pub(super) fn histogram_fraction(&self, c: &Call) -> Result<Val, QueryError> {
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

    fn add(&mut self, ts: i64, fix: MonotonicityFix) {
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

/// Go's `%.2g`: two significant digits, exponent form outside 1e-4 … 1e2.
fn go_g2(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return crate::promql::functions::go::go_float_g(v);
    }
    let e = format!("{v:.1e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..2).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = (1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
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

/// The grouping signature of classic histogram buckets: all labels but `names`, name included.
fn signature_with_name(labels: &Labels, names: &[String]) -> u64 {
    crate::model::hash_label_pairs(
        labels.iter().filter(|l| !names.iter().any(|n| n == l.name)).map(|l| (l.name, l.value)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_significant_digits_like_go() {
        assert_eq!(go_g2(0.5), "0.5");
        assert_eq!(go_g2(1.0), "1");
        assert_eq!(go_g2(10.0), "10");
        assert_eq!(go_g2(123.0), "1.2e+02");
        assert_eq!(go_g2(0.001234), "0.0012");
        assert_eq!(go_g2(0.00001234), "1.2e-05");
    }
}
