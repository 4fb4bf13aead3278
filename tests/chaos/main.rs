//! Chaos scenarios: promtier clusters in a lab of network namespaces ([`netlab`]) where a test
//! cuts links, stops processes and heals them while it checks an invariant sample by sample.
//!
//! Not part of `cargo test --all-targets` (`test = false` in Cargo.toml): the scenarios need
//! root and take about a minute each. `scripts/chaos.sh` runs them one at a time
//! (`cargo test --test chaos -- --test-threads=1`). Without root or iproute2 every scenario
//! fails saying so.

#[path = "../common/mod.rs"]
mod common;
mod netlab;
mod shard_lab;

mod failover_partition;
mod lab_behaviour;
mod merge_staleness;
