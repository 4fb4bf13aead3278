//! The head's appender: stages samples (validating them against committed data so callers hear
//! about out-of-order samples at once), then at commit builds the commit record, logs it, and
//! applies it series by series, re-checking order against writers that committed meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::model::Labels;
use crate::storage::{AppendError, Appender, CommitStats, SeriesRef, StorageError};

use super::HeadInner;
use super::series::{Appendable, MemSeries};

/// One staged sample. Holding the series (not its ref) saves a second lookup at commit.
pub(crate) struct Staged {
    pub(crate) series: Arc<MemSeries>,
    pub(crate) t: i64,
    pub(crate) v: f64,
}

/// What a commit writes ahead of applying: the series first seen by the log (labels), then the
/// samples by ref, in staging order. Replaying such records in order rebuilds the head.
pub(crate) struct CommitRecord<'a> {
    pub(crate) series: Vec<&'a MemSeries>,
    pub(crate) samples: &'a [Staged],
}

pub(crate) struct HeadAppender<'a> {
    head: &'a HeadInner,
    staged: Vec<Staged>,
    /// Series this appender created, for [`CommitStats::new_series`].
    created: usize,
}

/// The outcome of trying to stage on one series.
enum Stage {
    Done,
    /// The series was garbage-collected between lookup and lock.
    Gone,
}

impl<'a> HeadAppender<'a> {
    pub(crate) fn new(head: &'a HeadInner) -> HeadAppender<'a> {
        HeadAppender { head, staged: Vec::new(), created: 0 }
    }

    fn check_bounds(&self, t: i64) -> Result<(), AppendError> {
        if t < self.head.min_valid_time.load(Ordering::Acquire) {
            self.head.counters.out_of_bounds.fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::OutOfBounds);
        }
        Ok(())
    }

    fn count_rejection(&self, e: &AppendError) {
        let c = &self.head.counters;
        match e {
            AppendError::OutOfOrder => c.out_of_order.fetch_add(1, Ordering::Relaxed),
            AppendError::DuplicateTimestamp => c.duplicates.fetch_add(1, Ordering::Relaxed),
            AppendError::OutOfBounds => c.out_of_bounds.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Validates against committed samples and pins the series (its `pending` count) so that
    /// truncation cannot collect it before commit or rollback.
    /// Takes the series handle by value: it moves into the staged list (one less reference-count
    /// round trip per sample on the hot path).
    fn stage(&mut self, s: Arc<MemSeries>, t: i64, v: f64) -> Result<Stage, AppendError> {
        let mut st = s.state.lock();
        if s.is_deleted() {
            return Ok(Stage::Gone);
        }
        match st.check(t, v) {
            Ok(Appendable::Yes) => {}
            Ok(Appendable::NoOp) => return Ok(Stage::Done),
            Err(e) => {
                drop(st);
                self.count_rejection(&e);
                return Err(e);
            }
        }
        st.pending += 1;
        drop(st);
        self.staged.push(Staged { series: s, t, v });
        Ok(Stage::Done)
    }

    fn unpin_all(&mut self) {
        for s in self.staged.drain(..) {
            let mut st = s.series.state.lock();
            st.pending = st.pending.saturating_sub(1);
        }
    }
}

impl Appender for HeadAppender<'_> {
    fn append(
        &mut self,
        cached: Option<SeriesRef>,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        self.check_bounds(t)?;
        if let Some(s) = cached.and_then(|r| self.head.get_by_ref(r)) {
            let r = s.r;
            if let Stage::Done = self.stage(s, t, v)? {
                return Ok(r);
            }
        }
        let hash = labels.hash();
        loop {
            let (s, created) = self.head.get_or_create(hash, labels, 1);
            if created {
                // Created already pinned for this sample; a new series has nothing to conflict with.
                self.created += 1;
                let r = s.r;
                self.staged.push(Staged { series: s, t, v });
                return Ok(r);
            }
            // `Gone` means truncation removed the series after lookup: look up (or create) again.
            let r = s.r;
            if let Stage::Done = self.stage(s, t, v)? {
                return Ok(r);
            }
        }
    }

    fn append_ref(&mut self, series: SeriesRef, t: i64, v: f64) -> Result<(), AppendError> {
        self.check_bounds(t)?;
        let s = self.head.get_by_ref(series).ok_or(AppendError::UnknownRef(series))?;
        match self.stage(s, t, v)? {
            Stage::Done => Ok(()),
            Stage::Gone => Err(AppendError::UnknownRef(series)),
        }
    }

    fn commit(mut self: Box<Self>) -> Result<CommitStats, StorageError> {
        let staged = std::mem::take(&mut self.staged);
        let head = self.head;
        let _gate = head.commit_gate.read();
        if let Err(e) = self.head.write_ahead(&staged) {
            // Nothing acknowledged: unpin like a rollback.
            self.staged = staged;
            self.unpin_all();
            return Err(e);
        }
        let mut stats = CommitStats { new_series: self.created, ..CommitStats::default() };
        let (mut chunks, mut bytes) = (0u64, 0u64);
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for Staged { series, t, v } in staged {
            let mut st = series.state.lock();
            st.pending = st.pending.saturating_sub(1);
            // Checked again under the series lock: the floor may have risen since staging (a
            // block was cut), and what is below it must not reach the head.
            if t < head.commit_floor.load(Ordering::Acquire) {
                drop(st);
                self.count_rejection(&AppendError::OutOfBounds);
                stats.rejected += 1;
                continue;
            }
            match st.check(t, v) {
                Ok(Appendable::Yes) => match st.append(t, v, head.policy) {
                    Ok(effect) => {
                        stats.samples += 1;
                        chunks += u64::from(effect.new_chunk);
                        bytes += effect.bytes_added as u64;
                        min_t = min_t.min(t);
                        max_t = max_t.max(t);
                    }
                    // Unreachable with validated options (a chunk is cut before it is full).
                    Err(_) => stats.rejected += 1,
                },
                Ok(Appendable::NoOp) => {}
                Err(e) => {
                    drop(st);
                    self.count_rejection(&e);
                    stats.rejected += 1;
                }
            }
        }
        let c = &head.counters;
        c.samples_appended.fetch_add(stats.samples as u64, Ordering::Relaxed);
        c.chunks.fetch_add(chunks as i64, Ordering::Relaxed);
        c.chunk_bytes.fetch_add(bytes as i64, Ordering::Relaxed);
        if stats.samples > 0 {
            head.min_time.fetch_min(min_t, Ordering::AcqRel);
            head.max_time.fetch_max(max_t, Ordering::AcqRel);
        }
        Ok(stats)
    }

    fn rollback(mut self: Box<Self>) {
        self.unpin_all();
    }
}

impl Drop for HeadAppender<'_> {
    /// An appender dropped without commit or rollback rolls back.
    fn drop(&mut self) {
        self.unpin_all();
    }
}

impl HeadInner {
    /// The write-ahead seam: builds the commit record and makes it durable before any sample is
    /// applied. Series go into the record the first time a commit carries samples for them (the
    /// `logged` flag, flipped under `log_lock` so that a series record is always written before
    /// any other commit's samples for it). Without a log, building the record is all it does.
    pub(crate) fn write_ahead(&self, staged: &[Staged]) -> Result<(), StorageError> {
        if staged.is_empty() {
            return Ok(());
        }
        let _serial = self.log_lock.lock();
        let mut series: Vec<&MemSeries> =
            staged.iter().filter(|s| !s.series.logged.load(Ordering::Acquire)).map(|s| &*s.series).collect();
        series.sort_unstable_by_key(|s| s.r);
        series.dedup_by_key(|s| s.r);
        let record = CommitRecord { series, samples: staged };
        // Only once the log has the record are the series marked as logged.
        if let Some(log) = &self.log {
            log.log(&record)?;
        }
        for s in &record.series {
            s.logged.store(true, Ordering::Release);
        }
        Ok(())
    }
}
