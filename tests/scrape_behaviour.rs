//! A leaf process scraping a small HTTP server run by the test: malformed bodies and limits make
//! a target `up=0` with the cause in `/api/v1/targets`; basic auth, bearer tokens from files,
//! params, `metrics_path` and gzip work; file_sd changes are picked up without a restart.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::*;

/// A tiny HTTP/1.1 server with a fixed set of routes (closes every connection).
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn respond(req: &str) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let line = req.lines().next().unwrap_or("");
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let header = |name: &str| {
        req.lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase())))
            .map(|l| l.split_once(':').map(|x| x.1).unwrap_or("").trim().to_string())
    };
    let ok = |body: &str| {
        (200, vec![("Content-Type", "text/plain; version=0.0.4".to_string())], body.as_bytes().to_vec())
    };
    match path {
        "/bad" => ok("good_metric 1\nthis is { not valid\n"),
        "/limit" => ok("a 1\nb 2\nc 3\n"),
        "/auth" => {
            // "user:secret" in base64.
            if header("authorization").as_deref() == Some("Basic dXNlcjpzZWNyZXQ=") {
                ok("auth_ok 1\n")
            } else {
                (401, vec![], b"unauthorized".to_vec())
            }
        }
        "/bearer" => {
            if header("authorization").as_deref() == Some("Bearer tok3n") {
                ok("bearer_ok 1\n")
            } else {
                (401, vec![], b"unauthorized".to_vec())
            }
        }
        p if p.starts_with("/probe?") => {
            if p.contains("module=http_2xx") && p.contains("target=example") {
                ok("probe_success 1\n")
            } else {
                (400, vec![], format!("bad params in {p}").into_bytes())
            }
        }
        "/gz" => {
            let wants = header("accept-encoding").is_some_and(|v| v.contains("gzip"));
            if !wants {
                return (406, vec![], b"gzip expected".to_vec());
            }
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(b"gz_metric{k=\"v\"} 42\n").expect("gzip");
            let body = enc.finish().expect("gzip");
            (
                200,
                vec![("Content-Encoding", "gzip".to_string()), ("Content-Type", "text/plain".to_string())],
                body,
            )
        }
        "/metrics" => ok("plain_metric 7\n"),
        _ => (404, vec![], b"not found".to_vec()),
    }
}

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut s) = conn else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while n < buf.len() {
                match s.read(&mut buf[n..]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        n += k;
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let (code, headers, body) = respond(&req);
            let mut head =
                format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    Server { addr, stop, handle: Some(handle) }
}

#[test]
fn scrape_features_and_failures_against_a_real_http_server() {
    let server = serve();
    let a = server.addr;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "tok3n\n").expect("token");
    let sd = dir.path().join("sd.json");
    std::fs::write(&sd, format!(r#"[{{"targets": ["{a}"], "labels": {{"from": "file"}}}}]"#)).expect("sd");
    let leaf_port = free_port();
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: s\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             jobs:\n\
             \x20 - {{job_name: bad, metrics_path: /bad, static_configs: [{{targets: ['{a}']}}]}}\n\
             \x20 - {{job_name: limit, metrics_path: /limit, sample_limit: 2, static_configs: [{{targets: ['{a}']}}]}}\n\
             \x20 - {{job_name: auth, metrics_path: /auth, basic_auth: {{username: user, password: secret}}, static_configs: [{{targets: ['{a}']}}]}}\n\
             \x20 - {{job_name: bearer, metrics_path: /bearer, bearer_token_file: token, static_configs: [{{targets: ['{a}']}}]}}\n\
             \x20 - {{job_name: probe, metrics_path: /probe, params: {{module: [http_2xx], target: [example]}}, static_configs: [{{targets: ['{a}']}}]}}\n\
             \x20 - {{job_name: gz, metrics_path: /gz, static_configs: [{{targets: ['{a}']}}]}}\n\
             \x20 - {{job_name: filesd, file_sd_configs: [{{files: ['sd.json']}}]}}\n\
             leaves:\n  - {{group: g, jobs: [bad, limit, auth, bearer, probe, gz, filesd], listen: '127.0.0.1:{leaf_port}'}}\n"
        ),
    )
    .expect("topology");
    let log = dir.path().join("leaf.log");
    let _leaf = start_promtier(
        "leaf",
        &["leaf", "--topology", topology.to_str().expect("utf8"), "--node", "g-0-a"],
        &log,
    );
    let leaf: SocketAddr = ([127, 0, 0, 1], leaf_port).into();
    let leaf_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let health = |job: &str| -> Option<(String, String, String)> {
        let data = api_data(leaf, "/api/v1/targets")?;
        let t = data["activeTargets"].as_array()?.iter().find(|t| t["scrapePool"] == job)?.clone();
        Some((
            t["health"].as_str()?.to_string(),
            t["lastError"].as_str()?.to_string(),
            t["scrapeUrl"].as_str()?.to_string(),
        ))
    };
    let settled = |job: &str| {
        wait_until(&format!("job {job} to be scraped"), Duration::from_secs(20), leaf_log, || {
            health(job).filter(|h| h.0 != "unknown")
        })
    };

    let (h, err, _) = settled("bad");
    assert_eq!(h, "down");
    assert!(err.contains("parse error") && err.contains("line 2"), "{err}");
    assert!(leaf_log().contains("parse error"), "the log names the cause:\n{}", leaf_log());
    let (h, err, _) = settled("limit");
    assert_eq!(h, "down");
    assert!(err.contains("sample limit exceeded"), "{err}");
    for job in ["auth", "bearer", "probe", "gz"] {
        let (h, err, url) = settled(job);
        assert_eq!(h, "up", "{job}: {err} ({url})");
    }
    assert!(settled("probe").2.ends_with("/probe?module=http_2xx&target=example"));

    // The failed targets are up=0 and kept nothing of their bodies; the others have their data.
    let fed = |q: &str| {
        let (_, body) =
            http_get(leaf, &format!("/federate?match[]={q}"), Duration::from_secs(5)).expect("federate");
        parse_text_rows(&body)
    };
    wait_until("report series", Duration::from_secs(10), leaf_log, || {
        let up = fed("up");
        let of = |job: &str| up.iter().find(|r| r.1.iter().any(|(k, v)| k == "job" && v == job)).map(|r| r.2);
        (of("bad") == Some(0.0) && of("limit") == Some(0.0) && of("gz") == Some(1.0)).then_some(())
    });
    assert!(fed("good_metric").is_empty(), "a malformed body must not be half-ingested");
    assert!(fed("a").is_empty(), "a body over the sample limit must not be ingested");
    assert_eq!(fed("gz_metric").first().map(|r| r.2), Some(42.0));
    let sd_row = fed("plain_metric");
    assert!(
        sd_row.first().is_some_and(|r| r.1.contains(&("from".to_string(), "file".to_string()))),
        "{sd_row:?}"
    );

    // file_sd: a second target appears in the file; the leaf picks it up without a restart.
    std::fs::write(
        &sd,
        format!(r#"[{{"targets": ["{a}"], "labels": {{"from": "file"}}}}, {{"targets": ["localhost:{}"], "labels": {{"from": "file2"}}}}]"#, a.port()),
    )
    .expect("sd");
    wait_until("the file_sd change to add a target", Duration::from_secs(20), leaf_log, || {
        let rows = fed("plain_metric");
        rows.iter().any(|r| r.1.contains(&("from".to_string(), "file2".to_string()))).then_some(())
    });
}
