//! The streaming parser for scraped bodies: the Prometheus text format 0.0.4 with the leniency of
//! Prometheus's own scrape parser (`promparse`), and an OpenMetrics mode for bodies served as
//! `application/openmetrics-text`.
//!
//! Each line is fully validated before it is yielded, so a malformed body always ends in an
//! error, but label pairs are decoded only when asked for: a [`SeriesLine`] keeps the exact bytes
//! of `name{labels}` (the scrape-cache key) and re-reads them lazily. Nothing is allocated per
//! sample unless an escape has to be decoded. Grouping samples into families, metadata caches and
//! staleness belong to the scraper.
//!
//! Where the text format's two reference parsers disagree we follow `promparse`, with these
//! deliberate differences, all stricter except the last one:
//! - only `\\`, `\"` and `\n` may be escaped in quoted names and label values (`promparse` keeps
//!   any other escape verbatim); a raw newline can never be part of a quoted string;
//! - duplicate label names, an explicit `__name__` label and empty names are parse errors
//!   (Prometheus rejects those series later, when appending);
//! - a bare metric name must be followed by a blank or `{` (`promparse` would read `a-1` as `a`
//!   with value `-1`), and a metric name in `# HELP`/`# TYPE` by a blank or the end of the line;
//! - a NUL byte at the start of a line is an error (`promparse` silently ends the body there);
//! - `# TYPE` also accepts the OpenMetrics types (`gaugehistogram`, `info`, `stateset`,
//!   `unknown`) that `promparse` rejects, and timestamps may be negative.

use std::borrow::Cow;

use memchr::memchr;

use super::lex::{
    Escapes, QuoteError, is_label_start, is_metric_start, label_name_end, metric_name_end, parse_float,
    parse_seconds_timestamp, parse_timestamp, scan_quoted, skip_blanks, token_end, unescape,
};
use super::writer::write_openmetrics_float;
use crate::model::{Label, Labels, METRIC_NAME, MetricType};

/// The largest combined size of an exemplar's label names and values, in code points.
const EXEMPLAR_MAX_CHARS: usize = 128;

/// Which grammar a body is written in, as announced by the response's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TextFormat {
    /// `text/plain; version=0.0.4`, parsed with the leniency of Prometheus's scraper.
    #[default]
    Prometheus,
    /// `application/openmetrics-text`: single spaces only, no blank lines or free comments,
    /// `# UNIT`, float-second timestamps, exemplars (validated, then dropped) and a final `# EOF`.
    /// `_created` samples are yielded as ordinary series, as Prometheus does by default.
    OpenMetrics,
}

impl TextFormat {
    /// The format to parse a body with, from its `Content-Type` header: OpenMetrics when the
    /// media type says so, the Prometheus text format otherwise (as Prometheus falls back).
    pub fn from_content_type(content_type: &str) -> TextFormat {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            TextFormat::OpenMetrics
        } else {
            TextFormat::Prometheus
        }
    }
}

/// A body that failed to parse, with the 1-based line and byte column of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind} (column {column})")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub kind: ParseErrorKind,
}

/// What was wrong; texts quoted from the input are cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    #[error("expected {expected}, found {found}")]
    Unexpected { expected: &'static str, found: String },
    #[error("unterminated quoted string")]
    UnterminatedString,
    #[error("invalid escape sequence {sequence:?} (only \\\\, \\\" and \\n are allowed)")]
    InvalidEscape { sequence: String },
    #[error("invalid UTF-8 in {what}")]
    InvalidUtf8 { what: &'static str },
    #[error("metric name not set")]
    MissingMetricName,
    #[error("metric name set twice")]
    DuplicateMetricName,
    #[error("empty metric name")]
    EmptyMetricName,
    #[error("empty label name")]
    EmptyLabelName,
    #[error("duplicate label name {name:?}")]
    DuplicateLabel { name: String },
    #[error("invalid value {text:?}")]
    InvalidValue { text: String },
    #[error("invalid timestamp {text:?}")]
    InvalidTimestamp { text: String },
    #[error("invalid metric type {text:?}")]
    InvalidType { text: String },
    #[error("unit {unit:?} is not a suffix of metric {name:?}")]
    UnitNotSuffix { unit: String, name: String },
    #[error("exemplar labels exceed {EXEMPLAR_MAX_CHARS} characters")]
    ExemplarTooLong,
    #[error("data does not end with # EOF")]
    MissingEof,
    #[error("unexpected data after # EOF")]
    DataAfterEof,
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP name text`, with `\\` and `\n` (OpenMetrics: also `\"`) decoded.
    Help { name: Cow<'a, str>, text: Cow<'a, str> },
    /// `# TYPE name type`.
    Type { name: Cow<'a, str>, kind: MetricType },
    /// `# UNIT name unit` (OpenMetrics only).
    Unit { name: Cow<'a, str>, unit: &'a str },
    /// Any other `#` line (Prometheus text format only).
    Comment,
    /// A sample.
    Series(SeriesLine<'a>),
}

/// A validated sample line. Everything borrows from the body.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLine<'a> {
    /// `name{labels}` exactly as written (blanks inside included); valid UTF-8.
    raw: &'a [u8],
    /// The metric name inside `raw`, without quotes.
    name_start: usize,
    name_end: usize,
    /// The quoted metric name holds escapes.
    name_escaped: bool,
    /// Where the label pairs start in `raw` (just past `{`), or `raw.len()` when there are none.
    labels_at: usize,
    value: f64,
    timestamp: Option<i64>,
    /// The type of the most recent `# TYPE` line, for `le`/`quantile` normalisation.
    family_type: MetricType,
}

impl<'a> SeriesLine<'a> {
    /// The bytes `name{labels}` as written: the key a scrape cache looks series up by.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The metric name, decoded.
    pub fn name(&self) -> Cow<'a, str> {
        // Validated while parsing, so never empty by failure.
        let name = std::str::from_utf8(&self.raw[self.name_start..self.name_end]).unwrap_or_default();
        decode_str(name, self.name_escaped)
    }

    /// The label pairs in written order, decoded, without the metric name. As in Prometheus,
    /// `le` after a `# TYPE … histogram` line and `quantile` after `# TYPE … summary` are
    /// rewritten to the canonical float spelling (`le="1"` becomes `le="1.0"`).
    pub fn labels(&self) -> LabelPairs<'a> {
        // One check of the whole slice (validated while parsing, so never empty by failure)
        // is cheaper than one per name and value.
        let raw = std::str::from_utf8(self.raw).unwrap_or_default();
        LabelPairs { raw, pos: self.labels_at.min(raw.len()), family_type: self.family_type }
    }

    /// The sample value; any NaN is Prometheus's NormalNaN bit pattern.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The type of the `# TYPE` line in effect for this sample (it decides how `le` and
    /// `quantile` values are normalised).
    pub fn family_type(&self) -> MetricType {
        self.family_type
    }

    /// The sample's own timestamp in milliseconds, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The full label set, `__name__` included, without empty values (allocates; meant for a
    /// scrape-cache miss).
    pub fn to_labels(&self) -> Labels {
        let mut pairs = Vec::with_capacity(8);
        pairs.push(Label::new(METRIC_NAME, self.name()));
        pairs.extend(self.labels().filter(|(_, v)| !v.is_empty()).map(|(n, v)| Label::new(n, v)));
        // The parser rejected duplicate and empty names, so sorting is all a label set needs.
        pairs.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Labels::from_sorted_unchecked(pairs)
    }
}

/// The label pairs of a [`SeriesLine`], decoded lazily from its raw bytes.
#[derive(Debug, Clone)]
pub struct LabelPairs<'a> {
    raw: &'a str,
    pos: usize,
    family_type: MetricType,
}

impl<'a> Iterator for LabelPairs<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        // The line was validated when it was parsed, so this only re-finds token boundaries.
        let b = self.raw.as_bytes();
        loop {
            let mut i = self.pos;
            while i < b.len() && matches!(b[i], b' ' | b'\t' | b',') {
                i += 1;
            }
            let (name, quoted, after) = match b.get(i) {
                None | Some(b'}') => {
                    self.pos = b.len();
                    return None;
                }
                Some(b'"') => {
                    let q = scan_quoted(b, i, Escapes::Lenient).ok()?;
                    (decode_str(&self.raw[i + 1..q.end - 1], q.escaped), true, q.end)
                }
                Some(_) => {
                    let e = label_name_end(b, i);
                    (Cow::Borrowed(&self.raw[i..e]), false, e)
                }
            };
            i = skip_blanks(b, after);
            if quoted && b.get(i) != Some(&b'=') {
                // The quoted metric name, not a label.
                self.pos = i;
                continue;
            }
            let open = skip_blanks(b, i + 1);
            let q = scan_quoted(b, open, Escapes::Lenient).ok()?;
            self.pos = q.end;
            let value = decode_str(&self.raw[open + 1..q.end - 1], q.escaped);
            let value = normalize_float_label(self.family_type, &name, value);
            return Some((name, value));
        }
    }
}

fn decode_str(s: &str, escaped: bool) -> Cow<'_, str> {
    if escaped { unescape(s, true) } else { Cow::Borrowed(s) }
}

/// Prometheus rewrites the `le` of classic histograms and the `quantile` of summaries to the
/// OpenMetrics float spelling, so `le="1"` and `le="1.0"` are the same series.
fn normalize_float_label<'a>(family: MetricType, name: &str, value: Cow<'a, str>) -> Cow<'a, str> {
    let applies = match family {
        MetricType::Histogram => name == "le",
        MetricType::Summary => name == "quantile",
        _ => false,
    };
    if !applies {
        return value;
    }
    let Some(f) = parse_float(value.as_bytes()) else {
        return value;
    };
    let mut buf = Vec::with_capacity(24);
    write_openmetrics_float(&mut buf, f);
    if buf == value.as_bytes() {
        return value;
    }
    match String::from_utf8(buf) {
        Ok(s) => Cow::Owned(s),
        Err(_) => value,
    }
}

/// A failure inside one line: the byte offset in the line and what went wrong.
struct Fail {
    at: usize,
    kind: ParseErrorKind,
}

impl Fail {
    fn new(at: usize, kind: ParseErrorKind) -> Fail {
        Fail { at, kind }
    }

    /// "expected X, found <the next few bytes>".
    fn unexpected(line: &[u8], at: usize, expected: &'static str) -> Fail {
        Fail::new(at, ParseErrorKind::Unexpected { expected, found: snippet(line, at) })
    }

    fn quote(line: &[u8], err: QuoteError) -> Fail {
        match err {
            QuoteError::Unterminated(at) => Fail::new(at, ParseErrorKind::UnterminatedString),
            QuoteError::InvalidUtf8(at) => {
                Fail::new(at, ParseErrorKind::InvalidUtf8 { what: "a quoted string" })
            }
            QuoteError::BadEscape(at) => {
                let end = (at + 2).min(line.len());
                let sequence = String::from_utf8_lossy(&line[at..end]).into_owned();
                Fail::new(at, ParseErrorKind::InvalidEscape { sequence })
            }
        }
    }
}

/// A short, quoted excerpt of the line at `at`, for error messages.
fn snippet(line: &[u8], at: usize) -> String {
    match line.get(at..) {
        None | Some([]) => "end of line".to_string(),
        Some(rest) => {
            let cut = &rest[..rest.len().min(16)];
            let more = if rest.len() > cut.len() { "…" } else { "" };
            format!("{:?}{more}", String::from_utf8_lossy(cut))
        }
    }
}

/// Clips input quoted in an error message.
fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(32)];
    String::from_utf8_lossy(cut).into_owned()
}

fn utf8<'a>(line: &'a [u8], start: usize, end: usize, what: &'static str) -> Result<&'a str, Fail> {
    std::str::from_utf8(&line[start..end])
        .map_err(|e| Fail::new(start + e.valid_up_to(), ParseErrorKind::InvalidUtf8 { what }))
}

/// Where a label name sits in the current line, for the duplicate check.
#[derive(Debug, Clone, Copy)]
struct NameSpan {
    start: usize,
    end: usize,
    escaped: bool,
}

/// A streaming parser over one scraped body; iterate it for [`Entry`] values. After the first
/// error the iterator ends. Entries borrow from the body, not from the parser.
#[derive(Debug)]
pub struct TextParser<'a> {
    body: &'a [u8],
    /// Where the next line starts.
    pos: usize,
    /// 1-based number of the current line.
    line: usize,
    format: TextFormat,
    /// The type of the most recent `# TYPE` line. Like Prometheus, it applies to every following
    /// series until the next `# TYPE`, whatever the series' name.
    family_type: MetricType,
    /// Set after an error or after OpenMetrics' `# EOF`: the iterator is then finished.
    done: bool,
    /// Label-name spans of the current line, kept to reuse the allocation across lines.
    names: Vec<NameSpan>,
}

impl<'a> TextParser<'a> {
    /// A parser for a Prometheus text-format (0.0.4) body.
    pub fn new(body: &'a [u8]) -> TextParser<'a> {
        TextParser::with_format(body, TextFormat::Prometheus)
    }

    /// A parser for a body in the given format.
    pub fn with_format(body: &'a [u8], format: TextFormat) -> TextParser<'a> {
        TextParser {
            body,
            pos: 0,
            line: 0,
            format,
            family_type: MetricType::Unknown,
            done: false,
            names: Vec::with_capacity(16),
        }
    }

    fn fail(&mut self, line: usize, fail: Fail) -> ParseError {
        self.done = true;
        ParseError { line, column: fail.at + 1, kind: fail.kind }
    }

    /// One Prometheus-format line; `Ok(None)` for a blank line.
    fn prom_line(&mut self, line: &'a [u8]) -> Result<Option<Entry<'a>>, Fail> {
        let i = skip_blanks(line, 0);
        match line.get(i) {
            None => Ok(None),
            Some(b'#') => self.prom_comment(line, i + 1),
            Some(_) => self.series::<false>(line, i).map(|s| Some(Entry::Series(s))),
        }
    }

    /// A `#` line: `# HELP`, `# TYPE`, or a comment. As in `promparse`, `#` must be followed by a
    /// blank, and the keyword by a blank, for the line to be metadata.
    fn prom_comment(&mut self, line: &'a [u8], hash_end: usize) -> Result<Option<Entry<'a>>, Fail> {
        let kw = skip_blanks(line, hash_end);
        if kw == hash_end {
            return Ok(Some(Entry::Comment));
        }
        let rest = &line[kw..];
        let help = rest.starts_with(b"HELP");
        if !(help || rest.starts_with(b"TYPE")) || !matches!(rest.get(4), Some(b' ' | b'\t')) {
            return Ok(Some(Entry::Comment));
        }
        let expected = if help { "a metric name after HELP" } else { "a metric name after TYPE" };
        let (name, after) = meta_name(line, skip_blanks(line, kw + 5), Escapes::Strict, expected)?;
        // `promparse` takes everything after the one byte that follows the name.
        let text_at = match line.get(after) {
            None => after,
            Some(b' ' | b'\t') => after + 1,
            Some(_) => return Err(Fail::unexpected(line, after, "a blank after the metric name")),
        };
        if help {
            let text = utf8(line, text_at, line.len(), "help text")?;
            Ok(Some(Entry::Help { name, text: unescape(text, false) }))
        } else {
            let text = &line[text_at..];
            let kind = std::str::from_utf8(text)
                .ok()
                .and_then(MetricType::parse)
                .ok_or_else(|| Fail::new(text_at, ParseErrorKind::InvalidType { text: excerpt(text) }))?;
            self.family_type = kind;
            Ok(Some(Entry::Type { name, kind }))
        }
    }

    /// One OpenMetrics line; `Ok(None)` after `# EOF`.
    fn om_line(&mut self, line: &'a [u8]) -> Result<Option<Entry<'a>>, Fail> {
        match line.first() {
            None => {
                Err(Fail::unexpected(line, 0, "a sample or metadata line (OpenMetrics has no blank lines)"))
            }
            Some(b'#') => self.om_comment(line),
            Some(_) => self.series::<true>(line, 0).map(|s| Some(Entry::Series(s))),
        }
    }

    fn om_comment(&mut self, line: &'a [u8]) -> Result<Option<Entry<'a>>, Fail> {
        if line == b"# EOF" {
            self.done = true;
            if self.pos < self.body.len() {
                return Err(Fail::new(line.len(), ParseErrorKind::DataAfterEof));
            }
            return Ok(None);
        }
        let keyword = [b"# HELP ", b"# TYPE ", b"# UNIT "].into_iter().find(|k| line.starts_with(*k));
        let Some(keyword) = keyword else {
            return Err(Fail::unexpected(line, 0, "# HELP, # TYPE, # UNIT or # EOF"));
        };
        let (name, after) = meta_name(line, keyword.len(), Escapes::Lenient, "a metric name")?;
        if line.get(after) != Some(&b' ') {
            return Err(Fail::unexpected(line, after, "a space after the metric name"));
        }
        let text = utf8(line, after + 1, line.len(), "metadata text")?;
        match keyword[2] {
            b'H' => Ok(Some(Entry::Help { name, text: unescape(text, true) })),
            b'T' => {
                let kind = om_type(text).ok_or_else(|| {
                    Fail::new(after + 1, ParseErrorKind::InvalidType { text: excerpt(text.as_bytes()) })
                })?;
                self.family_type = kind;
                Ok(Some(Entry::Type { name, kind }))
            }
            _ => {
                let n = name.as_bytes();
                let not_suffix = !text.is_empty()
                    && (n.len() <= text.len()
                        || !n.ends_with(text.as_bytes())
                        || n[n.len() - text.len() - 1] != b'_');
                if not_suffix {
                    let kind =
                        ParseErrorKind::UnitNotSuffix { unit: text.to_string(), name: name.into_owned() };
                    return Err(Fail::new(after + 1, kind));
                }
                Ok(Some(Entry::Unit { name, unit: text }))
            }
        }
    }

    /// A sample line starting at `start` (a non-blank byte). `OM` selects the OpenMetrics rules:
    /// no blanks inside the series, single spaces around the value, float-second timestamps and
    /// an optional exemplar.
    fn series<const OM: bool>(&mut self, line: &'a [u8], start: usize) -> Result<SeriesLine<'a>, Fail> {
        let escapes = if OM { Escapes::Lenient } else { Escapes::Strict };
        self.names.clear();
        let mut name = None;
        let (labels_at, raw_end) = if is_metric_start(line[start]) {
            let end = metric_name_end(line, start);
            name = Some(NameSpan { start, end, escaped: false });
            let i = if OM { end } else { skip_blanks(line, end) };
            if line.get(i) == Some(&b'{') {
                (i + 1, self.label_set::<OM>(line, i, escapes, &mut name)?)
            } else if OM || i > end || i == line.len() {
                (end, end)
            } else {
                return Err(Fail::unexpected(line, end, "a blank or '{' after the metric name"));
            }
        } else if line[start] == b'{' {
            (start + 1, self.label_set::<OM>(line, start, escapes, &mut name)?)
        } else {
            return Err(Fail::unexpected(line, start, "a metric name or '{'"));
        };
        let Some(name) = name else {
            return Err(Fail::new(start, ParseErrorKind::MissingMetricName));
        };
        let (value, timestamp) = if OM { om_tail(line, raw_end)? } else { prom_tail(line, raw_end)? };
        self.check_duplicates(line)?;
        Ok(SeriesLine {
            // Legacy names are ASCII and quoted strings were checked, so this is UTF-8.
            raw: &line[start..raw_end],
            name_start: name.start - start,
            name_end: name.end - start,
            name_escaped: name.escaped,
            labels_at: labels_at - start,
            value,
            timestamp,
            family_type: self.family_type,
        })
    }

    /// The label set whose `{` is at `open`; returns the index just past `}`. A quoted string
    /// followed by `,` or `}` is the metric name.
    fn label_set<const OM: bool>(
        &mut self,
        line: &[u8],
        open: usize,
        escapes: Escapes,
        name: &mut Option<NameSpan>,
    ) -> Result<usize, Fail> {
        let mut i = open + 1;
        loop {
            if !OM {
                i = skip_blanks(line, i);
            }
            let (span, quoted, after) = match line.get(i) {
                Some(b'}') => return Ok(i + 1),
                Some(&b) if is_label_start(b) => {
                    let end = label_name_end(line, i);
                    (NameSpan { start: i, end, escaped: false }, false, end)
                }
                Some(b'"') => {
                    let q = scan_quoted(line, i, escapes).map_err(|e| Fail::quote(line, e))?;
                    (NameSpan { start: i + 1, end: q.end - 1, escaped: q.escaped }, true, q.end)
                }
                _ => return Err(Fail::unexpected(line, i, "a label name or '}'")),
            };
            i = if OM { after } else { skip_blanks(line, after) };
            let next = line.get(i).copied();
            if quoted && matches!(next, Some(b',' | b'}')) {
                if name.is_some() {
                    return Err(Fail::new(span.start - 1, ParseErrorKind::DuplicateMetricName));
                }
                if span.start == span.end {
                    return Err(Fail::new(span.start - 1, ParseErrorKind::EmptyMetricName));
                }
                *name = Some(span);
                if next == Some(b'}') {
                    return Ok(i + 1);
                }
                i += 1;
                continue;
            }
            if next != Some(b'=') {
                return Err(Fail::unexpected(line, i, "'=' after the label name"));
            }
            if span.start == span.end {
                return Err(Fail::new(span.start - 1, ParseErrorKind::EmptyLabelName));
            }
            if !span.escaped && &line[span.start..span.end] == METRIC_NAME.as_bytes() {
                let kind = ParseErrorKind::DuplicateLabel { name: METRIC_NAME.to_string() };
                return Err(Fail::new(span.start, kind));
            }
            self.names.push(span);
            i = if OM { i + 1 } else { skip_blanks(line, i + 1) };
            if line.get(i) != Some(&b'"') {
                return Err(Fail::unexpected(line, i, "a quoted label value"));
            }
            i = scan_quoted(line, i, escapes).map_err(|e| Fail::quote(line, e))?.end;
            if OM {
                match line.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => {}
                    _ => return Err(Fail::unexpected(line, i, "',' or '}' after the label value")),
                }
            } else {
                // `promparse` also accepts a missing comma between pairs.
                i = skip_blanks(line, i);
                if line.get(i) == Some(&b',') {
                    i += 1;
                }
            }
        }
    }

    /// Rejects a label name given twice among the names recorded for `line`.
    fn check_duplicates(&self, line: &[u8]) -> Result<(), Fail> {
        let names = &self.names;
        if names.len() < 2 {
            return Ok(());
        }
        // A 64-bit signature of (first byte, last byte, length) per name: without a collision no
        // two names can be equal. Names with escapes are compared decoded, since OpenMetrics'
        // lenient escapes give some texts two spellings (`\z` and `\\z`).
        let text = |n: &NameSpan| &line[n.start..n.end];
        // Names were validated as they were scanned.
        let decoded = |n: &NameSpan| decode_str(std::str::from_utf8(text(n)).unwrap_or_default(), n.escaped);
        let mut seen = 0u64;
        let mut collision = false;
        for n in names {
            let t = text(n);
            let bit = (usize::from(t[0]) * 31 + usize::from(t[t.len() - 1]) + t.len()) & 63;
            collision |= seen & (1 << bit) != 0;
            seen |= 1 << bit;
        }
        let escaped = names.iter().any(|n| n.escaped);
        if !collision && !escaped {
            return Ok(());
        }
        for (k, a) in names.iter().enumerate() {
            for b in &names[k + 1..] {
                let same = if a.escaped || b.escaped { decoded(a) == decoded(b) } else { text(a) == text(b) };
                if same {
                    let kind = ParseErrorKind::DuplicateLabel { name: decoded(b).into_owned() };
                    return Err(Fail::new(b.start, kind));
                }
            }
        }
        Ok(())
    }
}

/// The metric name of a `# HELP`/`# TYPE`/`# UNIT` line at `at`, legacy or quoted; returns the
/// decoded name and the index just past it.
fn meta_name<'a>(
    line: &'a [u8],
    at: usize,
    escapes: Escapes,
    expected: &'static str,
) -> Result<(Cow<'a, str>, usize), Fail> {
    match line.get(at) {
        Some(b'"') => {
            let q = scan_quoted(line, at, escapes).map_err(|e| Fail::quote(line, e))?;
            if q.end == at + 2 {
                return Err(Fail::new(at, ParseErrorKind::EmptyMetricName));
            }
            let inner = utf8(line, at + 1, q.end - 1, "the metric name")?;
            Ok((if q.escaped { unescape(inner, true) } else { Cow::Borrowed(inner) }, q.end))
        }
        Some(&b) if is_metric_start(b) => {
            let end = metric_name_end(line, at);
            Ok((Cow::Borrowed(utf8(line, at, end, "the metric name")?), end))
        }
        _ => Err(Fail::unexpected(line, at, expected)),
    }
}

/// The OpenMetrics type keywords (no `untyped`, no `gauge_histogram`).
fn om_type(s: &str) -> Option<MetricType> {
    Some(match s {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "gaugehistogram" => MetricType::GaugeHistogram,
        "summary" => MetricType::Summary,
        "info" => MetricType::Info,
        "stateset" => MetricType::StateSet,
        "unknown" => MetricType::Unknown,
        _ => return None,
    })
}

fn value_at(line: &[u8], start: usize, end: usize) -> Result<f64, Fail> {
    if start == end {
        return Err(Fail::unexpected(line, start, "a value"));
    }
    let t = &line[start..end];
    parse_float(t).ok_or_else(|| Fail::new(start, ParseErrorKind::InvalidValue { text: excerpt(t) }))
}

fn invalid_timestamp(line: &[u8], start: usize, end: usize) -> Fail {
    Fail::new(start, ParseErrorKind::InvalidTimestamp { text: excerpt(&line[start..end]) })
}

/// Value and optional integer millisecond timestamp after the series, blanks around them.
fn prom_tail(line: &[u8], from: usize) -> Result<(f64, Option<i64>), Fail> {
    let start = skip_blanks(line, from);
    let end = token_end(line, start);
    let value = value_at(line, start, end)?;
    let ts_start = skip_blanks(line, end);
    if ts_start == line.len() {
        return Ok((value, None));
    }
    let ts_end = token_end(line, ts_start);
    let ts =
        parse_timestamp(&line[ts_start..ts_end]).ok_or_else(|| invalid_timestamp(line, ts_start, ts_end))?;
    let rest = skip_blanks(line, ts_end);
    if rest != line.len() {
        return Err(Fail::unexpected(line, rest, "the end of the line after the timestamp"));
    }
    Ok((value, Some(ts)))
}

/// The end of an OpenMetrics token: the next space or the end of the line.
fn om_token_end(line: &[u8], start: usize) -> usize {
    line.get(start..).and_then(|rest| memchr(b' ', rest)).map_or(line.len(), |k| start + k)
}

/// OpenMetrics: ` value`, then optionally ` timestamp` (float seconds), then optionally
/// ` # {exemplar labels} value [timestamp]`.
fn om_tail(line: &[u8], from: usize) -> Result<(f64, Option<i64>), Fail> {
    if line.get(from) != Some(&b' ') {
        return Err(Fail::unexpected(line, from, "a space before the value"));
    }
    let end = om_token_end(line, from + 1);
    let value = value_at(line, from + 1, end)?;
    if end == line.len() {
        return Ok((value, None));
    }
    if line[end..].starts_with(b" # {") {
        exemplar(line, end + 3)?;
        return Ok((value, None));
    }
    let ts_start = end + 1;
    let ts_end = om_token_end(line, ts_start);
    if ts_start == ts_end {
        return Err(Fail::unexpected(line, ts_start, "a timestamp"));
    }
    let ts = parse_seconds_timestamp(&line[ts_start..ts_end])
        .ok_or_else(|| invalid_timestamp(line, ts_start, ts_end))?;
    if ts_end == line.len() {
        return Ok((value, Some(ts)));
    }
    if line[ts_end..].starts_with(b" # {") {
        exemplar(line, ts_end + 3)?;
        return Ok((value, Some(ts)));
    }
    Err(Fail::unexpected(line, ts_end, "the end of the line or an exemplar"))
}

/// Validates an exemplar whose `{` is at `open`, up to the end of the line. Exemplars are not
/// kept: the scraper stores none.
fn exemplar(line: &[u8], open: usize) -> Result<(), Fail> {
    let mut i = open + 1;
    let mut chars = 0;
    let count = |start: usize, end: usize, escaped: bool| -> Result<usize, Fail> {
        let s = utf8(line, start, end, "the exemplar labels")?;
        Ok(if escaped { unescape(s, true).chars().count() } else { s.chars().count() })
    };
    loop {
        let after_name = match line.get(i) {
            Some(b'}') => break,
            Some(&b) if is_label_start(b) => {
                let end = label_name_end(line, i);
                chars += end - i;
                end
            }
            Some(b'"') => {
                let q = scan_quoted(line, i, Escapes::Lenient).map_err(|e| Fail::quote(line, e))?;
                chars += count(i + 1, q.end - 1, q.escaped)?;
                q.end
            }
            _ => return Err(Fail::unexpected(line, i, "an exemplar label name or '}'")),
        };
        if line.get(after_name) != Some(&b'=') {
            return Err(Fail::unexpected(line, after_name, "'=' after the exemplar label name"));
        }
        let open_quote = after_name + 1;
        if line.get(open_quote) != Some(&b'"') {
            return Err(Fail::unexpected(line, open_quote, "a quoted exemplar label value"));
        }
        let q = scan_quoted(line, open_quote, Escapes::Lenient).map_err(|e| Fail::quote(line, e))?;
        chars += count(open_quote + 1, q.end - 1, q.escaped)?;
        i = q.end;
        match line.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            _ => return Err(Fail::unexpected(line, i, "',' or '}' in the exemplar labels")),
        }
    }
    if chars > EXEMPLAR_MAX_CHARS {
        return Err(Fail::new(open, ParseErrorKind::ExemplarTooLong));
    }
    let close = i + 1;
    if line.get(close) != Some(&b' ') {
        return Err(Fail::unexpected(line, close, "a space before the exemplar value"));
    }
    let end = om_token_end(line, close + 1);
    value_at(line, close + 1, end)?;
    if end == line.len() {
        return Ok(());
    }
    let ts_start = end + 1;
    let ts_end = om_token_end(line, ts_start);
    if ts_start == ts_end || ts_end != line.len() {
        return Err(Fail::unexpected(line, ts_start, "an exemplar timestamp at the end of the line"));
    }
    parse_seconds_timestamp(&line[ts_start..ts_end])
        .ok_or_else(|| invalid_timestamp(line, ts_start, ts_end))?;
    Ok(())
}

/// A sample line of a known series found by [`TextParser::peek_known`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownLine {
    pub value: f64,
    pub timestamp: Option<i64>,
    /// Bytes of the line, newline included.
    len: usize,
}

impl<'a> TextParser<'a> {
    /// The fast path for a series seen before: when the next line is a sample of exactly the
    /// series text `series` (a [`SeriesLine::raw`] of an earlier parse) under the same `# TYPE`
    /// (`family`), returns its value and timestamp without parsing the labels again; nothing is
    /// consumed until [`TextParser::consume`]. `None` for any other line — including one whose
    /// tail is an error, which [`Iterator::next`] then reports as usual.
    pub fn peek_known(&self, series: &[u8], family: MetricType) -> Option<KnownLine> {
        if self.done || series.is_empty() || family != self.family_type {
            return None;
        }
        let rest = &self.body[self.pos.min(self.body.len())..];
        // The text must be followed by a blank (a longer name or more labels differ there).
        if !rest.starts_with(series) || !matches!(rest.get(series.len()), Some(b' ' | b'\t')) {
            return None;
        }
        let (line, len) = match memchr(b'\n', rest) {
            Some(k) => (&rest[..k], k + 1),
            None => (rest, rest.len()),
        };
        let tail = match self.format {
            TextFormat::Prometheus => prom_tail(line, series.len()),
            TextFormat::OpenMetrics => om_tail(line, series.len()),
        };
        let (value, timestamp) = tail.ok()?;
        Some(KnownLine { value, timestamp, len })
    }

    /// Moves past the line that [`TextParser::peek_known`] returned `known` for.
    pub fn consume(&mut self, known: KnownLine) {
        self.pos += known.len;
        self.line += 1;
    }
}

impl<'a> Iterator for TextParser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let rest = &self.body[self.pos.min(self.body.len())..];
            if rest.is_empty() {
                self.done = true;
                if self.format == TextFormat::OpenMetrics {
                    let line = self.line + 1;
                    return Some(Err(self.fail(line, Fail::new(0, ParseErrorKind::MissingEof))));
                }
                return None;
            }
            let (line, len) = match memchr(b'\n', rest) {
                Some(k) => (&rest[..k], k + 1),
                None => (rest, rest.len()),
            };
            self.pos += len;
            self.line += 1;
            let parsed = match self.format {
                TextFormat::Prometheus => self.prom_line(line),
                TextFormat::OpenMetrics => self.om_line(line),
            };
            match parsed {
                Ok(Some(entry)) => return Some(Ok(entry)),
                Ok(None) => {}
                Err(fail) => return Some(Err(self.fail(self.line, fail))),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::lex::NORMAL_NAN_BITS;
    use super::*;

    /// True for the NaN bit pattern the parser gives every scraped NaN.
    fn is_normal_nan(v: f64) -> bool {
        v.to_bits() == NORMAL_NAN_BITS
    }

    fn entries(body: &str) -> Vec<Entry<'_>> {
        TextParser::new(body.as_bytes()).collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{body:?}: {e}"))
    }

    fn series(body: &str) -> SeriesLine<'_> {
        match entries(body).into_iter().find(|e| matches!(e, Entry::Series(_))) {
            Some(Entry::Series(s)) => s,
            _ => panic!("no series in {body:?}"),
        }
    }

    fn error(body: &[u8]) -> ParseError {
        match TextParser::new(body).find_map(Result::err) {
            Some(e) => e,
            None => panic!("{:?} parsed", String::from_utf8_lossy(body)),
        }
    }

    fn pairs(s: &SeriesLine<'_>) -> Vec<(String, String)> {
        s.labels().map(|(n, v)| (n.into_owned(), v.into_owned())).collect()
    }

    fn owned(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn peek_known_takes_only_an_identical_series_text() {
        let body = b"# TYPE m counter\nm{a=\"1\"} 5 1000\nm{a=\"1\"}x 6\nm 7\nm {a=\"2\"} 8\n";
        let mut p = TextParser::new(body);
        assert!(matches!(p.next(), Some(Ok(Entry::Type { .. }))));
        assert_eq!(p.peek_known(b"m{a=\"1\"}", MetricType::Gauge), None, "another type");
        assert_eq!(p.peek_known(b"m{a=\"1", MetricType::Counter), None, "a prefix only");
        let k = p.peek_known(b"m{a=\"1\"}", MetricType::Counter).expect("known");
        assert_eq!((k.value, k.timestamp), (5.0, Some(1000)));
        p.consume(k);
        // A bad tail is left for `next`, which reports it with its position.
        assert_eq!(p.peek_known(b"m{a=\"1\"}", MetricType::Counter), None);
        let e = p.next().and_then(Result::err).expect("an error");
        assert_eq!(e.line, 3);
        let mut p = TextParser::new(b"m {a=\"2\"} 8\nm 7\n");
        assert_eq!(p.peek_known(b"m", MetricType::Unknown), None, "labels after a blank are not a value");
        assert!(matches!(p.next(), Some(Ok(Entry::Series(_)))));
        let k = p.peek_known(b"m", MetricType::Unknown).expect("known");
        assert_eq!((k.value, k.timestamp), (7.0, None));
        p.consume(k);
        assert!(p.next().is_none());
    }

    #[test]
    fn plain_series_borrows_everything() {
        let s = series("http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n");
        assert_eq!(s.raw(), b"http_requests_total{method=\"post\",code=\"200\"}");
        assert!(matches!(s.name(), Cow::Borrowed("http_requests_total")));
        assert_eq!(pairs(&s), owned(&[("method", "post"), ("code", "200")]));
        assert!(s.labels().all(|(n, v)| matches!((n, v), (Cow::Borrowed(_), Cow::Borrowed(_)))));
        assert_eq!(s.value(), 1027.0);
        assert_eq!(s.timestamp(), Some(1395066363000));
        assert_eq!(
            s.to_labels(),
            Labels::from_pairs(&[("__name__", "http_requests_total"), ("code", "200"), ("method", "post")])
        );
    }

    #[test]
    fn escapes_in_label_values_and_help() {
        let s = series(r#"m{a="x\"y\\z\nw"} 1"#);
        assert_eq!(pairs(&s), owned(&[("a", "x\"y\\z\nw")]));
        let e = entries("# HELP m line\\none \\\\ \\\"q\\\"\n");
        assert_eq!(
            e,
            vec![Entry::Help { name: "m".into(), text: Cow::Owned("line\none \\ \\\"q\\\"".to_string()) }]
        );
        let e = error(br#"m{a="\t"} 1"#);
        assert_eq!(e.kind, ParseErrorKind::InvalidEscape { sequence: "\\t".into() });
        assert_eq!((e.line, e.column), (1, 6));
    }

    #[test]
    fn quoted_utf8_names() {
        let s = series(r#"{"my.metric", "a.b"="x", c="y",} 2"#);
        assert_eq!(s.name(), "my.metric");
        assert_eq!(pairs(&s), owned(&[("a.b", "x"), ("c", "y")]));
        let s = series(r#"{c="y", "my\"metric\n"} 2"#);
        assert_eq!(s.name(), "my\"metric\n");
        assert_eq!(pairs(&s), owned(&[("c", "y")]));
        let s = series("{\"Björn\",\"名前\"=\"値\"} 3");
        assert_eq!(s.name(), "Björn");
        assert_eq!(pairs(&s), owned(&[("名前", "値")]));
        let e = entries("# TYPE \"a.b\" counter\n# HELP \"a\\\"b\" text\n");
        assert_eq!(e[0], Entry::Type { name: "a.b".into(), kind: MetricType::Counter });
        assert_eq!(e[1], Entry::Help { name: Cow::Owned("a\"b".into()), text: "text".into() });
        assert_eq!(error(b"{} 1").kind, ParseErrorKind::MissingMetricName);
        assert_eq!(error(b"{a=\"ok\"} 1").kind, ParseErrorKind::MissingMetricName);
        assert_eq!(error(b"{\"a\",\"b\"} 1").kind, ParseErrorKind::DuplicateMetricName);
        assert_eq!(error(b"a{\"b\"} 1").kind, ParseErrorKind::DuplicateMetricName);
        assert_eq!(error(b"{\"\"} 1").kind, ParseErrorKind::EmptyMetricName);
        assert_eq!(error(b"a{\"\"=\"x\"} 1").kind, ParseErrorKind::EmptyLabelName);
    }

    #[test]
    fn whitespace_where_promparse_allows_it() {
        for body in [
            "  m { a = \"1\" ,b=\"2\"\t} 5",
            "m{a=\"1\" b=\"2\"} 5",
            "m{a=\"1\",b=\"2\",}5",
            "\tm{ a=\"1\", b= \"2\" }\t5  \t",
        ] {
            let s = series(body);
            assert_eq!(pairs(&s), owned(&[("a", "1"), ("b", "2")]), "{body:?}");
            assert_eq!(s.value(), 5.0);
        }
        assert_eq!(series("m  \t 7 \t 123  ").timestamp(), Some(123));
        assert_eq!(series("m {a=\"1\"} 5").raw(), b"m {a=\"1\"}");
    }

    #[test]
    fn special_values_and_nan_bits() {
        assert!(is_normal_nan(series("m NaN").value()));
        assert!(is_normal_nan(series("m nan").value()));
        assert_eq!(series("m +Inf").value(), f64::INFINITY);
        assert_eq!(series("m -Inf").value(), f64::NEG_INFINITY);
        assert_eq!(series("m Infinity").value(), f64::INFINITY);
        assert_eq!(series("m 1e-3").value(), 0.001);
        assert_eq!(series("m 08").value(), 8.0);
        assert_eq!(series("m .3").value(), 0.3);
        assert_eq!(series("m -0").value().to_bits(), (-0.0f64).to_bits());
        for bad in ["m 1_2", "m 0x1p-3", "m 0x1", "m 0b1", "m 0o1", "m true", "m 1e400", "m +NaN", "m 1\r"] {
            assert!(matches!(error(bad.as_bytes()).kind, ParseErrorKind::InvalidValue { .. }), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_integers() {
        assert_eq!(series("m 1 -2").timestamp(), Some(-2));
        assert_eq!(series("m 1").timestamp(), None);
        assert!(matches!(error(b"m 1 2.72").kind, ParseErrorKind::InvalidTimestamp { .. }));
        assert!(matches!(error(b"m 1 1_2").kind, ParseErrorKind::InvalidTimestamp { .. }));
        let e = error(b"m 1 2 3");
        assert!(matches!(e.kind, ParseErrorKind::Unexpected { .. }));
        assert_eq!(e.column, 7);
        assert!(matches!(error(b"m 1 2\x00").kind, ParseErrorKind::InvalidTimestamp { .. }));
    }

    #[test]
    fn comments_and_metadata() {
        let body =
            "# HELP a Some help.\n#\tTYPE a counter\n#HELP not meta\n# HELP\n# TYPEX x\n\n# random\na 1\n";
        let e = entries(body);
        assert_eq!(e[0], Entry::Help { name: "a".into(), text: "Some help.".into() });
        assert_eq!(e[1], Entry::Type { name: "a".into(), kind: MetricType::Counter });
        assert_eq!(&e[2..5], &[Entry::Comment, Entry::Comment, Entry::Comment]);
        assert_eq!(e[5], Entry::Comment);
        assert!(matches!(e[6], Entry::Series(_)));
        assert_eq!(e.len(), 7);
        // promparse drops exactly one separator byte before the text.
        assert_eq!(entries("# HELP a  two")[0], Entry::Help { name: "a".into(), text: " two".into() });
        assert_eq!(entries("# HELP a")[0], Entry::Help { name: "a".into(), text: "".into() });
        assert_eq!(
            entries("# TYPE a untyped")[0],
            Entry::Type { name: "a".into(), kind: MetricType::Unknown }
        );
        assert!(matches!(error(b"# TYPE a  counter").kind, ParseErrorKind::InvalidType { .. }));
        assert!(matches!(error(b"# TYPE a bla").kind, ParseErrorKind::InvalidType { .. }));
        assert!(matches!(error(b"# TYPE a").kind, ParseErrorKind::InvalidType { .. }));
        assert!(matches!(error(b"# HELP #").kind, ParseErrorKind::Unexpected { .. }));
        assert!(matches!(error(b"# HELP a\xff").kind, ParseErrorKind::Unexpected { .. }));
        assert!(matches!(error(b"# HELP a \xff").kind, ParseErrorKind::InvalidUtf8 { .. }));
        // NUL is fine in help text, comments and label values, nowhere else.
        assert_eq!(entries("# HELP a x\0y\n# c\0\nm{a=\"\0\"} 1").len(), 3);
        assert!(matches!(error(b"a\0{b=\"c\"} 1").kind, ParseErrorKind::Unexpected { .. }));
        assert!(matches!(error(b"\0").kind, ParseErrorKind::Unexpected { .. }));
    }

    #[test]
    fn errors_carry_line_numbers() {
        let e = error(b"a 1\n\n# ok\nb{c=\"d\"} 2\nbad{=\"x\"} 3\nnever 4\n");
        assert_eq!((e.line, e.column), (5, 5));
        assert_eq!(e.to_string(), "line 5: expected a label name or '}', found \"=\\\"x\\\"} 3\" (column 5)");
        let e = error(b"ok 1\nm{a=\"unterminated} 1\n");
        assert_eq!((e.line, e.kind), (2, ParseErrorKind::UnterminatedString));
        // A raw newline inside quotes ends the line, so the string is unterminated.
        assert_eq!(error(b"m{a=\"new\nline\"} 1").kind, ParseErrorKind::UnterminatedString);
        // The iterator ends after an error.
        let mut p = TextParser::new(b"x{ 1\ny 2\n");
        assert!(matches!(p.next(), Some(Err(_))));
        assert!(p.next().is_none());
    }

    #[test]
    fn label_set_errors() {
        for (body, what) in [
            (&b"m{b='c'} 1"[..], "quote"),
            (b"m{b=\n", "value"),
            (b"m{\xff=\"foo\"} 1", "name"),
            (b"m{b=\"\xff\"} 1", "utf8"),
            (b"m{label+=\"x\"} 1", "equal"),
            (b"m{a=\"1\",,b=\"2\"} 1", "comma"),
            (b"{\"a\".b=\"c\"} 1", "equal"),
            (b"{A}0", "equal"),
            (b"m{a=\"1\"}} 1", "value"),
            (b"m", "value"),
            (b"m ", "value"),
            (b"a-1 2", "blank"),
            (b"@m 1", "start"),
        ] {
            let e = TextParser::new(body).find_map(Result::err);
            assert!(e.is_some(), "{what}: {:?} parsed", String::from_utf8_lossy(body));
        }
        let e = error(b"m{a=\"1\",b=\"2\",a=\"3\"} 1");
        assert_eq!(e.kind, ParseErrorKind::DuplicateLabel { name: "a".into() });
        let e = error(b"m{a=\"1\",\"a\"=\"3\"} 1");
        assert_eq!(e.kind, ParseErrorKind::DuplicateLabel { name: "a".into() });
        // Same duplicate-check signature, different names.
        assert_eq!(pairs(&series("m{aa=\"1\",bB=\"2\"} 1")), owned(&[("aa", "1"), ("bB", "2")]));
        let e = error(b"m{\"a\\nb\"=\"1\",\"a\\nb\"=\"2\"} 1");
        assert_eq!(e.kind, ParseErrorKind::DuplicateLabel { name: "a\nb".into() });
        let e = error(b"m{__name__=\"m\"} 1");
        assert_eq!(e.kind, ParseErrorKind::DuplicateLabel { name: "__name__".into() });
        assert!(matches!(error(b"m{a=\"\xbd\"} 1").kind, ParseErrorKind::InvalidUtf8 { .. }));
    }

    #[test]
    fn le_and_quantile_are_normalised_after_their_type() {
        let body = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_bucket{le=\"0.5\"} 1\n\
                    # TYPE s summary\ns{quantile=\"1e-1\",le=\"1\"} 1\n# TYPE g gauge\ng{le=\"1\"} 1\n";
        let got: Vec<_> = entries(body)
            .iter()
            .filter_map(|e| match e {
                Entry::Series(s) => Some(pairs(s)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                owned(&[("le", "1.0")]),
                owned(&[("le", "+Inf")]),
                owned(&[("le", "0.5")]),
                owned(&[("quantile", "0.1"), ("le", "1")]),
                owned(&[("le", "1")]),
            ]
        );
    }

    #[test]
    fn openmetrics_mode() {
        let body = "# TYPE a counter\n# UNIT a_seconds seconds\n# HELP a h\\\"i\na_total{x=\"1\"} 1 1.5 # {t=\"z\"} 0.5 2\n\
                    a_created 1.7e9\n# EOF\n";
        let got: Vec<_> = TextParser::with_format(body.as_bytes(), TextFormat::OpenMetrics)
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 5);
        assert_eq!(got[1], Entry::Unit { name: "a_seconds".into(), unit: "seconds" });
        assert_eq!(got[2], Entry::Help { name: "a".into(), text: Cow::Owned("h\"i".into()) });
        match &got[3] {
            Entry::Series(s) => assert_eq!((s.value(), s.timestamp()), (1.0, Some(1500))),
            other => panic!("{other:?}"),
        }
        let om_err = |b: &str| {
            TextParser::with_format(b.as_bytes(), TextFormat::OpenMetrics)
                .find_map(Result::err)
                .map(|e| e.kind)
        };
        assert_eq!(om_err("a 1\n"), Some(ParseErrorKind::MissingEof));
        assert_eq!(om_err("a 1\n# EOF\nb 1"), Some(ParseErrorKind::DataAfterEof));
        assert!(om_err("a 1\n\n# EOF\n").is_some());
        assert!(om_err("a  1\n# EOF\n").is_some());
        assert!(om_err("a{x=\"1\" ,y=\"2\"} 1\n# EOF\n").is_some());
        assert!(om_err("# comment\n# EOF\n").is_some());
        assert!(om_err("# TYPE a untyped\n# EOF\n").is_some());
        assert!(matches!(om_err("# UNIT a seconds\n# EOF\n"), Some(ParseErrorKind::UnitNotSuffix { .. })));
        assert!(om_err("a 1 NaN\n# EOF\n").is_some());
        let long = format!("a_total 1 # {{a=\"{}\"}} 1\n# EOF\n", "x".repeat(128));
        assert_eq!(om_err(&long), Some(ParseErrorKind::ExemplarTooLong));
        assert_eq!(om_err("# EOF"), None);
    }

    proptest::proptest! {
        /// Any input either parses or errors, never panics, and every accepted series decodes.
        #[test]
        fn arbitrary_bytes_never_panic(
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"{}\"=, \t\n#\\_:aZ09.eE+-InfNa\xff\xc3\xa9".to_vec()),
                    proptest::prelude::any::<u8>(),
                ],
                0..160,
            ),
            om in proptest::prelude::any::<bool>(),
        ) {
            let format = if om { TextFormat::OpenMetrics } else { TextFormat::Prometheus };
            for entry in TextParser::with_format(&body, format) {
                if let Ok(Entry::Series(s)) = entry {
                    let labels = s.to_labels();
                    proptest::prop_assert_eq!(labels.len(), 1 + s.labels().filter(|(_, v)| !v.is_empty()).count());
                    proptest::prop_assert_eq!(labels.metric_name().map(str::to_owned), Some(s.name().into_owned()));
                }
            }
        }
    }

    #[test]
    fn content_type_selects_format() {
        let om = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        assert_eq!(TextFormat::from_content_type(om), TextFormat::OpenMetrics);
        assert_eq!(TextFormat::from_content_type("text/plain; version=0.0.4"), TextFormat::Prometheus);
        assert_eq!(TextFormat::from_content_type(""), TextFormat::Prometheus);
    }
}
