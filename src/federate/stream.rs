//! The fast federation link between promtier nodes: every sample since a cursor (not just the
//! latest), with staleness markers exact, in a compact binary stream cut into bounded pages — so
//! a global misses nothing between pulls, fills the window after a failover, and catches up after
//! an outage of any length with memory bounded by the page size. Text `/federate` stays for
//! Prometheus interop. The format is described in `docs/format/federation-stream.md`.
//!
//! ```text
//! stream  = "PTS2" header_len:u32le header frame*        (version 2, asked for with v=2)
//!         | "PTS1" next_cursor:i64le max_time:i64le frame*   (version 1)
//! header  = next_cursor:i64 max_time:i64 flags:u32 epoch:u64 seq:u64 start:i64
//!           targets_up:u32 targets_total:u32 series:u64     (little-endian; longer headers
//!                                                          carry fields added later: skip them)
//! frame   = len:u32le body                      (len = bytes of body)
//! body    = n_labels:uvarint (len:uvarint bytes){2·n_labels} kind:u8 chunk
//! chunk   = an XOR chunk (count header, delta-of-delta times, XOR values) to the end of the body
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use crate::model::{Coverage, Label, Labels, Matcher};
use crate::storage::{Queryable, Series, StorageError};
use crate::tsdb::chunkenc::{XorAppender, XorChunk, XorIterator};

/// Media type of the stream.
pub const STREAM_CONTENT_TYPE: &str = "application/x-promtier-stream; version=1";
/// Media type of version 2 (paged, with rewinds and coverage).
pub const STREAM_CONTENT_TYPE_V2: &str = "application/x-promtier-stream; version=2";
const MAGIC_V1: &[u8; 4] = b"PTS1";
const MAGIC_V2: &[u8; 4] = b"PTS2";
/// Bytes of the version 2 header fields this code writes (after magic and length).
const V2_FIELDS: usize = 8 + 8 + 4 + 8 + 8 + 8 + 4 + 4 + 8;
/// Samples per frame: long backfills are cut into several frames per series.
const MAX_SAMPLES_PER_FRAME: usize = 4096;
/// Series whose samples are counted to estimate how much time fits in one page.
const ESTIMATE_SERIES: usize = 64;
/// Timestamps kept of those samples (an even subsample beyond that).
const ESTIMATE_TIMES: usize = 1 << 16;
/// Windows up to this long are encoded without sizing the page first (pulls that keep up).
const DIRECT_WINDOW_MS: i64 = 60_000;
/// Halvings of a page's time span before an over-full page is sent anyway.
const MAX_PAGE_ATTEMPTS: u32 = 12;
/// How far past the node's frontier a response may reach. Samples beyond the frontier are sent
/// again next time (the client skips them); the bound keeps that re-sending small while a
/// frontier is held back (a global waiting for a replica set to catch up).
pub const MAX_AHEAD_MS: i64 = 60_000;

const FLAG_MORE: u32 = 1;
const FLAG_REWOUND: u32 = 2;

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
    /// The cursor to ask for next time: every sample at or before it that the node will ever
    /// hold has been sent (by this or earlier responses), except what a later rewind announces.
    pub next_cursor: i64,
    /// The newest sample timestamp the source holds (`i64::MIN` if unknown): a cheap liveness
    /// signal.
    pub max_time: i64,
    /// The page ended before the data the node can send did: ask again at once from
    /// `next_cursor`.
    pub more: bool,
    /// The node's cursor epoch (a node's identity across restarts; 0 from version 1).
    pub epoch: u64,
    /// The node's rewind log position: pass it back (with the epoch) next time.
    pub seq: u64,
    /// Where this response started: `since`, or earlier when the node stored samples behind a
    /// cursor it had already handed out (a rewind).
    pub start: i64,
    /// Whether `start` is earlier than the `since` asked for.
    pub rewound: bool,
    /// What the node covers (targets up, series), for elections by completeness.
    pub coverage: Coverage,
}

/// Page bounds: a response holds at most about this much (see [`encode_page`]). The defaults
/// are the topology's (`defaults.fast_link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    pub max_samples: usize,
    pub max_bytes: usize,
}

/// Where a node's cursor stands for one client (see `frontier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Every sample at or before it that the node will ever store is visible now, except what a
    /// rewind entry announces.
    pub frontier: i64,
    pub epoch: u64,
    pub seq: u64,
    /// The earliest time the client must read again (late commits it has not seen), if any.
    pub rewind_to: Option<i64>,
}

/// One request of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Samples newer than this (ms) are asked for.
    pub since: i64,
    /// The node's clock (ms).
    pub now: i64,
    pub limits: PageLimits,
    /// Header only.
    pub probe: bool,
    /// Version 1 header (clients that do not ask for `v=2`).
    pub v1: bool,
}

/// Encodes one response: the header, then every sample in `(start, until]` of the series
/// matching any of `selectors`, where `start` is `since` (or the rewind point) and `until` is as
/// far as the page limits allow, at most [`MAX_AHEAD_MS`] past the frontier and never past
/// `now`. External labels are added to series that lack them, as `/federate` does.
///
/// A window longer than a minute has its time span chosen from the density of a sample of the
/// series first; then the span is halved while the page comes out more than twice the sample
/// limit or over the byte limit; a span that cannot be halved further (every sample of one
/// millisecond) is sent whole.
pub fn encode_page(
    storage: &dyn Queryable,
    selectors: &[Vec<Matcher>],
    external: &Labels,
    req: &PageRequest,
    pos: &Position,
    coverage: Coverage,
    out: &mut Vec<u8>,
) -> Result<StreamHeader, StreamError> {
    let start = match pos.rewind_to {
        Some(r) if r < req.since => r,
        _ => req.since,
    };
    let limit = req.now.min(pos.frontier.max(start).saturating_add(MAX_AHEAD_MS));
    let mut header = StreamHeader {
        next_cursor: start.max(pos.frontier.min(limit)),
        max_time: storage.max_time().unwrap_or(i64::MIN),
        more: false,
        epoch: pos.epoch,
        seq: pos.seq,
        start,
        rewound: start < req.since,
        coverage,
    };
    let header_at = out.len();
    write_header(out, &header, req.v1);
    if req.probe || selectors.is_empty() || start >= limit {
        return Ok(header);
    }
    let frames_at = out.len();
    // A pull that keeps up asks for about one interval: encode it straight away (an overflow is
    // caught below). A longer window is a catch-up: size the page first.
    let mut until = if limit - start <= DIRECT_WINDOW_MS {
        limit
    } else {
        choose_until(storage, selectors, start, limit, req.limits.max_samples)?
    };
    let mut attempts = 0;
    loop {
        out.truncate(frames_at);
        let cap = (attempts < MAX_PAGE_ATTEMPTS && until - start > 1)
            .then_some((req.limits.max_samples.saturating_mul(2), req.limits.max_bytes));
        match encode_range(storage, selectors, external, start, until, cap, out)? {
            Some(_) => break,
            None => {
                attempts += 1;
                until = start + (until - start) / 2;
            }
        }
    }
    // Everything up to `until` has been sent; the cursor may not pass the frontier (something
    // at or before it may still be committed) nor go back before where this response started.
    header.next_cursor = start.max(until.min(pos.frontier));
    header.more = until < limit && until <= pos.frontier;
    // The header has a fixed size: write the final one over the provisional one.
    let mut patched = Vec::with_capacity(8 + V2_FIELDS);
    write_header(&mut patched, &header, req.v1);
    out[header_at..header_at + patched.len()].copy_from_slice(&patched);
    Ok(header)
}

/// The end of a page starting at `start`: `limit` when everything up to it fits, else the time
/// at which a sample of the series says about `max_samples` samples will have been reached.
fn choose_until(
    storage: &dyn Queryable,
    selectors: &[Vec<Matcher>],
    start: i64,
    limit: i64,
    max_samples: usize,
) -> Result<i64, StreamError> {
    let querier = storage.querier(start.saturating_add(1), limit)?;
    let mut series: Vec<Series> = Vec::new();
    for m in selectors {
        series.extend(querier.select(m)?);
    }
    let n = series.len();
    if n == 0 {
        return Ok(limit);
    }
    let k = n.min(ESTIMATE_SERIES);
    // Every `stride`-th timestamp of the sampled series: the kept ones stay an even sample of
    // them, and their number stays bounded however long the window is.
    let mut times: Vec<i64> = Vec::new();
    let (mut stride, mut counted) = (1u64, 0u64);
    for i in 0..k {
        for x in series[i * n / k].samples.by_ref() {
            if counted % stride == 0 {
                times.push(x.t);
                if times.len() >= ESTIMATE_TIMES {
                    let mut j = 0;
                    times.retain(|_| {
                        j += 1;
                        j % 2 == 1
                    });
                    stride *= 2;
                }
            }
            counted += 1;
        }
    }
    let estimated = counted as f64 * n as f64 / k as f64;
    if estimated <= max_samples as f64 || times.is_empty() {
        return Ok(limit);
    }
    times.sort_unstable();
    // Aim a little under the limit: the estimate is a sample.
    let keep = (times.len() as f64 * 0.9 * max_samples as f64 / estimated) as usize;
    let until = times[keep.min(times.len() - 1)];
    Ok(until.clamp(start + 1, limit))
}

/// Writes the frames of every sample in `(start, until]`. With `cap` (samples, bytes), gives up
/// and returns `None` as soon as the output passes either bound; otherwise the sample count.
fn encode_range(
    storage: &dyn Queryable,
    selectors: &[Vec<Matcher>],
    external: &Labels,
    start: i64,
    until: i64,
    cap: Option<(usize, usize)>,
    out: &mut Vec<u8>,
) -> Result<Option<usize>, StreamError> {
    let began = out.len();
    let querier = storage.querier(start.saturating_add(1), until)?;
    // With several selectors, a series they share is sent once.
    let union = selectors.len() > 1;
    let externals: Vec<(&str, &str)> = external.iter().map(|l| (l.name, l.value)).collect();
    let mut seen: HashSet<Arc<Labels>> = HashSet::new();
    let mut total = 0usize;
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
                total += 1;
            }
            if app.num_samples() > 0 {
                write_frame(out, &series.labels, &externals, app.finish());
            }
            if let Some((max_samples, max_bytes)) = cap
                && (total > max_samples || out.len() - began > max_bytes)
            {
                return Ok(None);
            }
        }
    }
    Ok(Some(total))
}

fn write_header(out: &mut Vec<u8>, h: &StreamHeader, v1: bool) {
    if v1 {
        out.extend_from_slice(MAGIC_V1);
        out.extend_from_slice(&h.next_cursor.to_le_bytes());
        out.extend_from_slice(&h.max_time.to_le_bytes());
        return;
    }
    out.extend_from_slice(MAGIC_V2);
    out.extend_from_slice(&(V2_FIELDS as u32).to_le_bytes());
    out.extend_from_slice(&h.next_cursor.to_le_bytes());
    out.extend_from_slice(&h.max_time.to_le_bytes());
    let flags = if h.more { FLAG_MORE } else { 0 } | if h.rewound { FLAG_REWOUND } else { 0 };
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&h.epoch.to_le_bytes());
    out.extend_from_slice(&h.seq.to_le_bytes());
    out.extend_from_slice(&h.start.to_le_bytes());
    out.extend_from_slice(&h.coverage.targets_up.to_le_bytes());
    out.extend_from_slice(&h.coverage.targets_total.to_le_bytes());
    out.extend_from_slice(&h.coverage.series.to_le_bytes());
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
        // Each label takes at least two bytes (two lengths): a count larger than what is left
        // could hold is corrupt, and must not size an allocation.
        let n =
            usize::try_from(n).ok().filter(|&n| n <= max_labels(b, pos)).ok_or_else(|| bad("label count"))?;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            let mut field = || -> Result<String, StreamError> {
                let len = get_uvarint(b, &mut pos).ok_or_else(|| bad("label length"))? as usize;
                let end = pos.checked_add(len).ok_or_else(|| bad("label length"))?;
                let s = b.get(pos..end).ok_or_else(|| bad("label text"))?;
                pos = end;
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

/// The most labels the bytes of `b` from `pos` on can hold: each takes at least two (the lengths
/// of its name and value).
fn max_labels(b: &[u8], pos: usize) -> usize {
    b.len().saturating_sub(pos) / 2
}

fn i64_at(buf: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[at..at + 8]);
    i64::from_le_bytes(a)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(a)
}

impl<'a> StreamReader<'a> {
    pub fn new(buf: &'a [u8]) -> Result<StreamReader<'a>, StreamError> {
        if buf.len() < 4 {
            return Err(StreamError::Truncated(buf.len()));
        }
        match &buf[..4] {
            m if m == MAGIC_V1 => {
                if buf.len() < 20 {
                    return Err(StreamError::Truncated(buf.len()));
                }
                let header = StreamHeader {
                    next_cursor: i64_at(buf, 4),
                    max_time: i64_at(buf, 12),
                    more: false,
                    epoch: 0,
                    seq: 0,
                    start: i64::MIN,
                    rewound: false,
                    coverage: Coverage::default(),
                };
                Ok(StreamReader { buf, pos: 20, header })
            }
            m if m == MAGIC_V2 => {
                if buf.len() < 8 {
                    return Err(StreamError::Truncated(buf.len()));
                }
                let len = u32_at(buf, 4) as usize;
                let end = 8usize.checked_add(len).ok_or(StreamError::Truncated(buf.len()))?;
                if len < V2_FIELDS || buf.len() < end {
                    return Err(StreamError::Truncated(buf.len()));
                }
                let h = &buf[8..end];
                let flags = u32_at(h, 16);
                let header = StreamHeader {
                    next_cursor: i64_at(h, 0),
                    max_time: i64_at(h, 8),
                    more: flags & FLAG_MORE != 0,
                    epoch: i64_at(h, 20) as u64,
                    seq: i64_at(h, 28) as u64,
                    start: i64_at(h, 36),
                    rewound: flags & FLAG_REWOUND != 0,
                    coverage: Coverage {
                        targets_up: u32_at(h, 44),
                        targets_total: u32_at(h, 48),
                        series: i64_at(h, 52) as u64,
                    },
                };
                Ok(StreamReader { buf, pos: end, header })
            }
            _ => Err(StreamError::BadMagic),
        }
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
        let mut p = 0usize;
        let bad = |reason: &str| StreamError::BadFrame { offset: at, reason: reason.to_string() };
        let Some(n) = get_uvarint(body, &mut p) else { return Some(Err(bad("label count"))) };
        if usize::try_from(n).map_or(true, |n| n > max_labels(body, p)) {
            return Some(Err(bad("label count")));
        }
        for _ in 0..2 * n {
            let Some(l) = get_uvarint(body, &mut p) else { return Some(Err(bad("label length"))) };
            p = match usize::try_from(l).ok().and_then(|l| p.checked_add(l)) {
                Some(p) if p <= body.len() => p,
                _ => return Some(Err(bad("label text"))),
            };
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

    fn position(frontier: i64) -> Position {
        Position { frontier, epoch: 7, seq: 3, rewind_to: None }
    }

    fn request(since: i64, now: i64, max_samples: usize) -> PageRequest {
        PageRequest {
            since,
            now,
            limits: PageLimits { max_samples, max_bytes: 64 << 20 },
            probe: false,
            v1: false,
        }
    }

    type Frames = Vec<(Labels, Vec<Sample>)>;

    /// Labels → samples of a whole response.
    fn read_all(body: &[u8]) -> Result<(StreamHeader, Frames), StreamError> {
        let mut r = StreamReader::new(body)?;
        let mut got: Vec<(Labels, Vec<Sample>)> = Vec::new();
        while let Some(f) = r.next_frame() {
            let f = f?;
            got.push((f.labels()?, f.samples()?.collect()));
        }
        Ok((r.header, got))
    }

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
        let ext = Labels::from_pairs(&[("job", "ignored"), ("zone", "z")]);
        let mut out = Vec::new();
        let cov = Coverage { targets_up: 1, targets_total: 2, series: 3 };
        let now = 20_000_000;
        let h =
            encode_page(&head, &all, &ext, &request(4000, now, 1 << 20), &position(now - 5), cov, &mut out)?;
        let (rh, got) = read_all(&out)?;
        assert_eq!(h, rh);
        // Everything up to `now` is sent; the cursor stops at the frontier.
        assert_eq!(rh.next_cursor, now - 5);
        assert_eq!(rh.max_time, 9_999_000);
        assert_eq!((rh.epoch, rh.seq, rh.coverage), (7, 3, cov));
        assert!(!rh.more);
        let got: Vec<(Labels, Vec<Sample>)> = got
            .into_iter()
            .map(|(l, s)| {
                // External labels are added where missing; the series' own job wins.
                assert_eq!(l.get("zone"), Some("z"));
                assert_eq!(l.get("job"), Some("x"));
                (l.without(&["zone"]), s)
            })
            .collect();
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
        let mut req = request(0, 20_000_000, 1 << 20);
        req.probe = true;
        encode_page(&head, &all, &Labels::empty(), &req, &position(i64::MAX), cov, &mut probe)?;
        let (ph, frames) = read_all(&probe)?;
        assert!(frames.is_empty());
        assert_eq!(ph.coverage, cov);
        Ok(())
    }

    #[test]
    fn pages_cover_every_sample_exactly_once_within_their_bounds() -> Result<(), Box<dyn std::error::Error>> {
        let head = Head::new(HeadOptions::default())?;
        let mut app = head.appender();
        // 300 series × 1000 samples, scraped at different offsets within the second.
        for i in 0..300i64 {
            let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
            for t in 0..1000i64 {
                app.append(None, &l, t * 1000 + i, (t * i) as f64)?;
            }
        }
        app.commit()?;
        let all = vec![parse_selector("{__name__=\"m\"}")?];
        let now = 2_000_000;
        let mut since = -1;
        let mut pages = 0;
        let mut seen: std::collections::BTreeMap<Labels, Vec<i64>> = Default::default();
        loop {
            let mut out = Vec::new();
            let h = encode_page(
                &head,
                &all,
                &Labels::empty(),
                &request(since, now, 5000),
                &position(now - 1),
                Coverage::default(),
                &mut out,
            )?;
            let (_, frames) = read_all(&out)?;
            let n: usize = frames.iter().map(|(_, s)| s.len()).sum();
            assert!(n <= 10_000, "page {pages} holds {n} samples");
            for (l, s) in frames {
                let v = seen.entry(l).or_default();
                for x in s {
                    assert!(
                        x.t > since && x.t <= h.next_cursor.max(since),
                        "sample {} outside ({since}, {}]",
                        x.t,
                        h.next_cursor
                    );
                    v.push(x.t);
                }
            }
            pages += 1;
            assert!(h.next_cursor > since || !h.more);
            since = h.next_cursor;
            if !h.more {
                break;
            }
            assert!(pages < 1000, "no progress");
        }
        assert!(pages >= 60, "300k samples in pages of ~5k: {pages} pages");
        assert_eq!(seen.len(), 300);
        for (l, ts) in &seen {
            assert_eq!(ts.len(), 1000, "{l}");
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "{l}: sent twice or out of order");
        }
        Ok(())
    }

    #[test]
    fn page_sizing_keeps_a_bounded_even_sample_of_timestamps() -> Result<(), Box<dyn std::error::Error>> {
        let head = Head::new(HeadOptions::default())?;
        let mut app = head.appender();
        // 80 series × 3000 samples: more timestamps than the estimate keeps, so it subsamples.
        for i in 0..80i64 {
            let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
            for t in 1..=3000i64 {
                app.append(None, &l, t * 1000, 1.0)?;
            }
        }
        app.commit()?;
        let all = vec![parse_selector("{__name__=\"m\"}")?];
        let until = choose_until(&head, &all, 0, 3_000_000, 24_000)?;
        // 24k samples of 80 series ≈ 300 s of data; the estimate aims at 90% of it.
        assert!((255_000..=300_000).contains(&until), "until {until}");
        Ok(())
    }

    #[test]
    fn the_cursor_never_passes_the_frontier_nor_goes_back_and_rewinds_start_earlier()
    -> Result<(), Box<dyn std::error::Error>> {
        let head = Head::new(HeadOptions::default())?;
        let mut app = head.appender();
        let l = Labels::from_pairs(&[("__name__", "m")]);
        for t in 1..=100i64 {
            app.append(None, &l, t * 1000, t as f64)?;
        }
        app.commit()?;
        let all = vec![parse_selector("{__name__=\"m\"}")?];
        let read = |since: i64, pos: Position| -> Result<(StreamHeader, Vec<i64>), StreamError> {
            let mut out = Vec::new();
            encode_page(
                &head,
                &all,
                &Labels::empty(),
                &request(since, 200_000, 1000),
                &pos,
                Coverage::default(),
                &mut out,
            )?;
            let (h, frames) = read_all(&out)?;
            Ok((h, frames.into_iter().flat_map(|(_, s)| s.into_iter().map(|x| x.t)).collect()))
        };
        // Frontier at 50 s: data up to 60 s past it is sent, the cursor stops at the frontier.
        let (h, ts) = read(10_000, position(50_000))?;
        assert_eq!(h.next_cursor, 50_000);
        assert!(!h.more);
        assert_eq!(ts.first(), Some(&11_000));
        assert_eq!(ts.last(), Some(&100_000));
        // A frontier behind `since` (it moved back): the cursor stays where it was.
        let (h, ts) = read(80_000, position(40_000))?;
        assert_eq!(h.next_cursor, 80_000);
        assert_eq!(ts.first(), Some(&81_000));
        // A rewind starts the response earlier and says so.
        let (h, ts) = read(80_000, Position { frontier: 99_000, epoch: 1, seq: 9, rewind_to: Some(30_000) })?;
        assert!(h.rewound);
        assert_eq!(h.start, 30_000);
        assert_eq!(ts.first(), Some(&31_000));
        assert_eq!(h.next_cursor, 99_000);
        Ok(())
    }

    #[test]
    fn reads_version_1_and_rejects_garbage() {
        assert!(matches!(StreamReader::new(b"nope nope nope nope nope"), Err(StreamError::BadMagic)));
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC_V1);
        out.extend_from_slice(&5i64.to_le_bytes());
        out.extend_from_slice(&6i64.to_le_bytes());
        out.extend_from_slice(&100u32.to_le_bytes());
        out.extend_from_slice(&[1, 2, 3]);
        let mut r = StreamReader::new(&out).expect("header");
        assert_eq!((r.header.next_cursor, r.header.max_time, r.header.more), (5, 6, false));
        assert!(matches!(r.next_frame(), Some(Err(StreamError::Truncated(20)))));
        // A frame claiming a huge label count is refused before anything is allocated.
        let mut v2 = Vec::new();
        write_header(
            &mut v2,
            &StreamHeader {
                next_cursor: 1,
                max_time: 2,
                more: true,
                epoch: 3,
                seq: 4,
                start: 0,
                rewound: false,
                coverage: Coverage::default(),
            },
            false,
        );
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0];
        v2.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v2.extend_from_slice(&body);
        let mut r = StreamReader::new(&v2).expect("v2 header");
        assert!(r.header.more);
        assert!(matches!(r.next_frame(), Some(Err(StreamError::BadFrame { .. }))));
        assert!(matches!(StreamReader::new(&v2[..10]), Err(StreamError::Truncated(_))));
    }

    #[test]
    fn a_label_count_beyond_the_label_block_is_refused_before_allocating() {
        // One real label, but a count of 2^62, then of 2 (needs 4 bytes, 3 left).
        for block in
            [&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 1, b'a', 0][..], &[2, 1, b'a', 0]]
        {
            let frame = StreamFrame { label_bytes: block, chunk: &[] };
            assert!(
                matches!(frame.labels(), Err(StreamError::BadFrame { ref reason, .. }) if reason == "label count"),
                "{block:?}"
            );
        }
        let ok = StreamFrame { label_bytes: &[1, 1, b'a', 1, b'b'], chunk: &[] };
        assert_eq!(ok.labels().ok(), Some(Labels::from_pairs(&[("a", "b")])));
    }
}
