//! A push node coming back after an absence catches up in order. While it was away, the other
//! nodes kept hints for it (writes for series it owns, accepted meanwhile). Its TSDB takes each
//! series' samples in time order only, so it must store those older samples before any newer one
//! that a client pushes to it directly once it is back. So after a start it is *catching up*:
//! writes it owns that arrive from clients are queued here (on disk, in arrival order, like a
//! hint for itself) while the other nodes' hints are delivered to it; once every reachable node
//! reports no hint left for it, the queue is stored in order and the node writes directly again.
//!
//! A node that cannot be asked (down) cannot deliver hints either: it is not waited for. Writes
//! forwarded by other nodes (their hints and their clients' writes) are stored at once: they are
//! what the catch-up waits for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::forward::Peer;
use super::hints::{Forward, HintError, HintQueue};

/// Stores one queued write here (blocking); why not, when it cannot.
pub type Apply = Arc<dyn Fn(&Forward) -> Result<(), String> + Send + Sync>;

/// How often the other nodes are asked whether they still hold hints for this one.
const POLL: Duration = Duration::from_millis(500);
/// Catching up ends after this long even if a node keeps reporting hints (its hints then arrive
/// late, and samples older than what this node holds by then are refused and counted).
const MAX_CATCH_UP: Duration = Duration::from_secs(600);

/// This node's own writes while it catches up.
pub struct CatchUp {
    active: AtomicBool,
    /// Serialises queueing with the switch back to direct writes.
    lock: Mutex<()>,
    queue: HintQueue,
}

impl CatchUp {
    /// Starts in the catching-up state (a node just started) with its queue in `queue`.
    pub fn new(queue: HintQueue) -> CatchUp {
        CatchUp { active: AtomicBool::new(true), lock: Mutex::new(()), queue }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Queues the write `forward()` builds when catching up (`Ok(None)`); otherwise applies it
    /// now with `now()`.
    pub fn queue_or<T>(
        &self,
        forward: impl FnOnce() -> Forward,
        now: impl FnOnce() -> T,
    ) -> Result<Option<T>, HintError> {
        if self.is_active() {
            let _g = self.lock.lock();
            if self.is_active() {
                self.queue.push(&forward())?;
                return Ok(None);
            }
        }
        Ok(Some(now()))
    }

    /// Waits until no reachable peer holds hints for `me` (or the bound passes), then stores
    /// the queue in order and switches to direct writes. Returns early on `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        me: String,
        peers: Vec<Arc<Peer>>,
        apply: Apply,
        shutdown: CancellationToken,
    ) {
        let started = tokio::time::Instant::now();
        loop {
            let mut waiting = Vec::new();
            for p in &peers {
                if let Some(n) = p.hints_held_for(&me).await
                    && n > 0
                {
                    waiting.push(format!("{}: {n}", p.name));
                }
            }
            if waiting.is_empty() {
                break;
            }
            if started.elapsed() > MAX_CATCH_UP {
                tracing::warn!(node = %me, waiting = %waiting.join(", "), "push: still owed hints after the catch-up bound; writing directly again (their samples may be refused as out of order)");
                break;
            }
            tracing::info!(node = %me, waiting = %waiting.join(", "), "push: catching up: other nodes still hold hints for this one");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
        let mut stored = 0u64;
        loop {
            // Store what is queued, then switch under the lock once it is empty.
            while let Ok(Some(f)) = self.queue.peek() {
                let apply = apply.clone();
                match tokio::task::spawn_blocking(move || apply(&f)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(node = %me, error = %e, "push: a queued write could not be stored")
                    }
                    Err(e) => {
                        tracing::warn!(node = %me, error = %e, "push: a queued write could not be stored")
                    }
                }
                self.queue.pop();
                stored += 1;
                if shutdown.is_cancelled() {
                    return;
                }
            }
            let _g = self.lock.lock();
            if self.queue.is_empty() {
                self.active.store(false, Ordering::Release);
                break;
            }
        }
        tracing::info!(node = %me, queued_writes = stored, took = ?started.elapsed(), "push: caught up; storing writes directly");
    }
}
