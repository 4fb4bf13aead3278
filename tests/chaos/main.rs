//! Chaos scenarios for the global tier: real promtier processes on 127.0.0.1 (and, for network
//! partitions, in network namespaces the scenario creates), faults injected while data flows, and
//! each scenario's invariant — named in its doc comment — checked sample by sample.
//!
//! Not part of `cargo test --all-targets`: the scenarios take minutes and are timing-heavy, so
//! `scripts/chaos.sh` runs them one at a time (`cargo test --release --test chaos -- --test-threads=1`).
//! `PROMTIER_CHAOS_SOAK=1` makes the outages long (minutes instead of tens of seconds).

#[path = "../common/mod.rs"]
mod common;

mod lab;
mod proxy;

mod catchup;
mod hang;
mod hierarchy;
mod random_kills;
mod shard_restart;
