//! Retention: blocks whose data is all older than the newest sample minus the retention are
//! deleted, whole — a query running meanwhile sees each block entirely or not at all (no gaps,
//! and the oldest sample it sees starts a block), also while compaction swaps blocks.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use promtier::model::{Labels, parse_selector};
use promtier::storage::{Appendable, Queryable};
use promtier::tsdb::{Db, DbOptions};

const RANGE: i64 = 1000;
const STEP: i64 = 50;
const RETENTION: i64 = 6000;

fn labels(i: usize) -> Labels {
    Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())])
}

#[test]
fn old_blocks_disappear_whole_and_queries_never_see_part_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        DbOptions { block_range_ms: RANGE, retention_ms: Some(RETENTION), ..DbOptions::default() },
    )
    .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (db, done) = (db.clone(), done.clone());
        thread::spawn(move || {
            let mut checks = 0;
            let ms = parse_selector("{__name__=\"m\"}").unwrap();
            while !done.load(Ordering::Acquire) {
                let q = db.querier(i64::MIN, i64::MAX).unwrap();
                for s in q.select(&ms).unwrap() {
                    let ts: Vec<i64> = s.samples.map(|x| x.t).collect();
                    let Some(&first) = ts.first() else { continue };
                    assert!(
                        first == 0 || first % RANGE == 0,
                        "{}: oldest sample {first} is inside a block range: part of a block was seen",
                        s.labels
                    );
                    if let Some(w) = ts.windows(2).find(|w| w[1] - w[0] != STEP) {
                        panic!("{}: gap between {} and {}", s.labels, w[0], w[1]);
                    }
                }
                checks += 1;
            }
            checks
        })
    };
    let mut t = 0;
    while t < 40_000 {
        let mut app = db.appender();
        for i in 0..4 {
            app.append(None, &labels(i), t, t as f64).unwrap();
        }
        app.commit().unwrap();
        if t % 500 == 0 {
            db.maintain().unwrap();
        }
        t += STEP;
    }
    db.maintain().unwrap();
    done.store(true, Ordering::Release);
    let checks = reader.join().unwrap();
    assert!(checks > 10, "the reader ran ({checks} checks)");

    let newest = t - STEP;
    let metas = db.blocks();
    assert!(!metas.is_empty());
    for m in &metas {
        assert!(m.max_time > newest - RETENTION, "block {m:?} is past retention");
    }
    let oldest = metas[0].min_time;
    assert!(oldest >= newest - RETENTION - 9 * RANGE, "old blocks were deleted: oldest {oldest}");
    assert!(db.stats().retention_deleted_blocks > 0);
    // Only live blocks are on disk, and a reopened database sees the same.
    let on_disk = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
        .count();
    assert_eq!(on_disk, metas.len());
    drop(db);
    let db = Db::open(
        dir.path(),
        DbOptions { block_range_ms: RANGE, retention_ms: Some(RETENTION), ..DbOptions::default() },
    )
    .unwrap();
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    let s = q.select(&parse_selector("m{i=\"0\"}").unwrap()).unwrap();
    let ts: Vec<i64> = s.into_iter().next().unwrap().samples.map(|x| x.t).collect();
    assert_eq!(ts.first().copied(), Some(oldest));
    assert_eq!(ts.last().copied(), Some(newest));
}
