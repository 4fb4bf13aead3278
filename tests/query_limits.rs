//! A leaf under a flood of slow queries (issue 10, bounded cost): with `--query.max-concurrency 1
//! --query.max-queued 1`, one query runs, one waits, every other is answered at once with `503`,
//! `Retry-After` and Prometheus's `unavailable` error — and the leaf keeps scraping meanwhile.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::cluster::stored;
use common::*;

/// How long any one condition may take to come true.
const BOUND: Duration = Duration::from_secs(60);

/// A query that takes far longer than its `timeout=3s` (about 10k steps of one-day windows of
/// one-second subquery points), so each one admitted holds its permit for about three seconds.
const SLOW: &str = "/api/v1/query_range?query=stddev_over_time(vector(time())%5B1d%3A1s%5D)\
                    &start=0&end=600000&step=60&timeout=3s";

/// A GET returning the status, the `Retry-After` header and the body.
fn get_with_headers(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Option<String>, String)> {
    let mut s = TcpStream::connect_timeout(&addr, BOUND)?;
    s.set_read_timeout(Some(BOUND))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let retry = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after:").map(|v| v.trim().to_string()));
    Ok((status, retry, body.to_string()))
}

#[test]
fn a_flood_of_slow_queries_gets_503s_while_scrapes_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let topology = dir.path().join("t.yaml");
    // The leaf scrapes itself every second.
    std::fs::write(
        &topology,
        format!(
            "cluster: q\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             jobs:\n  - {{job_name: self, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n\
             leaves:\n  - {{group: g, jobs: [self], listen: '127.0.0.1:{port}'}}\n"
        ),
    )
    .expect("topology");
    let log = dir.path().join("leaf.log");
    let topo = topology.to_str().expect("utf8");
    let args = [
        "leaf",
        "--topology",
        topo,
        "--node",
        "g-0-a",
        "--query.max-concurrency",
        "1",
        "--query.max-queued",
        "1",
    ];
    let _leaf = start_promtier("leaf", &args, &log);
    let leaf: SocketAddr = ([127, 0, 0, 1], port).into();
    let leaf_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("the leaf to scrape itself", BOUND, leaf_log, || {
        let (status, body) = http_get(leaf, "/federate?match[]=up", Duration::from_secs(10)).ok()?;
        (status == 200 && body.contains("up{")).then_some(())
    });

    // Eight slow queries at once.
    let flood_start = promtier::model::now_ms();
    let answers: Vec<(u16, Option<String>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(move || get_with_headers(leaf, SLOW))).collect();
        handles.into_iter().map(|h| h.join().expect("query thread").expect("query answered")).collect()
    });
    let flood_end = promtier::model::now_ms();

    // One ran and one waited for it (both end at the 3 s timeout: the wait counts against it);
    // six were refused at once.
    let refused: Vec<_> = answers.iter().filter(|(_, _, b)| b.contains("\"unavailable\"")).collect();
    assert_eq!(refused.len(), 6, "{answers:#?}\n{}", leaf_log());
    for (status, retry, body) in &refused {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(retry.as_deref(), Some("5"), "{body}");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON error");
        assert_eq!(json["status"], "error");
        let msg = json["error"].as_str().unwrap_or("");
        assert!(msg.starts_with("too many concurrent queries (1 running, 1 waiting"), "{msg}");
    }
    for (status, _, body) in answers.iter().filter(|(_, _, b)| !b.contains("\"unavailable\"")) {
        assert!(*status == 503 && body.contains("\"timeout\""), "{status}: {body}");
    }
    let (_, metrics) = http_get(leaf, "/metrics", Duration::from_secs(10)).expect("metrics");
    assert!(metrics.contains("promtier_engine_queries_rejected_total{reason=\"queue_full\"} 6"), "{metrics}");
    assert!(metrics.contains("prometheus_engine_queries_concurrent_max 1"), "{metrics}");

    // The scrapes went on during the flood (about 3 s, a scrape a second).
    let up = stored(leaf, "up", flood_start - 1);
    let during: usize =
        up.values().map(|s| s.iter().filter(|(t, _)| (flood_start..=flood_end).contains(t)).count()).sum();
    let ms = flood_end - flood_start;
    assert!(ms >= 2500, "the flood lasted {ms} ms");
    assert!(during >= 2, "{during} scrapes stored in {ms} ms of flood\n{}", leaf_log());
}
