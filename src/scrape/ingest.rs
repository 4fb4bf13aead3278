//! Turning one scrape body into appended samples through the per-target series cache (a known
//! series costs one comparison of its text, or a hash lookup, and no allocation), Prometheus's label
//! merging (`honor_labels`, `exported_` prefixes), metric relabelling, limits, and staleness
//! markers for series that disappeared.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::refused::Refused;
use super::series_cache::{CacheEntry, SeriesCache};
use crate::exposition::{Entry, TextParser};
use crate::model::{Labels, LabelsBuilder, STALE_NAN};
use crate::relabel::{RelabelConfig, relabel};
use crate::storage::{AppendError, Appender, SeriesRef, Storage};

/// Cache entries unseen for this many scrapes are forgotten.
const CACHE_KEEP_ITERATIONS: u64 = 10;

/// Why a scrape body was not ingested. Nothing of a failed body is kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("sample limit exceeded (limit {limit})")]
    SampleLimit { limit: u64 },
    #[error("label_limit exceeded (metric: {metric:.50}, number of labels: {count}, limit: {limit})")]
    LabelLimit { metric: String, count: usize, limit: u64 },
    #[error(
        "label_name_length_limit exceeded (metric: {metric:.50}, label name: {name:.50}, length: {len}, limit: {limit})"
    )]
    LabelNameLength { metric: String, name: String, len: usize, limit: u64 },
    #[error(
        "label_value_length_limit exceeded (metric: {metric:.50}, label name: {name:.50}, value: {value:.50}, length: {len}, limit: {limit})"
    )]
    LabelValueLength { metric: String, name: String, value: String, len: usize, limit: u64 },
    #[error("appending to storage failed: {0}")]
    Storage(String),
}

/// What the scrape's report series need, and per-sample rejections for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    /// Samples in the body (`scrape_samples_scraped`).
    pub scraped: u64,
    /// Samples kept after metric relabelling (`scrape_samples_post_metric_relabeling`).
    pub post_relabel: u64,
    /// Series not seen in this target's recent scrapes (`scrape_series_added`).
    pub series_added: u64,
    /// Samples the storage refused; the others of `post_relabel` were stored.
    pub refused: Refused,
    /// Staleness markers written for series that disappeared.
    pub stale_markers: u64,
    /// The oldest sample timestamp appended (`i64::MAX` when none): explicit timestamps may be
    /// older than the scrape.
    pub oldest: i64,
}

impl Default for IngestStats {
    fn default() -> IngestStats {
        IngestStats {
            scraped: 0,
            post_relabel: 0,
            series_added: 0,
            refused: Refused::default(),
            stale_markers: 0,
            oldest: i64::MAX,
        }
    }
}

/// Label handling for one target's samples.
#[derive(Debug, Clone)]
pub struct SampleContext {
    /// Target labels attached to every sample.
    pub target_labels: Labels,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
}

impl SampleContext {
    /// `target_labels` attached as `honor_labels` says, timestamps honoured, no relabelling and no
    /// limits: how a global takes pulled series.
    pub fn unlimited(target_labels: Labels, honor_labels: bool) -> SampleContext {
        SampleContext {
            target_labels,
            honor_labels,
            honor_timestamps: true,
            metric_relabel_configs: Vec::new(),
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
        }
    }
}

/// A metric family's `# TYPE`, `# HELP` and `# UNIT`, for `/api/v1/metadata` (the model's type).
pub use crate::model::MetricMetadata;

/// The state a target's scrapes carry from one to the next.
#[derive(Debug, Default)]
pub struct IngestState {
    /// Lowered to the oldest timestamp a commit is about to make visible, so readers know no
    /// sample older than it can still appear (the fast link's cursor). Reset by the owner.
    watermark: Option<Arc<AtomicI64>>,
    cache: SeriesCache,
    iteration: u64,
    /// The iteration of the last successful scrape whose series are not yet marked stale.
    live_iteration: Option<u64>,
    /// Refs of the report series (`up`, …), by name.
    report_refs: HashMap<&'static str, SeriesRef>,
    /// Metadata of the metric families the target exposes, by family name.
    metadata: HashMap<String, MetricMetadata>,
    /// Set when `metadata` changed since [`IngestState::take_metadata_change`].
    metadata_changed: bool,
}

impl IngestState {
    /// The target's metric metadata when it changed since the last call (cheap otherwise).
    pub fn take_metadata_change(&mut self) -> Option<&HashMap<String, MetricMetadata>> {
        if !std::mem::take(&mut self.metadata_changed) {
            return None;
        }
        Some(&self.metadata)
    }

    /// Records one metadata line; allocates only when something changed.
    fn note_metadata(&mut self, name: &str, update: impl FnOnce(&mut MetricMetadata) -> bool) {
        match self.metadata.get_mut(name) {
            Some(m) => self.metadata_changed |= update(m),
            None => {
                let mut m = MetricMetadata::default();
                update(&mut m);
                self.metadata.insert(name.to_string(), m);
                self.metadata_changed = true;
            }
        }
    }

    /// Reports, through `watermark`, the oldest timestamp each commit makes visible.
    pub fn set_watermark(&mut self, watermark: Arc<AtomicI64>) {
        self.watermark = Some(watermark);
    }

    /// Number of series the cache knows (for memory accounting and tests).
    pub fn cached_series(&self) -> usize {
        self.cache.len()
    }

    /// Ingests one scrape body at timestamp `ts` (ms); all or nothing.
    pub fn ingest(
        &mut self,
        storage: &dyn Storage,
        ctx: &SampleContext,
        body: &[u8],
        ts: i64,
    ) -> Result<IngestStats, IngestError> {
        self.iteration += 1;
        let iter = self.iteration;
        let mut app = storage.appender();
        let result = self.append_body(app.as_mut(), ctx, body, ts, iter);
        match result {
            Ok(mut stats) => {
                stats.stale_markers = self.mark_stale(app.as_mut(), ts, |e| e.last_seen != iter);
                self.live_iteration = Some(iter);
                if let Some(w) = &self.watermark {
                    w.fetch_min(stats.oldest.min(ts), Ordering::AcqRel);
                }
                match app.commit() {
                    Ok(committed) => {
                        self.cache.retain(|e| e.last_seen + CACHE_KEEP_ITERATIONS >= iter);
                        // Against a writer that committed meanwhile, or a bound a block cut
                        // raised (this commit's staleness markers count too).
                        stats.refused.at_commit = committed.rejected as u64;
                        Ok(stats)
                    }
                    Err(e) => {
                        self.forget_iteration(iter);
                        Err(IngestError::Storage(e.to_string()))
                    }
                }
            }
            Err(e) => {
                app.rollback();
                self.forget_iteration(iter);
                Err(e)
            }
        }
    }

    /// After a failed scrape: every series of the last good scrape goes stale at `ts`, as in
    /// Prometheus when a target goes down. Also used when a target is removed.
    pub fn mark_all_stale(&mut self, storage: &dyn Storage, ts: i64) -> Result<u64, IngestError> {
        let mut app = storage.appender();
        let n = self.mark_stale(app.as_mut(), ts, |_| true);
        app.commit().map_err(|e| IngestError::Storage(e.to_string()))?;
        self.live_iteration = None;
        Ok(n)
    }

    /// When a target is removed: its scraped series and its report series go stale.
    pub fn mark_target_gone(&mut self, storage: &dyn Storage, ts: i64) -> Result<(), IngestError> {
        let mut app = storage.appender();
        self.mark_stale(app.as_mut(), ts, |_| true);
        for r in self.report_refs.values() {
            let _ = app.append_ref(*r, ts, STALE_NAN);
        }
        app.commit().map_err(|e| IngestError::Storage(e.to_string()))?;
        self.live_iteration = None;
        Ok(())
    }

    /// Appends the report series for one scrape (a separate commit, so they are written even
    /// when the scrape itself failed).
    pub fn append_report(
        &mut self,
        storage: &dyn Storage,
        target_labels: &Labels,
        ts: i64,
        values: &[(&'static str, f64)],
    ) -> Result<(), IngestError> {
        let mut app = storage.appender();
        for &(name, v) in values {
            let cached = self.report_refs.get(name).copied();
            let mut r =
                append_or_relookup(app.as_mut(), cached, || report_labels(target_labels, name), ts, v);
            if matches!(r, Err(AppendError::UnknownRef(_))) {
                r = app.append(None, &report_labels(target_labels, name), ts, v);
            }
            match r {
                Ok(series) => {
                    self.report_refs.insert(name, series);
                }
                Err(AppendError::Storage(e)) => {
                    app.rollback();
                    return Err(IngestError::Storage(e.to_string()));
                }
                Err(_) => {}
            }
        }
        app.commit().map(|_| ()).map_err(|e| IngestError::Storage(e.to_string()))
    }

    fn append_body(
        &mut self,
        app: &mut dyn Appender,
        ctx: &SampleContext,
        body: &[u8],
        ts: i64,
        iter: u64,
    ) -> Result<IngestStats, IngestError> {
        let mut stats = IngestStats::default();
        let mut parser = TextParser::new(body);
        self.cache.begin_scrape();
        loop {
            // Fast path: the series that followed the previous one last time, checked by one
            // comparison of its text; its labels are neither parsed nor hashed.
            if let Some((slot, key, family)) = self.cache.predicted()
                && let Some(known) = parser.peek_known(key, family)
            {
                let t = sample_time(known.timestamp, ctx, ts);
                if self.append_cached(app, ctx, slot, t, known.value, iter, &mut stats)? {
                    parser.consume(known);
                    stats.scraped += 1;
                    stats.oldest = stats.oldest.min(t);
                    self.cache.visit(slot);
                    continue;
                }
                // The series went away from storage: parse the line and add it again below.
            }
            let Some(entry) = parser.next() else { break };
            let series = match entry {
                Ok(Entry::Series(s)) => s,
                Ok(Entry::Type { name, kind }) => {
                    self.note_metadata(&name, |m| std::mem::replace(&mut m.kind, kind) != kind);
                    continue;
                }
                Ok(Entry::Help { name, text }) => {
                    self.note_metadata(&name, |m| {
                        let changed = m.help != *text;
                        if changed {
                            m.help = text.to_string();
                        }
                        changed
                    });
                    continue;
                }
                Ok(Entry::Unit { name, unit }) => {
                    self.note_metadata(&name, |m| {
                        let changed = m.unit != unit;
                        if changed {
                            m.unit = unit.to_string();
                        }
                        changed
                    });
                    continue;
                }
                Ok(_) => continue,
                Err(e) => return Err(IngestError::Parse(e.to_string())),
            };
            stats.scraped += 1;
            let t = sample_time(series.timestamp(), ctx, ts);
            let tracked = !(series.timestamp().is_some() && ctx.honor_timestamps);
            stats.oldest = stats.oldest.min(t);
            let v = series.value();
            let raw = series.raw();
            let family = series.family_type();
            if let Some(slot) = self.cache.find(raw, family)
                && self.append_cached(app, ctx, slot, t, v, iter, &mut stats)?
            {
                self.cache.visit(slot);
                continue;
            }
            // Slow path: a series this target has not sent recently (or whose ref went away).
            // With honor_labels, a label the body sets to "" still counts as set (so `/federate`'s
            // `instance=""` keeps the federating node's instance off), as in Prometheus.
            let explicitly_empty: Vec<String> = if ctx.honor_labels {
                series.labels().filter(|(_, v)| v.is_empty()).map(|(n, _)| n.into_owned()).collect()
            } else {
                Vec::new()
            };
            let labels = sample_labels(series.to_labels(), &explicitly_empty, ctx);
            let Some(labels) = labels else {
                let e = CacheEntry { series: None, last_seen: iter, prev_seen: 0, created: iter, tracked };
                let slot = self.cache.upsert(raw, family, e);
                self.cache.visit(slot);
                continue;
            };
            check_label_limits(&labels, ctx)?;
            stats.post_relabel += 1;
            check_sample_limit(ctx, &stats)?;
            let is_new = !self.cache.contains(raw);
            match app.append(None, &labels, t, v) {
                Ok(r) => {
                    if is_new {
                        stats.series_added += 1;
                    }
                    let e =
                        CacheEntry { series: Some(r), last_seen: iter, prev_seen: 0, created: iter, tracked };
                    let slot = self.cache.upsert(raw, family, e);
                    self.cache.visit(slot);
                }
                Err(e) => count_rejection(&mut stats, e)?,
            }
        }
        Ok(stats)
    }

    /// Ingests one sample of the cached series in `slot`. `Ok(false)` when storage no longer
    /// knows the series' ref (nothing was appended: the caller adds the series again).
    #[allow(clippy::too_many_arguments)]
    fn append_cached(
        &mut self,
        app: &mut dyn Appender,
        ctx: &SampleContext,
        slot: u32,
        t: i64,
        v: f64,
        iter: u64,
        stats: &mut IngestStats,
    ) -> Result<bool, IngestError> {
        let e = self.cache.entry_mut(slot);
        let Some(r) = e.series else {
            // Dropped by relabelling.
            seen_in(e, iter);
            return Ok(true);
        };
        match app.append_ref(r, t, v) {
            Ok(()) => {}
            Err(AppendError::UnknownRef(_)) => return Ok(false),
            Err(err) => count_rejection(stats, err)?,
        }
        seen_in(e, iter);
        stats.post_relabel += 1;
        check_sample_limit(ctx, stats)?;
        Ok(true)
    }

    /// Appends staleness markers for the tracked series of the live iteration that `gone` selects.
    fn mark_stale(&mut self, app: &mut dyn Appender, ts: i64, gone: impl Fn(&CacheEntry) -> bool) -> u64 {
        let Some(live) = self.live_iteration else { return 0 };
        let mut n = 0;
        for e in self.cache.entries() {
            if e.tracked
                && e.last_seen == live
                && gone(e)
                && let Some(r) = e.series
                && app.append_ref(r, ts, STALE_NAN).is_ok()
            {
                n += 1;
            }
        }
        n
    }

    /// Undoes the cache effects of an iteration whose samples were not committed.
    fn forget_iteration(&mut self, iter: u64) {
        self.cache.retain(|e| e.created != iter);
        for e in self.cache.entries_mut() {
            if e.last_seen == iter {
                e.last_seen = e.prev_seen;
            }
        }
    }
}

/// Marks a cache entry as seen by iteration `iter` (restorable if the iteration fails).
fn seen_in(e: &mut CacheEntry, iter: u64) {
    if e.last_seen != iter {
        e.prev_seen = e.last_seen;
        e.last_seen = iter;
    }
}

/// A sample's timestamp: its own when it has one and the job honours it, else the scrape's.
fn sample_time(own: Option<i64>, ctx: &SampleContext, scrape: i64) -> i64 {
    match own {
        Some(t) if ctx.honor_timestamps => t,
        _ => scrape,
    }
}

fn append_or_relookup(
    app: &mut dyn Appender,
    cached: Option<SeriesRef>,
    labels: impl FnOnce() -> Labels,
    t: i64,
    v: f64,
) -> Result<SeriesRef, AppendError> {
    match cached {
        Some(r) => app.append_ref(r, t, v).map(|()| r),
        None => app.append(None, &labels(), t, v),
    }
}

fn report_labels(target: &Labels, name: &str) -> Labels {
    let mut b = target.builder();
    b.set(crate::model::METRIC_NAME, name);
    b.labels()
}

fn check_sample_limit(ctx: &SampleContext, stats: &IngestStats) -> Result<(), IngestError> {
    if ctx.sample_limit > 0 && stats.post_relabel > ctx.sample_limit {
        return Err(IngestError::SampleLimit { limit: ctx.sample_limit });
    }
    Ok(())
}

/// Per-sample rejections are counted; a storage failure fails the scrape.
fn count_rejection(stats: &mut IngestStats, e: AppendError) -> Result<(), IngestError> {
    match e {
        AppendError::OutOfOrder => stats.refused.out_of_order += 1,
        AppendError::DuplicateTimestamp => stats.refused.duplicates += 1,
        AppendError::OutOfBounds => stats.refused.out_of_bounds += 1,
        other => return Err(IngestError::Storage(other.to_string())),
    }
    Ok(())
}

/// Merges a scraped series' labels with the target's, then applies metric relabelling.
/// `None` means the series is dropped.
/// `empty_in_body` names labels the body set to `""` (they count as present for honor_labels).
pub(crate) fn sample_labels(
    scraped: Labels,
    empty_in_body: &[String],
    ctx: &SampleContext,
) -> Option<Labels> {
    let mut lb = LabelsBuilder::new(scraped.clone());
    if ctx.honor_labels {
        for l in ctx.target_labels.iter() {
            if !scraped.has(l.name) && !empty_in_body.iter().any(|n| n == l.name) {
                lb.set(l.name, l.value);
            }
        }
    } else {
        let mut conflicts: Vec<(&str, &str)> = Vec::new();
        for l in ctx.target_labels.iter() {
            if let Some(v) = scraped.get(l.name) {
                conflicts.push((l.name, v));
            }
            lb.set(l.name, l.value);
        }
        // Shortest names first, then `exported_` prefixes until the name is free.
        conflicts.sort_by_key(|(n, _)| n.len());
        for (name, value) in conflicts {
            let mut new_name = name.to_string();
            loop {
                new_name = format!("exported_{new_name}");
                if lb.get(&new_name).is_none() {
                    lb.set(&new_name, value);
                    break;
                }
            }
        }
    }
    if !ctx.metric_relabel_configs.is_empty() && !relabel(&ctx.metric_relabel_configs, &mut lb) {
        return None;
    }
    let labels = lb.labels();
    if labels.metric_name().is_none() { None } else { Some(labels) }
}

fn check_label_limits(labels: &Labels, ctx: &SampleContext) -> Result<(), IngestError> {
    let metric = || labels.metric_name().unwrap_or("").to_string();
    if ctx.label_limit > 0 && labels.len() as u64 > ctx.label_limit {
        return Err(IngestError::LabelLimit {
            metric: metric(),
            count: labels.len(),
            limit: ctx.label_limit,
        });
    }
    for l in labels.iter() {
        if ctx.label_name_length_limit > 0 && l.name.len() as u64 > ctx.label_name_length_limit {
            return Err(IngestError::LabelNameLength {
                metric: metric(),
                name: l.name.to_string(),
                len: l.name.len(),
                limit: ctx.label_name_length_limit,
            });
        }
        if ctx.label_value_length_limit > 0 && l.value.len() as u64 > ctx.label_value_length_limit {
            return Err(IngestError::LabelValueLength {
                metric: metric(),
                name: l.name.to_string(),
                value: l.value.to_string(),
                len: l.value.len(),
                limit: ctx.label_value_length_limit,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Matcher, MetricType, is_stale_nan};
    use crate::storage::Queryable;
    use crate::tsdb::{Head, HeadOptions};

    fn ctx() -> SampleContext {
        SampleContext::unlimited(Labels::from_pairs(&[("instance", "h:1"), ("job", "j")]), false)
    }

    /// Every sample of the series with metric name `name`, as (labels, samples).
    fn samples(head: &Head, name: &str) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let q = head.querier(i64::MIN, i64::MAX).expect("querier");
        q.select(&[Matcher::equal("__name__", name)])
            .expect("select")
            .into_iter()
            .map(|s| ((*s.labels).clone(), s.samples.map(|x| (x.t, x.v)).collect()))
            .collect()
    }

    #[test]
    fn appends_with_target_labels_and_reuses_the_cache() -> Result<(), IngestError> {
        let head = Head::new(HeadOptions::default()).expect("head");
        let mut st = IngestState::default();
        let body = b"# TYPE a counter\na{x=\"1\"} 1\na{x=\"2\"} 2\nb 3\n";
        let s1 = st.ingest(&head, &ctx(), body, 1000)?;
        assert_eq!((s1.scraped, s1.post_relabel, s1.series_added), (3, 3, 3));
        let s2 = st.ingest(&head, &ctx(), b"a{x=\"1\"} 5\na{x=\"2\"} 6\nb 7\n", 2000)?;
        assert_eq!((s2.scraped, s2.post_relabel, s2.series_added), (3, 3, 0));
        let a = samples(&head, "a");
        assert_eq!(
            a[0].0,
            Labels::from_pairs(&[("__name__", "a"), ("instance", "h:1"), ("job", "j"), ("x", "1")])
        );
        assert_eq!(a[0].1, [(1000, 1.0), (2000, 5.0)]);
        Ok(())
    }

    #[test]
    fn disappeared_series_and_failed_scrapes_go_stale() -> Result<(), IngestError> {
        let head = Head::new(HeadOptions::default()).expect("head");
        let mut st = IngestState::default();
        st.ingest(&head, &ctx(), b"a 1\nb 1\nc 1 500\n", 1000)?;
        let s = st.ingest(&head, &ctx(), b"a 2\n", 2000)?;
        // b went away: stale at the scrape time. c carried its own timestamp: not tracked.
        assert_eq!(s.stale_markers, 1);
        let b = samples(&head, "b");
        assert!(b[0].1[1].0 == 2000 && is_stale_nan(b[0].1[1].1), "{b:?}");
        assert_eq!(samples(&head, "c")[0].1.len(), 1);
        // A broken body fails as a whole; then the loop marks the live series stale.
        let err = st.ingest(&head, &ctx(), b"a 3\nbad line here\n", 3000);
        assert!(matches!(err, Err(IngestError::Parse(_))), "{err:?}");
        assert_eq!(st.mark_all_stale(&head, 3000)?, 1);
        let a = samples(&head, "a");
        assert_eq!(a[0].1.len(), 3, "{a:?}");
        assert!(is_stale_nan(a[0].1[2].1), "{a:?}");
        // Coming back: a fresh sample, no second marker.
        st.ingest(&head, &ctx(), b"a 4\n", 4000)?;
        assert_eq!(samples(&head, "a")[0].1.last(), Some(&(4000, 4.0)));
        Ok(())
    }

    #[test]
    fn honor_labels_decides_conflicts() -> Result<(), IngestError> {
        let head = Head::new(HeadOptions::default()).expect("head");
        let body = b"m{job=\"scraped\",exported_job=\"e\"} 1\n";
        IngestState::default().ingest(&head, &ctx(), body, 1000)?;
        let got = &samples(&head, "m")[0].0;
        assert_eq!(got.get("job"), Some("j"));
        assert_eq!(got.get("exported_job"), Some("e"));
        assert_eq!(got.get("exported_exported_job"), Some("scraped"));

        let head = Head::new(HeadOptions::default()).expect("head");
        let honor = SampleContext { honor_labels: true, ..ctx() };
        IngestState::default().ingest(&head, &honor, b"m{job=\"scraped\"} 1\n", 1000)?;
        let got = &samples(&head, "m")[0].0;
        assert_eq!(got.get("job"), Some("scraped"));
        assert_eq!(got.get("instance"), Some("h:1"));
        // instance="" (as /federate writes it) keeps the target's instance off.
        IngestState::default().ingest(&head, &honor, b"n{instance=\"\"} 1\n", 1000)?;
        assert_eq!(samples(&head, "n")[0].0, Labels::from_pairs(&[("__name__", "n"), ("job", "j")]));
        Ok(())
    }

    #[test]
    fn limits_fail_the_whole_scrape() {
        let head = Head::new(HeadOptions::default()).expect("head");
        let limited = SampleContext { sample_limit: 2, ..ctx() };
        let r = IngestState::default().ingest(&head, &limited, b"a 1\nb 1\nc 1\n", 1000);
        assert!(matches!(r, Err(IngestError::SampleLimit { limit: 2 })), "{r:?}");
        assert!(samples(&head, "a").is_empty(), "nothing of a failed scrape is kept");
        let labels = SampleContext { label_limit: 3, ..ctx() };
        let r = IngestState::default().ingest(&head, &labels, b"a{x=\"1\",y=\"2\"} 1\n", 1000);
        assert!(matches!(r, Err(IngestError::LabelLimit { count: 5, .. })), "{r:?}");
    }

    #[test]
    fn metric_relabelling_drops_series() -> Result<(), IngestError> {
        let head = Head::new(HeadOptions::default()).expect("head");
        let rule: crate::relabel::RawRelabelConfig =
            serde_saphyr::from_str("{source_labels: [__name__], regex: 'go_.*', action: drop}")
                .expect("rule");
        let c = SampleContext { metric_relabel_configs: vec![rule.compile().expect("compile")], ..ctx() };
        let mut st = IngestState::default();
        let s = st.ingest(&head, &c, b"go_goroutines 5\nup_time 1\n", 1000)?;
        assert_eq!((s.scraped, s.post_relabel), (2, 1));
        assert!(samples(&head, "go_goroutines").is_empty());
        // Cached as dropped: the second scrape does not re-run the rules but still drops it.
        let s = st.ingest(&head, &c, b"go_goroutines 6\nup_time 2\n", 2000)?;
        assert_eq!((s.scraped, s.post_relabel, s.series_added), (2, 1, 0));
        Ok(())
    }

    #[test]
    fn refused_samples_are_counted_by_reason_and_the_rest_stored() -> Result<(), IngestError> {
        let head = Head::default();
        let mut st = IngestState::default();
        st.ingest(
            &head,
            &ctx(),
            b"a 1 5000
b 1 5000
c 1
",
            1000,
        )?;
        // As after a block cut: nothing older than 2000 is accepted any more.
        head.truncate(2000);
        let body = b"a 2 4000
b 2 5000
c 2
old 1 1500
new 1 6000
";
        let s = st.ingest(&head, &ctx(), body, 10_000)?;
        let want = Refused { out_of_order: 1, duplicates: 1, out_of_bounds: 1, at_commit: 0 };
        assert_eq!((s.refused, s.post_relabel), (want, 5));
        assert_eq!(
            s.refused.message(s.post_relabel).as_deref(),
            Some(
                "3 of 5 samples not stored: 1 out of bounds (too old for the storage), \
                 1 out of order (older than the series' newest sample), \
                 1 with a duplicate timestamp and another value"
            )
        );
        assert_eq!(samples(&head, "c")[0].1.last(), Some(&(10_000, 2.0)));
        assert_eq!(samples(&head, "new")[0].1, [(6000, 1.0)]);
        assert!(samples(&head, "old").is_empty());
        // The same body again with the old samples gone: nothing refused.
        let s = st.ingest(
            &head,
            &ctx(),
            b"a 3
b 3
c 3
new 2 7000
",
            20_000,
        )?;
        assert!(s.refused.is_empty(), "{:?}", s.refused);
        Ok(())
    }

    #[test]
    fn records_metadata_only_when_it_changes() -> Result<(), IngestError> {
        let head = Head::default();
        let mut state = IngestState::default();
        let body = b"# HELP up_total Ups.\n# TYPE up_total counter\nup_total 1\n# TYPE t gauge\nt 2\n";
        state.ingest(&head, &ctx(), body, 1000)?;
        let meta = state.take_metadata_change().cloned().unwrap_or_default();
        assert_eq!(
            meta.get("up_total"),
            Some(&MetricMetadata { kind: MetricType::Counter, help: "Ups.".into(), unit: String::new() })
        );
        assert_eq!(meta.get("t").map(|m| m.kind), Some(MetricType::Gauge));
        state.ingest(&head, &ctx(), body, 2000)?;
        assert!(state.take_metadata_change().is_none(), "unchanged metadata is not republished");
        state.ingest(&head, &ctx(), b"# HELP t Temperature.\nt 3\n", 3000)?;
        let meta = state.take_metadata_change().cloned().unwrap_or_default();
        assert_eq!(meta.get("t").map(|m| m.help.as_str()), Some("Temperature."));
        Ok(())
    }
}
