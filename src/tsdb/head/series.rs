//! One in-memory series (its labels, chunks and cached last sample) and the lock-striped maps that
//! find series by ref and by label hash.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::model::{Labels, Sample};
use crate::storage::{AppendError, SeriesRef};
use crate::tsdb::chunkenc::{ChunkError, ENCODING_XOR, RangeSamples, XorAppender, XorIterator};

/// A series held by the head. Labels and ref never change; everything else is in `state`.
pub(crate) struct MemSeries {
    pub(crate) r: SeriesRef,
    pub(crate) hash: u64,
    /// Shared with query results.
    pub(crate) labels: Arc<Labels>,
    /// This series' position in label order, stamped by [`super::order::LabelOrder`].
    pub(crate) rank: AtomicU64,
    /// Set (under the head's log lock) once a commit has written this series' labels to the
    /// write-ahead log, so that later commits log only samples for it.
    pub(crate) logged: AtomicBool,
    /// Set by garbage collection, under `state`'s lock, when the series leaves the maps; a
    /// writer that finds it set must look the series up again.
    pub(crate) deleted: AtomicBool,
    pub(crate) state: Mutex<SeriesState>,
}

impl MemSeries {
    pub(crate) fn new(r: SeriesRef, hash: u64, labels: Labels, pending: u32) -> MemSeries {
        MemSeries {
            r,
            hash,
            labels: Arc::new(labels),
            rank: AtomicU64::new(u64::MAX),
            logged: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            state: Mutex::new(SeriesState { pending, ..SeriesState::default() }),
        }
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }
}

/// When the head cuts a new chunk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CutPolicy {
    pub(crate) samples_per_chunk: usize,
    pub(crate) chunk_range_ms: i64,
}

/// A chunk no longer appended to, shared with queries that read it.
pub(crate) struct SealedChunk {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) bytes: Arc<[u8]>,
}

/// A chunk handed out for writing a block or a checkpoint.
#[derive(Clone)]
pub(crate) struct ExportChunk {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    /// XOR-encoded samples.
    pub(crate) bytes: Arc<[u8]>,
}

/// The chunk being appended to.
pub(crate) struct OpenChunk {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) app: XorAppender,
}

/// What one append changed, for the head's counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AppendEffect {
    pub(crate) new_chunk: bool,
    pub(crate) bytes_added: usize,
}

/// The mutable part of a series.
#[derive(Default)]
pub(crate) struct SeriesState {
    /// Older chunks, oldest first, none overlapping.
    pub(crate) sealed: Vec<SealedChunk>,
    /// Holds the newest samples, including `last`, whenever the series has samples at all.
    pub(crate) open: Option<OpenChunk>,
    /// The last committed sample; kept after truncation so ordering checks stay right.
    pub(crate) last: Option<Sample>,
    /// Samples staged by open appenders; garbage collection leaves the series alone while > 0.
    pub(crate) pending: u32,
}

/// Whether a sample may follow the committed ones.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Appendable {
    Yes,
    /// Same timestamp and same value bits as the last sample: accept and do nothing.
    NoOp,
}

impl SeriesState {
    pub(crate) fn check(&self, t: i64, v: f64) -> Result<Appendable, AppendError> {
        match self.last {
            None => Ok(Appendable::Yes),
            Some(l) if t > l.t => Ok(Appendable::Yes),
            Some(l) if t == l.t && l.v.to_bits() == v.to_bits() => Ok(Appendable::NoOp),
            Some(l) if t == l.t => Err(AppendError::DuplicateTimestamp),
            Some(_) => Err(AppendError::OutOfOrder),
        }
    }

    /// Appends a sample the caller has [`check`](Self::check)ed, cutting a chunk first when the
    /// open one is full or `t` falls in the next chunk-range window.
    pub(crate) fn append(&mut self, t: i64, v: f64, policy: CutPolicy) -> Result<AppendEffect, ChunkError> {
        let mut effect = AppendEffect::default();
        let cut = match &self.open {
            None => true,
            Some(o) => {
                o.app.num_samples() >= policy.samples_per_chunk
                    || t.div_euclid(policy.chunk_range_ms) != o.min_t.div_euclid(policy.chunk_range_ms)
            }
        };
        if cut {
            if let Some(o) = self.open.take() {
                let bytes: Arc<[u8]> = Arc::from(o.app.bytes());
                self.sealed.push(SealedChunk { min_t: o.min_t, max_t: o.max_t, bytes });
            }
            self.open = Some(OpenChunk { min_t: t, max_t: t, app: XorAppender::new() });
            effect.new_chunk = true;
        }
        if let Some(o) = self.open.as_mut() {
            // A new chunk's header counts too; a sealed chunk keeps the bytes it had.
            let before = if cut { 0 } else { o.app.bytes().len() };
            o.app.append(t, v)?;
            o.max_t = t;
            effect.bytes_added = o.app.bytes().len() - before;
        }
        self.last = Some(Sample { t, v });
        Ok(effect)
    }

    /// Drops whole chunks whose samples are all older than `mint`; returns (chunks, bytes) freed.
    pub(crate) fn truncate(&mut self, mint: i64) -> (usize, usize) {
        let keep_from = self.sealed.iter().position(|c| c.max_t >= mint).unwrap_or(self.sealed.len());
        let mut bytes: usize = self.sealed[..keep_from].iter().map(|c| c.bytes.len()).sum();
        let mut chunks = keep_from;
        self.sealed.drain(..keep_from);
        if self.sealed.is_empty()
            && let Some(o) = self.open.take_if(|o| o.max_t < mint)
        {
            bytes += o.app.bytes().len();
            chunks += 1;
        }
        (chunks, bytes)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_none() && self.sealed.is_empty()
    }

    /// The chunks holding samples in `[mint, maxt]`, oldest first. Chunks inside the range are
    /// shared (the open one copied); a chunk reaching outside it is re-encoded with only the
    /// samples inside, so the result never holds a sample outside the range.
    pub(crate) fn chunks_in(&self, mint: i64, maxt: i64) -> Vec<ExportChunk> {
        let mut out = Vec::new();
        let open = self.open.as_ref().map(|o| (o.min_t, o.max_t, Arc::<[u8]>::from(o.app.bytes())));
        let all = self.sealed.iter().map(|c| (c.min_t, c.max_t, Arc::clone(&c.bytes))).chain(open);
        for (min_t, max_t, bytes) in all {
            if max_t < mint || min_t > maxt {
                continue;
            }
            if min_t >= mint && max_t <= maxt {
                out.push(ExportChunk { min_t, max_t, bytes });
                continue;
            }
            let mut app = XorAppender::new();
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for s in XorIterator::new(&*bytes).filter(|s| s.t >= mint && s.t <= maxt) {
                // Cannot fail: the source chunk held at least as many samples.
                if app.append(s.t, s.v).is_ok() {
                    lo = lo.min(s.t);
                    hi = hi.max(s.t);
                }
            }
            if app.num_samples() > 0 {
                out.push(ExportChunk { min_t: lo, max_t: hi, bytes: Arc::from(app.bytes()) });
            }
        }
        out
    }

    #[cfg(test)]
    pub(crate) fn num_chunks(&self) -> usize {
        self.sealed.len() + usize::from(self.open.is_some())
    }

    #[cfg(test)]
    pub(crate) fn chunk_bytes(&self) -> usize {
        self.sealed.iter().map(|c| c.bytes.len()).sum::<usize>()
            + self.open.as_ref().map_or(0, |o| o.app.bytes().len())
    }

    fn min_time(&self) -> Option<i64> {
        self.sealed.first().map(|c| c.min_t).or(self.open.as_ref().map(|o| o.min_t))
    }

    fn max_time(&self) -> Option<i64> {
        self.open.as_ref().map(|o| o.max_t).or(self.sealed.last().map(|c| c.max_t))
    }

    pub(crate) fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        match (self.min_time(), self.max_time()) {
            (Some(lo), Some(hi)) => lo <= maxt && hi >= mint,
            _ => false,
        }
    }

    /// The last sample with `mint <= t <= maxt`. Answers from the cached last sample when it is
    /// in range (the common `/federate` case), else decodes the one chunk that can hold it.
    pub(crate) fn latest(&self, mint: i64, maxt: i64) -> Option<Sample> {
        let open = self.open.as_ref()?;
        let last = self.last?;
        if last.t <= maxt {
            return (last.t >= mint).then_some(last);
        }
        let found = if open.min_t <= maxt {
            last_at_or_before(open.app.iter(), maxt)
        } else {
            let i = self.sealed.partition_point(|c| c.min_t <= maxt);
            let c = self.sealed.get(i.checked_sub(1)?)?;
            last_at_or_before(XorIterator::new(&*c.bytes), maxt)
        };
        found.filter(|s| s.t >= mint)
    }

    /// A lazy iterator over the samples in `[mint, maxt]`, or `None` when there are none. Sealed
    /// chunks are shared; the open chunk's few bytes are copied so appends can go on.
    pub(crate) fn range(&self, mint: i64, maxt: i64) -> Option<RangeSamples<Arc<[u8]>>> {
        if !self.overlaps(mint, maxt) {
            return None;
        }
        let mut chunks: Vec<(u8, Arc<[u8]>)> = self
            .sealed
            .iter()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
            .map(|c| (ENCODING_XOR, Arc::clone(&c.bytes)))
            .collect();
        if let Some(o) = &self.open
            && o.max_t >= mint
            && o.min_t <= maxt
        {
            chunks.push((ENCODING_XOR, Arc::from(o.app.bytes())));
        }
        // Overlapping chunks may still hold nothing inside the range: decode up to the first
        // sample so that "no samples" is known now (queries promise only series with samples).
        RangeSamples::new(chunks, mint, maxt)
    }
}

fn last_at_or_before<B: AsRef<[u8]>>(it: XorIterator<B>, maxt: i64) -> Option<Sample> {
    it.take_while(|s| s.t <= maxt).last()
}

/// Mixes a u64 key into a well-spread hash (splitmix64's finalizer). Refs are sequential and a
/// stripe only holds keys with equal low bits, so the identity would pile them into few buckets.
#[derive(Default, Clone, Copy)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

#[derive(Default, Clone, Copy)]
pub(crate) struct BuildMix;

impl BuildHasher for BuildMix {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher::default()
    }
}

/// The series of one ref stripe, in a dense array: refs are handed out in sequence, so within a
/// stripe `ref >> stripe_bits` is a dense slot number. A lookup is an index, not a hash probe
/// (the scrape hot path does one per sample). Slots of removed series are emptied; leading empty
/// slots are dropped (retention removes the oldest series first), so the array stays near the
/// live series count.
#[derive(Default)]
struct RefSlab {
    /// Slot number of `slots[0]`.
    base: u64,
    slots: std::collections::VecDeque<Option<Arc<MemSeries>>>,
    /// Series whose slot lies far outside the dense range. Refs are dense in normal operation; a
    /// far one comes only from a damaged or foreign WAL, and must not make the array allocate
    /// every slot up to it (found by fuzzing: one series record with a huge ref ran replay out
    /// of memory).
    sparse: HashMap<u64, Arc<MemSeries>, BuildMix>,
}

/// Empty slots one insert may add to the dense array (more when the array is already larger).
const MAX_SLOT_GAP: u64 = 1 << 16;

impl RefSlab {
    fn get(&self, slot: u64) -> Option<&Arc<MemSeries>> {
        let dense = slot
            .checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.slots.get(i)?.as_ref());
        dense.or_else(|| self.sparse.get(&slot))
    }

    fn insert(&mut self, slot: u64, s: Arc<MemSeries>) {
        if self.slots.is_empty() {
            self.base = slot;
        }
        let len = self.slots.len() as u64;
        let gap = if slot < self.base { self.base - slot } else { (slot - self.base).saturating_sub(len) };
        if gap > MAX_SLOT_GAP.max(len) {
            self.sparse.insert(slot, s);
            return;
        }
        // Refs only grow, so a slot below the base never comes back; be safe anyway.
        while slot < self.base {
            self.slots.push_front(None);
            self.base -= 1;
        }
        let i = (slot - self.base) as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(s);
    }

    fn values(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.slots.iter().flatten().chain(self.sparse.values())
    }

    fn retain(&mut self, mut keep: impl FnMut(&Arc<MemSeries>) -> bool) {
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|s| !keep(s)) {
                *slot = None;
            }
        }
        self.sparse.retain(|_, s| keep(s));
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
    }
}

/// Series of one hash stripe: the first series per label hash, plus the rare others that share it.
#[derive(Default)]
pub(crate) struct HashStripe {
    unique: HashMap<u64, Arc<MemSeries>, BuildMix>,
    conflicts: HashMap<u64, Vec<Arc<MemSeries>>, BuildMix>,
}

impl HashStripe {
    fn get(&self, hash: u64, labels: &Labels) -> Option<&Arc<MemSeries>> {
        match self.unique.get(&hash) {
            Some(s) if *s.labels == *labels => Some(s),
            Some(_) => self.conflicts.get(&hash)?.iter().find(|s| *s.labels == *labels),
            None => None,
        }
    }

    /// Inserts `s`, replacing a deleted series with the same labels if one is still here.
    fn insert(&mut self, s: Arc<MemSeries>) {
        match self.unique.get_mut(&s.hash) {
            None => {
                self.unique.insert(s.hash, s);
            }
            Some(u) if u.labels == s.labels => *u = s,
            Some(_) => {
                let list = self.conflicts.entry(s.hash).or_default();
                list.retain(|c| c.labels != s.labels);
                list.push(s);
            }
        }
    }

    /// Removes the series with ref `r` (and only it) from under `hash`.
    fn remove(&mut self, hash: u64, r: SeriesRef) {
        if self.unique.get(&hash).is_some_and(|u| u.r == r) {
            self.unique.remove(&hash);
            if let Some(list) = self.conflicts.get_mut(&hash) {
                if let Some(promoted) = list.pop() {
                    self.unique.insert(hash, promoted);
                }
                if list.is_empty() {
                    self.conflicts.remove(&hash);
                }
            }
        } else if let Some(list) = self.conflicts.get_mut(&hash) {
            list.retain(|c| c.r != r);
            if list.is_empty() {
                self.conflicts.remove(&hash);
            }
        }
    }
}

/// All series, striped twice (by ref and by label hash) so that concurrent writers rarely meet on
/// a lock. Lock order: hash stripe, then ref stripe, then a series' state; never the reverse.
pub(crate) struct StripeSeries {
    mask: u64,
    /// log2 of the stripe count: `ref >> bits` is a ref's slot within its stripe.
    bits: u32,
    by_ref: Box<[RwLock<RefSlab>]>,
    by_hash: Box<[RwLock<HashStripe>]>,
}

impl StripeSeries {
    /// `stripes` must be a power of two.
    pub(crate) fn new(stripes: usize) -> StripeSeries {
        StripeSeries {
            mask: stripes as u64 - 1,
            bits: stripes.trailing_zeros(),
            by_ref: (0..stripes).map(|_| RwLock::new(RefSlab::default())).collect(),
            by_hash: (0..stripes).map(|_| RwLock::new(HashStripe::default())).collect(),
        }
    }

    fn ref_stripe(&self, r: SeriesRef) -> &RwLock<RefSlab> {
        &self.by_ref[(r & self.mask) as usize]
    }

    fn hash_stripe(&self, hash: u64) -> &RwLock<HashStripe> {
        &self.by_hash[(hash & self.mask) as usize]
    }

    pub(crate) fn get_by_ref(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        self.ref_stripe(r).read().get(r >> self.bits).cloned()
    }

    pub(crate) fn get_by_hash(&self, hash: u64, labels: &Labels) -> Option<Arc<MemSeries>> {
        self.hash_stripe(hash).read().get(hash, labels).filter(|s| !s.is_deleted()).cloned()
    }

    /// Returns the live series with these labels, or creates it with `make(labels)` (called under
    /// the hash stripe's write lock, so two writers never create the same series twice).
    /// The bool is true when this call created it.
    pub(crate) fn get_or_create(
        &self,
        hash: u64,
        labels: &Labels,
        make: impl FnOnce() -> Arc<MemSeries>,
    ) -> (Arc<MemSeries>, bool) {
        if let Some(s) = self.get_by_hash(hash, labels) {
            return (s, false);
        }
        let mut stripe = self.hash_stripe(hash).write();
        if let Some(s) = stripe.get(hash, labels).filter(|s| !s.is_deleted()) {
            return (Arc::clone(s), false);
        }
        let s = make();
        // Reachable by ref before by hash: whoever finds it by hash can use its ref at once.
        self.ref_stripe(s.r).write().insert(s.r >> self.bits, Arc::clone(&s));
        stripe.insert(Arc::clone(&s));
        (s, true)
    }

    /// Calls `f` on every series, one ref stripe (read-locked) at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<MemSeries>)) {
        for stripe in self.by_ref.iter() {
            for s in stripe.read().values() {
                f(s);
            }
        }
    }

    /// Removes every series for which `dead` returns true, calling it under the ref stripe's write
    /// lock (so no new lookup by ref can start meanwhile). Returns the removed series.
    pub(crate) fn remove_where(&self, mut dead: impl FnMut(&MemSeries) -> bool) -> Vec<Arc<MemSeries>> {
        let mut removed = Vec::new();
        for stripe in self.by_ref.iter() {
            stripe.write().retain(|s| {
                if dead(s) {
                    removed.push(Arc::clone(s));
                    false
                } else {
                    true
                }
            });
        }
        for s in &removed {
            self.hash_stripe(s.hash).write().remove(s.hash, s.r);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: CutPolicy = CutPolicy { samples_per_chunk: 4, chunk_range_ms: 1000 };

    fn state_with(ts: &[i64]) -> SeriesState {
        let mut st = SeriesState::default();
        for &t in ts {
            assert_eq!(st.check(t, t as f64).unwrap(), Appendable::Yes);
            st.append(t, t as f64, POLICY).unwrap();
        }
        st
    }

    #[test]
    fn ref_slab_keeps_far_refs_aside_instead_of_allocating_up_to_them() {
        // Found by fuzzing WAL replay: series records with refs 1 and 2^40 made the slab
        // allocate 2^40 slots.
        let series = |r: u64| Arc::new(MemSeries::new(r, 0, Labels::from_pairs(&[("r", &r.to_string())]), 0));
        let mut slab = RefSlab::default();
        for slot in [5, 1 << 40, 6, 1, u64::MAX, 3] {
            slab.insert(slot, series(slot));
        }
        assert!(slab.slots.len() < 16, "{} dense slots", slab.slots.len());
        for slot in [5, 1 << 40, 6, 1, u64::MAX, 3] {
            assert_eq!(slab.get(slot).map(|s| s.r), Some(slot));
        }
        assert!(slab.get(4).is_none() && slab.get(1 << 39).is_none());
        assert_eq!(slab.values().count(), 6);
        slab.retain(|s| s.r != 1 << 40 && s.r != 1);
        assert!(slab.get(1 << 40).is_none() && slab.get(1).is_none());
        assert_eq!(slab.values().count(), 4);
    }

    #[test]
    fn cuts_on_count_and_on_range_boundary() {
        let st = state_with(&[0, 1, 2, 3, 4, 999, 1000, 1001]);
        let bounds: Vec<_> = st.sealed.iter().map(|c| (c.min_t, c.max_t)).collect();
        assert_eq!(bounds, vec![(0, 3), (4, 999)]);
        assert_eq!(st.open.as_ref().map(|o| (o.min_t, o.max_t)), Some((1000, 1001)));
        let all: Vec<i64> = st.range(i64::MIN, i64::MAX).unwrap().map(|s| s.t).collect();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 999, 1000, 1001]);
    }

    #[test]
    fn order_checks() {
        let st = state_with(&[10]);
        assert!(matches!(st.check(9, 0.0), Err(AppendError::OutOfOrder)));
        assert!(matches!(st.check(10, 11.0), Err(AppendError::DuplicateTimestamp)));
        assert_eq!(st.check(10, 10.0).unwrap(), Appendable::NoOp);
        assert_eq!(st.check(11, 0.0).unwrap(), Appendable::Yes);
    }

    #[test]
    fn range_and_latest_respect_bounds() {
        let st = state_with(&[0, 1, 2, 3, 4, 5, 999, 1000, 1001]);
        let r: Vec<i64> = st.range(2, 999).unwrap().map(|s| s.t).collect();
        assert_eq!(r, vec![2, 3, 4, 5, 999]);
        assert!(st.range(6, 998).is_none(), "overlapping chunk, no sample in range");
        assert!(st.range(2000, 3000).is_none());
        assert_eq!(st.latest(0, 5000).map(|s| s.t), Some(1001));
        assert_eq!(st.latest(0, 1000).map(|s| s.t), Some(1000));
        assert_eq!(st.latest(0, 998).map(|s| s.t), Some(5));
        assert_eq!(st.latest(6, 998), None);
        assert_eq!(st.latest(0, 3).map(|s| s.t), Some(3));
    }

    #[test]
    fn truncate_drops_whole_chunks_only() {
        let mut st = state_with(&[0, 1, 2, 3, 4, 5, 999, 1000, 1001]);
        assert_eq!(st.truncate(2).0, 0);
        assert_eq!(st.truncate(4).0, 1);
        assert_eq!(st.range(i64::MIN, i64::MAX).unwrap().next().map(|s| s.t), Some(4));
        assert_eq!(st.truncate(2000).0, 2);
        assert!(st.is_empty());
        assert_eq!(st.last.map(|s| s.t), Some(1001));
        assert_eq!(st.latest(i64::MIN, i64::MAX), None);
    }

    #[test]
    fn hash_conflicts_are_kept_apart() {
        let stripes = StripeSeries::new(4);
        let a = Labels::from_pairs(&[("a", "1")]);
        let b = Labels::from_pairs(&[("b", "2")]);
        // Force both under one hash.
        let (sa, new_a) = stripes.get_or_create(7, &a, || Arc::new(MemSeries::new(1, 7, a.clone(), 0)));
        let (sb, new_b) = stripes.get_or_create(7, &b, || Arc::new(MemSeries::new(2, 7, b.clone(), 0)));
        assert!(new_a && new_b);
        assert_eq!(stripes.get_by_hash(7, &a).map(|s| s.r), Some(sa.r));
        assert_eq!(stripes.get_by_hash(7, &b).map(|s| s.r), Some(sb.r));
        let removed = stripes.remove_where(|s| s.r == 1);
        assert_eq!(removed.len(), 1);
        assert!(stripes.get_by_hash(7, &a).is_none());
        assert_eq!(stripes.get_by_hash(7, &b).map(|s| s.r), Some(2));
        assert!(stripes.get_by_ref(1).is_none());
    }
}
