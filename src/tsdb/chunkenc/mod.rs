//! Chunk encodings: how a run of one series' samples is compressed into bytes. Owns the XOR
//! (Gorilla) float chunk the head appends to, the denser packed chunk blocks store when it is
//! smaller, and their bit streams; when to cut a chunk, and where chunks live (head, WAL,
//! blocks), is the business of the modules using it. The encoding byte travels with a chunk.

mod bstream;
mod packed;
mod xor;

pub use packed::{PACKED_HEADER_LEN, PackedIterator, encode_packed};
pub use xor::{HEADER_LEN, MAX_SAMPLES, XorAppender, XorChunk, XorIterator};

use crate::model::Sample;

/// Encoding byte of an XOR chunk (the value Prometheus uses for it).
pub const ENCODING_XOR: u8 = 1;
/// Encoding byte of a packed chunk (promtier's own).
pub const ENCODING_PACKED: u8 = 2;

/// Decodes a chunk of either encoding.
#[derive(Debug, Clone)]
pub enum ChunkIter<B> {
    Xor(XorIterator<B>),
    Packed(PackedIterator<B>),
}

impl<B: AsRef<[u8]>> ChunkIter<B> {
    /// An iterator for `bytes` in `encoding`, or `None` for an unknown encoding.
    pub fn new(encoding: u8, bytes: B) -> Option<ChunkIter<B>> {
        match encoding {
            ENCODING_XOR => Some(ChunkIter::Xor(XorIterator::new(bytes))),
            ENCODING_PACKED => Some(ChunkIter::Packed(PackedIterator::new(bytes))),
            _ => None,
        }
    }

    /// Advances to the first sample with timestamp `>= t` and returns it.
    pub fn seek(&mut self, t: i64) -> Option<Sample> {
        match self {
            ChunkIter::Xor(it) => it.seek(t),
            ChunkIter::Packed(it) => it.seek(t),
        }
    }

    pub fn error(&self) -> Option<&ChunkError> {
        match self {
            ChunkIter::Xor(it) => it.error(),
            ChunkIter::Packed(it) => it.error(),
        }
    }
}

impl<B: AsRef<[u8]>> Iterator for ChunkIter<B> {
    type Item = Sample;
    fn next(&mut self) -> Option<Sample> {
        match self {
            ChunkIter::Xor(it) => it.next(),
            ChunkIter::Packed(it) => it.next(),
        }
    }
}

/// The packed form of an XOR chunk if it is smaller (blocks store the smaller one), else `None`.
pub fn pack_if_smaller(xor: &[u8]) -> Option<Vec<u8>> {
    let mut it = XorIterator::new(xor);
    let samples: Vec<Sample> = it.by_ref().collect();
    if it.error().is_some() || samples.len() < 2 {
        return None;
    }
    let packed = encode_packed(&samples).ok()?;
    (packed.len() < xor.len()).then_some(packed)
}

/// Why a chunk could not be read or extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    #[error("chunk of {len} bytes is shorter than its header")]
    TooShort { len: usize },
    #[error("chunk ends inside sample {sample} of {samples}")]
    Truncated { sample: usize, samples: usize },
    #[error("chunk sample {sample} has an invalid value window")]
    BadValueWindow { sample: usize },
    #[error("chunk has {extra} bytes after its last sample")]
    TrailingBytes { extra: usize },
    #[error("chunk already holds the maximum number of samples")]
    Full,
}
