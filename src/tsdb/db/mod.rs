//! The database: one data directory holding the head's write-ahead log (`wal/`) and immutable
//! blocks (`<ulid>/`). Owns opening (blocks loaded, WAL replayed into a fresh head), the
//! maintenance cycle the owner runs periodically ([`Db::maintain`]: cut the head into blocks,
//! checkpoint the WAL, compact, apply retention), and the `storage` traits over head + blocks.
//!
//! Life of a sample: appended to the head, logged in the WAL before the commit returns, cut into
//! a level-1 block once the head spans 1.5 block ranges, merged into bigger blocks by compaction,
//! deleted with its whole block by retention. The WAL is checkpointed after each cut, so replay
//! reads at most the head's worth of data.
//!
//! Threads: every method may block on file I/O; async callers use `spawn_blocking`. The
//! database starts no threads or tasks of its own.

mod downsample;
mod querier;
mod replay;

pub use self::downsample::{DownsampleLevel, PIECE_MS};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use self::querier::MergeQuerier;
use super::block::{
    self, Block, BlockCompaction, BlockError, BlockMeta, ChunkBytes, ENCODING_XOR, WriteChunk, compact,
    querier::BlockQuerier, remove_block_dir, writer::write_block,
};
use super::fs::{FileSystem, RealFs};
use super::head::{CommitLog, CommitRecord, ExportSeries};
use super::progress::{OpenProgress, OpenStage};
use super::wal::{self, RefSample, Wal, WalError, WalSync};
use super::{Head, HeadError, HeadOptions, HeadStats};
use crate::storage::{Appendable, Appender, Querier, Queryable, Storage, StorageError};

const HOUR_MS: i64 = 3_600_000;

/// How long a cut waits for queriers that may still need the head's copy of its range.
const READER_WAIT: Duration = Duration::from_secs(30);

/// Counts open queriers by the epoch of the block list they saw. Cutting a block advances the
/// epoch after publishing the block, then waits until no querier of an older epoch is open
/// before truncating the head — so a querier sees every range in a block or in the head.
#[derive(Default)]
struct ReadEpochs {
    state: Mutex<(u64, std::collections::BTreeMap<u64, usize>)>,
    changed: Condvar,
}

impl ReadEpochs {
    fn enter(self: &Arc<Self>) -> ReaderGuard {
        let mut st = self.state.lock();
        let epoch = st.0;
        *st.1.entry(epoch).or_default() += 1;
        ReaderGuard { epochs: Arc::clone(self), epoch }
    }

    fn advance(&self) -> u64 {
        let mut st = self.state.lock();
        st.0 += 1;
        st.0
    }

    /// Waits until no reader of an epoch before `epoch` is open; false on timeout.
    fn wait_before(&self, epoch: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        while st.1.range(..epoch).next().is_some() {
            if self.changed.wait_until(&mut st, deadline).timed_out() {
                return false;
            }
        }
        true
    }
}

struct ReaderGuard {
    epochs: Arc<ReadEpochs>,
    epoch: u64,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut st = self.epochs.state.lock();
        if let Some(n) = st.1.get_mut(&self.epoch) {
            *n -= 1;
            if *n == 0 {
                st.1.remove(&self.epoch);
            }
        }
        drop(st);
        self.epochs.changed.notify_all();
    }
}

/// A querier that holds its reader registration for as long as it lives. Returned iterators
/// own their data (chunk handles), so they may outlive it.
struct TrackedQuerier {
    inner: Box<dyn Querier>,
    _guard: ReaderGuard,
}

impl Querier for TrackedQuerier {
    fn select(
        &self,
        matchers: &[crate::model::Matcher],
    ) -> Result<Vec<crate::storage::Series>, StorageError> {
        self.inner.select(matchers)
    }
    fn latest(
        &self,
        matchers: &[crate::model::Matcher],
    ) -> Result<Vec<crate::storage::LatestSample>, StorageError> {
        self.inner.latest(matchers)
    }
    fn label_names(&self, matchers: &[crate::model::Matcher]) -> Result<Vec<String>, StorageError> {
        self.inner.label_names(matchers)
    }
    fn label_values(
        &self,
        name: &str,
        matchers: &[crate::model::Matcher],
    ) -> Result<Vec<String>, StorageError> {
        self.inner.label_values(name, matchers)
    }
}

/// How a [`Db`] behaves.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// The span of a level-1 block (and of head chunks), in ms. 2 h by default.
    pub block_range_ms: i64,
    /// The largest span compaction builds, in ms; by default a tenth of the retention, at most
    /// 31 days (as Prometheus).
    pub max_block_range_ms: Option<i64>,
    /// Blocks whose data is all older than the newest sample minus this are deleted.
    pub retention_ms: Option<i64>,
    /// Oldest blocks are deleted while blocks and WAL together take more bytes than this.
    pub max_bytes: Option<u64>,
    pub wal_segment_bytes: u64,
    pub wal_sync: WalSync,
    pub samples_per_chunk: usize,
    pub stripes: usize,
    /// The file layer for WAL and block writes (a faulty one in tests).
    pub fs: Arc<dyn FileSystem>,
    /// Resolutions to roll raw data up to, finest first (none: no downsampling).
    pub downsample: Vec<DownsampleLevel>,
    /// Where [`Db::open`] reports how far it has got (read by the node while it starts).
    pub progress: Arc<OpenProgress>,
}

impl Default for DbOptions {
    fn default() -> DbOptions {
        DbOptions {
            block_range_ms: 2 * HOUR_MS,
            max_block_range_ms: None,
            retention_ms: None,
            max_bytes: None,
            wal_segment_bytes: wal::DEFAULT_SEGMENT_BYTES,
            wal_sync: WalSync::Periodic(Duration::from_secs(1)),
            samples_per_chunk: 120,
            stripes: 1024,
            fs: Arc::new(RealFs),
            downsample: Vec::new(),
            progress: Arc::default(),
        }
    }
}

impl DbOptions {
    /// Window sizes for compaction: the block range, then ×3 up to the maximum.
    fn ranges(&self) -> Vec<i64> {
        growing_ranges(self.block_range_ms, self.max_block_range_ms, self.retention_ms)
    }

    /// The retention of data of `resolution` (0: raw).
    fn retention_of(&self, resolution: i64) -> Option<i64> {
        self.downsample
            .iter()
            .find(|l| l.resolution_ms == resolution)
            .and_then(|l| l.retention_ms)
            .or(self.retention_ms)
    }
}

/// Compaction window sizes: `base`, then ×3 up to `max` (by default a tenth of the retention,
/// at most 31 days).
fn growing_ranges(base: i64, max: Option<i64>, retention: Option<i64>) -> Vec<i64> {
    let max = max.unwrap_or_else(|| {
        let month = 31 * 24 * HOUR_MS;
        retention.map_or(month, |r| (r / 10).min(month))
    });
    let mut out = vec![base];
    while let Some(&last) = out.last() {
        let next = last.saturating_mul(3);
        if next > max {
            break;
        }
        out.push(next);
    }
    out
}

/// Why the database could not open or maintain itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error("invalid database option {option}: {reason}")]
    InvalidOption { option: &'static str, reason: String },
    #[error("data directory {path} is in use by another process (its lock file is held)")]
    Locked { path: PathBuf },
    /// Reading the database's own data failed (while rolling it up).
    #[error(transparent)]
    Read(#[from] StorageError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io { path: path.to_path_buf(), source }
}

impl From<WalError> for StorageError {
    fn from(e: WalError) -> StorageError {
        match e {
            WalError::Io { path, source } => StorageError::Io(std::io::Error::new(
                source.kind(),
                format!("WAL {}: {source}", path.display()),
            )),
        }
    }
}

/// Statistics for `/metrics`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DbStats {
    pub head: HeadStats,
    pub blocks: u64,
    pub block_bytes: u64,
    pub block_samples: u64,
    /// Oldest sample time in blocks or head (ms), if any.
    pub min_time: Option<i64>,
    pub wal_disk_bytes: u64,
    pub wal_written_bytes: u64,
    pub wal_commits: u64,
    pub wal_write_failures: u64,
    pub wal_fsyncs: u64,
    pub wal_fsync_failures: u64,
    pub wal_fsync_seconds: f64,
    pub wal_segments_created: u64,
    pub wal_current_segment: u64,
    pub wal_checkpoints: u64,
    pub wal_checkpoint_failures: u64,
    pub cuts: u64,
    pub cut_failures: u64,
    pub compactions: u64,
    pub compaction_failures: u64,
    /// Time spent cutting the head into blocks, and merging blocks.
    pub cut_seconds: f64,
    pub compaction_seconds: f64,
    /// Whether a block is being written now (a cut or a compaction).
    pub populating_block: bool,
    pub retention_deleted_blocks: u64,
    /// Rollup blocks written, series rolled up in them, time spent, failed attempts, and
    /// pieces waiting (see `downsample`).
    pub downsample_blocks: u64,
    pub downsample_series: u64,
    pub downsample_seconds: f64,
    pub downsample_failures: u64,
    pub downsample_pending: u64,
    /// Bytes of rollup blocks by resolution (ms).
    pub rollup_bytes: Vec<(i64, u64)>,
    pub replay_seconds: f64,
    pub replay_bytes: u64,
    pub replay_torn: u64,
}

#[derive(Default)]
struct Counters {
    cuts: AtomicU64,
    cut_failures: AtomicU64,
    compactions: AtomicU64,
    compaction_failures: AtomicU64,
    cut_nanos: AtomicU64,
    compaction_nanos: AtomicU64,
    /// A block is being written (a cut or a compaction).
    populating: AtomicBool,
    retention_deleted: AtomicU64,
    downsample_blocks: AtomicU64,
    downsample_series: AtomicU64,
    downsample_nanos: AtomicU64,
    downsample_failures: AtomicU64,
}

/// Marks a block being written for `/metrics` and adds the time it took to a counter, however
/// the write ends.
struct Populating<'a> {
    counters: &'a Counters,
    nanos: &'a AtomicU64,
    started: Instant,
}

impl<'a> Populating<'a> {
    fn start(counters: &'a Counters, nanos: &'a AtomicU64) -> Populating<'a> {
        counters.populating.store(true, Ordering::Relaxed);
        Populating { counters, nanos, started: Instant::now() }
    }
}

impl Drop for Populating<'_> {
    fn drop(&mut self) {
        self.counters.populating.store(false, Ordering::Relaxed);
        self.nanos.fetch_add(self.started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// What a maintenance cycle did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaintainStats {
    pub blocks_cut: u64,
    pub compactions: u64,
    /// Rollup blocks written.
    pub rollups: u64,
    pub blocks_deleted: u64,
}

/// The head's commit log: the WAL, once replay has finished and it is open.
#[derive(Default)]
struct WalLog {
    wal: OnceLock<Arc<Wal>>,
}

impl CommitLog for WalLog {
    fn log(&self, record: &CommitRecord<'_>) -> Result<(), StorageError> {
        let wal = self.wal.get().ok_or_else(|| StorageError::NotReady("the WAL is being replayed".into()))?;
        let mut buf = Vec::with_capacity(record.samples.len() * 12 + record.series.len() * 64 + 32);
        if !record.series.is_empty() {
            wal::encode_series(&mut buf, record.series.iter().map(|s| (s.r, &*s.labels)));
        }
        wal::encode_samples(
            &mut buf,
            record.samples.iter().map(|s| RefSample { r: s.series.r, t: s.t, v: s.v }),
        );
        wal.log(&buf).map_err(StorageError::from)
    }
}

/// A database in a data directory. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

struct DbInner {
    dir: PathBuf,
    opts: DbOptions,
    ranges: Vec<i64>,
    head: Head,
    wal: Arc<Wal>,
    /// Open blocks, by start time. Replaced, never edited in place by readers: a querier clones
    /// the `Arc`s it needs, so a block deleted meanwhile stays readable for it.
    blocks: RwLock<Vec<Arc<Block>>>,
    /// One maintenance cycle at a time.
    maintain_lock: Mutex<()>,
    /// Open queriers by the block-list epoch they started in; see [`ReadEpochs`].
    readers: Arc<ReadEpochs>,
    counters: Counters,
    /// Pieces due for rollup at the last look.
    downsample_pending: AtomicU64,
    replay: wal::ReplayStats,
    replay_time: Duration,
    closed: AtomicBool,
    /// Held (an exclusive `flock`) for as long as the database is open: one process per directory.
    _lock: std::fs::File,
}

impl Db {
    /// Opens (or creates) the database in `dir`: loads blocks, replays the WAL into the head and
    /// opens a new WAL segment. Damaged WAL tails are cut with a warning; unreadable blocks are
    /// skipped with an error log (left on disk for inspection).
    pub fn open(dir: &Path, opts: DbOptions) -> Result<Db, DbError> {
        if opts.block_range_ms <= 0 {
            return Err(DbError::InvalidOption {
                option: "block_range_ms",
                reason: "must be positive".into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.try_lock().map_err(|_| DbError::Locked { path: dir.to_path_buf() })?;
        let progress = opts.progress.clone();
        progress.set_stage(OpenStage::LoadingBlocks);
        let blocks = load_blocks(dir)?;
        let log = Arc::new(WalLog::default());
        let head = Head::with_log(
            HeadOptions {
                samples_per_chunk: opts.samples_per_chunk,
                chunk_range_ms: opts.block_range_ms,
                stripes: opts.stripes,
            },
            log.clone(),
        )?;
        let floor = head_floor(&blocks, crate::model::now_ms());
        if let Some(floor) = floor {
            head.raise_min_valid_time(floor);
        }
        let wal_dir = dir.join("wal");
        progress.replay_started();
        let replay = replay::replay_into(&head, &wal_dir, &progress)?;
        progress.replay_finished();
        let replay_time = progress.replay_duration();
        if let Some(floor) = floor {
            // Series whose samples all went to blocks.
            head.truncate(floor);
        }
        let wal = Arc::new(Wal::create(
            &wal_dir,
            opts.fs.clone(),
            replay.next_segment,
            opts.wal_segment_bytes,
            opts.wal_sync,
        )?);
        let _ = log.wal.set(wal.clone());
        progress.set_stage(OpenStage::Done);
        tracing::info!(
            dir = %dir.display(), blocks = blocks.len(), series = head.stats().series,
            samples = head.stats().samples_appended, replay_ms = replay_time.as_millis() as u64,
            "TSDB opened"
        );
        Ok(Db {
            inner: Arc::new(DbInner {
                dir: dir.to_path_buf(),
                ranges: opts.ranges(),
                opts,
                head,
                wal,
                blocks: RwLock::new(blocks),
                maintain_lock: Mutex::new(()),
                readers: Arc::new(ReadEpochs::default()),
                counters: Counters::default(),
                downsample_pending: AtomicU64::new(0),
                replay,
                replay_time,
                closed: AtomicBool::new(false),
                _lock: lock,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn head(&self) -> &Head {
        &self.inner.head
    }

    /// Metas of the open blocks, oldest first.
    pub fn blocks(&self) -> Vec<BlockMeta> {
        self.inner.blocks.read().iter().map(|b| b.meta().clone()).collect()
    }

    /// Fsyncs the WAL (the periodic half of [`WalSync::Periodic`]).
    /// The WAL directory (`<dir>/wal`), for readers that tail it.
    pub fn wal_dir(&self) -> &Path {
        self.inner.wal.dir()
    }

    /// Holds on WAL segments that checkpoints honour (see [`wal::SegmentHolds`]).
    pub fn wal_holds(&self) -> Arc<wal::SegmentHolds> {
        self.inner.wal.holds()
    }

    pub fn sync_wal(&self) -> Result<(), StorageError> {
        self.inner.wal.sync().map_err(StorageError::from)
    }

    /// Runs one maintenance cycle: cuts every block the head is ready to give (then checkpoints
    /// the WAL), runs every compaction the plan calls for, and applies retention. Stops at the
    /// first failure, leaving everything as it was before the failing step.
    pub fn maintain(&self) -> Result<MaintainStats, DbError> {
        let _one = self.inner.maintain_lock.lock();
        let mut stats = MaintainStats::default();
        let mut cut_until = None;
        loop {
            match self.cut_once() {
                Ok(Some(b)) => {
                    stats.blocks_cut += 1;
                    cut_until = Some(b);
                }
                Ok(None) => break,
                Err(e) => {
                    self.inner.counters.cut_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        if let Some(b) = cut_until {
            self.checkpoint(b)?;
        }
        loop {
            match self.compact_once() {
                Ok(true) => stats.compactions += 1,
                Ok(false) => break,
                Err(e) => {
                    self.inner.counters.compaction_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        match self.downsample() {
            Ok(n) => stats.rollups = n,
            // Raw blocks wait for their rollups, so a failure here loses nothing: logged, retried.
            Err(e) => tracing::error!(error = %e, "downsampling failed (retried next cycle)"),
        }
        stats.blocks_deleted = self.apply_retention()?;
        Ok(stats)
    }

    /// Cuts the oldest block range out of the head when the head reaches half a range past it.
    /// Returns the end of the cut range.
    fn cut_once(&self) -> Result<Option<i64>, DbError> {
        let inner = &self.inner;
        let head = &inner.head;
        let range = inner.opts.block_range_ms;
        let (Some(min), Some(max)) = (head.min_time(), head.max_time()) else { return Ok(None) };
        let a = min.div_euclid(range) * range;
        let b = a + range;
        if max < b + range / 2 {
            return Ok(None);
        }
        let started = Instant::now();
        // From here on nothing can land in [a, b) any more, so the export below is final.
        head.raise_min_valid_time(b);
        let series = head.export(a, b - 1, true);
        if !series.is_empty() {
            let written = {
                let _populating = Populating::start(&inner.counters, &inner.counters.cut_nanos);
                write_block(
                    &inner.dir,
                    &*inner.opts.fs,
                    a..b,
                    BlockCompaction::default(),
                    None,
                    to_write(series),
                )
                .map_err(DbError::from)
                .and_then(|meta| Ok((Arc::new(Block::open(&inner.dir.join(&meta.ulid))?), meta)))
            };
            let (block, meta) = written?;
            tracing::info!(
                block = %meta.ulid, min_time = meta.min_time, max_time = meta.max_time, series = meta.stats.num_series,
                samples = meta.stats.num_samples, bytes = block.size(),
                duration_ms = started.elapsed().as_millis() as u64, "head cut into a block"
            );
            {
                let mut blocks = inner.blocks.write();
                blocks.push(block);
                blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
            }
            // A querier that listed the blocks before this one was added reads [a, b) from the
            // head: let those finish before the head lets go of it.
            let epoch = inner.readers.advance();
            if !inner.readers.wait_before(epoch, READER_WAIT) {
                tracing::warn!("queriers still open after {READER_WAIT:?}; truncating the head anyway");
            }
        }
        head.truncate(b);
        inner.counters.cuts.fetch_add(1, Ordering::Relaxed);
        Ok(Some(b))
    }

    /// Replaces the WAL before now with a checkpoint of the head's series and its samples from
    /// `mint` on.
    fn checkpoint(&self, mint: i64) -> Result<(), DbError> {
        let inner = &self.inner;
        let covered = inner.head.quiesce(|| inner.wal.rotate())?;
        inner.wal.checkpoint(covered, |write| {
            let series = inner.head.export(mint, i64::MAX, false);
            let mut buf = Vec::with_capacity(1 << 20);
            for batch in series.chunks(1024) {
                wal::encode_series(&mut buf, batch.iter().map(|s| (s.r, &*s.labels)));
                for s in batch {
                    for c in &s.chunks {
                        wal::encode_chunk(&mut buf, s.r, ENCODING_XOR, &c.bytes);
                    }
                }
                if buf.len() >= 1 << 20 {
                    write(&buf)?;
                    buf.clear();
                }
            }
            write(&buf)
        })?;
        Ok(())
    }

    fn compact_once(&self) -> Result<bool, DbError> {
        let inner = &self.inner;
        let metas = self.blocks();
        // The head cuts nothing older than its lower bound, nor older than its oldest sample.
        let head = &inner.head;
        let horizon = match head.min_time() {
            Some(oldest) => oldest.min(head.min_valid_time()),
            None => head.min_valid_time(),
        };
        // Raw blocks with the head's horizon; rollup blocks (written only for final pieces) per
        // resolution.
        let raw: Vec<BlockMeta> = metas.iter().filter(|m| m.resolution() == 0).cloned().collect();
        let mut plan = compact::plan(&raw, &inner.ranges, Some(horizon));
        for level in &inner.opts.downsample {
            if plan.is_some() {
                break;
            }
            // Planned by the windows they cover, `(start, end]` as `[start, end)`: their data
            // bounds reach one past a piece's end (a rollup at the window's end), which would
            // keep a block on a compaction window's border out of every window.
            let rollups: Vec<BlockMeta> = metas
                .iter()
                .filter_map(|m| {
                    let d = m.downsample.filter(|d| d.resolution == level.resolution_ms)?;
                    Some(BlockMeta { min_time: d.start, max_time: d.end, ..m.clone() })
                })
                .collect();
            // Pieces go straight to windows of 27 pieces (6.75 days) and up: every compaction
            // rewrites the rollups, so fewer, bigger steps than raw blocks take.
            let all = growing_ranges(
                PIECE_MS,
                inner.opts.max_block_range_ms,
                inner.opts.retention_of(level.resolution_ms),
            );
            let mut ranges: Vec<i64> = all.iter().copied().filter(|&r| r >= 27 * PIECE_MS).collect();
            if ranges.is_empty() {
                // A short retention: its widest window only.
                ranges.extend(all.last().filter(|&&r| r > PIECE_MS));
            }
            ranges.insert(0, PIECE_MS);
            plan = compact::plan(&rollups, &ranges, None);
        }
        let Some(ids) = plan else { return Ok(false) };
        let parents: Vec<Arc<Block>> =
            inner.blocks.read().iter().filter(|b| ids.contains(&b.meta().ulid)).cloned().collect();
        let started = Instant::now();
        tracing::info!(
            parents = ids.len(),
            min_time = parents.iter().map(|b| b.meta().min_time).min(),
            max_time = parents.iter().map(|b| b.meta().max_time).max(),
            bytes = parents.iter().map(|b| b.size()).sum::<u64>(),
            "compacting blocks"
        );
        let (block, meta) = {
            let _populating = Populating::start(&inner.counters, &inner.counters.compaction_nanos);
            let meta = compact::merge(&parents, &inner.dir, &*inner.opts.fs)?;
            (Arc::new(Block::open(&inner.dir.join(&meta.ulid))?), meta)
        };
        tracing::info!(
            block = %meta.ulid, level = meta.compaction.level, parents = ids.len(), min_time = meta.min_time,
            max_time = meta.max_time, duration_ms = started.elapsed().as_millis() as u64, "blocks compacted"
        );
        {
            let mut blocks = inner.blocks.write();
            blocks.retain(|b| !ids.contains(&b.meta().ulid));
            blocks.push(block);
            blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
        }
        for p in parents {
            if let Err(e) = remove_block_dir(p.dir()) {
                tracing::warn!(block = %p.meta().ulid, error = %e, "cannot delete a compacted block");
            }
        }
        inner.counters.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Deletes whole blocks past the retention time of their resolution or over the size limit;
    /// returns how many. A raw block past its time waits until every resolution has rolled it up.
    fn apply_retention(&self) -> Result<u64, DbError> {
        let inner = &self.inner;
        let newest = {
            let blocks = inner.blocks.read();
            let block_max = blocks.iter().map(|b| b.meta().max_time - 1).max();
            block_max.max(inner.head.max_time())
        };
        let Some(newest) = newest else { return Ok(0) };
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        {
            let mut blocks = inner.blocks.write();
            let all = blocks.clone();
            blocks.retain(|b| {
                let Some(ret) = inner.opts.retention_of(b.meta().resolution()) else { return true };
                let old = b.meta().max_time <= newest.saturating_sub(ret)
                    && (b.meta().resolution() > 0 || self.rolled_up(&all, b));
                if old {
                    doomed.push(b.clone());
                }
                !old
            });
            if let Some(max_bytes) = inner.opts.max_bytes {
                let mut total: u64 = blocks.iter().map(|b| b.size()).sum::<u64>() + inner.wal.disk_bytes();
                // Raw blocks first, then each resolution from the finest (the coarsest hold the
                // longest history in the fewest bytes); oldest first within each; never the
                // newest raw block.
                let newest_raw =
                    blocks.iter().rev().find(|b| b.meta().resolution() == 0).map(|b| b.meta().ulid.clone());
                let mut order: Vec<Arc<Block>> = blocks
                    .iter()
                    .filter(|b| newest_raw.as_deref() != Some(b.meta().ulid.as_str()))
                    .cloned()
                    .collect();
                order.sort_by_key(|b| (b.meta().resolution(), b.meta().min_time));
                for b in order {
                    if total <= max_bytes {
                        break;
                    }
                    total -= b.size();
                    blocks.retain(|x| x.meta().ulid != b.meta().ulid);
                    doomed.push(b);
                }
            }
        }
        if let Some(ret) = inner.opts.retention_ms {
            let cutoff = newest.saturating_sub(ret);
            if inner.head.min_time().is_some_and(|m| m < cutoff) {
                inner.head.truncate(cutoff);
            }
        }
        for b in &doomed {
            tracing::info!(block = %b.meta().ulid, min_time = b.meta().min_time, max_time = b.meta().max_time, "retention: deleting block");
            remove_block_dir(b.dir())?;
        }
        inner.counters.retention_deleted.fetch_add(doomed.len() as u64, Ordering::Relaxed);
        Ok(doomed.len() as u64)
    }

    /// Syncs and closes the WAL. Appends after this fail.
    pub fn close(&self) -> Result<(), DbError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.wal.close()?;
        tracing::info!(dir = %self.inner.dir.display(), "TSDB closed");
        Ok(())
    }

    pub fn stats(&self) -> DbStats {
        let inner = &self.inner;
        let (blocks, block_bytes, block_samples, block_min) = {
            let b = inner.blocks.read();
            (
                b.len() as u64,
                b.iter().map(|b| b.size()).sum(),
                b.iter().map(|b| b.meta().stats.num_samples).sum(),
                b.iter().map(|b| b.meta().min_time).min(),
            )
        };
        let w = &inner.wal.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &inner.counters;
        let head_min = inner.head.min_time();
        DbStats {
            head: inner.head.stats(),
            blocks,
            block_bytes,
            block_samples,
            min_time: match (block_min, head_min) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            wal_disk_bytes: inner.wal.disk_bytes(),
            wal_written_bytes: get(&w.records_bytes),
            wal_commits: get(&w.commits),
            wal_write_failures: get(&w.write_failures),
            wal_fsyncs: get(&w.fsyncs),
            wal_fsync_failures: get(&w.fsync_failures),
            wal_fsync_seconds: get(&w.fsync_nanos) as f64 / 1e9,
            wal_segments_created: get(&w.segments_created),
            wal_current_segment: get(&w.current_segment),
            wal_checkpoints: get(&w.checkpoints),
            wal_checkpoint_failures: get(&w.checkpoint_failures),
            cuts: get(&c.cuts),
            cut_failures: get(&c.cut_failures),
            compactions: get(&c.compactions),
            compaction_failures: get(&c.compaction_failures),
            cut_seconds: get(&c.cut_nanos) as f64 / 1e9,
            compaction_seconds: get(&c.compaction_nanos) as f64 / 1e9,
            populating_block: c.populating.load(Ordering::Relaxed),
            retention_deleted_blocks: get(&c.retention_deleted),
            downsample_blocks: get(&c.downsample_blocks),
            downsample_series: get(&c.downsample_series),
            downsample_seconds: get(&c.downsample_nanos) as f64 / 1e9,
            downsample_failures: get(&c.downsample_failures),
            downsample_pending: get(&inner.downsample_pending),
            rollup_bytes: inner
                .opts
                .downsample
                .iter()
                .map(|l| {
                    let bytes = inner
                        .blocks
                        .read()
                        .iter()
                        .filter(|b| b.meta().resolution() == l.resolution_ms)
                        .map(|b| b.size())
                        .sum();
                    (l.resolution_ms, bytes)
                })
                .collect(),
            replay_seconds: inner.replay_time.as_secs_f64(),
            replay_bytes: inner.replay.bytes,
            replay_torn: inner.replay.torn,
        }
    }
}

fn to_write(series: Vec<ExportSeries>) -> impl Iterator<Item = (Arc<crate::model::Labels>, Vec<WriteChunk>)> {
    series.into_iter().map(|s| {
        let chunks = s
            .chunks
            .into_iter()
            .map(|c| WriteChunk {
                min_t: c.min_t,
                max_t: c.max_t,
                encoding: ENCODING_XOR,
                bytes: ChunkBytes::Shared(c.bytes),
            })
            .collect();
        (s.labels, chunks)
    })
}

/// Writes everything `head` holds as level-1 blocks of `range_ms` into `dir` (the backfill path:
/// a head built from an import, never logged), hinted as imported (see `head_floor`). Returns
/// the new blocks' metas.
pub fn write_head_blocks(
    dir: &Path,
    head: &Head,
    range_ms: i64,
    fs: &dyn FileSystem,
    mut progress: impl FnMut(&BlockMeta),
) -> Result<Vec<BlockMeta>, DbError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let (Some(min), Some(max)) = (head.min_time(), head.max_time()) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let mut a = min.div_euclid(range_ms) * range_ms;
    while a <= max {
        let b = a + range_ms;
        let series = head.export(a, b - 1, true);
        if !series.is_empty() {
            let imported = BlockCompaction { hints: vec![block::HINT_IMPORT.into()], ..Default::default() };
            let meta = write_block(dir, fs, a..b, imported, None, to_write(series))?;
            progress(&meta);
            out.push(meta);
        }
        a = b;
    }
    Ok(out)
}

/// The head's lower bound at open: the end of the newest block cut from the head, below which
/// the WAL holds nothing that is not already in a block. Replay skips samples older than it and
/// appends older than it are refused (`OutOfBounds`).
///
/// Blocks hinted as imported do not count: they say nothing about what the head has handed to
/// blocks, and counting them would make an import of recent data drop the WAL's samples older
/// than its end and refuse fresh samples up to it. Nor does a block ending after `now` (an import
/// written before block bounds followed the data, whose max time is the end of its range): such a
/// bound would refuse every scrape until then. Either way the head may then accept samples in a
/// range a block covers; queries merge both and compaction merges the overlapping blocks, as
/// Prometheus does with overlapping blocks.
fn head_floor(blocks: &[Arc<Block>], now: i64) -> Option<i64> {
    let mut floor = None;
    for b in blocks {
        let m = b.meta();
        if m.compaction.is_import() || m.resolution() > 0 {
            continue;
        }
        if m.max_time > now {
            tracing::warn!(
                block = %m.ulid, max_time = m.max_time, now,
                "block ends in the future; not using it as the head's lower bound"
            );
            continue;
        }
        floor = floor.max(Some(m.max_time));
    }
    floor
}

/// Opens every block directory in `dir`, after removing leftovers of interrupted writes and
/// deletions and blocks that a compacted block replaces.
fn load_blocks(dir: &Path) -> Result<Vec<Arc<Block>>, DbError> {
    let mut blocks = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") || name.ends_with(".tmp-deleted") {
            tracing::info!(dir = %path.display(), "removing an interrupted block write or deletion");
            std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
            continue;
        }
        if !path.join(block::META_FILE).exists() {
            continue;
        }
        match Block::open(&path) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(e) => tracing::error!(dir = %path.display(), error = %e, "cannot open block; skipping it"),
        }
    }
    let replaced: std::collections::HashSet<String> =
        blocks.iter().flat_map(|b| b.meta().compaction.parents.iter().cloned()).collect();
    let (gone, mut keep): (Vec<_>, Vec<_>) =
        blocks.into_iter().partition(|b| replaced.contains(&b.meta().ulid));
    for b in gone {
        tracing::info!(block = %b.meta().ulid, "removing a block that compaction replaced");
        remove_block_dir(b.dir())?;
    }
    keep.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
    Ok(keep)
}

impl Appendable for Db {
    fn appender(&self) -> Box<dyn Appender + '_> {
        self.inner.head.appender()
    }
}

impl Db {
    /// A querier over the raw data (head and raw blocks) in `[mint, maxt]`.
    fn raw_querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        // Registered before the block list is read (see `ReadEpochs`).
        let guard = self.inner.readers.enter();
        let blocks: Vec<Arc<Block>> = self
            .inner
            .blocks
            .read()
            .iter()
            .filter(|b| b.meta().resolution() == 0 && b.overlaps(mint, maxt))
            .cloned()
            .collect();
        let head = self.inner.head.querier(mint, maxt)?;
        if blocks.is_empty() {
            return Ok(Box::new(TrackedQuerier { inner: head, _guard: guard }));
        }
        let mut parts: Vec<Box<dyn Querier>> = blocks
            .into_iter()
            .map(|b| Box::new(BlockQuerier::new(b, mint, maxt)) as Box<dyn Querier>)
            .collect();
        parts.push(head);
        Ok(Box::new(TrackedQuerier { inner: Box::new(MergeQuerier::new(parts)), _guard: guard }))
    }
}

impl Queryable for Db {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        self.raw_querier(mint, maxt)
    }

    fn coverage(&self) -> Vec<crate::storage::rollup::Coverage> {
        Db::coverage(self)
    }

    fn rollup_querier(
        &self,
        resolution: i64,
        mint: i64,
        maxt: i64,
    ) -> Result<Option<Box<dyn crate::storage::rollup::RollupQuerier>>, StorageError> {
        Ok(Some(self.rollups(resolution, mint, maxt)))
    }

    fn max_time(&self) -> Option<i64> {
        // A block's max time is exclusive: its newest sample is one less.
        let blocks = self
            .inner
            .blocks
            .read()
            .iter()
            .filter(|b| b.meta().resolution() == 0)
            .map(|b| b.meta().max_time - 1)
            .max();
        self.inner.head.max_time().max(blocks)
    }

    fn min_time(&self) -> Option<i64> {
        let block = self
            .inner
            .blocks
            .read()
            .iter()
            .filter(|b| b.meta().resolution() == 0)
            .map(|b| b.meta().min_time)
            .min();
        match (block, self.inner.head.min_time()) {
            (Some(b), Some(h)) => Some(b.min(h)),
            (b, h) => b.or(h),
        }
    }
}

impl Storage for Db {
    fn ready(&self) -> Result<(), StorageError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StorageError::NotReady("the TSDB is closed".into()));
        }
        if !self.inner.wal.healthy() {
            return Err(StorageError::NotReady(
                "WAL writes are failing (disk full or I/O error); appends are refused until one succeeds"
                    .into(),
            ));
        }
        Ok(())
    }
}
