//! Rebuilding the head from the WAL: the reading thread decodes records and creates series in log
//! order; worker threads apply the samples, each owning the series whose ref falls to it, so a
//! series' samples stay in log order while different series are applied in parallel.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use rustc_hash::FxHashMap;

use super::DbError;
use crate::tsdb::Head;
use crate::tsdb::chunkenc::ChunkIter;
use crate::tsdb::head::MemSeries;
use crate::tsdb::progress::OpenProgress;
use crate::tsdb::wal::{self, Record, RefSample};

/// Most worker threads, whatever the machine.
const MAX_WORKERS: usize = 4;
/// Batches queued per worker before the reader waits.
const QUEUE: usize = 32;

/// What a worker is sent, in log order.
enum Work {
    /// Series it owns, created by the reader.
    Series(Vec<(u64, Arc<MemSeries>)>),
    Samples(Vec<RefSample>),
    Chunk {
        r: u64,
        encoding: u8,
        bytes: Box<[u8]>,
    },
}

/// What a worker did.
#[derive(Default)]
struct Applied {
    applied: u64,
    skipped: u64,
    /// Samples for refs no series record named.
    unknown: u64,
}

/// Replays the WAL in `wal_dir` into `head`.
pub(super) fn replay_into(
    head: &Head,
    wal_dir: &Path,
    progress: &OpenProgress,
) -> Result<wal::ReplayStats, DbError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_WORKERS);
    let (stats, done) = std::thread::scope(|scope| {
        let mut senders: Vec<SyncSender<Work>> = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = sync_channel(QUEUE);
            senders.push(tx);
            handles.push(scope.spawn(move || apply_worker(head, rx)));
        }
        let owner = |r: u64| (r % workers as u64) as usize;
        let mut unknown_chunks = 0u64;
        let send = |k: usize, w: Work| {
            // A worker only hangs up by panicking; its join reports that.
            let _ = senders[k].send(w);
        };
        let stats = wal::replay(wal_dir, progress, |rec| match rec {
            Record::Series(list) => {
                let mut parts: Vec<Vec<(u64, Arc<MemSeries>)>> = (0..workers).map(|_| Vec::new()).collect();
                for (r, labels) in list {
                    parts[owner(r)].push((r, head.replay_series(r, &labels)));
                }
                for (k, p) in parts.into_iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                    send(k, Work::Series(p));
                }
            }
            Record::Samples(samples) => {
                if workers == 1 {
                    send(0, Work::Samples(samples));
                    return;
                }
                let mut parts: Vec<Vec<RefSample>> =
                    (0..workers).map(|_| Vec::with_capacity(samples.len() / workers + 1)).collect();
                for s in samples {
                    parts[owner(s.r)].push(s);
                }
                for (k, p) in parts.into_iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                    send(k, Work::Samples(p));
                }
            }
            Record::Chunk { r, encoding, bytes } => {
                if ChunkIter::new(encoding, &bytes[..]).is_none() {
                    unknown_chunks += 1;
                    return;
                }
                send(owner(r), Work::Chunk { r, encoding, bytes });
            }
        });
        drop(senders);
        let mut done = Applied { unknown: unknown_chunks, ..Applied::default() };
        for h in handles {
            match h.join() {
                Ok(a) => {
                    done.applied += a.applied;
                    done.skipped += a.skipped;
                    done.unknown += a.unknown;
                }
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        (stats, done)
    });
    let stats = stats?;
    if done.unknown > 0 {
        tracing::warn!(samples = done.unknown, "WAL samples for series without a series record were dropped");
    }
    tracing::info!(
        applied = done.applied,
        skipped = done.skipped,
        workers,
        "WAL samples replayed (skipped: already in blocks or duplicates)"
    );
    Ok(stats)
}

/// Applies one worker's share; refs are small integers, so a multiplicative hash serves.
fn apply_worker(head: &Head, rx: Receiver<Work>) -> Applied {
    let mut refs: FxHashMap<u64, Arc<MemSeries>> = FxHashMap::default();
    let mut out = Applied::default();
    for w in rx {
        match w {
            Work::Series(list) => refs.extend(list),
            Work::Samples(samples) => {
                let before = samples.len() as u64;
                let found: Vec<(&MemSeries, i64, f64)> =
                    samples.iter().filter_map(|s| refs.get(&s.r).map(|m| (&**m, s.t, s.v))).collect();
                out.unknown += before - found.len() as u64;
                let (a, s) = head.replay_samples(found);
                out.applied += a;
                out.skipped += s;
            }
            Work::Chunk { r, encoding, bytes } => {
                match (refs.get(&r), ChunkIter::new(encoding, &bytes[..])) {
                    (Some(m), Some(it)) => {
                        let (a, s) = head.replay_samples(it.map(|x| (&**m, x.t, x.v)));
                        out.applied += a;
                        out.skipped += s;
                    }
                    _ => out.unknown += 1,
                }
            }
        }
    }
    out
}
