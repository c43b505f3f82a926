//! OTLP receivers: OTLP/HTTP ([`http`]) and OTLP/gRPC ([`grpc`]) take `ExportTraceServiceRequest`s
//! and hand them, as protobuf bytes with their span count, to a [`Sink`]. They know the
//! protocols, not the disk: `exec` (capturing its child's spans) and `serve` plug the spool in as
//! the sink, so a client is told "stored" only once the sink has stored the batch.

pub mod grpc;
pub mod http;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::encode::EncodedBatch;

pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Where received batches go. `store` returns once the batch is safe (or cannot be made so).
pub trait Sink: Send + Sync + 'static {
    /// # Errors
    ///
    /// A message for the log: the client is answered 503 and will retry.
    fn store(&self, batch: EncodedBatch) -> impl Future<Output = Result<(), String>> + Send;
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
