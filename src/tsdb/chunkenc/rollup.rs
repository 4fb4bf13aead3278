//! The rollup chunk: a run of one series' [`Rollup`]s stored column by column, so a reader
//! decodes only the aggregates it needs (`max_over_time` reads timestamps and maxima). Each
//! column is an XOR chunk: the timestamp column holds `(t, t - first_t)`, every other column
//! `(i, value)` — a constant step costs one bit per row. Layout in `docs/format/chunks.md`.

use super::{ChunkError, XorAppender, XorIterator};
use crate::storage::rollup::{Aggregates, Rollup};
use crate::tsdb::encoding::{Decoder, put_uvarint};

/// Encoding byte of a rollup chunk.
pub const ENCODING_ROLLUP: u8 = 3;

/// Columns after the timestamp column, in stored order, with the aggregate each one holds.
const COLUMNS: [Aggregates; 9] = [
    Aggregates::COUNT,
    Aggregates::SUM,
    Aggregates::MIN,
    Aggregates::MAX,
    Aggregates::FIRST,
    Aggregates::LAST,
    Aggregates::INC,
    Aggregates::RESETS,
    Aggregates::CHANGES,
];

/// The most rollups one chunk holds (an XOR column's limit).
pub const MAX_ROLLUPS: usize = super::MAX_SAMPLES;

fn column_value(r: &Rollup, c: usize) -> f64 {
    match c {
        0 => r.count as f64,
        1 => r.sum,
        2 => r.min,
        3 => r.max,
        4 => r.first,
        5 => r.last,
        6 => r.inc,
        7 => r.resets as f64,
        _ => r.changes as f64,
    }
}

fn set_column(r: &mut Rollup, c: usize, v: f64) {
    match c {
        0 => r.count = v as u64,
        1 => r.sum = v,
        2 => r.min = v,
        3 => r.max = v,
        4 => r.first = v,
        5 => r.last = v,
        6 => r.inc = v,
        7 => r.resets = v as u64,
        _ => r.changes = v as u64,
    }
}

/// Encodes `rollups` (time order, at most [`MAX_ROLLUPS`]) into one chunk.
pub fn encode_rollups(rollups: &[Rollup]) -> Result<Vec<u8>, ChunkError> {
    let mut out = Vec::with_capacity(16 + rollups.len() * 12);
    put_uvarint(&mut out, (COLUMNS.len() + 1) as u64);
    let mut ts = XorAppender::new();
    for r in rollups {
        ts.append(r.t, (r.t - r.first_t) as f64)?;
    }
    put_column(&mut out, ts.bytes());
    for c in 0..COLUMNS.len() {
        // A window of one sample has sum = min = max = first = last: such a column is stored
        // empty and read as the `last` column.
        if ALIASES_LAST.contains(&c)
            && rollups.iter().all(|r| column_value(r, c).to_bits() == r.last.to_bits())
        {
            put_column(&mut out, &[]);
            continue;
        }
        let mut col = XorAppender::new();
        for (i, r) in rollups.iter().enumerate() {
            col.append(i as i64, column_value(r, c))?;
        }
        put_column(&mut out, col.bytes());
    }
    Ok(out)
}

/// Columns that may be stored empty, meaning "equal to the `last` column" (sum, min, max,
/// first), and the index of `last`.
const ALIASES_LAST: [usize; 4] = [1, 2, 3, 4];
const LAST_COLUMN: usize = 5;

fn put_column(out: &mut Vec<u8>, bytes: &[u8]) {
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Decodes the rollups of a chunk with the aggregates in `need` (others are zero).
pub fn decode_rollups(bytes: &[u8], need: Aggregates) -> Result<Vec<Rollup>, ChunkError> {
    let bad = |what: &str| ChunkError::Rollup(what.to_string());
    let mut d = Decoder::new(bytes);
    let columns = d.uvarint().map_err(|e| bad(&e.to_string()))? as usize;
    if columns != COLUMNS.len() + 1 {
        return Err(bad(&format!("{columns} columns, expected {}", COLUMNS.len() + 1)));
    }
    let ts_bytes = d.bytes().map_err(|e| bad(&e.to_string()))?;
    let mut it = XorIterator::new(ts_bytes);
    let mut out: Vec<Rollup> = Vec::with_capacity(it.remaining());
    for s in it.by_ref() {
        let mut r = Rollup::of_sample(s.t, 0.0);
        r.first_t = s.t - s.v as i64;
        r.count = 0;
        out.push(r);
    }
    if let Some(e) = it.error() {
        return Err(e.clone());
    }
    let mut cols: Vec<&[u8]> = Vec::with_capacity(COLUMNS.len());
    for _ in 0..COLUMNS.len() {
        cols.push(d.bytes().map_err(|e| bad(&e.to_string()))?);
    }
    for (c, agg) in COLUMNS.iter().enumerate() {
        if !need.has(*agg) {
            continue;
        }
        let col = match cols[c] {
            [] if ALIASES_LAST.contains(&c) => cols[LAST_COLUMN],
            col => col,
        };
        let mut it = XorIterator::new(col);
        if it.remaining() != out.len() {
            return Err(bad("columns of different lengths"));
        }
        for (r, s) in out.iter_mut().zip(it.by_ref()) {
            set_column(r, c, s.v);
        }
        if let Some(e) = it.error() {
            return Err(e.clone());
        }
    }
    Ok(out)
}

/// The number of rollups in a chunk, from its timestamp column's header.
pub fn count_rollups(bytes: &[u8]) -> usize {
    let mut d = Decoder::new(bytes);
    match (d.uvarint(), d.bytes()) {
        (Ok(_), Ok(ts)) => XorIterator::new(ts).remaining(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::rollup::RollupBuilder;

    #[test]
    fn round_trips_every_column_or_only_those_asked_for() {
        let mut b = RollupBuilder::new(300_000);
        let mut rollups = Vec::new();
        let mut v = 0.0;
        for i in 0..2000i64 {
            v = if i % 700 == 0 { 1.0 } else { v + (i % 7) as f64 };
            rollups.extend(b.push(i * 15_000 + 3, v));
        }
        rollups.extend(b.finish());
        let bytes = encode_rollups(&rollups).unwrap();
        assert_eq!(count_rollups(&bytes), rollups.len());
        assert_eq!(decode_rollups(&bytes, Aggregates::ALL).unwrap(), rollups);
        let max_only = decode_rollups(&bytes, Aggregates::MAX).unwrap();
        for (a, b) in max_only.iter().zip(&rollups) {
            assert_eq!((a.t, a.first_t, a.max, a.sum, a.count), (b.t, b.first_t, b.max, 0.0, 0));
        }
        // Per window: ~20 raw samples of 16 bytes raw; far less stored.
        assert!(bytes.len() < rollups.len() * 40, "{} bytes for {} rollups", bytes.len(), rollups.len());
        assert!(decode_rollups(&bytes[..bytes.len() / 2], Aggregates::ALL).is_err());
    }

    #[test]
    fn windows_of_one_sample_store_their_value_once() {
        // Raw data as sparse as the resolution: every rollup holds one sample.
        let rollups: Vec<Rollup> =
            (0..480i64).map(|i| Rollup::of_sample(i * 300_000, ((i * 7919) % 1013) as f64 * 1.37)).collect();
        let bytes = encode_rollups(&rollups).unwrap();
        assert_eq!(decode_rollups(&bytes, Aggregates::ALL).unwrap(), rollups);
        let max_only = decode_rollups(&bytes, Aggregates::MAX).unwrap();
        assert!(max_only.iter().zip(&rollups).all(|(a, b)| a.max == b.max && a.last == 0.0));
        let mut plain = XorAppender::new();
        for r in &rollups {
            plain.append(r.t, r.last).unwrap();
        }
        // About the size of the raw XOR chunk, not five times it.
        assert!(bytes.len() < plain.bytes().len() * 3 / 2, "{} vs {}", bytes.len(), plain.bytes().len());
    }
}
