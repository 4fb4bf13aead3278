//! Ingest-time failover: per replica set (a shard, or a stacked global), one replica is elected
//! and only its samples are stored (with the replica label removed). The election moves when the
//! elected replica has delivered nothing new for `failover_timeout`; it then goes to the first
//! healthy replica in letter order, so two globals that see the same sources decide alike.
//! Operators can pin a replica. A switch records a watermark — how far the previous replica's
//! data is complete — from which the new replica's data is filled in, so there is no gap.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What one pull of one replica found.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub ok: bool,
    /// The newest sample timestamp the replica holds (or sent), if known.
    pub max_time: Option<i64>,
    pub error: Option<String>,
}

/// What a replica's puller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Pull data and store it. `fill_from`: the watermark to pull from (just elected).
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
}

#[derive(Debug, Clone)]
struct ShardState {
    replicas: BTreeMap<String, ReplicaState>,
    elected: Option<String>,
    pinned: Option<String>,
    /// How far the stored data of this set is complete (a source cursor, ms).
    watermark: Option<i64>,
    /// Set when a replica was just elected and has not yet filled from the watermark.
    pending_fill: Option<(String, i64)>,
    failovers: u64,
    created: Instant,
}

/// The state of one replica set, for the API, `/metrics` and partial-response warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    pub shard: String,
    pub elected: Option<String>,
    pub pinned: Option<String>,
    /// Replica letter → healthy.
    pub replicas: Vec<(String, bool)>,
    pub failovers: u64,
    /// Whether any replica is healthy.
    pub healthy: bool,
}

/// Elections for every replica set one global pulls.
pub struct Elector {
    timeout: Duration,
    shards: Mutex<BTreeMap<String, ShardState>>,
}

impl Elector {
    /// `sets`: each replica set with its replica letters.
    pub fn new(sets: &[(String, Vec<String>)], timeout: Duration, now: Instant) -> Elector {
        let shards = sets
            .iter()
            .map(|(shard, replicas)| {
                let st = ShardState {
                    replicas: replicas.iter().map(|r| (r.clone(), ReplicaState::default())).collect(),
                    elected: None,
                    pinned: None,
                    watermark: None,
                    pending_fill: None,
                    failovers: 0,
                    created: now,
                };
                (shard.clone(), st)
            })
            .collect();
        Elector { timeout, shards: Mutex::new(shards) }
    }

    fn healthy(&self, r: &ReplicaState, now: Instant) -> bool {
        r.last_ok.is_some_and(|t| now.duration_since(t) < self.timeout)
            && r.last_advance.is_some_and(|t| now.duration_since(t) < self.timeout)
    }

    /// Records a pull of `replica` and re-runs the election of its set. Returns the election
    /// change it caused, if any.
    pub fn report(&self, shard: &str, replica: &str, report: &PullReport, now: Instant) -> Option<Election> {
        let mut shards = self.shards.lock();
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
            } else {
                r.last_error = report.error.clone();
            }
        }
        self.elect(st, shard, now)
    }

    /// Re-runs the election of every set (call periodically: a dead replica sends no reports).
    pub fn tick(&self, now: Instant) -> Vec<Election> {
        let mut shards = self.shards.lock();
        let mut out = Vec::new();
        for (name, st) in shards.iter_mut() {
            if let Some(e) = self.elect(st, name, now) {
                out.push(e);
            }
        }
        out
    }

    fn elect(&self, st: &mut ShardState, shard: &str, now: Instant) -> Option<Election> {
        let healthy: Vec<String> =
            st.replicas.iter().filter(|(_, r)| self.healthy(r, now)).map(|(k, _)| k.clone()).collect();
        let target = if let Some(p) = &st.pinned {
            Some(p.clone())
        } else if st.elected.as_ref().is_some_and(|e| healthy.contains(e)) {
            st.elected.clone()
        } else if st.elected.is_none() {
            // First election: wait until every replica has reported once (or a timeout passed),
            // so that independent globals start from the same choice.
            let all_reported = st.replicas.values().all(|r| r.last_ok.is_some() || r.last_error.is_some());
            if all_reported || now.duration_since(st.created) >= self.timeout {
                healthy.first().cloned()
            } else {
                None
            }
        } else {
            // The elected replica is unhealthy: first healthy one in letter order, else stay.
            healthy.first().cloned().or_else(|| st.elected.clone())
        };
        if target == st.elected {
            return None;
        }
        let to = target?;
        let from = st.elected.replace(to.clone());
        let reason = match (&st.pinned, &from) {
            (Some(_), _) => "pinned by an operator".to_string(),
            (None, None) => "first election".to_string(),
            (None, Some(f)) => format!("replica {f} delivered nothing new for {:?}", self.timeout),
        };
        if from.is_some() {
            st.failovers += 1;
        }
        st.pending_fill = st.watermark.map(|w| (to.clone(), w));
        Some(Election { shard: shard.to_string(), from, to, reason })
    }

    /// What `replica`'s puller should do now.
    pub fn role(&self, shard: &str, replica: &str) -> Role {
        let shards = self.shards.lock();
        match shards.get(shard) {
            Some(st) if st.elected.as_deref() == Some(replica) => {
                let fill_from = st.pending_fill.as_ref().filter(|(r, _)| r == replica).map(|(_, w)| *w);
                Role::Elected { fill_from }
            }
            _ => Role::Standby,
        }
    }

    /// The elected `replica` stored everything up to `cursor`; a pending fill is done.
    pub fn stored(&self, shard: &str, replica: &str, cursor: i64) {
        let mut shards = self.shards.lock();
        if let Some(st) = shards.get_mut(shard)
            && st.elected.as_deref() == Some(replica)
        {
            st.watermark = Some(st.watermark.map_or(cursor, |w| w.max(cursor)));
            if st.pending_fill.as_ref().is_some_and(|(r, _)| r == replica) {
                st.pending_fill = None;
            }
        }
    }

    /// Starts the watermark of a set (e.g. from what storage already holds after a restart).
    pub fn set_watermark(&self, shard: &str, cursor: i64) {
        if let Some(st) = self.shards.lock().get_mut(shard) {
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
        let mut shards = self.shards.lock();
        let st = shards.get_mut(shard).ok_or_else(|| PinError::UnknownShard(shard.to_string()))?;
        if let Some(r) = replica
            && !st.replicas.contains_key(r)
        {
            return Err(PinError::UnknownReplica { shard: shard.to_string(), replica: r.to_string() });
        }
        st.pinned = replica.map(str::to_string);
        Ok(self.elect(st, shard, now))
    }

    pub fn view(&self, now: Instant) -> Vec<ShardView> {
        self.shards
            .lock()
            .iter()
            .map(|(name, st)| {
                let replicas: Vec<(String, bool)> =
                    st.replicas.iter().map(|(k, r)| (k.clone(), self.healthy(r, now))).collect();
                ShardView {
                    shard: name.clone(),
                    elected: st.elected.clone(),
                    pinned: st.pinned.clone(),
                    healthy: replicas.iter().any(|(_, h)| *h),
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
        PullReport { ok: true, max_time: Some(t), error: None }
    }

    fn down() -> PullReport {
        PullReport { ok: false, max_time: None, error: Some("connection refused".into()) }
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
        e.stored("s0", "b", 9000);
        assert_eq!(e.role("s0", "b"), Role::Elected { fill_from: None });
        // a comes back: b stays elected (no flapping).
        let t3 = t2 + Duration::from_secs(5);
        assert_eq!(e.report("s0", "a", &ok(4000), t3), None);
        assert_eq!(e.view(t3)[0].failovers, 1);
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
}
