//! The commands the docs show are run, so the docs cannot rot (issue 14). Every fenced block of
//! `docs/*.md` is one of:
//! - a **shell block** (```` ```sh ````): each command in it (continuation lines joined, trailing
//!   comments dropped) runs in bash with `pipefail`, from the repository root, against a small
//!   cluster this test starts with `promtier up` — a leaf group `apps` of one shard with replicas
//!   `a` and `b` scraping two demo exporters and one target nothing listens on, a failover global
//!   writing to the push tier with `remote_write`, and a push tier of three nodes. The variables
//!   the docs use are set to it: `$G` the global, `$L` leaf `apps-0-a`, `$P` push node `push-0`,
//!   `$PUSH_NODES` every push node, `$AUTH` empty (no `basic_auth_users`). Each command must exit 0
//!   and print something; a `# {…}` comment line right after a command is its documented answer,
//!   and the printed JSON must equal it;
//! - a **transcript** (a block whose first line is `$ promtier …`): the command runs from the
//!   repository root with this build's `promtier`, and its output must be the block's lines, where
//!   a line `…` stands for any number of lines;
//! - anything else (YAML, JSON answers, diagrams): no command, not run.
//!
//! A shell block or transcript that cannot run here — it needs systemd, Docker, Kubernetes, other
//! hosts, or takes minutes — is preceded by `<!-- not run: REASON -->`; the test fails on a marker
//! without a reason. The README's commands are run by `tests/example_topologies.rs` against the
//! quickstart, and the example topologies' header commands against each example.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const BOUND: Duration = Duration::from_secs(120);

/// One fenced block of a doc page.
#[derive(Debug)]
struct Block {
    file: String,
    /// 1-based line of the opening fence.
    line: usize,
    lang: String,
    lines: Vec<String>,
    /// The reason of a `<!-- not run: … -->` marker right before the block.
    not_run: Option<String>,
}

fn doc_blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = path.file_name().expect("file name").to_string_lossy().into_owned();
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    let mut last_text: Option<&str> = None;
    for (i, l) in text.lines().enumerate() {
        let fence = l.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                let not_run = last_text.and_then(|t| {
                    let t = t.trim();
                    let inner = t.strip_prefix("<!--")?.strip_suffix("-->")?.trim();
                    Some(inner.strip_prefix("not run:").map(|r| r.trim().to_string()).unwrap_or_default())
                        .filter(|_| inner.starts_with("not run"))
                });
                open = Some(Block {
                    file: file.clone(),
                    line: i + 1,
                    lang: l.trim().trim_start_matches('`').trim().to_string(),
                    lines: Vec::new(),
                    not_run,
                });
            }
            (Some(_), true) => blocks.push(open.take().expect("open block")),
            (Some(b), false) => b.lines.push(l.to_string()),
            (None, false) => {}
        }
        if !fence && !l.trim().is_empty() && open.is_none() {
            last_text = Some(l);
        } else if fence && open.is_none() {
            last_text = None;
        }
    }
    assert!(open.is_none(), "{file}: a fenced block is not closed");
    blocks
}

/// A shell block's commands: (command, documented JSON answer).
fn shell_commands(block: &Block) -> Vec<(String, Option<Value>)> {
    let mut out: Vec<(String, Option<Value>)> = Vec::new();
    let mut i = 0;
    while i < block.lines.len() {
        let l = block.lines[i].trim();
        i += 1;
        if l.is_empty() {
            continue;
        }
        if let Some(c) = l.strip_prefix('#') {
            let c = c.trim();
            if c.starts_with('{')
                && let Some(last) = out.last_mut()
            {
                let v: Value = serde_json::from_str(c).unwrap_or_else(|e| {
                    panic!("{}:{}: documented answer is not JSON ({e}): {c}", block.file, block.line + i)
                });
                last.1 = Some(v);
            }
            continue;
        }
        let mut cmd = strip_shell_comment(l).to_string();
        while cmd.ends_with('\\') && i < block.lines.len() {
            cmd.pop();
            cmd.push(' ');
            cmd.push_str(strip_shell_comment(block.lines[i].trim()));
            i += 1;
        }
        out.push((cmd.trim().to_string(), None));
    }
    out
}

/// Whether `doc` (with `…` lines standing for any lines) describes `out` exactly.
fn transcript_matches(doc: &[&str], out: &[&str]) -> bool {
    match doc.split_first() {
        None => out.is_empty(),
        Some((&"…", rest)) => (0..=out.len()).any(|skip| transcript_matches(rest, &out[skip..])),
        Some((line, rest)) => {
            out.first().is_some_and(|o| o.trim_end() == line.trim_end())
                && transcript_matches(rest, &out[1..])
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn doc_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    pages
}

fn is_shell(b: &Block) -> bool {
    matches!(b.lang.as_str(), "sh" | "bash" | "shell" | "console")
}

fn is_transcript(b: &Block) -> bool {
    b.lines.first().is_some_and(|l| l.starts_with("$ "))
}

/// A shell that finds this build's `promtier` first.
fn shell(script: &str) -> Command {
    let bin = promtier_binary();
    let path = format!(
        "{}:{}",
        bin.parent().expect("binary dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    c.args(["-c", &format!("set -o pipefail\n{script}")]).current_dir(repo()).env("PATH", path);
    c
}

#[test]
fn every_transcript_in_the_docs_matches_what_the_command_prints() {
    let mut ran = 0;
    for page in doc_pages() {
        for b in doc_blocks(&page).iter().filter(|b| is_transcript(b)) {
            if let Some(reason) = &b.not_run {
                assert!(!reason.is_empty(), "{}:{}: `not run` needs a reason", b.file, b.line);
                continue;
            }
            let cmd = b.lines[0].trim_start_matches("$ ");
            assert!(
                cmd.starts_with("promtier "),
                "{}:{}: a transcript of another program: {cmd}",
                b.file,
                b.line
            );
            let out = shell(cmd).output().expect("run bash");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}:{}: `{cmd}` failed: {}\n{}",
                b.file,
                b.line,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let doc: Vec<&str> = b.lines[1..].iter().map(String::as_str).collect();
            let printed: Vec<&str> = stdout.lines().collect();
            assert!(
                transcript_matches(&doc, &printed),
                "{}:{}: `{cmd}` prints something else than the docs show\n--- docs\n{}\n--- printed\n{stdout}",
                b.file,
                b.line,
                doc.join("\n")
            );
            ran += 1;
        }
    }
    assert!(ran >= 3, "only {ran} transcripts found in docs/");
}

#[test]
fn transcript_wildcards_match_any_lines() {
    assert!(transcript_matches(&["…", "b"], &["a", "x", "b"]));
    assert!(transcript_matches(&["a", "…"], &["a"]));
    assert!(!transcript_matches(&["a", "b"], &["a", "b", "c"]));
    assert!(!transcript_matches(&["…", "b"], &["b", "c"]));
}

#[test]
fn every_shell_command_in_the_docs_runs_against_a_cluster() {
    let blocks: Vec<Block> = doc_pages().iter().flat_map(|p| doc_blocks(p)).collect();
    let mut to_run = Vec::new();
    for b in blocks.iter().filter(|b| is_shell(b) && !is_transcript(b)) {
        match &b.not_run {
            Some(reason) => {
                assert!(!reason.is_empty(), "{}:{}: `not run` needs a reason", b.file, b.line);
                eprintln!("{}:{}: not run: {reason}", b.file, b.line);
            }
            None => to_run.push(b),
        }
    }
    assert!(to_run.len() >= 5, "only {} shell blocks to run in docs/", to_run.len());

    let dir = tempfile::Builder::new().prefix("promtier-docs-").tempdir().expect("tempdir");
    let demo = free_port_block(2);
    let dead = free_port();
    let leaf = free_port_block(2);
    let push = free_port_block(3);
    let global = free_port();
    let data = dir.path().join("data");
    let topology = format!(
        "cluster: docs\n\
         defaults: {{scrape_interval: 1s, scrape_timeout: 900ms, data_dir: '{data}'}}\n\
         demo: {{targets: 2, listen: '127.0.0.1:{demo}', series: 50}}\n\
         jobs:\n\
         \x20 - job_name: demo\n\
         \x20   static_configs: [{{targets: ['127.0.0.1:{demo}', '127.0.0.1:{demo1}']}}]\n\
         \x20 - job_name: broken\n\
         \x20   static_configs: [{{targets: ['127.0.0.1:{dead}']}}]\n\
         leaves:\n\
         \x20 - {{group: apps, jobs: [demo, broken], replicas: 2, listen: '127.0.0.1:{leaf}'}}\n\
         push: {{nodes: 3, replication_factor: 2, listen: '127.0.0.1:{push}'}}\n\
         globals:\n\
         \x20 - name: global\n\
         \x20   from: [apps]\n\
         \x20   listen: '127.0.0.1:{global}'\n\
         \x20   federate: {{interval: 1s, timeout: 900ms}}\n\
         \x20   dedup: {{mode: failover, failover_timeout: 5s}}\n\
         \x20   remote_write: [{{url: 'http://127.0.0.1:{push}/api/v1/write'}}]\n",
        data = data.display(),
        demo1 = demo + 1,
    );
    let file = dir.path().join("docs.yaml");
    std::fs::write(&file, topology).expect("write the topology");
    let log = dir.path().join("up.log");
    let mut up = start_promtier("promtier up (docs)", &["up", file.to_str().expect("utf8")], &log);
    let up_log = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    };
    let g: SocketAddr = format!("127.0.0.1:{global}").parse().expect("addr");

    // What the documented commands look at is there: both replicas healthy and `a` elected,
    // the dead target down at the leaf and at the global, a remote-write queue that has sent,
    // and every push node answering.
    let elected = wait_until("the global to elect a replica of apps-0, both healthy", BOUND, up_log, || {
        let d = api_data(g, "/api/v1/dedup")?;
        let set = d.as_array()?.iter().find(|s| s["shard"] == "apps-0")?;
        let healthy = set["replicas"].as_array()?.iter().all(|r| r["healthy"] == true);
        (healthy && set["healthy"] == true).then(|| set["elected"].as_str().map(str::to_string))?
    });
    if elected != "a" {
        // The docs pin `b` and show the answer of a pin that changes the election.
        for path in ["/api/v1/dedup/pin?shard=apps-0&replica=a", "/api/v1/dedup/unpin?shard=apps-0"] {
            let st = Command::new("curl")
                .args(["-sf", "--max-time", "20", "-X", "POST", &format!("http://{g}{path}")])
                .status()
                .expect("curl");
            assert!(st.success(), "POST {path}");
        }
    }
    wait_until("`broken` down at the global", BOUND, up_log, || {
        let d = api_data(g, "/api/v1/query?query=up%7Bjob%3D%22broken%22%7D%3D%3D0")?;
        (!d["result"].as_array()?.is_empty()).then_some(())
    });
    wait_until("the global's remote write to have sent", BOUND, up_log, || {
        let (_, body) = http_get(g, "/metrics", Duration::from_secs(10)).ok()?;
        body.lines()
            .any(|l| {
                l.starts_with("prometheus_remote_storage_queue_highest_sent_timestamp_seconds")
                    && !l.ends_with(" 0")
            })
            .then_some(())
    });
    let push_nodes: Vec<String> = (0..3).map(|i| format!("http://127.0.0.1:{}", push + i)).collect();
    for p in &push_nodes {
        let addr: SocketAddr = p.trim_start_matches("http://").parse().expect("addr");
        wait_until(&format!("push node {p} to answer"), BOUND, up_log, || {
            let (st, _) = http_get(addr, "/api/v1/push/hints", Duration::from_secs(10)).ok()?;
            (st == 200).then_some(())
        });
    }

    let mut ran = 0;
    for b in to_run {
        for (cmd, answer) in shell_commands(b) {
            let script = cmd.replace("curl ", "curl --max-time 20 ");
            let out = shell(&script)
                .env("G", format!("http://{g}"))
                .env("L", format!("http://127.0.0.1:{leaf}"))
                .env("P", &push_nodes[0])
                .env("PUSH_NODES", push_nodes.join(" "))
                .env("AUTH", "")
                .output()
                .expect("run bash");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let at = format!("{}:{}", b.file, b.line);
            assert!(
                out.status.success(),
                "{at}: `{cmd}` failed ({})\n{stdout}\n{stderr}\n{}",
                out.status,
                up_log()
            );
            assert!(!stdout.trim().is_empty(), "{at}: `{cmd}` printed nothing\n{stderr}");
            if stdout.trim_start().starts_with("{\"status\"") {
                assert!(stdout.contains("\"status\":\"success\""), "{at}: `{cmd}`\n{stdout}");
            }
            if let Some(want) = answer {
                let got: Value = serde_json::from_str(stdout.trim())
                    .unwrap_or_else(|e| panic!("{at}: `{cmd}` printed no JSON ({e}): {stdout}"));
                assert_eq!(got, want, "{at}: `{cmd}` answers other than documented");
            }
            eprintln!("{at}: ran {cmd}");
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} documented commands ran");
    up.stop();
    assert!(std::fs::read_to_string(&log).unwrap_or_default().contains("all nodes stopped"), "{}", up_log());
}
