//! `serve` benchmarks: what the agent accepts, and what it adds per request, against a real
//! collector (rotel) taking the same load directly.
//!
//! `cargo bench --bench serve` prints a table and writes the same figures to
//! `target/bench-report/serve.json`. Spools are made in `target/bench-tmp` and deleted at the end.
//!
//! The load: `C` clients (1, 8, 32), each a task with its own keep-alive connection (one hyper
//! client per task), POST OTLP/HTTP protobuf requests of 512 spans (pre-encoded
//! `ExportTraceServiceRequest`s with realistic names, ids and attributes) in a loop: 512 is the
//! OpenTelemetry SDKs' default export batch size (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`), what an SDK
//! under load sends (`TRACESPOOL_BENCH_SERVE_SPANS=N` changes it). A point is a
//! warm-up, then a fixed window: spans/s counts the requests answered 200 within the window; the
//! latency of each request started in the window is taken in the client.
//!
//! The targets, each taking the same load:
//! - `rotel`: rotel (`--exporter blackhole`, no debug log) on its own OTLP/HTTP port;
//! - `serve→rotel`: the release `tracespool serve` (sync policy `Always`, the default) whose
//!   forwarder drains the spool to a second rotel while the load runs: the realistic case;
//! - `serve spool-only`: `tracespool serve` with no endpoint (the spool only grows).
//!
//! Every serve point runs a fresh `serve` process on a fresh spool (`--max-bytes 4GiB`); its peak
//! RSS (`VmHWM`) and CPU time are read from `/proc` before it is stopped (SIGTERM). The machine is
//! shared and noisy: each repetition runs every target at a concurrency level back to back (the
//! order rotates between repetitions), ratios and latency differences are taken within a
//! repetition, and the medians across repetitions are reported with their spread. Optionally
//! (on by default) the same at 8 clients over OTLP/gRPC (tonic channel per client).
//!
//! Without `--bench` (e.g. `cargo test --all-targets`), or with `TRACESPOOL_BENCH_QUICK=1`, the
//! run is a short smoke run whose figures mean nothing, and no report is written.
//! `TRACESPOOL_BENCH_SERVE_SECS` / `TRACESPOOL_BENCH_SERVE_REPS` override the window length and
//! the number of repetitions; `TRACESPOOL_BENCH_SERVE_GRPC=0` skips gRPC;
//! `TRACESPOOL_BENCH_SERVE_SPANS` the spans per request. Rotel is found at
//! `TRACESPOOL_ROTEL`, else `target/peers/…/rotel-agent` (installed by `.ci/peers`).

mod common;

use common::{
    Peer, Rotel, Tmp, free_port, load_snapshot, machine_json, percentile, print_banner, quick,
    rotel_bin, sync_all, target_dir, write_report,
};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use serde_json::{Value, json};

const SECS_ENV: &str = "TRACESPOOL_BENCH_SERVE_SECS";
const REPS_ENV: &str = "TRACESPOOL_BENCH_SERVE_REPS";
const GRPC_ENV: &str = "TRACESPOOL_BENCH_SERVE_GRPC";
/// Only these levels (`http:1,grpc:8`) / targets (`rotel,serve_forwarding,serve_spool_only`), for
/// profiling; such a run writes no report.
const LEVELS_ENV: &str = "TRACESPOOL_BENCH_SERVE_LEVELS";
const TARGETS_ENV: &str = "TRACESPOOL_BENCH_SERVE_TARGETS";
/// Temporary directories are named `serve-bench-<pid>-…` so that a later run can remove the
/// leftovers of one that was interrupted (and only those: its pid is gone).
const TMP_PREFIX: &str = "serve-bench-";
const SERVE_BIN: &str = env!("CARGO_BIN_EXE_tracespool");

const SPANS_ENV: &str = "TRACESPOOL_BENCH_SERVE_SPANS";
/// The OpenTelemetry SDKs' default `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
const SPANS_PER_REQUEST_DEFAULT: usize = 512;

/// Spans per request: [`SPANS_PER_REQUEST_DEFAULT`] unless [`SPANS_ENV`] says otherwise.
fn spans_per_request() -> usize {
    static SPANS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SPANS.get_or_init(|| {
        std::env::var(SPANS_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(SPANS_PER_REQUEST_DEFAULT)
    })
}
/// Distinct request bodies the clients cycle through.
const BODIES: usize = 64;
const SERVE_MAX_BYTES: &str = "4GiB";

const TARGET_RATIO: f64 = 0.50;
const TARGET_P99_ADDED_MS: f64 = 5.0;

/// How much work the run does.
struct Scale {
    quick: bool,
    window: Duration,
    warmup: Duration,
    reps: usize,
    clients: Vec<usize>,
    /// Clients of the gRPC points; none: no gRPC.
    grpc_clients: Option<usize>,
}

impl Scale {
    fn full() -> Scale {
        Scale {
            quick: false,
            window: Duration::from_secs(3),
            warmup: Duration::from_millis(500),
            reps: 4,
            clients: vec![1, 8, 32],
            grpc_clients: Some(8),
        }
    }

    fn quick() -> Scale {
        Scale {
            quick: true,
            window: Duration::from_millis(300),
            warmup: Duration::from_millis(100),
            reps: 1,
            clients: vec![1, 8],
            grpc_clients: Some(8),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Rotel,
    ServeForwarding,
    ServeSpoolOnly,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Rotel => "rotel",
            Target::ServeForwarding => "serve→rotel",
            Target::ServeSpoolOnly => "serve spool-only",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Target::Rotel => "rotel",
            Target::ServeForwarding => "serve_forwarding",
            Target::ServeSpoolOnly => "serve_spool_only",
        }
    }

    fn is_serve(self) -> bool {
        self != Target::Rotel
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http,
    Grpc,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::Http => "OTLP/HTTP protobuf",
            Proto::Grpc => "OTLP/gRPC",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Grpc => "grpc",
        }
    }
}

/// One load configuration: protocol and clients, against every target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Level {
    proto: Proto,
    clients: usize,
}

/// One measured point: a level against a target in one repetition.
#[derive(Debug, Clone)]
struct Sample {
    level: Level,
    target: Target,
    rep: usize,
    load: Load,
    /// CPU seconds of the process under test (serve, or the direct rotel) over the whole point.
    server_cpu: f64,
    /// CPU seconds of the upstream rotel (forwarding only).
    upstream_cpu: f64,
    /// CPU seconds of this process (the clients).
    client_cpu: f64,
    /// serve only: VmHWM / VmRSS in KiB at the end of the load.
    hwm_kib: Option<u64>,
    rss_kib: Option<u64>,
    /// serve only: spans still in the spool right after the load (`status --json`).
    backlog_spans: Option<u64>,
    /// serve→rotel only: spans forwarded per second over the point (accepted − backlog).
    forwarded_per_s: Option<f64>,
    /// serve only: seconds from SIGTERM to exit.
    stop_secs: Option<f64>,
}

impl Sample {
    fn cpu_us_per_span(&self, cpu: f64) -> f64 {
        if self.load.total_spans == 0 {
            f64::NAN
        } else {
            cpu * 1e6 / self.load.total_spans as f64
        }
    }
}

fn main() {
    let quick = quick();
    let mut scale = if quick { Scale::quick() } else { Scale::full() };
    if let Some(secs) = env_parse::<f64>(SECS_ENV).filter(|s| *s > 0.0) {
        scale.window = Duration::from_secs_f64(secs);
    }
    if let Some(reps) = env_parse::<usize>(REPS_ENV).filter(|r| *r > 0) {
        scale.reps = reps;
    }
    if std::env::var(GRPC_ENV).is_ok_and(|v| v == "0") {
        scale.grpc_clients = None;
    }
    let started = Instant::now();

    let target = target_dir();
    let tmp = Tmp::new(&target.join("bench-tmp"), TMP_PREFIX);
    let load_start = load_snapshot();
    print_banner("serve", scale.quick);
    println!("  serve: {SERVE_BIN}");
    println!("  spools in {}", tmp.base.display());
    println!("  load at start: {load_start}");

    let rotel_path = match rotel_bin() {
        Ok(p) => p,
        Err(e) if scale.quick => {
            println!("  {e}: nothing to compare with, skipping (quick run)");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mut direct = Rotel::start(&rotel_path, &tmp);
    let mut upstream = Rotel::start(&rotel_path, &tmp);
    println!(
        "  rotel {}: direct target pid {} (HTTP {}, gRPC {}), serve's upstream pid {} (HTTP {})",
        direct.version,
        direct.pid,
        direct.http_port,
        direct.grpc_port,
        upstream.pid,
        upstream.http_port
    );

    let payloads = Arc::new(payloads());
    let body_bytes = payloads.iter().map(|p| p.bytes.len()).sum::<usize>() / payloads.len();
    println!(
        "  load: {} spans/request, {body_bytes} bytes/request on average, {} distinct bodies",
        spans_per_request(),
        payloads.len()
    );
    let codec = codec_cost(&payloads);
    println!(
        "  in-process prost cost of one request: decode {:.1} µs, re-encode {:.1} µs ({:.2} / {:.2} µs per span)",
        codec.decode_us,
        codec.encode_us,
        codec.decode_us / spans_per_request() as f64,
        codec.encode_us / spans_per_request() as f64
    );
    let source = source_state();
    println!("  source: {source}");
    println!(
        "  {} repetitions × {:.1} s window (+{:.1} s warm-up) per point",
        scale.reps,
        scale.window.as_secs_f64(),
        scale.warmup.as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");

    let mut levels: Vec<Level> = scale
        .clients
        .iter()
        .map(|&clients| Level {
            proto: Proto::Http,
            clients,
        })
        .collect();
    if let Some(clients) = scale.grpc_clients {
        levels.push(Level {
            proto: Proto::Grpc,
            clients,
        });
    }
    let mut partial = false;
    if let Ok(only) = std::env::var(LEVELS_ENV) {
        let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
        levels.retain(|l| wanted.contains(&format!("{}:{}", l.proto.key(), l.clients).as_str()));
        for w in &wanted {
            let parsed = w.split_once(':').and_then(|(p, c)| {
                let proto = match p {
                    "http" => Proto::Http,
                    "grpc" => Proto::Grpc,
                    _ => return None,
                };
                Some(Level {
                    proto,
                    clients: c.parse().ok()?,
                })
            });
            if let Some(l) = parsed.filter(|l| !levels.contains(l)) {
                levels.push(l);
            }
        }
        partial = true;
    }
    let only_targets: Option<Vec<String>> = std::env::var(TARGETS_ENV)
        .ok()
        .map(|v| v.split(',').map(|t| t.trim().to_owned()).collect());
    partial |= only_targets.is_some();
    let targets_of = |level: Level| -> Vec<Target> {
        let mut all = Results::targets_of(level);
        if let Some(only) = &only_targets {
            all.retain(|t| only.iter().any(|o| o == t.key()));
        }
        all
    };

    // Warm-up: every binary and path once, unrecorded.
    {
        let warm = Level {
            proto: Proto::Http,
            clients: 4,
        };
        for t in targets_of(warm) {
            let _ = point(
                &rt,
                &tmp,
                &payloads,
                warm,
                t,
                usize::MAX,
                &direct,
                &upstream,
                Duration::from_millis(100),
                Duration::from_millis(if scale.quick { 100 } else { 500 }),
            );
        }
    }

    let mut samples: Vec<Sample> = Vec::new();
    let mut probes: Vec<SyncProbe> = Vec::new();
    for rep in 0..scale.reps {
        let probe = sync_probe(&tmp, body_bytes);
        println!(
            "  rep {} fdatasync probe ({} × {body_bytes} B appends): p50 {:.2} ms, p99 {:.2} ms",
            rep + 1,
            probe.count,
            probe.p50_ms,
            probe.p99_ms
        );
        probes.push(probe);
        for &level in &levels {
            let mut order = targets_of(level);
            let n = order.len();
            order.rotate_left(rep % n);
            for target in order {
                let s = point(
                    &rt,
                    &tmp,
                    &payloads,
                    level,
                    target,
                    rep,
                    &direct,
                    &upstream,
                    scale.warmup,
                    scale.window,
                );
                println!(
                    "  rep {} {:>4} {:>2} clients {:<17} {:>9.0} spans/s  p50 {:>6.2} ms  p99 {:>6.2} ms{}{}",
                    rep + 1,
                    level.proto.key(),
                    level.clients,
                    target.label(),
                    s.load.spans_per_s,
                    s.load.p50_ms,
                    s.load.p99_ms,
                    if s.load.errors > 0 {
                        format!("  {} ERRORS", s.load.errors)
                    } else {
                        String::new()
                    },
                    match (s.hwm_kib, s.backlog_spans) {
                        (Some(h), Some(b)) =>
                            format!("  HWM {:.1} MiB, backlog {b} spans", h as f64 / 1024.0),
                        (Some(h), None) => format!("  HWM {:.1} MiB", h as f64 / 1024.0),
                        _ => String::new(),
                    }
                );
                samples.push(s);
            }
        }
    }
    drop(rt);

    let rotel_hwm = (
        proc_status_kib(direct.pid, "VmHWM:"),
        proc_status_kib(upstream.pid, "VmHWM:"),
    );
    let alive = (direct.alive(), upstream.alive());
    drop(direct);
    drop(upstream);
    tmp.finish();
    let load_end = load_snapshot();
    let total_secs = started.elapsed().as_secs_f64();

    let results = Results {
        samples,
        levels,
        body_bytes,
        probes,
    };
    println!("\n================ summary ================");
    results.print(&scale);
    println!(
        "\nrotel VmHWM: direct {}, upstream {}",
        mib(rotel_hwm.0),
        mib(rotel_hwm.1)
    );
    println!("load at end: {load_end}; total {total_secs:.1} s");
    if alive != (true, true) {
        println!("WARNING: a rotel had exited before the end of the run");
    }

    let report = json!({
        "quick": scale.quick,
        "machine": machine_json(json!({
            "bench_dir": tmp_base_display(&target),
            "load_at_start": load_start,
            "load_at_end": load_end,
        })),
        "setup": {
            "spans_per_request": spans_per_request(),
            "bytes_per_request": body_bytes,
            "window_secs": scale.window.as_secs_f64(),
            "warmup_secs": scale.warmup.as_secs_f64(),
            "repetitions": scale.reps,
            "serve": "fresh `tracespool serve` per point, sync Always, --max-bytes 4GiB; forwarding: --endpoint = a second rotel (blackhole); spool-only: no endpoint",
            "rotel": "rotel start --exporter blackhole (no debug log)",
            "source": source,
            "prost_decode_us_per_request": finite(codec.decode_us),
            "prost_encode_us_per_request": finite(codec.encode_us),
        },
        "fdatasync_probe": results.probes.iter().map(|p| json!({
            "appends": p.count,
            "p50_ms": finite(p.p50_ms),
            "p99_ms": finite(p.p99_ms),
        })).collect::<Vec<_>>(),
        "results": results.to_json(),
        "rotel_vm_hwm_kib": { "direct": rotel_hwm.0, "upstream": rotel_hwm.1 },
        "targets": results.targets_json(),
        "total_secs": total_secs,
    });
    if scale.quick {
        println!("\n(quick run: figures are not meaningful; no report written)");
    } else if partial {
        println!("\n(only some levels or targets ran: no report written)");
    } else {
        let path = write_report("serve", &report);
        println!("report: {}", path.display());
    }
}

fn tmp_base_display(target: &Path) -> String {
    target.join("bench-tmp").display().to_string()
}

fn env_parse<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// One point.

/// Runs `level` against `target`: starts serve if needed, runs the load, reads the figures.
#[allow(clippy::too_many_arguments)]
fn point(
    rt: &tokio::runtime::Runtime,
    tmp: &Tmp,
    payloads: &Arc<Vec<Payload>>,
    level: Level,
    target: Target,
    rep: usize,
    direct: &Rotel,
    upstream: &Rotel,
    warmup: Duration,
    window: Duration,
) -> Sample {
    sync_all();
    let serve = match target {
        Target::Rotel => None,
        Target::ServeForwarding => Some(Serve::start(tmp, Some(&upstream.endpoint()))),
        Target::ServeSpoolOnly => Some(Serve::start(tmp, None)),
    };
    let (server_pid, port) = match (&serve, level.proto) {
        (Some(s), Proto::Http) => (s.pid, s.http_port),
        (Some(s), Proto::Grpc) => (s.pid, s.grpc_port),
        (None, Proto::Http) => (direct.pid, direct.http_port),
        (None, Proto::Grpc) => (direct.pid, direct.grpc_port),
    };
    let cpu0 = (
        cpu_secs(server_pid),
        cpu_secs(upstream.pid),
        cpu_secs(std::process::id()),
    );
    let load_start = Instant::now();
    let load = run_load(rt, level, port, payloads, warmup, window);
    let cpu1 = (
        cpu_secs(server_pid),
        cpu_secs(upstream.pid),
        cpu_secs(std::process::id()),
    );
    let (mut hwm_kib, mut rss_kib, mut backlog_spans, mut stop_secs) = (None, None, None, None);
    let mut forwarded_per_s = None;
    if let Some(mut s) = serve {
        hwm_kib = proc_status_kib(s.pid, "VmHWM:");
        rss_kib = proc_status_kib(s.pid, "VmRSS:");
        if target == Target::ServeForwarding {
            backlog_spans = s.pending_spans();
            let secs = load_start.elapsed().as_secs_f64();
            forwarded_per_s =
                backlog_spans.map(|b| load.total_spans.saturating_sub(b) as f64 / secs);
        }
        stop_secs = s.stop();
    }
    Sample {
        level,
        target,
        rep,
        load,
        server_cpu: cpu1.0 - cpu0.0,
        upstream_cpu: if target == Target::ServeForwarding {
            cpu1.1 - cpu0.1
        } else {
            0.0
        },
        client_cpu: cpu1.2 - cpu0.2,
        hwm_kib,
        rss_kib,
        backlog_spans,
        forwarded_per_s,
        stop_secs,
    }
}

// ---------------------------------------------------------------------------------------------
// The load.

struct Payload {
    bytes: Bytes,
    request: ExportTraceServiceRequest,
}

/// What one point's clients saw.
#[derive(Debug, Clone, Default)]
struct Load {
    /// 200s received within the window, and their spans per second.
    ok_in_window: u64,
    spans_per_s: f64,
    requests_per_s: f64,
    /// Every failed request, warm-up included.
    errors: u64,
    /// Spans accepted over the whole point, warm-up included.
    total_spans: u64,
    /// Latency of every successful request started in the window, milliseconds.
    latencies_ms: Vec<f64>,
    p50_ms: f64,
    p99_ms: f64,
    first_error: Option<String>,
}

#[derive(Default)]
struct ClientTally {
    ok_in_window: u64,
    ok_total: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
    first_error: Option<String>,
}

#[derive(Clone, Copy)]
struct Clock {
    measure_from: Instant,
    end: Instant,
}

impl ClientTally {
    fn record(&mut self, clock: Clock, t0: Instant, result: Result<(), String>) {
        let t1 = Instant::now();
        match result {
            Ok(()) => {
                self.ok_total += 1;
                if t0 >= clock.measure_from {
                    self.latencies_ms.push((t1 - t0).as_secs_f64() * 1e3);
                }
                if t1 >= clock.measure_from && t1 <= clock.end {
                    self.ok_in_window += 1;
                }
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

fn run_load(
    rt: &tokio::runtime::Runtime,
    level: Level,
    port: u16,
    payloads: &Arc<Vec<Payload>>,
    warmup: Duration,
    window: Duration,
) -> Load {
    let tallies: Vec<ClientTally> = rt.block_on(async {
        let start = Instant::now();
        let clock = Clock {
            measure_from: start + warmup,
            end: start + warmup + window,
        };
        let tasks: Vec<_> = (0..level.clients)
            .map(|i| {
                let payloads = payloads.clone();
                let offset = i * payloads.len() / level.clients.max(1);
                match level.proto {
                    Proto::Http => tokio::spawn(http_client(port, payloads, offset, clock)),
                    Proto::Grpc => tokio::spawn(grpc_client(port, payloads, offset, clock)),
                }
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    });
    let mut load = Load::default();
    for t in tallies {
        load.ok_in_window += t.ok_in_window;
        load.errors += t.errors;
        load.total_spans += t.ok_total * spans_per_request() as u64;
        load.latencies_ms.extend(t.latencies_ms);
        if load.first_error.is_none() {
            load.first_error = t.first_error;
        }
    }
    let secs = window.as_secs_f64();
    load.requests_per_s = load.ok_in_window as f64 / secs;
    load.spans_per_s = load.requests_per_s * spans_per_request() as f64;
    load.p50_ms = percentile(load.latencies_ms.to_vec(), 0.50);
    load.p99_ms = percentile(load.latencies_ms.to_vec(), 0.99);
    if let Some(e) = &load.first_error {
        println!("    {} failed requests; the first: {e}", load.errors);
    }
    load
}

async fn http_client(
    port: u16,
    payloads: Arc<Vec<Payload>>,
    offset: usize,
    clock: Clock,
) -> ClientTally {
    let uri: Uri = format!("http://127.0.0.1:{port}/v1/traces")
        .parse()
        .expect("uri");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(connector);
    let mut tally = ClientTally::default();
    let mut i = offset;
    loop {
        let t0 = Instant::now();
        if t0 >= clock.end {
            break;
        }
        let body = payloads[i % payloads.len()].bytes.clone();
        i += 1;
        let req = Request::post(uri.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(body))
            .expect("request");
        let result = match client.request(req).await {
            Ok(resp) => {
                let status = resp.status();
                match resp.into_body().collect().await {
                    Ok(_) if status == StatusCode::OK => Ok(()),
                    Ok(_) => Err(format!("HTTP {status}")),
                    Err(e) => Err(format!("reading the answer: {e}")),
                }
            }
            Err(e) => Err(format!("request: {e:?}")),
        };
        let failed = result.is_err();
        tally.record(clock, t0, result);
        if failed {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tally
}

async fn grpc_client(
    port: u16,
    payloads: Arc<Vec<Payload>>,
    offset: usize,
    clock: Clock,
) -> ClientTally {
    let mut tally = ClientTally::default();
    let mut client = match TraceServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
        Ok(c) => c,
        Err(e) => {
            tally.record(clock, Instant::now(), Err(format!("connect: {e}")));
            return tally;
        }
    };
    let mut i = offset;
    loop {
        let t0 = Instant::now();
        if t0 >= clock.end {
            break;
        }
        let request = payloads[i % payloads.len()].request.clone();
        i += 1;
        let result = client
            .export(request)
            .await
            .map(|_| ())
            .map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message()));
        let failed = result.is_err();
        tally.record(clock, t0, result);
        if failed {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tally
}

// ---------------------------------------------------------------------------------------------
// Spans.

/// A small deterministic generator (xorshift64*), for ids and choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_owned())
}

fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

const ROUTES: [&str; 6] = [
    "/api/users/{id}",
    "/api/orders",
    "/api/orders/{id}/items",
    "/healthz",
    "/api/search",
    "/api/cart/{id}",
];
const TABLES: [&str; 4] = ["users", "orders", "order_items", "carts"];

/// One request's spans: traces of one server span with client/internal children.
fn request_spans(rng: &mut Rng, base_ns: u64) -> Vec<Span> {
    let mut spans = Vec::with_capacity(spans_per_request());
    while spans.len() < spans_per_request() {
        let trace_id = rng.bytes(16);
        let root_id = rng.bytes(8);
        let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let start = base_ns + rng.below(1_000_000_000);
        let dur = 2_000_000 + rng.below(80_000_000);
        let status_code = [200, 200, 200, 201, 404, 500][rng.below(6) as usize];
        spans.push(Span {
            trace_id: trace_id.clone(),
            span_id: root_id.clone(),
            flags: 0x101,
            name: format!("GET {route}"),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s(route)),
                kv(
                    "url.path",
                    s(&route.replace("{id}", &rng.below(100_000).to_string())),
                ),
                kv("http.response.status_code", i(status_code)),
                kv("server.address", s("api.internal.example.com")),
                kv(
                    "user_agent.original",
                    s("Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
                ),
            ],
            status: Some(Status {
                message: String::new(),
                code: if status_code >= 500 {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Unset as i32
                },
            }),
            ..Default::default()
        });
        let children = 3 + rng.below(7) as usize;
        for c in 0..children {
            if spans.len() >= spans_per_request() {
                break;
            }
            let cstart = start + (dur / (children as u64 + 1)) * c as u64;
            let cdur = dur / (children as u64 + 2);
            let table = TABLES[rng.below(TABLES.len() as u64) as usize];
            let (name, kind, attributes) = if c % 3 == 2 {
                (
                    "render".to_owned(),
                    span::SpanKind::Internal,
                    vec![
                        kv("template", s("page.html")),
                        kv("cache.hit", any_value::Value::BoolValue(rng.below(2) == 0)),
                    ],
                )
            } else {
                (
                    format!("SELECT {table}"),
                    span::SpanKind::Client,
                    vec![
                        kv("db.system.name", s("postgresql")),
                        kv("db.namespace", s("shop")),
                        kv("db.collection.name", s(table)),
                        kv("db.operation.name", s("SELECT")),
                        kv(
                            "db.query.text",
                            s(&format!("SELECT * FROM {table} WHERE id = $1")),
                        ),
                        kv("server.port", i(5432)),
                    ],
                )
            };
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id: rng.bytes(8),
                parent_span_id: root_id.clone(),
                flags: 0x101,
                name,
                kind: kind as i32,
                start_time_unix_nano: cstart,
                end_time_unix_nano: cstart + cdur,
                attributes,
                ..Default::default()
            });
        }
    }
    spans
}

fn payloads() -> Vec<Payload> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let base_ns = 1_750_000_000_000_000_000u64;
    (0..BODIES)
        .map(|b| {
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", s("checkout-api")),
                            kv("service.version", s("2.14.1")),
                            kv("deployment.environment.name", s("bench")),
                            kv("host.name", s("bench-host-1")),
                            kv("process.pid", i(4242 + b as i64)),
                            kv("telemetry.sdk.name", s("opentelemetry")),
                            kv("telemetry.sdk.language", s("rust")),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "checkout-api".to_owned(),
                            version: "2.14.1".to_owned(),
                            ..Default::default()
                        }),
                        spans: request_spans(&mut rng, base_ns + b as u64 * 1_000_000_000),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            Payload {
                bytes: Bytes::from(request.encode_to_vec()),
                request,
            }
        })
        .collect()
}

/// What decoding (as both receivers do) and re-encoding (as the gRPC receiver does) one request
/// costs in this process: medians over 5 rounds of every body.
struct CodecCost {
    decode_us: f64,
    encode_us: f64,
}

fn codec_cost(payloads: &[Payload]) -> CodecCost {
    let (mut dec, mut enc) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let decoded: Vec<ExportTraceServiceRequest> = payloads
            .iter()
            .map(|p| ExportTraceServiceRequest::decode(&p.bytes[..]).expect("decode"))
            .collect();
        dec.push(t.elapsed().as_secs_f64() * 1e6 / payloads.len() as f64);
        let t = Instant::now();
        let bytes: usize = decoded.iter().map(|r| r.encode_to_vec().len()).sum();
        enc.push(t.elapsed().as_secs_f64() * 1e6 / payloads.len() as f64);
        std::hint::black_box((decoded, bytes));
    }
    CodecCost {
        decode_us: percentile(dec.to_vec(), 0.5),
        encode_us: percentile(enc.to_vec(), 0.5),
    }
}

/// The commit measured, and whether the working tree differed from it.
fn source_state() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&[
                "status",
                "--porcelain",
                "--",
                "src",
                "Cargo.toml",
                "Cargo.lock",
            ])
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head} + uncommitted changes in src/")
            } else {
                head
            }
        }
        None => "unknown (no git)".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Results.

struct Results {
    samples: Vec<Sample>,
    levels: Vec<Level>,
    body_bytes: usize,
    probes: Vec<SyncProbe>,
}

/// Median and spread of a set of figures.
#[derive(Debug, Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn of(v: &[f64]) -> Stat {
        let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        Stat {
            median: percentile(v.to_vec(), 0.5),
            min: v.iter().copied().fold(f64::NAN, f64::min),
            max: v.iter().copied().fold(f64::NAN, f64::max),
        }
    }

    fn json(self) -> Value {
        json!({ "median": finite(self.median), "min": finite(self.min), "max": finite(self.max) })
    }
}

fn finite(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

impl Results {
    fn of(&self, level: Level, target: Target) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.level == level && s.target == target)
            .collect()
    }

    fn stat(&self, level: Level, target: Target, f: impl Fn(&Sample) -> f64) -> Stat {
        let v: Vec<f64> = self.of(level, target).into_iter().map(f).collect();
        Stat::of(&v)
    }

    /// Per repetition: f(serve sample, rotel sample of the same repetition).
    fn paired(&self, level: Level, target: Target, f: impl Fn(&Sample, &Sample) -> f64) -> Stat {
        let rotel = self.of(level, Target::Rotel);
        let v: Vec<f64> = self
            .of(level, target)
            .into_iter()
            .filter_map(|s| rotel.iter().find(|r| r.rep == s.rep).map(|r| f(s, r)))
            .collect();
        Stat::of(&v)
    }

    fn ratio(&self, level: Level, target: Target) -> Stat {
        self.paired(level, target, |s, r| {
            s.load.spans_per_s / r.load.spans_per_s
        })
    }

    fn added_p50(&self, level: Level, target: Target) -> Stat {
        self.paired(level, target, |s, r| s.load.p50_ms - r.load.p50_ms)
    }

    fn added_p99(&self, level: Level, target: Target) -> Stat {
        self.paired(level, target, |s, r| s.load.p99_ms - r.load.p99_ms)
    }

    /// Percentile over every latency of every repetition.
    fn pooled(&self, level: Level, target: Target, q: f64) -> f64 {
        let all: Vec<f64> = self
            .of(level, target)
            .into_iter()
            .flat_map(|s| s.load.latencies_ms.iter().copied())
            .collect();
        percentile(all.to_vec(), q)
    }

    fn targets_of(level: Level) -> Vec<Target> {
        match level.proto {
            Proto::Http => vec![
                Target::Rotel,
                Target::ServeForwarding,
                Target::ServeSpoolOnly,
            ],
            Proto::Grpc => vec![Target::Rotel, Target::ServeForwarding],
        }
    }

    fn print(&self, scale: &Scale) {
        println!(
            "{} spans/request ({} bytes), {} repetitions × {:.1} s per point; medians [min–max across repetitions]",
            spans_per_request(),
            self.body_bytes,
            scale.reps,
            scale.window.as_secs_f64()
        );
        let p50 = Stat::of(&self.probes.iter().map(|p| p.p50_ms).collect::<Vec<_>>());
        let p99 = Stat::of(&self.probes.iter().map(|p| p.p99_ms).collect::<Vec<_>>());
        println!(
            "disk: fdatasync after a {} B append, probed once per repetition: p50 {:.2} ms [{:.2}–{:.2}], p99 {:.2} ms [{:.2}–{:.2}]",
            self.body_bytes, p50.median, p50.min, p50.max, p99.median, p99.min, p99.max
        );
        println!(
            "\n1. Throughput (spans/s accepted), ratio = serve / rotel in the same repetition"
        );
        println!(
            "{:<6} {:>3} {:<17} {:>26} {:>22}",
            "proto", "C", "target", "spans/s", "ratio vs rotel"
        );
        for &level in &self.levels {
            for target in Self::targets_of(level) {
                let t = self.stat(level, target, |s| s.load.spans_per_s);
                let ratio = if target.is_serve() {
                    let r = self.ratio(level, target);
                    format!(
                        "{:.2} [{:.2}–{:.2}] {}",
                        r.median,
                        r.min,
                        r.max,
                        mark(r.median >= TARGET_RATIO)
                    )
                } else {
                    String::new()
                };
                println!(
                    "{:<6} {:>3} {:<17} {:>9.0} [{:>6.0}–{:>6.0}] {:>22}",
                    level.proto.key(),
                    level.clients,
                    target.label(),
                    t.median,
                    t.min,
                    t.max,
                    ratio
                );
            }
        }

        println!(
            "\n2. Latency per request (ms, client side); added = serve − rotel, same percentile, same repetition"
        );
        println!(
            "{:<6} {:>3} {:<17} {:>20} {:>20} {:>18} {:>22}",
            "proto", "C", "target", "p50", "p99", "added p50", "added p99"
        );
        for &level in &self.levels {
            for target in Self::targets_of(level) {
                let p50 = self.stat(level, target, |s| s.load.p50_ms);
                let p99 = self.stat(level, target, |s| s.load.p99_ms);
                let (a50, a99) = if target.is_serve() {
                    let a50 = self.added_p50(level, target);
                    let a99 = self.added_p99(level, target);
                    (
                        format!("{:+.2} [{:+.2}–{:+.2}]", a50.median, a50.min, a50.max),
                        format!(
                            "{:+.2} [{:+.2}–{:+.2}] {}",
                            a99.median,
                            a99.min,
                            a99.max,
                            mark(a99.median <= TARGET_P99_ADDED_MS)
                        ),
                    )
                } else {
                    (String::new(), String::new())
                };
                println!(
                    "{:<6} {:>3} {:<17} {:>6.2} [{:.2}–{:.2}] {:>6.2} [{:.2}–{:.2}] {:>18} {:>22}",
                    level.proto.key(),
                    level.clients,
                    target.label(),
                    p50.median,
                    p50.min,
                    p50.max,
                    p99.median,
                    p99.min,
                    p99.max,
                    a50,
                    a99
                );
            }
        }

        println!(
            "\n3. Resources: peak RSS of serve (VmHWM at the end of the load, max over repetitions), CPU per span (server, median)"
        );
        println!(
            "{:<6} {:>3} {:<17} {:>10} {:>14} {:>14} {:>14} {:>14} {:>14} {:>9}",
            "proto",
            "C",
            "target",
            "VmHWM MiB",
            "server µs/span",
            "upstr. µs/span",
            "client µs/span",
            "backlog spans",
            "fwd spans/s",
            "stop s"
        );
        for &level in &self.levels {
            for target in Self::targets_of(level) {
                let samples = self.of(level, target);
                let hwm = samples.iter().filter_map(|s| s.hwm_kib).max();
                let server = self.stat(level, target, |s| s.cpu_us_per_span(s.server_cpu));
                let up = self.stat(level, target, |s| s.cpu_us_per_span(s.upstream_cpu));
                let client = self.stat(level, target, |s| s.cpu_us_per_span(s.client_cpu));
                let backlog = samples.iter().filter_map(|s| s.backlog_spans).max();
                let fwd = Stat::of(
                    &samples
                        .iter()
                        .filter_map(|s| s.forwarded_per_s)
                        .collect::<Vec<_>>(),
                );
                let stop = Stat::of(
                    &samples
                        .iter()
                        .filter_map(|s| s.stop_secs)
                        .collect::<Vec<_>>(),
                );
                println!(
                    "{:<6} {:>3} {:<17} {:>10} {:>14.2} {:>14} {:>14.2} {:>14} {:>14} {:>9}",
                    level.proto.key(),
                    level.clients,
                    target.label(),
                    mib(hwm),
                    server.median,
                    if target == Target::ServeForwarding {
                        format!("{:.2}", up.median)
                    } else {
                        "-".into()
                    },
                    client.median,
                    backlog.map_or("-".into(), |b| format!("≤ {b}")),
                    if fwd.median.is_finite() {
                        format!("{:.0}", fwd.median)
                    } else {
                        "-".into()
                    },
                    if stop.median.is_finite() {
                        format!("{:.2}", stop.median)
                    } else {
                        "-".into()
                    }
                );
            }
        }
        let errors: u64 = self.samples.iter().map(|s| s.load.errors).sum();
        if errors > 0 {
            println!("\nWARNING: {errors} failed requests in all (see above)");
        }

        println!("\nTargets (medians across repetitions):");
        for &level in &self.levels {
            for target in [Target::ServeForwarding, Target::ServeSpoolOnly] {
                if !Self::targets_of(level).contains(&target) {
                    continue;
                }
                let r = self.ratio(level, target);
                let a = self.added_p99(level, target);
                println!(
                    "  {:<4} {:>2} clients {:<17} throughput ratio {:.2} (≥ {TARGET_RATIO:.2}: {})   p99 added {:+.2} ms (≤ {TARGET_P99_ADDED_MS} ms: {})",
                    level.proto.key(),
                    level.clients,
                    target.label(),
                    r.median,
                    met(r.median >= TARGET_RATIO),
                    a.median,
                    met(a.median <= TARGET_P99_ADDED_MS)
                );
            }
        }
    }

    fn to_json(&self) -> Value {
        let mut out = Vec::new();
        for &level in &self.levels {
            for target in Self::targets_of(level) {
                let samples = self.of(level, target);
                let mut entry = json!({
                    "protocol": level.proto.label(),
                    "clients": level.clients,
                    "target": target.key(),
                    "spans_per_s": self.stat(level, target, |s| s.load.spans_per_s).json(),
                    "requests_per_s": self.stat(level, target, |s| s.load.requests_per_s).json(),
                    "p50_ms": self.stat(level, target, |s| s.load.p50_ms).json(),
                    "p99_ms": self.stat(level, target, |s| s.load.p99_ms).json(),
                    "pooled_p50_ms": finite(self.pooled(level, target, 0.50)),
                    "pooled_p99_ms": finite(self.pooled(level, target, 0.99)),
                    "server_cpu_us_per_span": self.stat(level, target, |s| s.cpu_us_per_span(s.server_cpu)).json(),
                    "client_cpu_us_per_span": self.stat(level, target, |s| s.cpu_us_per_span(s.client_cpu)).json(),
                    "errors": samples.iter().map(|s| s.load.errors).sum::<u64>(),
                    "repetitions": samples.iter().map(|s| json!({
                        "rep": s.rep,
                        "spans_per_s": finite(s.load.spans_per_s),
                        "p50_ms": finite(s.load.p50_ms),
                        "p99_ms": finite(s.load.p99_ms),
                        "requests_timed": s.load.latencies_ms.len(),
                        "errors": s.load.errors,
                        "vm_hwm_kib": s.hwm_kib,
                        "vm_rss_kib": s.rss_kib,
                        "backlog_spans": s.backlog_spans,
                        "forwarded_spans_per_s": s.forwarded_per_s.map(finite),
                        "accepted_spans_total": s.load.total_spans,
                        "stop_secs": s.stop_secs.map(finite),
                    })).collect::<Vec<_>>(),
                });
                if target.is_serve() {
                    let extra = json!({
                        "ratio_vs_rotel": self.ratio(level, target).json(),
                        "added_p50_ms": self.added_p50(level, target).json(),
                        "added_p99_ms": self.added_p99(level, target).json(),
                        "vm_hwm_kib_max": samples.iter().filter_map(|s| s.hwm_kib).max(),
                        "upstream_cpu_us_per_span": self.stat(level, target, |s| s.cpu_us_per_span(s.upstream_cpu)).json(),
                        "forwarded_spans_per_s": Stat::of(&samples.iter().filter_map(|s| s.forwarded_per_s).collect::<Vec<_>>()).json(),
                    });
                    if let (Value::Object(e), Value::Object(x)) = (&mut entry, extra) {
                        e.extend(x);
                    }
                }
                out.push(entry);
            }
        }
        Value::Array(out)
    }

    fn targets_json(&self) -> Value {
        let mut out = Vec::new();
        for &level in &self.levels {
            for target in [Target::ServeForwarding, Target::ServeSpoolOnly] {
                if !Self::targets_of(level).contains(&target) {
                    continue;
                }
                let r = self.ratio(level, target).median;
                let a = self.added_p99(level, target).median;
                out.push(json!({
                    "protocol": level.proto.key(),
                    "clients": level.clients,
                    "target": target.key(),
                    "ratio": finite(r),
                    "ratio_target": TARGET_RATIO,
                    "ratio_met": r >= TARGET_RATIO,
                    "added_p99_ms": finite(a),
                    "added_p99_target_ms": TARGET_P99_ADDED_MS,
                    "added_p99_met": a <= TARGET_P99_ADDED_MS,
                }));
            }
        }
        Value::Array(out)
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok  " } else { "MISS" }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

// ---------------------------------------------------------------------------------------------
// The disk.

/// What an fdatasync costs on the spool's filesystem right now.
struct SyncProbe {
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
}

/// Appends `bytes`-sized blocks to a file in the bench directory, each followed by an
/// `fdatasync` (as a commit of one request would), for at most 200 rounds or 1 s.
fn sync_probe(tmp: &Tmp, bytes: usize) -> SyncProbe {
    use std::io::Write;
    let dir = tmp.dir();
    let mut file = fs::File::create(dir.path().join("probe")).expect("probe file");
    let block = vec![0x5a_u8; bytes];
    let start = Instant::now();
    let mut lat = Vec::new();
    while lat.len() < 200 && start.elapsed() < Duration::from_secs(1) {
        file.write_all(&block).expect("probe write");
        let t = Instant::now();
        file.sync_data().expect("probe fdatasync");
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    SyncProbe {
        count: lat.len(),
        p50_ms: percentile(lat.to_vec(), 0.5),
        p99_ms: percentile(lat.to_vec(), 0.99),
    }
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// `tracespool` with none of the caller's OTel or tracespool settings.
fn tracespool() -> Command {
    let mut cmd = Command::new(SERVE_BIN);
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

/// A `tracespool serve` on a fresh spool, killed when dropped (also on panic); the spool goes
/// with it.
struct Serve {
    pid: u32,
    http_port: u16,
    grpc_port: u16,
    spool: PathBuf,
    child: Peer,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start(tmp: &Tmp, endpoint: Option<&str>) -> Serve {
        let dir = tmp.dir();
        let spool = dir.path().join("spool");
        let log = dir.path().join("serve.log");
        let http_port = free_port();
        let grpc_port = free_port();
        let mut cmd = tracespool();
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--grpc-listen")
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--spool-dir")
            .arg(&spool)
            .arg("--max-bytes")
            .arg(SERVE_MAX_BYTES);
        if let Some(e) = endpoint {
            cmd.arg("--endpoint").arg(e);
        }
        let child = Peer::spawn(&mut cmd, &log, &[http_port, grpc_port], "tracespool serve");
        Serve {
            pid: child.pid(),
            http_port,
            grpc_port,
            spool,
            child,
            _dir: dir,
        }
    }

    /// Spans still in the spool, as `tracespool status --json` tells.
    fn pending_spans(&self) -> Option<u64> {
        let out = tracespool()
            .arg("status")
            .arg("--json")
            .arg("--spool-dir")
            .arg(&self.spool)
            .arg("--max-bytes")
            .arg(SERVE_MAX_BYTES)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get("spans")?.as_u64()
    }

    /// SIGTERM, then waits (at most 10 s, then SIGKILL); the seconds it took to exit.
    fn stop(&mut self) -> Option<f64> {
        let mut child = self.child.0.take()?;
        let start = Instant::now();
        // Safety: plain kill(2) on our own child's pid, which we have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Some(start.elapsed().as_secs_f64()),
                Ok(None) if start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The fields after the command name: state is the first, utime the 12th, stime the 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // Safety: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// A `kB` field of `/proc/<pid>/status`, e.g. `VmHWM:`.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Small helpers.
