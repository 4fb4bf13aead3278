//! Reading selectors from downsampled data: per selector, which resolution answers which part of
//! its time range ([`Evaluator::rollup_plan`], the rule in `docs/downsampling.md`), reading those
//! parts as one rollup stream per series (raw samples as rollups of one sample), and evaluating
//! range functions and plain selectors over the streams. Queries over raw data only never come
//! here, so their answers stay exactly Prometheus's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::window::Slider;
use super::{Evaluator, Series};
use crate::model::{Labels, Sample, is_stale_nan};
use crate::promql::ast::VectorSelector;
use crate::promql::engine::{QueryError, SourceResolution};
use crate::promql::functions::Func;
use crate::promql::functions::range::Window;
use crate::promql::functions::rollup as rollup_fns;
use crate::promql::value::Point;
use crate::storage::SelectHints;
use crate::storage::rollup::{Aggregates, Coverage, Rollup, window_end};

/// Fewest rollups a range-function window should hold under `auto`.
pub(crate) const POINTS_PER_WINDOW: i64 = 5;

/// A part `(lo, hi]` of a selector's time range and the resolution answering it (0: raw).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) lo: i64,
    pub(crate) hi: i64,
    pub(crate) resolution: i64,
}

/// One series read through a plan: its rollups in time order, read lazily.
pub(crate) type RollupStream = (Arc<Labels>, Box<dyn Iterator<Item = Rollup> + Send>);

/// Chooses, for `(lo, hi]`, the resolution of each part: the coarsest available at or below
/// `preferred`; where none is, the finest available above it. Borders between resolutions move
/// up to the coarser one's window end, so no window is read twice or cut. `None` when raw data
/// answers everything (or nothing answers).
pub(crate) fn plan(coverage: &[Coverage], preferred: i64, lo: i64, hi: i64) -> Option<Vec<Segment>> {
    if coverage.iter().all(|c| c.resolution == 0) || hi <= lo {
        return None;
    }
    let mut cuts: Vec<i64> = vec![lo, hi];
    for c in coverage {
        for &(s, e) in &c.ranges {
            cuts.extend([s, e].into_iter().filter(|&x| x > lo && x < hi));
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut segs: Vec<Segment> = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let available =
            coverage.iter().filter(|c| c.ranges.iter().any(|&(s, e)| s <= a && e >= b)).map(|c| c.resolution);
        let (mut below, mut above): (Option<i64>, Option<i64>) = (None, None);
        for r in available {
            if r <= preferred {
                below = below.max(Some(r));
            } else {
                above = Some(above.map_or(r, |x: i64| x.min(r)));
            }
        }
        let Some(resolution) = below.or(above) else { continue };
        match segs.last_mut() {
            Some(last) if last.resolution == resolution && last.hi == a => last.hi = b,
            _ => segs.push(Segment { lo: a, hi: b, resolution }),
        }
    }
    // Move each border between resolutions to a window end of the coarser one.
    for i in 1..segs.len() {
        if segs[i - 1].hi != segs[i].lo {
            continue;
        }
        let coarser = segs[i - 1].resolution.max(segs[i].resolution);
        if coarser > 0 {
            let border = window_end(segs[i].lo, coarser).min(segs[i].hi);
            segs[i - 1].hi = border;
            segs[i].lo = border;
        }
    }
    segs.retain(|s| s.hi > s.lo);
    if segs.iter().all(|s| s.resolution == 0) {
        return None;
    }
    Some(segs)
}

fn fmt_time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn fmt_resolution(ms: i64) -> String {
    if ms == 0 {
        "raw data".into()
    } else {
        format!("{} rollups", crate::model::format_duration(Duration::from_millis(ms as u64)))
    }
}

impl Evaluator<'_, '_> {
    /// The resolution a selector would like: `func` is the range function reading it (`None`
    /// for a plain selector), `range` its window.
    fn preferred_resolution(&self, func: Option<Func>, range: i64) -> i64 {
        let step = if self.start == self.end { 0 } else { self.interval };
        match self.ctx.source {
            SourceResolution::Raw => 0,
            SourceResolution::Max(r) => r,
            // Instant queries (alerting and recording rules among them) evaluate at any time,
            // rarely on a window border: raw data where it exists.
            SourceResolution::Auto if step == 0 => 0,
            SourceResolution::Auto => match func {
                // Rollups answer this function only as an approximation: raw where it exists.
                Some(f) if rollup_fns::needs(f).is_none() => 0,
                Some(_) => (range / POINTS_PER_WINDOW).min(step),
                None => step,
            },
        }
    }

    /// Where the data of a selector over `[mint, maxt]` comes from, or `None` for raw only.
    pub(super) fn rollup_plan(
        &self,
        func: Option<Func>,
        range: i64,
        mint: i64,
        maxt: i64,
    ) -> Option<Vec<Segment>> {
        if self.ctx.source == SourceResolution::Raw {
            return None;
        }
        let coverage = self.ctx.coverage();
        plan(&coverage, self.preferred_resolution(func, range), mint - 1, maxt)
    }

    /// Reads `vs` through `plan`, series by series (label order), each series' parts chained
    /// lazily. Staleness markers of raw parts are kept only with `keep_stale`.
    pub(super) fn select_rollups(
        &self,
        vs: &VectorSelector,
        plan: &[Segment],
        need: Aggregates,
        hints: &SelectHints,
        keep_stale: bool,
    ) -> Result<Vec<RollupStream>, QueryError> {
        type Part = Box<dyn Iterator<Item = Rollup> + Send>;
        let mut by_labels: BTreeMap<Arc<Labels>, Vec<Part>> = BTreeMap::new();
        for seg in plan {
            let (lo, hi) = (seg.lo, seg.hi);
            if seg.resolution == 0 {
                for s in self.select(vs, lo + 1, hi, hints)? {
                    let part = s
                        .samples
                        .filter(move |p| p.t > lo && p.t <= hi && (keep_stale || !is_stale_nan(p.v)))
                        .map(|p| Rollup::of_sample(p.t, p.v));
                    by_labels.entry(s.labels).or_default().push(Box::new(part));
                }
            } else {
                let Some(q) = self.ctx.storage.rollup_querier(seg.resolution, lo + 1, hi)? else {
                    continue;
                };
                let mut lists = vec![q.select(&vs.matchers, need)?];
                for alt in &vs.alternatives {
                    lists.push(q.select(alt, need)?);
                }
                for s in lists.into_iter().flatten() {
                    let part = s.rollups.filter(move |r| r.t > lo && r.t <= hi);
                    by_labels.entry(s.labels).or_default().push(Box::new(part));
                }
            }
        }
        let used: Vec<String> = plan
            .iter()
            .map(|s| format!("{} for {} to {}", fmt_resolution(s.resolution), fmt_time(s.lo), fmt_time(s.hi)))
            .collect();
        self.ctx
            .annotations
            .borrow_mut()
            .info(format!("downsampled data answered: {}", used.join(", ")), vs.span);
        Ok(by_labels
            .into_iter()
            .map(|(labels, parts)| {
                let mut last = i64::MIN;
                let chained = parts.into_iter().flatten().filter(move |r| {
                    let keep = r.t > last;
                    last = last.max(r.t);
                    keep
                });
                (labels, Box::new(chained) as Part)
            })
            .collect())
    }

    /// `func` over rollup streams, per step; the same windows as over raw samples. Each series
    /// is read once, holding only the rollups of the current window.
    pub(super) fn range_over_rollups(
        &self,
        func: Func,
        streams: Vec<RollupStream>,
        range: i64,
        offset: i64,
        at: Option<i64>,
    ) -> Result<Vec<Series>, QueryError> {
        let n = self.steps();
        let drop_name = !matches!(func, Func::LastOverTime | Func::FirstOverTime);
        let mut out = Vec::with_capacity(streams.len());
        for (labels, rollups) in streams {
            self.ctx.check_time("expression evaluation")?;
            let mut window = Slider::new(rollups);
            let mut points = Vec::new();
            for k in 0..n {
                if k % 256 == 255 {
                    self.ctx.check_time("expression evaluation")?;
                }
                let ts = at.unwrap_or_else(|| self.ts(k));
                window.advance(self.ctx, ts - offset, range, |r| r.t, |_| true)?;
                let w = Window { samples: &[], ts, eval_ts: self.ts(k), range, offset };
                if let Some(v) = rollup_fns::eval(func, window.current(), &w) {
                    points.push(Point { t: self.ts(k), v });
                }
            }
            window.release(self.ctx);
            if !points.is_empty() {
                self.ctx.add_samples(points.len())?;
                out.push(Series { labels, points, drop_name });
            }
        }
        Ok(out)
    }

    /// A plain selector over rollup streams: per step the last value of the newest window at or
    /// before it, looking back the lookback delta plus the resolution of the part it lies in
    /// (a window's last sample can be up to one resolution older than the step).
    pub(super) fn selector_over_rollups(
        &self,
        vs: &VectorSelector,
        plan: &[Segment],
        streams: Vec<RollupStream>,
        at: Option<i64>,
        sample_time: bool,
    ) -> Result<Vec<Series>, QueryError> {
        let n = self.steps();
        let lookback_at = |t: i64| {
            let res = plan.iter().find(|s| t > s.lo && t <= s.hi).map_or(0, |s| s.resolution);
            self.ctx.lookback + res
        };
        let mut out = Vec::with_capacity(streams.len());
        for (labels, rollups) in streams {
            self.ctx.check_time("expression evaluation")?;
            let mut it = rollups.peekable();
            let mut latest: Option<Rollup> = None;
            let mut points = Vec::new();
            for k in 0..n {
                let r = at.unwrap_or_else(|| self.ts(k)) - vs.offset;
                while let Some(x) = it.next_if(|x| x.t <= r) {
                    latest = Some(x);
                }
                let Some(p) = latest else { continue };
                if p.t > r - lookback_at(p.t) && !is_stale_nan(p.last) {
                    let v = if sample_time { p.t as f64 / 1000.0 } else { p.last };
                    points.push(Point { t: self.ts(k), v });
                }
            }
            if !points.is_empty() {
                self.ctx.add_samples(points.len())?;
                out.push(Series { labels, points, drop_name: false });
            }
        }
        Ok(out)
    }
}

/// Rollups as samples (each window's last value), for functions rollups cannot answer when
/// nothing finer is left.
pub(crate) fn as_samples(rollups: impl Iterator<Item = Rollup>) -> impl Iterator<Item = Sample> {
    rollups.map(|r| Sample { t: r.t, v: r.last })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cov(res: i64, ranges: &[(i64, i64)]) -> Coverage {
        Coverage { resolution: res, ranges: ranges.to_vec() }
    }

    #[test]
    fn plans_take_the_coarsest_allowed_and_fall_back_where_it_is_missing() {
        let c = vec![cov(0, &[(700, i64::MAX)]), cov(10, &[(0, 900)]), cov(100, &[(0, 600)])];
        // auto allows 100: 100 where it exists, then 10, then raw.
        let p = plan(&c, 100, 0, 1000).unwrap();
        assert_eq!(
            p,
            vec![
                Segment { lo: 0, hi: 600, resolution: 100 },
                Segment { lo: 600, hi: 900, resolution: 10 },
                Segment { lo: 900, hi: 1000, resolution: 0 },
            ]
        );
        // Raw preferred: raw where it is, 10 before it (the finest above), border on a 10 window.
        let p = plan(&c, 0, 0, 1000).unwrap();
        assert_eq!(
            p,
            vec![Segment { lo: 0, hi: 700, resolution: 10 }, Segment { lo: 700, hi: 1000, resolution: 0 }]
        );
        let c2 = vec![cov(0, &[(705, i64::MAX)]), cov(10, &[(0, 900)])];
        let p = plan(&c2, 0, 0, 1000).unwrap();
        assert_eq!(p[0], Segment { lo: 0, hi: 710, resolution: 10 });
        assert_eq!(p[1].lo, 710);
        // Everything raw: no plan.
        assert_eq!(plan(&c, 0, 800, 1000), None);
        assert_eq!(plan(&[cov(0, &[(0, i64::MAX)])], 100, 0, 1000), None);
    }
}
