//! The label order of the head's series, cached as integer ranks so that queries sort their
//! selections (always returned in label order) by integers instead of comparing label sets.
//!
//! A rebuild merges the series created since the last one into a label-sorted list and stamps
//! every series with `(generation << 32) | position`. A query trusts only stamps of the
//! generation it read, sorts those by position, sorts the rest by labels and merges the two, so
//! it is exact whatever rebuilds run meanwhile; rebuilds just keep the second group small.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::series::MemSeries;

/// Below this many unranked series a query just sorts them; above, it rebuilds first.
const REBUILD_MIN_FRESH: usize = 256;

#[derive(Default)]
pub(crate) struct LabelOrder {
    /// The generation whose stamps are complete and may be trusted.
    published: AtomicU32,
    /// Series created since the last rebuild, in creation order.
    fresh: Mutex<Vec<Arc<MemSeries>>>,
    fresh_len: AtomicUsize,
    ranked_len: AtomicUsize,
    state: Mutex<Ranked>,
}

#[derive(Default)]
struct Ranked {
    generation: u32,
    /// Every series of the last rebuild, sorted by labels.
    sorted: Vec<Arc<MemSeries>>,
}

impl LabelOrder {
    pub(crate) fn add(&self, s: &Arc<MemSeries>) {
        let mut fresh = self.fresh.lock();
        fresh.push(Arc::clone(s));
        self.fresh_len.store(fresh.len(), Ordering::Relaxed);
    }

    /// Merges the fresh series into the ranked list, drops deleted ones, and publishes new
    /// stamps. Costs O(n) plus a sort of the fresh series.
    pub(crate) fn rebuild(&self) {
        self.rebuild_locked(&mut self.state.lock());
    }

    /// Rebuilds when enough series are unranked, unless another rebuild is running.
    fn maybe_rebuild(&self) {
        let needed = || {
            let fresh = self.fresh_len.load(Ordering::Relaxed);
            fresh > REBUILD_MIN_FRESH && fresh * 16 > self.ranked_len.load(Ordering::Relaxed)
        };
        if needed()
            && let Some(mut st) = self.state.try_lock()
            && needed()
        {
            self.rebuild_locked(&mut st);
        }
    }

    fn rebuild_locked(&self, st: &mut Ranked) {
        let mut fresh = {
            let mut f = self.fresh.lock();
            self.fresh_len.store(0, Ordering::Relaxed);
            std::mem::take(&mut *f)
        };
        fresh.retain(|s| !s.is_deleted());
        fresh.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        let old = std::mem::take(&mut st.sorted);
        let mut merged = Vec::with_capacity(old.len() + fresh.len());
        let mut rest = old.as_slice();
        for f in fresh {
            let i = rest.partition_point(|s| s.labels < f.labels);
            merged.extend(rest[..i].iter().filter(|s| !s.is_deleted()).cloned());
            rest = &rest[i..];
            merged.push(f);
        }
        merged.extend(rest.iter().filter(|s| !s.is_deleted()).cloned());
        // Generation 0 is never published, so unstamped series (rank u64::MAX) never match.
        let generation = match st.generation.wrapping_add(1) {
            0 | u32::MAX => 1,
            g => g,
        };
        for (i, s) in merged.iter().enumerate() {
            s.rank.store(u64::from(generation) << 32 | i as u64, Ordering::Relaxed);
        }
        st.generation = generation;
        st.sorted = merged;
        self.ranked_len.store(st.sorted.len(), Ordering::Relaxed);
        self.published.store(generation, Ordering::Release);
    }

    /// Sorts series by labels.
    pub(crate) fn sort(&self, series: Vec<Arc<MemSeries>>) -> Vec<Arc<MemSeries>> {
        self.maybe_rebuild();
        let generation = u64::from(self.published.load(Ordering::Acquire));
        let mut ranked: Vec<(u32, Arc<MemSeries>)> = Vec::with_capacity(series.len());
        let mut loose: Vec<Arc<MemSeries>> = Vec::new();
        for s in series {
            let rank = s.rank.load(Ordering::Relaxed);
            if rank >> 32 == generation {
                ranked.push((rank as u32, s));
            } else {
                loose.push(s);
            }
        }
        ranked.sort_unstable_by_key(|(r, _)| *r);
        if loose.is_empty() {
            return ranked.into_iter().map(|(_, s)| s).collect();
        }
        loose.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        let mut out = Vec::with_capacity(ranked.len() + loose.len());
        let mut rest = ranked.as_slice();
        for l in loose {
            let i = rest.partition_point(|(_, r)| r.labels < l.labels);
            out.extend(rest[..i].iter().map(|(_, r)| Arc::clone(r)));
            rest = &rest[i..];
            out.push(l);
        }
        out.extend(rest.iter().map(|(_, r)| Arc::clone(r)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn series(r: u64, v: &str) -> Arc<MemSeries> {
        Arc::new(MemSeries::new(r, r, Labels::from_pairs(&[("a", v)]), 0))
    }

    fn names(items: &[Arc<MemSeries>]) -> Vec<String> {
        items.iter().map(|s| s.labels.get_or_empty("a").to_string()).collect()
    }

    #[test]
    fn sorts_ranked_unranked_and_mixed_sets() {
        let order = LabelOrder::default();
        let all: Vec<_> =
            ["d", "b", "a", "c", "e"].iter().enumerate().map(|(i, v)| series(i as u64, v)).collect();
        for s in &all[..3] {
            order.add(s);
        }
        let items = |ss: &[Arc<MemSeries>]| ss.to_vec();
        assert_eq!(names(&order.sort(items(&all))), ["a", "b", "c", "d", "e"]);
        order.rebuild();
        for s in &all[3..] {
            order.add(s);
        }
        // d, b, a ranked; c, e not yet.
        assert_eq!(names(&order.sort(items(&all))), ["a", "b", "c", "d", "e"]);
        order.rebuild();
        assert!(all.iter().all(|s| s.rank.load(Ordering::Relaxed) >> 32 == 2));
        assert_eq!(names(&order.sort(items(&all))), ["a", "b", "c", "d", "e"]);
        all[1].deleted.store(true, Ordering::Relaxed);
        order.rebuild();
        assert_eq!(order.state.lock().sorted.len(), 4);
    }
}
