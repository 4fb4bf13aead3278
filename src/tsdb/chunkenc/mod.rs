//! Chunk encodings: how a run of one series' samples is compressed into bytes. Owns the XOR
//! (Gorilla) float chunk the head appends to, the denser packed chunk blocks store when it is
//! smaller, the column-wise rollup chunk of downsampled data, and their bit streams; when to
//! cut a chunk, and where chunks live (head, WAL, blocks), is the business of the modules using
//! it. The encoding byte travels with a chunk.

mod bstream;
mod packed;
mod range;
mod rollup;
mod xor;

pub use packed::{PACKED_HEADER_LEN, PackedIterator, encode_packed};
pub use range::RangeSamples;
pub use rollup::{ENCODING_ROLLUP, MAX_ROLLUPS, count_rollups, decode_rollups, encode_rollups};
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

/// The most samples a block chunk gets when blocks merge a series' chunks (the head cuts at
/// 120): fewer chunk headers and index entries per sample, still a short decode to any point.
pub const BLOCK_CHUNK_SAMPLES: usize = 480;

/// One encoded chunk with its time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub encoding: u8,
    pub bytes: Vec<u8>,
}

/// One series' consecutive chunks (`(encoding, bytes)`, in time order) re-encoded as packed
/// chunks of at most [`BLOCK_CHUNK_SAMPLES`] samples, split evenly, when that is smaller than
/// `chunks`. `None` when it is not, or when the chunks do not decode into strictly increasing
/// timestamps (they are then kept as they are).
pub fn merge_packed<B: AsRef<[u8]>>(chunks: &[(u8, B)]) -> Option<Vec<EncodedChunk>> {
    let before: usize = chunks.iter().map(|(_, b)| b.as_ref().len()).sum();
    let mut samples: Vec<Sample> = Vec::new();
    for (encoding, bytes) in chunks {
        let mut it = ChunkIter::new(*encoding, bytes.as_ref())?;
        for s in it.by_ref() {
            if samples.last().is_some_and(|p| p.t >= s.t) {
                return None;
            }
            samples.push(s);
        }
        if it.error().is_some() {
            return None;
        }
    }
    if samples.is_empty() {
        return None;
    }
    let n = samples.len().div_ceil(BLOCK_CHUNK_SAMPLES);
    let per = samples.len().div_ceil(n);
    let mut out = Vec::with_capacity(n);
    let mut after = 0;
    for group in samples.chunks(per) {
        let bytes = encode_packed(group).ok()?;
        after += bytes.len();
        let (first, last) = (group.first()?, group.last()?);
        out.push(EncodedChunk { min_t: first.t, max_t: last.t, encoding: ENCODING_PACKED, bytes });
    }
    (after < before).then_some(out)
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
    #[error("rollup chunk: {0}")]
    Rollup(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xor_chunks(samples: &[Sample], per: usize) -> Vec<(u8, Vec<u8>)> {
        samples
            .chunks(per)
            .map(|g| {
                let mut a = XorAppender::new();
                for s in g {
                    a.append(s.t, s.v).unwrap();
                }
                (ENCODING_XOR, a.bytes().to_vec())
            })
            .collect()
    }

    fn decode(chunks: &[EncodedChunk]) -> Vec<Sample> {
        chunks.iter().flat_map(|c| ChunkIter::new(c.encoding, c.bytes.as_slice()).unwrap()).collect()
    }

    #[test]
    fn merging_joins_short_chunks_evenly_and_round_trips() {
        let samples: Vec<Sample> = (0..1000)
            .map(|i| Sample { t: 1_700_000_000_000 + i * 15_000 + (i % 3), v: (i * 7 % 13) as f64 })
            .collect();
        let input = xor_chunks(&samples, 120);
        let merged = merge_packed(&input).expect("smaller");
        assert_eq!(
            merged.iter().map(|c| XorIterator::new(&c.bytes).remaining()).collect::<Vec<_>>(),
            [334, 334, 332]
        );
        assert_eq!(decode(&merged), samples);
        for c in &merged {
            let d = decode(std::slice::from_ref(c));
            assert_eq!((c.min_t, c.max_t), (d[0].t, d[d.len() - 1].t));
        }
        let before: usize = input.iter().map(|c| c.1.len()).sum();
        let after: usize = merged.iter().map(|c| c.bytes.len()).sum();
        assert!(after < before, "{after} < {before}");
    }

    #[test]
    fn chunks_out_of_order_or_damaged_are_left_alone() {
        let samples: Vec<Sample> = (0..240).map(|i| Sample { t: i * 1000, v: i as f64 }).collect();
        let mut input = xor_chunks(&samples, 120);
        input.swap(0, 1);
        assert_eq!(merge_packed(&input), None, "overlapping or reversed chunks");
        let mut input = xor_chunks(&samples, 120);
        input[1].1.truncate(10);
        assert_eq!(merge_packed(&input), None, "a chunk that does not decode");
        assert_eq!(merge_packed(&[(9u8, vec![0u8, 1])]), None, "an unknown encoding");
    }
}
