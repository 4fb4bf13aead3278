//! `federate.honor_labels` on globals (issue 10, no silent keys): with `true` (the default) the
//! pulled series keep their own `job` and `instance`; with `false` the global's labels for the
//! source win (`job="federate"`, the source's address as `instance`) and the series' own are kept
//! as `exported_job` / `exported_instance`, as Prometheus federation stores them — over the fast
//! link and over text `/federate` alike.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::*;
use common::*;
use promtier::model::now_ms;

#[test]
fn honor_labels_false_renames_conflicting_labels_on_both_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(5);
    let (demo, leaf) = (base, base + 1);
    let (honor, renamed, text) = (base + 2, base + 3, base + 4);
    let topology = dir.path().join("t.yaml");
    let global = |name: &str, port: u16, extra: &str| {
        format!(
            "  - {{name: {name}, from: [apps], listen: '127.0.0.1:{port}', federate: {{interval: 1s, timeout: 900ms{extra}}}}}\n"
        )
    };
    std::fs::write(
        &topology,
        format!(
            "cluster: h\n\
             defaults: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             demo: {{targets: 1, listen: '127.0.0.1:{demo}', series: 10}}\n\
             jobs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{demo}']}}]\n\
             leaves:\n  - {{group: apps, jobs: [demo], listen: '127.0.0.1:{leaf}'}}\n\
             globals:\n{}{}{}",
            global("honor", honor, ""),
            global("renamed", renamed, ", honor_labels: false"),
            global("text", text, ", honor_labels: false, fast_link: false"),
        ),
    )
    .expect("topology");
    let log = dir.path().join("up.log");
    let _up = start_promtier("promtier up", &["up", topology.to_str().expect("utf8")], &log);
    let up_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let now_s = || now_ms() as f64 / 1000.0;
    // The labels of the `up` series of the demo target, as a global stored them.
    let up_labels = |port: u16| -> Option<BTreeMap<String, String>> {
        let g: SocketAddr = ([127, 0, 0, 1], port).into();
        let (rows, _) = try_instant(g, "up", now_s())?;
        rows.into_iter().map(|(l, _)| l).find(|l| l.values().any(|v| v.ends_with(&format!(":{demo}"))))
    };
    let wait = |port: u16| {
        wait_until(
            &format!("the global on {port} to store the demo target's up"),
            Duration::from_secs(60),
            up_log,
            || up_labels(port),
        )
    };
    let (demo_addr, leaf_addr) = (format!("127.0.0.1:{demo}"), format!("127.0.0.1:{leaf}"));
    let get = |l: &BTreeMap<String, String>, k: &str| l.get(k).cloned().unwrap_or_default();

    let l = wait(honor);
    assert_eq!((get(&l, "job"), get(&l, "instance")), ("demo".into(), demo_addr.clone()), "{l:?}");
    assert!(!l.contains_key("exported_job"), "{l:?}");
    for port in [renamed, text] {
        let l = wait(port);
        assert_eq!((get(&l, "job"), get(&l, "instance")), ("federate".into(), leaf_addr.clone()), "{l:?}");
        assert_eq!(
            (get(&l, "exported_job"), get(&l, "exported_instance")),
            ("demo".into(), demo_addr.clone()),
            "{l:?}"
        );
    }
}
