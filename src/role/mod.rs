//! Roles: each wires the library's parts into one kind of process — `leaf` (scrape + store +
//! serve), `global` (pull every leaf replica + dedup + store + serve), `demo` (a synthetic
//! exporter), `push` (a node of the push tier's ring), and `up` (a supervisor running a whole topology on one host). This is the only
//! layer besides `cli` that uses `anyhow`.

pub mod demo;
pub mod global;
pub mod leaf;
pub mod push;
pub mod reload;
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
    /// The concurrent-query limit.
    pub queries: crate::api::QueryLimits,
    /// Bounds on one remote-write request to this node.
    pub remote_write: crate::remote::WriteLimits,
}

/// The fast link's cursor state of `node` (leaf or global), kept in its data directory.
pub(crate) fn open_frontier(
    node: &crate::topology::Node,
) -> anyhow::Result<crate::federate::frontier::Frontier> {
    use anyhow::Context;
    crate::federate::frontier::Frontier::open(Some(node.data_dir.join("fast-link.json")))
        .context("fast-link state")
}

/// The fast-link page bounds a node serves (`defaults.fast_link`).
pub fn page_limits(c: &crate::topology::FastLinkConfig) -> crate::federate::stream::PageLimits {
    crate::federate::stream::PageLimits { max_samples: c.max_page_samples, max_bytes: c.max_page_bytes }
}

/// The remote-storage endpoints of a node (`/api/v1/write` into `storage` and `metadata`,
/// `/api/v1/read` from `view`) merged into `app`, and the API's body limit on every other route (413 beyond; the
/// remote-storage endpoints read theirs with their own limits).
pub(crate) fn with_remote_routes(
    app: axum::Router,
    storage: std::sync::Arc<dyn crate::storage::Storage>,
    view: std::sync::Arc<dyn crate::storage::Queryable>,
    node: &crate::topology::Node,
    metadata: std::sync::Arc<crate::remote::ReceivedMetadata>,
    write_limits: crate::remote::WriteLimits,
    registry: &crate::metrics::Registry,
) -> axum::Router {
    let remote = crate::remote::router(
        crate::remote::RemoteState {
            storage,
            queryable: view,
            external_labels: node.external_labels.clone(),
            write_limits,
            read_limits: crate::remote::ReadLimits::default(),
            clock: std::sync::Arc::new(crate::model::now_ms),
            metadata,
        },
        registry,
    );
    app.merge(remote).layer(axum::extract::DefaultBodyLimit::max(crate::api::MAX_REQUEST_BODY))
}
