//! The command line: argument definitions and one small function per subcommand. This and
//! `role` are the only places that use `anyhow`; everything below returns typed errors.

mod check;
mod plan;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

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

/// Query engine limits of a node that serves PromQL.
#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// Maximum number of samples a single query may hold in memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    query_max_samples: usize,
    /// Maximum time a query may take (Prometheus duration, e.g. 2m).
    #[arg(long = "query.timeout", default_value = "2m", value_parser = parse_prom_duration)]
    query_timeout: std::time::Duration,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = parse_prom_duration)]
    query_lookback_delta: std::time::Duration,
}

impl QueryArgs {
    fn options(&self) -> crate::promql::EngineOptions {
        crate::promql::EngineOptions {
            max_samples: self.query_max_samples,
            timeout: self.query_timeout,
            lookback_delta: self.query_lookback_delta,
            ..crate::promql::EngineOptions::default()
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
    /// Show the nodes of a topology and which node scrapes which target.
    Plan {
        /// The topology file.
        topology: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also show which targets would move if GROUP had N shards (repeatable).
        #[arg(long, value_name = "GROUP=N")]
        resize: Vec<String>,
    },
    /// Run every node of a topology on this host (default: the built-in quickstart cluster).
    Up {
        /// The topology file; without it, the quickstart topology is written to
        /// ./.promtier/quickstart.yaml and run from there.
        topology: Option<PathBuf>,
    },
    /// Run one leaf node of a topology.
    Leaf {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        node: String,
        #[command(flatten)]
        query: QueryArgs,
    },
    /// Run one global node of a topology.
    Global {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        node: String,
        #[command(flatten)]
        query: QueryArgs,
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

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level, cli.log_format);
    let result = match cli.command {
        Command::Check { topology } => check::run(&topology),
        Command::Plan { topology, format, resize } => plan::run(&topology, format == Format::Json, &resize),
        Command::Up { topology } => run::up(topology),
        Command::Leaf { topology, node, query } => run::leaf(&topology, &node, query.options()),
        Command::Global { topology, node, query } => run::global(&topology, &node, query.options()),
        Command::Demo { listen, series, seed } => run::demo(&listen, series, seed),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
