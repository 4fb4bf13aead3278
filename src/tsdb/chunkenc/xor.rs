//! The XOR chunk: Gorilla-style compression of float samples (delta-of-delta timestamps, XORed
//! values). The bit layout is described in `docs/format/chunks.md`; it is the same layout as
//! Prometheus's XOR chunk, so chunks can move between the two systems unchanged.

use crate::model::Sample;

use super::ChunkError;
use super::bstream::{BitReader, BitWriter};

/// Bytes before the bit stream: the sample count, big-endian `u16`.
pub const HEADER_LEN: usize = 2;

/// The most samples one chunk can count in its header.
pub const MAX_SAMPLES: usize = u16::MAX as usize;

/// `leading` value meaning "no value window chosen yet".
const NO_WINDOW: u8 = 0xff;

/// The delta-of-delta buckets after the first two samples: a prefix of ones ended by a zero (the
/// fifth bucket has no terminating zero) followed by the dod in this many bits, two's complement.
/// A bucket of `n` bits holds `-(2^(n-1) - 1) ..= 2^(n-1)`; the reader maps the all-but-top-bit
/// pattern back to the positive end, so both sides agree on the asymmetric range.
const DOD_BUCKETS: [u8; 3] = [14, 17, 20];

/// An encoded chunk of float samples. Owns its bytes; immutable (use [`XorAppender`] to write).
#[derive(Clone, PartialEq, Eq)]
pub struct XorChunk {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for XorChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XorChunk")
            .field("samples", &self.num_samples())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl XorChunk {
    /// Wraps encoded bytes (e.g. read from disk). Only the header is checked here; the stream is
    /// checked as it is decoded (see [`XorIterator::error`]) or when resumed for appending.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<XorChunk, ChunkError> {
        if bytes.len() < HEADER_LEN {
            return Err(ChunkError::TooShort { len: bytes.len() });
        }
        Ok(XorChunk { bytes })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn num_samples(&self) -> usize {
        header_count(&self.bytes)
    }

    /// Decodes the samples in order.
    pub fn iter(&self) -> XorIterator<&[u8]> {
        XorIterator::new(&self.bytes)
    }

    /// Reopens the chunk for appending: decodes it once to recover the encoder state.
    pub fn appender(self) -> Result<XorAppender, ChunkError> {
        XorAppender::resume(self)
    }
}

fn header_count(bytes: &[u8]) -> usize {
    match bytes {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => 0,
    }
}

/// Appends samples to a chunk. Keeps the encoder state next to the bytes, so appending costs no
/// decoding; [`XorChunk::appender`] rebuilds that state for a chunk read back from elsewhere.
#[derive(Debug, Clone)]
pub struct XorAppender {
    w: BitWriter,
    /// Timestamp of the last sample.
    t: i64,
    /// Difference between the last two timestamps (wrapping, so any i64 sequence round-trips).
    delta: i64,
    /// Bits of the last value.
    v: u64,
    /// Leading zeros of the current value window, or [`NO_WINDOW`].
    leading: u8,
    /// Trailing zeros of the current value window.
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> XorAppender {
        XorAppender::new()
    }
}

impl XorAppender {
    /// An appender over a new, empty chunk.
    pub fn new() -> XorAppender {
        // Room for a typical full chunk (120 samples at 1–2 bytes), so that filling it takes one
        // or two reallocations instead of seven.
        let mut buf = Vec::with_capacity(128);
        buf.resize(HEADER_LEN, 0);
        XorAppender {
            w: BitWriter::resume(buf, HEADER_LEN * 8),
            t: 0,
            delta: 0,
            v: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    fn resume(chunk: XorChunk) -> Result<XorAppender, ChunkError> {
        let mut it = XorIterator::new(chunk.bytes.as_slice());
        for _ in it.by_ref() {}
        if let Some(e) = it.error() {
            return Err(e.clone());
        }
        let bit_len = it.reader.position();
        let used = bit_len.div_ceil(8);
        if chunk.bytes.len() > used {
            return Err(ChunkError::TrailingBytes { extra: chunk.bytes.len() - used });
        }
        let (t, delta, v, leading, trailing) = (it.t, it.delta, it.v, it.leading, it.trailing);
        Ok(XorAppender { w: BitWriter::resume(chunk.bytes, bit_len), t, delta, v, leading, trailing })
    }

    pub fn num_samples(&self) -> usize {
        header_count(self.w.bytes())
    }

    /// The encoded bytes so far (a valid chunk at every point between appends).
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// Decodes the samples appended so far.
    pub fn iter(&self) -> XorIterator<&[u8]> {
        XorIterator::new(self.w.bytes())
    }

    /// Ends appending and hands back the chunk.
    pub fn finish(self) -> XorChunk {
        XorChunk { bytes: self.w.into_bytes() }
    }

    /// Appends one sample. Any timestamp sequence encodes exactly (deltas wrap), but only
    /// non-decreasing timestamps compress well and [`XorIterator::seek`] assumes them.
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        let n = self.num_samples();
        if n >= MAX_SAMPLES {
            return Err(ChunkError::Full);
        }
        let bits = v.to_bits();
        match n {
            0 => {
                write_varint(&mut self.w, t);
                self.w.write_bits(bits, 64);
            }
            1 => {
                let delta = t.wrapping_sub(self.t);
                write_uvarint(&mut self.w, delta as u64);
                self.write_value(bits);
                self.delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.t);
                self.write_dod(delta.wrapping_sub(self.delta));
                self.write_value(bits);
                self.delta = delta;
            }
        }
        self.t = t;
        self.v = bits;
        let count = ((n + 1) as u16).to_be_bytes();
        self.w.bytes_mut()[..HEADER_LEN].copy_from_slice(&count);
        Ok(())
    }

    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.w.write_bit(false);
            return;
        }
        for (i, &n) in DOD_BUCKETS.iter().enumerate() {
            let half = 1i64 << (n - 1);
            if -(half - 1) <= dod && dod <= half {
                // i+1 ones then a zero: 0b10, 0b110, 0b1110.
                let prefix = (1u64 << (i + 2)) - 2;
                self.w.write_bits(prefix, (i + 2) as u8);
                self.w.write_bits(dod as u64, n);
                return;
            }
        }
        self.w.write_bits(0b1111, 4);
        self.w.write_bits(dod as u64, 64);
    }

    fn write_value(&mut self, bits: u64) {
        let x = bits ^ self.v;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        // The leading count has 5 bits, so cap it; the extra zeros travel as significant bits.
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            // Fits the previous window: reuse it.
            self.w.write_bit(false);
            self.w.write_bits(x >> self.trailing, 64 - self.leading - self.trailing);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            let sig = 64 - leading - trailing;
            self.w.write_bit(true);
            self.w.write_bits(u64::from(leading), 5);
            // 64 significant bits are written as 0 (a window is never empty).
            self.w.write_bits(u64::from(sig) & 0x3f, 6);
            self.w.write_bits(x >> trailing, sig);
        }
    }
}

fn write_uvarint(w: &mut BitWriter, mut x: u64) {
    while x >= 0x80 {
        w.write_byte((x as u8) | 0x80);
        x >>= 7;
    }
    w.write_byte(x as u8);
}

fn write_varint(w: &mut BitWriter, x: i64) {
    // Zig-zag: small magnitudes of either sign become small unsigned numbers.
    write_uvarint(w, ((x << 1) ^ (x >> 63)) as u64);
}

/// Decodes a chunk's samples in order. Generic over the byte owner so that queries can hold a
/// shared `Arc<[u8]>` while the storage goes on appending elsewhere.
///
/// Malformed input ends the iteration early; [`XorIterator::error`] then says why.
#[derive(Debug, Clone)]
pub struct XorIterator<B> {
    data: B,
    reader: BitReader,
    total: usize,
    read: usize,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
    err: Option<ChunkError>,
}

impl<B: AsRef<[u8]>> XorIterator<B> {
    pub fn new(data: B) -> XorIterator<B> {
        let len = data.as_ref().len();
        let total = header_count(data.as_ref());
        let err = (len < HEADER_LEN).then_some(ChunkError::TooShort { len });
        XorIterator {
            data,
            reader: BitReader::at(HEADER_LEN * 8),
            total,
            read: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: NO_WINDOW,
            trailing: 0,
            err,
        }
    }

    /// Advances to the first sample with timestamp `>= t` and returns it (consumed), assuming
    /// non-decreasing timestamps. `None` when no such sample is left.
    pub fn seek(&mut self, t: i64) -> Option<Sample> {
        self.find(|s| s.t >= t)
    }

    /// Why decoding stopped early, if it did.
    pub fn error(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    /// Samples left to decode according to the header.
    pub fn remaining(&self) -> usize {
        self.total - self.read
    }

    fn decode(&mut self) -> Option<Sample> {
        let data = self.data.as_ref();
        let r = &mut self.reader;
        match self.read {
            0 => {
                let ux = read_uvarint(r, data)?;
                self.t = ((ux >> 1) as i64) ^ -((ux & 1) as i64);
                self.v = r.read_bits(data, 64)?;
            }
            1 => {
                self.delta = read_uvarint(r, data)? as i64;
                self.t = self.t.wrapping_add(self.delta);
                self.read_value()?;
            }
            _ => {
                let mut ones = 0u8;
                while ones < 4 && r.read_bit(data)? {
                    ones += 1;
                }
                let dod = match ones {
                    0 => 0,
                    4 => r.read_bits(data, 64)? as i64,
                    k => {
                        let n = DOD_BUCKETS[usize::from(k - 1)];
                        let bits = r.read_bits(data, n)?;
                        if bits > 1 << (n - 1) { bits as i64 - (1i64 << n) } else { bits as i64 }
                    }
                };
                self.delta = self.delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.delta);
                self.read_value()?;
            }
        }
        Some(Sample { t: self.t, v: f64::from_bits(self.v) })
    }

    fn read_value(&mut self) -> Option<()> {
        let data = self.data.as_ref();
        let r = &mut self.reader;
        if !r.read_bit(data)? {
            return Some(());
        }
        if r.read_bit(data)? {
            let leading = r.read_bits(data, 5)? as u8;
            let sig = match r.read_bits(data, 6)? as u8 {
                0 => 64,
                s => s,
            };
            if leading + sig > 64 {
                self.err = Some(ChunkError::BadValueWindow { sample: self.read });
                return None;
            }
            self.leading = leading;
            self.trailing = 64 - leading - sig;
        } else if self.leading == NO_WINDOW {
            self.err = Some(ChunkError::BadValueWindow { sample: self.read });
            return None;
        }
        let sig = 64 - self.leading - self.trailing;
        let x = r.read_bits(data, sig)?;
        self.v ^= x << self.trailing;
        Some(())
    }
}

fn read_uvarint(r: &mut BitReader, data: &[u8]) -> Option<u64> {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let b = r.read_byte(data)?;
        x |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(x);
        }
    }
    None
}

impl<B: AsRef<[u8]>> Iterator for XorIterator<B> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        if self.err.is_some() || self.read >= self.total {
            return None;
        }
        match self.decode() {
            Some(s) => {
                self.read += 1;
                Some(s)
            }
            None => {
                if self.err.is_none() {
                    self.err = Some(ChunkError::Truncated { sample: self.read, samples: self.total });
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.total - self.read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{STALE_NAN, STALE_NAN_BITS};
    use proptest::prelude::*;

    fn encode(samples: &[(i64, u64)]) -> XorChunk {
        let mut app = XorAppender::new();
        for &(t, v) in samples {
            app.append(t, f64::from_bits(v)).unwrap();
        }
        app.finish()
    }

    fn decode(chunk: &XorChunk) -> Vec<(i64, u64)> {
        let mut it = chunk.iter();
        let out: Vec<_> = it.by_ref().map(|s| (s.t, s.v.to_bits())).collect();
        assert!(it.error().is_none(), "{:?}", it.error());
        out
    }

    #[test]
    fn empty_chunk_is_just_a_header() {
        let c = XorAppender::new().finish();
        assert_eq!(c.bytes(), &[0, 0]);
        assert_eq!(c.iter().count(), 0);
    }

    #[test]
    fn stale_nan_and_nan_payloads_keep_their_bits() {
        let s = [
            (1000, 1.0f64.to_bits()),
            (2000, STALE_NAN_BITS),
            (3000, f64::NAN.to_bits()),
            (4000, 0xfff8_0000_dead_beef),
            (5000, STALE_NAN.to_bits()),
            (6000, (-0.0f64).to_bits()),
        ];
        assert_eq!(decode(&encode(&s)), s);
    }

    #[test]
    fn dod_bucket_edges_round_trip() {
        let mut s = vec![(0i64, 0u64), (10, 0)];
        let mut t = 10i64;
        let mut delta = 10i64;
        for n in [14u32, 17, 20] {
            let half = 1i64 << (n - 1);
            for dod in [half, -(half - 1), half + 1, -half, 1, -1] {
                delta += dod;
                t += delta;
                s.push((t, 0));
            }
        }
        assert_eq!(decode(&encode(&s)), s);
    }

    #[test]
    fn seek_finds_first_at_or_after() {
        let s: Vec<_> = (0..10).map(|i| (i * 10, (i as f64).to_bits())).collect();
        let c = encode(&s);
        let mut it = c.iter();
        assert_eq!(it.seek(35).map(|s| s.t), Some(40));
        assert_eq!(it.next().map(|s| s.t), Some(50));
        assert_eq!(it.seek(50).map(|s| s.t), Some(60));
        assert_eq!(it.seek(1000), None);
    }

    #[test]
    fn truncated_and_bad_input_report_errors() {
        let c = encode(&[(1, 1), (2, 2), (3, 3)]);
        let mut bytes = c.into_bytes();
        bytes.truncate(bytes.len() - 2);
        let c = XorChunk::from_bytes(bytes).unwrap();
        let mut it = c.iter();
        let n = it.by_ref().count();
        assert!(n < 3);
        assert!(matches!(it.error(), Some(ChunkError::Truncated { .. })));
        assert!(c.appender().is_err());
        assert!(matches!(XorChunk::from_bytes(vec![1]), Err(ChunkError::TooShort { len: 1 })));
        let mut padded = encode(&[(1, 1)]).into_bytes();
        padded.push(0);
        let padded = XorChunk::from_bytes(padded).unwrap();
        assert!(matches!(padded.appender(), Err(ChunkError::TrailingBytes { extra: 1 })));
    }

    #[test]
    fn full_chunk_refuses_more() {
        let mut app = XorAppender::new();
        for i in 0..MAX_SAMPLES as i64 {
            app.append(i, 1.0).unwrap();
        }
        assert!(matches!(app.append(MAX_SAMPLES as i64, 1.0), Err(ChunkError::Full)));
        assert_eq!(app.iter().count(), MAX_SAMPLES);
    }

    /// A small deterministic generator so the size figures are reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn bytes_per_sample(gen_value: &mut dyn FnMut(&mut Rng) -> f64, jitter_ms: u64) -> f64 {
        // 120 samples per chunk, 15 s interval, as the head cuts them.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut total_bytes, mut total_samples) = (0usize, 0usize);
        let mut t = 1_700_000_000_000i64;
        for _ in 0..100 {
            let mut app = XorAppender::new();
            for _ in 0..120 {
                let j = if jitter_ms == 0 { 0 } else { (rng.next() % (2 * jitter_ms + 1)) as i64 };
                let v = gen_value(&mut rng);
                app.append(t + j - jitter_ms as i64, v).unwrap();
                t += 15_000;
            }
            total_bytes += app.bytes().len();
            total_samples += app.num_samples();
        }
        total_bytes as f64 / total_samples as f64
    }

    /// Prints bytes/sample for realistic streams (`cargo test bytes_per_sample -- --nocapture`)
    /// and guards against regressions in the encoder's density.
    #[test]
    fn bytes_per_sample_on_realistic_streams() {
        let mut counter = 0.0f64;
        let counter_bps = bytes_per_sample(
            &mut |r| {
                counter += (r.next() % 50) as f64;
                counter
            },
            0,
        );
        let constant_bps = bytes_per_sample(&mut |_| 1.0, 0);
        let mut gauge = 4.0e9f64;
        let gauge_bps = bytes_per_sample(
            &mut |r| {
                gauge += ((r.next() % 2_000_001) as f64 - 1_000_000.0) * 4096.0;
                gauge
            },
            0,
        );
        let mut cpu = 100.0f64;
        let float_bps = bytes_per_sample(
            &mut |r| {
                cpu += (r.next() % 1000) as f64 / 997.0;
                cpu
            },
            0,
        );
        let mut counter = 0.0f64;
        let jitter_bps = bytes_per_sample(
            &mut |r| {
                counter += (r.next() % 50) as f64;
                counter
            },
            2,
        );
        println!(
            "bytes/sample at 15s: constant {constant_bps:.2}, integer counter {counter_bps:.2}, \
             integer gauge {gauge_bps:.2}, float counter {float_bps:.2}, \
             integer counter with ±2ms jitter {jitter_bps:.2}"
        );
        assert!(constant_bps < 0.5, "{constant_bps}");
        assert!(counter_bps < 2.2, "{counter_bps}");
    }

    fn timestamps() -> impl Strategy<Value = Vec<i64>> {
        let step = prop_oneof![
            4 => Just(15_000i64),
            4 => 14_990i64..15_010,
            2 => 0i64..10,
            1 => 0i64..(1 << 40),
            1 => Just(i64::MAX / 4),
        ];
        (any::<i64>(), prop::collection::vec(step, 0..300)).prop_map(|(start, steps)| {
            let mut t = start / 2;
            steps
                .into_iter()
                .map(|d| {
                    t = t.saturating_add(d);
                    t
                })
                .collect()
        })
    }

    fn values(n: usize) -> impl Strategy<Value = Vec<u64>> {
        let v = prop_oneof![
            3 => any::<u64>(),
            2 => (0u32..1000).prop_map(|i| f64::from(i).to_bits()),
            1 => Just(STALE_NAN_BITS),
            1 => 0x7ff0_0000_0000_0001u64..=0x7fff_ffff_ffff_ffff,
            1 => 0xfff0_0000_0000_0001u64..=u64::MAX,
            1 => Just(0u64),
        ];
        prop::collection::vec(v, n)
    }

    fn series() -> impl Strategy<Value = Vec<(i64, u64)>> {
        timestamps().prop_flat_map(|ts| {
            let n = ts.len();
            values(n).prop_map(move |vs| ts.iter().copied().zip(vs).collect())
        })
    }

    proptest! {
        #[test]
        fn monotonic_streams_round_trip_bit_exact(s in series()) {
            let c = encode(&s);
            prop_assert_eq!(c.num_samples(), s.len());
            prop_assert_eq!(decode(&c), s);
        }

        #[test]
        fn arbitrary_timestamps_round_trip(s in prop::collection::vec((any::<i64>(), any::<u64>()), 0..50)) {
            prop_assert_eq!(decode(&encode(&s)), s);
        }

        #[test]
        fn resumed_appender_writes_the_same_bytes(s in series(), cut in any::<prop::sample::Index>()) {
            let k = if s.is_empty() { 0 } else { cut.index(s.len() + 1) };
            let mut app = encode(&s[..k]).appender().unwrap();
            for &(t, v) in &s[k..] {
                app.append(t, f64::from_bits(v)).unwrap();
            }
            prop_assert_eq!(app.finish(), encode(&s));
        }

        #[test]
        fn seek_matches_linear_scan(s in series(), target in any::<i64>()) {
            let c = encode(&s);
            let want = s.iter().find(|(t, _)| *t >= target).map(|&(t, v)| (t, v));
            prop_assert_eq!(c.iter().seek(target).map(|x| (x.t, x.v.to_bits())), want);
        }
    }
}
