//! OTLP/HTTP: one POST per export request, over hyper and rustls, to one endpoint URL.
//!
//! What an answer means is decided here, once, in [`classify`] (the table is in the
//! [module above](super)).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;

use super::{
    Accepted, Body, Code, Compression, Protocol, SendError, TlsError, TransportSettings, Upstream,
    printable, shown, tls,
};
use crate::encode::{Format, RpcStatus};
use crate::signal::Signal;

const USER_AGENT_VALUE: &str = concat!("tracespool/", env!("CARGO_PKG_VERSION"));
/// Answers are small; anything longer is cut (its meaning is in the status line).
const MAX_ANSWER: usize = 64 * 1024;
/// A `Retry-After` longer than this is taken as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// An HTTP client bound to one endpoint.
#[derive(Debug)]
pub struct HttpTransport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    settings: TransportSettings,
}

impl HttpTransport {
    /// Sets up the client. For an `https` endpoint this reads the certificate files.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when TLS cannot be set up: nothing will be sent.
    pub fn new(settings: TransportSettings) -> Result<HttpTransport, TlsError> {
        let connector = tls::connector(&settings, tls::Http::One)?;
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HttpTransport { client, settings })
    }

    pub fn endpoint(&self) -> &Uri {
        &self.settings.endpoint
    }

    /// POSTs one encoded export request, giving up after `timeout`.
    async fn post(
        &self,
        signal: Signal,
        body: Body,
        timeout: Duration,
    ) -> Result<Accepted, SendError> {
        match tokio::time::timeout(timeout, self.send_inner(signal, body)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::TimedOut {
                endpoint: shown(&self.settings.endpoint),
                after: timeout,
            }),
        }
    }

    async fn send_inner(&self, signal: Signal, body: Body) -> Result<Accepted, SendError> {
        let (body, format) = match self.settings.protocol {
            Protocol::HttpJson => {
                let plain = body.into_plain()?;
                match crate::encode::protobuf_to_json(signal, &plain) {
                    Ok(json) => (Body::plain(Bytes::from(json)), Format::Json),
                    // Not decodable as its signal: only the backend can say it is bad data.
                    Err(_) => (Body::plain(plain), Format::Protobuf),
                }
            }
            _ => (body, Format::Protobuf),
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.settings.endpoint.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )
            .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        for (name, value) in &self.settings.headers {
            request = request.header(name, value);
        }
        let body = match self.settings.compression {
            Compression::None => body.into_plain()?,
            Compression::Gzip => {
                request = request.header(CONTENT_ENCODING, "gzip");
                body.into_gzip()
            }
        };
        let unreachable = |source: super::BoxError| SendError::Unreachable {
            endpoint: shown(&self.settings.endpoint),
            source,
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| unreachable(Arc::new(e)))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| unreachable(Arc::new(e)))?;
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
            signal,
            parts.status,
            header(CONTENT_TYPE),
            header(RETRY_AFTER),
            &answer,
            &self.settings.endpoint,
            SystemTime::now(),
        )
    }
}

impl Upstream for HttpTransport {
    fn send(
        &self,
        signal: Signal,
        body: Body,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Accepted, SendError>> {
        Box::pin(self.post(signal, body, timeout))
    }
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

/// The partial success of a 2xx answer. In protobuf the three signals' answers have one layout
/// (field 1: the partial success; in it, field 1: the rejected count, field 2: the message), so
/// the traces message reads them all; in JSON the count's name tells the signal.
fn partial_success(signal: Signal, format: Option<Format>, body: &[u8]) -> Accepted {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    match format {
        Some(Format::Protobuf) => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| Accepted {
                rejected: u64::try_from(p.rejected_spans).unwrap_or(0),
                message: Some(printable(&p.error_message)).filter(|m| !m.is_empty()),
            })
            .unwrap_or_default(),
        Some(Format::Json) => {
            let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
            let p = v
                .as_ref()
                .and_then(|v| v.get("partialSuccess"))
                .filter(|p| !p.is_null());
            let key = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            let rejected = p.and_then(|p| p.get(key)).and_then(|r| {
                r.as_u64()
                    .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
            });
            Accepted {
                rejected: rejected.unwrap_or(0),
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

/// What an HTTP answer to an export request of `signal` means.
pub fn classify(
    signal: Signal,
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
        200..=299 => Ok(partial_success(signal, otlp, body)),
        429 | 502 | 503 | 504 => Err(SendError::Unavailable {
            status: Code::Http(code),
            endpoint: shown(endpoint),
            message: String::new(),
            retry_after,
        }),
        400 if otlp.is_some() => Err(SendError::BadData {
            status: Code::Http(code),
            message: otlp.map(|f| answer_message(f, body)).unwrap_or_default(),
        }),
        413 => Err(SendError::BadData {
            status: Code::Http(code),
            message: "request too large".into(),
        }),
        _ => Err(SendError::Misconfigured {
            status: Code::Http(code),
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
            Signal::Traces,
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
        assert_eq!((got.rejected, got.message.as_deref()), (3, Some("too old")));
        let json = br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"x"}}"#;
        assert_eq!(
            class(200, Some("application/json"), None, json)
                .unwrap()
                .rejected,
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
    fn a_json_partial_success_is_read_by_the_name_of_its_signals_items() {
        let metrics = br#"{"partialSuccess":{"rejectedDataPoints":4}}"#;
        let logs = br#"{"partialSuccess":{"rejectedLogRecords":"5"}}"#;
        let read = |signal, body: &[u8]| {
            classify(
                signal,
                StatusCode::OK,
                Some("application/json"),
                None,
                body,
                &uri(),
                SystemTime::UNIX_EPOCH,
            )
            .unwrap()
            .rejected
        };
        assert_eq!(read(Signal::Metrics, metrics), 4);
        assert_eq!(read(Signal::Logs, logs), 5);
        assert_eq!(read(Signal::Traces, metrics), 0);
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
        assert!(
            matches!(&e, SendError::BadData { status: Code::Http(400), message } if message == "invalid span id"),
            "{e}"
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
        assert!(matches!(
            html,
            SendError::Misconfigured {
                status: Code::Http(400),
                ..
            }
        ));
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
            Signal::Traces,
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
}
