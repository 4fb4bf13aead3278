//! What a global keeps across restarts besides its samples: each replica set's watermark (how far
//! its stored data is complete) and each source's fast-link cursor with the position it saw in
//! that source's rewind log. A restart resumes every set from its own watermark — also a set that
//! was away before the restart, which is filled once it returns. Kept in
//! `<data_dir>/global-state.json`, replaced atomically (temporary file, then rename), written
//! after commits, so it never claims more than the TSDB holds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a global state file: {source}")]
    Parse { path: String, source: serde_json::Error },
}

/// A source's fast-link position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceCursor {
    /// Everything at or before it that the source holds has been stored (or was not wanted).
    pub(crate) cursor: i64,
    /// The source's epoch and rewind-log position at that cursor.
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Persisted {
    /// Replica set → watermark (failover mode).
    #[serde(default)]
    sets: BTreeMap<String, i64>,
    /// Source node → its cursor.
    #[serde(default)]
    sources: BTreeMap<String, SourceCursor>,
    /// Replica set → the replica elected (failover mode), preferred again after a restart.
    #[serde(default)]
    elected: BTreeMap<String, String>,
}

/// The global's restart state (see the module doc).
pub(crate) struct GlobalState {
    path: Option<PathBuf>,
    inner: Mutex<(Persisted, bool)>,
}

impl GlobalState {
    /// Loads the state at `path` (empty when there is none); `None` keeps nothing on disk.
    pub(crate) fn load(path: Option<PathBuf>) -> Result<GlobalState, StateError> {
        let p = match &path {
            Some(p) => match std::fs::read(p) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|source| StateError::Parse { path: p.display().to_string(), source })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
                Err(source) => return Err(StateError::Io { path: p.display().to_string(), source }),
            },
            None => Persisted::default(),
        };
        Ok(GlobalState { path, inner: Mutex::new((p, false)) })
    }

    pub(crate) fn source(&self, node: &str) -> Option<SourceCursor> {
        self.inner.lock().0.sources.get(node).copied()
    }

    pub(crate) fn set_source(&self, node: &str, c: SourceCursor) {
        let mut g = self.inner.lock();
        let (p, dirty) = &mut *g;
        *dirty |= changed(&mut p.sources, node.to_string(), c);
    }

    /// Watermarks of the sets, as stored last time.
    pub(crate) fn watermarks(&self) -> BTreeMap<String, i64> {
        self.inner.lock().0.sets.clone()
    }

    pub(crate) fn set_watermarks(&self, marks: Vec<(String, i64)>) {
        let mut g = self.inner.lock();
        let (p, dirty) = &mut *g;
        for (k, w) in marks {
            *dirty |= changed(&mut p.sets, k, w);
        }
    }

    /// The replica each set had elected.
    pub(crate) fn elections(&self) -> BTreeMap<String, String> {
        self.inner.lock().0.elected.clone()
    }

    pub(crate) fn set_elections(&self, elected: Vec<(String, String)>) {
        let mut g = self.inner.lock();
        let (p, dirty) = &mut *g;
        for (k, r) in elected {
            *dirty |= changed(&mut p.elected, k, r);
        }
    }

    /// Writes the state if it changed since the last write (blocking I/O: call off the async
    /// workers).
    pub(crate) fn flush(&self) -> Result<(), StateError> {
        let Some(path) = &self.path else { return Ok(()) };
        let bytes = {
            let mut g = self.inner.lock();
            if !g.1 {
                return Ok(());
            }
            g.1 = false;
            serde_json::to_vec_pretty(&g.0)
                .map_err(|source| StateError::Parse { path: path.display().to_string(), source })?
        };
        let io = |source| StateError::Io { path: path.display().to_string(), source };
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Sets `map[key] = value`; whether that changed anything.
fn changed<V: PartialEq>(map: &mut BTreeMap<String, V>, key: String, value: V) -> bool {
    if map.get(&key) == Some(&value) {
        return false;
    }
    map.insert(key, value);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_writes_only_changes() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("global-state.json");
        let s = GlobalState::load(Some(path.clone()))?;
        assert!(s.source("apps-0-a").is_none());
        s.set_source("apps-0-a", SourceCursor { cursor: 10, epoch: 2, seq: 3 });
        s.set_watermarks(vec![("apps-0".into(), 9)]);
        s.flush()?;
        let modified = std::fs::metadata(&path)?.modified()?;
        s.flush()?;
        assert_eq!(std::fs::metadata(&path)?.modified()?, modified);
        let again = GlobalState::load(Some(path))?;
        assert_eq!(again.source("apps-0-a"), Some(SourceCursor { cursor: 10, epoch: 2, seq: 3 }));
        assert_eq!(again.watermarks().get("apps-0"), Some(&9));
        Ok(())
    }
}
