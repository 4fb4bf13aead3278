//! The packed chunk (encoding 2): a denser encoding for sealed chunks written to blocks.
//! Timestamps are delta-of-delta like XOR, but Rice-coded with a parameter chosen per chunk, so a
//! scrape jitter of a few milliseconds costs a few bits instead of sixteen. When every value of
//! the chunk is an integer (exactly: the float converts to an `i64` and back with the same bits —
//! counters, histogram buckets, most gauges), values are Rice-coded integer deltas; otherwise
//! they use the XOR value scheme. Encoding needs the whole chunk (to choose the parameters), so
//! the head appends XOR chunks and blocks store whichever of the two is smaller.
//! Layout: `docs/format/chunks.md`.

use crate::model::Sample;

use super::ChunkError;
use super::bstream::{BitReader, BitWriter};

/// Header: sample count (`u16` BE, as XOR) and a flags byte.
pub const PACKED_HEADER_LEN: usize = 3;
const FLAG_INTEGERS: u8 = 1;
/// With [`FLAG_INTEGERS`]: no value decreases (counters), so deltas are coded without zig-zag.
const FLAG_NON_DECREASING: u8 = 2;
/// A Rice quotient of this many ones is an escape: 64 raw bits follow.
const ESCAPE: u64 = 32;
const NO_WINDOW: u8 = 0xff;

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn as_integer(v: f64) -> Option<i64> {
    let i = v as i64;
    ((i as f64).to_bits() == v.to_bits()).then_some(i)
}

/// Bits to Rice-code `x` with parameter `k`.
fn rice_cost(x: u64, k: u32) -> u64 {
    let q = x >> k;
    if q < ESCAPE { q + 1 + u64::from(k) } else { ESCAPE + 64 }
}

fn best_k(xs: &[u64]) -> u32 {
    (0..=40u32).min_by_key(|&k| xs.iter().map(|&x| rice_cost(x, k)).sum::<u64>()).unwrap_or(0)
}

fn write_rice(w: &mut BitWriter, x: u64, k: u32) {
    let q = x >> k;
    if q >= ESCAPE {
        for _ in 0..ESCAPE {
            w.write_bit(true);
        }
        w.write_bits(x, 64);
        return;
    }
    for _ in 0..q {
        w.write_bit(true);
    }
    w.write_bit(false);
    w.write_bits(x & ((1u64 << k) - 1), k as u8);
}

fn read_rice(r: &mut BitReader, data: &[u8], k: u32) -> Option<u64> {
    let mut q = 0u64;
    while q < ESCAPE && r.read_bit(data)? {
        q += 1;
    }
    if q == ESCAPE {
        return r.read_bits(data, 64);
    }
    Some((q << k) | r.read_bits(data, k as u8)?)
}

fn write_uvarint(w: &mut BitWriter, mut x: u64) {
    while x >= 0x80 {
        w.write_byte((x as u8) | 0x80);
        x >>= 7;
    }
    w.write_byte(x as u8);
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

/// Encodes `samples` (at most 65535) as a packed chunk.
pub fn encode_packed(samples: &[Sample]) -> Result<Vec<u8>, ChunkError> {
    if samples.len() > super::MAX_SAMPLES {
        return Err(ChunkError::Full);
    }
    let ints: Option<Vec<i64>> = samples.iter().map(|s| as_integer(s.v)).collect();
    // Non-decreasing with deltas that fit an i64 (no wrap-around), so they read back unsigned.
    let non_decreasing =
        ints.as_ref().is_some_and(|iv| iv.windows(2).all(|p| p[1].checked_sub(p[0]).is_some_and(|d| d >= 0)));
    let flags = match (&ints, non_decreasing) {
        (Some(_), true) => FLAG_INTEGERS | FLAG_NON_DECREASING,
        (Some(_), false) => FLAG_INTEGERS,
        (None, _) => 0,
    };
    let mut header = (samples.len() as u16).to_be_bytes().to_vec();
    header.push(flags);
    let mut w = BitWriter::resume(header, PACKED_HEADER_LEN * 8);
    let Some(first) = samples.first() else { return Ok(w.into_bytes()) };
    write_uvarint(&mut w, zigzag(first.t));
    match &ints {
        Some(iv) => write_uvarint(&mut w, zigzag(iv[0])),
        None => w.write_bits(first.v.to_bits(), 64),
    }
    if samples.len() == 1 {
        return Ok(w.into_bytes());
    }
    let deltas: Vec<i64> = samples.windows(2).map(|p| p[1].t.wrapping_sub(p[0].t)).collect();
    let dods: Vec<u64> = deltas.windows(2).map(|d| zigzag(d[1].wrapping_sub(d[0]))).collect();
    let kt = best_k(&dods);
    let vdeltas: Vec<u64> = match &ints {
        Some(iv) if non_decreasing => iv.windows(2).map(|p| p[1].wrapping_sub(p[0]) as u64).collect(),
        Some(iv) => iv.windows(2).map(|p| zigzag(p[1].wrapping_sub(p[0]))).collect(),
        None => Vec::new(),
    };
    let kv = best_k(&vdeltas);
    w.write_bits(u64::from(kt), 6);
    w.write_bits(u64::from(kv), 6);
    write_uvarint(&mut w, deltas[0] as u64);
    let mut xor = XorValues { prev: first.v.to_bits(), leading: NO_WINDOW, trailing: 0 };
    for i in 1..samples.len() {
        if i >= 2 {
            write_rice(&mut w, dods[i - 2], kt);
        }
        match &ints {
            Some(_) => write_rice(&mut w, vdeltas[i - 1], kv),
            None => xor.write(&mut w, samples[i].v.to_bits()),
        }
    }
    Ok(w.into_bytes())
}

/// The XOR value scheme of `xor.rs` (same bits), for chunks with non-integer values.
struct XorValues {
    prev: u64,
    leading: u8,
    trailing: u8,
}

impl XorValues {
    fn write(&mut self, w: &mut BitWriter, bits: u64) {
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            w.write_bit(false);
            w.write_bits(x >> self.trailing, 64 - self.leading - self.trailing);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            let sig = 64 - leading - trailing;
            w.write_bit(true);
            w.write_bits(u64::from(leading), 5);
            w.write_bits(u64::from(sig) & 0x3f, 6);
            w.write_bits(x >> trailing, sig);
        }
    }

    fn read(&mut self, r: &mut BitReader, data: &[u8]) -> Option<u64> {
        if !r.read_bit(data)? {
            return Some(self.prev);
        }
        if r.read_bit(data)? {
            let leading = r.read_bits(data, 5)? as u8;
            let sig = match r.read_bits(data, 6)? as u8 {
                0 => 64,
                s => s,
            };
            if leading + sig > 64 {
                return None;
            }
            self.leading = leading;
            self.trailing = 64 - leading - sig;
        } else if self.leading == NO_WINDOW {
            return None;
        }
        let x = r.read_bits(data, 64 - self.leading - self.trailing)?;
        self.prev ^= x << self.trailing;
        Some(self.prev)
    }
}

/// Decodes a packed chunk's samples in order; malformed input ends the iteration early and
/// [`PackedIterator::error`] says why.
#[derive(Debug, Clone)]
pub struct PackedIterator<B> {
    data: B,
    reader: BitReader,
    total: usize,
    read: usize,
    integers: bool,
    non_decreasing: bool,
    kt: u32,
    kv: u32,
    t: i64,
    delta: i64,
    iv: i64,
    xor: (u64, u8, u8),
    err: Option<ChunkError>,
}

impl<B: AsRef<[u8]>> PackedIterator<B> {
    pub fn new(data: B) -> PackedIterator<B> {
        let b = data.as_ref();
        let len = b.len();
        let (total, flags) = match b {
            [hi, lo, flags, ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), *flags),
            _ => (0, 0),
        };
        let integers = flags & FLAG_INTEGERS != 0;
        let non_decreasing = integers && flags & FLAG_NON_DECREASING != 0;
        let err = (len < PACKED_HEADER_LEN).then_some(ChunkError::TooShort { len });
        PackedIterator {
            data,
            reader: BitReader::at(PACKED_HEADER_LEN * 8),
            total,
            read: 0,
            integers,
            non_decreasing,
            kt: 0,
            kv: 0,
            t: 0,
            delta: 0,
            iv: 0,
            xor: (0, NO_WINDOW, 0),
            err,
        }
    }

    pub fn error(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    /// Advances to the first sample with timestamp `>= t` (timestamps non-decreasing).
    pub fn seek(&mut self, t: i64) -> Option<Sample> {
        self.find(|s| s.t >= t)
    }

    fn decode(&mut self) -> Option<Sample> {
        let data = self.data.as_ref();
        let r = &mut self.reader;
        let v = match self.read {
            0 => {
                self.t = unzigzag(read_uvarint(r, data)?);
                if self.integers {
                    self.iv = unzigzag(read_uvarint(r, data)?);
                    self.iv as f64
                } else {
                    self.xor.0 = r.read_bits(data, 64)?;
                    f64::from_bits(self.xor.0)
                }
            }
            n => {
                if n == 1 {
                    self.kt = r.read_bits(data, 6)? as u32;
                    self.kv = r.read_bits(data, 6)? as u32;
                    if self.kt > 63 || self.kv > 63 {
                        return None;
                    }
                    self.delta = read_uvarint(r, data)? as i64;
                } else {
                    let dod = unzigzag(read_rice(r, data, self.kt)?);
                    self.delta = self.delta.wrapping_add(dod);
                }
                self.t = self.t.wrapping_add(self.delta);
                if self.integers {
                    let d = read_rice(r, data, self.kv)?;
                    let d = if self.non_decreasing { d as i64 } else { unzigzag(d) };
                    self.iv = self.iv.wrapping_add(d);
                    self.iv as f64
                } else {
                    let mut x = XorValues { prev: self.xor.0, leading: self.xor.1, trailing: self.xor.2 };
                    let bits = x.read(r, data);
                    self.xor = (x.prev, x.leading, x.trailing);
                    f64::from_bits(bits?)
                }
            }
        };
        Some(Sample { t: self.t, v })
    }
}

impl<B: AsRef<[u8]>> Iterator for PackedIterator<B> {
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
                self.err = Some(ChunkError::Truncated { sample: self.read, samples: self.total });
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn round_trip(s: &[(i64, u64)]) -> Vec<(i64, u64)> {
        let samples: Vec<Sample> = s.iter().map(|&(t, v)| Sample { t, v: f64::from_bits(v) }).collect();
        let bytes = encode_packed(&samples).unwrap();
        let mut it = PackedIterator::new(&bytes[..]);
        let out: Vec<(i64, u64)> = it.by_ref().map(|x| (x.t, x.v.to_bits())).collect();
        assert!(it.error().is_none(), "{:?}", it.error());
        out
    }

    #[test]
    fn integers_floats_and_special_values() {
        let ints: Vec<(i64, u64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000 + (i % 3), ((i * 7) as f64).to_bits()))
            .collect();
        assert_eq!(round_trip(&ints), ints);
        let mixed = vec![
            (1, 1.5f64.to_bits()),
            (2, STALE_NAN_BITS),
            (3, (-0.0f64).to_bits()),
            (4, f64::INFINITY.to_bits()),
            (5, (i64::MAX as f64).to_bits()),
        ];
        assert_eq!(round_trip(&mixed), mixed);
        let big =
            vec![(0, (-(2f64.powi(62))).to_bits()), (1, 2f64.powi(62).to_bits()), (i64::MAX, 0f64.to_bits())];
        assert_eq!(round_trip(&big), big);
        assert_eq!(round_trip(&[]), vec![]);
        assert_eq!(round_trip(&[(-5, 3)]), vec![(-5, 3)]);
    }

    #[test]
    fn denser_than_xor_for_jittered_counters() {
        let mut xor = super::super::XorAppender::new();
        let mut samples = Vec::new();
        let mut v = 1000.0;
        for i in 0..120i64 {
            let t = 1_700_000_000_000 + i * 15_000 + (i * 7919 % 5) - 2;
            v += ((i * 31) % 21) as f64;
            xor.append(t, v).unwrap();
            samples.push(Sample { t, v });
        }
        let packed = encode_packed(&samples).unwrap();
        assert!(
            packed.len() * 10 < xor.bytes().len() * 6,
            "packed {} vs xor {}",
            packed.len(),
            xor.bytes().len()
        );
    }

    proptest! {
        #[test]
        fn any_stream_round_trips(s in prop::collection::vec((any::<i64>(), prop_oneof![
            3 => any::<u64>(),
            3 => (-1000i64..1000).prop_map(|i| (i as f64).to_bits()),
            1 => Just(STALE_NAN_BITS),
        ]), 0..200)) {
            prop_assert_eq!(round_trip(&s), s);
        }

        #[test]
        fn monotonic_integer_streams_round_trip(start in any::<i64>(), steps in prop::collection::vec((0i64..100_000, -50i64..50), 0..200)) {
            let mut t = start / 2;
            let mut v = 0i64;
            let s: Vec<(i64, u64)> = steps.iter().map(|&(dt, dv)| { t = t.saturating_add(dt); v += dv; (t, (v as f64).to_bits()) }).collect();
            prop_assert_eq!(round_trip(&s), s);
        }

        #[test]
        fn counters_round_trip(start in any::<i64>(), steps in prop::collection::vec((0i64..100_000, prop_oneof![0i64..30, 0i64..(1 << 40)]), 0..200)) {
            let mut t = start / 2;
            let mut v = -(1i64 << 52);
            let s: Vec<(i64, u64)> = steps.iter().map(|&(dt, dv)| { t = t.saturating_add(dt); v = v.saturating_add(dv); (t, (v as f64).to_bits()) }).collect();
            prop_assert_eq!(round_trip(&s), s);
        }
    }
}
