//! WAL records: the frame around each record (length, CRC32, type) and the three record bodies —
//! series (ref and labels), samples (ref, timestamp, value; delta-encoded) and chunks (one
//! series' samples as an XOR chunk, written by checkpoints). Layout: `docs/format/wal.md`.

use crate::model::{Label, Labels};
use crate::storage::SeriesRef;
use crate::tsdb::encoding::{DecodeError, Decoder, put_bytes, put_uvarint, put_varint};

/// Bytes before a record's payload: payload length (`u32` LE) and CRC32 of the payload (`u32` LE).
pub(crate) const FRAME_HEADER: usize = 8;

/// No record is larger than this; a larger length field is read as garbage (a torn tail).
pub(crate) const MAX_RECORD: usize = 1 << 30;

pub(crate) const TYPE_SERIES: u8 = 1;
pub(crate) const TYPE_SAMPLES: u8 = 2;
pub(crate) const TYPE_CHUNK: u8 = 3;

/// One sample addressed by series ref.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RefSample {
    pub(crate) r: SeriesRef,
    pub(crate) t: i64,
    pub(crate) v: f64,
}

/// A decoded record.
#[derive(Debug, PartialEq)]
pub(crate) enum Record {
    Series(Vec<(SeriesRef, Labels)>),
    Samples(Vec<RefSample>),
    /// A series' samples as an encoded chunk (encoding byte, then the chunk bytes).
    Chunk {
        r: SeriesRef,
        encoding: u8,
        bytes: Box<[u8]>,
    },
}

/// Appends one framed record whose payload `body` writes (type byte first).
pub(crate) fn frame(buf: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    body(buf);
    let payload = &buf[start + FRAME_HEADER..];
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    buf[start..start + 4].copy_from_slice(&len);
    buf[start + 4..start + 8].copy_from_slice(&crc);
}

pub(crate) fn encode_series<'a>(
    buf: &mut Vec<u8>,
    series: impl IntoIterator<Item = (SeriesRef, &'a Labels)>,
) {
    frame(buf, |b| {
        b.push(TYPE_SERIES);
        for (r, labels) in series {
            put_uvarint(b, r);
            put_uvarint(b, labels.len() as u64);
            for l in labels {
                put_bytes(b, l.name.as_bytes());
                put_bytes(b, l.value.as_bytes());
            }
        }
    });
}

/// Samples: the first ref and timestamp in full, then each as signed deltas from the previous
/// sample; values as raw 64-bit patterns (exact for every NaN).
pub(crate) fn encode_samples(buf: &mut Vec<u8>, samples: impl IntoIterator<Item = RefSample>) {
    frame(buf, |b| {
        b.push(TYPE_SAMPLES);
        let (mut pr, mut pt) = (0u64, 0i64);
        for s in samples {
            put_varint(b, s.r.wrapping_sub(pr) as i64);
            put_varint(b, s.t.wrapping_sub(pt));
            b.extend_from_slice(&s.v.to_bits().to_le_bytes());
            (pr, pt) = (s.r, s.t);
        }
    });
}

pub(crate) fn encode_chunk(buf: &mut Vec<u8>, r: SeriesRef, encoding: u8, bytes: &[u8]) {
    frame(buf, |b| {
        b.push(TYPE_CHUNK);
        put_uvarint(b, r);
        b.push(encoding);
        put_bytes(b, bytes);
    });
}

/// Why a record body could not be decoded (its CRC was right, so this is a bug or a format
/// from elsewhere, not a torn write).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("empty record")]
    Empty,
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Decodes a payload whose CRC has been checked.
pub(crate) fn decode(payload: &[u8]) -> Result<Record, RecordError> {
    let (&kind, body) = payload.split_first().ok_or(RecordError::Empty)?;
    let mut d = Decoder::new(body);
    match kind {
        TYPE_SERIES => {
            let mut out = Vec::new();
            while !d.is_empty() {
                let r = d.uvarint()?;
                let n = d.uvarint()?;
                // A label is two length-prefixed strings: at least two bytes.
                let mut pairs = Vec::with_capacity(d.capacity_for(n, 2));
                for _ in 0..n {
                    let name = d.str()?;
                    let value = d.str()?;
                    pairs.push(Label::new(name, value));
                }
                out.push((r, Labels::new(pairs)));
            }
            Ok(Record::Series(out))
        }
        TYPE_SAMPLES => {
            // A sample takes at least 10 bytes (two 1-byte varints and the value): never regrow.
            let mut out = Vec::with_capacity(body.len() / 10 + 1);
            let (mut r, mut t) = (0u64, 0i64);
            while !d.is_empty() {
                r = r.wrapping_add(d.varint()? as u64);
                t = t.wrapping_add(d.varint()?);
                let v = f64::from_bits(d.u64_le()?);
                out.push(RefSample { r, t, v });
            }
            Ok(Record::Samples(out))
        }
        TYPE_CHUNK => {
            let r = d.uvarint()?;
            let encoding = d.u8()?;
            let bytes = d.bytes()?.into();
            Ok(Record::Chunk { r, encoding, bytes })
        }
        other => Err(RecordError::UnknownType(other)),
    }
}

/// The outcome of reading the frame at the start of `data`.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame<'a> {
    /// A whole record with a matching CRC, and its total length including the frame.
    Ok { payload: &'a [u8], len: usize },
    /// Not a valid record: the data ends inside it, its length is impossible, or its CRC does
    /// not match. Everything from here on is a torn or damaged tail.
    Bad(&'static str),
}

pub(crate) fn read_frame(data: &[u8]) -> Frame<'_> {
    if data.len() < FRAME_HEADER {
        return Frame::Bad("data ends inside a record header");
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&data[..4]);
    let len = u32::from_le_bytes(len) as usize;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&data[4..8]);
    let crc = u32::from_le_bytes(crc);
    if len == 0 || len > MAX_RECORD {
        return Frame::Bad("impossible record length");
    }
    let Some(payload) = data.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Frame::Bad("data ends inside a record");
    };
    if crc32fast::hash(payload) != crc {
        return Frame::Bad("record checksum mismatch");
    }
    Frame::Ok { payload, len: FRAME_HEADER + len }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN_BITS;

    #[test]
    fn records_round_trip() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let mut buf = Vec::new();
        encode_series(&mut buf, [(7, &l), (9, &Labels::empty())]);
        let samples = vec![
            RefSample { r: 9, t: 1000, v: 1.5 },
            RefSample { r: 7, t: -5, v: f64::from_bits(STALE_NAN_BITS) },
            RefSample { r: u64::MAX, t: i64::MAX, v: 0.0 },
        ];
        encode_samples(&mut buf, samples.clone());
        encode_chunk(&mut buf, 3, 1, &[0, 1, 2]);
        let mut at = 0;
        let mut got = Vec::new();
        while at < buf.len() {
            let Frame::Ok { payload, len } = read_frame(&buf[at..]) else { panic!("bad frame at {at}") };
            got.push(format!("{:?}", decode(payload).unwrap()));
            at += len;
        }
        assert_eq!(got[0], format!("{:?}", Record::Series(vec![(7, l), (9, Labels::empty())])));
        assert!(got[1].contains("18446744073709551615"));
        assert_eq!(got[2], format!("{:?}", Record::Chunk { r: 3, encoding: 1, bytes: Box::new([0, 1, 2]) }));
    }

    #[test]
    fn torn_and_damaged_frames_are_bad() {
        let mut buf = Vec::new();
        encode_samples(&mut buf, [RefSample { r: 1, t: 2, v: 3.0 }]);
        for cut in 0..buf.len() {
            assert!(matches!(read_frame(&buf[..cut]), Frame::Bad(_)), "cut at {cut}");
        }
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(read_frame(&flipped), Frame::Bad("record checksum mismatch"));
        assert_eq!(read_frame(&[0u8; 16]), Frame::Bad("impossible record length"));
        assert!(matches!(read_frame(&buf), Frame::Ok { .. }));
    }

    #[test]
    fn a_huge_label_count_on_a_short_record_is_an_error() {
        // Series record: ref 1, label count u64::MAX, then one short label.
        let mut payload = vec![TYPE_SERIES];
        put_uvarint(&mut payload, 1);
        put_uvarint(&mut payload, u64::MAX);
        put_bytes(&mut payload, b"a");
        put_bytes(&mut payload, b"b");
        assert!(matches!(decode(&payload), Err(RecordError::Decode(DecodeError::Eof { .. }))));
    }
}
