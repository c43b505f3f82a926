//! Every OTLP signal, black-box: a Python SDK child exporting a span, a metric and a log record
//! under `exec` (over OTLP/HTTP and OTLP/gRPC), `serve` receiving all three on both listeners,
//! and signals that never hold each other up; rotel is the backend.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/all_signals.py")
}

/// `tracespool --spool-dir DIR ARGS…`.
fn ts(spool: &Path, args: &[&str]) -> Command {
    let mut cmd = tracespool();
    cmd.arg("--spool-dir").arg(spool).args(args);
    cmd
}

/// What a Python SDK prints when an export fails (any signal, either protocol).
fn export_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains("Failed to export")
                || l.contains("Transient error")
                || l.contains("Exception while exporting")
                || l.contains("StatusCode.")
        })
        .collect()
}

/// Runs the SDK child under `exec`, its exporters set up by `env` (plus the harness's base
/// endpoint, which exec replaces), and checks that it printed no export error and was not held
/// up by its exporters' retries.
fn run_hook(spool: &Path, endpoint: &str, classes: &str, tag: &str, env: &[(&str, &str)]) {
    let start = Instant::now();
    let out = ts(spool, &["--endpoint", endpoint, "exec", "--"])
        .arg(python())
        .arg(script())
        .args([classes, tag])
        // Where the SDK would export without tracespool: nothing listens there.
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        export_errors(&err).is_empty(),
        "the child's exports failed: {err}"
    );
    // A refused export would be retried with back-off for the exporter's 10 s timeout.
    assert!(took < Duration::from_secs(6), "held up for {took:?}: {err}");
}

fn status(spool: &Path) -> serde_json::Value {
    status_json(spool, &[])
}

/// The names seen by rotel, each with how often.
fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

/// Spooled while the backend is down, delivered once by `flush` when it is up: every signal.
fn every_signal_is_spooled_and_then_delivered_once(classes: &str, env: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let down = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let tag = format!("{}{}", classes, env.len());
    run_hook(&spool, &down, classes, &tag, env);

    let s = status(&spool);
    assert_eq!(s["spans"], 2, "the command's span and the child's: {s}");
    assert_eq!(s["data_points"], 1, "{s}");
    assert_eq!(s["log_records"], 1, "{s}");
    for signal in ["traces", "metrics", "logs"] {
        assert!(
            s["signals"][signal]["batches"].as_u64() >= Some(1),
            "{signal}: {s}"
        );
    }

    let rotel = Rotel::start();
    let out = ts(&spool, &["--endpoint", &rotel.endpoint(), "flush"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    rotel.named(&format!("span-{tag}"));
    assert!(
        eventually(Duration::from_secs(10), || {
            count(&rotel.metric_names(), &format!("metric_{tag}")) >= 1
                && count(&rotel.log_bodies(), &format!("log-{tag}")) >= 1
        }),
        "metrics {:?}, logs {:?}",
        rotel.metric_names(),
        rotel.log_bodies()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rotel.spans().len(), 2, "{:#?}", rotel.spans());
    assert_eq!(count(&rotel.metric_names(), &format!("metric_{tag}")), 1);
    assert_eq!(count(&rotel.log_bodies(), &format!("log-{tag}")), 1);
    let s = status(&spool);
    assert_eq!(s["batches"], 0, "{s}");
}

#[test]
fn a_child_exporting_every_signal_over_http_loses_nothing_under_exec() {
    every_signal_is_spooled_and_then_delivered_once(
        "http",
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    );
}

#[test]
fn a_child_exporting_every_signal_over_grpc_loses_nothing_under_exec() {
    every_signal_is_spooled_and_then_delivered_once(
        "grpc",
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
}

#[test]
fn a_child_using_the_grpc_exporters_without_a_protocol_variable_loses_nothing_under_exec() {
    every_signal_is_spooled_and_then_delivered_once("grpc", &[]);
}

#[test]
fn a_refused_metrics_endpoint_never_holds_up_traces_or_logs_run_after_run() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let rotel = Rotel::start();
    let refused = FaultServer::start(Answer::status(503));
    for run in 0..3 {
        let tag = format!("run{run}");
        let out = ts(
            &spool,
            &[
                "--endpoint",
                &rotel.endpoint(),
                "--metrics-endpoint",
                &refused.endpoint(),
                "exec",
                "--",
            ],
        )
        .arg(python())
        .arg(script())
        .args(["http", &tag])
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        // Delivered by the run itself, not left for a later one.
        let spans = rotel.spans();
        assert!(
            spans.iter().any(|s| s.name == format!("span-{tag}")),
            "{spans:#?}"
        );
        assert!(rotel.log_bodies().contains(&format!("log-{tag}")));
        let s = status_json(
            &spool,
            &[
                "--endpoint",
                &rotel.endpoint(),
                "--metrics-endpoint",
                &refused.endpoint(),
            ],
        );
        assert_eq!(s["signals"]["traces"]["batches"], 0, "{s}");
        assert_eq!(s["signals"]["logs"]["batches"], 0, "{s}");
        assert_eq!(s["signals"]["metrics"]["batches"], run + 1, "{s}");
        assert_eq!(s["signals"]["metrics"]["backend"], "down", "{s}");
        assert_eq!(s["signals"]["traces"]["backend"], "up", "{s}");
    }
    assert!(
        rotel
            .metric_names()
            .iter()
            .all(|n| !n.starts_with("metric_run"))
    );
}

/// A running `tracespool serve`, killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_takes_metrics_and_logs_over_http_and_grpc_and_forwards_them() {
    let tmp = tempfile::tempdir().unwrap();
    let rotel = Rotel::start();
    let (http, grpc) = (free_port(), free_port());
    let serve = Serve(
        ts(
            &tmp.path().join("spool"),
            &[
                "--endpoint",
                &rotel.endpoint(),
                "serve",
                "--listen",
                &format!("127.0.0.1:{http}"),
                "--grpc-listen",
                &format!("127.0.0.1:{grpc}"),
            ],
        )
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    wait_for_port(http, Duration::from_secs(10));
    wait_for_port(grpc, Duration::from_secs(10));
    for (classes, tag, endpoint, protocol) in [
        (
            "http",
            "via-http",
            format!("http://127.0.0.1:{http}"),
            "http/protobuf",
        ),
        (
            "grpc",
            "via-grpc",
            format!("http://127.0.0.1:{grpc}"),
            "grpc",
        ),
        // The HTTP listener speaks gRPC too.
        (
            "grpc",
            "grpc-on-http",
            format!("http://127.0.0.1:{http}"),
            "grpc",
        ),
    ] {
        let out = clean_command(python())
            .arg(script())
            .args([classes, tag])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(
            out.status.success() && export_errors(&err).is_empty(),
            "{tag}: {err}"
        );
    }
    for tag in ["via-http", "via-grpc", "grpc-on-http"] {
        assert!(
            eventually(Duration::from_secs(10), || {
                count(&rotel.metric_names(), &format!("metric_{tag}")) == 1
                    && count(&rotel.log_bodies(), &format!("log-{tag}")) == 1
            }),
            "{tag}: metrics {:?}, logs {:?}",
            rotel.metric_names(),
            rotel.log_bodies()
        );
        rotel.named(&format!("span-{tag}"));
    }
    drop(serve);
}

#[test]
fn every_signal_can_go_upstream_as_otlp_json() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let down = format!("http://127.0.0.1:{}/v1/traces", free_port());
    run_hook(&spool, &down, "http", "as-json", &[]);
    let rotel = Rotel::start();
    let out = ts(
        &spool,
        &[
            "--protocol",
            "http/json",
            "--endpoint",
            &rotel.endpoint(),
            "flush",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    rotel.named("span-as-json");
    assert!(
        eventually(Duration::from_secs(10), || {
            count(&rotel.metric_names(), "metric_as-json") == 1
                && count(&rotel.log_bodies(), "log-as-json") == 1
        }),
        "metrics {:?}, logs {:?}",
        rotel.metric_names(),
        rotel.log_bodies()
    );
}
