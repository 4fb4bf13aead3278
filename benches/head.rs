//! Head benchmarks: append throughput by ref, `latest` over 100k series (the `/federate` path),
//! and a regex `select` over 100k series. Run with `cargo bench --bench head`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use promtier::model::{Labels, MatchOp, Matcher};
use promtier::storage::{Appendable, Queryable, SeriesRef};
use promtier::tsdb::Head;

const SCRAPE_MS: i64 = 15_000;

fn labels(i: usize) -> Labels {
    Labels::from_pairs(&[
        ("__name__", format!("metric_{}", i % 100).as_str()),
        ("instance", &format!("host-{i}")),
        ("job", "bench"),
    ])
}

/// A head with `n` series and `scrapes` samples each, plus their refs.
fn populated(n: usize, scrapes: i64) -> (Head, Vec<SeriesRef>) {
    let head = Head::default();
    let mut refs = Vec::with_capacity(n);
    let mut app = head.appender();
    for i in 0..n {
        refs.push(app.append(None, &labels(i), 0, i as f64).expect("append"));
    }
    app.commit().expect("commit");
    for s in 1..scrapes {
        let mut app = head.appender();
        for (i, &r) in refs.iter().enumerate() {
            app.append_ref(r, s * SCRAPE_MS, (i as i64 + s) as f64).expect("append_ref");
        }
        app.commit().expect("commit");
    }
    (head, refs)
}

fn append(c: &mut Criterion) {
    const SERIES: usize = 10_000;
    let (head, refs) = populated(SERIES, 1);
    let mut t = 0i64;
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("append_ref_commit_10k_series", |b| {
        b.iter(|| {
            t += SCRAPE_MS;
            let mut app = head.appender();
            for (i, &r) in refs.iter().enumerate() {
                app.append_ref(r, t, (i as i64 * 3 + t) as f64).expect("append_ref");
            }
            black_box(app.commit().expect("commit"));
        })
    });
    g.bench_function("append_by_labels_commit_10k_series", |b| {
        let ls: Vec<Labels> = (0..SERIES).map(labels).collect();
        b.iter(|| {
            t += SCRAPE_MS;
            let mut app = head.appender();
            for (i, l) in ls.iter().enumerate() {
                app.append(None, l, t, i as f64).expect("append");
            }
            black_box(app.commit().expect("commit"));
        })
    });
    g.finish();
}

fn query(c: &mut Criterion) {
    const SERIES: usize = 100_000;
    let scrapes = 20;
    let (head, _) = populated(SERIES, scrapes);
    let now = (scrapes - 1) * SCRAPE_MS;
    let all = [Matcher::equal("job", "bench")];
    let re = [Matcher::new(MatchOp::Regex, "instance", "host-1.*").expect("regex")];
    let mut g = c.benchmark_group("query_100k_series");
    g.sample_size(20);
    g.bench_function("latest_all", |b| {
        b.iter(|| {
            let q = head.querier(now - 5 * 60_000, now).expect("querier");
            black_box(q.latest(&all).expect("latest").len())
        })
    });
    g.bench_function("select_regex_11pct_decode_all", |b| {
        b.iter(|| {
            let q = head.querier(0, now).expect("querier");
            let n: usize = q.select(&re).expect("select").into_iter().map(|s| s.samples.count()).sum();
            black_box(n)
        })
    });
    g.bench_function("select_regex_all_values", |b| {
        let re_all = [Matcher::new(MatchOp::Regex, "instance", "host-.*").expect("regex")];
        b.iter_batched(
            || head.querier(0, now).expect("querier"),
            |q| black_box(q.select(&re_all).expect("select").len()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, append, query);
criterion_main!(benches);
