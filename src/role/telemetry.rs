//! `/metrics` collectors for the components a role wires together (storage statistics: head,
//! WAL, blocks, compaction, retention; and the WAL replay's progress, shown while the node
//! starts and after).

use std::sync::Arc;

use crate::metrics::{MetricsWriter, Registry};
use crate::model::MetricType;
use crate::tsdb::{Db, HeadStats, OpenProgress};

/// Exposes the database's statistics: `promtier_tsdb_head_*`, `promtier_tsdb_wal_*`,
/// `promtier_tsdb_blocks_*`, compaction and retention counters.
pub(crate) fn register_db_metrics(registry: &Registry, db: Db) {
    registry.register(Arc::new(move |w: &mut MetricsWriter| {
        let s = db.stats();
        write_head(w, &s.head);
        let g = MetricType::Gauge;
        let c = MetricType::Counter;
        let rows: [(&str, &str, MetricType, f64); 28] = [
            ("promtier_tsdb_blocks_loaded", "Blocks on disk that queries read.", g, s.blocks as f64),
            ("promtier_tsdb_blocks_bytes", "Bytes of the blocks on disk.", g, s.block_bytes as f64),
            ("promtier_tsdb_blocks_samples", "Samples held in blocks.", g, s.block_samples as f64),
            (
                "promtier_tsdb_lowest_timestamp_seconds",
                "Oldest sample time in the TSDB.",
                g,
                s.min_time.map_or(f64::NAN, |t| t as f64 / 1000.0),
            ),
            (
                "promtier_tsdb_wal_storage_size_bytes",
                "Bytes of WAL segments and checkpoints on disk.",
                g,
                s.wal_disk_bytes as f64,
            ),
            (
                "promtier_tsdb_wal_written_bytes_total",
                "Bytes of records written to the WAL.",
                c,
                s.wal_written_bytes as f64,
            ),
            ("promtier_tsdb_wal_commits_total", "Commits written to the WAL.", c, s.wal_commits as f64),
            (
                "promtier_tsdb_wal_write_failures_total",
                "WAL writes that failed (the commit failed).",
                c,
                s.wal_write_failures as f64,
            ),
            ("promtier_tsdb_wal_fsyncs_total", "WAL fsyncs.", c, s.wal_fsyncs as f64),
            (
                "promtier_tsdb_wal_fsync_failures_total",
                "WAL fsyncs that failed.",
                c,
                s.wal_fsync_failures as f64,
            ),
            ("promtier_tsdb_wal_fsync_seconds_total", "Time spent in WAL fsyncs.", c, s.wal_fsync_seconds),
            (
                "promtier_tsdb_wal_segments_created_total",
                "WAL segments started.",
                c,
                s.wal_segments_created as f64,
            ),
            (
                "promtier_tsdb_wal_segment_current",
                "Number of the WAL segment being written.",
                g,
                s.wal_current_segment as f64,
            ),
            ("promtier_tsdb_checkpoints_total", "WAL checkpoints written.", c, s.wal_checkpoints as f64),
            (
                "promtier_tsdb_checkpoint_failures_total",
                "WAL checkpoints that failed.",
                c,
                s.wal_checkpoint_failures as f64,
            ),
            ("promtier_tsdb_head_cuts_total", "Block ranges cut out of the head.", c, s.cuts as f64),
            ("promtier_tsdb_head_cut_failures_total", "Block cuts that failed.", c, s.cut_failures as f64),
            (
                "promtier_tsdb_compactions_total",
                "Compactions of blocks into a bigger block.",
                c,
                s.compactions as f64,
            ),
            (
                "promtier_tsdb_compaction_failures_total",
                "Compactions that failed.",
                c,
                s.compaction_failures as f64,
            ),
            (
                "promtier_tsdb_compaction_duration_seconds_total",
                "Time spent merging blocks into bigger blocks.",
                c,
                s.compaction_seconds,
            ),
            (
                "promtier_tsdb_head_cut_duration_seconds_total",
                "Time spent writing blocks cut out of the head.",
                c,
                s.cut_seconds,
            ),
            (
                "promtier_tsdb_compaction_populating_block",
                "1 while a block is being written (a head cut or a compaction).",
                g,
                f64::from(u8::from(s.populating_block)),
            ),
            (
                "promtier_tsdb_retention_deleted_blocks_total",
                "Blocks deleted by time or size retention.",
                c,
                s.retention_deleted_blocks as f64,
            ),
            (
                "promtier_downsample_blocks_total",
                "Rollup blocks written (one per piece and resolution).",
                c,
                s.downsample_blocks as f64,
            ),
            (
                "promtier_downsample_series_total",
                "Series rolled up, summed over rollup blocks written.",
                c,
                s.downsample_series as f64,
            ),
            (
                "promtier_downsample_duration_seconds_total",
                "Time spent rolling raw data up.",
                c,
                s.downsample_seconds,
            ),
            (
                "promtier_downsample_failures_total",
                "Rollup blocks that could not be written.",
                c,
                s.downsample_failures as f64,
            ),
            (
                "promtier_downsample_pending_pieces",
                "Pieces (6 h of raw data and one resolution) waiting to be rolled up.",
                g,
                s.downsample_pending as f64,
            ),
        ];
        for (name, help, kind, v) in rows {
            w.single(name, help, kind, v);
        }
        if !s.rollup_bytes.is_empty() {
            let name = "promtier_downsample_block_bytes";
            w.family(name, "Bytes of rollup blocks on disk, by resolution.", MetricType::Gauge);
            for (res, bytes) in &s.rollup_bytes {
                let r = crate::model::format_duration(std::time::Duration::from_millis(*res as u64));
                w.sample(name, &[("resolution", &r)], *bytes as f64);
            }
        }
    }));
}

/// Exposes how far opening the TSDB has got: `promtier_tsdb_wal_replay_*`. Registered before
/// the TSDB opens, so `/metrics` shows the replay while it runs (and its totals after).
pub(crate) fn register_open_metrics(registry: &Registry, progress: Arc<OpenProgress>) {
    registry.register(Arc::new(move |w: &mut MetricsWriter| {
        let g = MetricType::Gauge;
        let rows: [(&str, &str, f64); 5] = [
            (
                "promtier_tsdb_wal_replay_in_progress",
                "1 while the WAL is being replayed (the node is not ready yet).",
                f64::from(u8::from(progress.replaying())),
            ),
            (
                "promtier_tsdb_wal_replay_segments",
                "WAL segments to replay at start (after the checkpoint).",
                progress.segments_total() as f64,
            ),
            (
                "promtier_tsdb_wal_replay_segments_done",
                "WAL segments replayed so far.",
                progress.segments_done() as f64,
            ),
            (
                "promtier_tsdb_wal_replay_bytes",
                "Bytes of WAL records replayed at start (so far, while replaying).",
                progress.bytes_done() as f64,
            ),
            (
                "promtier_tsdb_wal_replay_duration_seconds",
                "Time the WAL replay took at start (so far, while replaying).",
                progress.replay_duration().as_secs_f64(),
            ),
        ];
        for (name, help, v) in rows {
            w.single(name, help, g, v);
        }
    }));
}

fn write_head(w: &mut MetricsWriter, s: &HeadStats) {
    {
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
            "Samples rejected as out of bounds: older than the head's lower bound (the end of the newest block cut from it, or retention).",
            c,
            s.out_of_bounds as f64,
        );
    }
}
