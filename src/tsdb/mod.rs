//! promtier's own time-series database: chunk encodings ([`chunkenc`]) and the in-memory
//! [`head`] that ingests samples and answers queries over them. The write-ahead log and the
//! on-disk blocks build on these; callers outside see only the `storage` traits the head
//! implements.

pub mod chunkenc;
pub mod head;

pub use head::{Head, HeadError, HeadOptions, HeadStats, TruncateStats};
