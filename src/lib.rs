//! promtier: a Prometheus-compatible, federation-based hierarchical sharding system.
//!
//! Layout (each module depends only on modules above it in this list):
//! - [`model`]: labels, samples, staleness, matchers, the series-selector syntax.
//! - [`storage`]: the `Appender` / `Querier` interfaces between producers, storage and readers.

pub mod model;
pub mod storage;
