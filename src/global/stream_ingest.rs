//! Storing what a fast-link pull returned: each frame's series (replica label removed when
//! failover dedup stores one copy) with every sample newer than what this source already sent,
//! through a per-source cache keyed by the frame's raw label block (no decoding for known series).

use std::collections::HashMap;
use std::sync::Arc;

use crate::federate::stream::{StreamError, StreamHeader, StreamReader};
use crate::model::{Labels, SeriesKeyHasher, is_stale_nan};
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

impl StreamState {
    pub(crate) fn ingest(
        &mut self,
        storage: &dyn Appendable,
        body: &[u8],
        strip: Option<&str>,
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
                    let l = frame.labels()?;
                    Ok(match strip {
                        Some(name) if l.has(name) => l.without(&[name]),
                        _ => l,
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
