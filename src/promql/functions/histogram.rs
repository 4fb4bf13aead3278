//! Classic (`_bucket`/`le`) histogram maths: `histogram_quantile` and `histogram_fraction` over
//! one histogram's buckets, with Prometheus's fix-ups for non-monotonic bucket counts.

use super::stats::almost_equal;

/// One bucket: upper bound (`le`) and cumulative count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) upper: f64,
    pub(crate) count: f64,
}

/// Relative bucket differences below this are float noise and ignored.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// Details of a monotonicity fix, for the info annotation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct MonotonicityFix {
    pub(crate) min_bucket: f64,
    pub(crate) max_bucket: f64,
    pub(crate) max_diff: f64,
}

fn sort_and_coalesce(buckets: &mut Vec<Bucket>) {
    buckets.sort_by(|a, b| a.upper.partial_cmp(&b.upper).unwrap_or(std::cmp::Ordering::Equal));
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.drain(..) {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(b),
        }
    }
    *buckets = out;
}

/// Removes decreases between consecutive buckets; reports whether real ones were found.
fn ensure_monotonic(buckets: &mut [Bucket]) -> Option<MonotonicityFix> {
    let mut fix = MonotonicityFix { min_bucket: f64::INFINITY, max_bucket: f64::NEG_INFINITY, max_diff: 0.0 };
    let mut forced = false;
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let cur = b.count;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, SMALL_DELTA_TOLERANCE) {
            b.count = prev;
            continue;
        }
        if cur < prev {
            b.count = prev;
            forced = true;
            fix.min_bucket = fix.min_bucket.min(b.upper);
            fix.max_bucket = fix.max_bucket.max(b.upper);
            fix.max_diff = fix.max_diff.max(prev - cur);
            continue;
        }
        prev = cur;
    }
    forced.then_some(fix)
}

/// The `q` quantile of a classic histogram, interpolating linearly within the bucket.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, Option<MonotonicityFix>) {
    if q.is_nan() {
        return (f64::NAN, None);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, None);
    }
    if q > 1.0 {
        return (f64::INFINITY, None);
    }
    buckets.sort_by(|a, b| a.upper.partial_cmp(&b.upper).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return (f64::NAN, None);
    }
    sort_and_coalesce(buckets);
    let fix = ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return (f64::NAN, fix);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, fix);
    }
    let mut rank = q * observations;
    // First bucket (excluding the +Inf one) whose count reaches the rank.
    let n = buckets.len() - 1;
    let b = buckets[..n].partition_point(|x| x.count < rank);
    let v = if b == n {
        buckets[n - 1].upper
    } else if b == 0 && buckets[0].upper <= 0.0 {
        buckets[0].upper
    } else {
        let mut start = 0.0;
        let end = buckets[b].upper;
        let mut count = buckets[b].count;
        if b > 0 {
            start = buckets[b - 1].upper;
            count -= buckets[b - 1].count;
            rank -= buckets[b - 1].count;
        }
        start + (end - start) * (rank / count)
    };
    (v, fix)
}

/// The fraction of observations between `lower` and `upper` in a classic histogram.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    buckets.sort_by(|a, b| a.upper.partial_cmp(&b.upper).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return f64::NAN;
    }
    sort_and_coalesce(buckets);
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].upper <= 0.0 { f64::NEG_INFINITY } else { 0.0 };
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].upper;
        }
        let upper_bound = b.upper;
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                b.count
            } else {
                rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(list: &[(f64, f64)]) -> Vec<Bucket> {
        list.iter().map(|&(upper, count)| Bucket { upper, count }).collect()
    }

    #[test]
    fn quantile_interpolates() {
        let mut bs = b(&[(0.1, 10.0), (0.5, 50.0), (f64::INFINITY, 100.0)]);
        assert_eq!(bucket_quantile(0.3, &mut bs).0, 0.1 + 0.4 * 0.5);
        let mut bs = b(&[(1.0, 10.0), (f64::INFINITY, 100.0)]);
        assert_eq!(bucket_quantile(0.99, &mut bs).0, 1.0);
        let mut bs = b(&[(1.0, 10.0), (2.0, 5.0), (f64::INFINITY, 20.0)]);
        assert!(bucket_quantile(0.5, &mut bs).1.is_some());
    }

    #[test]
    fn fraction_between_bounds() {
        let mut bs = b(&[(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)]);
        assert_eq!(bucket_fraction(0.0, 1.0, &mut bs), 0.5);
        assert_eq!(bucket_fraction(1.5, f64::INFINITY, &mut bs), 0.25);
    }
}
