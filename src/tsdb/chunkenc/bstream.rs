//! Bit streams: an append-only MSB-first bit writer over a `Vec<u8>` and a reader over any byte
//! slice. They know nothing about samples; `xor` gives the bits their meaning.

/// Appends bits, most significant first, to a byte buffer that may already hold a header.
#[derive(Debug, Clone)]
pub(crate) struct BitWriter {
    buf: Vec<u8>,
    /// Bits still unused in the last byte of `buf` (0 when `buf` ends on a byte boundary).
    free: u8,
}

impl BitWriter {
    /// Continues writing after the first `bit_len` bits of `buf`; bytes past them are dropped and
    /// unused low bits of the last byte are cleared, so a resumed stream never ORs into garbage.
    pub(crate) fn resume(mut buf: Vec<u8>, bit_len: usize) -> BitWriter {
        buf.truncate(bit_len.div_ceil(8));
        let free = ((8 - bit_len % 8) % 8) as u8;
        if let Some(last) = buf.last_mut() {
            *last &= !((1u16 << free) - 1) as u8;
        }
        BitWriter { buf, free }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit && let Some(last) = self.buf.last_mut() {
            *last |= 1 << self.free;
        }
    }

    /// Writes the low `n` bits of `v` (`n <= 64`), most significant first.
    #[inline]
    pub(crate) fn write_bits(&mut self, v: u64, mut n: u8) {
        debug_assert!(n <= 64);
        while n > 0 {
            if self.free == 0 {
                self.buf.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            let part = ((v >> (n - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= part << (self.free - take);
            }
            self.free -= take;
            n -= take;
        }
    }

    pub(crate) fn write_byte(&mut self, b: u8) {
        self.write_bits(u64::from(b), 8);
    }
}

/// Reads bits, most significant first, from a byte slice starting at a bit position.
#[derive(Debug, Clone)]
pub(crate) struct BitReader {
    /// Absolute bit position of the next bit to read.
    pos: usize,
}

impl BitReader {
    pub(crate) fn at(pos: usize) -> BitReader {
        BitReader { pos }
    }

    /// Bits consumed so far, counted from the start of the slice.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn read_bit(&mut self, data: &[u8]) -> Option<bool> {
        let byte = *data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    /// Reads `n <= 64` bits as the low bits of a `u64`; `None` past the end of `data`.
    #[inline]
    pub(crate) fn read_bits(&mut self, data: &[u8], n: u8) -> Option<u64> {
        debug_assert!(n <= 64);
        if n == 0 {
            return Some(0);
        }
        let n_us = usize::from(n);
        if self.pos + n_us > data.len() * 8 {
            return None;
        }
        let start = self.pos / 8;
        let off = self.pos % 8;
        // Fast path: the bits lie inside one 8-byte window.
        if off + n_us <= 64
            && let Some(window) = data.get(start..start + 8)
        {
            let mut w = [0u8; 8];
            w.copy_from_slice(window);
            let word = u64::from_be_bytes(w) << off;
            self.pos += n_us;
            return Some(word >> (64 - n_us));
        }
        let mut out = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = *data.get(self.pos / 8)?;
            let avail = 8 - (self.pos % 8) as u8;
            let take = left.min(avail);
            let part = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            out = if take == 64 { part } else { (out << take) | part };
            self.pos += usize::from(take);
            left -= take;
        }
        Some(out)
    }

    pub(crate) fn read_byte(&mut self, data: &[u8]) -> Option<u8> {
        self.read_bits(data, 8).map(|b| b as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_across_byte_boundaries() {
        let mut w = BitWriter::resume(vec![0xAB], 8);
        let fields: &[(u64, u8)] =
            &[(1, 1), (0b101, 3), (u64::MAX, 64), (0x1234, 14), (0, 5), (0xdead_beef, 32), (7, 3)];
        for &(v, n) in fields {
            w.write_bits(v, n);
        }
        w.write_bit(true);
        let data = w.into_bytes();
        assert_eq!(data[0], 0xAB);
        let mut r = BitReader::at(8);
        for &(v, n) in fields {
            let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            assert_eq!(r.read_bits(&data, n), Some(v & mask));
        }
        assert_eq!(r.read_bit(&data), Some(true));
    }

    #[test]
    fn resume_clears_unused_bits_and_drops_tail() {
        let w = BitWriter::resume(vec![0xFF, 0xFF, 0xFF], 12);
        assert_eq!(w.bytes(), &[0xFF, 0xF0]);
        let mut w = w;
        w.write_bits(0b1010, 4);
        assert_eq!(w.bytes(), &[0xFF, 0xFA]);
    }

    #[test]
    fn reading_past_the_end_is_none() {
        let data = [0u8; 2];
        let mut r = BitReader::at(10);
        assert_eq!(r.read_bits(&data, 7), None);
        assert_eq!(r.read_bits(&data, 6), Some(0));
        assert_eq!(r.read_bit(&data), None);
    }
}
