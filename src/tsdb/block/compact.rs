//! Compaction: choosing blocks to merge ([`plan`]) and merging them into one block ([`merge`]).
//!
//! Blocks that overlap in time (an import over existing data) are merged first. Otherwise blocks
//! are merged when they lie inside one window of the next size up (ranges grow ×3: 2h, 6h, 18h,
//! …) and that window is complete: no block the head will still cut can fall into it (the
//! caller's horizon), or a block already reaches its end. Chunks that overlap in time are
//! decoded, merged (one sample per timestamp, the older block's kept) and re-encoded; the others
//! go to the block writer as they are (which joins a series' short chunks). The merged block's
//! bounds are its data's (see `writer`); it carries its parents' hints. Rollup blocks (one
//! resolution per merge; the caller groups them) get their series' rollup chunks joined.

use std::path::Path;
use std::sync::Arc;

use super::{
    Block, BlockCompaction, BlockError, BlockMeta, ChunkBytes, DownsampleMeta, ENCODING_ROLLUP, ENCODING_XOR,
    WriteChunk, writer,
};
use crate::model::{Labels, Sample};
use crate::storage::rollup::{Aggregates, Rollup};
use crate::tsdb::chunkenc::{ChunkIter, XorAppender, decode_rollups, encode_rollups};
use crate::tsdb::fs::FileSystem;

/// Samples per chunk when chunks have to be re-encoded.
const SAMPLES_PER_CHUNK: usize = 120;

/// The ids of blocks to merge next, oldest first, or `None`. `ranges` are the window sizes,
/// smallest (the block range) first. `horizon`: the head will cut no block with data older than
/// this (its lower bound for new samples, or its oldest sample if older); a window ending at or
/// before it, or before the end of the newest block, is complete.
pub fn plan(metas: &[BlockMeta], ranges: &[i64], horizon: Option<i64>) -> Option<Vec<String>> {
    let mut sorted: Vec<&BlockMeta> = metas.iter().collect();
    sorted.sort_by_key(|m| (m.min_time, m.max_time));
    // Overlapping blocks first.
    let mut group: Vec<&BlockMeta> = Vec::new();
    let mut group_max = i64::MIN;
    for m in &sorted {
        if !group.is_empty() && m.min_time < group_max {
            group.push(m);
            group_max = group_max.max(m.max_time);
            continue;
        }
        if group.len() > 1 {
            break;
        }
        group = vec![m];
        group_max = m.max_time;
    }
    if group.len() > 1 {
        return Some(group.iter().map(|m| m.ulid.clone()).collect());
    }
    // Block bounds are the data's (max exclusive), so a window's last block usually ends a
    // little before the window does: the head's horizon is what says no more data comes.
    let newest = sorted.iter().map(|m| m.max_time).max()?.max(horizon.unwrap_or(i64::MIN));
    for &r in ranges.iter().skip(1) {
        let mut i = 0;
        while i < sorted.len() {
            let w = sorted[i].min_time.div_euclid(r);
            let (start, end) = (w * r, (w + 1) * r);
            let members: Vec<&BlockMeta> =
                sorted.iter().copied().filter(|m| m.min_time >= start && m.max_time <= end).collect();
            let next = sorted.iter().position(|m| m.min_time >= end).unwrap_or(sorted.len());
            if members.len() > 1 && end <= newest {
                return Some(members.iter().map(|m| m.ulid.clone()).collect());
            }
            i = next.max(i + 1);
        }
    }
    None
}

/// Merges `blocks` into a new block in `parent` and returns its meta. The parents stay in place:
/// the caller swaps them out once the new block is open.
pub(crate) fn merge(
    blocks: &[Arc<Block>],
    parent: &Path,
    fs: &dyn FileSystem,
) -> Result<BlockMeta, BlockError> {
    let mut all: Vec<(Labels, usize, Vec<super::index::ChunkMeta>)> = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        for s in b.all_series() {
            let (labels, chunks) = s?;
            all.push((labels, i, chunks));
        }
    }
    // Stable: for equal labels, the block order (oldest first) is kept.
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(Arc<Labels>, Vec<WriteChunk>)> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let mut chunks = Vec::new();
        for (_, b, metas) in &all[i..j] {
            for m in metas {
                let (encoding, bytes) = blocks[*b].chunk(m, true)?;
                chunks.push(WriteChunk { min_t: m.min_t, max_t: m.max_t, encoding, bytes });
            }
        }
        chunks.sort_by_key(|c| c.min_t);
        if chunks.iter().any(|c| c.encoding == ENCODING_ROLLUP) {
            chunks = rejoin_rollups(&chunks)?;
        } else if chunks.windows(2).any(|w| w[1].min_t <= w[0].max_t) {
            chunks = reencode(&chunks);
        }
        out.push((Arc::new(all[i].0.clone()), chunks));
        i = j;
    }
    let mut sources: Vec<String> = blocks.iter().flat_map(|b| b.meta().compaction.sources.clone()).collect();
    sources.sort();
    sources.dedup();
    let mut hints: Vec<String> = blocks.iter().flat_map(|b| b.meta().compaction.hints.clone()).collect();
    hints.sort();
    hints.dedup();
    let compaction = BlockCompaction {
        level: blocks.iter().map(|b| b.meta().compaction.level).max().unwrap_or(0) + 1,
        sources,
        parents: blocks.iter().map(|b| b.meta().ulid.clone()).collect(),
        hints,
    };
    let min_time = blocks.iter().map(|b| b.meta().min_time).min().unwrap_or(0);
    let max_time = blocks.iter().map(|b| b.meta().max_time).max().unwrap_or(0);
    let downsample = blocks.iter().filter_map(|b| b.meta().downsample).reduce(|a, b| DownsampleMeta {
        resolution: a.resolution,
        start: a.start.min(b.start),
        end: a.end.max(b.end),
    });
    writer::write_block(parent, fs, min_time..max_time, compaction, downsample, out)
}

/// Rollups per chunk when compaction joins a series' rollup chunks (one per rolled-up piece).
const ROLLUPS_PER_CHUNK: usize = 480;

/// One series' rollup chunks (sorted by start) joined into chunks of up to
/// [`ROLLUPS_PER_CHUNK`], one rollup per timestamp (the older block's).
fn rejoin_rollups(chunks: &[WriteChunk]) -> Result<Vec<WriteChunk>, BlockError> {
    let bad = |e: crate::tsdb::chunkenc::ChunkError| BlockError::Corrupt(e.to_string());
    let mut all: Vec<Rollup> = Vec::new();
    for c in chunks {
        if c.encoding != ENCODING_ROLLUP {
            return Err(BlockError::Corrupt("rollup and raw chunks in one series".into()));
        }
        all.extend(decode_rollups(c.bytes.as_ref(), Aggregates::ALL).map_err(bad)?);
    }
    all.sort_by_key(|r| r.t);
    all.dedup_by_key(|r| r.t);
    all.chunks(ROLLUPS_PER_CHUNK)
        .map(|part| {
            Ok(WriteChunk {
                min_t: part.first().map_or(0, |r| r.first_t),
                max_t: part.last().map_or(0, |r| r.t),
                encoding: ENCODING_ROLLUP,
                bytes: ChunkBytes::Shared(Arc::from(encode_rollups(part).map_err(bad)?)),
            })
        })
        .collect()
}

/// Decodes overlapping chunks (sorted by start), keeps the first sample seen for each timestamp
/// and encodes the result into fresh chunks.
fn reencode(chunks: &[WriteChunk]) -> Vec<WriteChunk> {
    let mut samples: Vec<Sample> = Vec::new();
    for c in chunks {
        samples.extend(ChunkIter::new(c.encoding, c.bytes.as_ref()).into_iter().flatten());
    }
    samples.sort_by_key(|s| s.t);
    samples.dedup_by_key(|s| s.t);
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .map(|part| {
            let mut app = XorAppender::new();
            for s in part {
                // Cannot fail: a part holds fewer samples than a chunk can.
                let _ = app.append(s.t, s.v);
            }
            WriteChunk {
                min_t: part.first().map_or(0, |s| s.t),
                max_t: part.last().map_or(0, |s| s.t),
                encoding: ENCODING_XOR,
                bytes: ChunkBytes::Shared(Arc::from(app.bytes())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::block::BlockStats;

    fn meta(id: &str, min: i64, max: i64) -> BlockMeta {
        BlockMeta {
            ulid: id.into(),
            min_time: min,
            max_time: max,
            stats: BlockStats::default(),
            compaction: BlockCompaction::default(),
            version: 1,
            downsample: None,
        }
    }

    #[test]
    fn plans_complete_windows_and_overlaps() {
        let ranges = [10, 30, 90];
        let ids = |p: Option<Vec<String>>| p.unwrap_or_default().join(",");
        // Blocks end at their newest sample + 1, a little before their range does.
        let ms = vec![meta("a", 0, 9), meta("b", 10, 19), meta("c", 20, 29)];
        // Window [0,30) is complete once the head will cut nothing before 30…
        assert_eq!(ids(plan(&ms, &ranges, Some(30))), "a,b,c");
        // …or once a block reaches 30.
        let mut later = ms.clone();
        later.push(meta("d", 30, 31));
        assert_eq!(ids(plan(&later, &ranges, None)), "a,b,c");
        // Not complete yet: the head may still cut a block ending in [29,30).
        assert_eq!(plan(&ms, &ranges, Some(29)), None);
        assert_eq!(plan(&ms, &ranges, None), None);
        assert_eq!(plan(&ms[..2], &ranges, Some(20)), None);
        // A window of the next size.
        let ms = vec![meta("x", 0, 29), meta("y", 30, 59), meta("z", 60, 89), meta("n", 90, 100)];
        assert_eq!(ids(plan(&ms, &ranges, Some(100))), "x,y,z");
        // Overlap wins.
        let ms = vec![meta("a", 0, 10), meta("i", 5, 8), meta("b", 10, 20)];
        assert_eq!(ids(plan(&ms, &ranges, Some(20))), "a,i");
        // Touching bounds are no overlap (max is exclusive).
        let ms = vec![meta("a", 0, 5), meta("i", 5, 8)];
        assert_eq!(plan(&ms, &ranges, Some(8)), None);
        assert_eq!(plan(&[], &ranges, Some(100)), None);
    }
}
