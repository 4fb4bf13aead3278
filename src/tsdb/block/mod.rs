//! Immutable on-disk blocks: one directory per time range holding a chunk file, a label index
//! and `meta.json`. Owns the formats (`docs/format/block.md`), writing a block atomically
//! ([`writer`]), opening it through memory maps ([`Block`]), reading it ([`querier`]) and merging
//! blocks into bigger ones ([`compact`]). When to cut, compact or delete is the database's call.

pub(crate) mod compact;
pub(crate) mod index;
pub(crate) mod querier;
pub(crate) mod rollup_querier;
pub(crate) mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use self::index::{ChunkMeta, IndexReader};
use crate::model::Labels;
use crate::tsdb::encoding::Decoder;

pub use self::compact::plan as plan_compaction;

/// File names inside a block directory.
pub const META_FILE: &str = "meta.json";
pub const INDEX_FILE: &str = "index";
pub const CHUNKS_FILE: &str = "chunks";

pub(crate) const CHUNKS_MAGIC: &[u8; 4] = b"PTCK";
pub(crate) const CHUNKS_VERSION: u8 = 1;
pub(crate) const CHUNKS_HEADER_LEN: usize = 8;

pub use crate::tsdb::chunkenc::{ENCODING_PACKED, ENCODING_ROLLUP, ENCODING_XOR};

/// Why a block could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    #[error("block I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("block {0}")]
    Corrupt(String),
    #[error("block meta {path}: {source}")]
    Meta { path: PathBuf, source: serde_json::Error },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BlockError + '_ {
    move |source| BlockError::Io { path: path.to_path_buf(), source }
}

/// `meta.json`: what a block holds. Times in milliseconds: `min_time` is the oldest sample,
/// `max_time` the newest sample + 1 (exclusive), whichever range the block was written for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: String,
    pub min_time: i64,
    pub max_time: i64,
    pub stats: BlockStats,
    pub compaction: BlockCompaction,
    pub version: u32,
    /// Set on a block of rollups (downsampled data); absent on raw blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downsample: Option<DownsampleMeta>,
}

/// What a rollup block holds: rollups of `resolution` ms for the windows ending in
/// `(start, end]` (both multiples of the resolution), from every raw sample there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownsampleMeta {
    pub resolution: i64,
    pub start: i64,
    pub end: i64,
}

impl BlockMeta {
    /// The block's resolution in ms: 0 for raw data.
    pub fn resolution(&self) -> i64 {
        self.downsample.map_or(0, |d| d.resolution)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    pub num_samples: u64,
    pub num_series: u64,
    pub num_chunks: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockCompaction {
    /// 1 for a block cut from the head (or imported), parents' maximum + 1 for a merged one.
    pub level: u32,
    /// The level-1 blocks whose data this block holds.
    pub sources: Vec<String>,
    /// The blocks merged into this one (empty for level 1): once this block exists they are
    /// redundant, and opening the database deletes any that a crash left behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// Where the data came from when not (only) from this node's head: [`HINT_IMPORT`] for
    /// `promtier tsdb import` output and every block merged from one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// The hint of a block holding imported data. Such a block says nothing about what the head
/// has already handed to blocks, so it never raises the head's lower bound (see `Db::open`).
pub const HINT_IMPORT: &str = "import";

impl BlockCompaction {
    /// Whether the block holds imported data.
    pub fn is_import(&self) -> bool {
        self.hints.iter().any(|h| h == HINT_IMPORT)
    }
}

/// A new block id: a ULID (48-bit millisecond time, 80 random bits, Crockford base32), so ids
/// sort by creation time.
pub fn new_ulid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ms = now.as_millis() as u64 & ((1 << 48) - 1);
    let seed =
        [now.as_nanos() as u64, u64::from(std::process::id()), COUNTER.fetch_add(1, Ordering::Relaxed)];
    let bytes: Vec<u8> = seed.iter().flat_map(|x| x.to_le_bytes()).collect();
    let rand = xxhash_rust::xxh3::xxh3_128(&bytes) & ((1u128 << 80) - 1);
    let v: u128 = (u128::from(ms) << 80) | rand;
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    (0..26).rev().map(|i| ALPHABET[((v >> (i * 5)) & 31) as usize] as char).collect()
}

/// Bytes of a chunk, owned or borrowed from a block's memory map.
#[derive(Clone)]
pub(crate) enum ChunkBytes {
    Shared(Arc<[u8]>),
    Mapped { map: Arc<Mmap>, start: usize, end: usize },
}

impl AsRef<[u8]> for ChunkBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            ChunkBytes::Shared(b) => b,
            ChunkBytes::Mapped { map, start, end } => &map[*start..*end],
        }
    }
}

/// One chunk to write into a block.
#[derive(Clone)]
pub(crate) struct WriteChunk {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) encoding: u8,
    pub(crate) bytes: ChunkBytes,
}

/// An open block. Its files are memory-mapped; the maps stay valid while any reader holds the
/// block, even after the directory has been deleted (the kernel keeps unlinked mapped files).
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: Arc<Mmap>,
    size: u64,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block").field("dir", &self.dir).field("meta", &self.meta).finish_non_exhaustive()
    }
}

/// Maps a whole file read-only.
fn map_file(path: &Path) -> Result<Mmap, BlockError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    // SAFETY: block files are written once into a temporary directory and never modified after
    // the rename that publishes them; the database deletes them only by unlinking, which leaves
    // existing maps intact. No other writer touches a published block.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
    Ok(map)
}

pub(crate) fn read_meta(dir: &Path) -> Result<BlockMeta, BlockError> {
    let path = dir.join(META_FILE);
    let text = std::fs::read(&path).map_err(io_err(&path))?;
    serde_json::from_slice(&text).map_err(|source| BlockError::Meta { path, source })
}

impl Block {
    /// Opens the block in `dir`: reads its meta, maps its files and checks the index checksum.
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let meta = read_meta(dir)?;
        let index = map_file(&dir.join(INDEX_FILE))?;
        let chunks = map_file(&dir.join(CHUNKS_FILE))?;
        let size = crate::tsdb::wal::dir_bytes(dir);
        Block::from_maps(dir, meta, index, chunks, size)
    }

    /// A block over already-mapped index and chunk files (`dir` and `size` only describe it).
    pub(crate) fn from_maps(
        dir: &Path,
        meta: BlockMeta,
        index: Mmap,
        chunks: Mmap,
        size: u64,
    ) -> Result<Block, BlockError> {
        let index = IndexReader::new(index)?;
        if chunks.len() < CHUNKS_HEADER_LEN || &chunks[..4] != CHUNKS_MAGIC {
            return Err(BlockError::Corrupt(format!("{}: bad chunk file header", dir.display())));
        }
        Ok(Block { dir: dir.to_path_buf(), meta, index, chunks: Arc::new(chunks), size })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of the block's files on disk.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn index(&self) -> &IndexReader {
        &self.index
    }

    /// Whether the block holds data in `[mint, maxt]` (inclusive).
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time > mint
    }

    /// The bytes and encoding of the chunk at `c`, optionally checking its CRC.
    pub(crate) fn chunk(&self, c: &ChunkMeta, verify: bool) -> Result<(u8, ChunkBytes), BlockError> {
        let data: &[u8] = &self.chunks;
        let bad = |what: &str| {
            BlockError::Corrupt(format!("{}: chunk at {}: {what}", self.dir.display(), c.offset))
        };
        let mut d = Decoder::at(data, c.offset as usize);
        let len = d.uvarint().map_err(|e| bad(&e.to_string()))? as usize;
        let enc_at = d.position();
        let encoding = d.u8().map_err(|e| bad(&e.to_string()))?;
        let start = d.position();
        let end =
            start.checked_add(len).filter(|&e| e + 4 <= data.len()).ok_or_else(|| bad("out of range"))?;
        if verify {
            let mut crc = [0u8; 4];
            crc.copy_from_slice(&data[end..end + 4]);
            if crc32fast::hash(&data[enc_at..end]) != u32::from_le_bytes(crc) {
                return Err(bad("checksum mismatch"));
            }
        }
        if ![ENCODING_XOR, ENCODING_PACKED, ENCODING_ROLLUP].contains(&encoding) {
            return Err(bad(&format!("unknown encoding {encoding}")));
        }
        Ok((encoding, ChunkBytes::Mapped { map: Arc::clone(&self.chunks), start, end }))
    }

    /// Every series of the block with its chunk references, in label order.
    pub(crate) fn all_series(
        &self,
    ) -> impl Iterator<Item = Result<(Labels, Vec<ChunkMeta>), BlockError>> + '_ {
        (0..self.index.num_series() as u32).map(|id| self.index.series(id))
    }
}

/// Removes a block directory so that a crash half-way never leaves something that looks like a
/// block: first renamed out of the way (atomic), then deleted.
pub(crate) fn remove_block_dir(dir: &Path) -> Result<(), BlockError> {
    let mut trash = dir.as_os_str().to_owned();
    trash.push(".tmp-deleted");
    let trash = PathBuf::from(trash);
    std::fs::rename(dir, &trash).map_err(io_err(dir))?;
    if let Some(parent) = dir.parent() {
        crate::tsdb::fs::sync_dir(parent).map_err(io_err(parent))?;
    }
    std::fs::remove_dir_all(&trash).map_err(io_err(&trash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_are_26_chars_sortable_and_unique() {
        let a = new_ulid();
        let b = new_ulid();
        assert_eq!(a.len(), 26);
        assert_ne!(a, b);
        assert!(a[..10] <= b[..10]);
    }
}
