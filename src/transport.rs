//! OTLP/HTTP delivery of pre-encoded bytes, over hyper and rustls (ring). Knows HTTP, not disk.
//!
//! What an answer means (CONTRACT §4) is decided here, once, in [`classify`]:
//!
//! | answer | result |
//! |---|---|
//! | 2xx | [`Accepted`], with `partial_success.rejected_spans` |
//! | 429, 502, 503, 504; refused, reset, timeout, TLS failure | [`SendError::Retryable`] (+ `Retry-After`) |
//! | 400 with an OTLP error body (protobuf or JSON), 413 | [`SendError::BadData`]: never retry |
//! | anything else (401, 403, 404, 500, a proxy's HTML 400, …) | [`SendError::Misconfigured`]: keep the data |

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;

use crate::encode::{Format, RpcStatus};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const USER_AGENT_VALUE: &str = concat!("tracespool/", env!("CARGO_PKG_VERSION"));
/// Answers are small; anything longer is cut (its meaning is in the status line).
const MAX_ANSWER: usize = 64 * 1024;
/// A `Retry-After` longer than this is taken as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

/// Certificate files for TLS. Only read for an `https` endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// When set, the only CA trusted; otherwise the system roots.
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    pub endpoint: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub compression: Compression,
    pub tls: TlsFiles,
    /// Gives up on a TCP connect after this long (each send is also bounded as a whole).
    pub connect_timeout: Option<Duration>,
}

/// TLS cannot be set up (yet): nothing may be sent, and never in clear.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A configured file is missing or unreadable: it may appear later (CONTRACT §5).
    #[error("TLS not ready: {path}: {reason}")]
    NotReady { path: PathBuf, reason: String },
    /// A configured file is there but unusable.
    #[error("TLS misconfigured: {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "TLS misconfigured: a client certificate and a client key go together; only the {given} is set"
    )]
    HalfPair { given: &'static str },
}

/// The backend took the batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Spans the backend refused (`partial_success.rejected_spans`).
    pub rejected_spans: u64,
    /// The backend's message, if it gave one.
    pub message: Option<String>,
}

/// The batch was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later; keep the data.
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// No answer in time: retryable; the backend may have the batch all the same.
    #[error("no answer from {endpoint} within {after:?}")]
    TimedOut { endpoint: String, after: Duration },
    /// The backend says the data is bad: do not retry it.
    #[error("HTTP {status}: the backend rejected the data as invalid: {message}")]
    BadData { status: u16, message: String },
    /// The answer proves nothing about the data; the endpoint or credentials look wrong.
    #[error(
        "HTTP {status} from {endpoint}: the endpoint or credentials look wrong{}",
        detail(message)
    )]
    Misconfigured {
        status: u16,
        endpoint: String,
        message: String,
        retry_after: Option<Duration>,
    },
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    }
}

impl SendError {
    /// The data must be kept for a later attempt.
    pub fn keeps_data(&self) -> bool {
        !matches!(self, SendError::BadData { .. })
    }

    /// How long the server asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Retryable { retry_after, .. }
            | SendError::Misconfigured { retry_after, .. } => *retry_after,
            SendError::BadData { .. } | SendError::TimedOut { .. } => None,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::TimedOut { .. })
    }
}

/// Builds the rustls configuration: the ring provider, exactly the configured CA when one is
/// set (else the system roots), and the client certificate and key as a pair.
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
                    .map_err(|e| invalid(path, format!("not a usable CA certificate: {e}")))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (_, unusable) = roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                // Every https send would fail its handshake, and back off, for ever.
                let why = native.errors.first().map_or_else(
                    || format!("none found ({unusable} unusable)"),
                    ToString::to_string,
                );
                return Err(TlsError::Invalid {
                    path: PathBuf::from("the system's CA certificates"),
                    reason: format!("{why}; give one with --ca-file"),
                });
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
    match (&files.client_cert, &files.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let certs = read_certs(cert_path)?;
            let key = read_key(key_path)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                invalid(
                    key_path,
                    format!("does not match the client certificate: {e}"),
                )
            })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(TlsError::HalfPair {
            given: "certificate",
        }),
        (None, Some(_)) => Err(TlsError::HalfPair { given: "key" }),
    }
}

fn invalid(path: &Path, reason: String) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        reason,
    }
}

/// Reads a file, telling "not there (yet)" apart from "there but bad".
fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::NotReady {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "no certificate in it".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| invalid(path, format!("no usable PEM private key: {e}")))
}

/// Checks, without reading contents, that the files an https endpoint needs are all there.
pub fn tls_files_present(files: &TlsFiles) -> Result<(), TlsError> {
    for path in [&files.ca_file, &files.client_cert, &files.client_key]
        .into_iter()
        .flatten()
    {
        if let Err(e) = std::fs::File::open(path) {
            return Err(TlsError::NotReady {
                path: path.clone(),
                reason: e.to_string(),
            });
        }
    }
    Ok(())
}

/// An HTTP client bound to one endpoint.
#[derive(Debug)]
pub struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    settings: TransportSettings,
}

impl Transport {
    /// Sets up the client. For an `https` endpoint this reads the certificate files.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when TLS cannot be set up: nothing will be sent.
    pub fn new(settings: TransportSettings) -> Result<Transport, TlsError> {
        let https = settings.endpoint.scheme() == Some(&http::uri::Scheme::HTTPS);
        let tls = if https {
            tls_config(&settings.tls)?
        } else {
            // Never used: the endpoint is plain http. Empty roots cost nothing to build.
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };
        let mut http = HttpConnector::new();
        // HttpConnector won't enforce the scheme, but HttpsConnector will: an https URI always
        // goes through TLS, never in clear.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(settings.connect_timeout);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Transport { client, settings })
    }

    pub fn endpoint(&self) -> &Uri {
        &self.settings.endpoint
    }

    /// POSTs one encoded `ExportTraceServiceRequest`, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// A [`SendError`] that says whether to keep the data and when to try again.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the request; the backend may or may not have the batch.
    pub async fn send(&self, body: Bytes, timeout: Duration) -> Result<Accepted, SendError> {
        match tokio::time::timeout(timeout, self.send_inner(body)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::TimedOut {
                endpoint: shown(&self.settings.endpoint),
                after: timeout,
            }),
        }
    }

    async fn send_inner(&self, body: Bytes) -> Result<Accepted, SendError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.settings.endpoint.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )
            .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        for (name, value) in &self.settings.headers {
            request = request.header(name, value);
        }
        let body = match self.settings.compression {
            Compression::None => body,
            Compression::Gzip => {
                request = request.header(CONTENT_ENCODING, "gzip");
                Bytes::from(gzip(&body))
            }
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| SendError::Retryable {
                reason: format!("building the request: {e}"),
                retry_after: None,
            })?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| SendError::Retryable {
                reason: format!(
                    "sending to {}: {}",
                    shown(&self.settings.endpoint),
                    error_chain(&e)
                ),
                retry_after: None,
            })?;
        let (parts, body) = response.into_parts();
        // A body we cannot read in full still leaves the status to go by.
        let answer = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        classify(
            parts.status,
            header(CONTENT_TYPE),
            header(RETRY_AFTER),
            &answer,
            &self.settings.endpoint,
            SystemTime::now(),
        )
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// The endpoint for messages, which may end up on disk (`last_error`): without its query, where
/// a key could be.
pub fn shown(endpoint: &Uri) -> String {
    format!(
        "{}://{}{}",
        endpoint.scheme_str().unwrap_or("?"),
        endpoint.authority().map_or("", |a| a.as_str()),
        endpoint.path()
    )
}

/// The message of an OTLP answer body (error or partial success), protobuf or JSON.
fn answer_message(format: Format, body: &[u8]) -> String {
    let message = if format == Format::Protobuf {
        RpcStatus::decode(body)
            .map(|s| s.message)
            .unwrap_or_default()
    } else {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_default()
    };
    printable(&message)
}

/// A backend's message as one line fit for a terminal and a log: its control characters
/// (escape sequences, newlines) made spaces, and at most [`MAX_MESSAGE`] characters.
fn printable(message: &str) -> String {
    message
        .chars()
        .take(MAX_MESSAGE)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

const MAX_MESSAGE: usize = 1000;

fn partial_success(format: Option<Format>, body: &[u8]) -> Accepted {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    match format {
        Some(Format::Protobuf) => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| Accepted {
                rejected_spans: u64::try_from(p.rejected_spans).unwrap_or(0),
                message: Some(printable(&p.error_message)).filter(|m| !m.is_empty()),
            })
            .unwrap_or_default(),
        Some(Format::Json) => {
            let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
            let p = v
                .as_ref()
                .and_then(|v| v.get("partialSuccess"))
                .filter(|p| !p.is_null());
            let rejected = p.and_then(|p| p.get("rejectedSpans")).and_then(|r| {
                r.as_u64()
                    .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
            });
            Accepted {
                rejected_spans: rejected.unwrap_or(0),
                message: p
                    .and_then(|p| p.get("errorMessage"))
                    .and_then(|m| m.as_str())
                    .filter(|m| !m.is_empty())
                    .map(printable),
            }
        }
        None => Accepted::default(),
    }
}

/// `Retry-After` as seconds or an HTTP date, capped.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// What an HTTP answer means (CONTRACT §4).
pub fn classify(
    status: StatusCode,
    content_type: Option<&str>,
    retry_after: Option<&str>,
    body: &[u8],
    endpoint: &Uri,
    now: SystemTime,
) -> Result<Accepted, SendError> {
    let otlp = Format::from_content_type(content_type);
    let retry_after = retry_after.and_then(|v| parse_retry_after(v, now));
    let code = status.as_u16();
    match code {
        200..=299 => Ok(partial_success(otlp, body)),
        429 | 502 | 503 | 504 => Err(SendError::Retryable {
            reason: format!("HTTP {code} from {}", shown(endpoint)),
            retry_after,
        }),
        400 if otlp.is_some() => Err(SendError::BadData {
            status: code,
            message: otlp.map(|f| answer_message(f, body)).unwrap_or_default(),
        }),
        413 => Err(SendError::BadData {
            status: code,
            message: "request too large".into(),
        }),
        _ => Err(SendError::Misconfigured {
            status: code,
            endpoint: shown(endpoint),
            message: otlp.map(|f| answer_message(f, body)).unwrap_or_default(),
            retry_after,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri() -> Uri {
        "http://127.0.0.1:4318/v1/traces".parse().unwrap()
    }

    fn class(
        code: u16,
        ct: Option<&str>,
        ra: Option<&str>,
        body: &[u8],
    ) -> Result<Accepted, SendError> {
        classify(
            StatusCode::from_u16(code).unwrap(),
            ct,
            ra,
            body,
            &uri(),
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn success_counts_partially_rejected_spans_from_protobuf_and_json() {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        let pb = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            }),
        }
        .encode_to_vec();
        let got = class(200, Some("application/x-protobuf"), None, &pb).unwrap();
        assert_eq!(
            (got.rejected_spans, got.message.as_deref()),
            (3, Some("too old"))
        );
        let json = br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"x"}}"#;
        assert_eq!(
            class(200, Some("application/json"), None, json)
                .unwrap()
                .rejected_spans,
            2
        );
        assert_eq!(
            class(
                200,
                Some("application/json"),
                None,
                br#"{"partialSuccess":null}"#
            )
            .unwrap(),
            Accepted::default()
        );
        assert_eq!(class(202, None, None, b"").unwrap(), Accepted::default());
    }

    #[test]
    fn overload_and_gateway_answers_are_retryable_with_retry_after() {
        for code in [429, 502, 503, 504] {
            let e = class(code, None, Some("7"), b"").unwrap_err();
            assert!(e.keeps_data());
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)), "{code}");
        }
        let date = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(30));
        assert_eq!(
            class(503, None, Some(&date), b"")
                .unwrap_err()
                .retry_after(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            class(503, None, Some("soon"), b"")
                .unwrap_err()
                .retry_after(),
            None
        );
        assert_eq!(
            class(503, None, Some("999999"), b"")
                .unwrap_err()
                .retry_after(),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn a_collectors_400_is_bad_data_but_a_proxys_400_is_misconfiguration() {
        let status = RpcStatus {
            code: 3,
            message: "invalid span id".into(),
        }
        .encode_to_vec();
        let e = class(400, Some("application/x-protobuf"), None, &status).unwrap_err();
        assert_eq!(
            e,
            SendError::BadData {
                status: 400,
                message: "invalid span id".into()
            }
        );
        assert!(!e.keeps_data());
        assert!(matches!(
            class(400, Some("application/json"), None, b"{}"),
            Err(SendError::BadData { .. })
        ));
        assert!(matches!(
            class(413, Some("text/html"), None, b""),
            Err(SendError::BadData { .. })
        ));
        let html = class(
            400,
            Some("text/html"),
            None,
            b"<html>No required SSL certificate was sent</html>",
        )
        .unwrap_err();
        assert!(matches!(html, SendError::Misconfigured { status: 400, .. }));
        assert!(html.keeps_data());
    }

    #[test]
    fn other_statuses_keep_the_data_and_say_the_endpoint_looks_wrong() {
        for code in [401, 403, 404, 405, 407, 500, 501] {
            let e = class(code, Some("text/plain"), None, b"nope").unwrap_err();
            assert!(matches!(e, SendError::Misconfigured { .. }), "{code}");
            assert!(e.keeps_data());
            let msg = e.to_string();
            assert!(
                msg.contains(&code.to_string()) && msg.contains("credentials"),
                "{msg}"
            );
        }
    }

    #[test]
    fn messages_name_the_endpoint_without_its_query() {
        let endpoint: Uri = "https://h:4318/v1/traces?api_key=secret".parse().unwrap();
        let e = classify(
            StatusCode::from_u16(503).unwrap(),
            None,
            None,
            b"",
            &endpoint,
            SystemTime::UNIX_EPOCH,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("https://h:4318/v1/traces"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
    }

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
        assert_eq!(
            tls_config(&half).unwrap_err(),
            TlsError::HalfPair {
                given: "certificate"
            }
        );
    }
}
