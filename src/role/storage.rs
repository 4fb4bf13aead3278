//! A node's own TSDB: opening it in the node's data directory (WAL replay off the async
//! workers), the maintenance (block cutting, compaction, retention) and WAL-sync loops that run
//! beside the node's other tasks, and the final close. Shared by every role that stores data.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::topology::{Downsample, Node};
use crate::tsdb::db::DownsampleLevel;
use crate::tsdb::wal::WalSync;
use crate::tsdb::{Db, DbOptions, OpenProgress};

/// TSDB settings that the topology does not carry (command-line flags).
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Span of a level-1 block (Prometheus's `--storage.tsdb.min-block-duration`).
    pub block_duration: Duration,
    /// Largest block compaction builds (`None`: the database's default).
    pub max_block_duration: Option<Duration>,
    /// Delete oldest blocks beyond this many bytes.
    pub retention_size: Option<u64>,
    pub wal_sync: WalSync,
    /// Bytes at which a WAL segment is closed.
    pub wal_segment_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> StorageOptions {
        StorageOptions {
            block_duration: Duration::from_secs(2 * 3600),
            max_block_duration: None,
            retention_size: None,
            wal_sync: WalSync::Periodic(Duration::from_secs(1)),
            wal_segment_bytes: crate::tsdb::wal::DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// Opens (creating or replaying) the TSDB of `node`, rolling raw data up to `downsample` (a
/// global's rollups; empty for leaves), reporting how far it has got in `progress`. A
/// resolution's retention is at least the raw one.
pub(crate) async fn open(
    node: &Node,
    opts: &StorageOptions,
    downsample: &[Downsample],
    progress: Arc<OpenProgress>,
) -> anyhow::Result<Db> {
    let raw_ms = node.retention.as_millis() as i64;
    let downsample = downsample
        .iter()
        .map(|d| DownsampleLevel {
            resolution_ms: d.resolution.as_millis() as i64,
            retention_ms: Some(d.retention.map_or(raw_ms, |r| (r.as_millis() as i64).max(raw_ms))),
        })
        .collect();
    let db_opts = DbOptions {
        downsample,
        block_range_ms: opts.block_duration.as_millis() as i64,
        max_block_range_ms: opts.max_block_duration.map(|d| d.as_millis() as i64),
        retention_ms: Some(node.retention.as_millis() as i64),
        max_bytes: opts.retention_size,
        wal_sync: opts.wal_sync,
        wal_segment_bytes: opts.wal_segment_bytes,
        progress,
        ..DbOptions::default()
    };
    let dir = node.data_dir.clone();
    tracing::info!(dir = %dir.display(), "opening the TSDB (replaying the WAL)");
    tokio::task::spawn_blocking(move || Db::open(&dir, db_opts))
        .await
        .context("TSDB open task failed")?
        .with_context(|| format!("cannot open the TSDB in {}", node.data_dir.display()))
}

/// Runs the maintenance and WAL-sync loops until `shutdown`, then closes the database (final
/// WAL sync). Call after everything that appends has stopped, or alongside them with `join!`:
/// the close waits for the loops only.
pub(crate) async fn run_until_shutdown(db: Db, opts: &StorageOptions, shutdown: CancellationToken) {
    let sync_every = match opts.wal_sync {
        WalSync::Periodic(d) => Some(d),
        WalSync::Commit => None,
    };
    tokio::join!(
        maintenance_loop(db.clone(), opts.block_duration, shutdown.clone()),
        wal_sync_loop(db.clone(), sync_every, shutdown.clone()),
    );
}

/// Makes the last commits durable and closes the database.
pub(crate) async fn close(db: Db) {
    match tokio::task::spawn_blocking(move || db.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "closing the TSDB failed"),
        Err(e) => tracing::error!(error = %e, "TSDB close task failed"),
    }
}

/// Cuts blocks, compacts and applies retention: at a twentieth of the block range (so a cut
/// happens soon after the head is ready for it), at least every 10 s, at most every minute.
async fn maintenance_loop(db: Db, block_duration: Duration, shutdown: CancellationToken) {
    let every = (block_duration / 20).clamp(Duration::from_millis(200), Duration::from_secs(60));
    every_tick(every, shutdown, "TSDB maintenance (retried next cycle)", move || db.maintain().map(|_| ()))
        .await;
}

/// Fsyncs the WAL on the periodic policy's interval.
async fn wal_sync_loop(db: Db, every: Option<Duration>, shutdown: CancellationToken) {
    let Some(every) = every else { return };
    every_tick(every, shutdown, "WAL fsync", move || db.sync_wal()).await;
}

/// Runs `job` on a blocking thread every `every` until `shutdown`, logging its failures. Each run
/// is awaited (not detached): one in progress finishes before shutdown goes on.
async fn every_tick<E, F>(every: Duration, shutdown: CancellationToken, what: &'static str, job: F)
where
    E: std::fmt::Display + Send + 'static,
    F: Fn() -> Result<(), E> + Clone + Send + 'static,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::task::spawn_blocking(job.clone()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "{what} failed"),
            Err(e) => tracing::error!(error = %e, "{what} task failed"),
        }
    }
}
