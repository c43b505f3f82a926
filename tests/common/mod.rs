//! Test harness: the real peers (rotel, nginx, Python SDK), a fault server for answers no real
//! backend gives on demand, and the built `tracespool` binary with a clean environment.
//!
//! The peers are installed by `.ci/peers` (run by `.ci/test`); their paths come from
//! `TRACESPOOL_ROTEL`, `TRACESPOOL_PYTHON`, `TRACESPOOL_NGINX`, `TRACESPOOL_PROMETHEUS`, else from
//! `target/peers` (or where Debian puts them).

#![allow(dead_code)]

pub mod backlog;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Each test uses some of them.
#[allow(unused_imports)]
pub use test_peers::{XorShift, eventually, free_port, signal, wait_for_port};

/// Path of an installed peer; panics with the fix when it is missing.
pub fn peer(var: &str, default: &str) -> PathBuf {
    test_peers::peer_path(var, default).unwrap_or_else(|e| panic!("{e}"))
}

pub fn rotel_bin() -> PathBuf {
    peer(test_peers::ROTEL_ENV, test_peers::ROTEL_DEFAULT)
}

pub fn python() -> PathBuf {
    peer("TRACESPOOL_PYTHON", "target/peers/venv/bin/python")
}

pub fn nginx_bin() -> PathBuf {
    std::env::var_os("TRACESPOOL_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// Prometheus (`TRACESPOOL_PROMETHEUS`, else `/usr/bin/prometheus`, as Debian's package puts
/// it). `None` when it is missing outside CI; under CI (`CI` set) a missing one fails the test.
pub fn prometheus_bin() -> Option<PathBuf> {
    let path = std::env::var_os("TRACESPOOL_PROMETHEUS")
        .map_or_else(|| PathBuf::from("/usr/bin/prometheus"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "prometheus is missing at {}: run .ci/peers (apt-get install prometheus)",
        path.display()
    );
    eprintln!("skipped: no prometheus at {}", path.display());
    None
}

/// The built binary, with none of the caller's OTel or tracespool settings.
pub fn tracespool() -> Command {
    clean_command(env!("CARGO_BIN_EXE_tracespool"))
}

/// A Python child that records one span, `python-work`, under its `TRACEPARENT` with the
/// SDK's OTLP/HTTP exporter as its environment configures it; given a path, it first writes
/// its pid and its parent's there.
pub const PYTHON_CHILD: &str = r#"
import os, sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
        f.write(f"{os.getpid()} {os.getppid()}")
ctx = TraceContextTextMapPropagator().extract(carrier={"traceparent": os.environ["TRACEPARENT"]})
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
with provider.get_tracer("child").start_as_current_span("python-work", context=ctx):
    pass
provider.shutdown()
"#;

/// How many times each name occurs.
pub fn name_counts(
    names: impl IntoIterator<Item = String>,
) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for name in names {
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// The built binary on the spool at `spool`, with no standard input.
pub fn in_spool(spool: &Path) -> Command {
    let mut cmd = tracespool();
    cmd.arg("--spool-dir")
        .arg(spool)
        .stdin(std::process::Stdio::null());
    cmd
}

/// A finished command's standard output, as text.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A finished command's standard error, as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `program` with none of the caller's OTel or tracespool settings (what [`tracespool`] runs
/// with; also for running a command directly, to compare with it wrapped).
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_")
            || key.starts_with("TRACESPOOL_")
            || key == "TRACEPARENT"
            || key == "RUST_LOG"
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// One span as rotel printed it ("detailed" debug log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenSpan {
    pub trace_id: String,
    pub parent_id: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub start_ns: String,
    pub end_ns: String,
    pub status_code: String,
    pub status_message: String,
    /// Values without their type: `v` for `Str(v)`, `7` for `Int(7)`.
    pub attributes: HashMap<String, String>,
    /// Values as printed (`Str(v)`, `Int(7)`, `Array(…)`), so that types can be checked.
    pub printed_attributes: HashMap<String, String>,
    /// The resource's attributes, without their type.
    pub resource: HashMap<String, String>,
}

impl SeenSpan {
    /// An attribute as printed, with its type.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.printed_attributes.get(key).map(String::as_str)
    }

    pub fn service(&self) -> Option<&str> {
        self.resource.get("service.name").map(String::as_str)
    }
}

/// A real OTLP collector on loopback that prints every span it receives (the shared rotel of
/// `test-peers`, with what the tests read back from its output).
pub struct Rotel(test_peers::Rotel);

impl std::ops::Deref for Rotel {
    type Target = test_peers::Rotel;
    fn deref(&self) -> &test_peers::Rotel {
        &self.0
    }
}

impl std::ops::DerefMut for Rotel {
    fn deref_mut(&mut self) -> &mut test_peers::Rotel {
        &mut self.0
    }
}

impl Rotel {
    pub fn start() -> Rotel {
        Rotel(test_peers::Rotel::start(
            &rotel_bin(),
            tempfile::tempdir().unwrap(),
            test_peers::RotelLog::Detailed,
        ))
    }

    pub fn spans(&self) -> Vec<SeenSpan> {
        parse_rotel(&self.dump())
    }

    /// How many spans of each name arrived.
    pub fn name_counts(&self) -> std::collections::BTreeMap<String, usize> {
        name_counts(self.spans().into_iter().map(|s| s.name))
    }

    fn dump(&self) -> String {
        strip_ansi(&std::fs::read_to_string(self.output_path()).unwrap_or_default())
    }

    /// The name of every metric received (one per metric, whatever its data points).
    pub fn metric_names(&self) -> Vec<String> {
        self.dump()
            .lines()
            .filter_map(|l| l.strip_prefix("     -> Name: "))
            .map(str::to_owned)
            .collect()
    }

    /// The body of every log record received, as a string.
    pub fn log_bodies(&self) -> Vec<String> {
        self.dump()
            .lines()
            .filter_map(|l| l.strip_prefix("Body: "))
            .map(|b| untyped(b).to_owned())
            .collect()
    }

    /// Waits until at least `n` spans arrived; returns them all.
    pub fn wait_for_spans(&self, n: usize, within: Duration) -> Vec<SeenSpan> {
        let mut spans = Vec::new();
        eventually(within, || {
            spans = self.spans();
            spans.len() >= n
        });
        spans
    }

    /// Waits until `n` spans arrived, then a little longer to see that no more come; returns
    /// them all (the caller checks the count).
    pub fn exactly(&self, n: usize) -> Vec<SeenSpan> {
        eventually(Duration::from_secs(10), || self.spans().len() >= n);
        std::thread::sleep(Duration::from_millis(300));
        self.spans()
    }

    /// The one span with this name (waits for it; fails if there are several).
    pub fn named(&self, name: &str) -> SeenSpan {
        let mut found = Vec::new();
        eventually(Duration::from_secs(10), || {
            found = self
                .spans()
                .into_iter()
                .filter(|s| s.name == name)
                .collect();
            !found.is_empty()
        });
        assert_eq!(
            found.len(),
            1,
            "spans named {name:?}: {found:#?}\nall: {:#?}",
            self.spans()
        );
        found.pop().unwrap()
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `Str(v)` → `v`, `Int(7)` → `7`; anything else as printed.
fn untyped(v: &str) -> &str {
    v.strip_prefix("Str(")
        .or_else(|| v.strip_prefix("Int("))
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or(v)
}

/// Parses rotel's "detailed" debug dump.
fn parse_rotel(dump: &str) -> Vec<SeenSpan> {
    #[derive(PartialEq)]
    enum Section {
        Other,
        Resource,
        SpanAttributes,
    }
    let mut spans: Vec<SeenSpan> = Vec::new();
    let mut resource: HashMap<String, String> = HashMap::new();
    let mut section = Section::Other;
    // Metrics and logs are dumped too: their lines (a log record's trace id) are no span's.
    let mut in_spans = false;
    for line in strip_ansi(dump).lines() {
        if line.starts_with("ResourceSpans #") {
            resource = HashMap::new();
            section = Section::Other;
            in_spans = true;
            continue;
        }
        if line.starts_with("ResourceLog") || line.starts_with("ResourceMetrics") {
            in_spans = false;
        }
        if !in_spans {
            continue;
        }
        if line.starts_with("Resource attributes:") {
            section = Section::Resource;
            continue;
        }
        if line.starts_with("Span #") {
            spans.push(SeenSpan {
                resource: resource.clone(),
                ..SeenSpan::default()
            });
            section = Section::Other;
            continue;
        }
        if line.starts_with("Attributes:") {
            section = Section::SpanAttributes;
            continue;
        }
        if let Some(kv) = line.strip_prefix("     -> ") {
            let Some((k, v)) = kv.split_once(": ") else {
                continue;
            };
            match section {
                Section::Resource => {
                    resource.insert(k.to_owned(), untyped(v).to_owned());
                }
                Section::SpanAttributes => {
                    if let Some(span) = spans.last_mut() {
                        span.attributes.insert(k.to_owned(), untyped(v).to_owned());
                        span.printed_attributes.insert(k.to_owned(), v.to_owned());
                    }
                }
                Section::Other => {}
            }
            continue;
        }
        if line.starts_with("     ") {
            // A continuation of the section (a nested value).
            continue;
        }
        section = Section::Other;
        let Some(span) = spans.last_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        match key.trim() {
            "Trace ID" => span.trace_id = value,
            "Parent ID" => span.parent_id = value,
            "ID" => span.id = value,
            "Name" => span.name = value,
            "Kind" => span.kind = value,
            "Start time" => span.start_ns = value,
            "End time" => span.end_ns = value,
            "Status code" => span.status_code = value,
            "Status message" => span.status_message = value,
            _ => {}
        }
    }
    spans
}

/// What the fault server does with the next request.
#[derive(Debug, Clone)]
pub enum Answer {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Accept, read the request, never answer.
    Hang,
    /// Answer this, after a while.
    Late(Duration, Box<Answer>),
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer::Respond {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        Answer::Respond {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct FaultState {
    answer: Option<Answer>,
    requests: Vec<SeenRequest>,
    connections: usize,
    unparsable: usize,
}

/// A tiny HTTP/1.1 server on loopback whose answer the test sets.
pub struct FaultServer {
    pub port: u16,
    state: Arc<Mutex<FaultState>>,
}

impl FaultServer {
    pub fn start(answer: Answer) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(FaultState {
            answer: Some(answer),
            ..FaultState::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, shared));
            }
        });
        FaultServer { port, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    pub fn set(&self, answer: Answer) {
        self.state.lock().unwrap().answer = Some(answer);
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Connections whose first bytes were not an HTTP request (e.g. a TLS handshake).
    pub fn unparsable(&self) -> usize {
        self.state.lock().unwrap().unparsable
    }
}

/// What [`read_request`] found on a connection.
pub enum Incoming {
    Request(SeenRequest),
    /// Not an HTTP/1 request line.
    Unparsable,
    /// The connection ended, or the request was cut short.
    Closed,
}

/// Reads one HTTP/1 request (header names lower-cased, the body by `Content-Length`).
pub fn read_request(reader: &mut impl BufRead) -> Incoming {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return Incoming::Closed;
    }
    let mut parts = line.split_whitespace();
    let (Some(_method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Incoming::Unparsable;
    };
    if !version.starts_with("HTTP/1") {
        return Incoming::Unparsable;
    }
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return Incoming::Closed;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return Incoming::Closed;
    }
    Incoming::Request(SeenRequest {
        path: path.to_owned(),
        headers,
        body,
    })
}

fn serve(stream: TcpStream, state: Arc<Mutex<FaultState>>) {
    state.lock().unwrap().connections += 1;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let request = match read_request(&mut reader) {
            Incoming::Request(request) => request,
            Incoming::Unparsable => {
                state.lock().unwrap().unparsable += 1;
                return;
            }
            Incoming::Closed => return,
        };
        let mut answer = {
            let mut st = state.lock().unwrap();
            st.requests.push(request);
            st.answer.clone().unwrap_or(Answer::status(200))
        };
        while let Answer::Late(after, then) = answer {
            std::thread::sleep(after);
            answer = *then;
        }
        match answer {
            Answer::Late(..) => unreachable!("waited for above"),
            Answer::Hang => {
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            Answer::Respond {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (k, v) in headers {
                    out += &format!("{k}: {v}\r\n");
                }
                out += "\r\n";
                let mut w = &stream;
                if w.write_all(out.as_bytes())
                    .and_then(|()| w.write_all(&body))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// `status --json` of a spool, parsed.
pub fn status_json(spool_dir: &Path, extra: &[&str]) -> serde_json::Value {
    status_run(spool_dir, extra, &[])
}

/// Asserts that `tracespool status` shows the spool at `spool_dir` empty and `endpoint` up.
pub fn assert_drained(spool_dir: &Path, endpoint: &str) {
    let status = status_json(spool_dir, &["--endpoint", endpoint]);
    assert_eq!(
        (status["batches"].as_u64(), status["backend"].as_str()),
        (Some(0), Some("up")),
        "{status}"
    );
}

/// `status --json --verify` (which must exit 0: no corrupt record), parsed.
pub fn status_verify_json(spool_dir: &Path, extra: &[&str]) -> serde_json::Value {
    status_run(spool_dir, extra, &["--verify"])
}

fn status_run(spool_dir: &Path, extra: &[&str], options: &[&str]) -> serde_json::Value {
    let out = tracespool()
        .arg("--spool-dir")
        .arg(spool_dir)
        .args(extra)
        .args(["status", "--json"])
        .args(options)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A tmpfs mounted on a fresh temporary directory; unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

/// The variable `.ci/test` sets when it runs as root: then a test that needs root (a tmpfs, a
/// chown) fails instead of being skipped, so that CI never passes one it did not run.
pub const NEED_ROOT_ENV: &str = "TRACESPOOL_TESTS_NEED_ROOT";

/// Says that `test` is skipped, and why; under [`NEED_ROOT_ENV`], fails it instead.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os(NEED_ROOT_ENV).is_some() {
        panic!("{test} cannot run ({why}), and {NEED_ROOT_ENV} says it must");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// Fills the file system of `path` until it is full.
pub fn fill_disk(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5Au8; 4096];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(
                e.raw_os_error(),
                Some(libc::ENOSPC),
                "filling the disk (want ENOSPC): {e}"
            );
            return;
        }
    }
}

impl Tmpfs {
    /// `None` (and a message) where mounting is not allowed: the test is skipped (see [`skip`]).
    pub fn mount(size: &str, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let result = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match result {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                let why = format!(
                    "cannot mount a tmpfs ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                skip(test, &why);
                None
            }
            Err(e) => {
                skip(test, &format!("cannot run mount: {e}"));
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

pub mod artifact;
pub mod nginx;

// ---------------------------------------------------------------------------------------------
// Child test processes (a test binary re-run as one role) report events on stdout.

/// What marks an event line on a child test process's stdout.
const EVENT_PREFIX: &str = "@@ ";

/// Reports `event` to the parent test (one line, flushed at once: the child may be killed next).
pub fn emit(event: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{EVENT_PREFIX}{event}\n").as_bytes())
        .unwrap();
    out.flush().unwrap();
}

/// Collects the events a child test process [`emit`]s on `stdout`, on a thread of its own, until
/// it exits or is killed (a line cut short by the kill is not an event).
pub fn collect_events(
    stdout: std::process::ChildStdout,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let collector = std::thread::spawn(move || {
        let mut out = std::io::BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match out.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.last() != Some(&b'\n') {
                return;
            }
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            // libtest's "test child_… ... " may precede the first event on its line.
            if let Some(at) = text.find(EVENT_PREFIX)
                && tx.send(text[at + EVENT_PREFIX.len()..].to_owned()).is_err()
            {
                return;
            }
        }
    });
    (rx, collector)
}
