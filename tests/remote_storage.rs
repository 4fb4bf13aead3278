//! Remote storage against real Prometheus (issue 11, receiving side): a Prometheus remote-writes
//! what it scrapes into a promtier leaf, and the leaf answers the same as Prometheus for the same
//! queries; another Prometheus remote-reads the leaf and answers with the leaf's data; malformed,
//! oversized and wrongly typed write requests get 400/413/415 while the leaf keeps ingesting.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use promtier::remote::{codec, proto};
use prost::Message;

/// How long any one condition may take to come true.
const BOUND: Duration = Duration::from_secs(90);

/// Starts a leaf on `port` scraping itself every second (job `self`).
fn start_leaf(dir: &Path, port: u16) -> (ChildGuard, SocketAddr, std::path::PathBuf) {
    let topology = dir.join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: r\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             jobs:\n  - {{job_name: self, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n\
             leaves:\n  - {{group: g, jobs: [self], listen: '127.0.0.1:{port}'}}\n"
        ),
    )
    .expect("topology");
    let log = dir.join("leaf.log");
    let topo = topology.to_str().expect("utf8 path");
    let guard = start_promtier("leaf", &["leaf", "--topology", topo, "--node", "g-0-a"], &log);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let l = log.clone();
    wait_until(
        "the leaf to scrape itself",
        BOUND,
        || std::fs::read_to_string(&l).unwrap_or_default(),
        || {
            let (status, body) = http_get(addr, "/federate?match[]=up", Duration::from_secs(10)).ok()?;
            (status == 200 && body.contains("up{")).then_some(())
        },
    );
    (guard, addr, log)
}

fn encode(q: &str) -> String {
    url::form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

/// The range-vector answer of `query` at `time_s` (raw samples), keyed by the series' labels.
fn matrix(addr: SocketAddr, query: &str, time_s: f64) -> Option<BTreeMap<String, Vec<(f64, String)>>> {
    let data = api_data(addr, &format!("/api/v1/query?query={}&time={time_s}", encode(query)))?;
    let mut out = BTreeMap::new();
    for s in data["result"].as_array()? {
        let values = s["values"]
            .as_array()?
            .iter()
            .map(|p| Some((p[0].as_f64()?, p[1].as_str()?.to_string())))
            .collect::<Option<Vec<_>>>()?;
        out.insert(s["metric"].to_string(), values);
    }
    Some(out)
}

/// `m` with the leaf's external labels (`cluster`, `replica`, `shard`) removed from every key.
fn without_external(m: BTreeMap<String, Vec<(f64, String)>>) -> BTreeMap<String, Vec<(f64, String)>> {
    m.into_iter()
        .map(|(k, v)| {
            let mut labels: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&k).unwrap_or_default();
            for name in ["cluster", "replica", "shard"] {
                labels.remove(name);
            }
            (serde_json::Value::Object(labels).to_string(), v)
        })
        .collect()
}

fn metric_value(addr: SocketAddr, line_start: &str) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics", Duration::from_secs(10)).ok()?;
    body.lines().find(|l| l.starts_with(line_start))?.rsplit(' ').next()?.parse().ok()
}

#[test]
fn prometheus_remote_writes_into_a_leaf_and_remote_reads_from_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (_leaf, leaf, log) = start_leaf(dir.path(), port);
    let leaf_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // (a) A Prometheus scraping the leaf's /metrics every second (job `prom`: the leaf stores
    // these series only through remote write) and remote-writing everything to the leaf.
    let writer = Prometheus::start(
        &"global: {scrape_interval: 1s, scrape_timeout: 900ms}\n\
          scrape_configs:\n  - job_name: prom\n    static_configs: [{targets: ['LEAF']}]\n\
          remote_write:\n  - url: http://LEAF/api/v1/write\n    \
          queue_config: {batch_send_deadline: 1s, min_backoff: 100ms}\n"
            .replace("LEAF", &leaf.to_string()),
    );
    let query = r#"{job="prom", __name__=~"up|scrape_samples_scraped|scrape_duration_seconds|process_cpu_seconds_total"}[20s]"#;
    let compared = wait_until(
        "the leaf to hold what Prometheus wrote, equal to Prometheus's own",
        BOUND,
        || format!("--- leaf log ---\n{}\n--- Prometheus log ---\n{}", leaf_log(), writer.log()),
        || {
            let t = (promtier::model::now_ms() - 3_000) as f64 / 1000.0;
            let theirs = matrix(writer.addr(), query, t)?;
            let ours = matrix(leaf, query, t)?;
            let samples: usize = theirs.values().map(Vec::len).sum();
            (theirs.len() >= 3 && samples >= 30 && theirs == ours).then_some((theirs.len(), samples))
        },
    );
    eprintln!("leaf equals Prometheus: {} series, {} samples in 20 s", compared.0, compared.1);
    let received = metric_value(leaf, "promtier_remote_write_received_samples_total").unwrap_or(0.0);
    assert!(received >= compared.1 as f64, "{received} samples received");
    let v1_ok = metric_value(leaf, r#"promtier_remote_write_requests_total{protocol="1.0",code="204"}"#);
    assert!(v1_ok.is_some_and(|n| n >= 1.0), "{v1_ok:?}");

    // (b) Another Prometheus, with no data of its own, reads the leaf: a series only the leaf
    // has (its own scrape of itself) comes back equal to the leaf's answer.
    let reader = Prometheus::start(
        &"remote_read:\n  - url: http://LEAF/api/v1/read\n    read_recent: true\n"
            .replace("LEAF", &leaf.to_string()),
    );
    let query = r#"up{job="self"}[15s]"#;
    let read = wait_until(
        "Prometheus to answer from the leaf through remote read",
        BOUND,
        || format!("--- leaf log ---\n{}\n--- reader log ---\n{}", leaf_log(), reader.log()),
        || {
            let t = (promtier::model::now_ms() - 2_000) as f64 / 1000.0;
            let ours = matrix(leaf, query, t)?;
            let theirs = matrix(reader.addr(), query, t)?;
            let samples: usize = ours.values().map(Vec::len).sum();
            // The read handler adds the leaf's external labels, as Prometheus's does; the
            // query API shows stored series without them.
            let all_external =
                theirs.keys().all(|k| k.contains(r#""cluster":"r""#) && k.contains(r#""replica":"a""#));
            let theirs = without_external(theirs);
            (samples >= 10 && all_external && theirs == ours).then_some(samples)
        },
    );
    eprintln!("remote read: {read} samples equal");
    // Which answer Prometheus asked for (2.42 asks for samples; later versions for streamed).
    let samples = metric_value(leaf, r#"promtier_remote_read_requests_total{response="samples",code="200"}"#);
    let streamed =
        metric_value(leaf, r#"promtier_remote_read_requests_total{response="streamed",code="200"}"#);
    eprintln!("remote reads answered: samples {samples:?}, streamed {streamed:?}");
    assert!(samples.unwrap_or(0.0) + streamed.unwrap_or(0.0) >= 1.0);
}

/// POSTs `body` to the leaf's `/api/v1/write`; returns the status and the body.
fn post(
    addr: SocketAddr,
    content_type: Option<&str>,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let client = reqwest::blocking::Client::builder().timeout(BOUND).build().expect("client");
    let mut req = client.post(format!("http://{addr}/api/v1/write")).header("Content-Encoding", "snappy");
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().expect("POST /api/v1/write");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

/// POSTs headers declaring `len` bytes of body and only the first KiB of it; returns the status
/// and body of the answer.
fn declared_oversize(addr: std::net::SocketAddr, len: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, BOUND).expect("connect");
    s.set_read_timeout(Some(BOUND)).expect("timeout");
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: {addr}\r\nContent-Encoding: snappy\r\n\
         Content-Type: application/x-protobuf\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("write headers");
    s.write_all(&[0u8; 1024]).expect("write the start of the body");
    let mut raw = Vec::new();
    // The server closes after answering (the rest of the body never comes).
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

fn write_request(name: &str, t: i64) -> Vec<u8> {
    let req = proto::WriteRequest {
        timeseries: vec![proto::TimeSeries {
            labels: vec![proto::Label { name: "__name__".into(), value: name.into() }],
            samples: vec![proto::Sample { value: 42.0, timestamp: t }],
            ..Default::default()
        }],
        metadata: Vec::new(),
    };
    codec::compress(&req.encode_to_vec()).expect("snappy")
}

#[test]
fn bad_write_requests_are_refused_and_the_leaf_keeps_ingesting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (_leaf, leaf, log) = start_leaf(dir.path(), port);
    let leaf_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let start = promtier::model::now_ms();

    let garbage_proto = codec::compress(b"\x0a\xff\xff\xff\xff\x0f").expect("snappy");
    // A snappy header declaring 4 GiB: refused before anything is allocated.
    let bomb = vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x01];
    let v3 = Some("application/x-protobuf;proto=io.prometheus.write.v3.Request");
    let cases: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
        (None, b"definitely not snappy".to_vec(), 400, "snappy"),
        (None, garbage_proto, 400, "decoding prometheus.WriteRequest"),
        (None, bomb, 413, "over the limit"),
        (v3, write_request("x", start), 415, "io.prometheus.write.v3.Request"),
    ];
    for (ct, body, want, msg) in cases {
        let (status, text) = post(leaf, ct, &[], body);
        assert_eq!(status, want, "{text}");
        assert!(text.contains(msg), "{text:?} should say {msg:?}");
    }
    // A body declared over the limit is refused from its headers: the answer comes before the
    // body is sent (a client still writing 33 MiB could see the connection closed instead of it,
    // so this one is sent by hand: headers and the first KiB only).
    let (status, text) = declared_oversize(leaf, 33 << 20);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("request body too large"), "{text}");
    // A good request still goes through, and the scrapes went on.
    let (status, text) = post(leaf, Some("application/x-protobuf"), &[], write_request("pushed", start));
    assert_eq!(status, 204, "{text}");
    let pushed = matrix(leaf, "pushed[1m]", (start + 1000) as f64 / 1000.0).expect("query");
    assert_eq!(pushed.values().next().map(|v| v[0].1.as_str()), Some("42"), "{pushed:?}");
    wait_until("scrapes after the bad requests", BOUND, leaf_log, || {
        let after = common::cluster::stored(leaf, "up", start);
        let n: usize = after.values().map(|s| s.iter().filter(|(t, _)| *t > start).count()).sum();
        (n >= 3).then_some(())
    });
    let bad = metric_value(leaf, r#"promtier_remote_write_requests_total{protocol="1.0",code="400"}"#);
    assert_eq!(bad, Some(2.0));
}

/// Samples of `m` (a matrix answer) as sorted label pairs → (ms, value).
fn pairs(m: BTreeMap<String, Vec<(f64, String)>>) -> RawSeries {
    m.into_iter()
        .map(|(k, v)| {
            let labels: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&k).unwrap_or_default();
            let mut l: Vec<(String, String)> =
                labels.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())).collect();
            l.sort();
            let s = v
                .into_iter()
                .map(|(t, v)| ((t * 1000.0).round() as i64, v.parse().unwrap_or(f64::NAN)))
                .collect();
            (l, s)
        })
        .collect()
}

#[test]
fn vmagent_remote_writes_into_a_leaf_the_same_samples_it_writes_into_victoriametrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(3);
    let (leaf_port, vm_port, agent_port) = (base, base + 1, base + 2);
    let (_leaf, leaf, log) = start_leaf(dir.path(), leaf_port);
    let vm = VictoriaMetrics::start(vm_port, &dir.path().join("vm"));
    // A real vmagent (Debian `victoria-metrics`) scraping the leaf every second as job `agent`
    // and writing everything to both the leaf and VictoriaMetrics.
    let scrape = dir.path().join("scrape.yaml");
    std::fs::write(
        &scrape,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             scrape_configs:\n  - job_name: agent\n    static_configs: [{{targets: ['{leaf}']}}]\n"
        ),
    )
    .expect("scrape config");
    let agent_log = dir.path().join("vmagent.log");
    let out = std::fs::File::create(&agent_log).expect("vmagent log");
    let child = std::process::Command::new("vmagent")
        .arg(format!("-httpListenAddr=127.0.0.1:{agent_port}"))
        .arg(format!("-promscrape.config={}", scrape.display()))
        .arg(format!("-remoteWrite.url=http://{leaf}/api/v1/write"))
        .arg(format!("-remoteWrite.url=http://{}/api/v1/write", vm.addr()))
        .arg(format!("-remoteWrite.tmpDataPath={}", dir.path().join("vmagent-data").display()))
        .arg("-remoteWrite.flushInterval=500ms")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start vmagent: {e}"));
    let _agent = ChildGuard::new("vmagent", child);
    let logs = || {
        format!(
            "--- leaf log ---\n{}\n--- vmagent log ---\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        )
    };
    let query =
        r#"{job="agent", __name__=~"up|scrape_samples_scraped|process_cpu_seconds_total|promtier_.+"}[15s]"#;
    let last = std::cell::RefCell::new(String::new());
    let context = || format!("last difference: {}\n{}", last.borrow(), logs());
    let compared =
        wait_until("the leaf to hold what vmagent wrote into VictoriaMetrics too", BOUND, context, || {
            let t_ms = promtier::model::now_ms() - 4_000;
            let ours = pairs(matrix(leaf, query, t_ms as f64 / 1000.0)?);
            let theirs = vm.export(r#"{job="agent"}"#)?;
            let window = |s: &[(i64, f64)]| -> Vec<(i64, u64)> {
                s.iter()
                    .filter(|x| x.0 > t_ms - 15_000 && x.0 <= t_ms && !x.1.is_nan())
                    .map(|x| (x.0, x.1.to_bits()))
                    .collect()
            };
            let mut samples = 0;
            for (labels, s) in &ours {
                let mine = window(s);
                let other = theirs.get(labels).map(|v| window(v));
                let same = |a: &[(i64, u64)], b: &[(i64, u64)]| {
                    a.len() == b.len()
                        && a.iter().zip(b).all(|(x, y)| {
                            x.0 == y.0
                                && VictoriaMetrics::same_value(f64::from_bits(x.1), f64::from_bits(y.1))
                        })
                };
                if mine.is_empty() || !other.as_ref().is_some_and(|o| same(o, &mine)) {
                    *last.borrow_mut() = format!("{labels:?}: leaf {mine:?}, VictoriaMetrics {other:?}");
                    return None;
                }
                samples += mine.len();
            }
            *last.borrow_mut() = format!("{} series, {samples} samples", ours.len());
            (ours.len() >= 10 && samples >= 100).then_some((ours.len(), samples))
        });
    eprintln!("vmagent: the leaf equals VictoriaMetrics for {} series, {} samples", compared.0, compared.1);
    let ok = metric_value(leaf, r#"promtier_remote_write_requests_total{protocol="1.0",code="204"}"#);
    assert!(ok.is_some_and(|n| n > 0.0), "{ok:?}");
}
