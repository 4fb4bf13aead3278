//! The PromQL test-script language (`load`, `clear`, `eval` blocks, as in Prometheus's `.test`
//! files): parsing scripts, loading their data into any storage `Appender` ([`load`]), judging
//! evals ([`eval`]) and running whole scripts ([`runner`]). Used by the conformance harness over
//! Prometheus's scripts and by our own behaviour tests in `tests/data/promql`.

pub mod eval;
pub mod runner;

use std::time::Duration;

use crate::model::{Label, Labels, MatchOp, STALE_NAN, parse_duration, parse_selector};
use crate::storage::{AppendError, Appendable, StorageError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line}: {message}")]
    Unsupported { line: usize, message: String },
    #[error("appending test data failed: {0}")]
    Append(String),
}

impl From<AppendError> for ScriptError {
    fn from(e: AppendError) -> Self {
        ScriptError::Append(e.to_string())
    }
}

impl From<StorageError> for ScriptError {
    fn from(e: StorageError) -> Self {
        ScriptError::Append(e.to_string())
    }
}

/// One point of a series description: a value, a gap, or a staleness marker (a value).
pub type Point = Option<f64>;

/// A series of a `load` block with its points at 0, step, 2·step, …
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub points: Vec<Point>,
    /// The series has native-histogram samples (`{{…}}`), which our float storage cannot hold:
    /// it is not loaded, and `points` is empty.
    pub histogram: bool,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Load {
        line: usize,
        step: Duration,
        series: Vec<SeriesData>,
        /// `load_with_nhcb`: classic histograms are also to be stored as native histograms with
        /// custom buckets (which we cannot hold; the float series are loaded as usual).
        nhcb: bool,
        /// The block has start-timestamp (`@st`) lines, which are not loaded.
        start_timestamps: bool,
    },
    Clear {
        line: usize,
    },
    /// An `eval` block, kept as text lines for the PromQL harness to interpret.
    Eval {
        line: usize,
        header: String,
        body: Vec<String>,
    },
}

/// Splits a script into commands. Comment lines end blocks, like blank lines.
pub fn parse_script(text: &str) -> Result<Vec<Command>, ScriptError> {
    let lines: Vec<&str> =
        text.lines().map(|l| if l.trim_start().starts_with('#') { "" } else { l.trim() }).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let head = lines[i];
        i += 1;
        if head.is_empty() {
            continue;
        }
        let mut body = Vec::new();
        // `clear` takes no body: a command may follow on the very next line.
        while head != "clear" && i < lines.len() && !lines[i].is_empty() {
            body.push((i + 1, lines[i]));
            i += 1;
        }
        let mut words = head.split_whitespace();
        match words.next() {
            Some(cmd @ ("load" | "load_with_nhcb")) => {
                let step_s = words.next().ok_or_else(|| syntax(line_no, "load needs a step"))?;
                let step = parse_duration(step_s).map_err(|e| syntax(line_no, &e.to_string()))?;
                let mut series = Vec::new();
                let mut start_timestamps = false;
                for (n, l) in body {
                    if is_start_timestamp_line(l) {
                        start_timestamps = true;
                        continue;
                    }
                    series.push(parse_series_line(l).map_err(|m| syntax(n, &m))?);
                }
                out.push(Command::Load {
                    line: line_no,
                    step,
                    series,
                    nhcb: cmd == "load_with_nhcb",
                    start_timestamps,
                });
            }
            Some("clear") => out.push(Command::Clear { line: line_no }),
            Some(w) if w.starts_with("eval") => out.push(Command::Eval {
                line: line_no,
                header: head.to_string(),
                body: body.into_iter().map(|(_, l)| l.to_string()).collect(),
            }),
            Some(other) => return Err(syntax(line_no, &format!("unknown command {other:?}"))),
            None => {}
        }
    }
    Ok(out)
}

fn syntax(line: usize, message: &str) -> ScriptError {
    ScriptError::Syntax { line, message: message.to_string() }
}

/// Whether a load line gives start timestamps (`name{labels}@st offsets…`).
fn is_start_timestamp_line(line: &str) -> bool {
    selector_end(line)
        .is_some_and(|end| line[..end].ends_with("@st") || line[end..].trim_start().starts_with("@st"))
}

/// Parses `name{labels} values…`.
pub fn parse_series_line(line: &str) -> Result<SeriesData, String> {
    let split = selector_end(line).ok_or("missing values after the series")?;
    let (sel, values) = line.split_at(split);
    let labels = selector_labels(sel.trim())?;
    if values.contains("{{") {
        return Ok(SeriesData { labels, points: Vec::new(), histogram: true });
    }
    let points = parse_values(values)?;
    Ok(SeriesData { labels, points, histogram: false })
}

/// Where the series selector ends: after the closing brace, or at the first blank.
fn selector_end(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    let mut in_str: Option<u8> = None;
    let mut depth = 0;
    for (i, &c) in b.iter().enumerate() {
        match in_str {
            Some(q) if c == q && (i == 0 || b[i - 1] != b'\\') => in_str = None,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' | b'`' => in_str = Some(c),
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                b' ' | b'\t' if depth == 0 => return Some(i),
                _ => {}
            },
        }
    }
    None
}

/// The labels a selector of only `=` matchers describes (`{}` is the empty set).
pub fn selector_labels(sel: &str) -> Result<Labels, String> {
    if sel == "{}" {
        return Ok(Labels::empty());
    }
    let matchers = parse_selector(sel).map_err(|e| e.to_string())?;
    let mut labels = Vec::new();
    for m in matchers {
        if m.op != MatchOp::Equal {
            return Err(format!("series descriptions take only = matchers, got {m}"));
        }
        labels.push(Label::new(m.name, m.value));
    }
    Ok(Labels::new(labels))
}

/// Expands value items: numbers, `a+bxn`, `a-bxn`, `axn`, `_`, `_xn`, `stale`.
pub fn parse_values(s: &str) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        if item.starts_with("{{") {
            return Err("native histogram values are not supported".into());
        }
        match item {
            "_" => out.push(None),
            "stale" => out.push(Some(STALE_NAN)),
            _ => {
                if let Some(n) = item.strip_prefix("_x") {
                    let n: usize = n.parse().map_err(|_| format!("bad repeat {item:?}"))?;
                    out.extend(std::iter::repeat_n(None, n));
                    continue;
                }
                let Some((base, count)) = item.rsplit_once('x') else {
                    out.push(Some(parse_number(item)?));
                    continue;
                };
                // As in Prometheus's series descriptions, "0x10" repeats 0 (it is not hex).
                if base.is_empty() || count.is_empty() {
                    out.push(Some(parse_number(item)?));
                    continue;
                }
                let n: usize = count.parse().map_err(|_| format!("bad repeat count in {item:?}"))?;
                // Find the operator that separates start and increment (not a leading sign or exponent).
                let bytes = base.as_bytes();
                let op = (1..bytes.len()).rev().find(|&i| {
                    (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E')
                });
                match op {
                    Some(i) => {
                        let start = parse_number(&base[..i])?;
                        let mut delta = parse_number(&base[i + 1..])?;
                        if bytes[i] == b'-' {
                            delta = -delta;
                        }
                        for k in 0..=n {
                            out.push(Some(start + delta * k as f64));
                        }
                    }
                    None => {
                        let v = parse_number(base)?;
                        out.extend(std::iter::repeat_n(Some(v), n + 1));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// PromQL number literals as the scripts use them (incl. `Inf`, `NaN`, hex).
pub fn parse_number(s: &str) -> Result<f64, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).map(|v| v as f64).map_err(|_| format!("bad number {s:?}"))?
    } else {
        match body.to_ascii_lowercase().as_str() {
            "inf" | "infinity" => f64::INFINITY,
            "nan" => f64::NAN,
            _ => body.parse::<f64>().map_err(|_| format!("bad number {s:?}"))?,
        }
    };
    Ok(if neg { -v } else { v })
}

/// Appends a `load` block's samples (timestamps in ms from the epoch). A series described twice
/// in one block takes its last description, as in Prometheus's harness.
pub fn load(storage: &dyn Appendable, step: Duration, series: &[SeriesData]) -> Result<(), ScriptError> {
    let step_ms = step.as_millis() as i64;
    let mut app = storage.appender();
    let last_of = |i: usize| series.iter().rposition(|s| s.labels == series[i].labels) == Some(i);
    for s in series.iter().enumerate().filter(|(i, s)| !s.histogram && last_of(*i)).map(|(_, s)| s) {
        let mut cached = None;
        for (i, p) in s.points.iter().enumerate() {
            if let Some(v) = p {
                cached = Some(app.append(cached, &s.labels, i as i64 * step_ms, *v)?);
            }
        }
    }
    app.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(s: &str) -> Vec<Option<f64>> {
        match parse_values(s) {
            Ok(v) => v,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn expands_value_items() {
        assert_eq!(vals("0+10x3"), [Some(0.0), Some(10.0), Some(20.0), Some(30.0)]);
        assert_eq!(vals("5-1x2 _ 7"), [Some(5.0), Some(4.0), Some(3.0), None, Some(7.0)]);
        assert_eq!(vals("3x2 _x2"), [Some(3.0), Some(3.0), Some(3.0), None, None]);
        assert_eq!(vals("-2+1e1x1"), [Some(-2.0), Some(8.0)]);
        assert_eq!(vals("1e3 0x1"), [Some(1000.0), Some(0.0), Some(0.0)]);
        let s = vals("1 stale");
        assert!(s[1].is_some_and(crate::model::is_stale_nan));
    }

    #[test]
    fn parses_load_blocks() -> Result<(), ScriptError> {
        let cmds = parse_script("# c\nload 1m\n  m{a=\"b c\"} 1+1x2\n  {__name__=\"x\"} _ 1\n\nclear\n")?;
        let Command::Load { step, series, .. } = &cmds[0] else { panic!("{cmds:?}") };
        assert!(!series[0].histogram);
        assert_eq!(*step, Duration::from_secs(60));
        assert_eq!(series[0].labels, Labels::from_pairs(&[("__name__", "m"), ("a", "b c")]));
        assert_eq!(series[1].points, [None, Some(1.0)]);
        assert!(matches!(cmds[1], Command::Clear { .. }));
        Ok(())
    }
}
