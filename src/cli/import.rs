//! `promtier tsdb import`: backfills an OpenMetrics text file (samples with timestamps in
//! seconds, `# TYPE`/`# HELP`/`# UNIT`, a final `# EOF` — what `promtool tsdb
//! create-blocks-from openmetrics` reads) into a data directory as level-1 blocks that a node
//! started on that directory serves.
//!
//! Each line is parsed on its own with the OpenMetrics grammar, so every bad line is reported
//! with its number and the rest still loads; samples the storage refuses (out of order, a
//! duplicate timestamp with another value, no timestamp) are reported the same way. The samples
//! are gathered in an in-memory head (no WAL: the blocks are the output) and written block range
//! by block range. The good lines are written even when some are bad; the exit status says so.
//!
//! Blocks appear atomically (see `block::writer`), so importing into the directory of a running
//! node is safe; the node reads them when it next starts. A block's bounds are those of its data
//! (oldest sample to newest + 1 ms), and its meta is hinted `import`: imported blocks never raise
//! the lower bound of the node's head, so an import never makes the node refuse scraped samples
//! nor drop WAL samples at replay, however recent its data. Imported data may overlap what the
//! node holds: queries merge both, and compaction merges overlapping blocks (one sample kept per
//! timestamp).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::exposition::{Entry, TextFormat, TextParser};
use crate::storage::{AppendError, Appendable};
use crate::tsdb::fs::RealFs;
use crate::tsdb::{Head, HeadOptions, block::BlockMeta, db::write_head_blocks};

/// Samples per commit to the in-memory head.
const BATCH: usize = 50_000;

/// A line that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadLine {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// What an import did.
#[derive(Debug, Default)]
pub(crate) struct ImportReport {
    pub(crate) samples: u64,
    pub(crate) series: u64,
    pub(crate) bad: Vec<BadLine>,
    pub(crate) blocks: Vec<BlockMeta>,
}

/// Imports `input` into `data_dir`, calling `progress(bytes_done)` now and then.
pub(crate) fn import(
    input: &[u8],
    data_dir: &Path,
    block_range_ms: i64,
    mut progress: impl FnMut(usize),
    mut on_block: impl FnMut(&BlockMeta),
) -> anyhow::Result<ImportReport> {
    let head = Head::new(HeadOptions { chunk_range_ms: block_range_ms, ..HeadOptions::default() })?;
    let mut report = ImportReport::default();
    let mut app = head.appender();
    let mut staged = 0usize;
    let mut seen_eof = false;
    let mut pos = 0usize;
    let mut line_no = 0usize;
    let mut last_progress = Instant::now();
    let mut one = Vec::with_capacity(256);
    let mut last: std::collections::HashMap<crate::storage::SeriesRef, (i64, u64)> = Default::default();
    while pos < input.len() {
        line_no += 1;
        let end = memchr::memchr(b'\n', &input[pos..]).map_or(input.len(), |i| pos + i);
        let line = &input[pos..end];
        pos = end + 1;
        if last_progress.elapsed() > Duration::from_millis(500) {
            progress(pos.min(input.len()));
            last_progress = Instant::now();
        }
        let bad = |message: String| BadLine { line: line_no, message };
        if seen_eof {
            if !line.is_empty() {
                report.bad.push(bad("data after # EOF".into()));
            }
            continue;
        }
        if line == b"# EOF" {
            seen_eof = true;
            continue;
        }
        one.clear();
        one.extend_from_slice(line);
        one.extend_from_slice(b"\n# EOF\n");
        let entry = TextParser::with_format(&one, TextFormat::OpenMetrics).next();
        let series = match entry {
            Some(Ok(Entry::Series(s))) => s,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                report.bad.push(bad(format!("{} (column {})", e.kind, e.column)));
                continue;
            }
            None => continue,
        };
        let Some(t) = series.timestamp() else {
            report.bad.push(bad("sample has no timestamp".into()));
            continue;
        };
        let v = series.value();
        match app.append(None, &series.to_labels(), t, v) {
            // The head checks staged samples against committed ones only: check against the
            // series' previous line here, so the line is reported (the head drops it at commit).
            Ok(r) => match last.get(&r).copied() {
                Some((pt, _)) if t < pt => report.bad.push(bad("out of order sample for its series".into())),
                Some((pt, pv)) if t == pt && pv != v.to_bits() => {
                    report.bad.push(bad("duplicate timestamp with a different value".into()))
                }
                _ => {
                    last.insert(r, (t, v.to_bits()));
                    staged += 1;
                }
            },
            Err(AppendError::OutOfOrder) => report.bad.push(bad("out of order sample for its series".into())),
            Err(AppendError::DuplicateTimestamp) => {
                report.bad.push(bad("duplicate timestamp with a different value".into()))
            }
            Err(e) => report.bad.push(bad(e.to_string())),
        }
        if staged >= BATCH {
            app.commit()?;
            app = head.appender();
            staged = 0;
        }
    }
    if !seen_eof {
        report.bad.push(BadLine { line: line_no, message: "data does not end with # EOF".into() });
    }
    app.commit()?;
    progress(input.len());
    let stats = head.stats();
    report.samples = stats.samples_appended;
    report.series = stats.series;
    report.blocks = write_head_blocks(data_dir, &head, block_range_ms, &RealFs, &mut on_block)?;
    Ok(report)
}

/// The subcommand: reads `file`, imports it, prints progress and every bad line.
pub(super) fn run(data_dir: &Path, file: &Path, block_duration: Duration) -> anyhow::Result<ExitCode> {
    let input = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let total = input.len().max(1);
    let started = Instant::now();
    eprintln!("importing {} ({} bytes) into {}", file.display(), input.len(), data_dir.display());
    let report = import(
        &input,
        data_dir,
        block_duration.as_millis() as i64,
        |done| {
            eprint!("\r  parsed {:>3}% ({done} bytes)", done * 100 / total);
            let _ = std::io::stderr().flush();
        },
        |m| {
            eprintln!(
                "\n  wrote block {} [{} .. {}) {} series, {} samples",
                m.ulid, m.min_time, m.max_time, m.stats.num_series, m.stats.num_samples
            )
        },
    )?;
    eprintln!();
    for b in &report.bad {
        eprintln!("{}:{}: {}", file.display(), b.line, b.message);
    }
    eprintln!(
        "imported {} samples of {} series into {} blocks in {:.1}s; {} bad lines",
        report.samples,
        report.series,
        report.blocks.len(),
        started.elapsed().as_secs_f64(),
        report.bad.len()
    );
    Ok(if report.bad.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_selector;
    use crate::storage::Queryable;
    use crate::tsdb::{Db, DbOptions};

    #[test]
    fn imports_good_lines_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let input = b"# HELP http_requests_total Requests.\n\
# TYPE http_requests_total counter\n\
http_requests_total{code=\"200\"} 1 1700000000\n\
http_requests_total{code=\"200\"} 2 1700000015.5\n\
http_requests_total{code=\"200\" 3 1700000030\n\
http_requests_total{code=\"200\"} 0 1700000010\n\
http_requests_total{code=\"500\"} 7\n\
temp 21.5 1700003600\n\
# EOF\n";
        let report = import(input, dir.path(), 3_600_000, |_| {}, |_| {}).unwrap();
        let lines: Vec<usize> = report.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![5, 6, 7], "{:?}", report.bad);
        assert!(report.bad[1].message.contains("out of order"));
        assert!(report.bad[2].message.contains("timestamp"));
        assert_eq!((report.samples, report.series), (3, 2));
        assert_eq!(report.blocks.len(), 2, "two block ranges");
        // Bounds are the data's, never the end of the hour the block was written for.
        let bounds: Vec<(i64, i64)> = report.blocks.iter().map(|m| (m.min_time, m.max_time)).collect();
        assert_eq!(
            bounds,
            vec![(1_700_000_000_000, 1_700_000_015_501), (1_700_003_600_000, 1_700_003_600_001)]
        );
        assert!(report.blocks.iter().all(|m| m.compaction.is_import()));
        let db =
            Db::open(dir.path(), DbOptions { block_range_ms: 3_600_000, ..DbOptions::default() }).unwrap();
        let q = db.querier(0, i64::MAX).unwrap();
        let got: Vec<(String, Vec<(i64, f64)>)> = q
            .select(&parse_selector("{__name__=~\".+\"}").unwrap())
            .unwrap()
            .into_iter()
            .map(|s| (s.labels.to_string(), s.samples.map(|x| (x.t, x.v)).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "{__name__=\"http_requests_total\", code=\"200\"}".to_string(),
                    vec![(1_700_000_000_000, 1.0), (1_700_000_015_500, 2.0)]
                ),
                ("{__name__=\"temp\"}".to_string(), vec![(1_700_003_600_000, 21.5)]),
            ]
        );
    }

    #[test]
    fn missing_eof_and_data_after_it_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let r = import(b"a 1 1\n", dir.path(), 3_600_000, |_| {}, |_| {}).unwrap();
        assert_eq!(r.bad, vec![BadLine { line: 1, message: "data does not end with # EOF".into() }]);
        let r = import(b"a 1 1\n# EOF\nb 1 1\n", dir.path(), 3_600_000, |_| {}, |_| {}).unwrap();
        assert_eq!(r.bad, vec![BadLine { line: 3, message: "data after # EOF".into() }]);
    }
}
