//! Merge-mode staleness across modules: one replica's staleness marker must not hide a series
//! another replica still has, neither from `/federate` (rendered over a `MergeQueryable`) nor
//! from PromQL instant and range queries; the series ends only when every replica marked it
//! stale or went silent, and replicas that all went silent keep the lookback semantics.

use std::sync::Arc;
use std::time::Duration;

use promtier::dedup::MergeQueryable;
use promtier::federate::render;
use promtier::model::{Labels, STALE_NAN, parse_selector};
use promtier::promql::Engine;
use promtier::promql::value::Value;
use promtier::storage::{Appendable, Queryable};
use promtier::tsdb::{Head, HeadOptions};

const M: f64 = STALE_NAN;
const LOOKBACK: Duration = Duration::from_secs(300);

/// A merge view over two replicas `a` and `b` of `up_total{job="j"}` with the given samples.
fn merged(a: &[(i64, f64)], b: &[(i64, f64)]) -> MergeQueryable {
    let head = Arc::new(Head::new(HeadOptions::default()).expect("head"));
    let mut app = head.appender();
    for (replica, points) in [("a", a), ("b", b)] {
        let l = Labels::from_pairs(&[("__name__", "up_total"), ("job", "j"), ("replica", replica)]);
        for &(t, v) in points {
            app.append(None, &l, t, v).expect("append");
        }
    }
    app.commit().expect("commit");
    MergeQueryable { inner: head, replica_label: "replica".into(), ingest_lag: Duration::ZERO }
}

/// The sample lines `/federate` renders at `now` (ms).
fn federate(view: &dyn Queryable, now: i64) -> Vec<String> {
    let selectors = vec![parse_selector(r#"{job="j"}"#).expect("selector")];
    let mut out = Vec::new();
    render(view, &selectors, &Labels::empty(), now, LOOKBACK, &mut out).expect("render");
    String::from_utf8(out)
        .expect("utf8")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The value of `up_total` in an instant query at `t` (ms), if the series is present.
fn instant(view: &dyn Queryable, t: i64) -> Option<f64> {
    let r = Engine::default().instant_query(view, "up_total", t).expect("query");
    match r.value {
        Value::Vector(v) => {
            assert!(v.len() <= 1, "one series per replica set: {v:?}");
            v.first().map(|s| s.v)
        }
        other => panic!("not a vector: {other:?}"),
    }
}

/// A scrape every 10 s from `offset` to `stop` (the value is the time); with `marker`, the
/// scrapes end there with a staleness marker.
fn scrapes(offset: i64, stop: i64, marker: Option<i64>) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> =
        (0..).map(|i| offset + i * 10_000).take_while(|t| *t <= stop).map(|t| (t, t as f64)).collect();
    if let Some(m) = marker {
        out.retain(|(t, _)| *t < m);
        out.push((m, M));
    }
    out
}

#[test]
fn a_marker_on_one_replica_keeps_the_series_while_the_other_scrapes() {
    // a loses its target at 100 s (marker), b keeps scraping to 200 s.
    let view = merged(&scrapes(0, 200_000, Some(100_000)), &scrapes(5_000, 195_000, None));
    for now in (10_000..=200_000).step_by(1_000) {
        let lines = federate(&view, now);
        assert_eq!(lines.len(), 1, "at {now}: {lines:?}");
        assert!(instant(&view, now).is_some(), "instant query at {now}");
    }
    assert_eq!(federate(&view, 200_000), [r#"up_total{instance="",job="j"} 195000 195000"#]);
    // A range query sees the series at every step, from b once a marked it stale.
    let r = Engine::default().range_query(&view, "up_total", 10_000, 200_000, 1_000).expect("range");
    let Value::Matrix(m) = r.value else { panic!("not a matrix") };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].points.len(), 191, "a point at every step");
}

#[test]
fn markers_on_both_replicas_end_the_series() {
    let view = merged(&scrapes(0, 200_000, Some(100_000)), &scrapes(5_000, 200_000, Some(105_000)));
    assert_eq!(federate(&view, 102_000).len(), 1, "b is still fresh after a's marker");
    assert!(instant(&view, 102_000).is_some());
    for now in [105_000, 110_000, 150_000] {
        assert!(federate(&view, now).is_empty(), "stale at {now}");
        assert_eq!(instant(&view, now), None, "stale at {now}");
    }
}

#[test]
fn a_silent_replica_and_a_marker_end_the_series() {
    // a stops answering at 50 s (no marker: e.g. its process is stopped); b marks at 100 s.
    let view = merged(&scrapes(0, 50_000, None), &scrapes(5_000, 200_000, Some(100_000)));
    assert_eq!(federate(&view, 95_000).len(), 1);
    for now in [100_000, 120_000] {
        assert!(federate(&view, now).is_empty(), "stale at {now}");
        assert_eq!(instant(&view, now), None, "stale at {now}");
    }
}

#[test]
fn replicas_that_all_went_silent_keep_the_lookback() {
    let view = merged(&scrapes(0, 50_000, None), &scrapes(5_000, 55_000, None));
    // Within the lookback the newest sample (b's at 55 s) is still shown, as one Prometheus would.
    assert_eq!(federate(&view, 200_000), [r#"up_total{instance="",job="j"} 55000 55000"#]);
    assert_eq!(instant(&view, 200_000), Some(55_000.0));
    assert!(federate(&view, 55_000 + 301_000).is_empty(), "gone after the lookback");
}
