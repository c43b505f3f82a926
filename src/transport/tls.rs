//! The one rustls configuration every protocol uses: the ring provider, exactly the configured CA
//! when one is set (else the system roots), and the client certificate and key as a pair.
//!
//! A configured file that is missing or unreadable makes TLS *not ready*: nothing is sent, and
//! never in clear; delivery resumes once the file appears.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{BoxError, chain};

/// Certificate files for TLS. Only read for an `https` endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// When set, the only CA trusted; otherwise the system roots.
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// TLS cannot be set up (yet): nothing may be sent, and never in clear.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// A configured file is missing or unreadable: it may appear later.
    #[error("TLS not ready: {path}: {source}")]
    NotReady {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A configured file is there but unusable.
    #[error("TLS misconfigured: {path}: {what}{}", source.as_deref().map(|s| format!(": {}", chain(s))).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Option<BoxError>,
    },
    /// No CA file is configured and the system has no usable CA certificate: every handshake
    /// would fail, and back off, for ever.
    #[error("TLS misconfigured: the system's CA certificates: {found}; give one with --ca-file")]
    NoSystemRoots { found: String },
    #[error("TLS misconfigured: {0}")]
    Rustls(#[source] rustls::Error),
    #[error(
        "TLS misconfigured: a client certificate and a client key go together; only the {given} is set"
    )]
    HalfPair { given: &'static str },
}

/// Builds the rustls configuration (module doc).
///
/// # Errors
///
/// [`TlsError::NotReady`] for a file that is missing or unreadable, [`TlsError::Invalid`] for
/// one that holds no usable PEM, [`TlsError::HalfPair`] for a certificate without a key or the
/// reverse. Each names the path.
pub fn tls_config(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca_file {
        Some(path) => {
            let certs = read_certs(path)?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| invalid(path, "not a usable CA certificate", e))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (_, unusable) = roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                let found = native.errors.first().map_or_else(
                    || format!("none found ({unusable} unusable)"),
                    ToString::to_string,
                );
                return Err(TlsError::NoSystemRoots { found });
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots);
    match (&files.client_cert, &files.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let certs = read_certs(cert_path)?;
            let key = read_key(key_path)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| invalid(key_path, "does not match the client certificate", e))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(TlsError::HalfPair {
            given: "certificate",
        }),
        (None, Some(_)) => Err(TlsError::HalfPair { given: "key" }),
    }
}

/// The HTTP version a connector offers (over TLS, by ALPN).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Http {
    One,
    /// HTTP/2 only: gRPC.
    Two,
}

/// The connector of an endpoint: TCP (no Nagle, the connect timeout), and TLS with
/// [`tls_config`] for an `https` endpoint, which always goes through TLS, never in clear.
pub(crate) fn connector(
    settings: &super::TransportSettings,
    version: Http,
) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let tls = if settings.endpoint.scheme() == Some(&http::uri::Scheme::HTTPS) {
        tls_config(&settings.tls)?
    } else {
        // Never used: the endpoint is plain http. Empty roots cost nothing to build.
        unused_config()
    };
    let mut tcp = HttpConnector::new();
    // HttpConnector won't enforce the scheme, but HttpsConnector will.
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(settings.connect_timeout);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    Ok(match version {
        Http::One => builder.enable_http1().wrap_connector(tcp),
        Http::Two => builder.enable_http2().wrap_connector(tcp),
    })
}

/// A configuration that trusts nothing, for a plain `http` endpoint (where it is never used).
fn unused_config() -> ClientConfig {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

fn invalid(
    path: &Path,
    what: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        what,
        source: Some(Arc::new(source)),
    }
}

/// Reads a file, telling "not there (yet)" apart from "there but bad".
fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| not_ready(path, e))
}

fn not_ready(path: &Path, e: std::io::Error) -> TlsError {
    TlsError::NotReady {
        path: path.to_owned(),
        source: Arc::new(e),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, "not a PEM certificate file", e))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            path: path.to_owned(),
            what: "no certificate in it",
            source: None,
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| invalid(path, "no usable PEM private key", e))
}

/// Checks, without reading contents, that the files an https endpoint needs are all there.
pub fn tls_files_present(files: &TlsFiles) -> Result<(), TlsError> {
    for path in [&files.ca_file, &files.client_cert, &files.client_key]
        .into_iter()
        .flatten()
    {
        std::fs::File::open(path).map_err(|e| not_ready(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_are_not_ready_when_missing_and_invalid_when_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            ca_file: Some(tmp.path().join("ca.pem")),
            ..TlsFiles::default()
        };
        assert!(matches!(
            tls_config(&missing),
            Err(TlsError::NotReady { .. })
        ));
        assert!(tls_files_present(&missing).is_err());
        std::fs::write(tmp.path().join("ca.pem"), "hello").unwrap();
        let err = tls_config(&missing).unwrap_err();
        assert!(matches!(err, TlsError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"));
        let half = TlsFiles {
            client_cert: Some(tmp.path().join("c.pem")),
            ..TlsFiles::default()
        };
        assert!(matches!(
            tls_config(&half).unwrap_err(),
            TlsError::HalfPair {
                given: "certificate"
            }
        ));
    }
}
