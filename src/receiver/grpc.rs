//! OTLP/gRPC: `TraceService/Export`, `MetricsService/Export` and `LogsService/Export` (of
//! `opentelemetry.proto.collector.{trace,metrics,logs}.v1`).
//!
//! | request | status |
//! |---|---|
//! | a valid request (gzip allowed) | OK once the sink has stored it |
//! | not an `Export…ServiceRequest` of the service's signal | INVALID_ARGUMENT |
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

use super::{Protocol, ReceiverSettings, Sink};
use crate::encode::{EncodedBatch, count_items_in};
use crate::signal::Signal;

/// HTTP/2 flow-control windows: what a client may send before we have read it.
pub(super) const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
pub(super) const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// Requests as the bytes received (decompressed by tonic): they are checked and counted
/// ([`count_items_in`]), then stored and forwarded as they are, never decoded and re-encoded.
/// Every signal's answer is an empty message: the traces one serves for all.
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
    signal: Signal,
    sink: Arc<S>,
    settings: Arc<ReceiverSettings>,
}

impl<S> Clone for Export<S> {
    fn clone(&self) -> Self {
        Export {
            signal: self.signal,
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
            let signal = this.signal;
            let items = count_items_in(signal, &body).map_err(|e| {
                Status::invalid_argument(format!("not an OTLP export request of {signal}: {e}"))
            })?;
            if items > 0 {
                let batch =
                    EncodedBatch::new(signal, body, u32::try_from(items).unwrap_or(u32::MAX));
                this.sink.store(batch).await.map_err(|e| {
                    tracing::warn!("refusing a batch: {e}");
                    Status::unavailable("cannot store the batch now")
                })?;
                if let Some(metrics) = &this.settings.metrics {
                    metrics.count_received(signal, Protocol::Grpc, items);
                }
            }
            Ok(Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        })
    }
}

/// One signal's service, as tonic's generated server would route it, over [`RawCodec`]:
/// `OtlpService<S, 0>` is the `TraceService`, `1` the `MetricsService`, `2` the `LogsService`.
pub struct OtlpService<S, const SIGNAL: u8> {
    export: Export<S>,
    body_limit: usize,
}

impl<S, const SIGNAL: u8> OtlpService<S, SIGNAL> {
    fn new(sink: Arc<S>, settings: Arc<ReceiverSettings>) -> OtlpService<S, SIGNAL> {
        OtlpService {
            body_limit: settings.body_limit,
            export: Export {
                signal: signal_of(SIGNAL),
                sink,
                settings,
            },
        }
    }
}

const fn signal_of(n: u8) -> Signal {
    match n {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    }
}

impl<S, const SIGNAL: u8> Clone for OtlpService<S, SIGNAL> {
    fn clone(&self) -> Self {
        OtlpService {
            export: self.export.clone(),
            body_limit: self.body_limit,
        }
    }
}

impl<S> NamedService for OtlpService<S, 0> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<S> NamedService for OtlpService<S, 1> {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

impl<S> NamedService for OtlpService<S, 2> {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

/// The three services, routed by their names, as one service (for a server of its own or a
/// listener shared with OTLP/HTTP).
pub fn routes<S: Sink>(sink: Arc<S>, settings: Arc<ReceiverSettings>) -> tonic::service::Routes {
    tonic::service::Routes::new(OtlpService::<S, 0>::new(sink.clone(), settings.clone()))
        .add_service(OtlpService::<S, 1>::new(sink.clone(), settings.clone()))
        .add_service(OtlpService::<S, 2>::new(sink, settings))
}

impl<S, B, const SIGNAL: u8> Service<http::Request<B>> for OtlpService<S, SIGNAL>
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
        if request.uri().path() != signal_of(SIGNAL).grpc_path() {
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
    let settings = Arc::new(settings);
    tonic::transport::Server::builder()
        // HTTP/2's default 64 KiB windows would make a client wait a round trip for every
        // 64 KiB of a batch (an SDK's 512 spans are ~125 KB).
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .add_routes(routes(sink, settings))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
