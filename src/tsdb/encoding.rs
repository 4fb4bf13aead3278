//! Byte-level encoding shared by the on-disk formats (WAL records, block index and chunk files):
//! varints, fixed-width integers and length-prefixed strings, written to a `Vec<u8>` and read back
//! from a slice with bounds checks. What the bytes mean is up to `wal` and `block`.

/// Why bytes could not be decoded: the caller turns this into its own corruption error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("unexpected end of data at byte {at}")]
    Eof { at: usize },
    #[error("varint too long at byte {at}")]
    VarintOverflow { at: usize },
    #[error("invalid UTF-8 at byte {at}")]
    Utf8 { at: usize },
}

pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

pub(crate) fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
}

pub(crate) fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// A read cursor over a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Decoder<'a> {
        Decoder { data, pos: 0 }
    }

    pub(crate) fn at(data: &'a [u8], pos: usize) -> Decoder<'a> {
        Decoder { data, pos }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The capacity to reserve for `count` items about to be read from here, each taking at
    /// least `min_bytes` bytes of input. A count read from the input is untrusted: it never sizes
    /// an allocation larger than the rest of the input could fill, so a corrupt count fails when
    /// the items run out, not in the allocator.
    pub(crate) fn capacity_for(&self, count: u64, min_bytes: usize) -> usize {
        let fits = self.remaining() / min_bytes.max(1);
        usize::try_from(count).map_or(fits, |c| c.min(fits))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.data.get(self.pos).ok_or(DecodeError::Eof { at: self.pos })?;
            self.pos += 1;
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(x);
            }
        }
        Err(DecodeError::VarintOverflow { at: start })
    }

    pub(crate) fn varint(&mut self) -> Result<i64, DecodeError> {
        let ux = self.uvarint()?;
        Ok(((ux >> 1) as i64) ^ -((ux & 1) as i64))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.data.get(self.pos).ok_or(DecodeError::Eof { at: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(DecodeError::Eof { at: self.data.len() })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::Eof { at: self.pos })?;
        self.take(n)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::Utf8 { at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = Vec::new();
        for x in [0u64, 1, 127, 128, 300, u64::MAX] {
            put_uvarint(&mut b, x);
        }
        for x in [0i64, -1, 1, i64::MIN, i64::MAX] {
            put_varint(&mut b, x);
        }
        put_bytes(&mut b, b"hello");
        let mut d = Decoder::new(&b);
        for x in [0u64, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(d.uvarint().unwrap(), x);
        }
        for x in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(d.varint().unwrap(), x);
        }
        assert_eq!(d.str().unwrap(), "hello");
        assert!(d.is_empty());
        assert!(matches!(d.u8(), Err(DecodeError::Eof { .. })));
        assert!(matches!(Decoder::new(&[0x80; 11]).uvarint(), Err(DecodeError::VarintOverflow { .. })));
        assert!(Decoder::new(&[5, b'a']).bytes().is_err());
    }

    #[test]
    fn capacities_are_bounded_by_the_input_left() {
        let data = [0u8; 100];
        let mut d = Decoder::new(&data);
        assert_eq!(d.capacity_for(u64::MAX, 1), 100);
        assert_eq!(d.capacity_for(u64::MAX, 3), 33);
        assert_eq!(d.capacity_for(7, 2), 7);
        assert_eq!(d.capacity_for(7, 0), 7, "a zero item size counts as one byte");
        let _ = d.take(90);
        assert_eq!(d.remaining(), 10);
        assert_eq!(d.capacity_for(1 << 40, 2), 5);
        assert_eq!(Decoder::at(&data, 500).capacity_for(10, 1), 0, "a position past the end");
    }
}
