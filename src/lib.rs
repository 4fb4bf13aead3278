//! promtier: a Prometheus-compatible, federation-based hierarchical sharding system.
//!
//! Layout (each module depends only on modules above it in this list):
//! - [`model`]: labels, samples, staleness, metric metadata, matchers, the series-selector
//!   syntax, durations.
//! - [`storage`]: the `Appender` / `Querier` interfaces between producers, storage and readers.
//! - [`exposition`]: the Prometheus text format — our zero-copy parser and the writer.
//! - [`relabel`]: relabelling with Prometheus semantics.
//! - [`shard`]: `hashmod` (Prometheus-compatible) and consistent-hash target sharding.
//! - [`tsdb`]: promtier's own time-series database (head, write-ahead log, blocks, compaction).
//! - [`promql`]: PromQL parsing (promql-parser) and our evaluation engine over the `Querier`.
//! - [`metrics`]: the node's own `/metrics` registry.
//! - [`topology`]: the topology file — raw YAML, validation, typed configuration, node naming.
//! - [`http`]: serving (TLS, timeouts, basic auth with access levels, CORS) and clients built
//!   from one client config (credentials, TLS, client certificates).
//! - [`scrape`]: discovery, target ownership, scrape loops, staleness.
//! - [`federate`]: `/federate` with Prometheus's semantics.
//! - [`remote`]: Prometheus remote storage — the remote-write receiver (samples, metadata), the
//!   remote-read server, and the WAL-fed remote-write sender (Remote-Write 1.0 and 2.0).
//! - [`push`]: the push tier — the ring that owns each pushed series, forwarding to owners with a
//!   write quorum, durable hints for owners that are down, the Pushgateway-compatible group store
//!   (grouping keys, replace/merge semantics, consistency checks, snapshots, persistence).
//! - [`api`]: Prometheus HTTP API endpoints, health, readiness, the topology as a node sees it,
//!   the web console (`assets/console/`) and a plain status page.
//! - [`promqltest`]: the PromQL test-script language (load/clear/eval), for conformance runs.
//! - [`plan`]: which node scrapes which target, and what a resize would move.
//! - [`role`]: processes — leaf, demo exporter, and `up` (a whole topology on one host).
//! - [`cli`]: the command line.
//!
//! `fuzzing` (hidden) holds the checks the fuzz targets in `fuzz/` run; it is no API.

pub mod api;
pub mod cli;
pub mod dedup;
pub mod exposition;
pub mod federate;
#[doc(hidden)]
pub mod fuzzing;
pub mod global;
pub mod http;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod promql;
pub mod promqltest;
pub mod push;
pub mod relabel;
pub mod remote;
pub mod role;
pub mod scrape;
pub mod shard;
pub mod storage;
pub mod topology;
pub mod tsdb;
