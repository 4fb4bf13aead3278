//! Reading a pushed body into metric families with the semantics of the parser Pushgateway 1.x
//! uses (`expfmt.TextParser` of prometheus/common): families by name across the whole body, a
//! `# TYPE` only before a family's first sample, one `# HELP` and one `# TYPE` per family,
//! `_count`/`_sum`/`_bucket` lines folded into the summary or histogram they belong to (one metric
//! per label set), families without samples dropped, and every line ending in a newline.
//!
//! Sample lines are read with the crate's own parser ([`crate::exposition`]) one line at a time;
//! comment lines are read here, since Pushgateway's grammar for them differs from Prometheus's
//! scraper (`#HELP` is metadata, any run of blanks separates the words, `# HELP` allows only `\\`
//! and `\n` escapes). An OpenMetrics body (by its `Content-Type`) is read with the OpenMetrics
//! grammar and mapped onto the same families, which Pushgateway itself cannot do. Whether a push
//! is consistent with the groups already stored is the store's business.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;

use memchr::memchr;

use super::family::{
    Family, FamilyKind, Histogram, Metric, MetricValue, PUSH_FAILURE_TIME, PUSH_TIME, Summary,
    go_float_to_u64,
};
use crate::exposition::{Entry, TextFormat, TextParser, parse_float};
use crate::model::{MetricType, is_valid_label_name, is_valid_metric_name};

/// Why a pushed body was refused; it changes nothing in the store. The handler answers 415 for
/// [`BodyError::UnsupportedMediaType`] and 400 for the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error(
        "unsupported Content-Type {content_type:?}: only the text format (0.0.4) and OpenMetrics text are accepted"
    )]
    UnsupportedMediaType { content_type: String },
    #[error("parsing error in line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("parsing error in line {line}: unexpected end of input stream (the last line has no newline)")]
    UnexpectedEnd { line: usize },
    #[error("parsing error in line {line}: second HELP line for metric name {family:?}")]
    SecondHelp { line: usize, family: String },
    #[error(
        "parsing error in line {line}: second TYPE line for metric name {family:?}, or TYPE reported after samples"
    )]
    SecondType { line: usize, family: String },
    #[error("parsing error in line {line}: unknown metric type {text:?}")]
    UnknownType { line: usize, text: String },
    #[error(
        "parsing error in line {line}: invalid escape sequence in help text (only \\\\ and \\n are allowed)"
    )]
    InvalidEscape { line: usize },
    #[error("parsing error in line {line}: invalid {what} name {name:?}")]
    InvalidName { line: usize, what: &'static str, name: String },
    #[error("parsing error in line {line}: expected float as value for {label:?} label, got {value:?}")]
    InvalidBound { line: usize, label: &'static str, value: String },
    #[error("parsing error in line {line}: metric {family:?} has type {kind}, which a push cannot carry")]
    UnsupportedType { line: usize, family: String, kind: &'static str },
}

/// The grammar of a pushed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PushFormat {
    /// The text format 0.0.4 — also what Pushgateway assumes for any other or no media type.
    Text,
    /// `application/openmetrics-text`.
    OpenMetrics,
}

impl PushFormat {
    /// The format of a body from its `Content-Type` (none: text). Protobuf, which Pushgateway
    /// also takes, is refused.
    pub(super) fn from_content_type(content_type: Option<&str>) -> Result<PushFormat, BodyError> {
        let Some(ct) = content_type else {
            return Ok(PushFormat::Text);
        };
        let media = ct.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case("application/vnd.google.protobuf") {
            return Err(BodyError::UnsupportedMediaType { content_type: ct.to_string() });
        }
        Ok(match TextFormat::from_content_type(ct) {
            TextFormat::OpenMetrics => PushFormat::OpenMetrics,
            _ => PushFormat::Text,
        })
    }
}

/// A body read into families, before the grouping labels are applied.
#[derive(Debug)]
pub(super) struct ParsedBody {
    /// Families with at least one metric, by name; `push_time_seconds` and
    /// `push_failure_time_seconds` are left out (the store owns those).
    pub(super) families: Vec<(String, Family)>,
    /// Some sample carried a timestamp: Pushgateway refuses the push (after parsing it whole).
    pub(super) has_timestamp: bool,
}

/// Reads `body` in `format`.
pub(super) fn parse(format: PushFormat, body: &[u8]) -> Result<ParsedBody, BodyError> {
    let builder = match format {
        PushFormat::Text => parse_text(body)?,
        PushFormat::OpenMetrics => parse_openmetrics(body)?,
    };
    Ok(builder.finish())
}

/// A `# TYPE` as Pushgateway's parser takes it: client_model's types, one of which no push can
/// use (its samples are refused, while Pushgateway would store metrics it cannot expose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    Kind(FamilyKind),
    GaugeHistogram,
}

/// What a sample line is to the summary or histogram it was folded into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Count,
    Sum,
}

#[derive(Debug)]
struct BuildFamily {
    name: String,
    help: Option<String>,
    kind: Option<Declared>,
    metrics: Vec<Metric>,
}

/// Families under construction, as `expfmt.TextParser` keeps them.
#[derive(Debug, Default)]
struct Builder {
    families: Vec<BuildFamily>,
    by_name: HashMap<String, usize>,
    /// Summary and histogram metrics by family and sorted label pairs (without `quantile`/`le`):
    /// the lines of one summary or histogram meet here, wherever they are in the body.
    compound: HashMap<(usize, Vec<(String, String)>), usize>,
    has_timestamp: bool,
}

impl Builder {
    /// The family a name on a line belongs to (`setOrCreateCurrentMF`): the family of exactly that
    /// name, else the summary it is the `_count`/`_sum` of, else the histogram it is the
    /// `_count`/`_sum`/`_bucket` of, else a new family.
    fn resolve(&mut self, name: &str) -> (usize, Role) {
        if let Some(&i) = self.by_name.get(name) {
            return (i, Role::Plain);
        }
        let count = name.len() > 6 && name.ends_with("_count");
        let sum = name.len() > 4 && name.ends_with("_sum");
        let bucket = name.len() > 7 && name.ends_with("_bucket");
        let role = if count {
            Role::Count
        } else if sum {
            Role::Sum
        } else {
            Role::Plain
        };
        let summary_name = if count {
            &name[..name.len() - 6]
        } else if sum {
            &name[..name.len() - 4]
        } else {
            name
        };
        if let Some(&i) = self.by_name.get(summary_name)
            && self.families[i].kind == Some(Declared::Kind(FamilyKind::Summary))
        {
            return (i, role);
        }
        let histogram_name = if bucket { &name[..name.len() - 7] } else { summary_name };
        if let Some(&i) = self.by_name.get(histogram_name)
            && self.families[i].kind == Some(Declared::Kind(FamilyKind::Histogram))
        {
            return (i, role);
        }
        let i = self.families.len();
        self.families.push(BuildFamily {
            name: name.to_string(),
            help: None,
            kind: None,
            metrics: Vec::new(),
        });
        self.by_name.insert(name.to_string(), i);
        (i, Role::Plain)
    }

    fn set_help(&mut self, family: usize, help: String, line: usize) -> Result<(), BodyError> {
        let f = &mut self.families[family];
        if f.help.is_some() {
            return Err(BodyError::SecondHelp { line, family: f.name.clone() });
        }
        f.help = Some(help);
        Ok(())
    }

    fn set_type(&mut self, family: usize, kind: Declared, line: usize) -> Result<(), BodyError> {
        let f = &mut self.families[family];
        if f.kind.is_some() {
            return Err(BodyError::SecondType { line, family: f.name.clone() });
        }
        f.kind = Some(kind);
        Ok(())
    }

    /// One sample line. Label names are checked against the legacy charset here (the crate's
    /// parser also takes quoted UTF-8 names, which Pushgateway 1.x does not).
    fn sample<'a>(
        &mut self,
        line: usize,
        name: &str,
        labels: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
        value: f64,
        timestamp: Option<i64>,
    ) -> Result<(), BodyError> {
        if !is_valid_metric_name(name) {
            return Err(BodyError::InvalidName { line, what: "metric", name: name.to_string() });
        }
        let (index, role) = self.resolve(name);
        let Builder { families, compound, has_timestamp, .. } = self;
        let family = &mut families[index];
        let kind = match family.kind {
            None => {
                family.kind = Some(Declared::Kind(FamilyKind::Untyped));
                FamilyKind::Untyped
            }
            Some(Declared::Kind(kind)) => kind,
            Some(Declared::GaugeHistogram) => {
                let family = family.name.clone();
                return Err(BodyError::UnsupportedType { line, family, kind: "gauge_histogram" });
            }
        };
        let mut pairs = Vec::new();
        let mut bound = None;
        for (n, v) in labels {
            if !is_valid_label_name(&n) {
                return Err(BodyError::InvalidName { line, what: "label", name: n.into_owned() });
            }
            let special = match kind {
                FamilyKind::Summary if n == "quantile" => Some("quantile"),
                FamilyKind::Histogram if n == "le" => Some("le"),
                _ => None,
            };
            match special {
                Some(label) => {
                    let b = parse_float(v.as_bytes()).ok_or_else(|| BodyError::InvalidBound {
                        line,
                        label,
                        value: v.clone().into_owned(),
                    })?;
                    bound = Some(b);
                }
                None => pairs.push((n.into_owned(), v.into_owned())),
            }
        }
        *has_timestamp |= timestamp.is_some();
        let metric = match kind {
            FamilyKind::Counter | FamilyKind::Gauge | FamilyKind::Untyped => {
                family.metrics.push(Metric { labels: pairs, value: MetricValue::Simple(value) });
                return Ok(());
            }
            FamilyKind::Summary | FamilyKind::Histogram => {
                let mut signature = pairs.clone();
                signature.sort();
                match compound.entry((index, signature)) {
                    MapEntry::Occupied(e) => *e.get(),
                    MapEntry::Vacant(e) => {
                        let value = if kind == FamilyKind::Summary {
                            MetricValue::Summary(Summary::default())
                        } else {
                            MetricValue::Histogram(Histogram::default())
                        };
                        family.metrics.push(Metric { labels: pairs, value });
                        *e.insert(family.metrics.len() - 1)
                    }
                }
            }
        };
        match (&mut family.metrics[metric].value, role, bound) {
            (MetricValue::Summary(s), Role::Count, _) => s.count = go_float_to_u64(value),
            (MetricValue::Summary(s), Role::Sum, _) => s.sum = value,
            (MetricValue::Summary(s), Role::Plain, Some(q)) => s.quantiles.push((q, value)),
            (MetricValue::Histogram(h), Role::Count, _) => h.count = go_float_to_u64(value),
            (MetricValue::Histogram(h), Role::Sum, _) => h.sum = value,
            (MetricValue::Histogram(h), Role::Plain, Some(b)) => h.buckets.push((b, go_float_to_u64(value))),
            // A summary line without `quantile` or a bucket without `le` only creates the metric.
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> ParsedBody {
        let families = self
            .families
            .into_iter()
            .filter(|f| !f.metrics.is_empty() && f.name != PUSH_TIME && f.name != PUSH_FAILURE_TIME)
            .filter_map(|f| match f.kind {
                Some(Declared::Kind(kind)) => {
                    Some((f.name, Family { help: f.help, kind, metrics: f.metrics }))
                }
                // A family with metrics always has a kind; gauge histograms never get metrics.
                _ => None,
            })
            .collect();
        ParsedBody { families, has_timestamp: self.has_timestamp }
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_blanks(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_blank(s[i]) {
        i += 1;
    }
    i
}

/// The text format, line by line.
fn parse_text(body: &[u8]) -> Result<Builder, BodyError> {
    let mut b = Builder::default();
    let mut rest = body;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let (line, terminated) = match memchr(b'\n', rest) {
            Some(k) => (&rest[..k], true),
            None => (rest, false),
        };
        rest = rest.get(line.len() + 1..).unwrap_or_default();
        let start = skip_blanks(line, 0);
        if start == line.len() {
            continue;
        }
        // Pushgateway's parser reads a line up to its newline; the input ending first is an
        // error, even for a comment.
        if !terminated {
            return Err(BodyError::UnexpectedEnd { line: line_no });
        }
        if line[start] == b'#' {
            comment(&mut b, &line[start + 1..], line_no)?;
        } else {
            text_sample(&mut b, line, line_no)?;
        }
    }
    Ok(b)
}

/// A `#` line (what follows the `#`): `HELP` or `TYPE` with a metric name, else a comment.
fn comment(b: &mut Builder, line: &[u8], line_no: usize) -> Result<(), BodyError> {
    let kw = skip_blanks(line, 0);
    let kw_end = kw + line[kw..].iter().position(|&c| is_blank(c)).unwrap_or(line.len() - kw);
    if kw == line.len() || kw_end == line.len() {
        // `#` alone, or a single word.
        return Ok(());
    }
    let help = match &line[kw..kw_end] {
        b"HELP" => true,
        b"TYPE" => false,
        _ => return Ok(()),
    };
    let name_start = skip_blanks(line, kw_end);
    let name_end = name_start
        + line[name_start..]
            .iter()
            .enumerate()
            .position(|(k, &c)| {
                let ok = c.is_ascii_alphabetic() || c == b'_' || c == b':' || (k > 0 && c.is_ascii_digit());
                !ok
            })
            .unwrap_or(line.len() - name_start);
    if name_end == line.len() {
        // A name (or nothing) up to the end of the line: nothing to record.
        return Ok(());
    }
    if !is_blank(line[name_end]) {
        let name = String::from_utf8_lossy(&line[name_start..]).into_owned();
        return Err(BodyError::InvalidName { line: line_no, what: "metric", name });
    }
    // Names are ASCII here.
    let name = String::from_utf8_lossy(&line[name_start..name_end]).into_owned();
    // The family exists from here on, even if the line has no text.
    let (family, _) = b.resolve(&name);
    let text_start = skip_blanks(line, name_end);
    if text_start == line.len() {
        return Ok(());
    }
    let text = &line[text_start..];
    if help {
        let help = decode_help(text, line_no)?;
        b.set_help(family, help, line_no)
    } else {
        // The rest of the line, blanks included, in any letter case (client_model's enum names).
        let kind = match text.to_ascii_uppercase().as_slice() {
            b"COUNTER" => Declared::Kind(FamilyKind::Counter),
            b"GAUGE" => Declared::Kind(FamilyKind::Gauge),
            b"UNTYPED" => Declared::Kind(FamilyKind::Untyped),
            b"SUMMARY" => Declared::Kind(FamilyKind::Summary),
            b"HISTOGRAM" => Declared::Kind(FamilyKind::Histogram),
            b"GAUGE_HISTOGRAM" => Declared::GaugeHistogram,
            _ => {
                let text = String::from_utf8_lossy(text).into_owned();
                return Err(BodyError::UnknownType { line: line_no, text });
            }
        };
        b.set_type(family, kind, line_no)
    }
}

/// Help text with `\\` and `\n` decoded; any other escape is an error.
fn decode_help(text: &[u8], line: usize) -> Result<String, BodyError> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\\' {
            match text.get(i + 1) {
                Some(b'\\') => out.push(b'\\'),
                Some(b'n') => out.push(b'\n'),
                _ => return Err(BodyError::InvalidEscape { line }),
            }
            i += 2;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| BodyError::Syntax { line, message: "help text is not valid UTF-8".to_string() })
}

/// A sample line of the text format.
fn text_sample(b: &mut Builder, line: &[u8], line_no: usize) -> Result<(), BodyError> {
    let series = match TextParser::new(line).next() {
        Some(Ok(Entry::Series(s))) => s,
        Some(Err(e)) => return Err(BodyError::Syntax { line: line_no, message: e.kind.to_string() }),
        _ => return Err(BodyError::Syntax { line: line_no, message: "expected a sample".to_string() }),
    };
    // Pushgateway's parser reads a blank after the value as the start of a timestamp (or of
    // something after it), so a line may not end in one.
    if line.last().is_some_and(|&c| is_blank(c)) {
        let message = "blank at the end of a sample line".to_string();
        return Err(BodyError::Syntax { line: line_no, message });
    }
    b.sample(line_no, &series.name(), series.labels(), series.value(), series.timestamp())
}

/// The OpenMetrics family whose lines are being read.
#[derive(Debug)]
struct OmFamily {
    name: String,
    kind: MetricType,
    typed: bool,
    help: Option<String>,
    /// Its metadata went to the builder (at its first sample).
    declared: bool,
}

impl OmFamily {
    fn new(name: &str) -> OmFamily {
        OmFamily {
            name: name.to_string(),
            kind: MetricType::Unknown,
            typed: false,
            help: None,
            declared: false,
        }
    }

    /// Whether a sample named `sample` belongs to this family.
    fn has_sample(&self, sample: &str) -> bool {
        let Some(suffix) = sample.strip_prefix(self.name.as_str()) else {
            return false;
        };
        match self.kind {
            MetricType::Counter => matches!(suffix, "_total" | "_created"),
            MetricType::Summary => matches!(suffix, "" | "_sum" | "_count" | "_created"),
            MetricType::Histogram => matches!(suffix, "_bucket" | "_sum" | "_count" | "_created"),
            MetricType::GaugeHistogram => matches!(suffix, "_bucket" | "_gsum" | "_gcount"),
            MetricType::Info => suffix == "_info",
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => suffix.is_empty(),
        }
    }

    /// The text-format family this becomes: a counter `x` is the family `x_total` there (the name
    /// its samples have), an unknown family is untyped; the other OpenMetrics-only types have
    /// no place in a Pushgateway group.
    fn text_family(&self, line: usize) -> Result<(String, FamilyKind), BodyError> {
        let kind = match self.kind {
            MetricType::Counter => return Ok((format!("{}_total", self.name), FamilyKind::Counter)),
            MetricType::Gauge => FamilyKind::Gauge,
            MetricType::Summary => FamilyKind::Summary,
            MetricType::Histogram => FamilyKind::Histogram,
            MetricType::Unknown => FamilyKind::Untyped,
            other => {
                let family = self.name.clone();
                return Err(BodyError::UnsupportedType { line, family, kind: other.as_str() });
            }
        };
        Ok((self.name.clone(), kind))
    }
}

/// An OpenMetrics body, mapped onto text-format families: `_created` samples and `# UNIT` are
/// dropped (a Pushgateway group has no place for them), exemplars are dropped by the parser.
fn parse_openmetrics(body: &[u8]) -> Result<Builder, BodyError> {
    let mut b = Builder::default();
    let mut current: Option<OmFamily> = None;
    // OpenMetrics has no blank or comment lines, so entries are lines.
    for (k, entry) in TextParser::with_format(body, TextFormat::OpenMetrics).enumerate() {
        let line = k + 1;
        let entry = entry.map_err(|e| BodyError::Syntax { line: e.line, message: e.kind.to_string() })?;
        let meta_name = match &entry {
            Entry::Type { name, .. } | Entry::Help { name, .. } | Entry::Unit { name, .. } => Some(name),
            Entry::Comment | Entry::Series(_) => None,
        };
        if let Some(name) = meta_name {
            let same = current.as_ref().is_some_and(|f| f.name == name.as_ref());
            if !same {
                current = Some(OmFamily::new(name));
            }
            let family = current.get_or_insert_with(|| OmFamily::new(name));
            if family.declared {
                let message = format!("metadata for {:?} after its samples", family.name);
                return Err(BodyError::Syntax { line, message });
            }
            match entry {
                Entry::Type { kind, .. } => {
                    if family.typed {
                        return Err(BodyError::SecondType { line, family: family.name.clone() });
                    }
                    family.kind = kind;
                    family.typed = true;
                }
                Entry::Help { text, .. } => {
                    if family.help.is_some() {
                        return Err(BodyError::SecondHelp { line, family: family.name.clone() });
                    }
                    family.help = Some(text.into_owned());
                }
                _ => {}
            }
            continue;
        }
        let Entry::Series(series) = entry else {
            continue;
        };
        let name = series.name();
        if !current.as_ref().is_some_and(|f| f.has_sample(&name)) {
            // A sample without metadata is a family of unknown type of its own.
            current = Some(OmFamily::new(&name));
        }
        let family = current.get_or_insert_with(|| OmFamily::new(&name));
        if !family.declared {
            let (text_name, kind) = family.text_family(line)?;
            let (index, _) = b.resolve(&text_name);
            b.set_type(index, Declared::Kind(kind), line)?;
            if let Some(help) = family.help.take() {
                b.set_help(index, help, line)?;
            }
            family.declared = true;
        }
        if name.ends_with("_created")
            && family.kind != MetricType::Unknown
            && family.kind != MetricType::Gauge
        {
            continue;
        }
        b.sample(line, &name, series.labels(), series.value(), series.timestamp())?;
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families(body: &str) -> Vec<(String, Family)> {
        match parse(PushFormat::Text, body.as_bytes()) {
            Ok(p) => p.families,
            Err(e) => panic!("{body:?}: {e}"),
        }
    }

    fn family<'a>(fams: &'a [(String, Family)], name: &str) -> &'a Family {
        match fams.iter().find(|(n, _)| n == name) {
            Some((_, f)) => f,
            None => panic!("no family {name} in {fams:?}"),
        }
    }

    fn error(body: &str) -> BodyError {
        match parse(PushFormat::Text, body.as_bytes()) {
            Ok(p) => panic!("{body:?} parsed: {p:?}"),
            Err(e) => e,
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn families_collect_across_the_body() {
        let f = families("# TYPE m counter\n# HELP m my help\nm{x=\"1\"} 3\nother 5\nm{x=\"2\"} 4\n\n  \n");
        assert_eq!(f.len(), 2);
        let m = family(&f, "m");
        assert_eq!((m.kind, m.help.as_deref(), m.metrics.len()), (FamilyKind::Counter, Some("my help"), 2));
        assert_eq!(m.metrics[1].labels, pairs(&[("x", "2")]));
        assert_eq!(family(&f, "other").kind, FamilyKind::Untyped);
        // A family without samples is dropped; a HELP-only family is untyped.
        let f = families("# TYPE q gauge\n# HELP h text\nh 1\n");
        assert_eq!(f.len(), 1);
        assert_eq!(family(&f, "h").kind, FamilyKind::Untyped);
        assert!(families("").is_empty());
        assert!(families("\n# just a comment\n").is_empty());
    }

    #[test]
    fn summaries_and_histograms_fold_their_lines() {
        let body = "# TYPE h histogram\nh_bucket{le=\"1\",a=\"x\"} 2\nh_bucket{a=\"x\",le=\"2.50\"} 3\nh_sum{a=\"x\"} 4.5\n\
                    # TYPE s summary\ns{quantile=\"0.5\"} 1\ns_count 2.7\nh_count{a=\"x\"} 7\nh_bucket{a=\"y\"} 1\n";
        let f = families(body);
        let h = family(&f, "h");
        assert_eq!(h.metrics.len(), 2);
        assert_eq!(h.metrics[0].labels, pairs(&[("a", "x")]));
        assert_eq!(
            h.metrics[0].value,
            MetricValue::Histogram(Histogram { buckets: vec![(1.0, 2), (2.5, 3)], sum: 4.5, count: 7 })
        );
        // A bucket line without `le` only creates the metric.
        assert_eq!(h.metrics[1].value, MetricValue::Histogram(Histogram::default()));
        let s = family(&f, "s");
        assert_eq!(
            s.metrics[0].value,
            MetricValue::Summary(Summary { quantiles: vec![(0.5, 1.0)], sum: 0.0, count: 2 })
        );
        // `x_count` of a gauge `x` is a family of its own; so is `s_bucket` of a summary.
        let f = families("# TYPE x gauge\nx 1\nx_count 2\n# TYPE s summary\ns_bucket 1\n");
        assert_eq!(f.len(), 3);
        assert!(matches!(
            error("# TYPE h histogram\nh_bucket{le=\"x\"} 1\n"),
            BodyError::InvalidBound { .. }
        ));
    }

    #[test]
    fn comment_lines_follow_pushgateway() {
        // `#HELP` is metadata; blanks run together; help escapes are decoded.
        let f = families("#HELP a  two  blanks\na 1\n#\tTYPE\t\tb\tGauge\nb 1\n# HELP c x\\\\y\\nz\nc 1\n");
        assert_eq!(family(&f, "a").help.as_deref(), Some("two  blanks"));
        assert_eq!(family(&f, "b").kind, FamilyKind::Gauge);
        assert_eq!(family(&f, "c").help.as_deref(), Some("x\\y\nz"));
        // Words that are not metadata, a bare name, or a name with nothing after it.
        assert_eq!(families("# HELPX a b\n# HELP\n# HELP a\n# TYPE a \na 1\n").len(), 1);
        assert!(matches!(error("# HELP a x\\\"y\na 1\n"), BodyError::InvalidEscape { line: 1 }));
        assert!(matches!(error("# HELP a x\\\na 1\n"), BodyError::InvalidEscape { line: 1 }));
        assert!(matches!(error("# HELP 1a x\n"), BodyError::InvalidName { .. }));
        assert!(matches!(error("# HELP a{ x\n"), BodyError::InvalidName { .. }));
        assert!(matches!(error("# HELP a x\n# HELP a y\n"), BodyError::SecondHelp { line: 2, .. }));
        assert!(matches!(error("a 1\n# TYPE a gauge\n"), BodyError::SecondType { line: 2, .. }));
        assert!(matches!(error("# TYPE a gauge\n# TYPE a gauge\n"), BodyError::SecondType { .. }));
        // The `_count` of a histogram is the histogram in a HELP or TYPE line too.
        assert!(matches!(error("# TYPE h histogram\n# TYPE h_count gauge\n"), BodyError::SecondType { .. }));
        for t in ["unknown", "info", "gauge ", "stateset", "counter x"] {
            let body = format!("# TYPE a {t}\na 1\n");
            assert!(matches!(error(&body), BodyError::UnknownType { .. }), "{t}");
        }
        // A gauge histogram type is taken, its samples are not.
        assert!(families("# TYPE g gauge_histogram\n").is_empty());
        assert!(matches!(error("# TYPE g gauge_histogram\ng 1\n"), BodyError::UnsupportedType { .. }));
    }

    #[test]
    fn sample_lines_follow_pushgateway() {
        assert_eq!(error("m 1"), BodyError::UnexpectedEnd { line: 1 });
        assert_eq!(error("m 1\n# x"), BodyError::UnexpectedEnd { line: 2 });
        assert!(families("m 1\n   ").len() == 1, "blanks after the last newline are fine");
        assert!(matches!(error("m 1 \n"), BodyError::Syntax { line: 1, .. }));
        assert!(matches!(error("m 1 1000\t\n"), BodyError::Syntax { .. }));
        assert!(matches!(error("m 1\r\n"), BodyError::Syntax { .. }));
        assert!(matches!(error("m{a=\"\\t\"} 1\n"), BodyError::Syntax { .. }));
        assert!(matches!(error("m{__name__=\"x\"} 1\n"), BodyError::Syntax { .. }));
        assert!(matches!(error("{\"a.b\"} 1\n"), BodyError::InvalidName { what: "metric", .. }));
        assert!(matches!(error("m{\"a.b\"=\"1\"} 1\n"), BodyError::InvalidName { what: "label", .. }));
        // Leading blanks and blanks inside the label set are fine; empty values are kept.
        let f = families("  m { a = \"1\" , b=\"\" } 2\n");
        assert_eq!(family(&f, "m").metrics[0].labels, pairs(&[("a", "1"), ("b", "")]));
        let p = parse(PushFormat::Text, b"m 1 1000\n").unwrap();
        assert!(p.has_timestamp);
        // The store's own gauges cannot be pushed.
        assert!(families("push_time_seconds 5\npush_failure_time_seconds 7\n").is_empty());
    }

    #[test]
    fn openmetrics_bodies_map_onto_text_families() {
        let body = "# TYPE c counter\n# HELP c Requests.\nc_total{a=\"1\"} 3 # {t=\"z\"} 0.5\nc_created{a=\"1\"} 17\n\
                    # TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 0.5\n\
                    # TYPE g_seconds gauge\n# UNIT g_seconds seconds\ng_seconds 4\nloose 5\n# EOF\n";
        let p = match parse(PushFormat::OpenMetrics, body.as_bytes()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let f = p.families;
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["c_total", "h", "g_seconds", "loose"]);
        let c = family(&f, "c_total");
        assert_eq!((c.kind, c.help.as_deref(), c.metrics.len()), (FamilyKind::Counter, Some("Requests."), 1));
        assert_eq!(
            family(&f, "h").metrics[0].value,
            MetricValue::Histogram(Histogram {
                buckets: vec![(1.0, 1), (f64::INFINITY, 2)],
                sum: 0.5,
                count: 2
            })
        );
        assert_eq!(family(&f, "loose").kind, FamilyKind::Untyped);
        let om = |b: &str| parse(PushFormat::OpenMetrics, b.as_bytes()).map(|p| p.families.len());
        assert!(matches!(om("c 1\n"), Err(BodyError::Syntax { .. })), "no # EOF");
        assert!(matches!(om("# TYPE i info\ni_info 1\n# EOF\n"), Err(BodyError::UnsupportedType { .. })));
        assert_eq!(om("# TYPE i info\n# EOF\n"), Ok(0));
        assert!(parse(PushFormat::OpenMetrics, b"a 1 1.5\n# EOF\n").is_ok_and(|p| p.has_timestamp));
    }

    #[test]
    fn content_types() {
        assert_eq!(PushFormat::from_content_type(None), Ok(PushFormat::Text));
        assert_eq!(PushFormat::from_content_type(Some("application/json")), Ok(PushFormat::Text));
        assert_eq!(
            PushFormat::from_content_type(Some("application/openmetrics-text; version=1.0.0")),
            Ok(PushFormat::OpenMetrics)
        );
        let pb =
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
        assert!(matches!(
            PushFormat::from_content_type(Some(pb)),
            Err(BodyError::UnsupportedMediaType { .. })
        ));
    }
}
