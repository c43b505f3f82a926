//! OTLP receivers: OTLP/HTTP ([`http`]) and OTLP/gRPC ([`grpc`]) take `ExportTraceServiceRequest`s
//! and hand them, as protobuf bytes with their span count, to a [`Sink`]. They know the
//! protocols, not the disk: `exec` (capturing its child's spans) and `serve` plug the spool in as
//! the sink, so a client is told "stored" only once the sink has stored the batch.

pub mod grpc;
pub mod http;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::encode::EncodedBatch;

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

#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    /// Applies to the bytes on the wire and to the decompressed body.
    pub body_limit: usize,
    /// When set, `Authorization: Bearer <token>` is required.
    pub token: Option<String>,
}

impl Default for ReceiverSettings {
    fn default() -> ReceiverSettings {
        ReceiverSettings {
            body_limit: DEFAULT_BODY_LIMIT,
            token: None,
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
