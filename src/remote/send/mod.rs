//! Remote write, sending side: one queue per `remote_write` endpoint of a node, fed from the
//! node's own WAL (so what is sent is exactly what the node committed — after dedup on a
//! global) and durable across restarts and outages: each queue tails the WAL from a position
//! persisted in `<data_dir>/remote-write/<queue>.json` once everything before it is
//! acknowledged, and holds the WAL segments from there on against checkpoints, up to
//! `queue_config.max_backlog` bytes (past it the oldest data is dropped, counted and logged).
//!
//! A queue works in rounds: read up to `max_shards × max_samples_per_send` samples (or what
//! came within `batch_send_deadline`), split them by series over as many shards as the round
//! needs (between `min_shards` and `max_shards`), send each shard's batches in order with
//! retries (`client`), then persist the position. A series always goes to one shard within a
//! round, and rounds follow each other, so each series' samples arrive in order. Delivery is at
//! least once: a crash between an acknowledgement and the position's write resends identical
//! samples, which receivers store once. The WAL reading is `watcher`'s.
//!
//! Each endpoint is sent Remote-Write 1.0 or 2.0 (`protobuf_message`; bodies built by
//! `encode`, posted and retried by `client`). Metric metadata comes from the node through a
//! [`MetadataSource`] (a leaf's scrapes, a global's sources): 2.0 series carry their family's
//! type, help and unit; 1.0 endpoints get it in requests of its own every
//! `metadata_config.send_interval`, as Prometheus sends it.

mod client;
mod encode;
mod watcher;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::http::HttpClient;
use crate::metrics::{Collect, Counter, Family, Gauge, Registry};
use crate::model::{Labels, MetricMetadata};
use crate::remote::proto;
use crate::topology::{MetadataConfig, ProtobufMessage, RemoteWriteConfig};
use crate::tsdb::wal::{RefSample, SegmentHolds};

use client::{Delivery, Endpoint, Payload};
use encode::{MetadataIndex, SendSeries};
pub use watcher::Position;
use watcher::{Transform, Watcher};

/// The metric metadata a node knows: `(family, metadata)` pairs, repeated per target (or
/// source) reporting them — what `/api/v1/metadata` lists. Queues call it once per
/// `metadata_config.send_interval` (1.0) and at most every [`METADATA_REFRESH`] (2.0), so it
/// may take a lock and copy.
pub type MetadataSource = Arc<dyn Fn() -> Vec<(String, MetricMetadata)> + Send + Sync>;

/// How long a 2.0 queue uses one copy of the node's metadata before asking again.
pub const METADATA_REFRESH: Duration = Duration::from_secs(10);

/// Why a queue could not be set up or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error("remote_write {name}: {source}")]
    Client { name: String, source: crate::http::ClientError },
    #[error("remote_write {name}: position file {path}: {source}")]
    Position { name: String, path: PathBuf, source: std::io::Error },
    #[error("remote_write {name}: reading the WAL: {source}")]
    Wal { name: String, source: std::io::Error },
    #[error("encoding a write request: {0}")]
    Encode(String),
}

/// The metrics of every queue of a node, named as Prometheus names them.
pub struct SendMetrics {
    samples: Arc<Family<Counter>>,
    failed: Arc<Family<Counter>>,
    retried: Arc<Family<Counter>>,
    dropped: Arc<Family<Counter>>,
    pending: Arc<Family<Gauge>>,
    shards: Arc<Family<Gauge>>,
    highest_sent: Arc<Family<Gauge>>,
    highest_read: Arc<Family<Gauge>>,
    bytes: Arc<Family<Counter>>,
    backlog: Arc<Family<Gauge>>,
    metadata: Arc<Family<Counter>>,
    metadata_failed: Arc<Family<Counter>>,
    metadata_retried: Arc<Family<Counter>>,
    metadata_bytes: Arc<Family<Counter>>,
}

impl SendMetrics {
    pub fn new(registry: &Registry) -> Arc<SendMetrics> {
        const Q: &[&str] = &["remote_name", "url"];
        let m = SendMetrics {
            samples: Arc::new(Family::new(
                "prometheus_remote_storage_samples_total",
                "Samples sent to remote storage (accepted or refused for good).",
                Q,
                Counter::default,
            )),
            failed: Arc::new(Family::new(
                "prometheus_remote_storage_samples_failed_total",
                "Samples the receiver refused for good (4xx other than 429): not sent again.",
                Q,
                Counter::default,
            )),
            retried: Arc::new(Family::new(
                "prometheus_remote_storage_samples_retried_total",
                "Samples sent again after a 5xx, 429 or network error.",
                Q,
                Counter::default,
            )),
            dropped: Arc::new(Family::new(
                "prometheus_remote_storage_samples_dropped_total",
                "Samples never sent, by reason: dropped_series (write relabeling dropped the series), backlog (the queue fell further behind than max_backlog).",
                &["remote_name", "url", "reason"],
                Counter::default,
            )),
            pending: Arc::new(Family::new(
                "prometheus_remote_storage_samples_pending",
                "Samples read from the WAL and not yet acknowledged by the receiver.",
                Q,
                Gauge::default,
            )),
            shards: Arc::new(Family::new(
                "prometheus_remote_storage_shards",
                "Shards the last round was sent over.",
                Q,
                Gauge::default,
            )),
            highest_sent: Arc::new(Family::new(
                "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
                "Highest sample timestamp acknowledged by the receiver.",
                Q,
                Gauge::default,
            )),
            highest_read: Arc::new(Family::new(
                "prometheus_remote_storage_highest_timestamp_in_seconds",
                "Highest sample timestamp in the WAL seen by the queue (what the node ingested).",
                Q,
                Gauge::default,
            )),
            bytes: Arc::new(Family::new(
                "prometheus_remote_storage_bytes_total",
                "Compressed request bytes accepted by the receiver.",
                Q,
                Counter::default,
            )),
            backlog: Arc::new(Family::new(
                "promtier_remote_storage_backlog_bytes",
                "WAL bytes the queue has not sent yet (bounded by queue_config.max_backlog).",
                Q,
                Gauge::default,
            )),
            metadata: Arc::new(Family::new(
                "prometheus_remote_storage_metadata_total",
                "Metadata entries sent to remote storage (Remote-Write 1.0 metadata_config; accepted or refused for good).",
                Q,
                Counter::default,
            )),
            metadata_failed: Arc::new(Family::new(
                "prometheus_remote_storage_metadata_failed_total",
                "Metadata entries the receiver refused for good: not sent again.",
                Q,
                Counter::default,
            )),
            metadata_retried: Arc::new(Family::new(
                "prometheus_remote_storage_metadata_retried_total",
                "Metadata entries sent again after a 5xx, 429 or network error.",
                Q,
                Counter::default,
            )),
            metadata_bytes: Arc::new(Family::new(
                "prometheus_remote_storage_metadata_bytes_total",
                "Compressed bytes of metadata requests accepted by the receiver.",
                Q,
                Counter::default,
            )),
        };
        for c in [
            &m.samples,
            &m.failed,
            &m.retried,
            &m.dropped,
            &m.bytes,
            &m.metadata,
            &m.metadata_failed,
            &m.metadata_retried,
            &m.metadata_bytes,
        ] {
            registry.register(c.clone() as Arc<dyn Collect>);
        }
        for g in [&m.pending, &m.shards, &m.highest_sent, &m.highest_read, &m.backlog] {
            registry.register(g.clone() as Arc<dyn Collect>);
        }
        Arc::new(m)
    }
}

/// One queue's children of [`SendMetrics`].
pub(super) struct QueueMetrics {
    samples: Arc<Counter>,
    failed: Arc<Counter>,
    retried: Arc<Counter>,
    dropped_series: Arc<Counter>,
    dropped_backlog: Arc<Counter>,
    pending: Arc<Gauge>,
    shards: Arc<Gauge>,
    highest_sent: Arc<Gauge>,
    highest_read: Arc<Gauge>,
    bytes: Arc<Counter>,
    backlog: Arc<Gauge>,
    metadata: Arc<Counter>,
    metadata_failed: Arc<Counter>,
    metadata_retried: Arc<Counter>,
    metadata_bytes: Arc<Counter>,
}

/// The state of a queue, for the status page.
#[derive(Debug, Clone)]
pub struct QueueStatus {
    pub name: String,
    pub url: String,
    /// `1.0` or `2.0`.
    pub protocol: &'static str,
    pub position: Position,
    pub pending: u64,
    pub backlog_bytes: u64,
    pub shards: u64,
    pub highest_sent_ms: i64,
    pub last_error: Option<String>,
}

/// One remote-write endpoint's queue.
pub struct Queue {
    name: String,
    endpoint: Arc<Endpoint>,
    metrics: Arc<QueueMetrics>,
    wal_dir: PathBuf,
    position_path: PathBuf,
    holds: Arc<SegmentHolds>,
    external: Labels,
    relabel: Vec<crate::relabel::RelabelConfig>,
    status: Mutex<QueueStatus>,
    metadata_config: MetadataConfig,
    /// Where metadata comes from (`None`: the node knows none).
    metadata: Option<MetadataSource>,
    /// The 2.0 encoder's copy of the node's metadata, and when it was taken.
    index: Mutex<Option<(Instant, Arc<MetadataIndex>)>>,
}

/// How often a queue stuck retrying a round checks its WAL backlog against `max_backlog`.
const BOUND_CHECK: Duration = Duration::from_secs(1);

/// The name a queue goes by in metrics and logs: its `name`, else a hash of its URL.
pub fn queue_name(cfg: &RemoteWriteConfig) -> String {
    cfg.name
        .clone()
        .unwrap_or_else(|| format!("{:06x}", xxhash_rust::xxh64::xxh64(cfg.url.as_bytes(), 0) & 0xff_ffff))
}

impl Queue {
    /// A queue for `cfg` on a node whose WAL is in `wal_dir` and data in `data_dir`; registers
    /// its hold on the WAL at once (from its persisted position), so that no checkpoint taken
    /// before it runs removes what it still has to send.
    pub fn new(
        cfg: &RemoteWriteConfig,
        external: &Labels,
        data_dir: &Path,
        wal_dir: &Path,
        holds: Arc<SegmentHolds>,
        metrics: &SendMetrics,
        metadata: Option<MetadataSource>,
    ) -> Result<Queue, SendError> {
        let name = queue_name(cfg);
        let client = HttpClient::new(&cfg.client, false)
            .map_err(|source| SendError::Client { name: name.clone(), source })?;
        let key = format!("{:016x}", xxhash_rust::xxh64::xxh64(format!("{}\n{name}", cfg.url).as_bytes(), 0));
        let position_path = data_dir.join("remote-write").join(format!("{key}.json"));
        let position = load_position(&position_path).map_err(|source| SendError::Position {
            name: name.clone(),
            path: position_path.clone(),
            source,
        })?;
        if let Some(p) = position {
            holds.hold(&key, p.segment);
        }
        let l = [name.as_str(), cfg.url.as_str()];
        let qm = QueueMetrics {
            samples: metrics.samples.with(&l),
            failed: metrics.failed.with(&l),
            retried: metrics.retried.with(&l),
            dropped_series: metrics.dropped.with(&[l[0], l[1], "dropped_series"]),
            dropped_backlog: metrics.dropped.with(&[l[0], l[1], "backlog"]),
            pending: metrics.pending.with(&l),
            shards: metrics.shards.with(&l),
            highest_sent: metrics.highest_sent.with(&l),
            highest_read: metrics.highest_read.with(&l),
            bytes: metrics.bytes.with(&l),
            backlog: metrics.backlog.with(&l),
            metadata: metrics.metadata.with(&l),
            metadata_failed: metrics.metadata_failed.with(&l),
            metadata_retried: metrics.metadata_retried.with(&l),
            metadata_bytes: metrics.metadata_bytes.with(&l),
        };
        Ok(Queue {
            status: Mutex::new(QueueStatus {
                name: name.clone(),
                url: cfg.url.clone(),
                protocol: protocol(cfg.protobuf_message),
                position: position.unwrap_or(Position { segment: 0, offset: 0 }),
                pending: 0,
                backlog_bytes: 0,
                shards: 0,
                highest_sent_ms: 0,
                last_error: None,
            }),
            name,
            endpoint: Arc::new(Endpoint {
                client,
                url: cfg.url.clone(),
                headers: cfg.headers.clone(),
                timeout: cfg.remote_timeout,
                queue: cfg.queue,
                proto: cfg.protobuf_message,
                last_error: Mutex::new(None),
            }),
            metrics: Arc::new(qm),
            wal_dir: wal_dir.to_path_buf(),
            position_path,
            holds,
            external: external.clone(),
            relabel: cfg.write_relabel_configs.clone(),
            metadata_config: cfg.metadata,
            metadata,
            index: Mutex::new(None),
        })
    }

    pub fn status(&self) -> QueueStatus {
        let mut st = self.status.lock().clone();
        if let Some(e) = self.endpoint.last_error.lock().clone() {
            st.last_error = Some(e);
        }
        st
    }

    fn hold_key(&self) -> String {
        self.position_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// Sends until `shutdown`: the samples of the WAL and, to a 1.0 endpoint with
    /// `metadata_config.send`, the node's metadata every `send_interval`. Errors reading the
    /// WAL or writing the position are logged and retried; they never stop the node.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::join!(self.clone().run_samples(shutdown.clone()), self.run_metadata(shutdown));
    }

    async fn run_samples(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            match self.clone().run_inner(&shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(queue = %self.name, error = %e, "remote write queue failed; restarting it in 5s");
                    self.status.lock().last_error = Some(e.to_string());
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Sends the node's metadata every `send_interval` (the first time one interval after the
    /// start, as Prometheus's metadata watcher), each distinct `(family, type, help, unit)` once,
    /// in requests of at most `max_samples_per_send` entries, one after another. Only for 1.0:
    /// 2.0 series carry their metadata.
    async fn run_metadata(self: Arc<Self>, shutdown: CancellationToken) {
        let cfg = self.metadata_config;
        let Some(source) = self.metadata.clone() else { return };
        if !cfg.send || self.endpoint.proto != ProtobufMessage::WriteRequestV1 {
            return;
        }
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + cfg.send_interval, cfg.send_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let src = source.clone();
            let entries = match tokio::task::spawn_blocking(move || encode::distinct(src())).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(queue = %self.name, error = %e, "remote write: collecting metadata failed");
                    continue;
                }
            };
            for (i, chunk) in entries.chunks(cfg.max_samples_per_send).enumerate() {
                let body = match client::compress(&encode::v1_metadata(chunk)) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(queue = %self.name, error = %e, "remote write: encoding metadata failed");
                        break;
                    }
                };
                let seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ started_nanos();
                let payload = Payload::Metadata(chunk.len() as u64);
                if client::send(&self.endpoint, &self.metrics, body, payload, seed, &shutdown).await
                    == Delivery::Cancelled
                {
                    return;
                }
            }
        }
    }

    /// The node's metadata as the 2.0 encoder looks it up, taken again when older than
    /// [`METADATA_REFRESH`] (empty when the node has no metadata source).
    async fn metadata_index(&self) -> Arc<MetadataIndex> {
        let Some(source) = self.metadata.clone() else { return Arc::default() };
        if let Some((at, index)) = &*self.index.lock()
            && at.elapsed() < METADATA_REFRESH
        {
            return index.clone();
        }
        let index = match tokio::task::spawn_blocking(move || encode::index(source())).await {
            Ok(i) => Arc::new(i),
            Err(e) => {
                tracing::error!(queue = %self.name, error = %e, "remote write: collecting metadata failed");
                Arc::default()
            }
        };
        *self.index.lock() = Some((Instant::now(), index.clone()));
        index
    }

    fn transform(&self) -> Transform {
        let external = self.external.clone();
        let rules = self.relabel.clone();
        Box::new(move |labels: &Labels| {
            let mut b = labels.builder();
            for l in external.iter() {
                if !labels.has(l.name) {
                    b.set(l.name, l.value);
                }
            }
            let out = crate::relabel::relabel_labels(&rules, b.labels())?;
            if out.is_empty() {
                return None;
            }
            Some(
                out.iter()
                    .map(|l| proto::Label { name: l.name.to_string(), value: l.value.to_string() })
                    .collect(),
            )
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, SendError> {
        let wal_err = |source| SendError::Wal { name: self.name.clone(), source };
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| wal_err(std::io::Error::other(e.to_string())))?
            .map_err(wal_err)
    }

    async fn run_inner(self: Arc<Self>, shutdown: &CancellationToken) -> Result<(), SendError> {
        let q = self.endpoint.queue;
        let (dir, path, transform) = (self.wal_dir.clone(), self.position_path.clone(), self.transform());
        let mut watcher = self
            .blocking(move || {
                let pos = load_position(&path)?;
                Watcher::open(&dir, pos, transform)
            })
            .await?;
        self.holds.hold(&self.hold_key(), watcher.position().segment);
        let round_cap = q.max_shards * q.max_samples_per_send.min(q.capacity);
        let poll = (q.batch_send_deadline / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tracing::info!(queue = %self.name, url = %self.endpoint.url, protocol = protocol(self.endpoint.proto), position = ?watcher.position(), "remote write queue started");
        // Set when a round was given up because the receiver kept failing past the bound: then
        // the backlog is cut down to the bound at once. While rounds are delivered the queue is
        // catching up, and gives data up only past a quarter over the bound (a round acknowledged
        // right after an outage leaves the backlog a little over it: no need to drop a segment).
        let mut giving_up = false;
        loop {
            // Bound the backlog, then gather a round.
            let max = q.max_backlog_bytes;
            let trigger = if giving_up { max } else { max.saturating_add(max / 4) };
            giving_up = false;
            let (w, dropped, backlog) = self
                .blocking(move || {
                    let d = watcher.enforce_bound(trigger, max)?;
                    let b = watcher.backlog_bytes()?;
                    Ok((watcher, d, b))
                })
                .await?;
            watcher = w;
            self.metrics.dropped_backlog.inc_by(dropped as f64);
            self.metrics.backlog.set(backlog as f64);
            self.status.lock().backlog_bytes = backlog;
            let mut samples: Vec<RefSample> = Vec::new();
            let started = Instant::now();
            loop {
                let want = round_cap - samples.len();
                let (w, got, stats) = self
                    .blocking(move || {
                        let mut got = Vec::new();
                        let stats = watcher.read(want, &mut got)?;
                        Ok((watcher, got, stats))
                    })
                    .await?;
                watcher = w;
                samples.extend(got);
                self.metrics.dropped_series.inc_by(stats.dropped_series as f64);
                if let Some(t) = samples.iter().map(|s| s.t).max() {
                    let t = t as f64 / 1000.0;
                    if t > self.metrics.highest_read.get() {
                        self.metrics.highest_read.set(t);
                    }
                }
                self.metrics.pending.set(samples.len() as f64);
                if samples.len() >= round_cap
                    || samples.len() >= q.max_samples_per_send
                    || (!samples.is_empty() && started.elapsed() >= q.batch_send_deadline)
                {
                    break;
                }
                if stats.caught_up {
                    // An empty round moves the position too (series-only records, dropped series).
                    if samples.is_empty() && watcher.position() != self.status.lock().position {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(poll) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
            let round = samples.len();
            let read_to = watcher.position();
            // While the round is retried (the receiver is down), the WAL behind it keeps
            // growing: watch that backlog and give the round up once it passes the bound.
            let over_bound = async {
                loop {
                    tokio::time::sleep(BOUND_CHECK).await;
                    let dir = self.wal_dir.clone();
                    let Ok(b) = self.blocking(move || watcher::backlog_from(&dir, read_to)).await else {
                        continue;
                    };
                    self.metrics.backlog.set(b as f64);
                    self.status.lock().backlog_bytes = b;
                    // Only while the receiver is failing (its last answer was no success): a
                    // round being acknowledged after an outage is let finish.
                    if b > max && self.endpoint.last_error.lock().is_some() {
                        return b;
                    }
                }
            };
            tokio::select! {
                // A round that is done wins over a bound passed at the same moment.
                biased;
                sent = self.send_round(&watcher, samples, shutdown) => {
                    if !sent? {
                        return Ok(());
                    }
                }
                backlog = over_bound => {
                    giving_up = true;
                    self.metrics.dropped_backlog.inc_by(round as f64);
                    tracing::warn!(
                        queue = %self.name,
                        samples = round,
                        backlog_bytes = backlog,
                        max_bytes = max,
                        "remote write: backlog over its bound while the receiver fails; giving up the round in flight"
                    );
                }
            }
            let pos = watcher.position();
            let path = self.position_path.clone();
            self.blocking(move || store_position(&path, pos)).await?;
            self.holds.hold(&self.hold_key(), pos.segment);
            self.metrics.pending.set(0.0);
            let mut st = self.status.lock();
            st.position = pos;
            st.pending = 0;
        }
    }

    /// Sends one round over its shards; false when the node is stopping.
    async fn send_round(
        &self,
        watcher: &Watcher,
        samples: Vec<RefSample>,
        shutdown: &CancellationToken,
    ) -> Result<bool, SendError> {
        if samples.is_empty() {
            return Ok(true);
        }
        let q = self.endpoint.queue;
        let total = samples.len();
        let shards = total.div_ceil(q.max_samples_per_send).clamp(q.min_shards, q.max_shards);
        self.metrics.shards.set(shards as f64);
        {
            let mut st = self.status.lock();
            st.shards = shards as u64;
            st.pending = total as u64;
        }
        let max_t = samples.iter().map(|s| s.t).max().unwrap_or(0);
        // Per shard: series in first-seen order, each with its samples in log order.
        let mut per_shard: Vec<(Vec<SendSeries>, HashMap<u64, usize>)> =
            (0..shards).map(|_| (Vec::new(), HashMap::new())).collect();
        for s in samples {
            let Some(labels) = watcher.labels(s.r) else { continue };
            let shard = (xxhash_rust::xxh64::xxh64(&s.r.to_le_bytes(), 0) % shards as u64) as usize;
            let (series, index) = &mut per_shard[shard];
            let i = *index.entry(s.r).or_insert_with(|| {
                series.push(SendSeries { labels: labels.clone(), samples: Vec::new() });
                series.len() - 1
            });
            series[i].samples.push(proto::Sample { value: s.v, timestamp: s.t });
        }
        let metadata = match self.endpoint.proto {
            ProtobufMessage::RequestV2 => self.metadata_index().await,
            ProtobufMessage::WriteRequestV1 => Arc::default(),
        };
        let mut set = tokio::task::JoinSet::new();
        for (i, (series, _)) in per_shard.into_iter().enumerate() {
            let ep = self.endpoint.clone();
            let metrics = self.metrics.clone();
            let shutdown = shutdown.clone();
            let metadata = metadata.clone();
            let seed = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ started_nanos();
            set.spawn(async move { send_shard(&ep, &metrics, series, &metadata, seed, &shutdown).await });
        }
        let mut ok = true;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => ok = false,
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(SendError::Encode(format!("shard task failed: {e}"))),
            }
        }
        if ok {
            let t = max_t as f64 / 1000.0;
            if t > self.metrics.highest_sent.get() {
                self.metrics.highest_sent.set(t);
            }
            let mut st = self.status.lock();
            st.highest_sent_ms = st.highest_sent_ms.max(max_t);
        }
        Ok(ok)
    }
}

fn started_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Sends one shard's series in requests of at most `max_samples_per_send` samples, in order;
/// false when the node is stopping.
async fn send_shard(
    ep: &Endpoint,
    metrics: &QueueMetrics,
    series: Vec<SendSeries>,
    metadata: &MetadataIndex,
    seed: u64,
    shutdown: &CancellationToken,
) -> Result<bool, SendError> {
    let max = ep.queue.max_samples_per_send;
    let mut batch: Vec<SendSeries> = Vec::new();
    let mut n = 0usize;
    let flush = |batch: Vec<SendSeries>, n: usize| async move {
        let body = match ep.proto {
            ProtobufMessage::WriteRequestV1 => encode::v1(&batch),
            ProtobufMessage::RequestV2 => encode::v2(&batch, metadata).0,
        };
        let body = client::compress(&body)?;
        let payload = Payload::Samples(n as u64);
        Ok::<bool, SendError>(
            client::send(ep, metrics, body, payload, seed, shutdown).await != Delivery::Cancelled,
        )
    };
    for mut ts in series {
        while !ts.samples.is_empty() {
            let take = ts.samples.len().min(max - n);
            let rest = ts.samples.split_off(take);
            n += take;
            let samples = std::mem::replace(&mut ts.samples, rest);
            batch.push(SendSeries { labels: ts.labels.clone(), samples });
            if n >= max {
                if !flush(std::mem::take(&mut batch), n).await? {
                    return Ok(false);
                }
                n = 0;
            }
        }
    }
    if n > 0 && !flush(batch, n).await? {
        return Ok(false);
    }
    Ok(true)
}

fn load_position(path: &Path) -> std::io::Result<Option<Position>> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map(Some).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the position durably: a temporary file, synced, renamed over the old one.
fn store_position(path: &Path, pos: Position) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(&pos).map_err(std::io::Error::other)?)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Builds a queue for each endpoint in `configs`; `metadata` is what the node knows of metric
/// metadata (`None`: nothing).
pub fn queues(
    configs: &[RemoteWriteConfig],
    external: &Labels,
    data_dir: &Path,
    wal_dir: &Path,
    holds: Arc<SegmentHolds>,
    registry: &Registry,
    metadata: Option<MetadataSource>,
) -> Result<Vec<Arc<Queue>>, SendError> {
    if configs.is_empty() {
        return Ok(Vec::new());
    }
    let metrics = SendMetrics::new(registry);
    configs
        .iter()
        .map(|c| {
            Queue::new(c, external, data_dir, wal_dir, holds.clone(), &metrics, metadata.clone())
                .map(Arc::new)
        })
        .collect()
}

/// `1.0` or `2.0`, for the status page and logs.
fn protocol(m: ProtobufMessage) -> &'static str {
    match m {
        ProtobufMessage::WriteRequestV1 => "1.0",
        ProtobufMessage::RequestV2 => "2.0",
    }
}

/// What the status page shows of `queues` (`None` when the node sends nowhere).
pub fn status_source(queues: &[Arc<Queue>]) -> Option<Arc<dyn Fn() -> Vec<QueueStatus> + Send + Sync>> {
    if queues.is_empty() {
        return None;
    }
    let queues = queues.to_vec();
    Some(Arc::new(move || queues.iter().map(|q| q.status()).collect()))
}

/// Runs every queue until `shutdown`.
pub async fn run_all(queues: Vec<Arc<Queue>>, shutdown: CancellationToken) {
    let mut set = tokio::task::JoinSet::new();
    for q in queues {
        set.spawn(q.run(shutdown.clone()));
    }
    while set.join_next().await.is_some() {}
}
