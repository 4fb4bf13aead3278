//! Chunk encodings: how a run of one series' samples is compressed into bytes. Owns the XOR
//! (Gorilla) float chunk and its bit streams; when to cut a chunk, and where chunks live (head,
//! WAL, blocks), is the business of the modules using it.

mod bstream;
mod xor;

pub use xor::{HEADER_LEN, MAX_SAMPLES, XorAppender, XorChunk, XorIterator};

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
