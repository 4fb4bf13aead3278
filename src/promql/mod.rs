//! PromQL: parsing (promql-parser, behind our own tree with positions), and our evaluation
//! engine, which reads storage only through the [`Queryable`](crate::storage::Queryable) /
//! [`Querier`](crate::storage::Querier) interfaces.
//!
//! Layout: [`parser`] turns text into an [`ast::Expr`]; [`engine`] runs instant and range
//! queries with limits; `eval` walks the tree over all steps; [`functions`] holds the function
//! library; [`value`] the results; [`annotations`] the warnings and infos. Semantics follow
//! Prometheus 3 as its own test scripts pin them, including delayed `__name__` removal. Native
//! histograms are not supported: storage holds floats only.

pub mod annotations;
pub mod ast;
pub mod engine;
mod eval;
pub mod functions;
pub mod parser;
pub mod value;

pub use engine::{Engine, EngineOptions, QueryError, QueryResult, SourceResolution};
pub use parser::{ParseError, parse};
pub use value::{Point, Sample, Series, Value};
