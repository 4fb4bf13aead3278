//! Throughput of the text-format parser on a realistic 100k-sample scrape body: parsing alone,
//! parsing plus the scrape-cache lookup by raw series bytes (SipHash and xxh3 keyed maps), and
//! parsing plus decoding every label pair (what a cache miss costs).
//!
//! `cargo bench --bench exposition`

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promtier::exposition::{Entry, TextParser, write_help_line, write_series_line, write_type_line};
use promtier::model::MetricType;

const SAMPLES: usize = 100_000;

/// A small deterministic generator (xorshift64*), so every run parses the same body.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const CODES: &[&str] = &["200", "201", "304", "404", "500", "503"];
const HANDLERS: &[&str] =
    &["/api/v1/query_range", "/api/v1/series", "/metrics", "/-/healthy", "/api/v2/orders/{id}"];
const CONTAINERS: &[&str] = &["app", "istio-proxy", "log-shipper", "migrations"];
const GRPC_METHODS: &[&str] = &["Authorize", "Capture", "Refund", "GetStatus", "ListTransactions"];
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, f64::INFINITY];
const FS_TYPES: &[&str] = &["ext4", "xfs", "tmpfs", "overlay"];
const NAMESPACES: &[&str] = &["default", "kube-system", "monitoring", "payments", "storefront"];

/// Writes families as client libraries do (sorted label names, 3 to 6 labels, no timestamps;
/// `job` and `instance` are added by the scraper, not exposed): HTTP counters, per-container
/// restart counters, classic histograms, cAdvisor-style gauges and filesystem gauges with long
/// label values, until `SAMPLES` samples are written. About 100 bytes a sample.
fn scrape_body() -> Vec<u8> {
    let mut out = Vec::with_capacity(10 << 20);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut written = 0;
    let mut family = 0;
    let mut sample = |out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], v: f64| {
        if written < SAMPLES {
            write_series_line(out, name, labels.iter().copied(), v, None);
            written += 1;
        }
        written < SAMPLES
    };
    'families: loop {
        family += 1;
        match family % 5 {
            0 => {
                let name = format!("http_requests_total_{family}");
                write_help_line(
                    &mut out,
                    &name,
                    "Total number of HTTP requests by method, code and handler.",
                );
                write_type_line(&mut out, &name, MetricType::Counter);
                for handler in HANDLERS {
                    for method in METHODS {
                        for code in CODES {
                            let labels = [("code", *code), ("handler", handler), ("method", method)];
                            if !sample(&mut out, &name, &labels, rng.below(10_000_000) as f64) {
                                break 'families;
                            }
                        }
                    }
                }
            }
            1 => {
                let name = format!("kube_pod_restarts_total_{family}");
                write_help_line(&mut out, &name, "The number of container restarts per container.");
                write_type_line(&mut out, &name, MetricType::Counter);
                for p in 0..64 {
                    let pod = format!("web-{:x}-{:05x}", rng.below(1 << 28), rng.below(1 << 20));
                    let labels = [
                        ("container", CONTAINERS[p % CONTAINERS.len()]),
                        ("namespace", rng.pick(NAMESPACES)),
                        ("pod", &pod),
                    ];
                    if !sample(&mut out, &name, &labels, rng.below(20) as f64) {
                        break 'families;
                    }
                }
            }
            2 => {
                let name = format!("grpc_server_handling_seconds_{family}");
                write_help_line(
                    &mut out,
                    &name,
                    "Histogram of response latency of gRPC handled by the server.",
                );
                write_type_line(&mut out, &name, MetricType::Histogram);
                for method in &GRPC_METHODS[..3] {
                    let base = [
                        ("grpc_method", *method),
                        ("grpc_service", "pay.v1.Payments"),
                        ("grpc_type", "unary"),
                    ];
                    let mut count = 0;
                    let mut le_text = Vec::new();
                    for le in BUCKETS {
                        count += rng.below(500);
                        le_text.clear();
                        promtier::exposition::write_float(&mut le_text, *le);
                        let le = String::from_utf8_lossy(&le_text).into_owned();
                        let mut labels = base.to_vec();
                        labels.push(("le", &le));
                        if !sample(&mut out, &format!("{name}_bucket"), &labels, count as f64) {
                            break 'families;
                        }
                    }
                    let sum = count as f64 * 0.0173;
                    if !sample(&mut out, &format!("{name}_sum"), &base, sum)
                        || !sample(&mut out, &format!("{name}_count"), &base, count as f64)
                    {
                        break 'families;
                    }
                }
            }
            3 => {
                // cAdvisor style: six labels, two of them long.
                let name = format!("container_memory_working_set_bytes_{family}");
                write_help_line(&mut out, &name, "Current working set of the container in bytes.");
                write_type_line(&mut out, &name, MetricType::Gauge);
                for c in 0..4 {
                    let pod = format!("checkout-{:x}-{:05x}", rng.below(1 << 28), rng.below(1 << 20));
                    let id = format!(
                        "/kubepods/burstable/pod{:016x}/{:016x}{:016x}",
                        rng.next(),
                        rng.next(),
                        rng.next()
                    );
                    let container = CONTAINERS[c % CONTAINERS.len()];
                    let image =
                        format!("registry.example.com/storefront/{container}:v2.{}.{}", rng.below(40), c);
                    let labels = [
                        ("container", container),
                        ("id", id.as_str()),
                        ("image", image.as_str()),
                        ("name", "k8s_app"),
                        ("namespace", rng.pick(NAMESPACES)),
                        ("pod", pod.as_str()),
                    ];
                    if !sample(&mut out, &name, &labels, (rng.below(1 << 30) + c) as f64) {
                        break 'families;
                    }
                }
            }
            _ => {
                let name = format!("node_filesystem_avail_bytes_{family}");
                write_help_line(&mut out, &name, "Filesystem space available to non-root users in bytes.");
                write_type_line(&mut out, &name, MetricType::Gauge);
                for pod in 0..3 {
                    let device = format!("/dev/nvme{}n1p{}", pod % 4, pod % 3 + 1);
                    let mount = format!(
                        "/var/lib/kubelet/pods/{:016x}-{:04x}/volumes/kubernetes.io~projected/kube-api-access-{pod}",
                        rng.next(),
                        rng.below(0xffff),
                    );
                    let labels =
                        [("device", device.as_str()), ("fstype", rng.pick(FS_TYPES)), ("mountpoint", &mount)];
                    if !sample(&mut out, &name, &labels, rng.next() as f64 / 1e9) {
                        break 'families;
                    }
                }
            }
        }
    }
    out
}

/// A one-shot xxh3 hasher for byte-string keys: `Hash for [u8]` writes the length, then the bytes.
#[derive(Default)]
struct Xxh3OneShot(u64);

impl Hasher for Xxh3OneShot {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 ^= n as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn series_count(body: &[u8]) -> usize {
    TextParser::new(body).filter(|e| matches!(e, Ok(Entry::Series(_)))).count()
}

/// The steady state of a scrape cache: every series of the body is known, keyed by raw bytes.
fn cache_for<S: BuildHasher + Default>(body: &[u8]) -> HashMap<Box<[u8]>, u64, S> {
    let mut cache = HashMap::with_hasher(S::default());
    for (k, e) in TextParser::new(body).enumerate() {
        if let Ok(Entry::Series(s)) = e {
            cache.insert(Box::from(s.raw()), k as u64);
        }
    }
    cache
}

fn parse_only(body: &[u8]) -> f64 {
    let mut sum = 0.0;
    for e in TextParser::new(body) {
        match e {
            Ok(Entry::Series(s)) => sum += s.value(),
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    sum
}

fn parse_and_lookup<S: BuildHasher>(body: &[u8], cache: &HashMap<Box<[u8]>, u64, S>) -> u64 {
    let mut acc = 0u64;
    for e in TextParser::new(body) {
        match e {
            Ok(Entry::Series(s)) => match cache.get(s.raw()) {
                Some(r) => acc = acc.wrapping_add(*r ^ s.value().to_bits()),
                None => panic!("cache miss"),
            },
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    acc
}

fn parse_and_decode(body: &[u8]) -> usize {
    let mut bytes = 0;
    for e in TextParser::new(body) {
        match e {
            Ok(Entry::Series(s)) => {
                bytes += s.name().len();
                for (n, v) in s.labels() {
                    bytes += n.len() + v.len();
                }
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let body = scrape_body();
    let samples = series_count(&body);
    assert_eq!(samples, SAMPLES);
    eprintln!("scrape body: {samples} samples, {} bytes", body.len());
    // Set to a file path to look at (or reuse) the generated body.
    if let Some(path) = std::env::var_os("PROMTIER_BENCH_DUMP")
        && let Err(e) = std::fs::write(&path, &body)
    {
        eprintln!("cannot write {}: {e}", path.to_string_lossy());
    }
    let sip: HashMap<Box<[u8]>, u64> = cache_for(&body);
    let xxh3: HashMap<Box<[u8]>, u64, BuildHasherDefault<Xxh3OneShot>> = cache_for(&body);

    let mut group = c.benchmark_group("exposition");
    group.throughput(Throughput::ElementsAndBytes { elements: samples as u64, bytes: body.len() as u64 });
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    group.bench_function("parse", |b| b.iter(|| parse_only(black_box(&body))));
    group.bench_function("parse+lookup/siphash", |b| b.iter(|| parse_and_lookup(black_box(&body), &sip)));
    group.bench_function("parse+lookup/xxh3", |b| b.iter(|| parse_and_lookup(black_box(&body), &xxh3)));
    group.bench_function("parse+decode_labels", |b| b.iter(|| parse_and_decode(black_box(&body))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
