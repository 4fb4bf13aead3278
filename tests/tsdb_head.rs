//! Cross-module behaviour of the TSDB head through the `storage` traits: concurrent writers,
//! matcher semantics (via the selector parser), truncation with garbage collection, `latest` with
//! staleness markers, and a model-based property test of append/commit/rollback.

// Helpers outside `#[test]` functions unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;

use promtier::model::{Labels, STALE_NAN, STALE_NAN_BITS, Sample, is_stale_nan, parse_selector};
use promtier::storage::{AppendError, Appendable, Appender, Queryable, SeriesRef};
use promtier::tsdb::{Head, HeadOptions};

fn series(head: &Head, selector: &str, mint: i64, maxt: i64) -> Vec<(Labels, Vec<Sample>)> {
    let q = head.querier(mint, maxt).unwrap();
    let ms = parse_selector(selector).unwrap();
    q.select(&ms).unwrap().into_iter().map(|s| ((*s.labels).clone(), s.samples.collect())).collect()
}

#[test]
fn concurrent_appenders_then_query() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 200;
    const SCRAPES: i64 = 30;
    let head = Arc::new(Head::new(HeadOptions { stripes: 16, ..HeadOptions::default() }).unwrap());
    let shared = Labels::from_pairs(&[("__name__", "shared"), ("job", "all")]);
    let handles: Vec<_> = (0..THREADS)
        .map(|th| {
            let head = Arc::clone(&head);
            let shared = shared.clone();
            thread::spawn(move || {
                let mine: Vec<Labels> = (0..PER_THREAD)
                    .map(|i| {
                        Labels::from_pairs(&[
                            ("__name__", "up"),
                            ("thread", &th.to_string()),
                            ("i", &i.to_string()),
                        ])
                    })
                    .collect();
                let mut refs: Vec<Option<SeriesRef>> = vec![None; PER_THREAD];
                let mut shared_ref = None;
                for s in 0..SCRAPES {
                    let mut app = head.appender();
                    for (l, r) in mine.iter().zip(refs.iter_mut()) {
                        *r = Some(app.append(*r, l, s * 1000, (s * 2) as f64).unwrap());
                    }
                    // Every thread writes the same series at a thread-specific time: some of those
                    // land out of order against the others, none may be lost or duplicated.
                    let t = s * 1000 + th as i64;
                    match app.append(shared_ref, &shared, t, th as f64) {
                        Ok(r) => shared_ref = Some(r),
                        Err(AppendError::OutOfOrder) => {}
                        Err(e) => panic!("{e}"),
                    }
                    app.commit().unwrap();
                }
                shared_ref
            })
        })
        .collect();
    let shared_refs: Vec<Option<SeriesRef>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // One series, one ref, whoever created it.
    let first = shared_refs.iter().flatten().next().copied();
    assert!(shared_refs.iter().flatten().all(|r| Some(*r) == first));

    let got = series(&head, "up", i64::MIN, i64::MAX);
    assert_eq!(got.len(), THREADS * PER_THREAD);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "sorted by labels");
    for (_, samples) in &got {
        let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
        assert_eq!(ts, (0..SCRAPES).map(|s| s * 1000).collect::<Vec<_>>());
    }
    let shared_samples = &series(&head, r#"{__name__="shared"}"#, i64::MIN, i64::MAX)[0].1;
    assert!(shared_samples.windows(2).all(|w| w[0].t < w[1].t));
    let stats = head.stats();
    assert_eq!(stats.series, (THREADS * PER_THREAD + 1) as u64);
    assert_eq!(
        stats.samples_appended,
        (THREADS * PER_THREAD) as u64 * SCRAPES as u64 + shared_samples.len() as u64
    );
    assert_eq!(
        stats.out_of_order + shared_samples.len() as u64,
        THREADS as u64 * SCRAPES as u64,
        "every shared sample is either stored or counted as rejected"
    );
}

fn matcher_head() -> Head {
    let head = Head::default();
    let mut app = head.appender();
    let rows: &[&[(&str, &str)]] = &[
        &[("__name__", "up"), ("job", "api"), ("instance", "a:1")],
        &[("__name__", "up"), ("job", "db"), ("instance", "b:1"), ("env", "prod")],
        &[("__name__", "http_requests_total"), ("job", "api"), ("code", "200")],
        &[("__name__", "http_requests_total"), ("job", "api"), ("code", "500"), ("env", "")],
        &[("job", "nameless")],
    ];
    for (i, pairs) in rows.iter().enumerate() {
        app.append(None, &Labels::from_pairs(pairs), 1000, i as f64).unwrap();
    }
    app.commit().unwrap();
    head
}

#[test]
fn matcher_semantics_table() {
    let head = matcher_head();
    let check = |selector: &str, want: &[usize]| {
        let got: Vec<usize> = series(&head, selector, 0, 2000).iter().map(|(_, s)| s[0].v as usize).collect();
        let mut want = want.to_vec();
        // Results come sorted by labels; compare as sets of row numbers.
        want.sort_unstable();
        let mut got_sorted = got.clone();
        got_sorted.sort_unstable();
        assert_eq!(got_sorted, want, "{selector}");
    };
    check("up", &[0, 1]);
    check(r#"{__name__=~"up|http_.*"}"#, &[0, 1, 2, 3]);
    check(r#"{__name__!~"up"}"#, &[2, 3, 4]);
    check(r#"{__name__!="up", job="api"}"#, &[2, 3]);
    check(r#"{job="api", code!="500"}"#, &[0, 2]);
    check(r#"http_requests_total{code=~"5.."}"#, &[3]);
    check(r#"{env=""}"#, &[0, 2, 3, 4]);
    check(r#"{env!=""}"#, &[1]);
    check(r#"{env=~"prod|"}"#, &[0, 1, 2, 3, 4]);
    check(r#"{env!~"prod"}"#, &[0, 2, 3, 4]);
    check(r#"{env!~".*"}"#, &[]);
    check(r#"{env=~".*", job!="x"}"#, &[0, 1, 2, 3, 4]);
    check(r#"{missing="x"}"#, &[]);
    check(r#"{job=~".+", missing!="x"}"#, &[0, 1, 2, 3, 4]);
    check(r#"{__name__=""}"#, &[4]);
    check(r#"up{instance=~"a.*|b.*", job=~"a.*"}"#, &[0]);

    let q = head.querier(0, 2000).unwrap();
    assert_eq!(q.label_names(&[]).unwrap(), ["__name__", "code", "env", "instance", "job"]);
    assert_eq!(
        q.label_names(&parse_selector("up").unwrap()).unwrap(),
        ["__name__", "env", "instance", "job"]
    );
    assert_eq!(q.label_values("job", &[]).unwrap(), ["api", "db", "nameless"]);
    assert_eq!(q.label_values("code", &parse_selector(r#"{job="api"}"#).unwrap()).unwrap(), ["200", "500"]);
    assert!(head.querier(2000, 3000).unwrap().label_values("job", &[]).unwrap().is_empty());
}

#[test]
fn truncate_collects_series_and_postings() {
    let head = Head::new(HeadOptions { samples_per_chunk: 10, ..HeadOptions::default() }).unwrap();
    let old = Labels::from_pairs(&[("__name__", "gone"), ("pod", "p1")]);
    let live = Labels::from_pairs(&[("__name__", "kept"), ("pod", "p2")]);
    let mut app = head.appender();
    let ro = app.append(None, &old, 0, 1.0).unwrap();
    let rl = app.append(None, &live, 0, 1.0).unwrap();
    for t in 1..30 {
        app.append_ref(ro, t * 10, 1.0).unwrap();
        app.append_ref(rl, t * 10, 1.0).unwrap();
    }
    app.commit().unwrap();
    let mut app = head.appender();
    for t in 30..50 {
        app.append_ref(rl, t * 10, 1.0).unwrap();
    }
    app.commit().unwrap();

    let st = head.truncate(300);
    assert_eq!(st.series_removed, 1);
    assert_eq!(st.chunks_removed, 6);
    let q = head.querier(i64::MIN, i64::MAX).unwrap();
    assert_eq!(q.label_values("pod", &[]).unwrap(), ["p2"]);
    assert_eq!(q.label_values("__name__", &[]).unwrap(), ["kept"]);
    assert!(series(&head, "gone", i64::MIN, i64::MAX).is_empty());
    let kept = &series(&head, "kept", i64::MIN, i64::MAX)[0].1;
    assert_eq!(kept.first().map(|s| s.t), Some(300));
    assert_eq!(kept.len(), 20);

    let mut app = head.appender();
    assert!(matches!(app.append_ref(ro, 1000, 1.0), Err(AppendError::UnknownRef(_))));
    assert!(matches!(app.append(None, &old, 299, 1.0), Err(AppendError::OutOfBounds)));
    let again = app.append(Some(ro), &old, 1000, 2.0).unwrap();
    assert_ne!(again, ro);
    app.commit().unwrap();
    let stats = head.stats();
    assert_eq!((stats.series, stats.series_created, stats.series_removed), (2, 3, 1));
}

#[test]
fn truncate_races_with_appenders() {
    let head = Arc::new(
        Head::new(HeadOptions { samples_per_chunk: 5, stripes: 4, ..HeadOptions::default() }).unwrap(),
    );
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let head = Arc::clone(&head);
            thread::spawn(move || {
                let mut acked = 0u64;
                for t in 0..400i64 {
                    let mut app = head.appender();
                    for i in 0..20 {
                        let l = Labels::from_pairs(&[("w", &w.to_string()), ("i", &i.to_string())]);
                        match app.append(None, &l, t * 10, 1.0) {
                            Ok(_) => {}
                            Err(AppendError::OutOfBounds) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    acked += app.commit().unwrap().samples as u64;
                }
                acked
            })
        })
        .collect();
    let truncator = {
        let head = Arc::clone(&head);
        thread::spawn(move || {
            for m in 0..200i64 {
                head.truncate(m * 10);
                thread::yield_now();
            }
        })
    };
    let reader = {
        let head = Arc::clone(&head);
        thread::spawn(move || {
            let ms = parse_selector(r#"{w=~"0|1|2|3"}"#).unwrap();
            for _ in 0..50 {
                let q = head.querier(i64::MIN, i64::MAX).unwrap();
                let got = q.select(&ms).unwrap();
                assert!(got.windows(2).all(|w| w[0].labels < w[1].labels), "sorted while series come and go");
                for s in got {
                    let ts: Vec<i64> = s.samples.map(|s| s.t).collect();
                    assert!(ts.windows(2).all(|w| w[0] < w[1]));
                }
                let latest = q.latest(&ms).unwrap();
                assert!(latest.windows(2).all(|w| w[0].labels < w[1].labels));
                assert!(q.label_values("w", &[]).unwrap().len() <= 4);
            }
        })
    };
    let acked: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    truncator.join().unwrap();
    reader.join().unwrap();
    assert_eq!(head.stats().samples_appended, acked);
    // Every series still has its newest samples, in order, none lost after the last truncation.
    let got = series(&head, r#"{w=~".+"}"#, 2000, i64::MAX);
    assert_eq!(got.len(), 80);
    for (_, s) in got {
        assert_eq!(s.iter().map(|s| s.t).collect::<Vec<_>>(), (200..400).map(|t| t * 10).collect::<Vec<_>>());
    }
}

#[test]
fn latest_with_stale_markers() {
    let head = Head::default();
    let a = Labels::from_pairs(&[("__name__", "a")]);
    let b = Labels::from_pairs(&[("__name__", "b")]);
    let mut app = head.appender();
    let ra = app.append(None, &a, 1000, 1.0).unwrap();
    let rb = app.append(None, &b, 1000, 5.0).unwrap();
    app.commit().unwrap();
    let mut app = head.appender();
    app.append_ref(ra, 2000, STALE_NAN).unwrap();
    app.append_ref(rb, 2000, 6.0).unwrap();
    app.commit().unwrap();
    // A stale marker repeated with the same bits is a no-op; with another NaN payload it clashes.
    let mut app = head.appender();
    app.append_ref(ra, 2000, STALE_NAN).unwrap();
    assert!(matches!(app.append_ref(ra, 2000, f64::NAN), Err(AppendError::DuplicateTimestamp)));
    assert_eq!(app.commit().unwrap().samples, 0);

    let q = head.querier(0, 2500).unwrap();
    let latest = q.latest(&parse_selector(r#"{__name__=~"a|b"}"#).unwrap()).unwrap();
    assert_eq!(latest.len(), 2);
    assert_eq!(*latest[0].labels, a);
    assert_eq!(latest[0].sample.v.to_bits(), STALE_NAN_BITS);
    assert!(is_stale_nan(latest[0].sample.v));
    assert_eq!(latest[1].sample, Sample { t: 2000, v: 6.0 });
    // Before the marker: the previous value; a window with nothing in it: nothing.
    let q = head.querier(500, 1500).unwrap();
    let latest = q.latest(&parse_selector("a").unwrap()).unwrap();
    assert_eq!(latest[0].sample, Sample { t: 1000, v: 1.0 });
    assert!(head.querier(2001, 9000).unwrap().latest(&parse_selector("a").unwrap()).unwrap().is_empty());
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append { app: usize, series: usize, t: i64, v: u64, by_ref: bool },
        Commit { app: usize },
        Rollback { app: usize },
    }

    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(1.0f64.to_bits()),
            Just(2.0f64.to_bits()),
            Just(STALE_NAN_BITS),
            Just(f64::NAN.to_bits()),
            any::<u64>(),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..2usize, 0..4usize, 0..40i64, value(), any::<bool>())
                .prop_map(|(app, series, t, v, by_ref)| Op::Append { app, series, t, v, by_ref }),
            2 => (0..2usize).prop_map(|app| Op::Commit { app }),
            1 => (0..2usize).prop_map(|app| Op::Rollback { app }),
        ]
    }

    fn labels(i: usize) -> Labels {
        Labels::from_pairs(&[("__name__", "m"), ("s", &i.to_string())])
    }

    /// What the head should say about a sample following `last`.
    fn verdict(last: Option<&(i64, u64)>, t: i64, v: u64) -> Result<bool, &'static str> {
        match last {
            None => Ok(true),
            Some(&(lt, _)) if t > lt => Ok(true),
            Some(&(lt, lv)) if t == lt && v == lv => Ok(false),
            Some(&(lt, _)) if t == lt => Err("dup"),
            Some(_) => Err("ooo"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        #[test]
        fn head_returns_exactly_what_was_committed(ops in prop::collection::vec(op(), 1..120)) {
            let head = Head::new(HeadOptions { samples_per_chunk: 4, chunk_range_ms: 16, stripes: 2 }).unwrap();
            let mut committed: BTreeMap<usize, Vec<(i64, u64)>> = BTreeMap::new();
            let mut staged: [Vec<(usize, i64, u64)>; 2] = [Vec::new(), Vec::new()];
            let mut apps: [Option<Box<dyn Appender + '_>>; 2] = [None, None];
            let mut refs: BTreeMap<usize, SeriesRef> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Append { app, series, t, v, by_ref } => {
                        let a = apps[app].get_or_insert_with(|| head.appender());
                        let res = match refs.get(&series) {
                            Some(&r) if by_ref => a.append_ref(r, t, f64::from_bits(v)).map(|_| r),
                            cached => a.append(cached.copied(), &labels(series), t, f64::from_bits(v)),
                        };
                        let want = verdict(committed.get(&series).and_then(|c| c.last()), t, v);
                        match (res, want) {
                            (Ok(r), Ok(stage)) => {
                                refs.insert(series, r);
                                if stage {
                                    staged[app].push((series, t, v));
                                }
                            }
                            (Err(AppendError::DuplicateTimestamp), Err("dup")) => {}
                            (Err(AppendError::OutOfOrder), Err("ooo")) => {}
                            (got, want) => prop_assert!(false, "append: got {got:?}, want {want:?}"),
                        }
                    }
                    Op::Commit { app } => {
                        let Some(a) = apps[app].take() else { continue };
                        let stats = a.commit().unwrap();
                        let (mut ok, mut rejected) = (0, 0);
                        for (series, t, v) in staged[app].drain(..) {
                            let list = committed.entry(series).or_default();
                            match verdict(list.last(), t, v) {
                                Ok(true) => {
                                    list.push((t, v));
                                    ok += 1;
                                }
                                Ok(false) => {}
                                Err(_) => rejected += 1,
                            }
                        }
                        prop_assert_eq!((stats.samples, stats.rejected), (ok, rejected));
                    }
                    Op::Rollback { app } => {
                        if let Some(a) = apps[app].take() {
                            a.rollback();
                        }
                        staged[app].clear();
                    }
                }
            }
            drop(apps);
            committed.retain(|_, v| !v.is_empty());
            let got = series(&head, "m", i64::MIN, i64::MAX);
            let want: Vec<(Labels, Vec<(i64, u64)>)> =
                committed.iter().map(|(&i, v)| (labels(i), v.clone())).collect();
            let mut want = want;
            want.sort_by(|a, b| a.0.cmp(&b.0));
            let got: Vec<(Labels, Vec<(i64, u64)>)> = got
                .into_iter()
                .map(|(l, s)| (l, s.into_iter().map(|s| (s.t, s.v.to_bits())).collect()))
                .collect();
            prop_assert_eq!(&got, &want);
            // Sub-ranges and latest agree with the full data.
            let q = head.querier(10, 25).unwrap();
            let latest = q.latest(&parse_selector("m").unwrap()).unwrap();
            let want_latest: Vec<(Labels, (i64, u64))> = want
                .iter()
                .filter_map(|(l, s)| s.iter().rev().find(|(t, _)| (10..=25).contains(t)).map(|&x| (l.clone(), x)))
                .collect();
            let got_latest: Vec<(Labels, (i64, u64))> =
                latest.into_iter().map(|l| ((*l.labels).clone(), (l.sample.t, l.sample.v.to_bits()))).collect();
            prop_assert_eq!(got_latest, want_latest);
            let ranged: Vec<Vec<(i64, u64)>> = q
                .select(&parse_selector("m").unwrap())
                .unwrap()
                .into_iter()
                .map(|s| s.samples.map(|s| (s.t, s.v.to_bits())).collect())
                .collect();
            let want_ranged: Vec<Vec<(i64, u64)>> = want
                .iter()
                .map(|(_, s)| s.iter().copied().filter(|(t, _)| (10..=25).contains(t)).collect::<Vec<_>>())
                .filter(|s: &Vec<_>| !s.is_empty())
                .collect();
            prop_assert_eq!(ranged, want_ranged);
        }
    }
}
