//! Hints: the writes a push node owes an owner it could not reach, kept on disk in arrival order
//! until that owner takes them (Dynamo's hinted handoff). One queue per peer, in
//! `<data>/hints/<peer>/`: segment files of framed records (`u32` length, `u32` CRC-32C, the
//! encoded [`Forward`]), the position of the next record to deliver in `position`.
//!
//! Guarantees: a hint is written to the kernel (`write(2)`) before the write it belongs to is
//! answered, so it survives the death of the process (segments are synced when closed, as the
//! WAL's are); a damaged record ends its segment (the rest of it is skipped, counted). Past the
//! bound the oldest closed segments are dropped, counted and logged. Delivery is at least once:
//! after a restart the records since the last persisted position are sent again, which a
//! receiver takes as duplicates with the same values (remote write) or as the same group state
//! (Pushgateway pushes are replayed in order).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::remote::codec::crc32c;

/// A segment is closed and the next one started past this size.
const SEGMENT_BYTES: u64 = 8 << 20;
/// Record header: length and CRC.
const HEADER: usize = 8;
/// Sanity bound on one record (a remote-write body is at most tens of MiB).
const MAX_RECORD: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HintError {
    #[error("hints {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HintError + '_ {
    move |source| HintError::Io { path: path.to_path_buf(), source }
}

/// One write owed to a peer: an HTTP request, replayed as it was first sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub method: Method,
    /// Path and query, e.g. `/api/v1/write` or `/metrics/job/a/instance/b`.
    pub path: String,
    pub content_type: String,
    pub content_encoding: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    fn code(self) -> u8 {
        match self {
            Method::Post => 1,
            Method::Put => 2,
            Method::Delete => 3,
        }
    }

    fn from_code(c: u8) -> Option<Method> {
        match c {
            1 => Some(Method::Post),
            2 => Some(Method::Put),
            3 => Some(Method::Delete),
            _ => None,
        }
    }
}

impl Forward {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.method.code());
        for s in [&self.path, &self.content_type, &self.content_encoding] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&self.body);
    }

    fn decode(mut b: &[u8]) -> Option<Forward> {
        let method = Method::from_code(*b.first()?)?;
        b = &b[1..];
        let mut strings = Vec::with_capacity(3);
        for _ in 0..3 {
            let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
            let s = std::str::from_utf8(b.get(4..4 + n)?).ok()?.to_string();
            strings.push(s);
            b = &b[4 + n..];
        }
        let content_encoding = strings.pop()?;
        let content_type = strings.pop()?;
        let path = strings.pop()?;
        Some(Forward { method, path, content_type, content_encoding, body: b.to_vec() })
    }
}

/// Where the next record to deliver starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Position {
    segment: u64,
    offset: u64,
}

/// What the queue has done, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HintStats {
    /// Records waiting and their bytes.
    pub pending: u64,
    pub pending_bytes: u64,
    pub written: u64,
    pub delivered: u64,
    /// Records given up: over the bound, or damaged on disk.
    pub dropped: u64,
}

struct State {
    /// Segment being appended to, and its size.
    write_segment: u64,
    write_file: Option<File>,
    write_len: u64,
    /// Segments on disk with their sizes, oldest first.
    segments: Vec<(u64, u64)>,
    read: Position,
    stats: HintStats,
}

/// The hints kept for one peer.
pub struct HintQueue {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}.hints"))
}

impl HintQueue {
    /// Opens (or creates) the queue in `dir`, keeping at most about `max_bytes` of hints.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<HintQueue, HintError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut segments = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            let name = e.file_name();
            let Some(n) = name.to_str().and_then(|s| s.strip_suffix(".hints")).and_then(|s| s.parse().ok())
            else {
                continue;
            };
            let len = e.metadata().map_err(io_err(&e.path()))?.len();
            segments.push((n, len));
        }
        segments.sort_unstable();
        let pos_path = dir.join("position");
        let mut read = match std::fs::read(&pos_path) {
            Ok(b) if b.len() == 16 => Position {
                segment: u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
                offset: u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
            },
            _ => Position::default(),
        };
        match segments.first() {
            Some(&(first, _)) if read.segment < first => read = Position { segment: first, offset: 0 },
            None => read = Position::default(),
            _ => {}
        }
        let write_segment = segments.last().map_or(1, |s| s.0 + 1);
        let q = HintQueue {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(State {
                write_segment,
                write_file: None,
                write_len: 0,
                segments,
                read,
                stats: HintStats::default(),
            }),
        };
        {
            let mut st = q.state.lock();
            let damaged = q.recount(&mut st);
            if damaged > 0 {
                tracing::warn!(dir = %dir.display(), segments = damaged, "push: hint segments end in a damaged record; their rest is lost");
                st.stats.dropped += damaged;
            }
        }
        Ok(q)
    }

    /// Whether anything waits for delivery.
    pub fn is_empty(&self) -> bool {
        self.state.lock().stats.pending == 0
    }

    pub fn stats(&self) -> HintStats {
        self.state.lock().stats
    }

    /// Appends a hint (in the kernel when this returns); drops the oldest closed segments when
    /// the queue is over its bound.
    pub fn push(&self, f: &Forward) -> Result<(), HintError> {
        let mut payload = Vec::with_capacity(f.body.len() + f.path.len() + 64);
        f.encode(&mut payload);
        let mut rec = Vec::with_capacity(payload.len() + HEADER);
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32c(&payload).to_le_bytes());
        rec.extend_from_slice(&payload);
        let mut st = self.state.lock();
        if st.write_file.is_some() && st.write_len + rec.len() as u64 > SEGMENT_BYTES {
            self.close_segment(&mut st)?;
        }
        if st.write_file.is_none() {
            let n = st.write_segment;
            let path = segment_path(&self.dir, n);
            let f = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
            st.write_file = Some(f);
            st.write_len = 0;
            st.segments.push((n, 0));
        }
        let n = st.write_segment;
        let path = segment_path(&self.dir, n);
        if let Some(file) = st.write_file.as_mut() {
            file.write_all(&rec).map_err(io_err(&path))?;
        }
        st.write_len += rec.len() as u64;
        let written = st.write_len;
        if let Some(last) = st.segments.last_mut() {
            last.1 = written;
        }
        st.stats.written += 1;
        st.stats.pending += 1;
        st.stats.pending_bytes += rec.len() as u64;
        self.enforce_bound(&mut st);
        Ok(())
    }

    fn close_segment(&self, st: &mut State) -> Result<(), HintError> {
        if let Some(f) = st.write_file.take() {
            let path = segment_path(&self.dir, st.write_segment);
            f.sync_data().map_err(io_err(&path))?;
        }
        st.write_segment += 1;
        st.write_len = 0;
        Ok(())
    }

    /// Drops whole closed segments, oldest first, while the queue is over its bound.
    fn enforce_bound(&self, st: &mut State) {
        while st.stats.pending_bytes > self.max_bytes {
            let Some(&(oldest, _)) = st.segments.first() else { break };
            if oldest == st.write_segment && st.write_file.is_some() {
                break;
            }
            let before = st.stats.pending;
            let path = segment_path(&self.dir, oldest);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "push: cannot remove a hint segment");
                break;
            }
            st.segments.remove(0);
            if st.read.segment <= oldest {
                st.read =
                    Position { segment: st.segments.first().map_or(st.write_segment, |s| s.0), offset: 0 };
            }
            self.recount(st);
            let lost = before.saturating_sub(st.stats.pending);
            st.stats.dropped += lost;
            tracing::warn!(
                dir = %self.dir.display(),
                records = lost,
                max_bytes = self.max_bytes,
                "push: hints over their bound; dropped the oldest segment (that owner will lack these writes)"
            );
        }
    }

    /// Recomputes what is pending from the files (open, after drops); returns how many segments
    /// end in a damaged record.
    fn recount(&self, st: &mut State) -> u64 {
        let (mut n, mut bytes, mut damaged) = (0u64, 0u64, 0u64);
        for &(seg, _) in &st.segments {
            let from = if seg == st.read.segment { st.read.offset } else { 0 };
            if seg < st.read.segment {
                continue;
            }
            let Ok(data) = std::fs::read(segment_path(&self.dir, seg)) else { continue };
            let mut at = from as usize;
            while let Some((_, len)) = frame(&data[at.min(data.len())..]) {
                n += 1;
                bytes += len as u64;
                at += len;
            }
            if at < data.len() {
                damaged += 1;
            }
        }
        st.stats.pending = n;
        st.stats.pending_bytes = bytes;
        damaged
    }

    /// The oldest undelivered hint, if any (damaged records are skipped and counted).
    pub fn peek(&self) -> Result<Option<Forward>, HintError> {
        let mut st = self.state.lock();
        loop {
            let Some(&(seg, len)) = st.segments.iter().find(|s| s.0 >= st.read.segment) else {
                return Ok(None);
            };
            if seg > st.read.segment {
                st.read = Position { segment: seg, offset: 0 };
            }
            if st.read.offset < len {
                let path = segment_path(&self.dir, seg);
                let mut f = File::open(&path).map_err(io_err(&path))?;
                let mut data = Vec::new();
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(st.read.offset))
                    .map_err(io_err(&path))?;
                f.take(len - st.read.offset).read_to_end(&mut data).map_err(io_err(&path))?;
                match frame(&data) {
                    Some((payload, _)) => match Forward::decode(payload) {
                        Some(f) => return Ok(Some(f)),
                        None => {
                            // Framed and checksummed but not a hint: skip the record.
                            st.stats.dropped += 1;
                            let l = HEADER + payload.len();
                            st.read.offset += l as u64;
                            st.stats.pending = st.stats.pending.saturating_sub(1);
                            st.stats.pending_bytes = st.stats.pending_bytes.saturating_sub(l as u64);
                            continue;
                        }
                    },
                    None => {
                        // A damaged tail: the rest of this segment is lost.
                        tracing::warn!(path = %path.display(), offset = st.read.offset, "push: damaged hint record; skipping the rest of its segment");
                        st.stats.dropped += 1;
                        st.read.offset = len;
                        self.recount(&mut st);
                    }
                }
            }
            // This segment is used up: remove it unless it is being written.
            if seg == st.write_segment && st.write_file.is_some() {
                return Ok(None);
            }
            let path = segment_path(&self.dir, seg);
            let _ = std::fs::remove_file(&path);
            st.segments.retain(|s| s.0 != seg);
            st.read = Position { segment: seg + 1, offset: 0 };
            self.save_position(&st);
        }
    }

    /// Marks the hint [`HintQueue::peek`] returned as delivered (or given up).
    pub fn pop(&self) {
        let mut st = self.state.lock();
        let Some(&(seg, len)) = st.segments.iter().find(|s| s.0 == st.read.segment) else { return };
        let path = segment_path(&self.dir, seg);
        let Ok(mut f) = File::open(&path) else { return };
        let mut head = [0u8; HEADER];
        if std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(st.read.offset)).is_err()
            || f.read_exact(&mut head).is_err()
        {
            return;
        }
        let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64 + HEADER as u64;
        st.read.offset = (st.read.offset + n).min(len);
        st.stats.delivered += 1;
        st.stats.pending = st.stats.pending.saturating_sub(1);
        st.stats.pending_bytes = st.stats.pending_bytes.saturating_sub(n);
        if st.stats.pending == 0 {
            // Everything delivered: start afresh, so the files go away.
            let segs: Vec<u64> = st.segments.iter().map(|s| s.0).collect();
            let _ = self.close_segment(&mut st);
            for s in segs {
                let _ = std::fs::remove_file(segment_path(&self.dir, s));
            }
            st.segments.clear();
            st.read = Position { segment: st.write_segment, offset: 0 };
        }
        self.save_position(&st);
    }

    /// Persists the read position (no fsync: losing it only means sending some hints again).
    fn save_position(&self, st: &State) {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&st.read.segment.to_le_bytes());
        b.extend_from_slice(&st.read.offset.to_le_bytes());
        let path = self.dir.join("position");
        let tmp = self.dir.join("position.tmp");
        if let Err(e) = std::fs::write(&tmp, &b).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::warn!(path = %path.display(), error = %e, "push: cannot save the hint position");
        }
    }
}

/// The payload and whole length of the record at the start of `data`, if it is whole and intact.
fn frame(data: &[u8]) -> Option<(&[u8], usize)> {
    let n = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data.get(4..8)?.try_into().ok()?);
    if n > MAX_RECORD {
        return None;
    }
    let payload = data.get(HEADER..HEADER + n)?;
    (crc32c(payload) == crc).then_some((payload, HEADER + n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(i: u32) -> Forward {
        Forward {
            method: Method::Post,
            path: "/api/v1/write".into(),
            content_type: "application/x-protobuf".into(),
            content_encoding: "snappy".into(),
            body: vec![i as u8; 1000 + i as usize],
        }
    }

    #[test]
    fn delivers_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let q = HintQueue::open(dir.path(), 1 << 30).unwrap();
        assert!(q.is_empty());
        for i in 0..100 {
            q.push(&fwd(i)).unwrap();
        }
        for i in 0..40 {
            assert_eq!(q.peek().unwrap(), Some(fwd(i)));
            q.pop();
        }
        drop(q);
        // Reopened: what was delivered is not sent again; the rest follows in order.
        let q = HintQueue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(q.stats().pending, 60);
        for i in 40..100 {
            assert_eq!(q.peek().unwrap(), Some(fwd(i)));
            q.pop();
        }
        assert_eq!(q.peek().unwrap(), None);
        assert!(q.is_empty());
        q.push(&fwd(7)).unwrap();
        assert_eq!(q.peek().unwrap(), Some(fwd(7)));
    }

    #[test]
    fn bounded_by_dropping_the_oldest_segments() {
        let dir = tempfile::tempdir().unwrap();
        let q = HintQueue::open(dir.path(), 20 << 20).unwrap();
        let big = |i: u8| Forward { body: vec![i; 1 << 20], ..fwd(0) };
        for i in 0..60u8 {
            q.push(&big(i)).unwrap();
        }
        let st = q.stats();
        assert!(st.pending_bytes <= 20 << 20, "{st:?}");
        assert!(st.dropped > 0);
        assert_eq!(st.pending + st.dropped, 60);
        // What is left is the newest, in order.
        let first = q.peek().unwrap().unwrap().body[0];
        assert_eq!(u64::from(first), st.dropped);
    }

    #[test]
    fn a_damaged_record_ends_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = HintQueue::open(dir.path(), 1 << 30).unwrap();
            for i in 0..3 {
                q.push(&fwd(i)).unwrap();
            }
        }
        let seg = segment_path(dir.path(), 1);
        let mut data = std::fs::read(&seg).unwrap();
        let second = HEADER + 1 + 12 + "/api/v1/write".len() + "application/x-protobuf".len() + 6 + 1000 + 20;
        data[second] ^= 0xff;
        std::fs::write(&seg, &data).unwrap();
        let q = HintQueue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(q.peek().unwrap(), Some(fwd(0)));
        q.pop();
        assert_eq!(q.peek().unwrap(), None);
        assert!(q.stats().dropped >= 1);
    }
}
