//! Sending pre-encoded OTLP export requests upstream. Knows the network, not the disk.
//!
//! The delivery engine reaches a backend only through [`Upstream`]: send these encoded bytes of
//! one signal within this time, and get back an answer already classified. [`http`] implements it
//! over hyper and rustls (ring), [`grpc`] over tonic; [`tls`] builds the one rustls configuration
//! both use.
//!
//! What an answer means is decided by the transport, once:
//!
//! | answer | result |
//! |---|---|
//! | 2xx | [`Accepted`], with the partial success's rejected items |
//! | 429, 502, 503, 504 | [`SendError::Unavailable`] (+ `Retry-After`): keep the data, retry |
//! | refused, reset, TLS failure | [`SendError::Unreachable`]: keep, retry |
//! | no answer in time | [`SendError::TimedOut`]: keep, retry |
//! | 400 with an OTLP error body (protobuf or JSON), 413 | [`SendError::BadData`]: never retry |
//! | anything else (401, 403, 404, 500, a proxy's HTML 400, …) | [`SendError::Misconfigured`]: keep the data |

pub mod grpc;
pub mod http;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use ::http::Uri;
use ::http::header::{HeaderName, HeaderValue};
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::signal::Signal;
pub use tls::{TlsError, TlsFiles, tls_config, tls_files_present};

/// An error kept as the source of another, shared by the clones of a report.
pub type BoxError = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

impl Compression {
    /// As `OTEL_EXPORTER_OTLP_COMPRESSION` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        }
    }
}

/// How export requests go upstream (and how a receiver got them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies: the stored bytes as they are.
    #[default]
    HttpProtobuf,
    /// OTLP/HTTP with OTLP/JSON bodies, made from the stored protobuf.
    HttpJson,
    /// OTLP/gRPC: the endpoint is a base URL (its path is ignored).
    Grpc,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::HttpProtobuf, Protocol::HttpJson, Protocol::Grpc];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
            Protocol::Grpc => "grpc",
        }
    }
}

/// The status of an answer, as its protocol names it: `HTTP 503`, `gRPC UNAVAILABLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Http(u16),
    Grpc(tonic::Code),
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::Http(status) => write!(f, "HTTP {status}"),
            Code::Grpc(code) => {
                // `Unavailable` → `UNAVAILABLE`, `InvalidArgument` → `INVALID_ARGUMENT`.
                let name = format!("{code:?}");
                f.write_str("gRPC ")?;
                for (i, c) in name.chars().enumerate() {
                    if i > 0 && c.is_ascii_uppercase() {
                        f.write_str("_")?;
                    }
                    write!(f, "{}", c.to_ascii_uppercase())?;
                }
                Ok(())
            }
        }
    }
}

/// An export request on its way: plain, gzip-compressed, or both (a body received gzip-encoded
/// comes with its decoded form). Each transport takes the form it sends, and makes it only when
/// it is missing: a batch stored compressed goes out with `Content-Encoding: gzip` as it is.
#[derive(Debug, Clone)]
pub struct Body {
    plain: Option<Bytes>,
    gzip: Option<Bytes>,
}

impl Body {
    pub fn plain(bytes: Bytes) -> Body {
        Body {
            plain: Some(bytes),
            gzip: None,
        }
    }

    pub fn gzip(bytes: Bytes) -> Body {
        Body {
            plain: None,
            gzip: Some(bytes),
        }
    }

    /// Both forms of one request.
    pub fn both(plain: Bytes, gzip: Option<Bytes>) -> Body {
        Body {
            plain: Some(plain),
            gzip,
        }
    }

    /// The plain form, decompressed if need be.
    ///
    /// # Errors
    ///
    /// [`SendError::Undecodable`] when the compressed form does not decompress.
    pub fn into_plain(self) -> Result<Bytes, SendError> {
        match (self.plain, self.gzip) {
            (Some(plain), _) => Ok(plain),
            (None, Some(gz)) => crate::gzip::decompress_stored(&gz)
                .map(Bytes::from)
                .map_err(|e| SendError::Undecodable {
                    source: Arc::new(e),
                }),
            (None, None) => Ok(Bytes::new()),
        }
    }

    /// The gzip form, compressed if need be.
    pub fn into_gzip(self) -> Bytes {
        match (self.gzip, self.plain) {
            (Some(gz), _) => gz,
            (None, Some(plain)) => Bytes::from(crate::gzip::compress(&plain)),
            (None, None) => Bytes::from(crate::gzip::compress(&[])),
        }
    }
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    pub endpoint: Uri,
    pub protocol: Protocol,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub compression: Compression,
    pub tls: TlsFiles,
    /// Gives up on a TCP connect after this long (each send is also bounded as a whole).
    pub connect_timeout: Option<Duration>,
}

/// A backend, as the delivery engine sees it.
pub trait Upstream: Send + Sync + std::fmt::Debug {
    /// Sends one encoded export request of `signal`, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// A [`SendError`] that says whether to keep the data and when to try again.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the request; the backend may or may not have the batch.
    fn send(
        &self,
        signal: Signal,
        body: Body,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Accepted, SendError>>;
}

/// Makes the [`Upstream`] for some settings: TLS is set up here, before any connection.
pub type Connect =
    Arc<dyn Fn(TransportSettings) -> Result<Arc<dyn Upstream>, TlsError> + Send + Sync>;

/// The transport for `settings`: OTLP/HTTP or OTLP/gRPC, as its protocol says.
///
/// # Errors
///
/// [`TlsError`] when TLS cannot be set up: nothing will be sent.
pub fn connect(settings: TransportSettings) -> Result<Arc<dyn Upstream>, TlsError> {
    Ok(match settings.protocol {
        Protocol::Grpc => Arc::new(grpc::GrpcTransport::new(settings)?),
        Protocol::HttpProtobuf | Protocol::HttpJson => {
            Arc::new(http::HttpTransport::new(settings)?)
        }
    })
}

/// The backend took the batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Items the backend refused (`partial_success.rejected_spans`, `…_data_points`,
    /// `…_log_records`).
    pub rejected: u64,
    /// The backend's message, if it gave one.
    pub message: Option<String>,
}

/// The batch was not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// No answer: the connection was refused or reset, TLS failed. Keep the data, retry.
    #[error("sending to {endpoint}: {}", chain(source.as_ref()))]
    Unreachable {
        endpoint: String,
        #[source]
        source: BoxError,
    },
    /// Overloaded, or a gateway failed: keep the data, retry.
    #[error("{status} from {endpoint}{}", detail(message))]
    Unavailable {
        status: Code,
        endpoint: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No answer in time: retryable; the backend may have the batch all the same.
    #[error("no answer from {endpoint} within {after:?}")]
    TimedOut { endpoint: String, after: Duration },
    /// The backend says the data is bad: do not retry it.
    #[error("{status}: the backend rejected the data as invalid: {message}")]
    BadData { status: Code, message: String },
    /// A stored batch that does not decompress: nothing was sent, and it never will be.
    #[error("the stored batch does not decompress: {source}")]
    Undecodable {
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The answer proves nothing about the data; the endpoint or credentials look wrong.
    #[error(
        "{status} from {endpoint}: the endpoint or credentials look wrong{}",
        detail(message)
    )]
    Misconfigured {
        status: Code,
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
        !matches!(
            self,
            SendError::BadData { .. } | SendError::Undecodable { .. }
        )
    }

    /// How long the server asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Unavailable { retry_after, .. }
            | SendError::Misconfigured { retry_after, .. } => *retry_after,
            SendError::Unreachable { .. }
            | SendError::BadData { .. }
            | SendError::Undecodable { .. }
            | SendError::TimedOut { .. } => None,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::TimedOut { .. })
    }
}

/// An error and its sources as one line, each source once (many repeat their cause).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
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

/// A backend's message as one line fit for a terminal and a log: its control characters
/// (escape sequences, newlines) made spaces, and at most [`MAX_MESSAGE`] characters.
pub(crate) fn printable(message: &str) -> String {
    message
        .chars()
        .take(MAX_MESSAGE)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

const MAX_MESSAGE: usize = 1000;
