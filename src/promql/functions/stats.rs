//! Numeric building blocks with Prometheus's exact arithmetic: Kahan–Neumaier summation,
//! quantiles by linear interpolation, linear regression, and the float comparison tolerance of
//! its test harness.

/// Adds `inc` to the compensated sum `(sum, c)` (Kahan summation with Neumaier's improvement).
#[inline]
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The `q` quantile of `values` (sorted in place), interpolating between neighbours. NaN for no
/// values or a NaN `q`; -Inf below 0, +Inf above 1.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as Prometheus's sort by value does.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Least-squares slope and intercept (at `intercept_t`) of `(t, v)` points, with Kahan sums.
pub fn linear_regression(points: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in points.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov_xy = sxy - sx * sy / n;
    let var_x = sx2 - sx * sx / n;
    let slope = cov_xy / var_x;
    (slope, sy / n - slope * sx / n)
}

const MIN_NORMAL: f64 = f64::MIN_POSITIVE;

/// Whether `a` and `b` are equal within relative tolerance `epsilon` (both NaN counts as equal;
/// the staleness marker equals only itself).
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    use crate::model::is_stale_nan;
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kahan_recovers_small_terms() {
        let mut s = (0.0, 0.0);
        for v in [1e100, 1.0, -1e100] {
            s = kahan_inc(v, s.0, s.1);
        }
        assert_eq!(s.0 + s.1, 1.0);
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(0.5, &mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(quantile(0.25, &mut [0.0, 1.0]), 0.25);
        assert!(quantile(0.5, &mut []).is_nan());
        assert_eq!(quantile(-1.0, &mut [1.0]), f64::NEG_INFINITY);
    }

    #[test]
    fn regression_of_a_line() {
        let (slope, icpt) = linear_regression(&[(0, 1.0), (1000, 3.0), (2000, 5.0)], 0);
        assert!(almost_equal(slope, 2.0, 1e-12) && almost_equal(icpt, 1.0, 1e-12));
    }
}
