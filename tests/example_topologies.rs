//! Every topology in `examples/topologies/` runs and shows data at once. Each `*.yaml` there (a
//! new example is covered without touching this test) is validated as shipped, exactly as
//! `promtier check` does, then a copy of it is started with `promtier up` in a temporary
//! directory, and every replica of its top global — the global no other global pulls — is
//! queried until each demo exporter's `up` is there once and at 1 (no replica doubles reach the
//! top) and demo series of every exporter are present.
//!
//! The copy differs from the example only where the test needs it to:
//! - every `127.0.0.1` port is moved to free ports; a run of consecutive ports (a group's nodes,
//!   the demo exporters) stays consecutive, so the ports a group's nodes take implicitly follow;
//! - scrape and federation intervals are 1s (timeouts 900ms) instead of the examples' 5-15s, so
//!   the data arrives in seconds;
//! - its data directory is `data` beside the copy.
//!
//! What an example needs besides promtier, the test provides, and fails naming anything else:
//! - a `remote_write` URL that is no node of the topology (`remote-storage.yaml`) gets a real
//!   VictoriaMetrics (Debian `victoria-metrics`) on that port, which must then hold each demo
//!   target's `up` once;
//! - files the example names (`secure.yaml`: `ca.pem`, `node.pem`, `node.key`,
//!   `global.password`) are copied from beside the example when shipped there, else made here: a
//!   throwaway CA and a node certificate for 127.0.0.1 (rcgen) for `*ca_file`, `cert_file` and
//!   `key_file`, and [`EXAMPLE_PASSWORD`] for `password_file`. Any other missing file — a bearer
//!   token, a file_sd list — fails the test with its name.
//!
//! Then the commands the example's header shows (`curl …`, `promtool …`; for `quickstart.yaml`
//! also those of the README's quickstart) run against it, ports moved as above, from the copy's
//! directory: each must exit 0 and print something, an API answer `"status":"success"`. A
//! command that would ask for a password on the terminal (`-u USER`) gets [`EXAMPLE_PASSWORD`],
//! and `curl` a `--max-time`. So the documented commands cannot rot.
//!
//! The examples run one after the other: 1-10 s each in a debug build on two cores (the one with
//! VictoriaMetrics the longest, its sender batching for 5 s), about 30 s for the eight.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::find_process;
use common::*;
use promtier::topology::{ClientAuth, GlobalConfig, NodeRole, Topology};
use serde_json::Value;

/// The password the example topologies' bcrypt hashes are of (`secure.yaml` says so in its
/// header); checked against the hash of the user the test queries as.
const EXAMPLE_PASSWORD: &str = "change-me";

/// How long an example may take from `promtier up` to demo data at its top global.
const DATA_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn every_example_topology_starts_and_its_top_global_shows_the_demo_data() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/topologies");
    let mut examples: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    examples.sort();
    assert!(!examples.is_empty(), "no example topologies in {}", dir.display());
    for example in &examples {
        let started = Instant::now();
        run_example(example);
        eprintln!("{}: data at the top global, stopped, in {:.1?}", example.display(), started.elapsed());
    }
}

fn run_example(example: &Path) {
    let name = example.file_name().expect("file name").to_string_lossy().into_owned();
    let shipped = promtier::topology::load(example).unwrap_or_else(|e| panic!("{name} as shipped: {e}"));
    assert!(shipped.warnings.is_empty(), "{name}: keys accepted but not acted on: {:?}", shipped.warnings);

    let dir = tempfile::Builder::new().prefix("promtier-example-").tempdir().expect("tempdir");
    let text = std::fs::read_to_string(example).expect("read the example");
    let mut doc: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        doc.get("nodes").is_none(),
        "{name}: `nodes:` overrides point at other hosts; this test runs on one"
    );
    assert!(
        doc.get("external_leaves").is_none(),
        "{name}: external_leaves need real Prometheus servers, which this test does not start"
    );
    let ports = port_map(&shipped, &doc, &name);
    rewrite_ports(&mut doc, &ports);
    shorten_intervals(&mut doc);
    doc["defaults"]["data_dir"] = Value::from("data");
    let ca = provide_files(&doc, example.parent().expect("examples dir"), dir.path(), &name);
    let copy = dir.path().join(&name);
    std::fs::write(&copy, serde_json::to_string_pretty(&doc).expect("JSON")).expect("write the copy");
    let t = promtier::topology::load(&copy).unwrap_or_else(|e| panic!("{name}, rewritten: {e}"));
    for node in &t.nodes {
        let port = listen_port(&node.listen, &name);
        assert!(
            ports.values().any(|p| *p == port),
            "{name}: {} listens on {} (not moved)",
            node.name,
            node.listen
        );
    }

    let stores = start_stores(&t, dir.path(), &name);
    let log = dir.path().join("up.log");
    let copy_arg = copy.to_str().expect("utf8 path");
    let mut up = start_promtier(&format!("promtier up {name}"), &["up", copy_arg], &log);
    let up_log = || tail(&std::fs::read_to_string(&log).unwrap_or_default(), 150);

    let demos: BTreeSet<String> = t
        .nodes
        .iter()
        .filter(|n| matches!(n.role, NodeRole::Demo { .. }))
        .map(|n| n.listen.clone())
        .collect();
    assert!(!demos.is_empty(), "{name}: no `demo:` exporters, so nothing shows data at once");
    let client = Reader::new(&t, ca.as_deref(), &name);
    let top = top_global(&t, &name);
    for node in
        t.nodes.iter().filter(|n| matches!(&n.role, NodeRole::Global { name, .. } if *name == top.name))
    {
        let base = node.base_url();
        wait_until(
            &format!(
                "{name}: {} to hold every demo target's `up` once, at 1, and their demo series",
                node.name
            ),
            DATA_TIMEOUT,
            up_log,
            || {
                if let Some(status) = up.exited() {
                    panic!("{name}: promtier up exited ({status})\n{}", up_log());
                }
                let up_series = client.query(&base, "up")?;
                let series = client.query(&base, r#"count by (instance) ({__name__=~"demo_.+"})"#)?;
                let with_data: BTreeSet<String> = series
                    .iter()
                    .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_string))
                    .collect();
                (each_up_once(&up_series, &demos) && demos.is_subset(&with_data)).then_some(())
            },
        );
    }
    for vm in &stores {
        wait_until(
            &format!("{name}: VictoriaMetrics on {} to hold every demo target's `up` once, at 1", vm.addr()),
            DATA_TIMEOUT,
            up_log,
            || {
                let data = api_data(vm.addr(), "/api/v1/query?query=up")?;
                each_up_once(data["result"].as_array()?, &demos).then_some(())
            },
        );
    }
    assert!(!up_log().contains(") exited with"), "{name}: a node exited while running\n{}", up_log());
    let mut commands = header_commands(&text);
    if name == "quickstart.yaml" {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README.md");
        commands.extend(readme_commands(&readme));
        assert!(commands.len() >= 4, "the README's quickstart commands were not found: {commands:?}");
    }
    for c in &commands {
        run_documented(c, &ports, dir.path(), &name);
    }

    up.stop();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log_text.contains("all nodes stopped"),
        "{name}: `up` did not stop its nodes\n{}",
        tail(&log_text, 150)
    );
    assert!(find_process(&["--topology", copy_arg]).is_none(), "{name}: a node outlived `up`");
    drop(stores);
}

/// Old port → new port for every port of the example: each node's listen port (also the ones a
/// group's later nodes take implicitly) and every `127.0.0.1:PORT` the file names. A run of
/// consecutive ports moves as one block.
fn port_map(shipped: &Topology, doc: &Value, name: &str) -> BTreeMap<u16, u16> {
    let mut ports: BTreeSet<u16> = shipped.nodes.iter().map(|n| listen_port(&n.listen, name)).collect();
    visit_strings(doc, &mut |s| ports.extend(loopback_ports(s)));
    let mut map = BTreeMap::new();
    let mut ports = ports.into_iter().peekable();
    while let Some(first) = ports.next() {
        let mut last = first;
        while ports.next_if(|p| *p == last + 1).is_some() {
            last += 1;
        }
        let base = free_port_block(last - first + 1);
        map.extend((first..=last).map(|p| (p, base + (p - first))));
    }
    map
}

/// The port of a node's `127.0.0.1:PORT` listen address (every example runs on one host).
fn listen_port(listen: &str, name: &str) -> u16 {
    listen
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{name}: a node listens on {listen}, not on 127.0.0.1"))
}

/// Every `PORT` after a `127.0.0.1:` in `s`.
fn loopback_ports(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("127.0.0.1:") {
        rest = &rest[at + "127.0.0.1:".len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(p) = rest[..digits].parse() {
            out.push(p);
        }
    }
    out
}

fn visit_strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| visit_strings(v, f)),
        Value::Object(o) => o.values().for_each(|v| visit_strings(v, f)),
        _ => {}
    }
}

fn rewrite_ports(v: &mut Value, map: &BTreeMap<u16, u16>) {
    match v {
        Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(at) = rest.find("127.0.0.1:") {
                let after = at + "127.0.0.1:".len();
                out.push_str(&rest[..after]);
                rest = &rest[after..];
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                match rest[..digits].parse::<u16>().ok().and_then(|p| map.get(&p)) {
                    Some(new) => out.push_str(&new.to_string()),
                    None => out.push_str(&rest[..digits]),
                }
                rest = &rest[digits..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(a) => a.iter_mut().for_each(|v| rewrite_ports(v, map)),
        Value::Object(o) => o.values_mut().for_each(|v| rewrite_ports(v, map)),
        _ => {}
    }
}

/// Scrapes and pulls every second: the defaults, each job that sets its own, each global.
fn shorten_intervals(doc: &mut Value) {
    doc["defaults"]["scrape_interval"] = Value::from("1s");
    doc["defaults"]["scrape_timeout"] = Value::from("900ms");
    for job in doc["jobs"].as_array_mut().into_iter().flatten() {
        if let Some(job) = job.as_object_mut() {
            job.remove("scrape_interval");
            job.remove("scrape_timeout");
        }
    }
    for global in doc["globals"].as_array_mut().into_iter().flatten() {
        global["federate"]["interval"] = Value::from("1s");
        global["federate"]["timeout"] = Value::from("900ms");
    }
}

/// Puts every file the copy names (relative to it) in `copy_dir`: shipped next to the example,
/// or made here (see the module comment). Returns the CA the nodes' certificates are signed by,
/// when one was needed.
fn provide_files(doc: &Value, example_dir: &Path, copy_dir: &Path, name: &str) -> Option<PathBuf> {
    let mut named: BTreeMap<String, String> = BTreeMap::new(); // file → the key naming it
    visit_file_keys(doc, &mut |key, file| {
        named.insert(file.to_string(), key.to_string());
    });
    let pki = named.values().any(|k| k.ends_with("ca_file") || k == "cert_file" || k == "key_file");
    let pki = pki.then(Pki::make);
    let mut ca = None;
    for (file, key) in &named {
        assert!(Path::new(file).is_relative(), "{name}: {key} {file} is outside the example's directory");
        let to = copy_dir.join(file);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("create the file's directory");
        }
        if key.ends_with("ca_file") {
            ca = Some(to.clone());
        }
        let shipped = example_dir.join(file);
        if shipped.is_file() {
            std::fs::copy(&shipped, &to).expect("copy a shipped file");
            continue;
        }
        let text = match (key.as_str(), &pki) {
            (k, Some(pki)) if k.ends_with("ca_file") => pki.ca.clone(),
            ("cert_file", Some(pki)) => pki.cert.clone(),
            ("key_file", Some(pki)) => pki.key.clone(),
            ("password_file", _) => format!("{EXAMPLE_PASSWORD}\n"),
            _ => panic!(
                "{name} names {key} {file}, which is not shipped beside it and which this test cannot \
                 make: ship it in examples/topologies/ or teach tests/example_topologies.rs to make it"
            ),
        };
        std::fs::write(&to, text).expect("write a provided file");
    }
    ca
}

/// Calls `f(key, file)` for every file the topology names: `*_file` keys and file_sd `files`.
fn visit_file_keys(v: &Value, f: &mut impl FnMut(&str, &str)) {
    match v {
        Value::Array(a) => a.iter().for_each(|v| visit_file_keys(v, f)),
        Value::Object(o) => {
            for (k, v) in o {
                match v {
                    Value::String(s) if k.ends_with("_file") => f(k, s),
                    Value::Array(files) if k == "files" => {
                        files.iter().filter_map(Value::as_str).for_each(|s| f("file_sd_configs.files", s))
                    }
                    _ => visit_file_keys(v, f),
                }
            }
        }
        _ => {}
    }
}

/// A throwaway CA and one certificate for 127.0.0.1 and localhost signed by it, as PEM.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

impl Pki {
    fn make() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "promtier example CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate").pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("node key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "promtier");
        let cert = params.signed_by(&key, &issuer).expect("node certificate").pem();
        Pki { ca, cert, key: key.serialize_pem() }
    }
}

/// A real VictoriaMetrics on the port of every `remote_write` URL that is no node of the topology.
fn start_stores(t: &Topology, dir: &Path, name: &str) -> Vec<VictoriaMetrics> {
    let nodes: BTreeSet<&str> = t.nodes.iter().map(|n| n.listen.as_str()).collect();
    let urls = t
        .leaf_groups
        .iter()
        .flat_map(|g| &g.remote_write)
        .chain(t.globals.iter().flat_map(|g| &g.remote_write));
    let mut stores = Vec::new();
    for url in urls.map(|rw| rw.url.as_str()) {
        let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{name}: remote_write {url}: {e}"));
        let port = parsed.port_or_known_default().expect("a port");
        let addr = format!("{}:{port}", parsed.host_str().unwrap_or_default());
        if nodes.contains(addr.as_str()) {
            continue; // a push node of the same topology
        }
        assert!(addr.starts_with("127.0.0.1:"), "{name}: remote_write to {url}, not on this host");
        assert_eq!(
            parsed.path(),
            "/api/v1/write",
            "{name}: remote_write {url}: VictoriaMetrics takes /api/v1/write"
        );
        stores.push(VictoriaMetrics::start(port, &dir.join(format!("victoria-metrics-{port}"))));
    }
    for g in &t.globals {
        for rr in &g.remote_read {
            assert!(
                nodes.iter().any(|n| rr.url.contains(n)),
                "{name}: remote_read from {}, a store this test does not start",
                rr.url
            );
        }
    }
    stores
}

/// The one global that no other global pulls.
fn top_global<'t>(t: &'t Topology, name: &str) -> &'t GlobalConfig {
    let pulled: BTreeSet<&str> = t.globals.iter().flat_map(|g| g.from.iter().map(String::as_str)).collect();
    let tops: Vec<&GlobalConfig> = t.globals.iter().filter(|g| !pulled.contains(g.name.as_str())).collect();
    match tops.as_slice() {
        [top] => top,
        _ => panic!(
            "{name}: {} top globals (globals no other global pulls); this test queries one",
            tops.len()
        ),
    }
}

/// Whether `up` has exactly one series per demo target, each at 1.
fn each_up_once(series: &[Value], demos: &BTreeSet<String>) -> bool {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in series {
        if let (Some(instance), Some(value)) = (s["metric"]["instance"].as_str(), s["value"][1].as_str())
            && demos.contains(instance)
        {
            seen.entry(instance).or_default().push(value);
        }
    }
    seen.len() == demos.len() && seen.values().all(|v| v == &["1"])
}

/// How the test reaches the nodes: over TLS when they serve it (trusting the CA it made), as a
/// user with read access when they ask for one.
struct Reader {
    client: reqwest::blocking::Client,
    user: Option<String>,
}

impl Reader {
    fn new(t: &Topology, ca: Option<&Path>, name: &str) -> Reader {
        let top = top_global(t, name);
        let node = t
            .nodes
            .iter()
            .find(|n| matches!(&n.role, NodeRole::Global { name, .. } if *name == top.name))
            .expect("a node of the top global");
        let mut builder = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10));
        if let Some(tls) = &node.web.tls {
            assert_eq!(tls.client_auth, ClientAuth::None, "{name}: mutual TLS is not handled by this test");
            let ca = ca.unwrap_or_else(|| panic!("{name}: the nodes serve TLS but no ca_file names a CA"));
            let pem = std::fs::read(ca).expect("read the CA");
            builder = builder.tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("CA PEM")]);
        }
        let user = node.web.users.iter().find(|u| u.access.read).map(|u| {
            let matches = bcrypt::verify(EXAMPLE_PASSWORD, &u.bcrypt_hash).unwrap_or(false);
            assert!(matches, "{name}: the hash of user {} is not of {EXAMPLE_PASSWORD:?}", u.name);
            u.name.clone()
        });
        Reader { client: builder.build().expect("HTTP client"), user }
    }

    /// An instant query's result vector, `None` while the node does not answer it.
    fn query(&self, base: &str, q: &str) -> Option<Vec<Value>> {
        let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let mut req = self.client.get(format!("{base}/api/v1/query?query={q}"));
        if let Some(user) = &self.user {
            req = req.basic_auth(user, Some(EXAMPLE_PASSWORD));
        }
        let json: Value = serde_json::from_str(&req.send().ok()?.text().ok()?).ok()?;
        (json["status"] == "success").then(|| json["data"]["result"].as_array().cloned())?
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `curl` and `promtool` commands of an example's header comment (continuation lines
/// joined, trailing comments dropped).
fn header_commands(text: &str) -> Vec<String> {
    let header: Vec<&str> =
        text.lines().take_while(|l| l.starts_with('#')).map(|l| l.trim_start_matches('#').trim()).collect();
    commands_in(&header)
}

/// The `curl` and `promtool` commands of the README's shell blocks.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    for l in readme.lines() {
        match (in_sh, l.trim_start().starts_with("```")) {
            (false, true) => in_sh = l.trim() == "```sh",
            (true, true) => in_sh = false,
            (true, false) => lines.push(l.trim()),
            (false, false) => {}
        }
    }
    commands_in(&lines)
}

fn commands_in(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let start = ["curl ", "promtool "].iter().filter_map(|c| l.find(c)).min();
        i += 1;
        let Some(start) = start else { continue };
        let mut cmd = strip_shell_comment(&l[start..]).to_string();
        while cmd.ends_with('\\') && i < lines.len() {
            cmd.pop();
            cmd.push(' ');
            cmd.push_str(strip_shell_comment(lines[i]));
            i += 1;
        }
        out.push(cmd.trim().to_string());
    }
    out
}

/// Runs one documented command against the running copy (see the module comment).
fn run_documented(cmd: &str, ports: &BTreeMap<u16, u16>, cwd: &Path, name: &str) {
    let mut moved = Value::from(cmd);
    rewrite_ports(&mut moved, ports);
    let mut cmd = moved.as_str().expect("string").to_string();
    if let Some(rest) = cmd.strip_prefix("curl ") {
        cmd = format!("curl --max-time 20 {rest}");
    }
    // `-u USER` alone would ask for the password on a terminal.
    let words: Vec<String> = cmd.split(' ').map(str::to_string).collect();
    let mut fixed = Vec::with_capacity(words.len());
    let mut user_next = false;
    for w in words {
        if user_next && !w.contains(':') {
            fixed.push(format!("{w}:{EXAMPLE_PASSWORD}"));
        } else {
            fixed.push(w.clone());
        }
        user_next = w == "-u";
    }
    let cmd = fixed.join(" ");
    let out = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("{name}: cannot run {cmd}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name}: documented command failed ({}): {cmd}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stdout.trim().is_empty(), "{name}: documented command printed nothing: {cmd}\n{stderr}");
    if stdout.trim_start().starts_with("{\"status\"") {
        assert!(stdout.contains("\"status\":\"success\""), "{name}: {cmd}\n{stdout}");
    }
    eprintln!("{name}: ran {cmd}");
}
