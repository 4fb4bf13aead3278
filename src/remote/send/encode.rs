//! The bodies a queue sends, before compression: Remote-Write 1.0 (`prometheus.WriteRequest`,
//! labels spelled out per series; metric metadata in requests of its own) and Remote-Write 2.0
//! (`io.prometheus.write.v2.Request`: every label name and value, help and unit text once in the
//! request's symbol table — the empty string first — series referring to it by index, and each
//! series carrying its family's type, help and unit when the node knows them).

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};

use crate::model::{METRIC_NAME, MetricMetadata, family_of};
use crate::remote::proto::{self, metric_type_to_proto, v2};

/// One series of a request: its labels as sent (external labels added, write relabeling done)
/// and some of its samples, in time order.
#[derive(Debug, Clone)]
pub(super) struct SendSeries {
    pub(super) labels: Arc<[proto::Label]>,
    pub(super) samples: Vec<proto::Sample>,
}

/// The family metadata a node knows, by family name, as the queues look it up.
pub(super) type MetadataIndex = HashMap<String, MetricMetadata>;

/// A Remote-Write 1.0 body: the series with their labels and samples, no metadata. Written
/// straight into one buffer (the bytes prost would write for the same `WriteRequest`, field by
/// field, defaults left out), without copying each series' label strings into a message first:
/// in a catch-up every request carries one sample for each of thousands of series, so the label
/// copies were most of the sender's work.
pub(super) fn v1(series: &[SendSeries]) -> Vec<u8> {
    let mut out = Vec::with_capacity(series.iter().map(series_len).map(|n| n + 6).sum());
    for s in series {
        // WriteRequest.timeseries = 1 (length-delimited)
        out.push(0x0a);
        encode_varint(series_len(s) as u64, &mut out);
        for l in s.labels.iter() {
            // TimeSeries.labels = 1
            out.push(0x0a);
            encode_varint(label_len(l) as u64, &mut out);
            put_string(1, &l.name, &mut out);
            put_string(2, &l.value, &mut out);
        }
        for x in &s.samples {
            // TimeSeries.samples = 2
            out.push(0x12);
            encode_varint(sample_len(x) as u64, &mut out);
            if x.value.to_bits() != 0 {
                // Sample.value = 1 (fixed64)
                out.push(0x09);
                out.extend_from_slice(&x.value.to_le_bytes());
            }
            if x.timestamp != 0 {
                // Sample.timestamp = 2 (varint)
                out.push(0x10);
                encode_varint(x.timestamp as u64, &mut out);
            }
        }
    }
    out
}

/// Bytes of a length-delimited field: its key, its length and the payload.
fn delimited_len(payload: usize) -> usize {
    1 + encoded_len_varint(payload as u64) + payload
}

fn string_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { delimited_len(s.len()) }
}

fn label_len(l: &proto::Label) -> usize {
    string_len(&l.name) + string_len(&l.value)
}

fn sample_len(x: &proto::Sample) -> usize {
    (if x.value.to_bits() != 0 { 9 } else { 0 })
        + (if x.timestamp != 0 { 1 + encoded_len_varint(x.timestamp as u64) } else { 0 })
}

/// The encoded length of one `TimeSeries` message.
fn series_len(s: &SendSeries) -> usize {
    s.labels.iter().map(|l| delimited_len(label_len(l))).sum::<usize>()
        + s.samples.iter().map(|x| delimited_len(sample_len(x))).sum::<usize>()
}

/// A string field (`tag` 1 or 2) unless empty, as proto3 leaves defaults out.
fn put_string(tag: u8, s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() {
        out.push((tag << 3) | 2);
        encode_varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }
}

/// A Remote-Write 1.0 body carrying only metric metadata, as Prometheus sends it (`metadata_config`).
pub(super) fn v1_metadata(entries: &[(String, MetricMetadata)]) -> Vec<u8> {
    let metadata = entries
        .iter()
        .map(|(family, m)| proto::MetricMetadata {
            r#type: metric_type_to_proto(m.kind),
            metric_family_name: family.clone(),
            help: m.help.clone(),
            unit: m.unit.clone(),
        })
        .collect();
    proto::WriteRequest { timeseries: Vec::new(), metadata }.encode_to_vec()
}

/// The strings of one 2.0 request, each once; index 0 is the empty string, as the protocol
/// requires (so an absent help or unit is reference 0).
struct Symbols<'a> {
    list: Vec<&'a str>,
    index: HashMap<&'a str, u32>,
}

impl<'a> Symbols<'a> {
    fn new() -> Symbols<'a> {
        Symbols { list: vec![""], index: HashMap::from([("", 0)]) }
    }

    fn intern(&mut self, s: &'a str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s);
        self.index.insert(s, i);
        i
    }
}

/// A Remote-Write 2.0 body, and how many of its series carry metadata. A series whose family is
/// in `metadata` (see [`family_of`]) gets its type, help and unit; the others none (type
/// unspecified), as Prometheus sends series it has no metadata for.
pub(super) fn v2(series: &[SendSeries], metadata: &MetadataIndex) -> (Vec<u8>, u64) {
    let mut symbols = Symbols::new();
    let mut with_metadata = 0;
    let timeseries = series
        .iter()
        .map(|s| {
            let mut labels_refs = Vec::with_capacity(s.labels.len() * 2);
            for l in s.labels.iter() {
                labels_refs.push(symbols.intern(&l.name));
                labels_refs.push(symbols.intern(&l.value));
            }
            let name = s.labels.iter().find(|l| l.name == METRIC_NAME).map_or("", |l| l.value.as_str());
            let metadata = family_of(metadata, name).map(|(_, m)| {
                with_metadata += 1;
                v2::Metadata {
                    r#type: metric_type_to_proto(m.kind),
                    help_ref: symbols.intern(&m.help),
                    unit_ref: symbols.intern(&m.unit),
                }
            });
            v2::TimeSeries {
                labels_refs,
                samples: s
                    .samples
                    .iter()
                    .map(|x| v2::Sample { value: x.value, timestamp: x.timestamp, start_timestamp: 0 })
                    .collect(),
                metadata,
                ..Default::default()
            }
        })
        .collect();
    let req = v2::Request { symbols: symbols.list.into_iter().map(String::from).collect(), timeseries };
    (req.encode_to_vec(), with_metadata)
}

/// The index the 2.0 encoder looks families up in, from `(family, metadata)` pairs as a
/// metadata source gives them (repeated per target): the first pair of a family wins.
pub(super) fn index(pairs: Vec<(String, MetricMetadata)>) -> MetadataIndex {
    let mut out = MetadataIndex::with_capacity(pairs.len());
    for (family, m) in pairs {
        out.entry(family).or_insert(m);
    }
    out
}

/// Distinct `(family, metadata)` pairs in first-seen order, as Prometheus's metadata watcher
/// collects them before sending.
pub(super) fn distinct(pairs: Vec<(String, MetricMetadata)>) -> Vec<(String, MetricMetadata)> {
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    pairs.into_iter().filter(|p| seen.insert(p.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricType;

    fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> SendSeries {
        SendSeries {
            labels: pairs
                .iter()
                .map(|(n, v)| proto::Label { name: (*n).into(), value: (*v).into() })
                .collect(),
            samples: samples.iter().map(|&(timestamp, value)| proto::Sample { value, timestamp }).collect(),
        }
    }

    fn meta(kind: MetricType, help: &str, unit: &str) -> MetricMetadata {
        MetricMetadata { kind, help: help.into(), unit: unit.into() }
    }

    #[test]
    fn v2_interns_every_string_once_with_the_empty_string_first() {
        let batch = [
            series(&[("__name__", "up"), ("job", "a")], &[(1000, 1.0), (2000, 0.0)]),
            series(&[("__name__", "up"), ("job", "b")], &[(1000, 1.0)]),
            series(&[("__name__", "latency_bucket"), ("job", "a"), ("le", "0.5")], &[(1000, 3.0)]),
            series(&[("__name__", "no_metadata"), ("job", "a")], &[(1000, 7.0)]),
        ];
        let md = index(vec![
            ("up".into(), meta(MetricType::Gauge, "Whether the target is up.", "")),
            ("up".into(), meta(MetricType::Counter, "a second target's idea, not used", "")),
            ("latency".into(), meta(MetricType::Histogram, "Request latency.", "seconds")),
        ]);
        let (body, with_metadata) = v2(&batch, &md);
        assert_eq!(with_metadata, 3);
        let req = v2::Request::decode(body.as_slice()).unwrap();
        assert_eq!(req.symbols[0], "");
        let mut sorted = req.symbols.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), req.symbols.len(), "no symbol twice: {:?}", req.symbols);
        for s in ["__name__", "up", "job", "a", "b", "latency_bucket", "le", "0.5", "seconds"] {
            assert!(req.symbols.iter().any(|x| x == s), "{s} in {:?}", req.symbols);
        }
        let sym = |r: u32| req.symbols[r as usize].as_str();
        let labels = |ts: &v2::TimeSeries| -> Vec<(&str, &str)> {
            ts.labels_refs.chunks_exact(2).map(|p| (sym(p[0]), sym(p[1]))).collect()
        };
        assert_eq!(labels(&req.timeseries[1]), vec![("__name__", "up"), ("job", "b")]);
        assert_eq!(
            req.timeseries[0].samples.iter().map(|s| (s.timestamp, s.value)).collect::<Vec<_>>(),
            vec![(1000, 1.0), (2000, 0.0)]
        );
        let m = req.timeseries[0].metadata.unwrap();
        assert_eq!((m.r#type, sym(m.help_ref), m.unit_ref), (2, "Whether the target is up.", 0));
        let m = req.timeseries[2].metadata.unwrap();
        assert_eq!((m.r#type, sym(m.help_ref), sym(m.unit_ref)), (3, "Request latency.", "seconds"));
        assert_eq!(req.timeseries[3].metadata, None);
    }

    /// What the sender encodes, the node's own receiver decodes: the same series and samples
    /// stored, the metadata filed under each series' family.
    #[test]
    fn the_receiver_stores_what_the_v2_encoder_sends() {
        use crate::model::{Matcher, Sample};
        use crate::remote::codec::WriteProto;
        use crate::remote::metadata::ReceivedMetadata;
        use crate::remote::write::Receiver;
        use crate::storage::Queryable;

        const NOW: i64 = 1_700_000_000_000;
        let head = Arc::new(crate::tsdb::Head::default());
        let received = Arc::new(ReceivedMetadata::default());
        let rx = Receiver::new(
            head.clone(),
            crate::remote::WriteLimits::default(),
            Arc::new(|| NOW),
            received.clone(),
            &crate::metrics::Registry::new(),
        );
        let batch = [
            series(
                &[("__name__", "up"), ("job", "a"), ("tier", "global")],
                &[(NOW - 2000, 1.0), (NOW - 1000, 0.0)],
            ),
            series(&[("__name__", "latency_bucket"), ("job", "a"), ("le", "+Inf")], &[(NOW - 1000, 4.0)]),
            series(&[("__name__", "latency_sum"), ("job", "a")], &[(NOW - 1000, 0.25)]),
            series(
                &[("__name__", "plain"), ("job", "b")],
                &[(NOW, f64::from_bits(crate::model::STALE_NAN_BITS))],
            ),
        ];
        let md = index(vec![
            ("up".into(), meta(MetricType::Gauge, "Whether the target is up.", "")),
            ("latency".into(), meta(MetricType::Histogram, "Request latency.", "seconds")),
        ]);
        let body = crate::remote::codec::compress(&v2(&batch, &md).0).unwrap();
        rx.ingest(WriteProto::V2, &body).expect("accepted");

        let q = head.querier(i64::MIN, i64::MAX).unwrap();
        type Stored = Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>;
        let mut got: Stored = q
            .select(&[Matcher::equal("job", "a")])
            .unwrap()
            .into_iter()
            .chain(q.select(&[Matcher::equal("job", "b")]).unwrap())
            .map(|s| {
                let labels = s.labels.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect();
                (labels, s.samples.map(|Sample { t, v }| (t, v.to_bits())).collect())
            })
            .collect();
        got.sort();
        let mut want: Stored = batch
            .iter()
            .map(|s| {
                let mut labels: Vec<(String, String)> =
                    s.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
                labels.sort();
                (labels, s.samples.iter().map(|x| (x.timestamp, x.value.to_bits())).collect())
            })
            .collect();
        want.sort();
        assert_eq!(got, want);

        let mut kept = received.list();
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            kept,
            vec![
                ("latency".to_string(), meta(MetricType::Histogram, "Request latency.", "seconds")),
                ("up".to_string(), meta(MetricType::Gauge, "Whether the target is up.", "")),
            ]
        );
    }

    #[test]
    fn v1_writes_the_bytes_prost_writes() {
        let all = vec![
            series(&[("__name__", "up"), ("job", "a"), ("empty", "")], &[(1, 1.0), (0, 0.0), (-5, -0.0)]),
            series(&[("__name__", "x")], &[(i64::MAX, f64::NAN), (1_700_000_000_000, 1e300)]),
            series(&[], &[]),
        ];
        let want = proto::WriteRequest {
            timeseries: all
                .iter()
                .map(|s| proto::TimeSeries {
                    labels: s.labels.to_vec(),
                    samples: s.samples.clone(),
                    ..Default::default()
                })
                .collect(),
            metadata: Vec::new(),
        };
        let got = v1(&all);
        let back = proto::WriteRequest::decode(got.as_slice()).unwrap();
        assert_eq!(back.timeseries.len(), 3);
        assert_eq!(back.timeseries[0].labels, want.timeseries[0].labels);
        assert_eq!(back.timeseries[1].samples[1], want.timeseries[1].samples[1]);
        assert!(back.timeseries[1].samples[0].value.is_nan());
        assert_eq!(back.timeseries[0].samples[2].value.to_bits(), (-0.0f64).to_bits(), "-0.0 kept");
        // Byte for byte what prost writes, where prost can say the same (it drops -0.0's sign).
        let plain = &all[..2];
        let mut w = want.clone();
        w.timeseries.truncate(2);
        w.timeseries[0].samples.truncate(2);
        let mut p = plain.to_vec();
        p[0].samples.truncate(2);
        assert_eq!(v1(&p), w.encode_to_vec());
    }

    #[test]
    fn v1_carries_labels_and_metadata_requests_carry_only_metadata() {
        let body = v1(&[series(&[("__name__", "up")], &[(5, 1.0)])]);
        let req = proto::WriteRequest::decode(body.as_slice()).unwrap();
        assert_eq!(req.timeseries[0].labels[0].value, "up");
        assert!(req.metadata.is_empty());
        let pairs = vec![
            ("up".to_string(), meta(MetricType::Gauge, "Up.", "")),
            ("up".to_string(), meta(MetricType::Gauge, "Up.", "")),
            ("bytes".to_string(), meta(MetricType::Counter, "Bytes.", "bytes")),
        ];
        let body = v1_metadata(&distinct(pairs));
        let req = proto::WriteRequest::decode(body.as_slice()).unwrap();
        assert!(req.timeseries.is_empty());
        assert_eq!(req.metadata.len(), 2);
        assert_eq!(
            req.metadata[1],
            proto::MetricMetadata {
                r#type: 1,
                metric_family_name: "bytes".into(),
                help: "Bytes.".into(),
                unit: "bytes".into()
            }
        );
    }
}
