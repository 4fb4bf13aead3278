//! Parsing PromQL: promql-parser builds and type-checks the expression tree, which we lower into
//! our own [`Expr`](super::ast::Expr); our tokenizer and a syntax pass ([`syntax`]) add what the
//! crate does not give — a position for every node and for every error. Errors read like
//! Prometheus's: `1:7: parse error: unexpected end of input`.

pub(crate) mod lex;
pub(crate) mod syntax;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher, Matchers as PMatchers};
use promql_parser::parser as pp;
use promql_parser::parser::token as tk;

use super::ast::{
    AggOp, Aggregate, At, BinOp, Binary, Call, Cardinality, Expr, StringLiteral, Subquery, ValueType,
    VectorMatching, VectorSelector,
};
use super::functions::Func;
use crate::model::{METRIC_NAME, MatchOp, Matcher};
use syntax::{Kind, Node, Span};

/// A query that does not parse, with the 1-based line and column of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: parse error: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ParseError {
    fn at(query: &str, pos: usize, message: impl Into<String>) -> ParseError {
        let (line, column) = lex::line_col(query, pos);
        ParseError { line, column, message: message.into() }
    }
}

/// Parses a PromQL expression.
pub fn parse(query: &str) -> Result<Expr, ParseError> {
    check_number_durations(query)?;
    let spans = syntax::parse(query);
    let parsed = match pp::parse(query) {
        Ok(e) => e,
        Err(message) => {
            return Err(match spans {
                // Our syntax pass pinpoints the token; its message is also more helpful.
                Err(e) => ParseError::at(query, e.pos, e.message),
                Ok(tree) => {
                    let pos = locate_type_error(query, &tree, &message).unwrap_or(0);
                    ParseError::at(query, pos, prometheus_wording(&message))
                }
            });
        }
    };
    // A syntax pass that disagrees with promql-parser only costs positions, never the query.
    if let Err(e) = &spans {
        tracing::debug!(query, error = %e.message, "PromQL position pass failed; positions unavailable");
    }
    let tree = spans.ok();
    let whole = Span { start: 0, end: query.len() };
    Lower { query, whole }.expr(&parsed, tree.as_ref())
}

/// Refuses a number written where a duration goes (`x[1e400]`, `x[5m:Inf]`, `x offset NaN`)
/// that no `Duration` can hold: promql-parser converts such numbers with
/// `Duration::from_secs_f64`, which panics on them (found by fuzzing). A query our tokenizer
/// cannot read is left to promql-parser, which then reports the error.
fn check_number_durations(query: &str) -> Result<(), ParseError> {
    let Ok(tokens) = lex::tokenize(query) else { return Ok(()) };
    let word =
        |t: &lex::Token, w: &str| t.tok == lex::Tok::Ident && query[t.start..t.end].eq_ignore_ascii_case(w);
    for (i, t) in tokens.iter().enumerate() {
        let text = &query[t.start..t.end];
        let Some(prev) = i.checked_sub(1).map(|p| &tokens[p]) else { continue };
        let after_offset = word(prev, "offset")
            || (matches!(prev.tok, lex::Tok::Op("+" | "-")) && i >= 2 && word(&tokens[i - 2], "offset"));
        let in_brackets = matches!(prev.tok, lex::Tok::LBracket | lex::Tok::Colon);
        // `Inf` and `NaN` lex as numbers after `offset`; inside brackets they are a syntax error.
        let number = t.tok == lex::Tok::Number || (after_offset && (word(t, "inf") || word(t, "nan")));
        if !number || !(after_offset || in_brackets) {
            continue;
        }
        let value = match text.to_ascii_lowercase().as_str() {
            "inf" => f64::INFINITY,
            "nan" => f64::NAN,
            // Hexadecimal and octal literals are integers, which always fit.
            lower if lower.starts_with("0x") || (lower.starts_with('0') && !lower.contains(['.', 'e'])) => {
                continue;
            }
            lower => match lower.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        if Duration::try_from_secs_f64(value).is_err() {
            return Err(ParseError::at(query, t.start, format!("duration out of range: {text}")));
        }
    }
    Ok(())
}

/// Rewrites promql-parser's type-error wording into Prometheus's: `range vector` and `instant
/// vector` for `matrix` and `vector`, double-quoted function names.
fn prometheus_wording(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 16);
    let mut rest = message;
    // Quoted names: 'rate' -> "rate".
    while let Some(i) = rest.find('\'') {
        let Some(len) = rest[i + 1..].find('\'') else { break };
        out.push_str(&rest[..i]);
        out.push('"');
        out.push_str(&rest[i + 1..i + 1 + len]);
        out.push('"');
        rest = &rest[i + 2 + len..];
    }
    out.push_str(rest);
    if out.starts_with("expected type ") {
        for (from, to) in [
            ("type matrix", "type range vector"),
            ("type vector", "type instant vector"),
            ("got matrix", "got range vector"),
            ("got vector", "got instant vector"),
        ] {
            out = out.replace(from, to);
        }
    }
    out
}

/// Runs only our syntax pass (the one that supplies positions). Every query promql-parser
/// accepts should pass it too; a failure means annotations of that query lose their positions.
pub fn check_positions(query: &str) -> Result<(), ParseError> {
    syntax::parse(query).map(|_| ()).map_err(|e| ParseError::at(query, e.pos, e.message))
}

/// Finds where a type error reported by promql-parser most likely is: the first argument,
/// operand or aggregated expression whose type does not fit.
fn locate_type_error(query: &str, node: &Node, message: &str) -> Option<usize> {
    let ty = |n: &Node| node_type(query, n);
    match node.kind {
        Kind::Call => {
            let name = &query[node.span.start..];
            let name = name.split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or("");
            if let Some(func) = Func::from_name(name) {
                if message.contains("argument(s)") {
                    return Some(node.span.start);
                }
                for (i, arg) in node.children.iter().enumerate() {
                    if let Some(found) = locate_type_error(query, arg, message) {
                        return Some(found);
                    }
                    if let (Some(want), Some(got)) = (func.arg_type(i), ty(arg))
                        && want != got
                    {
                        return Some(arg.span.start);
                    }
                }
            }
            None
        }
        Kind::Binary => {
            for c in &node.children {
                if let Some(found) = locate_type_error(query, c, message) {
                    return Some(found);
                }
            }
            node.children
                .iter()
                .find(|c| matches!(ty(c), Some(ValueType::Matrix | ValueType::String)))
                .map(|c| c.span.start)
                .or_else(|| message.contains("operator").then_some(node.span.start))
        }
        Kind::Aggregate => {
            for c in &node.children {
                if let Some(found) = locate_type_error(query, c, message) {
                    return Some(found);
                }
            }
            let expr = node.children.last()?;
            if ty(expr) != Some(ValueType::Vector) {
                return Some(expr.span.start);
            }
            if message.contains("aggregat") { Some(node.span.start) } else { None }
        }
        Kind::Paren | Kind::Unary | Kind::Subquery => {
            let inner = node.children.first()?;
            if let Some(found) = locate_type_error(query, inner, message) {
                return Some(found);
            }
            match (node.kind, ty(inner)) {
                (Kind::Unary, Some(ValueType::Matrix | ValueType::String)) => Some(node.span.start),
                (Kind::Subquery, Some(t)) if t != ValueType::Vector => Some(inner.span.start),
                _ => None,
            }
        }
        Kind::Vector if message.contains("matcher") || message.contains("metric name") => {
            Some(node.span.start)
        }
        _ => None,
    }
}

/// The type of a position-tree node, as far as the tree tells.
fn node_type(query: &str, n: &Node) -> Option<ValueType> {
    Some(match n.kind {
        Kind::Number => ValueType::Scalar,
        Kind::String => ValueType::String,
        Kind::Vector | Kind::Aggregate => ValueType::Vector,
        Kind::Matrix | Kind::Subquery => ValueType::Matrix,
        Kind::Paren | Kind::Unary => node_type(query, n.children.first()?)?,
        Kind::Binary => {
            let l = node_type(query, n.children.first()?)?;
            let r = node_type(query, n.children.get(1)?)?;
            if l == ValueType::Scalar && r == ValueType::Scalar {
                ValueType::Scalar
            } else {
                ValueType::Vector
            }
        }
        Kind::Call => {
            let name = &query[n.span.start..];
            let name = name.split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or("");
            Func::from_name(name)?.info().ret
        }
    })
}

struct Lower<'a> {
    query: &'a str,
    whole: Span,
}

fn ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Lower<'_> {
    fn err(&self, span: Span, message: impl Into<String>) -> ParseError {
        ParseError::at(self.query, span.start, message)
    }

    /// The position node for `n` when the shapes agree.
    fn child<'n>(&self, node: Option<&'n Node>, i: usize, kind: Option<Kind>) -> Option<&'n Node> {
        let c = node?.children.get(i)?;
        match kind {
            Some(k) if c.kind != k => None,
            _ => Some(c),
        }
    }

    fn span(&self, node: Option<&Node>) -> Span {
        node.map(|n| n.span).unwrap_or(self.whole)
    }

    fn expr(&self, e: &pp::Expr, node: Option<&Node>) -> Result<Expr, ParseError> {
        // A unary minus folded into a number literal, or a leading `+`, changes nothing below.
        let span = self.span(node);
        Ok(match e {
            pp::Expr::NumberLiteral(n) => Expr::Number(n.val, span),
            pp::Expr::StringLiteral(s) => {
                let raw = node.and_then(|n| n.bytes.clone()).unwrap_or_else(|| s.val.clone().into_bytes());
                Expr::String(StringLiteral { value: s.val.clone(), raw, span })
            }
            pp::Expr::VectorSelector(vs) => Expr::Vector(self.selector(vs, span)?),
            pp::Expr::MatrixSelector(m) => {
                let vs = self.selector(&m.vs, span)?;
                Expr::Matrix(vs, ms(&m.range), span)
            }
            pp::Expr::Paren(p) => {
                let inner = self.child(node.filter(|n| n.kind == Kind::Paren), 0, None);
                Expr::Paren(Box::new(self.expr(&p.expr, inner.or(node))?), span)
            }
            pp::Expr::Unary(u) => {
                let inner = self.child(node.filter(|n| n.kind == Kind::Unary), 0, None);
                Expr::Neg(Box::new(self.expr(&u.expr, inner)?), span)
            }
            pp::Expr::Subquery(s) => {
                let inner = self.child(node.filter(|n| n.kind == Kind::Subquery), 0, None);
                let step = s.step.as_ref().map(ms);
                if step == Some(0) {
                    return Err(self.err(span, "zero step in subquery"));
                }
                Expr::Subquery(Subquery {
                    expr: Box::new(self.expr(&s.expr, inner)?),
                    range: ms(&s.range),
                    step,
                    offset: offset_ms(s.offset.as_ref()),
                    at: self.at(s.at.as_ref(), span)?,
                    span,
                })
            }
            pp::Expr::Binary(b) => self.binary(b, node.filter(|n| n.kind == Kind::Binary), span)?,
            pp::Expr::Aggregate(a) => self.aggregate(a, node.filter(|n| n.kind == Kind::Aggregate), span)?,
            pp::Expr::Call(c) => {
                let func = Func::from_name(c.func.name)
                    .ok_or_else(|| self.err(span, format!("unknown function with name {:?}", c.func.name)))?;
                let node = node.filter(|n| n.kind == Kind::Call && n.children.len() == c.args.len());
                let args = c
                    .args
                    .args
                    .iter()
                    .enumerate()
                    .map(|(i, a)| self.expr(a, self.child(node, i, None)))
                    .collect::<Result<Vec<_>, _>>()?;
                Expr::Call(Call { func, args, span })
            }
            pp::Expr::Extension(_) => return Err(self.err(span, "unsupported expression")),
        })
    }

    fn at(&self, at: Option<&pp::AtModifier>, span: Span) -> Result<Option<At>, ParseError> {
        Ok(match at {
            None => None,
            Some(pp::AtModifier::Start) => Some(At::Start),
            Some(pp::AtModifier::End) => Some(At::End),
            Some(pp::AtModifier::At(t)) => Some(At::Time(
                system_time_ms(*t).ok_or_else(|| self.err(span, "timestamp out of bounds for @ modifier"))?,
            )),
        })
    }

    fn selector(&self, vs: &pp::VectorSelector, span: Span) -> Result<VectorSelector, ParseError> {
        let convert = |ms: &[PMatcher]| -> Result<Vec<Matcher>, ParseError> {
            let mut out = Vec::with_capacity(ms.len() + 1);
            if let Some(name) = &vs.name {
                out.push(Matcher::equal(METRIC_NAME, name.clone()));
            }
            for m in ms {
                out.push(self.matcher(m, span)?);
            }
            Ok(out)
        };
        let PMatchers { matchers, or_matchers } = &vs.matchers;
        let (matchers, alternatives) = if or_matchers.is_empty() {
            (convert(matchers)?, Vec::new())
        } else {
            let mut groups = or_matchers.iter().map(|g| convert(g)).collect::<Result<Vec<_>, _>>()?;
            let first = groups.remove(0);
            (first, groups)
        };
        for set in std::iter::once(&matchers).chain(alternatives.iter()) {
            if set.iter().all(|m| m.matches_empty()) {
                return Err(self.err(span, "vector selector must contain at least one non-empty matcher"));
            }
        }
        Ok(VectorSelector {
            name: vs.name.clone(),
            matchers,
            alternatives,
            offset: offset_ms(vs.offset.as_ref()),
            at: self.at(vs.at.as_ref(), span)?,
            span,
        })
    }

    fn matcher(&self, m: &PMatcher, span: Span) -> Result<Matcher, ParseError> {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| self.err(span, e.to_string()))
    }

    fn binary(&self, b: &pp::BinaryExpr, node: Option<&Node>, span: Span) -> Result<Expr, ParseError> {
        let op = match b.op.id() {
            tk::T_ADD => BinOp::Add,
            tk::T_SUB => BinOp::Sub,
            tk::T_MUL => BinOp::Mul,
            tk::T_DIV => BinOp::Div,
            tk::T_MOD => BinOp::Mod,
            tk::T_POW => BinOp::Pow,
            tk::T_ATAN2 => BinOp::Atan2,
            tk::T_EQLC => BinOp::Eql,
            tk::T_NEQ => BinOp::Neq,
            tk::T_GTR => BinOp::Gtr,
            tk::T_LSS => BinOp::Lss,
            tk::T_GTE => BinOp::Gte,
            tk::T_LTE => BinOp::Lte,
            tk::T_LAND => BinOp::And,
            tk::T_LOR => BinOp::Or,
            tk::T_LUNLESS => BinOp::Unless,
            _ => return Err(self.err(span, format!("unsupported binary operator {}", b.op))),
        };
        let lhs = self.expr(&b.lhs, self.child(node, 0, None))?;
        let rhs = self.expr(&b.rhs, self.child(node, 1, None))?;
        let both_vectors = lhs.value_type() == ValueType::Vector && rhs.value_type() == ValueType::Vector;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let matching = if both_vectors {
            let mut m = VectorMatching {
                card: if op.is_set() { Cardinality::ManyToMany } else { Cardinality::OneToOne },
                on: false,
                labels: Vec::new(),
                include: Vec::new(),
                fill_lhs: None,
                fill_rhs: None,
            };
            if let Some(modifier) = &b.modifier {
                m.card = match &modifier.card {
                    pp::VectorMatchCardinality::OneToOne if op.is_set() => Cardinality::ManyToMany,
                    pp::VectorMatchCardinality::OneToOne => Cardinality::OneToOne,
                    pp::VectorMatchCardinality::ManyToMany => Cardinality::ManyToMany,
                    pp::VectorMatchCardinality::ManyToOne(ls) => {
                        m.include = ls.labels.clone();
                        Cardinality::ManyToOne
                    }
                    pp::VectorMatchCardinality::OneToMany(ls) => {
                        m.include = ls.labels.clone();
                        Cardinality::OneToMany
                    }
                };
                if let Some(lm) = &modifier.matching {
                    m.on = lm.is_include();
                    m.labels = lm.labels().labels.clone();
                }
                m.fill_lhs = modifier.fill_values.lhs;
                m.fill_rhs = modifier.fill_values.rhs;
            }
            if op.is_set() && m.card != Cardinality::ManyToMany {
                return Err(self.err(span, format!("no grouping allowed for \"{}\" operation", op.as_str())));
            }
            Some(m)
        } else {
            None
        };
        Ok(Expr::Binary(Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs), return_bool, matching, span }))
    }

    fn aggregate(&self, a: &pp::AggregateExpr, node: Option<&Node>, span: Span) -> Result<Expr, ParseError> {
        let name = a.op.to_string();
        let op =
            AggOp::from_name(&name).ok_or_else(|| self.err(span, format!("unknown aggregation {name}")))?;
        let (param_node, expr_node) = match (node, a.param.is_some()) {
            (Some(n), true) if n.children.len() == 2 => (n.children.first(), n.children.get(1)),
            (Some(n), false) if n.children.len() == 1 => (None, n.children.first()),
            _ => (None, None),
        };
        let param = match &a.param {
            Some(p) => {
                let p = self.expr(p, param_node)?;
                let want = match op {
                    AggOp::CountValues => ValueType::String,
                    _ => ValueType::Scalar,
                };
                if p.value_type() != want {
                    return Err(self.err(
                        p.span(),
                        format!(
                            "expected type {} in aggregation parameter, got {}",
                            type_name(want),
                            type_name(p.value_type())
                        ),
                    ));
                }
                Some(Box::new(p))
            }
            None => None,
        };
        let expr = self.expr(&a.expr, expr_node)?;
        let (mut grouping, without) = match &a.modifier {
            Some(pp::LabelModifier::Include(ls)) => (ls.labels.clone(), false),
            Some(pp::LabelModifier::Exclude(ls)) => (ls.labels.clone(), true),
            None => (Vec::new(), false),
        };
        grouping.sort();
        Ok(Expr::Aggregate(Aggregate { op, expr: Box::new(expr), param, grouping, without, span }))
    }
}

/// Prometheus's names for value types in messages.
pub(crate) fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Scalar => "scalar",
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

fn offset_ms(o: Option<&pp::Offset>) -> i64 {
    match o {
        None => 0,
        Some(pp::Offset::Pos(d)) => ms(d),
        Some(pp::Offset::Neg(d)) => -ms(d),
    }
}

fn system_time_ms(t: SystemTime) -> Option<i64> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok(),
        Err(e) => i64::try_from(e.duration().as_millis()).ok().map(|v| -v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> String {
        match parse(q) {
            Ok(e) => panic!("{q} parsed: {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn lowers_with_positions() -> Result<(), ParseError> {
        let e = parse("sum by (b, a) (rate(x{job=\"j\"}[5m] offset 1m))")?;
        let Expr::Aggregate(a) = e else { panic!("{e:?}") };
        assert_eq!(a.grouping, ["a", "b"]);
        let Expr::Call(c) = *a.expr else { panic!() };
        assert_eq!(c.func, Func::Rate);
        assert_eq!(c.span.start, 15);
        let Expr::Matrix(vs, range, span) = &c.args[0] else { panic!() };
        assert_eq!((*range, vs.offset, span.start), (300_000, 60_000, 20));
        assert_eq!(vs.matchers.len(), 2);
        let e = parse("-1")?;
        assert!(matches!(e, Expr::Number(v, _) if v == -1.0));
        Ok(())
    }

    #[test]
    fn number_durations_out_of_range_are_errors_not_panics() {
        assert_eq!(err("x[101e308]"), "1:3: parse error: duration out of range: 101e308");
        for q in ["x[1e20]", "x[1e20:]", "(x)[1h:1e400]", "x offset Inf", "x offset NaN", "x offset -1e30"] {
            assert!(err(q).contains("duration out of range"), "{q}");
        }
        // In range, or not a duration at all: as before.
        for q in ["x[300]", "x[5m:15]", "x offset 60", "x @ 1e20 > 1e400", "x[0x10]", "x[Inf]"] {
            assert!(!parse(q).is_err_and(|e| e.message.contains("out of range")), "{q}");
        }
    }

    #[test]
    fn errors_carry_positions() {
        assert_eq!(err("sum(x) +"), "1:9: parse error: unexpected end of input");
        assert_eq!(
            err("rate(x)"),
            "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector"
        );
        assert!(err("foo{").starts_with("1:5: parse error:"), "{}", err("foo{"));
    }
}
