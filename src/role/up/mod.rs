//! `promtier up`: runs every node of a topology on this host as child processes, prefixes their
//! logs with the node name, shows each node's status (ready, series, lag, elected replicas: a
//! live block at the bottom of a terminal, plain lines on changes otherwise), reports (never
//! silently restarts) a node that exits, and stops them all on SIGINT/SIGTERM.

mod console;
mod status;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::console::Console;
use super::shutdown::SUPERVISOR_ENV;
use crate::topology::{Node, NodeRole, Topology};

/// How long children get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

struct Running {
    node: Node,
    child: Child,
    exited: bool,
}

/// The arguments that run `node` as its own process; leaves and globals also get `node_flags`.
pub fn node_args(
    topology_file: &Path,
    topology: &Topology,
    node: &Node,
    node_flags: &[String],
) -> Vec<String> {
    let t = topology_file.to_string_lossy().to_string();
    match &node.role {
        NodeRole::Demo { index } => {
            let series = topology.demo.map(|d| d.series).unwrap_or(200);
            vec![
                "demo".into(),
                "--listen".into(),
                node.listen.clone(),
                "--series".into(),
                series.to_string(),
                "--seed".into(),
                index.to_string(),
            ]
        }
        role => {
            let mut args =
                vec![role.kind().into(), "--topology".into(), t, "--node".into(), node.name.clone()];
            if matches!(role, NodeRole::Leaf { .. } | NodeRole::Global { .. } | NodeRole::Push { .. }) {
                args.extend(node_flags.iter().cloned());
            }
            args
        }
    }
}

/// How `up` shows its nodes' status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusDisplay {
    /// A live block on a terminal, plain lines on changes otherwise.
    Auto,
    /// No status at all (`--no-status`).
    Off,
}

/// Runs the whole topology until `shutdown`; returns when every child has stopped.
pub async fn run(
    topology_file: &Path,
    topology: &Topology,
    node_flags: &[String],
    display: StatusDisplay,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let console = Arc::new(Console::new(display == StatusDisplay::Auto && std::io::stderr().is_terminal()));
    for w in &topology.warnings {
        console.line(&format!("promtier up: warning: {}", w.render(topology_file)));
    }
    let exe = std::env::current_exe().context("cannot find the promtier executable")?;
    let mut logs = JoinSet::new();
    let mut running: Vec<Running> = Vec::new();
    for node in &topology.nodes {
        let mut cmd = Command::new(&exe);
        cmd.args(node_args(topology_file, topology, node, node_flags))
            .env(SUPERVISOR_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: Ctrl-C reaches only us, and we stop the children in order.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                stop_all(&mut running, &console).await;
                return Err(e).with_context(|| format!("cannot start node {}", node.name));
            }
        };
        if let Some(out) = child.stdout.take() {
            logs.spawn(forward(node.name.clone(), out, console.clone()));
        }
        if let Some(err) = child.stderr.take() {
            logs.spawn(forward(node.name.clone(), err, console.clone()));
        }
        running.push(Running { node: node.clone(), child, exited: false });
    }
    print_summary(topology);

    let exited: Arc<parking_lot::Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop_status = shutdown.child_token();
    let watching = async {
        if display == StatusDisplay::Auto {
            status::watch(
                status::Watched::all(topology),
                console.clone(),
                exited.clone(),
                stop_status.clone(),
            )
            .await;
        }
    };
    let supervising = async {
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = poll.tick() => {}
            }
            for r in running.iter_mut().filter(|r| !r.exited) {
                if let Ok(Some(status)) = r.child.try_wait() {
                    r.exited = true;
                    exited.lock().insert(r.node.name.clone(), status.to_string());
                    console.line(&format!(
                        "promtier up: node {} ({}) exited with {status}; it is not restarted (Ctrl-C stops the rest)",
                        r.node.name,
                        r.node.role.kind()
                    ));
                }
            }
            if running.iter().all(|r| r.exited) {
                console.line("promtier up: every node has exited");
                break;
            }
        }
        stop_status.cancel();
    };
    tokio::join!(watching, supervising);
    console.finish();
    console.line(&format!("promtier up: stopping {} nodes", running.iter().filter(|r| !r.exited).count()));
    stop_all(&mut running, &console).await;
    // Children are gone, so their pipes are closed and the log forwarders finish.
    while logs.join_next().await.is_some() {}
    console.line("promtier up: all nodes stopped");
    Ok(())
}

/// SIGTERM to every child, then SIGKILL to those still running after the grace period.
async fn stop_all(running: &mut [Running], console: &Console) {
    for r in running.iter().filter(|r| !r.exited) {
        if let Some(pid) = r.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for r in running.iter_mut() {
        match tokio::time::timeout(STOP_GRACE, r.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                console.line(&format!(
                    "promtier up: node {} did not stop in {STOP_GRACE:?}; killing it",
                    r.node.name
                ));
                let _ = r.child.kill().await;
            }
        }
        r.exited = true;
    }
}

async fn forward(name: String, pipe: impl AsyncRead + Unpin, console: Arc<Console>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        console.line(&format!("{name:>12} | {line}"));
    }
}

fn print_summary(t: &Topology) {
    println!("promtier up: cluster {:?}, {} nodes", t.cluster, t.nodes.len());
    println!("  {:<16} {:<7} {:<22} url", "node", "role", "listen");
    for n in &t.nodes {
        println!("  {:<16} {:<7} {:<22} {}/", n.name, n.role.kind(), n.listen, n.base_url());
    }
    // Where to look first: the top global (the one no other global pulls), else a leaf.
    let pulled: std::collections::HashSet<&str> =
        t.globals.iter().flat_map(|g| g.from.iter().map(String::as_str)).collect();
    let top = t
        .nodes
        .iter()
        .find(|n| matches!(&n.role, NodeRole::Global { name, .. } if !pulled.contains(name.as_str())));
    let first_leaf = t.nodes.iter().find(|n| matches!(n.role, NodeRole::Leaf { .. }));
    if let Some(n) = top.or(first_leaf) {
        let url = n.base_url();
        // A hint of the flags a secured cluster needs, never the credentials themselves.
        let mut flags = String::new();
        if n.web.tls.is_some() {
            flags.push_str("--cacert CA.pem ");
        }
        if !n.web.users.is_empty() {
            flags.push_str("-u USER ");
        }
        let what = if top.is_some() { "query the cluster:" } else { "a leaf:" };
        println!();
        println!("  {what:<13} {url}/   (console of {})", n.name);
        println!("  PromQL:       curl -sg {flags}'{url}/api/v1/query?query=count(up==1)'");
        println!("  targets:      curl -s {flags}{url}/api/v1/targets");
        println!("  federate:     curl -sg {flags}'{url}/federate?match[]=up'");
    }
    println!("  Ctrl-C stops every node.");
}
