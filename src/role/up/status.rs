//! `promtier up`'s view of its nodes: every couple of seconds it asks each leaf, global and push
//! node over HTTP whether it is ready (or what it is doing while it starts), how many series its
//! head holds, how far behind it is (a leaf: the longest time since a target's last scrape; a
//! global: the age of the newest sample of its most lagging replica set), and which replica a
//! failover global has elected per set. A node `up` cannot ask (TLS, or users for everything but
//! `/-/ready`) shows `?`. On a terminal the lines are kept at the bottom of the output; otherwise
//! a plain line is printed when a node's state changes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::console::Console;
use crate::topology::{DedupMode, Node, NodeRole, Topology};

/// How often the nodes are asked.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// How long one question may take.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);

/// What `up` may ask a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Everything (plain HTTP, no users).
    Full,
    /// `/-/ready` only (the node has users; `up` has no credentials).
    ReadyOnly,
    /// Nothing (TLS: `up` has no CA to trust the node's certificate with).
    Nothing,
}

/// Where a node's lag comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lag {
    /// The targets API: time since each target's last scrape.
    Targets,
    /// `promtier_federation_lag_seconds` on `/metrics`.
    Federation,
    None,
}

/// A node `up` watches.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    pub(crate) name: String,
    kind: &'static str,
    base: String,
    access: Access,
    lag: Lag,
    failover: bool,
}

impl Watched {
    /// The leaf, global and push nodes of `t` (demo exporters are not watched).
    pub(crate) fn all(t: &Topology) -> Vec<Watched> {
        t.nodes.iter().filter_map(|n| Watched::of(t, n)).collect()
    }

    fn of(t: &Topology, n: &Node) -> Option<Watched> {
        let (lag, failover) = match &n.role {
            NodeRole::Leaf { .. } => (Lag::Targets, false),
            NodeRole::Global { name, .. } => {
                (Lag::Federation, t.global(name).is_some_and(|g| g.dedup == DedupMode::Failover))
            }
            NodeRole::Push { .. } => (Lag::None, false),
            NodeRole::Demo { .. } => return None,
        };
        let access = if n.web.tls.is_some() {
            Access::Nothing
        } else if !n.web.users.is_empty() {
            Access::ReadyOnly
        } else {
            Access::Full
        };
        Some(Watched {
            name: n.name.clone(),
            kind: n.role.kind(),
            base: format!("http://{}", local_address(&n.listen)),
            access,
            lag,
            failover,
        })
    }
}

/// `listen` as an address to connect to on this host (a wildcard host is the loopback).
fn local_address(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("" | "0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen.to_string(),
    }
}

/// Whether a node answers, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing answers on its port (yet).
    Waiting,
    /// Serving its starting router: what it is doing.
    Starting(String),
    Ready,
    /// Answers, but not ready (the reason).
    NotReady(String),
    /// `up` cannot ask it.
    Unknown,
    /// The process has exited (how).
    Exited(String),
}

/// A value `up` may not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field<T> {
    /// Not shown for this node.
    None,
    /// Cannot be asked, or no answer.
    Unknown,
    Known(T),
}

/// Per replica set of a failover global: the elected replica (`None`: no healthy one).
pub(crate) type Elections = Vec<(String, Option<String>)>;

/// What `up` knows of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeStatus {
    pub(crate) state: State,
    pub(crate) series: Field<u64>,
    pub(crate) lag: Field<Duration>,
    pub(crate) elected: Field<Elections>,
}

impl NodeStatus {
    fn state_only(state: State) -> NodeStatus {
        NodeStatus { state, series: Field::None, lag: Field::None, elected: Field::None }
    }

    /// What changes enough to print a plain line: the kind of state (not what a starting node
    /// is doing, which changes every segment of a replay) and the elections.
    fn key(&self) -> (u8, Option<&Elections>) {
        let k = match self.state {
            State::Waiting => 0,
            State::Starting(_) => 1,
            State::Ready => 2,
            State::NotReady(_) => 3,
            State::Unknown => 4,
            State::Exited(_) => 5,
        };
        let elected = match &self.elected {
            Field::Known(e) => Some(e),
            _ => None,
        };
        (k, elected)
    }

    /// The parts of a status line after the node's name.
    fn parts(&self) -> Vec<String> {
        let mut parts = vec![match &self.state {
            State::Waiting => "not answering".to_string(),
            State::Starting(what) => format!("starting: {what}"),
            State::Ready => "ready".to_string(),
            State::NotReady(why) => format!("not ready: {why}"),
            State::Unknown => "? (TLS: up cannot ask)".to_string(),
            State::Exited(how) => format!("exited ({how})"),
        }];
        if !matches!(self.state, State::Ready | State::Unknown) {
            return parts;
        }
        match &self.series {
            Field::None => {}
            Field::Unknown => parts.push("? series".into()),
            Field::Known(n) => parts.push(format!("{n} series")),
        }
        match &self.lag {
            Field::None => {}
            Field::Unknown => parts.push("lag ?".into()),
            Field::Known(d) => parts.push(format!("lag {}", format_lag(*d))),
        }
        match &self.elected {
            Field::None => {}
            Field::Unknown => parts.push("elected ?".into()),
            Field::Known(sets) => {
                let mut s = String::from("elected");
                for (set, replica) in sets {
                    let _ = write!(s, " {set}={}", replica.as_deref().unwrap_or("none"));
                }
                parts.push(s);
            }
        }
        parts
    }
}

/// A lag for a person: `0.8s`, `42s`, `3m10s`, `2h05m`.
pub(crate) fn format_lag(d: Duration) -> String {
    let s = d.as_secs();
    if s < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

/// One line of the live block: name, kind, then the parts, in columns.
pub(crate) fn render_live(name_width: usize, name: &str, kind: &str, st: &NodeStatus) -> String {
    format!("{name:<name_width$}  {kind:<6}  {}", st.parts().join("  "))
}

/// One plain line: `up: apps-0-a ready, 1234 series, lag 0.8s`.
pub(crate) fn render_plain(name: &str, st: &NodeStatus) -> String {
    format!("up: {name} {}", st.parts().join(", "))
}

/// Watches `nodes` until `stop`, showing their status on `console`; `exited` says which
/// processes have exited (and how), by node name.
pub(crate) async fn watch(
    nodes: Vec<Watched>,
    console: Arc<Console>,
    exited: Arc<parking_lot::Mutex<BTreeMap<String, String>>>,
    stop: CancellationToken,
) {
    if nodes.is_empty() {
        return;
    }
    let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).no_proxy().build() {
        Ok(c) => c,
        Err(e) => {
            console.line(&format!("promtier up: no node status ({e})"));
            return;
        }
    };
    let width = nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    let mut last: Vec<Option<NodeStatus>> = vec![None; nodes.len()];
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut asks = JoinSet::new();
        for (i, n) in nodes.iter().enumerate() {
            let (n, client) = (n.clone(), client.clone());
            let gone = exited.lock().get(&n.name).cloned();
            asks.spawn(async move {
                let st = match gone {
                    Some(how) => NodeStatus::state_only(State::Exited(how)),
                    None => ask(&client, &n).await,
                };
                (i, st)
            });
        }
        let mut now: Vec<Option<NodeStatus>> = vec![None; nodes.len()];
        // Awaited here (a JoinSet aborts what it still holds when dropped): nothing outlives
        // the loop.
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = asks.join_next() => n,
            };
            match next {
                Some(Ok((i, st))) => now[i] = Some(st),
                Some(Err(_)) => {}
                None => break,
            }
        }
        if console.live() {
            let lines = nodes
                .iter()
                .zip(&now)
                .filter_map(|(n, st)| st.as_ref().map(|st| render_live(width, &n.name, n.kind, st)))
                .collect();
            console.set_status(lines);
        } else {
            for ((n, st), prev) in nodes.iter().zip(&now).zip(&last) {
                let Some(st) = st else { continue };
                // An exit is reported by the supervisor itself.
                let changed = prev.as_ref().is_none_or(|p| p.key() != st.key());
                if changed && !matches!(st.state, State::Exited(_)) {
                    console.line(&render_plain(&n.name, st));
                }
            }
        }
        for (l, n) in last.iter_mut().zip(now) {
            if n.is_some() {
                *l = n;
            }
        }
    }
}

/// Asks one node what it is doing.
async fn ask(client: &reqwest::Client, n: &Watched) -> NodeStatus {
    if n.access == Access::Nothing {
        return NodeStatus::state_only(State::Unknown);
    }
    let state = match client.get(format!("{}/-/ready", n.base)).send().await {
        Err(e) if e.is_connect() || e.is_timeout() => State::Waiting,
        Err(e) => State::NotReady(e.to_string()),
        Ok(r) => {
            let code = r.status();
            let body = r.text().await.unwrap_or_default();
            if code.is_success() {
                State::Ready
            } else {
                let reason = body.trim().trim_start_matches("Service Unavailable:").trim();
                match reason.strip_prefix("starting: ") {
                    Some(what) => State::Starting(what.to_string()),
                    None if reason.is_empty() => State::NotReady(format!("HTTP {}", code.as_u16())),
                    None => State::NotReady(reason.to_string()),
                }
            }
        }
    };
    let mut st = NodeStatus::state_only(state);
    if st.state != State::Ready {
        return st;
    }
    st.series = Field::Unknown;
    st.lag = if n.lag != Lag::None { Field::Unknown } else { Field::None };
    st.elected = if n.failover { Field::Unknown } else { Field::None };
    if n.access != Access::Full {
        return st;
    }
    if let Some(v) = get_json(client, &format!("{}/api/v1/status/tsdb", n.base)).await
        && let Some(series) = v["data"]["headStats"]["numSeries"].as_u64()
    {
        st.series = Field::Known(series);
    }
    match n.lag {
        Lag::Targets => {
            if let Some(v) = get_json(client, &format!("{}/api/v1/targets", n.base)).await {
                st.lag = match scrape_lag(&v, SystemTime::now()) {
                    Some(d) => Field::Known(d),
                    None => Field::None,
                };
            }
        }
        Lag::Federation => {
            if let Some(body) = get_text(client, &format!("{}/metrics", n.base)).await {
                st.lag = match federation_lag(&body) {
                    Some(d) => Field::Known(d),
                    None => Field::None,
                };
            }
        }
        Lag::None => {}
    }
    if n.failover
        && let Some(v) = get_json(client, &format!("{}/api/v1/dedup", n.base)).await
        && let Some(sets) = v["data"].as_array()
    {
        st.elected = Field::Known(
            sets.iter()
                .filter_map(|s| {
                    Some((s["shard"].as_str()?.to_string(), s["elected"].as_str().map(str::to_string)))
                })
                .collect(),
        );
    }
    st
}

async fn get_text(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&get_text(client, url).await?).ok()
}

/// The longest time since an active target's last scrape (targets never scraped left out).
fn scrape_lag(targets: &serde_json::Value, now: SystemTime) -> Option<Duration> {
    targets["data"]["activeTargets"]
        .as_array()?
        .iter()
        .filter_map(|t| humantime::parse_rfc3339(t["lastScrape"].as_str()?).ok())
        .map(|at| now.duration_since(at).unwrap_or_default())
        .max()
}

/// From a global's `/metrics`: per replica set the freshest replica's
/// `promtier_federation_lag_seconds`, and of those the largest.
fn federation_lag(body: &str) -> Option<Duration> {
    use crate::exposition::{Entry, TextParser};
    let mut per_set: BTreeMap<String, f64> = BTreeMap::new();
    for e in TextParser::new(body.as_bytes()) {
        let Ok(Entry::Series(s)) = e else { continue };
        if s.name() != "promtier_federation_lag_seconds" || !s.value().is_finite() {
            continue;
        }
        let set = s.labels().find(|(n, _)| n == "shard").map(|(_, v)| v.into_owned()).unwrap_or_default();
        let v = s.value().max(0.0);
        per_set.entry(set).and_modify(|m| *m = m.min(v)).or_insert(v);
    }
    per_set.into_values().reduce(f64::max).map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(series: u64, lag: Option<u64>) -> NodeStatus {
        NodeStatus {
            state: State::Ready,
            series: Field::Known(series),
            lag: lag.map_or(Field::None, |s| Field::Known(Duration::from_millis(s))),
            elected: Field::None,
        }
    }

    #[test]
    fn plain_lines() {
        assert_eq!(render_plain("apps-0-a", &ready(1234, None)), "up: apps-0-a ready, 1234 series");
        assert_eq!(render_plain("apps-0-a", &ready(7, Some(800))), "up: apps-0-a ready, 7 series, lag 0.8s");
        let starting = NodeStatus::state_only(State::Starting("replaying the WAL: segment 3 of 40".into()));
        assert_eq!(render_plain("g", &starting), "up: g starting: replaying the WAL: segment 3 of 40");
        let mut failover = ready(10, Some(65_000));
        failover.elected = Field::Known(vec![("apps-0".into(), Some("b".into())), ("apps-1".into(), None)]);
        assert_eq!(
            render_plain("global-0", &failover),
            "up: global-0 ready, 10 series, lag 1m05s, elected apps-0=b apps-1=none"
        );
        let guarded = NodeStatus {
            state: State::Ready,
            series: Field::Unknown,
            lag: Field::Unknown,
            elected: Field::Unknown,
        };
        assert_eq!(render_plain("g", &guarded), "up: g ready, ? series, lag ?, elected ?");
        assert_eq!(
            render_plain("t", &NodeStatus::state_only(State::Unknown)),
            "up: t ? (TLS: up cannot ask)"
        );
    }

    #[test]
    fn live_lines_are_aligned_and_plain_text() {
        let a = render_live(8, "apps-0-a", "leaf", &ready(12, Some(1500)));
        let b = render_live(8, "g", "global", &NodeStatus::state_only(State::Waiting));
        assert_eq!(a, "apps-0-a  leaf    ready  12 series  lag 1.5s");
        assert_eq!(b, "g         global  not answering");
        assert!(!a.contains('\x1b'));
    }

    #[test]
    fn a_plain_line_only_when_the_state_kind_changes() {
        let s1 = NodeStatus::state_only(State::Starting("replaying the WAL: segment 1 of 9".into()));
        let s2 = NodeStatus::state_only(State::Starting("replaying the WAL: segment 2 of 9".into()));
        assert_eq!(s1.key(), s2.key());
        assert_ne!(ready(1, None).key(), s1.key());
        assert_eq!(ready(1, Some(100)).key(), ready(500, Some(9000)).key(), "series and lag drift");
        let mut e1 = ready(1, None);
        e1.elected = Field::Known(vec![("s".into(), Some("a".into()))]);
        let mut e2 = e1.clone();
        e2.elected = Field::Known(vec![("s".into(), Some("b".into()))]);
        assert_ne!(e1.key(), e2.key(), "a failover is a change");
    }

    #[test]
    fn lags() {
        assert_eq!(format_lag(Duration::from_millis(800)), "0.8s");
        assert_eq!(format_lag(Duration::from_secs(42)), "42s");
        assert_eq!(format_lag(Duration::from_secs(190)), "3m10s");
        assert_eq!(format_lag(Duration::from_secs(7500)), "2h05m");
        let body = "# TYPE promtier_federation_lag_seconds gauge\n\
            promtier_federation_lag_seconds{source=\"a0\",shard=\"apps-0\",replica=\"a\"} 2.5\n\
            promtier_federation_lag_seconds{source=\"b0\",shard=\"apps-0\",replica=\"b\"} 900\n\
            promtier_federation_lag_seconds{source=\"a1\",shard=\"apps-1\",replica=\"a\"} 4\n\
            promtier_federation_lag_seconds{source=\"b1\",shard=\"apps-1\",replica=\"b\"} NaN\n";
        assert_eq!(federation_lag(body), Some(Duration::from_secs(4)));
        assert_eq!(federation_lag("other 1\n"), None);
        let now = humantime::parse_rfc3339("2024-01-01T00:01:00Z").expect("time");
        let targets = serde_json::json!({"data": {"activeTargets": [
            {"lastScrape": "2024-01-01T00:00:58.5Z"},
            {"lastScrape": "2024-01-01T00:00:55Z"},
            {"lastScrape": "0001-01-01T00:00:00Z"},
        ]}});
        assert_eq!(scrape_lag(&targets, now), Some(Duration::from_secs(5)));
        assert_eq!(local_address("0.0.0.0:9090"), "127.0.0.1:9090");
        assert_eq!(local_address(":9090"), "127.0.0.1:9090");
        assert_eq!(local_address("127.0.0.1:9"), "127.0.0.1:9");
    }
}
