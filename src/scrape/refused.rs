//! Samples a scrape body held but the storage refused — out of bounds, out of order, a repeated
//! timestamp with another value: counted per scrape ([`Refused`]), shown on the target as its
//! last error while the scrape itself stays up (the body was fine), and logged at most once per
//! interval per target with the counts gathered since the previous line ([`RefusalLog`]).
//! Without this a target whose every sample is refused looks healthy (issue 9).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How often, at most, one target logs refused samples.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(60);

/// Samples the storage refused, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused {
    /// Older than the storage accepts (the end of its newest block, or retention).
    pub out_of_bounds: u64,
    /// Older than the series' newest stored sample.
    pub out_of_order: u64,
    /// The series' newest timestamp again, with another value.
    pub duplicates: u64,
    /// Refused when the scrape's samples were committed: another writer stored a newer sample
    /// of the series meanwhile, or the storage's bound rose (a block was cut).
    pub at_commit: u64,
}

impl Refused {
    pub fn total(&self) -> u64 {
        self.out_of_bounds + self.out_of_order + self.duplicates + self.at_commit
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    fn add(&mut self, other: &Refused) {
        self.out_of_bounds += other.out_of_bounds;
        self.out_of_order += other.out_of_order;
        self.duplicates += other.duplicates;
        self.at_commit += other.at_commit;
    }

    /// What a target shows as its last error, `None` when nothing was refused: e.g.
    /// `26 of 26 samples not stored: 26 out of bounds (too old for the storage)`. `of` is how
    /// many samples the storage was offered.
    pub fn message(&self, of: u64) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let total = self.total();
        let mut m = format!("{total} of {} samples not stored: ", of.max(total));
        let parts = [
            (self.out_of_bounds, "out of bounds (too old for the storage)"),
            (self.out_of_order, "out of order (older than the series' newest sample)"),
            (self.duplicates, "with a duplicate timestamp and another value"),
            (self.at_commit, "refused at commit (a concurrent write or a block cut)"),
        ];
        let mut first = true;
        for (n, what) in parts {
            if n > 0 {
                let _ = write!(m, "{}{n} {what}", if first { "" } else { ", " });
                first = false;
            }
        }
        Some(m)
    }
}

/// Rate limit of one target's warnings about refused samples: the first refusal is logged at
/// once, later ones at most once per interval, each line with every count since the previous one
/// (so nothing refused goes unreported while the loop runs).
#[derive(Debug)]
pub(crate) struct RefusalLog {
    every: Duration,
    last: Option<Instant>,
    /// Refused since the last line, and over how many scrapes.
    pending: Refused,
    scrapes: u64,
}

impl RefusalLog {
    pub(crate) fn new(every: Duration) -> RefusalLog {
        RefusalLog { every, last: None, pending: Refused::default(), scrapes: 0 }
    }

    /// Notes one scrape's refusals (empty for a clean scrape). Returns what to log now — the
    /// counts since the last line and how many scrapes they come from — if anything is pending
    /// and the last line is at least an interval old.
    pub(crate) fn note(&mut self, refused: &Refused, now: Instant) -> Option<(Refused, u64)> {
        if !refused.is_empty() {
            self.pending.add(refused);
            self.scrapes += 1;
        }
        if self.pending.is_empty() || self.last.is_some_and(|l| now.duration_since(l) < self.every) {
            return None;
        }
        self.last = Some(now);
        let out = (self.pending, self.scrapes);
        self.pending = Refused::default();
        self.scrapes = 0;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_each_reason_with_its_count() {
        assert_eq!(Refused::default().message(10), None);
        let r = Refused { out_of_bounds: 26, ..Refused::default() };
        assert_eq!(
            r.message(26).as_deref(),
            Some("26 of 26 samples not stored: 26 out of bounds (too old for the storage)")
        );
        let r = Refused { out_of_order: 2, duplicates: 1, at_commit: 3, ..Refused::default() };
        assert_eq!(
            r.message(40).as_deref(),
            Some(
                "6 of 40 samples not stored: 2 out of order (older than the series' newest sample), \
                 1 with a duplicate timestamp and another value, \
                 3 refused at commit (a concurrent write or a block cut)"
            )
        );
    }

    #[test]
    fn log_is_rate_limited_and_carries_the_counts_since_the_last_line() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut log = RefusalLog::new(Duration::from_secs(60));
        let oob = |n| Refused { out_of_bounds: n, ..Refused::default() };
        assert_eq!(log.note(&Refused::default(), at(0)), None, "clean scrapes log nothing");
        assert_eq!(log.note(&oob(5), at(1)), Some((oob(5), 1)), "the first refusal at once");
        assert_eq!(log.note(&oob(5), at(2)), None);
        assert_eq!(log.note(&Refused { duplicates: 1, ..Refused::default() }, at(30)), None);
        assert_eq!(log.note(&Refused::default(), at(40)), None);
        // A minute after the last line, even on a clean scrape, the pending counts come out.
        let want = Refused { out_of_bounds: 5, duplicates: 1, ..Refused::default() };
        assert_eq!(log.note(&Refused::default(), at(61)), Some((want, 2)));
        assert_eq!(log.note(&Refused::default(), at(200)), None, "nothing pending");
        assert_eq!(log.note(&oob(1), at(201)), Some((oob(1), 1)));
    }
}
