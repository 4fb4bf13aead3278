//! Relabelling with Prometheus's semantics: the `relabel_configs` / `metric_relabel_configs`
//! rule syntax ([`RawRelabelConfig`], validated by [`RawRelabelConfig::compile`] exactly as
//! Prometheus's config loader does) and the rule engine ([`relabel`]) that rewrites, keeps or
//! drops a label set. It leaves where the labels come from (discovery, scrapes) and what a
//! dropped set means to its callers, and the `hashmod` function itself to [`crate::shard`].
//!
//! Behaviour follows current Prometheus (validation as since 2.49; `.` matches newlines as since
//! 3.0) with legacy label names (`[a-zA-Z_][a-zA-Z0-9_]*`). Regexes are compiled fully anchored
//! (`^(?s:…)$`) by Rust's `regex` crate, whose syntax is RE2's like Go's. Known differences:
//! `\d`, `\w`, `\s` and `\b` are Unicode-aware here and ASCII-only in Go (write `[0-9]` to be
//! portable), and a few rare constructs are accepted by only one of the two (Go's `\Q…\E`,
//! repetition counts above 1000).
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
