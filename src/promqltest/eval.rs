//! `eval` commands: their expectations (values, order, failures, annotations) and how a result
//! is judged against them, following Prometheus's test harness — float tolerance 1e-6, results
//! matched by label set, every instant eval re-run as a range query whose middle step must agree.

use std::collections::HashMap;

use regex::Regex;

use super::{parse_number, parse_series_line, selector_labels};
use crate::model::{Labels, parse_duration};
use crate::promql::functions::stats::almost_equal;
use crate::promql::{Engine, QueryError, QueryResult, Sample, Series, Value};
use crate::storage::Queryable;

/// An expected annotation: any, or matching a message or regex.
#[derive(Debug)]
pub enum Expect {
    Any,
    Msg(String),
    Regex(Regex),
}

impl Expect {
    fn matches(&self, s: &str) -> bool {
        match self {
            Expect::Any => true,
            Expect::Msg(m) => m == s,
            Expect::Regex(r) => r.is_match(s),
        }
    }
}

/// One `eval` command with its expectations.
#[derive(Debug)]
pub struct Eval {
    pub query: String,
    /// Instant eval time, or range start/end/step (ms).
    pub instant: Option<i64>,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub fail: Option<Expect>,
    pub warn: Vec<Expect>,
    pub info: Vec<Expect>,
    pub no_warn: bool,
    pub no_info: bool,
    pub ordered: bool,
    pub string: Option<String>,
    pub scalar: Option<f64>,
    /// `expect range vector`: an instant query returning a matrix, compared on this grid.
    pub range_vector: bool,
    /// Expected series in order: labels and values per step (None = no point).
    pub series: Vec<(Labels, Vec<Option<f64>>)>,
    pub expects_histogram: bool,
}

fn ms(s: &str) -> Result<i64, String> {
    parse_duration(s).map(|d| d.as_millis() as i64).map_err(|e| e.to_string())
}

impl Eval {
    /// Reads an `eval` command: its header line and body lines.
    pub fn parse(header: &str, body: &[String]) -> Result<Eval, String> {
        let (cmd, rest) = header.split_once(' ').ok_or("empty eval")?;
        let mut e = Eval {
            query: String::new(),
            instant: None,
            start: 0,
            end: 0,
            step: 0,
            fail: None,
            warn: Vec::new(),
            info: Vec::new(),
            no_warn: false,
            no_info: false,
            ordered: cmd == "eval_ordered",
            string: None,
            scalar: None,
            range_vector: false,
            series: Vec::new(),
            expects_histogram: false,
        };
        match cmd {
            "eval" | "eval_ordered" => {}
            "eval_fail" => e.fail = Some(Expect::Any),
            "eval_warn" => e.warn.push(Expect::Any),
            "eval_info" => e.info.push(Expect::Any),
            other => return Err(format!("unknown command {other}")),
        }
        let words: Vec<&str> = rest.splitn(2, ' ').collect();
        match words[0] {
            "instant" => {
                let r = words.get(1).ok_or("missing time")?;
                let r = r.strip_prefix("at ").ok_or("expected `at`")?;
                let (t, q) = r.split_once(' ').ok_or("missing query")?;
                let t = ms(t)?;
                e.instant = Some(t);
                (e.start, e.end) = (t, t);
                e.query = q.trim().to_string();
            }
            "range" => {
                let r = words.get(1).ok_or("missing range")?;
                let parts: Vec<&str> = r.splitn(7, ' ').collect();
                if parts.len() < 7 || parts[0] != "from" || parts[2] != "to" || parts[4] != "step" {
                    return Err(format!("bad range header {r:?}"));
                }
                (e.start, e.end, e.step) = (ms(parts[1])?, ms(parts[3])?, ms(parts[5])?);
                e.query = parts[6].trim().to_string();
            }
            other => return Err(format!("unknown eval kind {other}")),
        }
        for line in body {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("expected_fail_message") {
                e.fail = Some(Expect::Msg(rest.trim().to_string()));
                continue;
            }
            if let Some(rest) = line.strip_prefix("expected_fail_regexp") {
                e.fail = Some(Expect::Regex(Regex::new(rest.trim()).map_err(|x| x.to_string())?));
                continue;
            }
            if let Some(rest) = line.strip_prefix("expect range vector ") {
                let p: Vec<&str> = rest.split_whitespace().collect();
                if p.len() != 6 || p[0] != "from" || p[2] != "to" || p[4] != "step" {
                    return Err(format!("bad range vector line {line:?}"));
                }
                (e.start, e.end, e.step) = (ms(p[1])?, ms(p[3])?, ms(p[5])?);
                e.instant = Some(e.end);
                e.range_vector = true;
                continue;
            }
            if let Some(rest) = line.strip_prefix("expect string") {
                e.string = Some(unquote(rest.trim())?);
                continue;
            }
            if line.split(' ').next() == Some("expect") {
                let rest = line["expect".len()..].trim();
                let (kind, opt) = match rest.split_once(' ') {
                    Some((k, o)) => (k, Some(o.trim())),
                    None => (rest, None),
                };
                let expect = match opt {
                    None => Expect::Any,
                    Some(o) => {
                        if let Some(m) = o.strip_prefix("msg:") {
                            Expect::Msg(m.trim().to_string())
                        } else if let Some(r) = o.strip_prefix("regex:") {
                            Expect::Regex(Regex::new(r.trim()).map_err(|x| x.to_string())?)
                        } else {
                            return Err(format!("bad expect line {line:?}"));
                        }
                    }
                };
                match kind {
                    "fail" => e.fail = Some(expect),
                    "warn" => e.warn.push(expect),
                    "info" => e.info.push(expect),
                    "no_warn" => e.no_warn = true,
                    "no_info" => e.no_info = true,
                    "ordered" => e.ordered = true,
                    other => return Err(format!("unknown expectation {other:?}")),
                }
                continue;
            }
            if let Ok(v) = parse_number(line) {
                e.scalar = Some(v);
                continue;
            }
            if line.contains("{{") {
                e.expects_histogram = true;
                continue;
            }
            let s = parse_series_line(line).or_else(|err| {
                // A bare label set with no values cannot be; report the original error.
                selector_labels(line).map(|_| Err(err.clone())).unwrap_or(Err(err))
            })?;
            e.series.push((s.labels, s.points));
        }
        Ok(e)
    }

    /// Runs the eval against `storage` and judges the outcome.
    pub fn run(&self, engine: &Engine, storage: &dyn Queryable) -> Result<(), String> {
        match self.instant {
            Some(t) => {
                let res = engine.instant_query(storage, &self.query, t);
                let Some(res) = self.check_outcome(res)? else { return Ok(()) };
                self.check_annotations(&res)?;
                self.compare(&res.value)?;
                // Prometheus's harness re-runs instant queries as range queries and compares the
                // middle step.
                if self.range_vector
                    || self.string.is_some()
                    || self.ordered
                    || ["start()", "end()", "range()", "step()"].iter().any(|f| self.query.contains(f))
                {
                    return Ok(());
                }
                let range = engine
                    .range_query(storage, &self.query, t - 60_000, t + 60_000, 60_000)
                    .map_err(|e| format!("error in range mode: {e}"))?;
                let Value::Matrix(m) = &range.value else {
                    return Err("range mode did not return a matrix".into());
                };
                check_sorted(m)?;
                let middle: Vec<Sample> = m
                    .iter()
                    .filter_map(|s| {
                        s.points.iter().find(|p| p.t == t).map(|p| Sample {
                            labels: s.labels.clone(),
                            t,
                            v: p.v,
                        })
                    })
                    .collect();
                let as_value = match res.value {
                    Value::Scalar { .. } => Value::Scalar {
                        t,
                        v: middle.first().map(|s| s.v).ok_or("range mode lost the scalar")?,
                    },
                    _ => Value::Vector(middle),
                };
                self.compare(&as_value).map_err(|e| format!("range mode: {e}"))
            }
            None => {
                let res = engine.range_query(storage, &self.query, self.start, self.end, self.step);
                let Some(res) = self.check_outcome(res)? else { return Ok(()) };
                self.check_annotations(&res)?;
                self.compare(&res.value)
            }
        }
    }

    /// Applies `expect fail`: `Ok(None)` when the expected failure happened.
    pub fn check_outcome(&self, res: Result<QueryResult, QueryError>) -> Result<Option<QueryResult>, String> {
        match (res, &self.fail) {
            (Ok(_), Some(_)) => Err("expected an error, got a result".into()),
            (Ok(r), None) => Ok(Some(r)),
            (Err(e), Some(exp)) => {
                if exp.matches(&e.to_string()) {
                    Ok(None)
                } else {
                    Err(format!("expected error matching {exp:?}, got {e}"))
                }
            }
            (Err(e), None) => Err(format!("error: {e}")),
        }
    }

    pub fn check_annotations(&self, res: &QueryResult) -> Result<(), String> {
        for (kind, expects, got, none) in [
            ("warn", &self.warn, &res.warnings, self.no_warn),
            ("info", &self.info, &res.infos, self.no_info),
        ] {
            if none && !got.is_empty() {
                return Err(format!("unexpected {kind} annotations: {got:?}"));
            }
            if expects.is_empty() {
                continue;
            }
            if got.is_empty() {
                return Err(format!("expected {kind} annotations, got none"));
            }
            for e in expects {
                if !got.iter().any(|g| e.matches(g)) {
                    return Err(format!("expected {kind} annotation {e:?}, got {got:?}"));
                }
            }
            for g in got {
                if !expects.iter().any(|e| e.matches(g)) {
                    return Err(format!("unexpected {kind} annotation {g:?}"));
                }
            }
        }
        Ok(())
    }

    pub fn compare(&self, value: &Value) -> Result<(), String> {
        match value {
            Value::String { v, .. } => match &self.string {
                Some(want) if want == v => Ok(()),
                other => Err(format!("got string {v:?}, expected {other:?}")),
            },
            Value::Scalar { v, .. } => match self.scalar {
                Some(want) if almost_equal(*v, want, 1e-6) => Ok(()),
                other => Err(format!("got scalar {v}, expected {other:?}")),
            },
            Value::Vector(samples) => {
                if self.scalar.is_some() {
                    return Err(format!("expected a scalar, got a vector of {}", samples.len()));
                }
                let expected: HashMap<&Labels, (usize, &Vec<Option<f64>>)> =
                    self.series.iter().enumerate().map(|(i, (l, v))| (l, (i, v))).collect();
                for (pos, s) in samples.iter().enumerate() {
                    let Some((want_pos, vals)) = expected.get(&*s.labels) else {
                        return Err(format!("unexpected series {} = {}", s.labels, s.v));
                    };
                    if self.ordered && *want_pos != pos {
                        return Err(format!("series {} at position {pos}, expected at {want_pos}", s.labels));
                    }
                    let want = vals.first().copied().flatten();
                    match want {
                        Some(w) if almost_equal(s.v, w, 1e-6) => {}
                        _ => return Err(format!("{}: got {}, expected {want:?}", s.labels, s.v)),
                    }
                }
                if samples.len() != self.series.len() {
                    let got: Vec<&Labels> = samples.iter().map(|s| &*s.labels).collect();
                    let missing: Vec<String> = self
                        .series
                        .iter()
                        .filter(|(l, _)| !got.contains(&l))
                        .map(|(l, _)| l.to_string())
                        .collect();
                    return Err(format!(
                        "missing series {missing:?} (got {} of {})",
                        samples.len(),
                        self.series.len()
                    ));
                }
                Ok(())
            }
            Value::Matrix(series) => {
                if self.ordered {
                    return Err("expected an ordered vector, got a matrix".into());
                }
                if self.scalar.is_some() {
                    return Err("expected a scalar, got a matrix".into());
                }
                check_sorted(series)?;
                let expected: HashMap<&Labels, &Vec<Option<f64>>> =
                    self.series.iter().map(|(l, v)| (l, v)).collect();
                for s in series {
                    let Some(vals) = expected.get(&*s.labels) else {
                        return Err(format!("unexpected series {} with {} points", s.labels, s.points.len()));
                    };
                    let want: Vec<(i64, f64)> = vals
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| (self.start + i as i64 * self.step, v)))
                        .collect();
                    let got: Vec<(i64, f64)> = s.points.iter().map(|p| (p.t, p.v)).collect();
                    let same = want.len() == got.len()
                        && want.iter().zip(&got).all(|(w, g)| w.0 == g.0 && almost_equal(g.1, w.1, 1e-6));
                    if !same {
                        return Err(format!("{}: got {got:?}, expected {want:?}", s.labels));
                    }
                }
                for (l, _) in &self.series {
                    if !series.iter().any(|s| &*s.labels == l) {
                        return Err(format!("missing series {l}"));
                    }
                }
                Ok(())
            }
        }
    }
}

fn check_sorted(m: &[Series]) -> Result<(), String> {
    if m.windows(2).any(|w| w[0].labels > w[1].labels) {
        return Err("matrix is not sorted by labels".into());
    }
    Ok(())
}

/// Go's `strconv.Unquote` for the quoted strings of `expect string`.
fn unquote(s: &str) -> Result<String, String> {
    if let Some(inner) = s.strip_prefix('`').and_then(|x| x.strip_suffix('`')) {
        return Ok(inner.to_string());
    }
    let inner =
        s.strip_prefix('"').and_then(|x| x.strip_suffix('"')).ok_or_else(|| format!("not quoted: {s}"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => return Err("dangling escape".into()),
        }
    }
    Ok(out)
}
