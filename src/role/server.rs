//! Binding a node's listener and serving it until shutdown, with the node's `web:` settings (TLS,
//! access control, CORS). Everything that can be wrong with those settings (a certificate that
//! does not load, a bad regex) or the address (in use) fails at bind time, before the node
//! starts work.
//!
//! A node binds first and serves at once: while it starts (its TSDB replaying the WAL, which can
//! take minutes) a starting router answers `/-/healthy`, `/-/ready` (503, saying what the node is
//! doing) and `/metrics`; once everything is built the node switches the same listener to its
//! full router. Every request is handed to whichever router is current, so connections opened
//! before the switch go on working after it, and none is refused in between. The access control
//! and CORS wrap the switch, so they hold in both phases.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::http::ServerOptions;
use crate::metrics::Registry;
use crate::topology::{Node, WebConfig};
use crate::tsdb::OpenProgress;

/// A bound listener with its checked settings, serving `starting` until switched.
pub(crate) struct Listener {
    tcp: TcpListener,
    opts: ServerOptions,
    /// The switch wrapped in the listener's access control and CORS.
    app: Router,
    current: Arc<RwLock<Router>>,
}

/// Binds `addr`, loads `web`'s certificates and builds its access control, failing with a
/// message that names the address or file. Serves `starting` once [`serve_while`] runs.
pub(crate) async fn bind(addr: &str, web: &WebConfig, starting: Router) -> anyhow::Result<Listener> {
    let tls = match &web.tls {
        Some(t) => Some(Arc::new(crate::http::server::tls_config(t).context("cannot serve TLS")?)),
        None => None,
    };
    let current = Arc::new(RwLock::new(starting));
    let app = {
        let current = current.clone();
        // One read lock and one `Arc` clone per request: nothing next to a request's own work.
        Router::new().fallback(move |req: Request| {
            let router = current.read().clone();
            async move {
                match router.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            }
        })
    };
    let app = crate::http::protect(app, web)?;
    let tcp = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Listener { tcp, opts: ServerOptions { tls, ..ServerOptions::default() }, app, current })
}

/// Serves `app` until `shutdown` (a node with nothing to start first).
pub(crate) async fn serve(
    listener: Listener,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    *listener.current.write() = app;
    crate::http::server::serve(listener.tcp, listener.app, &listener.opts, shutdown).await?;
    Ok(())
}

/// The router a storing node serves while it starts: `/-/ready` says what opening its TSDB is
/// doing (`progress`), `/metrics` shows `registry` (where the replay's progress is registered).
pub(crate) fn starting_router(registry: &Arc<Registry>, progress: Arc<OpenProgress>) -> Router {
    crate::api::starting_router(registry.clone(), Arc::new(move || progress.describe()))
}

/// What a storing node's start gets: its `/metrics` registry (process metrics and the WAL
/// replay's progress already registered), the progress its TSDB open reports into, and its
/// listener, to switch to the full router.
pub(crate) struct Starting {
    pub(crate) registry: Arc<Registry>,
    pub(crate) progress: Arc<OpenProgress>,
    pub(crate) serving: Serving,
}

/// Runs a storing node (leaf, global, push node; `kind` for the log): builds its registry,
/// binds its listener serving the starting router, then runs `start` (see [`serve_while`]).
pub(crate) async fn run_storing_node<S, Fut>(
    node: &Node,
    kind: &str,
    shutdown: CancellationToken,
    start: S,
) -> anyhow::Result<()>
where
    S: FnOnce(Starting, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let registry = Arc::new(Registry::new());
    crate::metrics::register_process_metrics(&registry, &node.name);
    let progress = Arc::new(OpenProgress::default());
    super::telemetry::register_open_metrics(&registry, progress.clone());
    let listener = bind(&node.listen, &node.web, starting_router(&registry, progress.clone())).await?;
    tracing::info!(node = %node.name, listen = %node.listen, "{kind} listening; starting (not ready yet)");
    serve_while(listener, shutdown, |serving, shutdown| {
        start(Starting { registry, progress, serving }, shutdown)
    })
    .await
}

/// The node's side of a served listener: switches it to the full router, then waits for the
/// server to stop.
pub(crate) struct Serving {
    current: Arc<RwLock<Router>>,
    stopped: CancellationToken,
}

impl Serving {
    /// Serves `app` from now on (requests already running finish on the starting router) and
    /// waits until the server has stopped (on shutdown, after requests in flight finished).
    pub(crate) async fn serve(self, app: Router) {
        *self.current.write() = app;
        self.stopped.cancelled().await;
    }
}

/// Serves `listener` while `work` starts the node and runs it. `work` gets the [`Serving`] to
/// switch to its full router with, and the token its tasks stop on (`shutdown`, also cancelled
/// if the server stops on its own). The server stops on `shutdown`, or when `work` returns (a
/// start that failed); `work` finishes after it, so a node closes its storage once no request
/// can reach it.
pub(crate) async fn serve_while<W, Fut>(
    listener: Listener,
    shutdown: CancellationToken,
    work: W,
) -> anyhow::Result<()>
where
    W: FnOnce(Serving, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let Listener { tcp, opts, app, current } = listener;
    let node_shutdown = shutdown.child_token();
    let stop_server = shutdown.child_token();
    let stopped = CancellationToken::new();
    let serving = async {
        let r = crate::http::server::serve(tcp, app, &opts, stop_server.clone()).await;
        stopped.cancel();
        node_shutdown.cancel();
        r
    };
    let working = async {
        let r = work(Serving { current, stopped: stopped.clone() }, node_shutdown.clone()).await;
        stop_server.cancel();
        r
    };
    let (served, worked) = tokio::join!(serving, working);
    worked?;
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn serves_the_starting_router_then_switches_on_the_same_listener() {
        let registry = Arc::new(Registry::new());
        let progress = Arc::new(OpenProgress::default());
        let listener = bind("127.0.0.1:0", &WebConfig::default(), starting_router(&registry, progress))
            .await
            .expect("bind");
        let addr = listener.tcp.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let stop = shutdown.clone();
        let checks = async move {
            assert_eq!(get(addr, "/-/healthy").await.0, 200);
            let (status, body) = get(addr, "/-/ready").await;
            assert_eq!(status, 503);
            assert!(body.contains("starting: about to open the TSDB"), "{body}");
            assert_eq!(get(addr, "/api/v1/query?query=1").await.0, 503);
            assert_eq!(get(addr, "/metrics").await.0, 200);
            go.send(()).expect("switch");
            tokio::time::timeout(Duration::from_secs(30), async {
                while get(addr, "/-/ready").await.0 != 200 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("switched within 30 s");
            stop.cancel();
        };
        let served = serve_while(listener, shutdown, |serving, _| async move {
            let _ = gate.await;
            let app = Router::new().route("/-/ready", axum::routing::get(|| async { "ready\n" }));
            serving.serve(app).await;
            Ok(())
        });
        let (r, ()) = tokio::join!(served, checks);
        r.expect("served");
    }

    #[tokio::test]
    async fn the_starting_router_has_the_listeners_access_control() {
        let web = WebConfig {
            users: vec![crate::topology::WebUser {
                name: "admin".into(),
                bcrypt_hash: bcrypt::hash("secret", 4).expect("hash"),
                access: crate::topology::Access { read: true, write: true, admin: true },
            }],
            ..WebConfig::default()
        };
        let registry = Arc::new(Registry::new());
        let listener =
            bind("127.0.0.1:0", &web, starting_router(&registry, Arc::default())).await.expect("bind");
        let addr = listener.tcp.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let checks = async move {
            assert_eq!(get(addr, "/-/healthy").await.0, 200);
            assert_eq!(get(addr, "/-/ready").await.0, 503);
            assert_eq!(get(addr, "/metrics").await.0, 401, "/metrics needs a user while starting too");
            stop.cancel();
        };
        // Still starting until the checks are done.
        let served = serve_while(listener, shutdown, |serving, shutdown| async move {
            shutdown.cancelled().await;
            serving.serve(Router::new()).await;
            Ok(())
        });
        let (r, ()) = tokio::join!(served, checks);
        r.expect("served");
    }

    #[tokio::test]
    async fn a_failed_start_stops_the_server() {
        let registry = Arc::new(Registry::new());
        let listener = bind("127.0.0.1:0", &WebConfig::default(), starting_router(&registry, Arc::default()))
            .await
            .expect("bind");
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            serve_while(listener, CancellationToken::new(), |_, _| async { anyhow::bail!("no TSDB") }),
        )
        .await
        .expect("returns");
        assert!(r.is_err_and(|e| e.to_string() == "no TSDB"));
    }
}
