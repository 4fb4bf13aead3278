//! Range functions over rollups (downsampled windows) instead of raw samples: which functions
//! an aggregate answers ([`needs`]) and their values ([`eval`]). A raw sample enters as a
//! rollup of one sample, so a window mixing rollups and raw samples is one computation.
//!
//! Over windows aligned to the rollups' resolution the answers equal the raw ones: `count`,
//! `sum`, `min`, `max`, `avg`, `first`, `last`, `changes` and `resets` from their aggregates and
//! the values at window borders; `rate`, `increase` and `delta` from the first and last samples,
//! the sample count and the counter increase, exactly as Prometheus extrapolates them.

use super::Func;
use super::range::{Change, Window, extrapolate};
use super::stats::kahan_inc;
use crate::model::Sample;
use crate::storage::rollup::{Aggregates, Rollup};

/// The aggregates `func` needs from rollups, or `None` when rollups cannot answer it exactly
/// (`quantile_over_time`, `stddev_over_time`, `deriv`, `irate`, …).
pub(crate) fn needs(func: Func) -> Option<Aggregates> {
    let a = Aggregates::COUNT;
    Some(match func {
        Func::Rate | Func::Increase => a.with(Aggregates::FIRST).with(Aggregates::LAST).with(Aggregates::INC),
        Func::Delta => a.with(Aggregates::FIRST).with(Aggregates::LAST),
        Func::CountOverTime | Func::PresentOverTime | Func::AbsentOverTime => a,
        Func::SumOverTime => Aggregates::SUM,
        Func::AvgOverTime => a.with(Aggregates::SUM),
        Func::MinOverTime => Aggregates::MIN,
        Func::MaxOverTime => Aggregates::MAX,
        Func::LastOverTime => Aggregates::LAST,
        Func::FirstOverTime => Aggregates::FIRST,
        Func::TsOfFirstOverTime | Func::TsOfLastOverTime => Aggregates::default(),
        Func::Changes => Aggregates::CHANGES.with(Aggregates::FIRST).with(Aggregates::LAST),
        Func::Resets => Aggregates::RESETS.with(Aggregates::FIRST).with(Aggregates::LAST),
        _ => return None,
    })
}

/// `func` over the rollups in the window `w` (its `samples` unused); `None` when the window has
/// no value. Only functions [`needs`] accepts.
pub(crate) fn eval(func: Func, r: &[Rollup], w: &Window<'_>) -> Option<f64> {
    let (first, last) = (r.first()?, r.last()?);
    let count: u64 = r.iter().map(|x| x.count).sum();
    Some(match func {
        Func::Rate | Func::Increase | Func::Delta => {
            if count < 2 {
                return None;
            }
            let counter = func != Func::Delta;
            let change = if counter {
                let steps: f64 = r.windows(2).map(|p| Rollup::counter_step(&p[0], &p[1])).sum();
                r.iter().map(|x| x.inc).sum::<f64>() + steps
            } else {
                last.last - first.first
            };
            let c = Change {
                first: Sample { t: first.first_t, v: first.first },
                last: Sample { t: last.t, v: last.last },
                samples: count,
                change,
            };
            extrapolate(&c, w, counter, func == Func::Rate)
        }
        Func::CountOverTime => count as f64,
        Func::PresentOverTime | Func::AbsentOverTime => 1.0,
        Func::SumOverTime => kahan_sum(r.iter().map(|x| x.sum)),
        Func::AvgOverTime => kahan_sum(r.iter().map(|x| x.sum)) / count as f64,
        Func::MinOverTime => {
            r.iter().map(|x| x.min).fold(f64::NAN, |a, b| if b < a || a.is_nan() { b } else { a })
        }
        Func::MaxOverTime => {
            r.iter().map(|x| x.max).fold(f64::NAN, |a, b| if b > a || a.is_nan() { b } else { a })
        }
        Func::LastOverTime => last.last,
        Func::FirstOverTime => first.first,
        Func::TsOfFirstOverTime => first.first_t as f64 / 1000.0,
        Func::TsOfLastOverTime => last.t as f64 / 1000.0,
        Func::Changes => {
            let between = r.windows(2).filter(|p| Rollup::changed(&p[0], &p[1])).count() as u64;
            (r.iter().map(|x| x.changes).sum::<u64>() + between) as f64
        }
        Func::Resets => {
            let between = r.windows(2).filter(|p| p[1].first < p[0].last).count() as u64;
            (r.iter().map(|x| x.resets).sum::<u64>() + between) as f64
        }
        _ => return None,
    })
}

fn kahan_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for v in values {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::functions::range::{self, RangeNote};
    use crate::storage::rollup::RollupBuilder;

    /// Raw samples: a counter with resets, scraped every 15 s with a little jitter.
    fn samples() -> Vec<Sample> {
        let mut v = 0.0;
        (1..2000i64)
            .map(|i| {
                v = if i % 333 == 0 { 3.0 } else { v + (i % 11) as f64 };
                Sample { t: i * 15_000 + (i * 7) % 900, v }
            })
            .collect()
    }

    fn rollups(s: &[Sample], res: i64) -> Vec<Rollup> {
        let mut b = RollupBuilder::new(res);
        let mut out: Vec<Rollup> = s.iter().filter_map(|p| b.push(p.t, p.v)).collect();
        out.extend(b.finish());
        out
    }

    #[test]
    fn aligned_windows_over_rollups_equal_raw_answers() {
        let raw = samples();
        let res = 300_000;
        let ru = rollups(&raw, res);
        let funcs = [
            Func::Rate,
            Func::Increase,
            Func::Delta,
            Func::CountOverTime,
            Func::SumOverTime,
            Func::AvgOverTime,
            Func::MinOverTime,
            Func::MaxOverTime,
            Func::LastOverTime,
            Func::FirstOverTime,
            Func::TsOfFirstOverTime,
            Func::TsOfLastOverTime,
            Func::Changes,
            Func::Resets,
            Func::PresentOverTime,
        ];
        for range in [res, 6 * res, 12 * res] {
            for k in 1..=8 {
                let ts = 3_600_000 * k;
                let in_raw: Vec<Sample> =
                    raw.iter().copied().filter(|p| p.t > ts - range && p.t <= ts).collect();
                let in_ru: Vec<Rollup> =
                    ru.iter().copied().filter(|r| r.t > ts - range && r.t <= ts).collect();
                let w = Window { samples: &in_raw, ts, eval_ts: ts, range, offset: 0 };
                for f in funcs {
                    let mut notes: Vec<RangeNote> = Vec::new();
                    let want = range::eval(f, &w, &[], &mut notes).unwrap();
                    let got = eval(f, &in_ru, &w);
                    match (want, got) {
                        (Some(a), Some(b)) => {
                            assert!(
                                (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                                "{f:?} range {range} at {ts}: {a} vs {b}"
                            )
                        }
                        (a, b) => assert_eq!(a, b, "{f:?} range {range} at {ts}"),
                    }
                }
            }
        }
    }

    #[test]
    fn raw_samples_as_rollups_give_the_raw_answer() {
        let raw = samples();
        let as_rollups: Vec<Rollup> = raw.iter().map(|p| Rollup::of_sample(p.t, p.v)).collect();
        let (ts, range) = (7_777_777, 1_234_567);
        let in_raw: Vec<Sample> = raw.iter().copied().filter(|p| p.t > ts - range && p.t <= ts).collect();
        let in_ru: Vec<Rollup> =
            as_rollups.iter().copied().filter(|r| r.t > ts - range && r.t <= ts).collect();
        let w = Window { samples: &in_raw, ts, eval_ts: ts, range, offset: 0 };
        for f in [Func::Rate, Func::Increase, Func::Resets, Func::Changes, Func::SumOverTime] {
            let want = range::eval(f, &w, &[], &mut Vec::new()).unwrap();
            assert_eq!(want, eval(f, &in_ru, &w), "{f:?}");
        }
    }
}
