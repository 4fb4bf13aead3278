//! Storing what a fast-link pull returned: each frame's series (replica label removed when
//! failover dedup stores one copy, the source's labels merged in as `federate.honor_labels`
//! says) with every sample newer than what this source already sent, through a per-source cache
//! keyed by the frame's raw label block (no decoding for known series).

use std::collections::HashMap;
use std::sync::Arc;

use crate::federate::stream::{StreamError, StreamHeader, StreamReader};
use crate::model::{Labels, SeriesKeyHasher, is_stale_nan};
use crate::scrape::SampleContext;
use crate::storage::{AppendError, Appendable, SeriesRef};

/// The last values stored per series, taken when a new replica starts to fill, so that its
/// first samples cannot make a counter look reset.
pub(crate) struct SwitchGuard {
    pub(crate) last: HashMap<Arc<Labels>, (i64, f64)>,
    /// Samples up to this long after a series' last stored one are checked.
    pub(crate) window_ms: i64,
}

/// Counters by Prometheus's naming conventions (the stream carries no metric types yet).
fn looks_like_counter(name: &str) -> bool {
    ["_total", "_count", "_sum", "_bucket"].iter().any(|s| name.ends_with(s))
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    series: Option<SeriesRef>,
    /// Newest timestamp this source sent for the series.
    last_t: i64,
}

/// Per-source state kept between pulls.
#[derive(Default)]
pub(crate) struct StreamState {
    cache: HashMap<Box<[u8]>, Entry, SeriesKeyHasher>,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StreamStats {
    pub(crate) series: u64,
    pub(crate) samples: u64,
    /// Samples already stored (sent again in the cursor overlap, or by another replica).
    pub(crate) overlap: u64,
    /// Samples dropped at a replica switch because they would have looked like a counter reset.
    pub(crate) guarded: u64,
    pub(crate) newest: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamIngestError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("storage: {0}")]
    Storage(String),
}

/// A pulled series' labels as stored: the replica label stripped (`strip`), then merged with
/// the labels the global attaches to the source (`source`: `job`, `instance`) as a scrape of
/// text `/federate` would — with `honor_labels` the series' own win and `instance` is never
/// added (`/federate` marks every series with one), without it the source's win and the series'
/// own move to `exported_…`. The text path gets the same through `IngestState`.
pub(crate) fn source_labels(labels: Labels, strip: &[String], source: &SampleContext) -> Option<Labels> {
    let labels = if strip.iter().any(|n| labels.has(n)) {
        let names: Vec<&str> = strip.iter().map(String::as_str).collect();
        labels.without(&names)
    } else {
        labels
    };
    let marked_empty = if labels.has("instance") { Vec::new() } else { vec!["instance".to_string()] };
    crate::scrape::sample_labels(labels, &marked_empty, source)
}

impl StreamState {
    pub(crate) fn ingest(
        &mut self,
        storage: &dyn Appendable,
        body: &[u8],
        strip: &[String],
        source: &SampleContext,
        guard: Option<&SwitchGuard>,
    ) -> Result<(StreamHeader, StreamStats), StreamIngestError> {
        let mut reader = StreamReader::new(body)?;
        let header = reader.header;
        let mut stats = StreamStats::default();
        let mut app = storage.appender();
        let result = (|| {
            while let Some(frame) = reader.next_frame() {
                let frame = frame?;
                stats.series += 1;
                let known = self.cache.get(frame.label_bytes).copied();
                let mut entry = known.unwrap_or(Entry { series: None, last_t: i64::MIN });
                let mut labels: Option<Labels> = None;
                let decoded = || -> Result<Labels, StreamError> {
                    source_labels(frame.labels()?, strip, source).ok_or_else(|| StreamError::BadFrame {
                        offset: 0,
                        reason: "series without a metric name".into(),
                    })
                };
                let guard_last = match guard {
                    Some(g) => {
                        let l = decoded()?;
                        let last = g.last.get(&l).copied();
                        // Only counters can fake a reset; a gauge may simply have gone down.
                        let counter = l.metric_name().is_some_and(looks_like_counter);
                        labels = Some(l);
                        last.map(|(t, v)| (t, if counter { v } else { f64::NEG_INFINITY }, g.window_ms))
                    }
                    None => None,
                };
                let mut samples = frame.samples()?;
                for s in samples.by_ref() {
                    if s.t <= entry.last_t {
                        stats.overlap += 1;
                        continue;
                    }
                    if let Some((gt, gv, window)) = guard_last {
                        if s.t <= gt {
                            stats.overlap += 1;
                            continue;
                        }
                        if s.t <= gt + window && !is_stale_nan(s.v) && s.v < gv {
                            stats.guarded += 1;
                            continue;
                        }
                    }
                    let appended = match entry.series {
                        Some(r) => app.append_ref(r, s.t, s.v).map(|()| r),
                        None => Err(AppendError::UnknownRef(0)),
                    };
                    let appended = match appended {
                        Err(AppendError::UnknownRef(_)) => {
                            if labels.is_none() {
                                labels = Some(decoded()?);
                            }
                            let l = labels.as_ref().ok_or_else(|| StreamError::BadFrame {
                                offset: 0,
                                reason: "labels".into(),
                            })?;
                            app.append(None, l, s.t, s.v)
                        }
                        other => other,
                    };
                    match appended {
                        Ok(r) => {
                            entry.series = Some(r);
                            stats.samples += 1;
                        }
                        Err(
                            AppendError::OutOfOrder
                            | AppendError::DuplicateTimestamp
                            | AppendError::OutOfBounds,
                        ) => {
                            stats.overlap += 1;
                        }
                        Err(e) => return Err(StreamIngestError::Storage(e.to_string())),
                    }
                    entry.last_t = entry.last_t.max(s.t);
                    stats.newest = Some(stats.newest.map_or(s.t, |n| n.max(s.t)));
                }
                if let Some(e) = samples.error() {
                    return Err(StreamError::BadFrame { offset: 0, reason: e.to_string() }.into());
                }
                self.cache.insert(frame.label_bytes.into(), entry);
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                app.commit().map_err(|e| StreamIngestError::Storage(e.to_string()))?;
                Ok((header, stats))
            }
            Err(e) => {
                app.rollback();
                // The cache may now name refs of a rolled-back commit: forget it (refs re-resolve).
                self.cache.clear();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federate::stream::{PageLimits, PageRequest, Position, encode_page};
    use crate::model::{Coverage, parse_selector};
    use crate::storage::Queryable;
    use crate::tsdb::Head;

    fn source(honor_labels: bool) -> SampleContext {
        SampleContext::unlimited(
            Labels::from_pairs(&[("instance", "leaf:9100"), ("job", "federate")]),
            honor_labels,
        )
    }

    #[test]
    fn honor_labels_decides_between_the_series_and_the_source() {
        let pulled = Labels::from_pairs(&[
            ("__name__", "up"),
            ("exported_job", "x"),
            ("instance", "node:9100"),
            ("job", "node"),
            ("replica", "b"),
        ]);
        let honored = source_labels(pulled.clone(), &["replica".to_string()], &source(true));
        assert_eq!(
            honored,
            Some(Labels::from_pairs(&[
                ("__name__", "up"),
                ("exported_job", "x"),
                ("instance", "node:9100"),
                ("job", "node")
            ]))
        );
        // Without honor_labels the source's labels win; the series' own get `exported_` (twice
        // where `exported_job` is taken), as Prometheus federation stores them.
        let renamed = source_labels(pulled, &["replica".to_string()], &source(false));
        assert_eq!(
            renamed,
            Some(Labels::from_pairs(&[
                ("__name__", "up"),
                ("exported_exported_job", "node"),
                ("exported_instance", "node:9100"),
                ("exported_job", "x"),
                ("instance", "leaf:9100"),
                ("job", "federate"),
            ]))
        );
        // A series without `job` or `instance`: as over text `/federate` (which marks it with
        // `instance=""`), it gets the source's `job`, and `instance` only without honor_labels.
        let bare = Labels::from_pairs(&[("__name__", "m")]);
        assert_eq!(
            source_labels(bare.clone(), &[], &source(true)),
            Some(Labels::from_pairs(&[("__name__", "m"), ("job", "federate")]))
        );
        assert_eq!(
            source_labels(bare, &[], &source(false)),
            Some(Labels::from_pairs(&[("__name__", "m"), ("instance", "leaf:9100"), ("job", "federate")]))
        );
    }

    #[test]
    fn fast_link_pages_are_stored_with_the_source_labels() -> Result<(), Box<dyn std::error::Error>> {
        let leaf = Head::default();
        let mut app = leaf.appender();
        let l = Labels::from_pairs(&[("__name__", "up"), ("instance", "node:9100"), ("job", "node")]);
        for t in 1..=3 {
            app.append(None, &l, t * 1000, 1.0)?;
        }
        app.commit()?;
        let mut page = Vec::new();
        let req = PageRequest {
            since: 0,
            now: 10_000,
            limits: PageLimits { max_samples: 1000, max_bytes: 1 << 20 },
            probe: false,
            v1: false,
        };
        let pos = Position { frontier: 9_000, epoch: 1, seq: 0, rewind_to: None };
        let all = vec![parse_selector("{job=\"node\"}")?];
        encode_page(&leaf, &all, &Labels::empty(), &req, &pos, Coverage::default(), &mut page)?;
        for (honor, job) in [(true, "node"), (false, "federate")] {
            let global = Head::default();
            let (_, stats) = StreamState::default().ingest(&global, &page, &[], &source(honor), None)?;
            assert_eq!(stats.samples, 3);
            let q = global.querier(0, 10_000)?;
            let stored =
                q.select(&[crate::model::Matcher::new(crate::model::MatchOp::Equal, "__name__", "up")?])?;
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].labels.get("job"), Some(job), "honor_labels: {honor}");
            if !honor {
                assert_eq!(stored[0].labels.get("exported_job"), Some("node"));
                assert_eq!(stored[0].labels.get("exported_instance"), Some("node:9100"));
            }
        }
        Ok(())
    }
}
