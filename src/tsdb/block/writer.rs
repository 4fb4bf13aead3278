//! Writing a block: chunks to the chunk file as they come, then the index and `meta.json`, all in
//! `<ulid>.tmp`, synced, then renamed to `<ulid>` and the parent directory synced — a block is
//! either absent or whole.
//!
//! Every writer (head cut, import, compaction) goes through here, so every block's meta follows
//! one rule: `minTime` is its oldest sample, `maxTime` its newest sample + 1 ms (exclusive), taken
//! from the chunks actually written — never the end of the range the block was cut for, which may
//! lie in the future and would make the head refuse samples up to it (issue 9).

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use super::index::{self, ChunkMeta};
use super::{
    BlockCompaction, BlockError, BlockMeta, BlockStats, CHUNKS_FILE, CHUNKS_HEADER_LEN, CHUNKS_MAGIC,
    CHUNKS_VERSION, DownsampleMeta, INDEX_FILE, META_FILE, WriteChunk, io_err, new_ulid,
};
use crate::model::Labels;
use crate::tsdb::chunkenc::EncodedChunk;
use crate::tsdb::encoding::put_uvarint;
use crate::tsdb::fs::{FileSystem, WriteFile, sync_dir};

/// Bytes buffered before a write to the chunk file.
const FLUSH_BYTES: usize = 1 << 20;

/// Writes a block of `series` (sorted by labels, chunks by time, every chunk inside `range`)
/// into `parent`; returns its meta, whose time bounds are those of the data (see the module
/// doc; an empty block gets `[range.start, range.start)`). Series without chunks are skipped.
pub(crate) fn write_block(
    parent: &Path,
    fs: &dyn FileSystem,
    range: Range<i64>,
    compaction: BlockCompaction,
    downsample: Option<DownsampleMeta>,
    series: impl IntoIterator<Item = (Arc<Labels>, Vec<WriteChunk>)>,
) -> Result<BlockMeta, BlockError> {
    let ulid = new_ulid();
    let tmp = parent.join(format!("{ulid}.tmp"));
    let res = write_into(&tmp, fs, &ulid, range, compaction, downsample, series);
    let meta = match res {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let dst = parent.join(&ulid);
    std::fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
    sync_dir(parent).map_err(io_err(parent))?;
    Ok(meta)
}

fn write_into(
    tmp: &Path,
    fs: &dyn FileSystem,
    ulid: &str,
    range: Range<i64>,
    mut compaction: BlockCompaction,
    downsample: Option<DownsampleMeta>,
    series: impl IntoIterator<Item = (Arc<Labels>, Vec<WriteChunk>)>,
) -> Result<BlockMeta, BlockError> {
    std::fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    let chunks_path = tmp.join(CHUNKS_FILE);
    let mut file = fs.create(&chunks_path).map_err(io_err(&chunks_path))?;
    let mut buf: Vec<u8> = Vec::with_capacity(FLUSH_BYTES + 4096);
    buf.extend_from_slice(CHUNKS_MAGIC);
    buf.extend_from_slice(&[CHUNKS_VERSION, 0, 0, 0]);
    debug_assert_eq!(buf.len(), CHUNKS_HEADER_LEN);
    let mut written = 0u64;
    let mut stats = BlockStats::default();
    let mut entries: Vec<(Arc<Labels>, Vec<ChunkMeta>)> = Vec::new();
    // The data's bounds, inclusive.
    let (mut oldest, mut newest) = (i64::MAX, i64::MIN);
    for (labels, chunks) in series {
        if chunks.is_empty() {
            continue;
        }
        // Blocks keep a series' chunks merged into fewer packed ones, or else each chunk in the
        // smaller of its XOR and packed forms. Rollup chunks are written as they come.
        let rollups = chunks.iter().all(|c| c.encoding == super::ENCODING_ROLLUP);
        let samples: usize = chunks
            .iter()
            .map(|c| crate::tsdb::chunkenc::XorIterator::new(c.bytes.as_ref()).remaining())
            .sum();
        let merged =
            if !rollups && chunks.len() > samples.div_ceil(crate::tsdb::chunkenc::BLOCK_CHUNK_SAMPLES) {
                let parts: Vec<(u8, &[u8])> = chunks.iter().map(|c| (c.encoding, c.bytes.as_ref())).collect();
                crate::tsdb::chunkenc::merge_packed(&parts)
            } else {
                None
            };
        let encoded: Vec<EncodedChunk> = match merged {
            Some(m) => m,
            None => chunks
                .iter()
                .map(|c| {
                    let packed = (c.encoding == super::ENCODING_XOR)
                        .then(|| crate::tsdb::chunkenc::pack_if_smaller(c.bytes.as_ref()))
                        .flatten();
                    let (encoding, bytes) = match packed {
                        Some(p) => (super::ENCODING_PACKED, p),
                        None => (c.encoding, c.bytes.as_ref().to_vec()),
                    };
                    EncodedChunk { min_t: c.min_t, max_t: c.max_t, encoding, bytes }
                })
                .collect(),
        };
        let mut metas = Vec::with_capacity(encoded.len());
        for c in &encoded {
            let data = c.bytes.as_slice();
            let offset = written + buf.len() as u64;
            put_uvarint(&mut buf, data.len() as u64);
            let crc_from = buf.len();
            buf.push(c.encoding);
            buf.extend_from_slice(data);
            let crc = crc32fast::hash(&buf[crc_from..]);
            buf.extend_from_slice(&crc.to_le_bytes());
            debug_assert!(range.contains(&c.min_t) && range.contains(&c.max_t), "chunk outside {range:?}");
            oldest = oldest.min(c.min_t);
            newest = newest.max(c.max_t);
            metas.push(ChunkMeta { min_t: c.min_t, max_t: c.max_t, offset });
            stats.num_chunks += 1;
            stats.num_samples += if c.encoding == super::ENCODING_ROLLUP {
                crate::tsdb::chunkenc::count_rollups(data) as u64
            } else {
                crate::tsdb::chunkenc::XorIterator::new(data).remaining() as u64
            };
            if buf.len() >= FLUSH_BYTES {
                flush(&mut *file, &mut buf, &mut written, &chunks_path)?;
            }
        }
        stats.num_series += 1;
        entries.push((labels, metas));
    }
    flush(&mut *file, &mut buf, &mut written, &chunks_path)?;
    file.sync_data().map_err(io_err(&chunks_path))?;
    drop(file);

    let refs: Vec<(&Labels, &[ChunkMeta])> = entries.iter().map(|(l, c)| (&**l, c.as_slice())).collect();
    let index_bytes = index::encode(&refs);
    write_file(fs, &tmp.join(INDEX_FILE), &index_bytes)?;

    if compaction.level == 0 {
        compaction.level = 1;
    }
    if compaction.sources.is_empty() {
        compaction.sources = vec![ulid.to_string()];
    }
    let (min_time, max_time) =
        if oldest <= newest { (oldest, newest.saturating_add(1)) } else { (range.start, range.start) };
    let meta =
        BlockMeta { ulid: ulid.to_string(), min_time, max_time, stats, compaction, version: 1, downsample };
    let meta_path = tmp.join(META_FILE);
    let json = serde_json::to_vec_pretty(&meta)
        .map_err(|source| BlockError::Meta { path: meta_path.clone(), source })?;
    write_file(fs, &meta_path, &json)?;
    sync_dir(tmp).map_err(io_err(tmp))?;
    Ok(meta)
}

fn flush(
    file: &mut dyn WriteFile,
    buf: &mut Vec<u8>,
    written: &mut u64,
    path: &Path,
) -> Result<(), BlockError> {
    file.write_all(buf).map_err(io_err(path))?;
    *written += buf.len() as u64;
    buf.clear();
    Ok(())
}

fn write_file(fs: &dyn FileSystem, path: &Path, data: &[u8]) -> Result<(), BlockError> {
    let mut f = fs.create(path).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    f.sync_data().map_err(io_err(path))
}
