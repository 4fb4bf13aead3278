//! The metric families of a group as Pushgateway holds them — client_model's `MetricFamily`: a
//! summary or histogram is one metric carrying its quantiles or buckets, sum and count, and counts
//! are unsigned integers — and how one metric is exposed as samples, exactly as Pushgateway's
//! `/metrics` writes it (a histogram always gets a `+Inf` bucket, `_sum` and `_count`; a summary
//! always `_sum` and `_count`).

use xxhash_rust::xxh3::Xxh3;

use super::key::GroupingKey;
use crate::exposition::write_openmetrics_float;
use crate::model::{Label, Labels, METRIC_NAME, MetricType};

/// The gauge of the last successful change of a group.
pub(super) const PUSH_TIME: &str = "push_time_seconds";
pub(super) const PUSH_TIME_HELP: &str =
    "Last Unix time when changing this group in the Pushgateway succeeded.";
/// The gauge of the last failed change of a group (0 if none).
pub(super) const PUSH_FAILURE_TIME: &str = "push_failure_time_seconds";
pub(super) const PUSH_FAILURE_TIME_HELP: &str =
    "Last Unix time when changing this group in the Pushgateway failed.";

/// The types a Pushgateway family can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FamilyKind {
    Counter,
    Gauge,
    Untyped,
    Summary,
    Histogram,
}

impl FamilyKind {
    /// The text format's keyword.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            FamilyKind::Counter => "counter",
            FamilyKind::Gauge => "gauge",
            FamilyKind::Untyped => "untyped",
            FamilyKind::Summary => "summary",
            FamilyKind::Histogram => "histogram",
        }
    }

    pub(super) fn parse(s: &str) -> Option<FamilyKind> {
        Some(match s {
            "counter" => FamilyKind::Counter,
            "gauge" => FamilyKind::Gauge,
            "untyped" => FamilyKind::Untyped,
            "summary" => FamilyKind::Summary,
            "histogram" => FamilyKind::Histogram,
            _ => return None,
        })
    }

    pub(super) fn metric_type(self) -> MetricType {
        match self {
            FamilyKind::Counter => MetricType::Counter,
            FamilyKind::Gauge => MetricType::Gauge,
            FamilyKind::Untyped => MetricType::Unknown,
            FamilyKind::Summary => MetricType::Summary,
            FamilyKind::Histogram => MetricType::Histogram,
        }
    }
}

/// One family of one group.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Family {
    /// `None` when the push had no `# HELP` line (then none is exposed), `Some("")` for an empty one.
    pub(super) help: Option<String>,
    pub(super) kind: FamilyKind,
    pub(super) metrics: Vec<Metric>,
}

/// One metric: its label pairs and its value(s).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Metric {
    /// Sorted by name, unique; once stored, the grouping labels and `instance` are among them
    /// ([`sanitize`]). Values may be empty: Pushgateway keeps `a=""` and tells it apart from no
    /// `a` when checking for duplicates, though a scrape drops it.
    pub(super) labels: Vec<(String, String)>,
    pub(super) value: MetricValue,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum MetricValue {
    /// Counter, gauge or untyped.
    Simple(f64),
    Summary(Summary),
    Histogram(Histogram),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Summary {
    /// (quantile, value) in pushed order; repeats are kept, as Pushgateway keeps them.
    pub(super) quantiles: Vec<(f64, f64)>,
    pub(super) sum: f64,
    pub(super) count: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Histogram {
    /// (upper bound, cumulative count) in pushed order.
    pub(super) buckets: Vec<(f64, u64)>,
    pub(super) sum: f64,
    pub(super) count: u64,
}

impl Metric {
    /// What Pushgateway's duplicate check compares (family name and every label pair, empty
    /// values included), as a 128-bit hash.
    pub(super) fn identity(&self, family: &str) -> u128 {
        let mut h = Xxh3::new();
        h.update(family.as_bytes());
        h.update(&[0xff]);
        for (n, v) in &self.labels {
            h.update(n.as_bytes());
            h.update(&[0xff]);
            h.update(v.as_bytes());
            h.update(&[0xff]);
        }
        h.digest128()
    }

    /// Calls `emit` with each sample Pushgateway's `/metrics` shows for this metric of `family`,
    /// in its order, as a scraper stores it: empty label values dropped, `le` and `quantile` in
    /// the canonical float spelling (`1.0`), `-0` as `0`.
    pub(super) fn expose(&self, family: &str, mut emit: impl FnMut(Labels, f64)) {
        let base: Vec<Label> =
            self.labels.iter().filter(|(_, v)| !v.is_empty()).map(|(n, v)| Label::new(n, v)).collect();
        let series = |suffix: &str, extra: Option<(&str, f64)>| {
            let mut pairs = base.clone();
            pairs.push(Label::new(METRIC_NAME, format!("{family}{suffix}")));
            if let Some((name, bound)) = extra {
                let mut text = Vec::with_capacity(24);
                write_openmetrics_float(&mut text, bound);
                pairs.push(Label::new(name, String::from_utf8_lossy(&text)));
            }
            Labels::new(pairs)
        };
        match &self.value {
            MetricValue::Simple(v) => emit(series("", None), exposed(*v)),
            MetricValue::Summary(s) => {
                for (q, v) in &s.quantiles {
                    emit(series("", Some(("quantile", *q))), exposed(*v));
                }
                emit(series("_sum", None), exposed(s.sum));
                emit(series("_count", None), s.count as f64);
            }
            MetricValue::Histogram(h) => {
                for (b, c) in &h.buckets {
                    emit(series("_bucket", Some(("le", *b))), *c as f64);
                }
                if !h.buckets.iter().any(|(b, _)| *b == f64::INFINITY) {
                    emit(series("_bucket", Some(("le", f64::INFINITY))), h.count as f64);
                }
                emit(series("_sum", None), exposed(h.sum));
                emit(series("_count", None), h.count as f64);
            }
        }
    }
}

/// The value a scraper reads from Pushgateway's text: it writes both zeros as `0`.
fn exposed(v: f64) -> f64 {
    if v == 0.0 { 0.0 } else { v }
}

/// What Pushgateway does to every pushed metric before storing it: each grouping label is set
/// (replacing a pushed value of the same name) and an empty `instance` is added when there is
/// none, so that a scrape with `honor_labels: true` does not attach the gateway's own.
pub(super) fn sanitize(labels: &mut Vec<(String, String)>, key: &GroupingKey) {
    for (name, value) in key.pairs() {
        match labels.iter_mut().find(|(n, _)| n == name) {
            Some(pair) => value.clone_into(&mut pair.1),
            None => labels.push((name.to_string(), value.to_string())),
        }
    }
    if !labels.iter().any(|(n, _)| n == "instance") {
        labels.push(("instance".to_string(), String::new()));
    }
    labels.sort_by(|a, b| a.0.cmp(&b.0));
}

/// Go's `uint64(f)` for a float64 on amd64, which is how Pushgateway's parser turns a pushed
/// `_count` or bucket value into a count: truncation toward zero in range, two's complement for
/// negative values (`-1` becomes 2^64-1), and 2^63 for NaN, infinities and values too large.
pub(super) fn go_float_to_u64(v: f64) -> u64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    // CVTTSD2SQ: truncation, or i64::MIN when the result does not fit.
    let cvt = |x: f64| if x.is_nan() || !(-TWO_63..TWO_63).contains(&x) { i64::MIN } else { x as i64 };
    if v < TWO_63 { cvt(v) as u64 } else { (cvt(v - TWO_63) as u64) | (1 << 63) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_convert_like_go_on_amd64() {
        // Values observed from Pushgateway 1.5.1 on amd64 (summary `_count` lines).
        assert_eq!(go_float_to_u64(2.7), 2);
        assert_eq!(go_float_to_u64(-1.0) as f64, 1.8446744073709552e19);
        assert_eq!(go_float_to_u64(-2.5) as f64, 1.8446744073709552e19);
        assert_eq!(go_float_to_u64(f64::NAN) as f64, 9.223372036854776e18);
        assert_eq!(go_float_to_u64(f64::INFINITY) as f64, 9.223372036854776e18);
        assert_eq!(go_float_to_u64(f64::NEG_INFINITY) as f64, 9.223372036854776e18);
        assert_eq!(go_float_to_u64(1e20) as f64, 9.223372036854776e18);
        assert_eq!(go_float_to_u64(9.3e18) as f64, 9.3e18);
    }

    #[test]
    fn sanitize_sets_grouping_labels_and_instance() {
        let key = GroupingKey::new("a", &[("zone", "z")]).unwrap();
        let mut labels = vec![("job".to_string(), "other".to_string()), ("x".to_string(), "1".to_string())];
        sanitize(&mut labels, &key);
        let want: Vec<(String, String)> = [("instance", ""), ("job", "a"), ("x", "1"), ("zone", "z")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(labels, want);
        let mut labels = vec![("instance".to_string(), "i".to_string())];
        sanitize(&mut labels, &key);
        assert_eq!(labels[0], ("instance".to_string(), "i".to_string()));
    }

    #[test]
    fn histograms_and_summaries_expose_like_pushgateway() {
        let labels = vec![("instance".to_string(), String::new()), ("job".to_string(), "a".to_string())];
        let h = Metric {
            labels: labels.clone(),
            value: MetricValue::Histogram(Histogram {
                buckets: vec![(1.0, 2), (2.5, 3)],
                sum: 4.5,
                count: 0,
            }),
        };
        let mut got = Vec::new();
        h.expose("h", |l, v| got.push((l.to_string(), v)));
        assert_eq!(
            got,
            vec![
                (r#"{__name__="h_bucket", job="a", le="1.0"}"#.to_string(), 2.0),
                (r#"{__name__="h_bucket", job="a", le="2.5"}"#.to_string(), 3.0),
                (r#"{__name__="h_bucket", job="a", le="+Inf"}"#.to_string(), 0.0),
                (r#"{__name__="h_sum", job="a"}"#.to_string(), 4.5),
                (r#"{__name__="h_count", job="a"}"#.to_string(), 0.0),
            ]
        );
        let s = Metric {
            labels,
            value: MetricValue::Summary(Summary { quantiles: vec![(0.5, -0.0)], sum: 0.0, count: 2 }),
        };
        let mut got = Vec::new();
        s.expose("s", |l, v| got.push((l.to_string(), v.to_bits())));
        assert_eq!(got[0], (r#"{__name__="s", job="a", quantile="0.5"}"#.to_string(), 0.0f64.to_bits()));
        assert_eq!(got.len(), 3);
    }
}
