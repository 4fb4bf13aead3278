//! The topology file as written: serde structs that mirror the YAML one to one, with every field
//! that validation may complain about wrapped in `Spanned` so errors can point at it. Unknown keys
//! are rejected here; meaning is checked in `validate`.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::relabel::RawRelabelConfig;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTopology {
    pub(crate) cluster: S<String>,
    #[serde(default)]
    pub(crate) defaults: Option<S<RawDefaults>>,
    #[serde(default)]
    pub(crate) jobs: Vec<S<RawJob>>,
    #[serde(default)]
    pub(crate) leaves: Vec<S<RawLeafGroup>>,
    #[serde(default)]
    pub(crate) globals: Vec<S<RawGlobal>>,
    #[serde(default)]
    pub(crate) external_leaves: Vec<S<RawExternalGroup>>,
    #[serde(default)]
    pub(crate) push: Option<S<RawPush>>,
    #[serde(default)]
    pub(crate) demo: Option<S<RawDemo>>,
    #[serde(default)]
    pub(crate) nodes: HashMap<S<String>, S<RawNodeOverride>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    pub(crate) scrape_interval: Option<S<String>>,
    pub(crate) scrape_timeout: Option<S<String>>,
    pub(crate) retention: Option<S<String>>,
    pub(crate) data_dir: Option<S<String>>,
    pub(crate) shard_label: Option<S<String>>,
    pub(crate) replica_label: Option<S<String>>,
    #[serde(default)]
    pub(crate) external_labels: HashMap<S<String>, String>,
    pub(crate) fast_link: Option<S<RawFastLink>>,
    /// How every node serves HTTP (TLS, users, CORS) unless its group says otherwise.
    pub(crate) web: Option<S<RawWeb>>,
    /// How nodes reach promtier nodes (credentials, TLS) unless the group reached says otherwise.
    pub(crate) client: Option<S<RawClient>>,
}

/// A node's listener, shaped like Prometheus's `web.config.file` plus promtier's access lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWeb {
    pub(crate) tls_server_config: Option<S<RawTlsServer>>,
    /// User name → bcrypt hash.
    #[serde(default)]
    pub(crate) basic_auth_users: HashMap<S<String>, S<String>>,
    pub(crate) read_users: Option<Vec<S<String>>>,
    pub(crate) write_users: Option<Vec<S<String>>>,
    pub(crate) admin_users: Option<Vec<S<String>>>,
    pub(crate) cors_origin: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsServer {
    pub(crate) cert_file: S<String>,
    pub(crate) key_file: S<String>,
    pub(crate) client_ca_file: Option<S<String>>,
    pub(crate) client_auth_type: Option<S<String>>,
}

/// An HTTP client's credentials and TLS settings, as Prometheus's `HTTPClientConfig` names them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    pub(crate) basic_auth: Option<S<RawBasicAuth>>,
    pub(crate) bearer_token: Option<S<String>>,
    pub(crate) bearer_token_file: Option<S<String>>,
    pub(crate) tls_config: Option<S<RawTlsConfig>>,
}

/// Bounds of the responses every node serves on the fast link.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFastLink {
    pub(crate) max_page_samples: Option<S<i64>>,
    pub(crate) max_page_bytes: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
    pub(crate) job_name: S<String>,
    pub(crate) scrape_interval: Option<S<String>>,
    pub(crate) scrape_timeout: Option<S<String>>,
    pub(crate) metrics_path: Option<S<String>>,
    pub(crate) scheme: Option<S<String>>,
    #[serde(default)]
    pub(crate) params: BTreeMap<String, Vec<String>>,
    pub(crate) honor_labels: Option<bool>,
    pub(crate) honor_timestamps: Option<bool>,
    pub(crate) enable_compression: Option<bool>,
    pub(crate) sample_limit: Option<u64>,
    pub(crate) label_limit: Option<u64>,
    pub(crate) label_name_length_limit: Option<u64>,
    pub(crate) label_value_length_limit: Option<u64>,
    /// Most bytes of (decompressed) body a scrape may read: a size (`10MB`), `0` for no limit.
    pub(crate) body_size_limit: Option<S<String>>,
    pub(crate) basic_auth: Option<S<RawBasicAuth>>,
    pub(crate) bearer_token: Option<S<String>>,
    pub(crate) bearer_token_file: Option<S<String>>,
    pub(crate) tls_config: Option<S<RawTlsConfig>>,
    #[serde(default)]
    pub(crate) static_configs: Vec<S<RawStaticConfig>>,
    #[serde(default)]
    pub(crate) file_sd_configs: Vec<S<RawFileSdConfig>>,
    #[serde(default)]
    pub(crate) relabel_configs: Vec<S<RawRelabelConfig>>,
    #[serde(default)]
    pub(crate) metric_relabel_configs: Vec<S<RawRelabelConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBasicAuth {
    pub(crate) username: S<String>,
    pub(crate) password: Option<String>,
    pub(crate) password_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsConfig {
    pub(crate) ca_file: Option<S<String>>,
    pub(crate) cert_file: Option<S<String>>,
    pub(crate) key_file: Option<S<String>>,
    pub(crate) server_name: Option<S<String>>,
    pub(crate) insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStaticConfig {
    #[serde(default)]
    pub(crate) targets: Vec<S<String>>,
    #[serde(default)]
    pub(crate) labels: HashMap<S<String>, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFileSdConfig {
    pub(crate) files: Vec<S<String>>,
    pub(crate) refresh_interval: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLeafGroup {
    pub(crate) group: S<String>,
    #[serde(default)]
    pub(crate) jobs: Vec<S<String>>,
    pub(crate) shards: Option<S<i64>>,
    pub(crate) sharding: Option<S<RawSharding>>,
    pub(crate) shard_by: Option<Vec<S<String>>>,
    pub(crate) replicas: Option<S<i64>>,
    pub(crate) listen: Option<S<String>>,
    pub(crate) retention: Option<S<String>>,
    #[serde(default)]
    pub(crate) external_labels: HashMap<S<String>, String>,
    pub(crate) web: Option<S<RawWeb>>,
    pub(crate) client: Option<S<RawClient>>,
    #[serde(default)]
    pub(crate) remote_write: Vec<S<RawRemoteWrite>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawSharding {
    Hashmod,
    Ring,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobal {
    pub(crate) name: S<String>,
    #[serde(default)]
    pub(crate) from: Vec<S<String>>,
    pub(crate) replicas: Option<S<i64>>,
    pub(crate) listen: Option<S<String>>,
    pub(crate) federate: Option<S<RawFederate>>,
    pub(crate) dedup: Option<S<RawDedup>>,
    pub(crate) retention: Option<S<String>>,
    /// Absent: the default rollups; `[]`: none.
    #[serde(default)]
    pub(crate) downsample: Option<Vec<S<RawDownsample>>>,
    #[serde(default)]
    pub(crate) remote_write: Vec<S<RawRemoteWrite>>,
    #[serde(default)]
    pub(crate) remote_read: Vec<S<RawRemoteRead>>,
    #[serde(default)]
    pub(crate) external_labels: HashMap<S<String>, String>,
    pub(crate) web: Option<S<RawWeb>>,
    pub(crate) client: Option<S<RawClient>>,
}

/// Prometheus servers (or other `/federate` endpoints) that a global pulls like leaves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExternalGroup {
    pub(crate) group: S<String>,
    /// One list of replica addresses per shard.
    pub(crate) shards: Vec<S<Vec<S<String>>>>,
    pub(crate) scheme: Option<S<String>>,
    pub(crate) basic_auth: Option<S<RawBasicAuth>>,
    pub(crate) bearer_token: Option<S<String>>,
    pub(crate) bearer_token_file: Option<S<String>>,
    pub(crate) tls_config: Option<S<RawTlsConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFederate {
    pub(crate) interval: Option<S<String>>,
    pub(crate) timeout: Option<S<String>>,
    #[serde(rename = "match")]
    pub(crate) matchers: Option<Vec<S<String>>>,
    pub(crate) honor_labels: Option<bool>,
    /// Pull promtier sources over the streamed link (all samples since a cursor) instead of text.
    pub(crate) fast_link: Option<bool>,
    /// Samples per fast-link page this global asks for (at most the source's own bound).
    pub(crate) page_samples: Option<S<i64>>,
    /// Most bytes of body one pull may read (a size, `0` for no limit).
    pub(crate) body_size_limit: Option<S<String>>,
    /// `keep` (default) or `drop` the leaves' shard label when storing.
    pub(crate) shard_label: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDedup {
    pub(crate) mode: Option<S<RawDedupMode>>,
    pub(crate) failover_timeout: Option<S<String>>,
    /// A replica covering less than this fraction of its best peer loses the election.
    pub(crate) min_coverage: Option<S<f64>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawDedupMode {
    Failover,
    Merge,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDownsample {
    pub(crate) resolution: S<String>,
    pub(crate) retention: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemoteWrite {
    pub(crate) url: S<String>,
    pub(crate) name: Option<String>,
    pub(crate) remote_timeout: Option<S<String>>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) basic_auth: Option<S<RawBasicAuth>>,
    pub(crate) bearer_token: Option<S<String>>,
    pub(crate) bearer_token_file: Option<S<String>>,
    pub(crate) tls_config: Option<S<RawTlsConfig>>,
    #[serde(default)]
    pub(crate) write_relabel_configs: Vec<S<RawRelabelConfig>>,
    pub(crate) queue_config: Option<S<RawQueueConfig>>,
    /// `prometheus.WriteRequest` (Remote-Write 1.0) or `io.prometheus.write.v2.Request` (2.0).
    pub(crate) protobuf_message: Option<S<String>>,
    pub(crate) metadata_config: Option<S<RawMetadataConfig>>,
}

/// `remote_write[].metadata_config`, Prometheus's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetadataConfig {
    pub(crate) send: Option<bool>,
    pub(crate) send_interval: Option<S<String>>,
    pub(crate) max_samples_per_send: Option<S<i64>>,
}

/// `remote_read` entry of a global: Prometheus's `remote_read` keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemoteRead {
    pub(crate) url: S<String>,
    pub(crate) name: Option<S<String>>,
    pub(crate) remote_timeout: Option<S<String>>,
    pub(crate) read_recent: Option<bool>,
    #[serde(default)]
    pub(crate) required_matchers: HashMap<S<String>, String>,
    pub(crate) filter_external_labels: Option<bool>,
    #[serde(default)]
    pub(crate) headers: HashMap<S<String>, String>,
    pub(crate) basic_auth: Option<S<RawBasicAuth>>,
    pub(crate) bearer_token: Option<S<String>>,
    pub(crate) bearer_token_file: Option<S<String>>,
    pub(crate) tls_config: Option<S<RawTlsConfig>>,
}

/// `remote_write[].queue_config`, Prometheus's keys plus `max_backlog` (the WAL disk bound).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueueConfig {
    pub(crate) capacity: Option<S<i64>>,
    pub(crate) min_shards: Option<S<i64>>,
    pub(crate) max_shards: Option<S<i64>>,
    pub(crate) max_samples_per_send: Option<S<i64>>,
    pub(crate) batch_send_deadline: Option<S<String>>,
    pub(crate) min_backoff: Option<S<String>>,
    pub(crate) max_backoff: Option<S<String>>,
    pub(crate) max_backlog: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPush {
    pub(crate) nodes: S<i64>,
    pub(crate) replication_factor: Option<S<i64>>,
    pub(crate) write_quorum: Option<S<i64>>,
    pub(crate) key: Option<S<Vec<S<String>>>>,
    pub(crate) max_hint_size: Option<S<String>>,
    pub(crate) retention: Option<S<String>>,
    pub(crate) listen: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDemo {
    pub(crate) targets: S<i64>,
    pub(crate) listen: S<String>,
    pub(crate) series: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNodeOverride {
    pub(crate) listen: Option<S<String>>,
    pub(crate) advertise: Option<S<String>>,
    pub(crate) data_dir: Option<S<String>>,
}
