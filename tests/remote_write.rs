//! Remote write, sending side (issue 11), against real receivers started on 127.0.0.1: a
//! promtier global behind a 2-replica leaf group (failover dedup) writes to a real
//! VictoriaMetrics and a real Prometheus (`--web.enable-remote-write-receiver`). Each receiver
//! holds exactly one copy of every series the global stores, with the same samples (so the same
//! PromQL answers); VictoriaMetrics is stopped for a while as ingest goes on, the global is
//! SIGKILLed and restarted during that outage, and once VictoriaMetrics is back every sample of
//! the outage window arrives, none twice. A small in-test receiver then pins the retry policy:
//! 500 and 429 (with `Retry-After`) are retried until accepted, 400 is dropped and counted.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use promtier::model::{Labels, now_ms};

type Series = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

const BOUND: Duration = Duration::from_secs(120);
const DEMO: &str = "{__name__=~\"demo_.+\"}";
const DEMO_URL: &str = "%7B__name__%3D~%22demo_.%2B%22%7D";

/// What the global stores of the demo series, labels as sorted pairs.
fn global_series(global: SocketAddr, since: i64) -> Option<Series> {
    Some(
        try_stored(global, DEMO_URL, since)?
            .into_iter()
            .map(|(l, s): (Labels, Vec<(i64, f64)>)| {
                (l.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect(), s)
            })
            .collect(),
    )
}

/// Raw samples of the demo series in Prometheus, through a range selector ending at `end_ms`.
fn prometheus_series(addr: SocketAddr, start_ms: i64, end_ms: i64) -> Option<Series> {
    let secs = (end_ms - start_ms) / 1000 + 2;
    let q: String = url::form_urlencoded::byte_serialize(format!("{DEMO}[{secs}s]").as_bytes()).collect();
    let data = api_data(addr, &format!("/api/v1/query?query={q}&time={}", end_ms as f64 / 1000.0))?;
    let mut out = Series::new();
    for s in data["result"].as_array()? {
        let mut labels: Vec<(String, String)> = s["metric"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        labels.sort();
        let samples = s["values"]
            .as_array()?
            .iter()
            .map(|p| Some(((p[0].as_f64()? * 1000.0).round() as i64, p[1].as_str()?.parse::<f64>().ok()?)))
            .collect::<Option<Vec<_>>>()?;
        out.insert(labels, samples);
    }
    Some(out)
}

/// Differences between what the global stores and what a receiver holds in `[from, to]`: every
/// receiver series carries the global's external label `tier="global"` (so does the global's
/// fast link, which the global's side is read through), none a `replica` label, no timestamp
/// twice, and the same non-NaN samples as the global.
fn differences(global: &Series, receiver: &Series, from: i64, to: i64) -> Vec<String> {
    let window = |s: &[(i64, f64)]| -> Vec<(i64, u64)> {
        s.iter()
            .filter(|(t, v)| *t >= from && *t <= to && !v.is_nan())
            .map(|(t, v)| (*t, v.to_bits()))
            .collect()
    };
    let mut problems = Vec::new();
    let mut got = BTreeMap::new();
    for (labels, samples) in receiver {
        if !labels.iter().any(|(k, v)| k == "tier" && v == "global") {
            problems.push(format!("{labels:?}: no external label tier=\"global\""));
        }
        if labels.iter().any(|(k, _)| k == "replica") {
            problems.push(format!("{labels:?}: a replica label (dedup must happen before sending)"));
        }
        if samples.windows(2).any(|w| w[0].0 == w[1].0) {
            problems.push(format!("{labels:?}: a timestamp twice (a duplicate)"));
        }
        let w = window(samples);
        if !w.is_empty() {
            got.insert(labels.clone(), w);
        }
    }
    for (labels, samples) in global {
        let want = window(samples);
        if want.is_empty() {
            continue;
        }
        match got.remove(labels) {
            None => problems.push(format!("{labels:?}: missing ({} samples in the window)", want.len())),
            Some(have) if !same(&have, &want) => {
                let missing = want.iter().filter(|s| !have.contains(s)).count();
                let extra = have.iter().filter(|s| !want.contains(s)).count();
                problems.push(format!(
                    "{labels:?}: {} samples, the global {}: {missing} missing, {extra} extra",
                    have.len(),
                    want.len()
                ));
            }
            Some(_) => {}
        }
    }
    for labels in got.keys() {
        problems.push(format!("{labels:?}: a series the global does not store"));
    }
    problems
}

/// Equal timestamps and values equal up to VictoriaMetrics's float precision
/// ([`VictoriaMetrics::same_value`]).
fn same(a: &[(i64, u64)], b: &[(i64, u64)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ta, va), (tb, vb))| {
            ta == tb && VictoriaMetrics::same_value(f64::from_bits(*va), f64::from_bits(*vb))
        })
}

/// Waits until both receivers hold what the global stores in `[from, to]`.
fn wait_equal(
    what: &str,
    global: SocketAddr,
    vm: &VictoriaMetrics,
    prom: SocketAddr,
    from: i64,
    to: i64,
    log: &dyn Fn() -> String,
) {
    let last = std::cell::RefCell::new(Vec::new());
    wait_until(
        what,
        BOUND,
        || {
            let p = last.borrow();
            format!("{} problems, e.g.:\n{}\n{}", p.len(), p[..p.len().min(10)].join("\n"), log())
        },
        || {
            let g = global_series(global, from - 1)?;
            if g.len() < 20 {
                *last.borrow_mut() = vec![format!("only {} demo series on the global", g.len())];
                return None;
            }
            let mut problems = Vec::new();
            match vm.export(DEMO) {
                Some(v) => {
                    problems.extend(differences(&g, &v, from, to).into_iter().map(|p| format!("vm: {p}")))
                }
                None => problems.push("vm: no export".into()),
            }
            match prometheus_series(prom, from, to) {
                Some(p) => problems
                    .extend(differences(&g, &p, from, to).into_iter().map(|p| format!("prometheus: {p}"))),
                None => problems.push("prometheus: no answer".into()),
            }
            let done = problems.is_empty();
            *last.borrow_mut() = problems;
            done.then_some(())
        },
    );
}

/// The value of the first sample line of `/metrics` starting with `prefix`, or -1.
fn metric(addr: SocketAddr, prefix: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics", Duration::from_secs(10)).unwrap_or_default();
    value(&body, prefix)
}

/// The newest timestamp the global stores for the demo series.
fn global_newest(global: SocketAddr) -> Option<i64> {
    global_series(global, now_ms() - 30_000)?.values().filter_map(|s| s.last().map(|x| x.0)).max()
}

#[test]
fn global_sends_one_copy_to_victoriametrics_and_prometheus_through_an_outage_and_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(6);
    let (demo_port, leaf_base, global_port, vm_port) = (base, base + 1, base + 3, base + 4);
    let mut vm = VictoriaMetrics::start(vm_port, &dir.path().join("vm"));
    let prom = Prometheus::start_with_args(
        "global: {scrape_interval: 15s}\n",
        &|_| vec!["--web.enable-remote-write-receiver".to_string()],
        &|a| matches!(http_get(a, "/-/ready", Duration::from_secs(2)), Ok((200, _))),
    );
    let queue = "queue_config: {batch_send_deadline: 1s, min_backoff: 30ms, max_backoff: 1s, max_samples_per_send: 500}";
    let topology = dir.path().join("t.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: rw\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 1, listen: '127.0.0.1:{demo_port}', series: 30}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo_port}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], replicas: 2, listen: '127.0.0.1:{leaf_base}'}}\n\
             globals:\n  - name: global\n    from: [apps]\n    listen: '127.0.0.1:{global_port}'\n\
             \x20   external_labels: {{tier: global}}\n\
             \x20   federate: {{interval: 1s, timeout: 900ms}}\n    dedup: {{mode: failover, failover_timeout: 3s}}\n\
             \x20   remote_write:\n\
             \x20     - {{url: 'http://127.0.0.1:{vm_port}/api/v1/write', name: vm, {queue}}}\n\
             \x20     - {{url: 'http://{}/api/v1/write', name: prom, {queue}}}\n",
            prom.addr()
        ),
    )
    .expect("topology");
    let t = topology.to_str().expect("utf8");
    let log = dir.path().join("up.log");
    let _up = start_promtier("promtier up", &["up", t], &log);
    let global: SocketAddr = ([127, 0, 0, 1], global_port).into();
    let restarted_log = dir.path().join("global-restarted.log");
    let logs = || {
        let mut s = std::fs::read_to_string(&log).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(&restarted_log).unwrap_or_default());
        let n = s.len();
        s[n.saturating_sub(6000)..].to_string()
    };
    wait_until("demo series in VictoriaMetrics", BOUND, logs, || {
        (vm.export(DEMO)?.len() >= 20).then_some(())
    });

    // 1. The same data, one copy each, and the same PromQL answers.
    let from = now_ms();
    let to = from + 8_000;
    wait_until("the window to pass on the global", BOUND, logs, || {
        (global_newest(global)? > to + 2_000).then_some(())
    });
    wait_equal("both receivers to hold the global's window", global, &vm, prom.addr(), from, to, &logs);
    let at = (from + 5_000) as f64 / 1000.0;
    for q in ["count({__name__=~\"demo_.+\"})", "sum({__name__=~\"demo_.+\"})"] {
        let ours = instant(global, q, at).0;
        for (who, addr) in [("vm", vm.addr()), ("prometheus", prom.addr())] {
            let theirs = instant(addr, q, at).0;
            let (a, b) = (ours.first().map(|x| x.1), theirs.first().map(|x| x.1));
            let close = matches!((a, b), (Some(a), Some(b)) if (a - b).abs() <= 1e-9 * a.abs().max(1.0));
            assert!(close, "{q} at {at}: global {ours:?}, {who} {theirs:?}");
        }
    }

    // 2. An outage of VictoriaMetrics, and the global SIGKILLed and restarted during it.
    vm.stop();
    let outage_from = now_ms();
    wait_until("15 s of ingest during the outage", BOUND, logs, || {
        (global_newest(global)? > outage_from + 15_000).then_some(())
    });
    kill_node(t, "global-a");
    let _global = start_promtier(
        "restarted global",
        &["global", "--topology", t, "--node", "global-a"],
        &restarted_log,
    );
    let back = now_ms();
    wait_until("the restarted global to ingest 15 s more", BOUND, logs, || {
        (global_newest(global)? > back + 15_000).then_some(())
    });
    vm.restart();
    let outage_to = now_ms();
    wait_equal(
        "every sample of the outage window in both receivers",
        global,
        &vm,
        prom.addr(),
        outage_from - 5_000,
        outage_to + 3_000,
        &logs,
    );
    // The restarted global retried while VictoriaMetrics was down, and dropped nothing.
    let retried = metric(global, "prometheus_remote_storage_samples_retried_total{remote_name=\"vm\"");
    assert!(retried > 0.0, "retried {retried}");
    for reason in ["backlog", "dropped_series"] {
        let dropped = metric(
            global,
            &format!(
                "prometheus_remote_storage_samples_dropped_total{{remote_name=\"vm\",url=\"http://127.0.0.1:{vm_port}/api/v1/write\",reason=\"{reason}\"}}"
            ),
        );
        assert_eq!(dropped, 0.0, "{reason}");
    }
    // The status page shows the queues.
    let (_, page) = http_get(global, "/status", Duration::from_secs(10)).expect("status page");
    assert!(
        page.contains("<h2>Remote write</h2>") && page.contains(">vm<") && page.contains(">prom<"),
        "{page}"
    );
}

/// A receiver answering from a script of statuses (the last repeats), recording what it got.
#[derive(Default)]
struct Script {
    statuses: Vec<u16>,
    requests: Vec<(Instant, u16, usize)>,
}

async fn scripted(
    state: Arc<parking_lot::Mutex<Script>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap_or_default();
    let req = <promtier::remote::proto::WriteRequest as prost::Message>::decode(raw.as_slice())
        .expect("a WriteRequest");
    let samples = req.timeseries.iter().map(|t| t.samples.len()).sum();
    let mut s = state.lock();
    let status = s.statuses.get(s.requests.len()).or(s.statuses.last()).copied().unwrap_or(204);
    s.requests.push((Instant::now(), status, samples));
    let code = axum::http::StatusCode::from_u16(status).expect("status");
    match status {
        429 => (code, [("Retry-After", "1")], "slow down").into_response(),
        400 => (code, "sample has a bad label: __name__ missing").into_response(),
        _ => (code, "").into_response(),
    }
}

/// Runs a queue over a real TSDB holding `n` samples against a receiver answering `statuses`;
/// returns the receiver's log and the node's `/metrics` once `done` says so.
fn run_policy(
    statuses: Vec<u16>,
    n: i64,
    done: impl Fn(&Script) -> bool,
) -> (Vec<(Instant, u16, usize)>, String) {
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let state = Arc::new(parking_lot::Mutex::new(Script { statuses, requests: Vec::new() }));
        let st = state.clone();
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(move |body: axum::body::Bytes| scripted(st.clone(), body)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = tokio_util::sync::CancellationToken::new();
        let s2 = stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(s2.cancelled_owned()).await.expect("serve")
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let db = promtier::tsdb::Db::open(dir.path(), promtier::tsdb::DbOptions::default()).expect("db");
        {
            use promtier::storage::Appendable;
            let mut app = db.appender();
            let l = Labels::from_pairs(&[("__name__", "x"), ("job", "j")]);
            for t in 0..n {
                app.append(None, &l, 1_000 + t * 1000, t as f64).expect("append");
            }
            app.commit().expect("commit");
        }
        let cfg = promtier::topology::RemoteWriteConfig {
            url: format!("http://{addr}/api/v1/write"),
            name: Some("test".into()),
            remote_timeout: Duration::from_secs(10),
            headers: vec![("X-Scope-OrgID".into(), "team-a".into())],
            client: Default::default(),
            write_relabel_configs: Vec::new(),
            queue: promtier::topology::QueueConfig {
                batch_send_deadline: Duration::from_millis(100),
                ..Default::default()
            },
            protobuf_message: Default::default(),
            metadata: Default::default(),
        };
        let registry = promtier::metrics::Registry::new();
        let queues = promtier::remote::send::queues(
            &[cfg],
            &Labels::from_pairs(&[("cluster", "c")]),
            dir.path(),
            db.wal_dir(),
            db.wal_holds(),
            &registry,
            None,
        )
        .expect("queues");
        let run = tokio::spawn(promtier::remote::send::run_all(queues, stop.clone()));
        let deadline = Instant::now() + BOUND;
        while !done(&state.lock()) {
            assert!(Instant::now() < deadline, "timed out: {:?}", state.lock().requests);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the queue persist its position, then stop everything.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
        run.await.expect("queues stop");
        server.await.expect("server stops");
        let metrics = String::from_utf8(registry.render()).expect("utf8");
        let requests = state.lock().requests.clone();
        (requests, metrics)
    })
}

fn value(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn retries_500_and_429_until_accepted_and_drops_400_with_a_count() {
    let (reqs, metrics) = run_policy(vec![500, 429, 204], 100, |s| s.requests.iter().any(|r| r.1 == 204));
    assert_eq!(reqs.iter().map(|r| r.1).collect::<Vec<_>>(), vec![500, 429, 204], "{reqs:?}");
    assert!(reqs.iter().all(|r| r.2 == 100), "{reqs:?}");
    assert!(reqs[2].0 - reqs[1].0 >= Duration::from_millis(950), "Retry-After: 1 honoured");
    let q = "{remote_name=\"test\",url=";
    assert!(metrics.contains(&format!("prometheus_remote_storage_samples_retried_total{q}")), "{metrics}");
    let line = |name: &str| Some(value(&metrics, name));
    assert_eq!(line("prometheus_remote_storage_samples_retried_total"), Some(200.0), "{metrics}");
    assert_eq!(line("prometheus_remote_storage_samples_total"), Some(100.0), "{metrics}");
    assert_eq!(line("prometheus_remote_storage_samples_failed_total"), Some(0.0), "{metrics}");

    let (reqs, metrics) = run_policy(vec![400], 50, |s| !s.requests.is_empty());
    assert_eq!(reqs.len(), 1, "a 400 is not retried: {reqs:?}");
    let line = |name: &str| Some(value(&metrics, name));
    assert_eq!(line("prometheus_remote_storage_samples_failed_total"), Some(50.0), "{metrics}");
    assert_eq!(line("prometheus_remote_storage_samples_retried_total"), Some(0.0), "{metrics}");
}
