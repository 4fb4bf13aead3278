//! The per-target series cache: raw series text → what ingesting it needs (series ref, whether
//! relabelling drops it), plus the order of the last scrape, so that the series expected next can
//! be checked with one comparison before any label is parsed or any key hashed.

use hashbrown::HashTable;
use std::hash::BuildHasher;

use crate::model::{MetricType, SeriesKeyHasher};
use crate::storage::SeriesRef;

/// No slot.
const NONE: u32 = u32::MAX;

/// What the cache keeps per series.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheEntry {
    /// `None`: metric relabelling drops this series.
    pub(crate) series: Option<SeriesRef>,
    /// Iteration that last saw it.
    pub(crate) last_seen: u64,
    /// The `last_seen` before the current iteration, restored if the iteration fails.
    pub(crate) prev_seen: u64,
    /// Iteration that created the entry (entries of a failed scrape are discarded).
    pub(crate) created: u64,
    /// False when the series carries its own timestamps: Prometheus does not mark those stale.
    pub(crate) tracked: bool,
}

#[derive(Debug)]
struct Slot {
    /// The series text as the target wrote it; empty for a free slot.
    key: Box<[u8]>,
    /// The `# TYPE` in effect when the entry was made (it decides label normalisation).
    family: MetricType,
    entry: CacheEntry,
    /// The slot of the series that followed this one the last time it was seen.
    next: u32,
}

/// Slots in a vector (a scrape walks them mostly in order), found by key through a table of
/// slot numbers, and chained in the order the target last sent them.
#[derive(Debug, Default)]
pub(crate) struct SeriesCache {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: SeriesKeyHasher,
    /// The first series of the last scrape.
    first: u32,
    /// The series the current scrape saw last (`NONE` before its first).
    cursor: u32,
    live: usize,
}

impl SeriesCache {
    /// Number of series cached.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Starts following a new scrape from its first series.
    pub(crate) fn begin_scrape(&mut self) {
        self.cursor = NONE;
    }

    /// The series expected next (the one that followed the current one last time): its slot,
    /// text and type.
    pub(crate) fn predicted(&self) -> Option<(u32, &[u8], MetricType)> {
        let slot = match self.cursor {
            NONE => self.first,
            c => self.slots.get(c as usize)?.next,
        };
        let s = self.slots.get(slot as usize)?;
        (!s.key.is_empty()).then_some((slot, &s.key[..], s.family))
    }

    /// Records that the current scrape's next series is `slot`.
    pub(crate) fn visit(&mut self, slot: u32) {
        match self.slots.get_mut(self.cursor as usize) {
            Some(prev) => prev.next = slot,
            None => self.first = slot,
        }
        self.cursor = slot;
    }

    /// The slot holding `key` (under any type), with the key's hash.
    fn slot_of(&self, key: &[u8]) -> (u64, Option<u32>) {
        let h = self.hasher.hash_one(key);
        (h, self.index.find(h, |&i| *self.slots[i as usize].key == *key).copied())
    }

    /// The slot holding `key` under `family`.
    pub(crate) fn find(&self, key: &[u8], family: MetricType) -> Option<u32> {
        let slot = self.slot_of(key).1?;
        (self.slots[slot as usize].family == family).then_some(slot)
    }

    /// True when `key` is cached (under any type).
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.slot_of(key).1.is_some()
    }

    pub(crate) fn entry_mut(&mut self, slot: u32) -> &mut CacheEntry {
        &mut self.slots[slot as usize].entry
    }

    /// Sets the entry for `key` (replacing any), returning its slot.
    pub(crate) fn upsert(&mut self, key: &[u8], family: MetricType, entry: CacheEntry) -> u32 {
        let (h, found) = self.slot_of(key);
        if let Some(slot) = found {
            let s = &mut self.slots[slot as usize];
            s.family = family;
            s.entry = entry;
            return slot;
        }
        let fresh = Slot { key: key.into(), family, entry, next: NONE };
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = fresh;
                i
            }
            None => {
                self.slots.push(fresh);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        let hasher = self.hasher;
        self.index.insert_unique(h, slot, |&i| hasher.hash_one(&slots[i as usize].key[..]));
        self.live += 1;
        slot
    }

    /// Every cached entry.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &CacheEntry> {
        self.slots.iter().filter(|s| !s.key.is_empty()).map(|s| &s.entry)
    }

    /// Every cached entry, mutably.
    pub(crate) fn entries_mut(&mut self) -> impl Iterator<Item = &mut CacheEntry> {
        self.slots.iter_mut().filter(|s| !s.key.is_empty()).map(|s| &mut s.entry)
    }

    /// Forgets every entry `keep` rejects.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&CacheEntry) -> bool) {
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.key.is_empty() || keep(&s.entry) {
                continue;
            }
            let h = self.hasher.hash_one(&s.key[..]);
            if let Ok(found) = self.index.find_entry(h, |&j| j as usize == i) {
                found.remove();
            }
            self.slots[i].key = Box::default();
            self.slots[i].next = NONE;
            self.free.push(i as u32);
            self.live -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(r: u64) -> CacheEntry {
        CacheEntry { series: Some(r), last_seen: 1, prev_seen: 0, created: 1, tracked: true }
    }

    #[test]
    fn predicts_the_order_of_the_last_scrape_and_heals_after_an_insert() {
        let mut c = SeriesCache::default();
        c.begin_scrape();
        assert!(c.predicted().is_none());
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            let s = c.upsert(k.as_bytes(), MetricType::Counter, entry(i as u64));
            c.visit(s);
        }
        // Next scrape: a, x (new), b, c.
        c.begin_scrape();
        let (a, key, _) = c.predicted().expect("first");
        assert_eq!(key, b"a");
        c.visit(a);
        assert_eq!(c.predicted().map(|p| p.1), Some(&b"b"[..]));
        let x = c.upsert(b"x", MetricType::Counter, entry(9));
        c.visit(x);
        assert!(c.predicted().is_none(), "x has no successor yet");
        let b = c.find(b"b", MetricType::Counter).expect("b");
        c.visit(b);
        assert_eq!(c.predicted().map(|p| p.1), Some(&b"c"[..]));
        c.visit(c.find(b"c", MetricType::Counter).expect("c"));
        // The scrape after follows the new order throughout.
        c.begin_scrape();
        let mut seen = Vec::new();
        while let Some((s, k, _)) = c.predicted() {
            seen.push(String::from_utf8(k.to_vec()).expect("utf8"));
            c.visit(s);
            if seen.len() > 10 {
                break;
            }
        }
        assert_eq!(seen, ["a", "x", "b", "c"]);
    }

    #[test]
    fn retained_out_entries_free_their_slots_and_are_never_predicted() {
        let mut c = SeriesCache::default();
        c.begin_scrape();
        let a = c.upsert(b"a", MetricType::Gauge, entry(1));
        c.visit(a);
        let b = c.upsert(b"b", MetricType::Gauge, entry(2));
        c.visit(b);
        c.retain(|e| e.series != Some(1));
        assert_eq!(c.len(), 1);
        assert!(!c.contains(b"a"));
        c.begin_scrape();
        assert!(c.predicted().is_none(), "the freed first slot is not predicted");
        let n = c.upsert(b"n", MetricType::Gauge, entry(3));
        assert_eq!(n, a, "the free slot is reused");
        assert_eq!(c.find(b"n", MetricType::Gauge), Some(n));
        assert_eq!(c.find(b"n", MetricType::Counter), None, "another type is another entry");
        assert_eq!(c.find(b"b", MetricType::Gauge), Some(b));
    }
}
