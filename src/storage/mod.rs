//! The storage interfaces every producer and consumer of samples goes through: an [`Appender`]
//! for writes (scrape, federation ingest, push) and a [`Querier`] for reads (`/federate`, PromQL,
//! dedup). Implementations live elsewhere (`tsdb`); nothing here knows how data is stored.

pub mod rollup;

use std::fmt;
use std::sync::Arc;

use crate::model::{Labels, Matcher, Sample};

/// A handle to a series inside one storage instance, returned by [`Appender::append`] so that the
/// caller can skip the label lookup next time. Refs are never reused for another series; a ref the
/// storage no longer knows yields [`AppendError::UnknownRef`] and the caller appends by labels.
pub type SeriesRef = u64;

/// Why one sample was not accepted. These are per-sample outcomes that the caller counts; only
/// [`AppendError::Storage`] means the storage itself is failing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error("out of order sample")]
    OutOfOrder,
    #[error("duplicate sample for timestamp")]
    DuplicateTimestamp,
    #[error("out of bounds")]
    OutOfBounds,
    #[error("unknown series reference {0}")]
    UnknownRef(SeriesRef),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A failure of the storage as a whole (I/O, corruption, shutting down).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage is not ready: {0}")]
    NotReady(String),
    #[error("storage corruption: {0}")]
    Corruption(String),
}

/// Stages samples; nothing is visible to queriers, nor durable, until [`Appender::commit`].
pub trait Appender: Send {
    /// Stages one sample. `cached` is a ref an earlier call returned for the same `labels`; pass
    /// `None` the first time. Returns the series ref to cache.
    fn append(
        &mut self,
        cached: Option<SeriesRef>,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<SeriesRef, AppendError>;

    /// Stages one sample for a ref the storage handed out earlier (the scrape hot path).
    fn append_ref(&mut self, series: SeriesRef, t: i64, v: f64) -> Result<(), AppendError>;

    /// Makes every staged sample durable and visible. On error nothing staged is acknowledged.
    fn commit(self: Box<Self>) -> Result<CommitStats, StorageError>;

    /// Discards every staged sample.
    fn rollback(self: Box<Self>);
}

/// What a commit did, for the caller's own counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// Samples made visible.
    pub samples: usize,
    /// Series created by this commit.
    pub new_series: usize,
    /// Samples dropped at commit time (out of order against a concurrent writer, duplicates).
    pub rejected: usize,
}

/// Something that hands out appenders.
pub trait Appendable: Send + Sync {
    fn appender(&self) -> Box<dyn Appender + '_>;
}

/// One series with the samples of the requested range, in timestamp order.
///
/// Labels are shared with the storage (`Arc`): queries such as `/federate` return every series
/// every few seconds, and copying each label set (one allocation per name and value) would cost
/// more than finding the samples.
pub struct Series {
    pub labels: Arc<Labels>,
    pub samples: Box<dyn Iterator<Item = Sample> + Send>,
}

impl fmt::Debug for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series").field("labels", &self.labels).finish_non_exhaustive()
    }
}

/// The latest sample of a series at or before some time, for `/federate` and instant lookups.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestSample {
    /// Shared with the storage, as in [`Series`].
    pub labels: Arc<Labels>,
    pub sample: Sample,
}

/// What a select is for, so that storage layers can adapt (counter-aware replica merging,
/// choosing downsampled data). Every field is advisory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectHints {
    /// The PromQL function the samples feed, e.g. `rate` (`None` for a plain selector).
    pub func: Option<String>,
    /// Evaluation step of a range query in ms (0 for instant queries).
    pub step: i64,
    /// The range of a range selector in ms (0 for instant selectors).
    pub range: i64,
}

impl SelectHints {
    /// Whether the function treats its input as a counter (a decrease is a reset).
    pub fn wants_counter(&self) -> bool {
        matches!(self.func.as_deref(), Some("rate" | "increase" | "irate" | "resets"))
    }
}

/// Reads a fixed time range `[mint, maxt]` (milliseconds, inclusive) of one storage.
pub trait Querier: Send + Sync {
    /// Series whose labels satisfy every matcher and that have samples in the range, sorted by
    /// labels. At least one matcher should select something (an all-empty set selects all).
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError>;

    /// [`Querier::select`] with hints about the use of the samples (see [`SelectHints`]).
    fn select_hinted(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>, StorageError> {
        let _ = hints;
        self.select(matchers)
    }

    /// For each matching series, its last sample in the range (which may be a staleness marker;
    /// callers decide what stale means to them). Sorted by labels.
    fn latest(&self, matchers: &[Matcher]) -> Result<Vec<LatestSample>, StorageError> {
        Ok(self
            .select(matchers)?
            .into_iter()
            .filter_map(|s| s.samples.last().map(|sample| LatestSample { labels: s.labels, sample }))
            .collect())
    }

    /// Sorted, unique label names of the matching series (all series when `matchers` is empty).
    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError>;

    /// Sorted, unique values of `name` across the matching series.
    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError>;

    /// Warnings about the answers given so far: parts of the data that could not be read (a
    /// remote store that failed), so the answers may be incomplete. Shown with the query's
    /// result, as Prometheus shows its storage warnings. Wrappers pass their inner querier's on.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Something that opens queriers.
pub trait Queryable: Send + Sync {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>, StorageError>;

    /// The newest sample timestamp held, if known cheaply (liveness probes use it).
    fn max_time(&self) -> Option<i64> {
        None
    }

    /// The oldest sample timestamp held, if known cheaply (remote reads start where local data
    /// ends); `None` when empty or unknown.
    fn min_time(&self) -> Option<i64> {
        None
    }

    /// Where raw data and rollups of each resolution lie (raw first). Empty when the storage
    /// keeps no rollups and does not know its raw range: queries then read raw data only.
    fn coverage(&self) -> Vec<rollup::Coverage> {
        Vec::new()
    }

    /// A reader of the rollups of `resolution` (ms) with timestamps in `[mint, maxt]`, or `None`
    /// when this storage keeps none.
    fn rollup_querier(
        &self,
        resolution: i64,
        mint: i64,
        maxt: i64,
    ) -> Result<Option<Box<dyn rollup::RollupQuerier>>, StorageError> {
        let _ = (resolution, mint, maxt);
        Ok(None)
    }
}

/// How many series and label values an index holds, as Prometheus's `/api/v1/status/tsdb`
/// shows them: each list keeps its largest entries (as many as asked for), largest first, ties
/// by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cardinality {
    /// Distinct label name/value pairs.
    pub num_label_pairs: u64,
    /// Series per metric name.
    pub series_count_by_metric_name: Vec<(String, u64)>,
    /// Distinct values per label name.
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Bytes of label values per label name, over every series.
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    /// Series per `name=value` pair.
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

/// A full storage: writable, readable, with a readiness state.
pub trait Storage: Appendable + Queryable {
    /// False while the storage cannot take writes (replaying, disk failing); `/-/ready` reports it.
    fn ready(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
