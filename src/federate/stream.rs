//! The fast federation link between promtier nodes: every sample since a cursor (not just the
//! latest), with staleness markers exact, in a compact binary stream — so a global misses
//! nothing between pulls, fills the window after a failover, and catches up after a restart.
//! Text `/federate` stays for Prometheus interop. The format is described in
//! `docs/format/federation-stream.md`.
//!
//! ```text
//! stream  = "PTS1" next_cursor:i64le max_time:i64le frame*
//! frame   = len:u32le body                      (len = bytes of body)
//! body    = n_labels:uvarint (len:uvarint bytes){2·n_labels} kind:u8 chunk
//! chunk   = an XOR chunk (count header, delta-of-delta times, XOR values) to the end of the body
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use crate::model::{Label, Labels, Matcher};
use crate::storage::{Queryable, StorageError};
use crate::tsdb::chunkenc::{XorAppender, XorChunk, XorIterator};

/// Media type of the stream.
pub const STREAM_CONTENT_TYPE: &str = "application/x-promtier-stream; version=1";
const MAGIC: &[u8; 4] = b"PTS1";
/// Samples per frame: long backfills are cut into several frames per series.
const MAX_SAMPLES_PER_FRAME: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("not a promtier stream (bad magic)")]
    BadMagic,
    #[error("stream truncated at byte {0}")]
    Truncated(usize),
    #[error("bad frame at byte {offset}: {reason}")]
    BadFrame { offset: usize, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What the header of a stream says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHeader {
    /// The cursor to ask for next time: samples newer than it may still be arriving at the
    /// source, so it lags the source's clock by its ingest delay.
    pub next_cursor: i64,
    /// The newest sample timestamp the source holds (`i64::MIN` if unknown): a cheap liveness
    /// signal.
    pub max_time: i64,
}

/// Encodes every sample newer than `since` (and at most `now`) of the series matching any of
/// `selectors`. With `probe`, only the header is written.
/// External labels are added to series that lack them, as `/federate` does.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    storage: &dyn Queryable,
    selectors: &[Vec<Matcher>],
    external: &Labels,
    since: i64,
    now: i64,
    next_cursor: i64,
    probe: bool,
    out: &mut Vec<u8>,
) -> Result<(), StreamError> {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&next_cursor.to_le_bytes());
    out.extend_from_slice(&storage.max_time().unwrap_or(i64::MIN).to_le_bytes());
    if probe || selectors.is_empty() || since >= now {
        return Ok(());
    }
    let querier = storage.querier(since.saturating_add(1), now)?;
    // With several selectors, a series they share is sent once.
    let union = selectors.len() > 1;
    let externals: Vec<(&str, &str)> = external.iter().map(|l| (l.name, l.value)).collect();
    let mut seen: HashSet<Arc<Labels>> = HashSet::new();
    for matchers in selectors {
        for series in querier.select(matchers)? {
            if union && !seen.insert(series.labels.clone()) {
                continue;
            }
            let mut app = XorAppender::new();
            for s in series.samples {
                if app.num_samples() >= MAX_SAMPLES_PER_FRAME {
                    write_frame(out, &series.labels, &externals, std::mem::take(&mut app).finish());
                }
                // Samples come in time order, so an append never fails here; a chunk that is
                // full anyway is cut above.
                if app.append(s.t, s.v).is_err() {
                    write_frame(out, &series.labels, &externals, std::mem::take(&mut app).finish());
                    let _ = app.append(s.t, s.v);
                }
            }
            if app.num_samples() > 0 {
                write_frame(out, &series.labels, &externals, app.finish());
            }
        }
    }
    Ok(())
}

fn write_frame(out: &mut Vec<u8>, labels: &Labels, externals: &[(&str, &str)], chunk: XorChunk) {
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    let mut n = 0;
    super::for_each_with_external(labels, externals, true, |_, _| n += 1);
    put_uvarint(out, n);
    super::for_each_with_external(labels, externals, true, |name, value| {
        put_uvarint(out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_uvarint(out, value.len() as u64);
        out.extend_from_slice(value.as_bytes());
    });
    out.push(0); // metric type: unknown (reserved for metadata)
    out.extend_from_slice(chunk.bytes());
    let len = (out.len() - start) as u32;
    out[len_at..start].copy_from_slice(&len.to_le_bytes());
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_uvarint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Reads a stream: the header, then frames one by one.
pub struct StreamReader<'a> {
    buf: &'a [u8],
    pos: usize,
    pub header: StreamHeader,
}

/// One frame: a series (its label block, usable as a cache key) and its samples.
pub struct StreamFrame<'a> {
    /// The encoded label block, identical for the same series in every frame and stream.
    pub label_bytes: &'a [u8],
    chunk: &'a [u8],
}

impl<'a> StreamFrame<'a> {
    /// Decodes the label set.
    pub fn labels(&self) -> Result<Labels, StreamError> {
        let b = self.label_bytes;
        let mut pos = 0;
        let bad = |reason: &str| StreamError::BadFrame { offset: 0, reason: reason.to_string() };
        let n = get_uvarint(b, &mut pos).ok_or_else(|| bad("label count"))?;
        let mut pairs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let mut field = || -> Result<String, StreamError> {
                let len = get_uvarint(b, &mut pos).ok_or_else(|| bad("label length"))? as usize;
                let s = b.get(pos..pos + len).ok_or_else(|| bad("label text"))?;
                pos += len;
                String::from_utf8(s.to_vec()).map_err(|_| bad("label text is not UTF-8"))
            };
            let name = field()?;
            let value = field()?;
            pairs.push(Label { name, value });
        }
        Ok(Labels::new(pairs))
    }

    /// The samples, in time order. A corrupt chunk ends early; check `error()` afterwards.
    pub fn samples(&self) -> Result<XorIterator<&'a [u8]>, StreamError> {
        Ok(XorIterator::new(self.chunk))
    }
}

impl<'a> StreamReader<'a> {
    pub fn new(buf: &'a [u8]) -> Result<StreamReader<'a>, StreamError> {
        if buf.len() < 20 {
            return Err(if buf.starts_with(MAGIC) || buf.len() < 4 {
                StreamError::Truncated(buf.len())
            } else {
                StreamError::BadMagic
            });
        }
        if &buf[..4] != MAGIC {
            return Err(StreamError::BadMagic);
        }
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&buf[at..at + 8]);
            i64::from_le_bytes(a)
        };
        let header = StreamHeader { next_cursor: i64_at(4), max_time: i64_at(12) };
        Ok(StreamReader { buf, pos: 20, header })
    }

    /// The next frame, `None` at the end.
    pub fn next_frame(&mut self) -> Option<Result<StreamFrame<'a>, StreamError>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let at = self.pos;
        let Some(len) = self.buf.get(at..at + 4) else { return Some(Err(StreamError::Truncated(at))) };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(body) = self.buf.get(at + 4..at + 4 + len) else {
            return Some(Err(StreamError::Truncated(at)));
        };
        self.pos = at + 4 + len;
        // Walk the label block to find where it ends.
        let mut p = 0;
        let bad = |reason: &str| StreamError::BadFrame { offset: at, reason: reason.to_string() };
        let Some(n) = get_uvarint(body, &mut p) else { return Some(Err(bad("label count"))) };
        for _ in 0..2 * n {
            let Some(l) = get_uvarint(body, &mut p) else { return Some(Err(bad("label length"))) };
            p += l as usize;
            if p > body.len() {
                return Some(Err(bad("label text")));
            }
        }
        let label_bytes = &body[..p];
        if body.get(p).is_none() {
            return Some(Err(bad("missing metric type")));
        }
        Some(Ok(StreamFrame { label_bytes, chunk: &body[p + 1..] }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{STALE_NAN, Sample, parse_selector};
    use crate::storage::Appendable;
    use crate::tsdb::{Head, HeadOptions};

    #[test]
    fn round_trips_every_sample_since_the_cursor_with_staleness() -> Result<(), Box<dyn std::error::Error>> {
        let head = Head::new(HeadOptions::default())?;
        let mut app = head.appender();
        let a = Labels::from_pairs(&[("__name__", "a"), ("job", "x")]);
        let b = Labels::from_pairs(&[("__name__", "b"), ("job", "x")]);
        for t in 0..10_000i64 {
            app.append(None, &a, t * 1000, t as f64)?;
        }
        app.append(None, &b, 5000, 1.5)?;
        app.append(None, &b, 6000, STALE_NAN)?;
        app.commit()?;
        let all = vec![parse_selector("{job=\"x\"}")?];
        let mut out = Vec::new();
        encode(
            &head,
            &all,
            &Labels::from_pairs(&[("job", "ignored"), ("zone", "z")]),
            4000,
            20_000_000,
            123,
            false,
            &mut out,
        )?;
        let mut r = StreamReader::new(&out)?;
        assert_eq!(r.header.next_cursor, 123);
        assert_eq!(r.header.max_time, 9_999_000);
        let mut got: Vec<(Labels, Vec<Sample>)> = Vec::new();
        while let Some(f) = r.next_frame() {
            let f = f?;
            // External labels are added where missing; the series' own job wins.
            let l = f.labels()?;
            assert_eq!(l.get("zone"), Some("z"));
            assert_eq!(l.get("job"), Some("x"));
            got.push((l.without(&["zone"]), f.samples()?.collect()));
        }
        // `a` is long: cut into several frames, together every sample after the cursor.
        let a_samples: Vec<Sample> =
            got.iter().filter(|(l, _)| *l == a).flat_map(|(_, s)| s.clone()).collect();
        assert_eq!(a_samples.len(), 10_000 - 5);
        assert_eq!(a_samples[0], Sample { t: 5000, v: 5.0 });
        assert!(got.iter().filter(|(l, _)| *l == a).count() > 1);
        let b_samples: Vec<Sample> =
            got.iter().filter(|(l, _)| *l == b).flat_map(|(_, s)| s.clone()).collect();
        assert_eq!(b_samples.len(), 2);
        assert!(crate::model::is_stale_nan(b_samples[1].v));
        // A probe carries only the header.
        let mut probe = Vec::new();
        encode(&head, &all, &Labels::empty(), 0, 20_000_000, 7, true, &mut probe)?;
        assert_eq!(probe.len(), 20);
        assert!(StreamReader::new(&probe)?.next_frame().is_none());
        Ok(())
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(StreamReader::new(b"nope nope nope nope nope"), Err(StreamError::BadMagic)));
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&100u32.to_le_bytes());
        out.extend_from_slice(&[1, 2, 3]);
        let mut r = StreamReader::new(&out).expect("header");
        assert!(matches!(r.next_frame(), Some(Err(StreamError::Truncated(20)))));
    }
}
