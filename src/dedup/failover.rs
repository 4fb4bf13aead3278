//! Ingest-time failover: per replica set (a shard, or a stacked global), one replica is elected
//! and only its samples are stored (with the replica label removed). The election moves when the
//! elected replica has delivered nothing new for `failover_timeout`; it then goes to the first
//! healthy replica in letter order, so two globals that see the same sources decide alike.
//! A replica whose coverage (targets up, series) stays well below its best peer's for
//! `failover_timeout` loses the election too, so a half-broken leaf does not keep the set.
//! Operators can pin a replica. A switch records a watermark — how far the previous replica's
//! data is complete — from which the new replica's data is filled in, so there is no gap.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::model::{Coverage, now_ms};

/// What one pull of one replica found.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub ok: bool,
    /// The newest sample timestamp the replica holds (or sent), if known.
    pub max_time: Option<i64>,
    pub error: Option<String>,
    /// What the replica covers, if it said.
    pub coverage: Option<Coverage>,
}

/// What a replica's puller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Pull data and store it. `fill_from`: just elected, pull from there (the previous
    /// replica's watermark minus the fill margin, or how far the fill got), skipping what is
    /// stored and guarding counters.
    Elected { fill_from: Option<i64> },
    /// Only watch liveness; store nothing.
    Standby,
}

/// A change of election, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    pub shard: String,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinError {
    #[error("unknown replica set {0:?}")]
    UnknownShard(String),
    #[error("replica set {shard:?} has no replica {replica:?}")]
    UnknownReplica { shard: String, replica: String },
}

#[derive(Debug, Default, Clone)]
struct ReplicaState {
    last_ok: Option<Instant>,
    /// When its newest timestamp last moved forward.
    last_advance: Option<Instant>,
    max_time: Option<i64>,
    last_error: Option<String>,
    coverage: Option<Coverage>,
    /// Since when (instant, wall-clock ms) its coverage is below `min_coverage` of its best
    /// peer's, and why.
    short: Option<(Instant, i64, String)>,
}

/// A fill the elected replica still owes: from `resume` (or the margin before `watermark`) until
/// it has stored past `watermark`.
#[derive(Debug, Clone)]
struct PendingFill {
    replica: String,
    watermark: i64,
    resume: Option<i64>,
}

#[derive(Debug, Clone)]
struct ShardState {
    replicas: BTreeMap<String, ReplicaState>,
    elected: Option<String>,
    pinned: Option<String>,
    /// Preferred at the first election (the replica elected before a restart).
    preferred: Option<String>,
    /// How far the stored data of this set is complete (a source cursor, ms).
    watermark: Option<i64>,
    /// Set when a replica was just elected and has not yet filled past the watermark.
    pending_fill: Option<PendingFill>,
    failovers: u64,
    created: Instant,
}

/// The state of one replica set, for the API, `/metrics` and partial-response warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    pub shard: String,
    pub elected: Option<String>,
    pub pinned: Option<String>,
    pub replicas: Vec<ReplicaView>,
    pub failovers: u64,
    /// Whether any replica is healthy.
    pub healthy: bool,
}

/// One replica of a [`ShardView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub replica: String,
    pub healthy: bool,
    pub coverage: Option<Coverage>,
    /// Why its coverage counts as short, if it does.
    pub short: Option<String>,
    pub last_error: Option<String>,
}

/// The settings an election follows (`failover_timeout` and `min_coverage` change on a reload).
#[derive(Debug, Clone, Copy)]
struct Params {
    timeout: Duration,
    /// Coverage below this fraction of the best peer's is short (0: off).
    min_coverage: f64,
    /// How far before a watermark a fill starts (replicas scrape at other moments).
    fill_margin_ms: i64,
}

/// Every set's state with the settings it is judged by (one lock: an election never sees half of
/// a reload).
struct Inner {
    params: Params,
    shards: BTreeMap<String, ShardState>,
}

/// What [`Elector::reconfigure`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElectorChanges {
    /// Replica sets added, removed (gone from the view with their state).
    pub sets_added: Vec<String>,
    pub sets_removed: Vec<String>,
    /// `set/replica` of replicas added to (as standbys) or removed from a kept set.
    pub replicas_added: Vec<String>,
    pub replicas_removed: Vec<String>,
    /// Pins lifted because their replica is gone.
    pub unpinned: Vec<String>,
    /// Elections the change caused (an elected replica removed: its set elects another).
    pub elections: Vec<Election>,
}

/// Elections for every replica set one global pulls.
pub struct Elector {
    inner: Mutex<Inner>,
}

impl ShardState {
    fn new(replicas: &[String], now: Instant) -> ShardState {
        ShardState {
            replicas: replicas.iter().map(|r| (r.clone(), ReplicaState::default())).collect(),
            elected: None,
            pinned: None,
            preferred: None,
            watermark: None,
            pending_fill: None,
            failovers: 0,
            created: now,
        }
    }
}

impl Params {
    fn healthy(&self, r: &ReplicaState, now: Instant) -> bool {
        r.last_ok.is_some_and(|t| now.duration_since(t) < self.timeout)
            && r.last_advance.is_some_and(|t| now.duration_since(t) < self.timeout)
    }

    /// Updates which replicas' coverage is short of the best healthy peer's.
    fn update_coverage(&self, st: &mut ShardState, now: Instant) {
        let mut best = Coverage::default();
        for r in st.replicas.values().filter(|r| self.healthy(r, now)) {
            if let Some(c) = r.coverage {
                if c.targets_total > 0 {
                    best.targets_total = 1;
                    best.targets_up = best.targets_up.max(c.targets_up);
                }
                best.series = best.series.max(c.series);
            }
        }
        for r in st.replicas.values_mut() {
            let short = r.coverage.and_then(|c| c.shortfall(&best, self.min_coverage));
            r.short = match (short, r.short.take()) {
                (None, _) => None,
                (Some(why), Some((since, ms, _))) => Some((since, ms, why)),
                (Some(why), None) => Some((now, now_ms(), why)),
            };
        }
    }

    fn elect(&self, st: &mut ShardState, shard: &str, now: Instant) -> Option<Election> {
        self.update_coverage(st, now);
        let healthy: Vec<String> =
            st.replicas.iter().filter(|(_, r)| self.healthy(r, now)).map(|(k, _)| k.clone()).collect();
        // Candidates for a new election: healthy and not short of coverage for failover_timeout
        // (a replica whose scrape just failed once, a leaf still starting, is not held against
        // it: first elections stay deterministic across globals).
        let short_long = |r: &ReplicaState| {
            r.short.as_ref().is_some_and(|(since, _, _)| now.duration_since(*since) >= self.timeout)
        };
        let complete: Vec<String> =
            healthy.iter().filter(|k| st.replicas.get(*k).is_some_and(|r| !short_long(r))).cloned().collect();
        let best_new = || complete.first().or(healthy.first()).cloned();
        // The elected replica keeps the set while healthy, unless its coverage has been short for
        // failover_timeout and a complete replica exists.
        let short_too_long = st
            .elected
            .as_ref()
            .and_then(|e| st.replicas.get(e))
            .and_then(|r| r.short.as_ref())
            .filter(|(since, _, _)| now.duration_since(*since) >= self.timeout && !complete.is_empty())
            .map(|(_, ms, why)| (*ms, why.clone()));
        let target = if let Some(p) = &st.pinned {
            Some(p.clone())
        } else if st.elected.as_ref().is_some_and(|e| healthy.contains(e)) && short_too_long.is_none() {
            st.elected.clone()
        } else if let Some(p) = st.preferred.as_ref().filter(|p| st.elected.is_none() && complete.contains(p))
        {
            // First election after a restart: the replica elected before it, once it is healthy
            // and complete (no waiting for the others: it is the choice already made).
            Some(p.clone())
        } else if st.elected.is_none() {
            // First election: wait until every replica has reported once (or a timeout passed),
            // so that independent globals start from the same choice.
            let all_reported = st.replicas.values().all(|r| r.last_ok.is_some() || r.last_error.is_some());
            if all_reported || now.duration_since(st.created) >= self.timeout { best_new() } else { None }
        } else {
            // The elected replica is unhealthy or short: the first complete healthy one in letter
            // order, else the first healthy one, else stay.
            best_new().or_else(|| st.elected.clone())
        };
        if target == st.elected {
            return None;
        }
        let to = target?;
        let from = st.elected.replace(to.clone());
        let reason = match (&st.pinned, &from, &short_too_long) {
            (Some(_), _, _) => "pinned by an operator".to_string(),
            (None, None, _) => "first election".to_string(),
            (None, Some(f), Some((_, why))) => format!("replica {f} {why} for {:?}", self.timeout),
            (None, Some(f), None) => format!("replica {f} delivered nothing new for {:?}", self.timeout),
        };
        if from.is_some() {
            st.failovers += 1;
        }
        // A replica that was short lost data from where it became short: fill from there.
        let watermark = match (st.watermark, short_too_long) {
            (Some(w), Some((ms, _))) => Some(w.min(ms)),
            (w, _) => w,
        };
        st.pending_fill = watermark.map(|w| PendingFill { replica: to.clone(), watermark: w, resume: None });
        Some(Election { shard: shard.to_string(), from, to, reason })
    }
}

impl Elector {
    /// `sets`: each replica set with its replica letters.
    pub fn new(sets: &[(String, Vec<String>)], timeout: Duration, now: Instant) -> Elector {
        Elector::with_options(sets, timeout, 0.0, 0, now)
    }

    /// [`Elector::new`] with the coverage check (`min_coverage`, 0 = off) and the fill margin.
    pub fn with_options(
        sets: &[(String, Vec<String>)],
        timeout: Duration,
        min_coverage: f64,
        fill_margin_ms: i64,
        now: Instant,
    ) -> Elector {
        let shards =
            sets.iter().map(|(shard, replicas)| (shard.clone(), ShardState::new(replicas, now))).collect();
        let params = Params { timeout, min_coverage, fill_margin_ms };
        Elector { inner: Mutex::new(Inner { params, shards }) }
    }

    /// Applies a reloaded topology: `sets` are the replica sets and replicas from now on, judged
    /// with `timeout` and `min_coverage`. A new set starts as at a start (its first election
    /// waits for its replicas, or `timeout`); a new replica of a kept set joins it as a standby;
    /// a removed set disappears with its state; a removed replica that was elected hands its set
    /// to another (the first complete healthy one, filled from the set's watermark, as after a
    /// failover) — or, with none healthy, the set elects anew once one is; a pin on a removed
    /// replica is lifted. Kept sets and replicas keep their state and election.
    pub fn reconfigure(
        &self,
        sets: &[(String, Vec<String>)],
        timeout: Duration,
        min_coverage: f64,
        now: Instant,
    ) -> ElectorChanges {
        let mut inner = self.inner.lock();
        let Inner { params, shards } = &mut *inner;
        params.timeout = timeout;
        params.min_coverage = min_coverage;
        let mut out = ElectorChanges::default();
        let wanted: BTreeMap<&str, &[String]> =
            sets.iter().map(|(s, r)| (s.as_str(), r.as_slice())).collect();
        shards.retain(|name, _| {
            let keep = wanted.contains_key(name.as_str());
            if !keep {
                out.sets_removed.push(name.clone());
            }
            keep
        });
        for (name, replicas) in wanted {
            let Some(st) = shards.get_mut(name) else {
                shards.insert(name.to_string(), ShardState::new(replicas, now));
                out.sets_added.push(name.to_string());
                continue;
            };
            st.replicas.retain(|r, _| {
                let keep = replicas.contains(r);
                if !keep {
                    out.replicas_removed.push(format!("{name}/{r}"));
                }
                keep
            });
            for r in replicas {
                if !st.replicas.contains_key(r) {
                    st.replicas.insert(r.clone(), ReplicaState::default());
                    out.replicas_added.push(format!("{name}/{r}"));
                }
            }
            if st.pinned.as_ref().is_some_and(|p| !st.replicas.contains_key(p)) {
                st.pinned = None;
                out.unpinned.push(name.to_string());
            }
            if st.preferred.as_ref().is_some_and(|p| !st.replicas.contains_key(p)) {
                st.preferred = None;
            }
            let gone = st.elected.take_if(|e| !st.replicas.contains_key(e.as_str()));
            if gone.is_some() {
                st.pending_fill = None;
            }
            let elected = params.elect(st, name, now);
            match (gone, elected) {
                (Some(g), Some(mut el)) => {
                    // Elected as a first election would be, but it takes over from `g`: a failover.
                    st.failovers += 1;
                    el.reason = format!("replica {g} was removed from the topology");
                    el.from = Some(g);
                    out.elections.push(el);
                }
                (_, Some(el)) => out.elections.push(el),
                (_, None) => {}
            }
        }
        out
    }

    /// Records a pull of `replica` and re-runs the election of its set. Returns the election
    /// change it caused, if any.
    pub fn report(&self, shard: &str, replica: &str, report: &PullReport, now: Instant) -> Option<Election> {
        let mut inner = self.inner.lock();
        let Inner { params, shards } = &mut *inner;
        let st = shards.get_mut(shard)?;
        if let Some(r) = st.replicas.get_mut(replica) {
            if report.ok {
                r.last_ok = Some(now);
                r.last_error = None;
                if let Some(t) = report.max_time
                    && r.max_time.is_none_or(|m| t > m)
                {
                    r.max_time = Some(t);
                    r.last_advance = Some(now);
                }
                if report.coverage.is_some_and(|c| c.is_known()) {
                    r.coverage = report.coverage;
                }
            } else {
                r.last_error = report.error.clone();
            }
        }
        params.elect(st, shard, now)
    }

    /// Re-runs the election of every set (call periodically: a dead replica sends no reports).
    pub fn tick(&self, now: Instant) -> Vec<Election> {
        let mut inner = self.inner.lock();
        let Inner { params, shards } = &mut *inner;
        let mut out = Vec::new();
        for (name, st) in shards.iter_mut() {
            if let Some(e) = params.elect(st, name, now) {
                out.push(e);
            }
        }
        out
    }

    /// What `replica`'s puller should do now.
    pub fn role(&self, shard: &str, replica: &str) -> Role {
        let inner = self.inner.lock();
        match inner.shards.get(shard) {
            Some(st) if st.elected.as_deref() == Some(replica) => {
                let fill_from = st
                    .pending_fill
                    .as_ref()
                    .filter(|f| f.replica == replica)
                    .map(|f| f.resume.unwrap_or(f.watermark - inner.params.fill_margin_ms));
                Role::Elected { fill_from }
            }
            _ => Role::Standby,
        }
    }

    /// The elected `replica` stored everything up to `cursor`; a pending fill that got past its
    /// watermark is done (one that did not resumes from `cursor`).
    pub fn stored(&self, shard: &str, replica: &str, cursor: i64) {
        let mut inner = self.inner.lock();
        if let Some(st) = inner.shards.get_mut(shard)
            && st.elected.as_deref() == Some(replica)
        {
            st.watermark = Some(st.watermark.map_or(cursor, |w| w.max(cursor)));
            if let Some(f) = st.pending_fill.as_mut().filter(|f| f.replica == replica) {
                if cursor >= f.watermark {
                    st.pending_fill = None;
                } else {
                    f.resume = Some(f.resume.map_or(cursor, |r| r.max(cursor)));
                }
            }
        }
    }

    /// Each set's watermark (how far its stored data is complete), for keeping across restarts.
    pub fn watermarks(&self) -> Vec<(String, i64)> {
        self.inner.lock().shards.iter().filter_map(|(k, st)| st.watermark.map(|w| (k.clone(), w))).collect()
    }

    /// The lowest watermark of the sets that can still deliver: sets with a healthy replica, and
    /// sets still in their first `failover_timeout` (`fallback` for those with no watermark yet).
    /// Sets with no healthy replica do not hold it back: what they store when they return is
    /// logged as a rewind. `None` when no set counts.
    pub fn frontier(&self, now: Instant, fallback: i64) -> Option<i64> {
        let inner = self.inner.lock();
        let p = inner.params;
        inner
            .shards
            .values()
            .filter(|st| {
                now.duration_since(st.created) < p.timeout || st.replicas.values().any(|r| p.healthy(r, now))
            })
            .map(|st| st.watermark.unwrap_or(fallback))
            .min()
    }

    /// The coverage of the elected replica of each set (a global's own coverage is their sum).
    pub fn elected_coverage(&self) -> Vec<Option<Coverage>> {
        self.inner
            .lock()
            .shards
            .values()
            .map(|st| st.elected.as_ref().and_then(|e| st.replicas.get(e)).and_then(|r| r.coverage))
            .collect()
    }

    /// The replica each set has elected (for keeping across restarts).
    pub fn elections(&self) -> Vec<(String, String)> {
        self.inner
            .lock()
            .shards
            .iter()
            .filter_map(|(k, st)| st.elected.clone().map(|e| (k.clone(), e)))
            .collect()
    }

    /// Prefers `replica` at the first election of `shard` (it was elected before a restart).
    pub fn prefer(&self, shard: &str, replica: &str) {
        if let Some(st) = self.inner.lock().shards.get_mut(shard)
            && st.replicas.contains_key(replica)
        {
            st.preferred = Some(replica.to_string());
        }
    }

    /// Starts the watermark of a set (e.g. from what storage already holds after a restart).
    pub fn set_watermark(&self, shard: &str, cursor: i64) {
        if let Some(st) = self.inner.lock().shards.get_mut(shard) {
            st.watermark = Some(cursor);
        }
    }

    /// Pins `replica` (or unpins with `None`) for `shard`; the election follows at once.
    pub fn pin(
        &self,
        shard: &str,
        replica: Option<&str>,
        now: Instant,
    ) -> Result<Option<Election>, PinError> {
        let mut inner = self.inner.lock();
        let Inner { params, shards } = &mut *inner;
        let st = shards.get_mut(shard).ok_or_else(|| PinError::UnknownShard(shard.to_string()))?;
        if let Some(r) = replica
            && !st.replicas.contains_key(r)
        {
            return Err(PinError::UnknownReplica { shard: shard.to_string(), replica: r.to_string() });
        }
        st.pinned = replica.map(str::to_string);
        Ok(params.elect(st, shard, now))
    }

    pub fn view(&self, now: Instant) -> Vec<ShardView> {
        let inner = self.inner.lock();
        let p = inner.params;
        inner
            .shards
            .iter()
            .map(|(name, st)| {
                let replicas: Vec<ReplicaView> = st
                    .replicas
                    .iter()
                    .map(|(k, r)| ReplicaView {
                        replica: k.clone(),
                        healthy: p.healthy(r, now),
                        coverage: r.coverage,
                        short: r.short.as_ref().map(|(_, _, why)| why.clone()),
                        last_error: r.last_error.clone(),
                    })
                    .collect();
                ShardView {
                    shard: name.clone(),
                    elected: st.elected.clone(),
                    pinned: st.pinned.clone(),
                    healthy: replicas.iter().any(|r| r.healthy),
                    replicas,
                    failovers: st.failovers,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(t: i64) -> PullReport {
        PullReport { ok: true, max_time: Some(t), error: None, coverage: None }
    }

    fn covering(t: i64, up: u32, series: u64) -> PullReport {
        PullReport {
            ok: true,
            max_time: Some(t),
            error: None,
            coverage: Some(Coverage { targets_up: up, targets_total: 10, series }),
        }
    }

    fn down() -> PullReport {
        PullReport { ok: false, max_time: None, error: Some("connection refused".into()), coverage: None }
    }

    /// A 30 s failover elector over replicas a and b with the 0.8 coverage check.
    fn covering_elector(now: Instant, fill_margin_ms: i64) -> Elector {
        Elector::with_options(
            &[("s0".into(), vec!["a".into(), "b".into()])],
            Duration::from_secs(30),
            0.8,
            fill_margin_ms,
            now,
        )
    }

    fn elector(now: Instant) -> Elector {
        Elector::new(&[("s0".into(), vec!["a".into(), "b".into()])], Duration::from_secs(30), now)
    }

    #[test]
    fn elects_lowest_healthy_after_all_reported_and_fails_over_on_silence() {
        let t0 = Instant::now();
        let e = elector(t0);
        // Only b has reported: wait for a.
        assert_eq!(e.report("s0", "b", &ok(1000), t0), None);
        assert_eq!(e.role("s0", "b"), Role::Standby);
        let first = e.report("s0", "a", &ok(1000), t0).expect("first election");
        assert_eq!((first.from, first.to.as_str()), (None, "a"));
        assert_eq!(e.role("s0", "a"), Role::Elected { fill_from: None });
        e.stored("s0", "a", 5000);
        // a keeps delivering, b too: no change.
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(e.report("s0", "a", &ok(2000), t1), None);
        assert_eq!(e.report("s0", "b", &ok(2000), t1), None);
        // a dies: errors, then silence past the timeout while b advances.
        assert_eq!(e.report("s0", "a", &down(), t1 + Duration::from_secs(5)), None);
        let t2 = t1 + Duration::from_secs(31);
        assert_eq!(e.report("s0", "b", &ok(3000), t2).map(|x| x.to), Some("b".to_string()));
        // b must fill from the watermark a left.
        assert_eq!(e.role("s0", "b"), Role::Elected { fill_from: Some(5000) });
        // Part of the fill is stored: it resumes from there until it passes the watermark.
        e.stored("s0", "b", 4000);
        assert_eq!(e.role("s0", "b"), Role::Elected { fill_from: Some(4000) });
        e.stored("s0", "b", 9000);
        assert_eq!(e.role("s0", "b"), Role::Elected { fill_from: None });
        // a comes back: b stays elected (no flapping).
        let t3 = t2 + Duration::from_secs(5);
        assert_eq!(e.report("s0", "a", &ok(4000), t3), None);
        assert_eq!(e.view(t3)[0].failovers, 1);
    }

    #[test]
    fn after_a_restart_the_replica_elected_before_is_elected_again_without_waiting() {
        let t0 = Instant::now();
        let e = elector(t0);
        e.prefer("s0", "b");
        // b was elected before the restart: as soon as it is healthy it is elected again, without
        // waiting for a (which would win a first election in letter order).
        let first = e.report("s0", "b", &ok(1000), t0).expect("b elected again");
        assert_eq!((first.from, first.to.as_str()), (None, "b"));
        assert_eq!(e.report("s0", "a", &ok(1000), t0), None);
        // A preferred replica that is down does not hold the set: the others elect as usual.
        let e = elector(t0);
        e.prefer("s0", "b");
        assert_eq!(e.report("s0", "b", &down(), t0), None);
        assert_eq!(e.report("s0", "a", &ok(1000), t0).map(|x| x.to), Some("a".to_string()));
    }

    #[test]
    fn a_replica_that_answers_but_does_not_advance_is_unhealthy() {
        let t0 = Instant::now();
        let e = elector(t0);
        e.report("s0", "a", &ok(1000), t0);
        e.report("s0", "b", &ok(1000), t0);
        let t1 = t0 + Duration::from_secs(31);
        // a answers with the same max_time (its scrapes stopped); b advances.
        e.report("s0", "a", &ok(1000), t1);
        assert_eq!(e.report("s0", "b", &ok(2000), t1).map(|x| x.to), Some("b".to_string()));
    }

    #[test]
    fn a_replica_short_of_coverage_loses_after_the_timeout_and_fills_from_where_it_became_short() {
        let t0 = Instant::now();
        let e = covering_elector(t0, 1000);
        e.report("s0", "a", &covering(1000, 10, 1000), t0);
        e.report("s0", "b", &covering(1000, 10, 1000), t0);
        assert_eq!(e.role("s0", "a"), Role::Elected { fill_from: None });
        // A watermark far ahead of the clock, so the fill's start shows which bound won.
        let far = now_ms() + 3_600_000;
        e.stored("s0", "a", far);
        // a loses most of its targets but keeps answering and advancing.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(e.report("s0", "a", &covering(2000, 3, 300), t1), None);
        assert_eq!(e.report("s0", "b", &covering(2000, 10, 1000), t1), None);
        let view = e.view(t1);
        let a = view[0].replicas.iter().find(|r| r.replica == "a").expect("a");
        assert!(a.short.as_deref().is_some_and(|w| w.contains("3 of 10 targets")), "{a:?}");
        // Not yet for failover_timeout: a stays.
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(e.report("s0", "a", &covering(3000, 3, 300), t2), None);
        let t3 = t1 + Duration::from_secs(31);
        let el = e.report("s0", "b", &covering(4000, 10, 1000), t3).expect("a loses the election");
        assert_eq!(el.to, "b");
        assert!(el.reason.contains("below 80%"), "{}", el.reason);
        // The fill starts where a became short (wall clock then), not at a's newer watermark.
        match e.role("s0", "b") {
            Role::Elected { fill_from: Some(f) } => {
                let now = now_ms();
                assert!(f <= now - 1000 && f > now - 60_000, "fill from {f}, now {now}, watermark {far}");
            }
            other => panic!("{other:?}"),
        }
        // a recovers: b stays (no flapping back).
        let t4 = t3 + Duration::from_secs(5);
        assert_eq!(e.report("s0", "a", &covering(5000, 10, 1000), t4), None);
        assert_eq!(e.view(t4)[0].elected.as_deref(), Some("b"));
    }

    #[test]
    fn a_brief_shortfall_does_not_change_the_first_election() {
        let t0 = Instant::now();
        let e = covering_elector(t0, 0);
        // a's first scrape of one target failed: it reports 4 of 10 targets up.
        e.report("s0", "b", &covering(1000, 10, 1000), t0);
        e.report("s0", "a", &covering(1000, 4, 400), t0);
        assert_eq!(e.view(t0)[0].elected.as_deref(), Some("a"));
    }

    #[test]
    fn coverage_is_compared_only_between_healthy_replicas() {
        let t0 = Instant::now();
        let e = covering_elector(t0, 0);
        // b reported full coverage once, then died: a (with few targets) is still the best there is.
        e.report("s0", "b", &covering(1000, 10, 1000), t0);
        e.report("s0", "a", &covering(1000, 4, 400), t0);
        let t1 = t0 + Duration::from_secs(40);
        e.report("s0", "b", &down(), t1);
        e.report("s0", "a", &covering(2000, 4, 400), t1);
        let v = &e.view(t1)[0];
        assert_eq!(v.elected.as_deref(), Some("a"));
        assert!(v.replicas.iter().all(|r| r.short.is_none()), "{v:?}");
    }

    #[test]
    fn frontier_counts_sets_that_can_deliver() {
        let t0 = Instant::now();
        let e = Elector::new(
            &[("s0".into(), vec!["a".into()]), ("s1".into(), vec!["a".into()])],
            Duration::from_secs(30),
            t0,
        );
        // During the first timeout every set counts, at the fallback until it has a watermark.
        assert_eq!(e.frontier(t0, 100), Some(100));
        e.report("s0", "a", &ok(1), t0);
        e.report("s1", "a", &ok(1), t0);
        e.stored("s0", "a", 500);
        e.stored("s1", "a", 300);
        assert_eq!(e.frontier(t0, 100), Some(300));
        // s1 goes silent: after the timeout it no longer holds the frontier back.
        let t1 = t0 + Duration::from_secs(20);
        e.report("s0", "a", &ok(2), t1);
        e.stored("s0", "a", 900);
        let t2 = t0 + Duration::from_secs(45);
        e.report("s0", "a", &ok(3), t2);
        assert_eq!(e.frontier(t2, 100), Some(900));
        assert_eq!(e.watermarks(), vec![("s0".to_string(), 900), ("s1".to_string(), 300)]);
    }

    #[test]
    fn nothing_healthy_keeps_the_election_and_tick_notices_silence() {
        let t0 = Instant::now();
        let e = elector(t0);
        e.report("s0", "a", &ok(1), t0);
        e.report("s0", "b", &ok(1), t0);
        let t1 = t0 + Duration::from_secs(60);
        assert!(e.tick(t1).is_empty(), "no healthy replica: stay");
        let v = &e.view(t1)[0];
        assert!(!v.healthy);
        assert_eq!(v.elected.as_deref(), Some("a"));
    }

    #[test]
    fn pinning_overrides_and_unpinning_releases() -> Result<(), PinError> {
        let t0 = Instant::now();
        let e = elector(t0);
        e.report("s0", "a", &ok(1), t0);
        e.report("s0", "b", &ok(1), t0);
        assert_eq!(e.pin("s0", Some("b"), t0)?.map(|x| x.to), Some("b".to_string()));
        assert_eq!(
            e.pin("s0", Some("c"), t0),
            Err(PinError::UnknownReplica { shard: "s0".into(), replica: "c".into() })
        );
        assert_eq!(e.pin("s1", None, t0), Err(PinError::UnknownShard("s1".into())));
        // Unpinned: b is healthy, so it stays.
        assert_eq!(e.pin("s0", None, t0)?, None);
        Ok(())
    }
    fn sets(spec: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        spec.iter().map(|(s, r)| (s.to_string(), r.iter().map(|x| x.to_string()).collect())).collect()
    }

    #[test]
    fn reconfigure_adds_a_set_that_elects_and_a_replica_that_joins_as_standby() {
        let t0 = Instant::now();
        let e = elector(t0);
        e.report("s0", "a", &ok(1), t0);
        e.report("s0", "b", &ok(1), t0);
        e.stored("s0", "a", 500);
        let timeout = Duration::from_secs(30);
        let c = e.reconfigure(&sets(&[("s0", &["a", "b", "c"]), ("s1", &["a", "b"])]), timeout, 0.0, t0);
        assert_eq!(c.sets_added, ["s1"]);
        assert_eq!(c.replicas_added, ["s0/c"]);
        assert!(
            c.sets_removed.is_empty() && c.replicas_removed.is_empty() && c.elections.is_empty(),
            "{c:?}"
        );
        // s0 keeps its election and watermark; c is a standby.
        assert_eq!(e.role("s0", "a"), Role::Elected { fill_from: None });
        assert_eq!(e.role("s0", "c"), Role::Standby);
        assert_eq!(e.watermarks(), vec![("s0".to_string(), 500)]);
        // s1 elects as a new set does: once both replicas have reported.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(e.report("s1", "b", &ok(2), t1), None);
        let el = e.report("s1", "a", &ok(2), t1).expect("s1 elects");
        assert_eq!((el.from, el.to.as_str(), el.reason.as_str()), (None, "a", "first election"));
        assert_eq!(e.view(t1).iter().map(|v| v.shard.as_str()).collect::<Vec<_>>(), ["s0", "s1"]);
        // The same sets again: nothing changes.
        let again = e.reconfigure(&sets(&[("s0", &["a", "b", "c"]), ("s1", &["a", "b"])]), timeout, 0.0, t1);
        assert_eq!(again, ElectorChanges::default());
        assert_eq!(e.role("s1", "a"), Role::Elected { fill_from: None });
    }

    #[test]
    fn removing_the_elected_replica_fails_over_with_a_fill_and_removing_a_set_forgets_it() {
        let t0 = Instant::now();
        let e = Elector::new(&sets(&[("s0", &["a", "b"]), ("s1", &["a"])]), Duration::from_secs(30), t0);
        for (s, r) in [("s0", "a"), ("s0", "b"), ("s1", "a")] {
            e.report(s, r, &ok(1), t0);
        }
        e.stored("s0", "a", 5000);
        e.stored("s1", "a", 7000);
        e.pin("s0", Some("a"), t0).expect("pin");
        let t1 = t0 + Duration::from_secs(2);
        let c = e.reconfigure(&sets(&[("s0", &["b"])]), Duration::from_secs(30), 0.0, t1);
        assert_eq!(c.sets_removed, ["s1"]);
        assert_eq!(c.replicas_removed, ["s0/a"]);
        assert_eq!(c.unpinned, ["s0"]);
        assert_eq!(c.elections.len(), 1, "{c:?}");
        let el = &c.elections[0];
        assert_eq!((el.shard.as_str(), el.from.as_deref(), el.to.as_str()), ("s0", Some("a"), "b"));
        assert!(el.reason.contains("removed from the topology"), "{}", el.reason);
        // b fills from the set's watermark, as after a failover; s1 is gone everywhere.
        assert_eq!(e.role("s0", "b"), Role::Elected { fill_from: Some(5000) });
        let v = e.view(t1);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].pinned.clone(), v[0].failovers), (None, 1));
        assert_eq!(e.watermarks(), vec![("s0".to_string(), 5000)]);
        assert_eq!(e.elections(), vec![("s0".to_string(), "b".to_string())]);
        assert_eq!(e.role("s1", "a"), Role::Standby);
        assert_eq!(e.report("s1", "a", &ok(2), t1), None);
    }

    #[test]
    fn an_elected_replica_removed_with_no_healthy_peer_leaves_the_set_to_elect_anew() {
        let t0 = Instant::now();
        let e = elector(t0);
        e.report("s0", "a", &ok(1), t0);
        e.report("s0", "b", &down(), t0);
        assert_eq!(e.view(t0)[0].elected.as_deref(), Some("a"));
        let c = e.reconfigure(&sets(&[("s0", &["b"])]), Duration::from_secs(30), 0.0, t0);
        assert!(c.elections.is_empty(), "{c:?}");
        assert_eq!(e.view(t0)[0].elected, None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(e.report("s0", "b", &ok(2), t1).map(|x| x.to), Some("b".to_string()));
    }

    #[test]
    fn a_new_failover_timeout_and_min_coverage_apply_at_once() {
        let t0 = Instant::now();
        let e = elector(t0);
        e.report("s0", "a", &covering(1000, 10, 1000), t0);
        e.report("s0", "b", &covering(1000, 10, 1000), t0);
        // a goes silent for 10 s: healthy under 30 s, not under 5 s.
        let t1 = t0 + Duration::from_secs(10);
        e.report("s0", "b", &covering(2000, 10, 1000), t1);
        assert!(e.tick(t1).is_empty());
        // The new timeout judges at once: a is silent for longer, b takes over.
        let c = e.reconfigure(&sets(&[("s0", &["a", "b"])]), Duration::from_secs(5), 0.0, t1);
        assert_eq!(c.elections.len(), 1, "{c:?}");
        assert_eq!(
            (c.elections[0].to.as_str(), c.elections[0].reason.as_str()),
            ("b", "replica a delivered nothing new for 5s")
        );
        // The coverage check was off (0); at 0.8 a thin replica counts as short.
        e.report("s0", "a", &covering(3000, 2, 100), t1);
        assert!(e.view(t1)[0].replicas.iter().all(|r| r.short.is_none()));
        e.reconfigure(&sets(&[("s0", &["a", "b"])]), Duration::from_secs(5), 0.8, t1);
        e.report("s0", "a", &covering(4000, 2, 100), t1);
        let v = e.view(t1);
        assert!(v[0].replicas.iter().any(|r| r.replica == "a" && r.short.is_some()), "{v:?}");
    }
}
