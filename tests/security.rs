//! Security between tiers, end to end with real processes on 127.0.0.1: a cluster whose every
//! node serves TLS with basic auth (read, write and admin users) is started with `promtier up`;
//! its leaves scrape, its global federates the leaves and a real Prometheus that itself runs
//! with `--web.config.file` (TLS + auth) and federates one of our leaves with its own
//! `tls_config` and `basic_auth`. Requests without credentials get 401, admin endpoints refuse
//! read-only users, cross-origin and form posts are refused, and no secret of the topology
//! appears in `/api/v1/status/config`, `/metrics` or the logs. A second test pins mutual TLS.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use reqwest::blocking::Client;
use reqwest::header;

/// A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "promtier test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "promtier node");
    let (client_pem, client_key) = leaf(vec!["global".into()], "promtier global");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write pki file");
        p
    };
    Pki {
        ca: write("ca.pem", &ca_cert.pem()),
        cert: write("server.pem", &server_pem),
        key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_pem),
        client_key: write("client.key", &client_key),
    }
}

fn https_client(pki: &Pki, identity: bool) -> Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).expect("ca")).expect("ca pem");
    let mut b = Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(10));
    if identity {
        let mut pem = std::fs::read(&pki.client_cert).expect("client cert");
        pem.extend(std::fs::read(&pki.client_key).expect("client key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("https client")
}

/// Credentials of one user: (name, password).
type User = (&'static str, &'static str);
const ADMIN: User = ("admin", "admin-pw-S3cr3t-a");
const READER: User = ("reader", "reader-pw-S3cr3t-b");
const GLOBAL: User = ("global", "global-pw-S3cr3t-c");
const PROM: User = ("prom", "prom-pw-S3cr3t-d");
/// Prometheus's own web user, given inline in the topology.
const PROM_WEB: User = ("promuser", "promweb-pw-S3cr3t-e");
const JOB_BEARER: &str = "job-bearer-S3cr3t-f";

fn hash(pw: &str) -> String {
    bcrypt::hash(pw, 4).expect("bcrypt")
}

/// GET with optional credentials: (status, body).
fn get(c: &Client, url: &str, user: Option<User>) -> Option<(u16, String)> {
    let mut req = c.get(url);
    if let Some((u, p)) = user {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req.send().ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().ok()?))
}

/// An instant query's result vector, with credentials.
fn query(c: &Client, base: &str, q: &str, user: User) -> Option<Vec<serde_json::Value>> {
    let url = format!("{base}/api/v1/query?query={}", urlencode(q));
    let (status, body) = get(c, &url, Some(user))?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| json["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn post(c: &Client, url: &str, user: User, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let mut req = c.post(url).basic_auth(user.0, Some(user.1));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().expect("POST");
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

#[test]
fn tls_and_auth_on_every_tier_with_real_prometheus_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let client = https_client(&pki, false);
    let demo = free_port();
    let mut leaf = free_port_block(2);
    while leaf == demo || leaf + 1 == demo {
        leaf = free_port_block(2);
    }
    let global_port = free_port();
    let global = format!("https://127.0.0.1:{global_port}");
    let leaf_a = format!("https://127.0.0.1:{leaf}");

    // A real Prometheus behind TLS + basic auth, federating leaf apps-0-a over TLS with its own
    // credentials.
    std::fs::write(dir.path().join("global.pw"), format!("{}\n", GLOBAL.1)).expect("pw file");
    let prom_config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 900ms, external_labels: {{via: prometheus}}}}\n\
         scrape_configs:\n\
         - job_name: leaf-federate\n\
         \x20 honor_labels: true\n\
         \x20 metrics_path: /federate\n\
         \x20 params: {{'match[]': ['{{job=\"demo\"}}']}}\n\
         \x20 scheme: https\n\
         \x20 basic_auth: {{username: {}, password: {}}}\n\
         \x20 tls_config: {{ca_file: {}}}\n\
         \x20 static_configs: [{{targets: ['127.0.0.1:{leaf}']}}]\n",
        PROM.0,
        PROM.1,
        pki.ca.display()
    );
    let web_config = format!(
        "tls_server_config: {{cert_file: {}, key_file: {}}}\nbasic_auth_users: {{{}: '{}'}}\n",
        pki.cert.display(),
        pki.key.display(),
        PROM_WEB.0,
        hash(PROM_WEB.1)
    );
    let prom_client = client.clone();
    let prometheus = Prometheus::start_with_args(
        &prom_config,
        &|d| {
            let f = d.join("web.yml");
            std::fs::write(&f, &web_config).expect("web config");
            vec![format!("--web.config.file={}", f.display())]
        },
        &|addr| {
            get(&prom_client, &format!("https://{addr}/-/ready"), Some(PROM_WEB))
                .is_some_and(|(s, _)| s == 200)
        },
    );
    let prom_url = format!("https://{}", prometheus.addr());

    let hashes = [ADMIN, READER, GLOBAL, PROM].map(|(u, p)| (u, hash(p)));
    let users: Vec<String> = hashes.iter().map(|(u, h)| format!("{u}: '{h}'")).collect();
    let topology = dir.path().join("secure.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: secure\n\
             defaults:\n\
             \x20 scrape_interval: 1s\n\
             \x20 scrape_timeout: 900ms\n\
             \x20 web:\n\
             \x20   tls_server_config: {{cert_file: server.pem, key_file: server.key}}\n\
             \x20   basic_auth_users: {{{users}}}\n\
             \x20   read_users: [admin, reader, global, prom]\n\
             \x20   write_users: [admin]\n\
             \x20   admin_users: [admin]\n\
             \x20 client:\n\
             \x20   basic_auth: {{username: global, password_file: global.pw}}\n\
             \x20   tls_config: {{ca_file: ca.pem}}\n\
             demo: {{targets: 1, listen: '127.0.0.1:{demo}', series: 20}}\n\
             jobs:\n\
             \x20 - job_name: demo\n\
             \x20   bearer_token: {JOB_BEARER}\n\
             \x20   static_configs: [{{targets: ['127.0.0.1:{demo}']}}]\n\
             external_leaves:\n\
             \x20 - group: prom\n\
             \x20   shards: [['{}']]\n\
             \x20   scheme: https\n\
             \x20   basic_auth: {{username: {}, password: {}}}\n\
             \x20   tls_config: {{ca_file: ca.pem, server_name: localhost}}\n\
             leaves:\n\
             \x20 - {{group: apps, jobs: [demo], replicas: 2, listen: '127.0.0.1:{leaf}'}}\n\
             globals:\n\
             \x20 - name: global\n\
             \x20   from: [apps, prom]\n\
             \x20   listen: '127.0.0.1:{global_port}'\n\
             \x20   federate: {{interval: 1s, timeout: 900ms}}\n\
             \x20   dedup: {{mode: failover, failover_timeout: 5s}}\n",
            prometheus.addr(),
            PROM_WEB.0,
            PROM_WEB.1,
            users = users.join(", "),
        ),
    )
    .expect("write topology");
    let t = topology.to_str().expect("utf8");
    let check = std::process::Command::new(promtier_binary()).args(["check", t]).output().expect("check");
    assert!(check.status.success(), "check: {}", String::from_utf8_lossy(&check.stderr));

    let log = dir.path().join("up.log");
    let mut up = start_promtier("promtier up", &["up", t], &log);
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let context = || format!("{}\n--- Prometheus log ---\n{}", up_log(), prometheus.log());

    // The global has the leaves' data (pulled over TLS with credentials) and Prometheus's copy
    // of it (Prometheus federated our leaf, we federated Prometheus).
    for (what, q) in [
        ("the leaves' data at the global", r#"count({__name__=~"demo_.+", via=""})"#),
        ("Prometheus's data at the global", r#"count({__name__=~"demo_.+", via="prometheus"})"#),
    ] {
        wait_until(what, Duration::from_secs(90), context, || {
            let r = query(&client, &global, q, READER)?;
            let n: f64 = r.first()?["value"][1].as_str()?.parse().ok()?;
            (n > 0.0).then_some(())
        });
    }
    let up_prom =
        query(&client, &prom_url, r#"up{job="leaf-federate"}"#, PROM_WEB).expect("Prometheus query");
    assert_eq!(up_prom.first().map(|s| s["value"][1].clone()), Some("1".into()), "{up_prom:?}");

    // No credentials, wrong ones, plain HTTP: refused. Health checks stay open.
    for base in [&global, &leaf_a] {
        let url = format!("{base}/api/v1/query?query=up");
        let (status, _) = get(&client, &url, None).expect("GET without credentials");
        assert_eq!(status, 401);
        let resp = client.get(&url).send().expect("GET");
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_some());
        assert_eq!(get(&client, &url, Some((READER.0, "wrong"))).expect("GET").0, 401);
        assert_eq!(get(&client, &url, Some(("nobody", READER.1))).expect("GET").0, 401);
        assert_eq!(get(&client, &format!("{base}/-/ready"), None).expect("ready").0, 200);
        assert_eq!(get(&client, &format!("{base}/federate?match[]=up"), Some(READER)).expect("fed").0, 200);
    }
    let plain: SocketAddr = ([127, 0, 0, 1], global_port).into();
    assert!(
        !matches!(http_get(plain, "/api/v1/query?query=up", Duration::from_secs(5)), Ok((200, _))),
        "plain HTTP must not be served on a TLS listener"
    );

    // Admin endpoints: read-only users refused; form posts and cross-origin posts refused even
    // with admin credentials; a plain POST from a tool works.
    let pin = format!("{global}/api/v1/dedup/pin?shard=apps-0&replica=b");
    assert_eq!(post(&client, &pin, READER, &[], None).0, 403);
    assert_eq!(post(&client, &pin, GLOBAL, &[], None).0, 403);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(post(&client, &pin, ADMIN, &form, Some("x=1")).0, 403);
    let evil = [("origin", "https://evil.example"), ("content-type", "application/json")];
    let (status, body) = post(&client, &pin, ADMIN, &evil, Some("{}"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cross-origin"), "{body}");
    let (status, body) = post(&client, &pin, ADMIN, &[], None);
    assert_eq!(status, 200, "{body}");
    let unpin = format!("{global}/api/v1/dedup/unpin?shard=apps-0");
    assert_eq!(post(&client, &unpin, ADMIN, &[], None).0, 200);

    // Same-origin by default: another origin gets no CORS permission to read.
    let resp = client
        .get(format!("{global}/api/v1/status/config"))
        .basic_auth(READER.0, Some(READER.1))
        .header("origin", "https://evil.example")
        .send()
        .expect("GET config");
    assert!(resp.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());

    // No secret anywhere a user or operator can read.
    let mut secrets: Vec<String> =
        [ADMIN, READER, GLOBAL, PROM, PROM_WEB].iter().map(|(_, p)| p.to_string()).collect();
    secrets.push(JOB_BEARER.to_string());
    secrets.extend(hashes.iter().map(|(_, h)| h.clone()));
    for base in [&global, &leaf_a] {
        let (status, config) =
            get(&client, &format!("{base}/api/v1/status/config"), Some(READER)).expect("config");
        assert_eq!(status, 200);
        assert!(config.contains("<secret>"), "{config}");
        assert!(config.contains("password_file"), "non-secret keys are kept: {config}");
        let (_, metrics) = get(&client, &format!("{base}/metrics"), Some(READER)).expect("metrics");
        for s in &secrets {
            assert!(!config.contains(s.as_str()), "{s} in {base}/api/v1/status/config:\n{config}");
            assert!(!metrics.contains(s.as_str()), "{s} in {base}/metrics");
        }
    }
    up.stop();
    let logs = up_log();
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "{s} in the logs:\n{logs}");
    }
}

#[test]
fn mutual_tls_requires_a_client_certificate_signed_by_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let port = free_port();
    let topology = dir.path().join("mtls.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: mtls\n\
             defaults:\n\
             \x20 web:\n\
             \x20   tls_server_config: {{cert_file: server.pem, key_file: server.key, client_ca_file: ca.pem, client_auth_type: RequireAndVerifyClientCert}}\n\
             jobs: [{{job_name: self, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]\n\
             leaves: [{{group: l, jobs: [self], listen: '127.0.0.1:{port}'}}]\n"
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    let log = dir.path().join("leaf.log");
    let _leaf = start_promtier("leaf", &["leaf", "--topology", t, "--node", "l-0-a"], &log);
    let url = format!("https://127.0.0.1:{port}/-/ready");
    let with_cert = https_client(&pki, true);
    wait_until(
        "the mTLS leaf to answer a client with a certificate",
        Duration::from_secs(60),
        || std::fs::read_to_string(&log).unwrap_or_default(),
        || get(&with_cert, &url, None).filter(|(s, _)| *s == 200),
    );
    let without = https_client(&pki, false);
    assert!(get(&without, &url, None).is_none(), "a client without a certificate must fail the handshake");
}
