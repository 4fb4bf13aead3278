//! Relabelling with Prometheus's semantics: the `relabel_configs` / `metric_relabel_configs`
//! rule syntax ([`RawRelabelConfig`], validated by [`RawRelabelConfig::compile`] exactly as
//! Prometheus's config loader does) and the rule engine ([`relabel`]) that rewrites, keeps or
//! drops a label set. It leaves where the labels come from (discovery, scrapes) and what a
//! dropped set means to its callers, and the `hashmod` function itself to [`crate::shard`].
//!
//! Behaviour follows Prometheus 2.x / 3.x with legacy (`[a-zA-Z_][a-zA-Z0-9_]*`) label names.
//! Regexes are compiled fully anchored (`^(?s:…)$`) with Rust's `regex` crate, whose syntax is
//! RE2's like Go's; one known difference remains: `\d`, `\w`, `\s` and `\b` are
//! Unicode-aware in Rust and ASCII-only in Go (write `[0-9]` to be portable).
//!
//! The table of cases in `tests/data/relabel/` pins the behaviour of every action.

mod case;
mod config;
mod process;
mod template;

pub use config::{
    Action, DEFAULT_REGEX, DEFAULT_REPLACEMENT, DEFAULT_SEPARATOR, RawRelabelConfig, RelabelConfig,
    RelabelError,
};
pub use process::{relabel, relabel_labels};
