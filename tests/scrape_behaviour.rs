//! A leaf process scraping a small HTTP server run by the test: malformed bodies and limits (also
//! `body_size_limit`, counted on the decompressed body) make a target `up=0` with the cause in
//! `/api/v1/targets`; basic auth, bearer tokens from files,
//! params, `metrics_path` and gzip work; file_sd changes are picked up without a restart; samples
//! the storage refuses show as the target's error (it stays up) until a clean scrape (issue 9).
//!
//! Every check waits for its exact condition (with a generous bound, for busy machines) rather
//! than for a fixed time: a scrape, a discovery or a log line may come late, never early.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long any one condition may take to come true.
const BOUND: Duration = Duration::from_secs(60);

/// A tiny HTTP/1.1 server with a fixed set of routes (closes every connection).
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    routes: Arc<Routes>,
    handle: Option<thread::JoinHandle<()>>,
}

/// What the routes that change over time depend on.
struct Routes {
    /// `/refuse` serves samples the storage must refuse (a repeated timestamp with a new value,
    /// a timestamp going back) while set; plain samples otherwise.
    refuse: AtomicBool,
    /// Requests to `/refuse` so far.
    hits: AtomicU64,
    /// The first explicit timestamp `/refuse` serves (ms).
    t0: i64,
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

fn respond(req: &str, routes: &Routes) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
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
        // 2 KiB of samples, for a job limited to 1 KiB.
        "/big" => ok(&(0..100).map(|i| format!("big_metric{{i=\"{i:03}\"}} 1\n")).collect::<String>()),
        // A few hundred bytes of gzip that decompress to 76 KiB: the limit counts what it inflates to.
        "/bomb" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            for _ in 0..4096 {
                enc.write_all(b"bomb_metric 1.0000\n").expect("gzip");
            }
            let body = enc.finish().expect("gzip");
            (
                200,
                vec![("Content-Encoding", "gzip".to_string()), ("Content-Type", "text/plain".to_string())],
                body,
            )
        }
        "/refuse" => {
            let n = routes.hits.fetch_add(1, Ordering::SeqCst);
            if routes.refuse.load(Ordering::SeqCst) {
                // From the second request on: dup_metric repeats its timestamp with a new value,
                // ooo_metric goes back in time; fine_metric is always stored.
                let t0 = routes.t0;
                ok(&format!("dup_metric {n} {t0}\nooo_metric 1 {}\nfine_metric {n}\n", t0 - n as i64 * 1000))
            } else {
                ok(&format!("dup_metric {n}\nooo_metric 1\nfine_metric {n}\n"))
            }
        }
        _ => (404, vec![], b"not found".to_vec()),
    }
}

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let t0 = promtier::model::now_ms();
    let routes = Arc::new(Routes { refuse: AtomicBool::new(true), hits: AtomicU64::new(0), t0 });
    let state = routes.clone();
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
            let (code, headers, body) = respond(&req, &state);
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
    Server { addr, stop, routes, handle: Some(handle) }
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
             \x20 - {{job_name: big, metrics_path: /big, body_size_limit: 1KB, static_configs: [{{targets: ['{a}']}}]}}\n\
             \x20 - {{job_name: bomb, metrics_path: /bomb, body_size_limit: 16KiB, static_configs: [{{targets: ['{a}']}}]}}\n\
             leaves:\n  - {{group: g, jobs: [bad, limit, auth, bearer, probe, gz, filesd, big, bomb], listen: '127.0.0.1:{leaf_port}'}}\n"
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

    // Each target is awaited in the state it must reach: a first scrape may fail on a busy
    // machine (a timeout), and discovery from a file may come later than static targets.
    let (_, err, _) = wait_target(leaf, "bad", "down", |e| e.contains("parse error"), leaf_log);
    assert!(err.contains("line 2"), "{err}");
    wait_until("the log to name the parse error", BOUND, leaf_log, || {
        leaf_log().contains("parse error").then_some(())
    });
    wait_target(leaf, "limit", "down", |e| e.contains("sample limit exceeded"), leaf_log);
    wait_target(leaf, "big", "down", |e| e == "body size limit exceeded (1024 bytes)", leaf_log);
    wait_target(leaf, "bomb", "down", |e| e == "body size limit exceeded (16384 bytes)", leaf_log);
    wait_until("the body size limit counter", BOUND, leaf_log, || {
        let (_, body) = http_get(leaf, "/metrics", Duration::from_secs(10)).ok()?;
        let n: f64 = body
            .lines()
            .find_map(|l| l.strip_prefix("prometheus_target_scrapes_exceeded_body_size_limit_total "))?
            .parse()
            .ok()?;
        (n >= 2.0).then_some(())
    });
    for job in ["auth", "bearer", "probe", "gz", "filesd"] {
        let (_, _, url) = wait_target(leaf, job, "up", |_| true, leaf_log);
        if job == "probe" {
            assert!(url.ends_with("/probe?module=http_2xx&target=example"), "{url}");
        }
    }

    // The failed targets are up=0 and kept nothing of their bodies; the others have their data.
    let fed = |q: &str| -> Option<Vec<TextRow>> {
        let (status, body) =
            http_get(leaf, &format!("/federate?match[]={q}"), Duration::from_secs(10)).ok()?;
        (status == 200).then(|| parse_text_rows(&body))
    };
    let has = |row: &TextRow, name: &str, value: &str| row.1.iter().any(|(k, v)| k == name && v == value);
    wait_until("report series", BOUND, leaf_log, || {
        let up = fed("up")?;
        let of = |job: &str| up.iter().find(|r| has(r, "job", job)).map(|r| r.2);
        let want = [("bad", 0.0), ("limit", 0.0), ("big", 0.0), ("bomb", 0.0), ("gz", 1.0), ("filesd", 1.0)];
        want.iter().all(|(job, v)| of(job) == Some(*v)).then_some(())
    });
    // Negative checks: the targets above have failed at least once by now, and a failed body
    // never becomes visible later.
    assert_eq!(fed("good_metric").map(|r| r.len()), Some(0), "a malformed body must not be half-ingested");
    assert_eq!(fed("a").map(|r| r.len()), Some(0), "a body over the sample limit must not be ingested");
    assert_eq!(
        fed("big_metric").map(|r| r.len()),
        Some(0),
        "a body over the size limit must not be ingested"
    );
    assert_eq!(fed("bomb_metric").map(|r| r.len()), Some(0), "an inflated body over the limit neither");
    wait_until("gz_metric", BOUND, leaf_log, || {
        (fed("gz_metric")?.first().map(|r| r.2) == Some(42.0)).then_some(())
    });
    wait_until("the file_sd target's samples with its file labels", BOUND, leaf_log, || {
        fed("plain_metric")?.iter().any(|r| has(r, "from", "file")).then_some(())
    });

    // file_sd: a second target appears in the file; the leaf picks it up without a restart.
    std::fs::write(
        &sd,
        format!(r#"[{{"targets": ["{a}"], "labels": {{"from": "file"}}}}, {{"targets": ["localhost:{}"], "labels": {{"from": "file2"}}}}]"#, a.port()),
    )
    .expect("sd");
    wait_until("the file_sd change to add a target", BOUND, leaf_log, || {
        fed("plain_metric")?.iter().any(|r| has(r, "from", "file2")).then_some(())
    });
}

/// A target of `job` as `/api/v1/targets` shows it: (health, lastError, scrapeUrl).
fn target_state(leaf: SocketAddr, job: &str) -> Option<(String, String, String)> {
    let data = api_data(leaf, "/api/v1/targets")?;
    let t = data["activeTargets"].as_array()?.iter().find(|t| t["scrapePool"] == job)?.clone();
    Some((
        t["health"].as_str()?.to_string(),
        t["lastError"].as_str()?.to_string(),
        t["scrapeUrl"].as_str()?.to_string(),
    ))
}

/// Waits until the target of `job` has health `health` and a last error `error` accepts; returns
/// its state. On timeout the panic shows the last state seen and `log()`.
fn wait_target(
    leaf: SocketAddr,
    job: &str,
    health: &str,
    error: impl Fn(&str) -> bool,
    log: impl Fn() -> String,
) -> (String, String, String) {
    let last = std::cell::RefCell::new(None);
    wait_until(
        &format!("the {job} target to be {health}"),
        BOUND,
        || format!("last state: {:?}\n{}", last.borrow(), log()),
        || {
            let st = target_state(leaf, job);
            *last.borrow_mut() = st.clone();
            st.filter(|(h, e, _)| h == health && error(e))
        },
    )
}

/// Lines of `log` that contain `needle`.
fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn issue_9_refused_samples_show_on_the_target_until_a_clean_scrape() {
    let server = serve();
    let a = server.addr;
    let dir = tempfile::tempdir().expect("tempdir");
    let leaf_port = free_port();
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: s\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             jobs:\n  - {{job_name: refuse, metrics_path: /refuse, static_configs: [{{targets: ['{a}']}}]}}\n\
             leaves:\n  - {{group: g, jobs: [refuse], listen: '127.0.0.1:{leaf_port}'}}\n"
        ),
    )
    .expect("topology");
    let log = dir.path().join("leaf.log");
    let started = Instant::now();
    let _leaf = start_promtier(
        "leaf",
        &["leaf", "--topology", topology.to_str().expect("utf8"), "--node", "g-0-a"],
        &log,
    );
    let leaf: SocketAddr = ([127, 0, 0, 1], leaf_port).into();
    let leaf_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // The body is fine, so the target is up; the refused samples are its error.
    let (_, err, _) = wait_target(leaf, "refuse", "up", |e| e.contains("not stored"), leaf_log);
    assert_eq!(
        err,
        "2 of 3 samples not stored: 1 out of order (older than the series' newest sample), \
         1 with a duplicate timestamp and another value"
    );
    let (status, page) = http_get(leaf, "/status", Duration::from_secs(10)).expect("status page");
    assert_eq!(status, 200);
    assert!(page.contains("<td class=warn>2 of 3 samples not stored: 1 out of order"), "{page}");
    // One warning with the counts, however many scrapes refused samples since.
    let warning = "scraped samples refused by the storage";
    wait_until("the refusal warning", BOUND, leaf_log, || {
        (count_lines(&leaf_log(), warning) > 0).then_some(())
    });
    let line = leaf_log().lines().find(|l| l.contains(warning)).map(str::to_string).unwrap_or_default();
    assert!(
        line.contains("WARN") && line.contains("out_of_order=1") && line.contains("duplicate_timestamp=1"),
        "{line}"
    );
    let metric = |name: &str| {
        let (_, body) = http_get(leaf, "/metrics", Duration::from_secs(10)).expect("metrics");
        let prefix = format!("{name}{{job=\"refuse\"}} ");
        body.lines().find_map(|l| l.strip_prefix(&prefix)?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    // Several scrapes refuse samples, yet at most one warning a minute.
    wait_until("three scrapes with refused samples", BOUND, leaf_log, || {
        (metric("promtier_scrape_samples_out_of_order_total") >= 3.0).then_some(())
    });
    assert!(metric("promtier_scrape_samples_duplicate_timestamp_total") >= 3.0);
    let lines = count_lines(&leaf_log(), warning);
    let minutes = started.elapsed().as_secs() / 60;
    assert!(lines as u64 <= minutes + 1, "{lines} warnings in {:?}\n{}", started.elapsed(), leaf_log());

    // A clean scrape clears the error.
    server.routes.refuse.store(false, Ordering::SeqCst);
    wait_target(leaf, "refuse", "up", str::is_empty, leaf_log);
    let (_, page) = http_get(leaf, "/status", Duration::from_secs(10)).expect("status page");
    assert!(!page.contains("not stored"), "{page}");
}
