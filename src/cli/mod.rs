//! The command line: argument definitions and one small function per subcommand. This and
//! `role` are the only places that use `anyhow`; everything below returns typed errors.

mod check;
mod import;
mod plan;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "promtier", version, about = "Prometheus-compatible hierarchical federation and sharding")]
struct Cli {
    /// Log level filter (also RUST_LOG), e.g. info, debug, promtier::scrape=debug.
    #[arg(long = "log.level", global = true, default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long = "log.format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// The concurrent-query limit of a node (leaf, global; `up` passes them to its nodes).
#[derive(Debug, clap::Args)]
struct QueryLimitArgs {
    /// Maximum number of queries (PromQL, series and label lookups) evaluated at once.
    #[arg(long = "query.max-concurrency", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrency: u32,
    /// Queries that may wait for a free slot; more are answered 503 (Retry-After) at once.
    #[arg(long = "query.max-queued", default_value_t = 100)]
    max_queued: u32,
    /// How long a query may wait for a free slot before it is answered 503 (and never longer
    /// than its own timeout: the wait counts against it).
    #[arg(long = "query.queue-timeout", default_value = "30s", value_parser = parse_prom_duration)]
    queue_timeout: Duration,
}

impl QueryLimitArgs {
    fn limits(&self) -> crate::api::QueryLimits {
        crate::api::QueryLimits {
            max_concurrency: self.max_concurrency as usize,
            max_queued: self.max_queued as usize,
            queue_timeout: self.queue_timeout,
        }
    }

    /// The same settings as arguments of a node process.
    fn node_flags(&self) -> Vec<String> {
        vec![
            format!("--query.max-concurrency={}", self.max_concurrency),
            format!("--query.max-queued={}", self.max_queued),
            format!("--query.queue-timeout={}", crate::model::PromDuration(self.queue_timeout)),
        ]
    }
}

/// Bounds on one request to a node's remote-write receiver (leaf, global; `up` passes them on).
#[derive(Debug, clap::Args)]
struct RemoteWriteLimitArgs {
    /// Compressed body bytes of one remote-write request (413 beyond).
    #[arg(long = "remote-write.max-body-bytes", default_value_t = 32 << 20, value_parser = clap::value_parser!(u64).range(1024..))]
    max_body_bytes: u64,
    /// Body bytes after snappy decompression (413 beyond; checked before allocating).
    #[arg(long = "remote-write.max-decompressed-bytes", default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1024..))]
    max_decompressed_bytes: u64,
    /// Series in one remote-write request (413 beyond).
    #[arg(long = "remote-write.max-series-per-request", default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_series: u64,
    /// Samples (floats and histograms) in one remote-write request (413 beyond).
    #[arg(long = "remote-write.max-samples-per-request", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_samples: u64,
}

impl RemoteWriteLimitArgs {
    fn limits(&self) -> crate::remote::WriteLimits {
        crate::remote::WriteLimits {
            max_body_bytes: self.max_body_bytes as usize,
            max_decompressed_bytes: self.max_decompressed_bytes as usize,
            max_series: self.max_series as usize,
            max_samples: self.max_samples as usize,
        }
    }

    /// The same settings as arguments of a node process.
    fn node_flags(&self) -> Vec<String> {
        vec![
            format!("--remote-write.max-body-bytes={}", self.max_body_bytes),
            format!("--remote-write.max-decompressed-bytes={}", self.max_decompressed_bytes),
            format!("--remote-write.max-series-per-request={}", self.max_series),
            format!("--remote-write.max-samples-per-request={}", self.max_samples),
        ]
    }
}

/// Settings of a node that stores data and serves PromQL (leaf, global).
#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// Maximum number of samples a single query may hold in memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    query_max_samples: usize,
    /// Maximum time a query may take (Prometheus duration, e.g. 2m).
    #[arg(long = "query.timeout", default_value = "2m", value_parser = parse_prom_duration)]
    query_timeout: std::time::Duration,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = parse_prom_duration)]
    query_lookback_delta: std::time::Duration,
    #[command(flatten)]
    query_limits: QueryLimitArgs,
    #[command(flatten)]
    remote_write_limits: RemoteWriteLimitArgs,
    /// Time span of a block cut from the head (Prometheus: --storage.tsdb.min-block-duration).
    #[arg(long = "tsdb.block-duration", value_parser = parse_duration, default_value = "2h")]
    block_duration: Duration,
    /// Largest block compaction builds (Prometheus: --storage.tsdb.max-block-duration);
    /// default a tenth of the retention, at most 31d. Equal to the block duration: no compaction.
    #[arg(long = "tsdb.max-block-duration", value_parser = parse_duration)]
    max_block_duration: Option<Duration>,
    /// Delete the oldest blocks while the TSDB takes more than this many bytes (a number, or
    /// with a unit: 512MB, 10GiB).
    #[arg(long = "tsdb.retention-size", value_parser = parse_size)]
    retention_size: Option<u64>,
    /// Size at which a WAL segment is closed and the next begun (Prometheus:
    /// --storage.tsdb.wal-segment-size); at least 64KiB. Remote-write backlogs are dropped a
    /// whole segment at a time.
    #[arg(long = "tsdb.wal-segment-size", value_parser = parse_size, default_value = "128MiB")]
    wal_segment_size: u64,
    /// WAL fsync policy: `commit` (before each commit returns) or an interval (e.g. `1s`).
    #[arg(long = "tsdb.wal-sync", value_parser = parse_wal_sync, default_value = "1s")]
    wal_sync: crate::tsdb::wal::WalSync,
}

impl NodeArgs {
    fn options(&self) -> crate::role::NodeOptions {
        crate::role::NodeOptions {
            query: crate::promql::EngineOptions {
                max_samples: self.query_max_samples,
                timeout: self.query_timeout,
                lookback_delta: self.query_lookback_delta,
                ..crate::promql::EngineOptions::default()
            },
            queries: self.query_limits.limits(),
            remote_write: self.remote_write_limits.limits(),
            storage: crate::role::storage::StorageOptions {
                block_duration: self.block_duration,
                max_block_duration: self.max_block_duration,
                retention_size: self.retention_size,
                wal_segment_bytes: self.wal_segment_size,
                wal_sync: self.wal_sync,
            },
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a topology file; print every problem as file:line:column: message.
    Check {
        /// The topology file.
        topology: PathBuf,
    },
    /// Show the nodes of a topology, which node scrapes which target, and the push ring.
    Plan {
        /// The topology file.
        topology: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also show which targets would move if GROUP had N shards; `push=N`: what N push
        /// nodes would move over the sample key set (repeatable).
        #[arg(long, value_name = "GROUP=N")]
        resize: Vec<String>,
        /// Show the push nodes owning the series key with these label values, e.g.
        /// `job=backup,instance=db-1:9100` or `{job="backup", instance="db-1:9100"}` (quote
        /// values containing commas; labels outside the ring key are ignored; repeatable).
        #[arg(long, value_name = "LABEL=VALUE,...")]
        push_key: Vec<String>,
    },
    /// Run every node of a topology on this host (default: the built-in quickstart cluster).
    Up {
        /// The topology file; without it, the quickstart topology is written to
        /// ./.promtier/quickstart.yaml and run from there.
        topology: Option<PathBuf>,
        /// Passed to every leaf and global.
        #[command(flatten)]
        query_limits: QueryLimitArgs,
        /// Passed to every leaf and global.
        #[command(flatten)]
        remote_write_limits: RemoteWriteLimitArgs,
        /// Do not show the nodes' status (on a terminal a live line per node at the bottom,
        /// otherwise a plain line when a node's state changes).
        #[arg(long)]
        no_status: bool,
    },
    /// Run one leaf node of a topology.
    Leaf {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        node: String,
        #[command(flatten)]
        node_args: NodeArgs,
    },
    /// Run one global node of a topology.
    Global {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        node: String,
        #[command(flatten)]
        node_args: NodeArgs,
    },
    /// Run one push node of a topology (the push tier's ring).
    Push {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        node: String,
        #[command(flatten)]
        node_args: NodeArgs,
    },
    /// TSDB tools.
    Tsdb {
        #[command(subcommand)]
        command: TsdbCommand,
    },
    /// Print the bcrypt hash of a password read from standard input (one line), for
    /// `web.basic_auth_users`.
    HashPassword {
        /// bcrypt cost (work factor), 4 to 31.
        #[arg(long, default_value_t = 10)]
        cost: u32,
    },
    /// Run a demo exporter (synthetic, moving metrics) for trying promtier out.
    Demo {
        #[arg(long, default_value = "127.0.0.1:9400")]
        listen: String,
        /// About how many series to serve.
        #[arg(long, default_value_t = 200)]
        series: u32,
        /// Varies the values between exporters.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Debug, Subcommand)]
enum TsdbCommand {
    /// Backfill an OpenMetrics file (timestamps in seconds, ending in # EOF) into a data
    /// directory as blocks; a node started on that directory serves them.
    Import {
        /// The node's data directory (a topology node's `<data_dir>/<name>`).
        #[arg(long)]
        data_dir: PathBuf,
        /// The OpenMetrics text file.
        file: PathBuf,
        /// Time span of each block written.
        #[arg(long = "block-duration", value_parser = parse_duration, default_value = "2h")]
        block_duration: Duration,
    },
}

/// Writes a command's output to stdout. A reader that went away first (`promtier plan | head`)
/// is no error: the output simply ends there, as for any Unix filter.
fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = crate::model::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() { Err("must be positive".into()) } else { Ok(d) }
}

fn parse_size(s: &str) -> Result<u64, String> {
    crate::topology::parse_bytes(s)
        .map(|n| n as u64)
        .ok_or_else(|| format!("{s:?} is not a size (a number of bytes, or with a unit: 64KiB, 512MB, 2GiB)"))
}

fn parse_wal_sync(s: &str) -> Result<crate::tsdb::wal::WalSync, String> {
    match s {
        "commit" => Ok(crate::tsdb::wal::WalSync::Commit),
        other => parse_duration(other).map(crate::tsdb::wal::WalSync::Periodic),
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level, cli.log_format);
    let result = match cli.command {
        Command::Check { topology } => check::run(&topology),
        Command::Plan { topology, format, resize, push_key } => {
            plan::run(&topology, format == Format::Json, &resize, &push_key)
        }
        Command::Up { topology, query_limits, remote_write_limits, no_status } => {
            let mut flags = query_limits.node_flags();
            flags.extend(remote_write_limits.node_flags());
            run::up(topology, flags, !no_status)
        }
        Command::Leaf { topology, node, node_args } => run::leaf(&topology, &node, node_args.options()),
        Command::Global { topology, node, node_args } => run::global(&topology, &node, node_args.options()),
        Command::Push { topology, node, node_args } => run::push(&topology, &node, node_args.options()),
        Command::Tsdb { command: TsdbCommand::Import { data_dir, file, block_duration } } => {
            import::run(&data_dir, &file, block_duration)
        }
        Command::Demo { listen, series, seed } => run::demo(&listen, series, seed),
        Command::HashPassword { cost } => hash_password(cost),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads one line from stdin and prints its bcrypt hash.
fn hash_password(cost: u32) -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        anyhow::bail!("no password on standard input (e.g. `promtier hash-password < password.txt`)");
    }
    println!("{}", bcrypt::hash(password, cost)?);
    Ok(ExitCode::SUCCESS)
}

fn parse_prom_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::model::parse_duration(s).map_err(|e| e.to_string())
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
