//! Samples, the staleness marker and metric types.

/// The bit pattern Prometheus uses to mark a series as stale ("StaleNaN"). It is a NaN, so it
/// must always be compared by bits, never by value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// True when `v` is exactly the staleness marker (an ordinary NaN is not).
#[inline]
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The current wall-clock time in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One float sample: a millisecond timestamp and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The value; may be [`STALE_NAN`].
    pub v: f64,
}

impl Sample {
    /// Equality that treats two NaNs with the same bits as equal (what storage round-trips need).
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

/// The metric family types of the text and OpenMetrics formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    #[default]
    Unknown,
}

impl MetricType {
    /// Parses a `# TYPE` keyword; both `gaugehistogram` and `gauge_histogram` are accepted.
    pub fn parse(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" | "gauge_histogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// The keyword used by the Prometheus text format 0.0.4 and the metadata API.
    pub fn as_str(&self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nan_is_distinct_from_plain_nan() {
        assert!(is_stale_nan(STALE_NAN));
        assert!(STALE_NAN.is_nan());
        assert!(!is_stale_nan(f64::NAN));
        assert!(!is_stale_nan(1.0));
    }

    #[test]
    fn type_keywords_round_trip() {
        for t in ["counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset"] {
            assert_eq!(MetricType::parse(t).map(|m| m.as_str()), Some(t));
        }
        assert_eq!(MetricType::parse("gauge_histogram"), Some(MetricType::GaugeHistogram));
        assert_eq!(MetricType::parse("untyped"), Some(MetricType::Unknown));
        assert_eq!(MetricType::parse("bogus"), None);
    }
}
