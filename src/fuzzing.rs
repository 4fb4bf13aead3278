//! Entry points for the fuzz targets in `fuzz/` (hidden from the docs; not an API, changed at
//! will). Each takes raw bytes, drives one decoder the way its production caller does, and checks
//! what can be checked without a reference implementation: what decodes re-encodes to the same
//! data, counts agree with what was read, a fast path agrees with the slow one. A decode error is
//! an expected outcome (`Ok`); `Err` names a broken invariant, and the fuzz target panics on it.
//!
//! The unit tests below replay every committed corpus file (`fuzz/corpus/<target>/`) through the
//! same checks, so each crash the fuzzer once found stays pinned by `cargo test`.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use memmap2::{Mmap, MmapMut};

use crate::exposition::{Entry, TextFormat, TextParser, write_series_line};
use crate::federate::stream::StreamReader;
use crate::global::StreamState;
use crate::model::{Labels, MatchOp, Matcher, MetricType, Sample, is_valid_label_name, is_valid_metric_name};
use crate::promql::Engine;
use crate::storage::{Querier, Queryable};
use crate::tsdb::Head;
use crate::tsdb::block::querier::BlockQuerier;
use crate::tsdb::block::{Block, BlockCompaction, BlockMeta, BlockStats};
use crate::tsdb::chunkenc::{ChunkIter, ENCODING_PACKED, ENCODING_XOR, XorAppender, XorChunk, encode_packed};
use crate::tsdb::wal::{self, Frame, Record};

/// A broken invariant, described.
pub type Violation = String;

/// A remote-write request: the first byte picks the protocol (odd: 2.0), the rest is the
/// protobuf message, snappy-compressed here as a sender would. A refusal (400, 413) is an
/// expected outcome; what the fuzzer looks for is a panic or an allocation beyond the limits.
pub fn remote_write(data: &[u8]) -> Result<(), Violation> {
    let Some((&first, message)) = data.split_first() else { return Ok(()) };
    let Ok(body) = crate::remote::codec::compress(message) else { return Ok(()) };
    let _ = crate::remote::fuzz_write(first & 1 == 1, &body);
    Ok(())
}

/// Most series, chunks per series and samples a block check reads (inputs are small anyway;
/// this keeps one input's work bounded whatever its counts claim).
const MAX_SERIES: usize = 256;
const MAX_CHUNKS: usize = 64;
const MAX_SAMPLES: usize = 1 << 16;

fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn same_samples(a: &[Sample], b: &[Sample]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.t == y.t && x.v.to_bits() == y.v.to_bits())
}

// ---------------------------------------------------------------------------------------------
// Exposition

/// Parses a scraped body as the scraper does, with the fast path for known series tried before
/// every line, then writes every sample back with the writer and parses that again.
///
/// Checks: when `peek_known` answers for a line, the full parse of that line agrees (same
/// series text, value and timestamp); a parsed series has a name and a valid label set; what the
/// writer makes of a parsed sample parses back to the same sample.
pub fn exposition(body: &[u8], format: TextFormat) -> Result<(), Violation> {
    let mut parser = TextParser::with_format(body, format);
    // Series texts seen so far (the scrape cache's keys), newest last.
    let mut seen: Vec<(&[u8], MetricType)> = Vec::new();
    let mut expected: Vec<(Labels, f64, Option<i64>)> = Vec::new();
    let mut written = Vec::new();
    loop {
        let known = seen
            .iter()
            .rev()
            .take(8)
            .find_map(|&(raw, family)| parser.peek_known(raw, family).map(|k| (raw, k)));
        let Some(entry) = parser.next() else { break };
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                if let Some((raw, _)) = known {
                    return Err(format!(
                        "peek_known accepted a line of {:?} that the parser rejects: {e}",
                        String::from_utf8_lossy(raw)
                    ));
                }
                break;
            }
        };
        let Entry::Series(s) = entry else {
            if known.is_some() {
                return Err("peek_known accepted a line that is not a sample".into());
            }
            continue;
        };
        if let Some((raw, k)) = known
            && (raw != s.raw() || !same_value(k.value, s.value()) || k.timestamp != s.timestamp())
        {
            return Err(format!(
                "fast path read {:?} {} {:?}, the parser {:?} {} {:?}",
                String::from_utf8_lossy(raw),
                k.value,
                k.timestamp,
                String::from_utf8_lossy(s.raw()),
                s.value(),
                s.timestamp()
            ));
        }
        let name = s.name();
        if name.is_empty() {
            return Err(format!("series {:?} has an empty name", String::from_utf8_lossy(s.raw())));
        }
        let labels = s.to_labels();
        if labels.metric_name() != Some(&*name) {
            return Err(format!("labels {labels:?} lack the name {name:?}"));
        }
        let rest: Vec<(Cow<'_, str>, Cow<'_, str>)> = s.labels().collect();
        if rest.iter().any(|(n, _)| n.is_empty()) {
            return Err(format!("empty label name in {:?}", String::from_utf8_lossy(s.raw())));
        }
        seen.push((s.raw(), s.family_type()));
        // The writer keeps expfmt's quirk of writing a label name like `a:b` unquoted (see
        // `write_name`), which no text parser reads back: those samples are not round-tripped.
        let writable = labels.iter().all(|l| is_valid_label_name(l.name) || !is_valid_metric_name(l.name));
        if writable {
            write_series_line(
                &mut written,
                &name,
                labels.iter().filter(|l| l.name != "__name__").map(|l| (l.name, l.value)),
                s.value(),
                s.timestamp(),
            );
            expected.push((labels, s.value(), s.timestamp()));
        }
    }
    let mut again = TextParser::new(&written);
    for (labels, value, ts) in &expected {
        let line = match again.next() {
            Some(Ok(Entry::Series(s))) => s,
            other => {
                return Err(format!(
                    "writer output {:?} does not parse back as {labels:?}: {other:?}",
                    String::from_utf8_lossy(&written)
                ));
            }
        };
        if line.to_labels() != *labels || !same_value(line.value(), *value) || line.timestamp() != *ts {
            return Err(format!(
                "{labels:?} {value} {ts:?} was written as {:?} and read back as {:?} {} {:?}",
                String::from_utf8_lossy(line.raw()),
                line.to_labels(),
                line.value(),
                line.timestamp()
            ));
        }
    }
    match again.next() {
        None => Ok(()),
        Some(other) => Err(format!("writer output has more than was written: {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Topology

/// Loads a topology from text as `promtier check` does. Checks: a rejected file names at least
/// one problem; a loaded one has unique node names and listen addresses, and lists every
/// global's sources.
pub fn topology(text: &[u8]) -> Result<(), Violation> {
    let Ok(text) = std::str::from_utf8(text) else { return Ok(()) };
    match crate::topology::parse(text, Path::new("/fuzz/topology.yaml")) {
        Ok(t) => {
            for g in &t.globals {
                let _ = t.sources(g);
            }
            let mut names = std::collections::HashSet::new();
            let mut listens = std::collections::HashSet::new();
            for n in &t.nodes {
                if !names.insert(&n.name) {
                    return Err(format!("two nodes are named {:?}", n.name));
                }
                if !listens.insert(&n.listen) {
                    return Err(format!("two nodes listen on {} (one is {:?})", n.listen, n.name));
                }
            }
            Ok(())
        }
        Err(e) => {
            let message = e.to_string();
            if let crate::topology::TopologyError::Invalid { problems, .. } = &e
                && problems.is_empty()
            {
                return Err(format!("topology rejected without a problem: {message}"));
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PromQL

/// The fixed dataset PromQL queries run over: ten minutes at one sample a minute.
const PROMQL_DATA: &str = r#"
load 1m
  http_requests_total{job="api", instance="a", code="200"} 0+10x10
  http_requests_total{job="api", instance="b", code="500"} 0 5 10 2 4 _ 8 16 32 64 128
  node_temperature{instance="a", zone="x"} 21 22 NaN 23 Inf -Inf 24 stale 25 26 27
  node_temperature{instance="b", zone="y"} -3 -2.5 -1e300 1e300 0 0 0 1 2 3 4
  latency_seconds_bucket{le="0.1", job="api"} 0+1x10
  latency_seconds_bucket{le="1", job="api"} 0+3x10
  latency_seconds_bucket{le="+Inf", job="api"} 0+4x10
  latency_seconds_sum{job="api"} 0+2.5x10
  latency_seconds_count{job="api"} 0+4x10
  rpc_duration_seconds{quantile="0.5", service="db"} 0.1 0.2 0.1 0.3 0.2 0.1 0.1 0.4 0.2 0.1 0.3
  up{job="api", instance="a"} 1 1 1 0 0 1 1 1 1 1 1
  up{job="db", instance="c"} 1x10
  info_metric{version="1.2.3", instance="a"} 1x10
"#;

/// An engine and the storage queries run over, built once per fuzzing process.
pub struct PromqlFixture {
    head: Head,
    engine: Engine,
}

/// The PromQL dataset in a head, and an engine with small limits: a query gives up after 500 ms
/// or 50,000 samples held, so no input stalls the fuzzer.
pub fn promql_fixture() -> Result<PromqlFixture, Violation> {
    let head = Head::default();
    let commands = crate::promqltest::parse_script(PROMQL_DATA).map_err(|e| e.to_string())?;
    for cmd in commands {
        if let crate::promqltest::Command::Load { step, series, .. } = cmd {
            crate::promqltest::load(&head, step, &series).map_err(|e| e.to_string())?;
        }
    }
    let engine = Engine::new(crate::promql::EngineOptions {
        timeout: Duration::from_millis(500),
        max_samples: 50_000,
        ..crate::promql::EngineOptions::default()
    });
    Ok(PromqlFixture { head, engine })
}

/// Parses and evaluates `query` as an instant query and as a range query over the dataset.
/// Checks: no panic, no hang (the engine's limits end long queries with an error); a vector
/// result never holds two series with the same labels.
pub fn promql(fixture: &PromqlFixture, query: &[u8]) -> Result<(), Violation> {
    let Ok(query) = std::str::from_utf8(query) else { return Ok(()) };
    let storage: &dyn Queryable = &fixture.head;
    let check = |r: Result<crate::promql::QueryResult, crate::promql::QueryError>| match r {
        Ok(res) => distinct_series(&res.value),
        Err(_) => Ok(()),
    };
    check(fixture.engine.instant_query(storage, query, 300_000))?;
    check(fixture.engine.range_query(storage, query, 0, 600_000, 60_000))
}

fn distinct_series(value: &crate::promql::Value) -> Result<(), Violation> {
    use crate::promql::Value;
    let labels: Vec<&Labels> = match value {
        Value::Vector(v) => v.iter().map(|s| &*s.labels).collect(),
        Value::Matrix(m) => m.iter().map(|s| &*s.labels).collect(),
        _ => return Ok(()),
    };
    let mut sorted = labels.clone();
    sorted.sort();
    match sorted.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(format!("result holds {:?} twice", w[0])),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Fast link

/// Reads a `/federate/stream` page as a global does: the reader over every frame (labels and
/// samples decoded), then the same body ingested into a head through the global's per-source
/// cache, twice (the second time every series is known), with the replica label stripped.
///
/// Checks: a frame's samples never outnumber its chunk's count, and a frame without a decode
/// error yields all of them; ingesting stores no sample the reader did not decode, and refuses
/// a page the reader read whole only when a series in it has no metric name.
pub fn fast_link(body: &[u8]) -> Result<(), Violation> {
    let Ok(mut reader) = StreamReader::new(body) else { return Ok(()) };
    let mut decoded = 0u64;
    let mut complete = true;
    while let Some(frame) = reader.next_frame() {
        let Ok(frame) = frame else {
            complete = false;
            break;
        };
        // A series without a metric name decodes, but the global refuses the page it is in
        // (it cannot be stored or queried); that is not a decoder disagreement.
        match frame.labels() {
            Ok(l) if l.metric_name().is_some_and(|n| !n.is_empty()) => {}
            _ => complete = false,
        }
        let Ok(mut samples) = frame.samples() else {
            complete = false;
            continue;
        };
        let claimed = samples.remaining();
        let n = samples.by_ref().count();
        if n > claimed {
            return Err(format!("frame yielded {n} samples, its chunk claims {claimed}"));
        }
        if samples.error().is_none() && n != claimed {
            return Err(format!("frame yielded {n} of {claimed} samples without an error"));
        }
        if samples.error().is_some() {
            complete = false;
        }
        decoded += n as u64;
    }
    let head = Head::default();
    let mut state = StreamState::default();
    let source = crate::scrape::SampleContext::unlimited(
        crate::model::Labels::from_pairs(&[("instance", "fuzz:1"), ("job", "federate")]),
        true,
    );
    for _ in 0..2 {
        match state.ingest(&head, body, &["replica".to_string()], &source, None) {
            Ok((_, stats)) => {
                if stats.samples + stats.overlap > decoded {
                    return Err(format!(
                        "ingest counted {} samples and {} overlaps, the reader decoded {decoded}",
                        stats.samples, stats.overlap
                    ));
                }
            }
            Err(e) => {
                if complete {
                    return Err(format!("ingest failed on a page the reader read whole: {e}"));
                }
            }
        }
    }
    Ok(())
}

/// Builds a head from `data` — two bytes of page limits, then 11-byte samples: a series byte
/// (low bits: which of six series; high bit: the time step counts seconds, not milliseconds), the
/// step (`u16` LE) and the value's bits (`u64` LE) — and pulls it page by page over the fast link
/// as a global does, from the start until a page says there is no more.
///
/// Checks: every page moves the cursor forward or is the last; a page holds only samples after
/// its `since` and up to its cursor; no sample comes twice; together the pages hold exactly what
/// the head holds, values bit for bit.
pub fn fast_link_roundtrip(data: &[u8]) -> Result<(), Violation> {
    use crate::federate::stream::{PageLimits, PageRequest, Position, encode_page};
    use crate::model::Coverage;
    use crate::storage::Appendable;

    let Some((limits, records)) = data.split_first_chunk::<2>() else { return Ok(()) };
    let limits = u16::from_le_bytes(*limits);
    let limits = PageLimits {
        max_samples: 16 + usize::from(limits & 0x3ff),
        max_bytes: 1024 + usize::from(limits >> 10) * 512,
    };
    let series: Vec<Labels> =
        (0..6).map(|i| Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())])).collect();
    let head = Head::default();
    let mut app = head.appender();
    let mut last_t = [0i64; 6];
    for r in records.chunks_exact(11).take(4096) {
        let which = usize::from(r[0] & 0x7f) % series.len();
        let step = i64::from(u16::from_le_bytes([r[1], r[2]])) * if r[0] & 0x80 != 0 { 1000 } else { 1 };
        let mut bits = [0u8; 8];
        bits.copy_from_slice(&r[3..11]);
        let t = last_t[which] + step;
        // Refused samples (a repeated timestamp) are simply not in the head.
        if app.append(None, &series[which], t, f64::from_bits(u64::from_le_bytes(bits))).is_ok() {
            last_t[which] = t;
        }
    }
    app.commit().map_err(|e| format!("commit: {e}"))?;
    let max_t = head.max_time().unwrap_or(0);

    let all = vec![vec![matcher("__name__", MatchOp::Equal, "m")?]];
    let mut got: std::collections::BTreeMap<Labels, Vec<Sample>> = Default::default();
    let mut since = -1;
    for page in 0.. {
        if page == 100_000 {
            return Err("100,000 pages without reaching the end".into());
        }
        let req = PageRequest { since, now: max_t, limits, probe: false, v1: false };
        let pos = Position { frontier: max_t, epoch: 1, seq: 0, rewind_to: None };
        let mut out = Vec::new();
        let sent = encode_page(&head, &all, &Labels::empty(), &req, &pos, Coverage::default(), &mut out)
            .map_err(|e| format!("encode_page: {e}"))?;
        let mut reader = StreamReader::new(&out).map_err(|e| format!("own page: {e}"))?;
        if reader.header != sent {
            return Err(format!("header {:?} was sent as {sent:?}", reader.header));
        }
        while let Some(frame) = reader.next_frame() {
            let frame = frame.map_err(|e| format!("own frame: {e}"))?;
            let labels = frame.labels().map_err(|e| format!("own labels: {e}"))?;
            let mut it = frame.samples().map_err(|e| format!("own samples: {e}"))?;
            let v = got.entry(labels).or_default();
            for x in it.by_ref() {
                if x.t <= since || x.t > sent.next_cursor.max(since) {
                    return Err(format!(
                        "page from {since} to {} holds a sample at {}",
                        sent.next_cursor, x.t
                    ));
                }
                if v.last().is_some_and(|p| p.t >= x.t) {
                    return Err(format!("sample at {} sent twice or out of order", x.t));
                }
                v.push(x);
            }
            if let Some(e) = it.error() {
                return Err(format!("own chunk: {e}"));
            }
        }
        if sent.next_cursor <= since && sent.more {
            return Err(format!("page from {since} asks for more without moving the cursor"));
        }
        since = sent.next_cursor;
        if !sent.more {
            break;
        }
    }
    let querier = head.querier(i64::MIN, i64::MAX).map_err(|e| format!("querier: {e}"))?;
    let stored = querier.select(&all[0]).map_err(|e| format!("select: {e}"))?;
    let stored: std::collections::BTreeMap<Labels, Vec<Sample>> =
        stored.into_iter().map(|s| ((*s.labels).clone(), s.samples.collect())).collect();
    if stored.len() != got.len()
        || stored.iter().any(|(l, s)| !got.get(l).is_some_and(|g| same_samples(s, g)))
    {
        return Err(format!("the head holds {stored:?}, the pages carried {got:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// TSDB: chunks, WAL, blocks

/// Decodes a chunk of `encoding` and checks it: never more samples than the header counts,
/// all of them when no error is reported; a cleanly decoded chunk re-encodes (XOR, and packed
/// when it can) to a chunk that decodes to the same samples bit for bit; an XOR chunk resumed
/// for appending keeps its samples and takes one more.
pub fn chunk(encoding: u8, bytes: &[u8]) -> Result<(), Violation> {
    let Some(mut it) = ChunkIter::new(encoding, bytes) else { return Ok(()) };
    let claimed = match bytes {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => 0,
    };
    let samples: Vec<Sample> = it.by_ref().take(MAX_SAMPLES).collect();
    if samples.len() > claimed {
        return Err(format!("chunk yielded {} samples, its header claims {claimed}", samples.len()));
    }
    if it.error().is_some() {
        return Ok(());
    }
    if samples.len() != claimed {
        return Err(format!("chunk yielded {} of {claimed} samples without an error", samples.len()));
    }
    let mut xor = XorAppender::new();
    for s in &samples {
        xor.append(s.t, s.v).map_err(|e| format!("re-encoding {} samples: {e}", samples.len()))?;
    }
    let again: Vec<Sample> = xor.iter().collect();
    if !same_samples(&samples, &again) {
        return Err(format!("XOR re-encoding changed the samples: {samples:?} became {again:?}"));
    }
    if let Ok(packed) = encode_packed(&samples) {
        let mut it = ChunkIter::new(ENCODING_PACKED, &packed[..]).ok_or("no packed decoder")?;
        let again: Vec<Sample> = it.by_ref().collect();
        if it.error().is_some() || !same_samples(&samples, &again) {
            return Err(format!("packed re-encoding changed the samples: {samples:?} became {again:?}"));
        }
    }
    if encoding == ENCODING_XOR
        && let Ok(mut app) = XorChunk::from_bytes(bytes.to_vec()).and_then(XorChunk::appender)
    {
        let t = samples.last().map_or(0, |s| s.t.wrapping_add(15_000));
        if app.append(t, 42.5).is_ok() {
            let mut it = app.iter();
            let after: Vec<Sample> = it.by_ref().collect();
            let mut want = samples.clone();
            want.push(Sample { t, v: 42.5 });
            if it.error().is_some() || !same_samples(&want, &after) {
                return Err(format!("resumed chunk reads {after:?}, expected {want:?}"));
            }
        }
    }
    Ok(())
}

/// One record's canonical text (values as bit patterns), for comparing decodes.
fn record_key(r: &Record) -> String {
    match r {
        Record::Samples(s) => {
            format!("{:?}", s.iter().map(|s| (s.r, s.t, s.v.to_bits())).collect::<Vec<_>>())
        }
        other => format!("{other:?}"),
    }
}

/// Decodes one record payload whose CRC is assumed right (a buggy writer, or a collision) and
/// checks it: what decodes re-encodes and decodes to the same record; a chunk record's chunk
/// passes [`chunk`]. Returns the record for replay.
fn wal_record(payload: &[u8]) -> Result<Option<Record>, Violation> {
    let Ok(record) = wal::decode(payload) else { return Ok(None) };
    let mut buf = Vec::new();
    match &record {
        Record::Series(list) => wal::encode_series(&mut buf, list.iter().map(|(r, l)| (*r, l))),
        Record::Samples(s) => wal::encode_samples(&mut buf, s.iter().copied()),
        Record::Chunk { r, encoding, bytes } => {
            chunk(*encoding, bytes)?;
            wal::encode_chunk(&mut buf, *r, *encoding, bytes);
        }
    }
    let Frame::Ok { payload: again, .. } = wal::read_frame(&buf) else {
        return Err("a re-encoded record does not frame".into());
    };
    let decoded = wal::decode(again).map_err(|e| format!("a re-encoded record does not decode: {e}"))?;
    if record_key(&record) != record_key(&decoded) {
        return Err(format!("record changed on re-encoding: {record:?} became {decoded:?}"));
    }
    Ok(Some(record))
}

/// Reads a WAL segment as replay does — frames until the first bad one, records decoded and
/// applied to a head — and also decodes the whole input as one record payload (so the fuzzer
/// reaches the record decoder without having to forge CRCs). Checks: frames stay inside the
/// data; records round-trip (see `wal_record`).
pub fn wal_segment(data: &[u8]) -> Result<(), Violation> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        match wal::read_frame(&data[at..]) {
            Frame::Ok { payload, len } => {
                if len <= payload.len() || at + len > data.len() {
                    return Err(format!("frame at {at} of length {len} leaves the data"));
                }
                records.extend(wal_record(payload)?);
                at += len;
            }
            Frame::Bad(_) => break,
        }
    }
    records.extend(wal_record(data)?);
    let head = Head::default();
    let mut refs = std::collections::HashMap::new();
    for record in records {
        match record {
            Record::Series(list) => {
                for (r, labels) in list {
                    refs.insert(r, head.replay_series(r, &labels));
                }
            }
            Record::Samples(samples) => {
                head.replay_samples(samples.iter().filter_map(|s| refs.get(&s.r).map(|m| (&**m, s.t, s.v))));
            }
            Record::Chunk { r, encoding, bytes } => {
                if let (Some(m), Some(it)) = (refs.get(&r), ChunkIter::new(encoding, &bytes[..])) {
                    head.replay_samples(it.take(MAX_SAMPLES).map(|x| (&**m, x.t, x.v)));
                }
            }
        }
    }
    Ok(())
}

/// Read-only memory holding `bytes`, as the block reader maps its files.
fn map_bytes(bytes: &[u8]) -> Result<Mmap, Violation> {
    let mut map = MmapMut::map_anon(bytes.len().max(1)).map_err(|e| format!("anonymous map: {e}"))?;
    map[..bytes.len()].copy_from_slice(bytes);
    map.make_read_only().map_err(|e| format!("anonymous map: {e}"))
}

/// Opens a block over `index` and `chunks` as the database does, then reads every series and
/// chunk (unchecked as queries read them, and CRC-checked as compaction does) and queries it
/// through the block querier by each label pair, by regex and by negative matchers. With
/// `fix_index_crc` the index's trailing CRC is recomputed first, so the fuzzer reaches the
/// structures behind it (the CRC alone turns any other corruption into an error).
///
/// Checks: selections are sorted ids of existing series; chunk bytes stay inside the file and
/// pass [`chunk`].
pub fn block(index: &[u8], chunks: &[u8], fix_index_crc: bool) -> Result<(), Violation> {
    let mut index = index.to_vec();
    if fix_index_crc && index.len() >= 4 {
        let body = index.len() - 4;
        let crc = crc32fast::hash(&index[..body]).to_le_bytes();
        index[body..].copy_from_slice(&crc);
    }
    let (index, chunks_map) = (map_bytes(&index)?, map_bytes(chunks)?);
    let meta = BlockMeta {
        ulid: "fuzz".into(),
        min_time: i64::MIN,
        max_time: i64::MAX,
        stats: BlockStats::default(),
        compaction: BlockCompaction::default(),
        version: 1,
        downsample: None,
    };
    let Ok(block) = Block::from_maps(Path::new("fuzz"), meta, index, chunks_map, 0) else { return Ok(()) };
    let n = block.index().num_series();
    for id in 0..n.min(MAX_SERIES) {
        let Ok((_, metas)) = block.index().series(id as u32) else { continue };
        for c in metas.iter().take(MAX_CHUNKS) {
            if let Ok((encoding, bytes)) = block.chunk(c, false) {
                chunk(encoding, bytes.as_ref())?;
            }
            let _ = block.chunk(c, true);
        }
    }
    // Regexes are compiled once per process (compiling one costs more than reading a block).
    static REGEXES: std::sync::OnceLock<Result<[Matcher; 3], Violation>> = std::sync::OnceLock::new();
    let regexes = REGEXES.get_or_init(|| {
        Ok([
            matcher("", MatchOp::Regex, ".+")?,
            matcher("", MatchOp::NotRegex, "a.*")?,
            matcher("", MatchOp::Regex, ".*")?,
        ])
    });
    let [some, not_a, any] = regexes.as_ref().map_err(Clone::clone)?;
    let named = |m: &Matcher, name: &str| {
        let mut m = m.clone();
        m.name = name.to_string();
        m
    };
    let mut selections: Vec<Vec<Matcher>> = Vec::new();
    let names: Vec<String> = block.index().names().take(4).map(str::to_string).collect();
    for name in &names {
        let values: Vec<String> = block.index().values(name).take(4).map(str::to_string).collect();
        for v in &values {
            selections.push(vec![Matcher::equal(name, v)]);
            selections.push(vec![Matcher::equal(name, v), matcher(name, MatchOp::NotEqual, "")?]);
        }
        selections.push(vec![named(some, name)]);
        selections.push(vec![matcher(name, MatchOp::NotEqual, "")?, named(not_a, name)]);
    }
    selections.push(vec![named(any, "__name__")]);
    let block = Arc::new(block);
    let querier = BlockQuerier::new(Arc::clone(&block), i64::MIN, i64::MAX);
    for m in selections.iter().take(64) {
        if let Ok(ids) = block.index().select(m) {
            if ids.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("selection {m:?} is not sorted: {ids:?}"));
            }
            if let Some(id) = ids.iter().find(|&&id| id as usize >= n) {
                return Err(format!("selection {m:?} names series {id} of {n}"));
            }
        }
        if let Ok(series) = querier.select(m) {
            for s in series.into_iter().take(MAX_SERIES) {
                let _ = s.samples.take(MAX_SAMPLES).count();
            }
        }
        let _ = querier.latest(m);
        let _ = querier.label_names(m);
    }
    Ok(())
}

fn matcher(name: &str, op: MatchOp, value: &str) -> Result<Matcher, Violation> {
    Matcher::new(op, name, value).map_err(|e| format!("matcher {name}{op:?}{value:?}: {e}"))
}

/// Splits a `block` target input: a flags byte (bit 0: recompute the index CRC), the index
/// length (`u32` LE), the index, then the chunk file.
pub fn split_block_input(data: &[u8]) -> (&[u8], &[u8], bool) {
    let Some((&flags, rest)) = data.split_first() else { return (&[], &[], false) };
    let Some((len, rest)) = rest.split_first_chunk::<4>() else { return (rest, &[], false) };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (index, chunks) = rest.split_at(len);
    (index, chunks, flags & 1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `fuzz/corpus/<target>/`.
    fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.unwrap().path();
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
        assert!(!out.is_empty(), "empty corpus {}", dir.display());
        out
    }

    fn replay(target: &str, check: impl Fn(&[u8]) -> Result<(), Violation>) {
        for (name, data) in corpus(target) {
            if let Err(v) = check(&data) {
                panic!("{name}: {v}");
            }
        }
    }

    #[test]
    fn corpus_exposition_text() {
        replay("exposition_text", |d| exposition(d, TextFormat::Prometheus));
    }

    #[test]
    fn corpus_exposition_openmetrics() {
        replay("exposition_openmetrics", |d| exposition(d, TextFormat::OpenMetrics));
    }

    #[test]
    fn corpus_topology() {
        replay("topology", topology);
    }

    #[test]
    fn corpus_promql() {
        let fixture = promql_fixture().unwrap();
        replay("promql", |d| promql(&fixture, d));
    }

    #[test]
    fn corpus_fast_link() {
        replay("fast_link", fast_link);
    }

    #[test]
    fn corpus_fast_link_roundtrip() {
        replay("fast_link_roundtrip", fast_link_roundtrip);
    }

    #[test]
    fn corpus_wal() {
        replay("wal", wal_segment);
    }

    #[test]
    fn corpus_remote_write() {
        replay("remote_write", remote_write);
        // The seeds mean what their names say: the good ones store their samples through the
        // receiver, the bad reference is refused.
        let seed = |name: &str| {
            let data = std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/remote_write").join(name),
            )
            .unwrap();
            let body = crate::remote::codec::compress(&data[1..]).unwrap();
            crate::remote::fuzz_write(data[0] & 1 == 1, &body)
        };
        assert_eq!(seed("seed-v1-two-series"), Ok(3));
        assert_eq!(seed("seed-v2-one-series"), Ok(2));
        assert!(seed("seed-v2-bad-ref").is_err());
    }

    #[test]
    fn corpus_chunk() {
        replay("chunk", |d| match d.split_first() {
            Some((&encoding, bytes)) => chunk(encoding, bytes),
            None => Ok(()),
        });
    }

    #[test]
    fn corpus_block() {
        replay("block", |d| {
            let (index, chunks, fix) = split_block_input(d);
            block(index, chunks, fix)
        });
    }

    /// The binary seeds (fast-link pages, WAL segments, blocks, chunks), made by our own writers.
    /// `cargo test --lib fuzzing::tests::write_binary_seeds -- --ignored` rewrites them into the
    /// corpus; `binary_seeds_are_committed` checks the committed ones are current.
    fn binary_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
        use crate::federate::stream::{PageLimits, PageRequest, Position, encode_page};
        use crate::model::{Coverage, STALE_NAN, parse_selector};
        use crate::storage::Appendable;
        use crate::tsdb::block::index::{self, ChunkMeta};
        use crate::tsdb::wal::RefSample;

        let mut out = Vec::new();
        // Chunks: XOR of regular, jittered, constant and special values; packed forms.
        let series: Vec<Vec<Sample>> = vec![
            vec![],
            vec![Sample { t: 1_000, v: 1.0 }],
            (0..120).map(|i| Sample { t: i * 15_000, v: i as f64 }).collect(),
            (0..50).map(|i| Sample { t: i * 15_000 + (i * 7919) % 13, v: (i as f64).sin() * 1e3 }).collect(),
            vec![
                Sample { t: -5, v: f64::NAN },
                Sample { t: 0, v: STALE_NAN },
                Sample { t: 1, v: f64::INFINITY },
                Sample { t: i64::MAX, v: -0.0 },
            ],
            (0..30).map(|i| Sample { t: i * 60_000, v: 7.0 }).collect(),
        ];
        let mut xor_chunks = Vec::new();
        for (i, samples) in series.iter().enumerate() {
            let mut app = XorAppender::new();
            for s in samples {
                app.append(s.t, s.v).unwrap();
            }
            let bytes = app.bytes().to_vec();
            out.push(("chunk", format!("seed-xor-{i}"), [&[ENCODING_XOR][..], &bytes].concat()));
            if let Ok(p) = encode_packed(samples) {
                out.push(("chunk", format!("seed-packed-{i}"), [&[ENCODING_PACKED][..], &p].concat()));
            }
            xor_chunks.push(bytes);
        }

        // WAL: series, samples and a checkpoint chunk record; then the same with a torn tail.
        let up = Labels::from_pairs(&[("__name__", "up"), ("job", "api"), ("instance", "a:9100")]);
        let temp = Labels::from_pairs(&[("__name__", "node_temp"), ("zone", "x")]);
        let mut seg = Vec::new();
        wal::encode_series(&mut seg, [(1, &up), (2, &temp)]);
        let samples: Vec<RefSample> = (0..20)
            .map(|i| RefSample { r: 1 + (i % 2), t: 1_000 + i as i64 * 7_500, v: i as f64 * 0.5 })
            .collect();
        wal::encode_samples(&mut seg, samples);
        wal::encode_samples(&mut seg, [RefSample { r: 2, t: 200_000, v: STALE_NAN }]);
        wal::encode_chunk(&mut seg, 1, ENCODING_XOR, &xor_chunks[2]);
        out.push(("wal", "seed-segment".into(), seg.clone()));
        let torn = seg.len() - 5;
        out.push(("wal", "seed-torn-tail".into(), seg[..torn].to_vec()));
        let mut payload = Vec::new();
        wal::encode_series(&mut payload, [(7, &up)]);
        out.push(("wal", "seed-bare-series-payload".into(), payload[8..].to_vec()));

        // Blocks: an index over three series and a chunk file holding their chunks.
        let mut chunk_file = b"PTCK\x01\0\0\0".to_vec();
        let mut entry = |encoding: u8, bytes: &[u8]| {
            let at = chunk_file.len() as u64;
            crate::tsdb::encoding::put_uvarint(&mut chunk_file, bytes.len() as u64);
            let start = chunk_file.len();
            chunk_file.push(encoding);
            chunk_file.extend_from_slice(bytes);
            let crc = crc32fast::hash(&chunk_file[start..]).to_le_bytes();
            chunk_file.extend_from_slice(&crc);
            at
        };
        let a = entry(ENCODING_XOR, &xor_chunks[2]);
        let b = entry(ENCODING_XOR, &xor_chunks[3]);
        let c = entry(ENCODING_PACKED, &encode_packed(&series[5]).unwrap());
        let d = entry(ENCODING_XOR, &xor_chunks[1]);
        let l1 = Labels::from_pairs(&[("__name__", "node_temp"), ("zone", "x")]);
        let l2 = Labels::from_pairs(&[("__name__", "up"), ("instance", "a:9100"), ("job", "api")]);
        let l3 = Labels::from_pairs(&[("__name__", "up"), ("instance", "b:9100"), ("job", "db")]);
        let m = |min_t, max_t, offset| ChunkMeta { min_t, max_t, offset };
        let c1 = [m(0, 1_785_000, a)];
        let c2 = [m(0, 735_000, b), m(735_001, 1_740_000, c)];
        let c3 = [m(1_000, 1_000, d)];
        let idx = index::encode(&[(&l1, &c1[..]), (&l2, &c2[..]), (&l3, &c3[..])]);
        let block_input = |flags: u8, idx: &[u8]| {
            [&[flags][..], &(idx.len() as u32).to_le_bytes(), idx, &chunk_file].concat()
        };
        out.push(("block", "seed-three-series".into(), block_input(0, &idx)));
        out.push(("block", "seed-three-series-fixcrc".into(), block_input(1, &idx)));
        let empty = index::encode(&[]);
        out.push(("block", "seed-empty".into(), block_input(1, &empty)));

        // Fast-link round trips: page limits, then (series, step, value) records.
        let record = |series: u8, step: u16, v: f64| -> Vec<u8> {
            [&[series][..], &step.to_le_bytes(), &v.to_bits().to_le_bytes()].concat()
        };
        let regular: Vec<u8> = (0..300u16).flat_map(|i| record((i % 3) as u8, 5_000, f64::from(i))).collect();
        out.push(("fast_link_roundtrip", "seed-regular".into(), [&[0u8, 0][..], &regular].concat()));
        let sparse: Vec<u8> = (0..64u16)
            .flat_map(|i| {
                record(0x80 | (i % 6) as u8, 1 + i * 97, if i % 9 == 0 { STALE_NAN } else { -f64::from(i) })
            })
            .collect();
        out.push((
            "fast_link_roundtrip",
            "seed-sparse-stale".into(),
            [&[0xff_u8, 0xff][..], &sparse].concat(),
        ));
        let burst: Vec<u8> =
            (0..200u16).flat_map(|i| record((i % 6) as u8, u16::from(i % 7 == 0), 1.5)).collect();
        out.push(("fast_link_roundtrip", "seed-same-millisecond".into(), [&[1u8, 0][..], &burst].concat()));

        // Fast-link pages, version 2 and 1, from a head.
        let head = Head::default();
        let mut app = head.appender();
        let job = Labels::from_pairs(&[("__name__", "up"), ("job", "api"), ("replica", "a")]);
        let other = Labels::from_pairs(&[("__name__", "requests_total"), ("job", "api"), ("code", "200")]);
        for i in 0..40i64 {
            app.append(None, &job, i * 15_000, 1.0).unwrap();
            app.append(None, &other, i * 15_000 + 3, (i * i) as f64).unwrap();
        }
        app.append(None, &job, 40 * 15_000, STALE_NAN).unwrap();
        app.commit().unwrap();
        let all = vec![parse_selector("{job=~\".+\"}").unwrap()];
        let pos = Position { frontier: i64::MAX, epoch: 3, seq: 9, rewind_to: None };
        let coverage = Coverage { targets_up: 2, targets_total: 3, series: 2 };
        for (name, since, v1, probe) in [
            ("seed-v2", -1, false, false),
            ("seed-v2-since", 300_000, false, false),
            ("seed-v1", -1, true, false),
            ("seed-probe", 0, false, true),
        ] {
            let req = PageRequest {
                since,
                now: 10_000_000,
                limits: PageLimits { max_samples: 1 << 20, max_bytes: 1 << 20 },
                probe,
                v1,
            };
            let mut page = Vec::new();
            encode_page(&head, &all, &Labels::from_pairs(&[("zone", "z")]), &req, &pos, coverage, &mut page)
                .unwrap();
            out.push(("fast_link", name.into(), page));
        }
        out
    }

    fn seed_path(target: &str, name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target).join(name)
    }

    #[test]
    #[ignore = "writes the binary seeds into fuzz/corpus"]
    fn write_binary_seeds() {
        for (target, name, data) in binary_seeds() {
            let path = seed_path(target, &name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, data).unwrap();
        }
    }

    #[test]
    fn binary_seeds_are_committed() {
        for (target, name, data) in binary_seeds() {
            let path = seed_path(target, &name);
            let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(committed == data, "{} is stale: rerun write_binary_seeds", path.display());
        }
    }
}
