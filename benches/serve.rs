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
//! The other signals take the same load at 1 and 8 clients, to their own paths: metrics
//! (`/v1/metrics`, `ExportMetricsServiceRequest`s of 512 data points: histograms with attributes,
//! counters, up-down counters and gauges, a few instruments per scope) and logs (`/v1/logs`,
//! `ExportLogsServiceRequest`s of 512 log records with bodies, severities, attributes and trace
//! context). Their figures are data points/s and log records/s; what counts is, as for spans,
//! the requests answered 200.
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
//! `TRACESPOOL_BENCH_SERVE_SPANS` the items (spans, data points, log records) per request;
//! `TRACESPOOL_BENCH_SERVE_SIGNALS=metrics,logs` runs only those signals, and
//! `TRACESPOOL_BENCH_SERVE_LEVELS` / `…_TARGETS` only some levels or targets, and
//! `TRACESPOOL_BENCH_SERVE_UPSTREAM=URL` has `serve→rotel` forward there instead, and
//! `TRACESPOOL_BENCH_SERVE_BIN=PATH` measures another `tracespool` binary (a partial run writes
//! no report). Rotel is found at
//! `TRACESPOOL_ROTEL`, else `target/peers/…/rotel-agent` (installed by `.ci/peers`).

mod common;

use common::{
    Peer, Rotel, Tmp, free_port, load_snapshot, machine_json, percentile, print_banner, quick,
    rotel_bin, start_rotel, sync_all, target_dir, write_report,
};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::otlp::{self, Rng};
use http::header::CONTENT_TYPE;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serde_json::{Value, json};
use tonic::transport::Channel;

const SECS_ENV: &str = "TRACESPOOL_BENCH_SERVE_SECS";
const REPS_ENV: &str = "TRACESPOOL_BENCH_SERVE_REPS";
const GRPC_ENV: &str = "TRACESPOOL_BENCH_SERVE_GRPC";
/// Only these levels (`http:1,grpc:8` for traces, `metrics:http:8`, `logs:grpc:8` for the others)
/// / targets (`rotel,serve_forwarding,serve_spool_only`) / signals (`traces,metrics,logs`), for
/// profiling; such a run writes no report.
const LEVELS_ENV: &str = "TRACESPOOL_BENCH_SERVE_LEVELS";
const SIGNALS_ENV: &str = "TRACESPOOL_BENCH_SERVE_SIGNALS";
/// The traces endpoint `serve→rotel` forwards to instead of the second rotel (e.g. a sink that
/// answers 200 without decoding, to tell serve's own cost from its upstream's); such a run
/// writes no report, and its upstream CPU figures are those of the idle second rotel.
const UPSTREAM_ENV: &str = "TRACESPOOL_BENCH_SERVE_UPSTREAM";
const TARGETS_ENV: &str = "TRACESPOOL_BENCH_SERVE_TARGETS";
/// Temporary directories are named `serve-bench-<pid>-…` so that a later run can remove the
/// leftovers of one that was interrupted (and only those: its pid is gone).
const TMP_PREFIX: &str = "serve-bench-";
const SERVE_BIN: &str = env!("CARGO_BIN_EXE_tracespool");
/// Another `tracespool` binary to measure instead of the one cargo built (to compare two
/// versions in one sitting); such a run writes no report.
const BIN_ENV: &str = "TRACESPOOL_BENCH_SERVE_BIN";

/// The binary measured: `TRACESPOOL_BENCH_SERVE_BIN`, else the one cargo built for the bench.
fn serve_bin() -> String {
    std::env::var(BIN_ENV).unwrap_or_else(|_| SERVE_BIN.to_owned())
}

/// Items (spans, data points, log records) per request, of every signal.
const SPANS_ENV: &str = "TRACESPOOL_BENCH_SERVE_SPANS";
/// The OpenTelemetry SDKs' default `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (and the log record
/// processor's `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`): what an SDK under load sends at once.
const ITEMS_PER_REQUEST_DEFAULT: usize = 512;

/// Items per request: [`ITEMS_PER_REQUEST_DEFAULT`] unless [`SPANS_ENV`] says otherwise.
fn items_per_request() -> usize {
    static ITEMS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ITEMS.get_or_init(|| {
        std::env::var(SPANS_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(ITEMS_PER_REQUEST_DEFAULT)
    })
}

/// The OTLP signal a level sends: what its requests carry, where they go, what is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    fn key(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }

    /// What is counted, in words (`spans/s`).
    fn unit(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }

    /// What is counted, in JSON keys (`spans_per_s`); also `status --json`'s count of it.
    fn unit_key(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data_points",
            Signal::Logs => "log_records",
        }
    }

    /// One item, in JSON keys (`server_cpu_us_per_span`).
    fn item_key(self) -> &'static str {
        match self {
            Signal::Traces => "span",
            Signal::Metrics => "data_point",
            Signal::Logs => "log_record",
        }
    }

    fn parse(key: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.key() == key)
    }
}

/// Distinct request bodies the clients cycle through.
const BODIES: usize = 64;
const SERVE_MAX_BYTES: &str = "4GiB";

const TARGET_RATIO: f64 = bench_schema::serve::RATIO_VS_ROTEL.aim;
const TARGET_P99_ADDED_MS: f64 = bench_schema::serve::ADDED_P99_MS.aim;

/// How much work the run does.
struct Scale {
    quick: bool,
    window: Duration,
    warmup: Duration,
    reps: usize,
    clients: Vec<usize>,
    /// Clients of the gRPC points (traces); none: no gRPC.
    grpc_clients: Option<usize>,
    /// Clients of the metrics and logs points (OTLP/HTTP).
    signal_clients: Vec<usize>,
    signals: Vec<Signal>,
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
            signal_clients: vec![1, 8],
            signals: Signal::ALL.to_vec(),
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
            signal_clients: vec![8],
            signals: Signal::ALL.to_vec(),
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

/// One load configuration: signal, protocol and clients, against every target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Level {
    signal: Signal,
    proto: Proto,
    clients: usize,
}

impl Level {
    /// `http:8` is traces (as before there were other signals); `metrics:http:8` another signal.
    fn parse(key: &str) -> Option<Level> {
        let parts: Vec<&str> = key.split(':').collect();
        let (signal, proto, clients) = match parts[..] {
            [p, c] => (Signal::Traces, p, c),
            [s, p, c] => (Signal::parse(s)?, p, c),
            _ => return None,
        };
        let proto = match proto {
            "http" => Proto::Http,
            "grpc" => Proto::Grpc,
            _ => return None,
        };
        Some(Level {
            signal,
            proto,
            clients: clients.parse().ok()?,
        })
    }
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
    /// serve only: items still in the spool right after the load (`status --json`).
    backlog_items: Option<u64>,
    /// serve→rotel only: items forwarded per second over the point (accepted − backlog).
    forwarded_per_s: Option<f64>,
    /// serve only: seconds from SIGTERM to exit.
    stop_secs: Option<f64>,
}

impl Sample {
    fn cpu_us_per_item(&self, cpu: f64) -> f64 {
        if self.load.total_items == 0 {
            f64::NAN
        } else {
            cpu * 1e6 / self.load.total_items as f64
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
    println!("  serve: {}", serve_bin());
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
    let mut direct = start_rotel(&rotel_path, &tmp);
    let mut upstream = start_rotel(&rotel_path, &tmp);
    let upstream_url = std::env::var(UPSTREAM_ENV).unwrap_or_else(|_| upstream.endpoint());
    println!(
        "  rotel {}: direct target pid {} (HTTP {}, gRPC {}), serve's upstream pid {} (HTTP {})",
        direct.version(),
        direct.pid(),
        direct.http_port,
        direct.grpc_port,
        upstream.pid(),
        upstream.http_port
    );

    if let Ok(only) = std::env::var(SIGNALS_ENV) {
        let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
        scale.signals.retain(|s| wanted.contains(&s.key()));
    }
    // The levels first: only the signals they send are built.
    let mut levels: Vec<Level> = Vec::new();
    for &signal in &scale.signals {
        let clients = match signal {
            Signal::Traces => &scale.clients,
            _ => &scale.signal_clients,
        };
        levels.extend(clients.iter().map(|&clients| Level {
            signal,
            proto: Proto::Http,
            clients,
        }));
        if let (Signal::Traces, Some(clients)) = (signal, scale.grpc_clients) {
            levels.push(Level {
                signal,
                proto: Proto::Grpc,
                clients,
            });
        }
    }
    let mut partial = scale.signals != Signal::ALL
        || upstream_url != upstream.endpoint()
        || std::env::var_os(BIN_ENV).is_some();
    if upstream_url != upstream.endpoint() {
        println!("  serve→rotel forwards to {upstream_url} ({UPSTREAM_ENV})");
    }
    if let Ok(only) = std::env::var(LEVELS_ENV) {
        let wanted: Vec<Level> = only
            .split(',')
            .filter_map(|w| Level::parse(w.trim()))
            .collect();
        levels.retain(|l| wanted.contains(l));
        for w in wanted {
            if !levels.contains(&w) {
                levels.push(w);
            }
        }
        partial = true;
    }

    let mut payloads = Payloads::default();
    for level in &levels {
        let signal = level.signal;
        if payloads.get(signal).is_some() {
            continue;
        }
        let built = Arc::new(build_payloads(signal));
        let body_bytes = built.iter().map(|p| p.bytes.len()).sum::<usize>() / built.len();
        println!(
            "  load ({}): {} {}/request, {body_bytes} bytes/request on average, {} distinct bodies",
            signal.key(),
            items_per_request(),
            signal.unit(),
            built.len()
        );
        let codec = codec_cost(signal, &built);
        println!(
            "  in-process prost cost of one request: decode {:.1} µs, re-encode {:.1} µs ({:.2} / {:.2} µs per {})",
            codec.decode_us,
            codec.encode_us,
            codec.decode_us / items_per_request() as f64,
            codec.encode_us / items_per_request() as f64,
            signal.item_key().replace('_', " ")
        );
        payloads.0.push(SignalPayloads {
            signal,
            bodies: built,
            body_bytes,
            codec,
        });
    }
    // What the fdatasync probe appends: a request of the first signal measured.
    let body_bytes = payloads.0.first().map_or(0, |p| p.body_bytes);
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
    for p in &payloads.0 {
        let warm = Level {
            signal: p.signal,
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
                (&upstream, &upstream_url),
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
                    (&upstream, &upstream_url),
                    scale.warmup,
                    scale.window,
                );
                println!(
                    "  rep {} {:<8}{:>4} {:>2} clients {:<17} {:>9.0} {}/s  p50 {:>6.2} ms  p99 {:>6.2} ms{}{}",
                    rep + 1,
                    level.signal.key(),
                    level.proto.key(),
                    level.clients,
                    target.label(),
                    s.load.items_per_s,
                    level.signal.unit(),
                    s.load.p50_ms,
                    s.load.p99_ms,
                    if s.load.errors > 0 {
                        format!("  {} ERRORS", s.load.errors)
                    } else {
                        String::new()
                    },
                    match (s.hwm_kib, s.backlog_items) {
                        (Some(h), Some(b)) => format!(
                            "  HWM {:.1} MiB, backlog {b} {}",
                            h as f64 / 1024.0,
                            level.signal.unit()
                        ),
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
        proc_status_kib(direct.pid(), "VmHWM:"),
        proc_status_kib(upstream.pid(), "VmHWM:"),
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
    results.print_disk(&scale);
    for p in &payloads.0 {
        results.print(&scale, p);
    }
    println!(
        "\nrotel VmHWM: direct {}, upstream {}",
        mib(rotel_hwm.0),
        mib(rotel_hwm.1)
    );
    println!("load at end: {load_end}; total {total_secs:.1} s");
    if alive != (true, true) {
        println!("WARNING: a rotel had exited before the end of the run");
    }

    // Traces keep the keys they had before the other signals were measured; the others go
    // beside them, under `signals`, each with the same layout in its own unit.
    let traces = payloads.get(Signal::Traces);
    let mut signals = serde_json::Map::new();
    for p in payloads.0.iter().filter(|p| p.signal != Signal::Traces) {
        let unit = p.signal.unit_key();
        signals.insert(
            p.signal.key().to_owned(),
            json!({
                "unit": p.signal.unit(),
                "path": p.signal.http_path(),
                format!("{unit}_per_request"): items_per_request(),
                "bytes_per_request": p.body_bytes,
                "prost_decode_us_per_request": finite(p.codec.decode_us),
                "prost_encode_us_per_request": finite(p.codec.encode_us),
                "results": results.to_json(p.signal),
                "targets": results.targets_json(p.signal),
            }),
        );
    }
    let report = json!({
        "quick": scale.quick,
        "machine": machine_json(json!({
            "bench_dir": tmp_base_display(&target),
            "load_at_start": load_start,
            "load_at_end": load_end,
        })),
        "setup": {
            "spans_per_request": items_per_request(),
            "bytes_per_request": traces.map(|p| p.body_bytes),
            "window_secs": scale.window.as_secs_f64(),
            "warmup_secs": scale.warmup.as_secs_f64(),
            "repetitions": scale.reps,
            "serve": "fresh `tracespool serve` per point, sync Always, --max-bytes 4GiB; forwarding: --endpoint = a second rotel (blackhole); spool-only: no endpoint",
            "rotel": "rotel start --exporter blackhole (no debug log)",
            "source": source,
            "prost_decode_us_per_request": traces.map(|p| finite(p.codec.decode_us)),
            "prost_encode_us_per_request": traces.map(|p| finite(p.codec.encode_us)),
        },
        "fdatasync_probe": results.probes.iter().map(|p| json!({
            "appends": p.count,
            "p50_ms": finite(p.p50_ms),
            "p99_ms": finite(p.p99_ms),
        })).collect::<Vec<_>>(),
        "results": results.to_json(Signal::Traces),
        "rotel_vm_hwm_kib": { "direct": rotel_hwm.0, "upstream": rotel_hwm.1 },
        "targets": results.targets_json(Signal::Traces),
        "signals": signals,
        "total_secs": total_secs,
    });
    if scale.quick {
        println!("\n(quick run: figures are not meaningful; no report written)");
    } else if partial {
        println!("\n(only some signals, levels or targets ran: no report written)");
    } else {
        let path = write_report::<bench_schema::serve::Serve>(&report);
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
    payloads: &Payloads,
    level: Level,
    target: Target,
    rep: usize,
    direct: &Rotel,
    (upstream, upstream_url): (&Rotel, &str),
    warmup: Duration,
    window: Duration,
) -> Sample {
    sync_all();
    let serve = match target {
        Target::Rotel => None,
        Target::ServeForwarding => Some(Serve::start(tmp, Some(upstream_url))),
        Target::ServeSpoolOnly => Some(Serve::start(tmp, None)),
    };
    let (server_pid, port) = match (&serve, level.proto) {
        (Some(s), Proto::Http) => (s.pid, s.http_port),
        (Some(s), Proto::Grpc) => (s.pid, s.grpc_port),
        (None, Proto::Http) => (direct.pid(), direct.http_port),
        (None, Proto::Grpc) => (direct.pid(), direct.grpc_port),
    };
    let cpu0 = (
        cpu_secs(server_pid),
        cpu_secs(upstream.pid()),
        cpu_secs(std::process::id()),
    );
    let load_start = Instant::now();
    let bodies = &payloads
        .get(level.signal)
        .expect("the bodies of every signal measured")
        .bodies;
    let load = run_load(rt, level, port, bodies, warmup, window);
    let cpu1 = (
        cpu_secs(server_pid),
        cpu_secs(upstream.pid()),
        cpu_secs(std::process::id()),
    );
    let (mut hwm_kib, mut rss_kib, mut backlog_items, mut stop_secs) = (None, None, None, None);
    let mut forwarded_per_s = None;
    if let Some(mut s) = serve {
        hwm_kib = proc_status_kib(s.pid, "VmHWM:");
        rss_kib = proc_status_kib(s.pid, "VmRSS:");
        if target == Target::ServeForwarding {
            backlog_items = s.pending_items(level.signal);
            let secs = load_start.elapsed().as_secs_f64();
            forwarded_per_s =
                backlog_items.map(|b| load.total_items.saturating_sub(b) as f64 / secs);
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
        backlog_items,
        forwarded_per_s,
        stop_secs,
    }
}

// ---------------------------------------------------------------------------------------------
// The load.

/// One request body, and the message it encodes (the gRPC clients send the message).
struct Payload {
    bytes: Bytes,
    message: Export,
}

/// An export request of any signal.
#[derive(Clone)]
enum Export {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Export {
    fn decode(signal: Signal, bytes: &[u8]) -> Export {
        match signal {
            Signal::Traces => Export::Traces(Message::decode(bytes).expect("decode")),
            Signal::Metrics => Export::Metrics(Message::decode(bytes).expect("decode")),
            Signal::Logs => Export::Logs(Message::decode(bytes).expect("decode")),
        }
    }

    fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            Export::Traces(m) => m.encode_to_vec(),
            Export::Metrics(m) => m.encode_to_vec(),
            Export::Logs(m) => m.encode_to_vec(),
        }
    }
}

/// The bodies of one signal, and what they cost to decode and encode.
struct SignalPayloads {
    signal: Signal,
    bodies: Arc<Vec<Payload>>,
    /// Mean bytes per request.
    body_bytes: usize,
    codec: CodecCost,
}

/// The bodies of every signal measured, in the order first measured.
#[derive(Default)]
struct Payloads(Vec<SignalPayloads>);

impl Payloads {
    fn get(&self, signal: Signal) -> Option<&SignalPayloads> {
        self.0.iter().find(|p| p.signal == signal)
    }
}

/// What one point's clients saw.
#[derive(Debug, Clone, Default)]
struct Load {
    /// 200s received within the window, and their items per second.
    ok_in_window: u64,
    items_per_s: f64,
    requests_per_s: f64,
    /// Every failed request, warm-up included.
    errors: u64,
    /// Items accepted over the whole point, warm-up included.
    total_items: u64,
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
                let signal = level.signal;
                match level.proto {
                    Proto::Http => tokio::spawn(http_client(signal, port, payloads, offset, clock)),
                    Proto::Grpc => tokio::spawn(grpc_client(signal, port, payloads, offset, clock)),
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
        load.total_items += t.ok_total * items_per_request() as u64;
        load.latencies_ms.extend(t.latencies_ms);
        if load.first_error.is_none() {
            load.first_error = t.first_error;
        }
    }
    let secs = window.as_secs_f64();
    load.requests_per_s = load.ok_in_window as f64 / secs;
    load.items_per_s = load.requests_per_s * items_per_request() as f64;
    load.p50_ms = percentile(load.latencies_ms.to_vec(), 0.50);
    load.p99_ms = percentile(load.latencies_ms.to_vec(), 0.99);
    if let Some(e) = &load.first_error {
        println!("    {} failed requests; the first: {e}", load.errors);
    }
    load
}

async fn http_client(
    signal: Signal,
    port: u16,
    payloads: Arc<Vec<Payload>>,
    offset: usize,
    clock: Clock,
) -> ClientTally {
    let uri: Uri = format!("http://127.0.0.1:{port}{}", signal.http_path())
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

/// A generated tonic client of one signal's service, on its own channel.
enum GrpcClient {
    Traces(TraceServiceClient<Channel>),
    Metrics(MetricsServiceClient<Channel>),
    Logs(LogsServiceClient<Channel>),
}

impl GrpcClient {
    async fn connect(signal: Signal, port: u16) -> Result<GrpcClient, tonic::transport::Error> {
        let url = format!("http://127.0.0.1:{port}");
        Ok(match signal {
            Signal::Traces => GrpcClient::Traces(TraceServiceClient::connect(url).await?),
            Signal::Metrics => GrpcClient::Metrics(MetricsServiceClient::connect(url).await?),
            Signal::Logs => GrpcClient::Logs(LogsServiceClient::connect(url).await?),
        })
    }

    /// One unary `Export` call (the message is encoded by the call, as an SDK does).
    async fn export(&mut self, message: &Export) -> Result<(), tonic::Status> {
        match (self, message) {
            (GrpcClient::Traces(c), Export::Traces(m)) => c.export(m.clone()).await.map(drop),
            (GrpcClient::Metrics(c), Export::Metrics(m)) => c.export(m.clone()).await.map(drop),
            (GrpcClient::Logs(c), Export::Logs(m)) => c.export(m.clone()).await.map(drop),
            _ => Err(tonic::Status::internal("a message of another signal")),
        }
    }
}

async fn grpc_client(
    signal: Signal,
    port: u16,
    payloads: Arc<Vec<Payload>>,
    offset: usize,
    clock: Clock,
) -> ClientTally {
    let mut tally = ClientTally::default();
    let mut client = match GrpcClient::connect(signal, port).await {
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
        let message = &payloads[i % payloads.len()].message;
        i += 1;
        let result = client
            .export(message)
            .await
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
// Request bodies.

/// [`BODIES`] distinct requests of `signal`, each of [`items_per_request`] items, one second of a
/// service's telemetry apart.
fn build_payloads(signal: Signal) -> Vec<Payload> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let base_ns = 1_750_000_000_000_000_000u64;
    let n = items_per_request();
    (0..BODIES)
        .map(|b| {
            let at = base_ns + b as u64 * 1_000_000_000;
            let message = match signal {
                Signal::Traces => Export::Traces(otlp::traces(&mut rng, b, n, at)),
                Signal::Metrics => Export::Metrics(otlp::metrics(&mut rng, b, n, at)),
                Signal::Logs => Export::Logs(otlp::logs(&mut rng, b, n, at)),
            };
            Payload {
                bytes: Bytes::from(message.encode_to_vec()),
                message,
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

fn codec_cost(signal: Signal, payloads: &[Payload]) -> CodecCost {
    let (mut dec, mut enc) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let decoded: Vec<Export> = payloads
            .iter()
            .map(|p| Export::decode(signal, &p.bytes[..]))
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
            s.load.items_per_s / r.load.items_per_s
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

    fn levels_of(&self, signal: Signal) -> Vec<Level> {
        self.levels
            .iter()
            .copied()
            .filter(|l| l.signal == signal)
            .collect()
    }

    fn print_disk(&self, scale: &Scale) {
        println!(
            "{} repetitions × {:.1} s per point; medians [min–max across repetitions]",
            scale.reps,
            scale.window.as_secs_f64()
        );
        let p50 = Stat::of(&self.probes.iter().map(|p| p.p50_ms).collect::<Vec<_>>());
        let p99 = Stat::of(&self.probes.iter().map(|p| p.p99_ms).collect::<Vec<_>>());
        println!(
            "disk: fdatasync after a {} B append, probed once per repetition: p50 {:.2} ms [{:.2}–{:.2}], p99 {:.2} ms [{:.2}–{:.2}]",
            self.body_bytes, p50.median, p50.min, p50.max, p99.median, p99.min, p99.max
        );
    }

    /// The tables of one signal.
    fn print(&self, scale: &Scale, p: &SignalPayloads) {
        let signal = p.signal;
        let unit = signal.unit();
        println!(
            "\n---- {}: {} {unit}/request ({} bytes), {} repetitions × {:.1} s per point; medians [min–max across repetitions]",
            signal.key(),
            items_per_request(),
            p.body_bytes,
            scale.reps,
            scale.window.as_secs_f64()
        );
        println!(
            "\n1. Throughput ({unit}/s accepted), ratio = serve / rotel in the same repetition"
        );
        println!(
            "{:<6} {:>3} {:<17} {:>26} {:>22}",
            "proto",
            "C",
            "target",
            format!("{unit}/s"),
            "ratio vs rotel"
        );
        for level in self.levels_of(signal) {
            for target in Self::targets_of(level) {
                let t = self.stat(level, target, |s| s.load.items_per_s);
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
        for level in self.levels_of(signal) {
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

        let one = signal.item_key().replace('_', " ");
        println!(
            "\n3. Resources: peak RSS of serve (VmHWM at the end of the load, max over repetitions), CPU per {one} (server, median)"
        );
        let short = match signal {
            Signal::Traces => "span",
            Signal::Metrics => "point",
            Signal::Logs => "record",
        };
        println!(
            "{:<6} {:>3} {:<17} {:>10} {:>16} {:>16} {:>16} {:>14} {:>14} {:>9}",
            "proto",
            "C",
            "target",
            "VmHWM MiB",
            format!("server µs/{short}"),
            format!("upstr. µs/{short}"),
            format!("client µs/{short}"),
            format!("backlog {short}s"),
            format!("fwd {short}s/s"),
            "stop s"
        );
        for level in self.levels_of(signal) {
            for target in Self::targets_of(level) {
                let samples = self.of(level, target);
                let hwm = samples.iter().filter_map(|s| s.hwm_kib).max();
                let server = self.stat(level, target, |s| s.cpu_us_per_item(s.server_cpu));
                let up = self.stat(level, target, |s| s.cpu_us_per_item(s.upstream_cpu));
                let client = self.stat(level, target, |s| s.cpu_us_per_item(s.client_cpu));
                let backlog = samples.iter().filter_map(|s| s.backlog_items).max();
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
                    "{:<6} {:>3} {:<17} {:>10} {:>16.2} {:>16} {:>16.2} {:>14} {:>14} {:>9}",
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
        let errors: u64 = self
            .samples
            .iter()
            .filter(|s| s.level.signal == signal)
            .map(|s| s.load.errors)
            .sum();
        if errors > 0 {
            println!("\nWARNING: {errors} failed requests in all (see above)");
        }

        println!("\nTargets, {} (medians across repetitions):", signal.key());
        for level in self.levels_of(signal) {
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

    /// One entry per level and target of `signal`; keys name its unit (`spans_per_s`,
    /// `data_points_per_s`, `log_records_per_s`).
    fn to_json(&self, signal: Signal) -> Value {
        let u = signal.unit_key();
        let one = signal.item_key();
        let mut out = Vec::new();
        for level in self.levels_of(signal) {
            for target in Self::targets_of(level) {
                let samples = self.of(level, target);
                let mut entry = json!({
                    "signal": signal.key(),
                    "protocol": level.proto.label(),
                    "clients": level.clients,
                    "target": target.key(),
                    format!("{u}_per_s"): self.stat(level, target, |s| s.load.items_per_s).json(),
                    "requests_per_s": self.stat(level, target, |s| s.load.requests_per_s).json(),
                    "p50_ms": self.stat(level, target, |s| s.load.p50_ms).json(),
                    "p99_ms": self.stat(level, target, |s| s.load.p99_ms).json(),
                    "pooled_p50_ms": finite(self.pooled(level, target, 0.50)),
                    "pooled_p99_ms": finite(self.pooled(level, target, 0.99)),
                    format!("server_cpu_us_per_{one}"): self.stat(level, target, |s| s.cpu_us_per_item(s.server_cpu)).json(),
                    format!("client_cpu_us_per_{one}"): self.stat(level, target, |s| s.cpu_us_per_item(s.client_cpu)).json(),
                    "errors": samples.iter().map(|s| s.load.errors).sum::<u64>(),
                    "repetitions": samples.iter().map(|s| json!({
                        "rep": s.rep,
                        format!("{u}_per_s"): finite(s.load.items_per_s),
                        "p50_ms": finite(s.load.p50_ms),
                        "p99_ms": finite(s.load.p99_ms),
                        "requests_timed": s.load.latencies_ms.len(),
                        "errors": s.load.errors,
                        "vm_hwm_kib": s.hwm_kib,
                        "vm_rss_kib": s.rss_kib,
                        format!("backlog_{u}"): s.backlog_items,
                        format!("forwarded_{u}_per_s"): s.forwarded_per_s.map(finite),
                        format!("accepted_{u}_total"): s.load.total_items,
                        "stop_secs": s.stop_secs.map(finite),
                    })).collect::<Vec<_>>(),
                });
                if target.is_serve() {
                    let extra = json!({
                        "ratio_vs_rotel": self.ratio(level, target).json(),
                        "added_p50_ms": self.added_p50(level, target).json(),
                        "added_p99_ms": self.added_p99(level, target).json(),
                        "vm_hwm_kib_max": samples.iter().filter_map(|s| s.hwm_kib).max(),
                        format!("upstream_cpu_us_per_{one}"): self.stat(level, target, |s| s.cpu_us_per_item(s.upstream_cpu)).json(),
                        format!("forwarded_{u}_per_s"): Stat::of(&samples.iter().filter_map(|s| s.forwarded_per_s).collect::<Vec<_>>()).json(),
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

    fn targets_json(&self, signal: Signal) -> Value {
        let mut out = Vec::new();
        for level in self.levels_of(signal) {
            for target in [Target::ServeForwarding, Target::ServeSpoolOnly] {
                if !Self::targets_of(level).contains(&target) {
                    continue;
                }
                let r = self.ratio(level, target).median;
                let a = self.added_p99(level, target).median;
                out.push(json!({
                    "signal": signal.key(),
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
    let mut cmd = Command::new(serve_bin());
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

    /// Items of `signal` still in the spool, as `tracespool status --json` tells (`spans`,
    /// `data_points`, `log_records`).
    fn pending_items(&self, signal: Signal) -> Option<u64> {
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
        v.get(signal.unit_key())?.as_u64()
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
