//! Query-time dedup: all replicas are stored, each with its replica label; the querier presents
//! one series per replica set (the labels without the replica label). Samples come from one
//! replica at a time — the current one is kept while it has no gap longer than a penalty (twice
//! its own scrape spacing), otherwise the earliest sample of another replica is taken and that
//! replica becomes current — so a replica with a gap is not preferred and two replicas'
//! slightly different scrapes are never interleaved. For counter functions (`rate`,
//! `increase`, `irate`, `resets`), a switch that would look like a counter reset is offset away.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{Labels, Matcher, Sample, is_stale_nan};
use crate::storage::{LatestSample, Querier, Queryable, SelectHints, Series, StorageError};

/// Penalty when a series has too few samples to measure its spacing.
const DEFAULT_PENALTY_MS: i64 = 30_000;

/// A storage view that deduplicates replicas named by `replica_label`.
pub struct MergeQueryable {
    pub inner: Arc<dyn Queryable>,
    pub replica_label: String,
}

impl Queryable for MergeQueryable {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        Ok(Box::new(MergeQuerier {
            inner: self.inner.querier(mint, maxt)?,
            replica_label: self.replica_label.clone(),
        }))
    }

    fn max_time(&self) -> Option<i64> {
        self.inner.max_time()
    }
}

struct MergeQuerier {
    inner: Box<dyn Querier>,
    replica_label: String,
}

impl MergeQuerier {
    /// Matchers on the replica label select nothing meaningful after dedup; they are dropped.
    fn matchers(&self, matchers: &[Matcher]) -> Vec<Matcher> {
        matchers.iter().filter(|m| m.name != self.replica_label).cloned().collect()
    }

    fn group<T>(&self, items: Vec<T>, labels: impl Fn(&T) -> &Labels) -> BTreeMap<Labels, Vec<T>> {
        let mut groups: BTreeMap<Labels, Vec<T>> = BTreeMap::new();
        for it in items {
            let key = labels(&it).without(&[&self.replica_label]);
            groups.entry(key).or_default().push(it);
        }
        groups
    }
}

impl Querier for MergeQuerier {
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        self.select_hinted(matchers, &SelectHints::default())
    }

    fn select_hinted(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>, StorageError> {
        let series = self.inner.select_hinted(&self.matchers(matchers), hints)?;
        let counter = hints.wants_counter();
        Ok(self
            .group(series, |s| &s.labels)
            .into_iter()
            .map(|(labels, group)| {
                let streams: Vec<Vec<Sample>> = group.into_iter().map(|s| s.samples.collect()).collect();
                let merged = if streams.len() == 1 {
                    streams.into_iter().next().unwrap_or_default()
                } else {
                    merge_streams(&streams, counter)
                };
                Series { labels: Arc::new(labels), samples: Box::new(merged.into_iter()) }
            })
            .collect())
    }

    fn latest(&self, matchers: &[Matcher]) -> Result<Vec<LatestSample>, StorageError> {
        let latest = self.inner.latest(&self.matchers(matchers))?;
        Ok(self
            .group(latest, |l| &l.labels)
            .into_iter()
            .filter_map(|(labels, group)| {
                // The newest sample across replicas (a replica that stopped is simply older).
                let best = group.into_iter().max_by_key(|l| l.sample.t)?;
                Some(LatestSample { labels: Arc::new(labels), sample: best.sample })
            })
            .collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut names = self.inner.label_names(&self.matchers(matchers))?;
        names.retain(|n| *n != self.replica_label);
        Ok(names)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        if name == self.replica_label {
            return Ok(Vec::new());
        }
        self.inner.label_values(name, &self.matchers(matchers))
    }
}

/// Twice the median spacing of a stream's first samples: a longer silence is a gap.
fn penalty(stream: &[Sample]) -> i64 {
    let mut d: Vec<i64> = stream.windows(2).take(16).map(|w| w[1].t - w[0].t).filter(|d| *d > 0).collect();
    if d.is_empty() {
        return DEFAULT_PENALTY_MS;
    }
    d.sort_unstable();
    2 * d[d.len() / 2]
}

/// Merges replica streams (each in time order) into one, as described in the module doc.
pub fn merge_streams(streams: &[Vec<Sample>], counter: bool) -> Vec<Sample> {
    let penalty =
        streams.iter().filter(|s| s.len() > 1).map(|s| penalty(s)).max().unwrap_or(DEFAULT_PENALTY_MS);
    let mut pos = vec![0usize; streams.len()];
    // Per-replica offsets that keep a counter monotonic across switches.
    let mut offset = vec![0f64; streams.len()];
    let mut out: Vec<Sample> = Vec::with_capacity(streams.iter().map(Vec::len).max().unwrap_or(0));
    let mut cur: Option<usize> = None;
    let mut last_t = i64::MIN;
    let mut last_v = f64::NAN;
    loop {
        for (i, s) in streams.iter().enumerate() {
            while pos[i] < s.len() && s[pos[i]].t <= last_t {
                pos[i] += 1;
            }
        }
        let next_of = |i: usize| streams[i].get(pos[i]);
        let earliest =
            (0..streams.len()).filter(|&i| next_of(i).is_some()).min_by_key(|&i| streams[i][pos[i]].t);
        let Some(earliest) = earliest else { break };
        let choose = match cur.and_then(|c| next_of(c).map(|s| (c, s))) {
            // Keep the current replica while it has no gap (or nobody has anything earlier).
            Some((c, s)) if last_t == i64::MIN || s.t - last_t <= penalty => c,
            Some((c, _)) if earliest == c => c,
            _ => earliest,
        };
        let s = streams[choose][pos[choose]];
        if counter && cur.is_some_and(|c| c != choose) && !is_stale_nan(s.v) && !last_v.is_nan() {
            // A switch: if the new replica reads lower, it is skew, not a reset.
            let v = s.v + offset[choose];
            if v < last_v {
                offset[choose] += last_v - v;
            }
        }
        let v = if counter && !is_stale_nan(s.v) { s.v + offset[choose] } else { s.v };
        out.push(Sample { t: s.t, v });
        last_t = s.t;
        if !is_stale_nan(s.v) {
            last_v = v;
        }
        cur = Some(choose);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Appendable;
    use crate::tsdb::{Head, HeadOptions};

    fn s(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample { t, v }).collect()
    }

    #[test]
    fn follows_one_replica_and_fills_its_gap_from_the_other() {
        // a scrapes at :00, :10, …; b at :05, :15, …; a misses 30..60.
        let a = s(&[(0, 0.0), (10_000, 10.0), (20_000, 20.0), (70_000, 70.0), (80_000, 80.0)]);
        let b = s(&[
            (5_000, 5.0),
            (15_000, 15.0),
            (25_000, 25.0),
            (35_000, 35.0),
            (45_000, 45.0),
            (55_000, 55.0),
            (65_000, 65.0),
            (75_000, 75.0),
        ]);
        let m = merge_streams(&[a, b], false);
        let ts: Vec<i64> = m.iter().map(|x| x.t).collect();
        // a until its gap, then b (no interleaving) while b has no gap, then a again once b ends.
        assert_eq!(ts, [0, 10_000, 20_000, 25_000, 35_000, 45_000, 55_000, 65_000, 75_000, 80_000]);
    }

    #[test]
    fn counter_switch_never_looks_like_a_reset() {
        // b's counter reads a little lower than a's at the same time (scrape skew).
        let a = s(&[(0, 100.0), (10_000, 110.0)]);
        let b = s(&[(5_000, 100.0), (15_000, 108.0), (25_000, 118.0)]);
        let plain = merge_streams(&[a.clone(), b.clone()], false);
        assert!(plain.windows(2).any(|w| w[1].v < w[0].v), "raw merge shows the drop: {plain:?}");
        let merged = merge_streams(&[a, b], true);
        assert!(merged.windows(2).all(|w| w[1].v >= w[0].v), "{merged:?}");
        assert_eq!(merged.last().map(|x| x.v), Some(120.0));
    }

    #[test]
    fn querier_presents_one_series_per_replica_set() -> Result<(), Box<dyn std::error::Error>> {
        let head = Arc::new(Head::new(HeadOptions::default())?);
        let mut app = head.appender();
        for (r, off) in [("a", 0), ("b", 5_000)] {
            let l = Labels::from_pairs(&[("__name__", "x"), ("replica", r), ("shard", "s0")]);
            for i in 0..10 {
                app.append(None, &l, i * 10_000 + off, i as f64)?;
            }
        }
        app.commit()?;
        let q = MergeQueryable { inner: head, replica_label: "replica".into() }.querier(0, 1_000_000)?;
        let series = q.select(&[Matcher::equal("__name__", "x")])?;
        assert_eq!(series.len(), 1);
        assert_eq!(*series[0].labels, Labels::from_pairs(&[("__name__", "x"), ("shard", "s0")]));
        let latest = q.latest(&[Matcher::equal("__name__", "x")])?;
        assert_eq!(latest[0].sample.t, 95_000);
        assert_eq!(q.label_names(&[])?, ["__name__", "shard"]);
        assert!(q.label_values("replica", &[])?.is_empty());
        Ok(())
    }

    #[test]
    fn counter_hint_reaches_the_merge() -> Result<(), Box<dyn std::error::Error>> {
        let head = Arc::new(Head::new(HeadOptions::default())?);
        let mut app = head.appender();
        // a stops after 20 s; b reads a little lower (skew).
        let a = Labels::from_pairs(&[("__name__", "c_total"), ("replica", "a")]);
        let b = Labels::from_pairs(&[("__name__", "c_total"), ("replica", "b")]);
        for i in 0..3 {
            app.append(None, &a, i * 10_000, 100.0 + 10.0 * i as f64)?;
        }
        for i in 0..6 {
            app.append(None, &b, i * 10_000 + 5_000, 98.0 + 10.0 * i as f64)?;
        }
        app.commit()?;
        let q = MergeQueryable { inner: head, replica_label: "replica".into() }.querier(0, 100_000)?;
        let m = [Matcher::equal("__name__", "c_total")];
        let values = |hints: &SelectHints| -> Result<Vec<f64>, StorageError> {
            Ok(q.select_hinted(&m, hints)?.remove(0).samples.map(|s| s.v).collect())
        };
        let plain = values(&SelectHints::default())?;
        assert!(plain.windows(2).any(|w| w[1] < w[0]), "{plain:?}");
        let rate = values(&SelectHints { func: Some("rate".into()), ..Default::default() })?;
        assert!(rate.windows(2).all(|w| w[1] >= w[0]), "{rate:?}");
        Ok(())
    }
}
