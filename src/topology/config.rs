//! The validated topology: typed, defaulted configuration that the runtime components are built
//! from. Every value here has passed validation; nothing in it needs checking again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::model::Labels;
use crate::relabel::RelabelConfig;
use crate::shard::Sharder;

/// A whole cluster as described by one topology file.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The file it was loaded from; relative paths inside it are resolved against its directory.
    pub source: PathBuf,
    pub cluster: String,
    /// Name of the external label carrying a leaf's shard (`shard` by default).
    pub shard_label: String,
    /// Name of the external label carrying a node's replica letter (`replica` by default).
    pub replica_label: String,
    pub jobs: Vec<Arc<ScrapeConfig>>,
    pub leaf_groups: Vec<LeafGroup>,
    pub globals: Vec<GlobalConfig>,
    /// Prometheus servers listed as leaves (pulled by globals, not run by promtier).
    pub external_groups: Vec<ExternalGroup>,
    pub push: Option<PushConfig>,
    pub demo: Option<DemoConfig>,
    /// Bounds of the fast-link responses every node serves.
    pub fast_link: FastLinkConfig,
    /// Every node of the topology, in a stable order: leaves (group, shard, replica), globals,
    /// push nodes, demo targets.
    pub nodes: Vec<Node>,
    /// Keys accepted but not implemented yet, in file order.
    pub warnings: Vec<super::Warning>,
}

impl Topology {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn job(&self, name: &str) -> Option<&Arc<ScrapeConfig>> {
        self.jobs.iter().find(|j| j.job_name == name)
    }

    pub fn leaf_group(&self, name: &str) -> Option<&LeafGroup> {
        self.leaf_groups.iter().find(|g| g.name == name)
    }

    pub fn global(&self, name: &str) -> Option<&GlobalConfig> {
        self.globals.iter().find(|g| g.name == name)
    }

    /// Every endpoint `global` pulls, with the replica set (shard) each belongs to: each replica
    /// of each shard of its leaf groups, each replica of each global it stacks on (a global's
    /// replicas form one replica set), and each external server.
    pub fn sources(&self, global: &GlobalConfig) -> Vec<Source> {
        let mut out = Vec::new();
        for from in &global.from {
            if let Some(ext) = self.external_groups.iter().find(|g| &g.name == from) {
                for (shard, replicas) in ext.shards.iter().enumerate() {
                    for (r, addr) in replicas.iter().enumerate() {
                        out.push(Source {
                            group: from.clone(),
                            shard: format!("{from}-{shard}"),
                            replica: replica_letter(r as u32),
                            node: format!("{from}-{shard}-{}", replica_letter(r as u32)),
                            address: addr.clone(),
                            kind: SourceKind::Prometheus,
                            scheme: ext.scheme,
                            client: ext.client.clone(),
                        });
                    }
                }
                continue;
            }
            if from == PUSH_TIER
                && let Some(p) = &self.push
            {
                // One replica set: each series is on `replication_factor` of these nodes, which
                // the global's merge dedup joins at query time.
                for n in self.nodes.iter().filter(|n| matches!(n.role, NodeRole::Push { .. })) {
                    out.push(Source {
                        group: from.clone(),
                        shard: PUSH_TIER.to_string(),
                        replica: n.name.clone(),
                        node: n.name.clone(),
                        address: n.advertise.clone(),
                        kind: SourceKind::Promtier,
                        scheme: n.web.scheme(),
                        client: p.client.clone(),
                    });
                }
                continue;
            }
            let client = match (self.leaf_group(from), self.global(from)) {
                (Some(g), _) => g.client.clone(),
                (None, Some(g)) => g.client.clone(),
                (None, None) => continue,
            };
            for n in self.members(from) {
                let (shard, replica) = match &n.role {
                    NodeRole::Leaf { group, shard, replica } => (format!("{group}-{shard}"), *replica),
                    NodeRole::Global { name, replica } => (name.clone(), *replica),
                    NodeRole::Push { .. } | NodeRole::Demo { .. } => continue,
                };
                out.push(Source {
                    group: from.clone(),
                    shard,
                    replica: replica_letter(replica),
                    node: n.name.clone(),
                    address: n.advertise.clone(),
                    kind: SourceKind::Promtier,
                    scheme: n.web.scheme(),
                    client: client.clone(),
                });
            }
        }
        out
    }

    /// The nodes of a leaf group or global, in shard/replica order.
    pub fn members<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| match &n.role {
            NodeRole::Leaf { group: g, .. } | NodeRole::Global { name: g, .. } => g == group,
            NodeRole::Push { .. } | NodeRole::Demo { .. } => false,
        })
    }
}

/// The name a global's `from:` gives the push tier.
pub const PUSH_TIER: &str = "push";

/// One endpoint a global pulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The `from:` entry it comes from.
    pub group: String,
    /// Its replica set: `<group>-<shard>` for leaves, the global's name for a stacked global.
    pub shard: String,
    /// Replica letter within the set.
    pub replica: String,
    /// Node name (for external servers, a name in the same scheme).
    pub node: String,
    /// `host:port` to pull from.
    pub address: String,
    pub kind: SourceKind,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Credentials and TLS settings for reaching it.
    pub client: Arc<ClientConfig>,
}

impl Source {
    /// `scheme://address`, the base of every URL pulled from it.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.address)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A promtier node: the streamed fast link is available.
    Promtier,
    /// A Prometheus server (or anything serving `/federate`): text federation only.
    Prometheus,
}

/// Prometheus servers listed as leaves of the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalGroup {
    pub name: String,
    /// Replica addresses per shard.
    pub shards: Vec<Vec<String>>,
    pub scheme: &'static str,
    pub client: Arc<ClientConfig>,
}

/// One process of the topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Deterministic name: `<group>-<shard>-<replica letter>`, `<global>-<letter>`, `push-<i>`,
    /// `demo-<i>`.
    pub name: String,
    pub role: NodeRole,
    /// `host:port` the node binds.
    pub listen: String,
    /// `host:port` other nodes use to reach it (the listen address unless overridden).
    pub advertise: String,
    /// This node's own data directory (`<data_dir>/<name>`).
    pub data_dir: PathBuf,
    /// Labels the node adds on `/federate` and remote write: cluster, shard, replica, and the
    /// user's extra labels.
    pub external_labels: Labels,
    /// How long raw samples are kept.
    pub retention: Duration,
    /// How it serves HTTP (TLS, users, CORS).
    pub web: Arc<WebConfig>,
}

impl Node {
    /// `scheme://advertise`, how other nodes and users reach it.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.web.scheme(), self.advertise)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRole {
    Leaf { group: String, shard: u32, replica: u32 },
    Global { name: String, replica: u32 },
    Push { index: u32 },
    Demo { index: u32 },
}

impl NodeRole {
    /// The role keyword used by `plan` and the CLI.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeRole::Leaf { .. } => "leaf",
            NodeRole::Global { .. } => "global",
            NodeRole::Push { .. } => "push",
            NodeRole::Demo { .. } => "demo",
        }
    }
}

/// The replica letter for a replica index: 0 → `a`, 25 → `z`, 26 → `aa`.
pub fn replica_letter(replica: u32) -> String {
    let mut n = replica as usize;
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// A scrape job in Prometheus `scrape_config` terms.
#[derive(Debug, Clone)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub metrics_path: String,
    pub scheme: String,
    /// URL query parameters, each name with one or more values.
    pub params: Vec<(String, Vec<String>)>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    /// Ask for gzip (`Accept-Encoding: gzip`); Prometheus's `enable_compression`.
    pub enable_compression: bool,
    /// 0 means no limit.
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    /// Credentials and TLS settings of the scrapes.
    pub client: ClientConfig,
    /// Most bytes of (decompressed) body one scrape may read; 0 means no limit.
    pub body_size_limit: usize,
    pub static_configs: Vec<TargetGroup>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

/// Credentials sent with each scrape. Files are re-read at every scrape, as Prometheus does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// A secret given inline or through a file.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret(<inline>)"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
        }
    }
}

impl Secret {
    /// The secret's current value (reads the file each time; trailing newline trimmed).
    pub fn read(&self) -> std::io::Result<String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => Ok(std::fs::read_to_string(p)?.trim_end_matches(['\n', '\r']).to_string()),
        }
    }
}

/// How a client verifies the server and proves itself over TLS (Prometheus's `tls_config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// CA certificates that sign the server's certificate (instead of the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, for servers that require one (mTLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when it differs from the address's host.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// An HTTP client's credentials and TLS settings; every client (scrapes, federation pulls, and
/// later remote write and push forwarding) is built from one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientConfig {
    pub auth: Option<Auth>,
    pub tls: TlsConfig,
}

/// How a node serves HTTP: TLS, who may call it, and which web origins may read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    pub tls: Option<TlsServerConfig>,
    /// Basic-auth users; empty means no authentication.
    pub users: Vec<WebUser>,
    /// Cross-origin reads allowed from origins matching this (anchored) regex; `None`: same
    /// origin only.
    pub cors_origin: Option<String>,
}

impl WebConfig {
    /// The URL scheme clients use to reach a node serving with this configuration.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// The certificate a node serves and how it treats client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsServerConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// Prometheus's `client_auth_type` values that promtier supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `NoClientCert` (the default).
    None,
    /// `VerifyClientCertIfGiven`: a certificate is optional, but one given must verify.
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`: mutual TLS.
    RequireAndVerify,
}

/// One basic-auth user of a node and what it may do.
#[derive(Clone, PartialEq, Eq)]
pub struct WebUser {
    pub name: String,
    /// The bcrypt hash of the user's password.
    pub bcrypt_hash: String,
    pub access: Access,
}

impl std::fmt::Debug for WebUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebUser")
            .field("name", &self.name)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// What a user may call: reads (queries, federation, status), writes (receivers), admin
/// (dedup pin/unpin, reload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub admin: bool,
}

/// Targets with common labels, from `static_configs` or a file_sd file.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: Labels,
    /// Where the group came from (`static:0`, a file path with index), for `/api/v1/targets`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileSdConfig {
    /// File patterns (globs), resolved against the topology file's directory.
    pub files: Vec<PathBuf>,
    pub refresh_interval: Duration,
}

/// A functional group of leaves.
#[derive(Debug, Clone)]
pub struct LeafGroup {
    pub name: String,
    pub jobs: Vec<String>,
    pub sharder: Sharder,
    pub replicas: u32,
    /// How its nodes serve HTTP.
    pub web: Arc<WebConfig>,
    /// How other nodes reach its nodes.
    pub client: Arc<ClientConfig>,
    /// Where each of its nodes sends what it scrapes (one queue per endpoint per node).
    pub remote_write: Vec<RemoteWriteConfig>,
}

impl LeafGroup {
    pub fn shards(&self) -> u32 {
        self.sharder.shards()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupMode {
    Failover,
    Merge,
    None,
}

impl DedupMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            DedupMode::Failover => "failover",
            DedupMode::Merge => "merge",
            DedupMode::None => "none",
        }
    }
}

/// A global (aggregation) tier node set.
#[derive(Debug, Clone)]
pub struct GlobalConfig {
    pub name: String,
    /// Leaf groups and/or other globals this global pulls from.
    pub from: Vec<String>,
    pub replicas: u32,
    pub federate_interval: Duration,
    pub federate_timeout: Duration,
    /// `match[]` selectors sent to each source.
    pub federate_match: Vec<String>,
    pub honor_labels: bool,
    /// Store pulled series without the leaves' shard label (`federate.shard_label: drop`), so a
    /// target that moves to another shard stays one series.
    pub drop_shard_label: bool,
    /// Pull promtier sources over the streamed fast link (default) rather than text `/federate`.
    pub fast_link: bool,
    /// Samples per fast-link page to ask for (`None`: the source's bound).
    pub page_samples: Option<usize>,
    /// Most bytes of body one pull (a fast-link page or a text `/federate`) may read; 0 means
    /// no limit.
    pub federate_body_size_limit: usize,
    pub dedup: DedupMode,
    pub failover_timeout: Duration,
    /// A replica whose coverage (targets up, series) is below this fraction of its best peer's
    /// loses the election (0 turns the check off).
    pub min_coverage: f64,
    pub downsample: Vec<Downsample>,
    pub remote_write: Vec<RemoteWriteConfig>,
    /// Stores asked for what is older than the global's own data (`remote_read`).
    pub remote_read: Vec<RemoteReadConfig>,
    /// How its nodes serve HTTP.
    pub web: Arc<WebConfig>,
    /// How other globals reach its nodes.
    pub client: Arc<ClientConfig>,
}

/// Bounds of one fast-link response (`defaults.fast_link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastLinkConfig {
    pub max_page_samples: usize,
    pub max_page_bytes: usize,
}

impl Default for FastLinkConfig {
    fn default() -> FastLinkConfig {
        FastLinkConfig { max_page_samples: 500_000, max_page_bytes: 32 << 20 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downsample {
    pub resolution: Duration,
    /// `None`: kept as long as raw data.
    pub retention: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct RemoteWriteConfig {
    pub url: String,
    pub name: Option<String>,
    pub remote_timeout: Duration,
    pub headers: Vec<(String, String)>,
    /// Credentials and TLS settings, the same type every client is built from.
    pub client: ClientConfig,
    pub write_relabel_configs: Vec<RelabelConfig>,
    pub queue: QueueConfig,
    /// Which protocol the endpoint is sent (`protobuf_message`).
    pub protobuf_message: ProtobufMessage,
    /// How metric metadata is sent with Remote-Write 1.0 (`metadata_config`).
    pub metadata: MetadataConfig,
}

/// The message a `remote_write` endpoint is sent, named as Prometheus 3 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtobufMessage {
    /// Remote-Write 1.0, `prometheus.WriteRequest` (the default).
    #[default]
    WriteRequestV1,
    /// Remote-Write 2.0, `io.prometheus.write.v2.Request`.
    RequestV2,
}

impl ProtobufMessage {
    /// The value of `protobuf_message` (and of the `proto=` content-type parameter).
    pub fn as_str(self) -> &'static str {
        match self {
            ProtobufMessage::WriteRequestV1 => "prometheus.WriteRequest",
            ProtobufMessage::RequestV2 => "io.prometheus.write.v2.Request",
        }
    }

    pub fn parse(s: &str) -> Option<ProtobufMessage> {
        [ProtobufMessage::WriteRequestV1, ProtobufMessage::RequestV2].into_iter().find(|m| m.as_str() == s)
    }
}

/// `metadata_config`: Remote-Write 1.0 sends the metadata of every metric family the node
/// knows every `send_interval`, in requests of at most `max_samples_per_send` entries, as
/// Prometheus does. Remote-Write 2.0 carries metadata on each series instead (so, as in
/// Prometheus 3, this does not apply to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataConfig {
    pub send: bool,
    pub send_interval: Duration,
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    /// Prometheus's defaults (`max_samples_per_send` 2000 since Prometheus 2.44; 500 before).
    fn default() -> MetadataConfig {
        MetadataConfig { send: true, send_interval: Duration::from_secs(60), max_samples_per_send: 2000 }
    }
}

/// One `remote_read` endpoint of a global, with Prometheus's keys and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReadConfig {
    pub url: String,
    /// The name in metrics, logs and warnings: `name`, else a hash of the URL (see
    /// [`RemoteReadConfig::display_name`]).
    pub name: Option<String>,
    /// Bound on one whole read (request, answer and body): default 1m.
    pub remote_timeout: Duration,
    /// Ask this store also for ranges the global holds itself (default false: only for what is
    /// older than the global's oldest sample).
    pub read_recent: bool,
    /// Equality matchers a selector must contain for this store to be asked, sorted by name.
    pub required_matchers: Vec<(String, String)>,
    /// Select the store's series by the node's external labels, and strip them from the
    /// answer (default true).
    pub filter_external_labels: bool,
    /// Extra request headers, sorted by name (values may be secrets: never logged).
    pub headers: Vec<(String, String)>,
    /// Credentials and TLS settings, the same type every client is built from.
    pub client: ClientConfig,
}

impl RemoteReadConfig {
    /// `name`, else the first six hex digits of a hash of the URL (as Prometheus names an
    /// unnamed endpoint by a hash of its config).
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            format!("{:06x}", xxhash_rust::xxh64::xxh64(self.url.as_bytes(), 0) & 0xff_ffff)
        })
    }
}

/// How one remote-write endpoint is fed (`queue_config`). Defaults as Prometheus's, except
/// `max_backlog`, which Prometheus does not have: the WAL bytes kept for an endpoint that is
/// behind (past it the oldest data is dropped for that endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Samples buffered per shard; with `max_shards` it bounds the sender's memory.
    pub capacity: usize,
    pub min_shards: usize,
    pub max_shards: usize,
    pub max_samples_per_send: usize,
    /// How long a partial batch waits for more samples before it is sent.
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub max_backlog_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            capacity: 10_000,
            min_shards: 1,
            max_shards: 50,
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            max_backlog_bytes: 1 << 30,
        }
    }
}

/// The push tier: `nodes` nodes on a consistent-hash ring, each series kept by
/// `replication_factor` of them (its owners, chosen by the labels in `key`).
#[derive(Debug, Clone, PartialEq)]
pub struct PushConfig {
    pub nodes: u32,
    pub replication_factor: u32,
    /// Owners that must have a write in their WAL before it is acknowledged.
    pub write_quorum: u32,
    /// The labels whose values choose a series' owners (default `job`, `instance`).
    pub key: Vec<String>,
    /// Bound on the hints one node keeps for each unreachable owner (oldest dropped beyond).
    pub max_hint_bytes: u64,
    /// How push nodes reach each other (forwarding) and how globals reach them.
    pub client: Arc<ClientConfig>,
    /// How often a push node stores its Pushgateway groups' series (`defaults.scrape_interval`,
    /// as a Prometheus scraping a Pushgateway would).
    pub group_interval: Duration,
}

impl PushConfig {
    /// The name of push node `index`: `push-<index>` (a node's place on the ring is its index).
    pub fn node_name(index: u32) -> String {
        format!("{PUSH_TIER}-{index}")
    }

    /// The write quorum when the topology gives none: a majority of the owners, but never all
    /// of them when there are two or more, so that a write survives one owner being down.
    pub fn default_quorum(replication_factor: u32) -> u32 {
        if replication_factor <= 1 { 1 } else { (replication_factor / 2 + 1).min(replication_factor - 1) }
    }
}

/// Built-in demo exporters started by `promtier up`, so a fresh cluster shows real data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoConfig {
    pub targets: u32,
    /// Series each demo exporter serves.
    pub series: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_letters() {
        let l: Vec<String> = [0, 1, 25, 26, 27, 51, 52].into_iter().map(replica_letter).collect();
        assert_eq!(l, ["a", "b", "z", "aa", "ab", "az", "ba"]);
    }
}
