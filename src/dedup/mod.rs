//! Replica deduplication. `failover` elects one replica per replica set at ingest time (no
//! external store: each global decides from what it sees); `merge` presents one series per
//! replica set at query time, preferring the replica without gaps, counter-aware for rate-like
//! functions. Both work on label sets whose replica label names the copy.

mod failover;
mod merge;

pub use failover::{Election, Elector, ElectorChanges, PinError, PullReport, ReplicaView, Role, ShardView};
pub use merge::{Horizon, MergeQueryable, merge_streams};
