//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! | request | status |
//! |---|---|
//! | a valid request (gzip allowed) | OK once the sink has stored it |
//! | over the body limit, decompressed | OUT_OF_RANGE (from tonic's decoder) |
//! | missing or wrong bearer token (when one is required) | UNAUTHENTICATED |
//! | the sink cannot store it | UNAVAILABLE (retryable) |

use std::future::Future;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::{ReceiverSettings, Sink};
use crate::encode::{EncodedBatch, count_spans};

struct Traces<S> {
    sink: Arc<S>,
    settings: Arc<ReceiverSettings>,
}

#[tonic::async_trait]
impl<S: Sink> TraceService for Traces<S> {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if !self.settings.authorized(authorization) {
            return Err(Status::unauthenticated("missing or wrong bearer token"));
        }
        let request = request.into_inner();
        let spans = u32::try_from(count_spans(&request)).unwrap_or(u32::MAX);
        if spans > 0 {
            let batch = EncodedBatch {
                bytes: request.encode_to_vec(),
                spans,
            };
            self.sink.store(batch).await.map_err(|e| {
                tracing::warn!("refusing a batch: {e}");
                Status::unavailable("cannot store the batch now")
            })?;
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` completes, then lets in-flight calls finish.
///
/// # Errors
///
/// When the server fails (not for a refused call).
pub async fn serve<S: Sink>(
    listener: TcpListener,
    settings: ReceiverSettings,
    sink: Arc<S>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let limit = settings.body_limit;
    let service = TraceServiceServer::new(Traces {
        sink,
        settings: Arc::new(settings),
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(limit);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}
