//! The head: the in-memory part of the TSDB that takes every new sample. It owns the series
//! (labels, compressed chunks, last sample), the postings index over their labels, appending with
//! Prometheus's ordering rules, queries over a time range, and truncation for retention.
//!
//! It implements the `storage` traits and knows nothing of scraping or HTTP. Durability is not
//! here: [`Appender::commit`](crate::storage::Appender::commit) builds a commit record and hands
//! it to a [`CommitLog`] (the database's write-ahead log) before applying it; a head built with
//! [`Head::new`] has none and lives in memory only. For the database around it the head also
//! replays logged records (`replay_series`, `replay_samples`), hands out its chunks for blocks and
//! checkpoints (`export`), and refuses samples below a floor (`raise_min_valid_time`).
//!
//! Chunks are cut every [`HeadOptions::samples_per_chunk`] samples (120 by default: 30 min at a
//! 15 s interval) and also whenever a sample crosses a multiple of [`HeadOptions::chunk_range_ms`]
//! (2 h by default), so no chunk straddles a block boundary and block writing can take chunks
//! whole.

mod appender;
mod order;
mod postings;
mod querier;
mod series;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::model::{Labels, Matcher};
use crate::storage::{Appendable, Appender, Querier, Queryable, SeriesRef, Storage, StorageError};

pub(crate) use self::appender::CommitRecord;
use self::appender::HeadAppender;
use self::order::LabelOrder;
use self::postings::MemPostings;
use self::querier::HeadQuerier;
use self::series::{Appendable as Check, CutPolicy, StripeSeries};
pub(crate) use self::series::{ExportChunk, MemSeries};

/// Where a head writes each commit before applying it (the write-ahead log). `log` must not
/// return until the record is as durable as the log promises; an error fails the commit.
pub(crate) trait CommitLog: Send + Sync {
    fn log(&self, record: &CommitRecord<'_>) -> Result<(), StorageError>;
}

/// One series handed out by [`Head::export`]: its ref, labels and chunks in the range.
pub(crate) struct ExportSeries {
    pub(crate) r: SeriesRef,
    pub(crate) labels: Arc<Labels>,
    pub(crate) chunks: Vec<ExportChunk>,
}

/// Why a head could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    #[error("invalid head option {option}: {reason}")]
    InvalidOption { option: &'static str, reason: String },
}

/// Tuning of a [`Head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadOptions {
    /// Samples after which a chunk is sealed and a new one started (1..=65535).
    pub samples_per_chunk: usize,
    /// Chunks never span a multiple of this many milliseconds (the block range).
    pub chunk_range_ms: i64,
    /// Lock stripes for the series maps (a power of two); more stripes, fewer collisions
    /// between concurrent writers.
    pub stripes: usize,
}

impl Default for HeadOptions {
    fn default() -> HeadOptions {
        HeadOptions { samples_per_chunk: 120, chunk_range_ms: 2 * 3600 * 1000, stripes: 1024 }
    }
}

impl HeadOptions {
    fn validate(&self) -> Result<(), HeadError> {
        let bad = |option, reason: &str| Err(HeadError::InvalidOption { option, reason: reason.to_string() });
        if !(1..=crate::tsdb::chunkenc::MAX_SAMPLES).contains(&self.samples_per_chunk) {
            return bad("samples_per_chunk", "must be between 1 and 65535");
        }
        if self.chunk_range_ms <= 0 {
            return bad("chunk_range_ms", "must be positive");
        }
        if !self.stripes.is_power_of_two() {
            return bad("stripes", "must be a power of two");
        }
        Ok(())
    }
}

/// Counters and gauges about a head, for `/metrics`. A snapshot; fields are read one by one, so
/// they may be mutually off by the commits that ran meanwhile.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadStats {
    /// Series currently held.
    pub series: u64,
    /// Chunks currently held (sealed and open).
    pub chunks: u64,
    /// Series created since start.
    pub series_created: u64,
    /// Series removed by truncation since start.
    pub series_removed: u64,
    /// Samples made visible since start.
    pub samples_appended: u64,
    /// Samples rejected as older than their series' last sample.
    pub out_of_order: u64,
    /// Samples rejected for repeating a timestamp with another value.
    pub duplicates: u64,
    /// Samples rejected as older than the truncation point.
    pub out_of_bounds: u64,
    /// Encoded bytes in chunks (approximate: lengths, not allocations).
    pub chunk_bytes: u64,
    /// Bytes of label sets held (approximate).
    pub label_bytes: u64,
}

/// What one [`Head::truncate`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TruncateStats {
    pub chunks_removed: u64,
    pub series_removed: u64,
}

/// Gauges are signed: a truncation may subtract a chunk before the commit that made it has
/// added it, and a snapshot must not show that as a wrapped-around huge number.
#[derive(Default)]
struct Counters {
    series: AtomicI64,
    chunks: AtomicI64,
    series_created: AtomicU64,
    series_removed: AtomicU64,
    samples_appended: AtomicU64,
    out_of_order: AtomicU64,
    duplicates: AtomicU64,
    out_of_bounds: AtomicU64,
    chunk_bytes: AtomicI64,
    label_bytes: AtomicI64,
}

/// The in-memory head. Cheap to clone (a shared handle); queriers keep it alive.
#[derive(Clone)]
pub struct Head {
    inner: Arc<HeadInner>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

pub(crate) struct HeadInner {
    policy: CutPolicy,
    series: StripeSeries,
    postings: RwLock<MemPostings>,
    /// Label order of the series, so that query results sort cheaply.
    order: LabelOrder,
    /// The next series ref; refs only grow, so a ref is never reused.
    next_ref: AtomicU64,
    /// Samples older than this are out of bounds (raised by truncation), checked when staged.
    min_valid_time: AtomicI64,
    /// Samples older than this are refused also at commit, however early they were staged:
    /// raised by the database before it writes a block (see [`Head::raise_min_valid_time`]).
    commit_floor: AtomicI64,
    /// The highest `mint` truncation was called with: the floor of [`Head::min_time`].
    truncated_to: AtomicI64,
    /// Oldest and newest sample timestamps appended (`i64::MAX`/`i64::MIN` when none).
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// Serialises the logging step of commits, so series records precede their samples.
    log_lock: Mutex<()>,
    /// The write-ahead log, if any.
    log: Option<Arc<dyn CommitLog>>,
    /// Held shared by every commit from logging to applying, and exclusively by
    /// [`Head::quiesce`]: so that when a quiesced action runs, every logged commit is applied.
    commit_gate: RwLock<()>,
    counters: Counters,
}

impl Default for Head {
    fn default() -> Head {
        Head::build(HeadOptions::default(), None)
    }
}

impl Head {
    pub fn new(opts: HeadOptions) -> Result<Head, HeadError> {
        opts.validate()?;
        Ok(Head::build(opts, None))
    }

    /// A head that writes every commit to `log` before applying it.
    pub(crate) fn with_log(opts: HeadOptions, log: Arc<dyn CommitLog>) -> Result<Head, HeadError> {
        opts.validate()?;
        Ok(Head::build(opts, Some(log)))
    }

    fn build(opts: HeadOptions, log: Option<Arc<dyn CommitLog>>) -> Head {
        Head {
            inner: Arc::new(HeadInner {
                policy: CutPolicy {
                    samples_per_chunk: opts.samples_per_chunk,
                    chunk_range_ms: opts.chunk_range_ms,
                },
                series: StripeSeries::new(opts.stripes),
                postings: RwLock::new(MemPostings::default()),
                order: LabelOrder::default(),
                next_ref: AtomicU64::new(1),
                min_valid_time: AtomicI64::new(i64::MIN),
                commit_floor: AtomicI64::new(i64::MIN),
                truncated_to: AtomicI64::new(i64::MIN),
                min_time: AtomicI64::new(i64::MAX),
                max_time: AtomicI64::new(i64::MIN),
                log_lock: Mutex::new(()),
                log,
                commit_gate: RwLock::new(()),
                counters: Counters::default(),
            }),
        }
    }

    pub fn stats(&self) -> HeadStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauge = |a: &AtomicI64| a.load(Ordering::Relaxed).max(0) as u64;
        HeadStats {
            series: gauge(&c.series),
            chunks: gauge(&c.chunks),
            series_created: get(&c.series_created),
            series_removed: get(&c.series_removed),
            samples_appended: get(&c.samples_appended),
            out_of_order: get(&c.out_of_order),
            duplicates: get(&c.duplicates),
            out_of_bounds: get(&c.out_of_bounds),
            chunk_bytes: gauge(&c.chunk_bytes),
            label_bytes: gauge(&c.label_bytes),
        }
    }

    /// The cardinality of the head's index (series and label values), each list cut to its
    /// `limit` largest entries: what `/api/v1/status/tsdb` shows, as Prometheus computes it from
    /// the head only. Holds the index's read lock while it counts.
    pub fn cardinality(&self, limit: usize) -> crate::storage::Cardinality {
        self.inner.postings.read().cardinality(limit)
    }

    /// Oldest sample timestamp ever appended and not yet truncated away (approximate after
    /// truncation: the truncation point), or `None` for an empty head.
    pub fn min_time(&self) -> Option<i64> {
        let t = self.inner.min_time.load(Ordering::Acquire);
        let floor = self.inner.truncated_to.load(Ordering::Acquire);
        (t != i64::MAX).then_some(t.max(floor))
    }

    /// Newest sample timestamp appended, or `None` for an empty head.
    pub fn max_time(&self) -> Option<i64> {
        let t = self.inner.max_time.load(Ordering::Acquire);
        (t != i64::MIN).then_some(t)
    }

    /// Drops every chunk whose samples are all older than `mint`, then removes series left with
    /// no samples and no staged appends (from the maps and the postings). Later appends older
    /// than `mint` fail with `OutOfBounds`. Called by the leaf for retention.
    pub fn truncate(&self, mint: i64) -> TruncateStats {
        self.inner.truncate(mint)
    }

    /// From now on samples older than `t` are refused (`OutOfBounds`), also at commit time for
    /// samples staged earlier. The database raises it before handing a range to a block, so no
    /// sample can land in that range after it was written.
    pub(crate) fn raise_min_valid_time(&self, t: i64) {
        self.inner.commit_floor.fetch_max(t, Ordering::AcqRel);
        self.inner.min_valid_time.fetch_max(t, Ordering::AcqRel);
    }

    /// Runs `f` while no commit is between logging and applying. The WAL rotates a segment for
    /// a checkpoint under it: every commit logged in the older segments is then in the head, so
    /// the checkpoint (taken from the head) holds it.
    pub(crate) fn quiesce<R>(&self, f: impl FnOnce() -> R) -> R {
        let _gate = self.inner.commit_gate.write();
        f()
    }

    pub(crate) fn min_valid_time(&self) -> i64 {
        self.inner.min_valid_time.load(Ordering::Acquire)
    }

    /// Recreates a logged series under its logged ref (or returns the live series with the same
    /// labels, which then stands for that ref too). Replayed series count as logged.
    pub(crate) fn replay_series(&self, r: SeriesRef, labels: &Labels) -> Arc<MemSeries> {
        let inner = &self.inner;
        inner.next_ref.fetch_max(r.saturating_add(1), Ordering::AcqRel);
        let (s, _) = inner.get_or_create_with(labels.hash(), labels, 0, || r);
        s.logged.store(true, Ordering::Release);
        s
    }

    /// Applies logged samples directly (no log, no staging). Samples the ordering rules or the
    /// floor refuse are skipped and returned as the second count; they were never acknowledged
    /// or are already in a block.
    pub(crate) fn replay_samples<'a>(
        &self,
        samples: impl IntoIterator<Item = (&'a MemSeries, i64, f64)>,
    ) -> (u64, u64) {
        let inner = &self.inner;
        let floor = self.min_valid_time();
        let (mut applied, mut skipped, mut chunks, mut bytes) = (0u64, 0u64, 0i64, 0i64);
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for (s, t, v) in samples {
            let mut st = s.state.lock();
            if t < floor || !matches!(st.check(t, v), Ok(Check::Yes)) {
                skipped += 1;
                continue;
            }
            match st.append(t, v, inner.policy) {
                Ok(e) => {
                    applied += 1;
                    chunks += i64::from(e.new_chunk);
                    bytes += e.bytes_added as i64;
                    min_t = min_t.min(t);
                    max_t = max_t.max(t);
                }
                Err(_) => skipped += 1,
            }
        }
        let c = &inner.counters;
        c.samples_appended.fetch_add(applied, Ordering::Relaxed);
        c.chunks.fetch_add(chunks, Ordering::Relaxed);
        c.chunk_bytes.fetch_add(bytes, Ordering::Relaxed);
        if applied > 0 {
            inner.min_time.fetch_min(min_t, Ordering::AcqRel);
            inner.max_time.fetch_max(max_t, Ordering::AcqRel);
        }
        (applied, skipped)
    }

    /// The series' chunks with samples in `[mint, maxt]` (cut to the range). With `sorted`, in
    /// label order and only series with such chunks (for a block); else every series, chunks
    /// or not, in no order (for a checkpoint, which must carry every live series' labels).
    pub(crate) fn export(&self, mint: i64, maxt: i64, sorted: bool) -> Vec<ExportSeries> {
        let inner = &self.inner;
        let collect = |s: &Arc<MemSeries>| ExportSeries {
            r: s.r,
            labels: Arc::clone(&s.labels),
            chunks: s.state.lock().chunks_in(mint, maxt),
        };
        if sorted {
            inner
                .order
                .sort(inner.select_series(&[]))
                .iter()
                .map(collect)
                .filter(|e| !e.chunks.is_empty())
                .collect()
        } else {
            let mut out = Vec::new();
            inner.series.for_each(|s| out.push(collect(s)));
            out
        }
    }
}

impl HeadInner {
    fn truncate(&self, mint: i64) -> TruncateStats {
        self.min_valid_time.fetch_max(mint, Ordering::AcqRel);
        self.truncated_to.fetch_max(mint, Ordering::AcqRel);
        let (mut chunks, mut bytes) = (0u64, 0u64);
        let removed = self.series.remove_where(|s| {
            let mut st = s.state.lock();
            let (c, b) = st.truncate(mint);
            chunks += c as u64;
            bytes += b as u64;
            let dead = st.is_empty() && st.pending == 0;
            if dead {
                // Under the state lock: a writer that locks the series afterwards sees it.
                s.deleted.store(true, std::sync::atomic::Ordering::Release);
            }
            dead
        });
        if !removed.is_empty() {
            self.postings.write().delete(removed.iter().map(|s| (s.r, &*s.labels)));
            self.order.rebuild();
        }
        let label_bytes: usize = removed.iter().map(|s| s.labels.byte_size()).sum();
        let c = &self.counters;
        c.chunks.fetch_sub(chunks as i64, Ordering::Relaxed);
        c.chunk_bytes.fetch_sub(bytes as i64, Ordering::Relaxed);
        c.series.fetch_sub(removed.len() as i64, Ordering::Relaxed);
        c.series_removed.fetch_add(removed.len() as u64, Ordering::Relaxed);
        c.label_bytes.fetch_sub(label_bytes as i64, Ordering::Relaxed);
        TruncateStats { chunks_removed: chunks, series_removed: removed.len() as u64 }
    }

    /// The live series with these labels, created (with `pending` staged samples already counted)
    /// when missing. Allocates only when creating.
    fn get_or_create(&self, hash: u64, labels: &Labels, pending: u32) -> (Arc<MemSeries>, bool) {
        self.get_or_create_with(hash, labels, pending, || self.next_ref.fetch_add(1, Ordering::Relaxed))
    }

    fn get_or_create_with(
        &self,
        hash: u64,
        labels: &Labels,
        pending: u32,
        new_ref: impl FnOnce() -> SeriesRef,
    ) -> (Arc<MemSeries>, bool) {
        let (s, created) = self.series.get_or_create(hash, labels, || {
            Arc::new(MemSeries::new(new_ref(), hash, labels.clone(), pending))
        });
        if created {
            self.postings.write().add(s.r, &s.labels);
            self.order.add(&s);
            let c = &self.counters;
            c.series.fetch_add(1, Ordering::Relaxed);
            c.series_created.fetch_add(1, Ordering::Relaxed);
            c.label_bytes.fetch_add(s.labels.byte_size() as i64, Ordering::Relaxed);
        }
        (s, created)
    }

    /// Series matching every matcher, in no particular order.
    fn select_series(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let refs = self.postings.read().select(matchers);
        refs.into_iter().filter_map(|r| self.series.get_by_ref(r)).collect()
    }

    fn get_by_ref(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        self.series.get_by_ref(r)
    }
}

impl Appendable for Head {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(HeadAppender::new(&self.inner))
    }
}

impl Queryable for Head {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        Ok(Box::new(HeadQuerier::new(Arc::clone(&self.inner), mint, maxt)))
    }

    fn max_time(&self) -> Option<i64> {
        Head::max_time(self)
    }

    fn min_time(&self) -> Option<i64> {
        Head::min_time(self)
    }
}

impl Storage for Head {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{STALE_NAN, Sample};
    use crate::storage::AppendError;

    fn labels(i: usize) -> Labels {
        Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())])
    }

    fn samples(head: &Head, mint: i64, maxt: i64, ms: &[Matcher]) -> Vec<(Labels, Vec<Sample>)> {
        let q = head.querier(mint, maxt).unwrap();
        q.select(ms).unwrap().into_iter().map(|s| ((*s.labels).clone(), s.samples.collect())).collect()
    }

    /// Recomputes the gauges from the series themselves.
    fn recount(head: &Head) -> (u64, u64, u64, u64) {
        let (mut series, mut chunks, mut bytes, mut label_bytes) = (0, 0, 0, 0);
        head.inner.series.for_each(|s| {
            let st = s.state.lock();
            series += 1;
            chunks += st.num_chunks() as u64;
            bytes += st.chunk_bytes() as u64;
            label_bytes += s.labels.byte_size() as u64;
        });
        (series, chunks, bytes, label_bytes)
    }

    #[test]
    fn append_commit_select() {
        let head = Head::new(HeadOptions { samples_per_chunk: 3, ..HeadOptions::default() }).unwrap();
        let mut app = head.appender();
        let r = app.append(None, &labels(1), 10, 1.0).unwrap();
        for t in 2..=7 {
            app.append_ref(r, t * 10, t as f64).unwrap();
        }
        assert!(samples(&head, 0, 100, &[]).is_empty(), "nothing visible before commit");
        let stats = app.commit().unwrap();
        assert_eq!(stats, crate::storage::CommitStats { samples: 7, new_series: 1, rejected: 0 });
        let got = samples(&head, 25, 55, &[]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.iter().map(|s| s.t).collect::<Vec<_>>(), vec![30, 40, 50]);
        let st = head.stats();
        assert_eq!((st.series, st.chunks, st.samples_appended), (1, 3, 7));
        assert_eq!(recount(&head), (st.series, st.chunks, st.chunk_bytes, st.label_bytes));
    }

    #[test]
    fn ordering_rules_and_counters() {
        let head = Head::default();
        let mut app = head.appender();
        let r = app.append(None, &labels(1), 100, 1.0).unwrap();
        app.commit().unwrap();
        let mut app = head.appender();
        assert!(matches!(app.append_ref(r, 99, 1.0), Err(AppendError::OutOfOrder)));
        assert!(matches!(app.append_ref(r, 100, 2.0), Err(AppendError::DuplicateTimestamp)));
        app.append_ref(r, 100, 1.0).unwrap();
        assert!(matches!(app.append_ref(77, 100, 1.0), Err(AppendError::UnknownRef(77))));
        // Staged twice in one batch: the second is rejected at commit.
        app.append_ref(r, 200, 1.0).unwrap();
        app.append_ref(r, 150, 1.0).unwrap();
        let stats = app.commit().unwrap();
        assert_eq!((stats.samples, stats.rejected), (1, 1));
        let st = head.stats();
        assert_eq!((st.out_of_order, st.duplicates, st.samples_appended), (2, 1, 2));
    }

    #[test]
    fn rollback_leaves_no_samples_and_series_is_collected() {
        let head = Head::default();
        let mut app = head.appender();
        let r = app.append(None, &labels(1), 10, 1.0).unwrap();
        app.rollback();
        assert!(samples(&head, i64::MIN, i64::MAX, &[]).is_empty());
        let q = head.querier(i64::MIN, i64::MAX).unwrap();
        assert!(q.label_names(&[]).unwrap().is_empty());
        assert_eq!(head.truncate(i64::MIN).series_removed, 1);
        let mut app = head.appender();
        assert!(matches!(app.append_ref(r, 20, 1.0), Err(AppendError::UnknownRef(_))));
        let r2 = app.append(Some(r), &labels(1), 20, 1.0).unwrap();
        assert!(r2 > r, "refs are never reused");
        app.commit().unwrap();
        assert_eq!(samples(&head, 0, 100, &[]).len(), 1);
    }

    #[test]
    fn truncate_keeps_pinned_series_and_rejects_old_samples() {
        let head = Head::new(HeadOptions { samples_per_chunk: 2, ..HeadOptions::default() }).unwrap();
        let mut app = head.appender();
        let r = app.append(None, &labels(1), 10, 1.0).unwrap();
        app.append_ref(r, 20, 1.0).unwrap();
        app.append_ref(r, 30, 1.0).unwrap();
        app.commit().unwrap();
        let mut pinned = head.appender();
        pinned.append(None, &labels(2), 5, 1.0).unwrap();
        let t = head.truncate(25);
        assert_eq!((t.chunks_removed, t.series_removed), (1, 0));
        assert_eq!(head.stats().series, 2);
        let st = head.stats();
        assert_eq!(recount(&head), (st.series, st.chunks, st.chunk_bytes, st.label_bytes));
        // The staged sample is now older than the truncation point but was accepted before it.
        assert_eq!(pinned.commit().unwrap().samples, 1);
        let mut app = head.appender();
        assert!(matches!(app.append_ref(r, 24, 1.0), Err(AppendError::OutOfBounds)));
        app.rollback();
        let t = head.truncate(100);
        assert_eq!(t.series_removed, 2);
        let st = head.stats();
        assert_eq!((st.series, st.chunks, st.chunk_bytes, st.label_bytes), (0, 0, 0, 0));
        assert_eq!(st.out_of_bounds, 1);
    }

    #[test]
    fn latest_uses_range_and_keeps_stale_markers() {
        let head = Head::default();
        let mut app = head.appender();
        let r = app.append(None, &labels(1), 10, 1.0).unwrap();
        app.append_ref(r, 20, STALE_NAN).unwrap();
        app.commit().unwrap();
        let q = head.querier(0, 15).unwrap();
        let l = q.latest(&[]).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].sample.t, 10);
        let q = head.querier(0, 30).unwrap();
        let l = q.latest(&[]).unwrap();
        assert!(crate::model::is_stale_nan(l[0].sample.v));
        assert!(head.querier(21, 30).unwrap().latest(&[]).unwrap().is_empty());
        assert_eq!((head.min_time(), head.max_time()), (Some(10), Some(20)));
    }

    #[test]
    fn options_are_validated() {
        let bad = [
            HeadOptions { samples_per_chunk: 0, ..HeadOptions::default() },
            HeadOptions { samples_per_chunk: 70_000, ..HeadOptions::default() },
            HeadOptions { chunk_range_ms: 0, ..HeadOptions::default() },
            HeadOptions { stripes: 3, ..HeadOptions::default() },
        ];
        for o in bad {
            assert!(Head::new(o).is_err(), "{o:?}");
        }
        assert!(Head::new(HeadOptions::default()).is_ok());
    }
}
