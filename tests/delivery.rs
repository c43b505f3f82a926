//! Delivery against real peers (rotel) and a fault server: answers, backoff, budget, flush.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant, SystemTime};

use common::backlog::spans_request;
use common::{Answer, FaultServer, Rotel, assert_drained, status_json, stderr, tracespool};
use opentelemetry::trace::{Tracer, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message;
use tracespool::delivery::{Delivery, DeliverySettings, DrainMode, Report, Stop};
use tracespool::encode::EncodedBatch;
use tracespool::exporter::SpoolExporter;
use tracespool::signal::Signal;
use tracespool::spool::{Spool, SpoolOptions};

const SECOND: Duration = Duration::from_secs(1);

/// An encoded request holding one span per name.
fn batch(names: &[&str]) -> EncodedBatch {
    let items = u32::try_from(names.len()).unwrap();
    EncodedBatch::new(Signal::Traces, spans_request(names).into(), items)
}

/// Settings of a run that sends the backlog itself, before its own data (drain mode `inline`).
fn settings(endpoint: &str, budget: Duration) -> DeliverySettings {
    DeliverySettings {
        endpoint: Some(endpoint.parse().unwrap()),
        budget,
        timeout: Some(budget),
        drain: DrainMode::Inline,
        ..DeliverySettings::default()
    }
}

/// One library delivery, as a short-lived process would make it.
fn export(dir: &Path, endpoint: &str, names: &[&str]) -> Report {
    let delivery = Delivery::new(
        Spool::open(dir, SpoolOptions::default()).unwrap(),
        settings(endpoint, 2 * SECOND),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(delivery.export(batch(names))).unwrap()
}

fn spool_names(dir: &Path, names: &[&[&str]]) {
    let spool = Spool::open(dir, SpoolOptions::default()).unwrap();
    for n in names {
        let b = batch(n);
        spool.append(&b.bytes, b.items).unwrap();
    }
}

fn flush(dir: &Path, endpoint: &str, extra: &[&str]) -> Output {
    tracespool()
        .arg("--spool-dir")
        .arg(dir)
        .args(["--endpoint", endpoint, "--budget", "2s"])
        .args(extra)
        .arg("flush")
        .output()
        .unwrap()
}

fn names(rotel: &Rotel) -> Vec<String> {
    rotel.spans().into_iter().map(|s| s.name).collect()
}

#[test]
fn spans_from_the_sdk_reach_rotel_with_the_simple_and_the_batch_processor() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let exporter = |sub: &str| {
        SpoolExporter::new(
            Spool::open(tmp.path().join(sub), SpoolOptions::default()).unwrap(),
            settings(&rotel.endpoint(), 2 * SECOND),
        )
        .unwrap()
    };

    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter("simple"))
        .build();
    provider.tracer("t").in_span("simple-span", |_| {});
    provider.shutdown().unwrap();

    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter("batch"))
        .build();
    for i in 0..5 {
        provider
            .tracer("t")
            .in_span(format!("batch-span-{i}"), |_| {});
    }
    provider.shutdown().unwrap();

    let seen = rotel.wait_for_spans(6, 10 * SECOND);
    let mut got: Vec<String> = seen.into_iter().map(|s| s.name).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "batch-span-0",
            "batch-span-1",
            "batch-span-2",
            "batch-span-3",
            "batch-span-4",
            "simple-span"
        ]
    );
    for sub in ["simple", "batch"] {
        assert_drained(&tmp.path().join(sub), &rotel.endpoint());
    }
}

#[test]
fn the_exporter_works_inside_a_program_with_its_own_tokio_runtime() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let exporter = SpoolExporter::new(
            Spool::open(tmp.path(), SpoolOptions::default()).unwrap(),
            settings(&rotel.endpoint(), 2 * SECOND),
        )
        .unwrap();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        provider.tracer("t").in_span("inside-tokio", |_| {});
        provider.shutdown().unwrap();
    });
    rotel.wait_for_spans(1, 10 * SECOND);
    assert_eq!(names(&rotel), ["inside-tokio"]);
}

#[test]
fn a_down_backend_costs_one_attempt_then_the_flush_delivers_oldest_first_exactly_once() {
    let mut rotel = Rotel::start();
    rotel.stop();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    let first = export(dir, &rotel.endpoint(), &["a1"]);
    assert!(first.spooled);
    assert!(
        matches!(first.stopped, Some(ref stop @ Stop::Failed(_)) if stop.to_string().contains("refused")),
        "{first:?}"
    );
    // The backoff is open: later runs do not even try.
    for n in ["a2", "a3", "a4"] {
        let r = export(dir, &rotel.endpoint(), &[n]);
        assert!(
            r.spooled && matches!(r.stopped, Some(Stop::BackingOff { .. })),
            "{r:?}"
        );
    }
    let status = status_json(dir, &["--endpoint", &rotel.endpoint()]);
    assert_eq!(status["backend"], "down");
    assert_eq!(status["batches"], 4);
    assert!(status["retry_at"].as_f64().unwrap() > 0.0);
    assert!(status["last_error"].as_str().unwrap().contains("refused"));

    let out = flush(dir, &rotel.endpoint(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("remain"), "{}", stderr(&out));

    rotel.resume();
    let out = flush(dir, &rotel.endpoint(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("flushed 4 batches"),
        "{}",
        stderr(&out)
    );
    rotel.wait_for_spans(4, 5 * SECOND);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(names(&rotel), ["a1", "a2", "a3", "a4"]);
    let status = status_json(dir, &["--endpoint", &rotel.endpoint()]);
    assert_eq!(
        (
            status["backend"].as_str(),
            status["batches"].as_u64(),
            &status["retry_at"]
        ),
        (Some("up"), Some(0), &serde_json::Value::Null)
    );
    // Nothing left to send twice.
    assert_eq!(flush(dir, &rotel.endpoint(), &[]).status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rotel.spans().len(), 4);
}

#[test]
fn with_the_backend_up_a_new_batch_goes_out_after_the_spooled_ones() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    spool_names(tmp.path(), &[&["old1"], &["old2"]]);
    let r = export(tmp.path(), &rotel.endpoint(), &["new"]);
    assert_eq!(
        (r.sent_batches, r.spooled, r.remaining),
        (3, false, false),
        "{r:?}"
    );
    rotel.wait_for_spans(3, 5 * SECOND);
    assert_eq!(names(&rotel), ["old1", "old2", "new"]);
}

#[test]
fn a_503_with_retry_after_keeps_the_data_and_no_one_connects_until_it_passes() {
    let server = FaultServer::start(Answer::with(503, &[("retry-after", "2")], b""));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let r = export(dir, &server.endpoint(), &["x"]);
    assert!(r.spooled);
    assert_eq!(server.requests().len(), 1);
    let status = status_json(dir, &["--endpoint", &server.endpoint()]);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let retry_at = status["retry_at"].as_f64().unwrap();
    // Retry-After: 2 is drawn from [2 s, 3.5 s].
    assert!(
        retry_at > now + 1.0 && retry_at < now + 3.6,
        "{retry_at} vs {now}"
    );
    assert!(status["last_error"].as_str().unwrap().contains("503"));

    // Inside the window: spooled, and not a single connection.
    let before = server.connections();
    for _ in 0..3 {
        assert!(matches!(
            export(dir, &server.endpoint(), &["y"]).stopped,
            Some(Stop::BackingOff { .. })
        ));
    }
    assert_eq!(server.connections(), before);

    // After it: the next run probes, and delivers everything once the server is back.
    let left = retry_at
        - SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(left.max(0.0) + 0.1));
    server.set(Answer::status(200));
    let r = export(dir, &server.endpoint(), &["z"]);
    assert_eq!((r.sent_batches, r.remaining), (5, false), "{r:?}");
}

#[test]
fn a_429_is_retryable_and_the_flush_stops_at_the_first_failure() {
    let server = FaultServer::start(Answer::status(429));
    let tmp = tempfile::tempdir().unwrap();
    spool_names(tmp.path(), &[&["a"], &["b"], &["c"]]);
    let out = flush(tmp.path(), &server.endpoint(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("429") && stderr(&out).contains("3 batches"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.requests().len(),
        1,
        "never tries the next batch against a backend that just failed"
    );
    assert_eq!(
        status_json(tmp.path(), &["--endpoint", &server.endpoint()])["backend"],
        "down"
    );
}

#[test]
fn a_400_with_an_otlp_body_is_dead_lettered_counted_and_never_retried() {
    let body = {
        // google.rpc.Status { code: 3, message: "bad span" }
        let mut b = vec![0x08, 0x03, 0x12, 8];
        b.extend_from_slice(b"bad span");
        b
    };
    let server = FaultServer::start(Answer::with(
        400,
        &[("content-type", "application/x-protobuf")],
        &body,
    ));
    let tmp = tempfile::tempdir().unwrap();
    spool_names(tmp.path(), &[&["bad1", "bad2"], &["bad3"]]);
    let out = flush(tmp.path(), &server.endpoint(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("dead-letter"), "{}", stderr(&out));
    let status = status_json(tmp.path(), &["--endpoint", &server.endpoint()]);
    assert_eq!(
        (
            status["batches"].as_u64(),
            status["rejected_spans"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(status["backend"], "up");
    assert_eq!(
        std::fs::read_dir(tmp.path().join("deadletter"))
            .unwrap()
            .count(),
        2
    );
    let requests = server.requests().len();
    assert_eq!(
        flush(tmp.path(), &server.endpoint(), &[]).status.code(),
        Some(0)
    );
    assert_eq!(
        server.requests().len(),
        requests,
        "dead letters are never re-sent"
    );
}

#[test]
fn a_401_or_500_keeps_the_data_and_says_the_endpoint_looks_wrong() {
    for code in [401, 500] {
        let server = FaultServer::start(Answer::with(
            code,
            &[("content-type", "text/html")],
            b"<html>no</html>",
        ));
        let tmp = tempfile::tempdir().unwrap();
        spool_names(tmp.path(), &[&["kept"]]);
        let out = flush(tmp.path(), &server.endpoint(), &[]);
        assert_eq!(out.status.code(), Some(1));
        let status = status_json(tmp.path(), &["--endpoint", &server.endpoint()]);
        assert_eq!(
            (
                status["batches"].as_u64(),
                status["rejected_spans"].as_u64()
            ),
            (Some(1), Some(0))
        );
        let err = status["last_error"].as_str().unwrap();
        assert!(
            err.contains(&code.to_string()) && err.contains("credentials"),
            "{err}"
        );
        assert!(
            status["retry_at"].as_f64().is_some(),
            "backs off as for retryable"
        );
    }
}

#[test]
fn a_partial_success_is_acknowledged_with_its_rejected_spans_counted() {
    let response = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "one too old".into(),
        }),
    }
    .encode_to_vec();
    let server = FaultServer::start(Answer::with(
        200,
        &[("content-type", "application/x-protobuf")],
        &response,
    ));
    let tmp = tempfile::tempdir().unwrap();
    spool_names(tmp.path(), &[&["p1", "p2"]]);
    assert_eq!(
        flush(tmp.path(), &server.endpoint(), &[]).status.code(),
        Some(0)
    );
    let status = status_json(tmp.path(), &["--endpoint", &server.endpoint()]);
    assert_eq!(
        (
            status["batches"].as_u64(),
            status["rejected_spans"].as_u64()
        ),
        (Some(0), Some(1))
    );
}

#[test]
fn a_server_that_never_answers_costs_at_most_the_budget() {
    let server = FaultServer::start(Answer::Hang);
    let tmp = tempfile::tempdir().unwrap();
    let delivery = Delivery::new(
        Spool::open(tmp.path(), SpoolOptions::default()).unwrap(),
        settings(&server.endpoint(), Duration::from_millis(500)),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let r = rt.block_on(delivery.export(batch(&["hang"]))).unwrap();
    let took = start.elapsed();
    assert!(r.spooled, "{r:?}");
    // The bound the contract states is budget + 50 ms; the benchmark measures it. Here: no hang.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(
        status_json(tmp.path(), &["--endpoint", &server.endpoint()])["backend"],
        "down"
    );
}

#[test]
fn requests_carry_the_otlp_content_type_user_agent_headers_and_optional_gzip() {
    let server = FaultServer::start(Answer::status(200));
    let tmp = tempfile::tempdir().unwrap();
    spool_names(tmp.path(), &[&["h1"], &["h2"]]);
    let out = flush(
        tmp.path(),
        &server.endpoint(),
        &["--header", "authorization=Bearer s3cret"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    spool_names(tmp.path(), &[&["gz"]]);
    let out = tracespool()
        .arg("--spool-dir")
        .arg(tmp.path())
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", server.endpoint())
        .env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-team=hooks%20team")
        .arg("flush")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].path, "/v1/traces");
    assert_eq!(reqs[0].headers["content-type"], "application/x-protobuf");
    assert!(reqs[0].headers["user-agent"].starts_with("tracespool/"));
    assert_eq!(reqs[0].headers["authorization"], "Bearer s3cret");
    assert_eq!(reqs[0].body, batch(&["h1"]).bytes);
    assert_eq!(reqs[2].headers["content-encoding"], "gzip");
    assert_eq!(reqs[2].headers["x-team"], "hooks team");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&reqs[2].body[..]),
        &mut plain,
    )
    .unwrap();
    assert_eq!(plain, batch(&["gz"]).bytes);
    // Headers are secrets: never on disk.
    for entry in walk(tmp.path()) {
        let content = std::fs::read(&entry).unwrap();
        assert!(
            !content.windows(6).any(|w| w == b"s3cret"),
            "{} holds the token",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn no_endpoint_means_spool_only_and_flush_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let delivery = Delivery::new(
        Spool::open(tmp.path(), SpoolOptions::default()).unwrap(),
        DeliverySettings::default(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(delivery.export(batch(&["local"]))).unwrap();
    assert!(
        r.spooled && matches!(r.stopped, Some(Stop::NoEndpoint)),
        "{r:?}"
    );
    let out = tracespool()
        .arg("--spool-dir")
        .arg(tmp.path())
        .arg("flush")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no endpoint"), "{}", stderr(&out));
    assert_eq!(status_json(tmp.path(), &[])["backend"], "no_endpoint");

    // Nothing deliverable remains in an empty spool, endpoint or not: exit 0.
    let empty = tmp.path().join("empty");
    for endpoint in [&[][..], &["--endpoint", "https://127.0.0.1:1/v1/traces"]] {
        let out = tracespool()
            .arg("--spool-dir")
            .arg(&empty)
            .args(endpoint)
            .args(["--ca-file", "/nonexistent/ca.pem", "flush"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{endpoint:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("nothing remains"), "{}", stderr(&out));
    }
}
