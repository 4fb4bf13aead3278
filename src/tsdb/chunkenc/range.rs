//! Reading a series' chunks for a time range: decoded one chunk at a time, samples outside
//! `[mint, maxt]` skipped, and "no sample in range" known before the iterator is handed out.

use super::ChunkIter;
use crate::model::Sample;

/// The samples in `[mint, maxt]` of a series' chunks (`(encoding, bytes)`, in time order).
#[derive(Debug)]
pub struct RangeSamples<B> {
    chunks: std::vec::IntoIter<(u8, B)>,
    cur: Option<ChunkIter<B>>,
    mint: i64,
    maxt: i64,
    /// Decoded ahead so that a series without samples in range is known before it is returned.
    first: Option<Sample>,
}

impl<B: AsRef<[u8]>> RangeSamples<B> {
    /// `None` when no sample of `chunks` is in range (chunks of unknown encodings are skipped).
    pub fn new(chunks: Vec<(u8, B)>, mint: i64, maxt: i64) -> Option<RangeSamples<B>> {
        let mut it = RangeSamples { chunks: chunks.into_iter(), cur: None, mint, maxt, first: None };
        it.first = Some(it.next()?);
        Some(it)
    }
}

impl<B: AsRef<[u8]>> Iterator for RangeSamples<B> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        if let Some(s) = self.first.take() {
            return Some(s);
        }
        loop {
            let s = match self.cur.as_mut() {
                Some(it) => it.next(),
                None => {
                    let (enc, bytes) = self.chunks.next()?;
                    let Some(mut it) = ChunkIter::new(enc, bytes) else { continue };
                    let first = it.seek(self.mint);
                    self.cur = Some(it);
                    first
                }
            };
            match s {
                Some(s) if s.t > self.maxt => {
                    self.chunks = Vec::new().into_iter();
                    self.cur = None;
                    return None;
                }
                Some(s) => return Some(s),
                None => self.cur = None,
            }
        }
    }
}
