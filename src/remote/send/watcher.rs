//! Tails the node's WAL for one remote-write queue, as Prometheus's WAL watcher does: series
//! records map refs to labels (kept, transformed once per series), sample records are handed
//! out in log order from a position — a segment number and a byte offset of the next unread
//! record — that the queue persists once what was before it is acknowledged.
//!
//! Contracts: the writer appends whole records with one `write(2)` and never appends to a
//! segment once a newer one exists, so a record cut short at the end of the newest segment is
//! one still being written (read again later), and one in an older segment is a damaged tail
//! (skipped, as replay does). All file I/O here is blocking: callers run it off the runtime.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::Labels;
use crate::remote::proto;
use crate::storage::SeriesRef;
use crate::tsdb::wal::{self, Frame, Record, RefSample};

/// Where the next unread record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Bytes read from a segment at a time (more when one record is larger).
const READ_CHUNK: usize = 8 << 20;

/// The labels a series is sent with, or `None` when write relabeling drops it.
pub(super) type SendLabels = Option<Arc<[proto::Label]>>;

/// What a series' stored labels become on the wire (external labels, write relabeling).
pub(super) type Transform = Box<dyn Fn(&Labels) -> SendLabels + Send + Sync>;

/// What one read gave.
#[derive(Debug, Default)]
pub(super) struct ReadStats {
    /// Samples of series dropped by relabeling or never seen in a series record.
    pub(super) dropped_series: u64,
    /// Nothing more to read right now.
    pub(super) caught_up: bool,
}

pub(super) struct Watcher {
    dir: PathBuf,
    pos: Position,
    series: HashMap<SeriesRef, SendLabels>,
    transform: Transform,
    /// Bytes read ahead from the segment being read: a round uses far less than a read brings,
    /// and reading the same bytes again for every round was most of the sender's copying.
    ahead: ReadAhead,
}

/// WAL bytes already read: `data` holds the segment's bytes from `offset`.
#[derive(Default)]
struct ReadAhead {
    segment: u64,
    offset: u64,
    data: Vec<u8>,
}

/// Read ahead is used while at least this much of it is left from the position; less, and the
/// file is read again from there (which also sees what was appended since).
const AHEAD_MIN: u64 = 256 << 10;

impl Watcher {
    /// Starts at `pos`, or (a new queue) at the start of the newest segment. Learns every series
    /// logged before the position (newest checkpoint, then the segments up to it). A position
    /// whose segment is gone (deleted while nothing held it) moves to the oldest segment left,
    /// with a warning: that data cannot be sent any more.
    pub(super) fn open(dir: &Path, pos: Option<Position>, transform: Transform) -> std::io::Result<Watcher> {
        std::fs::create_dir_all(dir)?;
        let segments = wal::list_segments(dir)?;
        let mut pos = pos.unwrap_or(Position { segment: segments.last().copied().unwrap_or(0), offset: 0 });
        if let Some(&first) = segments.first()
            && pos.segment < first
        {
            tracing::warn!(
                wanted = pos.segment,
                oldest = first,
                "remote write: WAL segments this queue needed are gone; resuming at the oldest one left"
            );
            pos = Position { segment: first, offset: 0 };
        }
        let mut w = Watcher {
            dir: dir.to_path_buf(),
            pos,
            series: HashMap::new(),
            transform,
            ahead: ReadAhead::default(),
        };
        if let Some((_, cdir)) = wal::last_checkpoint(dir)? {
            for s in wal::list_segments(&cdir)? {
                let data = std::fs::read(cdir.join(wal::segment_name(s)))?;
                w.learn_series(&data);
            }
        }
        for s in segments.into_iter().filter(|&s| s <= pos.segment) {
            let mut data = std::fs::read(dir.join(wal::segment_name(s)))?;
            if s == pos.segment {
                data.truncate(pos.offset as usize);
            }
            w.learn_series(&data);
        }
        Ok(w)
    }

    pub(super) fn position(&self) -> Position {
        self.pos
    }

    /// Applies the series records of whole records in `data`.
    fn learn_series(&mut self, data: &[u8]) {
        let mut at = 0;
        while let Frame::Ok { payload, len } = wal::read_frame(&data[at..]) {
            at += len;
            if payload.first() == Some(&wal::TYPE_SERIES) {
                self.apply(payload, &mut Vec::new(), &mut 0);
            }
        }
    }

    /// Applies one record: series are learnt, samples of sendable series appended to `out`.
    fn apply(&mut self, payload: &[u8], out: &mut Vec<RefSample>, dropped: &mut u64) {
        match wal::decode(payload) {
            Ok(Record::Series(series)) => {
                for (r, labels) in series {
                    let l = (self.transform)(&labels);
                    self.series.insert(r, l);
                }
            }
            Ok(Record::Samples(samples)) => {
                for s in samples {
                    match self.series.get(&s.r) {
                        Some(Some(_)) => out.push(s),
                        _ => *dropped += 1,
                    }
                }
            }
            Ok(Record::Chunk { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "remote write: skipping an undecodable WAL record"),
        }
    }

    /// The labels to send series `r` with.
    pub(super) fn labels(&self, r: SeriesRef) -> Option<&Arc<[proto::Label]>> {
        self.series.get(&r).and_then(Option::as_ref)
    }

    /// Reads records from the position on, appending samples to `out` until it holds at least
    /// `max` or nothing more is there now.
    pub(super) fn read(&mut self, max: usize, out: &mut Vec<RefSample>) -> std::io::Result<ReadStats> {
        let mut stats = ReadStats::default();
        while out.len() < max {
            let segments = wal::list_segments(&self.dir)?;
            let newer = segments.iter().copied().find(|&s| s > self.pos.segment);
            if !segments.contains(&self.pos.segment) {
                match newer {
                    Some(n) => {
                        tracing::warn!(
                            wanted = self.pos.segment,
                            next = n,
                            "remote write: WAL segment gone; skipping to the next"
                        );
                        self.pos = Position { segment: n, offset: 0 };
                        continue;
                    }
                    None => {
                        stats.caught_up = true;
                        return Ok(stats);
                    }
                }
            }
            let (from, to, eof) = self.fill_ahead()?;
            // Taken out while records are applied (which needs `self`), put back below.
            let ahead = std::mem::take(&mut self.ahead.data);
            let data = &ahead[from..to];
            let mut at = 0;
            let mut progressed = false;
            while out.len() < max {
                match wal::read_frame(&data[at..]) {
                    Frame::Ok { payload, len } => {
                        self.apply(payload, out, &mut stats.dropped_series);
                        at += len;
                        progressed = true;
                    }
                    Frame::Bad(_) if at == 0 && !eof && data.len() >= wal::FRAME_HEADER => {
                        // One record larger than a chunk: read it whole.
                        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
                        let (big, _) = self.read_chunk(len + wal::FRAME_HEADER)?;
                        match wal::read_frame(&big) {
                            Frame::Ok { payload, len } => {
                                self.apply(payload, out, &mut stats.dropped_series);
                                self.pos.offset += len as u64;
                                progressed = true;
                            }
                            Frame::Bad(_) => {}
                        }
                        break;
                    }
                    Frame::Bad(_) => break,
                }
            }
            let data_len = data.len();
            self.ahead.data = ahead;
            self.pos.offset += at as u64;
            if out.len() >= max {
                break;
            }
            if progressed && !eof {
                continue;
            }
            // At the end of what is there: move on if the segment is closed, else wait.
            match newer {
                Some(n) if eof || !progressed => {
                    let left = data_len - at;
                    if left > 0 {
                        tracing::warn!(
                            segment = self.pos.segment,
                            bytes = left,
                            "remote write: skipping a damaged WAL segment tail"
                        );
                    }
                    self.pos = Position { segment: n, offset: 0 };
                }
                _ => {
                    stats.caught_up = true;
                    break;
                }
            }
        }
        Ok(stats)
    }

    /// Makes the read ahead cover the position (reading [`READ_CHUNK`] bytes when it does not);
    /// the range of `ahead.data` from the position, and whether it ends at the file's end.
    fn fill_ahead(&mut self) -> std::io::Result<(usize, usize, bool)> {
        let a = &self.ahead;
        let end = a.offset + a.data.len() as u64;
        if a.segment == self.pos.segment && a.offset <= self.pos.offset && self.pos.offset + AHEAD_MIN <= end
        {
            // Never "at the end" from here: the file may have grown since, so its end is read
            // from the file once the read ahead is used up.
            return Ok(((self.pos.offset - a.offset) as usize, a.data.len(), false));
        }
        let path = self.dir.join(wal::segment_name(self.pos.segment));
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(self.pos.offset))?;
        let want = READ_CHUNK.min(len.saturating_sub(self.pos.offset) as usize + 1);
        let mut data = std::mem::take(&mut self.ahead.data);
        data.clear();
        data.reserve(want);
        (&mut f).take(want as u64).read_to_end(&mut data)?;
        let eof = data.len() < want;
        let n = data.len();
        self.ahead = ReadAhead { segment: self.pos.segment, offset: self.pos.offset, data };
        Ok((0, n, eof))
    }

    /// Up to `n` bytes of the segment from the position, read from the file (the rare paths:
    /// a record larger than a chunk, a whole segment given up).
    fn read_chunk(&self, n: usize) -> std::io::Result<(Vec<u8>, bool)> {
        let path = self.dir.join(wal::segment_name(self.pos.segment));
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(self.pos.offset))?;
        let mut data = Vec::new();
        f.take(n as u64).read_to_end(&mut data)?;
        let eof = data.len() < n;
        Ok((data, eof))
    }

    /// WAL bytes from the position to the end of the log.
    pub(super) fn backlog_bytes(&self) -> std::io::Result<u64> {
        backlog_from(&self.dir, self.pos)
    }

    /// When the backlog is over `trigger` bytes, gives up the oldest closed segments until it is
    /// at most `target` (or only the segment being written is left); returns the samples given
    /// up (their series are still learnt).
    pub(super) fn enforce_bound(&mut self, trigger: u64, target: u64) -> std::io::Result<u64> {
        let mut dropped = 0u64;
        if self.backlog_bytes()? <= trigger {
            return Ok(0);
        }
        while self.backlog_bytes()? > target {
            let segments = wal::list_segments(&self.dir)?;
            let Some(next) = segments.iter().copied().find(|&s| s > self.pos.segment) else { break };
            let mut sink = Vec::new();
            let mut unknown = 0;
            let (data, _) = self.read_chunk(usize::MAX >> 1)?;
            let mut at = 0;
            while let Frame::Ok { payload, len } = wal::read_frame(&data[at..]) {
                self.apply(payload, &mut sink, &mut unknown);
                at += len;
            }
            dropped += (sink.len() as u64) + unknown;
            tracing::warn!(
                segment = self.pos.segment,
                samples = sink.len(),
                max_bytes = target,
                "remote write: backlog over its bound; dropping the oldest WAL segment for this queue"
            );
            self.pos = Position { segment: next, offset: 0 };
        }
        Ok(dropped)
    }
}

/// WAL bytes in `dir` from `pos` to the end of the log.
pub(super) fn backlog_from(dir: &Path, pos: Position) -> std::io::Result<u64> {
    let mut total = 0u64;
    for s in wal::list_segments(dir)? {
        if s >= pos.segment {
            let len = std::fs::metadata(dir.join(wal::segment_name(s))).map_or(0, |m| m.len());
            total += if s == pos.segment { len.saturating_sub(pos.offset) } else { len };
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::fs::RealFs;
    use crate::tsdb::wal::{Wal, WalSync};

    fn plain() -> Transform {
        Box::new(|l: &Labels| {
            Some(l.iter().map(|l| proto::Label { name: l.name.into(), value: l.value.into() }).collect())
        })
    }

    #[test]
    fn tails_segments_and_resumes_from_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), Arc::new(RealFs), 0, 1 << 16, WalSync::Commit).unwrap();
        let a = Labels::from_pairs(&[("__name__", "a")]);
        let mut b = Vec::new();
        wal::encode_series(&mut b, [(1, &a)]);
        wal.log(&b).unwrap();
        let log = |t: i64| {
            let mut b = Vec::new();
            wal::encode_samples(&mut b, [RefSample { r: 1, t, v: t as f64 }]);
            wal.log(&b).unwrap();
        };
        for t in 0..10_000 {
            log(t);
        }
        assert!(wal::list_segments(dir.path()).unwrap().len() > 1, "several segments");
        let mut w = Watcher::open(dir.path(), Some(Position { segment: 0, offset: 0 }), plain()).unwrap();
        let mut out = Vec::new();
        let st = w.read(1000, &mut out).unwrap();
        assert!(out.len() >= 1000 && !st.caught_up);
        let pos = w.position();
        let n = out.len();
        // A new watcher from that position learns the series and reads the rest.
        let mut w2 = Watcher::open(dir.path(), Some(pos), plain()).unwrap();
        let mut rest = Vec::new();
        assert!(w2.read(usize::MAX, &mut rest).unwrap().caught_up);
        assert_eq!(n + rest.len(), 10_000);
        assert_eq!(rest[0].t, n as i64);
        assert!(w2.labels(1).is_some());
        log(10_000);
        let mut more = Vec::new();
        w2.read(usize::MAX, &mut more).unwrap();
        assert_eq!(more.iter().map(|s| s.t).collect::<Vec<_>>(), vec![10_000]);
        // Not over the trigger: nothing is given up, whatever the target.
        let backlog = w.backlog_bytes().unwrap();
        assert_eq!(w.enforce_bound(backlog, 1).unwrap(), 0);
        assert_eq!(w.backlog_bytes().unwrap(), backlog);
        // Over a tiny bound, all closed segments are given up.
        let dropped = w.enforce_bound(1, 1).unwrap();
        assert!(dropped > 0);
        assert_eq!(w.position().segment, *wal::list_segments(dir.path()).unwrap().last().unwrap());
    }

    #[test]
    fn small_reads_of_a_growing_segment_see_every_sample_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        // One segment far larger than the read-ahead threshold, written while it is read.
        let wal = Wal::create(dir.path(), Arc::new(RealFs), 0, 64 << 20, WalSync::Commit).unwrap();
        let a = Labels::from_pairs(&[("__name__", "a")]);
        let mut b = Vec::new();
        wal::encode_series(&mut b, [(1, &a)]);
        wal.log(&b).unwrap();
        let mut t = 0i64;
        // Records of 10 samples (a scrape's worth, small enough to read a few at a time).
        let mut log_n = |n: i64| {
            for _ in 0..n / 10 {
                let mut b = Vec::new();
                wal::encode_samples(&mut b, (t..t + 10).map(|t| RefSample { r: 1, t, v: t as f64 }));
                wal.log(&b).unwrap();
                t += 10;
            }
        };
        log_n(50_000);
        let mut w = Watcher::open(dir.path(), Some(Position { segment: 0, offset: 0 }), plain()).unwrap();
        let mut got = Vec::new();
        for round in 0..2_000 {
            let mut out = Vec::new();
            w.read(37, &mut out).unwrap();
            got.extend(out.iter().map(|s| s.t));
            if round % 10 == 0 {
                log_n(300); // appended between reads, some while read ahead is held
            }
        }
        let mut rest = Vec::new();
        assert!(w.read(usize::MAX, &mut rest).unwrap().caught_up);
        got.extend(rest.iter().map(|s| s.t));
        assert_eq!(got.len(), 50_000 + 200 * 300);
        assert!(got.iter().enumerate().all(|(i, t)| *t == i as i64), "every sample once, in order");
    }
}
