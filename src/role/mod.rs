//! Roles: each wires the library's parts into one kind of process — `leaf` (scrape + store +
//! serve), `global` (pull every leaf replica + dedup + store + serve), `demo` (a synthetic
//! exporter), and `up` (a supervisor running a whole topology on one host). This is the only
//! layer besides `cli` that uses `anyhow`.

pub mod demo;
pub mod global;
pub mod leaf;
mod server;
pub mod shutdown;
pub mod storage;
mod telemetry;
pub mod up;

/// Command-line settings of a node that stores data and answers queries.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    pub storage: storage::StorageOptions,
    pub query: crate::promql::EngineOptions,
}
