//! Functions over a range window of one series (`rate`, `*_over_time`, `deriv`, …): each takes
//! the window's samples (staleness markers already removed) and returns at most one value.

use super::Func;
use super::stats::{kahan_inc, linear_regression, quantile};
use crate::model::Sample;

/// One evaluation of a range function.
pub(crate) struct Window<'a> {
    pub(crate) samples: &'a [Sample],
    /// The time the window ends at before the offset: the evaluation time, or the `@` time.
    pub(crate) ts: i64,
    /// The evaluation step's time (differs from `ts` under `@`); `predict_linear` predicts from
    /// here.
    pub(crate) eval_ts: i64,
    pub(crate) range: i64,
    pub(crate) offset: i64,
}

/// What a range function can say besides its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RangeNote {
    InvalidQuantile(f64),
}

/// Evaluates `func` over the window; `args` are the scalar arguments at this step, in order,
/// without the range argument. `Err` is a query failure.
pub(crate) fn eval(
    func: Func,
    w: &Window<'_>,
    args: &[f64],
    notes: &mut Vec<RangeNote>,
) -> Result<Option<f64>, String> {
    let s = w.samples;
    if s.is_empty() {
        return Ok(None);
    }
    let arg = |i: usize| args.get(i).copied().unwrap_or(f64::NAN);
    Ok(match func {
        Func::Rate => extrapolated_rate(w, true, true),
        Func::Increase => extrapolated_rate(w, true, false),
        Func::Delta => extrapolated_rate(w, false, false),
        Func::Irate => instant_value(s, true),
        Func::Idelta => instant_value(s, false),
        Func::Deriv => {
            if s.len() < 2 {
                return Ok(None);
            }
            let pts: Vec<(i64, f64)> = s.iter().map(|p| (p.t, p.v)).collect();
            Some(linear_regression(&pts, s[0].t).0)
        }
        Func::PredictLinear => {
            if s.len() < 2 {
                return Ok(None);
            }
            let pts: Vec<(i64, f64)> = s.iter().map(|p| (p.t, p.v)).collect();
            let (slope, intercept) = linear_regression(&pts, w.eval_ts);
            Some(slope * arg(0) + intercept)
        }
        Func::AvgOverTime => Some(avg(s)),
        Func::CountOverTime => Some(s.len() as f64),
        Func::SumOverTime => {
            let (mut sum, mut c) = (0.0, 0.0);
            for p in s {
                (sum, c) = kahan_inc(p.v, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        Func::MinOverTime => Some(extreme(s, |cur, best| cur < best).v),
        Func::MaxOverTime => Some(extreme(s, |cur, best| cur > best).v),
        Func::TsOfMinOverTime => Some(extreme(s, |cur, best| cur <= best).t as f64 / 1000.0),
        Func::TsOfMaxOverTime => Some(extreme(s, |cur, best| cur >= best).t as f64 / 1000.0),
        Func::TsOfFirstOverTime => Some(s[0].t as f64 / 1000.0),
        Func::TsOfLastOverTime => Some(s[s.len() - 1].t as f64 / 1000.0),
        Func::QuantileOverTime => {
            let q = arg(0);
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                notes.push(RangeNote::InvalidQuantile(q));
            }
            let mut values: Vec<f64> = s.iter().map(|p| p.v).collect();
            Some(quantile(q, &mut values))
        }
        Func::StddevOverTime => Some(variance(s).sqrt()),
        Func::StdvarOverTime => Some(variance(s)),
        Func::MadOverTime => {
            if s.iter().any(|p| p.v.is_nan()) {
                return Ok(Some(f64::NAN));
            }
            let mut values: Vec<f64> = s.iter().map(|p| p.v).collect();
            let median = quantile(0.5, &mut values);
            for v in &mut values {
                *v = (*v - median).abs();
            }
            Some(quantile(0.5, &mut values))
        }
        Func::LastOverTime => Some(s[s.len() - 1].v),
        Func::FirstOverTime => Some(s[0].v),
        Func::PresentOverTime | Func::AbsentOverTime => Some(1.0),
        Func::Changes => {
            let mut n = 0;
            for pair in s.windows(2) {
                let (prev, cur) = (pair[0].v, pair[1].v);
                if cur != prev && !(cur.is_nan() && prev.is_nan()) {
                    n += 1;
                }
            }
            Some(f64::from(n))
        }
        Func::Resets => {
            let n = s.windows(2).filter(|p| p[1].v < p[0].v).count();
            Some(n as f64)
        }
        Func::DoubleExponentialSmoothing => double_exponential_smoothing(s, arg(0), arg(1))?,
        other => return Err(format!("function {} does not take a range vector", other.name())),
    })
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated towards the window's
/// edges as Prometheus does — all the way when the first/last sample is within 1.1 average
/// intervals of the edge, else half an interval; counters are not extrapolated below zero.
fn extrapolated_rate(w: &Window<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let s = w.samples;
    if s.len() < 2 {
        return None;
    }
    let (first, last) = (s[0], s[s.len() - 1]);
    let mut change = last.v - first.v;
    if is_counter {
        for pair in s.windows(2) {
            if pair[1].v < pair[0].v {
                change += pair[0].v;
            }
        }
    }
    let c = Change { first, last, samples: s.len() as u64, change };
    Some(extrapolate(&c, w, is_counter, is_rate))
}

/// What `rate`, `increase` and `delta` need of a window, however it was read (raw samples or
/// rollups): its first and last samples, how many samples, and the change between the first and
/// the last (counter resets adjusted for counters).
pub(crate) struct Change {
    pub(crate) first: Sample,
    pub(crate) last: Sample,
    pub(crate) samples: u64,
    pub(crate) change: f64,
}

/// Extrapolates `c` to the edges of `w`'s range (see [`extrapolated_rate`]); `samples >= 2`.
pub(crate) fn extrapolate(c: &Change, w: &Window<'_>, is_counter: bool, is_rate: bool) -> f64 {
    let (first, last, result) = (c.first, c.last, c.change);
    let range_start = w.ts - (w.range + w.offset);
    let range_end = w.ts - w.offset;
    // A rollup window reaching before the range starts counts as starting at its edge.
    let mut to_start = ((first.t - range_start) as f64 / 1000.0).max(0.0);
    let mut to_end = ((range_end - last.t) as f64 / 1000.0).max(0.0);
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (c.samples - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if is_counter {
        let mut to_zero = to_start;
        if result > 0.0 && first.v >= 0.0 {
            to_zero = sampled * (first.v / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = if sampled != 0.0 { (sampled + to_start + to_end) / sampled } else { 1.0 };
    if is_rate {
        factor /= w.range as f64 / 1000.0;
    }
    result * factor
}

/// `irate` and `idelta`: from the last two samples.
fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (prev, last) = (s[s.len() - 2], s[s.len() - 1]);
    let dt = last.t - prev.t;
    if dt == 0 {
        return None;
    }
    let mut v = last.v;
    if !is_rate || last.v >= prev.v || last.v.is_nan() || prev.v.is_nan() {
        v = last.v - prev.v;
    }
    if is_rate {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

/// The mean with Kahan summation, switching to an incremental mean if the sum would overflow.
fn avg(s: &[Sample]) -> f64 {
    let (mut sum, mut count) = (s[0].v, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, p) in s[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(p.v, sum, c);
            if !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(p.v / count, q * mean, q * c);
    }
    if incremental { mean + c } else { sum / count + c / count }
}

/// The sample whose value wins `better` against all before it (NaN always loses to a number).
fn extreme(s: &[Sample], better: impl Fn(f64, f64) -> bool) -> Sample {
    let mut best = s[0];
    for p in s {
        if better(p.v, best.v) || best.v.is_nan() {
            best = *p;
        }
    }
    best
}

/// Population variance with compensated (Kahan) Welford updates.
fn variance(s: &[Sample]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

fn double_exponential_smoothing(s: &[Sample], sf: f64, tf: f64) -> Result<Option<f64>, String> {
    if sf <= 0.0 || sf >= 1.0 || sf.is_nan() {
        return Err(format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"));
    }
    if tf <= 0.0 || tf >= 1.0 || tf.is_nan() {
        return Err(format!("invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"));
    }
    if s.len() < 2 {
        return Ok(None);
    }
    let trend = |i: usize, s0: f64, s1: f64, b: f64| if i == 0 { b } else { tf * (s1 - s0) + (1.0 - tf) * b };
    let (mut s0, mut s1) = (0.0, s[0].v);
    let mut b = s[1].v - s[0].v;
    for (i, p) in s.iter().enumerate().skip(1) {
        let x = sf * p.v;
        b = trend(i - 1, s0, s1, b);
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Ok(Some(s1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(points: &[(i64, f64)], ts: i64, range: i64) -> Vec<Sample> {
        let _ = (ts, range);
        points.iter().map(|&(t, v)| Sample { t, v }).collect()
    }

    #[test]
    fn rate_extrapolates_to_window_edges() {
        // 0..=10 every 30s over a 5m window ending at 300s: evenly sampled, no extrapolation cap.
        let s = window(&(0..=10).map(|i| (i * 30_000, i as f64)).collect::<Vec<_>>(), 300_000, 300_000);
        let w = Window { samples: &s, ts: 300_000, eval_ts: 300_000, range: 300_000, offset: 0 };
        let mut notes = Vec::new();
        let v = eval(Func::Increase, &w, &[], &mut notes);
        // The first sample sits on the (exclusive) window start; the zero point caps extrapolation.
        assert_eq!(v, Ok(Some(10.0)));
        let r = eval(Func::Rate, &w, &[], &mut notes);
        assert_eq!(r, Ok(Some(10.0 / 300.0)));
    }

    #[test]
    fn irate_handles_resets() {
        let s = window(&[(0, 10.0), (10_000, 2.0)], 10_000, 60_000);
        let w = Window { samples: &s, ts: 10_000, eval_ts: 10_000, range: 60_000, offset: 0 };
        assert_eq!(eval(Func::Irate, &w, &[], &mut Vec::new()), Ok(Some(0.2)));
        assert_eq!(eval(Func::Idelta, &w, &[], &mut Vec::new()), Ok(Some(-8.0)));
    }
}
