//! The topology file: one YAML document describing a whole cluster (jobs, leaf groups, globals,
//! push ring, demo targets, per-node overrides). Loading is two steps — `raw` (serde, unknown
//! keys rejected) then `validate` (meaning, defaults, node naming) — and `promtier check` runs
//! exactly this code. Runtime components are built from the typed [`Topology`].

mod config;
mod error;
mod raw;
pub mod redact;
mod validate;

use std::path::Path;

pub use config::*;
pub use error::{Problem, TopologyError, Warning};
pub use validate::parse_bytes;

/// Reads and validates a topology file.
pub fn load(file: &Path) -> Result<Topology, TopologyError> {
    let text = std::fs::read_to_string(file)
        .map_err(|source| TopologyError::Read { file: file.to_path_buf(), source })?;
    parse(&text, file)
}

/// Validates topology text as if it had been read from `file` (used for relative paths and
/// error messages).
pub fn parse(text: &str, file: &Path) -> Result<Topology, TopologyError> {
    let invalid = |problems| TopologyError::Invalid { file: file.to_path_buf(), problems };
    let raw: raw::RawTopology =
        serde_saphyr::from_str(text).map_err(|e| invalid(vec![syntax_problem(&e)]))?;
    validate::validate(raw, file).map_err(invalid)
}

/// A YAML or shape error from the deserializer, as a problem with its position.
fn syntax_problem(e: &serde_saphyr::Error) -> Problem {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
    let text = e.without_snippet().to_string();
    // The deserializer's message starts with "error: line L column C: "; we print positions our way.
    let message = match text.split_once(": ") {
        Some(("error", rest)) => match rest.split_once(": ") {
            Some((pos, msg)) if pos.starts_with("line ") => msg.to_string(),
            _ => rest.to_string(),
        },
        _ => text,
    };
    let mut message = message.lines().next().unwrap_or("").to_string();
    // It also ends with " at line L, column C", which our prefix already says.
    if let Some(i) = message.rfind(" at line ")
        && message[i..].contains(", column ")
    {
        message.truncate(i);
    }
    Problem { line, column, path: String::new(), message: suggest_field(&message) }
}

/// Shortens "unknown field `x`, expected one of a, b, …" to a did-you-mean when one is close.
fn suggest_field(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message.to_string() };
    let Some((field, expected)) = rest.split_once("`, expected one of ") else {
        return message.to_string();
    };
    let best = expected
        .split(", ")
        .map(|c| c.trim_matches('`'))
        .map(|c| (edit_distance(field, c), c))
        .min()
        .filter(|(d, _)| *d <= 2);
    match best {
        Some((_, c)) => format!("unknown field `{field}` (did you mean `{c}`?)"),
        None => message.to_string(),
    }
}

/// Levenshtein distance, for suggestions on short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
