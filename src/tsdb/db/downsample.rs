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

/// Per configured resolution, the merged `(start, end]` ranges its rollup blocks cover.
struct Covered(Vec<(i64, Vec<(i64, i64)>)>);

impl Covered {
    fn of(levels: &[DownsampleLevel], blocks: &[Arc<Block>]) -> Covered {
        Covered(
            levels
                .iter()
                .map(|l| {
                    let ranges = blocks
                        .iter()
                        .filter_map(|b| b.meta().downsample)
                        .filter(|d| d.resolution == l.resolution_ms)
                        .map(|d| (d.start, d.end))
                        .collect();
                    (l.resolution_ms, Coverage::from_ranges(l.resolution_ms, ranges).ranges)
                })
                .collect(),
        )
    }

    /// Whether piece `k` is rolled up at `resolution`.
    fn has(&self, resolution: i64, k: i64) -> bool {
        let (start, end) = (k * PIECE_MS, (k + 1) * PIECE_MS);
        self.0.iter().filter(|(r, _)| *r == resolution).any(|(_, ranges)| {
            let i = ranges.partition_point(|&(s, _)| s <= start);
            i > 0 && ranges[i - 1].1 >= end
        })
    }
}

impl Db {
    /// Rolls up due pieces, oldest first, for at most [`BUDGET`]; returns how many rollup
    /// blocks it wrote.
    pub(super) fn downsample(&self) -> Result<u64, DbError> {
        let started = Instant::now();
        let due = self.due_pieces();
        self.inner.downsample_pending.store(due.len() as u64, Ordering::Relaxed);
        let mut done = 0u64;
        let mut i = 0;
        while i < due.len() && started.elapsed() < BUDGET {
            // Every resolution due for one piece from one read of its raw data.
            let k = due[i].1;
            let levels: Vec<DownsampleLevel> =
                due[i..].iter().take_while(|d| d.1 == k).map(|d| d.0).collect();
            i += levels.len();
            done += self.roll_up(&levels, k)?;
            self.inner.downsample_pending.store((due.len() - i) as u64, Ordering::Relaxed);
        }
        if i < due.len() {
            tracing::info!(
                written = done,
                pending = due.len() - i,
                "downsampling: pieces left for the next cycle"
            );
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
        let covered = Covered::of(levels, &blocks);
        let mut out = Vec::new();
        for k in pieces {
            if (k + 1) * PIECE_MS >= final_before {
                break;
            }
            out.extend(levels.iter().filter(|l| !covered.has(l.resolution_ms, k)).map(|l| (*l, k)));
        }
        out
    }

    /// Rolls piece `k` up at each of `levels` (one read of the raw data, one block per level)
    /// and publishes the blocks; returns how many it wrote.
    fn roll_up(&self, levels: &[DownsampleLevel], k: i64) -> Result<u64, DbError> {
        let inner = &self.inner;
        let (start, end) = (k * PIECE_MS, (k + 1) * PIECE_MS);
        let started = Instant::now();
        let q = self.raw_querier(start + 1, end)?;
        let every = Matcher::new(MatchOp::NotEqual, "__name__", "")
            .map_err(|e| StorageError::Corruption(e.to_string()))?;
        let mut out: Vec<Vec<(Arc<crate::model::Labels>, Vec<WriteChunk>)>> = vec![Vec::new(); levels.len()];
        let mut rollups_done = vec![0u64; levels.len()];
        for s in q.select(&[every])? {
            let mut builders: Vec<(RollupBuilder, Vec<crate::storage::rollup::Rollup>)> =
                levels.iter().map(|l| (RollupBuilder::new(l.resolution_ms), Vec::new())).collect();
            for p in s.samples {
                if p.t > start && p.t <= end {
                    for (b, rollups) in &mut builders {
                        rollups.extend(b.push(p.t, p.v));
                    }
                }
            }
            for (i, (b, mut rollups)) in builders.into_iter().enumerate() {
                rollups.extend(b.finish());
                if rollups.is_empty() {
                    continue;
                }
                rollups_done[i] += rollups.len() as u64;
                let mut chunks = Vec::new();
                for part in rollups.chunks(MAX_ROLLUPS) {
                    let (Some(first), Some(last)) = (part.first(), part.last()) else { continue };
                    let bytes = encode_rollups(part).map_err(|e| {
                        DbError::Block(crate::tsdb::block::BlockError::Corrupt(e.to_string()))
                    })?;
                    chunks.push(WriteChunk {
                        min_t: first.first_t,
                        max_t: last.t,
                        encoding: ENCODING_ROLLUP,
                        bytes: ChunkBytes::Shared(Arc::from(bytes)),
                    });
                }
                out[i].push((Arc::clone(&s.labels), chunks));
            }
        }
        drop(q);
        let read_took = started.elapsed();
        let mut written = 0;
        for ((level, series), rollups) in levels.iter().zip(out).zip(rollups_done) {
            let res = level.resolution_ms;
            let count = series.len();
            let ds = DownsampleMeta { resolution: res, start, end };
            let meta = write_block(
                &inner.dir,
                &*inner.opts.fs,
                start + 1..end + 1,
                BlockCompaction::default(),
                Some(ds),
                series,
            )
            .inspect_err(|_| {
                inner.counters.downsample_failures.fetch_add(1, Ordering::Relaxed);
            })?;
            let block = Arc::new(Block::open(&inner.dir.join(&meta.ulid))?);
            tracing::info!(
                block = %meta.ulid, resolution_ms = res, start, end, series = count, rollups,
                bytes = block.size(), "raw data rolled up"
            );
            {
                let mut blocks = inner.blocks.write();
                blocks.push(block);
                blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
            }
            inner.counters.downsample_blocks.fetch_add(1, Ordering::Relaxed);
            inner.counters.downsample_series.fetch_add(count as u64, Ordering::Relaxed);
            written += 1;
        }
        let took = started.elapsed();
        tracing::debug!(
            piece_start = start,
            read_ms = read_took.as_millis() as u64,
            total_ms = took.as_millis() as u64,
            "piece rolled up"
        );
        inner.counters.downsample_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        Ok(written)
    }

    /// Whether raw block `b` may go: every configured resolution has rolled up each of its final
    /// pieces. (A piece that is not final yet holds the newest data, never past retention.)
    pub(super) fn rolled_up(&self, blocks: &[Arc<Block>], b: &Block) -> bool {
        let levels = &self.inner.opts.downsample;
        if levels.is_empty() {
            return true;
        }
        let covered = Covered::of(levels, blocks);
        let (lo, hi) = (piece_of(b.meta().min_time), piece_of(b.meta().max_time - 1));
        levels.iter().all(|l| (lo..=hi).all(|k| covered.has(l.resolution_ms, k)))
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
            let ranges = blocks
                .iter()
                .filter_map(|b| b.meta().downsample)
                .filter(|d| d.resolution == level.resolution_ms)
                .map(|d| (d.start, d.end))
                .collect();
            let c = Coverage::from_ranges(level.resolution_ms, ranges);
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
