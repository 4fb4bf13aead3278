//! The web console in a real headless Chromium, driven over WebDriver (chromedriver): a cluster
//! of one leaf group (one shard, two replicas, over a demo target) and a failover global, started
//! with `promtier up`. On the global's console: autocomplete offers a metric name from the
//! node's API, a query draws its graph (the canvas holds series-coloured pixels) and fills the
//! table, the topology shows the elected replica; after the elected replica is SIGKILLed, the
//! console shows it down and the election moved to the other replica. The targets, dedup (pin
//! and unpin through the page, so through the node's admin guard), TSDB and config views render.
//! Screenshots go to `target/console-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (or `CHROMIUM_BIN` / `CHROMEDRIVER_BIN`);
//! without them the test fails saying so. All traffic stays on 127.0.0.1: the browser's
//! proxy is a closed local port, so anything it would fetch from elsewhere fails at once.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{elected, kill_node};
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// `$env_var` if set, else the first of `names` on `PATH`; panics with install instructions.
fn browser_tool(names: &[&str], env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_var}={} does not name a file", p.display());
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        if let Some(found) = std::env::split_paths(&path).map(|d| d.join(name)).find(|c| c.is_file()) {
            return found;
        }
    }
    panic!(
        "this test drives a real headless browser, but `{}` is not on PATH: install Debian's \
         chromium and chromium-driver (`apt-get install chromium chromium-driver`; \
         scripts/test.sh does) or set {env_var}",
        names[0]
    )
}

/// A browser session over a chromedriver this test started: the session is closed (Chromium
/// quits) and chromedriver stopped when it drops, also on panic.
struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    // Dropped after the session is closed.
    _driver: ChildGuard,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(screens: &Path) -> Browser {
        let chromium = browser_tool(&["chromium", "chromium-browser"], "CHROMIUM_BIN");
        let chromedriver = browser_tool(&["chromedriver"], "CHROMEDRIVER_BIN");
        let port = free_port();
        let log = screens.join("chromedriver.log");
        let out = std::fs::File::create(&log).expect("chromedriver log");
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let driver = ChildGuard::new("chromedriver", child);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until(
            "chromedriver to be ready",
            Duration::from_secs(30),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            // chromedriver speaks HTTP/1.1 only (not the HTTP/1.0 of `http_get`).
            || {
                let body = reqwest::blocking::get(format!("http://{addr}/status")).ok()?.text().ok()?;
                body.contains("\"ready\":true").then_some(())
            },
        );
        let profile = tempfile::tempdir().expect("browser profile dir");
        // A closed port as the proxy: only loopback (which Chromium never proxies) is reachable.
        let dead_proxy = free_port();
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1400,1000".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-default-apps".into(),
            "--disable-domain-reliability".into(),
            "--no-pings".into(),
            format!("--proxy-server=http://127.0.0.1:{dead_proxy}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({"binary": chromium.to_string_lossy(), "args": args}));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = rt
            .block_on(async {
                ClientBuilder::rustls()
                    .expect("TLS roots for the WebDriver client")
                    .capabilities(caps)
                    .connect(&format!("http://{addr}"))
                    .await
            })
            .unwrap_or_else(|e| {
                panic!(
                    "cannot open a browser session: {e}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Browser { rt, client: Some(client), _driver: driver, _profile: profile }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    fn goto(&self, url: &str) {
        self.rt.block_on(self.client().goto(url)).unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments` as usual) in the page.
    fn js(&self, script: &str) -> serde_json::Value {
        self.rt.block_on(self.client().execute(script, vec![])).unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Text of the first element matching `css`, `None` when there is none.
    fn text(&self, css: &str) -> Option<String> {
        self.rt.block_on(async {
            let e = self.client().find(Locator::Css(css)).await.ok()?;
            e.text().await.ok()
        })
    }

    fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.rt.block_on(async {
            let e = self.client().find(Locator::Css(css)).await.ok()?;
            e.attr(name).await.ok().flatten()
        })
    }

    /// Clicks the element matching `css`, trying again while it is missing or was replaced
    /// by a refresh between finding and clicking it.
    fn click(&self, css: &str) {
        let last = std::cell::RefCell::new(String::new());
        wait_until(
            &format!("a click on {css}"),
            Duration::from_secs(30),
            || last.borrow().clone(),
            || {
                let r =
                    self.rt.block_on(async { self.client().find(Locator::Css(css)).await?.click().await });
                r.map_err(|e| *last.borrow_mut() = e.to_string()).ok()
            },
        );
    }

    /// Replaces the value of the input matching `css` by typing `text`.
    fn type_into(&self, css: &str, text: &str) {
        self.rt
            .block_on(async {
                let e = self.client().find(Locator::Css(css)).await?;
                e.clear().await?;
                e.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    fn screenshot(&self, path: &Path) {
        let png = self.rt.block_on(self.client().screenshot()).expect("screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ =
                self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(15), c.close()).await });
        }
    }
}

/// How many pixels of the graph's canvas are drawn in a saturated colour: series lines (axes,
/// grid and labels are grey or black).
const COLOURED_PIXELS: &str = r##"
    const c = document.querySelector("#graph canvas");
    if (!c || !c.width) return -1;
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
        const [r, g, b, a] = [d[i], d[i + 1], d[i + 2], d[i + 3]];
        if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 60) n++;
    }
    return n;
"##;

#[test]
fn console_queries_graphs_and_follows_a_failover() {
    let started = Instant::now();
    let screens = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("console-screenshots");
    std::fs::create_dir_all(&screens).expect("screenshot directory");
    // The browser first: without one the test fails before starting a cluster.
    let browser = Browser::start(&screens);

    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(4);
    let (demo, leaf_base, global_port) = (base, base + 1, base + 3);
    let topology = dir.path().join("console.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: console\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 1, listen: '127.0.0.1:{demo}', series: 60}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], shards: 1, replicas: 2, listen: '127.0.0.1:{leaf_base}'}}\n\
             globals:\n  - name: global\n    from: [apps]\n    listen: '127.0.0.1:{global_port}'\n\
             \x20   federate: {{interval: 1s, timeout: 900ms}}\n    dedup: {{mode: failover, failover_timeout: 3s}}\n"
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    let log = dir.path().join("up.log");
    let _up = start_promtier("promtier up", &["up", t], &log);
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let global: SocketAddr = ([127, 0, 0, 1], global_port).into();
    let first = wait_until("a first election", Duration::from_secs(60), up_log, || elected(global, "apps-0"));
    // A graph worth drawing: 8 s of rate() (which needs two samples) on the global.
    wait_until("8 s of demo counter rates on the global", Duration::from_secs(60), up_log, || {
        let end = now_s().floor();
        let path = format!(
            "/api/v1/query_range?query=rate(demo_http_requests_total%5B1m%5D)&start={}&end={end}&step=1",
            end - 10.0
        );
        let data = common::api_data(global, &path)?;
        let series = data["result"].as_array()?;
        (series.len() >= 6 && series.iter().all(|s| s["values"].as_array().is_some_and(|v| v.len() >= 8)))
            .then_some(())
    });

    // The console: who this node is.
    let console = format!("http://{global}/");
    browser.goto(&console);
    // What a failed wait shows: the page's messages, a screenshot, the cluster's log.
    let page = |what: &str| {
        let shot = screens.join(format!("failed-{}.png", what.replace(' ', "-")));
        browser.screenshot(&shot);
        let messages = browser
            .js("return ['query-error', 'query-warnings', 'table-info', 'graph-info', 'topology-info', \
             'dedup-message'].map(id => id + ': ' + document.getElementById(id).textContent).join('\\n')");
        format!(
            "{what} (screenshot {})\n{}\n--- promtier up log ---\n{}",
            shot.display(),
            messages.as_str().unwrap_or_default(),
            up_log()
        )
    };
    wait_until(
        "the console's header",
        Duration::from_secs(30),
        || page("header"),
        || browser.text("#node-name").filter(|n| n == "global-a"),
    );

    // Autocomplete: a metric name from the node's own API.
    browser.type_into("#expr", "demo_http_req");
    let suggested = "return [...document.querySelectorAll('#complete:not([hidden]) li[data-kind=metric]')]\
                     .map(li => li.firstChild.textContent)";
    wait_until(
        "a metric name suggested",
        Duration::from_secs(30),
        || page("autocomplete"),
        || {
            let names = browser.js(suggested);
            names.as_array()?.iter().any(|n| n == "demo_http_requests_total").then_some(())
        },
    );
    browser.screenshot(&screens.join("autocomplete.png"));

    // A query: the graph draws series lines, the table lists the series.
    browser.type_into("#expr", "rate(demo_http_requests_total[1m])");
    browser.type_into("#range", "2m");
    browser.click("#tab-graph");
    browser.click("#run");
    let coloured = wait_until(
        "the graph drawn",
        Duration::from_secs(30),
        || page("graph"),
        || {
            let n = browser.js(COLOURED_PIXELS).as_i64().unwrap_or(-1);
            (n > 200).then_some(n)
        },
    );
    let info = browser.text("#graph-info").unwrap_or_default();
    assert!(info.contains("series"), "graph info: {info}");
    browser.screenshot(&screens.join("query-graph.png"));
    browser.click("#tab-table");
    let rows = wait_until(
        "the table filled",
        Duration::from_secs(30),
        || page("table"),
        || {
            let n =
                browser.js("return document.querySelectorAll('#result-table tbody tr').length").as_u64()?;
            (n >= 6).then_some(n)
        },
    );
    let first_row = browser.text("#result-table tbody tr td.series").unwrap_or_default();
    assert!(first_row.contains("code=") && first_row.contains("path="), "first row: {first_row}");
    let history = browser.js("return document.querySelector('#history-list li').textContent");
    assert_eq!(history, "rate(demo_http_requests_total[1m])", "query history");
    browser.screenshot(&screens.join("query-table.png"));

    // Targets, TSDB and config views.
    browser.click("a[data-view-link=targets]");
    wait_until(
        "the targets view",
        Duration::from_secs(30),
        || page("targets"),
        || {
            let n = browser
                .js("return document.querySelectorAll('#targets tr[data-health=up]').length")
                .as_u64()?;
            (n == 2).then_some(())
        },
    );
    browser.click("a[data-view-link=tsdb]");
    wait_until(
        "the TSDB view",
        Duration::from_secs(30),
        || page("tsdb"),
        || browser.text("#tsdb-info").filter(|s| s.starts_with("Head block:")),
    );
    browser.click("a[data-view-link=config]");
    wait_until(
        "the config view",
        Duration::from_secs(30),
        || page("config"),
        || browser.text("#config").filter(|s| s.contains("cluster: console")),
    );

    // Dedup: pin the elected replica through the page, then unpin.
    wait_until(
        "the dedup link",
        Duration::from_secs(30),
        || page("dedup link"),
        || browser.js("return !document.getElementById('dedup-link').hidden").as_bool().filter(|b| *b),
    );
    browser.click("a[data-view-link=dedup]");
    let pin = format!("tr[data-shard='apps-0'][data-replica='{first}'] button.pin");
    wait_until("the dedup view", Duration::from_secs(30), || page("dedup"), || browser.text(&pin));
    browser.click(&pin);
    wait_until(
        "the pin taken",
        Duration::from_secs(30),
        || page("pin"),
        || browser.text("#dedup-message").filter(|m| m.starts_with("Pinned apps-0")),
    );
    let pinned = common::api_data(global, "/api/v1/dedup").expect("dedup API");
    assert_eq!(pinned[0]["pinned"], first.as_str(), "{pinned}");
    browser.screenshot(&screens.join("dedup.png"));
    browser.click("tr[data-shard='apps-0'] button.unpin");
    wait_until(
        "the unpin taken",
        Duration::from_secs(30),
        || page("unpin"),
        || browser.text("#dedup-message").filter(|m| m.contains("elected automatically")),
    );
    let unpinned = common::api_data(global, "/api/v1/dedup").expect("dedup API");
    assert!(unpinned[0]["pinned"].is_null(), "{unpinned}");

    // The topology: both replicas up, the first election shown.
    browser.click("a[data-view-link=topology]");
    let victim = format!("apps-0-{first}");
    let other = if first == "a" { "apps-0-b" } else { "apps-0-a" };
    let row = |node: &str, attr: &str| browser.attr(&format!("#topology-table tr[data-node='{node}']"), attr);
    wait_until(
        "the topology with the elected replica",
        Duration::from_secs(30),
        || page("topology"),
        || {
            (row(&victim, "data-elected")? == "true"
                && row(&victim, "data-health")? == "up"
                && row(other, "data-elected")? == "false"
                && row(other, "data-health")? == "up")
                .then_some(())
        },
    );
    let drawn = browser
        .js("return document.querySelectorAll('#topology-picture svg a[data-node]').length")
        .as_u64()
        .unwrap_or(0);
    assert_eq!(drawn, 4, "nodes drawn: two leaves, the global, the demo target");
    browser.screenshot(&screens.join("topology.png"));

    // SIGKILL the elected replica: the console shows it down and the election moved.
    kill_node(t, &victim);
    wait_until(
        "the console to show the failover",
        Duration::from_secs(60),
        || page("failover"),
        || {
            (row(&victim, "data-health")? == "down"
                && row(&victim, "data-elected")? == "false"
                && row(other, "data-elected")? == "true"
                && row(other, "data-health")? == "up")
                .then_some(())
        },
    );
    let svg_victim = browser.attr(&format!("#topology-picture a[data-node='{victim}']"), "data-health");
    assert_eq!(svg_victim.as_deref(), Some("down"), "the picture shows the killed replica down");
    browser.screenshot(&screens.join("topology-failover.png"));

    eprintln!(
        "console test: {coloured} coloured graph pixels, {rows} table rows, screenshots in {}, {:.1}s",
        screens.display(),
        started.elapsed().as_secs_f64()
    );
}

fn now_s() -> f64 {
    promtier::model::now_ms() as f64 / 1000.0
}
