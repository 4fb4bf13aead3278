//! The long-running commands: `up`, `leaf`, `demo` — each builds a runtime, installs the
//! shutdown signal handlers, and hands off to its role.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::role;
use crate::topology;

/// The quickstart topology, built in so that `promtier up` works from anywhere.
const QUICKSTART: &str = include_str!("../../examples/topologies/quickstart.yaml");

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// Runs `f` with a shutdown token that SIGINT/SIGTERM cancel.
fn with_shutdown<F, Fut>(f: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    runtime()?.block_on(async {
        let token = CancellationToken::new();
        let signals = tokio::spawn(role::shutdown::watch_signals(token.clone()));
        let result = f(token.clone()).await;
        token.cancel();
        let _ = signals.await;
        result.map(|()| ExitCode::SUCCESS)
    })
}

/// `node_flags`: arguments every leaf and global is started with; `status`: whether to show the
/// nodes' status.
pub(super) fn up(file: Option<PathBuf>, node_flags: Vec<String>, status: bool) -> anyhow::Result<ExitCode> {
    let file = match file {
        Some(f) => f,
        None => {
            let dir = PathBuf::from(".promtier");
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let f = dir.join("quickstart.yaml");
            std::fs::write(&f, QUICKSTART).with_context(|| format!("cannot write {}", f.display()))?;
            println!("promtier up: no topology given; running the built-in quickstart ({})", f.display());
            f
        }
    };
    let t = topology::load(&file)?;
    let display = if status { role::up::StatusDisplay::Auto } else { role::up::StatusDisplay::Off };
    with_shutdown(|token| async move { role::up::run(&file, &t, &node_flags, display, token).await })
}

fn node(file: &Path, node: &str) -> anyhow::Result<(topology::Topology, topology::Node)> {
    let t = topology::load(file)?;
    let n = t.node(node).cloned().with_context(|| {
        let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        format!("no node {node:?} in {} (nodes: {})", file.display(), names.join(", "))
    })?;
    Ok((t, n))
}

pub(super) fn leaf(file: &Path, name: &str, opts: role::NodeOptions) -> anyhow::Result<ExitCode> {
    let (t, n) = node(file, name)?;
    with_shutdown(|token| async move { role::leaf::run(&t, &n, &opts, token).await })
}

pub(super) fn push(file: &Path, name: &str, opts: role::NodeOptions) -> anyhow::Result<ExitCode> {
    let (t, n) = node(file, name)?;
    with_shutdown(|token| async move { role::push::run(&t, &n, &opts, token).await })
}

pub(super) fn global(file: &Path, name: &str, opts: role::NodeOptions) -> anyhow::Result<ExitCode> {
    let (t, n) = node(file, name)?;
    with_shutdown(|token| async move { role::global::run(&t, &n, &opts, token).await })
}

pub(super) fn demo(listen: &str, series: u32, seed: u64) -> anyhow::Result<ExitCode> {
    with_shutdown(|token| async move {
        role::demo::run(listen, role::demo::DemoOptions { series, seed }, token).await
    })
}
