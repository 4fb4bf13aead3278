//! Turns a [`RawTopology`] into a [`Topology`], reporting every problem with its position and
//! YAML path instead of stopping at the first.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::config::*;
use super::error::Problem;
use super::raw::*;
use crate::model::{Label, Labels, is_valid_label_name, parse_duration, parse_selector};
use crate::relabel::{RawRelabelConfig, RelabelConfig};
use crate::shard::{ShardStrategy, Sharder};

mod remote_read;

const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETENTION: Duration = Duration::from_secs(15 * 24 * 3600);
const DEFAULT_FILE_SD_REFRESH: Duration = Duration::from_secs(300);
const DEFAULT_FEDERATE_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_FEDERATE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);
/// A replica covering less than this fraction of its best peer's targets or series loses the
/// election: well below the noise between two healthy replicas, well above a half-broken one.
const DEFAULT_MIN_COVERAGE: f64 = 0.8;
/// A scrape reads at most this much body (`body_size_limit`; Prometheus has no limit by
/// default): far above any sane exporter (a node exporter sends a few hundred KiB, a large
/// kube-state-metrics tens of MiB), far below what takes a node down.
pub(crate) const DEFAULT_BODY_SIZE_LIMIT: usize = 128 << 20;
/// A pull reads at most this much body (`federate.body_size_limit`), or twice the fast-link page
/// bound when that is larger: text `/federate` of a whole Prometheus is not paged.
pub(crate) const DEFAULT_FEDERATE_BODY_SIZE_LIMIT: usize = 256 << 20;

/// A size in bytes: a plain number, or a number with a unit as Prometheus writes them (`B`, `KB`,
/// `MB`, `GB`, powers of 1024; `KiB`, `MiB`, `GiB` too).
pub fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Collects problems while building the typed topology.
struct Validator {
    problems: Vec<Problem>,
    /// Directory of the topology file; relative paths in it are resolved against this.
    dir: PathBuf,
}

/// Defaults that every job and node inherits.
struct Defaults {
    scrape_interval: Duration,
    scrape_timeout: Duration,
    retention: Duration,
    data_dir: PathBuf,
    shard_label: String,
    replica_label: String,
    external_labels: Vec<Label>,
    fast_link: FastLinkConfig,
    web: Arc<WebConfig>,
    client: Arc<ClientConfig>,
}

pub(crate) fn validate(raw: RawTopology, file: &Path) -> Result<Topology, Vec<Problem>> {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut v = Validator { problems: Vec::new(), dir };
    let cluster = raw.cluster.value.clone();
    if cluster.is_empty() {
        v.err(&raw.cluster, "cluster", "cluster must not be empty");
    }
    let defaults = v.defaults(raw.defaults.as_ref());
    let jobs = v.jobs(&raw.jobs, &defaults);
    let leaf_groups = v.leaf_groups(&raw, &jobs, &defaults);
    let external_groups = v.external_groups(&raw, &leaf_groups);
    let mut globals = v.globals(&raw, &leaf_groups, &external_groups, &defaults);
    v.reachable(&raw, &leaf_groups, &globals);
    v.federate_body_limits(&raw, &mut globals, &defaults.fast_link);
    let push = raw.push.as_ref().and_then(|p| v.push(p, &defaults));
    v.push_sources(&raw, &globals);
    let demo = raw.demo.as_ref().and_then(|d| v.demo(d));
    let nodes = v.nodes(&raw, &defaults, &cluster, &leaf_groups, &globals, push.as_ref(), demo.as_ref());
    // Every key validated here is acted on; `warnings` carries keys accepted before their
    // feature exists (none at present).
    let warnings = Vec::new();

    if v.problems.is_empty() {
        Ok(Topology {
            source: file.to_path_buf(),
            cluster,
            shard_label: defaults.shard_label,
            replica_label: defaults.replica_label,
            jobs: jobs.into_iter().map(Arc::new).collect(),
            leaf_groups,
            globals,
            external_groups,
            push,
            demo,
            fast_link: defaults.fast_link,
            nodes,
            warnings,
        })
    } else {
        v.problems.sort_by_key(|p| (p.line, p.column));
        v.problems.dedup();
        Err(v.problems)
    }
}

/// The rollups a global keeps when its topology says nothing: 5m for 90 days, 1h for 2 years
/// (each at least as long as raw data).
fn default_downsample() -> Vec<Downsample> {
    let day = 86_400;
    vec![
        Downsample { resolution: Duration::from_secs(300), retention: Some(Duration::from_secs(90 * day)) },
        Downsample { resolution: Duration::from_secs(3600), retention: Some(Duration::from_secs(730 * day)) },
    ]
}

impl Validator {
    fn err<T>(&mut self, at: &Spanned<T>, path: impl Display, message: impl Into<String>) {
        self.err_at(at.referenced, path, message);
    }

    fn err_at(&mut self, loc: Location, path: impl Display, message: impl Into<String>) {
        self.problems.push(Problem {
            line: loc.line(),
            column: loc.column(),
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn duration(&mut self, s: &Spanned<String>, path: impl Display) -> Option<Duration> {
        match parse_duration(&s.value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(s, path, e.to_string());
                None
            }
        }
    }

    fn opt_duration(
        &mut self,
        s: Option<&Spanned<String>>,
        path: impl Display,
        default: Duration,
    ) -> Duration {
        s.and_then(|s| self.duration(s, path)).unwrap_or(default)
    }

    /// One `remote_write` entry (`rp` is its YAML path).
    fn remote_write(&mut self, r: &RawRemoteWrite, rp: &str) -> RemoteWriteConfig {
        match url::Url::parse(&r.url.value) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(_) => self.err(&r.url, format!("{rp}.url"), "remote_write url must be http or https"),
            Err(e) => self.err(
                &r.url,
                format!("{rp}.url"),
                format!("invalid remote_write url {:?}: {e}", r.url.value),
            ),
        }
        let remote_timeout = self.positive_duration(
            r.remote_timeout.as_ref(),
            format!("{rp}.remote_timeout"),
            DEFAULT_REMOTE_TIMEOUT,
        );
        let auth =
            self.auth(r.basic_auth.as_ref(), r.bearer_token.as_ref(), r.bearer_token_file.as_ref(), rp);
        let tls = self.tls_config(r.tls_config.as_ref(), &format!("{rp}.tls_config"));
        let write_relabel_configs =
            self.relabels(&r.write_relabel_configs, &format!("{rp}.write_relabel_configs"));
        let queue = match &r.queue_config {
            Some(q) => self.queue_config(&q.value, &format!("{rp}.queue_config")),
            None => QueueConfig::default(),
        };
        let protobuf_message = match &r.protobuf_message {
            None => ProtobufMessage::default(),
            Some(m) => ProtobufMessage::parse(&m.value).unwrap_or_else(|| {
                self.err(
                    m,
                    format!("{rp}.protobuf_message"),
                    format!(
                        "protobuf_message must be {} (Remote-Write 1.0) or {} (Remote-Write 2.0), got {:?}",
                        ProtobufMessage::WriteRequestV1.as_str(),
                        ProtobufMessage::RequestV2.as_str(),
                        m.value
                    ),
                );
                ProtobufMessage::default()
            }),
        };
        let metadata = match &r.metadata_config {
            Some(m) => self.metadata_config(&m.value, &format!("{rp}.metadata_config")),
            None => MetadataConfig::default(),
        };
        RemoteWriteConfig {
            url: r.url.value.clone(),
            name: r.name.clone(),
            remote_timeout,
            headers: r.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            client: ClientConfig { auth, tls },
            write_relabel_configs,
            queue,
            protobuf_message,
            metadata,
        }
    }

    /// A `metadata_config`: a positive `send_interval`, `max_samples_per_send` at least 1.
    fn metadata_config(&mut self, m: &RawMetadataConfig, mp: &str) -> MetadataConfig {
        let d = MetadataConfig::default();
        let send_interval =
            self.positive_duration(m.send_interval.as_ref(), format!("{mp}.send_interval"), d.send_interval);
        let max_samples_per_send = match &m.max_samples_per_send {
            Some(v) if !(1..=1_000_000).contains(&v.value) => {
                self.err(
                    v,
                    format!("{mp}.max_samples_per_send"),
                    format!("max_samples_per_send must be between 1 and 1000000, got {}", v.value),
                );
                d.max_samples_per_send
            }
            Some(v) => v.value as usize,
            None => d.max_samples_per_send,
        };
        MetadataConfig { send: m.send.unwrap_or(d.send), send_interval, max_samples_per_send }
    }

    /// A `queue_config`: counts at least 1 (shards at most 1000), `min_shards <= max_shards`,
    /// positive durations, `min_backoff <= max_backoff`, a backlog bound of at least 1MiB.
    fn queue_config(&mut self, q: &RawQueueConfig, qp: &str) -> QueueConfig {
        let d = QueueConfig::default();
        let count = |this: &mut Self, v: &Option<Spanned<i64>>, key: &str, max: i64, default: usize| {
            let Some(v) = v else { return default };
            if v.value < 1 || v.value > max {
                this.err(
                    v,
                    format!("{qp}.{key}"),
                    format!("{key} must be between 1 and {max}, got {}", v.value),
                );
                return default;
            }
            v.value as usize
        };
        let capacity = count(self, &q.capacity, "capacity", 10_000_000, d.capacity);
        let min_shards = count(self, &q.min_shards, "min_shards", 1000, d.min_shards);
        let max_shards = count(self, &q.max_shards, "max_shards", 1000, d.max_shards.max(min_shards));
        let max_samples_per_send =
            count(self, &q.max_samples_per_send, "max_samples_per_send", 1_000_000, d.max_samples_per_send);
        if min_shards > max_shards
            && let Some(v) = &q.min_shards
        {
            self.err(
                v,
                format!("{qp}.min_shards"),
                format!("min_shards ({min_shards}) must not exceed max_shards ({max_shards})"),
            );
        }
        let batch_send_deadline = self.positive_duration(
            q.batch_send_deadline.as_ref(),
            format!("{qp}.batch_send_deadline"),
            d.batch_send_deadline,
        );
        let min_backoff =
            self.positive_duration(q.min_backoff.as_ref(), format!("{qp}.min_backoff"), d.min_backoff);
        let max_backoff =
            self.positive_duration(q.max_backoff.as_ref(), format!("{qp}.max_backoff"), d.max_backoff);
        if min_backoff > max_backoff
            && let Some(v) = &q.min_backoff
        {
            self.err(v, format!("{qp}.min_backoff"), "min_backoff must not exceed max_backoff");
        }
        let mut max_backlog_bytes = d.max_backlog_bytes;
        if let Some(b) = &q.max_backlog {
            match parse_bytes(&b.value) {
                Some(v) if v >= 1 << 20 => max_backlog_bytes = v as u64,
                Some(_) => self.err(b, format!("{qp}.max_backlog"), "max_backlog must be at least 1MiB"),
                None => self.err(
                    b,
                    format!("{qp}.max_backlog"),
                    format!("{:?} is not a size (e.g. 1GiB, 500MB, 1048576)", b.value),
                ),
            }
        }
        QueueConfig {
            capacity,
            min_shards,
            max_shards: max_shards.max(min_shards),
            max_samples_per_send,
            batch_send_deadline,
            min_backoff,
            max_backoff: max_backoff.max(min_backoff),
            max_backlog_bytes,
        }
    }

    fn positive_duration(
        &mut self,
        s: Option<&Spanned<String>>,
        path: impl Display,
        default: Duration,
    ) -> Duration {
        let path = path.to_string();
        let d = self.opt_duration(s, &path, default);
        if let Some(s) = s
            && d.is_zero()
        {
            self.err(s, &path, "duration must be greater than zero");
            return default;
        }
        d
    }

    /// A `body_size_limit`: a size with units as Prometheus writes it, `0` for no limit.
    fn body_size_limit(&mut self, s: Option<&Spanned<String>>, path: impl Display, default: usize) -> usize {
        let Some(s) = s else { return default };
        match parse_bytes(&s.value) {
            Some(n) => n,
            None => {
                self.err(
                    s,
                    path,
                    format!("{:?} is not a size (e.g. 10MB, 512KiB, 1048576; 0 for no limit)", s.value),
                );
                default
            }
        }
    }

    fn count(&mut self, n: Option<&Spanned<i64>>, path: impl Display, what: &str) -> u32 {
        let Some(n) = n else { return 1 };
        match u32::try_from(n.value) {
            Ok(c) if c >= 1 => c,
            _ => {
                self.err(n, path, format!("{what} must be at least 1, got {}", n.value));
                1
            }
        }
    }

    fn path(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() { p.to_path_buf() } else { self.dir.join(p) }
    }

    fn label_map(&mut self, labels: &HashMap<Spanned<String>, String>, path: &str) -> Vec<Label> {
        let mut out = Vec::new();
        for (name, value) in labels {
            if !is_valid_label_name(&name.value) {
                self.err(
                    name,
                    format!("{path}.{}", name.value),
                    format!("{:?} is not a valid label name", name.value),
                );
            } else {
                out.push(Label::new(name.value.clone(), value.clone()));
            }
        }
        out
    }

    fn listen(&mut self, s: &Spanned<String>, path: impl Display) -> Option<(String, u16)> {
        match split_host_port(&s.value) {
            Some(hp) => Some(hp),
            None => {
                self.err(s, path, format!("{:?} is not a valid address (want host:port)", s.value));
                None
            }
        }
    }

    fn defaults(&mut self, raw: Option<&Spanned<RawDefaults>>) -> Defaults {
        let empty = RawDefaults::default();
        let d = raw.map(|r| &r.value).unwrap_or(&empty);
        let scrape_interval = self.positive_duration(
            d.scrape_interval.as_ref(),
            "defaults.scrape_interval",
            DEFAULT_SCRAPE_INTERVAL,
        );
        let timeout_default = DEFAULT_SCRAPE_TIMEOUT.min(scrape_interval);
        let scrape_timeout =
            self.positive_duration(d.scrape_timeout.as_ref(), "defaults.scrape_timeout", timeout_default);
        if let Some(t) = &d.scrape_timeout
            && scrape_timeout > scrape_interval
        {
            self.err(
                t,
                "defaults.scrape_timeout",
                format!(
                    "scrape_timeout ({}) is greater than scrape_interval ({})",
                    t.value,
                    fmt_d(scrape_interval)
                ),
            );
        }
        let retention = self.positive_duration(d.retention.as_ref(), "defaults.retention", DEFAULT_RETENTION);
        let data_dir = self.path(d.data_dir.as_ref().map(|s| s.value.as_str()).unwrap_or("data"));
        let mut label_name = |s: Option<&Spanned<String>>, path: &str, default: &str| -> String {
            match s {
                Some(s) if !is_valid_label_name(&s.value) => {
                    self.err(s, path, format!("{:?} is not a valid label name", s.value));
                    default.to_string()
                }
                Some(s) => s.value.clone(),
                None => default.to_string(),
            }
        };
        let shard_label = label_name(d.shard_label.as_ref(), "defaults.shard_label", "shard");
        let replica_label = label_name(d.replica_label.as_ref(), "defaults.replica_label", "replica");
        if shard_label == replica_label
            && let Some(s) = d.replica_label.as_ref().or(d.shard_label.as_ref())
        {
            self.err(s, "defaults.replica_label", "shard_label and replica_label must differ");
        }
        let external_labels = self.label_map(&d.external_labels, "defaults.external_labels");
        let mut fast_link = FastLinkConfig::default();
        if let Some(fl) = &d.fast_link {
            if let Some(n) = &fl.value.max_page_samples {
                match usize::try_from(n.value) {
                    Ok(v) if v >= 1000 => fast_link.max_page_samples = v,
                    _ => self.err(
                        n,
                        "defaults.fast_link.max_page_samples",
                        format!("max_page_samples must be at least 1000, got {}", n.value),
                    ),
                }
            }
            if let Some(b) = &fl.value.max_page_bytes {
                match parse_bytes(&b.value) {
                    Some(v) if v >= 1 << 16 => fast_link.max_page_bytes = v,
                    Some(_) => self.err(
                        b,
                        "defaults.fast_link.max_page_bytes",
                        "max_page_bytes must be at least 64KiB",
                    ),
                    None => self.err(
                        b,
                        "defaults.fast_link.max_page_bytes",
                        format!("{:?} is not a size (e.g. 32MiB, 500KB, 1048576)", b.value),
                    ),
                }
            }
        }
        let web = Arc::new(self.web(d.web.as_ref(), "defaults.web"));
        let client = Arc::new(self.client(d.client.as_ref().map(|c| &c.value), "defaults.client"));
        Defaults {
            scrape_interval,
            scrape_timeout,
            retention,
            data_dir,
            shard_label,
            replica_label,
            external_labels,
            fast_link,
            web,
            client,
        }
    }

    fn jobs(&mut self, raw: &[Spanned<RawJob>], d: &Defaults) -> Vec<ScrapeConfig> {
        let mut seen: HashMap<&str, u64> = HashMap::new();
        let mut out = Vec::new();
        for (i, j) in raw.iter().enumerate() {
            let p = format!("jobs[{i}]");
            let name = &j.value.job_name;
            if name.value.is_empty() {
                self.err(name, format!("{p}.job_name"), "job_name must not be empty");
            }
            if let Some(first) = seen.insert(&name.value, name.referenced.line()) {
                self.err(
                    name,
                    format!("{p}.job_name"),
                    format!("duplicate job name {:?} (first defined on line {first})", name.value),
                );
                continue;
            }
            if let Some(job) = self.job(&j.value, &p, d) {
                out.push(job);
            }
        }
        out
    }

    fn job(&mut self, j: &RawJob, p: &str, d: &Defaults) -> Option<ScrapeConfig> {
        let before = self.problems.len();
        let scrape_interval = self.positive_duration(
            j.scrape_interval.as_ref(),
            format!("{p}.scrape_interval"),
            d.scrape_interval,
        );
        // Like Prometheus: an unset timeout is the default timeout, capped by the job's interval.
        let timeout_default = if j.scrape_interval.is_some() && j.scrape_timeout.is_none() {
            d.scrape_timeout.min(scrape_interval)
        } else {
            d.scrape_timeout
        };
        let scrape_timeout =
            self.positive_duration(j.scrape_timeout.as_ref(), format!("{p}.scrape_timeout"), timeout_default);
        if scrape_timeout > scrape_interval {
            let at = j.scrape_timeout.as_ref().or(j.scrape_interval.as_ref()).unwrap_or(&j.job_name);
            self.err(
                at,
                format!("{p}.scrape_timeout"),
                format!(
                    "scrape_timeout ({}) is greater than scrape_interval ({}) for job {:?}",
                    fmt_d(scrape_timeout),
                    fmt_d(scrape_interval),
                    j.job_name.value
                ),
            );
        }
        let metrics_path = match &j.metrics_path {
            Some(mp) if !mp.value.starts_with('/') => {
                self.err(
                    mp,
                    format!("{p}.metrics_path"),
                    format!("metrics_path {:?} must start with '/'", mp.value),
                );
                String::new()
            }
            Some(mp) => mp.value.clone(),
            None => "/metrics".to_string(),
        };
        let scheme = match &j.scheme {
            Some(s) if s.value != "http" && s.value != "https" => {
                self.err(
                    s,
                    format!("{p}.scheme"),
                    format!("scheme must be http or https, got {:?}", s.value),
                );
                String::new()
            }
            Some(s) => s.value.clone(),
            None => "http".to_string(),
        };
        let auth = self.auth(j.basic_auth.as_ref(), j.bearer_token.as_ref(), j.bearer_token_file.as_ref(), p);
        let tls = self.tls_config(j.tls_config.as_ref(), &format!("{p}.tls_config"));
        let mut static_configs = Vec::new();
        for (k, sc) in j.static_configs.iter().enumerate() {
            let sp = format!("{p}.static_configs[{k}]");
            for (t, target) in sc.value.targets.iter().enumerate() {
                if let Err(msg) = check_target_address(&target.value) {
                    self.err(target, format!("{sp}.targets[{t}]"), msg);
                }
            }
            let labels = self.label_map(&sc.value.labels, &format!("{sp}.labels"));
            static_configs.push(TargetGroup {
                targets: sc.value.targets.iter().map(|t| t.value.clone()).collect(),
                labels: Labels::new(labels),
                source: format!("{k}"),
            });
        }
        let mut file_sd_configs = Vec::new();
        for (k, f) in j.file_sd_configs.iter().enumerate() {
            let fp = format!("{p}.file_sd_configs[{k}]");
            if f.value.files.is_empty() {
                self.err(f, format!("{fp}.files"), "file_sd_configs entry needs at least one file");
            }
            for (n, file) in f.value.files.iter().enumerate() {
                let ok_ext = [".json", ".yml", ".yaml"].iter().any(|e| file.value.ends_with(e));
                if !ok_ext {
                    self.err(
                        file,
                        format!("{fp}.files[{n}]"),
                        format!("file_sd file {:?} must end in .json, .yml or .yaml", file.value),
                    );
                }
            }
            let refresh_interval = self.positive_duration(
                f.value.refresh_interval.as_ref(),
                format!("{fp}.refresh_interval"),
                DEFAULT_FILE_SD_REFRESH,
            );
            file_sd_configs.push(FileSdConfig {
                files: f.value.files.iter().map(|f| self.path(&f.value)).collect(),
                refresh_interval,
            });
        }
        let relabel_configs = self.relabels(&j.relabel_configs, &format!("{p}.relabel_configs"));
        let metric_relabel_configs =
            self.relabels(&j.metric_relabel_configs, &format!("{p}.metric_relabel_configs"));
        let params = j.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let body_size_limit = self.body_size_limit(
            j.body_size_limit.as_ref(),
            format!("{p}.body_size_limit"),
            DEFAULT_BODY_SIZE_LIMIT,
        );
        if self.problems.len() > before {
            return None;
        }
        Some(ScrapeConfig {
            job_name: j.job_name.value.clone(),
            scrape_interval,
            scrape_timeout,
            metrics_path,
            scheme,
            params,
            honor_labels: j.honor_labels.unwrap_or(false),
            honor_timestamps: j.honor_timestamps.unwrap_or(true),
            enable_compression: j.enable_compression.unwrap_or(true),
            sample_limit: j.sample_limit.unwrap_or(0),
            label_limit: j.label_limit.unwrap_or(0),
            label_name_length_limit: j.label_name_length_limit.unwrap_or(0),
            label_value_length_limit: j.label_value_length_limit.unwrap_or(0),
            body_size_limit,
            client: ClientConfig { auth, tls },
            static_configs,
            file_sd_configs,
            relabel_configs,
            metric_relabel_configs,
        })
    }

    fn auth(
        &mut self,
        basic: Option<&Spanned<RawBasicAuth>>,
        bearer: Option<&Spanned<String>>,
        bearer_file: Option<&Spanned<String>>,
        p: &str,
    ) -> Option<Auth> {
        if let (Some(_), Some(f)) = (bearer, bearer_file) {
            self.err(
                f,
                format!("{p}.bearer_token_file"),
                "at most one of bearer_token and bearer_token_file may be set",
            );
        }
        if let (Some(b), Some(_)) = (basic, bearer.or(bearer_file)) {
            self.err(b, format!("{p}.basic_auth"), "at most one of basic_auth and bearer_token may be set");
        }
        if let Some(b) = basic {
            let password = match (&b.value.password, &b.value.password_file) {
                (Some(_), Some(f)) => {
                    self.err(
                        f,
                        format!("{p}.basic_auth.password_file"),
                        "at most one of password and password_file may be set",
                    );
                    Secret::Inline(String::new())
                }
                (Some(pw), None) => Secret::Inline(pw.clone()),
                (None, Some(f)) => Secret::File(self.path(&f.value)),
                (None, None) => Secret::Inline(String::new()),
            };
            return Some(Auth::Basic { username: b.value.username.value.clone(), password });
        }
        if let Some(t) = bearer {
            return Some(Auth::Bearer(Secret::Inline(t.value.clone())));
        }
        bearer_file.map(|f| Auth::Bearer(Secret::File(self.path(&f.value))))
    }

    /// A client's `tls_config`.
    fn tls_config(&mut self, raw: Option<&Spanned<RawTlsConfig>>, p: &str) -> TlsConfig {
        let Some(t) = raw else { return TlsConfig::default() };
        let v = &t.value;
        match (&v.cert_file, &v.key_file) {
            (Some(c), None) => self.err(c, format!("{p}.key_file"), "cert_file needs key_file"),
            (None, Some(k)) => self.err(k, format!("{p}.cert_file"), "key_file needs cert_file"),
            _ => {}
        }
        if let Some(n) = &v.server_name
            && n.value.is_empty()
        {
            self.err(n, format!("{p}.server_name"), "server_name must not be empty");
        }
        TlsConfig {
            ca_file: v.ca_file.as_ref().map(|f| self.path(&f.value)),
            cert_file: v.cert_file.as_ref().map(|f| self.path(&f.value)),
            key_file: v.key_file.as_ref().map(|f| self.path(&f.value)),
            server_name: v.server_name.as_ref().map(|n| n.value.clone()),
            insecure_skip_verify: v.insecure_skip_verify.unwrap_or(false),
        }
    }

    /// A `client:` block: how nodes reach a group's nodes.
    fn client(&mut self, raw: Option<&RawClient>, p: &str) -> ClientConfig {
        let Some(c) = raw else { return ClientConfig::default() };
        ClientConfig {
            auth: self.auth(c.basic_auth.as_ref(), c.bearer_token.as_ref(), c.bearer_token_file.as_ref(), p),
            tls: self.tls_config(c.tls_config.as_ref(), &format!("{p}.tls_config")),
        }
    }

    /// A `web:` block: TLS, users with their access, CORS.
    fn web(&mut self, raw: Option<&Spanned<RawWeb>>, p: &str) -> WebConfig {
        let Some(w) = raw else { return WebConfig::default() };
        let w = &w.value;
        let tls = w.tls_server_config.as_ref().map(|t| {
            let tp = format!("{p}.tls_server_config");
            let tv = &t.value;
            let client_auth = match tv.client_auth_type.as_ref().map(|c| (c, c.value.as_str())) {
                None | Some((_, "" | "NoClientCert")) => ClientAuth::None,
                Some((_, "VerifyClientCertIfGiven")) => ClientAuth::VerifyIfGiven,
                Some((_, "RequireAndVerifyClientCert")) => ClientAuth::RequireAndVerify,
                Some((c, "RequestClientCert" | "RequireAnyClientCert")) => {
                    self.err(
                        c,
                        format!("{tp}.client_auth_type"),
                        format!(
                            "{:?} accepts certificates without verifying them; promtier supports NoClientCert, VerifyClientCertIfGiven and RequireAndVerifyClientCert",
                            c.value
                        ),
                    );
                    ClientAuth::None
                }
                Some((c, other)) => {
                    self.err(
                        c,
                        format!("{tp}.client_auth_type"),
                        format!(
                            "unknown client_auth_type {other:?} (NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
                        ),
                    );
                    ClientAuth::None
                }
            };
            match (&tv.client_ca_file, client_auth) {
                (Some(f), ClientAuth::None) => self.err(
                    f,
                    format!("{tp}.client_ca_file"),
                    "client_ca_file is set but client_auth_type is NoClientCert (set it to RequireAndVerifyClientCert or VerifyClientCertIfGiven)",
                ),
                (None, ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify) => self.err(
                    t,
                    format!("{tp}.client_ca_file"),
                    "verifying client certificates needs client_ca_file",
                ),
                _ => {}
            }
            TlsServerConfig {
                cert_file: self.path(&tv.cert_file.value),
                key_file: self.path(&tv.key_file.value),
                client_ca_file: tv.client_ca_file.as_ref().map(|f| self.path(&f.value)),
                client_auth,
            }
        });
        let mut users = Vec::new();
        let mut entries: Vec<_> = w.basic_auth_users.iter().collect();
        entries.sort_by(|a, b| a.0.value.cmp(&b.0.value));
        for (name, hash) in entries {
            let up = format!("{p}.basic_auth_users.{}", name.value);
            if name.value.is_empty() || name.value.contains(':') {
                self.err(name, &up, "a user name must be non-empty and contain no ':'");
            }
            if bcrypt_shaped(&hash.value) {
                users.push(WebUser {
                    name: name.value.clone(),
                    bcrypt_hash: hash.value.clone(),
                    access: Access { read: true, write: true, admin: true },
                });
            } else {
                self.err(
                    hash,
                    &up,
                    "not a bcrypt hash (want $2y$…, 60 characters; make one with `promtier hash-password`)",
                );
            }
        }
        let lists =
            [(&w.read_users, "read_users"), (&w.write_users, "write_users"), (&w.admin_users, "admin_users")];
        for (k, (list, key)) in lists.into_iter().enumerate() {
            let Some(list) = list else { continue };
            for (i, u) in list.iter().enumerate() {
                if !w.basic_auth_users.keys().any(|n| n.value == u.value) {
                    self.err(
                        u,
                        format!("{p}.{key}[{i}]"),
                        format!("{:?} is not in basic_auth_users", u.value),
                    );
                }
            }
            for user in &mut users {
                let allowed = list.iter().any(|u| u.value == user.name);
                let flag = match k {
                    0 => &mut user.access.read,
                    1 => &mut user.access.write,
                    _ => &mut user.access.admin,
                };
                *flag = allowed;
            }
        }
        let cors_origin = w.cors_origin.as_ref().and_then(|c| {
            let anchored = format!("^(?:{})$", c.value);
            match regex::Regex::new(&anchored) {
                Ok(_) => Some(anchored),
                Err(e) => {
                    // The regex crate's message draws the pattern over several lines; keep its verdict.
                    let text = e.to_string();
                    let why = text.lines().last().unwrap_or("").trim_start_matches("error: ").to_string();
                    self.err(c, format!("{p}.cors_origin"), format!("invalid regex {:?}: {why}", c.value));
                    None
                }
            }
        });
        WebConfig { tls, users, cors_origin }
    }

    /// Every promtier group a global pulls must be reachable with what the topology gives it:
    /// credentials when the group's nodes ask for them, a client certificate when they require one.
    fn reachable(&mut self, raw: &RawTopology, leaves: &[LeafGroup], globals: &[GlobalConfig]) {
        for (i, g) in raw.globals.iter().enumerate() {
            for (k, from) in g.value.from.iter().enumerate() {
                let (web, client) = match (
                    leaves.iter().find(|l| l.name == from.value),
                    globals.iter().find(|x| x.name == from.value),
                ) {
                    (Some(l), _) => (&l.web, &l.client),
                    (None, Some(x)) => (&x.web, &x.client),
                    (None, None) => continue,
                };
                let fp = format!("globals[{i}].from[{k}]");
                if !web.users.is_empty() && client.auth.is_none() {
                    self.err(
                        from,
                        &fp,
                        format!(
                            "{:?} requires basic auth (web.basic_auth_users) but gives no credentials to reach it: add client.basic_auth to it or to defaults",
                            from.value
                        ),
                    );
                }
                let needs_cert =
                    web.tls.as_ref().is_some_and(|t| t.client_auth == ClientAuth::RequireAndVerify);
                if needs_cert && client.tls.cert_file.is_none() {
                    self.err(
                        from,
                        &fp,
                        format!(
                            "{:?} requires client certificates but gives none to reach it: add client.tls_config.cert_file and key_file",
                            from.value
                        ),
                    );
                }
            }
        }
    }

    fn relabels(&mut self, raw: &[Spanned<RawRelabelConfig>], p: &str) -> Vec<RelabelConfig> {
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            match r.value.compile() {
                Ok(c) => out.push(c),
                Err(e) => self.err(r, format!("{p}[{i}].{}", e.field()), e.to_string()),
            }
        }
        out
    }

    fn leaf_groups(&mut self, raw: &RawTopology, jobs: &[ScrapeConfig], d: &Defaults) -> Vec<LeafGroup> {
        let known: HashSet<&str> = raw.jobs.iter().map(|j| j.value.job_name.value.as_str()).collect();
        let mut job_owner: HashMap<&str, &str> = HashMap::new();
        let mut names: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for (i, g) in raw.leaves.iter().enumerate() {
            let p = format!("leaves[{i}]");
            let gv = &g.value;
            let name = gv.group.value.as_str();
            if let Err(msg) = check_node_group_name(name) {
                self.err(&gv.group, format!("{p}.group"), msg);
            }
            if !names.insert(name) {
                self.err(&gv.group, format!("{p}.group"), format!("duplicate leaf group {name:?}"));
            }
            if gv.jobs.is_empty() {
                self.err(&gv.group, format!("{p}.jobs"), format!("leaf group {name:?} has no jobs"));
            }
            for (k, job) in gv.jobs.iter().enumerate() {
                let jp = format!("{p}.jobs[{k}]");
                if !known.contains(job.value.as_str()) {
                    self.err(job, jp, format!("unknown job {:?} in leaf group {name:?}", job.value));
                } else if let Some(other) = job_owner.insert(&job.value, name) {
                    self.err(
                        job,
                        jp,
                        format!("job {:?} is in two leaf groups ({other:?} and {name:?}); a job belongs to exactly one group", job.value),
                    );
                }
            }
            let shards = self.count(gv.shards.as_ref(), format!("{p}.shards"), "shards");
            let replicas = self.count(gv.replicas.as_ref(), format!("{p}.replicas"), "replicas");
            let strategy = match gv.sharding.as_ref().map(|s| s.value) {
                Some(RawSharding::Ring) => ShardStrategy::Ring,
                Some(RawSharding::Hashmod) | None => ShardStrategy::HashMod,
            };
            let by = match &gv.shard_by {
                Some(by) if by.is_empty() => {
                    self.err(&gv.group, format!("{p}.shard_by"), "shard_by needs at least one label name");
                    vec![]
                }
                Some(by) => {
                    for (k, l) in by.iter().enumerate() {
                        if !is_valid_label_name(&l.value) {
                            self.err(
                                l,
                                format!("{p}.shard_by[{k}]"),
                                format!("{:?} is not a valid label name", l.value),
                            );
                        }
                    }
                    by.iter().map(|l| l.value.clone()).collect()
                }
                None => vec!["__address__".to_string()],
            };
            if gv.listen.is_none() {
                self.err(
                    g,
                    format!("{p}.listen"),
                    format!("leaf group {name:?} needs listen: host:port (the first node's address)"),
                );
            }
            let sharder = match Sharder::new(strategy, shards)
                .and_then(|s| if by.is_empty() { Ok(s) } else { s.with_by(by) })
            {
                Ok(s) => s,
                Err(e) => {
                    self.err(&gv.group, format!("{p}.shard_by"), e.to_string());
                    continue;
                }
            };
            let web = match &gv.web {
                Some(w) => Arc::new(self.web(Some(w), &format!("{p}.web"))),
                None => d.web.clone(),
            };
            let client = match &gv.client {
                Some(c) => Arc::new(self.client(Some(&c.value), &format!("{p}.client"))),
                None => d.client.clone(),
            };
            let remote_write = gv
                .remote_write
                .iter()
                .enumerate()
                .map(|(k, rw)| self.remote_write(&rw.value, &format!("{p}.remote_write[{k}]")))
                .collect();
            out.push(LeafGroup {
                name: name.to_string(),
                jobs: gv.jobs.iter().map(|j| j.value.clone()).collect(),
                sharder,
                replicas,
                web,
                client,
                remote_write,
            });
        }
        for (i, j) in raw.jobs.iter().enumerate() {
            let name = j.value.job_name.value.as_str();
            if !job_owner.contains_key(name) && jobs.iter().any(|c| c.job_name == name) {
                self.err(
                    &j.value.job_name,
                    format!("jobs[{i}].job_name"),
                    format!("job {name:?} is in no leaf group, so no node would scrape it"),
                );
            }
        }
        out
    }

    fn external_groups(&mut self, raw: &RawTopology, leaves: &[LeafGroup]) -> Vec<ExternalGroup> {
        let mut seen: HashSet<&str> = leaves.iter().map(|g| g.name.as_str()).collect();
        let mut out = Vec::new();
        for (i, g) in raw.external_leaves.iter().enumerate() {
            let p = format!("external_leaves[{i}]");
            let name = g.value.group.value.as_str();
            if let Err(msg) = check_node_group_name(name) {
                self.err(&g.value.group, format!("{p}.group"), msg);
            }
            if !seen.insert(name) {
                self.err(&g.value.group, format!("{p}.group"), format!("duplicate group name {name:?}"));
            }
            if g.value.shards.is_empty() {
                self.err(
                    &g.value.group,
                    format!("{p}.shards"),
                    "external group needs at least one shard of addresses",
                );
            }
            let mut shards = Vec::new();
            for (s, replicas) in g.value.shards.iter().enumerate() {
                if replicas.value.is_empty() {
                    self.err(
                        replicas,
                        format!("{p}.shards[{s}]"),
                        "a shard needs at least one replica address",
                    );
                }
                for (r, addr) in replicas.value.iter().enumerate() {
                    self.listen(addr, format!("{p}.shards[{s}][{r}]"));
                }
                shards.push(replicas.value.iter().map(|a| a.value.clone()).collect());
            }
            let scheme = match &g.value.scheme {
                Some(s) if s.value == "https" => "https",
                Some(s) if s.value == "http" => "http",
                Some(s) => {
                    self.err(
                        s,
                        format!("{p}.scheme"),
                        format!("scheme must be http or https, got {:?}", s.value),
                    );
                    "http"
                }
                None => "http",
            };
            let gv = &g.value;
            let client = ClientConfig {
                auth: self.auth(
                    gv.basic_auth.as_ref(),
                    gv.bearer_token.as_ref(),
                    gv.bearer_token_file.as_ref(),
                    &p,
                ),
                tls: self.tls_config(gv.tls_config.as_ref(), &format!("{p}.tls_config")),
            };
            out.push(ExternalGroup { name: name.to_string(), shards, scheme, client: Arc::new(client) });
        }
        out
    }

    fn globals(
        &mut self,
        raw: &RawTopology,
        leaves: &[LeafGroup],
        external: &[ExternalGroup],
        d: &Defaults,
    ) -> Vec<GlobalConfig> {
        let leaf_names: HashSet<&str> =
            leaves.iter().map(|g| g.name.as_str()).chain(external.iter().map(|g| g.name.as_str())).collect();
        let global_names: HashSet<&str> = raw.globals.iter().map(|g| g.value.name.value.as_str()).collect();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for (i, g) in raw.globals.iter().enumerate() {
            let p = format!("globals[{i}]");
            let gv = &g.value;
            let name = gv.name.value.as_str();
            if let Err(msg) = check_node_group_name(name) {
                self.err(&gv.name, format!("{p}.name"), msg);
            }
            if !seen.insert(name) {
                self.err(&gv.name, format!("{p}.name"), format!("duplicate global {name:?}"));
            } else if leaf_names.contains(name) {
                self.err(
                    &gv.name,
                    format!("{p}.name"),
                    format!("global {name:?} has the same name as a leaf group"),
                );
            }
            if gv.from.is_empty() {
                self.err(&gv.name, format!("{p}.from"), format!("global {name:?} has nothing in from:"));
            }
            for (k, f) in gv.from.iter().enumerate() {
                let fp = format!("{p}.from[{k}]");
                if f.value == name {
                    self.err(f, fp, format!("global {name:?} cannot pull from itself"));
                } else if !leaf_names.contains(f.value.as_str())
                    && !global_names.contains(f.value.as_str())
                    && f.value != PUSH_TIER
                {
                    self.err(
                        f,
                        fp,
                        format!(
                            "unknown group {:?} in from: (not a leaf group, external group or global)",
                            f.value
                        ),
                    );
                }
            }
            let replicas = self.count(gv.replicas.as_ref(), format!("{p}.replicas"), "replicas");
            if gv.listen.is_none() {
                self.err(g, format!("{p}.listen"), format!("global {name:?} needs listen: host:port"));
            }
            let fed = gv.federate.as_ref().map(|f| &f.value);
            let federate_interval = self.positive_duration(
                fed.and_then(|f| f.interval.as_ref()),
                format!("{p}.federate.interval"),
                DEFAULT_FEDERATE_INTERVAL,
            );
            let federate_timeout = self.positive_duration(
                fed.and_then(|f| f.timeout.as_ref()),
                format!("{p}.federate.timeout"),
                DEFAULT_FEDERATE_TIMEOUT.min(federate_interval),
            );
            if federate_timeout > federate_interval
                && let Some(t) =
                    fed.and_then(|f| f.timeout.as_ref()).or(fed.and_then(|f| f.interval.as_ref()))
            {
                self.err(
                    t,
                    format!("{p}.federate.timeout"),
                    format!(
                        "federate timeout ({}) is greater than federate interval ({})",
                        fmt_d(federate_timeout),
                        fmt_d(federate_interval)
                    ),
                );
            }
            let federate_match = match fed.and_then(|f| f.matchers.as_ref()) {
                Some(ms) => {
                    if ms.is_empty()
                        && let Some(f) = &gv.federate
                    {
                        self.err(
                            f,
                            format!("{p}.federate.match"),
                            "federate match: needs at least one selector",
                        );
                    }
                    for (k, m) in ms.iter().enumerate() {
                        if let Err(e) = parse_selector(&m.value) {
                            self.err(
                                m,
                                format!("{p}.federate.match[{k}]"),
                                format!("invalid selector {:?}: {e}", m.value),
                            );
                        }
                    }
                    ms.iter().map(|m| m.value.clone()).collect()
                }
                None => vec![r#"{__name__=~".+"}"#.to_string()],
            };
            let dd = gv.dedup.as_ref().map(|d| &d.value);
            let dedup = match dd.and_then(|d| d.mode.as_ref()).map(|m| m.value) {
                Some(RawDedupMode::Merge) => DedupMode::Merge,
                Some(RawDedupMode::None) => DedupMode::None,
                Some(RawDedupMode::Failover) | None => DedupMode::Failover,
            };
            let failover_timeout = self.positive_duration(
                dd.and_then(|d| d.failover_timeout.as_ref()),
                format!("{p}.dedup.failover_timeout"),
                DEFAULT_FAILOVER_TIMEOUT,
            );
            let min_coverage = match dd.and_then(|d| d.min_coverage.as_ref()) {
                Some(c) if (0.0..=1.0).contains(&c.value) => c.value,
                Some(c) => {
                    self.err(c, format!("{p}.dedup.min_coverage"), "min_coverage must be between 0 and 1");
                    DEFAULT_MIN_COVERAGE
                }
                None => DEFAULT_MIN_COVERAGE,
            };
            let page_samples = match fed.and_then(|f| f.page_samples.as_ref()) {
                Some(n) => match usize::try_from(n.value) {
                    Ok(v) if v >= 100 => Some(v),
                    _ => {
                        self.err(
                            n,
                            format!("{p}.federate.page_samples"),
                            format!("page_samples must be at least 100, got {}", n.value),
                        );
                        None
                    }
                },
                None => None,
            };
            let downsample = match &gv.downsample {
                None => default_downsample(),
                Some(list) => {
                    let mut downsample = Vec::new();
                    for (k, ds) in list.iter().enumerate() {
                        let dp = format!("{p}.downsample[{k}]");
                        let resolution = self.duration(&ds.value.resolution, format!("{dp}.resolution"));
                        let retention = ds
                            .value
                            .retention
                            .as_ref()
                            .and_then(|r| self.duration(r, format!("{dp}.retention")));
                        let Some(r) = resolution else { continue };
                        let piece = crate::tsdb::db::PIECE_MS as u128;
                        if r < Duration::from_secs(60) {
                            self.err(
                                &ds.value.resolution,
                                format!("{dp}.resolution"),
                                "downsample resolution must be at least 1m",
                            );
                        } else if !piece.is_multiple_of(r.as_millis()) {
                            self.err(
                                &ds.value.resolution,
                                format!("{dp}.resolution"),
                                format!(
                                    "downsample resolution {} must divide 6h (rollups are written 6 hours of data at a time), e.g. 1m, 5m, 15m, 1h, 2h, 6h",
                                    fmt_d(r)
                                ),
                            );
                        } else if downsample.iter().any(|d: &Downsample| d.resolution >= r) {
                            self.err(
                                &ds.value.resolution,
                                format!("{dp}.resolution"),
                                "downsample resolutions must be listed from finest to coarsest, each once",
                            );
                        }
                        downsample.push(Downsample { resolution: r, retention });
                    }
                    downsample
                }
            };
            let remote_write = gv
                .remote_write
                .iter()
                .enumerate()
                .map(|(k, rw)| self.remote_write(&rw.value, &format!("{p}.remote_write[{k}]")))
                .collect();
            let remote_read = self.remote_reads(&gv.remote_read, &p);
            out.push(GlobalConfig {
                name: name.to_string(),
                from: gv.from.iter().map(|f| f.value.clone()).collect(),
                replicas,
                federate_interval,
                federate_timeout,
                federate_match,
                honor_labels: fed.and_then(|f| f.honor_labels).unwrap_or(true),
                drop_shard_label: match fed.and_then(|f| f.shard_label.as_ref()) {
                    None => false,
                    Some(v) if v.value == "keep" => false,
                    Some(v) if v.value == "drop" => true,
                    Some(v) => {
                        self.err(
                            v,
                            format!("{p}.federate.shard_label"),
                            format!("shard_label must be keep or drop, got {:?}", v.value),
                        );
                        false
                    }
                },
                fast_link: fed.and_then(|f| f.fast_link).unwrap_or(true),
                page_samples,
                // Set by `federate_body_limits`, which knows the fast-link page bound.
                federate_body_size_limit: 0,
                dedup,
                failover_timeout,
                min_coverage,
                downsample,
                remote_write,
                remote_read,
                web: match &gv.web {
                    Some(w) => Arc::new(self.web(Some(w), &format!("{p}.web"))),
                    None => d.web.clone(),
                },
                client: match &gv.client {
                    Some(c) => Arc::new(self.client(Some(&c.value), &format!("{p}.client"))),
                    None => d.client.clone(),
                },
            });
        }
        self.global_cycles(raw);
        out
    }

    /// Each global's `federate.body_size_limit`: by default the larger of
    /// [`DEFAULT_FEDERATE_BODY_SIZE_LIMIT`] and twice the fast-link page bound; a limit set below
    /// the page bound would fail every full page, so it is refused.
    fn federate_body_limits(
        &mut self,
        raw: &RawTopology,
        globals: &mut [GlobalConfig],
        fast_link: &FastLinkConfig,
    ) {
        let default = DEFAULT_FEDERATE_BODY_SIZE_LIMIT.max(fast_link.max_page_bytes.saturating_mul(2));
        for (i, (g, cfg)) in raw.globals.iter().zip(globals.iter_mut()).enumerate() {
            let path = format!("globals[{i}].federate.body_size_limit");
            let set = g.value.federate.as_ref().and_then(|f| f.value.body_size_limit.as_ref());
            let limit = self.body_size_limit(set, &path, default);
            if let Some(s) = set
                && limit != 0
                && limit < fast_link.max_page_bytes
            {
                self.err(
                    s,
                    &path,
                    format!(
                        "body_size_limit ({}) is smaller than defaults.fast_link.max_page_bytes ({} bytes): full fast-link pages would fail",
                        s.value, fast_link.max_page_bytes
                    ),
                );
            }
            cfg.federate_body_size_limit = limit;
        }
    }

    /// Reports each cycle of globals pulling from each other once, at the global that closes it.
    fn global_cycles(&mut self, raw: &RawTopology) {
        let edges: HashMap<&str, Vec<&str>> = raw
            .globals
            .iter()
            .map(|g| (g.value.name.value.as_str(), g.value.from.iter().map(|f| f.value.as_str()).collect()))
            .collect();
        let mut reported: HashSet<Vec<&str>> = HashSet::new();
        for (i, g) in raw.globals.iter().enumerate() {
            let start = g.value.name.value.as_str();
            // Depth-first search for a path back to `start`.
            let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
            let mut visited: HashSet<&str> = HashSet::new();
            while let Some((node, path)) = stack.pop() {
                for &next in edges.get(node).map(Vec::as_slice).unwrap_or(&[]) {
                    if next == start && path.len() > 1 {
                        let mut key = path.clone();
                        key.sort();
                        if reported.insert(key) {
                            let cycle = path.iter().chain([&start]).copied().collect::<Vec<_>>().join(" -> ");
                            self.err(
                                &g.value.name,
                                format!("globals[{i}].from"),
                                format!("globals form a cycle: {cycle}"),
                            );
                        }
                    } else if edges.contains_key(next) && next != start && visited.insert(next) {
                        let mut p = path.clone();
                        p.push(next);
                        stack.push((next, p));
                    }
                }
            }
        }
    }

    fn push(&mut self, p: &Spanned<RawPush>, d: &Defaults) -> Option<PushConfig> {
        let nodes = self.count(Some(&p.value.nodes), "push.nodes", "push nodes");
        let replication_factor =
            self.count(p.value.replication_factor.as_ref(), "push.replication_factor", "replication_factor");
        if replication_factor > nodes
            && let Some(rf) = &p.value.replication_factor
        {
            self.err(
                rf,
                "push.replication_factor",
                format!("replication_factor ({replication_factor}) is greater than the number of push nodes ({nodes})"),
            );
        }
        if p.value.listen.is_none() {
            self.err(p, "push.listen", "push needs listen: host:port");
        }
        let write_quorum = match &p.value.write_quorum {
            None => PushConfig::default_quorum(replication_factor),
            Some(q) => match u32::try_from(q.value) {
                Ok(w) if (1..=replication_factor).contains(&w) => w,
                _ => {
                    self.err(
                        q,
                        "push.write_quorum",
                        format!(
                            "write_quorum must be between 1 and replication_factor ({replication_factor}), got {}",
                            q.value
                        ),
                    );
                    1
                }
            },
        };
        let key = match &p.value.key {
            None => vec!["job".to_string(), "instance".to_string()],
            Some(k) => {
                if k.value.is_empty() {
                    self.err(k, "push.key", "key must name at least one label");
                }
                let mut out: Vec<String> = Vec::new();
                for (i, l) in k.value.iter().enumerate() {
                    if !is_valid_label_name(&l.value) {
                        self.err(
                            l,
                            format!("push.key[{i}]"),
                            format!("{:?} is not a valid label name", l.value),
                        );
                    } else if out.contains(&l.value) {
                        self.err(l, format!("push.key[{i}]"), format!("label {:?} is named twice", l.value));
                    } else {
                        out.push(l.value.clone());
                    }
                }
                out
            }
        };
        let max_hint_bytes = match &p.value.max_hint_size {
            None => 1 << 30,
            Some(b) => match parse_bytes(&b.value) {
                Some(v) if v >= 1 << 20 => v as u64,
                Some(_) => {
                    self.err(b, "push.max_hint_size", "max_hint_size must be at least 1MiB");
                    1 << 30
                }
                None => {
                    self.err(
                        b,
                        "push.max_hint_size",
                        format!("invalid size {:?} (e.g. 512MiB, 2GiB)", b.value),
                    );
                    1 << 30
                }
            },
        };
        // Push nodes forward to each other and globals pull them with `defaults.client`.
        if !d.web.users.is_empty() && d.client.auth.is_none() {
            self.err(
                p,
                "push",
                "push nodes require basic auth (defaults.web) but defaults.client gives no credentials to reach them",
            );
        }
        if d.web.tls.as_ref().is_some_and(|t| t.client_auth == ClientAuth::RequireAndVerify)
            && d.client.tls.cert_file.is_none()
        {
            self.err(p, "push", "push nodes require client certificates but defaults.client gives none");
        }
        Some(PushConfig {
            nodes,
            replication_factor,
            write_quorum,
            key,
            max_hint_bytes,
            client: d.client.clone(),
            group_interval: d.scrape_interval,
        })
    }

    /// `push` in a global's `from:` needs a push tier, and query-time (merge) dedup: each push
    /// node holds a different part of the ring, so no single one can be elected as failover
    /// dedup would. A group of another kind may not take the tier's name.
    fn push_sources(&mut self, raw: &RawTopology, globals: &[GlobalConfig]) {
        if raw.push.is_some() {
            for (i, g) in raw.leaves.iter().enumerate() {
                if g.value.group.value == PUSH_TIER {
                    self.err(
                        &g.value.group,
                        format!("leaves[{i}].group"),
                        "the name \"push\" is the push tier's",
                    );
                }
            }
            for (i, g) in raw.globals.iter().enumerate() {
                if g.value.name.value == PUSH_TIER {
                    self.err(
                        &g.value.name,
                        format!("globals[{i}].name"),
                        "the name \"push\" is the push tier's",
                    );
                }
            }
        }
        for (i, (g, rg)) in globals.iter().zip(&raw.globals).enumerate() {
            let Some(k) = rg.value.from.iter().position(|f| f.value == PUSH_TIER) else { continue };
            let f = &rg.value.from[k];
            if raw.push.is_none() {
                self.err(
                    f,
                    format!("globals[{i}].from[{k}]"),
                    "from: push, but the topology has no push: tier",
                );
            } else if g.dedup == DedupMode::Failover {
                self.err(
                    f,
                    format!("globals[{i}].from[{k}]"),
                    "pulling the push tier needs dedup: {mode: merge} (each push node holds a different part of the ring, so failover cannot elect one)",
                );
            }
        }
    }

    fn demo(&mut self, d: &Spanned<RawDemo>) -> Option<DemoConfig> {
        let targets = self.count(Some(&d.value.targets), "demo.targets", "demo targets");
        let series = self.count(d.value.series.as_ref(), "demo.series", "demo series");
        let series = if d.value.series.is_none() { 200 } else { series };
        Some(DemoConfig { targets, series })
    }

    #[allow(clippy::too_many_arguments)]
    fn nodes(
        &mut self,
        raw: &RawTopology,
        d: &Defaults,
        cluster: &str,
        leaves: &[LeafGroup],
        globals: &[GlobalConfig],
        push: Option<&PushConfig>,
        demo: Option<&DemoConfig>,
    ) -> Vec<Node> {
        // (node, where its address came from) — for clash errors.
        let mut nodes: Vec<(Node, Location, String)> = Vec::new();
        let base_labels = |extra: &[Label]| -> Vec<Label> {
            let mut l = d.external_labels.clone();
            l.extend_from_slice(extra);
            l.push(Label::new("cluster", cluster));
            l
        };
        for (i, (g, rg)) in leaves.iter().zip(&raw.leaves).enumerate() {
            let Some(listen) = rg.value.listen.as_ref() else { continue };
            let Some((host, port)) = self.listen(listen, format!("leaves[{i}].listen")) else { continue };
            let retention = self.positive_duration(
                rg.value.retention.as_ref(),
                format!("leaves[{i}].retention"),
                d.retention,
            );
            let extra = self.label_map(&rg.value.external_labels, &format!("leaves[{i}].external_labels"));
            let mut n = 0u32;
            for shard in 0..g.shards() {
                for replica in 0..g.replicas {
                    let name = format!("{}-{shard}-{}", g.name, replica_letter(replica));
                    let mut labels = base_labels(&extra);
                    labels.push(Label::new(&d.shard_label, format!("{}-{shard}", g.name)));
                    labels.push(Label::new(&d.replica_label, replica_letter(replica)));
                    let role = NodeRole::Leaf { group: g.name.clone(), shard, replica };
                    let Some(addr) = self.offset_port(&host, port, n, listen, &format!("leaves[{i}].listen"))
                    else {
                        break;
                    };
                    let mut node = self.node(name, role, addr, d, labels, retention);
                    node.web = g.web.clone();
                    nodes.push((node, listen.referenced, format!("leaves[{i}].listen")));
                    n += 1;
                }
            }
        }
        for (i, (g, rg)) in globals.iter().zip(&raw.globals).enumerate() {
            let Some(listen) = rg.value.listen.as_ref() else { continue };
            let Some((host, port)) = self.listen(listen, format!("globals[{i}].listen")) else { continue };
            let retention = self.positive_duration(
                rg.value.retention.as_ref(),
                format!("globals[{i}].retention"),
                d.retention,
            );
            let extra = self.label_map(&rg.value.external_labels, &format!("globals[{i}].external_labels"));
            for replica in 0..g.replicas {
                let name = format!("{}-{}", g.name, replica_letter(replica));
                let mut labels = base_labels(&extra);
                if g.replicas > 1 {
                    labels.push(Label::new(&d.replica_label, replica_letter(replica)));
                }
                let role = NodeRole::Global { name: g.name.clone(), replica };
                let Some(addr) =
                    self.offset_port(&host, port, replica, listen, &format!("globals[{i}].listen"))
                else {
                    break;
                };
                let mut node = self.node(name, role, addr, d, labels, retention);
                node.web = g.web.clone();
                nodes.push((node, listen.referenced, format!("globals[{i}].listen")));
            }
        }
        if let (Some(pc), Some(rp)) = (push, raw.push.as_ref())
            && let Some(listen) = rp.value.listen.as_ref()
            && let Some((host, port)) = self.listen(listen, "push.listen")
        {
            let retention =
                self.positive_duration(rp.value.retention.as_ref(), "push.retention", d.retention);
            for index in 0..pc.nodes {
                let Some(addr) = self.offset_port(&host, port, index, listen, "push.listen") else { break };
                let name = PushConfig::node_name(index);
                // The replica label tells a series' owners apart at the global (merge dedup).
                let mut labels = base_labels(&[]);
                labels.push(Label::new(&d.replica_label, &name));
                let node = self.node(name, NodeRole::Push { index }, addr, d, labels, retention);
                nodes.push((node, listen.referenced, "push.listen".to_string()));
            }
        }
        if let (Some(dc), Some(rd)) = (demo, raw.demo.as_ref())
            && let Some((host, port)) = self.listen(&rd.value.listen, "demo.listen")
        {
            for index in 0..dc.targets {
                let listen = &rd.value.listen;
                let Some(addr) = self.offset_port(&host, port, index, listen, "demo.listen") else { break };
                let mut node = self.node(
                    format!("demo-{index}"),
                    NodeRole::Demo { index },
                    addr,
                    d,
                    Labels::empty().into_vec(),
                    d.retention,
                );
                // Demo exporters serve plain HTTP: they stand in for ordinary targets.
                node.web = Arc::new(WebConfig::default());
                nodes.push((node, listen.referenced, "demo.listen".to_string()));
            }
        }
        // Per-node overrides, in file order so errors come out sorted.
        let mut overrides: Vec<_> = raw.nodes.iter().collect();
        overrides.sort_by_key(|(k, _)| (k.referenced.line(), k.referenced.column()));
        for (name, o) in overrides {
            let p = format!("nodes.{}", name.value);
            let Some((node, loc, src)) = nodes.iter_mut().find(|(n, _, _)| n.name == name.value) else {
                let known =
                    nodes.iter().map(|(n, _, _)| n.name.as_str()).take(8).collect::<Vec<_>>().join(", ");
                self.err(name, p, format!("unknown node {:?} (nodes are named like {known})", name.value));
                continue;
            };
            if let Some(l) = &o.value.listen
                && let Some((h, port)) = self.listen(l, format!("{p}.listen"))
            {
                node.listen = join_host_port(&h, port);
                node.advertise = node.listen.clone();
                *loc = l.referenced;
                *src = format!("{p}.listen");
            }
            if let Some(a) = &o.value.advertise
                && let Some((h, port)) = self.listen(a, format!("{p}.advertise"))
            {
                node.advertise = join_host_port(&h, port);
            }
            if let Some(dd) = &o.value.data_dir {
                node.data_dir = self.path(&dd.value);
            }
        }
        // Two nodes on one address cannot both run.
        let mut by_addr: HashMap<String, usize> = HashMap::new();
        for (i, (n, loc, src)) in nodes.iter().enumerate() {
            if let Some(&j) = by_addr.get(&n.listen) {
                let other = &nodes[j].0.name;
                self.err_at(
                    *loc,
                    src,
                    format!(
                        "port clash: node {:?} and node {other:?} would both listen on {}",
                        n.name, n.listen
                    ),
                );
            } else {
                by_addr.insert(n.listen.clone(), i);
            }
        }
        nodes.into_iter().map(|(n, _, _)| n).collect()
    }

    fn offset_port(
        &mut self,
        host: &str,
        port: u16,
        n: u32,
        at: &Spanned<String>,
        path: &str,
    ) -> Option<String> {
        match u16::try_from(u32::from(port) + n) {
            Ok(p) => Some(join_host_port(host, p)),
            Err(_) => {
                self.err(at, path, format!("not enough ports after {} for all nodes", at.value));
                None
            }
        }
    }

    fn node(
        &self,
        name: String,
        role: NodeRole,
        addr: String,
        d: &Defaults,
        labels: Vec<Label>,
        retention: Duration,
    ) -> Node {
        Node {
            data_dir: d.data_dir.join(&name),
            name,
            role,
            advertise: addr.clone(),
            listen: addr,
            external_labels: Labels::new(labels),
            retention,
            web: d.web.clone(),
        }
    }
}

/// `$2a$`, `$2b$` or `$2y$`, a two-digit cost, and 53 characters of salt and hash.
fn bcrypt_shaped(h: &str) -> bool {
    let b = h.as_bytes();
    h.len() == 60
        && (h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$"))
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

fn fmt_d(d: Duration) -> String {
    crate::model::format_duration(d)
}

/// Splits `host:port` (IPv6 as `[::1]:9090`).
pub(crate) fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty()
        || host.contains('/')
        || (host.contains(':') && !(host.starts_with('[') && host.ends_with(']')))
    {
        return None;
    }
    Some((host.to_string(), port))
}

fn join_host_port(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// Prometheus rejects scheme prefixes and paths in target addresses.
fn check_target_address(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("empty target address".to_string());
    }
    if t.contains("://") {
        return Err(format!("target {t:?} must be host:port without a scheme (use the job's scheme:)"));
    }
    if t.contains('/') {
        return Err(format!("target {t:?} must be host:port without a path (use the job's metrics_path:)"));
    }
    Ok(())
}

/// Group and global names become parts of node names and label values.
fn check_node_group_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphabetic();
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid name: use letters, digits, '-' and '_', starting with a letter"))
    }
}
