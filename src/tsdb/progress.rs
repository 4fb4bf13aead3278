//! How far opening a database has got (loading blocks, replaying the WAL checkpoint, then its
//! segments), shared with whoever reports it — `/-/ready`'s answer and `/metrics` while a node
//! starts. Updated once per segment, so following it costs nothing measurable.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What opening the database is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenStage {
    /// Not started yet.
    Idle,
    LoadingBlocks,
    /// Replaying the newest WAL checkpoint.
    Checkpoint,
    /// Replaying the WAL segments after the checkpoint.
    Segments,
    /// The database is open.
    Done,
}

impl OpenStage {
    fn from_u8(v: u8) -> OpenStage {
        match v {
            1 => OpenStage::LoadingBlocks,
            2 => OpenStage::Checkpoint,
            3 => OpenStage::Segments,
            4 => OpenStage::Done,
            _ => OpenStage::Idle,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            OpenStage::Idle => 0,
            OpenStage::LoadingBlocks => 1,
            OpenStage::Checkpoint => 2,
            OpenStage::Segments => 3,
            OpenStage::Done => 4,
        }
    }
}

/// Progress of one [`Db::open`](super::Db::open). Cheap to read from any thread.
#[derive(Debug, Default)]
pub struct OpenProgress {
    stage: AtomicU8,
    /// WAL segments after the checkpoint, once listed.
    segments_total: AtomicU64,
    segments_done: AtomicU64,
    /// Bytes of WAL records replayed so far (checkpoint included).
    bytes_done: AtomicU64,
    /// When the WAL replay started, and how long it took once finished.
    replay: Mutex<(Option<Instant>, Option<Duration>)>,
}

impl OpenProgress {
    pub fn stage(&self) -> OpenStage {
        OpenStage::from_u8(self.stage.load(Ordering::Acquire))
    }

    pub(crate) fn set_stage(&self, s: OpenStage) {
        self.stage.store(s.as_u8(), Ordering::Release);
    }

    /// WAL segments to replay (after the checkpoint); 0 until they are listed.
    pub fn segments_total(&self) -> u64 {
        self.segments_total.load(Ordering::Relaxed)
    }

    /// WAL segments replayed so far.
    pub fn segments_done(&self) -> u64 {
        self.segments_done.load(Ordering::Relaxed)
    }

    /// Bytes of WAL records replayed so far.
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    /// How long the WAL replay has taken: so far while it runs, in all once it is over.
    pub fn replay_duration(&self) -> Duration {
        match *self.replay.lock() {
            (_, Some(d)) => d,
            (Some(start), None) => start.elapsed(),
            (None, None) => Duration::ZERO,
        }
    }

    /// Whether the WAL is being replayed.
    pub fn replaying(&self) -> bool {
        matches!(self.stage(), OpenStage::Checkpoint | OpenStage::Segments)
    }

    pub(crate) fn replay_started(&self) {
        *self.replay.lock() = (Some(Instant::now()), None);
        self.segments_total.store(0, Ordering::Relaxed);
        self.segments_done.store(0, Ordering::Relaxed);
        self.bytes_done.store(0, Ordering::Relaxed);
    }

    pub(crate) fn replay_finished(&self) {
        let mut r = self.replay.lock();
        r.1 = Some(r.0.map_or(Duration::ZERO, |s| s.elapsed()));
    }

    pub(crate) fn set_segments_total(&self, n: u64) {
        self.segments_total.store(n, Ordering::Relaxed);
    }

    pub(crate) fn segment_done(&self, bytes_so_far: u64) {
        self.segments_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.store(bytes_so_far, Ordering::Relaxed);
    }

    pub(crate) fn set_bytes_done(&self, bytes: u64) {
        self.bytes_done.store(bytes, Ordering::Relaxed);
    }

    /// What opening is doing, for a person: "replaying the WAL: segment 12 of 40".
    pub fn describe(&self) -> String {
        match self.stage() {
            OpenStage::Idle => "about to open the TSDB".into(),
            OpenStage::LoadingBlocks => "loading the TSDB's blocks".into(),
            OpenStage::Checkpoint => "replaying the WAL checkpoint".into(),
            OpenStage::Segments => {
                let total = self.segments_total();
                let current = (self.segments_done() + 1).min(total);
                format!("replaying the WAL: segment {current} of {total}")
            }
            OpenStage::Done => "the TSDB is open; starting the rest of the node".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_each_stage() {
        let p = OpenProgress::default();
        assert_eq!(p.describe(), "about to open the TSDB");
        p.set_stage(OpenStage::LoadingBlocks);
        assert_eq!(p.describe(), "loading the TSDB's blocks");
        p.replay_started();
        p.set_stage(OpenStage::Checkpoint);
        assert!(p.replaying());
        assert_eq!(p.describe(), "replaying the WAL checkpoint");
        p.set_segments_total(40);
        p.set_stage(OpenStage::Segments);
        for _ in 0..11 {
            p.segment_done(100);
        }
        assert_eq!(p.describe(), "replaying the WAL: segment 12 of 40");
        assert_eq!((p.segments_done(), p.segments_total(), p.bytes_done()), (11, 40, 100));
        p.replay_finished();
        let d = p.replay_duration();
        assert_eq!(p.replay_duration(), d, "frozen once finished");
        p.set_stage(OpenStage::Done);
        assert!(!p.replaying());
    }
}
