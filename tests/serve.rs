//! `tracespool serve` (its answers, what a backend's answer means, the budget and the delivery
//! guarantees, as the README states them) against real peers: the Python SDK over
//! http/protobuf and gRPC, hand-written OTLP/JSON and raw HTTP requests → serve → rotel.
//!
//! Every span carries a unique name, so "exactly once" is a count of names at rotel. Raw HTTP
//! requests go through a tiny std::net client (one connection per request), gRPC calls through
//! the Python `grpc` package (installed with the SDK's gRPC exporter), so the checks see exactly
//! what a client sees.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::backlog::request_of;
use common::{
    Answer, FaultServer, Rotel, Tmpfs, assert_drained, eventually, fill_disk, free_port, python,
    signal, status_json, stderr, tracespool,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const SECOND: Duration = Duration::from_secs(1);
const SIGKILL: i32 = 9;
const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

// ---------------------------------------------------------------------------------------------
// serve as a child process.

/// A running `tracespool serve`; killed (and reaped) on drop.
struct Serve {
    child: Option<Child>,
    http: u16,
    grpc: u16,
    log: PathBuf,
}

/// How to start one.
struct ServeCmd {
    spool: PathBuf,
    endpoint: Option<String>,
    budget: String,
    /// Global flags before `serve`.
    global: Vec<String>,
    /// `serve` flags after the listeners.
    args: Vec<String>,
}

impl ServeCmd {
    fn new(spool: &Path, endpoint: Option<&str>) -> ServeCmd {
        ServeCmd {
            spool: spool.to_owned(),
            endpoint: endpoint.map(str::to_owned),
            budget: "2s".into(),
            // Diagnostics in the log, shown when a test fails.
            global: vec!["-v".into()],
            args: Vec::new(),
        }
    }

    fn budget(mut self, budget: &str) -> ServeCmd {
        self.budget = budget.to_owned();
        self
    }

    fn global(mut self, args: &[&str]) -> ServeCmd {
        self.global.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    fn args(mut self, args: &[&str]) -> ServeCmd {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    fn command(&self, http: &str, grpc: &str) -> Command {
        let mut cmd = tracespool();
        cmd.arg("--spool-dir").arg(&self.spool);
        if let Some(e) = &self.endpoint {
            cmd.args(["--endpoint", e]);
        }
        cmd.args(["--budget", &self.budget])
            .args(&self.global)
            .args(["serve", "--listen", http, "--grpc-listen", grpc])
            .args(&self.args)
            .stdin(Stdio::null());
        cmd
    }

    /// Starts it on free loopback ports and waits until both listen. Its stderr goes to `log`.
    fn start(&self, log: &Path) -> Serve {
        self.start_on("127.0.0.1", log)
    }

    /// Starts it on free ports of `host` (retrying with other ports when one was taken in the
    /// meantime) and waits until it listens on both.
    fn start_on(&self, host: &str, log: &Path) -> Serve {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_start_on(host, log) {
                Ok(serve) => return serve,
                Err((status, err)) if attempt < 3 && err.contains("in use") => {
                    eprintln!("serve could not bind ({status}), retrying: {err}");
                }
                Err((status, err)) => panic!("serve exited ({status}) before listening: {err}"),
            }
        }
    }

    /// Starts it on free ports of `host`; `Err` with its exit status and stderr when it exits
    /// before listening on both.
    fn try_start_on(&self, host: &str, log: &Path) -> Result<Serve, (ExitStatus, String)> {
        let (http, grpc) = (free_port(), free_port());
        let child = self
            .command(&format!("{host}:{http}"), &format!("{host}:{grpc}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start tracespool serve");
        let mut serve = Serve {
            child: Some(child),
            http,
            grpc,
            log: log.to_owned(),
        };
        let start = Instant::now();
        // Its own sockets, not a listener another process opened on a port that was free a
        // moment ago.
        while !(listens(serve.pid(), http) && listens(serve.pid(), grpc)) {
            if let Some(status) = serve.child.as_mut().unwrap().try_wait().unwrap() {
                serve.child = None;
                return Err((status, serve.log()));
            }
            assert!(
                start.elapsed() < 10 * SECOND,
                "serve does not listen on {http} and {grpc}: {}",
                serve.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(serve)
    }
}

/// The inodes of the TCP sockets listening on `port` (any address).
fn listening_inodes(port: u16) -> BTreeSet<String> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "0A" {
                continue;
            }
            let local_port = fields[1]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.insert(fields[9].to_owned());
            }
        }
    }
    inodes
}

/// Whether process `pid` holds a socket listening on `port`.
fn listens(pid: u32, port: u16) -> bool {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            target
                .to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .is_some_and(|inode| inodes.contains(inode))
        })
    })
}

impl Serve {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("serve is running").id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (at most `within`) for it to exit.
    fn stop_within(&mut self, within: Duration) -> ExitStatus {
        signal(self.pid(), SIGTERM);
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve did not exit within {within:?} of SIGTERM: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM; it must exit 0.
    fn stop(&mut self) {
        let status = self.stop_within(15 * SECOND);
        assert_eq!(status.code(), Some(0), "serve: {}", self.log());
    }

    /// SIGKILL, and reaps it.
    fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        signal(child.id(), SIGKILL);
        let _ = child.wait();
    }

    /// [`wait_for_names`], with this serve's log on failure.
    fn wait_for_names(
        &self,
        rotel: &Rotel,
        expected: &BTreeSet<String>,
        within: Duration,
    ) -> BTreeMap<String, usize> {
        wait_for_names(rotel, expected, within, &self.log)
    }

    fn traces_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.http)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests.

static IDS: AtomicU64 = AtomicU64::new(1);

fn unique_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 40) ^ IDS.fetch_add(1, Ordering::Relaxed)
}

/// An `ExportTraceServiceRequest` with one span per name; each span has a `pad` attribute of
/// `pad` bytes (none when 0).
fn request(names: &[String], pad: usize) -> ExportTraceServiceRequest {
    let trace = unique_id();
    let spans = names
        .iter()
        .map(|name| {
            let attributes = if pad == 0 {
                Vec::new()
            } else {
                vec![KeyValue {
                    key: "pad".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("x".repeat(pad))),
                    }),
                    ..KeyValue::default()
                }]
            };
            Span {
                trace_id: [trace.to_be_bytes(), 1u64.to_be_bytes()].concat(),
                span_id: unique_id().to_be_bytes().to_vec(),
                name: name.clone(),
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_100_000_000,
                attributes,
                ..Span::default()
            }
        })
        .collect();
    request_of(spans)
}

fn protobuf(names: &[&str]) -> Vec<u8> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    request(&names, 0).encode_to_vec()
}

/// An OTLP/JSON request as a non-Rust client writes it: hex ids, string nanoseconds.
fn otlp_json(name: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"json-client"}}}}]}},"scopeSpans":[{{"scope":{{"name":"hand-written"}},"spans":[{{"traceId":"{:016x}{:016x}","spanId":"{:016x}","name":"{name}","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000","attributes":[{{"key":"via","value":{{"stringValue":"json"}}}}]}}]}}]}}]}}"#,
        unique_id(),
        0x5b8e_fff7_9803_8103u64,
        unique_id()
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// `google.rpc.Status`, the OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), read to the end.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(30 * SECOND))?;
    stream.set_write_timeout(Some(30 * SECOND))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    stream.write_all(head.as_bytes())?;
    // A server may answer (413) and close before reading all of it: the answer still counts.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        read?;
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no response head in {raw:?}")))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn post(port: u16, content_type: &str, extra: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut headers = vec![("content-type", content_type)];
    headers.extend_from_slice(extra);
    http(port, "POST", "/v1/traces", &headers, body).expect("POST /v1/traces")
}

fn post_protobuf(port: u16, extra: &[(&str, &str)], body: &[u8]) -> Resp {
    post(port, "application/x-protobuf", extra, body)
}

/// The request was refused with `status` and a `google.rpc.Status` body in protobuf.
fn assert_protobuf_error(resp: &Resp, status: u16, what: &str) {
    assert_eq!(resp.status, status, "{what}: {resp:?}");
    assert_eq!(
        resp.content_type(),
        Some("application/x-protobuf"),
        "{what}: {resp:?}"
    );
    let decoded = RpcStatus::decode(&resp.body[..])
        .unwrap_or_else(|e| panic!("{what}: the body is not a google.rpc.Status: {e}: {resp:?}"));
    assert!(
        decoded.code != 0 && !decoded.message.is_empty(),
        "{what}: {decoded:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Python clients.

const PY_SENDER: &str = r#"
import os, sys, time
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

proto, endpoint, prefix, stop_file, limit = sys.argv[1:6]
limit = int(limit)
token = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] else None
gzip = len(sys.argv) > 7 and sys.argv[7] == "gzip"
if proto == "grpc":
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    headers = {"authorization": "Bearer " + token} if token else None
    compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
    inner = OTLPSpanExporter(endpoint=endpoint, insecure=True, headers=headers, timeout=10,
                             compression=compression)
else:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    headers = {"Authorization": "Bearer " + token} if token else None
    compression = Compression.Gzip if gzip else Compression.NoCompression
    inner = OTLPSpanExporter(endpoint=endpoint, headers=headers, timeout=10,
                             compression=compression)

class Recording(SpanExporter):
    ok = 0
    failed = 0
    def export(self, spans):
        result = inner.export(spans)
        if result == SpanExportResult.SUCCESS:
            self.ok += len(spans)
        else:
            self.failed += len(spans)
        return result
    def shutdown(self):
        inner.shutdown()
    def force_flush(self, timeout_millis=30000):
        return True

rec = Recording()
provider = TracerProvider(resource=Resource.create({"service.name": prefix}))
provider.add_span_processor(SimpleSpanProcessor(rec))
tracer = provider.get_tracer("serve-test")
sent = 0
while (sent < limit) if limit else not os.path.exists(stop_file):
    with tracer.start_as_current_span(f"{prefix}-{sent}"):
        pass
    sent += 1
    if not limit:
        time.sleep(0.01)
provider.shutdown()
print(sent, rec.ok, rec.failed, flush=True)
sys.exit(0 if rec.failed == 0 else 1)
"#;

/// Makes `calls` (a JSON list of `{name, pad, token}`, or `{raw}`: a body of those bytes, not a
/// request) with the raw gRPC stub and prints one status code name per call.
const PY_GRPC: &str = r#"
import json, os, sys, grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

port, calls = sys.argv[1], json.loads(sys.argv[2])
channel = grpc.insecure_channel(
    f"127.0.0.1:{port}",
    options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
)
stub = trace_service_pb2_grpc.TraceServiceStub(channel)
raw_export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
for call in calls:
    if "raw" in call:
        export = channel.unary_unary(call["method"]) if "method" in call else raw_export
        try:
            export(call["raw"].encode(), timeout=10)
            print("OK", flush=True)
        except grpc.RpcError as e:
            print(e.code().name, flush=True)
        continue
    req = trace_service_pb2.ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = os.urandom(16)
    span.span_id = os.urandom(8)
    span.name = call["name"]
    span.start_time_unix_nano = 1700000000000000000
    span.end_time_unix_nano = 1700000000100000000
    if call.get("pad"):
        attr = span.attributes.add()
        attr.key = "pad"
        attr.value.string_value = "x" * call["pad"]
    metadata = [("authorization", "Bearer " + call["token"])] if call.get("token") else []
    try:
        stub.Export(req, metadata=metadata, timeout=10)
        print("OK", flush=True)
    except grpc.RpcError as e:
        print(e.code().name, flush=True)
"#;

/// Python with no OTel or proxy settings of ours.
fn py(script: &Path) -> Command {
    let mut cmd = Command::new(python());
    for (key, _) in std::env::vars() {
        let lower = key.to_ascii_lowercase();
        if key.starts_with("OTEL_") || key.starts_with("GRPC_") || lower.ends_with("_proxy") {
            cmd.env_remove(key);
        }
    }
    cmd.arg(script).stdin(Stdio::null());
    cmd
}

fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A Python SDK sender: `count` spans named `prefix-0…`, or, with `count` 0, spans until
/// `dir/stop` exists; each span exported on its own (simple processor).
fn sdk_sender(
    dir: &Path,
    protocol: &str,
    endpoint: &str,
    prefix: &str,
    count: usize,
    token: Option<&str>,
    gzip: bool,
) -> Child {
    let script = write_script(dir, "sender.py", PY_SENDER);
    let mut cmd = py(&script);
    cmd.args([protocol, endpoint, prefix])
        .arg(dir.join("stop"))
        .arg(count.to_string())
        .arg(token.unwrap_or(""))
        .arg(if gzip { "gzip" } else { "none" });
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the python sender")
}

/// Waits for a sender; returns how many spans it sent (every export must have succeeded).
fn sender_done(child: Child, what: &str) -> usize {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} sender: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<usize> = stdout
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields.len(), 3, "{what}: {stdout}");
    assert_eq!(
        fields[0], fields[1],
        "{what}: every span exported: {stdout}"
    );
    assert_eq!(fields[2], 0, "{what}: no failed export: {stdout}");
    fields[0]
}

/// gRPC calls through the raw stub; one status code name per call.
fn grpc_calls(dir: &Path, port: u16, calls: serde_json::Value) -> Vec<String> {
    let script = write_script(dir, "grpc_call.py", PY_GRPC);
    let out = py(&script)
        .arg(port.to_string())
        .arg(calls.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "grpc script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What rotel saw.

/// Waits until every name in `expected` arrived (at most `within`), then a moment more for late
/// duplicates; returns the counts of all names seen. On failure, says why with `log`.
fn wait_for_names(
    rotel: &Rotel,
    expected: &BTreeSet<String>,
    within: Duration,
    log: &Path,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let arrived = eventually(within, || {
        counts = rotel.name_counts();
        expected.iter().all(|n| counts.contains_key(n))
    });
    if !arrived {
        let missing: Vec<&String> = expected
            .iter()
            .filter(|n| !counts.contains_key(*n))
            .collect();
        panic!(
            "{} of {} spans never arrived at rotel within {within:?}, e.g. {:?}; serve's log: {}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(10)],
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    rotel.name_counts()
}

/// Stops `serve`, then checks that nothing more reached rotel at the stop and that `counts`
/// (what arrived) hold no span twice.
fn stop_settled(serve: &mut Serve, rotel: &Rotel, counts: &BTreeMap<String, usize>, logs: &Path) {
    serve.stop();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        *counts,
        rotel.name_counts(),
        "nothing more came at the stop"
    );
    assert_no_duplicates(counts, logs);
}

/// No name arrived twice; on failure shows the serve logs (`*.log`) in `logs`.
fn assert_no_duplicates(counts: &BTreeMap<String, usize>, logs: &Path) {
    let dups: Vec<(&String, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    if dups.is_empty() {
        return;
    }
    let mut text = String::new();
    for file in walk(logs) {
        if file.extension().is_some_and(|e| e == "log") {
            text += &format!(
                "\n== {}\n{}",
                file.display(),
                std::fs::read_to_string(&file).unwrap_or_default()
            );
        }
    }
    panic!(
        "delivered more than once: {} names, e.g. {:?}{text}",
        dups.len(),
        &dups[..dups.len().min(10)]
    );
}

fn prefixed(prefix: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::File::create(path).unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1, 2: the Python SDK → serve → rotel.

#[test]
fn python_sdk_spans_over_http_and_grpc_plain_and_gzip_arrive_exactly_once() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut serve =
        ServeCmd::new(&spool, Some(&rotel.endpoint())).start(&tmp.path().join("serve.log"));
    let grpc_endpoint = format!("127.0.0.1:{}", serve.grpc);
    const N: usize = 25;
    let senders: Vec<(&str, Child)> = [
        ("sdk-http", "http", false),
        ("sdk-http-gzip", "http", true),
        ("sdk-grpc", "grpc", false),
        ("sdk-grpc-gzip", "grpc", true),
    ]
    .into_iter()
    .map(|(prefix, protocol, gzip)| {
        let dir = tmp.path().join(prefix);
        std::fs::create_dir_all(&dir).unwrap();
        let endpoint = if protocol == "grpc" {
            grpc_endpoint.clone()
        } else {
            serve.traces_url()
        };
        let child = sdk_sender(&dir, protocol, &endpoint, prefix, N, None, gzip);
        (prefix, child)
    })
    .collect();
    let mut expected = BTreeSet::new();
    for (prefix, child) in senders {
        assert_eq!(sender_done(child, prefix), N);
        expected.extend(prefixed(prefix, N));
    }

    let counts = serve.wait_for_names(&rotel, &expected, 20 * SECOND);
    // SIGINT stops it like SIGTERM.
    signal(serve.pid(), SIGINT);
    let status = serve.child.take().unwrap().wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGINT: {}", serve.log());
    assert_no_duplicates(&counts, tmp.path());
    assert_eq!(
        counts.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "nothing else arrived"
    );
    assert_drained(&spool, &rotel.endpoint());
}

#[test]
fn rotel_stopped_mid_run_senders_keep_succeeding_and_every_span_arrives_exactly_once() {
    let mut rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut serve =
        ServeCmd::new(&spool, Some(&rotel.endpoint())).start(&tmp.path().join("serve.log"));
    let (http_dir, grpc_dir) = (tmp.path().join("http"), tmp.path().join("grpc"));
    std::fs::create_dir_all(&http_dir).unwrap();
    std::fs::create_dir_all(&grpc_dir).unwrap();
    let http_sender = sdk_sender(
        &http_dir,
        "http",
        &serve.traces_url(),
        "mid-http",
        0,
        None,
        false,
    );
    let grpc_sender = sdk_sender(
        &grpc_dir,
        "grpc",
        &format!("127.0.0.1:{}", serve.grpc),
        "mid-grpc",
        0,
        None,
        false,
    );

    // Both senders are flowing through to rotel…
    assert!(
        eventually(20 * SECOND, || {
            let counts = rotel.name_counts();
            counts.contains_key("mid-http-3") && counts.contains_key("mid-grpc-3")
        }),
        "the senders' first spans never arrived: {}",
        serve.log()
    );
    // …then rotel goes away while they keep sending.
    rotel.stop();
    let down_at = Instant::now();
    // Down for a second at least, and until serve has acknowledged (spooled) a good number of
    // their spans meanwhile.
    let mut backend = serde_json::Value::Null;
    let spooled = eventually(15 * SECOND, || {
        backend = status_json(&spool, &["--endpoint", &rotel.endpoint()]);
        down_at.elapsed() > SECOND
            && backend["backend"] == "down"
            && backend["spans"].as_u64().unwrap_or(0) >= 20
    });
    assert!(
        spooled,
        "serve did not spool the senders' spans while rotel was down: {backend}"
    );
    rotel.resume();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(http_dir.join("stop"), "").unwrap();
    std::fs::write(grpc_dir.join("stop"), "").unwrap();
    let sent_http = sender_done(http_sender, "http");
    let sent_grpc = sender_done(grpc_sender, "grpc");

    let mut expected = prefixed("mid-http", sent_http);
    expected.extend(prefixed("mid-grpc", sent_grpc));
    let counts = serve.wait_for_names(&rotel, &expected, 25 * SECOND);
    stop_settled(&mut serve, &rotel, &counts, tmp.path());
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert_drained(&spool, &rotel.endpoint());
}

/// A TCP proxy on loopback in front of `upstream` that holds every chunk of the answers for
/// `delay`: a backend far away.
fn slow_proxy(upstream: u16, delay: Duration) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            std::thread::sleep(delay);
                            if c_write.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

#[test]
fn a_slow_backend_gets_every_batch_exactly_once() {
    // Answers take 300 ms: a round of the forwarder (bounded by the 1 s budget) cannot send
    // eight batches. Running out of budget must not abandon a request the backend is answering
    // (it has the batch already: sending it again duplicates it), nor count as a backend
    // failure.
    let rotel = Rotel::start();
    let proxy = slow_proxy(rotel.http_port, Duration::from_millis(300));
    let endpoint = format!("http://127.0.0.1:{proxy}/v1/traces");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut serve = ServeCmd::new(&spool, Some(&endpoint))
        .budget("1s")
        .start(&tmp.path().join("serve.log"));
    let mut expected = BTreeSet::new();
    for i in 0..8 {
        let name = format!("slow-{i}");
        let resp = post_protobuf(serve.http, &[], &protobuf(&[&name]));
        assert_eq!(resp.status, 200, "{resp:?}");
        expected.insert(name);
    }
    let counts = serve.wait_for_names(&rotel, &expected, 25 * SECOND);
    // Enough time for a re-send after a backoff of a second or two.
    std::thread::sleep(3 * SECOND);
    let counts_later = rotel.name_counts();
    serve.stop();
    assert_no_duplicates(&counts_later, tmp.path());
    assert_eq!(counts, counts_later);
    assert_drained(&spool, &endpoint);
}

// ---------------------------------------------------------------------------------------------
// 3: what the receivers accept and how they refuse the rest.

#[test]
fn malformed_or_oversized_metrics_and_logs_are_refused_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let serve = ServeCmd::new(&spool, None)
        .args(&["--max-body", "1KiB"])
        .start(&tmp.path().join("serve.log"));
    let port = serve.http;
    let pb = [("content-type", "application/x-protobuf")];
    let json = [("content-type", "application/json")];
    for path in ["/v1/metrics", "/v1/logs"] {
        let resp = http(port, "POST", path, &pb, b"this is not protobuf at all").unwrap();
        assert_protobuf_error(&resp, 400, path);
        let resp = http(
            port,
            "POST",
            path,
            &json,
            b"{\"resourceMetrics\": 7, \"resourceLogs\": 7}",
        )
        .unwrap();
        assert_eq!(resp.status, 400, "{path}: {resp:?}");
        let resp = http(port, "POST", path, &pb, &[0u8; 2048]).unwrap();
        assert_eq!(resp.status, 413, "{path} on the wire: {resp:?}");
        let bomb = gzip(&[0u8; 64 * 1024]);
        let mut headers = pb.to_vec();
        headers.push(("content-encoding", "gzip"));
        let resp = http(port, "POST", path, &headers, &bomb).unwrap();
        assert_eq!(resp.status, 413, "{path} inflated: {resp:?}");
    }
    let big = "x".repeat(4096);
    let codes = grpc_calls(
        tmp.path(),
        serve.grpc,
        serde_json::json!([
            {"raw": "this is not protobuf at all",
             "method": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"},
            {"raw": "this is not protobuf at all",
             "method": "/opentelemetry.proto.collector.logs.v1.LogsService/Export"},
            {"raw": big, "method": "/opentelemetry.proto.collector.logs.v1.LogsService/Export"},
        ]),
    );
    assert_eq!(
        codes[..2],
        ["INVALID_ARGUMENT", "INVALID_ARGUMENT"],
        "{codes:?}"
    );
    assert!(
        matches!(codes[2].as_str(), "OUT_OF_RANGE" | "RESOURCE_EXHAUSTED"),
        "{codes:?}"
    );
    let st = status_json(&spool, &[]);
    assert_eq!(
        (st["data_points"].as_u64(), st["log_records"].as_u64()),
        (Some(0), Some(0)),
        "{st}"
    );
    assert_eq!(st["batches"], 0, "{st}");

    // The same paths take a well-formed request: one log record with a string body.
    let record =
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"ok"}}]}]}]}"#;
    let resp = http(port, "POST", "/v1/logs", &json, record).unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(status_json(&spool, &[])["log_records"], 1);
}

#[test]
fn otlp_json_gzip_and_protobuf_are_accepted_and_the_rest_refused_with_the_right_status() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut serve = ServeCmd::new(&spool, Some(&rotel.endpoint()))
        .args(&["--max-body", "1KiB"])
        .start(&tmp.path().join("serve.log"));
    let port = serve.http;

    // OTLP/JSON, hand-written as a non-Rust client would: hex ids, string nanoseconds.
    let resp = post(
        port,
        "application/json",
        &[],
        otlp_json("json-span").as_bytes(),
    );
    assert_eq!(resp.status, 200, "{resp:?} {}", serve.log());
    assert_eq!(resp.content_type(), Some("application/json"), "{resp:?}");
    serde_json::from_slice::<serde_json::Value>(&resp.body).expect("a JSON response body");
    // With a charset parameter too.
    let resp = post(
        port,
        "application/json; charset=utf-8",
        &[],
        otlp_json("json-charset-span").as_bytes(),
    );
    assert_eq!(resp.status, 200, "{resp:?}");

    // Protobuf: the answer is an ExportTraceServiceResponse in protobuf.
    let resp = post_protobuf(port, &[], &protobuf(&["proto-span"]));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.content_type(), Some("application/x-protobuf"));
    ExportTraceServiceResponse::decode(&resp.body[..]).expect("an ExportTraceServiceResponse");

    // gzip bodies, protobuf and JSON.
    let resp = post_protobuf(
        port,
        &[("content-encoding", "gzip")],
        &gzip(&protobuf(&["gzip-proto-span"])),
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    let resp = post(
        port,
        "application/json",
        &[("content-encoding", "gzip")],
        &gzip(otlp_json("gzip-json-span").as_bytes()),
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.content_type(), Some("application/json"));

    // Malformed bodies: 400 with a google.rpc.Status in the request's format.
    let resp = post_protobuf(port, &[], b"this is not protobuf at all");
    assert_protobuf_error(&resp, 400, "malformed protobuf");
    let resp = post(
        port,
        "application/json",
        &[],
        br#"{"resourceSpans": [ oops"#,
    );
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(resp.content_type(), Some("application/json"), "{resp:?}");
    let body: serde_json::Value =
        serde_json::from_slice(&resp.body).expect("a JSON google.rpc.Status");
    assert!(body["code"].as_i64().unwrap_or(0) != 0, "{body}");
    assert!(body["message"].is_string(), "{body}");
    let resp = post_protobuf(
        port,
        &[("content-encoding", "gzip")],
        b"\x1f\x8b\x08\x00 this is not a gzip stream",
    );
    assert_protobuf_error(&resp, 400, "bad gzip");

    // Over --max-body 1KiB: on the wire, and inflated from a small gzip body.
    let big = request(&["too-big-span".to_owned()], 2048).encode_to_vec();
    assert!(big.len() > 1024);
    let resp = post_protobuf(port, &[], &big);
    assert_eq!(resp.status, 413, "{resp:?}");
    let bomb = request(&["inflated-span".to_owned()], 4096).encode_to_vec();
    let small = gzip(&bomb);
    assert!(small.len() < 512, "{} bytes", small.len());
    let resp = post_protobuf(port, &[("content-encoding", "gzip")], &small);
    assert_protobuf_error(&resp, 413, "a gzip body inflating past the limit");
    let resp = post(
        port,
        "application/json",
        &[("content-encoding", "gzip")],
        &gzip(otlp_json(&"j".repeat(2048)).as_bytes()),
    );
    assert_eq!(resp.status, 413, "{resp:?}");
    assert_eq!(resp.content_type(), Some("application/json"));

    // Wrong content type, path, method.
    let resp = post(port, "text/plain", &[], &protobuf(&["text-plain-span"]));
    assert_eq!(resp.status, 415, "{resp:?}");
    let resp = http(
        port,
        "POST",
        "/v1/traces",
        &[],
        &protobuf(&["no-type-span"]),
    )
    .unwrap();
    assert_eq!(resp.status, 415, "no content type: {resp:?}");
    let resp = post_protobuf(
        port,
        &[("content-encoding", "br")],
        &protobuf(&["brotli-span"]),
    );
    assert_eq!(resp.status, 415, "unknown content encoding: {resp:?}");
    let resp = http(
        port,
        "POST",
        "/v1/profiles",
        &[("content-type", "application/x-protobuf")],
        &protobuf(&["wrong-path-span"]),
    )
    .unwrap();
    assert_eq!(resp.status, 404, "{resp:?}");
    // Spans posted as metrics are not a metrics request: its framing is checked.
    let resp = http(
        port,
        "POST",
        "/v1/metrics",
        &[("content-type", "application/x-protobuf")],
        &protobuf(&["span-as-metrics"]),
    )
    .unwrap();
    assert_eq!(resp.status, 400, "{resp:?}");
    let resp = http(port, "GET", "/v1/traces", &[], b"").unwrap();
    assert_eq!(resp.status, 405, "{resp:?}");

    // gRPC: over the limit is refused, a small call is fine.
    let codes = grpc_calls(
        tmp.path(),
        serve.grpc,
        serde_json::json!([
            {"name": "grpc-too-big-span", "pad": 4096},
            {"name": "grpc-small-span"},
            {"raw": "this is not protobuf at all"},
        ]),
    );
    assert!(
        matches!(codes[0].as_str(), "OUT_OF_RANGE" | "RESOURCE_EXHAUSTED"),
        "{codes:?}"
    );
    assert_eq!(codes[1], "OK", "{codes:?}");
    assert_eq!(codes[2], "INVALID_ARGUMENT", "{codes:?}");

    let accepted: BTreeSet<String> = [
        "json-span",
        "json-charset-span",
        "proto-span",
        "gzip-proto-span",
        "gzip-json-span",
        "grpc-small-span",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let counts = serve.wait_for_names(&rotel, &accepted, 20 * SECOND);
    stop_settled(&mut serve, &rotel, &counts, tmp.path());
    assert_eq!(
        counts.keys().cloned().collect::<BTreeSet<_>>(),
        accepted,
        "exactly the accepted spans arrived"
    );
    // The JSON span arrived as sent.
    let json_span = rotel
        .spans()
        .into_iter()
        .find(|s| s.name == "json-span")
        .unwrap();
    assert_eq!(json_span.trace_id.len(), 32, "{json_span:?}");
    assert!(
        json_span.trace_id.ends_with("5b8efff798038103"),
        "{json_span:?}"
    );
    assert_eq!(
        json_span.attributes.get("via").map(String::as_str),
        Some("json")
    );
    let status = status_json(&spool, &["--endpoint", &rotel.endpoint()]);
    assert_eq!(status["batches"], 0, "{status}");
    assert_eq!(status["rejected_spans"], 0, "{status}");
}

// ---------------------------------------------------------------------------------------------
// 4: the bearer token.

#[test]
fn with_a_token_file_the_bearer_token_is_required_and_never_written_anywhere() {
    const TOKEN: &str = "tok-5ecret-Zq81xW";
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut serve = ServeCmd::new(&spool, Some(&rotel.endpoint()))
        .global(&["-vvv"])
        .args(&["--auth-token-file", token_file.to_str().unwrap()])
        .start(&tmp.path().join("serve.log"));
    let port = serve.http;
    let right = format!("Bearer {TOKEN}");

    let resp = post_protobuf(port, &[], &protobuf(&["no-token-span"]));
    assert_protobuf_error(&resp, 401, "no token");
    let resp = post_protobuf(
        port,
        &[("authorization", "Bearer not-the-token")],
        &protobuf(&["wrong-token-span"]),
    );
    assert_protobuf_error(&resp, 401, "wrong token");
    let resp = post_protobuf(
        port,
        &[("authorization", TOKEN)],
        &protobuf(&["no-bearer-span"]),
    );
    assert_eq!(resp.status, 401, "the token without `Bearer `: {resp:?}");
    let resp = post_protobuf(
        port,
        &[("authorization", &format!("Bearer {TOKEN}x"))],
        &protobuf(&["longer-token-span"]),
    );
    assert_eq!(resp.status, 401, "a longer token: {resp:?}");
    let resp = post(
        port,
        "application/json",
        &[],
        otlp_json("json-no-token-span").as_bytes(),
    );
    assert_eq!(resp.status, 401, "{resp:?}");
    assert_eq!(resp.content_type(), Some("application/json"));

    let resp = post_protobuf(
        port,
        &[("authorization", &right)],
        &protobuf(&["right-token-span"]),
    );
    assert_eq!(resp.status, 200, "{resp:?}");

    let codes = grpc_calls(
        tmp.path(),
        serve.grpc,
        serde_json::json!([
            {"name": "grpc-no-token-span"},
            {"name": "grpc-wrong-token-span", "token": "not-the-token"},
            {"name": "grpc-right-token-span", "token": TOKEN},
        ]),
    );
    assert_eq!(codes, ["UNAUTHENTICATED", "UNAUTHENTICATED", "OK"]);

    // The Python SDK with the token in its headers, over both protocols.
    let (http_dir, grpc_dir) = (tmp.path().join("http"), tmp.path().join("grpc"));
    std::fs::create_dir_all(&http_dir).unwrap();
    std::fs::create_dir_all(&grpc_dir).unwrap();
    let h = sdk_sender(
        &http_dir,
        "http",
        &serve.traces_url(),
        "tok-http",
        3,
        Some(TOKEN),
        false,
    );
    let g = sdk_sender(
        &grpc_dir,
        "grpc",
        &format!("127.0.0.1:{}", serve.grpc),
        "tok-grpc",
        3,
        Some(TOKEN),
        true,
    );
    sender_done(h, "http with token");
    sender_done(g, "grpc with token");

    let mut expected: BTreeSet<String> = ["right-token-span", "grpc-right-token-span"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    expected.extend(prefixed("tok-http", 3));
    expected.extend(prefixed("tok-grpc", 3));
    let counts = serve.wait_for_names(&rotel, &expected, 20 * SECOND);
    serve.stop();
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert_no_duplicates(&counts, tmp.path());

    let log = serve.log();
    assert!(log.contains("serving OTLP"), "-v logs something: {log:?}");
    assert!(
        !log.contains(TOKEN),
        "the token is in serve's stderr: {log}"
    );
    for entry in walk(&spool) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the token is in {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            files.extend(walk(&entry.path()));
        } else if ty.is_file() {
            files.push(entry.path());
        }
    }
    files
}

#[test]
fn an_empty_or_missing_token_file_is_a_startup_error() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    for file in [empty, tmp.path().join("missing")] {
        let out = ServeCmd::new(&tmp.path().join("spool"), None)
            .args(&["--auth-token-file", file.to_str().unwrap()])
            .command(
                &format!("127.0.0.1:{}", free_port()),
                &format!("127.0.0.1:{}", free_port()),
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(file.file_name().unwrap().to_str().unwrap()),
            "{}",
            stderr(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5: loopback only unless --allow-remote.

#[test]
fn a_non_loopback_address_needs_allow_remote() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let cmd = ServeCmd::new(&spool, Some(&rotel.endpoint()));

    let port = free_port();
    let addr = format!("0.0.0.0:{port}");
    let started = Instant::now();
    let out = cmd
        .command(&addr, &format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&addr) && err.contains("--allow-remote"),
        "the message names the address and the flag: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(started.elapsed() < 5 * SECOND);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens"
    );

    // The gRPC listener too.
    let grpc_addr = format!("0.0.0.0:{}", free_port());
    let out = cmd
        .command(&format!("127.0.0.1:{}", free_port()), &grpc_addr)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&grpc_addr) && stderr(&out).contains("--allow-remote"),
        "{}",
        stderr(&out)
    );

    // With --allow-remote it serves (traffic only over loopback here).
    let mut serve = cmd
        .args(&["--allow-remote"])
        .start_on("0.0.0.0", &tmp.path().join("serve.log"));
    let (http, grpc) = (serve.http, serve.grpc);
    let resp = post_protobuf(http, &[], &protobuf(&["remote-ok-span"]));
    assert_eq!(resp.status, 200, "{resp:?}");
    let codes = grpc_calls(
        tmp.path(),
        grpc,
        serde_json::json!([{"name": "remote-ok-grpc-span"}]),
    );
    assert_eq!(codes, ["OK"]);
    let expected: BTreeSet<String> = ["remote-ok-span", "remote-ok-grpc-span"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    serve.wait_for_names(&rotel, &expected, 20 * SECOND);
    serve.stop();
}

// ---------------------------------------------------------------------------------------------
// 6: a batch the spool cannot take is refused, never acknowledged.

#[test]
fn a_batch_larger_than_the_spool_bound_gets_503_or_unavailable_and_is_never_delivered() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    // Stored as they are: the padding of these batches would compress well below the bound.
    let mut serve = ServeCmd::new(&spool, Some(&rotel.endpoint()))
        .global(&["--max-bytes", "64KiB", "--spool-compression", "none"])
        .start(&tmp.path().join("serve.log"));

    let huge = request(&["unspoolable-span".to_owned()], 100 * 1024).encode_to_vec();
    let resp = post_protobuf(serve.http, &[], &huge);
    assert_protobuf_error(&resp, 503, "a batch over the spool bound");
    let retry_after = resp.header("retry-after").expect("a Retry-After header");
    assert!(
        retry_after.parse::<u64>().is_ok() || httpdate::parse_http_date(retry_after).is_ok(),
        "Retry-After: {retry_after}"
    );
    // JSON too: 503 in JSON.
    let json = otlp_json(&"unspoolable-json-span".repeat(5000));
    let resp = post(serve.http, "application/json", &[], json.as_bytes());
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(resp.content_type(), Some("application/json"));
    assert!(resp.header("retry-after").is_some(), "{resp:?}");

    let codes = grpc_calls(
        tmp.path(),
        serve.grpc,
        serde_json::json!([
            {"name": "grpc-unspoolable-span", "pad": 100 * 1024},
            {"name": "grpc-fits-span"},
        ]),
    );
    assert_eq!(codes, ["UNAVAILABLE", "OK"]);

    // A batch that fits still goes through; after it, nothing of the refused ones.
    let resp = post_protobuf(serve.http, &[], &protobuf(&["fits-span"]));
    assert_eq!(resp.status, 200, "{resp:?}");
    let expected: BTreeSet<String> = ["fits-span", "grpc-fits-span"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let counts = serve.wait_for_names(&rotel, &expected, 20 * SECOND);
    serve.stop();
    assert_eq!(
        counts.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the refused batches never arrive"
    );
    let status = status_json(&spool, &["--endpoint", &rotel.endpoint()]);
    assert_eq!(status["batches"], 0, "{status}");
}

#[test]
fn a_full_disk_gets_503_or_unavailable_and_serving_resumes_when_there_is_room() {
    const TEST: &str = "a_full_disk_gets_503_or_unavailable_and_serving_resumes_when_there_is_room";
    let Some(disk) = Tmpfs::mount("2m", TEST) else {
        return;
    };
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = disk.path().join("spool");
    // Stored as they are: the padding below must need new blocks on the full disk.
    let mut serve = ServeCmd::new(&spool, Some(&rotel.endpoint()))
        .global(&["--spool-compression", "none"])
        .start(&tmp.path().join("serve.log"));
    let resp = post_protobuf(serve.http, &[], &protobuf(&["before-full-span"]));
    assert_eq!(resp.status, 200, "{resp:?}");
    serve.wait_for_names(
        &rotel,
        &BTreeSet::from(["before-full-span".to_owned()]),
        20 * SECOND,
    );

    let filler = disk.path().join("filler");
    fill_disk(&filler);
    // Larger than a page: it needs new blocks whatever the segment's tail holds.
    let body = request(&["disk-full-span".to_owned()], 64 * 1024).encode_to_vec();
    let resp = post_protobuf(serve.http, &[], &body);
    assert_protobuf_error(&resp, 503, "the disk is full");
    assert!(resp.header("retry-after").is_some(), "{resp:?}");
    let codes = grpc_calls(
        tmp.path(),
        serve.grpc,
        serde_json::json!([{"name": "grpc-disk-full-span", "pad": 64 * 1024}]),
    );
    assert_eq!(codes, ["UNAVAILABLE"]);

    std::fs::remove_file(&filler).unwrap();
    let resp = post_protobuf(serve.http, &[], &protobuf(&["after-full-span"]));
    assert_eq!(resp.status, 200, "room again: {resp:?} {}", serve.log());
    let codes = grpc_calls(
        tmp.path(),
        serve.grpc,
        serde_json::json!([{"name": "grpc-after-full-span"}]),
    );
    assert_eq!(codes, ["OK"]);
    let expected: BTreeSet<String> = [
        "before-full-span",
        "after-full-span",
        "grpc-after-full-span",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let counts = serve.wait_for_names(&rotel, &expected, 20 * SECOND);
    serve.stop();
    assert_eq!(
        counts.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the refused batches never arrive"
    );
    assert_no_duplicates(&counts, tmp.path());
}

#[test]
fn with_spooling_disabled_serve_acknowledges_nothing() {
    // `--max-bytes 0` disables spooling: serve can store nothing, so it may either
    // refuse to start (exit 2, naming the setting) or refuse every batch (503 / UNAVAILABLE),
    // but never answer "stored".
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let cmd = ServeCmd::new(&spool, Some(&rotel.endpoint())).global(&["--max-bytes", "0"]);
    let mut serve = match cmd.try_start_on("127.0.0.1", &tmp.path().join("serve.log")) {
        Ok(serve) => serve,
        Err((status, err)) => {
            assert_eq!(status.code(), Some(2), "{err}");
            assert!(err.contains("max"), "the message names the setting: {err}");
            return;
        }
    };
    let resp = post_protobuf(serve.http, &[], &protobuf(&["disabled-span"]));
    let codes = grpc_calls(
        tmp.path(),
        serve.grpc,
        serde_json::json!([{"name": "grpc-disabled-span"}]),
    );
    serve.stop();
    assert!(
        resp.status == 503 && codes == ["UNAVAILABLE"],
        "with spooling disabled serve answered HTTP {} and gRPC {codes:?}: \
         \"stored\" for batches it dropped: {}",
        resp.status,
        serve.log()
    );
}

// ---------------------------------------------------------------------------------------------
// 7: stopping under load, and kill -9.

/// Threads POSTing requests of `SPANS_PER_REQUEST` uniquely named spans (even threads in
/// protobuf, odd ones in OTLP/JSON) until told to stop; records the names of every request
/// answered 200.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<String>>>,
    attempted: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

const SPANS_PER_REQUEST: usize = 3;

impl Load {
    fn start(prefix: &str, http_port: u16, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let attempted = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|t| {
                let (stop, acked, attempted) = (stop.clone(), acked.clone(), attempted.clone());
                let prefix = prefix.to_owned();
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let names: Vec<String> = (0..SPANS_PER_REQUEST)
                            .map(|s| format!("{prefix}-t{t}-r{i}-s{s}"))
                            .collect();
                        i += 1;
                        attempted.fetch_add(1, Ordering::SeqCst);
                        let body = request(&names, 64).encode_to_vec();
                        let ok = if t % 2 == 0 {
                            http(
                                http_port,
                                "POST",
                                "/v1/traces",
                                &[("content-type", "application/x-protobuf")],
                                &body,
                            )
                            .is_ok_and(|r| r.status == 200)
                        } else {
                            // The JSON path of the same receiver.
                            let req = request(&names, 64);
                            http(
                                http_port,
                                "POST",
                                "/v1/traces",
                                &[("content-type", "application/json")],
                                &serde_json::to_vec(&req).unwrap(),
                            )
                            .is_ok_and(|r| r.status == 200)
                        };
                        if ok {
                            acked.lock().unwrap().extend(names);
                        } else {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            attempted,
            threads,
        }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Waits until the load has had at least `n` requests acknowledged.
fn wait_acked(load: &Load, n: usize, serve: &Serve) {
    assert!(
        eventually(20 * SECOND, || load.acked_count() >= n * SPANS_PER_REQUEST),
        "only {} spans acknowledged of {} requests: {}",
        load.acked_count(),
        load.attempted.load(Ordering::SeqCst),
        serve.log()
    );
}

/// A Python SDK sender (gRPC) in the load as well; its spans are acknowledged when it exits
/// successfully, or (killed) unknown: it is just background traffic.
fn background_grpc(dir: &Path, port: u16, prefix: &str) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    sdk_sender(
        dir,
        "grpc",
        &format!("127.0.0.1:{port}"),
        prefix,
        0,
        None,
        false,
    )
}

#[test]
fn sigterm_under_load_exits_0_and_every_acknowledged_span_arrives_exactly_once() {
    let mut rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let cmd = ServeCmd::new(&spool, Some(&rotel.endpoint()))
        .budget("1s")
        .global(&["-v"]);
    let mut serve = cmd.start(&tmp.path().join("serve1.log"));

    let load = Load::start("term", serve.http, 4);
    let mut grpc_bg = background_grpc(&tmp.path().join("bg"), serve.grpc, "term-bg");
    wait_acked(&load, 50, &serve);
    // Rotel goes away halfway: the second half stays in the spool through the stop.
    rotel.stop();
    wait_acked(&load, 120, &serve);
    let started = Instant::now();
    let status = serve.stop_within(15 * SECOND);
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "serve: {}", serve.log());
    assert!(
        took < 8 * SECOND,
        "stopping took {took:?} (drain + a 1s budget)"
    );
    // The port is closed: nothing is accepted any more.
    assert!(
        TcpStream::connect(("127.0.0.1", serve.http)).is_err(),
        "still accepting after exit"
    );
    let attempted = load.attempted.load(Ordering::SeqCst);
    let acked = load.finish();
    let _ = grpc_bg.kill();
    let _ = grpc_bg.wait();
    assert!(acked.len() >= 120 * SPANS_PER_REQUEST);
    let at_stop = rotel.name_counts();
    eprintln!(
        "SIGTERM after {} acknowledged spans of {attempted} requests; {} at rotel after the stop; exit took {took:?}",
        acked.len(),
        acked.iter().filter(|n| at_stop.contains_key(*n)).count()
    );

    // Restart on the same spool, rotel back: whatever the last flush left is delivered.
    rotel.resume();
    let mut again = cmd.start(&tmp.path().join("serve2.log"));
    let counts = again.wait_for_names(&rotel, &acked, 25 * SECOND);
    stop_settled(&mut again, &rotel, &counts, tmp.path());
    let status = status_json(&spool, &["--endpoint", &rotel.endpoint()]);
    assert_eq!(status["batches"], 0, "{status}");
    assert_eq!(status["dropped_spans"], 0, "{status}");
}

#[test]
fn sigterm_with_a_hung_backend_exits_within_the_budget_and_keeps_the_batch() {
    let rotel = Rotel::start();
    let fault = FaultServer::start(Answer::Hang);
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut serve = ServeCmd::new(&spool, Some(&fault.endpoint()))
        .budget("1s")
        .start(&tmp.path().join("serve1.log"));
    let resp = post_protobuf(serve.http, &[], &protobuf(&["hung-1", "hung-2"]));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        eventually(10 * SECOND, || !fault.requests().is_empty()),
        "serve never tried the backend: {}",
        serve.log()
    );
    let started = Instant::now();
    let status = serve.stop_within(15 * SECOND);
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "{}", serve.log());
    // At most the flush under way and the last one, a budget each (and some slack for a
    // loaded machine).
    eprintln!("stopping with a hung backend took {took:?}");
    assert!(
        took < Duration::from_millis(4500),
        "stopping took {took:?} with a 1s budget"
    );
    let left = status_json(&spool, &["--endpoint", &fault.endpoint()]);
    assert_eq!(
        (left["batches"].as_u64(), left["spans"].as_u64()),
        (Some(1), Some(2)),
        "{left}"
    );

    // Restarted towards rotel (a new endpoint: no backoff), the batch is delivered.
    let mut again = ServeCmd::new(&spool, Some(&rotel.endpoint()))
        .budget("1s")
        .start(&tmp.path().join("serve2.log"));
    let expected: BTreeSet<String> = ["hung-1", "hung-2"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let counts = again.wait_for_names(&rotel, &expected, 10 * SECOND);
    again.stop();
    assert_no_duplicates(&counts, tmp.path());
}

#[test]
fn kill_9_under_load_with_rotel_down_loses_nothing_acknowledged() {
    let mut rotel = Rotel::start();
    rotel.stop();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let cmd = ServeCmd::new(&spool, Some(&rotel.endpoint())).budget("1s");
    let mut serve = cmd.start(&tmp.path().join("serve1.log"));

    let load = Load::start("kill", serve.http, 4);
    let mut grpc_bg = background_grpc(&tmp.path().join("bg"), serve.grpc, "kill-bg");
    wait_acked(&load, 120, &serve);
    serve.kill9();
    let attempted = load.attempted.load(Ordering::SeqCst);
    let acked = load.finish();
    eprintln!(
        "kill -9 after {} acknowledged spans of {attempted} requests",
        acked.len()
    );
    let _ = grpc_bg.kill();
    let _ = grpc_bg.wait();
    assert!(rotel.spans().is_empty(), "rotel was down");

    rotel.resume();
    let mut again = cmd.start(&tmp.path().join("serve2.log"));
    // serve obeys the backoff the first run recorded (a few seconds at most here).
    let counts = again.wait_for_names(&rotel, &acked, 30 * SECOND);
    stop_settled(&mut again, &rotel, &counts, tmp.path());
    let status = status_json(&spool, &["--endpoint", &rotel.endpoint()]);
    assert_eq!(status["batches"], 0, "{status}");
}

// ---------------------------------------------------------------------------------------------
// 8: serve, exec and flush on one spool.

#[test]
fn serve_sixteen_execs_and_flushes_share_a_spool_without_double_delivery() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let endpoint = rotel.endpoint();
    let mut serve = ServeCmd::new(&spool, Some(&endpoint)).start(&tmp.path().join("serve.log"));
    let load = Load::start("share-load", serve.http, 2);

    let mut children: Vec<(String, Child)> = (0..16)
        .map(|i| {
            let child = tracespool()
                .arg("--spool-dir")
                .arg(&spool)
                .args(["--endpoint", &endpoint, "-v", "exec", "--name"])
                .arg(format!("share-exec-{i}"))
                .args(["--", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log_file(&tmp.path().join(format!("exec-{i}.log"))))
                .spawn()
                .unwrap();
            (format!("exec-{i}"), child)
        })
        .collect();
    for i in 0..3 {
        let child = tracespool()
            .arg("--spool-dir")
            .arg(&spool)
            .args(["--endpoint", &endpoint, "--budget", "2s", "-v", "flush"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&tmp.path().join(format!("flush-{i}.log"))))
            .spawn()
            .unwrap();
        children.push((format!("flush-{i}"), child));
    }
    for (what, child) in children {
        let out = child.wait_with_output().unwrap();
        let log = std::fs::read_to_string(tmp.path().join(format!("{what}.log"))).unwrap();
        if what.starts_with("exec") {
            assert_eq!(out.status.code(), Some(0), "{what}: {log}");
        } else {
            // A flush finding the lease held or the spool empty is fine; a usage error is not.
            assert!(
                matches!(out.status.code(), Some(0) | Some(1)),
                "{what}: {log}"
            );
        }
    }
    let acked = load.finish();

    let mut expected = prefixed("share-exec", 16);
    expected.extend(acked.iter().cloned());
    let counts = serve.wait_for_names(&rotel, &expected, 25 * SECOND);
    stop_settled(&mut serve, &rotel, &counts, tmp.path());

    let status = common::status_verify_json(&spool, &["--endpoint", &endpoint]);
    assert_eq!(status["corrupt_records"], 0, "{status}");
    assert_eq!(status["batches"], 0, "{status}");
}

// ---------------------------------------------------------------------------------------------
#[test]
fn sigterm_exits_even_with_clients_that_never_finish_their_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut serve = ServeCmd::new(&spool, None).start(&tmp.path().join("serve.log"));
    // One client stops in the middle of its body, another in the middle of its headers.
    let mut body = std::net::TcpStream::connect(("127.0.0.1", serve.http)).unwrap();
    body.write_all(
        b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
          content-length: 1000\r\n\r\nabc",
    )
    .unwrap();
    let mut headers = std::net::TcpStream::connect(("127.0.0.1", serve.http)).unwrap();
    headers
        .write_all(b"POST /v1/traces HTTP/1.1\r\nhost")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    serve.stop();
    assert!(
        started.elapsed() < 10 * SECOND,
        "{:?}: the drain is 5 s",
        started.elapsed()
    );
    drop((body, headers));
}

#[test]
fn a_certificate_replaced_while_serve_runs_leaves_one_backoff_shared_with_exec() {
    let fault = FaultServer::start(Answer::with(503, &[("retry-after", "60")], b""));
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, "first").unwrap();
    let ca_flag = ["--ca-file", ca.to_str().unwrap()];
    let mut serve = ServeCmd::new(&spool, Some(&fault.endpoint()))
        .global(&ca_flag)
        .start(&tmp.path().join("serve.log"));
    let resp = post_protobuf(serve.http, &[], &protobuf(&["before"]));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        eventually(10 * SECOND, || fault.requests().len() == 1),
        "serve never tried: {}",
        serve.log()
    );

    // The file changes (a renewed certificate): the next run finds the backoff void, tries
    // once, and records a new one; from then on every process, serve included, obeys it.
    std::fs::write(&ca, "second").unwrap();
    let exec = || {
        let out = tracespool()
            .arg("--spool-dir")
            .arg(&spool)
            .args(["--endpoint", &fault.endpoint()])
            .args(ca_flag)
            // Room for the one request on a loaded machine: the backoff is what is tested.
            .args(["--budget", "10s"])
            .args(["exec", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
    };
    exec();
    assert_eq!(fault.requests().len(), 2);
    for name in ["after-1", "after-2"] {
        let resp = post_protobuf(serve.http, &[], &protobuf(&[name]));
        assert_eq!(resp.status, 200, "{resp:?}");
        std::thread::sleep(Duration::from_millis(1500));
        exec();
    }
    serve.stop();
    assert_eq!(
        fault.requests().len(),
        2,
        "serve and exec took turns voiding each other's backoff: {}",
        serve.log()
    );
}

// 9: SIGHUP reloads the config file; a new endpoint resets the backoff.

#[test]
fn sighup_reloads_the_endpoint_and_a_new_endpoint_ends_the_backoff() {
    let rotel = Rotel::start();
    let fault = FaultServer::start(Answer::with(503, &[("retry-after", "60")], b""));
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let config = tmp.path().join("tracespool.toml");
    std::fs::write(&config, format!("endpoint = \"{}\"\n", fault.endpoint())).unwrap();
    let mut serve = ServeCmd::new(&spool, None)
        .global(&["--config", config.to_str().unwrap(), "-v"])
        .start(&tmp.path().join("serve.log"));

    let resp = post_protobuf(serve.http, &[], &protobuf(&["hup-1", "hup-2"]));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        eventually(10 * SECOND, || !fault.requests().is_empty()),
        "serve never tried the configured endpoint: {}",
        serve.log()
    );
    // The 503 opened a 60 s backoff: serve waits.
    let resp = post_protobuf(serve.http, &[], &protobuf(&["hup-3"]));
    assert_eq!(resp.status, 200, "{resp:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fault.requests().len(), 1, "serve obeys Retry-After");
    let status = status_json(&spool, &["--config", config.to_str().unwrap()]);
    assert_eq!(status["backend"], "down", "{status}");
    assert!(status["retry_at"].as_f64().is_some(), "{status}");

    std::fs::write(&config, format!("endpoint = \"{}\"\n", rotel.endpoint())).unwrap();
    let hup_at = Instant::now();
    signal(serve.pid(), SIGHUP);
    let expected: BTreeSet<String> = ["hup-1", "hup-2", "hup-3"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let counts = serve.wait_for_names(&rotel, &expected, 10 * SECOND);
    assert!(
        hup_at.elapsed() < 10 * SECOND,
        "delivered {:?} after SIGHUP: the backoff of the old endpoint held",
        hup_at.elapsed()
    );
    assert_no_duplicates(&counts, tmp.path());
    assert_eq!(fault.requests().len(), 1, "the old endpoint is left alone");

    // Still serving after the reload, to the new endpoint.
    let resp = post_protobuf(serve.http, &[], &protobuf(&["hup-after"]));
    assert_eq!(resp.status, 200, "{resp:?}");
    let mut expected = expected;
    expected.insert("hup-after".into());
    serve.wait_for_names(&rotel, &expected, 10 * SECOND);

    // A config file caught half-written, then gone: the running settings stay.
    let kept = |n: usize| {
        eventually(10 * SECOND, || {
            serve.log().matches("keeping the running settings").count() == n
        })
    };
    std::fs::write(&config, "endpoint = \"http://127.0.0.1:").unwrap();
    signal(serve.pid(), SIGHUP);
    assert!(kept(1), "the broken file was not refused: {}", serve.log());
    std::fs::remove_file(&config).unwrap();
    signal(serve.pid(), SIGHUP);
    assert!(kept(2), "the missing file was not refused: {}", serve.log());
    let resp = post_protobuf(serve.http, &[], &protobuf(&["hup-broken"]));
    assert_eq!(resp.status, 200, "{resp:?}");
    expected.insert("hup-broken".into());
    let counts = serve.wait_for_names(&rotel, &expected, 10 * SECOND);
    serve.stop();
    assert_no_duplicates(&counts, tmp.path());
    let log = serve.log();
    assert!(
        log.contains("reload"),
        "the reload is logged with -v: {log}"
    );
    let kept: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("keeping the running settings"))
        .collect();
    assert_eq!(kept.len(), 2, "one line per reload refused: {log}");
    assert!(kept[0].contains("not valid TOML"), "{kept:?}");
    assert!(kept[1].contains("cannot read it"), "{kept:?}");
}

#[test]
fn a_port_already_taken_is_a_clear_error_not_a_hang() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let out = tracespool()
        .arg("--spool-dir")
        .arg(tmp.path())
        .args(["serve", "--listen", &addr, "--grpc-listen", "none"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.to_lowercase().contains("address"),
        "{stderr}"
    );
}

#[test]
fn a_gzip_body_is_stored_as_received_and_sent_as_it_is_when_upstream_takes_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut serve = ServeCmd::new(&spool, None).start(&tmp.path().join("serve.log"));
    let plain = protobuf(&["gzip-as-received-span"; 20]);
    let gz = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&plain).unwrap();
        enc.finish().unwrap()
    };
    assert!(gz.len() * 10 <= plain.len() * 9, "worth keeping compressed");
    let resp = post_protobuf(serve.http, &[("content-encoding", "gzip")], &gz);
    assert_eq!(resp.status, 200, "{resp:?}");
    serve.stop();

    // On disk: the very bytes the client sent (its own compression level, not ours).
    let stored = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .any(|p| std::fs::read(p).unwrap().windows(gz.len()).any(|w| w == gz));
    assert!(stored, "the received gzip body is in a segment as it came");

    // An upstream without compression gets the request decompressed.
    let plain_upstream = FaultServer::start(Answer::status(503));
    let out = tracespool()
        .arg("--spool-dir")
        .arg(&spool)
        .args(["--endpoint", &plain_upstream.endpoint(), "flush"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let seen = plain_upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, plain);
    assert_eq!(seen[0].headers.get("content-encoding"), None);

    // One that takes gzip gets the stored bytes as they are.
    let gzip_upstream = FaultServer::start(Answer::status(200));
    let out = tracespool()
        .arg("--spool-dir")
        .arg(&spool)
        .args([
            "--endpoint",
            &gzip_upstream.endpoint(),
            "--compression",
            "gzip",
        ])
        .arg("flush")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let seen = gzip_upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );
    assert!(seen[0].body == gz, "sent as stored, not compressed again");
}

/// The flags word of every frame in the spool's segments, oldest first: 1 for gzip.
fn frame_flags(spool: &Path) -> Vec<u32> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let mut flags = Vec::new();
    for segment in segments {
        let bytes = std::fs::read(segment).unwrap();
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        // Frames follow the 32-byte segment header: a 32-byte header each (payload length at
        // 4, flags at 24), then the payload.
        let mut at = 32;
        while at + 32 <= bytes.len() {
            flags.push(u32_at(at + 24));
            at += 32 + u32_at(at + 4) as usize;
        }
    }
    flags
}

#[test]
fn serve_compresses_what_it_stores_only_once_a_backlog_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    // No endpoint: nothing is forwarded, the backlog grows with every request.
    let mut serve = ServeCmd::new(&spool, None).start(&tmp.path().join("serve.log"));
    let body = protobuf(&["compressible-span"; 30]);
    for _ in 0..80 {
        let resp = post_protobuf(serve.http, &[], &body);
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    serve.stop();
    let flags = frame_flags(&spool);
    assert_eq!(flags.len(), 80);
    // Stored as given while the forwarder could have kept up; compressed from the 65th on.
    assert!(flags[..64].iter().all(|&f| f == 0), "{flags:?}");
    assert!(flags[64..].iter().all(|&f| f == 1), "{flags:?}");
}

// ---------------------------------------------------------------------------------------------
// /healthz and /metrics.

/// Parses a Prometheus text page with the Prometheus project's own Python parser
/// (`prometheus_client`): one `[name, labels, value]` per sample.
const PY_PROM_PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// One scrape of serve's `/metrics`, as `prometheus_client` parses it: the value of each
/// sample by `name{label="value",…}` (labels in order). Fails on a page it cannot parse.
fn scrape(dir: &Path, serve: &Serve, token: Option<&str>) -> BTreeMap<String, f64> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let resp = http(serve.http, "GET", "/metrics", &headers, b"").expect("GET /metrics");
    assert_eq!(resp.status, 200, "{resp:?}: {}", serve.log());
    assert_eq!(
        resp.content_type(),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{resp:?}"
    );
    let script = write_script(dir, "prom_parse.py", PY_PROM_PARSE);
    let mut child = py(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&resp.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse the page: {}\n{}",
        stderr(&out),
        String::from_utf8_lossy(&resp.body)
    );
    let samples: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    samples
        .into_iter()
        .map(|(name, labels, value)| {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            if labels.is_empty() {
                (name, value)
            } else {
                (format!("{name}{{{}}}", labels.join(",")), value)
            }
        })
        .collect()
}

#[test]
fn healthz_never_needs_the_token_and_metrics_needs_it_when_a_token_file_is_set() {
    const TOKEN: &str = "metrics-t0ken-Qw7";
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let serve = ServeCmd::new(&tmp.path().join("spool"), None)
        .args(&["--auth-token-file", token_file.to_str().unwrap()])
        .start(&tmp.path().join("serve.log"));
    let get = |path: &str, headers: &[(&str, &str)]| {
        http(serve.http, "GET", path, headers, b"").expect("GET")
    };

    let resp = get("/healthz", &[]);
    assert_eq!((resp.status, &resp.body[..]), (200, &b"ok"[..]), "{resp:?}");
    let resp = get("/healthz", &[("authorization", "Bearer not-the-token")]);
    assert_eq!(resp.status, 200, "a wrong token does not matter: {resp:?}");

    let resp = get("/metrics", &[]);
    assert_eq!(resp.status, 401, "no token: {resp:?}");
    assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{resp:?}");
    assert!(resp.body.is_empty(), "nothing of the metrics: {resp:?}");
    let resp = get("/metrics", &[("authorization", "Bearer not-the-token")]);
    assert_eq!(resp.status, 401, "wrong token: {resp:?}");
    let right = format!("Bearer {TOKEN}");
    let resp = get("/metrics", &[("authorization", &right)]);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        String::from_utf8_lossy(&resp.body).contains("tracespool_spool_bytes "),
        "{resp:?}"
    );

    let resp = http(serve.http, "POST", "/healthz", &[], b"").unwrap();
    assert_eq!(resp.status, 405, "{resp:?}");
    let resp = http(
        serve.http,
        "POST",
        "/metrics",
        &[("authorization", &right)],
        b"",
    )
    .unwrap();
    assert_eq!(resp.status, 405, "{resp:?}");
    // The gRPC listener is not a metrics endpoint.
    let resp = http(serve.grpc, "GET", "/metrics", &[], b"");
    assert!(resp.is_err() || resp.is_ok_and(|r| r.status != 200));
}

#[test]
fn metrics_parse_and_follow_spans_spooled_while_upstream_is_down_then_delivered() {
    let mut rotel = Rotel::start();
    rotel.stop();
    let tmp = tempfile::tempdir().unwrap();
    let serve = ServeCmd::new(&tmp.path().join("spool"), Some(&rotel.endpoint()))
        .start(&tmp.path().join("serve.log"));
    let traces = |name: &str| format!("{name}{{signal=\"traces\"}}");
    // Labels in the order of their names, as `scrape` writes them.
    let received = |protocol: &str| {
        format!("tracespool_received_items_total{{protocol=\"{protocol}\",signal=\"traces\"}}")
    };

    let before = scrape(tmp.path(), &serve, None);
    for signal in ["traces", "metrics", "logs"] {
        for name in [
            "tracespool_spool_batches",
            "tracespool_spool_items",
            "tracespool_dropped_items_total",
            "tracespool_rejected_items_total",
            "tracespool_delivered_items_total",
            "tracespool_backend_up",
        ] {
            let series = format!("{name}{{signal=\"{signal}\"}}");
            assert_eq!(before.get(&series), Some(&0.0), "{series}: {before:?}");
        }
        for protocol in ["http/protobuf", "http/json", "grpc"] {
            let series = format!(
                "tracespool_received_items_total{{protocol=\"{protocol}\",signal=\"{signal}\"}}"
            );
            assert_eq!(before.get(&series), Some(&0.0), "{series}: {before:?}");
        }
    }
    assert_eq!(
        before.get("tracespool_spool_bytes"),
        Some(&0.0),
        "{before:?}"
    );

    // Upstream down: what is received waits in the spool. 5 spans over HTTP in protobuf (2
    // requests), 1 in JSON, 1 over gRPC.
    let names: Vec<String> = prefixed("prom-down", 5).into_iter().collect();
    for chunk in [&names[..2], &names[2..]] {
        let resp = post_protobuf(serve.http, &[], &request(chunk, 0).encode_to_vec());
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    let resp = post(
        serve.http,
        "application/json",
        &[],
        otlp_json("prom-down-json").as_bytes(),
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    let calls = serde_json::json!([{ "name": "prom-down-grpc" }]);
    assert_eq!(grpc_calls(tmp.path(), serve.grpc, calls), ["OK"]);
    // Acknowledged means stored: the page says so at once.
    let down = scrape(tmp.path(), &serve, None);
    assert!(
        down[&traces("tracespool_spool_oldest_age_seconds")] > 0.0,
        "{down:?}"
    );
    assert_eq!(down[&traces("tracespool_spool_items")], 7.0, "{down:?}");
    assert_eq!(down[&traces("tracespool_spool_batches")], 4.0, "{down:?}");
    assert_eq!(down[&received("http/protobuf")], 5.0, "{down:?}");
    assert_eq!(down[&received("http/json")], 1.0, "{down:?}");
    assert_eq!(down[&received("grpc")], 1.0, "{down:?}");
    assert_eq!(
        down[&traces("tracespool_delivered_items_total")],
        0.0,
        "{down:?}"
    );
    assert_eq!(down[&traces("tracespool_backend_up")], 0.0, "{down:?}");
    assert!(down["tracespool_spool_bytes"] > 0.0, "{down:?}");

    // Upstream back: the backlog goes out, and the page says so.
    rotel.resume();
    let mut all = prefixed("prom-down", 5);
    all.extend(["prom-down-json".to_owned(), "prom-down-grpc".to_owned()]);
    serve.wait_for_names(&rotel, &all, 60 * SECOND);
    let mut up = BTreeMap::new();
    assert!(
        eventually(10 * SECOND, || {
            up = scrape(tmp.path(), &serve, None);
            up[&traces("tracespool_spool_items")] == 0.0
        }),
        "{up:?}: {}",
        serve.log()
    );
    assert_eq!(
        up[&traces("tracespool_delivered_items_total")],
        7.0,
        "{up:?}"
    );
    assert_eq!(up[&traces("tracespool_backend_up")], 1.0, "{up:?}");
    assert_eq!(up[&traces("tracespool_spool_batches")], 0.0, "{up:?}");
    assert_eq!(
        up[&traces("tracespool_spool_oldest_age_seconds")],
        0.0,
        "{up:?}"
    );
    assert_eq!(up[&traces("tracespool_dropped_items_total")], 0.0, "{up:?}");
    assert_eq!(up[&received("http/protobuf")], 5.0, "{up:?}");
}

/// A real Prometheus scraping `target` every second (with `token_file` as its bearer token),
/// killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    fn start(bin: &Path, dir: &Path, target: u16, token_file: &Path) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: tracespool\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n",
                token_file.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&dir.join("prometheus.err")))
            .spawn()
            .expect("start prometheus");
        Prometheus { child, port, log }
    }

    /// The value of `query`'s series with `signal="traces"`, if Prometheus has one.
    fn traces_value(&self, query: &str) -> Option<f64> {
        let resp = http(
            self.port,
            "GET",
            &format!("/api/v1/query?query={query}"),
            &[],
            b"",
        )
        .ok()?;
        let body: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
        body["data"]["result"]
            .as_array()?
            .iter()
            .find(|r| r["metric"]["signal"] == "traces")?["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    fn log(&self) -> String {
        let err = self.log.with_extension("err");
        std::fs::read_to_string(err).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_serve_and_its_query_api_returns_the_spool_and_the_delivered_total() {
    let Some(bin) = common::prometheus_bin() else {
        return;
    };
    const TOKEN: &str = "scrape-t0ken";
    let mut rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let serve = ServeCmd::new(&tmp.path().join("spool"), Some(&rotel.endpoint()))
        .args(&["--auth-token-file", token_file.to_str().unwrap()])
        .start(&tmp.path().join("serve.log"));
    let auth = format!("Bearer {TOKEN}");
    let send = |names: &BTreeSet<String>| {
        let names: Vec<String> = names.iter().cloned().collect();
        let resp = post_protobuf(
            serve.http,
            &[("authorization", &auth)],
            &request(&names, 0).encode_to_vec(),
        );
        assert_eq!(resp.status, 200, "{resp:?}");
    };

    // 3 spans delivered, then 4 spooled with the upstream down.
    let delivered = prefixed("prom-delivered", 3);
    send(&delivered);
    serve.wait_for_names(&rotel, &delivered, 30 * SECOND);
    rotel.stop();
    send(&prefixed("prom-spooled", 4));

    let prometheus = Prometheus::start(&bin, tmp.path(), serve.http, &token_file);
    let (mut items, mut total) = (None, None);
    let scraped = eventually(60 * SECOND, || {
        items = prometheus.traces_value("tracespool_spool_items");
        total = prometheus.traces_value("tracespool_delivered_items_total");
        items == Some(4.0) && total == Some(3.0)
    });
    assert!(
        scraped,
        "Prometheus has spool items {items:?} and delivered {total:?}, not 4 and 3; \
         prometheus: {}\nserve: {}",
        prometheus.log(),
        serve.log()
    );
}
