//! Helpers for tests that run whole promtier clusters: finding a node's process, reading what a
//! node stored through its fast link, and the dedup API.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;

use promtier::federate::stream::StreamReader;
use promtier::model::Labels;

/// Pid of the process whose command line contains every one of `needles` as an argument.
pub(crate) fn find_process(needles: &[&str]) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> =
            cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if needles.iter().all(|n| args.iter().any(|a| a == n)) {
            return Some(pid);
        }
    }
    None
}

/// SIGKILLs the process of `node` started with topology file `topology`.
pub(crate) fn kill_node(topology: &str, node: &str) {
    let pid = find_process(&["--topology", topology, "--node", node])
        .unwrap_or_else(|| panic!("no process for {node}"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
}

/// The replica a global currently elects for `shard` (failover mode).
pub(crate) fn elected(global: SocketAddr, shard: &str) -> Option<String> {
    let data = super::api_data(global, "/api/v1/dedup")?;
    data.as_array()?.iter().find(|s| s["shard"] == shard)?["elected"].as_str().map(str::to_string)
}

/// GET returning the raw body (HTTP/1.0, no decoding); `None` when the node does not answer
/// within 30 s (e.g. a stopped process).
pub(crate) fn raw_get(addr: SocketAddr, path: &str) -> Option<Vec<u8>> {
    let timeout = std::time::Duration::from_secs(30);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some(raw[at..].to_vec())
}

/// Every sample a node stored newer than `since` for the series matching `selector` (URL
/// encoded), read through the fast link page by page: labels → (t, v) in time order.
pub(crate) fn stored(node: SocketAddr, selector: &str, since: i64) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    try_stored(node, selector, since).unwrap_or_else(|| panic!("{node}: no fast-link stream"))
}

/// [`stored`], `None` while the node does not answer with a stream (not listening or not ready yet).
pub(crate) fn try_stored(
    node: SocketAddr,
    selector: &str,
    since: i64,
) -> Option<BTreeMap<Labels, Vec<(i64, f64)>>> {
    let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    let mut cursor = since;
    for _page in 0..100_000 {
        let body = raw_get(node, &format!("/federate/stream?v=2&since={cursor}&match[]={selector}"))?;
        let mut r = StreamReader::new(&body).ok()?;
        while let Some(f) = r.next_frame() {
            let f = f.expect("frame");
            let samples = out.entry(f.labels().expect("labels")).or_default();
            for s in f.samples().expect("samples") {
                // Pages overlap where a page reached past the node's frontier.
                if samples.last().is_none_or(|(t, _)| *t < s.t) {
                    samples.push((s.t, s.v));
                }
            }
        }
        if !r.header.more {
            return Some(out);
        }
        cursor = r.header.next_cursor;
    }
    panic!("{node}: the stream never ended");
}

/// Rows of an instant vector (labels, value) and the response's warnings.
pub(crate) type Answer = (Vec<(BTreeMap<String, String>, f64)>, Vec<String>);

/// An instant PromQL query through the HTTP API: (labels without `__name__`, value) per series,
/// plus the response's warnings.
pub(crate) fn instant(node: SocketAddr, query: &str, time_s: f64) -> Answer {
    try_instant(node, query, time_s).unwrap_or_else(|| panic!("{query}: no answer from {node}"))
}

/// [`instant`], `None` when the node does not answer (yet).
pub(crate) fn try_instant(node: SocketAddr, query: &str, time_s: f64) -> Option<Answer> {
    let q: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let (status, body) = super::http_get(
        node,
        &format!("/api/v1/query?query={q}&time={time_s}"),
        std::time::Duration::from_secs(10),
    )
    .ok()?;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(status, 200, "{query}: {body}");
    let warnings = json["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let rows = json["data"]["result"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .expect("metric")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            (labels, r["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
        })
        .collect();
    Some((rows, warnings))
}
