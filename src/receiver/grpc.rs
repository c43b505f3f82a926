//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! | request | status |
//! |---|---|
//! | a valid request (gzip allowed) | OK once the sink has stored it |
//! | not an `ExportTraceServiceRequest` | INVALID_ARGUMENT |
//! | over the body limit, decompressed | OUT_OF_RANGE (from tonic's decoder) |
//! | missing or wrong bearer token (when one is required) | UNAUTHENTICATED |
//! | the sink cannot store it | UNAVAILABLE (retryable) |

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings};
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};

use super::{ReceiverSettings, Sink};
use crate::encode::{EncodedBatch, count_spans_in};
use crate::signal::Signal;

const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// HTTP/2 flow-control windows: what a client may send before we have read it.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// Requests as the bytes received (decompressed by tonic): they are checked and counted
/// ([`count_spans_in`]), then stored and forwarded as they are, never decoded and re-encoded.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug)]
struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        Self::Encoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// `Export`: one call.
struct Export<S> {
    sink: Arc<S>,
    settings: Arc<ReceiverSettings>,
}

impl<S> Clone for Export<S> {
    fn clone(&self) -> Self {
        Export {
            sink: self.sink.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<S: Sink> UnaryService<Bytes> for Export<S> {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<ExportTraceServiceResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let authorization = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if !this.settings.authorized(authorization) {
                return Err(Status::unauthenticated("missing or wrong bearer token"));
            }
            let body = request.into_inner();
            let spans = count_spans_in(&body).map_err(|e| {
                Status::invalid_argument(format!("not an OTLP ExportTraceServiceRequest: {e}"))
            })?;
            if spans > 0 {
                let batch = EncodedBatch::new(
                    Signal::Traces,
                    body,
                    u32::try_from(spans).unwrap_or(u32::MAX),
                );
                this.sink.store(batch).await.map_err(|e| {
                    tracing::warn!("refusing a batch: {e}");
                    Status::unavailable("cannot store the batch now")
                })?;
            }
            Ok(Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        })
    }
}

/// The `TraceService`, as tonic's generated server would route it, over [`RawCodec`].
struct TraceService<S> {
    export: Export<S>,
    body_limit: usize,
}

impl<S> Clone for TraceService<S> {
    fn clone(&self) -> Self {
        TraceService {
            export: self.export.clone(),
            body_limit: self.body_limit,
        }
    }
}

impl<S> NamedService for TraceService<S> {
    const NAME: &'static str = SERVICE;
}

impl<S, B> Service<http::Request<B>> for TraceService<S>
where
    S: Sink,
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            return Box::pin(async { Ok(Status::new(Code::Unimplemented, "").into_http()) });
        }
        let export = self.export.clone();
        let limit = self.body_limit;
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = Grpc::new(RawCodec)
                .apply_compression_config(gzip, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(export, request).await)
        })
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
    let service = TraceService {
        body_limit: settings.body_limit,
        export: Export {
            sink,
            settings: Arc::new(settings),
        },
    };
    tonic::transport::Server::builder()
        // HTTP/2's default 64 KiB windows would make a client wait a round trip for every
        // 64 KiB of a batch (an SDK's 512 spans are ~125 KB).
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .add_service(service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
