//! Query-time dedup: all replicas are stored, each with its replica label; the querier presents
//! one series per replica set (the labels without the replica label). Samples come from one
//! replica at a time — the current one is kept while it has no gap longer than a penalty (twice
//! its own scrape spacing), otherwise the earliest sample of another replica is taken and that
//! replica becomes current — so a replica with a gap is not preferred and two replicas'
//! slightly different scrapes are never interleaved. For counter functions (`rate`,
//! `increase`, `irate`, `resets`), a switch that would look like a counter reset is offset away.
//!
//! Staleness is per replica. At a time `t` a replica is *fresh* (its newest sample at or before
//! `t` is a value no older than its penalty), *stale* (that sample is a staleness marker) or
//! *silent* (no sample within its penalty). The merged series is stale only when no replica is
//! fresh and at least one marked it stale: one replica's marker (it lost its target) never hides
//! a series another replica still scrapes. When every replica went silent without a marker, the
//! newest sample stands, as on a single Prometheus (the reader's lookback decides).
//!
//! Samples reach a global some time after their timestamp (its ingest lag: a pull interval and
//! more). A replica of which nothing newer than `t` is stored yet may just not have been pulled
//! since: it is given its penalty plus that lag before it counts as silent at `t`. (One with
//! newer samples stored is complete up to `t`: a source delivers its samples in time order.)

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::model::{Labels, Matcher, Sample, is_stale_nan};
use crate::storage::rollup::{Aggregates, Coverage, Rollup, RollupQuerier, RollupSeries, window_end};
use crate::storage::{LatestSample, Querier, Queryable, SelectHints, Series, StorageError};

/// Penalty when a series has too few samples to measure its spacing.
const DEFAULT_PENALTY_MS: i64 = 30_000;

/// How many of a stream's newest spacings its penalty is measured over.
const PENALTY_SPACINGS: usize = 16;

/// A storage view that deduplicates replicas named by `replica_label`.
pub struct MergeQueryable {
    pub inner: Arc<dyn Queryable>,
    pub replica_label: String,
    /// How long after its timestamp a sample may become readable here (zero for storage that is
    /// written as it happens); see the module doc.
    pub ingest_lag: Duration,
}

impl Queryable for MergeQueryable {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        Ok(Box::new(MergeQuerier {
            inner: self.inner.querier(mint, maxt)?,
            replica_label: self.replica_label.clone(),
            horizon: Horizon {
                end: maxt,
                lag_ms: i64::try_from(self.ingest_lag.as_millis()).unwrap_or(i64::MAX),
            },
        }))
    }

    fn max_time(&self) -> Option<i64> {
        self.inner.max_time()
    }

    fn min_time(&self) -> Option<i64> {
        self.inner.min_time()
    }

    fn coverage(&self) -> Vec<Coverage> {
        self.inner.coverage()
    }

    fn rollup_querier(
        &self,
        resolution: i64,
        mint: i64,
        maxt: i64,
    ) -> Result<Option<Box<dyn RollupQuerier>>, StorageError> {
        let Some(inner) = self.inner.rollup_querier(resolution, mint, maxt)? else { return Ok(None) };
        Ok(Some(Box::new(MergeRollups { inner, replica_label: self.replica_label.clone(), resolution })))
    }
}

/// Rollups deduplicated per window: of the replicas' rollups for one window, the one of the most
/// samples, staying with the previous window's replica on a tie. Switching replicas only at
/// window borders keeps counters monotonic (both replicas scrape the same target, and every
/// sample of the later window is younger).
struct MergeRollups {
    inner: Box<dyn RollupQuerier>,
    replica_label: String,
    resolution: i64,
}

impl RollupQuerier for MergeRollups {
    fn select(&self, matchers: &[Matcher], need: Aggregates) -> Result<Vec<RollupSeries>, StorageError> {
        let matchers: Vec<Matcher> =
            matchers.iter().filter(|m| m.name != self.replica_label).cloned().collect();
        type Replica = (String, Box<dyn Iterator<Item = Rollup> + Send>);
        let mut sets: BTreeMap<Labels, Vec<Replica>> = BTreeMap::new();
        for s in self.inner.select(&matchers, need.with(Aggregates::COUNT))? {
            let replica = s.labels.get(&self.replica_label).unwrap_or_default().to_string();
            let key = s.labels.without(&[&self.replica_label]);
            sets.entry(key).or_default().push((replica, s.rollups));
        }
        let resolution = self.resolution;
        Ok(sets
            .into_iter()
            .map(|(labels, mut replicas)| {
                replicas.sort_by(|a, b| a.0.cmp(&b.0));
                // Read when the caller reaches this series, so one set is held at a time.
                let rollups = std::iter::once(()).flat_map(move |()| {
                    let all = std::mem::take(&mut replicas).into_iter().map(|r| r.1.collect()).collect();
                    merge_rollup_replicas(all, resolution)
                });
                RollupSeries { labels: Arc::new(labels), rollups: Box::new(rollups) }
            })
            .collect())
    }
}

/// One rollup per window out of several replicas' (each in time order); see [`MergeRollups`].
fn merge_rollup_replicas(replicas: Vec<Vec<Rollup>>, resolution: i64) -> Vec<Rollup> {
    if replicas.len() == 1 {
        return replicas.into_iter().next().unwrap_or_default();
    }
    let mut by_window: BTreeMap<i64, Vec<(usize, Rollup)>> = BTreeMap::new();
    for (i, rs) in replicas.into_iter().enumerate() {
        for r in rs {
            by_window.entry(window_end(r.t, resolution)).or_default().push((i, r));
        }
    }
    let mut current = usize::MAX;
    let mut out = Vec::with_capacity(by_window.len());
    for (_, candidates) in by_window {
        let best_count = candidates.iter().map(|c| c.1.count).max().unwrap_or(0);
        let pick = candidates
            .iter()
            .find(|c| c.0 == current && c.1.count == best_count)
            .or_else(|| candidates.iter().find(|c| c.1.count == best_count));
        if let Some(&(i, r)) = pick {
            current = i;
            out.push(r);
        }
    }
    out
}

struct MergeQuerier {
    inner: Box<dyn Querier>,
    replica_label: String,
    /// Freshness and silence are judged at the end of the queried range.
    horizon: Horizon,
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
                    merge_streams(&streams, counter, self.horizon)
                };
                Series { labels: Arc::new(labels), samples: Box::new(merged.into_iter()) }
            })
            .collect())
    }

    /// Per replica set, the newest sample of a fresh replica; a staleness marker when no replica
    /// is fresh and one marked the series stale; the newest sample when all went silent.
    ///
    /// When no replica's newest sample is a marker, the set's newest sample is taken without
    /// reading spacings: the series is present either way, and replicas of one set scrape at the
    /// same interval, so when the newest replica is silent every replica is. Only sets where a
    /// marker meets a value (around staleness) have their replicas' samples read.
    fn latest(&self, matchers: &[Matcher]) -> Result<Vec<LatestSample>, StorageError> {
        let matchers = self.matchers(matchers);
        let groups = self.group(self.inner.latest(&matchers)?, |l| &l.labels);
        let marked = |g: &[LatestSample]| g.iter().any(|l| is_stale_nan(l.sample.v));
        // Whether a replica whose newest sample is a value went silent depends on its spacing.
        let needed: HashSet<&Labels> = groups
            .values()
            .filter(|g| g.len() > 1 && marked(g))
            .flatten()
            .filter(|l| !is_stale_nan(l.sample.v))
            .map(|l| l.labels.as_ref())
            .collect();
        let mut penalties: HashMap<Labels, i64> = HashMap::new();
        if !needed.is_empty() {
            for s in self.inner.select(&matchers)? {
                if needed.contains(s.labels.as_ref()) {
                    penalties.insert(s.labels.as_ref().clone(), tail_penalty(s.samples));
                }
            }
        }
        Ok(groups
            .into_iter()
            .filter_map(|(labels, group)| {
                let sample = if group.len() == 1 || !marked(&group) {
                    group.iter().max_by_key(|l| l.sample.t)?.sample
                } else {
                    let replicas = group.iter().map(|l| {
                        let penalty = penalties.get(l.labels.as_ref()).copied().unwrap_or(DEFAULT_PENALTY_MS);
                        // Nothing newer than the range's end is known: it may be on its way.
                        (l.sample, penalty.saturating_add(self.horizon.lag_ms))
                    });
                    merged_latest(replicas, self.horizon.end)?
                };
                Some(LatestSample { labels: Arc::new(labels), sample })
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

    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }
}

/// Twice the median spacing of a stream's newest samples: a longer silence is a gap.
fn penalty(stream: &[Sample]) -> i64 {
    let tail = &stream[stream.len().saturating_sub(PENALTY_SPACINGS + 1)..];
    let mut d: Vec<i64> = tail.windows(2).map(|w| w[1].t - w[0].t).filter(|d| *d > 0).collect();
    if d.is_empty() {
        return DEFAULT_PENALTY_MS;
    }
    d.sort_unstable();
    2 * d[d.len() / 2]
}

/// [`penalty`] of a sample iterator, keeping only the samples it needs.
fn tail_penalty(samples: impl Iterator<Item = Sample>) -> i64 {
    let mut tail = VecDeque::with_capacity(PENALTY_SPACINGS + 1);
    for s in samples {
        if tail.len() == PENALTY_SPACINGS + 1 {
            tail.pop_front();
        }
        tail.push_back(s);
    }
    penalty(tail.make_contiguous())
}

/// Where one replica stands at some time (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplicaState {
    Fresh,
    Stale,
    Silent,
}

/// The state at `t` of a replica whose newest sample at or before `t` is `newest`.
fn state_at(newest: Option<Sample>, penalty: i64, t: i64) -> ReplicaState {
    match newest {
        Some(s) if is_stale_nan(s.v) => ReplicaState::Stale,
        Some(s) if t.saturating_sub(s.t) <= penalty => ReplicaState::Fresh,
        _ => ReplicaState::Silent,
    }
}

/// The state at `t` of a replica stream (in time order), allowing `lag` more when the stream has
/// nothing after `t` (its next samples may not be stored yet).
fn stream_state_at(stream: &[Sample], penalty: i64, lag: i64, t: i64) -> ReplicaState {
    let n = stream.partition_point(|s| s.t <= t);
    let allowed = if n < stream.len() { penalty } else { penalty.saturating_add(lag) };
    state_at(n.checked_sub(1).map(|i| stream[i]), allowed, t)
}

/// The merged latest sample at `end` of replicas given as (newest sample, allowed age): the newest
/// of the fresh ones; else the newest marker if any replica marked the series stale; else (all
/// silent) the newest sample.
fn merged_latest(replicas: impl Iterator<Item = (Sample, i64)>, end: i64) -> Option<Sample> {
    let newer = |a: Option<Sample>, b: Sample| if a.is_some_and(|a| a.t >= b.t) { a } else { Some(b) };
    let (mut fresh, mut marker, mut silent) = (None, None, None);
    for (s, penalty) in replicas {
        match state_at(Some(s), penalty, end) {
            ReplicaState::Fresh => fresh = newer(fresh, s),
            ReplicaState::Stale => marker = newer(marker, s),
            ReplicaState::Silent => silent = newer(silent, s),
        }
    }
    fresh.or(marker).or(silent)
}

/// What a merge knows about time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// The end of the queried range (ms): a replica still fresh there keeps the series alive.
    pub end: i64,
    /// The ingest lag (ms), see the module doc.
    pub lag_ms: i64,
}

impl Horizon {
    /// A range ending at `end` of storage written as things happen (no ingest lag).
    pub fn at(end: i64) -> Horizon {
        Horizon { end, lag_ms: 0 }
    }
}

/// Merges replica streams (each in time order) into one, as described in the module doc.
///
/// A staleness marker of the replica being followed is only emitted when no other replica is
/// fresh at its time; otherwise it is skipped and the series continues from a fresh replica.
/// (When the fresh replica has nothing after the samples already taken and is silent at the
/// horizon's end, the marker is emitted at its own time: a little early for that replica, but
/// the series then ends stale as [`Querier::latest`] reports it.)
pub fn merge_streams(streams: &[Vec<Sample>], counter: bool, horizon: Horizon) -> Vec<Sample> {
    let penalties: Vec<i64> = streams.iter().map(|s| penalty(s)).collect();
    // The gap that makes the current replica lose its turn: the widest spacing among replicas.
    let gap = streams
        .iter()
        .zip(&penalties)
        .filter(|(s, _)| s.len() > 1)
        .map(|(_, p)| *p)
        .max()
        .unwrap_or(DEFAULT_PENALTY_MS);
    let fresh_at = |i: usize, t: i64| {
        stream_state_at(&streams[i], penalties[i], horizon.lag_ms, t) == ReplicaState::Fresh
    };
    let mut pos = vec![0usize; streams.len()];
    // Per-replica offsets that keep a counter monotonic across switches.
    let mut offset = vec![0f64; streams.len()];
    let mut out: Vec<Sample> = Vec::with_capacity(streams.iter().map(Vec::len).max().unwrap_or(0));
    // The replica being followed, and the one the last emitted sample came from.
    let mut cur: Option<usize> = None;
    let mut from: Option<usize> = None;
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
            Some((c, s)) if last_t == i64::MIN || s.t - last_t <= gap => c,
            Some((c, _)) if earliest == c => c,
            _ => earliest,
        };
        let s = streams[choose][pos[choose]];
        if is_stale_nan(s.v) {
            // This replica marked the series stale; another one may still have it fresh.
            let fresh: Vec<usize> = (0..streams.len()).filter(|&i| i != choose && fresh_at(i, s.t)).collect();
            let to =
                fresh.iter().copied().filter(|&i| next_of(i).is_some()).min_by_key(|&i| streams[i][pos[i]].t);
            if to.is_some() || fresh.iter().any(|&i| fresh_at(i, horizon.end)) {
                pos[choose] += 1;
                if to.is_some() {
                    cur = to;
                }
                continue;
            }
        }
        if counter && from.is_some_and(|c| c != choose) && !is_stale_nan(s.v) && !last_v.is_nan() {
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
        from = Some(choose);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Appendable;
    use crate::storage::rollup::RollupBuilder;
    use crate::tsdb::{Head, HeadOptions};

    fn rolled(samples: &[(i64, f64)]) -> Vec<Rollup> {
        let mut b = RollupBuilder::new(100);
        let mut out: Vec<Rollup> = samples.iter().filter_map(|&(t, v)| b.push(t, v)).collect();
        out.extend(b.finish());
        out
    }

    #[test]
    fn rollups_of_replicas_are_taken_per_window_from_the_fullest_staying_on_ties() {
        // Replica a misses the middle window; b has one sample less in the first.
        let a = rolled(&[(10, 1.0), (50, 2.0), (90, 3.0), (210, 9.0), (250, 10.0)]);
        let b = rolled(&[(55, 2.0), (95, 3.0), (110, 4.0), (150, 5.0), (215, 9.0), (255, 10.0)]);
        let merged = merge_rollup_replicas(vec![a.clone(), b.clone()], 100);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0], a[0], "a has more samples in (0, 100]");
        assert_eq!(merged[1], b[1], "only b has (100, 200]");
        assert_eq!(merged[2], b[2], "a tie stays with the replica of the window before");
        let mut total = merged[0];
        merged[1..].iter().for_each(|r| total.absorb(r));
        assert_eq!(total.inc, 9.0, "no reset at the switches");
    }

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
        let m = merge_streams(&[a, b], false, Horizon::at(i64::MAX));
        let ts: Vec<i64> = m.iter().map(|x| x.t).collect();
        // a until its gap, then b (no interleaving) while b has no gap, then a again once b ends.
        assert_eq!(ts, [0, 10_000, 20_000, 25_000, 35_000, 45_000, 55_000, 65_000, 75_000, 80_000]);
    }

    #[test]
    fn counter_switch_never_looks_like_a_reset() {
        // b's counter reads a little lower than a's at the same time (scrape skew).
        let a = s(&[(0, 100.0), (10_000, 110.0)]);
        let b = s(&[(5_000, 100.0), (15_000, 108.0), (25_000, 118.0)]);
        let plain = merge_streams(&[a.clone(), b.clone()], false, Horizon::at(i64::MAX));
        assert!(plain.windows(2).any(|w| w[1].v < w[0].v), "raw merge shows the drop: {plain:?}");
        let merged = merge_streams(&[a, b], true, Horizon::at(i64::MAX));
        assert!(merged.windows(2).all(|w| w[1].v >= w[0].v), "{merged:?}");
        assert_eq!(merged.last().map(|x| x.v), Some(120.0));
    }

    /// A stream's values as a readable list: `None` for a staleness marker.
    fn values(m: &[Sample]) -> Vec<(i64, Option<f64>)> {
        m.iter().map(|x| (x.t, (!is_stale_nan(x.v)).then_some(x.v))).collect()
    }

    const M: f64 = crate::model::STALE_NAN;

    #[test]
    fn a_marker_of_one_replica_switches_to_the_other() {
        // a lost its target at 30 and wrote a marker; b still scrapes.
        let a = s(&[(0, 0.0), (10_000, 1.0), (20_000, 2.0), (30_000, M)]);
        let b = s(&[(5_000, 0.5), (15_000, 1.5), (25_000, 2.5), (35_000, 3.5), (45_000, 4.5)]);
        let m = merge_streams(&[a.clone(), b.clone()], false, Horizon::at(50_000));
        assert_eq!(
            values(&m),
            [
                (0, Some(0.0)),
                (10_000, Some(1.0)),
                (20_000, Some(2.0)),
                (25_000, Some(2.5)),
                (35_000, Some(3.5)),
                (45_000, Some(4.5))
            ]
        );
        // The same when b is listed first and a is followed first by time.
        assert_eq!(values(&merge_streams(&[b, a], false, Horizon::at(50_000))), values(&m));
    }

    #[test]
    fn markers_on_every_replica_end_the_series() {
        let a = s(&[(0, 0.0), (10_000, 1.0), (20_000, 2.0), (30_000, M)]);
        let b = s(&[(5_000, 0.5), (15_000, 1.5), (25_000, 2.5), (35_000, M)]);
        let m = merge_streams(&[a, b], false, Horizon::at(50_000));
        // a's marker is not emitted while b is fresh; b's is, a being stale by then.
        assert_eq!(
            values(&m),
            [(0, Some(0.0)), (10_000, Some(1.0)), (20_000, Some(2.0)), (25_000, Some(2.5)), (35_000, None)]
        );
    }

    #[test]
    fn a_marker_while_the_other_replica_is_silent_ends_the_series() {
        // a stopped answering after 10 (silent, no marker); b marks the series stale at 55.
        let a = s(&[(0, 0.0), (10_000, 1.0)]);
        let b = s(&[(5_000, 0.5), (15_000, 1.5), (25_000, 2.5), (35_000, 3.5), (45_000, 4.5), (55_000, M)]);
        let m = merge_streams(&[a, b], false, Horizon::at(60_000));
        assert_eq!(m.last().map(|x| (x.t, is_stale_nan(x.v))), Some((55_000, true)), "{:?}", values(&m));
        assert_eq!(m.iter().filter(|x| is_stale_nan(x.v)).count(), 1);
    }

    #[test]
    fn a_marker_counts_once_the_fresh_replica_is_silent_at_the_end() {
        // b is followed; at b's marker (30) a is fresh (15, penalty 20) but has nothing newer.
        let a = s(&[(5_000, 0.5), (15_000, 1.5)]);
        let b = s(&[(0, 0.0), (10_000, 1.0), (20_000, 2.0), (30_000, M)]);
        // At 33 a is still fresh: the series is alive, the marker is not emitted.
        let alive = merge_streams(&[a.clone(), b.clone()], false, Horizon::at(33_000));
        assert_eq!(values(&alive), [(0, Some(0.0)), (10_000, Some(1.0)), (20_000, Some(2.0))]);
        // At 60 a has been silent for a while: the series ends with b's marker.
        let ended = merge_streams(&[a, b], false, Horizon::at(60_000));
        assert_eq!(ended.last().map(|x| (x.t, is_stale_nan(x.v))), Some((30_000, true)));
    }

    #[test]
    fn replicas_all_silent_keep_their_newest_sample() {
        let a = s(&[(0, 0.0), (10_000, 1.0), (20_000, 2.0)]);
        let b = s(&[(5_000, 0.5), (15_000, 1.5), (25_000, 2.5)]);
        let m = merge_streams(&[a, b], false, Horizon::at(200_000));
        assert!(m.iter().all(|x| !is_stale_nan(x.v)), "{:?}", values(&m));
        assert_eq!(m.last().map(|x| x.t), Some(25_000));
    }

    #[test]
    fn a_counter_switch_at_a_marker_is_offset() {
        let a = s(&[(0, 100.0), (10_000, 110.0), (20_000, M)]);
        let b = s(&[(5_000, 100.0), (15_000, 107.0), (25_000, 117.0)]);
        let m = merge_streams(&[a, b], true, Horizon::at(30_000));
        assert!(m.iter().all(|x| !is_stale_nan(x.v)), "{:?}", values(&m));
        assert!(m.windows(2).all(|w| w[1].v >= w[0].v), "{:?}", values(&m));
    }

    #[test]
    fn samples_still_on_their_way_do_not_make_a_replica_silent() {
        // a marked the series stale at 5 s; b's samples after 2.5 s are not stored yet (pulled
        // later than a's). Without an ingest lag b counts as silent; with 2.9 s it is fresh.
        let a = s(&[(0, 0.0), (1_000, 1.0), (2_000, 2.0), (3_000, 3.0), (4_000, 4.0), (5_000, M)]);
        let b = s(&[(500, 0.5), (1_500, 1.5), (2_500, 2.5)]);
        let no_lag = merge_streams(&[a.clone(), b.clone()], false, Horizon::at(5_200));
        assert_eq!(no_lag.last().map(|x| is_stale_nan(x.v)), Some(true), "{:?}", values(&no_lag));
        let lag = merge_streams(&[a, b], false, Horizon { end: 5_200, lag_ms: 2_900 });
        assert_eq!(lag.last().map(|x| (x.t, is_stale_nan(x.v))), Some((4_000, false)), "{:?}", values(&lag));
    }

    /// A head with series `x{replica=…}` holding each replica's samples.
    fn head_with(replicas: &[(&str, &[(i64, f64)])]) -> Result<Arc<Head>, Box<dyn std::error::Error>> {
        let head = Arc::new(Head::new(HeadOptions::default())?);
        let mut app = head.appender();
        for (r, points) in replicas {
            let l = Labels::from_pairs(&[("__name__", "x"), ("replica", r)]);
            for &(t, v) in *points {
                app.append(None, &l, t, v)?;
            }
        }
        app.commit()?;
        Ok(head)
    }

    #[test]
    fn latest_follows_per_replica_staleness() -> Result<(), Box<dyn std::error::Error>> {
        // a's marker is the newest sample of the set: taking the newest across replicas would
        // hide a series b still has.
        let a_marked: &[(i64, f64)] = &[(0, 0.0), (10_000, 1.0), (20_000, 2.0), (30_000, 3.0), (40_000, M)];
        let a_silent: &[(i64, f64)] = &[(0, 0.0), (10_000, 1.0)];
        let b_fresh: &[(i64, f64)] = &[(5_000, 0.5), (15_000, 1.5), (25_000, 2.5), (35_000, 3.5)];
        let b_marked: &[(i64, f64)] = &[(5_000, 0.5), (15_000, 1.5), (25_000, 2.5), (35_000, M)];
        let b_silent: &[(i64, f64)] = &[(5_000, 0.5), (15_000, 1.5), (25_000, 2.5)];
        // Checks the latest sample at `end` (its time and whether it is a value), and that an
        // instant lookup through select (the last merged sample) agrees.
        let check = |case: &str, a: &[(i64, f64)], b: &[(i64, f64)], end: i64, want: (i64, bool)| {
            let head = head_with(&[("a", a), ("b", b)])?;
            let q =
                MergeQueryable { inner: head, replica_label: "replica".into(), ingest_lag: Duration::ZERO }
                    .querier(0, end)?;
            let m = [Matcher::equal("__name__", "x")];
            let latest = q.latest(&m)?;
            assert_eq!(latest.len(), 1, "{case}");
            assert_eq!((latest[0].sample.t, !is_stale_nan(latest[0].sample.v)), want, "{case}: latest");
            let last = q.select(&m)?.remove(0).samples.last().ok_or("no samples")?;
            assert_eq!(!is_stale_nan(last.v), want.1, "{case}: select");
            Ok::<(), Box<dyn std::error::Error>>(())
        };
        check("marker on a, b continues", a_marked, b_fresh, 42_000, (35_000, true))?;
        check("markers on both", a_marked, b_marked, 42_000, (40_000, false))?;
        check("a silent, b marker", a_silent, b_marked, 42_000, (35_000, false))?;
        check("all silent", a_silent, b_silent, 200_000, (25_000, true))?;
        Ok(())
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
        let q = MergeQueryable { inner: head, replica_label: "replica".into(), ingest_lag: Duration::ZERO }
            .querier(0, 1_000_000)?;
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
        let q = MergeQueryable { inner: head, replica_label: "replica".into(), ingest_lag: Duration::ZERO }
            .querier(0, 100_000)?;
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
