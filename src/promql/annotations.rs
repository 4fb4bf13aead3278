//! Warnings and infos a query produces alongside its result (Prometheus's "annotations"):
//! deduplicated by message, each shown with the position of the expression it concerns.

use std::collections::HashMap;

use super::ast::Span;
use super::parser::lex::line_col;

/// Whether an annotation is a warning or an info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Warning,
    Info,
}

/// The annotations of one query, in first-seen order.
#[derive(Debug, Default, Clone)]
pub struct Annotations {
    order: Vec<(Level, String)>,
    spans: HashMap<(Level, String), Span>,
    /// Warnings from storage (a remote store that failed), shown as they are: they concern
    /// the data, not an expression.
    storage: Vec<String>,
}

impl Annotations {
    /// Adds `message` (without the "PromQL warning: " prefix) about the expression at `span`.
    /// A repeated message keeps its first place and takes the latest position, as Prometheus's
    /// map of annotations does.
    pub fn add(&mut self, level: Level, message: String, span: Span) {
        let key = (level, message);
        if self.spans.insert(key.clone(), span).is_none() {
            self.order.push(key);
        }
    }

    pub fn warn(&mut self, message: impl Into<String>, span: Span) {
        self.add(Level::Warning, message.into(), span);
    }

    pub fn info(&mut self, message: impl Into<String>, span: Span) {
        self.add(Level::Info, message.into(), span);
    }

    /// Adds a storage warning (shown without prefix or position, each message once).
    pub fn storage_warning(&mut self, message: String) {
        if !self.storage.contains(&message) {
            self.storage.push(message);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty() && self.storage.is_empty()
    }

    /// The messages of `level`, formatted as Prometheus shows them:
    /// `PromQL warning: … (1:5)`.
    pub fn strings(&self, level: Level, query: &str) -> Vec<String> {
        let prefix = match level {
            Level::Warning => "PromQL warning: ",
            Level::Info => "PromQL info: ",
        };
        let storage = if level == Level::Warning { self.storage.as_slice() } else { &[] };
        storage
            .iter()
            .cloned()
            .chain(self.order.iter().filter(|(l, _)| *l == level).map(|key| {
                let span = self.spans.get(key).copied().unwrap_or_default();
                let (line, col) = line_col(query, span.start);
                format!("{prefix}{} ({line}:{col})", key.1)
            }))
            .collect()
    }
}
