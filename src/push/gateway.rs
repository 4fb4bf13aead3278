//! A Pushgateway-compatible group store: the pure core a push node's handlers call to accept
//! pushes "the Pushgateway way" (`PUT`/`POST`/`DELETE` on `/metrics/job/<job>{/<label>/<value>}`),
//! with the semantics of Prometheus Pushgateway 1.5 — grouping keys, replace and merge, the
//! consistency checks over all groups, `push_time_seconds` / `push_failure_time_seconds` — plus
//! snapshots of every group for the node's TSDB (with what disappeared since the previous one,
//! for staleness markers) and persistence across restarts. HTTP, routing to the owning node and
//! forwarding are the push role's business. Behaviour and deliberate differences: `docs/push.md`.
//!
//! - `key`: the grouping key from the URL path (`@base64` values).
//! - `body`: a pushed body (text format, OpenMetrics) into metric families.
//! - `family`: the families a group holds and how they are exposed as samples.
//! - `store`: the groups, pushes and deletes with their checks.
//! - `snapshot`: the samples of every group at one moment, and their difference.
//! - `persist`: saving and loading the groups.

mod body;
mod family;
mod key;
mod persist;
mod snapshot;
mod store;

pub use body::BodyError;
pub use key::{GroupingKey, GroupingKeyError};
pub use persist::PersistError;
pub use snapshot::{Snapshot, SnapshotSeries};
pub use store::{GroupStore, PushError, PushMethod};
