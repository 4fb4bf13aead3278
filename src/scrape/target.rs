//! Targets: turning discovered target groups into scrape targets with Prometheus's label
//! semantics (job-level defaults, `relabel_configs`, the shard rule, `instance` defaulting) and
//! building their scrape URLs. Pure functions: `promtier plan` and the scrape manager share them.

use std::fmt;
use std::time::Duration;

use crate::model::{LabelRef, Labels, LabelsBuilder, PromDuration, is_valid_label_name, parse_duration};
use crate::relabel::relabel;
use crate::topology::{ScrapeConfig, TargetGroup};

pub(crate) const ADDRESS_LABEL: &str = "__address__";
pub(crate) const SCHEME_LABEL: &str = "__scheme__";
pub(crate) const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub(crate) const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub(crate) const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub(crate) const PARAM_PREFIX: &str = "__param_";
pub(crate) const META_PREFIX: &str = "__meta_";

/// Decides whether this node scrapes a target, given its labels after `relabel_configs`.
pub trait TargetFilter: Send + Sync {
    /// `Ok(())` to keep; `Err(reason)` to drop, with a reason shown in `/api/v1/targets`.
    fn keep(&self, labels: &LabelsBuilder) -> Result<(), String>;
}

/// Keeps every target (a node that owns a whole job).
pub struct KeepAll;

impl TargetFilter for KeepAll {
    fn keep(&self, _labels: &LabelsBuilder) -> Result<(), String> {
        Ok(())
    }
}

/// A target this node scrapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Labels before relabelling (what discovery produced plus job-level defaults).
    pub discovered: Labels,
    /// Labels after relabelling, including internal `__` labels (address, scheme, params).
    pub full: Labels,
    /// The labels attached to every sample from this target (no `__` labels).
    pub labels: Labels,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// The target group's source, for the targets API.
    pub source: String,
}

impl Target {
    /// Stable identity of the target within its job: its full label set.
    pub fn hash(&self) -> u64 {
        self.full.hash()
    }
}

/// A discovered target that this node does not scrape, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedTarget {
    pub discovered: Labels,
    pub reason: DropReason,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DropReason {
    /// `relabel_configs` dropped it.
    Relabel,
    /// The target filter (shard rule) gave it to another node.
    NotMine(String),
    /// Its labels are unusable (no address, bad interval label…).
    Invalid(String),
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Relabel => f.write_str("dropped by relabel_configs"),
            DropReason::NotMine(r) => f.write_str(r),
            DropReason::Invalid(r) => f.write_str(r),
        }
    }
}

/// Resolves target groups of a job into targets to scrape and dropped targets.
pub fn build_targets(
    job: &ScrapeConfig,
    groups: &[TargetGroup],
    filter: &dyn TargetFilter,
) -> (Vec<Target>, Vec<DroppedTarget>) {
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    for group in groups {
        for address in &group.targets {
            match build_target(job, group, address, filter) {
                Ok(t) => active.push(t),
                Err(d) => dropped.push(d),
            }
        }
    }
    (active, dropped)
}

fn build_target(
    job: &ScrapeConfig,
    group: &TargetGroup,
    address: &str,
    filter: &dyn TargetFilter,
) -> Result<Target, DroppedTarget> {
    let (discovered, lb) = relabel_target(job, group, address)?;
    if let Err(r) = filter.keep(&lb) {
        return Err(DroppedTarget { discovered, reason: DropReason::NotMine(r) });
    }
    finish_target(job, group, discovered, lb)
}

/// First step: the discovered labels with job-level defaults, then `relabel_configs`. Returns
/// the discovered labels and the relabelled builder — what shard rules look at.
pub fn relabel_target(
    job: &ScrapeConfig,
    group: &TargetGroup,
    address: &str,
) -> Result<(Labels, LabelsBuilder), DroppedTarget> {
    let mut lb = LabelsBuilder::new(group.labels.clone());
    lb.set(ADDRESS_LABEL, address);
    // Job-level labels are defaults: a group label of the same name wins, as in Prometheus.
    let interval = PromDuration(job.scrape_interval).to_string();
    let timeout = PromDuration(job.scrape_timeout).to_string();
    let defaults = [
        ("job", job.job_name.as_str()),
        (SCRAPE_INTERVAL_LABEL, interval.as_str()),
        (SCRAPE_TIMEOUT_LABEL, timeout.as_str()),
        (METRICS_PATH_LABEL, job.metrics_path.as_str()),
        (SCHEME_LABEL, job.scheme.as_str()),
    ];
    for (name, value) in defaults {
        if lb.get(name).is_none() {
            lb.set(name, value);
        }
    }
    for (name, values) in &job.params {
        let label = format!("{PARAM_PREFIX}{name}");
        if lb.get(&label).is_none()
            && let Some(first) = values.first()
        {
            lb.set(&label, first);
        }
    }
    let discovered = lb.to_labels();
    if !relabel(&job.relabel_configs, &mut lb) {
        return Err(DroppedTarget { discovered, reason: DropReason::Relabel });
    }
    Ok((discovered, lb))
}

/// Second step: checks the relabelled labels, drops meta labels, defaults `instance`, builds the URL.
pub fn finish_target(
    job: &ScrapeConfig,
    group: &TargetGroup,
    discovered: Labels,
    mut lb: LabelsBuilder,
) -> Result<Target, DroppedTarget> {
    let drop = |reason| DroppedTarget { discovered: discovered.clone(), reason };
    let Some(address) = lb.get(ADDRESS_LABEL).map(str::to_string) else {
        return Err(drop(DropReason::Invalid("no __address__ label after relabelling".into())));
    };
    if address.contains('/') {
        return Err(drop(DropReason::Invalid(format!("{address:?} is not a valid hostname"))));
    }
    let interval = parse_label_duration(&lb, SCRAPE_INTERVAL_LABEL, job.scrape_interval).map_err(&drop)?;
    let timeout = parse_label_duration(&lb, SCRAPE_TIMEOUT_LABEL, job.scrape_timeout).map_err(&drop)?;
    if timeout > interval {
        return Err(drop(DropReason::Invalid(format!(
            "scrape timeout {} greater than scrape interval {}",
            PromDuration(timeout),
            PromDuration(interval)
        ))));
    }
    lb.retain(|l| !l.name.starts_with(META_PREFIX));
    if lb.get("instance").is_none() {
        lb.set("instance", &address);
    }
    for l in lb.iter() {
        if !is_valid_label_name(&l.name) {
            return Err(drop(DropReason::Invalid(format!("invalid label name {:?}", l.name))));
        }
    }
    let full = lb.labels();
    let labels =
        Labels::new(full.iter().filter(|l| !l.name.starts_with("__")).map(|l| l.to_owned_label()).collect());
    let url = scrape_url(job, &full, &address);
    Ok(Target { discovered, full, labels, url, interval, timeout, source: group.source.clone() })
}

fn parse_label_duration(lb: &LabelsBuilder, name: &str, default: Duration) -> Result<Duration, DropReason> {
    match lb.get(name) {
        None => Ok(default),
        Some(s) => parse_duration(s)
            .map_err(|_| DropReason::Invalid(format!("error parsing {name} label {s:?}")))
            .and_then(|d| {
                if d.is_zero() {
                    Err(DropReason::Invalid(format!("{name} label must be positive")))
                } else {
                    Ok(d)
                }
            }),
    }
}

/// `scheme://address/path?params`, where `__param_<name>` labels override the job's params.
fn scrape_url(job: &ScrapeConfig, labels: &Labels, address: &str) -> String {
    let scheme = labels.get(SCHEME_LABEL).unwrap_or("http");
    let path = labels.get(METRICS_PATH_LABEL).unwrap_or("/metrics");
    let mut params: Vec<(String, Vec<String>)> = job.params.clone();
    for LabelRef { name, value } in labels.iter() {
        if let Some(key) = name.strip_prefix(PARAM_PREFIX) {
            match params.iter_mut().find(|(k, _)| k == key) {
                Some((_, vals)) if !vals.is_empty() => vals[0] = value.to_string(),
                Some((_, vals)) => vals.push(value.to_string()),
                None => params.push((key.to_string(), vec![value.to_string()])),
            }
        }
    }
    let mut url = format!("{scheme}://{address}{path}");
    let query: Vec<String> = params
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{}={}", encode(k), encode(v))))
        .collect();
    if !query.is_empty() {
        url.push(if path.contains('?') { '&' } else { '?' });
        url.push_str(&query.join("&"));
    }
    url
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Labels;

    pub(crate) fn job(yaml_jobs: &str) -> ScrapeConfig {
        let text = format!(
            "cluster: t\njobs:\n{yaml_jobs}\nleaves:\n  - {{group: g, jobs: [j], listen: \"127.0.0.1:1\"}}\n"
        );
        match crate::topology::parse(&text, std::path::Path::new("t.yaml")) {
            Ok(t) => (*t.jobs[0]).clone(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_instance_and_url() {
        let j = job(
            "  - job_name: j\n    scrape_interval: 15s\n    params: {module: [a, b]}\n    static_configs: [{targets: ['h:1'], labels: {env: x}}]",
        );
        let (active, dropped) = build_targets(&j, &j.static_configs, &KeepAll);
        assert!(dropped.is_empty());
        let t = &active[0];
        assert_eq!(t.labels, Labels::from_pairs(&[("env", "x"), ("instance", "h:1"), ("job", "j")]));
        assert_eq!(t.url, "http://h:1/metrics?module=a&module=b");
        assert_eq!(t.discovered.get("__scrape_interval__"), Some("15s"));
        assert_eq!(t.discovered.get("__param_module"), Some("a"));
        assert_eq!(t.interval, Duration::from_secs(15));
    }

    #[test]
    fn group_labels_override_job_defaults() {
        let j = job(
            "  - job_name: j\n    static_configs: [{targets: ['h:1'], labels: {job: other, __metrics_path__: /m}}]",
        );
        let (active, _) = build_targets(&j, &j.static_configs, &KeepAll);
        assert_eq!(active[0].labels.get("job"), Some("other"));
        assert_eq!(active[0].url, "http://h:1/m");
    }

    struct DropAll;
    impl TargetFilter for DropAll {
        fn keep(&self, _: &LabelsBuilder) -> Result<(), String> {
            Err("shard 1 of 2".into())
        }
    }

    #[test]
    fn filter_drops_with_reason() {
        let j = job("  - job_name: j\n    static_configs: [{targets: ['h:1', 'h:2']}]");
        let (active, dropped) = build_targets(&j, &j.static_configs, &DropAll);
        assert!(active.is_empty());
        assert_eq!(dropped.len(), 2);
        assert_eq!(dropped[1].discovered.get("__address__"), Some("h:2"));
        assert_eq!(dropped[0].reason.to_string(), "shard 1 of 2");
    }
}
