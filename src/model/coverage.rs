//! How much of its assignment a node covers — targets up out of its targets, and active series —
//! so that replicas of one set can be compared: a replica that lost most of its targets should
//! not be preferred over a complete one just because it still answers.

/// A node's coverage. Zero totals mean "unknown" (e.g. a source that does not report it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Targets whose last scrape (or replica sets whose last pull) succeeded.
    pub targets_up: u32,
    /// Targets (or replica sets) the node is responsible for.
    pub targets_total: u32,
    /// Series in the latest scrapes (or pulls) of the targets that are up.
    pub series: u64,
}

impl Coverage {
    /// Whether anything is known.
    pub fn is_known(&self) -> bool {
        self.targets_total > 0 || self.series > 0
    }

    /// Adds another node's coverage (a global sums what its elected sources cover).
    pub fn add(&mut self, other: &Coverage) {
        self.targets_up = self.targets_up.saturating_add(other.targets_up);
        self.targets_total = self.targets_total.saturating_add(other.targets_total);
        self.series = self.series.saturating_add(other.series);
    }

    /// Why `self` falls below `ratio` of `best` (targets up or series), if it does. Measures
    /// unknown on either side are not compared.
    pub fn shortfall(&self, best: &Coverage, ratio: f64) -> Option<String> {
        if ratio <= 0.0 {
            return None;
        }
        let below = |mine: f64, theirs: f64| theirs > 0.0 && mine < ratio * theirs;
        let targets = self.targets_total > 0
            && best.targets_total > 0
            && below(f64::from(self.targets_up), f64::from(best.targets_up));
        // Zero series is "not reported" (a probe of `up` only): targets speak for a replica with
        // nothing up.
        let series = self.series > 0 && best.series > 0 && below(self.series as f64, best.series as f64);
        (targets || series).then(|| {
            format!(
                "covers {} of {} targets and {} series, below {:.0}% of its peer's {} targets up and {} series",
                self.targets_up,
                self.targets_total,
                self.series,
                ratio * 100.0,
                best.targets_up,
                best.series
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(up: u32, total: u32, series: u64) -> Coverage {
        Coverage { targets_up: up, targets_total: total, series }
    }

    #[test]
    fn shortfall_compares_known_measures_only() {
        assert_eq!(c(10, 10, 1000).shortfall(&c(10, 10, 1000), 0.8), None);
        assert!(c(3, 10, 300).shortfall(&c(10, 10, 1000), 0.8).is_some());
        // Series fell while every target is still up (a target lost most of its series).
        assert!(c(10, 10, 500).shortfall(&c(10, 10, 1000), 0.8).is_some());
        // Small differences are normal between replicas.
        assert_eq!(c(9, 10, 950).shortfall(&c(10, 10, 1000), 0.8), None);
        // Unknown on one side: nothing to compare.
        assert_eq!(c(0, 0, 0).shortfall(&c(10, 10, 1000), 0.8), None);
        assert_eq!(c(3, 10, 0).shortfall(&c(0, 0, 1000), 0.8), None);
        // A replica with no target up at all but known totals is short.
        assert!(c(0, 10, 0).shortfall(&c(10, 10, 1000), 0.8).is_some());
        // Turned off.
        assert_eq!(c(0, 10, 0).shortfall(&c(10, 10, 1000), 0.0), None);
    }
}
