//! promtier: a Prometheus-compatible, federation-based hierarchical sharding system.
//!
//! Layout (each module depends only on modules above it in this list):
//! - [`model`]: labels, samples, staleness, matchers, the series-selector syntax.
//! - [`storage`]: the `Appender` / `Querier` interfaces between producers, storage and readers.
//! - [`shard`]: which shard scrapes a target: Prometheus-compatible `hashmod` and the `ring`.
//! - [`relabel`]: Prometheus relabelling rules, their validation and the rule engine.
//! - [`exposition`]: the Prometheus text format: zero-copy scrape parser and byte-exact writer.
//! - [`tsdb`]: our own time-series database: XOR chunks and the in-memory head (WAL, blocks next).

pub mod exposition;
pub mod model;
pub mod relabel;
pub mod shard;
pub mod storage;
pub mod tsdb;
