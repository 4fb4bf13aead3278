//! What a node's fast-link cursor may promise. A client's cursor means "I have every sample at or
//! before this time", so a node must never hand out a cursor past a time at which it may still
//! store a sample. The frontier is the role's own bound (a leaf: its scrapes in flight; a global:
//! what its replica sets have committed), lowered by every commit in flight.
//!
//! Some commits store samples behind a cursor already handed out all the same — a global filling
//! the window after a failover, catching up a replica set that was away, text samples that arrive
//! late, a target's explicit timestamps. Each such commit is logged as a *rewind* before it becomes
//! visible: clients pass back the log position they last saw (`epoch`, `seq`), and a response starts
//! at the earliest rewind they have not seen. So a client at any depth receives every sample the
//! node stores, late or not, and the client skips what it already holds.
//!
//! The epoch (the node's identity), the log and a ceiling over every cursor handed out are kept in
//! a small file in the data directory, written before a late commit becomes visible, so a restart
//! forgets no rewind.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::stream::Position;
use crate::metrics::{MetricsWriter, Registry};
use crate::model::{Labels, MetricType, now_ms};
use crate::storage::{
    AppendError, Appendable, Appender, CommitStats, Querier, Queryable, SeriesRef, Storage, StorageError,
};

/// Rewinds kept; older ones are folded into one floor.
const MAX_REWINDS: usize = 4096;
/// How far past the highest cursor handed out the persisted ceiling is set, so the file is
/// written about once per this interval rather than once per request.
const CEILING_STEP_MS: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrontierError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a fast-link state file: {source}")]
    Parse { path: String, source: serde_json::Error },
}

/// The role's own bound at a given time (ms → ms).
pub type FrontierFn = Box<dyn Fn(i64) -> i64 + Send + Sync>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Persisted {
    epoch: u64,
    seq: u64,
    /// No cursor handed out so far exceeds this.
    ceiling: i64,
    /// The earliest `to` of the rewinds dropped from the log (a client that missed them starts
    /// there).
    floor: Option<i64>,
    /// (seq, to): samples newer than `to` were stored after a cursor past them was handed out.
    rewinds: Vec<(u64, i64)>,
}

struct State {
    p: Persisted,
    /// The highest cursor handed out (or, after a restart, the persisted ceiling).
    advertised: i64,
    /// Commits in flight: (ticket, lower bound of what they store).
    in_flight: Vec<(u64, i64)>,
    next_ticket: u64,
    /// Whether a client may have seen the current `seq`; if not, a new late commit widens the
    /// newest rewind instead of adding one.
    seq_seen: bool,
}

/// A node's cursor bookkeeping (see the module doc).
pub struct Frontier {
    base: OnceLock<FrontierFn>,
    state: Mutex<State>,
    path: Option<PathBuf>,
    late_commits: AtomicU64,
    persist_failures: AtomicU64,
}

impl Frontier {
    /// Loads the state kept at `path` (or starts a new epoch); `None` keeps nothing on disk.
    pub fn open(path: Option<PathBuf>) -> Result<Frontier, FrontierError> {
        let loaded = match &path {
            Some(p) => match std::fs::read(p) {
                Ok(bytes) => Some(
                    serde_json::from_slice::<Persisted>(&bytes)
                        .map_err(|source| FrontierError::Parse { path: p.display().to_string(), source })?,
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(FrontierError::Io { path: p.display().to_string(), source }),
            },
            None => None,
        };
        let p = loaded.unwrap_or_else(|| Persisted {
            epoch: new_epoch(&path),
            seq: 0,
            ceiling: i64::MIN,
            floor: None,
            rewinds: Vec::new(),
        });
        let f = Frontier {
            base: OnceLock::new(),
            state: Mutex::new(State {
                advertised: p.ceiling,
                p,
                in_flight: Vec::new(),
                next_ticket: 0,
                seq_seen: true,
            }),
            path,
            late_commits: AtomicU64::new(0),
            persist_failures: AtomicU64::new(0),
        };
        Ok(f)
    }

    /// Sets the role's own bound (once; later calls are ignored). Until then the bound is the
    /// clock.
    pub fn set_base(&self, base: FrontierFn) {
        let _ = self.base.set(base);
    }

    /// The node's epoch.
    pub fn epoch(&self) -> u64 {
        self.state.lock().p.epoch
    }

    /// Where the cursor stands at `now` for a client that last saw `seen` (epoch, seq). Records
    /// the frontier as handed out.
    pub fn position(&self, now: i64, seen: Option<(u64, u64)>) -> Position {
        let base = self.base.get().map_or(now - 1, |f| f(now));
        let mut st = self.state.lock();
        let mut frontier = base.min(now - 1);
        for (_, lb) in &st.in_flight {
            frontier = frontier.min(*lb);
        }
        if frontier > st.advertised {
            st.advertised = frontier;
            if frontier > st.p.ceiling {
                st.p.ceiling = frontier.saturating_add(CEILING_STEP_MS);
                self.persist(&st.p);
            }
        }
        st.seq_seen = true;
        let rewind_to = match seen {
            Some((epoch, seq)) if epoch == st.p.epoch && seq < st.p.seq => {
                let first_kept = st.p.rewinds.first().map_or(st.p.seq + 1, |(s, _)| *s);
                let mut to = if seq + 1 < first_kept { st.p.floor } else { None };
                for (s, t) in &st.p.rewinds {
                    if *s > seq {
                        to = Some(to.map_or(*t, |x: i64| x.min(*t)));
                    }
                }
                to
            }
            _ => None,
        };
        Position { frontier, epoch: st.p.epoch, seq: st.p.seq, rewind_to }
    }

    /// Registers a commit storing samples at or after `min_t`; logs a rewind when a cursor at or
    /// past `min_t` may have been handed out. The commit must happen while the ticket lives.
    fn begin_commit(&self, min_t: i64) -> Ticket<'_> {
        let mut st = self.state.lock();
        let id = st.next_ticket;
        st.next_ticket += 1;
        let lb = min_t.saturating_sub(1);
        st.in_flight.push((id, lb));
        if min_t <= st.advertised {
            self.late_commits.fetch_add(1, Ordering::Relaxed);
            let merged = !st.seq_seen
                && match st.p.rewinds.last_mut() {
                    Some(last) => {
                        last.1 = last.1.min(lb);
                        true
                    }
                    None => false,
                };
            if !merged {
                st.p.seq += 1;
                let seq = st.p.seq;
                st.p.rewinds.push((seq, lb));
                if st.p.rewinds.len() > MAX_REWINDS {
                    let (_, to) = st.p.rewinds.remove(0);
                    st.p.floor = Some(st.p.floor.map_or(to, |f| f.min(to)));
                }
                st.seq_seen = false;
            }
            self.persist(&st.p);
        }
        Ticket { frontier: self, id }
    }

    fn persist(&self, p: &Persisted) {
        let Some(path) = &self.path else { return };
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(p)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            // The log still works in memory; only a crash before the next successful write could
            // lose a rewind.
            if self.persist_failures.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::error!(path = %path.display(), error = %e, "cannot write the fast-link state file");
            }
        }
    }

    /// `/metrics`: late commits and the frontier's age.
    pub fn register_metrics(self: &Arc<Self>, registry: &Registry) {
        let f = self.clone();
        registry.register(Arc::new(move |w: &mut MetricsWriter| {
            w.family(
                "promtier_fast_link_late_commits_total",
                "Commits that stored samples behind a cursor already handed out (logged as rewinds).",
                MetricType::Counter,
            );
            w.sample(
                "promtier_fast_link_late_commits_total",
                &[],
                f.late_commits.load(Ordering::Relaxed) as f64,
            );
            let now = now_ms();
            let base = f.base.get().map_or(now, |b| b(now));
            w.family(
                "promtier_fast_link_frontier_lag_seconds",
                "How far the fast link's frontier (nothing older can still be stored) is behind the clock.",
                MetricType::Gauge,
            );
            w.sample("promtier_fast_link_frontier_lag_seconds", &[], ((now - base).max(0)) as f64 / 1000.0);
            w.family(
                "promtier_fast_link_state_write_failures_total",
                "Failed writes of the fast-link state file.",
                MetricType::Counter,
            );
            w.sample(
                "promtier_fast_link_state_write_failures_total",
                &[],
                f.persist_failures.load(Ordering::Relaxed) as f64,
            );
        }));
    }
}

/// A commit in flight (see [`Frontier::begin_commit`]).
struct Ticket<'a> {
    frontier: &'a Frontier,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.frontier.state.lock().in_flight.retain(|(id, _)| *id != self.id);
    }
}

fn new_epoch(path: &Option<PathBuf>) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{nanos}/{}/{path:?}", std::process::id());
    // Never 0: that is what version-1 streams report.
    xxhash_rust::xxh3::xxh3_64(seed.as_bytes()).max(1)
}

/// A storage whose commits go through a [`Frontier`]: every writer of a node that serves the
/// fast link (scrapes, federation ingest) uses it.
pub struct TrackedStorage {
    inner: Arc<dyn Storage>,
    frontier: Arc<Frontier>,
}

impl TrackedStorage {
    pub fn new(inner: Arc<dyn Storage>, frontier: Arc<Frontier>) -> TrackedStorage {
        TrackedStorage { inner, frontier }
    }
}

struct TrackedAppender<'a> {
    inner: Box<dyn Appender + 'a>,
    frontier: &'a Frontier,
    /// The oldest timestamp staged.
    min_t: i64,
}

impl Appender for TrackedAppender<'_> {
    fn append(
        &mut self,
        cached: Option<SeriesRef>,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        let r = self.inner.append(cached, labels, t, v)?;
        self.min_t = self.min_t.min(t);
        Ok(r)
    }

    fn append_ref(&mut self, series: SeriesRef, t: i64, v: f64) -> Result<(), AppendError> {
        self.inner.append_ref(series, t, v)?;
        self.min_t = self.min_t.min(t);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<CommitStats, StorageError> {
        let me = *self;
        if me.min_t == i64::MAX {
            return me.inner.commit();
        }
        let _ticket = me.frontier.begin_commit(me.min_t);
        me.inner.commit()
    }

    fn rollback(self: Box<Self>) {
        self.inner.rollback();
    }
}

impl Appendable for TrackedStorage {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(TrackedAppender { inner: self.inner.appender(), frontier: &self.frontier, min_t: i64::MAX })
    }
}

impl Queryable for TrackedStorage {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>, StorageError> {
        self.inner.querier(mint, maxt)
    }

    fn max_time(&self) -> Option<i64> {
        self.inner.max_time()
    }

    fn min_time(&self) -> Option<i64> {
        self.inner.min_time()
    }

    fn coverage(&self) -> Vec<crate::storage::rollup::Coverage> {
        self.inner.coverage()
    }

    fn rollup_querier(
        &self,
        resolution: i64,
        mint: i64,
        maxt: i64,
    ) -> Result<Option<Box<dyn crate::storage::rollup::RollupQuerier>>, StorageError> {
        self.inner.rollup_querier(resolution, mint, maxt)
    }
}

impl Storage for TrackedStorage {
    fn ready(&self) -> Result<(), StorageError> {
        self.inner.ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::{Head, HeadOptions};

    fn storage(f: &Arc<Frontier>) -> Result<TrackedStorage, Box<dyn std::error::Error>> {
        Ok(TrackedStorage::new(Arc::new(Head::new(HeadOptions::default())?), f.clone()))
    }

    fn commit(s: &TrackedStorage, t: i64) -> Result<(), Box<dyn std::error::Error>> {
        let mut app = s.appender();
        app.append(None, &Labels::from_pairs(&[("__name__", "m"), ("t", &t.to_string())]), t, 1.0)?;
        app.commit()?;
        Ok(())
    }

    #[test]
    fn late_commits_are_rewinds_for_clients_that_have_not_seen_them() -> Result<(), Box<dyn std::error::Error>>
    {
        let f = Arc::new(Frontier::open(None)?);
        f.set_base(Box::new(|now| now - 10));
        let s = storage(&f)?;
        let p0 = f.position(1000, None);
        assert_eq!((p0.frontier, p0.rewind_to), (990, None));
        // Newer than anything handed out: not late.
        commit(&s, 995)?;
        assert_eq!(f.position(1000, Some((p0.epoch, p0.seq))).rewind_to, None);
        // Behind the cursor handed out: a rewind, announced once per client position.
        commit(&s, 500)?;
        let p1 = f.position(1000, Some((p0.epoch, p0.seq)));
        assert_eq!(p1.rewind_to, Some(499));
        assert_eq!(p1.seq, p0.seq + 1);
        assert_eq!(f.position(1000, Some((p1.epoch, p1.seq))).rewind_to, None);
        // Two late commits before anyone looked: one rewind to the earlier.
        commit(&s, 700)?;
        commit(&s, 600)?;
        let p2 = f.position(1000, Some((p1.epoch, p1.seq)));
        assert_eq!((p2.rewind_to, p2.seq), (Some(599), p1.seq + 1));
        // A client of an older position gets the earliest.
        assert_eq!(f.position(1000, Some((p0.epoch, p0.seq))).rewind_to, Some(499));
        // Another epoch: nothing to rewind to.
        assert_eq!(f.position(1000, Some((p0.epoch ^ 1, 0))).rewind_to, None);
        Ok(())
    }

    #[test]
    fn commits_in_flight_hold_the_frontier() -> Result<(), Box<dyn std::error::Error>> {
        let f = Arc::new(Frontier::open(None)?);
        f.set_base(Box::new(|now| now - 1));
        let ticket = f.begin_commit(400);
        assert_eq!(f.position(1000, None).frontier, 399);
        drop(ticket);
        assert_eq!(f.position(1000, None).frontier, 999);
        Ok(())
    }

    #[test]
    fn the_log_and_ceiling_survive_a_restart() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("fast-link.json");
        let (epoch, seq) = {
            let f = Arc::new(Frontier::open(Some(path.clone()))?);
            let s = storage(&f)?;
            let p = f.position(100_000, None);
            commit(&s, 50_000)?;
            (p.epoch, p.seq)
        };
        let f = Arc::new(Frontier::open(Some(path))?);
        assert_eq!(f.epoch(), epoch);
        let p = f.position(100_000, Some((epoch, seq)));
        assert_eq!(p.rewind_to, Some(49_999));
        // Anything up to the persisted ceiling may have been handed out: a commit there is late.
        let s = storage(&f)?;
        commit(&s, 100_001)?;
        assert_eq!(f.position(100_000, Some((p.epoch, p.seq))).rewind_to, Some(100_000));
        Ok(())
    }
}
