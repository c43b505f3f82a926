//! Delivery over TLS and mTLS, black-box: the built binary (and the library exporter) against
//! nginx terminating TLS in front of rotel, with certificates made at test time.
//!
//! Spooled data is made with the library (there is no command that records spans yet); what
//! is checked is what a user sees: `flush`'s exit code and summary, `status --json`, and what
//! the collector received.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::nginx::{Certs, Nginx};
use common::{Answer, FaultServer, Rotel, eventually, status_json, tracespool};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1 as pb;
use prost::Message;
use serde_json::Value;
use tracespool::delivery::DeliverySettings;
use tracespool::exporter::SpoolExporter;
use tracespool::spool::{Spool, SpoolOptions};
use tracespool::transport::TlsFiles;

const WAIT: Duration = Duration::from_secs(10);

/// Appends one batch holding one span called `name` to the spool in `dir`.
fn spool_span(dir: &Path, name: &str) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let nanos = now.as_nanos();
    let crc = crc32c::crc32c(name.as_bytes());
    let trace_id = ((nanos ^ (u128::from(crc) << 64)) | 1).to_be_bytes();
    let span_id = ((u64::from(crc) << 32) | (nanos as u64 & 0xffff_ffff) | 1).to_be_bytes();
    let start = u64::try_from(nanos).unwrap();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![pb::ResourceSpans {
            resource: None,
            scope_spans: vec![pb::ScopeSpans {
                scope: None,
                spans: vec![pb::Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    name: name.to_owned(),
                    kind: pb::span::SpanKind::Internal as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + 1_000_000,
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let spool = Spool::open(dir, SpoolOptions::default()).unwrap();
    spool.append(&request.encode_to_vec(), 1).unwrap();
}

/// The delivery flags: endpoint, then pairs of (flag, path).
fn delivery_args(endpoint: &str, files: &[(&str, &Path)]) -> Vec<String> {
    let mut args = vec!["--endpoint".to_owned(), endpoint.to_owned()];
    for (flag, path) in files {
        args.push((*flag).to_owned());
        args.push(path.to_str().unwrap().to_owned());
    }
    args
}

fn flush_cmd(dir: &Path, args: &[String], budget: &str) -> std::process::Command {
    let mut cmd = tracespool();
    cmd.arg("--spool-dir")
        .arg(dir)
        .args(args)
        .args(["--budget", budget, "flush"]);
    cmd
}

/// What a run exited with, and its stderr.
fn outcome(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn flush(dir: &Path, args: &[String]) -> (Option<i32>, String) {
    outcome(&flush_cmd(dir, args, "2s").output().unwrap())
}

/// `flush`, which must exit `code`; its stderr.
fn flush_exits(dir: &Path, args: &[String], code: i32) -> String {
    let (got, stderr) = flush(dir, args);
    assert_eq!(got, Some(code), "flush: {stderr}");
    stderr
}

/// Rotel, nginx terminating TLS in front of it, and a spool holding one span named `span`.
fn tls_setup(span: &str) -> (Rotel, Nginx, tempfile::TempDir) {
    let rotel = Rotel::start();
    let nginx = Nginx::start(rotel.http_port);
    let spool = tempfile::tempdir().unwrap();
    spool_span(spool.path(), span);
    (rotel, nginx, spool)
}

fn status(dir: &Path, args: &[String]) -> Value {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    status_json(dir, &args)
}

/// `status --json` after checking what the spool holds and how the backend is seen.
fn assert_status(dir: &Path, args: &[String], batches: u64, backend: &str) -> Value {
    let st = status(dir, args);
    assert_eq!(st["batches"], batches, "{st}");
    assert_eq!(st["backend"], backend, "{st}");
    st
}

fn names(rotel: &Rotel) -> Vec<String> {
    rotel.spans().into_iter().map(|s| s.name).collect()
}

/// Waits for a span called `name` at rotel.
fn assert_received(rotel: &Rotel, name: &str) {
    let seen = eventually(WAIT, || names(rotel).iter().any(|n| n == name));
    assert!(
        seen,
        "rotel did not receive {name:?}; it has {:?}",
        names(rotel)
    );
}

/// Nothing arrived: the run is over, so anything sent would already be there, but rotel
/// writes its dump just after answering: give it a moment.
fn assert_nothing_received(rotel: &Rotel) {
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        names(rotel),
        Vec::<String>::new(),
        "rotel received spans it should not have"
    );
}

fn last_error(status: &Value) -> String {
    status["last_error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_spooled_span_is_delivered_over_tls_when_the_configured_ca_signed_the_server() {
    let (rotel, nginx, spool) = tls_setup("tls-right-ca");
    let args = delivery_args(&nginx.tls_endpoint(), &[("--ca-file", &nginx.certs.ca)]);

    flush_exits(spool.path(), &args, 0);
    assert_received(&rotel, "tls-right-ca");
    let st = assert_status(spool.path(), &args, 0, "up");
    assert_eq!(st["last_error"], Value::Null, "{st}");
}

#[test]
fn a_server_certificate_from_another_ca_is_refused_and_the_span_is_kept() {
    let (rotel, nginx, spool) = tls_setup("tls-wrong-ca");
    let args = delivery_args(
        &nginx.tls_endpoint(),
        &[("--ca-file", &nginx.certs.other_ca)],
    );

    let stderr = flush_exits(spool.path(), &args, 1);
    assert!(
        stderr.contains("remain"),
        "the summary says what remains: {stderr}"
    );
    let st = assert_status(spool.path(), &args, 1, "down");
    let error = last_error(&st).to_lowercase();
    assert!(
        error.contains("certificate") || error.contains("tls"),
        "last_error: {st}"
    );
    assert_nothing_received(&rotel);
}

#[test]
fn an_https_endpoint_that_speaks_plain_http_gets_a_tls_handshake_and_never_the_data() {
    // It would accept anything sent in clear: a request here would be a delivery.
    let plain = FaultServer::start(Answer::status(200));
    let certs = Certs::generate();
    let spool = tempfile::tempdir().unwrap();
    spool_span(spool.path(), "tls-never-in-clear");
    let endpoint = format!("https://127.0.0.1:{}/v1/traces", plain.port);
    let args = delivery_args(&endpoint, &[("--ca-file", &certs.ca)]);

    let out = flush_cmd(spool.path(), &args, "1s").output().unwrap();
    let (code, stderr) = outcome(&out);
    assert_eq!(code, Some(1), "flush: {stderr}");
    assert!(
        eventually(WAIT, || plain.connections() >= 1),
        "no connection was even tried"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        plain.requests().is_empty(),
        "sent in clear: {:?}",
        plain.requests()
    );
    assert_status(spool.path(), &args, 1, "down");
}

#[test]
fn a_missing_ca_file_means_tls_not_ready_with_no_connection_until_the_file_appears() {
    let rotel = Rotel::start();
    let nginx = Nginx::start(rotel.http_port);
    let plain = FaultServer::start(Answer::status(200));
    let spool = tempfile::tempdir().unwrap();
    let later = tempfile::tempdir().unwrap();
    let ca = later.path().join("ca.pem");
    spool_span(spool.path(), "tls-ca-appears");

    // Not there: no connection at all, not even a handshake.
    let fault_args = delivery_args(
        &format!("https://127.0.0.1:{}/v1/traces", plain.port),
        &[("--ca-file", &ca)],
    );
    let stderr = flush_exits(spool.path(), &fault_args, 1);
    assert!(stderr.contains("TLS not ready"), "flush says why: {stderr}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        plain.connections(),
        0,
        "connected although TLS was not ready"
    );
    assert_status(spool.path(), &fault_args, 1, "tls_not_ready");

    let args = delivery_args(&nginx.tls_endpoint(), &[("--ca-file", &ca)]);
    let stderr = flush_exits(spool.path(), &args, 1);
    assert!(stderr.contains("TLS not ready"), "flush says why: {stderr}");
    assert_eq!(status(spool.path(), &args)["backend"], "tls_not_ready");
    assert_nothing_received(&rotel);

    // It appears: the next run delivers.
    std::fs::copy(&nginx.certs.ca, &ca).unwrap();
    let (code, stderr) = flush(spool.path(), &args);
    assert_eq!(code, Some(0), "flush after the CA file appeared: {stderr}");
    assert_received(&rotel, "tls-ca-appears");
    assert_status(spool.path(), &args, 0, "up");
}

#[test]
fn mtls_with_the_client_certificate_and_key_delivers() {
    let (rotel, nginx, spool) = tls_setup("mtls-with-cert");
    let c = &nginx.certs;
    let args = delivery_args(
        &nginx.mtls_endpoint(),
        &[
            ("--ca-file", &c.ca),
            ("--client-cert", &c.client_cert),
            ("--client-key", &c.client_key),
        ],
    );

    flush_exits(spool.path(), &args, 0);
    assert_received(&rotel, "mtls-with-cert");
    assert_status(spool.path(), &args, 0, "up");
}

#[test]
fn mtls_without_a_client_certificate_gets_nginxs_html_400_and_keeps_the_span_out_of_the_dead_letters()
 {
    let (rotel, nginx, spool) = tls_setup("mtls-without-cert");
    let args = delivery_args(&nginx.mtls_endpoint(), &[("--ca-file", &nginx.certs.ca)]);

    flush_exits(spool.path(), &args, 1);
    // The peer really was nginx refusing for want of a certificate.
    assert!(
        nginx.access_log().contains("400 POST"),
        "nginx access log: {}",
        nginx.access_log()
    );
    let st = status(spool.path(), &args);
    assert_eq!(st["batches"], 1, "kept: {st}");
    assert_eq!(st["rejected_spans"], 0, "not dead-lettered: {st}");
    let error = last_error(&st);
    assert!(error.contains("400"), "last_error names the status: {st}");
    assert!(
        error.contains("endpoint") && error.contains("credentials"),
        "last_error says the endpoint or credentials look wrong: {st}"
    );
    assert_nothing_received(&rotel);
}

#[test]
fn with_a_ca_file_configured_ssl_cert_file_adds_no_trust() {
    let (rotel, nginx, spool) = tls_setup("tls-ssl-cert-file");
    // A bundle as a user might point SSL_CERT_FILE at: the system roots and the test CA.
    let bundle = nginx.certs.dir().join("bundle.pem");
    let mut pem = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    pem.extend(std::fs::read(&nginx.certs.ca).unwrap());
    std::fs::write(&bundle, pem).unwrap();

    let args = delivery_args(
        &nginx.tls_endpoint(),
        &[("--ca-file", &nginx.certs.other_ca)],
    );
    let out = flush_cmd(spool.path(), &args, "2s")
        .env("SSL_CERT_FILE", &bundle)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let (code, stderr) = outcome(&out);
    assert_eq!(
        code,
        Some(1),
        "delivered although the configured CA did not sign the server: {stderr}"
    );
    assert_nothing_received(&rotel);
    let st = status(spool.path(), &args);
    assert_eq!(
        (st["batches"].clone(), st["backend"].clone()),
        (Value::from(1), Value::from("down")),
        "{st}"
    );

    // Control: the same environment without --ca-file trusts the bundle, so the refusal
    // above came from the CA option and not from a bundle that could not have worked.
    let no_ca = delivery_args(&nginx.tls_endpoint(), &[]);
    let out = flush_cmd(spool.path(), &no_ca, "2s")
        .env("SSL_CERT_FILE", &bundle)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let (code, stderr) = outcome(&out);
    assert_eq!(
        code,
        Some(0),
        "the SSL_CERT_FILE bundle with the test CA was not trusted: {stderr}"
    );
    assert_received(&rotel, "tls-ssl-cert-file");
}

#[test]
fn without_a_ca_file_the_system_roots_do_not_trust_the_test_ca_and_the_span_is_kept() {
    let (rotel, nginx, spool) = tls_setup("tls-system-roots");
    // The machine's own SSL_CERT_FILE / SSL_CERT_DIR (the system bundle) stay as they are.
    let args = delivery_args(&nginx.tls_endpoint(), &[]);

    flush_exits(spool.path(), &args, 1);
    assert_nothing_received(&rotel);
    let st = assert_status(spool.path(), &args, 1, "down");
    assert!(
        last_error(&st).to_lowercase().contains("certificate"),
        "last_error: {st}"
    );
}

fn exporter(dir: &Path, endpoint: &str, ca: &Path) -> SpoolExporter {
    let settings = DeliverySettings {
        endpoint: Some(endpoint.parse().unwrap()),
        tls: TlsFiles {
            ca_file: Some(ca.to_owned()),
            client_cert: None,
            client_key: None,
        },
        budget: Duration::from_secs(2),
        ..DeliverySettings::default()
    };
    SpoolExporter::new(Spool::open(dir, SpoolOptions::default()).unwrap(), settings).unwrap()
}

#[test]
fn the_sdk_exporter_delivers_a_span_over_tls_trusting_the_configured_ca() {
    let rotel = Rotel::start();
    let nginx = Nginx::start(rotel.http_port);
    let spool = tempfile::tempdir().unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter(
            spool.path(),
            &nginx.tls_endpoint(),
            &nginx.certs.ca,
        ))
        .build();
    let tracer = provider.tracer("delivery_tls");
    tracer.start("sdk-span-over-tls").end();
    provider.shutdown().unwrap();

    assert_received(&rotel, "sdk-span-over-tls");
    let args = delivery_args(&nginx.tls_endpoint(), &[("--ca-file", &nginx.certs.ca)]);
    assert_status(spool.path(), &args, 0, "up");
}

#[test]
fn the_sdk_exporter_spools_while_the_ca_file_is_missing_and_delivers_once_it_appears() {
    let rotel = Rotel::start();
    let nginx = Nginx::start(rotel.http_port);
    let spool = tempfile::tempdir().unwrap();
    let later = tempfile::tempdir().unwrap();
    let ca = later.path().join("ca.pem");
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter(spool.path(), &nginx.tls_endpoint(), &ca))
        .build();
    let tracer = provider.tracer("delivery_tls");

    tracer.start("sdk-before-the-ca").end();
    let args = delivery_args(&nginx.tls_endpoint(), &[("--ca-file", &ca)]);
    let st = status(spool.path(), &args);
    assert_eq!(st["batches"], 1, "spooled: {st}");
    assert_eq!(st["backend"], "tls_not_ready", "{st}");
    assert_nothing_received(&rotel);

    // The same exporter, once the file is there: the spooled span goes first, then the new one.
    std::fs::copy(&nginx.certs.ca, &ca).unwrap();
    tracer.start("sdk-after-the-ca").end();
    provider.shutdown().unwrap();
    assert_received(&rotel, "sdk-after-the-ca");
    assert_received(&rotel, "sdk-before-the-ca");
    assert_eq!(
        names(&rotel).len(),
        2,
        "each span exactly once: {:?}",
        names(&rotel)
    );
    assert_eq!(status(spool.path(), &args)["batches"], 0);
}
