//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`; and `GET /healthz`, `GET /metrics`.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/traces` (`/v1/metrics`, `/v1/logs`), `application/x-protobuf` or `application/json`, optionally gzip | 200 once the sink has stored it, with an empty `Export…ServiceResponse` |
//! | body over the limit, on the wire or decompressed | 413 |
//! | undecodable body or gzip | 400 with a `google.rpc.Status` |
//! | other content type or content encoding | 415 |
//! | `GET /healthz` (never needs the token) | 200 `ok` |
//! | `GET /metrics` (with [`Metrics`]; needs the token when one is required) | 200, the page |
//! | other path / method | 404 / 405 |
//! | missing or wrong bearer token (when one is required) | 401 |
//! | the sink cannot store it (spool full, disk full, I/O error) | 503 with `Retry-After` |
//!
//! Error bodies and successes use the request's content type. A protobuf request that needed no
//! decompression is stored as the very bytes received.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::{Metrics, Protocol, ReceiverSettings, Sink};
use crate::encode::{EncodedBatch, Format, RpcStatus, count_items_in, json_to_protobuf};
use crate::signal::Signal;
/// What a refused client is told to wait.
const RETRY_AFTER_SECS: &str = "1";

/// gRPC status codes used in error bodies.
const INVALID_ARGUMENT: i32 = 3;
const UNAUTHENTICATED: i32 = 16;
const UNAVAILABLE: i32 = 14;
const RESOURCE_EXHAUSTED: i32 = 8;

fn error(status: StatusCode, format: Format, code: i32, message: &str) -> Response<Full<Bytes>> {
    let body = match format {
        Format::Protobuf => RpcStatus {
            code,
            message: message.to_owned(),
        }
        .encode_to_vec(),
        Format::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static(format.content_type()),
    );
    resp
}

/// An empty `Export…ServiceResponse`: the three signals' are the same bytes.
fn success(format: Format) -> Response<Full<Bytes>> {
    let body = match format {
        Format::Protobuf => ExportTraceServiceResponse {
            partial_success: None,
        }
        .encode_to_vec(),
        Format::Json => b"{}".to_vec(),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static(format.content_type()),
    );
    resp
}

fn bare(status: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Turns a request into a batch, or the answer that refuses it.
async fn decode(
    req: Request<Incoming>,
    settings: &ReceiverSettings,
) -> Result<(EncodedBatch, Format), Response<Full<Bytes>>> {
    let Some(signal) = Signal::ALL
        .into_iter()
        .find(|s| s.http_path() == req.uri().path())
    else {
        return Err(bare(StatusCode::NOT_FOUND));
    };
    if req.method() != Method::POST {
        return Err(not_allowed("POST"));
    }
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    let format = Format::from_content_type(header(CONTENT_TYPE))
        .ok_or_else(|| bare(StatusCode::UNSUPPORTED_MEDIA_TYPE))?;
    if !settings.authorized(header(AUTHORIZATION)) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            format,
            UNAUTHENTICATED,
            "missing or wrong bearer token",
        ));
    }
    let gzip = match header(CONTENT_ENCODING).map(str::trim) {
        None | Some("") | Some("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(_) => return Err(bare(StatusCode::UNSUPPORTED_MEDIA_TYPE)),
    };
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format,
            RESOURCE_EXHAUSTED,
            &format!(
                "request body over the limit of {} bytes",
                settings.body_limit
            ),
        )
    };
    if header(CONTENT_LENGTH)
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > settings.body_limit)
    {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), settings.body_limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    format,
                    INVALID_ARGUMENT,
                    "could not read the request body",
                )
            }
        })?
        .to_bytes();
    match decode_body(signal, format, gzip, body, settings.body_limit) {
        Ok(batch) => Ok((batch, format)),
        Err(BodyError::TooLarge) => Err(too_large()),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format,
            INVALID_ARGUMENT,
            &e.to_string(),
        )),
    }
}

/// Why a request body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body inflates past the limit")]
    TooLarge,
    #[error("bad gzip body: {0}")]
    BadGzip(String),
    #[error("not an OTLP export request of {signal}: {reason}")]
    Malformed { signal: Signal, reason: String },
}

/// Decodes a request body of `signal`: gunzipped within `limit` when `gzip`, then protobuf or
/// OTLP/JSON. A protobuf body is checked and its items counted ([`count_items_in`]), and kept
/// as the very bytes received (inflated; not copied), with the gzip body beside it, so that it
/// is stored and sent compressed without being compressed again; a JSON body is decoded and
/// encoded as protobuf. Pure.
pub fn decode_body(
    signal: Signal,
    format: Format,
    gzip: bool,
    body: Bytes,
    limit: usize,
) -> Result<EncodedBatch, BodyError> {
    let (raw, compressed) = if gzip {
        let raw = crate::gzip::decompress(&body, limit)
            .map_err(|e| BodyError::BadGzip(e.to_string()))?
            .ok_or(BodyError::TooLarge)?;
        (Bytes::from(raw), Some(body))
    } else {
        (body, None)
    };
    let malformed = |reason: String| BodyError::Malformed { signal, reason };
    let (items, bytes, compressed) = match format {
        Format::Protobuf => {
            let items = count_items_in(signal, &raw).map_err(|e| malformed(e.to_string()))?;
            (items, raw, compressed)
        }
        // The gzip form is of the JSON, not of the protobuf stored.
        Format::Json => {
            let (items, bytes) =
                json_to_protobuf(signal, &raw).map_err(|e| malformed(e.to_string()))?;
            (items, bytes, None)
        }
    };
    let items = u32::try_from(items).unwrap_or(u32::MAX);
    Ok(EncodedBatch {
        gzip: compressed,
        ..EncodedBatch::new(signal, bytes, items)
    })
}

/// 405 naming the methods allowed.
fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut resp = bare(StatusCode::METHOD_NOT_ALLOWED);
    resp.headers_mut()
        .insert(ALLOW, http::HeaderValue::from_static(allow));
    resp
}

/// 200 with `body`, of `content_type`.
fn text(content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    resp.headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    resp
}

/// `GET /healthz`: the agent answers. Never needs the token (probes carry none).
fn healthz(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return not_allowed("GET, HEAD");
    }
    text("text/plain; charset=utf-8", "ok")
}

/// `GET /metrics`: the page rendered now; with a token required, only for its bearer.
async fn metrics(
    req: &Request<Incoming>,
    settings: &ReceiverSettings,
    page: &Arc<dyn Metrics>,
) -> Response<Full<Bytes>> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return not_allowed("GET, HEAD");
    }
    let authorization = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !settings.authorized(authorization) {
        let mut resp = bare(StatusCode::UNAUTHORIZED);
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        return resp;
    }
    fn metrics_failed(e: &dyn std::fmt::Display) -> Response<Full<Bytes>> {
        tracing::warn!("cannot render the metrics: {e}");
        bare(StatusCode::INTERNAL_SERVER_ERROR)
    }
    let render = page.clone();
    match tokio::task::spawn_blocking(move || render.render()).await {
        Ok(Ok(body)) => text(page.content_type(), body),
        // The page's own error, or its rendering thread's panic.
        Ok(Err(e)) => metrics_failed(&*e),
        Err(e) => metrics_failed(&e),
    }
}

pub(super) async fn handle<S: Sink>(
    req: Request<Incoming>,
    settings: Arc<ReceiverSettings>,
    sink: Arc<S>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match (req.uri().path(), &settings.metrics) {
        ("/healthz", _) => return Ok(healthz(&req)),
        ("/metrics", Some(page)) => return Ok(metrics(&req, &settings, page).await),
        _ => {}
    }
    let (batch, format) = match decode(req, &settings).await {
        Ok(decoded) => decoded,
        Err(resp) => return Ok(resp),
    };
    if batch.items == 0 {
        return Ok(success(format));
    }
    let (signal, items) = (batch.signal, u64::from(batch.items));
    match sink.store(batch).await {
        Ok(()) => {
            if let Some(metrics) = &settings.metrics {
                let protocol = match format {
                    Format::Protobuf => Protocol::HttpProtobuf,
                    Format::Json => Protocol::HttpJson,
                };
                metrics.count_received(signal, protocol, items);
            }
            Ok(success(format))
        }
        Err(e) => {
            tracing::warn!("refusing a batch: {e}");
            let mut resp = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format,
                UNAVAILABLE,
                "cannot store the batch now",
            );
            resp.headers_mut().insert(
                RETRY_AFTER,
                http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            Ok(resp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_follow_the_request_format() {
        let r = error(
            StatusCode::BAD_REQUEST,
            Format::Json,
            INVALID_ARGUMENT,
            "nope",
        );
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let r = error(
            StatusCode::BAD_REQUEST,
            Format::Protobuf,
            INVALID_ARGUMENT,
            "nope",
        );
        assert_eq!(r.headers()[CONTENT_TYPE], "application/x-protobuf");
    }
}
