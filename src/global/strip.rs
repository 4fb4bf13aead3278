//! A storage view that removes labels from everything appended through it — the replica label
//! (what failover dedup stores), the shard label (`federate.shard_label: drop`) — and otherwise
//! passes through.

use std::sync::Arc;

use crate::model::Labels;
use crate::storage::{
    AppendError, Appendable, Appender, CommitStats, Querier, Queryable, SeriesRef, Storage, StorageError,
};

pub(crate) struct StripLabel {
    pub(crate) inner: Arc<dyn Storage>,
    pub(crate) labels: Vec<String>,
}

struct StripAppender<'a> {
    inner: Box<dyn Appender + 'a>,
    labels: Vec<&'a str>,
}

impl Appender for StripAppender<'_> {
    fn append(
        &mut self,
        cached: Option<SeriesRef>,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        if self.labels.iter().any(|l| labels.has(l)) {
            self.inner.append(cached, &labels.without(&self.labels), t, v)
        } else {
            self.inner.append(cached, labels, t, v)
        }
    }

    fn append_ref(&mut self, series: SeriesRef, t: i64, v: f64) -> Result<(), AppendError> {
        self.inner.append_ref(series, t, v)
    }

    fn commit(self: Box<Self>) -> Result<CommitStats, StorageError> {
        self.inner.commit()
    }

    fn rollback(self: Box<Self>) {
        self.inner.rollback()
    }
}

impl Appendable for StripLabel {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(StripAppender {
            inner: self.inner.appender(),
            labels: self.labels.iter().map(String::as_str).collect(),
        })
    }
}

impl Queryable for StripLabel {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        self.inner.querier(mint, maxt)
    }

    fn max_time(&self) -> Option<i64> {
        self.inner.max_time()
    }

    fn min_time(&self) -> Option<i64> {
        self.inner.min_time()
    }

    fn coverage(&self) -> Vec<crate::storage::rollup::Coverage> {
        self.inner.coverage()
    }

    fn rollup_querier(
        &self,
        resolution: i64,
        mint: i64,
        maxt: i64,
    ) -> Result<Option<Box<dyn crate::storage::rollup::RollupQuerier>>, StorageError> {
        self.inner.rollup_querier(resolution, mint, maxt)
    }
}

impl Storage for StripLabel {
    fn ready(&self) -> Result<(), StorageError> {
        self.inner.ready()
    }
}
