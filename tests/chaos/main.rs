//! Chaos scenarios for the global tier: real promtier processes — on 127.0.0.1, or in a lab of
//! network namespaces ([`netlab`]) where a test cuts links — faults injected while data flows
//! (kills, hangs, partitions, restarts), and each scenario's invariant, named in its doc comment,
//! checked sample by sample.
//!
//! Not part of `cargo test --all-targets` (`test = false` in Cargo.toml): the scenarios take about
//! a minute each and the namespace lab needs root, so `scripts/chaos.sh` runs them one at a time
//! (`cargo test --release --test chaos -- --test-threads=1`). Without root or iproute2 the
//! namespace scenarios fail saying so. `PROMTIER_CHAOS_SOAK=1` makes the outages long (minutes).

#[path = "../common/mod.rs"]
mod common;

mod lab;
mod netlab;
mod proxy;
mod shard_lab;

mod catchup;
mod coverage_election;
mod failover_partition;
mod hang;
mod hierarchy;
mod lab_behaviour;
mod merge_staleness;
mod random_kills;
mod shard_restart;
