//! Reading the rollups of rollup blocks over a time range: the blocks of one resolution asked in
//! time order (they never overlap: each window is rolled up once), their series merged by
//! labels, each chunk decoded with only the aggregates asked for.

use std::sync::Arc;

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

impl RollupBlockQuerier {
    pub(crate) fn new(blocks: Vec<Arc<Block>>, mint: i64, maxt: i64) -> RollupBlockQuerier {
        RollupBlockQuerier { blocks, mint, maxt }
    }

    /// One block's matching series with their rollups in range.
    fn block_series(
        &self,
        block: &Block,
        matchers: &[Matcher],
        need: Aggregates,
    ) -> Result<Vec<(Labels, Vec<Rollup>)>, BlockError> {
        let ids = block.index().select(matchers)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (labels, metas) = block.index().series(id)?;
            let mut rollups = Vec::new();
            for c in metas.iter().filter(|c| c.max_t >= self.mint && c.min_t <= self.maxt) {
                let (encoding, bytes) = block.chunk(c, false)?;
                if encoding != ENCODING_ROLLUP {
                    return Err(BlockError::Corrupt(format!(
                        "{}: a raw chunk in a rollup block",
                        block.dir().display()
                    )));
                }
                let decoded = decode_rollups(bytes.as_ref(), need)
                    .map_err(|e| BlockError::Corrupt(format!("{}: {e}", block.dir().display())))?;
                rollups.extend(decoded.into_iter().filter(|r| r.t >= self.mint && r.t <= self.maxt));
            }
            if !rollups.is_empty() {
                out.push((labels, rollups));
            }
        }
        Ok(out)
    }
}

impl RollupQuerier for RollupBlockQuerier {
    fn select(&self, matchers: &[Matcher], need: Aggregates) -> Result<Vec<RollupSeries>, StorageError> {
        let mut merged: Vec<(Labels, Vec<Rollup>)> = Vec::new();
        for b in &self.blocks {
            let part = self.block_series(b, matchers, need)?;
            merged = if merged.is_empty() { part } else { merge_by_labels(merged, part) };
        }
        Ok(merged
            .into_iter()
            .map(|(labels, rollups)| RollupSeries {
                labels: Arc::new(labels),
                rollups: Box::new(rollups.into_iter()),
            })
            .collect())
    }
}

/// Merges two label-sorted lists; rollups of a series in both are appended (`b` is later).
fn merge_by_labels(
    a: Vec<(Labels, Vec<Rollup>)>,
    b: Vec<(Labels, Vec<Rollup>)>,
) -> Vec<(Labels, Vec<Rollup>)> {
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
                        let last = x.1.last().map_or(i64::MIN, |r| r.t);
                        x.1.extend(y.1.into_iter().filter(|r| r.t > last));
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
