//! Durations in Prometheus's notation (`1y2w3d4h5m6s7ms`, `0`), as used in configuration, labels
//! such as `__scrape_interval__`, and query parameters.

use std::fmt;
use std::time::Duration;

/// A duration string that is not in Prometheus's notation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid duration string: {0:?}")]
pub struct DurationError(pub String);

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses `1h30m`, `15s`, `100ms`, `2d`, `0`: units in descending order, each at most once.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(s.to_string());
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut next_unit = 0; // index into UNITS: units must appear in this order
    let mut total: u64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(err());
        }
        let n: u64 = s[start..i].parse().map_err(|_| err())?;
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[unit_start..i];
        let pos = UNITS[next_unit..].iter().position(|(u, _)| *u == unit).ok_or_else(err)? + next_unit;
        next_unit = pos + 1;
        total = n.checked_mul(UNITS[pos].1).and_then(|ms| total.checked_add(ms)).ok_or_else(err)?;
    }
    Ok(Duration::from_millis(total))
}

/// Formats like Prometheus (`1h30m`, `15s`, `0s`), the inverse of [`parse_duration`].
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// A [`Duration`] that displays in Prometheus notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PromDuration(pub Duration);

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let ms = |s: &str| parse_duration(s).map(|d| d.as_millis() as u64);
        assert_eq!(ms("15s"), Ok(15_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms("100ms"), Ok(100));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("1y"), Ok(31_536_000_000));
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("0s"), Ok(0));
        for bad in ["", "15", "1.5s", "5m1h", "1s1s", "-1s", "1x", "s", "1 s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(7 * 86400)), "1w");
    }
}
