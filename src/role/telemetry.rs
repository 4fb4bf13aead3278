//! `/metrics` collectors for the components a role wires together (storage statistics).

use std::sync::Arc;

use crate::metrics::{MetricsWriter, Registry};
use crate::model::MetricType;
use crate::tsdb::Head;

/// Exposes the head's statistics as `promtier_tsdb_head_*` metrics.
pub(crate) fn register_head_metrics(registry: &Registry, head: Arc<Head>) {
    registry.register(Arc::new(move |w: &mut MetricsWriter| {
        let s = head.stats();
        let g = MetricType::Gauge;
        let c = MetricType::Counter;
        w.single("promtier_tsdb_head_series", "Series held in the head.", g, s.series as f64);
        w.single("promtier_tsdb_head_chunks", "Chunks held in the head.", g, s.chunks as f64);
        w.single("promtier_tsdb_head_chunk_bytes", "Encoded bytes in head chunks.", g, s.chunk_bytes as f64);
        w.single(
            "promtier_tsdb_head_label_bytes",
            "Bytes of label sets in the head.",
            g,
            s.label_bytes as f64,
        );
        w.single(
            "promtier_tsdb_head_series_created_total",
            "Series created in the head.",
            c,
            s.series_created as f64,
        );
        w.single(
            "promtier_tsdb_head_series_removed_total",
            "Series removed from the head by retention.",
            c,
            s.series_removed as f64,
        );
        w.single(
            "promtier_tsdb_head_samples_appended_total",
            "Samples appended to the head.",
            c,
            s.samples_appended as f64,
        );
        w.single(
            "promtier_tsdb_out_of_order_samples_total",
            "Samples rejected as out of order.",
            c,
            s.out_of_order as f64,
        );
        w.single(
            "promtier_tsdb_duplicate_samples_total",
            "Samples rejected for a duplicate timestamp with another value.",
            c,
            s.duplicates as f64,
        );
        w.single(
            "promtier_tsdb_out_of_bounds_samples_total",
            "Samples rejected as older than retention.",
            c,
            s.out_of_bounds as f64,
        );
    }));
}
