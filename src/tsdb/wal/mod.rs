//! The write-ahead log: numbered segment files of CRC-framed records in `<data>/wal/`, written
//! before a commit is acknowledged, replayed on start, and checkpointed so that replay stays
//! bounded. Layout and guarantees: `docs/format/wal.md`.
//!
//! Owns the files and their framing; what the records mean (series, samples) is decided by the
//! head that writes them and the database that replays them.
//!
//! Durability: every record is written to the kernel (`write(2)`, no user-space buffer) before
//! [`Wal::log`] returns, so an acknowledged commit survives the death of the process. Surviving
//! a power loss needs `fdatasync`: per commit with [`WalSync::Commit`] (group commit: one
//! writer's sync covers every record written before it started), or every so often with
//! [`WalSync::Periodic`] through [`Wal::sync`]. Segments are synced when they are closed.

mod record;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::fs::{FileSystem, WriteFile, sync_dir};
use super::progress::{OpenProgress, OpenStage};

pub(crate) use record::Record;
pub use record::RecordError;
pub(crate) use record::{
    FRAME_HEADER, Frame, RefSample, TYPE_SERIES, decode, encode_chunk, encode_samples, encode_series,
    read_frame,
};

/// Default size at which a segment is closed and the next one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 128 << 20;

/// When the WAL is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalSync {
    /// Before each commit returns (group commit). Survives power loss; costs one `fdatasync`
    /// per batch of concurrent commits.
    Commit,
    /// By [`Wal::sync`], which the owner calls on this interval. A power loss may take the last
    /// interval's commits; a crash of the process takes nothing.
    Periodic(Duration),
}

/// A WAL failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    #[error("WAL I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

/// Counters about the WAL, for `/metrics`.
#[derive(Debug, Default)]
pub struct WalCounters {
    pub records_bytes: AtomicU64,
    pub commits: AtomicU64,
    pub write_failures: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_failures: AtomicU64,
    pub fsync_nanos: AtomicU64,
    pub segments_created: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_failures: AtomicU64,
    /// The segment being written (its number).
    pub current_segment: AtomicU64,
}

/// Segments that readers of the log still need (the remote-write senders tailing it): a
/// checkpoint never removes a segment at or after the lowest hold. Each reader holds under its
/// own name and moves its hold forward as it acknowledges data; it bounds its own backlog (it
/// moves the hold past data it gives up on), so a hold here is always honoured.
#[derive(Debug, Default)]
pub struct SegmentHolds {
    holds: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl SegmentHolds {
    /// Keeps segments `>= first_needed` for `who` (replacing its earlier hold).
    pub fn hold(&self, who: &str, first_needed: u64) {
        self.holds.lock().insert(who.to_string(), first_needed);
    }

    /// Drops the hold of `who`.
    pub fn release(&self, who: &str) {
        self.holds.lock().remove(who);
    }

    /// The lowest segment anyone still needs.
    pub fn lowest(&self) -> Option<u64> {
        self.holds.lock().values().copied().min()
    }
}

/// The open writer side of a WAL directory.
pub struct Wal {
    /// Readers' holds on segments, honoured by [`Wal::checkpoint`].
    holds: Arc<SegmentHolds>,
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    segment_bytes: u64,
    sync_mode: WalSync,
    w: Mutex<Writer>,
    /// Highest [`Writer::written`] known to be durable; its lock serialises syncs (group commit).
    durable: Mutex<u64>,
    /// False after a failed write or sync, true again after the next success.
    healthy: AtomicBool,
    pub(crate) counters: WalCounters,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish_non_exhaustive()
    }
}

struct Writer {
    /// Number of the segment `file` writes.
    segment: u64,
    file: Option<Box<dyn WriteFile>>,
    /// Bytes of whole records in the current segment.
    offset: u64,
    /// Bytes ever written through this writer: the position group commit compares.
    written: u64,
    /// A failed write could not be taken back: the next write starts a new segment.
    broken: bool,
}

/// Segment file name: the number, zero-padded to 8 digits.
pub(crate) fn segment_name(n: u64) -> String {
    format!("{n:08}")
}

const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// The segments in `dir`, by number.
pub(crate) fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if name.len() == 8
            && let Ok(n) = name.parse::<u64>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The newest complete checkpoint: its number (the last segment it covers) and directory.
pub(crate) fn last_checkpoint(dir: &Path) -> std::io::Result<Option<(u64, PathBuf)>> {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix(CHECKPOINT_PREFIX).and_then(|s| s.parse::<u64>().ok())
            && best.as_ref().is_none_or(|(b, _)| n > *b)
        {
            best = Some((n, e.path()));
        }
    }
    Ok(best)
}

impl Wal {
    /// Opens `dir` for writing, starting segment `first_segment` (replay has read the older ones).
    pub fn create(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
        first_segment: u64,
        segment_bytes: u64,
        sync_mode: WalSync,
    ) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let wal = Wal {
            holds: Arc::default(),
            dir: dir.to_path_buf(),
            fs,
            segment_bytes: segment_bytes.max(1 << 16),
            sync_mode,
            w: Mutex::new(Writer {
                segment: first_segment,
                file: None,
                offset: 0,
                written: 0,
                broken: false,
            }),
            durable: Mutex::new(0),
            healthy: AtomicBool::new(true),
            counters: WalCounters::default(),
        };
        {
            let mut w = wal.w.lock();
            wal.open_segment(&mut w, first_segment)?;
        }
        Ok(wal)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The holds readers put on segments (see [`SegmentHolds`]).
    pub fn holds(&self) -> Arc<SegmentHolds> {
        self.holds.clone()
    }

    /// Whether the last write (and sync) succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn open_segment(&self, w: &mut Writer, n: u64) -> Result<(), WalError> {
        let path = self.dir.join(segment_name(n));
        let file = self.fs.create(&path).map_err(io_err(&path))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        w.file = Some(file);
        w.segment = n;
        w.offset = 0;
        w.broken = false;
        self.counters.segments_created.fetch_add(1, Ordering::Relaxed);
        self.counters.current_segment.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the current segment (synced) and starts the next. Returns the closed one's number.
    fn rotate_locked(&self, w: &mut Writer) -> Result<u64, WalError> {
        let closed = w.segment;
        if let Some(mut f) = w.file.take() {
            let path = self.dir.join(segment_name(closed));
            if let Err(e) = f.sync_data() {
                // Keep writing into it rather than losing the handle.
                w.file = Some(f);
                return Err(io_err(&path)(e));
            }
        }
        self.open_segment(w, closed + 1)?;
        Ok(closed)
    }

    /// Writes `records` (whole framed records) and returns once they are in the kernel, or also
    /// on disk with [`WalSync::Commit`]. On error nothing of `records` remains in the log (a
    /// partial write is cut off, or the segment is abandoned), so later records stay readable.
    pub fn log(&self, records: &[u8]) -> Result<(), WalError> {
        if records.is_empty() {
            return Ok(());
        }
        let written = {
            let mut w = self.w.lock();
            let res = self.write_locked(&mut w, records);
            if let Err(e) = res {
                self.counters.write_failures.fetch_add(1, Ordering::Relaxed);
                self.healthy.store(false, Ordering::Release);
                return Err(e);
            }
            w.written
        };
        self.counters.records_bytes.fetch_add(records.len() as u64, Ordering::Relaxed);
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        if self.sync_mode == WalSync::Commit {
            self.sync_upto(written)?;
        }
        self.healthy.store(true, Ordering::Release);
        Ok(())
    }

    fn write_locked(&self, w: &mut Writer, records: &[u8]) -> Result<(), WalError> {
        if w.broken || w.file.is_none() {
            let next = w.segment + 1;
            self.open_segment(w, next)?;
        } else if w.offset > 0 && w.offset + records.len() as u64 > self.segment_bytes {
            self.rotate_locked(w)?;
        }
        let path = self.dir.join(segment_name(w.segment));
        let offset = w.offset;
        let Some(file) = w.file.as_mut() else {
            return Err(io_err(&path)(std::io::ErrorKind::NotFound.into()));
        };
        match file.write_all(records) {
            Ok(()) => {
                w.offset += records.len() as u64;
                w.written += records.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Take the partial record back so that the segment still ends on a whole record;
                // if even that fails, never write to this segment again.
                if file.set_len(offset).is_err() {
                    w.broken = true;
                }
                Err(io_err(&path)(e))
            }
        }
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> Result<(), WalError> {
        let written = self.w.lock().written;
        self.sync_upto(written)
    }

    fn sync_upto(&self, target: u64) -> Result<(), WalError> {
        let mut durable = self.durable.lock();
        if *durable >= target {
            return Ok(());
        }
        let (handle, upto, segment) = {
            let w = self.w.lock();
            let handle = w.file.as_ref().map(|f| f.sync_handle());
            (handle, w.written, w.segment)
        };
        let path = self.dir.join(segment_name(segment));
        let started = Instant::now();
        let res = match handle {
            Some(Ok(mut h)) => h.sync_data(),
            Some(Err(e)) => Err(e),
            None => Ok(()),
        };
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.counters.fsync_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match res {
            Ok(()) => {
                *durable = upto;
                Ok(())
            }
            Err(e) => {
                self.counters.fsync_failures.fetch_add(1, Ordering::Relaxed);
                self.healthy.store(false, Ordering::Release);
                Err(io_err(&path)(e))
            }
        }
    }

    /// Closes the current segment and starts the next; returns the closed segment's number (what
    /// a checkpoint taken now covers).
    pub fn rotate(&self) -> Result<u64, WalError> {
        let mut w = self.w.lock();
        self.rotate_locked(&mut w)
    }

    /// Writes a checkpoint covering every segment up to `covered` (from [`Wal::rotate`]), then
    /// deletes those segments and older checkpoints. `fill` writes the checkpoint's records (the
    /// live series and their samples not yet in blocks) through the callback it is given.
    ///
    /// A segment someone holds (see [`SegmentHolds`]) is not covered: the checkpoint then covers
    /// only the segments before the lowest hold, and none is written when that would not be newer
    /// than the last one (the head's state it holds stays in the kept segments and the next
    /// checkpoint; replay applies what both hold once).
    ///
    /// Crash safety: the checkpoint is written in a `.tmp` directory, synced, renamed and the WAL
    /// directory synced before anything is deleted; replay ignores `.tmp` directories and segments
    /// a checkpoint covers.
    pub fn checkpoint(
        &self,
        covered: u64,
        fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()>,
    ) -> Result<CheckpointStats, WalError> {
        let res = self.checkpoint_inner(covered, fill);
        match &res {
            Ok(_) => self.counters.checkpoints.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.checkpoint_failures.fetch_add(1, Ordering::Relaxed),
        };
        res
    }

    fn checkpoint_inner(
        &self,
        covered: u64,
        fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()>,
    ) -> Result<CheckpointStats, WalError> {
        let started = Instant::now();
        let wanted = covered;
        let covered = match self.holds.lowest() {
            Some(0) => return Ok(CheckpointStats { covered: 0, bytes: 0, segments_removed: 0 }),
            Some(h) if h <= covered => h - 1,
            _ => covered,
        };
        let last = last_checkpoint(&self.dir).map_err(io_err(&self.dir))?.map(|(n, _)| n);
        if last.is_some_and(|l| l >= covered) {
            tracing::info!(
                wanted,
                held_from = covered + 1,
                "WAL checkpoint skipped: a remote-write queue still needs the segments"
            );
            return Ok(CheckpointStats { covered, bytes: 0, segments_removed: 0 });
        }
        if covered < wanted {
            tracing::info!(wanted, covered, "WAL checkpoint keeps segments a remote-write queue still needs");
        }
        let name = format!("{CHECKPOINT_PREFIX}{}", segment_name(covered));
        let tmp = self.dir.join(format!("{name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let file_path = tmp.join(segment_name(0));
        let mut file = self.fs.create(&file_path).map_err(io_err(&file_path))?;
        let mut bytes = 0u64;
        fill(&mut |chunk: &[u8]| {
            bytes += chunk.len() as u64;
            file.write_all(chunk)
        })
        .map_err(io_err(&file_path))?;
        file.sync_data().map_err(io_err(&file_path))?;
        drop(file);
        sync_dir(&tmp).map_err(io_err(&tmp))?;
        let dst = self.dir.join(&name);
        std::fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        // The checkpoint is durable: what it covers can go.
        let mut removed = 0;
        for n in list_segments(&self.dir).map_err(io_err(&self.dir))? {
            if n <= covered {
                let p = self.dir.join(segment_name(n));
                std::fs::remove_file(&p).map_err(io_err(&p))?;
                removed += 1;
            }
        }
        remove_old_checkpoints(&self.dir, covered).map_err(io_err(&self.dir))?;
        tracing::info!(
            checkpoint = %name, bytes, segments_removed = removed,
            duration_ms = started.elapsed().as_millis() as u64, "WAL checkpoint written"
        );
        Ok(CheckpointStats { covered, bytes, segments_removed: removed })
    }

    /// Syncs and closes the current segment.
    pub fn close(&self) -> Result<(), WalError> {
        self.sync()?;
        self.w.lock().file = None;
        Ok(())
    }

    /// Bytes of segments and checkpoints on disk.
    pub fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir)
    }
}

/// Total size of the files under `dir` (recursively); unreadable entries count as 0.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn remove_old_checkpoints(dir: &Path, keep: u64) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(CHECKPOINT_PREFIX) else { continue };
        let stale = match rest.parse::<u64>() {
            Ok(n) => n < keep,
            // `.tmp` leftovers of an interrupted checkpoint.
            Err(_) => true,
        };
        if stale {
            std::fs::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}

/// What one checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The last segment the checkpoint covers.
    pub covered: u64,
    pub bytes: u64,
    pub segments_removed: u64,
}

/// What replay found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    /// Torn or damaged tails cut off or skipped.
    pub torn: u64,
    /// Records with a good checksum that did not decode.
    pub undecodable: u64,
    /// The number the next segment to write should have.
    pub next_segment: u64,
}

/// How often a long replay reports its progress in the log.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(5);

/// Reads the newest checkpoint and every later segment in order, calling `apply` for each
/// record and keeping `progress` up to date (once per segment). A bad record ends its segment:
/// in the last segment the file is cut there (a write torn by a crash), in an earlier one the
/// rest is skipped (a write that failed and was abandoned) — both with a warning. Replay never
/// fails for damaged data, only when files cannot be read. Logs a line when it starts, one at
/// most every few seconds while it runs, and one with totals at the end.
pub(crate) fn replay(
    dir: &Path,
    progress: &OpenProgress,
    mut apply: impl FnMut(Record),
) -> Result<ReplayStats, WalError> {
    let mut stats = ReplayStats::default();
    if !dir.exists() {
        return Ok(stats);
    }
    let started = Instant::now();
    let checkpoint = last_checkpoint(dir).map_err(io_err(dir))?;
    remove_old_checkpoints(dir, checkpoint.as_ref().map_or(0, |(n, _)| *n)).map_err(io_err(dir))?;
    let mut first = 0;
    let segments: Vec<u64> = list_segments(dir).map_err(io_err(dir))?;
    if let Some((n, _)) = &checkpoint {
        first = n + 1;
    }
    let live: Vec<u64> = segments.iter().copied().filter(|&s| s >= first).collect();
    let total = live.len();
    progress.set_segments_total(total as u64);
    if checkpoint.is_some() || total > 0 {
        tracing::info!(
            checkpoint = checkpoint.as_ref().map(|(n, _)| *n),
            segments = total,
            first = live.first(),
            last = live.last(),
            "replaying the WAL"
        );
    }
    if let Some((_, cdir)) = &checkpoint {
        progress.set_stage(OpenStage::Checkpoint);
        for s in list_segments(cdir).map_err(io_err(cdir))? {
            let path = cdir.join(segment_name(s));
            replay_file(&path, false, &mut stats, &mut apply)?;
            progress.set_bytes_done(stats.bytes);
        }
        tracing::info!(
            checkpoint = %cdir.display(), bytes = stats.bytes,
            duration_ms = started.elapsed().as_millis() as u64, "WAL checkpoint replayed"
        );
    }
    for &s in &segments {
        if s < first {
            // Covered by the checkpoint; left behind by a crash during its cleanup.
            let p = dir.join(segment_name(s));
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    progress.set_stage(OpenStage::Segments);
    let mut last_log = Instant::now();
    for (i, &s) in live.iter().enumerate() {
        let last = i + 1 == total;
        replay_file(&dir.join(segment_name(s)), last, &mut stats, &mut apply)?;
        progress.segment_done(stats.bytes);
        if last_log.elapsed() >= PROGRESS_LOG_EVERY && !last {
            last_log = Instant::now();
            tracing::info!(
                segment = s,
                done = i + 1,
                total,
                bytes = stats.bytes,
                elapsed_s = started.elapsed().as_secs(),
                "replaying the WAL"
            );
        } else {
            tracing::debug!(segment = s, done = i + 1, total, "WAL segment replayed");
        }
    }
    stats.next_segment = live.last().map_or(first, |l| l + 1).max(first);
    tracing::info!(
        segments = stats.segments,
        records = stats.records,
        bytes = stats.bytes,
        torn = stats.torn,
        duration_ms = started.elapsed().as_millis() as u64,
        "WAL replay finished"
    );
    Ok(stats)
}

fn replay_file(
    path: &Path,
    cut_torn_tail: bool,
    stats: &mut ReplayStats,
    apply: &mut impl FnMut(Record),
) -> Result<(), WalError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    stats.segments += 1;
    let mut at = 0usize;
    while at < data.len() {
        match read_frame(&data[at..]) {
            Frame::Ok { payload, len } => {
                match decode(payload) {
                    Ok(r) => apply(r),
                    Err(e) => {
                        stats.undecodable += 1;
                        tracing::warn!(file = %path.display(), offset = at, error = %e, "skipping undecodable WAL record");
                    }
                }
                stats.records += 1;
                at += len;
            }
            Frame::Bad(why) => {
                stats.torn += 1;
                let lost = data.len() - at;
                if cut_torn_tail {
                    tracing::warn!(
                        file = %path.display(), offset = at, bytes = lost, reason = why,
                        "WAL ends in a torn record; truncating it"
                    );
                    let f = std::fs::OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
                    f.set_len(at as u64).map_err(io_err(path))?;
                    f.sync_all().map_err(io_err(path))?;
                } else {
                    tracing::warn!(
                        file = %path.display(), offset = at, bytes = lost, reason = why,
                        "WAL segment has a damaged tail; skipping the rest of it"
                    );
                }
                break;
            }
        }
    }
    stats.bytes += at as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::tsdb::fs::{FaultyFs, RealFs};

    fn samples(rs: &[(u64, i64)]) -> Vec<u8> {
        let mut b = Vec::new();
        encode_samples(&mut b, rs.iter().map(|&(r, t)| RefSample { r, t, v: t as f64 }));
        b
    }

    fn read_all(dir: &Path) -> (Vec<(u64, i64)>, ReplayStats) {
        let mut got = Vec::new();
        let stats = replay(dir, &OpenProgress::default(), |r| {
            if let Record::Samples(s) = r {
                got.extend(s.iter().map(|s| (s.r, s.t)));
            }
        })
        .unwrap();
        (got, stats)
    }

    #[test]
    fn torn_tail_is_truncated_and_replay_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), Arc::new(RealFs), 1, 1 << 20, WalSync::Commit).unwrap();
        wal.log(&samples(&[(1, 10), (2, 20)])).unwrap();
        wal.log(&samples(&[(1, 30)])).unwrap();
        drop(wal);
        // A crash in the middle of a write: half a record at the end.
        let seg = dir.path().join(segment_name(1));
        let mut data = std::fs::read(&seg).unwrap();
        let whole = data.len();
        data.extend_from_slice(&samples(&[(1, 40)])[..10]);
        std::fs::write(&seg, &data).unwrap();
        let (got, stats) = read_all(dir.path());
        assert_eq!(got, vec![(1, 10), (2, 20), (1, 30)]);
        assert_eq!((stats.torn, stats.next_segment), (1, 2));
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole as u64, "torn tail cut off");
        // Reopening writes a new segment after it.
        let wal =
            Wal::create(dir.path(), Arc::new(RealFs), stats.next_segment, 1 << 20, WalSync::Commit).unwrap();
        wal.log(&samples(&[(1, 50)])).unwrap();
        assert_eq!(read_all(dir.path()).0.len(), 4);
    }

    #[test]
    fn segments_rotate_and_checkpoint_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let wal =
            Wal::create(dir.path(), Arc::new(RealFs), 0, 1 << 16, WalSync::Periodic(Duration::from_secs(1)))
                .unwrap();
        for i in 0..5000 {
            wal.log(&samples(&[(1, i), (2, i)])).unwrap();
        }
        wal.sync().unwrap();
        assert!(list_segments(dir.path()).unwrap().len() > 1);
        let l = Labels::from_pairs(&[("a", "b")]);
        let covered = wal.rotate().unwrap();
        let stats = wal
            .checkpoint(covered, |w| {
                let mut b = Vec::new();
                encode_series(&mut b, [(1, &l)]);
                encode_samples(&mut b, [RefSample { r: 1, t: 4999, v: 0.0 }]);
                w(&b)
            })
            .unwrap();
        assert!(stats.segments_removed > 1);
        wal.log(&samples(&[(1, 5000)])).unwrap();
        let mut series = 0;
        let (got, _) = read_all(dir.path());
        replay(dir.path(), &OpenProgress::default(), |r| series += matches!(r, Record::Series(_)) as usize)
            .unwrap();
        assert_eq!(got, vec![(1, 4999), (1, 5000)]);
        assert_eq!(series, 1);
        // An interrupted later checkpoint leaves a .tmp directory that replay ignores and removes.
        std::fs::create_dir(dir.path().join("checkpoint.00000099.tmp")).unwrap();
        assert_eq!(read_all(dir.path()).0.len(), 2);
        assert!(!dir.path().join("checkpoint.00000099.tmp").exists());
    }

    #[test]
    fn checkpoints_keep_held_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), Arc::new(RealFs), 0, 1 << 16, WalSync::Commit).unwrap();
        for i in 0..10_000 {
            wal.log(&samples(&[(1, i)])).unwrap();
        }
        let before = list_segments(dir.path()).unwrap();
        assert!(before.len() > 3);
        let held = before[2];
        wal.holds().hold("queue", held);
        let covered = wal.rotate().unwrap();
        let stats = wal.checkpoint(covered, |w| w(&[])).unwrap();
        assert_eq!(stats.covered, held - 1);
        assert_eq!(list_segments(dir.path()).unwrap()[0], held, "segments from the hold on are kept");
        // Nothing newer to cover while the hold stays: no checkpoint.
        let covered = wal.rotate().unwrap();
        assert_eq!(wal.checkpoint(covered, |w| w(&[])).unwrap().bytes, 0);
        assert_eq!(list_segments(dir.path()).unwrap()[0], held);
        // Released, the next checkpoint covers everything.
        wal.holds().release("queue");
        let covered = wal.rotate().unwrap();
        wal.checkpoint(covered, |w| w(&[])).unwrap();
        assert!(list_segments(dir.path()).unwrap().iter().all(|&s| s > covered));
    }

    #[test]
    fn failed_write_leaves_no_partial_record_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let wal = Wal::create(dir.path(), Arc::new(fs.clone()), 0, 1 << 20, WalSync::Commit).unwrap();
        wal.log(&samples(&[(1, 1)])).unwrap();
        fs.set_space(Some(5));
        assert!(wal.log(&samples(&[(1, 2)])).is_err());
        assert!(!wal.healthy());
        fs.set_space(None);
        wal.log(&samples(&[(1, 3)])).unwrap();
        assert!(wal.healthy());
        let (got, stats) = read_all(dir.path());
        assert_eq!(got, vec![(1, 1), (1, 3)]);
        assert_eq!(stats.torn, 0);
    }
}
