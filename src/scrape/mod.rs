//! Scraping: discovering targets, deciding which this node owns, and one loop per target that
//! fetches the text format, appends samples through the storage `Appender`, writes the report
//! series (`up`, `scrape_duration_seconds`, …) and staleness markers as Prometheus does.

mod client;
mod discovery;
mod ingest;
mod manager;
mod metrics;
mod refused;
mod scrape_loop;
mod series_cache;
pub(crate) mod target;

pub use client::{ScrapeClient, ScrapeHttpError};
pub use discovery::{DiscoveryError, JobDiscovery, read_file};
pub(crate) use ingest::sample_labels;
pub use ingest::{IngestError, IngestState, IngestStats, MetricMetadata, SampleContext};
pub use manager::{ActiveTarget, ScrapeManager, TargetsSnapshot};
pub use refused::Refused;
pub use scrape_loop::TIMESTAMP_TOLERANCE_MS;
pub use scrape_loop::{Health, TargetMetadata, TargetStatus};
pub use target::{
    DropReason, DroppedTarget, KeepAll, Target, TargetFilter, build_targets, finish_target, relabel_target,
};
