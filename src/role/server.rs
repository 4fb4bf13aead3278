//! Binding a node's listener and serving its router until shutdown, with the node's `web:`
//! settings (TLS, access control, CORS). Everything that can be wrong with those settings (a
//! certificate that does not load, a bad regex) fails at bind time, before the node starts work.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::ServerOptions;
use crate::topology::WebConfig;

/// A bound listener with its checked settings.
pub(crate) struct Listener {
    tcp: TcpListener,
    web: WebConfig,
    opts: ServerOptions,
}

/// Binds `addr` and loads `web`'s certificates, failing with a message that names the address
/// or file.
pub(crate) async fn bind(addr: &str, web: &WebConfig) -> anyhow::Result<Listener> {
    let tls = match &web.tls {
        Some(t) => Some(Arc::new(crate::http::server::tls_config(t).context("cannot serve TLS")?)),
        None => None,
    };
    let tcp = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Listener { tcp, web: web.clone(), opts: ServerOptions { tls, ..ServerOptions::default() } })
}

/// Serves `app` until `shutdown`, finishing requests in flight (within a grace period).
pub(crate) async fn serve(
    listener: Listener,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = crate::http::protect(app, &listener.web)?;
    crate::http::server::serve(listener.tcp, app, &listener.opts, shutdown).await?;
    Ok(())
}
