//! The accept loop every node serves with: plain HTTP or TLS (rustls; HTTP/1.1 and HTTP/2 by
//! ALPN; client certificates when configured), a bound on how long a client may take to send its
//! request headers and to finish a TLS handshake, a cap on open connections, and a graceful stop:
//! on shutdown no new connection is accepted, requests in flight get a grace period, then the
//! rest are closed. Certificate and key files are re-read when they change (checked at most once
//! a second), so rotating them needs no restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use super::pem::{self, PemError};
use crate::topology::{ClientAuth, TlsServerConfig};

/// Listener settings beyond the router.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Built with [`tls_config`] before serving, so a bad certificate stops the node at start.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a client may take to send a request's headers (HTTP/1) or finish the TLS
    /// handshake.
    pub header_read_timeout: Duration,
    /// Open connections at most; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long requests in flight may run on after shutdown.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            tls: None,
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("tls_server_config: {0}")]
    Pem(#[from] PemError),
    #[error("tls_server_config: {0}")]
    Tls(String),
    #[error("web config: {0}")]
    Config(String),
}

/// The rustls server configuration for `t`.
pub fn tls_config(t: &TlsServerConfig) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let builder = match (&t.client_ca_file, t.client_auth) {
        (Some(ca), ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify) => {
            let roots = Arc::new(pem::roots(ca)?);
            let mut v = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            if t.client_auth == ClientAuth::VerifyIfGiven {
                v = v.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(v.build().map_err(|e| ServeError::Tls(e.to_string()))?)
        }
        _ => builder.with_no_client_auth(),
    };
    let resolver = FileCert::load(t.cert_file.clone(), t.key_file.clone(), provider)?;
    let mut cfg = builder.with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The served certificate, reloaded when its files change.
#[derive(Debug)]
struct FileCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    key: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl FileCert {
    fn load(
        cert_file: PathBuf,
        key_file: PathBuf,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<FileCert, ServeError> {
        let key = Self::read(&cert_file, &key_file, &provider)?;
        let stamps = (modified(&cert_file), modified(&key_file));
        Ok(FileCert {
            cert_file,
            key_file,
            provider,
            current: Mutex::new(CertState { key, stamps, checked: Instant::now() }),
        })
    }

    fn read(
        cert_file: &std::path::Path,
        key_file: &std::path::Path,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<Arc<CertifiedKey>, ServeError> {
        let certs = pem::certs(cert_file)?;
        let key = pem::key(key_file)?;
        let signer = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| ServeError::Tls(format!("{}: {e}", key_file.display())))?;
        let ck = CertifiedKey::new(certs, signer);
        ck.keys_match().map_err(|e| {
            ServeError::Tls(format!("{} does not match {}: {e}", key_file.display(), cert_file.display()))
        })?;
        Ok(Arc::new(ck))
    }
}

fn modified(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl ResolvesServerCert for FileCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut cur = self.current.lock();
        if cur.checked.elapsed() >= Duration::from_secs(1) {
            cur.checked = Instant::now();
            let stamps = (modified(&self.cert_file), modified(&self.key_file));
            if stamps != cur.stamps {
                // A half-written pair fails to load; keep serving the old one and try again.
                match Self::read(&self.cert_file, &self.key_file, &self.provider) {
                    Ok(k) => {
                        cur.key = k;
                        cur.stamps = stamps;
                        tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reload the TLS certificate; serving the previous one")
                    }
                }
            }
        }
        Some(cur.key.clone())
    }
}

/// Serves `app` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: &ServerOptions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let acceptor = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout);
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let mut conns = JoinSet::new();
    let mut accept_failing = false;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let accepted = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break None,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                r = listener.accept() => break Some(r),
            }
        };
        let Some(accepted) = accepted else { break };
        let (tcp, _peer) = match accepted {
            Ok(x) => {
                accept_failing = false;
                x
            }
            Err(e) => {
                // Out of file descriptors and the like: say so once, back off, keep serving.
                if !accept_failing {
                    tracing::warn!(error = %e, "cannot accept connections");
                    accept_failing = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let handshake_timeout = opts.header_read_timeout;
        conns.spawn(async move {
            let _slot = slot;
            let io = match acceptor {
                Some(a) => match tokio::time::timeout(handshake_timeout, a.accept(tcp)).await {
                    Ok(Ok(tls)) => Either::Right(tls),
                    // Failed handshakes (wrong CA, plain HTTP on a TLS port, scanners) are the
                    // client's problem; at debug level they help someone setting up mTLS.
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
                None => Either::Left(tcp),
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            let _ = watcher.watch(conn.into_owned()).await;
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(opts.shutdown_grace) => {
            tracing::warn!("requests still running after the shutdown grace period; closing them");
        }
    }
    conns.shutdown().await;
    Ok(())
}
