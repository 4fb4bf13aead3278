//! promtier's own time-series database. Layout:
//! - [`chunkenc`]: chunk encodings (XOR floats).
//! - [`head`]: the in-memory head that ingests samples and answers queries over them.
//! - [`wal`]: the write-ahead log (segments, replay, checkpoints).
//! - [`block`]: immutable on-disk blocks (chunk file, label index, meta), their writer, reader and
//!   compaction.
//! - [`db`]: the database: head + WAL + blocks in one data directory, cutting, compaction,
//!   retention, and the querier that merges them.
//! - [`progress`]: how far opening a database (block loading, WAL replay) has got.
//! - [`fs`]: the file layer under the writers (and a fault-injecting one for tests).
//!
//! Callers outside see only the `storage` traits that [`Head`] and [`Db`] implement.

pub mod block;
pub mod chunkenc;
pub mod db;
pub(crate) mod encoding;
pub mod fs;
pub mod head;
pub mod progress;
pub mod wal;

pub use db::{Db, DbError, DbOptions, DbStats};
pub use head::{Head, HeadError, HeadOptions, HeadStats, TruncateStats};
pub use progress::{OpenProgress, OpenStage};
