//! A block's label index: the symbol table, the series (labels as symbol ids and chunk
//! references), the postings of every label pair, and the label table that finds them. The
//! writer builds it in memory from label-sorted series; the reader reads it from a memory map.
//! Layout: `docs/format/block.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use memmap2::Mmap;

use super::BlockError;
use crate::model::{Label, Labels, Matcher};
use crate::tsdb::encoding::{Decoder, put_bytes, put_uvarint, put_varint};

pub(crate) const INDEX_MAGIC: &[u8; 4] = b"PTIX";
pub(crate) const INDEX_VERSION: u8 = 1;
/// Header: magic, version, three zero bytes.
const HEADER_LEN: usize = 8;
/// Trailer: five section offsets, the series count, the time base of chunk references and the
/// width of series offsets (`u64` LE each), then CRC32 of everything before.
const TOC_LEN: usize = 8 * 8 + 4;

/// Where one chunk of a series is and what time it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    /// Byte offset of the chunk's entry in the chunk file.
    pub(crate) offset: u64,
}

/// Encodes an index for `series`, which must be sorted by labels.
pub(crate) fn encode(series: &[(&Labels, &[ChunkMeta])]) -> Vec<u8> {
    // Values go to the symbol table; names (few) are numbered by their place in the sorted list of
    // names, so a series' name references are one byte.
    let mut symbols: BTreeSet<&str> = BTreeSet::new();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (labels, _) in series {
        for l in labels.iter() {
            names.insert(l.name);
            symbols.insert(l.value);
        }
    }
    let symbol_id: HashMap<&str, u64> = symbols.iter().enumerate().map(|(i, s)| (*s, i as u64)).collect();
    let sym = |s: &str| symbol_id.get(s).copied().unwrap_or(0);
    let name_id: HashMap<&str, u64> = names.iter().enumerate().map(|(i, s)| (*s, i as u64)).collect();
    // Chunk times are stored from the earliest chunk start: a few bytes instead of eight.
    let base_t = series.iter().filter_map(|(_, c)| c.first().map(|c| c.min_t)).min().unwrap_or(0);

    let mut out = Vec::with_capacity(series.len() * 64 + 1024);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&[INDEX_VERSION, 0, 0, 0]);

    let symbols_at = out.len() as u64;
    put_uvarint(&mut out, symbols.len() as u64);
    for s in &symbols {
        put_bytes(&mut out, s.as_bytes());
    }

    let series_at = out.len() as u64;
    let mut offsets = Vec::with_capacity(series.len());
    // name -> value -> series ids, in id order.
    let mut postings: BTreeMap<&str, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
    for (id, (labels, chunks)) in series.iter().enumerate() {
        offsets.push(out.len() as u64);
        put_uvarint(&mut out, labels.len() as u64);
        for l in labels.iter() {
            put_uvarint(&mut out, name_id.get(l.name).copied().unwrap_or(0));
            put_uvarint(&mut out, sym(l.value));
            postings.entry(l.name).or_default().entry(l.value).or_default().push(id as u32);
        }
        put_uvarint(&mut out, chunks.len() as u64);
        let (mut prev_max, mut prev_off) = (0i64, 0u64);
        for (i, c) in chunks.iter().enumerate() {
            if i == 0 {
                put_varint(&mut out, c.min_t.wrapping_sub(base_t));
            } else {
                put_varint(&mut out, c.min_t.wrapping_sub(prev_max));
            }
            put_uvarint(&mut out, c.max_t.wrapping_sub(c.min_t) as u64);
            put_varint(&mut out, c.offset.wrapping_sub(prev_off) as i64);
            (prev_max, prev_off) = (c.max_t, c.offset);
        }
    }

    let offsets_at = out.len() as u64;
    let width: u64 = if offsets_at <= u64::from(u32::MAX) { 4 } else { 8 };
    for o in offsets {
        if width == 4 {
            out.extend_from_slice(&(o as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&o.to_le_bytes());
        }
    }

    let postings_at = out.len() as u64;
    let mut table: Vec<(&str, Vec<(&str, u64)>)> = Vec::new();
    for (name, values) in &postings {
        let mut entries = Vec::with_capacity(values.len());
        for (value, ids) in values {
            entries.push((*value, out.len() as u64));
            put_uvarint(&mut out, ids.len() as u64);
            let mut prev = 0u32;
            for &id in ids {
                put_uvarint(&mut out, u64::from(id - prev));
                prev = id;
            }
        }
        table.push((name, entries));
    }

    let table_at = out.len() as u64;
    put_uvarint(&mut out, table.len() as u64);
    for (name, entries) in &table {
        put_bytes(&mut out, name.as_bytes());
        put_uvarint(&mut out, entries.len() as u64);
        let mut prev = 0u64;
        for (value, at) in entries {
            put_uvarint(&mut out, sym(value));
            put_uvarint(&mut out, at - prev);
            prev = *at;
        }
    }

    for x in
        [symbols_at, series_at, offsets_at, postings_at, table_at, series.len() as u64, base_t as u64, width]
    {
        out.extend_from_slice(&x.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A block's index, read from a memory map. Symbols and the label table are decoded at open;
/// series and postings are decoded from the map when asked for.
pub(crate) struct IndexReader {
    map: Mmap,
    symbols: Vec<String>,
    /// Label name → (value, postings offset), values sorted.
    table: BTreeMap<String, Vec<(String, usize)>>,
    /// Label names by id (sorted), as series entries reference them.
    names: Vec<String>,
    offsets_at: usize,
    offset_width: usize,
    n_series: usize,
    base_t: i64,
}

fn corrupt(what: impl std::fmt::Display) -> BlockError {
    BlockError::Corrupt(format!("index: {what}"))
}

impl IndexReader {
    pub(crate) fn new(map: Mmap) -> Result<IndexReader, BlockError> {
        let data: &[u8] = &map;
        if data.len() < HEADER_LEN + TOC_LEN || &data[..4] != INDEX_MAGIC {
            return Err(corrupt("bad magic or too short"));
        }
        if data[4] != INDEX_VERSION {
            return Err(corrupt(format_args!("unsupported version {}", data[4])));
        }
        let body = data.len() - 4;
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&data[body..]);
        if crc32fast::hash(&data[..body]) != u32::from_le_bytes(crc) {
            return Err(corrupt("checksum mismatch"));
        }
        let mut toc = Decoder::at(data, data.len() - TOC_LEN);
        let mut next = || toc.u64_le().map(|x| x as usize).map_err(corrupt);
        let (symbols_at, _series_at, offsets_at, _postings_at, table_at, n_series, base_t, offset_width) =
            (next()?, next()?, next()?, next()?, next()?, next()?, next()? as i64, next()?);
        if offset_width != 4 && offset_width != 8 {
            return Err(corrupt("bad series offset width"));
        }
        if offsets_at.saturating_add(n_series.saturating_mul(offset_width)) > body {
            return Err(corrupt("series table out of range"));
        }
        let mut d = Decoder::at(data, symbols_at);
        let n = d.uvarint().map_err(corrupt)?;
        // Counts come from the file: each bounds its allocation by the bytes its items need
        // (a symbol: a length byte; a value entry: two varints; a label: two; a chunk: three;
        // a posting: one).
        let mut symbols = Vec::with_capacity(d.capacity_for(n, 1));
        for _ in 0..n {
            symbols.push(d.str().map_err(corrupt)?.to_string());
        }
        let get = |i: u64| symbols.get(i as usize).cloned().ok_or_else(|| corrupt("bad symbol id"));
        let mut d = Decoder::at(data, table_at);
        let mut table = BTreeMap::new();
        let mut names = Vec::new();
        for _ in 0..d.uvarint().map_err(corrupt)? {
            let name = d.str().map_err(corrupt)?.to_string();
            names.push(name.clone());
            let n = d.uvarint().map_err(corrupt)?;
            let mut values = Vec::with_capacity(d.capacity_for(n, 2));
            let mut at = 0u64;
            for _ in 0..n {
                let value = get(d.uvarint().map_err(corrupt)?)?;
                at += d.uvarint().map_err(corrupt)?;
                values.push((value, at as usize));
            }
            table.insert(name, values);
        }
        Ok(IndexReader { map, symbols, table, names, offsets_at, offset_width, n_series, base_t })
    }

    pub(crate) fn num_series(&self) -> usize {
        self.n_series
    }

    fn symbol(&self, i: u64) -> Result<&str, BlockError> {
        self.symbols.get(i as usize).map(String::as_str).ok_or_else(|| corrupt("bad symbol id"))
    }

    /// Labels and chunk references of series `id`.
    pub(crate) fn series(&self, id: u32) -> Result<(Labels, Vec<ChunkMeta>), BlockError> {
        let data: &[u8] = &self.map;
        let mut d = Decoder::at(data, self.offsets_at + id as usize * self.offset_width);
        let at = match self.offset_width {
            4 => {
                let b = d.take(4).map_err(corrupt)?;
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
            }
            _ => d.u64_le().map_err(corrupt)? as usize,
        };
        let mut d = Decoder::at(data, at);
        let n = d.uvarint().map_err(corrupt)?;
        let mut pairs = Vec::with_capacity(d.capacity_for(n, 2));
        for _ in 0..n {
            let name = self
                .names
                .get(d.uvarint().map_err(corrupt)? as usize)
                .ok_or_else(|| corrupt("bad name id"))?;
            let value = self.symbol(d.uvarint().map_err(corrupt)?)?;
            pairs.push(Label::new(name, value));
        }
        let n = d.uvarint().map_err(corrupt)?;
        let mut chunks = Vec::with_capacity(d.capacity_for(n, 3));
        let (mut prev_max, mut prev_off) = (0i64, 0u64);
        for i in 0..n {
            let delta = d.varint().map_err(corrupt)?;
            let min_t = if i == 0 { self.base_t.wrapping_add(delta) } else { prev_max.wrapping_add(delta) };
            let max_t = min_t.wrapping_add(d.uvarint().map_err(corrupt)? as i64);
            let offset = prev_off.wrapping_add(d.varint().map_err(corrupt)? as u64);
            chunks.push(ChunkMeta { min_t, max_t, offset });
            (prev_max, prev_off) = (max_t, offset);
        }
        Ok((Labels::new(pairs), chunks))
    }

    fn postings_at(&self, at: usize) -> Result<Vec<u32>, BlockError> {
        let mut d = Decoder::at(&self.map, at);
        let n = d.uvarint().map_err(corrupt)?;
        let mut out = Vec::with_capacity(d.capacity_for(n, 1));
        let mut id = 0u64;
        for i in 0..n {
            // Ids are strictly increasing and name existing series; anything else is corrupt
            // (found by fuzzing: repeats came out as one series returned twice).
            let delta = d.uvarint().map_err(corrupt)?;
            id = match id.checked_add(delta) {
                Some(next) if (i == 0 || delta > 0) && next < self.n_series as u64 => next,
                _ => return Err(corrupt(format_args!("postings at {at}: bad series id"))),
            };
            out.push(id as u32);
        }
        Ok(out)
    }

    /// Label names, sorted.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.table.keys().map(String::as_str)
    }

    /// Values of `name`, sorted.
    pub(crate) fn values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.table.get(name).into_iter().flat_map(|v| v.iter().map(|(v, _)| v.as_str()))
    }

    /// Sorted ids of series whose `name` value satisfies `accept`.
    fn union_where(&self, name: &str, accept: impl Fn(&str) -> bool) -> Result<Vec<u32>, BlockError> {
        let Some(values) = self.table.get(name) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        let mut lists = 0;
        for (v, at) in values {
            if accept(v) {
                out.extend(self.postings_at(*at)?);
                lists += 1;
            }
        }
        if lists > 1 {
            out.sort_unstable();
            // A series has one value per name: lists of one name never share an id.
            if out.windows(2).any(|w| w[0] == w[1]) {
                return Err(corrupt(format_args!("a series is listed under two values of {name:?}")));
            }
        }
        Ok(out)
    }

    /// Sorted ids of the series whose labels satisfy every matcher (a missing label reads as
    /// `""`), with the same algebra as the head's postings.
    pub(crate) fn select(&self, matchers: &[Matcher]) -> Result<Vec<u32>, BlockError> {
        let mut positive: Vec<Vec<u32>> = Vec::new();
        let mut negative: Vec<&Matcher> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                negative.push(m);
            } else {
                let list = match m.op {
                    crate::model::MatchOp::Equal => match self.table.get(&m.name) {
                        Some(values) => match values.binary_search_by(|(v, _)| v.as_str().cmp(&m.value)) {
                            Ok(i) => self.postings_at(values[i].1)?,
                            Err(_) => Vec::new(),
                        },
                        None => Vec::new(),
                    },
                    _ => self.union_where(&m.name, |v| m.matches(v))?,
                };
                if list.is_empty() {
                    return Ok(Vec::new());
                }
                positive.push(list);
            }
        }
        positive.sort_by_key(Vec::len);
        let mut result: Vec<u32> = match positive.split_first() {
            None => (0..self.n_series as u32).collect(),
            Some((first, rest)) => {
                let mut acc = first.clone();
                for l in rest {
                    acc = intersect(&acc, l);
                }
                acc
            }
        };
        for m in negative {
            if result.is_empty() {
                break;
            }
            let rejected = self.union_where(&m.name, |v| !m.matches(v))?;
            if !rejected.is_empty() {
                result = subtract(&result, &rejected);
            }
        }
        Ok(result)
    }
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len().min(b.len())));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|&x| {
            while j < b.len() && b[j] < x {
                j += 1;
            }
            j >= b.len() || b[j] != x
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index file around `body` (the sections after the header), with a valid trailer.
    fn index_file(body: &[u8], toc: [u64; 8]) -> Result<Mmap, Box<dyn std::error::Error>> {
        let mut data = Vec::new();
        data.extend_from_slice(INDEX_MAGIC);
        data.extend_from_slice(&[INDEX_VERSION, 0, 0, 0]);
        data.extend_from_slice(body);
        for x in toc {
            data.extend_from_slice(&x.to_le_bytes());
        }
        let crc = crc32fast::hash(&data);
        data.extend_from_slice(&crc.to_le_bytes());
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("index");
        std::fs::write(&path, &data)?;
        Ok(super::super::map_file(&path)?)
    }

    #[test]
    fn huge_counts_on_short_input_are_errors() -> Result<(), Box<dyn std::error::Error>> {
        // A symbol table claiming u64::MAX symbols, and nothing after it but the trailer.
        let mut body = Vec::new();
        put_uvarint(&mut body, u64::MAX);
        let at = HEADER_LEN as u64;
        let r = IndexReader::new(index_file(&body, [at, at, at, at, at, 0, 0, 4])?);
        assert!(matches!(r, Err(BlockError::Corrupt(_))), "{:?}", r.err());
        // An empty symbol table and label table, then postings claiming 2^40 entries.
        let mut body = Vec::new();
        put_uvarint(&mut body, 0); // symbols
        put_uvarint(&mut body, 0); // label table
        let postings = HEADER_LEN + body.len();
        put_uvarint(&mut body, 1 << 40);
        let (s, t) = (at, at + 1);
        let r = IndexReader::new(index_file(&body, [s, s, s, s, t, 0, 0, 4])?)?;
        assert!(matches!(r.postings_at(postings), Err(BlockError::Corrupt(_))));
        Ok(())
    }

    use crate::model::MatchOp;

    /// Three series `up{job="a"|"b"|"c"}` without chunks; postings bytes from the TOC's offset:
    /// `up` [3: 0 +1 +1], job="a" [1: 0], job="b" [1: 1], job="c" [1: 2].
    fn index() -> (Vec<u8>, usize) {
        let l: Vec<Labels> =
            ["a", "b", "c"].iter().map(|j| Labels::from_pairs(&[("__name__", "up"), ("job", j)])).collect();
        let data = encode(&[(&l[0], &[]), (&l[1], &[]), (&l[2], &[])]);
        let toc = data.len() - TOC_LEN;
        let mut at = [0u8; 8];
        at.copy_from_slice(&data[toc + 24..toc + 32]);
        (data, u64::from_le_bytes(at) as usize)
    }

    /// A reader over `data` after the CRC is made to match (corruption a CRC cannot see).
    fn reader(mut data: Vec<u8>) -> IndexReader {
        let body = data.len() - 4;
        let crc = crc32fast::hash(&data[..body]).to_le_bytes();
        data[body..].copy_from_slice(&crc);
        let mut map = memmap2::MmapMut::map_anon(data.len()).unwrap();
        map.copy_from_slice(&data);
        IndexReader::new(map.make_read_only().unwrap()).unwrap()
    }

    fn select(r: &IndexReader, name: &str, op: MatchOp, value: &str) -> Result<Vec<u32>, BlockError> {
        r.select(&[Matcher::new(op, name, value).unwrap()])
    }

    #[test]
    fn postings_that_repeat_a_series_or_pass_the_last_are_corrupt_not_duplicates() {
        let (data, postings) = index();
        assert_eq!(&data[postings..postings + 10], &[3, 0, 1, 1, 1, 0, 1, 1, 1, 2]);
        let r = reader(data.clone());
        assert_eq!(select(&r, "__name__", MatchOp::Equal, "up").unwrap(), [0, 1, 2]);
        assert_eq!(select(&r, "job", MatchOp::Regex, ".+").unwrap(), [0, 1, 2]);

        // A repeated id inside one list.
        let mut bad = data.clone();
        bad[postings + 2] = 0;
        assert!(matches!(
            select(&reader(bad), "__name__", MatchOp::Equal, "up"),
            Err(BlockError::Corrupt(_))
        ));
        // An id past the last series.
        let mut bad = data.clone();
        bad[postings + 9] = 3;
        assert!(matches!(select(&reader(bad), "job", MatchOp::Equal, "c"), Err(BlockError::Corrupt(_))));
        // One series under two values of a name (found by fuzzing: returned twice).
        let mut bad = data;
        bad[postings + 7] = 0;
        let r = reader(bad);
        assert_eq!(select(&r, "job", MatchOp::Equal, "b").unwrap(), [0]);
        assert!(matches!(select(&r, "job", MatchOp::Regex, ".+"), Err(BlockError::Corrupt(_))));
    }
}
