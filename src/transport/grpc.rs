//! OTLP/gRPC: one unary `Export` call per request, over tonic, with the TLS configuration of
//! [`tls`](super::tls) (exactly the configured CA, the client certificate as a pair; an `https`
//! endpoint always over TLS, never in clear).
//!
//! The endpoint is a base URL: `http://host:port` is HTTP/2 without TLS, `https://…` HTTP/2 over
//! TLS; its path is ignored. Headers go as metadata; `compression = gzip` sends
//! `grpc-encoding: gzip`. The stored bytes are sent as they are (no decoding), decompressed
//! first when stored compressed: tonic frames and compresses each message itself.
//!
//! | answer | result |
//! |---|---|
//! | `OK` | [`Accepted`], with the partial success's rejected items |
//! | `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `CANCELLED`, `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`; `RESOURCE_EXHAUSTED` with a `RetryInfo` | [`SendError::Unavailable`]: keep, retry (after the `RetryInfo` delay, as `Retry-After`) |
//! | no connection | [`SendError::Unreachable`] |
//! | `INVALID_ARGUMENT` | [`SendError::BadData`] |
//! | any other status | [`SendError::Misconfigured`]: keep the data |

use std::str::FromStr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures_util::future::BoxFuture;
use http::Uri;
use http::uri::PathAndQuery;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

use super::{
    Accepted, Body, Code, Compression, SendError, TlsError, TransportSettings, Upstream, printable,
    shown, tls,
};
use crate::signal::Signal;

/// The longest `RetryInfo` delay taken as given.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// A gRPC client bound to one endpoint.
#[derive(Debug)]
pub struct GrpcTransport {
    channel: Channel,
    settings: TransportSettings,
    /// The headers as metadata, made once.
    metadata: Vec<(
        MetadataKey<tonic::metadata::Ascii>,
        MetadataValue<tonic::metadata::Ascii>,
    )>,
}

impl GrpcTransport {
    /// Sets up the channel (it connects on first use). For an `https` endpoint this reads the
    /// certificate files. Needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when TLS cannot be set up: nothing will be sent.
    pub fn new(settings: TransportSettings) -> Result<GrpcTransport, TlsError> {
        let connector = tls::connector(&settings, tls::Http::Two)?;
        let base = base_uri(&settings.endpoint);
        let channel = Endpoint::from(base).connect_with_connector_lazy(connector);
        let metadata = settings
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let key = MetadataKey::from_str(name.as_str()).ok()?;
                let value = MetadataValue::try_from(value.as_bytes()).ok()?;
                Some((key, value))
            })
            .collect();
        Ok(GrpcTransport {
            channel,
            settings,
            metadata,
        })
    }

    async fn call(
        &self,
        signal: Signal,
        body: Body,
        timeout: Duration,
    ) -> Result<Accepted, SendError> {
        // tonic frames and compresses the message itself: it takes the plain form.
        let body = body.into_plain()?;
        let endpoint = shown(&base_uri(&self.settings.endpoint));
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        if self.settings.compression == Compression::Gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        let mut request = tonic::Request::new(body);
        request.set_timeout(timeout);
        for (key, value) in &self.metadata {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        let path = PathAndQuery::from_static(signal.grpc_path());
        let call = async {
            grpc.ready().await.map_err(|e| SendError::Unreachable {
                endpoint: endpoint.clone(),
                source: std::sync::Arc::new(e),
            })?;
            match grpc.unary(request, path, RawCodec).await {
                Ok(response) => Ok(partial_success(&response.into_inner())),
                Err(status) => Err(classify(&status, &endpoint)),
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(SendError::TimedOut {
                endpoint,
                after: timeout,
            }),
        }
    }
}

impl Upstream for GrpcTransport {
    fn send(
        &self,
        signal: Signal,
        body: Body,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Accepted, SendError>> {
        Box::pin(self.call(signal, body, timeout))
    }
}

/// `scheme://authority/`: a gRPC endpoint names no path.
fn base_uri(endpoint: &Uri) -> Uri {
    let mut parts = endpoint.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::from_static("/"));
    Uri::from_parts(parts).unwrap_or_else(|_| endpoint.clone())
}

/// The partial success of an `Export…ServiceResponse`: the three signals' share one layout.
fn partial_success(body: &[u8]) -> Accepted {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    ExportTraceServiceResponse::decode(body)
        .ok()
        .and_then(|r| r.partial_success)
        .map(|p| Accepted {
            rejected: u64::try_from(p.rejected_spans).unwrap_or(0),
            message: Some(printable(&p.error_message)).filter(|m| !m.is_empty()),
        })
        .unwrap_or_default()
}

/// What a gRPC status means (module doc).
pub fn classify(status: &tonic::Status, endpoint: &str) -> SendError {
    use tonic::Code as G;
    let code = Code::Grpc(status.code());
    let message = printable(status.message());
    let retry_info = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .map(|d| d.min(MAX_RETRY_DELAY));
    match status.code() {
        G::Unavailable
        | G::DeadlineExceeded
        | G::Cancelled
        | G::Aborted
        | G::OutOfRange
        | G::DataLoss => SendError::Unavailable {
            status: code,
            endpoint: endpoint.to_owned(),
            message,
            retry_after: retry_info,
        },
        G::ResourceExhausted if retry_info.is_some() => SendError::Unavailable {
            status: code,
            endpoint: endpoint.to_owned(),
            message,
            retry_after: retry_info,
        },
        G::InvalidArgument => SendError::BadData {
            status: code,
            message,
        },
        _ => SendError::Misconfigured {
            status: code,
            endpoint: endpoint.to_owned(),
            message,
            retry_after: retry_info,
        },
    }
}

/// Requests as the stored bytes, answers as the bytes received: nothing is decoded on the way.
/// Public for the benches' minimal client, which sends the same bytes the same way.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// The encoder and decoder of [`RawCodec`].
#[derive(Debug)]
pub struct Raw;

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn retryable_codes_keep_the_data_and_retry_info_is_the_retry_after() {
        let details = ErrorDetails::with_retry_info(Some(Duration::from_secs(7)));
        let unavailable =
            tonic::Status::with_error_details(tonic::Code::Unavailable, "busy", details.clone());
        let e = classify(&unavailable, "http://h:4317/");
        assert!(matches!(e, SendError::Unavailable { .. }), "{e}");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.to_string().contains("gRPC UNAVAILABLE"), "{e}");
        for code in [
            tonic::Code::DeadlineExceeded,
            tonic::Code::Cancelled,
            tonic::Code::Aborted,
            tonic::Code::OutOfRange,
            tonic::Code::DataLoss,
        ] {
            let e = classify(&tonic::Status::new(code, ""), "e");
            assert!(matches!(e, SendError::Unavailable { .. }), "{code:?}");
        }
        let exhausted =
            tonic::Status::with_error_details(tonic::Code::ResourceExhausted, "", details);
        assert!(matches!(
            classify(&exhausted, "e"),
            SendError::Unavailable { .. }
        ));
    }

    #[test]
    fn invalid_argument_is_bad_data_and_anything_else_misconfiguration() {
        let e = classify(
            &tonic::Status::invalid_argument("bad span id"),
            "http://h:4317/",
        );
        assert!(!e.keeps_data());
        assert!(e.to_string().contains("bad span id"), "{e}");
        for code in [
            tonic::Code::Unauthenticated,
            tonic::Code::PermissionDenied,
            tonic::Code::Unimplemented,
            tonic::Code::Internal,
            tonic::Code::NotFound,
            // Without a RetryInfo the server gives no sign it will ever take it.
            tonic::Code::ResourceExhausted,
        ] {
            let e = classify(&tonic::Status::new(code, ""), "http://h:4317/");
            assert!(matches!(e, SendError::Misconfigured { .. }), "{code:?}");
            assert!(e.keeps_data());
        }
        let e = classify(&tonic::Status::unauthenticated("no"), "http://h:4317/");
        assert!(e.to_string().contains("gRPC UNAUTHENTICATED"), "{e}");
    }

    #[test]
    fn the_endpoints_path_is_ignored() {
        let uri: Uri = "https://h:4317/v1/traces?x=1".parse().unwrap();
        assert_eq!(base_uri(&uri).to_string(), "https://h:4317/");
    }
}
