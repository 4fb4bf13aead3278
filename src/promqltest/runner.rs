//! Running a whole script: `load` into a fresh head, `clear` to start over, and each `eval`
//! judged, skipped for a named reason, or failed. Used by the conformance suites over
//! Prometheus's scripts and by our own scripts in `tests/data/promql`.

use std::sync::Arc;

use regex::Regex;

use super::eval::Eval;
use super::{Command, parse_script};
use crate::model::{Labels, Matcher};
use crate::promql::ast::Expr;
use crate::promql::{Engine, EngineOptions, parse};
use crate::tsdb::Head;

/// What became of one eval (or of a load that failed).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

/// One outcome, named `<script>:<line>` (`line` is the command's line).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseOutcome {
    pub case: String,
    /// The eval's query, empty for load failures.
    pub query: String,
    pub outcome: Outcome,
}

/// Prometheus's test engine settings: 5m lookback, 1m default subquery step, and at most
/// 10,000 samples per query.
pub fn test_engine() -> Engine {
    Engine::new(EngineOptions { max_samples: 10_000, ..EngineOptions::default() })
}

/// Runs every command of `text` (named `name` in outcomes). A script that does not parse yields
/// a single failure.
pub fn run_script(name: &str, text: &str, engine: &Engine) -> Vec<CaseOutcome> {
    let mut out = Vec::new();
    let commands = match parse_script(text) {
        Ok(c) => c,
        Err(e) => {
            out.push(CaseOutcome {
                case: name.to_string(),
                query: String::new(),
                outcome: Outcome::Failed(format!("script does not parse: {e}")),
            });
            return out;
        }
    };
    let mut storage = Arc::new(Head::default());
    // Label sets of loaded series we could not store (native histograms).
    let mut histogram_series: Vec<Labels> = Vec::new();
    let mut start_timestamps = false;
    for cmd in commands {
        match cmd {
            Command::Clear { .. } => {
                storage = Arc::new(Head::default());
                histogram_series.clear();
                start_timestamps = false;
            }
            Command::Load { line, step, series, nhcb, start_timestamps: st } => {
                start_timestamps |= st;
                for s in &series {
                    if s.histogram {
                        histogram_series.push(s.labels.clone());
                    }
                    if nhcb && let Some(base) = nhcb_base(&s.labels) {
                        histogram_series.push(base);
                    }
                }
                if let Err(e) = super::load(&*storage, step, &series) {
                    out.push(CaseOutcome {
                        case: format!("{name}:{line}"),
                        query: String::new(),
                        outcome: Outcome::Failed(format!("load failed: {e}")),
                    });
                }
            }
            Command::Eval { line, header, body } => {
                let case = format!("{name}:{line}");
                let eval = match Eval::parse(&header, &body) {
                    Ok(e) => e,
                    Err(why) => {
                        out.push(CaseOutcome {
                            case,
                            query: header,
                            outcome: Outcome::Failed(format!("cannot read eval: {why}")),
                        });
                        continue;
                    }
                };
                let outcome = match skip_reason(&eval, &histogram_series, start_timestamps) {
                    Some(reason) => Outcome::Skipped(reason),
                    None => match eval.run(engine, &*storage) {
                        // Positions come from our own syntax pass: it must accept what parses.
                        Ok(()) => {
                            match (parse(&eval.query), crate::promql::parser::check_positions(&eval.query)) {
                                (Ok(_), Err(e)) => {
                                    Outcome::Failed(format!("the position pass rejects it: {e}"))
                                }
                                _ => Outcome::Passed,
                            }
                        }
                        Err(why) => Outcome::Failed(why),
                    },
                };
                out.push(CaseOutcome { case, query: eval.query.clone(), outcome });
            }
        }
    }
    out
}

/// The native histogram (custom buckets) a `load_with_nhcb` classic series turns into.
fn nhcb_base(l: &Labels) -> Option<Labels> {
    let name = l.metric_name()?;
    let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s))?;
    let mut b = l.without(&["le"]).builder();
    b.set("__name__", base);
    Some(b.labels())
}

/// Experimental features we do not implement; evals using them are skipped with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("info(", "experimental function info()"),
    (" anchored", "experimental anchored range selectors"),
    (" smoothed", "experimental smoothed selectors"),
    ("start_timestamp(", "experimental function start_timestamp()"),
];

/// Why an eval cannot be judged against our engine, if it cannot.
fn skip_reason(e: &Eval, histogram_series: &[Labels], start_timestamps: bool) -> Option<String> {
    if e.expects_histogram {
        return Some("native histograms: the expected result holds native histogram samples".into());
    }
    if start_timestamps {
        return Some("start timestamps (@st): not stored".into());
    }
    let parsed = parse(&e.query);
    if let Ok(expr) = &parsed {
        let mut selectors: Vec<Vec<Matcher>> = Vec::new();
        expr.walk(&mut |n| {
            if let Expr::Vector(vs) | Expr::Matrix(vs, _, _) = n {
                selectors.push(vs.matchers.clone());
                selectors.extend(vs.alternatives.iter().cloned());
            }
        });
        if histogram_series.iter().any(|l| selectors.iter().any(|ms| Matcher::all_match(ms, l))) {
            return Some(
                "native histograms: the query reads series loaded with native histogram samples".into(),
            );
        }
    }
    for (feature, reason) in UNSUPPORTED {
        if e.query.contains(feature) {
            return Some((*reason).to_string());
        }
    }
    if e.query.contains("</") || e.query.contains(">/") {
        return Some("native histograms: bucket trimming operators".into());
    }
    if parsed.is_err() && uses_duration_expression(&e.query) {
        return Some(
            "experimental duration expressions (arithmetic in ranges and offsets), which promql-parser 0.11 does not parse"
                .into(),
        );
    }
    None
}

/// Whether a range, subquery step or offset is an expression rather than a plain duration.
fn uses_duration_expression(q: &str) -> bool {
    let plain = Regex::new(r"^-?[0-9]+(ms|[smhdwy])?([0-9]+(ms|[smhdwy]))*$").ok();
    let is_plain = |s: &str| plain.as_ref().is_some_and(|re| re.is_match(s.trim()));
    let mut i = 0;
    while let Some(off) = q[i..].find('[') {
        let start = i + off + 1;
        let Some(len) = q[start..].find(']') else { break };
        let inside = &q[start..start + len];
        if inside.split(':').any(|part| !part.trim().is_empty() && !is_plain(part)) {
            return true;
        }
        i = start + len;
    }
    q.split(" offset ").skip(1).any(|rest| {
        let word = rest.trim_start().split(|c: char| c.is_whitespace() || c == ')').next().unwrap_or("");
        !is_plain(word)
    })
}
