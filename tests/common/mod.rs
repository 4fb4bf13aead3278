//! Helpers for tests that run real processes: free loopback ports, a real Prometheus server in a
//! temporary directory (waited on until ready, its log shown when something fails), a tiny
//! HTTP/1.0 GET client, and guards that stop every process a test started, even on panic.
//!
//! Each integration test crate includes this module and uses a part of it.
#![allow(dead_code)]

pub(crate) mod cluster;
pub(crate) mod relabel_table;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// Environment variable naming the Prometheus binary to use instead of the one on `PATH`.
pub(crate) const PROMETHEUS_BIN_ENV: &str = "PROMETHEUS_BIN";
/// Environment variable naming the promtool binary to use instead of the one on `PATH`.
pub(crate) const PROMTOOL_BIN_ENV: &str = "PROMTOOL_BIN";

/// A port on 127.0.0.1 that was free a moment ago. Another process may take it before the
/// caller binds it; [`Prometheus::start`] retries in that case.
pub(crate) fn free_port() -> u16 {
    free_port_block(1)
}

/// The first of `n` consecutive ports on 127.0.0.1 that were free a moment ago.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`), so that no
/// outgoing connection on this host (a sender retrying a stopped receiver, a test's own HTTP
/// client) can take a port that a test stops and later binds again; a client retrying a dead
/// port inside the ephemeral range can even connect to itself and hold it. Within one test
/// process, blocks are handed out from a counter, so tests running at once never get the same
/// port even before they bind it; processes start at different places of the range.
pub(crate) fn free_port_block(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 12_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let n32 = u32::from(n);
    if ephemeral_low > LOW + 1_000 + n32 {
        let span = ephemeral_low - LOW - n32;
        let start = std::process::id().wrapping_mul(2_654_435_761) % span;
        for _ in 0..2_000 {
            let base = LOW + (start + NEXT.fetch_add(n32, Ordering::Relaxed)) % span;
            let free = (0..n32).all(|i| TcpListener::bind((Ipv4Addr::LOCALHOST, (base + i) as u16)).is_ok());
            if free {
                return base as u16;
            }
        }
    }
    for _ in 0..50 {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port on 127.0.0.1");
        let base = listener.local_addr().expect("local address of a bound listener").port();
        drop(listener);
        if base.checked_add(n).is_some()
            && (0..n).all(|i| TcpListener::bind((Ipv4Addr::LOCALHOST, base + i)).is_ok())
        {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

/// The Prometheus binary: `$PROMETHEUS_BIN`, else `prometheus` on `PATH`.
pub(crate) fn prometheus_binary() -> PathBuf {
    tool_binary("prometheus", PROMETHEUS_BIN_ENV)
}

/// The promtool binary: `$PROMTOOL_BIN`, else `promtool` on `PATH`.
pub(crate) fn promtool_binary() -> PathBuf {
    tool_binary("promtool", PROMTOOL_BIN_ENV)
}

/// `$env_var` if set, else `name` on `PATH`. Panics with install instructions when there is
/// none, so a test that needs the tool can never pass silently.
fn tool_binary(name: &str, env_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env_var}={} does not name a file", path.display());
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()));
    on_path.unwrap_or_else(|| {
        panic!(
            "this test needs the real `{name}` from Prometheus, but it is not on PATH: install it \
             (`apt-get install prometheus`) or set {env_var}=/path/to/{name}"
        )
    })
}

/// A child process that is stopped when the guard drops: SIGTERM, then SIGKILL after a grace
/// period.
pub(crate) struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    pub(crate) fn new(name: impl Into<String>, child: Child) -> ChildGuard {
        ChildGuard { child, name: name.into() }
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// `Some(description)` once the process has exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown state ({e})")),
        }
    }

    /// Stops the process and reaps it; idempotent.
    pub(crate) fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} (pid {}) ignored SIGTERM for 10s; killing it", self.name, self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real Prometheus server on 127.0.0.1 with its config, TSDB and log in a temporary directory.
/// Dropping it stops the server, then removes the directory.
pub(crate) struct Prometheus {
    // Field order matters: the process stops before its directory is removed.
    process: ChildGuard,
    addr: SocketAddr,
    log_path: PathBuf,
    dir: TempDir,
}

impl Prometheus {
    /// How long a server may take to report ready.
    pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);

    /// Starts Prometheus with `config` (the text of a `prometheus.yml`) and waits until it is
    /// ready. Panics, showing the server's log, if it exits or does not become ready.
    pub(crate) fn start(config: &str) -> Prometheus {
        Prometheus::start_with_data(config, |_| {})
    }

    /// Like [`Prometheus::start`], but first calls `prepare` with the (empty) TSDB directory,
    /// e.g. to put blocks there with `promtool tsdb create-blocks-from`.
    pub(crate) fn start_with_data(config: &str, prepare: impl Fn(&Path)) -> Prometheus {
        let plain_ready =
            |addr: SocketAddr| matches!(http_get(addr, "/-/ready", Duration::from_secs(2)), Ok((200, _)));
        Prometheus::launch(config, prepare, &|_| Vec::new(), &plain_ready)
    }

    /// Like [`Prometheus::start`] with extra flags (`args` gets the server's directory, where
    /// files such as a `--web.config.file` can be written) and a readiness check of its own
    /// (e.g. over TLS with credentials).
    pub(crate) fn start_with_args(
        config: &str,
        args: &dyn Fn(&Path) -> Vec<String>,
        ready: &dyn Fn(SocketAddr) -> bool,
    ) -> Prometheus {
        Prometheus::launch(config, |_| {}, args, ready)
    }

    fn launch(
        config: &str,
        prepare: impl Fn(&Path),
        args: &dyn Fn(&Path) -> Vec<String>,
        ready: &dyn Fn(SocketAddr) -> bool,
    ) -> Prometheus {
        let binary = prometheus_binary();
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let dir =
                tempfile::Builder::new().prefix("promtier-prometheus-").tempdir().expect("create a temp dir");
            let config_path = dir.path().join("prometheus.yml");
            fs::write(&config_path, config).expect("write prometheus.yml");
            let log_path = dir.path().join("prometheus.log");
            let log = File::create(&log_path).expect("create the log file");
            let data = dir.path().join("data");
            fs::create_dir_all(&data).expect("create the TSDB directory");
            prepare(&data);
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=info")
                .args(args(dir.path()))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut prom = Prometheus {
                process: ChildGuard::new(format!("prometheus on {addr}"), child),
                addr,
                log_path,
                dir,
            };
            match prom.wait_ready(ready) {
                Ok(()) => return prom,
                Err(why) => {
                    last_log = prom.log();
                    // Another process took the port between our probe and Prometheus's bind.
                    if last_log.contains("address already in use") {
                        continue;
                    }
                    panic!("Prometheus did not start: {why}\n--- Prometheus log ---\n{last_log}");
                }
            }
        }
        panic!("Prometheus found no free port in 5 attempts\n--- last log ---\n{last_log}");
    }

    fn wait_ready(&mut self, ready: &dyn Fn(SocketAddr) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Self::READY_TIMEOUT;
        loop {
            if let Some(status) = self.process.exited() {
                return Err(format!("it exited ({status})"));
            }
            if ready(self.addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after {:?}", Self::READY_TIMEOUT));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server has logged so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }

    /// Panics with `message` and the server's log.
    pub(crate) fn fail(&self, message: &str) -> ! {
        panic!("{message}\n--- Prometheus log ({}) ---\n{}", self.addr, self.log())
    }

    /// GETs `path` and parses the body as a Prometheus API response, returning its `data`.
    pub(crate) fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.addr, path, Duration::from_secs(10))
            .unwrap_or_else(|e| self.fail(&format!("GET {path} failed: {e}")));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| {
            self.fail(&format!("GET {path}: status {status}, body is not JSON ({e}): {body}"))
        });
        if status != 200 || json["status"] != "success" {
            self.fail(&format!("GET {path}: status {status}: {body}"));
        }
        json["data"].clone()
    }

    /// Calls `probe` every 250 ms until it returns `Some`, or fails after `timeout` showing
    /// `what` was awaited and the server's log.
    pub(crate) fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe(self) {
                return v;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A minimal HTTP/1.0 GET (so the server neither keeps the connection nor chunks the body).
/// Returns the status code and the body.
pub(crate) fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("no end of headers in {text:?}"))
    })?;
    let status =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad status line in {head:?}"))
        })?;
    Ok((status, body.to_string()))
}

/// A loopback listener that accepts nothing: connections to it queue and time out. Point
/// scrapes at it (`proxy_url`) so a test server never sends traffic anywhere else.
pub(crate) struct BlackHole {
    listener: TcpListener,
}

impl BlackHole {
    pub(crate) fn new() -> BlackHole {
        BlackHole { listener: TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a black-hole port") }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("local address of a bound listener")
    }
}

/// The `promtier` binary built for this test run.
pub(crate) fn promtier_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_promtier"))
}

/// Starts `promtier ARGS…` with its output in `log`, stopped when the guard drops.
pub(crate) fn start_promtier(name: &str, args: &[&str], log: &Path) -> ChildGuard {
    let out = File::create(log).expect("create the promtier log file");
    let child = Command::new(promtier_binary())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone the log file handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start promtier {args:?}: {e}"));
    ChildGuard::new(name, child)
}

/// Polls `probe` every 200 ms until it returns `Some`, panicking with `what` and `context()`
/// (e.g. a log) after `timeout`.
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context());
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// GETs a JSON API path and returns its `data` (panics on a non-success answer).
pub(crate) fn api_data(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    let (status, body) = http_get(addr, path, Duration::from_secs(10)).ok()?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200 && json["status"] == "success").then(|| json["data"].clone())
}

/// Parses a text-format body into (labels without the name sorted, name, value, timestamp) rows,
/// with a deliberately independent, simple parser (no escapes beyond \" \\ \n).
/// One sample line of a text-format body: name, sorted labels, value, timestamp.
pub(crate) type TextRow = (String, Vec<(String, String)>, f64, Option<i64>);

pub(crate) fn parse_text_rows(body: &str) -> Vec<TextRow> {
    let mut rows = Vec::new();
    for line in body.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(_) => {
                let end = line.rfind('}').expect("closing brace");
                (&line[..=end], line[end + 1..].trim())
            }
            None => {
                let sp = line.find(' ').expect("space after name");
                (&line[..sp], line[sp..].trim())
            }
        };
        let (name, labels) = match series.find('{') {
            Some(i) => (series[..i].to_string(), parse_label_body(&series[i + 1..series.len() - 1])),
            None => (series.to_string(), Vec::new()),
        };
        let mut parts = rest.split_whitespace();
        let v = parts.next().expect("value");
        let v = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|e| panic!("bad value {v:?}: {e}")),
        };
        let ts = parts.next().map(|t| t.parse().expect("timestamp"));
        rows.push((name, labels, v, ts));
    }
    rows
}

fn parse_label_body(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let eq = s[i..].find('=').expect("=") + i;
        let name = s[i..eq].trim().trim_start_matches(',').trim().to_string();
        let mut j = eq + 2; // skip ="
        let mut value = String::new();
        while b[j] != b'"' {
            if b[j] == b'\\' {
                j += 1;
                value.push(match b[j] {
                    b'n' => '\n',
                    c => c as char,
                });
            } else {
                let ch = s[j..].chars().next().expect("char");
                value.push(ch);
                j += ch.len_utf8() - 1;
            }
            j += 1;
        }
        out.push((name, value));
        i = j + 1;
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
    }
    out.sort();
    out
}

/// Raw samples by series: labels as sorted (name, value) pairs → (t, v) in time order.
pub(crate) type RawSeries = std::collections::BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

/// A real VictoriaMetrics single-node server (Debian `victoria-metrics`) on a fixed port with
/// its data in `dir`, so that it can be stopped and started again on the same port and data (an
/// outage). Dropping it stops the server.
pub(crate) struct VictoriaMetrics {
    process: Option<ChildGuard>,
    addr: SocketAddr,
    dir: PathBuf,
    starts: u32,
}

impl VictoriaMetrics {
    /// Starts it on `port` with its data and log under `dir` and waits until it is healthy.
    pub(crate) fn start(port: u16, dir: &Path) -> VictoriaMetrics {
        let mut vm = VictoriaMetrics {
            process: None,
            addr: ([127, 0, 0, 1], port).into(),
            dir: dir.to_path_buf(),
            starts: 0,
        };
        vm.restart();
        vm
    }

    /// Starts it again (after [`VictoriaMetrics::stop`]) on the same port and data.
    pub(crate) fn restart(&mut self) {
        self.starts += 1;
        fs::create_dir_all(&self.dir).expect("VictoriaMetrics dir");
        let log_path = self.dir.join(format!("vm-{}.log", self.starts));
        let log = File::create(&log_path).expect("VictoriaMetrics log");
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr={}", self.addr))
            .arg(format!("-storageDataPath={}", self.dir.join("data").display()))
            // Answer queries up to now, not 30 s ago (the default), so tests compare fresh data.
            .arg("-search.latencyOffset=1s")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start victoria-metrics: {e}"));
        self.process = Some(ChildGuard::new(format!("victoria-metrics on {}", self.addr), child));
        let addr = self.addr;
        wait_until(
            "VictoriaMetrics to be healthy",
            Duration::from_secs(60),
            || fs::read_to_string(&log_path).unwrap_or_default(),
            || matches!(http_get(addr, "/health", Duration::from_secs(2)), Ok((200, _))).then_some(()),
        );
    }

    /// Stops the server (SIGTERM, so it flushes what it holds).
    pub(crate) fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether `stored`, read back from it, is the value `sent`. It keeps values as decimals,
    /// converting each float with a relative precision of about 1e-12 (its documented "12-15
    /// significant digits"), so a value with more digits (a `_sum` of durations) can come back
    /// changed in its 12th-13th digit; the bound here is ten times that, far below any real error.
    pub(crate) fn same_value(sent: f64, stored: f64) -> bool {
        sent == stored || (sent - stored).abs() <= 1e-11 * sent.abs().max(stored.abs())
    }

    /// Every raw sample it holds for series matching `selector` (PromQL series selector):
    /// series labels (sorted, `__name__` included) → (t, v) in time order.
    pub(crate) fn export(&self, selector: &str) -> Option<RawSeries> {
        let q: String = url::form_urlencoded::byte_serialize(selector.as_bytes()).collect();
        let (status, body) =
            http_get(self.addr, &format!("/api/v1/export?match[]={q}"), Duration::from_secs(30)).ok()?;
        if status != 200 {
            return None;
        }
        let mut out = RawSeries::new();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let mut labels: Vec<(String, String)> = v["metric"]
                .as_object()?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            labels.sort();
            let ts = v["timestamps"].as_array()?;
            let vals = v["values"].as_array()?;
            let mut samples: Vec<(i64, f64)> = ts
                .iter()
                .zip(vals)
                .map(|(t, v)| (t.as_i64().unwrap_or_default(), v.as_f64().unwrap_or(f64::NAN)))
                .collect();
            samples.sort_by_key(|s| s.0);
            out.entry(labels).or_default().extend(samples);
        }
        Some(out)
    }
}

/// `prometheus-pushgateway` on `PATH`, or `$PUSHGATEWAY_BIN`.
fn pushgateway_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PUSHGATEWAY_BIN") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p).map(|d| d.join("prometheus-pushgateway")).find(|c| c.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "this test needs the real Pushgateway: `apt-get install prometheus-pushgateway`, or set \
                 PUSHGATEWAY_BIN=/path/to/pushgateway"
            )
        })
}

/// A real Pushgateway on 127.0.0.1, memory only, stopped when dropped.
pub(crate) struct Pushgateway {
    // Field order: the process stops before its directory goes.
    process: ChildGuard,
    pub(crate) addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Pushgateway {
    pub(crate) fn start() -> Pushgateway {
        let dir = tempfile::tempdir().expect("temp dir");
        // A port free a moment ago may be taken before the Pushgateway binds it: then try another.
        for attempt in 1..=3 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let log = dir.path().join(format!("pushgateway-{attempt}.log"));
            let out = File::create(&log).expect("log file");
            let child = Command::new(pushgateway_binary())
                .arg(format!("--web.listen-address={addr}"))
                .arg("--persistence.file=")
                .arg("--log.level=debug")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone log handle"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start the Pushgateway: {e}"));
            let mut process = ChildGuard::new(format!("pushgateway on {addr}"), child);
            let ready = wait_until(
                "the Pushgateway to be ready",
                Duration::from_secs(60),
                || std::fs::read_to_string(&log).unwrap_or_default(),
                || {
                    if process.exited().is_some() {
                        return Some(false);
                    }
                    matches!(http_get(addr, "/-/ready", Duration::from_secs(2)), Ok((200, _))).then_some(true)
                },
            );
            if ready {
                return Pushgateway { process, addr, log, _dir: dir };
            }
        }
        panic!("the Pushgateway did not start on any of three ports");
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server (dropping it does too, also on a panic).
    pub(crate) fn stop(mut self) {
        self.process.stop();
    }
}

/// `cmd` without a trailing `# comment` (a `#` after a blank, outside quotes): a documented shell
/// command as it runs.
pub(crate) fn strip_shell_comment(cmd: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev_blank = false;
    for (i, c) in cmd.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if prev_blank => return cmd[..i].trim_end(),
            _ => {}
        }
        prev_blank = c == ' ';
    }
    cmd.trim_end()
}

/// A topology of one leaf (`apps-0-a` on `leaf_port`) scraping one target on `demo_port` every
/// second.
pub(crate) fn one_leaf_topology(cluster: &str, demo_port: u16, leaf_port: u16) -> String {
    format!(
        "cluster: {cluster}\n\
         defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
         jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo_port}']}}]\n\
         leaves:\n  - {{group: apps, jobs: [demo], listen: '127.0.0.1:{leaf_port}'}}\n"
    )
}
