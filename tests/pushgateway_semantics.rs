//! Pushgateway semantics against the real Pushgateway (push tier, issue 13): one script of pushes
//! and deletes goes to a real `prometheus-pushgateway` over HTTP and to a `GroupStore` in
//! process. After every step both must accept or both refuse, and the series the Pushgateway
//! exposes for its groups (those with a `job` label, read the way a scrape with `honor_labels:
//! true` reads them) must be the store's snapshot: same labels and values, same metadata, and the
//! push-time gauges for the same groups (their values compared only as zero or not). The last
//! steps pin the documented differences.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use promtier::exposition::{Entry, TextParser};
use promtier::model::{Labels, MetricType};
use promtier::push::gateway::{GroupStore, GroupingKey, PushMethod};

/// How long any one condition may take to come true.
const BOUND: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Post,
    Delete,
}

/// One operation of the script, sent to both.
#[derive(Debug, Clone, Copy)]
struct Step {
    what: &'static str,
    op: Op,
    /// After `/metrics/`.
    path: &'static str,
    content_type: Option<&'static str>,
    body: &'static str,
}

const fn step(what: &'static str, op: Op, path: &'static str, body: &'static str) -> Step {
    Step { what, op, path, content_type: None, body }
}

/// What a scrape of either side holds: series by labels (first wins, as a scrape keeps the first
/// of two equal label sets), the push-time gauges by labels as "is zero", and family metadata.
#[derive(Debug, Default, PartialEq)]
struct View {
    series: BTreeMap<Labels, ValueBits>,
    push_times: BTreeMap<Labels, bool>,
    failure_times: BTreeMap<Labels, bool>,
    metadata: BTreeMap<String, (MetricType, String)>,
}

/// A value compared by bits, any NaN equal to any NaN (the text format has one NaN).
#[derive(Debug, PartialEq)]
struct ValueBits(u64);

impl ValueBits {
    fn of(v: f64) -> ValueBits {
        ValueBits(if v.is_nan() { f64::NAN.to_bits() } else { v.to_bits() })
    }
}

impl View {
    fn add(&mut self, labels: Labels, value: f64) {
        match labels.metric_name() {
            Some("push_time_seconds") => {
                self.push_times.entry(labels).or_insert(value == 0.0);
            }
            Some("push_failure_time_seconds") => {
                self.failure_times.entry(labels).or_insert(value == 0.0);
            }
            _ => {
                self.series.entry(labels).or_insert(ValueBits::of(value));
            }
        }
    }

    /// Metadata only of families with series here; `skip` are families whose type differs by
    /// design (pushed as OpenMetrics, which the Pushgateway reads as the text format).
    fn keep_used_metadata(&mut self, skip: &[&str]) {
        let names: std::collections::BTreeSet<&str> = self
            .series
            .keys()
            .chain(self.push_times.keys())
            .chain(self.failure_times.keys())
            .filter_map(|l| l.metric_name())
            .collect();
        self.metadata.retain(|name, (kind, _)| {
            let suffixes: &[&str] = match kind {
                MetricType::Histogram => &["_bucket", "_sum", "_count"],
                MetricType::Summary => &["", "_sum", "_count"],
                _ => &[""],
            };
            !skip.contains(&name.as_str())
                && suffixes.iter().any(|s| names.contains(format!("{name}{s}").as_str()))
        });
    }
}

/// The Pushgateway's groups as a scrape sees them.
fn gateway_view(gw: &Pushgateway) -> Option<View> {
    let (status, body) = http_get(gw.addr, "/metrics", Duration::from_secs(10)).ok()?;
    if status != 200 {
        return None;
    }
    let mut view = View::default();
    let mut help = BTreeMap::new();
    for entry in TextParser::new(body.as_bytes()) {
        match entry.ok()? {
            Entry::Type { name, kind } => {
                view.metadata.insert(name.to_string(), (kind, String::new()));
            }
            Entry::Help { name, text } => {
                help.insert(name.to_string(), text.to_string());
            }
            Entry::Series(s) => {
                let labels = s.to_labels();
                if labels.has("job") {
                    view.add(labels, s.value());
                }
            }
            _ => {}
        }
    }
    for (name, (_, h)) in view.metadata.iter_mut() {
        *h = help.remove(name).unwrap_or_default();
    }
    Some(view)
}

fn store_view(store: &GroupStore) -> View {
    let snap = store.snapshot();
    let mut view = View::default();
    for s in snap.series() {
        view.add(s.labels.clone(), s.value);
    }
    for (name, meta) in snap.families() {
        view.metadata.insert(name.clone(), (meta.kind, meta.help.clone()));
    }
    view
}

/// Sends `step` to the Pushgateway; its status code.
fn send_to_gateway(client: &reqwest::blocking::Client, gw: &Pushgateway, step: &Step) -> u16 {
    let url = format!("http://{}/metrics/{}", gw.addr, step.path);
    let request = match step.op {
        Op::Put => client.put(&url),
        Op::Post => client.post(&url),
        Op::Delete => client.delete(&url),
    };
    let request = match step.content_type {
        Some(ct) => request.header("Content-Type", ct),
        None => request,
    };
    let request = if step.op == Op::Delete { request } else { request.body(step.body.as_bytes().to_vec()) };
    match request.send() {
        Ok(r) => r.status().as_u16(),
        Err(e) => panic!("{}: sending to the Pushgateway: {e}\n{}", step.what, gw.log()),
    }
}

/// Applies `step` to the store; the status the push node would answer.
fn apply_to_store(store: &GroupStore, step: &Step) -> u16 {
    let key = match GroupingKey::parse(step.path) {
        Ok(k) => k,
        Err(_) => return 400,
    };
    let method = match step.op {
        Op::Put => PushMethod::Put,
        Op::Post => PushMethod::Post,
        Op::Delete => {
            store.delete(&key);
            return 202;
        }
    };
    match store.push(&key, method, step.content_type, step.body.as_bytes()) {
        Ok(()) => 200,
        Err(e) => e.http_status(),
    }
}

/// Waits until both sides show the same groups (a Pushgateway delete is applied after its 202).
fn assert_same(gw: &Pushgateway, store: &GroupStore, what: &str, skip_types: &[&str]) {
    let mut want = store_view(store);
    want.keep_used_metadata(skip_types);
    let last = RefCell::new(None);
    wait_until(
        &format!("the Pushgateway's groups to equal the store's snapshot after {what:?}"),
        Duration::from_secs(20),
        || format!("Pushgateway: {:#?}\nstore: {want:#?}\nlog:\n{}", last.borrow(), gw.log()),
        || {
            let mut got = gateway_view(gw)?;
            got.keep_used_metadata(skip_types);
            let same = got == want;
            *last.borrow_mut() = Some(got);
            same.then_some(())
        },
    );
}

/// A body in the text format, histogram and summary with parts missing (the Pushgateway makes
/// them up when it exposes them).
const COMPOUND: &str = "# TYPE h histogram\n# HELP h Latency.\nh_bucket{le=\"1\",op=\"r\"} 2\nh_bucket{op=\"r\",le=\"2.50\"} 3\n\
     h_sum{op=\"r\"} 4.5\nh_bucket{op=\"w\",le=\"+Inf\"} 1\nh_count{op=\"w\"} 1\n\
     # TYPE s summary\ns{quantile=\"0.5\"} 1\ns{quantile=\"0.99\"} 3\ns_count 2.7\n";

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const SCRIPT: &[Step] = &[
    step(
        "PUT a group",
        Op::Put,
        "job/a/instance/i1",
        "# TYPE m counter\n# HELP m My counter.\nm{x=\"1\"} 3\nm{x=\"2\"} 4\nother 5\n",
    ),
    step("POST merges: other is replaced, m stays", Op::Post, "job/a/instance/i1", "other 6\n"),
    step("POST of another family", Op::Post, "job/a/instance/i1", "# TYPE g gauge\ng{x=\"1\"} -0.5\n"),
    step("histogram and summary with parts missing", Op::Put, "job/b", COMPOUND),
    step(
        "pushed labels that are grouping labels are overwritten",
        Op::Put,
        "job/c/zone/z",
        "q{job=\"other\",zone=\"y\",k=\"1\"} 1\n",
    ),
    step("base64 job and label", Op::Put, "job@base64/L3Zhci90bXA/path@base64/L3Zhci9sb2c=", "b64 1\n"),
    step("empty instance in the key", Op::Put, "job/d/instance@base64/=", "d 1\n"),
    step("empty label value by a trailing slash", Op::Put, "job/e/x/", "e 1\n"),
    step(
        "metadata lines the Pushgateway way",
        Op::Put,
        "job/k",
        "#HELP hx  two  blanks\nhx 1\n#\tTYPE\tgx\tGauge\ngx 2\n# HELP esc a\\\\b\\nc\nesc 3\n",
    ),
    step("equal once empty values are dropped", Op::Put, "job/el", "q11{a=\"\"} 1\nq11 2\n"),
    step("counts are integers", Op::Put, "job/n", "# TYPE s2 summary\ns2_count -1\ns2_sum NaN\n"),
    step("malformed body", Op::Put, "job/a/instance/i1", "m{x=\"1\" 3\n"),
    step("no newline at the end", Op::Post, "job/a/instance/i1", "m{x=\"9\"} 1"),
    step("blank at the end of a line", Op::Post, "job/a/instance/i1", "m{x=\"9\"} 1 \n"),
    step("TYPE after samples", Op::Put, "job/h", "t 1\n# TYPE t gauge\n"),
    step("second HELP", Op::Put, "job/h", "# HELP t a\n# HELP t b\nt 1\n"),
    step("unknown type", Op::Put, "job/h", "# TYPE t info\nt 1\n"),
    step("explicit timestamp", Op::Post, "job/a/instance/i1", "ts_metric 1 1700000000000\n"),
    step("explicit timestamp to a new group", Op::Put, "job/f", "ts_metric 1 1700000000000\n"),
    step("type conflict with another group", Op::Put, "job/g", "# TYPE m gauge\nm 1\n"),
    step("duplicate once grouping labels are set", Op::Put, "job/h", "dup{job=\"x\"} 1\ndup 2\n"),
    step("duplicate of another group's series", Op::Put, "job/c", "q{zone=\"z\",k=\"1\"} 1\n"),
    step("reserved label name", Op::Put, "job/h", "r{__x=\"1\"} 1\n"),
    step("name of a histogram's series", Op::Put, "job/h", "h_count 1\n"),
    step("odd number of path components", Op::Put, "job/a/x/1/", "z 1\n"),
    step("improper label name in the path", Op::Put, "job/a/__x/1", "z 1\n"),
    step("invalid base64 in the path", Op::Put, "job/a/x@base64/!!", "z 1\n"),
    Step {
        what: "protobuf body",
        op: Op::Put,
        path: "job/p",
        content_type: Some(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
        ),
        body: "garbage",
    },
    Step {
        what: "OpenMetrics body",
        op: Op::Put,
        path: "job/om",
        content_type: Some(OPENMETRICS),
        body: "# TYPE om counter\n# HELP om Requests.\nom_total{a=\"1\"} 3\n# EOF\n",
    },
    step("empty PUT keeps the group and its push times", Op::Put, "job/a/instance/i1", ""),
    step("POST after the empty PUT", Op::Post, "job/a/instance/i1", "later 1\n"),
    step("DELETE a group", Op::Delete, "job/b", ""),
    step("the summary's names are free again", Op::Put, "job/h", "h_count 1\n"),
    step("DELETE of a group that does not exist", Op::Delete, "job/zz", ""),
    step("DELETE with a base64 key", Op::Delete, "job@base64/L3Zhci90bXA/path@base64/L3Zhci9sb2c", ""),
];

/// Families whose type differs by design: pushed as OpenMetrics, which the Pushgateway reads as
/// the text format (`# TYPE om counter` has no samples there, `om_total` is untyped).
const TYPED_DIFFERENTLY: &[&str] = &["om_total", "om"];

#[test]
fn script_against_the_real_pushgateway() {
    let gw = Pushgateway::start();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(BOUND)
        .build()
        .expect("HTTP client");
    let store = GroupStore::new();
    for step in SCRIPT {
        let theirs = send_to_gateway(&client, &gw, step);
        let ours = apply_to_store(&store, step);
        assert_eq!(
            theirs / 100,
            ours / 100,
            "{:?}: the Pushgateway answered {theirs}, the store {ours}\n{}",
            step.what,
            gw.log()
        );
        assert_same(&gw, &store, step.what, TYPED_DIFFERENTLY);
    }
    // Spot checks that the comparison saw what the script is about.
    let snap = store.snapshot();
    let value = |pairs: &[(&str, &str)]| snap.get(&Labels::from_pairs(pairs)).map(|s| s.value);
    assert_eq!(value(&[("__name__", "q"), ("job", "c"), ("k", "1"), ("zone", "z")]), Some(1.0));
    assert_eq!(
        value(&[("__name__", "m"), ("instance", "i1"), ("job", "a"), ("x", "1")]),
        None,
        "emptied by PUT"
    );
    assert_eq!(value(&[("__name__", "s2_count"), ("job", "n")]), Some(1.8446744073709552e19));
    assert_eq!(value(&[("__name__", "push_time_seconds"), ("job", "f")]), Some(0.0));
    assert!(
        value(&[("__name__", "push_failure_time_seconds"), ("instance", "i1"), ("job", "a")]) > Some(0.0)
    );

    // Deliberate differences: the Pushgateway takes these, the store refuses them. Each is undone
    // on the Pushgateway before the groups are compared again.
    for (step, status, cleanup) in [
        (step("a label twice in the path", Op::Put, "job/r/x/1/x/2", "r 1\n"), 200, Some("job/r/x/2")),
        (step("job given again as a label", Op::Put, "job/r/job/other", "r 1\n"), 200, Some("job/r")),
        (step("an empty segment (redirected)", Op::Put, "job/r/x//", "r 1\n"), 301, None),
    ] {
        assert_eq!(send_to_gateway(&client, &gw, &step), status, "{}\n{}", step.what, gw.log());
        assert_eq!(apply_to_store(&store, &step), 400, "{}", step.what);
        if let Some(path) = cleanup {
            assert_eq!(send_to_gateway(&client, &gw, &self::step("cleanup", Op::Delete, path, "")), 202);
        }
        assert_same(&gw, &store, step.what, TYPED_DIFFERENTLY);
    }
    gw.stop();
}
