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
                self.run_instant(engine, storage, &self.query, t)?;
                // Like Prometheus's harness: the same query with `@ t` on every selector and
                // subquery must give the same result at other evaluation times.
                for (query, at) in at_modifier_cases(&self.query, t).unwrap_or_default() {
                    self.run_instant(engine, storage, &query, at)
                        .map_err(|e| format!("{query} at {at}ms: {e}"))?;
                }
                Ok(())
            }
            None => {
                let res = engine.range_query(storage, &self.query, self.start, self.end, self.step);
                let Some(res) = self.check_outcome(res)? else { return Ok(()) };
                self.check_annotations(&res)?;
                self.compare(&res.value)
            }
        }
    }

    /// One instant evaluation of `query` at `t`, judged against this eval's expectations, then
    /// re-run as a range query (t-1m … t+1m, step 1m) whose middle step must agree.
    fn run_instant(
        &self,
        engine: &Engine,
        storage: &dyn Queryable,
        query: &str,
        t: i64,
    ) -> Result<(), String> {
        let res = engine.instant_query(storage, query, t);
        let Some(res) = self.check_outcome(res)? else { return Ok(()) };
        self.check_annotations(&res)?;
        self.compare(&res.value)?;
        if self.range_vector
            || self.string.is_some()
            || self.ordered
            || ["start()", "end()", "range()", "step()"].iter().any(|f| query.contains(f))
        {
            return Ok(());
        }
        let range = engine
            .range_query(storage, query, t - 60_000, t + 60_000, 60_000)
            .map_err(|e| format!("error in range mode: {e}"))?;
        let Value::Matrix(m) = &range.value else {
            return Err("range mode did not return a matrix".into());
        };
        check_sorted(m)?;
        let middle: Vec<Sample> = m
            .iter()
            .filter_map(|s| {
                s.points.iter().find(|p| p.t == t).map(|p| Sample { labels: s.labels.clone(), t, v: p.v })
            })
            .collect();
        let as_value = match res.value {
            Value::Scalar { .. } => {
                Value::Scalar { t, v: middle.first().map(|s| s.v).ok_or("range mode lost the scalar")? }
            }
            _ => Value::Vector(middle),
        };
        self.compare(&as_value).map_err(|e| format!("range mode: {e}"))
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

/// The `@` variants of an instant query that Prometheus's harness also runs: `@ <t>` added to
/// every selector and subquery outside subqueries (which keep their insides), evaluated at
/// -10t, 0, t/5, t and 10t (or -1s, 0, 1s when t is 0). `None` when the query calls a function
/// whose result depends on the evaluation time, or cannot be rewritten.
pub fn at_modifier_cases(query: &str, t: i64) -> Option<Vec<(String, i64)>> {
    use crate::promql::ast::Expr;
    use crate::promql::parser::lex::{Tok, tokenize};
    use crate::promql::parser::syntax::{Kind, Node, parse as positions};

    let expr = crate::promql::parse(query).ok()?;
    let mut unsafe_call = false;
    fn scan(e: &Expr, unsafe_call: &mut bool) {
        match e {
            Expr::Call(c) => {
                *unsafe_call |= c.func.depends_on_eval_time();
                c.args.iter().for_each(|a| scan(a, unsafe_call));
            }
            // Selectors inside subqueries are not rewritten, nor are their calls checked.
            Expr::Subquery(_) | Expr::Number(..) | Expr::String(_) | Expr::Vector(_) | Expr::Matrix(..) => {}
            Expr::Paren(x, _) | Expr::Neg(x, _) => scan(x, unsafe_call),
            Expr::Binary(b) => {
                scan(&b.lhs, unsafe_call);
                scan(&b.rhs, unsafe_call);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    scan(p, unsafe_call);
                }
                scan(&a.expr, unsafe_call);
            }
        }
    }
    scan(&expr, &mut unsafe_call);
    if unsafe_call {
        return None;
    }
    let tree = positions(query).ok()?;
    let has_at = |n: &Node| -> bool {
        tokenize(&query[n.span.start..n.span.end]).is_ok_and(|toks| toks.iter().any(|t| t.tok == Tok::At))
    };
    let mut inserts: Vec<usize> = Vec::new();
    fn collect(n: &Node, has_at: &dyn Fn(&Node) -> bool, out: &mut Vec<usize>) {
        match n.kind {
            Kind::Vector | Kind::Matrix | Kind::Subquery => {
                if !has_at(n) {
                    out.push(n.span.end);
                }
            }
            _ => n.children.iter().for_each(|c| collect(c, has_at, out)),
        }
    }
    collect(&tree, &has_at, &mut inserts);
    inserts.sort_unstable();
    let mut rewritten = String::with_capacity(query.len() + inserts.len() * 16);
    let mut last = 0;
    for pos in inserts {
        rewritten.push_str(&query[last..pos]);
        rewritten.push_str(&format!(" @ {:.3}", t as f64 / 1000.0));
        last = pos;
    }
    rewritten.push_str(&query[last..]);
    let times = if t == 0 { vec![-1000, 0, 1000] } else { vec![-10 * t, 0, t / 5, t, 10 * t] };
    Some(times.into_iter().map(|at| (rewritten.clone(), at)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_modifier_rewrites_like_prometheus() {
        let cases = at_modifier_cases("rate(x[5m]) + sum(y offset 1m) + z @ 10", 60_000).unwrap_or_default();
        assert_eq!(cases.len(), 5);
        assert_eq!(cases[0].0, "rate(x[5m] @ 60.000) + sum(y offset 1m @ 60.000) + z @ 10");
        let times: Vec<i64> = cases.iter().map(|c| c.1).collect();
        assert_eq!(times, [-600_000, 0, 12_000, 60_000, 600_000]);
        assert_eq!(at_modifier_cases("time() + x", 1), None);
        let cases = at_modifier_cases("max_over_time(vector(time())[5m:1m])", 0).unwrap_or_default();
        assert_eq!(cases[0], ("max_over_time(vector(time())[5m:1m] @ 0.000)".to_string(), -1000));
    }
}
