//! The Prometheus text exposition format (0.0.4): a zero-copy streaming parser for scraped bodies
//! (with an OpenMetrics mode for targets that answer in it) and a writer that produces exactly
//! Prometheus's bytes for `/federate` and `/metrics`.
//!
//! The parser hands out borrowed entries and validates as it goes; what to do with them (series
//! caches, metadata, staleness, limits) is the scraper's business. The writer only formats: which
//! series to write and in what order is up to its callers.

mod lex;
mod parser;
mod writer;

pub use parser::{
    Entry, KnownLine, LabelPairs, ParseError, ParseErrorKind, SeriesLine, TextFormat, TextParser,
};
// The sample-value grammar and the `le`/`quantile` spelling, for callers that read or write
// the same values outside a scrape (the push gateway's stored groups).
pub(crate) use lex::parse_float;
pub(crate) use writer::write_openmetrics_float;
pub use writer::{
    write_float, write_help_line, write_label_value, write_name, write_series_line, write_type_line,
};
