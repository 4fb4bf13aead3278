//! Reading the rollups of rollup blocks over a time range: the blocks of one resolution asked in
//! time order (they never overlap: each window is rolled up once), their series merged by
//! labels, and each series' chunks decoded lazily, one at a time and only the aggregates asked
//! for — a year of 10k series is read series by series, never held at once.

use std::sync::Arc;

use super::index::ChunkMeta;
use super::{Block, BlockError, ENCODING_ROLLUP};
use crate::model::{Labels, Matcher};
use crate::storage::StorageError;
use crate::storage::rollup::{Aggregates, Rollup, RollupQuerier, RollupSeries};
use crate::tsdb::chunkenc::decode_rollups;

/// Rollups of `blocks` (one resolution, oldest first) with timestamps in `[mint, maxt]`.
pub(crate) struct RollupBlockQuerier {
    blocks: Vec<Arc<Block>>,
    mint: i64,
    maxt: i64,
}

/// One series' chunks to read, in time order, with the block holding each.
type SeriesChunks = (Labels, Vec<(Arc<Block>, ChunkMeta)>);

impl RollupBlockQuerier {
    pub(crate) fn new(blocks: Vec<Arc<Block>>, mint: i64, maxt: i64) -> RollupBlockQuerier {
        RollupBlockQuerier { blocks, mint, maxt }
    }

    /// One block's matching series with their chunks overlapping the range.
    fn block_series(
        &self,
        block: &Arc<Block>,
        matchers: &[Matcher],
    ) -> Result<Vec<SeriesChunks>, BlockError> {
        let ids = block.index().select(matchers)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (labels, metas) = block.index().series(id)?;
            let chunks: Vec<(Arc<Block>, ChunkMeta)> = metas
                .into_iter()
                .filter(|c| c.max_t >= self.mint && c.min_t <= self.maxt)
                .map(|c| (Arc::clone(block), c))
                .collect();
            if !chunks.is_empty() {
                out.push((labels, chunks));
            }
        }
        Ok(out)
    }
}

impl RollupQuerier for RollupBlockQuerier {
    fn select(&self, matchers: &[Matcher], need: Aggregates) -> Result<Vec<RollupSeries>, StorageError> {
        let mut merged: Vec<SeriesChunks> = Vec::new();
        for b in &self.blocks {
            let part = self.block_series(b, matchers)?;
            merged = if merged.is_empty() { part } else { merge_by_labels(merged, part) };
        }
        let (mint, maxt) = (self.mint, self.maxt);
        Ok(merged
            .into_iter()
            .map(|(labels, chunks)| RollupSeries {
                labels: Arc::new(labels),
                rollups: Box::new(ChunkRollups {
                    chunks: chunks.into_iter(),
                    current: Vec::new().into_iter(),
                    need,
                    mint,
                    maxt,
                    last: i64::MIN,
                }),
            })
            .collect())
    }
}

/// Decodes a series' chunks one at a time. A chunk that does not decode ends the series (logged):
/// the rollups before it are still answered.
struct ChunkRollups {
    chunks: std::vec::IntoIter<(Arc<Block>, ChunkMeta)>,
    current: std::vec::IntoIter<Rollup>,
    need: Aggregates,
    mint: i64,
    maxt: i64,
    /// The newest timestamp returned: rollups come out strictly in time order.
    last: i64,
}

impl Iterator for ChunkRollups {
    type Item = Rollup;

    fn next(&mut self) -> Option<Rollup> {
        loop {
            for r in self.current.by_ref() {
                if r.t > self.last && r.t >= self.mint && r.t <= self.maxt {
                    self.last = r.t;
                    return Some(r);
                }
            }
            let (block, meta) = self.chunks.next()?;
            let decoded = block.chunk(&meta, false).and_then(|(encoding, bytes)| {
                if encoding != ENCODING_ROLLUP {
                    return Err(BlockError::Corrupt("a raw chunk in a rollup block".into()));
                }
                decode_rollups(bytes.as_ref(), self.need).map_err(|e| BlockError::Corrupt(e.to_string()))
            });
            match decoded {
                Ok(rollups) => self.current = rollups.into_iter(),
                Err(e) => {
                    tracing::error!(block = %block.dir().display(), error = %e, "cannot read a rollup chunk");
                    self.chunks = Vec::new().into_iter();
                }
            }
        }
    }
}

/// Merges two label-sorted lists; chunks of a series in both are appended (`b` is later).
fn merge_by_labels(a: Vec<SeriesChunks>, b: Vec<SeriesChunks>) -> Vec<SeriesChunks> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => {
                    if let (Some(mut x), Some(y)) = (a.next(), b.next()) {
                        x.1.extend(y.1);
                        out.push(x);
                    }
                    continue;
                }
            },
        };
        let next = if take_a { a.next() } else { b.next() };
        out.extend(next);
    }
    out
}
