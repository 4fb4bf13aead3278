//! Certificates and private keys read from PEM files, with errors that name the file.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct PemError {
    pub path: std::path::PathBuf,
    pub reason: String,
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> PemError {
    PemError { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Every certificate in `path` (at least one).
pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let data = std::fs::read(path).map_err(|e| fail(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(fail(path, "no certificate in it (want -----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The private key in `path` (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let data = std::fs::read(path).map_err(|e| fail(path, e))?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| fail(path, format!("no usable private key in it: {e}")))
}

/// A root store holding every certificate of `path`.
pub(crate) fn roots(path: &Path) -> Result<rustls::RootCertStore, PemError> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs(path)? {
        store.add(c).map_err(|e| fail(path, format!("unusable CA certificate: {e}")))?;
    }
    Ok(store)
}
