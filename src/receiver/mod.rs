//! OTLP receivers: OTLP/HTTP ([`http`]) and OTLP/gRPC ([`grpc`]) take export requests of every
//! signal and hand them, as protobuf bytes with their item count, to a [`Sink`]. They know the
//! protocols, not the disk: `exec` (capturing its child's telemetry) and `serve` plug the spool
//! in as the sink, so a client is told "stored" only once the sink has stored the batch.
//!
//! [`serve`] answers both protocols on one listener: HTTP/1.1, and HTTP/2 with prior knowledge
//! (what plaintext gRPC clients speak); a request whose `content-type` is `application/grpc…`
//! goes to the gRPC services, any other to the OTLP/HTTP handler.

pub mod grpc;
pub mod http;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tonic::codegen::Service;

use crate::encode::EncodedBatch;
use crate::signal::Signal;

pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Where received batches go. `store` returns once the batch is safe (or cannot be made so).
pub trait Sink: Send + Sync + 'static {
    /// # Errors
    ///
    /// The batch is not stored: the client is answered 503 / UNAVAILABLE and will retry.
    fn store(&self, batch: EncodedBatch) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Why a sink did not store a batch. Cheap to clone: one failure may answer many requests.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The agent is stopping: nothing more is taken.
    #[error("the agent is stopping")]
    Stopping,
    /// There is nowhere to store it (this run's spool could not be opened).
    #[error("not tracing this run")]
    NotTracing,
    /// The store itself failed (the spool's error, which this module does not know).
    #[error(transparent)]
    Failed(Arc<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Failed(Arc::new(e))
    }
}

/// How a batch came, named as `OTEL_EXPORTER_OTLP_PROTOCOL` names them: the protocols tracespool
/// sends with are those it receives.
pub use crate::transport::Protocol;

/// Why a metrics page could not be rendered (the owner's error, which this module does not
/// know).
pub type RenderError = Box<dyn std::error::Error + Send + Sync>;

/// The owner's metrics, as the receivers see them: they count what they acknowledged, and the
/// HTTP receiver answers `GET /metrics` with the page. The receivers know neither what else is
/// measured nor where it comes from.
pub trait Metrics: std::fmt::Debug + Send + Sync + 'static {
    /// `items` of `signal` came over `protocol` and were acknowledged: stored.
    fn count_received(&self, signal: Signal, protocol: Protocol, items: u64);

    /// The page's `Content-Type`.
    fn content_type(&self) -> &'static str;

    /// The page as it is now. May block (the receiver calls it off its async threads).
    ///
    /// # Errors
    ///
    /// The owner's.
    fn render(&self) -> Result<String, RenderError>;
}

#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    /// Applies to the bytes on the wire and to the decompressed body.
    pub body_limit: usize,
    /// When set, `Authorization: Bearer <token>` is required (by `/metrics` too).
    pub token: Option<String>,
    /// Told of what is acknowledged, and what `GET /metrics` answers; without it, `/metrics`
    /// is not found.
    pub metrics: Option<Arc<dyn Metrics>>,
}

impl Default for ReceiverSettings {
    fn default() -> ReceiverSettings {
        ReceiverSettings {
            body_limit: DEFAULT_BODY_LIMIT,
            token: None,
            metrics: None,
        }
    }
}

impl ReceiverSettings {
    /// True when no token is required, or `authorization` is `Bearer <token>`, compared in
    /// constant time. The token is never logged.
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(token) = &self.token else {
            return true;
        };
        let given = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(given.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// Binds `addr` (port 0 for any free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves OTLP/HTTP and OTLP/gRPC on `listener` until `shutdown` completes; then stops
/// accepting and lets in-flight requests finish (for at most `drain`); connections still open
/// then are cut.
pub async fn serve<S: Sink>(
    listener: TcpListener,
    settings: ReceiverSettings,
    sink: Arc<S>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let settings = Arc::new(settings);
    let grpc = grpc::routes(sink.clone(), settings.clone());
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // With a timer, a connection without complete request headers for 30 s (slow, or idle
    // between requests) is closed.
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(grpc::STREAM_WINDOW)
        .initial_connection_window_size(grpc::CONNECTION_WINDOW);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let (settings, sink, grpc) = (settings.clone(), sink.clone(), grpc.clone());
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (settings, sink, mut grpc) = (settings.clone(), sink.clone(), grpc.clone());
                    async move {
                        if is_grpc(&req) {
                            grpc.call(req).await
                        } else {
                            let resp = http::handle(req, settings, sink).await?;
                            Ok(resp.map(tonic::body::Body::new))
                        }
                    }
                });
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
                connections.spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("receiver connection: {e}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
    // Connections still open after the drain are cut (and their sink handles dropped).
    connections.shutdown().await;
}

/// A gRPC request: `content-type: application/grpc`, `application/grpc+proto`, ….
fn is_grpc<B>(req: &hyper::Request<B>) -> bool {
    req.headers()
        .get(::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}
