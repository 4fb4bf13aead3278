//! Target discovery: `static_configs` as given, and `file_sd_configs` files (JSON or YAML lists
//! of `{targets, labels}`) re-read when they change or every `refresh_interval`. A file that
//! fails to parse keeps its last good content, as in Prometheus.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::model::{Label, Labels, is_valid_label_name};
use crate::topology::{FileSdConfig, ScrapeConfig, TargetGroup};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("bad file pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: HashMap<String, String>,
}

/// What we last saw of one file.
#[derive(Debug, Clone)]
struct FileState {
    stamp: (Option<SystemTime>, u64),
    groups: Vec<TargetGroup>,
}

/// Discovery for one job.
#[derive(Debug)]
pub struct JobDiscovery {
    static_groups: Vec<TargetGroup>,
    file_sd: Vec<FileSdConfig>,
    files: HashMap<PathBuf, FileState>,
    last_full_read: Option<Instant>,
    /// Whether the first result has been handed out (it is reported even when empty).
    reported: bool,
}

impl JobDiscovery {
    pub fn new(job: &ScrapeConfig) -> JobDiscovery {
        let static_groups = job
            .static_configs
            .iter()
            .map(|g| TargetGroup { source: format!("static:{}", g.source), ..g.clone() })
            .collect();
        JobDiscovery {
            static_groups,
            file_sd: job.file_sd_configs.clone(),
            files: HashMap::new(),
            last_full_read: None,
            reported: false,
        }
    }

    pub fn has_files(&self) -> bool {
        !self.file_sd.is_empty()
    }

    /// Re-reads changed files (or all of them when a refresh interval passed). Returns the job's
    /// complete target groups when anything changed, and every error met on the way.
    pub fn poll(&mut self) -> (Option<Vec<TargetGroup>>, Vec<DiscoveryError>) {
        let mut errors = Vec::new();
        let refresh = self.file_sd.iter().map(|c| c.refresh_interval).min().unwrap_or(Duration::MAX);
        let full = self.last_full_read.is_none_or(|t| t.elapsed() >= refresh);
        if full {
            self.last_full_read = Some(Instant::now());
        }
        let mut changed = !self.reported;
        self.reported = true;
        let mut seen: Vec<PathBuf> = Vec::new();
        for cfg in &self.file_sd {
            for pattern in &cfg.files {
                let paths = match expand(pattern) {
                    Ok(p) => p,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                for path in paths {
                    seen.push(path.clone());
                    let stamp = stamp(&path);
                    let prev = self.files.get(&path);
                    if !full && prev.is_some_and(|p| p.stamp == stamp) {
                        continue;
                    }
                    match read_file(&path) {
                        Ok(groups) => {
                            if prev.is_none_or(|p| p.groups != groups) {
                                changed = true;
                            }
                            self.files.insert(path, FileState { stamp, groups });
                        }
                        Err(e) => {
                            // Keep the last good groups; remember the stamp so we do not re-read
                            // (and re-log) an unchanged broken file every poll.
                            let groups = prev.map(|p| p.groups.clone()).unwrap_or_default();
                            self.files.insert(path, FileState { stamp, groups });
                            errors.push(e);
                        }
                    }
                }
            }
        }
        let before = self.files.len();
        self.files.retain(|p, _| seen.contains(p));
        changed |= self.files.len() != before;
        (changed.then(|| self.groups()), errors)
    }

    /// All current groups: static first, then files in path order.
    pub fn groups(&self) -> Vec<TargetGroup> {
        let mut out = self.static_groups.clone();
        let mut paths: Vec<&PathBuf> = self.files.keys().collect();
        paths.sort();
        for p in paths {
            out.extend(self.files[p].groups.iter().cloned());
        }
        out
    }
}

fn stamp(path: &Path) -> (Option<SystemTime>, u64) {
    match std::fs::metadata(path) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    }
}

fn expand(pattern: &Path) -> Result<Vec<PathBuf>, DiscoveryError> {
    let p = pattern.to_string_lossy();
    let err = |message: String| DiscoveryError::Pattern { pattern: p.to_string(), message };
    let mut out = Vec::new();
    for entry in glob::glob(&p).map_err(|e| err(e.to_string()))? {
        out.push(entry.map_err(|e| err(e.to_string()))?);
    }
    out.sort();
    Ok(out)
}

/// Parses one file_sd file into target groups labelled with `__meta_filepath`.
pub fn read_file(path: &Path) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| DiscoveryError::Read { path: path.to_path_buf(), source })?;
    let parse_err = |message: String| DiscoveryError::Parse { path: path.to_path_buf(), message };
    let is_json = path.extension().is_some_and(|e| e == "json");
    let groups: Vec<FileGroup> = if is_json {
        serde_json::from_str(&text).map_err(|e| parse_err(e.to_string()))?
    } else if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| parse_err(e.without_snippet().to_string()))?
    };
    let filepath = path.to_string_lossy().to_string();
    let mut out = Vec::new();
    for (i, g) in groups.into_iter().enumerate() {
        let mut labels = vec![Label::new("__meta_filepath", filepath.clone())];
        for (name, value) in g.labels {
            if !is_valid_label_name(&name) {
                return Err(parse_err(format!("group {i}: {name:?} is not a valid label name")));
            }
            labels.push(Label::new(name, value));
        }
        for t in &g.targets {
            if t.contains('/') || t.is_empty() {
                return Err(parse_err(format!(
                    "group {i}: {t:?} is not a valid target address (want host:port)"
                )));
            }
        }
        out.push(TargetGroup {
            targets: g.targets,
            labels: Labels::new(labels),
            source: format!("{filepath}:{i}"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_and_yaml_and_keeps_last_good() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let json = dir.path().join("a.json");
        std::fs::write(&json, r#"[{"targets": ["h:1", "h:2"], "labels": {"env": "x"}}]"#)?;
        let yaml = dir.path().join("b.yaml");
        std::fs::write(&yaml, "- targets: ['h:3']\n")?;
        let g = read_file(&json)?;
        assert_eq!(g[0].targets, ["h:1", "h:2"]);
        assert_eq!(g[0].labels.get("env"), Some("x"));
        assert_eq!(g[0].labels.get("__meta_filepath"), Some(json.to_string_lossy().as_ref()));
        assert_eq!(read_file(&yaml)?[0].targets, ["h:3"]);

        let job_yaml = format!(
            "  - job_name: j\n    file_sd_configs: [{{files: ['{}/*.json', '{}/*.yaml'], refresh_interval: 1h}}]",
            dir.path().display(),
            dir.path().display()
        );
        let job = crate::scrape::target::tests::job(&job_yaml);
        let mut d = JobDiscovery::new(&job);
        let (groups, errs) = d.poll();
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(groups.map(|g| g.len()), Some(2));
        // Unchanged: nothing to report.
        assert!(d.poll().0.is_none());
        // Broken file: an error, and the last good groups stay.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&json, "[{\"targets\": [")?;
        let (groups, errs) = d.poll();
        assert_eq!(errs.len(), 1);
        assert!(groups.is_none());
        assert_eq!(d.groups().len(), 2);
        // Fixed with a new target: reported.
        std::fs::write(&json, r#"[{"targets": ["h:9"]}]"#)?;
        let (groups, _) = d.poll();
        let targets: Vec<String> = groups.unwrap_or_default().into_iter().flat_map(|g| g.targets).collect();
        assert_eq!(targets, ["h:9", "h:3"]);
        Ok(())
    }
}
