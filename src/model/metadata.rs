//! Metric metadata — a family's `# TYPE`, `# HELP` and `# UNIT` — and which series belong to a
//! family: a histogram `x` has series `x_bucket`, `x_sum`, `x_count`, an OpenMetrics counter `x`
//! has `x_total`, and so on. Scrapes record metadata by family name; whoever needs it for a series
//! (remote write) finds the family from the series' metric name with [`family_of`].

use std::collections::HashMap;

use super::MetricType;

/// A metric family's `# TYPE`, `# HELP` and `# UNIT` (`/api/v1/metadata`, remote write).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MetricMetadata {
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

impl MetricType {
    /// The name suffixes series of a family of this type carry after the family's name, as
    /// Prometheus's scrape loop and OpenMetrics define them (`_created` for the types that have a
    /// creation time).
    pub fn series_suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            MetricType::Summary => &["_sum", "_count", "_created"],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[],
        }
    }
}

/// Every suffix some type adds, for [`family_of`].
const SUFFIXES: &[&str] = &["_bucket", "_sum", "_count", "_total", "_created", "_gsum", "_gcount", "_info"];

/// The metadata of the family series `metric_name` belongs to: the family of that exact name
/// (gauges, untyped metrics, counters exposed as `# TYPE x_total counter` in the text format),
/// else the family named by the name without a suffix that family's type gives its series (a
/// histogram `x` for `x_bucket`, never a gauge `x` for `x_sum`). One hash lookup per suffix the
/// name ends with; no allocation.
pub fn family_of<'a>(
    families: &'a HashMap<String, MetricMetadata>,
    metric_name: &str,
) -> Option<(&'a str, &'a MetricMetadata)> {
    if let Some((k, m)) = families.get_key_value(metric_name) {
        return Some((k.as_str(), m));
    }
    SUFFIXES.iter().find_map(|suffix| {
        let family = metric_name.strip_suffix(suffix)?;
        let (k, m) = families.get_key_value(family)?;
        m.kind.series_suffixes().contains(suffix).then_some((k.as_str(), m))
    })
}

/// The family name a series named `metric_name` of type `kind` is filed under when only the
/// series is known (a Remote-Write 2.0 series carries its type, not its family's name): the
/// name without the histogram, gauge-histogram or summary suffix it carries. Counter and info
/// names are kept whole: the text format names a counter family `x_total` itself, so cutting
/// `_total` would file most counters under a name no scrape uses.
pub fn family_name(metric_name: &str, kind: MetricType) -> &str {
    match kind {
        MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary => kind
            .series_suffixes()
            .iter()
            .filter(|s| **s != "_created")
            .find_map(|s| metric_name.strip_suffix(s))
            .unwrap_or(metric_name),
        _ => metric_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: MetricType) -> MetricMetadata {
        MetricMetadata { kind, help: format!("{} help", kind.as_str()), unit: String::new() }
    }

    #[test]
    fn series_find_their_family() {
        let families: HashMap<String, MetricMetadata> = [
            ("http_requests_total", MetricType::Counter),
            ("rpc", MetricType::Counter),
            ("latency", MetricType::Histogram),
            ("temperature", MetricType::Gauge),
            ("size", MetricType::Summary),
            ("build", MetricType::Info),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_string(), meta(k)))
        .collect();
        let kind = |name: &str| family_of(&families, name).map(|(f, m)| (f.to_string(), m.kind));
        let f = |n: &str, k| Some((n.to_string(), k));
        assert_eq!(kind("http_requests_total"), f("http_requests_total", MetricType::Counter));
        assert_eq!(kind("rpc_total"), f("rpc", MetricType::Counter));
        assert_eq!(kind("latency_bucket"), f("latency", MetricType::Histogram));
        assert_eq!(kind("latency_sum"), f("latency", MetricType::Histogram));
        assert_eq!(kind("latency_created"), f("latency", MetricType::Histogram));
        assert_eq!(kind("size_count"), f("size", MetricType::Summary));
        assert_eq!(kind("build_info"), f("build", MetricType::Info));
        assert_eq!(kind("temperature"), f("temperature", MetricType::Gauge));
        // A gauge has no `_sum` series; a summary no `_bucket`.
        assert_eq!(kind("temperature_sum"), None);
        assert_eq!(kind("size_bucket"), None);
        assert_eq!(kind("unknown_metric"), None);
    }

    #[test]
    fn family_names_of_typed_series() {
        assert_eq!(family_name("latency_bucket", MetricType::Histogram), "latency");
        assert_eq!(family_name("size_count", MetricType::Summary), "size");
        assert_eq!(family_name("q_gsum", MetricType::GaugeHistogram), "q");
        assert_eq!(family_name("http_requests_total", MetricType::Counter), "http_requests_total");
        assert_eq!(family_name("temperature", MetricType::Gauge), "temperature");
        assert_eq!(family_name("latency", MetricType::Histogram), "latency");
    }
}
