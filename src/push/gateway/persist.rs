//! Saving the groups to a file and loading them back, so that a restarted push node keeps them
//! (Pushgateway's `--persistence.file`). The file is JSON (format in `docs/push.md`), written to a
//! temporary file beside the target, fsynced and renamed over it, so a crash leaves the old file
//! or the new one. Loading checks the groups as pushes are checked.
//!
//! Both calls block on file I/O: call them from a blocking thread, not from the async runtime.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::family::{Family, FamilyKind, Histogram, Metric, MetricValue, Summary, sanitize};
use super::key::GroupingKey;
use super::store::{Group, GroupStore, Inner};
use crate::exposition::{parse_float, write_float};
use crate::model::{is_valid_label_name, is_valid_metric_name};

/// What the file says it is.
const FORMAT: &str = "promtier-push-groups";
const VERSION: u32 = 1;

/// Why the groups could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a push-group file: {source}", path.display())]
    Decode { path: PathBuf, source: serde_json::Error },
    #[error("{}: format {format:?} version {version} is not {FORMAT:?} version {VERSION}", path.display())]
    Version { path: PathBuf, format: String, version: u32 },
    #[error("{}: group {group}: {reason}", path.display())]
    Invalid { path: PathBuf, group: String, reason: String },
    #[error("encoding the push groups: {0}")]
    Encode(serde_json::Error),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    format: String,
    version: u32,
    groups: Vec<RawGroup>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    /// The grouping key, `job` included; values may be empty.
    labels: BTreeMap<String, String>,
    push_time_seconds: String,
    push_failure_time_seconds: String,
    families: Vec<RawFamily>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFamily {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    help: Option<String>,
    metrics: Vec<RawMetric>,
}

/// Exactly one of `value`, `summary`, `histogram`, as the family's type says.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<RawSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    histogram: Option<RawHistogram>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSummary {
    /// [quantile, value] pairs.
    quantiles: Vec<(String, String)>,
    sum: String,
    count: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistogram {
    /// [upper bound, cumulative count] pairs.
    buckets: Vec<(String, u64)>,
    sum: String,
    count: u64,
}

/// Floats are strings in the text format's spelling (`NaN`, `+Inf`, shortest round-trip digits),
/// which JSON numbers cannot all carry.
fn float(v: f64) -> String {
    let mut out = Vec::with_capacity(24);
    write_float(&mut out, v);
    String::from_utf8_lossy(&out).into_owned()
}

fn read_float(s: &str) -> Result<f64, String> {
    parse_float(s.as_bytes()).ok_or_else(|| format!("invalid number {s:?}"))
}

fn raw_group(key: &GroupingKey, group: &Group) -> RawGroup {
    let pairs = |labels: &[(String, String)]| labels.iter().cloned().collect::<BTreeMap<_, _>>();
    let families = group
        .families
        .iter()
        .map(|(name, f)| RawFamily {
            name: name.clone(),
            kind: f.kind.as_str().to_string(),
            help: f.help.clone(),
            metrics: f
                .metrics
                .iter()
                .map(|m| {
                    let mut raw =
                        RawMetric { labels: pairs(&m.labels), value: None, summary: None, histogram: None };
                    match &m.value {
                        MetricValue::Simple(v) => raw.value = Some(float(*v)),
                        MetricValue::Summary(s) => {
                            raw.summary = Some(RawSummary {
                                quantiles: s.quantiles.iter().map(|(q, v)| (float(*q), float(*v))).collect(),
                                sum: float(s.sum),
                                count: s.count,
                            })
                        }
                        MetricValue::Histogram(h) => {
                            raw.histogram = Some(RawHistogram {
                                buckets: h.buckets.iter().map(|(b, c)| (float(*b), *c)).collect(),
                                sum: float(h.sum),
                                count: h.count,
                            })
                        }
                    }
                    raw
                })
                .collect(),
        })
        .collect();
    RawGroup {
        labels: key.pairs().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        push_time_seconds: float(group.push_time),
        push_failure_time_seconds: float(group.push_failure_time),
        families,
    }
}

/// The key and group a file's group describes, validated as a push would be.
fn group_of(raw: RawGroup) -> Result<(GroupingKey, Group), String> {
    let job = raw.labels.get("job").ok_or("no job label")?;
    let others: Vec<(&str, &str)> =
        raw.labels.iter().filter(|(n, _)| *n != "job").map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let key = GroupingKey::new(job, &others).map_err(|e| e.to_string())?;
    let mut families = BTreeMap::new();
    for f in raw.families {
        if !is_valid_metric_name(&f.name) {
            return Err(format!("invalid metric name {:?}", f.name));
        }
        let kind = FamilyKind::parse(&f.kind)
            .ok_or_else(|| format!("family {:?}: unknown type {:?}", f.name, f.kind))?;
        let mut metrics = Vec::with_capacity(f.metrics.len());
        for m in f.metrics {
            let mut labels: Vec<(String, String)> = m.labels.into_iter().collect();
            if let Some((n, _)) = labels.iter().find(|(n, _)| !is_valid_label_name(n)) {
                return Err(format!("family {:?}: invalid label name {n:?}", f.name));
            }
            sanitize(&mut labels, &key);
            let value = match (kind, m.value, m.summary, m.histogram) {
                (FamilyKind::Counter | FamilyKind::Gauge | FamilyKind::Untyped, Some(v), None, None) => {
                    MetricValue::Simple(read_float(&v)?)
                }
                (FamilyKind::Summary, None, Some(s), None) => MetricValue::Summary(Summary {
                    quantiles: s
                        .quantiles
                        .iter()
                        .map(|(q, v)| Ok((read_float(q)?, read_float(v)?)))
                        .collect::<Result<_, String>>()?,
                    sum: read_float(&s.sum)?,
                    count: s.count,
                }),
                (FamilyKind::Histogram, None, None, Some(h)) => MetricValue::Histogram(Histogram {
                    buckets: h
                        .buckets
                        .iter()
                        .map(|(b, c)| Ok((read_float(b)?, *c)))
                        .collect::<Result<_, String>>()?,
                    sum: read_float(&h.sum)?,
                    count: h.count,
                }),
                _ => return Err(format!("family {:?}: a metric does not match the type {}", f.name, f.kind)),
            };
            metrics.push(Metric { labels, value });
        }
        if metrics.is_empty() {
            return Err(format!("family {:?} has no metrics", f.name));
        }
        if families.insert(f.name.clone(), Family { help: f.help, kind, metrics }).is_some() {
            return Err(format!("family {:?} given twice", f.name));
        }
    }
    let group = Group {
        families,
        push_time: read_float(&raw.push_time_seconds)?,
        push_failure_time: read_float(&raw.push_failure_time_seconds)?,
    };
    Ok((key, group))
}

fn io_error(path: &Path, source: io::Error) -> PersistError {
    PersistError::Io { path: path.to_path_buf(), source }
}

impl GroupStore {
    /// Writes every group to `path`, atomically: a temporary file beside it (`<path>.tmp`), fsync,
    /// rename, fsync of the directory. The store stays usable meanwhile (it is copied under the
    /// lock, then written). One saver per path at a time.
    pub fn save(&self, path: &Path) -> Result<(), PersistError> {
        let file = {
            let inner = self.inner.lock();
            RawFile {
                format: FORMAT.to_string(),
                version: VERSION,
                groups: inner.groups.iter().map(|(k, g)| raw_group(k, g)).collect(),
            }
        };
        let mut bytes = serde_json::to_vec(&file).map_err(PersistError::Encode)?;
        bytes.push(b'\n');
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(&tmp, e));
        }
        fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
    }

    /// The groups saved in `path`; an empty store when there is no such file (a first start).
    pub fn load(path: &Path) -> Result<GroupStore, PersistError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(GroupStore::new()),
            Err(e) => return Err(io_error(path, e)),
        };
        let file: RawFile = serde_json::from_slice(&bytes)
            .map_err(|source| PersistError::Decode { path: path.to_path_buf(), source })?;
        if file.format != FORMAT || file.version != VERSION {
            return Err(PersistError::Version {
                path: path.to_path_buf(),
                format: file.format,
                version: file.version,
            });
        }
        let mut inner = Inner::default();
        for (i, raw) in file.groups.into_iter().enumerate() {
            let invalid = |group: String, reason: String| PersistError::Invalid {
                path: path.to_path_buf(),
                group,
                reason,
            };
            let (key, group) = group_of(raw).map_err(|reason| invalid(format!("#{}", i + 1), reason))?;
            if inner.groups.contains_key(&key) {
                return Err(invalid(key.to_string(), "given twice".to_string()));
            }
            inner.restore(&key, group).map_err(|e| invalid(key.to_string(), e.to_string()))?;
        }
        Ok(GroupStore { inner: parking_lot::Mutex::new(inner) })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::push::gateway::PushMethod;

    fn key(path: &str) -> GroupingKey {
        GroupingKey::parse(path).unwrap()
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.json");
        assert!(GroupStore::load(&path).unwrap().snapshot().is_empty(), "no file is an empty store");
        let store = GroupStore::new();
        let t = UNIX_EPOCH + Duration::from_nanos(1_796_494_696_372_757_700);
        let body = "# TYPE h histogram\n# HELP h Latency.\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum NaN\nh_count 2\n\
                    # TYPE s summary\ns{quantile=\"0.99\"} -Inf\ns_count -1\nu{a=\"\"} 1e-300\ng 0.1\n";
        store.push_at(&key("job/a/instance@base64/="), PushMethod::Put, None, body.as_bytes(), t).unwrap();
        store.push_at(&key("job@base64/L3Zhcg/x/1"), PushMethod::Put, None, b"g 7 1\n", t).unwrap_err();
        store.save(&path).unwrap();
        assert!(!dir.path().join("groups.json.tmp").exists());
        let loaded = GroupStore::load(&path).unwrap();
        let (a, b) = (store.snapshot(), loaded.snapshot());
        assert_eq!(a.families(), b.families());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.series().iter().zip(b.series()) {
            assert_eq!((&x.labels, x.value.to_bits(), x.family), (&y.labels, y.value.to_bits(), y.family));
        }
        assert_eq!(loaded.keys(), store.keys());
        // What was loaded is checked like a push: the same family with another type is refused.
        loaded.push(&key("job/b"), PushMethod::Put, None, b"g 1\n").unwrap();
        assert!(loaded.push(&key("job/c"), PushMethod::Put, None, b"# TYPE g counter\ng 1\n").is_err());
        // Saving over an existing file replaces it (the refused push made its group, as in
        // Pushgateway).
        loaded.save(&path).unwrap();
        assert_eq!(GroupStore::load(&path).unwrap().keys().len(), 4);
    }

    #[test]
    fn bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        let load = |text: &str| {
            fs::write(&path, text).unwrap();
            GroupStore::load(&path).map(|_| ()).unwrap_err()
        };
        assert!(matches!(load("{"), PersistError::Decode { .. }));
        assert!(matches!(load(r#"{"format":"x","version":1,"groups":[]}"#), PersistError::Version { .. }));
        let group = |labels: &str, families: &str| {
            format!(
                r#"{{"format":"{FORMAT}","version":1,"groups":[{{"labels":{labels},"push_time_seconds":"1","push_failure_time_seconds":"0","families":{families}}}]}}"#
            )
        };
        assert!(matches!(load(&group(r#"{"x":"1"}"#, "[]")), PersistError::Invalid { .. }));
        assert!(matches!(load(&group(r#"{"job":"a","__x":"1"}"#, "[]")), PersistError::Invalid { .. }));
        let fam =
            |kind: &str, metric: &str| format!(r#"[{{"name":"m","type":"{kind}","metrics":[{metric}]}}]"#);
        let job = r#"{"job":"a"}"#;
        assert!(matches!(
            load(&group(job, &fam("gauge", r#"{"labels":{},"value":"x"}"#))),
            PersistError::Invalid { .. }
        ));
        assert!(matches!(
            load(&group(job, &fam("summary", r#"{"labels":{},"value":"1"}"#))),
            PersistError::Invalid { .. }
        ));
        assert!(matches!(
            load(&group(job, &fam("gauge", r#"{"labels":{"__y":"1"},"value":"1"}"#))),
            PersistError::Invalid { .. }
        ));
        fs::write(&path, group(job, &fam("gauge", r#"{"labels":{},"value":"+Inf"}"#))).unwrap();
        let store = GroupStore::load(&path).unwrap();
        assert_eq!(store.snapshot().len(), 3);
    }
}
