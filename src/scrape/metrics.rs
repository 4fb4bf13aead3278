//! The scrape manager's own metrics, per job.

use std::sync::Arc;
use std::time::Duration;

use super::ingest::IngestStats;
use crate::metrics::{Collect, Counter, DURATION_BUCKETS, Family, Histogram, MetricsWriter, Registry};
use crate::model::MetricType;

pub(crate) struct ScrapeMetrics {
    scrapes: Arc<Family<Counter>>,
    failures: Arc<Family<Counter>>,
    samples: Arc<Family<Counter>>,
    out_of_order: Arc<Family<Counter>>,
    duplicates: Arc<Family<Counter>>,
    out_of_bounds: Arc<Family<Counter>>,
    stale: Arc<Family<Counter>>,
    duration: Arc<Family<Histogram>>,
    /// Scrapes stopped at the body size limit (Prometheus's name, no labels).
    pub(crate) body_size_exceeded: Arc<Counter>,
}

impl ScrapeMetrics {
    pub(crate) fn new(registry: &Registry) -> ScrapeMetrics {
        let c = |name, help| Arc::new(Family::new(name, help, &["job"], Counter::default));
        let m = ScrapeMetrics {
            scrapes: c("promtier_scrapes_total", "Scrapes attempted, by job."),
            failures: c(
                "promtier_scrape_failures_total",
                "Scrapes that failed (unreachable, HTTP error, parse error, limit), by job.",
            ),
            samples: c(
                "promtier_scrape_samples_appended_total",
                "Samples appended from scrapes (not counting those the storage refused), by job.",
            ),
            out_of_order: c(
                "promtier_scrape_samples_out_of_order_total",
                "Scraped samples rejected as out of order, by job.",
            ),
            duplicates: c(
                "promtier_scrape_samples_duplicate_timestamp_total",
                "Scraped samples rejected for a duplicate timestamp with another value, by job.",
            ),
            out_of_bounds: c(
                "promtier_scrape_samples_out_of_bounds_total",
                "Scraped samples rejected as too old for the storage, by job.",
            ),
            stale: c(
                "promtier_scrape_stale_markers_total",
                "Staleness markers written for series that disappeared, by job.",
            ),
            duration: Arc::new(Family::new(
                "promtier_scrape_duration_seconds",
                "Scrape duration including ingest, by job.",
                &["job"],
                || Histogram::new(DURATION_BUCKETS),
            )),
            body_size_exceeded: Arc::new(Counter::default()),
        };
        registry.register(m.scrapes.clone());
        registry.register(m.failures.clone());
        registry.register(m.samples.clone());
        registry.register(m.out_of_order.clone());
        registry.register(m.duplicates.clone());
        registry.register(m.out_of_bounds.clone());
        registry.register(m.stale.clone());
        registry.register(m.duration.clone());
        let exceeded = m.body_size_exceeded.clone();
        let collect = move |w: &mut MetricsWriter| {
            w.single(
                "prometheus_target_scrapes_exceeded_body_size_limit_total",
                "Total number of scrapes that hit the body size limit",
                MetricType::Counter,
                exceeded.get(),
            )
        };
        registry.register(Arc::new(collect) as Arc<dyn Collect>);
        m
    }

    pub(crate) fn observe(&self, job: &str, outcome: &Result<IngestStats, String>, duration: Duration) {
        self.scrapes.with(&[job]).inc();
        self.duration.with(&[job]).observe(duration.as_secs_f64());
        match outcome {
            Ok(s) => {
                self.samples.with(&[job]).inc_by(s.post_relabel.saturating_sub(s.refused.total()) as f64);
                self.out_of_order.with(&[job]).inc_by(s.refused.out_of_order as f64);
                self.duplicates.with(&[job]).inc_by(s.refused.duplicates as f64);
                self.out_of_bounds.with(&[job]).inc_by(s.refused.out_of_bounds as f64);
                self.stale.with(&[job]).inc_by(s.stale_markers as f64);
            }
            Err(_) => self.failures.with(&[job]).inc(),
        }
    }
}
