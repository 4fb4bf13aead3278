//! `/federate` rendering of 100k series from the head (what a global pulls from every leaf every
//! interval): the whole body, plain and gzip-compressed, without the HTTP layer.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promtier::federate::render;
use promtier::model::{Labels, parse_selector};
use promtier::tsdb::{Head, HeadOptions};

const SERIES: usize = 100_000;

fn head() -> Arc<Head> {
    let head = Head::new(HeadOptions::default()).expect("head");
    let mut app = promtier::storage::Appendable::appender(&head);
    for i in 0..SERIES {
        let target = i / 10_000;
        let path = format!("/api/v1/resource{}", (i / 20) % 500);
        let (name, code) = match i % 4 {
            0 => ("demo_http_requests_total", "200"),
            1 => ("demo_http_requests_total", "500"),
            2 => ("demo_http_request_duration_seconds_bucket", ""),
            _ => ("demo_queue_length", ""),
        };
        let le = format!("{}", 0.005 * ((i % 20) as f64 + 1.0));
        let instance = format!("10.0.{}.{}:9100", target, i % 250);
        let mut pairs = vec![
            ("__name__", name),
            ("instance", instance.as_str()),
            ("job", "demo"),
            ("path", path.as_str()),
            ("env", "prod"),
        ];
        if !code.is_empty() {
            pairs.push(("code", code));
        }
        if name.ends_with("_bucket") {
            pairs.push(("le", le.as_str()));
        }
        let labels = Labels::from_pairs(&pairs);
        let v = if i % 3 == 0 { (i * 17) as f64 } else { i as f64 * 0.37 };
        let _ = app.append(None, &labels, 1_700_000_000_000 + (i % 1000) as i64, v);
    }
    app.commit().expect("commit");
    Arc::new(head)
}

fn bench(c: &mut Criterion) {
    let head = head();
    let all = vec![parse_selector("{__name__=~\".+\"}").expect("selector")];
    let external = Labels::from_pairs(&[("cluster", "bench"), ("replica", "a"), ("shard", "bench-0")]);
    let now = 1_700_000_001_000;
    let mut out = Vec::new();
    render(head.as_ref(), &all, &external, now, Duration::from_secs(300), &mut out).expect("render");
    let size = out.len();
    let mut g = c.benchmark_group("federate");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.sample_size(20);
    g.bench_function("render_100k_series", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(size);
            render(head.as_ref(), black_box(&all), &external, now, Duration::from_secs(300), &mut out)
                .expect("render");
            out
        })
    });
    g.bench_function("latest_only_100k_series", |b| {
        b.iter(|| {
            let q =
                promtier::storage::Queryable::querier(head.as_ref(), now - 300_000, now).expect("querier");
            q.latest(black_box(&all[0])).expect("latest").len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
