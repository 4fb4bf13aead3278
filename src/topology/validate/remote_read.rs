//! A global's `remote_read` entries: Prometheus's keys and defaults, each problem reported at its
//! place (URL scheme, durations, label names of `required_matchers`, reserved headers, names
//! used twice, credentials and TLS through the shared client validators).

use std::collections::HashMap;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::Validator;
use crate::model::is_valid_label_name;
use crate::topology::config::{ClientConfig, RemoteReadConfig};
use crate::topology::raw::RawRemoteRead;

/// Prometheus's default `remote_timeout` for reads.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers the client sets itself (Prometheus refuses the same ones; `Authorization` comes from
/// `basic_auth`/`bearer_token`).
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
];

impl Validator {
    /// Every `remote_read` entry of one global (`p` is the global's YAML path).
    pub(super) fn remote_reads(&mut self, raw: &[Spanned<RawRemoteRead>], p: &str) -> Vec<RemoteReadConfig> {
        let mut out: Vec<RemoteReadConfig> = Vec::with_capacity(raw.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        for (k, r) in raw.iter().enumerate() {
            let rp = format!("{p}.remote_read[{k}]");
            let cfg = self.remote_read(&r.value, &rp);
            let name = cfg.display_name();
            if let Some(first) = names.insert(name.clone(), k) {
                let msg = if cfg.name.is_some() {
                    format!("remote_read name {name:?} is also used by remote_read[{first}]")
                } else {
                    format!("remote_read[{first}] reads the same url; give the entries distinct names")
                };
                match &r.value.name {
                    Some(n) => self.err(n, format!("{rp}.name"), msg),
                    None => self.err(&r.value.url, format!("{rp}.url"), msg),
                }
            }
            out.push(cfg);
        }
        out
    }

    fn remote_read(&mut self, r: &RawRemoteRead, rp: &str) -> RemoteReadConfig {
        match url::Url::parse(&r.url.value) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(_) => self.err(&r.url, format!("{rp}.url"), "remote_read url must be http or https"),
            Err(e) => self.err(
                &r.url,
                format!("{rp}.url"),
                format!("invalid remote_read url {:?}: {e}", r.url.value),
            ),
        }
        if let Some(n) = &r.name
            && n.value.is_empty()
        {
            self.err(n, format!("{rp}.name"), "name must not be empty (leave it out for a URL hash)");
        }
        let remote_timeout = self.positive_duration(
            r.remote_timeout.as_ref(),
            format!("{rp}.remote_timeout"),
            DEFAULT_READ_TIMEOUT,
        );
        let mut required_matchers = Vec::with_capacity(r.required_matchers.len());
        for (name, value) in &r.required_matchers {
            if !is_valid_label_name(&name.value) {
                self.err(
                    name,
                    format!("{rp}.required_matchers"),
                    format!("invalid label name {:?} in required_matchers", name.value),
                );
            }
            required_matchers.push((name.value.clone(), value.clone()));
        }
        required_matchers.sort();
        let mut headers = Vec::with_capacity(r.headers.len());
        for (name, value) in &r.headers {
            let lower = name.value.to_ascii_lowercase();
            if lower == "authorization" {
                self.err(
                    name,
                    format!("{rp}.headers"),
                    "the Authorization header is set through basic_auth or bearer_token(_file)",
                );
            } else if RESERVED_HEADERS.contains(&lower.as_str()) {
                self.err(
                    name,
                    format!("{rp}.headers"),
                    format!("{} is a reserved header: the client sets it", name.value),
                );
            } else if reqwest::header::HeaderName::from_bytes(name.value.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                self.err(
                    name,
                    format!("{rp}.headers"),
                    format!("header {:?} is not a valid HTTP header", name.value),
                );
            }
            headers.push((name.value.clone(), value.clone()));
        }
        headers.sort();
        let auth =
            self.auth(r.basic_auth.as_ref(), r.bearer_token.as_ref(), r.bearer_token_file.as_ref(), rp);
        let tls = self.tls_config(r.tls_config.as_ref(), &format!("{rp}.tls_config"));
        RemoteReadConfig {
            url: r.url.value.clone(),
            name: r.name.as_ref().map(|n| n.value.clone()),
            remote_timeout,
            read_recent: r.read_recent.unwrap_or(false),
            required_matchers,
            filter_external_labels: r.filter_external_labels.unwrap_or(true),
            headers,
            client: ClientConfig { auth, tls },
        }
    }
}
