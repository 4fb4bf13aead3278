//! Target sharding: which shard of a leaf group scrapes a target. Owns the Prometheus-compatible
//! `hashmod` function (also used by the relabel `hashmod` action), the consistent `ring`
//! assignment (rendezvous hashing), and [`Sharder`], which applies either to a target's labels.
//! It leaves the topology (how many shards, which labels) to the topology loader and the scrape
//! loop to `scrape`.
//!
//! # Contract
//! A leaf decides whether it owns a target *after* the job's own `relabel_configs` have run, on
//! the resulting labels (missing labels count as `""`). For [`ShardStrategy::HashMod`] this is
//! exactly what a Prometheus server computes when the pair of rules printed by
//! [`Sharder::equivalent_prometheus_rules`] is appended at the end of the job's
//! `relabel_configs`, so promtier leaves and plain Prometheus servers can share one fleet.
//! [`ShardStrategy::Ring`] has no Prometheus equivalent; it trades that for moving only about
//! `1/(N+1)` of the targets when a group grows from `N` to `N+1` shards.

mod hashmod;
mod rendezvous;
mod sharder;

pub use hashmod::hashmod;
pub use rendezvous::{rendezvous, rendezvous_top};
pub use sharder::{DEFAULT_SHARD_BY, SHARD_SEPARATOR, ShardError, ShardStrategy, Sharder};
