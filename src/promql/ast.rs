//! The expression tree the engine evaluates: promql-parser's tree lowered into our own types,
//! with a source position on every node (for annotations), durations in milliseconds, matchers
//! compiled with Prometheus's regex semantics, and functions resolved to [`Func`].

use std::fmt;

use super::functions::Func;
pub use super::parser::syntax::Span;
use crate::model::Matcher;

/// The type an expression evaluates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "vector",
            ValueType::Matrix => "matrix",
            ValueType::String => "string",
        })
    }
}

/// An `@` modifier: a fixed time (ms), or the query's start or end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Time(i64),
    Start,
    End,
}

/// `name{matchers}` with its modifiers. `matchers` includes the name as `__name__="…"`;
/// `alternatives` holds further matcher sets joined by `or` inside the braces (each also
/// carrying the name).
#[derive(Debug, Clone)]
pub struct VectorSelector {
    pub name: Option<String>,
    pub matchers: Vec<Matcher>,
    pub alternatives: Vec<Vec<Matcher>>,
    /// Milliseconds; negative for a negative offset.
    pub offset: i64,
    pub at: Option<At>,
    pub span: Span,
}

/// A string literal. Go strings may hold bytes that are not UTF-8 (`"\xff"`); `value` is then a
/// lossy rendering and `raw` keeps the bytes for validation messages.
#[derive(Debug, Clone)]
pub struct StringLiteral {
    pub value: String,
    pub raw: Vec<u8>,
    pub span: Span,
}

impl StringLiteral {
    pub fn is_utf8(&self) -> bool {
        std::str::from_utf8(&self.raw).is_ok()
    }
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Gtr,
    Lss,
    Gte,
    Lte,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eql | BinOp::Neq | BinOp::Gtr | BinOp::Lss | BinOp::Gte | BinOp::Lte)
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// Arithmetic operators change what a sample means, so the result loses the metric name.
    pub fn changes_metric_schema(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow | BinOp::Mod | BinOp::Atan2
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Atan2 => "atan2",
            BinOp::Eql => "==",
            BinOp::Neq => "!=",
            BinOp::Gtr => ">",
            BinOp::Lss => "<",
            BinOp::Gte => ">=",
            BinOp::Lte => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
        }
    }
}

/// How the two sides of a vector/vector operation are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

#[derive(Debug, Clone)]
pub struct VectorMatching {
    pub card: Cardinality,
    /// `on(…)` when true, else `ignoring(…)` (the default, with no labels).
    pub on: bool,
    pub labels: Vec<String>,
    /// `group_left(…)` / `group_right(…)` labels taken from the "one" side.
    pub include: Vec<String>,
    /// `fill_left(v)` / `fill_right(v)` (experimental).
    pub fill_lhs: Option<f64>,
    pub fill_rhs: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Binary {
    pub op: BinOp,
    pub lhs: Box<Expr>,
    pub rhs: Box<Expr>,
    pub return_bool: bool,
    /// Present when both sides are vectors.
    pub matching: Option<VectorMatching>,
    pub span: Span,
}

/// Aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
    Limitk,
    LimitRatio,
}

impl AggOp {
    pub fn as_str(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Count => "count",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Group => "group",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
            AggOp::CountValues => "count_values",
            AggOp::Quantile => "quantile",
            AggOp::Limitk => "limitk",
            AggOp::LimitRatio => "limit_ratio",
        }
    }

    pub fn from_name(s: &str) -> Option<AggOp> {
        Some(match s {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "count" => AggOp::Count,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "group" => AggOp::Group,
            "stddev" => AggOp::Stddev,
            "stdvar" => AggOp::Stdvar,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            "count_values" => AggOp::CountValues,
            "quantile" => AggOp::Quantile,
            "limitk" => AggOp::Limitk,
            "limit_ratio" => AggOp::LimitRatio,
            _ => return None,
        })
    }

    /// Keeps input series (with their labels) rather than building one series per group.
    pub fn selects_series(self) -> bool {
        matches!(self, AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio)
    }
}

#[derive(Debug, Clone)]
pub struct Aggregate {
    pub op: AggOp,
    pub expr: Box<Expr>,
    pub param: Option<Box<Expr>>,
    /// Sorted label names of `by (…)` / `without (…)`.
    pub grouping: Vec<String>,
    pub without: bool,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub func: Func,
    pub args: Vec<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Subquery {
    pub expr: Box<Expr>,
    pub range: i64,
    /// `None` for `[5m:]`, which uses the engine's default step.
    pub step: Option<i64>,
    pub offset: i64,
    pub at: Option<At>,
    pub span: Span,
}

/// A PromQL expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Number(f64, Span),
    String(StringLiteral),
    Vector(VectorSelector),
    /// A range selector `sel[range]`; `range` in ms.
    Matrix(VectorSelector, i64, Span),
    Subquery(Subquery),
    Paren(Box<Expr>, Span),
    /// Unary minus.
    Neg(Box<Expr>, Span),
    Binary(Binary),
    Aggregate(Aggregate),
    Call(Call),
}

impl Expr {
    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::Number(..) => ValueType::Scalar,
            Expr::String(_) => ValueType::String,
            Expr::Vector(_) | Expr::Aggregate(_) => ValueType::Vector,
            Expr::Matrix(..) | Expr::Subquery(_) => ValueType::Matrix,
            Expr::Paren(e, _) | Expr::Neg(e, _) => e.value_type(),
            Expr::Binary(b) => {
                if b.lhs.value_type() == ValueType::Scalar && b.rhs.value_type() == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Expr::Call(c) => c.func.info().ret,
        }
    }

    pub fn span(&self) -> Span {
        match self {
            Expr::Number(_, s) | Expr::Matrix(_, _, s) | Expr::Paren(_, s) | Expr::Neg(_, s) => *s,
            Expr::String(l) => l.span,
            Expr::Vector(v) => v.span,
            Expr::Subquery(s) => s.span,
            Expr::Binary(b) => b.span,
            Expr::Aggregate(a) => a.span,
            Expr::Call(c) => c.span,
        }
    }

    /// The expression inside any number of parentheses.
    pub fn unparen(&self) -> &Expr {
        match self {
            Expr::Paren(e, _) => e.unparen(),
            e => e,
        }
    }

    /// Calls `f` on this node and every node below it, parents first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Number(..) | Expr::String(_) | Expr::Vector(_) | Expr::Matrix(..) => {}
            Expr::Subquery(s) => s.expr.walk(f),
            Expr::Paren(e, _) | Expr::Neg(e, _) => e.walk(f),
            Expr::Binary(b) => {
                b.lhs.walk(f);
                b.rhs.walk(f);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    p.walk(f);
                }
                a.expr.walk(f);
            }
            Expr::Call(c) => c.args.iter().for_each(|a| a.walk(f)),
        }
    }
}
