//! HTTP clients built from a [`ClientConfig`]: the TLS settings Prometheus's `tls_config` has
//! (CA file, client certificate, server name, insecure_skip_verify) and credentials applied to
//! every request (secret files re-read each time, as Prometheus does). Scrapes and federation
//! pulls use it; so will every later client (remote write, push forwarding).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::pem::{self, PemError};
use crate::topology::{Auth, ClientConfig, TlsConfig};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("tls_config: {0}")]
    Pem(#[from] PemError),
    #[error("tls_config: {0}")]
    Tls(String),
    #[error("cannot build HTTP client: {0}")]
    Build(String),
    /// A password or token file that cannot be read (its contents never appear here).
    #[error("cannot read credentials: {0}")]
    Credentials(std::io::Error),
}

/// A configured client; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    http: reqwest::Client,
    auth: Option<Auth>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("auth", &self.auth).finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client for `cfg`; `gzip` asks servers for compressed bodies.
    pub fn new(cfg: &ClientConfig, gzip: bool) -> Result<HttpClient, ClientError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("promtier/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(2);
        if !gzip {
            b = b.no_gzip();
        }
        if let Some(tls) = rustls_config(&cfg.tls)? {
            b = b.tls_backend_preconfigured(tls);
        }
        let http = b.build().map_err(|e| ClientError::Build(error_chain(&e)))?;
        Ok(HttpClient { http, auth: cfg.auth.clone() })
    }

    /// A GET of `url` with the configured credentials.
    pub fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, ClientError> {
        self.authorize(self.http.get(url))
    }

    /// A request of any method to `url` with the configured credentials.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        self.authorize(self.http.request(method, url))
    }

    /// A POST to `url` with the configured credentials.
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, ClientError> {
        self.authorize(self.http.post(url))
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, ClientError> {
        Ok(match &self.auth {
            Some(Auth::Basic { username, password }) => {
                req.basic_auth(username, Some(password.read().map_err(ClientError::Credentials)?))
            }
            Some(Auth::Bearer(token)) => req.bearer_auth(token.read().map_err(ClientError::Credentials)?),
            None => req,
        })
    }
}

/// The rustls configuration for `tls`, or `None` when it asks for nothing beyond the defaults
/// (the system's roots, no client certificate).
fn rustls_config(tls: &TlsConfig) -> Result<Option<rustls::ClientConfig>, ClientError> {
    if *tls == TlsConfig::default() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(AcceptAnyCert(provider.clone()))
    } else {
        // As Prometheus: a CA file replaces the system's roots.
        let roots = match &tls.ca_file {
            Some(f) => pem::roots(f)?,
            None => system_roots()?,
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        match &tls.server_name {
            Some(name) => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|e| ClientError::Tls(format!("server_name {name:?}: {e}")))?;
                Arc::new(ExpectName { inner: webpki, name })
            }
            None => webpki,
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(pem::certs(c)?, pem::key(k)?)
            .map_err(|e| ClientError::Tls(format!("{} / {}: {e}", c.display(), k.display())))?,
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(cfg))
}

fn system_roots() -> Result<rustls::RootCertStore, ClientError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(ClientError::Tls("no system CA certificates found; set ca_file".into()));
    }
    Ok(store)
}

/// Verifies the chain as usual but against a configured name instead of the URL's host
/// (`server_name`).
#[derive(Debug)]
struct ExpectName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ExpectName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate is accepted (the handshake's signatures are still
/// checked, so the connection is encrypted to whoever holds the key).
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The error with its causes, as reqwest's Display alone hides the useful part (a TLS or
/// connection failure is in the source chain).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}
