//! Upstream OTLP/gRPC, black-box: the built binary delivering to rotel's gRPC port, through
//! nginx's TLS and mTLS gRPC ports, and to a small gRPC server of this file for the answers no
//! real backend gives on demand (UNAVAILABLE with RetryInfo, INVALID_ARGUMENT, UNAUTHENTICATED,
//! a server that never answers).

mod common;

use std::convert::Infallible;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::nginx::Nginx;
use common::*;
use tonic::codegen::{BoxFuture, Service, StdError};
use tonic_types::{ErrorDetails, StatusExt};

/// `tracespool --spool-dir DIR ARGS…`, run to its end.
fn ts(spool: &Path, args: &[&str]) -> Output {
    tracespool()
        .arg("--spool-dir")
        .arg(spool)
        .args(args)
        .output()
        .unwrap()
}

/// Spools a span named `name` (no endpoint: spool only).
fn spool_span(spool: &Path, name: &str) {
    let out = ts(spool, &["span", "--name", name]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn flush(spool: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["--protocol", "grpc", "--budget", "2s"];
    all.extend_from_slice(args);
    all.push("flush");
    let out = ts(spool, &all);
    (out.status.code(), stderr(&out))
}

fn names(rotel: &Rotel) -> Vec<String> {
    rotel.spans().into_iter().map(|s| s.name).collect()
}

#[test]
fn spooled_spans_are_flushed_over_grpc_to_a_collector() {
    let tmp = tempfile::tempdir().unwrap();
    let rotel = Rotel::start();
    wait_for_port(rotel.grpc_port, Duration::from_secs(10));
    for name in ["grpc-a", "grpc-b"] {
        spool_span(tmp.path(), name);
    }
    let endpoint = format!("http://127.0.0.1:{}", rotel.grpc_port);
    let (code, err) = flush(tmp.path(), &["--endpoint", &endpoint]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(rotel.exactly(2).len(), 2);
    assert_eq!(names(&rotel), ["grpc-a", "grpc-b"]);
}

#[test]
fn a_hook_delivers_its_span_over_grpc_as_the_otel_variables_say() {
    let tmp = tempfile::tempdir().unwrap();
    let rotel = Rotel::start();
    wait_for_port(rotel.grpc_port, Duration::from_secs(10));
    let out = tracespool()
        .arg("--spool-dir")
        .arg(tmp.path())
        .args(["exec", "--name", "grpc-hook", "--", "true"])
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", rotel.grpc_port),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Delivered by the hook itself: nothing was left in the spool.
    assert_eq!(status_json(tmp.path(), &[])["batches"], 0);
    rotel.named("grpc-hook");
}

#[test]
fn grpc_goes_through_tls_and_mtls_with_exactly_the_configured_files() {
    let rotel = Rotel::start();
    let nginx = Nginx::start_grpc(rotel.grpc_port);
    let certs = &nginx.certs;
    let ca = certs.ca.to_str().unwrap();
    let (cert, key) = (
        certs.client_cert.to_str().unwrap(),
        certs.client_key.to_str().unwrap(),
    );

    let tmp = tempfile::tempdir().unwrap();
    spool_span(tmp.path(), "over-tls");
    let tls = nginx.grpc_tls_endpoint();
    let (code, err) = flush(tmp.path(), &["--endpoint", &tls, "--ca-file", ca]);
    assert_eq!(code, Some(0), "{err}");
    rotel.named("over-tls");

    // mTLS without a client certificate: nginx refuses the call; the span is kept.
    spool_span(tmp.path(), "over-mtls");
    let mtls = nginx.grpc_mtls_endpoint();
    let (code, err) = flush(tmp.path(), &["--endpoint", &mtls, "--ca-file", ca]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(status_json(tmp.path(), &[])["batches"], 1);
    let with_cert = [
        "--endpoint",
        &mtls,
        "--ca-file",
        ca,
        "--client-cert",
        cert,
        "--client-key",
        key,
    ];
    let (code, err) = flush(tmp.path(), &with_cert);
    assert_eq!(code, Some(0), "{err}");
    rotel.named("over-mtls");

    // A CA that did not sign the server's certificate: no delivery, the span kept.
    spool_span(tmp.path(), "wrong-ca");
    let other = certs.other_ca.to_str().unwrap();
    let (code, err) = flush(tmp.path(), &["--endpoint", &tls, "--ca-file", other]);
    assert_eq!(code, Some(1), "{err}");
    assert!(!names(&rotel).contains(&"wrong-ca".to_owned()));
}

#[test]
fn a_missing_ca_file_is_tls_not_ready_and_nothing_connects() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = FaultServer::start(Answer::status(200));
    let port = listener.endpoint();
    let port = port
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap();
    spool_span(tmp.path(), "not-yet");
    let endpoint = format!("https://127.0.0.1:{port}");
    let missing = tmp.path().join("ca.pem");
    let (code, err) = flush(
        tmp.path(),
        &[
            "--endpoint",
            &endpoint,
            "--ca-file",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("TLS not ready"), "{err}");
    assert_eq!(listener.connections(), 0, "never in clear, never at all");
    let st = status_json(
        tmp.path(),
        &[
            "--protocol",
            "grpc",
            "--endpoint",
            &endpoint,
            "--ca-file",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(st["backend"], "tls_not_ready", "{st}");
    assert_eq!(st["batches"], 1);
}

// ---------------------------------------------------------------------------------------------
// A gRPC server for the answers no real backend gives on demand.

#[derive(Clone, Copy)]
enum Reply {
    /// This status, with a RetryInfo of this delay if one is given.
    Status(tonic::Code, Option<Duration>),
    /// Accept the call, never answer.
    Never,
}

#[derive(Clone)]
struct FaultService {
    reply: Arc<Mutex<Reply>>,
    calls: Arc<AtomicUsize>,
}

impl tonic::server::NamedService for FaultService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> Service<http::Request<B>> for FaultService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<B>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let reply = *self.reply.lock().unwrap();
        Box::pin(async move {
            match reply {
                Reply::Never => std::future::pending().await,
                Reply::Status(code, None) => {
                    Ok(tonic::Status::new(code, "from the fault server").into_http())
                }
                Reply::Status(code, Some(delay)) => {
                    let details = ErrorDetails::with_retry_info(Some(delay));
                    Ok(tonic::Status::with_error_details(code, "busy", details).into_http())
                }
            }
        })
    }
}

/// The fault server, on a runtime of its own; stopped with the test process.
struct GrpcFault {
    port: u16,
    service: FaultService,
}

impl GrpcFault {
    fn start(reply: Reply) -> GrpcFault {
        let service = FaultService {
            reply: Arc::new(Mutex::new(reply)),
            calls: Arc::default(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = service.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                let _ = tonic::transport::Server::builder()
                    .add_service(served)
                    .serve_with_incoming(incoming)
                    .await;
            });
        });
        GrpcFault { port, service }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn calls(&self) -> usize {
        self.service.calls.load(Ordering::SeqCst)
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn unavailable_with_retry_info_keeps_the_span_and_backs_off_as_long_as_it_says() {
    let tmp = tempfile::tempdir().unwrap();
    let fault = GrpcFault::start(Reply::Status(
        tonic::Code::Unavailable,
        Some(Duration::from_secs(30)),
    ));
    spool_span(tmp.path(), "kept");
    let endpoint = fault.endpoint();
    let before = now();
    let (code, err) = flush(tmp.path(), &["--endpoint", &endpoint]);
    assert_eq!(code, Some(1), "{err}");
    let st = status_json(tmp.path(), &["--protocol", "grpc", "--endpoint", &endpoint]);
    assert_eq!(
        (st["batches"].as_u64(), st["backend"].as_str()),
        (Some(1), Some("down")),
        "{st}"
    );
    let retry_at = st["retry_at"].as_f64().unwrap();
    assert!(
        retry_at >= before + 29.0 && retry_at <= now() + 45.0,
        "{retry_at} vs {before}: {st}"
    );
    assert!(
        st["last_error"]
            .as_str()
            .unwrap()
            .contains("gRPC UNAVAILABLE"),
        "{st}"
    );

    // A hook obeys the backoff: no call at all.
    let calls = fault.calls();
    let out = tracespool()
        .arg("--spool-dir")
        .arg(tmp.path())
        .args([
            "--protocol",
            "grpc",
            "--endpoint",
            &endpoint,
            "exec",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(fault.calls(), calls);
    assert_eq!(status_json(tmp.path(), &[])["batches"], 2);
}

#[test]
fn invalid_argument_is_bad_data_and_unauthenticated_keeps_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let fault = GrpcFault::start(Reply::Status(tonic::Code::Unauthenticated, None));
    spool_span(tmp.path(), "judged");
    let endpoint = fault.endpoint();
    let (code, err) = flush(tmp.path(), &["--endpoint", &endpoint]);
    assert_eq!(code, Some(1), "{err}");
    let st = status_json(tmp.path(), &["--protocol", "grpc", "--endpoint", &endpoint]);
    assert_eq!(st["batches"], 1, "kept: {st}");
    assert!(
        st["last_error"]
            .as_str()
            .unwrap()
            .contains("gRPC UNAUTHENTICATED"),
        "{st}"
    );

    *fault.service.reply.lock().unwrap() = Reply::Status(tonic::Code::InvalidArgument, None);
    let (code, err) = flush(tmp.path(), &["--endpoint", &endpoint]);
    assert_eq!(code, Some(0), "nothing deliverable remains: {err}");
    let st = status_json(tmp.path(), &[]);
    assert_eq!(
        (st["batches"].as_u64(), st["rejected_spans"].as_u64()),
        (Some(0), Some(1)),
        "{st}"
    );
    let dead: Vec<_> = std::fs::read_dir(tmp.path().join("deadletter"))
        .unwrap()
        .collect();
    assert_eq!(dead.len(), 1);
}

#[test]
fn a_grpc_server_that_never_answers_costs_a_hook_no_more_than_its_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let fault = GrpcFault::start(Reply::Never);
    let start = Instant::now();
    let out = tracespool()
        .arg("--spool-dir")
        .arg(tmp.path())
        .args([
            "--protocol",
            "grpc",
            "--endpoint",
            &fault.endpoint(),
            "--budget",
            "500ms",
            "exec",
            "--name",
            "patient",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fault.calls() >= 1, "the call was made");
    assert!(
        took < Duration::from_millis(500 + 400),
        "the budget bounds the run: {took:?}"
    );
    assert_eq!(
        status_json(tmp.path(), &[])["batches"],
        1,
        "the span is kept"
    );
}
