//! A push node's Pushgateway groups at run time: the [`GroupStore`] made durable and turned into
//! series. Every change is saved to `<data>/push-groups.json` before the push that made it is
//! answered (group commit: one save covers every change made before it started), and every scrape
//! interval the groups' current series are appended to the node's storage, with staleness markers
//! for the series a push or a delete removed — what a Prometheus scraping a Pushgateway with
//! `honor_labels: true` would store.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::gateway::{GroupStore, GroupingKey, PersistError, PushError, PushMethod, Snapshot};
use crate::model::STALE_NAN;
use crate::storage::Storage;

/// A change to the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupChange {
    Put,
    Post,
    Delete,
}

/// The groups of one push node.
pub struct Groups {
    store: GroupStore,
    path: PathBuf,
    /// Generation of the latest change, and of the latest one saved.
    changed: AtomicU64,
    saved: watch::Sender<u64>,
    wake: Notify,
}

impl Groups {
    /// Loads the groups saved at `path` (none yet: empty).
    pub fn open(path: PathBuf) -> Result<Groups, PersistError> {
        let store = GroupStore::load(&path)?;
        Ok(Groups {
            store,
            path,
            changed: AtomicU64::new(0),
            saved: watch::Sender::new(0),
            wake: Notify::new(),
        })
    }

    pub fn store(&self) -> &GroupStore {
        &self.store
    }

    /// Applies a push or delete (blocking: parses the body); the generation to wait for with
    /// [`Groups::durable`].
    pub fn apply(
        &self,
        change: GroupChange,
        key: &GroupingKey,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<u64, PushError> {
        let r = match change {
            GroupChange::Put => self.store.push(key, PushMethod::Put, content_type, body),
            GroupChange::Post => self.store.push(key, PushMethod::Post, content_type, body),
            GroupChange::Delete => {
                self.store.delete(key);
                Ok(())
            }
        };
        // A refused push may have recorded its failure time: saved too.
        let generation = self.changed.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake.notify_one();
        r.map(|()| generation)
    }

    /// Waits until the change of `generation` is saved (or `shutdown`); false when saving fails
    /// or the node stops first.
    pub async fn durable(&self, generation: u64, shutdown: &CancellationToken) -> bool {
        let mut rx = self.saved.subscribe();
        tokio::select! {
            r = rx.wait_for(|s| *s >= generation) => r.is_ok(),
            () = shutdown.cancelled() => false,
        }
    }

    /// Saves whenever something changed, until `shutdown` (then once more).
    pub async fn run_saver(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failing = false;
        loop {
            let target = self.changed.load(Ordering::Acquire);
            if target > *self.saved.borrow() {
                let me = self.clone();
                let r = tokio::task::spawn_blocking(move || me.store.save(&me.path)).await;
                match r {
                    Ok(Ok(())) => {
                        if failing {
                            tracing::info!(path = %self.path.display(), "push: Pushgateway groups saved again");
                        }
                        failing = false;
                        self.saved.send_replace(target);
                    }
                    Ok(Err(e)) => {
                        if !failing {
                            tracing::error!(path = %self.path.display(), error = %e, "push: cannot save the Pushgateway groups; pushes wait");
                        }
                        failing = true;
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "push: the save task failed"),
                }
                continue;
            }
            if shutdown.is_cancelled() {
                return;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Appends the groups' series to `storage` every `interval`, until `shutdown`.
    pub async fn run_snapshots(
        self: Arc<Self>,
        storage: Arc<dyn Storage>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut previous = Arc::new(Snapshot::default());
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (me, st, prev) = (self.clone(), storage.clone(), previous.clone());
            let r = tokio::task::spawn_blocking(move || {
                let snap = me.store.snapshot();
                append_snapshot(st.as_ref(), &snap, &prev, crate::model::now_ms()).map(|()| snap)
            })
            .await;
            match r {
                Ok(Ok(snap)) => previous = Arc::new(snap),
                Ok(Err(e)) => tracing::warn!(error = %e, "push: cannot store the Pushgateway groups' series"),
                Err(e) => tracing::warn!(error = %e, "push: the snapshot task failed"),
            }
        }
    }
}

/// Appends `snap` at `t`, and staleness markers for what `previous` had and `snap` has not.
fn append_snapshot(
    storage: &dyn Storage,
    snap: &Snapshot,
    previous: &Snapshot,
    t: i64,
) -> Result<(), String> {
    if snap.is_empty() && previous.is_empty() {
        return Ok(());
    }
    let mut app = storage.appender();
    // A series the storage refuses (its clock went back) does not hold up the others.
    let mut refused: Option<String> = None;
    let values = snap.series().iter().map(|s| (&s.labels, s.value));
    for (labels, v) in values.chain(snap.disappeared_since(previous).map(|l| (l, STALE_NAN))) {
        if let Err(e) = app.append(None, labels, t, v) {
            refused.get_or_insert_with(|| format!("{labels}: {e}"));
        }
    }
    app.commit().map_err(|e| e.to_string())?;
    refused.map_or(Ok(()), Err)
}
