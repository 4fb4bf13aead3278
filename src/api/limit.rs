//! What one request may cost: the most request body any endpoint reads ([`MAX_REQUEST_BODY`]),
//! and the concurrent-query limit (Prometheus's `--query.max-concurrency`). Queries — PromQL,
//! series and label lookups — take a permit before they touch the storage; when every permit is
//! taken they wait in a bounded queue for a bounded time, and are otherwise answered `503` with
//! `Retry-After` in Prometheus's error shape, so a flood of queries cannot starve the scrapes
//! and pulls that share the node. Everything else (`/federate`, status pages, `/metrics`) is not
//! counted: it is bounded by its own paging.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ErrorType;
use crate::metrics::{Collect, Counter, Family, MetricsWriter, Registry};
use crate::model::MetricType;

/// The most bytes of request body an endpoint reads (a form of PromQL and `match[]`
/// selectors): Go's limit on a form body, which is what Prometheus's API takes. More is
/// answered `413 Payload Too Large`.
pub const MAX_REQUEST_BODY: usize = 10 << 20;

/// What a client rejected by the query limit is told to wait before trying again.
const RETRY_AFTER_SECS: u64 = 5;

/// Bounds of concurrent queries (`--query.max-concurrency`, `--query.max-queued`,
/// `--query.queue-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Queries evaluated at once (at least 1).
    pub max_concurrency: usize,
    /// Queries that may wait for a permit; more are refused at once.
    pub max_queued: usize,
    /// How long a query may wait for a permit (never longer than its own timeout).
    pub queue_timeout: Duration,
}

impl Default for QueryLimits {
    /// Prometheus's 20 concurrent queries; up to 100 more wait, for at most 30 s.
    fn default() -> QueryLimits {
        QueryLimits { max_concurrency: 20, max_queued: 100, queue_timeout: Duration::from_secs(30) }
    }
}

/// The node's query permits, shared by every query endpoint.
pub struct QueryLimiter {
    limits: QueryLimits,
    permits: Arc<Semaphore>,
    /// Queries waiting for a permit now.
    waiting: AtomicUsize,
    rejected: Arc<Family<Counter>>,
}

/// A query's permit: held until its evaluation ends (move it into the blocking task, so a
/// client that disconnects does not free the permit of a query still running).
pub(crate) struct QueryPermit {
    _permit: OwnedSemaphorePermit,
    /// How long the query waited for it (counts against the query's timeout, as in Prometheus).
    pub(crate) waited: Duration,
}

/// Why a query got no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Every permit taken and the queue full.
    QueueFull { running: usize, queued: usize },
    /// Waited `--query.queue-timeout` without one of the `max` permits.
    QueueTimeout { waited: Duration, max: usize },
    /// The query's own timeout passed while it waited.
    QueryTimeout,
}

/// One place in the queue, given back when the wait ends however it ends.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(waiting: &'a AtomicUsize, max: usize) -> Option<Queued<'a>> {
        waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Queued(waiting))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl QueryLimiter {
    /// A limiter whose state is shown on `/metrics` of `registry`: Prometheus's
    /// `prometheus_engine_queries` (running or waiting) and `…_concurrent_max`, plus the waiting
    /// queries and the refusals by reason.
    pub fn new(limits: QueryLimits, registry: &Registry) -> Arc<QueryLimiter> {
        let limits = QueryLimits { max_concurrency: limits.max_concurrency.max(1), ..limits };
        let rejected = Arc::new(Family::new(
            "promtier_engine_queries_rejected_total",
            "Queries answered 503 by the concurrent-query limit, by reason (queue_full, queue_timeout, query_timeout).",
            &["reason"],
            Counter::default,
        ));
        let limiter = Arc::new(QueryLimiter {
            limits,
            permits: Arc::new(Semaphore::new(limits.max_concurrency)),
            waiting: AtomicUsize::new(0),
            rejected: rejected.clone(),
        });
        let l = limiter.clone();
        let gauges = move |w: &mut MetricsWriter| {
            let (running, waiting) = l.load();
            w.single(
                "prometheus_engine_queries",
                "The current number of queries being executed or waiting.",
                MetricType::Gauge,
                (running + waiting) as f64,
            );
            w.single(
                "prometheus_engine_queries_concurrent_max",
                "The max number of concurrent queries.",
                MetricType::Gauge,
                l.limits.max_concurrency as f64,
            );
            w.single(
                "promtier_engine_queries_waiting",
                "Queries waiting for one of the --query.max-concurrency permits.",
                MetricType::Gauge,
                waiting as f64,
            );
        };
        registry.register(Arc::new(gauges) as Arc<dyn Collect>);
        registry.register(rejected);
        limiter
    }

    /// Queries running and waiting now.
    fn load(&self) -> (usize, usize) {
        let running = self.limits.max_concurrency.saturating_sub(self.permits.available_permits());
        (running, self.waiting.load(Ordering::Acquire))
    }

    /// A permit, waiting for one at most the queue timeout and at most `timeout` (the query's
    /// own); refused at once when the queue is full.
    pub(crate) async fn acquire(&self, timeout: Duration) -> Result<QueryPermit, Rejected> {
        let started = Instant::now();
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(QueryPermit { _permit: p, waited: Duration::ZERO });
        }
        let result = match Queued::enter(&self.waiting, self.limits.max_queued) {
            None => {
                let (running, queued) = self.load();
                Err(Rejected::QueueFull { running, queued })
            }
            Some(_place) => {
                let wait = self.limits.queue_timeout.min(timeout);
                match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
                    Ok(Ok(p)) => Ok(QueryPermit { _permit: p, waited: started.elapsed() }),
                    // The semaphore is never closed; a closed one admits nobody.
                    Ok(Err(_)) | Err(_) if wait < self.limits.queue_timeout => Err(Rejected::QueryTimeout),
                    Ok(Err(_)) | Err(_) => {
                        Err(Rejected::QueueTimeout { waited: wait, max: self.limits.max_concurrency })
                    }
                }
            }
        };
        if let Err(r) = &result {
            self.rejected.with(&[r.reason()]).inc();
        }
        result
    }
}

impl Rejected {
    fn reason(&self) -> &'static str {
        match self {
            Rejected::QueueFull { .. } => "queue_full",
            Rejected::QueueTimeout { .. } => "queue_timeout",
            Rejected::QueryTimeout => "query_timeout",
        }
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::QueueFull { running, queued } => write!(
                f,
                "too many concurrent queries ({running} running, {queued} waiting; see --query.max-concurrency and --query.max-queued), try again later"
            ),
            Rejected::QueueTimeout { waited, max } => write!(
                f,
                "waited {} for one of the {max} query slots (see --query.max-concurrency and --query.queue-timeout), try again later",
                crate::model::PromDuration(*waited)
            ),
            Rejected::QueryTimeout => f.write_str("query timed out in query queue"),
        }
    }
}

impl IntoResponse for Rejected {
    /// `503` with `Retry-After`, in Prometheus's error shape (`unavailable`; `timeout` when the
    /// query's own timeout passed in the queue, as Prometheus reports it).
    fn into_response(self) -> Response {
        let kind = match self {
            Rejected::QueryTimeout => ErrorType::Timeout,
            _ => ErrorType::Unavailable,
        };
        let body =
            serde_json::json!({"status": "error", "errorType": kind.as_str(), "error": self.to_string()});
        let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_concurrency: usize, max_queued: usize, queue_timeout_ms: u64) -> Arc<QueryLimiter> {
        let limits = QueryLimits {
            max_concurrency,
            max_queued,
            queue_timeout: Duration::from_millis(queue_timeout_ms),
        };
        QueryLimiter::new(limits, &Registry::new())
    }

    #[tokio::test]
    async fn permits_queue_and_refusals() -> Result<(), String> {
        let l = limiter(2, 1, 60_000);
        let long = Duration::from_secs(60);
        let a = l.acquire(long).await.map_err(|e| e.to_string())?;
        let _b = l.acquire(long).await.map_err(|e| e.to_string())?;
        assert_eq!(a.waited, Duration::ZERO);
        // The third waits in the queue; the fourth finds the queue full.
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.acquire(long).await.map(|p| p.waited) });
        while l.load() != (2, 1) {
            tokio::task::yield_now().await;
        }
        assert!(matches!(l.acquire(long).await, Err(Rejected::QueueFull { running: 2, queued: 1 })));
        // A permit given back goes to the waiter.
        drop(a);
        let waited = waiter.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        assert!(waited > Duration::ZERO);
        assert_eq!(l.rejected.with(&["queue_full"]).get(), 1.0);
        Ok(())
    }

    #[tokio::test]
    async fn waits_end_at_the_queue_timeout_or_the_query_timeout() {
        let l = limiter(1, 10, 50);
        let _held = l.acquire(Duration::from_secs(60)).await;
        let timed_out = Rejected::QueueTimeout { waited: Duration::from_millis(50), max: 1 };
        assert_eq!(l.acquire(Duration::from_secs(60)).await.err(), Some(timed_out));
        assert_eq!(
            timed_out.to_string(),
            "waited 50ms for one of the 1 query slots (see --query.max-concurrency and --query.queue-timeout), try again later"
        );
        assert_eq!(l.acquire(Duration::from_millis(10)).await.err(), Some(Rejected::QueryTimeout));
        assert_eq!(l.load(), (1, 0), "the queue is left empty");
        let resp = Rejected::QueueFull { running: 1, queued: 10 }.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("5"));
    }
}
