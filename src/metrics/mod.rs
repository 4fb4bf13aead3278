//! The node's own metrics (`/metrics`): counters, gauges and histograms with label vectors, and
//! a registry that renders them — plus any component's live statistics — in the text format.
//! Components own their metric structs and register them; this module knows none of them.

mod process;

pub use process::register_process_metrics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::exposition::{write_help_line, write_series_line, write_type_line};
use crate::model::MetricType;

/// A float that can be updated from many threads.
#[derive(Debug, Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn add(&self, v: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some((f64::from_bits(b) + v).to_bits()));
    }
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicF64);

impl Counter {
    pub fn inc(&self) {
        self.0.add(1.0);
    }

    pub fn inc_by(&self, v: f64) {
        if v > 0.0 {
            self.0.add(v);
        }
    }

    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicF64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.set(v);
    }

    pub fn add(&self, v: f64) {
        self.0.add(v);
    }

    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

/// A cumulative histogram over fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum: AtomicF64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::default(),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum.add(v);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Default buckets for durations in seconds.
pub const DURATION_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A metric with a fixed set of label names and one child per label-value combination.
pub struct Family<M> {
    name: &'static str,
    help: &'static str,
    label_names: &'static [&'static str],
    children: RwLock<BTreeMap<Vec<String>, Arc<M>>>,
    make: Box<dyn Fn() -> M + Send + Sync>,
}

impl<M: Send + Sync + 'static> Family<M> {
    pub fn new(
        name: &'static str,
        help: &'static str,
        label_names: &'static [&'static str],
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Family<M> {
        Family { name, help, label_names, children: RwLock::new(BTreeMap::new()), make: Box::new(make) }
    }

    /// The child for these label values (in `label_names` order), created on first use.
    pub fn with(&self, values: &[&str]) -> Arc<M> {
        debug_assert_eq!(values.len(), self.label_names.len());
        if let Some(m) =
            self.children.read().get(values.iter().map(|s| s.to_string()).collect::<Vec<_>>().as_slice())
        {
            return m.clone();
        }
        let key: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        self.children.write().entry(key).or_insert_with(|| Arc::new((self.make)())).clone()
    }

    /// Drops the child for these label values (a target or leaf that went away).
    pub fn remove(&self, values: &[&str]) {
        let key: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        self.children.write().remove(&key);
    }

    fn each(&self, mut f: impl FnMut(Vec<(&str, &str)>, &M)) {
        for (values, m) in self.children.read().iter() {
            let labels = self.label_names.iter().copied().zip(values.iter().map(String::as_str)).collect();
            f(labels, m);
        }
    }
}

/// Writes metric families in the text format.
pub struct MetricsWriter {
    out: Vec<u8>,
}

impl MetricsWriter {
    pub fn family(&mut self, name: &str, help: &str, kind: MetricType) {
        write_help_line(&mut self.out, name, help);
        write_type_line(&mut self.out, name, kind);
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        write_series_line(&mut self.out, name, labels.iter().copied(), v, None);
    }

    /// A whole single-sample family.
    pub fn single(&mut self, name: &str, help: &str, kind: MetricType, v: f64) {
        self.family(name, help, kind);
        self.sample(name, &[], v);
    }
}

/// Anything that can write metrics into `/metrics`.
pub trait Collect: Send + Sync {
    fn collect(&self, w: &mut MetricsWriter);
}

impl<F: Fn(&mut MetricsWriter) + Send + Sync> Collect for F {
    fn collect(&self, w: &mut MetricsWriter) {
        self(w)
    }
}

impl Collect for Family<Counter> {
    fn collect(&self, w: &mut MetricsWriter) {
        w.family(self.name, self.help, MetricType::Counter);
        self.each(|l, c| w.sample(self.name, &l, c.get()));
    }
}

impl Collect for Family<Gauge> {
    fn collect(&self, w: &mut MetricsWriter) {
        w.family(self.name, self.help, MetricType::Gauge);
        self.each(|l, g| w.sample(self.name, &l, g.get()));
    }
}

impl Collect for Family<Histogram> {
    fn collect(&self, w: &mut MetricsWriter) {
        w.family(self.name, self.help, MetricType::Histogram);
        let bucket = format!("{}_bucket", self.name);
        let sum = format!("{}_sum", self.name);
        let count = format!("{}_count", self.name);
        self.each(|l, h| {
            let mut cumulative = 0u64;
            for (i, b) in h.bounds.iter().enumerate() {
                cumulative += h.counts[i].load(Ordering::Relaxed);
                let le = fmt_le(*b);
                let mut labels = l.clone();
                labels.push(("le", &le));
                w.sample(&bucket, &labels, cumulative as f64);
            }
            let total = h.count.load(Ordering::Relaxed);
            let mut labels = l.clone();
            labels.push(("le", "+Inf"));
            w.sample(&bucket, &labels, total as f64);
            w.sample(&sum, &l, h.sum.get());
            w.sample(&count, &l, total as f64);
        });
    }
}

fn fmt_le(b: f64) -> String {
    let mut out = Vec::new();
    crate::exposition::write_float(&mut out, b);
    String::from_utf8_lossy(&out).into_owned()
}

/// All collectors of one node, rendered in registration order.
#[derive(Default)]
pub struct Registry {
    collectors: Mutex<Vec<Arc<dyn Collect>>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn register(&self, c: Arc<dyn Collect>) {
        self.collectors.lock().push(c);
    }

    /// The whole `/metrics` body.
    pub fn render(&self) -> Vec<u8> {
        let collectors: Vec<Arc<dyn Collect>> = self.collectors.lock().clone();
        let mut w = MetricsWriter { out: Vec::with_capacity(16 * 1024) };
        for c in collectors {
            c.collect(&mut w);
        }
        w.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families() {
        let reg = Registry::new();
        let c = Arc::new(Family::new("x_total", "Things.", &["job"], Counter::default));
        c.with(&["a"]).inc_by(3.0);
        let h = Arc::new(Family::new("d_seconds", "Durations.", &[], || Histogram::new(&[0.1, 1.0])));
        h.with(&[]).observe(0.5);
        reg.register(c);
        reg.register(h);
        reg.register(Arc::new(|w: &mut MetricsWriter| w.single("g", "A gauge.", MetricType::Gauge, 2.5)));
        let text = String::from_utf8(reg.render()).expect("utf8");
        assert!(text.contains("# TYPE x_total counter\nx_total{job=\"a\"} 3\n"), "{text}");
        assert!(text.contains("d_seconds_bucket{le=\"0.1\"} 0\nd_seconds_bucket{le=\"1\"} 1\nd_seconds_bucket{le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("d_seconds_sum 0.5\nd_seconds_count 1\n"), "{text}");
        assert!(text.contains("# HELP g A gauge.\n# TYPE g gauge\ng 2.5\n"), "{text}");
    }
}
