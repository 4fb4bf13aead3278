//! Reading the head over a time range: series selection through the postings, lazy per-series
//! sample iterators, the `latest` fast path, and label names/values.
//!
//! A querier reads live data: it sees commits that finish while it is in use (there is no
//! snapshot isolation yet). Each returned iterator is a snapshot of its series' chunks taken when
//! `select` ran.

use std::collections::HashSet;
use std::sync::Arc;

use crate::model::{Matcher, Sample};
use crate::storage::{LatestSample, Querier, Series, StorageError};

use super::HeadInner;
use super::series::MemSeries;

pub(crate) struct HeadQuerier {
    head: Arc<HeadInner>,
    mint: i64,
    maxt: i64,
}

impl HeadQuerier {
    pub(crate) fn new(head: Arc<HeadInner>, mint: i64, maxt: i64) -> HeadQuerier {
        HeadQuerier { head, mint, maxt }
    }

    /// Whether the series has a chunk overlapping the range: exact to the chunk, which is what
    /// label names and values need (a series outside the range by less than a chunk may count).
    fn in_range(&self, s: &MemSeries) -> bool {
        s.state.lock().overlaps(self.mint, self.maxt)
    }

    /// Matching series that have samples in range, each with what `f` extracted under its lock,
    /// sorted by labels.
    fn collect<T>(
        &self,
        matchers: &[Matcher],
        mut f: impl FnMut(&super::series::SeriesState) -> Option<T>,
    ) -> Vec<(Arc<MemSeries>, T)> {
        // Sort the selection first: moving refs is cheaper than moving per-series results.
        self.head
            .order
            .sort(self.head.select_series(matchers))
            .into_iter()
            .filter_map(|s| {
                let x = f(&s.state.lock())?;
                Some((s, x))
            })
            .collect()
    }
}

impl Querier for HeadQuerier {
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        let (mint, maxt) = (self.mint, self.maxt);
        Ok(self
            .collect(matchers, |st| st.range(mint, maxt))
            .into_iter()
            .map(|(s, it)| Series { labels: Arc::clone(&s.labels), samples: Box::new(it) })
            .collect())
    }

    fn latest(&self, matchers: &[Matcher]) -> Result<Vec<LatestSample>, StorageError> {
        let (mint, maxt) = (self.mint, self.maxt);
        Ok(self
            .collect(matchers, |st| st.latest(mint, maxt))
            .into_iter()
            .map(|(s, sample): (_, Sample)| LatestSample { labels: Arc::clone(&s.labels), sample })
            .collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut names: Vec<String> = if matchers.is_empty() {
            // Per name, one series with data in range is enough.
            let postings = self.head.postings.read();
            postings
                .names()
                .filter(|name| {
                    postings.values(name).any(|(_, refs)| {
                        refs.iter().any(|&r| self.head.get_by_ref(r).is_some_and(|s| self.in_range(&s)))
                    })
                })
                .map(str::to_string)
                .collect()
        } else {
            let series: Vec<Arc<MemSeries>> =
                self.head.select_series(matchers).into_iter().filter(|s| self.in_range(s)).collect();
            let set: HashSet<&str> = series.iter().flat_map(|s| s.labels.iter().map(|l| l.name)).collect();
            set.into_iter().map(str::to_string).collect()
        };
        names.sort_unstable();
        Ok(names)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut values: Vec<String> = if matchers.is_empty() {
            let postings = self.head.postings.read();
            postings
                .values(name)
                .filter(|(_, refs)| {
                    refs.iter().any(|&r| self.head.get_by_ref(r).is_some_and(|s| self.in_range(&s)))
                })
                .map(|(v, _)| v.to_string())
                .collect()
        } else {
            let series: Vec<Arc<MemSeries>> =
                self.head.select_series(matchers).into_iter().filter(|s| self.in_range(s)).collect();
            let set: HashSet<&str> = series.iter().filter_map(|s| s.labels.get(name)).collect();
            set.into_iter().map(str::to_string).collect()
        };
        values.sort_unstable();
        Ok(values)
    }
}
