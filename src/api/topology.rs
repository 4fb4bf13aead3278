//! `/api/v1/status/topology`: the cluster as this node sees it, for the console's picture. Every
//! node of the topology (group, shard, replica, the address users reach it at) with its health
//! as probed from here (`/-/ready`, one short request per node, the answers shared by requests for
//! [`PROBE_TTL`]); what each global pulls; and, when this node is a global, what it knows of its
//! own sources: pull health, how far behind the stored data is, which replica is elected and
//! whether an operator pinned it.
//!
//! The topology's shape is the `topology` module's; the sources' state is the global's, handed
//! in by the role as plain [`SourceState`] values; the election is the `dedup` module's elector.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use serde_json::json;

use super::targets::rfc3339;
use super::{ApiState, success};
use crate::dedup::ShardView;
use crate::http::HttpClient;
use crate::scrape::Health;
use crate::topology::{ClientConfig, NodeRole, Topology};

/// How long one round of probes answers every request (a console refreshes every few seconds,
/// and several may be open).
const PROBE_TTL: Duration = Duration::from_secs(2);
/// How long one probe may take; a node slower than this to say it is ready counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// What a global knows of one source it pulls.
#[derive(Debug, Clone)]
pub struct SourceState {
    /// The source's node name (as in the topology).
    pub node: String,
    pub shard: String,
    pub replica: String,
    /// Health of the last pull.
    pub health: Health,
    pub last_error: String,
    pub last_pull: Option<SystemTime>,
    /// Everything up to this time (ms) from the source is stored (sources whose data is stored).
    pub stored_until: Option<i64>,
}

/// The cluster's shape, built once when the node starts, and the last probes of its nodes.
pub struct ClusterMap {
    this: String,
    /// The topology's picture; replaced when a reload is applied ([`ClusterMap::update`]).
    layout: parking_lot::RwLock<Arc<Layout>>,
    /// The last probes, with the layout they were taken for.
    last_probes: tokio::sync::Mutex<Option<LastProbes>>,
}

/// When the nodes of a layout were last probed, and what was found.
type LastProbes = (Instant, Arc<Layout>, Arc<Vec<Probe>>);

/// What the map draws of one topology.
struct Layout {
    groups: Vec<MapGroup>,
    nodes: Vec<MapNode>,
    pulls: Vec<MapPull>,
}

#[derive(Serialize)]
struct MapGroup {
    name: String,
    kind: &'static str,
    /// Replica sets in order, each with its node names.
    shards: Vec<MapShard>,
    /// What a global pulls (`from:`); empty for other kinds.
    from: Vec<String>,
    /// A global's dedup mode.
    dedup: Option<&'static str>,
}

#[derive(Serialize)]
struct MapShard {
    name: String,
    nodes: Vec<String>,
}

struct MapNode {
    name: String,
    kind: &'static str,
    group: String,
    shard: Option<String>,
    replica: Option<String>,
    url: String,
    /// What answers whether the node is up: a client, or why none could be built.
    probe: Result<HttpClient, String>,
    probe_path: &'static str,
}

/// One edge of the picture: global node `from` pulls node `to`.
struct MapPull {
    from: String,
    to: String,
    shard: String,
    replica: String,
}

#[derive(Clone)]
struct Probe {
    health: &'static str,
    error: String,
}

impl ClusterMap {
    /// The map of `topology` as node `this` serves it.
    pub fn new(topology: &Topology, this: &str) -> ClusterMap {
        ClusterMap {
            this: this.to_string(),
            layout: parking_lot::RwLock::new(Arc::new(Layout::of(topology))),
            last_probes: tokio::sync::Mutex::new(None),
        }
    }

    /// Draws `topology` from now on (a reload was applied); the next request probes anew.
    pub fn update(&self, topology: &Topology) {
        *self.layout.write() = Arc::new(Layout::of(topology));
    }

    fn layout(&self) -> Arc<Layout> {
        self.layout.read().clone()
    }
}

impl Layout {
    fn of(topology: &Topology) -> Layout {
        let mut clients: Vec<(Arc<ClientConfig>, Result<HttpClient, String>)> = Vec::new();
        let mut client_for = |cfg: &Arc<ClientConfig>| -> Result<HttpClient, String> {
            if let Some((_, c)) = clients.iter().find(|(c, _)| Arc::ptr_eq(c, cfg)) {
                return c.clone();
            }
            let c = HttpClient::new(cfg, false).map_err(|e| e.to_string());
            clients.push((cfg.clone(), c.clone()));
            c
        };
        let plain = Arc::new(ClientConfig::default());
        let mut groups: Vec<MapGroup> = Vec::new();
        let mut nodes = Vec::new();
        for n in &topology.nodes {
            let (kind, group, shard, replica, client) = match &n.role {
                NodeRole::Leaf { group, shard, replica } => {
                    let client = topology.leaf_group(group).map(|g| g.client.clone());
                    let shard = format!("{group}-{shard}");
                    (
                        "leaf",
                        group.clone(),
                        Some(shard),
                        Some(crate::topology::replica_letter(*replica)),
                        client,
                    )
                }
                NodeRole::Global { name, replica } => {
                    let client = topology.global(name).map(|g| g.client.clone());
                    (
                        "global",
                        name.clone(),
                        Some(name.clone()),
                        Some(crate::topology::replica_letter(*replica)),
                        client,
                    )
                }
                NodeRole::Push { .. } => {
                    let client = topology.push.as_ref().map(|p| p.client.clone());
                    let tier = crate::topology::PUSH_TIER.to_string();
                    ("push", tier.clone(), Some(tier), None, client)
                }
                NodeRole::Demo { .. } => ("demo", "demo".to_string(), None, None, None),
            };
            let probe = client_for(&client.unwrap_or_else(|| plain.clone()));
            let probe_path = if kind == "demo" { "/-/healthy" } else { "/-/ready" };
            add_to_group(&mut groups, &group, kind, shard.as_deref(), &n.name);
            nodes.push(MapNode {
                name: n.name.clone(),
                kind,
                group,
                shard,
                replica,
                url: n.base_url(),
                probe,
                probe_path,
            });
        }
        let mut pulls = Vec::new();
        for g in &topology.globals {
            if let Some(mg) = groups.iter_mut().find(|m| m.name == g.name && m.kind == "global") {
                mg.from = g.from.clone();
                mg.dedup = Some(g.dedup.as_str());
            }
            let sources = topology.sources(g);
            for s in &sources {
                // External Prometheus servers are not nodes of the topology: they join the map
                // here, under the group that lists them.
                if s.kind == crate::topology::SourceKind::Prometheus
                    && !nodes.iter().any(|n| n.name == s.node)
                {
                    add_to_group(&mut groups, &s.group, "prometheus", Some(&s.shard), &s.node);
                    nodes.push(MapNode {
                        name: s.node.clone(),
                        kind: "prometheus",
                        group: s.group.clone(),
                        shard: Some(s.shard.clone()),
                        replica: Some(s.replica.clone()),
                        url: s.base_url(),
                        probe: client_for(&s.client),
                        probe_path: "/-/ready",
                    });
                }
            }
            for member in topology.members(&g.name) {
                for s in &sources {
                    pulls.push(MapPull {
                        from: member.name.clone(),
                        to: s.node.clone(),
                        shard: s.shard.clone(),
                        replica: s.replica.clone(),
                    });
                }
            }
        }
        Layout { groups, nodes, pulls }
    }
}

impl ClusterMap {
    /// The health of every node of `layout`, probed at most once per [`PROBE_TTL`] whoever asks.
    async fn probes(&self, layout: &Arc<Layout>) -> Arc<Vec<Probe>> {
        let mut last = self.last_probes.lock().await;
        if let Some((at, for_layout, probes)) = last.as_ref()
            && at.elapsed() < PROBE_TTL
            && Arc::ptr_eq(for_layout, layout)
        {
            return probes.clone();
        }
        let mut set = tokio::task::JoinSet::new();
        for (i, n) in layout.nodes.iter().enumerate() {
            if n.name == self.this {
                continue;
            }
            match &n.probe {
                Ok(client) => {
                    let url = format!("{}{}", n.url, n.probe_path);
                    let client = client.clone();
                    set.spawn(async move { (i, probe(&client, &url).await) });
                }
                Err(e) => {
                    let error = format!("cannot build a client to reach it: {e}");
                    set.spawn(async move { (i, Probe { health: "unknown", error }) });
                }
            }
        }
        let mut probes = vec![Probe { health: "up", error: String::new() }; layout.nodes.len()];
        while let Some(done) = set.join_next().await {
            if let Ok((i, p)) = done {
                probes[i] = p;
            }
        }
        let probes = Arc::new(probes);
        *last = Some((Instant::now(), layout.clone(), probes.clone()));
        probes
    }
}

fn add_to_group(
    groups: &mut Vec<MapGroup>,
    group: &str,
    kind: &'static str,
    shard: Option<&str>,
    node: &str,
) {
    let idx = match groups.iter().position(|g| g.name == group && g.kind == kind) {
        Some(i) => i,
        None => {
            groups.push(MapGroup {
                name: group.to_string(),
                kind,
                shards: Vec::new(),
                from: Vec::new(),
                dedup: None,
            });
            groups.len() - 1
        }
    };
    let g = &mut groups[idx];
    let shard = shard.unwrap_or(node);
    match g.shards.iter_mut().find(|s| s.name == shard) {
        Some(s) => s.nodes.push(node.to_string()),
        None => g.shards.push(MapShard { name: shard.to_string(), nodes: vec![node.to_string()] }),
    }
}

/// Asks one node whether it is ready: 2xx is up, anything else down with the reason.
async fn probe(client: &HttpClient, url: &str) -> Probe {
    let down = |error: String| Probe { health: "down", error };
    let req = match client.get(url) {
        Ok(r) => r.timeout(PROBE_TIMEOUT),
        Err(e) => return Probe { health: "unknown", error: e.to_string() },
    };
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Probe { health: "up", error: String::new() },
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            let first = body.lines().next().unwrap_or("").chars().take(200).collect::<String>();
            down(format!("{url}: HTTP {status} {first}").trim_end().to_string())
        }
        Err(e) => down(crate::http::client::error_chain(&e)),
    }
}

/// `GET /api/v1/status/topology`.
pub(super) async fn topology(State(st): State<ApiState>) -> Response {
    let n = &st.node;
    let labels: serde_json::Map<String, serde_json::Value> =
        n.external_labels.iter().map(|l| (l.name.to_string(), json!(l.value.to_string()))).collect();
    let this = json!({
        "name": n.name,
        "role": n.role,
        "cluster": n.cluster,
        "externalLabels": labels,
        "startTime": rfc3339(Some(n.started)),
        "version": env!("CARGO_PKG_VERSION"),
        // Queries may ask for the replicas without query-time dedup (`dedup=false`).
        "dedupSwitch": st.raw_storage.is_some(),
        // The dedup API (`/api/v1/dedup`, pin and unpin) is served.
        "dedupApi": st.elector.is_some(),
    });
    let Some(map) = st.cluster.clone() else {
        return success(json!({"self": this, "groups": [], "nodes": [], "pulls": []}));
    };
    let layout = map.layout();
    let probes = map.probes(&layout).await;
    let nodes: Vec<serde_json::Value> = layout
        .nodes
        .iter()
        .zip(probes.iter())
        .map(|(m, p)| {
            json!({
                "name": m.name,
                "kind": m.kind,
                "group": m.group,
                "shard": m.shard,
                "replica": m.replica,
                "url": m.url,
                "health": p.health,
                "error": p.error,
                "self": m.name == map.this,
            })
        })
        .collect();
    // What this node knows of the edges it pulls itself.
    let sources = (st.sources)();
    let view: Vec<ShardView> = st.elector.as_ref().map(|e| e.view(Instant::now())).unwrap_or_default();
    let now = crate::model::now_ms();
    let pulls: Vec<serde_json::Value> = layout
        .pulls
        .iter()
        .map(|p| {
            let state = (p.from == map.this)
                .then(|| sources.iter().find(|s| s.node == p.to && s.shard == p.shard))
                .flatten()
                .map(|s| {
                    let set = view.iter().find(|v| v.shard == s.shard);
                    let elected = set.map(|v| v.elected.as_deref() == Some(s.replica.as_str()));
                    let pinned = set.is_some_and(|v| v.pinned.as_deref() == Some(s.replica.as_str()));
                    // A standby's cursor is where it stood when it was last elected: no lag.
                    let lag = s
                        .stored_until
                        .filter(|_| elected != Some(false))
                        .map(|t| ((now - t).max(0) as f64) / 1000.0);
                    json!({
                        "health": s.health.as_str(),
                        "error": s.last_error,
                        "lastPull": s.last_pull.map(|t| rfc3339(Some(t))),
                        "lagSeconds": lag,
                        "elected": elected,
                        "pinned": pinned,
                    })
                });
            json!({"from": p.from, "to": p.to, "shard": p.shard, "replica": p.replica, "state": state})
        })
        .collect();
    success(json!({"self": this, "groups": layout.groups, "nodes": nodes, "pulls": pulls}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiState, NodeInfo, router};
    use crate::dedup::Elector;
    use crate::metrics::Registry;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// Ports nothing listens on (bound, then released).
    fn closed_ports(n: usize) -> Vec<u16> {
        let held: Vec<std::net::TcpListener> =
            (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        held.iter().map(|l| l.local_addr().unwrap().port()).collect()
    }

    #[tokio::test]
    async fn topology_shows_nodes_probed_pulls_and_the_election() {
        // apps-0-a answers /-/ready; apps-0-b and the demo target do not listen at all.
        let ready = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = ready.local_addr().unwrap().port();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = {
            let app = axum::Router::new().route("/-/ready", axum::routing::get(|| async { "ready\n" }));
            let stop = stop.clone();
            tokio::spawn(async move {
                axum::serve(ready, app).with_graceful_shutdown(stop.cancelled_owned()).await.unwrap()
            })
        };
        let closed = closed_ports(3);
        let text = format!(
            "cluster: t\n\
             demo: {{targets: 1, listen: '127.0.0.1:{demo}'}}\n\
             jobs: [{{job_name: demo, static_configs: [{{targets: ['127.0.0.1:{demo}']}}]}}]\n\
             leaves: [{{group: apps, jobs: [demo], shards: 1, replicas: 2, listen: '127.0.0.1:{a}'}}]\n\
             globals: [{{name: global, from: [apps], listen: '127.0.0.1:{g}', dedup: {{mode: failover}}}}]\n\
             nodes: {{apps-0-b: {{listen: '127.0.0.1:{b}'}}}}\n",
            demo = closed[0],
            b = closed[1],
            g = closed[2],
        );
        let topology = crate::topology::parse(&text, std::path::Path::new("/nonexistent/t.yaml")).unwrap();

        let elector = Arc::new(Elector::new(
            &[("apps-0".to_string(), vec!["a".to_string(), "b".to_string()])],
            Duration::from_secs(3),
            Instant::now(),
        ));
        elector.pin("apps-0", Some("a"), Instant::now()).unwrap();
        let stored_until = crate::model::now_ms() - 2_500;
        let node = NodeInfo {
            name: "global-a".into(),
            role: "global (failover dedup)".into(),
            cluster: "t".into(),
            external_labels: crate::model::Labels::from_pairs(&[("cluster", "t")]),
            started: SystemTime::now(),
        };
        let mut st = ApiState::minimal(node, Arc::new(Registry::new()));
        st.cluster = Some(Arc::new(ClusterMap::new(&topology, "global-a")));
        st.elector = Some(elector);
        st.sources = Arc::new(move || {
            ["a", "b"]
                .iter()
                .map(|r| SourceState {
                    node: format!("apps-0-{r}"),
                    shard: "apps-0".into(),
                    replica: r.to_string(),
                    health: if *r == "a" { Health::Up } else { Health::Down },
                    last_error: if *r == "a" { String::new() } else { "connection refused".into() },
                    last_pull: Some(SystemTime::now()),
                    stored_until: Some(stored_until),
                })
                .collect()
        });
        let resp = router(st)
            .oneshot(Request::get("/api/v1/status/topology").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let data = &v["data"];
        assert_eq!(data["self"]["name"], "global-a");
        assert_eq!(data["self"]["dedupApi"], true);
        assert_eq!(data["self"]["dedupSwitch"], false);

        let node = |name: &str| {
            data["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).cloned().unwrap()
        };
        assert_eq!(node("apps-0-a")["health"], "up", "{data}");
        assert_eq!(node("apps-0-a")["url"], format!("http://127.0.0.1:{a}"));
        assert_eq!(node("apps-0-b")["health"], "down", "{data}");
        assert!(node("apps-0-b")["error"].as_str().unwrap().contains(&closed[1].to_string()), "{data}");
        assert_eq!(node("demo-0")["health"], "down", "{data}");
        // This node is serving the answer: up without asking itself.
        assert_eq!(node("global-a")["health"], "up");
        assert_eq!(node("global-a")["self"], true);

        let groups: Vec<(&str, &str)> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["name"].as_str().unwrap(), g["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(groups, [("apps", "leaf"), ("global", "global"), ("demo", "demo")]);
        assert_eq!(data["groups"][0]["shards"][0]["nodes"], serde_json::json!(["apps-0-a", "apps-0-b"]));
        assert_eq!(data["groups"][1]["from"], serde_json::json!(["apps"]));
        assert_eq!(data["groups"][1]["dedup"], "failover");

        let pulls = data["pulls"].as_array().unwrap();
        assert_eq!(pulls.len(), 2, "{data}");
        let a_state = &pulls[0]["state"];
        assert_eq!(pulls[0]["to"], "apps-0-a");
        assert_eq!(a_state["elected"], true);
        assert_eq!(a_state["pinned"], true);
        assert_eq!(a_state["health"], "up");
        let lag = a_state["lagSeconds"].as_f64().unwrap();
        assert!((2.4..60.0).contains(&lag), "lag {lag}");
        let b_state = &pulls[1]["state"];
        assert_eq!(b_state["elected"], false);
        assert_eq!(b_state["health"], "down");
        assert_eq!(b_state["error"], "connection refused");
        // A standby's cursor says nothing about lag.
        assert!(b_state["lagSeconds"].is_null());

        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn outside_a_topology_only_the_node_itself() {
        let node = NodeInfo {
            name: "n".into(),
            role: "leaf".into(),
            cluster: "c".into(),
            external_labels: crate::model::Labels::default(),
            started: SystemTime::now(),
        };
        let resp = router(ApiState::minimal(node, Arc::new(Registry::new())))
            .oneshot(Request::get("/api/v1/status/topology").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"]["self"]["name"], "n");
        assert_eq!(v["data"]["nodes"], serde_json::json!([]));
    }
}
