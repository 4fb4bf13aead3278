//! Reading one block over a time range through the `storage::Querier` interface: postings
//! selection, lazy per-series iterators over memory-mapped chunks, `latest`, label names/values.
//! Results come in label order because series ids are.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Block, BlockError, ChunkBytes};
use crate::model::{Labels, Matcher};
use crate::storage::{LatestSample, Querier, Series, StorageError};
use crate::tsdb::chunkenc::{ChunkIter, RangeSamples};

impl From<BlockError> for StorageError {
    fn from(e: BlockError) -> StorageError {
        match e {
            BlockError::Io { source, .. } => StorageError::Io(source),
            other => StorageError::Corruption(other.to_string()),
        }
    }
}

/// A selected series: its labels and its chunks (encoding, bytes) overlapping the range.
type SeriesChunks = (Labels, Vec<(u8, ChunkBytes)>);

pub(crate) struct BlockQuerier {
    block: Arc<Block>,
    mint: i64,
    maxt: i64,
}

impl BlockQuerier {
    pub(crate) fn new(block: Arc<Block>, mint: i64, maxt: i64) -> BlockQuerier {
        BlockQuerier { block, mint, maxt }
    }

    /// Matching series with their chunks overlapping the range, in label order.
    fn series(&self, matchers: &[Matcher]) -> Result<Vec<SeriesChunks>, BlockError> {
        let ids = self.block.index().select(matchers)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (labels, metas) = self.block.index().series(id)?;
            let mut chunks = Vec::new();
            for c in metas.iter().filter(|c| c.max_t >= self.mint && c.min_t <= self.maxt) {
                chunks.push(self.block.chunk(c, false)?);
            }
            if !chunks.is_empty() {
                out.push((labels, chunks));
            }
        }
        Ok(out)
    }
}

impl Querier for BlockQuerier {
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        Ok(self
            .series(matchers)?
            .into_iter()
            .filter_map(|(labels, chunks)| {
                let it = RangeSamples::new(chunks, self.mint, self.maxt)?;
                Some(Series { labels: Arc::new(labels), samples: Box::new(it) })
            })
            .collect())
    }

    fn latest(&self, matchers: &[Matcher]) -> Result<Vec<LatestSample>, StorageError> {
        let mut out = Vec::new();
        for (labels, chunks) in self.series(matchers)? {
            // Newest chunk first: the first that has a sample in range answers.
            let found = chunks.into_iter().rev().find_map(|(enc, c)| {
                ChunkIter::new(enc, c)?.take_while(|s| s.t <= self.maxt).filter(|s| s.t >= self.mint).last()
            });
            if let Some(sample) = found {
                out.push(LatestSample { labels: Arc::new(labels), sample });
            }
        }
        Ok(out)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        if matchers.is_empty() {
            return Ok(self.block.index().names().map(str::to_string).collect());
        }
        let mut set = BTreeSet::new();
        for (labels, _) in self.series(matchers)? {
            set.extend(labels.iter().map(|l| l.name.to_string()));
        }
        Ok(set.into_iter().collect())
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        if matchers.is_empty() {
            return Ok(self.block.index().values(name).map(str::to_string).collect());
        }
        let mut set = BTreeSet::new();
        for (labels, _) in self.series(matchers)? {
            if let Some(v) = labels.get(name) {
                set.insert(v.to_string());
            }
        }
        Ok(set.into_iter().collect())
    }
}
