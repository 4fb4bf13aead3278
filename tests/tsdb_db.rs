//! The database through the `storage` traits: WAL replay (also over a torn tail), block cutting
//! and reading, block bounds that follow the data, checkpoints, compaction, imported blocks over
//! the head's range (issue 9), a full disk, and a model-based property test that head + WAL
//! replay + blocks return exactly what was appended.

// Helpers outside `#[test]` functions unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use promtier::model::{Labels, STALE_NAN_BITS, parse_selector};
use promtier::storage::{AppendError, Appendable, Queryable, Storage};
use promtier::tsdb::db::write_head_blocks;
use promtier::tsdb::fs::{FaultyFs, RealFs};
use promtier::tsdb::wal::WalSync;
use promtier::tsdb::{Db, DbOptions, Head, HeadOptions};
use proptest::prelude::*;

type Dump = BTreeMap<String, Vec<(i64, u64)>>;
/// Like [`Dump`], for data written out of time order (one sample per timestamp).
type Model = BTreeMap<String, BTreeMap<i64, u64>>;

fn dump(db: &Db, mint: i64, maxt: i64) -> Dump {
    let q = db.querier(mint, maxt).unwrap();
    q.select(&parse_selector("{__name__=~\".+\"}").unwrap())
        .unwrap()
        .into_iter()
        .map(|s| (s.labels.to_string(), s.samples.map(|x| (x.t, x.v.to_bits())).collect()))
        .collect()
}

fn labels(i: usize) -> Labels {
    Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string()), ("job", "test")])
}

fn opts(range: i64) -> DbOptions {
    DbOptions { block_range_ms: range, wal_segment_bytes: 1 << 16, ..DbOptions::default() }
}

/// Appends `series` × samples at `ts`, one commit per timestamp; returns what was appended.
fn fill(db: &Db, series: usize, ts: impl IntoIterator<Item = i64>, model: &mut Dump) {
    for t in ts {
        let mut app = db.appender();
        for i in 0..series {
            let v = (t as f64 * 0.5 + i as f64).floor();
            app.append(None, &labels(i), t, v).unwrap();
            model.entry(labels(i).to_string()).or_default().push((t, v.to_bits()));
        }
        app.commit().unwrap();
    }
}

fn block_dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().path().join("meta.json").exists()).count()
}

#[test]
fn wal_replay_restores_unflushed_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Dump::new();
    {
        let db = Db::open(dir.path(), opts(3_600_000)).unwrap();
        fill(&db, 10, (0..50).map(|i| i * 1000), &mut model);
        // A stale marker must come back bit for bit.
        let mut app = db.appender();
        app.append(None, &labels(0), 60_000, f64::from_bits(STALE_NAN_BITS)).unwrap();
        app.commit().unwrap();
        model.get_mut(&labels(0).to_string()).unwrap().push((60_000, STALE_NAN_BITS));
        // Dropped without close: what a crash leaves.
    }
    let db = Db::open(dir.path(), opts(3_600_000)).unwrap();
    assert_eq!(dump(&db, i64::MIN, i64::MAX), model);
    let second = Db::open(dir.path(), opts(3_600_000)).expect_err("one process per data directory");
    assert!(second.to_string().contains("in use"), "{second}");
    // Appending goes on after the replayed data, under the same series.
    fill(&db, 10, [61_000], &mut model);
    drop(db);
    let db = Db::open(dir.path(), opts(3_600_000)).unwrap();
    assert_eq!(dump(&db, i64::MIN, i64::MAX), model);
    assert_eq!(db.head().stats().series, 10);
}

#[test]
fn torn_wal_tail_is_cut_and_the_db_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Dump::new();
    {
        let db = Db::open(dir.path(), opts(3_600_000)).unwrap();
        fill(&db, 5, (0..20).map(|i| i * 1000), &mut model);
    }
    let wal = dir.path().join("wal");
    let mut segs: Vec<_> =
        std::fs::read_dir(&wal).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    segs.sort();
    // The newest segment is empty (opened by the last start); tear the one before it.
    let torn = segs.iter().rev().find(|p| std::fs::metadata(p).unwrap().len() > 0).unwrap().clone();
    let mut data = std::fs::read(&torn).unwrap();
    data.extend_from_slice(&[0x20, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 2, 1, 2]);
    std::fs::write(&torn, &data).unwrap();
    let db = Db::open(dir.path(), opts(3_600_000)).unwrap();
    assert_eq!(dump(&db, i64::MIN, i64::MAX), model);
    assert_eq!(db.stats().replay_torn, 1);
}

#[test]
fn blocks_are_cut_queried_checkpointed_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Dump::new();
    let db = Db::open(dir.path(), opts(10_000)).unwrap();
    // 95 s of data at 500 ms: the head can give up ranges [0,10s) … [70s,80s).
    fill(&db, 20, (0..190).map(|i| i * 500), &mut model);
    let before = dump(&db, i64::MIN, i64::MAX);
    assert_eq!(before, model);
    let stats = db.maintain().unwrap();
    assert_eq!(stats.blocks_cut, 8, "{stats:?}");
    assert!(stats.compactions >= 2, "[0,30s) and [30s,60s) windows are complete: {stats:?}");
    let metas = db.blocks();
    assert!(metas.iter().any(|m| m.compaction.level == 2), "{metas:?}");
    assert!(metas.windows(2).all(|w| w[0].max_time <= w[1].min_time), "no overlaps: {metas:?}");
    // Bounds are the data's: the oldest sample, the newest + 1 (the last sample of a range is
    // 500 ms before its end), for cut and compacted blocks alike.
    for m in &metas {
        assert!(m.min_time % 10_000 == 0 && (m.max_time - 1 + 500) % 10_000 == 0, "{m:?}");
        assert!(m.compaction.hints.is_empty(), "{m:?}");
    }
    assert_eq!(block_dirs(dir.path()), metas.len(), "compacted parents deleted");
    // Head + blocks answer exactly as before, in any range.
    assert_eq!(dump(&db, i64::MIN, i64::MAX), model);
    let part = |lo: i64, hi: i64| -> Dump {
        model
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().copied().filter(|(t, _)| *t >= lo && *t <= hi).collect()))
            .collect()
    };
    assert_eq!(dump(&db, 9_500, 30_500), part(9_500, 30_500));
    assert_eq!(dump(&db, 79_000, 81_000), part(79_000, 81_000));
    // latest over a range ending inside a block.
    let q = db.querier(0, 25_200).unwrap();
    let latest = q.latest(&parse_selector("m{i=\"3\"}").unwrap()).unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].sample.t, 25_000);
    assert_eq!(q.label_values("i", &[]).unwrap().len(), 20);
    // The WAL holds a checkpoint plus what came after; replay restores the head only.
    let wal: Vec<String> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert!(wal.iter().any(|n| n.starts_with("checkpoint.")), "{wal:?}");
    drop(db);
    let db = Db::open(dir.path(), opts(10_000)).unwrap();
    assert_eq!(dump(&db, i64::MIN, i64::MAX), model);
    assert!(db.head().min_time().unwrap() >= 80_000);
    // The cut blocks still bound the head: a sample inside one is refused.
    let mut app = db.appender();
    let err = app.append(None, &labels(99), 79_000, 1.0).expect_err("inside a cut block");
    assert!(matches!(err, AppendError::OutOfBounds), "{err}");
}

/// Series `i` of the import tests, with a value that is a function of the time (so that the head
/// and an import agree wherever both hold a timestamp).
fn value(i: usize, t: i64) -> f64 {
    (t / 100) as f64 + i as f64
}

/// Writes `series` × `ts` as imported blocks of `range` into `dir`, recording them in `model`.
fn import(dir: &Path, range: i64, series: &[usize], ts: &[i64], model: &mut Model) {
    let head = Head::new(HeadOptions { chunk_range_ms: range, ..HeadOptions::default() }).unwrap();
    let mut app = head.appender();
    for &i in series {
        for &t in ts {
            app.append(None, &labels(i), t, value(i, t)).unwrap();
            model.entry(labels(i).to_string()).or_default().insert(t, value(i, t).to_bits());
        }
    }
    app.commit().unwrap();
    let metas = write_head_blocks(dir, &head, range, &RealFs, |_| {}).unwrap();
    for m in &metas {
        assert!(m.compaction.is_import(), "{m:?}");
    }
}

fn flat(model: &Model) -> Dump {
    model.iter().map(|(k, v)| (k.clone(), v.iter().map(|(t, v)| (*t, *v)).collect())).collect()
}

#[test]
fn issue_9_import_over_the_heads_range_is_merged_and_refuses_or_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let append = |db: &Db, series: &[usize], ts: &[i64], model: &mut Model| {
        for &t in ts {
            let mut app = db.appender();
            for &i in series {
                app.append(None, &labels(i), t, value(i, t)).unwrap();
                model.entry(labels(i).to_string()).or_default().insert(t, value(i, t).to_bits());
            }
            app.commit().unwrap();
        }
    };
    // A minute in the head (and its WAL) only.
    let head_ts: Vec<i64> = (0..=60).map(|i| i * 1000).collect();
    {
        let db = Db::open(dir.path(), opts(10_000)).unwrap();
        append(&db, &[0, 1, 2], &head_ts, &mut model);
    }
    // An import of the same series and one more, over the head's last half minute and past it.
    let import_ts: Vec<i64> = (60..=180).map(|i| i * 500).collect();
    import(dir.path(), 10_000, &[1, 2, 7], &import_ts, &mut model);
    let db = Db::open(dir.path(), opts(10_000)).unwrap();
    assert_eq!(db.blocks().len(), 7, "[30s,40s) … [90s,100s)");
    let last = db.blocks().into_iter().max_by_key(|m| m.max_time).unwrap();
    assert_eq!((last.min_time, last.max_time), (90_000, 90_001), "bounds are the data's");
    // Every WAL sample was replayed, under and past the imported range.
    assert_eq!(dump(&db, i64::MIN, i64::MAX), flat(&model));
    // The head accepts samples inside the imported range, and after it.
    append(&db, &[0, 5], &[61_000, 62_000, 95_000], &mut model);
    append(&db, &[1, 2, 7], &[95_000], &mut model);
    assert_eq!(db.head().stats().out_of_bounds, 0);
    assert_eq!(dump(&db, i64::MIN, i64::MAX), flat(&model));
    // Cutting the head's ranges makes blocks that overlap the imported ones: compaction merges
    // them, one sample per timestamp.
    append(&db, &[0], &(96..=130).map(|i| i * 1000).collect::<Vec<_>>(), &mut model);
    db.maintain().unwrap();
    let metas = db.blocks();
    assert!(metas.windows(2).all(|w| w[0].max_time <= w[1].min_time), "overlaps left: {metas:?}");
    assert!(metas.iter().any(|m| m.compaction.level > 1 && m.compaction.is_import()), "{metas:?}");
    assert_eq!(dump(&db, i64::MIN, i64::MAX), flat(&model));
    drop(db);
    let db = Db::open(dir.path(), opts(10_000)).unwrap();
    assert_eq!(dump(&db, i64::MIN, i64::MAX), flat(&model));
}

#[test]
fn issue_9_a_block_ending_in_the_future_refuses_nothing() {
    // An import written before block bounds followed the data: its max time is the end of its
    // 2 h range, an hour or more from now, and it has no import hint.
    let dir = tempfile::tempdir().unwrap();
    let range = 2 * 3_600_000;
    let now = promtier::model::now_ms();
    let mut model = Model::new();
    let ts: Vec<i64> = (1..=40).rev().map(|i| now - 60_000 - i * 15_000).collect();
    import(dir.path(), range, &[3], &ts, &mut model);
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let meta = e.unwrap().path().join("meta.json");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        json["maxTime"] = serde_json::json!(now + 3_600_000);
        json["compaction"].as_object_mut().unwrap().remove("hints");
        std::fs::write(&meta, serde_json::to_vec(&json).unwrap()).unwrap();
    }
    let db = Db::open(dir.path(), opts(range)).unwrap();
    let mut app = db.appender();
    app.append(None, &labels(3), now, value(3, now)).unwrap();
    app.commit().unwrap();
    model.entry(labels(3).to_string()).or_default().insert(now, value(3, now).to_bits());
    assert_eq!(dump(&db, i64::MIN, i64::MAX), flat(&model));
}

#[test]
fn full_disk_fails_commits_loudly_keeps_acknowledged_data_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut model = Dump::new();
    let o = || DbOptions { fs: Arc::new(fs.clone()), wal_sync: WalSync::Commit, ..opts(3_600_000) };
    let db = Db::open(dir.path(), o()).unwrap();
    fill(&db, 5, (0..10).map(|i| i * 1000), &mut model);
    assert!(db.ready().is_ok());
    for space in [0, 7, 15] {
        fs.set_space(Some(space));
        let mut app = db.appender();
        app.append(None, &labels(1), 20_000 + space as i64, 1.0).unwrap();
        let err = app.commit().expect_err("a full disk must fail the commit");
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(db.ready().is_err(), "not ready while the WAL cannot be written");
        // Not applied: readers never see an unacknowledged sample.
        assert_eq!(dump(&db, i64::MIN, i64::MAX), model);
    }
    fs.set_space(None);
    fill(&db, 5, [30_000], &mut model);
    assert!(db.ready().is_ok(), "writes resumed");
    drop(db);
    let db = Db::open(dir.path(), o()).unwrap();
    assert_eq!(dump(&db, i64::MIN, i64::MAX), model, "nothing acknowledged lost, nothing refused kept");
    assert_eq!(db.stats().replay_torn, 0, "failed writes left no partial record");
}

#[test]
fn failed_block_write_keeps_the_head_and_succeeds_later() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut model = Dump::new();
    let db = Db::open(dir.path(), DbOptions { fs: Arc::new(fs.clone()), ..opts(10_000) }).unwrap();
    fill(&db, 5, (0..40).map(|i| i * 500), &mut model);
    fs.set_space(Some(100));
    assert!(db.maintain().is_err());
    assert!(db.blocks().is_empty());
    assert_eq!(dump(&db, i64::MIN, i64::MAX), model);
    assert!(
        !std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
    fs.set_space(None);
    assert_eq!(db.maintain().unwrap().blocks_cut, 1);
    assert_eq!(dump(&db, i64::MIN, i64::MAX), model);
}

#[derive(Debug, Clone)]
enum Op {
    /// Append at the next timestamps (step ms) for these series, with these values.
    Append {
        step: i64,
        series: Vec<u8>,
        values: Vec<u64>,
    },
    Maintain,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1i64..400, prop::collection::vec(0u8..6, 1..6), prop::collection::vec(prop_oneof![
            3 => (0u64..100).prop_map(|i| (i as f64).to_bits()),
            1 => Just(STALE_NAN_BITS),
            1 => any::<u64>(),
        ], 6)).prop_map(|(step, series, values)| Op::Append { step, series, values }),
        1 => Just(Op::Maintain),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn head_wal_and_blocks_return_exactly_what_was_appended(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let o = || DbOptions { block_range_ms: 1000, wal_segment_bytes: 1 << 16, ..DbOptions::default() };
        let mut db = Db::open(dir.path(), o()).unwrap();
        let mut model = Dump::new();
        let mut t = 0i64;
        for op in ops {
            match op {
                Op::Append { step, series, values } => {
                    t += step;
                    let mut app = db.appender();
                    let mut staged = Vec::new();
                    for (k, s) in series.iter().enumerate() {
                        let l = labels(*s as usize);
                        if staged.contains(&l.to_string()) {
                            continue;
                        }
                        app.append(None, &l, t, f64::from_bits(values[k])).unwrap();
                        staged.push(l.to_string());
                        model.entry(l.to_string()).or_default().push((t, values[k]));
                    }
                    app.commit().unwrap();
                }
                Op::Maintain => { db.maintain().unwrap(); }
                Op::Reopen => {
                    drop(db);
                    db = Db::open(dir.path(), o()).unwrap();
                }
            }
            prop_assert_eq!(&dump(&db, i64::MIN, i64::MAX), &model);
        }
        drop(db);
        let db = Db::open(dir.path(), o()).unwrap();
        prop_assert_eq!(&dump(&db, i64::MIN, i64::MAX), &model);
    }
}

#[test]
fn block_index_answers_matchers_like_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts(1000)).unwrap();
    let head =
        promtier::tsdb::Head::new(promtier::tsdb::HeadOptions { chunk_range_ms: 1000, ..Default::default() })
            .unwrap();
    let jobs = ["api", "db", "web\nx", "a|b"];
    for t in (0..8000).step_by(250) {
        let (mut a, mut b) = (db.appender(), head.appender());
        for i in 0..40usize {
            let mut pairs =
                vec![("__name__", if i % 3 == 0 { "up" } else { "req_total" }), ("job", jobs[i % 4])];
            let inst = format!("host-{i}");
            pairs.push(("instance", &inst));
            if i % 5 == 0 {
                pairs.push(("env", "prod"));
            }
            let l = Labels::from_pairs(&pairs);
            a.append(None, &l, t, i as f64).unwrap();
            b.append(None, &l, t, i as f64).unwrap();
        }
        a.commit().unwrap();
        b.commit().unwrap();
    }
    db.maintain().unwrap();
    assert!(db.blocks().len() >= 2);
    let selectors = [
        "{__name__=~\".+\"}",
        "up",
        "req_total{job=\"db\"}",
        "{job=~\"a.*|db\"}",
        "{job!=\"api\", env=\"\"}",
        "{env!=\"\"}",
        "{job=~\"web.x\"}",
        "{job=\"a|b\", instance=~\"host-1.*\"}",
        "{job!~\"api|db\", __name__=\"up\"}",
        "{nope=\"x\"}",
        "{instance=~\"host-(3|7)\"}",
    ];
    for (lo, hi) in [(0, 2999), (500, 1700), (0, 0)] {
        let (qd, qh) = (db.querier(lo, hi).unwrap(), head.querier(lo, hi).unwrap());
        for sel in selectors {
            let ms = parse_selector(sel).unwrap();
            let got: Vec<(String, Vec<(i64, u64)>)> = qd
                .select(&ms)
                .unwrap()
                .into_iter()
                .map(|s| (s.labels.to_string(), s.samples.map(|x| (x.t, x.v.to_bits())).collect()))
                .collect();
            let want: Vec<(String, Vec<(i64, u64)>)> = qh
                .select(&ms)
                .unwrap()
                .into_iter()
                .map(|s| (s.labels.to_string(), s.samples.map(|x| (x.t, x.v.to_bits())).collect()))
                .collect();
            assert_eq!(got, want, "{sel} in [{lo}, {hi}]");
            let lat = |q: &dyn promtier::storage::Querier| -> Vec<(String, i64)> {
                q.latest(&ms).unwrap().into_iter().map(|l| (l.labels.to_string(), l.sample.t)).collect()
            };
            assert_eq!(lat(qd.as_ref()), lat(qh.as_ref()), "latest {sel}");
            assert_eq!(qd.label_values("job", &ms).unwrap(), qh.label_values("job", &ms).unwrap(), "{sel}");
            assert_eq!(qd.label_names(&ms).unwrap(), qh.label_names(&ms).unwrap(), "{sel}");
        }
    }
}

#[test]
fn head_cardinality_counts_the_head_only() {
    // What `/api/v1/status/tsdb` shows: a series whose samples all went to blocks is not there.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts(10_000)).unwrap();
    let old = Labels::from_pairs(&[("__name__", "old"), ("job", "test")]);
    let mut app = db.appender();
    app.append(None, &old, 1_000, 1.0).unwrap();
    app.commit().unwrap();
    fill(&db, 3, (0..190).map(|i| i * 500), &mut Dump::new());
    assert_eq!(db.head().cardinality(10).series_count_by_metric_name, [("m".into(), 3), ("old".into(), 1)]);
    db.maintain().unwrap();
    let c = db.head().cardinality(10);
    assert_eq!(c.series_count_by_metric_name, [("m".to_string(), 3)]);
    assert_eq!(c.series_count_by_label_value_pair[0], ("__name__=m".to_string(), 3));
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    assert!(q.label_values("__name__", &[]).unwrap().contains(&"old".to_string()), "the blocks keep it");
}
