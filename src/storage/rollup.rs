//! Downsampled data as the storage interfaces see it: one [`Rollup`] per series and window of a
//! resolution, how raw samples fold into one ([`RollupBuilder`]), how consecutive rollups join
//! (counter resets and value changes between windows), and the read interface
//! ([`RollupQuerier`]) that storage layers offer beside the raw one. Nothing here knows how
//! rollups are stored (`tsdb` writes them into blocks) or queried (`promql` plans and evaluates).
//!
//! Windows are left-open and aligned to the resolution, `(k·R, (k+1)·R]`, like PromQL's range
//! windows `(t - range, t]`: a range whose ends are multiples of the resolution holds exactly
//! the raw samples of the windows inside it, which is what makes aggregates over aligned ranges
//! exact. Staleness markers are left out of every aggregate, as range functions leave them out.

use std::fmt;
use std::sync::Arc;

use crate::model::{Labels, Matcher, is_stale_nan};

use super::StorageError;

/// The aggregates of one series over one window. `t` is the timestamp of the window's last raw
/// sample (the rollup's own timestamp) and `first_t` that of its first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rollup {
    pub t: i64,
    pub first_t: i64,
    /// Raw samples in the window.
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The first and last raw values.
    pub first: f64,
    pub last: f64,
    /// Counter increase from the first to the last sample, resets adjusted as `rate` adjusts
    /// them (a decrease means the counter restarted from zero).
    pub inc: f64,
    /// Decreases between consecutive samples inside the window (`resets`).
    pub resets: u64,
    /// Value changes between consecutive samples inside the window (`changes`).
    pub changes: u64,
}

impl Rollup {
    /// A raw sample as a rollup of one sample, so raw data and rollups can feed one evaluation.
    pub fn of_sample(t: i64, v: f64) -> Rollup {
        Rollup {
            t,
            first_t: t,
            count: 1,
            sum: v,
            min: v,
            max: v,
            first: v,
            last: v,
            inc: 0.0,
            resets: 0,
            changes: 0,
        }
    }

    /// Counter increase from `prev`'s last sample to this rollup's first: a decrease is a reset.
    pub fn counter_step(prev: &Rollup, next: &Rollup) -> f64 {
        if next.first < prev.last { next.first } else { next.first - prev.last }
    }

    /// Whether the value changed between `prev`'s last sample and this rollup's first, as
    /// `changes` counts (two NaNs are no change).
    pub fn changed(prev: &Rollup, next: &Rollup) -> bool {
        next.first != prev.last && !(next.first.is_nan() && prev.last.is_nan())
    }

    /// Folds `next` (later, adjacent) into `self`: the rollup of both windows together.
    pub fn absorb(&mut self, next: &Rollup) {
        self.inc += Rollup::counter_step(self, next) + next.inc;
        self.resets += next.resets + u64::from(next.first < self.last);
        self.changes += next.changes + u64::from(Rollup::changed(self, next));
        self.count += next.count;
        self.sum += next.sum;
        self.min = pick_min(self.min, next.min);
        self.max = pick_max(self.max, next.max);
        self.last = next.last;
        self.t = next.t;
    }
}

/// `min` as `min_over_time` takes it: a number always beats NaN.
fn pick_min(a: f64, b: f64) -> f64 {
    if b < a || a.is_nan() { b } else { a }
}

fn pick_max(a: f64, b: f64) -> f64 {
    if b > a || a.is_nan() { b } else { a }
}

/// The window (by its end) that a timestamp belongs to at `resolution`: `t` in `(end - R, end]`.
pub fn window_end(t: i64, resolution: i64) -> i64 {
    let k = (t - 1).div_euclid(resolution);
    (k + 1) * resolution
}

/// Folds one series' raw samples, in time order, into rollups of `resolution`.
#[derive(Debug)]
pub struct RollupBuilder {
    resolution: i64,
    current: Option<(i64, Rollup)>,
}

impl RollupBuilder {
    pub fn new(resolution: i64) -> RollupBuilder {
        RollupBuilder { resolution, current: None }
    }

    /// Adds one sample; returns the previous window's rollup when this sample starts a new one.
    pub fn push(&mut self, t: i64, v: f64) -> Option<Rollup> {
        if is_stale_nan(v) {
            return None;
        }
        let end = window_end(t, self.resolution);
        match &mut self.current {
            Some((e, r)) if *e == end => {
                r.absorb(&Rollup::of_sample(t, v));
                None
            }
            _ => self.current.replace((end, Rollup::of_sample(t, v))).map(|(_, r)| r),
        }
    }

    /// The last window's rollup.
    pub fn finish(self) -> Option<Rollup> {
        self.current.map(|(_, r)| r)
    }
}

/// One series' rollups over the asked range, in time order.
pub struct RollupSeries {
    pub labels: Arc<Labels>,
    pub rollups: Box<dyn Iterator<Item = Rollup> + Send>,
}

impl fmt::Debug for RollupSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollupSeries").field("labels", &self.labels).finish_non_exhaustive()
    }
}

/// Which aggregates a reader needs; storage may skip decoding the others (their fields are
/// then zero). The timestamps are always there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Aggregates(pub u16);

impl Aggregates {
    pub const COUNT: Aggregates = Aggregates(1);
    pub const SUM: Aggregates = Aggregates(1 << 1);
    pub const MIN: Aggregates = Aggregates(1 << 2);
    pub const MAX: Aggregates = Aggregates(1 << 3);
    pub const FIRST: Aggregates = Aggregates(1 << 4);
    pub const LAST: Aggregates = Aggregates(1 << 5);
    pub const INC: Aggregates = Aggregates(1 << 6);
    pub const RESETS: Aggregates = Aggregates(1 << 7);
    pub const CHANGES: Aggregates = Aggregates(1 << 8);
    pub const ALL: Aggregates = Aggregates(0x1ff);

    pub const fn with(self, other: Aggregates) -> Aggregates {
        Aggregates(self.0 | other.0)
    }

    pub fn has(self, other: Aggregates) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Reads the rollups of one resolution over a fixed time range `[mint, maxt]` (rollup
/// timestamps, inclusive).
pub trait RollupQuerier: Send + Sync {
    /// Series matching every matcher that have rollups in the range, sorted by labels.
    fn select(&self, matchers: &[Matcher], need: Aggregates) -> Result<Vec<RollupSeries>, StorageError>;
}

/// Where a storage holds data of one resolution: `resolution` 0 is raw data; `ranges` are the
/// time ranges `(start, end]` it covers, sorted and disjoint. For rollups a range's ends are
/// window ends; raw data's is `(oldest sample - 1, +∞)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub resolution: i64,
    pub ranges: Vec<(i64, i64)>,
}

impl Coverage {
    /// The coverage of `ranges` `(start, end]` in any order, touching and overlapping ones
    /// joined.
    pub fn from_ranges(resolution: i64, mut ranges: Vec<(i64, i64)>) -> Coverage {
        ranges.sort_unstable();
        let mut out: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        Coverage { resolution, ranges: out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(res: i64, samples: &[(i64, f64)]) -> Vec<Rollup> {
        let mut b = RollupBuilder::new(res);
        let mut out: Vec<Rollup> = samples.iter().filter_map(|&(t, v)| b.push(t, v)).collect();
        out.extend(b.finish());
        out
    }

    #[test]
    fn windows_are_left_open_and_aligned() {
        assert_eq!(window_end(1, 10), 10);
        assert_eq!(window_end(10, 10), 10);
        assert_eq!(window_end(11, 10), 20);
        assert_eq!(window_end(0, 10), 0);
        assert_eq!(window_end(-5, 10), 0);
        let r = build(10, &[(5, 1.0), (10, 2.0), (11, 3.0)]);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].first_t, r[0].t, r[0].count, r[0].sum), (5, 10, 2, 3.0));
        assert_eq!((r[1].first_t, r[1].t, r[1].count), (11, 11, 1));
    }

    #[test]
    fn counters_keep_their_increase_across_resets_and_windows() {
        // 0,5,10 | 2(reset),4 | 1(reset) : increase 10 + 2 + 2 + 1 = 15 over 2 resets.
        let s = [(1, 0.0), (2, 5.0), (3, 10.0), (11, 2.0), (12, 4.0), (21, 1.0)];
        let r = build(10, &s);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].inc, 10.0);
        let mut all = r[0];
        all.absorb(&r[1]);
        all.absorb(&r[2]);
        assert_eq!(all.inc, 15.0);
        assert_eq!(all.resets, 2);
        assert_eq!(all.changes, 5);
        assert_eq!((all.count, all.min, all.max, all.first, all.last), (6, 0.0, 10.0, 0.0, 1.0));
        // The same as building one window over everything.
        assert_eq!(build(100, &s)[0], all);
    }

    #[test]
    fn staleness_markers_are_left_out() {
        let r = build(10, &[(1, 1.0), (2, crate::model::STALE_NAN), (3, 3.0)]);
        assert_eq!((r[0].count, r[0].sum), (2, 4.0));
    }

    #[test]
    fn coverage_joins_ranges() {
        let c = Coverage::from_ranges(10, vec![(20, 30), (0, 10), (10, 20), (50, 60), (52, 55)]);
        assert_eq!(c.ranges, vec![(0, 30), (50, 60)]);
    }
}
