//! Feedback on long work, with real processes: a leaf whose WAL replay is held on a segment
//! (a named pipe standing in for a slow disk) answers `/-/healthy` 200, `/-/ready` 503 saying
//! which segment it replays, and `/metrics` with the replay's progress, before its TSDB is open;
//! then serves everything on the same port. And `promtier up` without a terminal prints a plain
//! status line per node (ready, series, the failover global's election).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;

/// The value of the unlabelled sample `name` in a `/metrics` body.
fn metric(body: &str, name: &str) -> Option<f64> {
    parse_text_rows(body).into_iter().find(|r| r.0 == name && r.1.is_empty()).map(|r| r.2)
}

fn segments(wal: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(wal)
        .expect("read the WAL directory")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn leaf_answers_while_its_wal_replays_then_serves_on_the_same_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(2);
    let (demo_port, leaf_port) = (base, base + 1);
    let topology = dir.path().join("t.yaml");
    std::fs::write(&topology, one_leaf_topology("replay", demo_port, leaf_port)).expect("write topology");
    let t = topology.to_str().expect("utf8 path");
    let leaf_args = ["leaf", "--topology", t, "--node", "apps-0-a", "--tsdb.wal-segment-size", "64KiB"];
    let demo_log = dir.path().join("demo.log");
    let _demo = start_promtier(
        "demo",
        &["demo", "--listen", &format!("127.0.0.1:{demo_port}"), "--series", "2000"],
        &demo_log,
    );
    let leaf: SocketAddr = ([127, 0, 0, 1], leaf_port).into();

    // A first run writes a few WAL segments.
    let first_log = dir.path().join("leaf-1.log");
    let mut first = start_promtier("leaf", &leaf_args, &first_log);
    let log1 = || std::fs::read_to_string(&first_log).unwrap_or_default();
    wait_until("the leaf to write 3 WAL segments", Duration::from_secs(120), log1, || {
        let (_, body) = http_get(leaf, "/metrics", Duration::from_secs(5)).ok()?;
        (metric(&body, "promtier_tsdb_wal_segment_current")? >= 3.0).then_some(())
    });
    first.stop();

    // The next segment is a named pipe: the replay waits on it until this test writes to it.
    let wal = dir.path().join("data/apps-0-a/wal");
    let written = segments(&wal);
    let held = written.last().expect("segments") + 1;
    let fifo = wal.join(format!("{held:08}"));
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let total = written.len() + 1;

    let second_log = dir.path().join("leaf-2.log");
    let _second = start_promtier("leaf", &leaf_args, &second_log);
    let log2 = || std::fs::read_to_string(&second_log).unwrap_or_default();
    let doing = format!("replaying the WAL: segment {total} of {total}");
    let ready_body = wait_until("the leaf to report its replay", Duration::from_secs(120), log2, || {
        let (status, body) = http_get(leaf, "/-/ready", Duration::from_secs(5)).ok()?;
        (status == 503 && body.contains(&doing)).then_some(body)
    });
    assert!(ready_body.starts_with("Service Unavailable: starting: "), "{ready_body}");
    let (status, body) = http_get(leaf, "/-/healthy", Duration::from_secs(5)).expect("/-/healthy");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(leaf, "/metrics", Duration::from_secs(5)).expect("/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(metric(&body, "promtier_tsdb_wal_replay_in_progress"), Some(1.0), "{body}");
    assert_eq!(metric(&body, "promtier_tsdb_wal_replay_segments"), Some(total as f64), "{body}");
    assert_eq!(metric(&body, "promtier_tsdb_wal_replay_segments_done"), Some((total - 1) as f64), "{body}");
    assert!(metric(&body, "promtier_tsdb_wal_replay_bytes").is_some_and(|b| b > 0.0), "{body}");
    // The process metrics are there from the start; the TSDB's own are not yet.
    assert!(body.contains("promtier_build_info{"), "{body}");
    assert!(!body.contains("promtier_tsdb_head_series "), "{body}");
    let (status, body) = http_get(leaf, "/api/v1/query?query=up", Duration::from_secs(5)).expect("query");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"errorType\":\"unavailable\"") && body.contains(&doing), "{body}");

    // Let the replay go on: an empty segment.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        // Opening blocks until the leaf has the pipe open for reading; closing it ends the segment.
        let opened = std::fs::OpenOptions::new().write(true).open(&fifo).map(drop);
        let _ = done_tx.send(opened);
    });
    done_rx.recv_timeout(Duration::from_secs(60)).expect("the leaf opened the pipe").expect("open the pipe");
    writer.join().expect("writer thread");

    wait_until("the leaf to be ready", Duration::from_secs(120), log2, || {
        matches!(http_get(leaf, "/-/ready", Duration::from_secs(5)), Ok((200, _))).then_some(())
    });
    let (_, body) = http_get(leaf, "/metrics", Duration::from_secs(5)).expect("/metrics");
    assert_eq!(metric(&body, "promtier_tsdb_wal_replay_in_progress"), Some(0.0), "{body}");
    assert_eq!(metric(&body, "promtier_tsdb_wal_replay_segments"), Some(total as f64), "{body}");
    assert_eq!(metric(&body, "promtier_tsdb_wal_replay_segments_done"), Some(total as f64), "{body}");
    assert!(metric(&body, "promtier_tsdb_wal_replay_duration_seconds").is_some_and(|d| d > 0.0), "{body}");
    // The replayed series are in the head, and the full API answers.
    let data = api_data(leaf, "/api/v1/status/tsdb").expect("TSDB status");
    assert!(data["headStats"]["numSeries"].as_u64().is_some_and(|n| n > 1000), "{data}");
    let log = log2();
    let listening = log.find("leaf listening").expect("listening line");
    let replayed = log.find("WAL replay finished").expect("replay line");
    assert!(listening < replayed, "the port is bound before the replay:\n{log}");
    assert!(log.contains("replaying the WAL"), "{log}");
}

#[test]
fn up_without_a_terminal_prints_plain_status_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(4);
    let (demo_port, leaf_base, global_port) = (base, base + 1, base + 3);
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: status\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 1, listen: '127.0.0.1:{demo_port}', series: 40}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo_port}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], replicas: 2, listen: '127.0.0.1:{leaf_base}'}}\n\
             globals:\n  - name: global\n    from: [apps]\n    listen: '127.0.0.1:{global_port}'\n\
             \x20   federate: {{interval: 1s, timeout: 900ms}}\n    dedup: {{mode: failover}}\n"
        ),
    )
    .expect("write topology");
    let log = dir.path().join("up.log");
    let mut up = start_promtier("promtier up", &["up", topology.to_str().expect("utf8")], &log);
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let line_with = |prefix: &str, rest: &dyn Fn(&str) -> bool| {
        up_log().lines().any(|l| l.strip_prefix(prefix).is_some_and(rest))
    };
    // What follows "ready, ": "1234 series", then the rest.
    let counted = |r: &str| {
        r.split(", ").next().and_then(|s| s.strip_suffix(" series")).is_some_and(|n| n.parse::<u64>().is_ok())
    };
    let mut first_seen = None;
    for leaf in ["apps-0-a", "apps-0-b"] {
        wait_until(&format!("a status line of {leaf}"), Duration::from_secs(90), up_log, || {
            line_with(&format!("up: {leaf} ready, "), &counted).then_some(())
        });
        first_seen.get_or_insert_with(std::time::Instant::now);
    }
    wait_until("the global's election in a status line", Duration::from_secs(90), up_log, || {
        line_with("up: global-a ready, ", &|r| {
            counted(r) && (r.contains("elected apps-0=a") || r.contains("elected apps-0=b"))
        })
        .then_some(())
    });
    up.stop();
    let text = up_log();
    assert!(!text.contains('\x1b'), "escape sequences without a terminal:\n{text}");
    assert!(!text.contains("up: demo-0"), "demo exporters have no status:\n{text}");
    // Changes only, not a line per poll (every 2 s): a slow answer may count as a change, so
    // the bound is loose, and checked only when enough polls happened to tell.
    let polls = first_seen.expect("seen").elapsed().as_secs() / 2;
    let leaf_lines = text.lines().filter(|l| l.starts_with("up: apps-0-a ")).count() as u64;
    if polls >= 4 {
        assert!(leaf_lines < polls, "{leaf_lines} lines in {polls} polls:\n{text}");
    }
}
