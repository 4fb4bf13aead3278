//! Downsampling inside the database: which pieces of raw data are due to be rolled up at each
//! configured resolution, rolling one piece up into a rollup block, and the read side (the
//! coverage of each resolution and a querier over its blocks).
//!
//! Raw time is cut into aligned pieces of [`PIECE_MS`] (a multiple of every resolution, so no
//! window straddles two pieces). A piece is due at a resolution when raw data lies in it, no
//! rollup block of that resolution covers it, and it is final: the head holds nothing at or
//! before its end. Rolling it up reads every raw sample in `(start, end]` through the merged
//! raw view (blocks of any layout, imports included), folds each series into rollups and writes
//! one block through the ordinary block writer (temporary directory + rename), so a crash leaves
//! no partial block and the piece is simply due again. Rollup blocks are then compacted and
//! deleted by retention like raw ones, per resolution; raw blocks are kept past their retention
//! until every resolution has rolled them up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Db, DbError, HOUR_MS};
use crate::model::{MatchOp, Matcher};
use crate::storage::StorageError;
use crate::storage::rollup::{Coverage, RollupBuilder, RollupQuerier};
use crate::tsdb::block::{
    Block, BlockCompaction, ChunkBytes, DownsampleMeta, ENCODING_ROLLUP, WriteChunk,
    rollup_querier::RollupBlockQuerier, writer::write_block,
};
use crate::tsdb::chunkenc::{MAX_ROLLUPS, encode_rollups};

/// The span of raw time rolled up into one block: 6 hours, a multiple of every resolution a
/// topology may configure (resolutions must divide it).
pub const PIECE_MS: i64 = 6 * HOUR_MS;

/// How long one maintenance cycle spends rolling up before it lets the rest of maintenance run.
const BUDGET: Duration = Duration::from_secs(20);

/// One resolution to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownsampleLevel {
    /// Window size in ms; divides [`PIECE_MS`].
    pub resolution_ms: i64,
    /// Rollup blocks whose windows all end this long before the newest sample are deleted
    /// (`None`: as raw data).
    pub retention_ms: Option<i64>,
}

/// The aligned piece `(k·P, (k+1)·P]` holding timestamp `t`, by index `k`.
fn piece_of(t: i64) -> i64 {
    (t - 1).div_euclid(PIECE_MS)
}

impl Db {
    /// Rolls up due pieces, oldest first, for at most [`BUDGET`]; returns how many it wrote.
    pub(super) fn downsample(&self) -> Result<u64, DbError> {
        let started = Instant::now();
        let mut done = 0;
        while started.elapsed() < BUDGET {
            let due = self.due_pieces();
            self.inner.downsample_pending.store(due.len() as u64, Ordering::Relaxed);
            let Some(&(level, k)) = due.first() else { break };
            self.roll_up(level, k)?;
            done += 1;
        }
        if done > 0 {
            let left = self.due_pieces().len();
            self.inner.downsample_pending.store(left as u64, Ordering::Relaxed);
            if left > 0 {
                tracing::info!(
                    written = done,
                    pending = left,
                    "downsampling: pieces left for the next cycle"
                );
            }
        }
        Ok(done)
    }

    /// `(level, piece)` pairs due for rollup, oldest piece first (finest resolution first).
    fn due_pieces(&self) -> Vec<(DownsampleLevel, i64)> {
        let levels = &self.inner.opts.downsample;
        if levels.is_empty() {
            return Vec::new();
        }
        let blocks = self.inner.blocks.read().clone();
        let raw: Vec<&Arc<Block>> = blocks.iter().filter(|b| b.meta().resolution() == 0).collect();
        let newest_raw = raw.iter().map(|b| b.meta().max_time - 1).max();
        // Nothing at or before the end of a final piece is in the head (or will be, short of a
        // new series arriving with old samples; a later block with them is not rolled up).
        let final_before = match (self.inner.head.min_time(), newest_raw) {
            (Some(h), _) => h,
            (None, Some(n)) => n + 1,
            (None, None) => return Vec::new(),
        };
        let mut pieces: Vec<i64> = Vec::new();
        for b in &raw {
            let (lo, hi) = (piece_of(b.meta().min_time), piece_of(b.meta().max_time - 1));
            pieces.extend(lo..=hi);
        }
        pieces.sort_unstable();
        pieces.dedup();
        let mut out = Vec::new();
        for k in pieces {
            let end = (k + 1) * PIECE_MS;
            if end >= final_before {
                break;
            }
            for level in levels {
                let covered = blocks.iter().any(|b| {
                    b.meta().downsample.is_some_and(|d| {
                        d.resolution == level.resolution_ms && d.start <= k * PIECE_MS && d.end >= end
                    })
                });
                if !covered {
                    out.push((*level, k));
                }
            }
        }
        out
    }

    /// Rolls piece `k` up at `level` into a new block and publishes it.
    fn roll_up(&self, level: DownsampleLevel, k: i64) -> Result<(), DbError> {
        let inner = &self.inner;
        let res = level.resolution_ms;
        let (start, end) = (k * PIECE_MS, (k + 1) * PIECE_MS);
        let started = Instant::now();
        let q = self.raw_querier(start + 1, end).map_err(storage_err)?;
        let every = Matcher::new(MatchOp::NotEqual, "__name__", "")
            .map_err(|e| storage_err(StorageError::Corruption(e.to_string())))?;
        let all = q.select(&[every]).map_err(storage_err)?;
        let mut series_done = 0u64;
        let mut rollups_done = 0u64;
        let out = all.into_iter().filter_map(|s| {
            let mut b = RollupBuilder::new(res);
            let mut rollups = Vec::new();
            for p in s.samples {
                if p.t > start && p.t <= end {
                    rollups.extend(b.push(p.t, p.v));
                }
            }
            rollups.extend(b.finish());
            if rollups.is_empty() {
                return None;
            }
            series_done += 1;
            rollups_done += rollups.len() as u64;
            let chunks = rollups
                .chunks(MAX_ROLLUPS)
                .filter_map(|part| {
                    let bytes = encode_rollups(part).ok()?;
                    Some(WriteChunk {
                        min_t: part.first()?.first_t,
                        max_t: part.last()?.t,
                        encoding: ENCODING_ROLLUP,
                        bytes: ChunkBytes::Shared(Arc::from(bytes)),
                    })
                })
                .collect();
            Some((s.labels, chunks))
        });
        let ds = DownsampleMeta { resolution: res, start, end };
        let meta = write_block(
            &inner.dir,
            &*inner.opts.fs,
            start + 1..end + 1,
            BlockCompaction::default(),
            Some(ds),
            out,
        )
        .inspect_err(|_| {
            inner.counters.downsample_failures.fetch_add(1, Ordering::Relaxed);
        })?;
        let block = Arc::new(Block::open(&inner.dir.join(&meta.ulid))?);
        let took = started.elapsed();
        tracing::info!(
            block = %meta.ulid, resolution_ms = res, start, end, series = series_done, rollups = rollups_done,
            bytes = block.size(), duration_ms = took.as_millis() as u64, "raw data rolled up"
        );
        {
            let mut blocks = inner.blocks.write();
            blocks.push(block);
            blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
        }
        let c = &inner.counters;
        c.downsample_blocks.fetch_add(1, Ordering::Relaxed);
        c.downsample_series.fetch_add(series_done, Ordering::Relaxed);
        c.downsample_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Whether raw block `b` may go: every configured resolution has rolled up each of its final
    /// pieces. (A piece that is not final yet holds the newest data, never past retention.)
    pub(super) fn rolled_up(&self, blocks: &[Arc<Block>], b: &Block) -> bool {
        let levels = &self.inner.opts.downsample;
        let (lo, hi) = (piece_of(b.meta().min_time), piece_of(b.meta().max_time - 1));
        levels.iter().all(|level| {
            (lo..=hi).all(|k| {
                blocks.iter().any(|r| {
                    r.meta().downsample.is_some_and(|d| {
                        d.resolution == level.resolution_ms
                            && d.start <= k * PIECE_MS
                            && d.end >= (k + 1) * PIECE_MS
                    })
                })
            })
        })
    }

    /// Where each resolution has data: raw first, then every configured resolution that holds
    /// rollup blocks.
    pub fn coverage(&self) -> Vec<Coverage> {
        let blocks = self.inner.blocks.read();
        let raw_min = blocks
            .iter()
            .filter(|b| b.meta().resolution() == 0)
            .map(|b| b.meta().min_time)
            .chain(self.inner.head.min_time())
            .min();
        let mut out = Vec::new();
        if let Some(m) = raw_min {
            out.push(Coverage { resolution: 0, ranges: vec![(m - 1, i64::MAX)] });
        }
        for level in &self.inner.opts.downsample {
            let mut c = Coverage { resolution: level.resolution_ms, ranges: Vec::new() };
            for b in blocks.iter() {
                if let Some(d) = b.meta().downsample.filter(|d| d.resolution == level.resolution_ms) {
                    c.add(d.start, d.end);
                }
            }
            if !c.ranges.is_empty() {
                out.push(c);
            }
        }
        out
    }

    /// A querier over the rollup blocks of `resolution` with rollups in `[mint, maxt]`.
    pub fn rollups(&self, resolution: i64, mint: i64, maxt: i64) -> Box<dyn RollupQuerier> {
        let blocks: Vec<Arc<Block>> = self
            .inner
            .blocks
            .read()
            .iter()
            .filter(|b| b.meta().resolution() == resolution && resolution > 0 && b.overlaps(mint, maxt))
            .cloned()
            .collect();
        Box::new(RollupBlockQuerier::new(blocks, mint, maxt))
    }
}

fn storage_err(e: StorageError) -> DbError {
    match e {
        StorageError::Io(source) => DbError::Io { path: std::path::PathBuf::from("<raw querier>"), source },
        other => DbError::Block(crate::tsdb::block::BlockError::Corrupt(other.to_string())),
    }
}
