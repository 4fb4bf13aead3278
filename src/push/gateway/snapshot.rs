//! The samples of every group at one moment, as a scrape of Pushgateway's `/metrics` with
//! `honor_labels: true` would store them, with their families' metadata; and which series a
//! snapshot no longer has compared with an earlier one, so that the caller can write staleness
//! markers for exactly those.

use std::collections::BTreeMap;

use super::family::{
    Family, FamilyKind, Metric, MetricValue, PUSH_FAILURE_TIME, PUSH_FAILURE_TIME_HELP, PUSH_TIME,
    PUSH_TIME_HELP, sanitize,
};
use super::key::GroupingKey;
use super::store::Group;
use crate::model::{Labels, MetricMetadata};

/// One series of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSeries {
    /// `__name__`, the grouping labels and the pushed labels; never an empty value.
    pub labels: Labels,
    pub value: f64,
    /// Index of the series' family in [`Snapshot::families`].
    pub family: usize,
}

/// The series of every group at one moment, sorted by labels, each label set once.
///
/// Made every scrape interval by the push node: append every series at the interval's timestamp,
/// then a staleness marker for every label set [`Snapshot::disappeared_since`] the previous
/// snapshot gives, and keep this snapshot as the next one's previous (start from
/// `Snapshot::default()`). A series that is gone and back between two snapshots is simply
/// present in both, as it would be for a Prometheus scraping a Pushgateway at that interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Family name and metadata, sorted by name. Every group's family of one name has the same
    /// type (pushes are checked for that); the help is that of the first group, in grouping-key
    /// order, holding the family (Pushgateway shows one of them, which one is not defined).
    families: Vec<(String, MetricMetadata)>,
    series: Vec<SnapshotSeries>,
}

impl Snapshot {
    /// Every series, sorted by labels, no label set twice.
    pub fn series(&self) -> &[SnapshotSeries] {
        &self.series
    }

    /// Every family (name and metadata), sorted by name.
    pub fn families(&self) -> &[(String, MetricMetadata)] {
        &self.families
    }

    /// The family name and metadata of `series` (a series of this snapshot).
    pub fn family_of(&self, series: &SnapshotSeries) -> (&str, &MetricMetadata) {
        let (name, meta) = &self.families[series.family];
        (name, meta)
    }

    /// The series with exactly these labels.
    pub fn get(&self, labels: &Labels) -> Option<&SnapshotSeries> {
        self.series.binary_search_by(|s| s.labels.cmp(labels)).ok().map(|i| &self.series[i])
    }

    /// The label sets `previous` has and this snapshot has not — the series to mark stale — in
    /// label order.
    pub fn disappeared_since<'a>(&'a self, previous: &'a Snapshot) -> impl Iterator<Item = &'a Labels> + 'a {
        let mut mine = self.series.iter().map(|s| &s.labels).peekable();
        previous.series.iter().map(|s| &s.labels).filter(move |labels| {
            // Both are sorted: move past everything smaller, then compare.
            while mine.next_if(|m| m < labels).is_some() {}
            mine.peek() != Some(labels)
        })
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// A family merged over all groups, before exposure.
struct Merged<'a> {
    kind: FamilyKind,
    help: Option<&'a str>,
    metrics: Vec<&'a Metric>,
}

/// The snapshot of `groups`.
pub(super) fn build(groups: &BTreeMap<GroupingKey, Group>) -> Snapshot {
    // The push-time gauges are metrics of their own families, one per group.
    let gauge = |key: &GroupingKey, value: f64| {
        let mut labels = Vec::new();
        sanitize(&mut labels, key);
        Metric { labels, value: MetricValue::Simple(value) }
    };
    let push_times = Family {
        help: Some(PUSH_TIME_HELP.to_string()),
        kind: FamilyKind::Gauge,
        metrics: groups.iter().map(|(k, g)| gauge(k, g.push_time)).collect(),
    };
    let failure_times = Family {
        help: Some(PUSH_FAILURE_TIME_HELP.to_string()),
        kind: FamilyKind::Gauge,
        metrics: groups.iter().map(|(k, g)| gauge(k, g.push_failure_time)).collect(),
    };
    let mut merged: BTreeMap<&str, Merged<'_>> = BTreeMap::new();
    let all = groups
        .values()
        .flat_map(|g| g.families.iter().map(|(n, f)| (n.as_str(), f)))
        .chain([(PUSH_TIME, &push_times), (PUSH_FAILURE_TIME, &failure_times)]);
    for (name, family) in all {
        if family.metrics.is_empty() {
            continue;
        }
        merged
            .entry(name)
            .or_insert_with(|| Merged {
                kind: family.kind,
                help: family.help.as_deref(),
                metrics: Vec::new(),
            })
            .metrics
            .extend(family.metrics.iter());
    }

    let mut snapshot = Snapshot::default();
    for (index, (name, mut family)) in merged.into_iter().enumerate() {
        let meta = MetricMetadata {
            kind: family.kind.metric_type(),
            help: family.help.unwrap_or_default().to_string(),
            unit: String::new(),
        };
        snapshot.families.push((name.to_string(), meta));
        // Pushgateway's exposition order (client_golang's metric sorter: fewer labels first, then
        // label values in order), which decides which of two series that differ only in empty
        // values a first-wins scrape keeps.
        family.metrics.sort_by(|a, b| {
            a.labels
                .len()
                .cmp(&b.labels.len())
                .then_with(|| a.labels.iter().map(|(_, v)| v).cmp(b.labels.iter().map(|(_, v)| v)))
        });
        for m in family.metrics {
            m.expose(name, |labels, value| {
                snapshot.series.push(SnapshotSeries { labels, value, family: index })
            });
        }
    }
    // Stable, so the first exposed of equal label sets is the one kept.
    snapshot.series.sort_by(|a, b| a.labels.cmp(&b.labels));
    snapshot.series.dedup_by(|later, kept| later.labels == kept.labels);
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(names: &[&str]) -> Snapshot {
        let mut series: Vec<SnapshotSeries> = names
            .iter()
            .map(|n| SnapshotSeries {
                labels: Labels::from_pairs(&[("__name__", *n)]),
                value: 1.0,
                family: 0,
            })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Snapshot { families: vec![("f".into(), MetricMetadata::default())], series }
    }

    fn gone(now: &Snapshot, before: &Snapshot) -> Vec<String> {
        now.disappeared_since(before).map(|l| l.metric_name().unwrap_or_default().to_string()).collect()
    }

    #[test]
    fn disappeared_series_are_exactly_the_missing_ones() {
        let before = snap(&["a", "b", "c", "e"]);
        assert_eq!(gone(&snap(&["b", "d", "e", "f"]), &before), ["a", "c"]);
        assert_eq!(gone(&snap(&[]), &before), ["a", "b", "c", "e"]);
        assert!(gone(&before, &snap(&[])).is_empty());
        assert!(gone(&before, &before).is_empty());
        assert!(gone(&snap(&["a"]), &Snapshot::default()).is_empty());
    }

    #[test]
    fn series_differing_only_in_empty_values_keep_the_first_exposed() {
        let key = GroupingKey::new("a", &[]).unwrap();
        let metric = |labels: &[(&str, &str)], v: f64| {
            let mut labels: Vec<(String, String)> =
                labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            sanitize(&mut labels, &key);
            Metric { labels, value: MetricValue::Simple(v) }
        };
        let family = Family {
            help: None,
            kind: FamilyKind::Untyped,
            metrics: vec![metric(&[("b", "")], 1.0), metric(&[], 2.0)],
        };
        let group = Group {
            families: [("m".to_string(), family)].into_iter().collect(),
            push_time: 5.0,
            push_failure_time: 0.0,
        };
        let snap = build(&[(key, group)].into_iter().collect());
        let m = snap.get(&Labels::from_pairs(&[("__name__", "m"), ("job", "a")])).unwrap();
        assert_eq!(m.value, 2.0);
        assert_eq!(snap.len(), 3);
        let names: Vec<&str> = snap.families().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["m", "push_failure_time_seconds", "push_time_seconds"]);
        assert_eq!(snap.family_of(m).0, "m");
    }
}
