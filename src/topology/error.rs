//! Errors of topology loading: a file that cannot be read, or every problem found in it, each
//! with line, column and YAML path; and the warnings of a valid file (keys accepted but not
//! implemented yet).

use std::fmt;
use std::path::PathBuf;

/// One problem in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the offending value.
    pub line: u64,
    /// 1-based column of the offending value.
    pub column: u64,
    /// Where in the document, e.g. `jobs[1].scrape_timeout`; empty for syntax errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    /// `line:column: message (at path)`; the file name is added by [`TopologyError`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        Ok(())
    }
}

/// A valid key whose feature is not built yet: `promtier check`, `promtier up` and the nodes it
/// concerns say so loudly rather than ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line of the key's value.
    pub line: u64,
    /// 1-based column of the key's value.
    pub column: u64,
    /// The key, e.g. `globals[0].remote_write`.
    pub path: String,
    /// What is (not) done, e.g. `accepted but not implemented yet: nothing is written remotely`.
    pub message: String,
    /// The global whose nodes log it at start, if it concerns one.
    pub global: Option<String>,
}

impl Warning {
    /// `globals[0].remote_write (topology.yaml:12:5) is accepted but not implemented yet: …`
    pub fn render(&self, file: &std::path::Path) -> String {
        format!("{} ({}:{}:{}) is {}", self.path, file.display(), self.line, self.column, self.message)
    }
}

impl fmt::Display for Warning {
    /// `line:column: message (at path)`, as [`Problem`] shows itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {} (at {})", self.line, self.column, self.message, self.path)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    #[error("{}: cannot read topology file: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid topology; every problem found is listed.
    #[error("{}", render_problems(file, problems))]
    Invalid { file: PathBuf, problems: Vec<Problem> },
}

impl TopologyError {
    /// The problems found (empty for read errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            TopologyError::Invalid { problems, .. } => problems,
            TopologyError::Read { .. } => &[],
        }
    }
}

fn render_problems(file: &std::path::Path, problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("{}:{p}", file.display())).collect::<Vec<_>>().join("\n")
}
