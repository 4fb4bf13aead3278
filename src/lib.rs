//! promtier: a Prometheus-compatible, federation-based hierarchical sharding system.
//!
//! Layout (each module depends only on modules above it in this list):
//! - [`model`]: labels, samples, staleness, matchers, the series-selector syntax.
//! - [`storage`]: the `Appender` / `Querier` interfaces between producers, storage and readers.
//! - [`tsdb`]: our own time-series database: XOR chunks and the in-memory head (WAL, blocks next).

pub mod model;
pub mod storage;
pub mod tsdb;
