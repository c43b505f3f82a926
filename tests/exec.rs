//! The `exec` and `span` commands, driven as a user drives them: the built binary, a real
//! collector (rotel), the Python OpenTelemetry SDK as a child, and a fault server: the
//! configuration, the commands, and the time budget and shared backoff, as the README states them.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    Answer, FaultServer, Rotel, eventually, in_spool as ts, python, status_json, stderr, stdout,
    tracespool,
};

const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Running things.

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run tracespool")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    stderr(out).lines().map(str::to_owned).collect()
}

/// `command` with the environment `tracespool()` gives the binary: for a direct run to compare
/// with a wrapped one.
fn bare(program: &str) -> Command {
    let mut cmd = common::clean_command(program);
    cmd.stdin(Stdio::null());
    cmd
}

/// The output of `env -0`, as a map.
fn env0(out: &Output) -> BTreeMap<String, String> {
    assert!(out.status.success(), "env -0 failed: {}", stderr(out));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Keys whose values differ (or that only one side has).
fn changed_keys(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let keys: HashSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    out.sort();
    out
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `00-<trace>-<span>-01` → (trace, span); panics on anything else.
fn sampled_traceparent(tp: &str) -> (String, String) {
    let parts: Vec<&str> = tp.trim().split('-').collect();
    assert!(
        parts.len() == 4
            && parts[0] == "00"
            && is_lower_hex(parts[1], 32)
            && is_lower_hex(parts[2], 16)
            && parts[3] == "01",
        "not a sampled W3C traceparent: {tp:?}"
    );
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Waits for a child, killing it if it takes longer than `within`.
fn wait_within(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn status_with(spool: &Path, envs: &[(&str, &str)], extra: &[&str]) -> serde_json::Value {
    let out = run(ts(spool)
        .envs(envs.iter().copied())
        .args(extra)
        .args(["status", "--json"]));
    assert!(out.status.success(), "status failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}: {}", stdout(&out)))
}

const PARENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN: &str = "b7ad6b7169203331";

fn parent_traceparent(flags: &str) -> String {
    format!("00-{PARENT_TRACE}-{PARENT_SPAN}-{flags}")
}

// ---------------------------------------------------------------------------------------------
// Nesting, and the child's own spans.

#[test]
fn a_nested_exec_and_a_python_child_make_one_trace_of_three_spans() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("child.py");
    std::fs::write(&script, common::PYTHON_CHILD).unwrap();
    let pids = tmp.path().join("pids");
    let spool = tmp.path().join("spool");

    let started = Instant::now();
    let out = run(tracespool()
        // Both levels share the spool, as they do with the default spool directory.
        .env("TRACESPOOL_DIR", &spool)
        .env("TRACESPOOL_BUDGET", "5s")
        .args(["--endpoint", &rotel.endpoint(), "exec", "--"])
        .arg(env!("CARGO_BIN_EXE_tracespool"))
        .args(["exec", "--"])
        .arg(python())
        .arg(&script)
        .arg(&pids)
        .stdin(Stdio::null()));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "stdout: {:?}", stdout(&out));
    assert!(stderr(&out).is_empty(), "stderr: {}", stderr(&out));
    let elapsed = started.elapsed();

    let spans = rotel.exactly(3);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let (python_pid, inner_pid) = {
        let text = std::fs::read_to_string(&pids).unwrap();
        let (a, b) = text.split_once(' ').unwrap();
        (a.to_owned(), b.to_owned())
    };

    // The outer exec wraps the inner tracespool; the inner exec wraps python.
    let outer = spans
        .iter()
        .find(|s| s.parent_id.is_empty())
        .expect("a root");
    assert_eq!(outer.name, "tracespool", "{spans:#?}");
    let inner = spans
        .iter()
        .find(|s| s.parent_id == outer.id)
        .expect("a child of the outer span");
    let python_bin = python();
    let python_name = python_bin.file_name().unwrap().to_str().unwrap();
    assert_eq!(inner.name, python_name);
    let work = spans
        .iter()
        .find(|s| s.parent_id == inner.id)
        .expect("a child of the inner span");
    assert_eq!(work.name, "python-work");
    assert!(
        spans.iter().all(|s| s.trace_id == outer.trace_id),
        "one trace: {spans:#?}"
    );

    assert_eq!(
        outer.attr("process.executable.name"),
        Some("Str(tracespool)")
    );
    assert_eq!(outer.attr("process.exit.code"), Some("Int(0)"));
    assert_eq!(
        outer.attr("process.pid"),
        Some(format!("Int({inner_pid})").as_str()),
        "the outer span's pid is the inner tracespool's"
    );
    assert_eq!(
        inner.attr("process.executable.name"),
        Some(format!("Str({python_name})").as_str())
    );
    assert_eq!(inner.attr("process.exit.code"), Some("Int(0)"));
    assert_eq!(
        inner.attr("process.pid"),
        Some(format!("Int({python_pid})").as_str())
    );
    assert_eq!(outer.service(), Some("tracespool"));
    assert_eq!(inner.service(), Some(python_name));
    // The child's own request is passed on as it was: its resource is the Python SDK's.
    assert_eq!(
        work.resource
            .get("telemetry.sdk.language")
            .map(String::as_str),
        Some("python"),
        "{work:#?}"
    );
    assert_eq!(
        status_json(&spool, &["--endpoint", &rotel.endpoint()])["batches"],
        0
    );
    assert!(elapsed < 10 * SECOND, "took {elapsed:?}");
    // Once python has exited, the inner tracespool hands two spans to a receiver on loopback:
    // that takes milliseconds, not the budget.
    let ns = |t: &str| t.parse::<u64>().unwrap();
    let after_python = Duration::from_nanos(ns(&outer.end_ns) - ns(&inner.end_ns));
    assert!(
        after_python < Duration::from_millis(1500),
        "the inner tracespool spent {after_python:?} after its child exited (budget 5s)"
    );
}

// ---------------------------------------------------------------------------------------------
// Many runs while the backend is down, then one flush.

#[test]
fn thirty_two_concurrent_runs_against_a_down_backend_are_all_delivered_once_by_one_flush() {
    let mut rotel = Rotel::start();
    rotel.stop();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let endpoint = rotel.endpoint();

    let children: Vec<Child> = (0..32)
        .map(|i| {
            ts(&spool)
                .args(["--endpoint", &endpoint, "exec", "--name"])
                .arg(format!("run-{i}"))
                .args(["--attr", &format!("run={i}"), "--", "true"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    let before = status_json(&spool, &["--endpoint", &endpoint]);
    assert_eq!(
        (before["batches"].as_u64(), before["spans"].as_u64()),
        (Some(32), Some(32)),
        "{before}"
    );
    assert_eq!(before["backend"], "down", "{before}");

    rotel.resume();
    let out = run(ts(&spool).args(["--endpoint", &endpoint, "--budget", "10s", "flush"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let spans = rotel.exactly(32);
    assert_eq!(spans.len(), 32, "{spans:#?}");
    let names: HashSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let runs: HashSet<&str> = spans.iter().filter_map(|s| s.attr("run")).collect();
    assert_eq!(names.len(), 32, "each name once");
    assert_eq!(runs.len(), 32, "each attribute once");
    for i in 0..32 {
        let span = spans.iter().find(|s| s.name == format!("run-{i}")).unwrap();
        assert_eq!(span.attr("run"), Some(format!("Str({i})").as_str()));
    }
    let after = status_json(&spool, &["--endpoint", &endpoint]);
    assert_eq!(after["batches"], 0, "{after}");
    assert_eq!(after["backend"], "up", "{after}");
}

// ---------------------------------------------------------------------------------------------
// Exit codes and signals.

#[test]
fn the_exit_code_is_the_commands_and_a_failure_marks_the_span_as_an_error() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let exec = |name: &str| {
        let mut cmd = ts(&spool);
        cmd.args([
            "--endpoint",
            &rotel.endpoint(),
            "exec",
            "--name",
            name,
            "--",
        ]);
        cmd
    };

    let ok = run(exec("ok").arg("true"));
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(ok.stderr.is_empty(), "{}", stderr(&ok));
    let seven = run(exec("seven").args(["sh", "-c", "exit 7"]));
    assert_eq!(seven.status.code(), Some(7), "{}", stderr(&seven));
    assert!(seven.stderr.is_empty(), "{}", stderr(&seven));

    let missing = "/nonexistent/no-such-command-7f3a";
    let not_found = run(exec("not-found").arg(missing));
    assert_eq!(not_found.status.code(), Some(127));
    assert_eq!(stderr_lines(&not_found).len(), 1, "{}", stderr(&not_found));
    assert!(
        stderr(&not_found).contains(missing),
        "{}",
        stderr(&not_found)
    );
    let not_on_path = run(exec("not-on-path").arg("no-such-command-7f3a"));
    assert_eq!(not_on_path.status.code(), Some(127));
    assert!(stderr(&not_on_path).contains("no-such-command-7f3a"));

    let script = tmp.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let not_exec = run(exec("not-executable").arg(&script));
    assert_eq!(not_exec.status.code(), Some(126));
    assert_eq!(stderr_lines(&not_exec).len(), 1, "{}", stderr(&not_exec));
    assert!(stderr(&not_exec).contains(script.to_str().unwrap()));

    let ok = rotel.named("ok");
    assert_eq!(ok.status_code, "STATUS_CODE_UNSET", "{ok:#?}");
    assert_eq!(ok.attr("process.exit.code"), Some("Int(0)"));
    assert_eq!(ok.kind, "SPAN_KIND_INTERNAL");
    let seven = rotel.named("seven");
    assert_eq!(
        (seven.status_code.as_str(), seven.status_message.as_str()),
        ("STATUS_CODE_ERROR", "exit code 7"),
        "{seven:#?}"
    );
    assert_eq!(seven.attr("process.exit.code"), Some("Int(7)"));
    assert_eq!(seven.attr("process.executable.name"), Some("Str(sh)"));
    assert!(
        seven
            .attr("process.pid")
            .is_some_and(|p| p.starts_with("Int(")),
        "{seven:#?}"
    );
    for name in ["not-found", "not-executable"] {
        let span = rotel.named(name);
        assert_eq!(span.status_code, "STATUS_CODE_ERROR", "{span:#?}");
    }
}

/// Waits for `path` to exist (a child says it is ready).
fn wait_for_file(path: &Path) {
    assert!(
        eventually(5 * SECOND, || path.exists()),
        "{} never appeared",
        path.display()
    );
}

#[test]
fn sigterm_sent_to_tracespool_reaches_the_child_and_its_fate_is_the_exit_code() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let got = tmp.path().join("got-term");
    let ready = tmp.path().join("ready");

    // A child that handles SIGTERM, records it, and exits 143 itself.
    let script = r#"
got=$1
on_term() { echo got-term > "$got"; kill "$pid" 2>/dev/null; exit 143; }
trap on_term TERM
sleep 5 >/dev/null 2>&1 &
pid=$!
: > "$2"
wait
"#;
    let started = Instant::now();
    let mut child = ts(&spool)
        .args(["--endpoint", &rotel.endpoint(), "exec", "--name", "trapped"])
        .args(["--", "sh", "-c", script, "sh"])
        .arg(&got)
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&ready);
    common::signal(child.id(), 15);
    let status = wait_within(&mut child, 4 * SECOND);
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(started.elapsed() < 4 * SECOND);
    assert_eq!(
        std::fs::read_to_string(&got).unwrap_or_default().trim(),
        "got-term",
        "the child never saw SIGTERM"
    );

    // A child that does not handle it dies of it: 128 + 15.
    let started = Instant::now();
    let mut child = ts(&spool)
        .args(["--endpoint", &rotel.endpoint(), "exec", "--name", "killed"])
        .args(["--", "sleep", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    common::signal(child.id(), 15);
    let status = wait_within(&mut child, 4 * SECOND);
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(started.elapsed() < 4 * SECOND);

    let trapped = rotel.named("trapped");
    assert_eq!(trapped.attr("process.exit.code"), Some("Int(143)"));
    assert_eq!(trapped.status_message, "exit code 143");
    let killed = rotel.named("killed");
    assert_eq!(
        (killed.status_code.as_str(), killed.status_message.as_str()),
        ("STATUS_CODE_ERROR", "killed by signal SIGTERM"),
        "{killed:#?}"
    );
    assert_eq!(
        killed.attr("process.exit.code"),
        None,
        "no exit code when killed by a signal"
    );
}

// ---------------------------------------------------------------------------------------------
// Stdio.

#[test]
fn exec_prints_nothing_itself_and_passes_stdin_and_stdout_through() {
    let fault = FaultServer::start(Answer::status(200));
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let exec = || {
        let mut cmd = ts(&spool);
        cmd.args(["--endpoint", &fault.endpoint(), "exec", "--"]);
        cmd
    };

    let out = run(exec().arg("true"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let out = run(exec().args(["echo", "hi"]));
    assert_eq!(stdout(&out), "hi\n");

    let mut child = exec()
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"data\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "data\n");
    assert_eq!(fault.requests().len(), 3, "each run delivered its span");
}

// ---------------------------------------------------------------------------------------------
// TRACEPARENT.

const PRINT_CONTEXT: &str = r#"printf '%s\n%s\n%s\n' "$TRACEPARENT" "$TRACESTATE" "$BAGGAGE""#;

#[test]
fn a_valid_traceparent_is_the_parent_and_the_child_gets_the_exec_span_with_tracestate() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(ts(&tmp.path().join("spool"))
        .env("TRACEPARENT", parent_traceparent("01"))
        .env("TRACESTATE", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        .env("BAGGAGE", "user=alice")
        .args(["--endpoint", &rotel.endpoint(), "exec", "--name", "child"])
        .args(["--", "sh", "-c", PRINT_CONTEXT]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");

    let span = rotel.named("child");
    assert_eq!(span.trace_id, PARENT_TRACE);
    assert_eq!(span.parent_id, PARENT_SPAN);
    assert_ne!(span.id, PARENT_SPAN);
    assert_eq!(
        sampled_traceparent(lines[0]),
        (PARENT_TRACE.to_owned(), span.id.clone()),
        "the child's TRACEPARENT names the exec span"
    );
    assert_eq!(lines[1], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    assert_eq!(lines[2], "user=alice");
}

#[test]
fn an_invalid_traceparent_starts_a_new_trace_with_one_warning() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let upper = parent_traceparent("01").to_uppercase();
    let out = run(ts(&tmp.path().join("spool"))
        .env("TRACEPARENT", &upper)
        .args(["--endpoint", &rotel.endpoint(), "exec", "--name", "fresh"])
        .args(["--", "sh", "-c", PRINT_CONTEXT]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let warnings = stderr_lines(&out);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("TRACEPARENT"), "{warnings:?}");

    let span = rotel.named("fresh");
    assert_eq!(span.parent_id, "", "a new trace has no parent");
    assert_ne!(span.trace_id, PARENT_TRACE);
    let child_sees = stdout(&out).lines().next().unwrap_or_default().to_owned();
    assert_eq!(
        sampled_traceparent(&child_sees),
        (span.trace_id.clone(), span.id.clone())
    );
}

#[test]
fn an_unsampled_traceparent_records_nothing_and_reaches_the_child_unchanged() {
    let fault = FaultServer::start(Answer::status(200));
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let unsampled = parent_traceparent("00");
    let out = run(ts(&spool)
        .env("TRACEPARENT", &unsampled)
        .args(["--endpoint", &fault.endpoint(), "exec", "--"])
        .args(["sh", "-c", "echo \"$TRACEPARENT\"; exit 3"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{unsampled}\n"));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(fault.connections(), 0, "nothing sent");
    let status = status_json(&spool, &["--endpoint", &fault.endpoint()]);
    assert_eq!(
        (status["batches"].as_u64(), status["spans"].as_u64()),
        (Some(0), Some(0)),
        "{status}"
    );
}

// ---------------------------------------------------------------------------------------------
// The child's environment.

#[test]
fn with_capture_the_child_is_pointed_at_a_loopback_receiver_and_loses_its_certificates() {
    let fault = FaultServer::start(Answer::status(200));
    let tmp = tempfile::tempdir().unwrap();
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "/etc/traces-ca.pem",
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/key.pem"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret"),
        ("SOME_VAR", "kept"),
    ];
    let direct = env0(&run(bare("env").envs(vars).arg("-0")));
    let out = run(ts(&tmp.path().join("spool")).envs(vars).args([
        "--endpoint",
        &fault.endpoint(),
        "exec",
        "--",
        "env",
        "-0",
    ]));
    let wrapped = env0(&out);

    let endpoint = &wrapped["OTEL_EXPORTER_OTLP_ENDPOINT"];
    let port: u16 = endpoint
        .strip_prefix("http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a loopback receiver: {endpoint}"));
    assert_ne!(port, 0);
    // The child exports over gRPC (its protocol, left as it is): every signal goes to the
    // bare receiver, which speaks gRPC too.
    for signal in ["TRACES", "METRICS", "LOGS"] {
        assert_eq!(
            wrapped[&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")],
            format!("http://127.0.0.1:{port}")
        );
    }
    assert_eq!(wrapped["OTEL_EXPORTER_OTLP_PROTOCOL"], "grpc");
    for removed in [
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    ] {
        assert!(!wrapped.contains_key(removed), "{removed} still set");
    }
    sampled_traceparent(&wrapped["TRACEPARENT"]);
    assert_eq!(
        changed_keys(&direct, &wrapped),
        [
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "TRACEPARENT",
        ],
        "nothing else changes"
    );
}

/// Sends REQUESTS OTLP/JSON requests of SPANS spans with a 10 KB attribute each (its arguments)
/// to the receiver exec points it at.
const PYTHON_BIG_CHILD: &str = r#"
import json, os, sys, urllib.request
endpoint = os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
requests, per_request = int(sys.argv[1]), int(sys.argv[2])
blob = "x" * 10000
for r in range(requests):
    spans = [{"traceId": "%032x" % (r + 1), "spanId": "%016x" % (i + 1), "name": "big-%d-%d" % (r, i),
              "kind": 1, "startTimeUnixNano": "1", "endTimeUnixNano": "2",
              "attributes": [{"key": "blob", "value": {"stringValue": blob}}]} for i in range(per_request)]
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"scope": {"name": "big"}, "spans": spans}]}]})
    request = urllib.request.Request(endpoint, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200, answer.status
"#;

#[test]
fn captured_spans_beyond_what_is_held_in_memory_go_to_the_spool_and_none_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let script = tmp.path().join("big.py");
    std::fs::write(&script, PYTHON_BIG_CHILD).unwrap();
    // 5 requests of 400 spans, about 4 MB apiece: 20 MB, more than the 16 MiB exec holds
    // (stored as they are, so that the size on disk shows they all went there).
    let out = run(ts(&spool)
        .args(["--spool-compression", "none", "exec", "--name", "big", "--"])
        .arg(python())
        .arg(&script)
        .args(["5", "400"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let status = common::status_verify_json(&spool, &["--spool-compression", "none"]);
    assert_eq!(
        status["spans"],
        5 * 400 + 1,
        "every captured span and exec's: {status}"
    );
    assert_eq!(status["dropped_spans"], 0, "{status}");
    assert_eq!(status["corrupt_records"], 0, "{status}");
    assert!(
        status["bytes"].as_u64().unwrap() > 16 * 1024 * 1024,
        "{status}"
    );
}

#[test]
fn one_budget_bounds_the_whole_run_however_many_requests_its_spans_take() {
    let server = FaultServer::start(Answer::Late(
        Duration::from_millis(400),
        Box::new(Answer::status(200)),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let script = tmp.path().join("big.py");
    std::fs::write(&script, PYTHON_BIG_CHILD).unwrap();
    // 4 requests of 6 spans, about 60 KB apiece; with this bound exec sends at most 64 KiB per
    // request: 4 requests of 0.4 s each against a budget of 0.5 s.
    let started = Instant::now();
    let out = run(ts(&spool)
        .args(["--endpoint", &server.endpoint(), "--budget", "500ms"])
        .args(["--max-bytes", "256KiB", "exec", "--"])
        .arg(python())
        .arg(&script)
        .args(["4", "6"]));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        took < Duration::from_millis(1500),
        "{took:?}: the budget bounds the run, not each request"
    );
    let status = status_json(&spool, &["--endpoint", &server.endpoint()]);
    assert_eq!(
        status["spans"],
        3 * 6,
        "what the budget left unsent is spooled: {status}"
    );
    assert_eq!(
        status["backend"], "up",
        "a slow backend is not a down one: {status}"
    );
}

#[test]
fn with_no_capture_only_traceparent_is_added_to_the_childs_environment() {
    let fault = FaultServer::start(Answer::status(200));
    let tmp = tempfile::tempdir().unwrap();
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret"),
    ];
    let direct = env0(&run(bare("env").envs(vars).arg("-0")));
    let out = run(ts(&tmp.path().join("spool"))
        .envs(vars)
        .args(["--endpoint", &fault.endpoint(), "exec", "--no-capture"])
        .args(["--", "env", "-0"]));
    let wrapped = env0(&out);
    assert_eq!(changed_keys(&direct, &wrapped), ["TRACEPARENT"]);
    sampled_traceparent(&wrapped["TRACEPARENT"]);

    // Without any OTel variable of ours, none appears either.
    let direct = env0(&run(bare("env").arg("-0")));
    let wrapped = env0(&run(ts(&tmp.path().join("spool")).args([
        "exec",
        "--no-capture",
        "--",
        "env",
        "-0",
    ])));
    assert_eq!(changed_keys(&direct, &wrapped), ["TRACEPARENT"]);
}

// ---------------------------------------------------------------------------------------------
// OTEL_SDK_DISABLED.

#[test]
fn with_the_sdk_disabled_the_child_sees_its_own_environment_and_nothing_is_touched() {
    let fault = FaultServer::start(Answer::status(200));
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let traces = fault.endpoint();
    let traceparent = parent_traceparent("01");
    let vars = [
        ("OTEL_SDK_DISABLED", "true"),
        ("TRACESPOOL_DIR", spool.to_str().unwrap()),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.as_str()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
        ("TRACEPARENT", traceparent.as_str()),
        ("TRACESTATE", "k=v"),
    ];
    let direct = env0(&run(bare("env").envs(vars).arg("-0")));
    let mut wrapped = tracespool();
    wrapped.envs(vars).stdin(Stdio::null());
    let out = run(wrapped.args(["exec", "--", "env", "-0"]));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert_eq!(env0(&out), direct, "identical, TRACEPARENT included");

    let out = run(tracespool()
        .envs(vars)
        .args(["exec", "--", "sh", "-c", "exit 5"]));
    assert_eq!(out.status.code(), Some(5));
    let out = run(tracespool().envs(vars).args(["span", "--name", "s"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    for command in ["status", "flush"] {
        let out = run(tracespool().envs(vars).arg(command));
        assert_eq!(out.status.code(), Some(0), "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("disabled") || stdout(&out).contains("disabled"),
            "{command} says tracing is disabled: {} {}",
            stdout(&out),
            stderr(&out)
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(!spool.exists(), "the spool directory was created");
    assert_eq!(fault.connections(), 0, "no network");
}

// ---------------------------------------------------------------------------------------------
// Invalid values.

#[test]
fn a_bad_size_in_the_environment_warns_once_and_the_default_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let out = run(ts(&spool)
        .env("TRACESPOOL_MAX_BYTES", "lots")
        .args(["exec", "--", "sh", "-c", "exit 3"]));
    assert_eq!(out.status.code(), Some(3), "the command still runs");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("TRACESPOOL_MAX_BYTES") && lines[0].contains("lots"),
        "{lines:?}"
    );
    let status = status_with(&spool, &[("TRACESPOOL_MAX_BYTES", "lots")], &[]);
    assert_eq!(status["max_bytes"], 67_108_864, "{status}");
    assert_eq!(status["batches"], 1, "the run was spooled: {status}");
}

#[test]
fn a_bad_flag_is_a_usage_error_and_the_command_does_not_run() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let marker = tmp.path().join("ran");
    for args in [
        &["exec", "--max-bytes", "lots", "--"][..],
        &["--max-bytes", "lots", "exec", "--"],
        &["exec", "--kind", "sideways", "--"],
        &["--endpoint", "ftp://127.0.0.1/", "exec", "--"],
        // A typo'd option of exec's own, before the command: not the command.
        &["exec", "--nmae", "x", "--"],
        &["exec", "--nmae", "x"],
        &["exec", "-n"],
    ] {
        let out = run(ts(&spool).args(args).arg("touch").arg(&marker));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!out.stderr.is_empty(), "{args:?}: a usage message");
        assert!(!marker.exists(), "{args:?}: the command ran");
    }
    // From the command on, every word is the command's, those that look like ours included.
    let out = run(ts(&spool).args(["exec", "sh", "-c", "exit 4", "--name", "-v"]));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// The shared backoff.

#[test]
fn after_a_503_with_retry_after_the_next_runs_make_no_connection_and_spool() {
    let fault = FaultServer::start(Answer::with(503, &[("Retry-After", "3")], b""));
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let exec = |name: &str| {
        let out = run(ts(&spool)
            .args(["--endpoint", &fault.endpoint(), "exec", "--name", name])
            .args(["--", "true"]));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    };

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    exec("first");
    assert_eq!(fault.requests().len(), 1);
    let connections = fault.connections();
    let started = Instant::now();
    exec("second");
    exec("third");
    assert!(started.elapsed() < 2 * SECOND, "within the window");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(fault.connections(), connections, "no connection attempt");
    assert_eq!(fault.requests().len(), 1);

    let status = status_json(&spool, &["--endpoint", &fault.endpoint()]);
    assert_eq!(status["backend"], "down", "{status}");
    assert_eq!(
        (status["batches"].as_u64(), status["spans"].as_u64()),
        (Some(3), Some(3)),
        "{status}"
    );
    let retry_at = status["retry_at"].as_f64().expect("retry_at set");
    assert!(
        retry_at > before + 2.0 && retry_at < before + 5.0,
        "retry_at {retry_at} is about 3 s after {before}"
    );
    assert!(status["last_error"].is_string(), "{status}");
}

// ---------------------------------------------------------------------------------------------
// Spool directories that are not ours.

#[test]
fn a_symlinked_spool_directory_is_refused_but_the_command_still_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    refused_but_the_command_runs(&link);
    assert_eq!(
        std::fs::read_dir(&real).unwrap().count(),
        0,
        "nothing was written through the link"
    );
}

#[test]
fn a_spool_directory_owned_by_another_user_is_refused_but_the_command_still_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    if let Err(e) = std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)) {
        common::skip(
            "a_spool_directory_owned_by_another_user_is_refused",
            &format!("cannot chown as this user ({e})"),
        );
        return;
    }
    refused_but_the_command_runs(&theirs);
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
}

fn refused_but_the_command_runs(dir: &Path) {
    let path = dir.to_str().unwrap();
    let out = run(ts(dir).args(["exec", "--", "sh", "-c", "echo ran; exit 6"]));
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ran\n");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(path), "{lines:?}");

    let out = run(ts(dir).arg("status"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(path), "{}", stderr(&out));

    let out = run(ts(dir).args(["span", "--name", "refused"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(path), "{lines:?}");
}

// ---------------------------------------------------------------------------------------------
// span.

#[test]
fn span_prints_its_traceparent_and_records_times_kind_status_and_parent() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let span = || {
        let mut cmd = ts(&spool);
        cmd.args(["--endpoint", &rotel.endpoint(), "span"]);
        cmd
    };

    let out = run(span().args(["--name", "s", "--attr", "k=v", "--print-traceparent"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert_eq!(printed.lines().count(), 1, "{printed:?}");
    assert!(printed.ends_with('\n'));
    let traceparent = printed
        .trim_end()
        .strip_prefix("TRACEPARENT=")
        .unwrap_or_else(|| panic!("{printed:?}"))
        .to_owned();
    let (trace_id, span_id) = sampled_traceparent(&traceparent);

    let out = run(span()
        .env("TRACEPARENT", &traceparent)
        .args(["--name", "child", "--kind", "server", "--status", "error"])
        .args(["--start", "2024-01-02T03:04:05.5+01:00"])
        .args(["--end", "1704161046.25"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing without --print-traceparent");

    let out = run(span()
        .args(["--name", "millis", "--start", "1704161045.123"])
        .args(["--end", "2024-01-02T02:04:06.987654321Z"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Only one end given, in the past or the future: the other is now, unless that would put
    // the end before the start; then the span has no length.
    for (name, args) in [
        ("end-only", ["--end", "1704161045"]),
        ("start-only", ["--start", "4102444800"]),
    ] {
        let out = run(span().args(["--name", name]).args(args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }

    let s = rotel.named("s");
    assert_eq!(
        (s.trace_id.as_str(), s.id.as_str()),
        (&*trace_id, &*span_id)
    );
    assert_eq!(s.parent_id, "");
    assert_eq!(s.attr("k"), Some("Str(v)"));
    assert_eq!(s.kind, "SPAN_KIND_INTERNAL");
    assert_eq!(s.status_code, "STATUS_CODE_UNSET");
    assert_eq!(s.service(), Some("tracespool"));

    let child = rotel.named("child");
    assert_eq!(child.trace_id, trace_id);
    assert_eq!(child.parent_id, span_id);
    assert_eq!(child.kind, "SPAN_KIND_SERVER");
    assert_eq!(child.status_code, "STATUS_CODE_ERROR");
    assert_eq!(child.start_ns, "1704161045500000000", "{child:#?}");
    assert_eq!(child.end_ns, "1704161046250000000", "{child:#?}");

    for (name, at) in [("end-only", "1704161045"), ("start-only", "4102444800")] {
        let s = rotel.named(name);
        let ns = format!("{at}000000000");
        assert_eq!(
            (&*s.start_ns, &*s.end_ns),
            (&*ns, &*ns),
            "{name} alone: {s:#?}"
        );
    }

    let millis = rotel.named("millis");
    assert_eq!(
        (millis.start_ns.as_str(), millis.end_ns.as_str()),
        ("1704161045123000000", "1704161046987654321"),
        "unix seconds with a millisecond fraction, RFC 3339 with nanoseconds"
    );
}

#[test]
fn span_records_its_span_even_when_stdout_is_a_closed_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = ts(&spool)
        .args(["span", "--name", "closed", "--print-traceparent"])
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(status_json(&spool, &[])["batches"], 1);
}

#[test]
fn a_span_with_a_bad_time_kind_status_or_attribute_is_a_usage_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    for (args, named) in [
        (&["--start", "yesterday"][..], "yesterday"),
        (&["--end", "2024-13-01T00:00:00Z"], "2024-13-01T00:00:00Z"),
        (
            &["--start", "2000", "--end", "1999.5"],
            "--end (1999.500000000) is before --start (2000.000000000)",
        ),
        (&["--kind", "sideways"], "sideways"),
        (&["--status", "maybe"], "maybe"),
        (&["--attr", "novalue"], "novalue"),
    ] {
        let out = run(ts(&spool).args(["span", "--name", "s"]).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(!spool.exists(), "nothing was recorded");
    let out = run(ts(&spool)
        .args(["span", "--name", "zero-length"])
        .args(["--start", "2000", "--end", "2000"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_backends_message_of_control_characters_reaches_neither_the_terminal_nor_the_exit_code() {
    // google.rpc.Status { code: 3, message }: escape sequences, controls, and quotes that JSON
    // escaping makes longer.
    let message = [
        b"\x1b[2J\x1b[31mbad".as_slice(),
        &[1u8; 300],
        &b"\"\\".repeat(200),
    ]
    .concat();
    let mut body = vec![0x08, 0x03, 0x12];
    let mut len = message.len();
    while len >= 0x80 {
        body.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    body.push(len as u8);
    body.extend_from_slice(&message);
    let server = FaultServer::start(Answer::with(
        400,
        &[("content-type", "application/x-protobuf")],
        &body,
    ));
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let out = run(ts(&spool)
        .args(["--endpoint", &server.endpoint(), "exec", "--"])
        .args(["sh", "-c", "exit 3"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("rejected"),
        "the dead-lettering is said: {err}"
    );
    assert!(
        !err.chars().any(|c| c.is_control() && c != '\n'),
        "control characters on stderr: {err:?}"
    );
    let status = status_json(&spool, &["--endpoint", &server.endpoint()]);
    assert_eq!(status["rejected_spans"], 1, "{status}");
    let last = status["last_error"].as_str().expect("last_error");
    assert!(last.contains("bad"), "{last:?}");
    assert!(!last.chars().any(char::is_control), "{last:?}");
}

// ---------------------------------------------------------------------------------------------
// The config file.

#[test]
fn the_config_file_is_read_and_flags_then_environment_win_over_it() {
    let rotel = Rotel::start();
    let from_file = FaultServer::start(Answer::status(200));
    let from_env = FaultServer::start(Answer::status(200));
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let write = |name: &str, text: String| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let to_rotel = write("rotel.toml", format!("endpoint = {:?}\n", rotel.endpoint()));
    let to_fault = write(
        "fault.toml",
        format!("endpoint = {:?}\n", from_file.endpoint()),
    );
    let broken = write("broken.toml", "this is = = not toml\n".into());
    let exec = |name: &str, flags: &[&std::ffi::OsStr]| {
        let mut cmd = ts(&spool);
        cmd.args(flags).args(["exec", "--name", name, "--", "true"]);
        cmd
    };
    let config = std::ffi::OsStr::new("--config");
    let ok = |out: Output| {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
    };

    ok(run(&mut exec("via-flag", &[config, to_rotel.as_os_str()])));
    ok(run(exec("via-env", &[]).env("TRACESPOOL_CONFIG", &to_rotel)));
    rotel.named("via-flag");
    rotel.named("via-env");

    let out = run(ts(&spool)
        .arg("--config")
        .arg(&broken)
        .args(["exec", "--", "sh", "-c", "exit 4"]));
    assert_eq!(out.status.code(), Some(4), "the command still runs");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(broken.to_str().unwrap()), "{lines:?}");

    // A config file that is not there: one line naming it, and the command still runs.
    let missing = tmp.path().join("missing.toml");
    let endpoint = rotel.endpoint();
    let out = run(exec(
        "missing-config",
        &["--endpoint".as_ref(), endpoint.as_ref()],
    )
    .env("TRACESPOOL_CONFIG", &missing));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(missing.to_str().unwrap()), "{lines:?}");
    rotel.named("missing-config");

    // flag > environment > file
    let rotel_endpoint = rotel.endpoint();
    ok(run(exec(
        "flag-wins",
        &[
            config,
            to_fault.as_os_str(),
            "--endpoint".as_ref(),
            rotel_endpoint.as_ref(),
        ],
    )
    .env(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        from_env.endpoint(),
    )));
    rotel.named("flag-wins");
    assert_eq!(
        (from_file.requests().len(), from_env.requests().len()),
        (0, 0)
    );
    ok(run(exec("env-wins", &[config, to_fault.as_os_str()]).env(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        from_env.endpoint(),
    )));
    assert_eq!(
        (from_file.requests().len(), from_env.requests().len()),
        (0, 1)
    );
    ok(run(&mut exec(
        "file-applies",
        &[config, to_fault.as_os_str()],
    )));
    assert_eq!(
        (from_file.requests().len(), from_env.requests().len()),
        (1, 1)
    );
}

// ---------------------------------------------------------------------------------------------
// status --verify.

#[test]
fn status_verify_finds_a_flipped_byte_in_a_sealed_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let pad = "x".repeat(1500);
    for i in 0..8 {
        // Stored as they are: the marker is looked for in the segment's bytes.
        let out = run(ts(&spool)
            .args(["--max-bytes", "64KiB", "--spool-compression", "none"])
            .args(["exec", "--name"])
            .arg(format!("MARKER-{i}"))
            .args(["--attr", &format!("pad={pad}"), "--", "true"]));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let verify = |spool: &Path| {
        let out = run(ts(spool).args(["--max-bytes", "64KiB", "status", "--json", "--verify"]));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
        (out.status.code(), json)
    };
    let (code, json) = verify(&spool);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["corrupt_records"], 0, "{json}");
    assert_eq!(json["batches"], 8, "{json}");

    let mut segments: Vec<PathBuf> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert!(
        segments.len() >= 2,
        "the segments did not rotate: {segments:?}"
    );
    let sealed = &segments[0];
    let mut bytes = std::fs::read(sealed).unwrap();
    let at = bytes
        .windows(6)
        .position(|w| w == b"MARKER")
        .expect("a span name in the sealed segment");
    bytes[at] ^= 0x20;
    std::fs::write(sealed, bytes).unwrap();

    let (code, json) = verify(&spool);
    assert_eq!(code, Some(1), "{json}");
    assert!(
        json["corrupt_records"].as_u64().is_some_and(|n| n >= 1),
        "{json}"
    );
}

// ---------------------------------------------------------------------------------------------
// Service name.

#[test]
fn the_service_name_is_the_commands_unless_the_environment_or_a_flag_says_otherwise() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let exec = |name: &str, flags: &[&str]| {
        let mut cmd = ts(&spool);
        cmd.args(flags)
            .args(["--endpoint", &rotel.endpoint(), "exec", "--name", name])
            .args(["--", "sh", "-c", "exit 0"]);
        cmd
    };
    let ok = |out: Output| assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    ok(run(&mut exec("default", &[])));
    ok(run(exec("env", &[]).env("OTEL_SERVICE_NAME", "from-env")));
    ok(run(
        exec("flag", &["--service", "from-flag"]).env("OTEL_SERVICE_NAME", "from-env")
    ));
    ok(run(ts(&spool)
        .env("OTEL_SERVICE_NAME", "from-env")
        .args([
            "--endpoint",
            &rotel.endpoint(),
            "exec",
            "--service",
            "late-flag",
        ])
        .args(["--name", "late", "--", "true"])));

    assert_eq!(rotel.named("default").service(), Some("sh"));
    assert_eq!(rotel.named("env").service(), Some("from-env"));
    assert_eq!(rotel.named("flag").service(), Some("from-flag"));
    assert_eq!(
        rotel.named("late").service(),
        Some("late-flag"),
        "a global flag after the subcommand"
    );
}

/// Posts one span as protobuf, gzip-compressed by Python's own gzip module, to the capture
/// endpoint, and keeps the exact body it sent in the file named by its argument.
const PYTHON_GZIP_CHILD: &str = r#"
import gzip, os, sys, urllib.request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
request = ExportTraceServiceRequest()
scope = request.resource_spans.add().scope_spans.add()
for i in range(20):
    span = scope.spans.add()
    span.trace_id = bytes.fromhex("%032x" % 7)
    span.span_id = bytes.fromhex("%016x" % (i + 1))
    span.name = "gzip-child-span"
    span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
body = gzip.compress(request.SerializeToString(), compresslevel=9, mtime=1234567890)
open(sys.argv[1], "wb").write(body)
post = urllib.request.Request(os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], data=body,
    headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
with urllib.request.urlopen(post) as answer:
    assert answer.status == 200, answer.status
"#;

#[test]
fn a_childs_gzip_body_is_spooled_as_the_child_sent_it() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let script = tmp.path().join("gzip_child.py");
    let sent = tmp.path().join("sent.gz");
    std::fs::write(&script, PYTHON_GZIP_CHILD).unwrap();
    let out = run(ts(&spool)
        .args(["exec", "--name", "gzip-parent", "--"])
        .arg(python())
        .arg(&script)
        .arg(&sent));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let body = std::fs::read(&sent).unwrap();
    let stored = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .any(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(body.len())
                .any(|w| w == body)
        });
    assert!(
        stored,
        "the child's gzip body is in the spool as it sent it"
    );
    let status = common::status_json(&spool, &[]);
    assert_eq!(status["spans"], 21, "{status}");
}
