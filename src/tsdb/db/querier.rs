//! Reading head and blocks as one storage: each part is asked on its own and the answers merged
//! by labels (all parts return label order); a series present in several parts gets one iterator
//! that merges them by time, keeping one sample per timestamp (the first part's: blocks oldest
//! first, head last — they hold the same sample when a range is both cut and not yet truncated).

use std::cmp::Ordering;
use std::iter::Peekable;
use std::sync::Arc;

use crate::model::{Labels, Matcher, Sample};
use crate::storage::{LatestSample, Querier, Series, StorageError};

pub(crate) struct MergeQuerier {
    /// Oldest data first.
    parts: Vec<Box<dyn Querier>>,
}

impl MergeQuerier {
    pub(crate) fn new(parts: Vec<Box<dyn Querier>>) -> MergeQuerier {
        MergeQuerier { parts }
    }
}

/// Merges label-sorted lists; `combine` folds items with equal labels (in part order).
fn merge_sorted<T>(
    lists: Vec<Vec<T>>,
    labels: impl Fn(&T) -> &Labels,
    mut combine: impl FnMut(Vec<T>) -> T,
) -> Vec<T> {
    let total = lists.iter().map(Vec::len).sum();
    let mut iters: Vec<Peekable<std::vec::IntoIter<T>>> =
        lists.into_iter().map(|l| l.into_iter().peekable()).collect();
    let mut out = Vec::with_capacity(total);
    loop {
        let mut min: Option<&Labels> = None;
        for it in iters.iter_mut() {
            if let Some(x) = it.peek() {
                let l = labels(x);
                if min.is_none_or(|m| l < m) {
                    min = Some(l);
                }
            }
        }
        let Some(min) = min.cloned() else { break };
        let mut same = Vec::new();
        for it in iters.iter_mut() {
            if it.peek().is_some_and(|x| *labels(x) == min)
                && let Some(x) = it.next()
            {
                same.push(x);
            }
        }
        if same.len() == 1 {
            out.extend(same);
        } else {
            out.push(combine(same));
        }
    }
    out
}

impl Querier for MergeQuerier {
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        let lists = self.parts.iter().map(|p| p.select(matchers)).collect::<Result<Vec<_>, _>>()?;
        Ok(merge_sorted(
            lists,
            |s| &s.labels,
            |parts| {
                let labels = Arc::clone(&parts[0].labels);
                let iters = parts.into_iter().map(|s| s.samples.peekable()).collect();
                Series { labels, samples: Box::new(MergeSamples { iters }) }
            },
        ))
    }

    fn latest(&self, matchers: &[Matcher]) -> Result<Vec<LatestSample>, StorageError> {
        let lists = self.parts.iter().map(|p| p.latest(matchers)).collect::<Result<Vec<_>, _>>()?;
        Ok(merge_sorted(
            lists,
            |s| &s.labels,
            |parts| {
                // The newest sample; on a tie the later part's (the head's).
                let mut best = parts.into_iter();
                let first = best.next();
                best.fold(first, |acc, x| match acc {
                    Some(a) if a.sample.t > x.sample.t => Some(a),
                    _ => Some(x),
                })
                .unwrap_or_else(|| LatestSample {
                    labels: Arc::new(Labels::empty()),
                    sample: Sample { t: 0, v: 0.0 },
                })
            },
        ))
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut all = Vec::new();
        for p in &self.parts {
            all.extend(p.label_names(matchers)?);
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut all = Vec::new();
        for p in &self.parts {
            all.extend(p.label_values(name, matchers)?);
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }
}

/// Merges sample iterators by time; on equal timestamps the first iterator's sample is kept.
struct MergeSamples {
    iters: Vec<Peekable<Box<dyn Iterator<Item = Sample> + Send>>>,
}

impl Iterator for MergeSamples {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        let mut best: Option<(usize, i64)> = None;
        for (i, it) in self.iters.iter_mut().enumerate() {
            if let Some(s) = it.peek()
                && best.is_none_or(|(_, t)| s.t.cmp(&t) == Ordering::Less)
            {
                best = Some((i, s.t));
            }
        }
        let (i, t) = best?;
        let s = self.iters[i].next();
        for it in self.iters.iter_mut() {
            while it.peek().is_some_and(|x| x.t == t) {
                it.next();
            }
        }
        s
    }
}
