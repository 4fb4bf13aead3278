//! The demo exporter: a built-in target serving realistic, moving metrics — request counters,
//! latency histograms, gauges, a recording-rule style name — so a fresh cluster shows real data
//! without installing anything. Values are functions of time since start, so counters only go
//! up and every scrape sees new values.

use std::f64::consts::PI;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::server;
use crate::exposition::{write_help_line, write_series_line, write_type_line};
use crate::model::MetricType;

const METHODS: [&str; 2] = ["GET", "POST"];
const CODES: [&str; 3] = ["200", "404", "500"];
const BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
/// Series per path: counters (methods × codes), histogram (buckets + +Inf + sum + count), rate.
const SERIES_PER_PATH: usize = METHODS.len() * CODES.len() + BUCKETS.len() + 3 + 1;

/// A demo exporter's shape.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// About how many series to serve.
    pub series: u32,
    /// Varies the values between exporters.
    pub seed: u64,
}

struct Demo {
    opts: DemoOptions,
    started: Instant,
    paths: Vec<String>,
}

/// Serves the demo exporter on `listen` until `shutdown`.
pub async fn run(listen: &str, opts: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = server::bind(listen, &crate::topology::WebConfig::default(), axum::Router::new()).await?;
    tracing::info!(listen, series = opts.series, "demo exporter started");
    let app = router(opts);
    server::serve(listener, app, shutdown).await
}

/// The exporter's routes: `/metrics`, a one-line `/`, and `/-/healthy` (probed by the consoles'
/// topology view).
pub fn router(opts: DemoOptions) -> Router {
    let n_paths = (opts.series as usize).saturating_sub(8) / SERIES_PER_PATH;
    let paths = (0..n_paths.max(1)).map(|i| format!("/api/v1/resource{i}")).collect();
    let demo = Arc::new(Demo { opts, started: Instant::now(), paths });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(|| async { "promtier demo exporter: see /metrics\n" }))
        .route("/-/healthy", get(|| async { "promtier demo exporter is Healthy.\n" }))
        .with_state(demo)
}

async fn metrics(State(d): State<Arc<Demo>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, crate::federate::TEXT_CONTENT_TYPE)], d.render())
}

/// A stable pseudo-random number in [0, 1) for (seed, a, b).
fn unit(seed: u64, a: u64, b: u64) -> f64 {
    let h = xxhash_rust::xxh3::xxh3_64(&[seed.to_le_bytes(), a.to_le_bytes(), b.to_le_bytes()].concat());
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Demo {
    fn render(&self) -> Vec<u8> {
        let t = self.started.elapsed().as_secs_f64();
        let seed = self.opts.seed;
        let mut out = Vec::with_capacity(self.paths.len() * SERIES_PER_PATH * 90 + 1024);
        let o = &mut out;

        let name = "demo_http_requests_total";
        write_help_line(o, name, "Requests served, by method, path and status code.");
        write_type_line(o, name, MetricType::Counter);
        for (p, path) in self.paths.iter().enumerate() {
            for (m, method) in METHODS.iter().enumerate() {
                for (c, code) in CODES.iter().enumerate() {
                    // 200s dominate; rates differ per series but stay fixed, so counters are linear-ish.
                    let share = [0.9, 0.07, 0.03][c];
                    let rate = (1.0 + 20.0 * unit(seed, p as u64, m as u64)) * share;
                    let v = (rate * t).floor();
                    write_series_line(
                        o,
                        name,
                        [("code", *code), ("method", *method), ("path", path.as_str())],
                        v,
                        None,
                    );
                }
            }
        }

        let name = "demo_http_request_duration_seconds";
        write_help_line(o, name, "Request latency.");
        write_type_line(o, name, MetricType::Histogram);
        let bucket = format!("{name}_bucket");
        for (p, path) in self.paths.iter().enumerate() {
            let rate = 1.0 + 20.0 * unit(seed, p as u64, 99);
            let count = (rate * t).floor();
            let scale = 0.02 + 0.1 * unit(seed, p as u64, 98);
            let mut les = Vec::with_capacity(BUCKETS.len());
            for b in BUCKETS {
                // Exponential latency distribution: P(x <= b) = 1 - e^(-b/scale).
                les.push((count * (1.0 - (-b / scale).exp())).floor());
            }
            for (b, v) in BUCKETS.iter().zip(les) {
                let mut le = Vec::new();
                crate::exposition::write_float(&mut le, *b);
                let le = String::from_utf8_lossy(&le).into_owned();
                write_series_line(o, &bucket, [("le", le.as_str()), ("path", path.as_str())], v, None);
            }
            write_series_line(o, &bucket, [("le", "+Inf"), ("path", path.as_str())], count, None);
            write_series_line(o, &format!("{name}_sum"), [("path", path.as_str())], count * scale, None);
            write_series_line(o, &format!("{name}_count"), [("path", path.as_str())], count, None);
        }

        let name = "demo:http_requests:rate1m";
        write_help_line(o, name, "A recording-rule style series (the name has colons).");
        write_type_line(o, name, MetricType::Gauge);
        for (p, path) in self.paths.iter().enumerate() {
            let rate = 1.0 + 20.0 * unit(seed, p as u64, 0);
            write_series_line(o, name, [("path", path.as_str())], (rate * 1000.0).round() / 1000.0, None);
        }

        let name = "demo_cpu_temperature_celsius";
        write_help_line(o, name, "Temperature per core; a slow sine wave.");
        write_type_line(o, name, MetricType::Gauge);
        for core in 0..4u64 {
            let phase = 2.0 * PI * unit(seed, core, 7);
            let v = 55.0 + 10.0 * (t / 60.0 * 2.0 * PI + phase).sin();
            let core = core.to_string();
            write_series_line(o, name, [("core", core.as_str())], (v * 100.0).round() / 100.0, None);
        }

        let name = "demo_queue_length";
        write_help_line(o, name, "Items waiting, per queue.");
        write_type_line(o, name, MetricType::Gauge);
        for (q, queue) in ["email", "billing", "reports"].iter().enumerate() {
            let v =
                (20.0 * (1.0 + (t / 17.0 + q as f64).sin()) * unit(seed, q as u64, (t / 5.0) as u64)).floor();
            write_series_line(o, name, [("queue", *queue)], v, None);
        }

        write_help_line(o, "demo_build_info", "Build information; always 1.");
        write_type_line(o, "demo_build_info", MetricType::Gauge);
        write_series_line(o, "demo_build_info", [("version", env!("CARGO_PKG_VERSION"))], 1.0, None);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Entry, TextParser};

    #[test]
    fn demo_body_parses_and_has_about_the_asked_series() {
        let d = Demo {
            opts: DemoOptions { series: 200, seed: 1 },
            started: Instant::now(),
            paths: (0..(200 - 8) / SERIES_PER_PATH).map(|i| format!("/p{i}")).collect(),
        };
        let body = d.render();
        let mut n = 0;
        for e in TextParser::new(&body) {
            match e {
                Ok(Entry::Series(_)) => n += 1,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!((150..=220).contains(&n), "{n} series");
    }
}
