//! Delivery benchmarks: flush throughput to a real collector (rotel) against a plain replay of the
//! same bytes, the cost of export-to-spool per batch, and one export by a fresh process.
//!
//! `cargo bench --bench delivery` prints a table and writes the same figures to
//! `target/bench-report/delivery.json`. Spools are made in `target/bench-tmp` (the filesystem that
//! holds `target/`) and deleted at the end.
//!
//! 1. Flush throughput: N encoded batches are appended to a fresh spool (under `Never`, then
//!    synced once: the policy belongs to the handle, the files are the same), then
//!    `Delivery::flush(true)` sends them to rotel (`--exporter blackhole`, no debug log) over
//!    loopback. The baseline replays the same N bodies, one request at a time over one keep-alive
//!    connection, with a minimal hyper-util client. The machine is shared and noisy, so only
//!    figures taken side by side are compared: every run (three flushes under
//!    `SyncPolicy::Always`, the default and the one with a target, one under `Never`, a
//!    library-only option, and the replay followed by an `fdatasync` per answer) sits between two
//!    replays, whose mean is its baseline; the order rotates between repetitions. The spool side
//!    alone (read + acknowledge every record, no network) is timed too, and so is the CPU time of
//!    the client thread, which runs the whole client side and is far less sensitive to the
//!    machine's load than wall time.
//!
//!    The same again over OTLP/gRPC (on by default; `TRACESPOOL_BENCH_DELIVERY_GRPC=0` skips it):
//!    the flushes use `Protocol::Grpc` to rotel's gRPC port, and the baseline is a minimal tonic
//!    client (one channel, one unary `TraceService/Export` call at a time, the stored bytes sent
//!    as they are through a raw-bytes codec). Each repetition runs both chains, HTTP and gRPC,
//!    one after the other (which goes first alternates); every gRPC run sits between two gRPC
//!    replays, as every HTTP run between two HTTP replays.
//! 2. Export-to-spool per batch (1, 10, 100 spans): encode alone, append alone, encode + append,
//!    `Delivery::export` with no endpoint (also loads the delivery state and counts the spool), and
//!    encode + export; interleaved sample by sample, medians.
//! 3. One `Delivery::export` of a 1-span batch with rotel up and an empty spool, by a new runtime,
//!    spool handle and `Delivery` each time (as a fresh process would); the spool dir is reused.
//!
//! Without `--bench` (e.g. `cargo test --all-targets`), or with `TRACESPOOL_BENCH_QUICK=1`, every
//! size is scaled down: a smoke run whose figures mean nothing, and no report is written. Rotel is
//! found at `TRACESPOOL_ROTEL`, else `target/peers/…/rotel-agent` (installed by `.ci/peers`); a
//! quick run without it skips the network sections. `TRACESPOOL_BENCH_SECTIONS=1,3` runs only
//! the sections named (for profiling), and `TRACESPOOL_BENCH_DELIVERY_SPOOL_COMPRESSION=none`
//! spools batches as given instead of compressed (to compare the flush of either); such runs write
//! no report.

mod common;

use common::typical::{encoder, spans};
use common::{
    Rotel, Tmp, load_snapshot, machine_json, max, median, min, percentile, print_banner, quick,
    rotel_bin, start_rotel, sync_all, target_dir, write_report,
};

use std::fs;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::uri::PathAndQuery;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tonic::transport::Endpoint;
use tracespool::delivery::{Delivery, DeliverySettings, Mode};
use tracespool::encode::EncodedBatch;
use tracespool::spool::{Encoding, Spool, SpoolOptions, SyncPolicy};
use tracespool::transport::Protocol;
use tracespool::transport::grpc::RawCodec;

/// Comma-separated sections to run (`1,3`); all by default. A partial run writes no report.
const SECTIONS_ENV: &str = "TRACESPOOL_BENCH_SECTIONS";
/// `0`: section 1 measures OTLP/HTTP only, not OTLP/gRPC.
const GRPC_ENV: &str = "TRACESPOOL_BENCH_DELIVERY_GRPC";
/// `none`: the spools store batches as given instead of compressed (the default), to compare
/// the flush of either; such a run writes no report.
const COMPRESSION_ENV: &str = "TRACESPOOL_BENCH_DELIVERY_SPOOL_COMPRESSION";
/// Temporary directories are named `delivery-bench-<pid>-…` so that a later run can remove the
/// leftovers of one that was interrupted (and only those: its pid is gone).
const TMP_PREFIX: &str = "delivery-bench-";

const TARGET_FLUSH_RATIO: f64 = bench_schema::delivery::FLUSH_RATIO.aim;
const FLUSH_BUDGET: Duration = Duration::from_secs(120);

/// How much work each section does.
struct Scale {
    quick: bool,
    /// Section 1: batches, spans per batch, repetitions.
    flush_batches: usize,
    flush_spans: usize,
    flush_reps: usize,
    /// No new repetition starts past this (once 3 are done): a slow disk makes Always slow.
    flush_deadline: Duration,
    /// Section 1 over OTLP/gRPC too.
    flush_grpc: bool,
    /// Section 2: samples per case (each sample = one of every measure), and a time cap per case.
    spool_samples_never: usize,
    spool_samples_always: usize,
    spool_case_cap: Duration,
    /// Section 3: runs (after `fresh_warmup` unrecorded ones).
    fresh_runs: usize,
    fresh_warmup: usize,
}

impl Scale {
    fn full() -> Scale {
        Scale {
            quick: false,
            flush_batches: 2000,
            flush_spans: 10,
            flush_reps: 7,
            flush_deadline: Duration::from_secs(150),
            flush_grpc: true,
            spool_samples_never: 2000,
            spool_samples_always: 400,
            spool_case_cap: Duration::from_secs(4),
            fresh_runs: 200,
            fresh_warmup: 5,
        }
    }

    fn quick() -> Scale {
        Scale {
            quick: true,
            flush_batches: 40,
            flush_spans: 10,
            flush_reps: 1,
            flush_deadline: Duration::from_secs(10),
            flush_grpc: true,
            spool_samples_never: 20,
            spool_samples_always: 5,
            spool_case_cap: Duration::from_secs(1),
            fresh_runs: 5,
            fresh_warmup: 1,
        }
    }
}

fn main() {
    let quick = quick();
    let mut scale = if quick { Scale::quick() } else { Scale::full() };
    if std::env::var(GRPC_ENV).is_ok_and(|v| v == "0") {
        scale.flush_grpc = false;
    }
    let sections: Vec<u32> = match std::env::var(SECTIONS_ENV) {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![1, 2, 3],
    };
    let partial = sections != [1, 2, 3] || std::env::var_os(COMPRESSION_ENV).is_some();
    let started = Instant::now();

    let target = target_dir();
    let tmp = Tmp::new(&target.join("bench-tmp"), TMP_PREFIX);
    let bench_dir = tmp.base.display().to_string();
    let load_start = load_snapshot();
    print_banner("delivery", scale.quick);
    println!("  spools in {}", tmp.base.display());
    println!("  load at start: {load_start}");

    let rotel_path = rotel_bin();
    let mut rotel = match (&rotel_path, scale.quick) {
        (Ok(path), _) => Some(start_rotel(path, &tmp)),
        (Err(e), true) => {
            println!("  {e}: skipping the network sections (quick run)");
            None
        }
        (Err(e), false) => panic!("{e}"),
    };
    if let Some(r) = &rotel {
        println!(
            "  rotel: {} (pid {}), --exporter blackhole, no debug log, OTLP/HTTP on {}, OTLP/gRPC \
             on {}",
            r.version(),
            r.pid(),
            r.endpoint(),
            Wire::Grpc.endpoint(r)
        );
    }

    let flush = rotel
        .as_ref()
        .filter(|_| sections.contains(&1))
        .map(|r| bench_flush(&tmp, &scale, r));
    let to_spool = if sections.contains(&2) {
        bench_export_to_spool(&tmp, &scale)
    } else {
        Vec::new()
    };
    let fresh = rotel
        .as_ref()
        .filter(|_| sections.contains(&3))
        .map(|r| bench_fresh_export(&tmp, &scale, r));

    let rotel_alive = rotel.as_mut().map(Rotel::alive);
    drop(rotel);
    tmp.finish();
    let load_end = load_snapshot();
    let total_secs = started.elapsed().as_secs_f64();

    println!("\n================ summary ================");
    if let Some(f) = &flush {
        f.print();
    }
    print_to_spool(&to_spool);
    if let Some(f) = &fresh {
        f.print();
    }
    println!("\nload at start: {load_start}\nload at end:   {load_end}\ntotal {total_secs:.1} s");
    if rotel_alive == Some(false) {
        println!("WARNING: rotel had exited before the end of the run");
    }

    let report = json!({
        "quick": scale.quick,
        "machine": machine_json(json!({
            "bench_dir": bench_dir,
            "load_at_start": load_start,
            "load_at_end": load_end,
        })),
        "flush_throughput": flush.as_ref().map(FlushResults::to_json),
        "export_to_spool": to_spool_json(&to_spool),
        "fresh_process_export": fresh.as_ref().map(FreshResults::to_json),
        "total_secs": total_secs,
    });
    if scale.quick {
        println!("\n(quick run: figures are not meaningful; no report written)");
    } else if partial {
        println!("\n(only sections {sections:?} ran: no report written)");
    } else {
        let path = write_report::<bench_schema::delivery::Delivery>(&report);
        println!("report: {}", path.display());
    }
}

// ---------------------------------------------------------------------------------------------
// Spans.

// ---------------------------------------------------------------------------------------------
// Section 1: flush throughput against a plain replay.

/// The wire a flush and the replays around it use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Http,
    Grpc,
}

impl Wire {
    fn key(self) -> &'static str {
        match self {
            Wire::Http => "http",
            Wire::Grpc => "grpc",
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            Wire::Http => Protocol::HttpProtobuf,
            Wire::Grpc => Protocol::Grpc,
        }
    }

    /// Rotel's endpoint for this wire: the traces URL over HTTP, the base URL over gRPC.
    fn endpoint(self, rotel: &Rotel) -> String {
        match self {
            Wire::Http => rotel.endpoint(),
            Wire::Grpc => format!("http://127.0.0.1:{}", rotel.grpc_port),
        }
    }
}

/// What section 1 measures against the replays around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    FlushAlways,
    FlushNever,
    ReplaySync,
}

impl Measure {
    fn label(self) -> &'static str {
        match self {
            Measure::FlushAlways => "flush(Always)",
            Measure::FlushNever => "flush(Never)",
            Measure::ReplaySync => "replay+fdatasync",
        }
    }

    /// As the order of a repetition shows it: the gRPC chain's steps say so.
    fn step(self, wire: Wire) -> &'static str {
        match (wire, self) {
            (Wire::Http, m) => m.label(),
            (Wire::Grpc, Measure::FlushAlways) => "grpc flush(Always)",
            (Wire::Grpc, Measure::FlushNever) => "grpc flush(Never)",
            (Wire::Grpc, Measure::ReplaySync) => "grpc replay+fdatasync",
        }
    }
}

fn replay_step(wire: Wire) -> &'static str {
    match wire {
        Wire::Http => "replay",
        Wire::Grpc => "grpc replay",
    }
}

/// One timing, with the mean of the two replays just before and after it. `cpu`: CPU time of
/// this thread (where the current-thread runtime runs everything on the client side).
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    secs: f64,
    around: f64,
    cpu: f64,
    around_cpu: f64,
}

impl Sample {
    /// Throughput over the replay's.
    fn ratio(&self) -> f64 {
        self.around / self.secs
    }
}

/// One wire's runs in a repetition, each between two replays over the same wire, in seconds.
#[derive(Debug, Clone, Default)]
struct Chain {
    replays: Vec<f64>,
    replays_cpu: Vec<f64>,
    always: Vec<Sample>,
    never: Sample,
    sync: Sample,
}

impl Chain {
    /// The repetition's figures, for the progress lines.
    fn progress(&self) -> String {
        let always =
            |f: fn(&Sample) -> String| self.always.iter().map(f).collect::<Vec<_>>().join("/");
        format!(
            "replay median {:.3} s (of {}); flush Always {} (ratios {}), Never {:.3} s \
             (ratio {:.2}); replay+fdatasync {:.3} s ({:.2})",
            self.replay(),
            self.replays.len(),
            always(|s| format!("{:.3}", s.secs)),
            always(|s| format!("{:.2}", s.ratio())),
            self.never.secs,
            self.never.ratio(),
            self.sync.secs,
            self.sync.ratio(),
        )
    }

    fn replay(&self) -> f64 {
        median(self.replays.clone())
    }

    fn ratio_always(&self) -> f64 {
        median(self.always.iter().map(Sample::ratio).collect())
    }

    fn samples(&self, m: Measure) -> Vec<Sample> {
        match m {
            Measure::FlushAlways => self.always.clone(),
            Measure::FlushNever => vec![self.never],
            Measure::ReplaySync => vec![self.sync],
        }
    }
}

/// One repetition, in seconds.
#[derive(Debug, Clone, Default)]
struct Rep {
    order: Vec<&'static str>,
    http: Chain,
    grpc: Option<Chain>,
    local_always: f64,
    local_never: f64,
    local_always_cpu: f64,
    local_never_cpu: f64,
    /// A flush of a fresh spool holding one batch (Never, OTLP/HTTP).
    one_batch: f64,
}

impl Rep {
    fn chain(&self, wire: Wire) -> Option<&Chain> {
        match wire {
            Wire::Http => Some(&self.http),
            Wire::Grpc => self.grpc.as_ref(),
        }
    }
}

struct FlushResults {
    batches: usize,
    spans_per_batch: usize,
    bytes_per_batch: f64,
    warmup_replay: f64,
    warmup_replay_grpc: Option<f64>,
    reps: Vec<Rep>,
}

/// Each of these runs between two replays; the flush every command runs (Always), the one with
/// a target, thrice.
const MIDDLE: [Measure; 5] = [
    Measure::FlushAlways,
    Measure::FlushNever,
    Measure::FlushAlways,
    Measure::ReplaySync,
    Measure::FlushAlways,
];

fn bench_flush(tmp: &Tmp, scale: &Scale, rotel: &Rotel) -> FlushResults {
    let n = scale.flush_batches;
    let started = Instant::now();
    let wires: &[Wire] = if scale.flush_grpc {
        &[Wire::Http, Wire::Grpc]
    } else {
        &[Wire::Http]
    };
    println!(
        "\n[1] flush throughput: {n} batches x {} spans, {} repetitions, over {}",
        scale.flush_spans,
        scale.flush_reps,
        wires
            .iter()
            .map(|w| w.key())
            .collect::<Vec<_>>()
            .join(" and ")
    );
    let enc = encoder();
    let batches: Vec<EncodedBatch> = (0..n as u64)
        .map(|b| enc.encode(spans(b, scale.flush_spans)))
        .collect();
    let bodies: Vec<Bytes> = batches.iter().map(|b| b.bytes.clone()).collect();
    let bytes_per_batch = batches.iter().map(|b| b.bytes.len()).sum::<usize>() as f64 / n as f64;

    // Warm rotel (and the page cache of this binary) before anything is measured.
    let mut warmups = Vec::new();
    for &wire in wires {
        let secs = replay(wire, rotel, &bodies, None).0;
        println!(
            "  warm-up {}: {:.3} s ({:.0} batches/s); {bytes_per_batch:.0} B per batch",
            replay_step(wire),
            secs,
            n as f64 / secs
        );
        warmups.push(secs);
    }

    let mut reps = Vec::new();
    for rep in 0..scale.flush_reps {
        // Fill a fresh spool for each measure that drains one, then settle the disk. The policy
        // belongs to the handle, not to the files: filling under Never and syncing once leaves
        // the same files as appending under Always, without thousands of fdatasyncs.
        let fill = |batches: &[EncodedBatch]| {
            let dir = tmp.dir();
            let spool = Spool::open(dir.path(), opts(SyncPolicy::Never)).expect("open spool");
            for b in batches {
                spool.append(&b.bytes, b.items).expect("append");
            }
            drop(spool);
            dir
        };
        let mut filled: Vec<ChainSpools> = wires
            .iter()
            .map(|_| ChainSpools {
                always: (0..3).map(|_| fill(&batches)).collect(),
                never: fill(&batches),
            })
            .collect();
        let dir_la = fill(&batches);
        let dir_ln = fill(&batches);
        let dir_one = fill(&batches[..1]);
        sync_all();

        let order: Vec<Measure> = MIDDLE
            .iter()
            .cycle()
            .skip(rep % MIDDLE.len())
            .take(MIDDLE.len())
            .copied()
            .collect();
        let mut r = Rep::default();
        // Which wire goes first alternates between repetitions.
        let mut chains: Vec<(Wire, ChainSpools)> =
            wires.iter().copied().zip(filled.drain(..)).collect();
        if rep % 2 == 1 {
            chains.reverse();
        }
        for (wire, spools) in chains {
            let chain = run_chain(tmp, rotel, wire, &order, spools, &bodies, n, &mut r.order);
            match wire {
                Wire::Http => r.http = chain,
                Wire::Grpc => r.grpc = Some(chain),
            }
        }
        // The spool side alone, no network: compared with nothing, so not between replays.
        if rep % 2 == 0 {
            (r.local_always, r.local_always_cpu) =
                drain_local(dir_la.path(), SyncPolicy::Always, n);
            (r.local_never, r.local_never_cpu) = drain_local(dir_ln.path(), SyncPolicy::Never, n);
            r.order.extend(["spool-only(Always)", "spool-only(Never)"]);
        } else {
            (r.local_never, r.local_never_cpu) = drain_local(dir_ln.path(), SyncPolicy::Never, n);
            (r.local_always, r.local_always_cpu) =
                drain_local(dir_la.path(), SyncPolicy::Always, n);
            r.order.extend(["spool-only(Never)", "spool-only(Always)"]);
        }
        // What a flush costs whatever the number of batches: a fresh spool holding one batch.
        r.one_batch = flush(
            dir_one.path(),
            SyncPolicy::Never,
            Wire::Http,
            &Wire::Http.endpoint(rotel),
            1,
        )
        .0;
        r.order.push("flush(Never) of 1 batch");
        println!(
            "  rep {}: {}; spool-only Always {:.3} s, Never {:.3} s",
            rep + 1,
            r.http.progress(),
            r.local_always,
            r.local_never
        );
        if let Some(g) = &r.grpc {
            println!("         gRPC: {}", g.progress());
        }
        reps.push(r);
        if rep + 1 >= 3 && started.elapsed() > scale.flush_deadline {
            println!(
                "  stopping after {} repetitions: over {:?} (a slow disk?)",
                rep + 1,
                scale.flush_deadline
            );
            break;
        }
    }
    FlushResults {
        batches: n,
        spans_per_batch: scale.flush_spans,
        bytes_per_batch,
        warmup_replay: warmups[0],
        warmup_replay_grpc: warmups.get(1).copied(),
        reps,
    }
}

/// The filled spools one chain drains: three under Always, one under Never.
struct ChainSpools {
    always: Vec<tempfile::TempDir>,
    never: tempfile::TempDir,
}

/// A replay, then each of `order` followed by a replay, all over `wire`; the steps are added to
/// `steps`.
#[allow(clippy::too_many_arguments)]
fn run_chain(
    tmp: &Tmp,
    rotel: &Rotel,
    wire: Wire,
    order: &[Measure],
    mut spools: ChainSpools,
    bodies: &[Bytes],
    n: usize,
    steps: &mut Vec<&'static str>,
) -> Chain {
    let endpoint = wire.endpoint(rotel);
    let mut c = Chain::default();
    let (wall, cpu) = replay(wire, rotel, bodies, None);
    c.replays.push(wall);
    c.replays_cpu.push(cpu);
    steps.push(replay_step(wire));
    for &m in order {
        let (secs, cpu) = match m {
            Measure::FlushAlways => {
                let dir = spools.always.pop().expect("a filled spool");
                flush(dir.path(), SyncPolicy::Always, wire, &endpoint, n)
            }
            Measure::FlushNever => {
                flush(spools.never.path(), SyncPolicy::Never, wire, &endpoint, n)
            }
            Measure::ReplaySync => {
                let dir = tmp.dir();
                let file = fs::File::create(dir.path().join("cursor")).expect("create");
                file.write_all_at(&[0u8; 128], 0).expect("write");
                file.sync_all().expect("sync");
                replay(wire, rotel, bodies, Some(&file))
            }
        };
        let before = *c.replays.last().expect("a replay ran first");
        let before_cpu = *c.replays_cpu.last().expect("a replay ran first");
        let (after, after_cpu) = replay(wire, rotel, bodies, None);
        c.replays.push(after);
        c.replays_cpu.push(after_cpu);
        steps.extend([m.step(wire), replay_step(wire)]);
        let sample = Sample {
            secs,
            around: (before + after) / 2.0,
            cpu,
            around_cpu: (before_cpu + after_cpu) / 2.0,
        };
        match m {
            Measure::FlushAlways => c.always.push(sample),
            Measure::FlushNever => c.never = sample,
            Measure::ReplaySync => c.sync = sample,
        }
    }
    c
}

fn opts(sync: SyncPolicy) -> SpoolOptions {
    let compression = match std::env::var(COMPRESSION_ENV).as_deref() {
        Ok("none") => Encoding::Identity,
        _ => SpoolOptions::default().compression,
    };
    SpoolOptions {
        sync,
        compression,
        ..SpoolOptions::default()
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Sends every body in turn, one request at a time over one connection, with a minimal client
/// of `wire`; seconds from building the client to the last answer read (wall, this thread's
/// CPU). With `sync`, each answer is followed by what a durable acknowledgement costs at least: a
/// 64-byte write into `sync` (alternating slots, as the cursor does) and an `fdatasync`.
fn replay(wire: Wire, rotel: &Rotel, bodies: &[Bytes], sync: Option<&fs::File>) -> (f64, f64) {
    match wire {
        Wire::Http => replay_http(
            &rotel.endpoint().parse().expect("endpoint URI"),
            bodies,
            sync,
        ),
        Wire::Grpc => replay_grpc(&Wire::Grpc.endpoint(rotel), bodies, sync),
    }
}

/// The durable acknowledgement a replay with `sync` pays after each answer.
fn ack_sync(file: &fs::File, slot: &mut u64) {
    *slot = (*slot + 1) % 2;
    file.write_all_at(&[*slot as u8; 64], *slot * 64)
        .expect("write");
    file.sync_data().expect("fdatasync");
}

/// OTLP/HTTP: POSTs over one keep-alive connection (hyper-util's client).
fn replay_http(uri: &Uri, bodies: &[Bytes], sync: Option<&fs::File>) -> (f64, f64) {
    let rt = current_thread();
    rt.block_on(async {
        let start = Instant::now();
        let cpu = thread_cpu();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(http);
        let mut slot = 0u64;
        for body in bodies {
            let request = Request::post(uri.clone())
                .header(CONTENT_TYPE, "application/x-protobuf")
                .body(Full::new(body.clone()))
                .expect("request");
            let response = client.request(request).await.expect("replay request");
            let status = response.status();
            let answer = response.into_body().collect().await.expect("answer body");
            assert!(status.is_success(), "rotel answered {status}");
            black_box(answer);
            if let Some(file) = sync {
                ack_sync(file, &mut slot);
            }
        }
        (start.elapsed().as_secs_f64(), thread_cpu() - cpu)
    })
}

/// The OTLP/gRPC method of traces.
const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// OTLP/gRPC: unary `TraceService/Export` calls over one tonic channel (one HTTP/2 connection),
/// the stored bytes sent as they are.
fn replay_grpc(endpoint: &str, bodies: &[Bytes], sync: Option<&fs::File>) -> (f64, f64) {
    let rt = current_thread();
    rt.block_on(async {
        let start = Instant::now();
        let cpu = thread_cpu();
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .expect("gRPC endpoint")
            .connect()
            .await
            .expect("connect to rotel's gRPC port");
        let mut grpc = tonic::client::Grpc::new(channel);
        let path = PathAndQuery::from_static(TRACE_EXPORT);
        let mut slot = 0u64;
        for body in bodies {
            grpc.ready().await.expect("channel ready");
            let answer = grpc
                .unary(tonic::Request::new(body.clone()), path.clone(), RawCodec)
                .await
                .expect("replay export");
            black_box(answer);
            if let Some(file) = sync {
                ack_sync(file, &mut slot);
            }
        }
        (start.elapsed().as_secs_f64(), thread_cpu() - cpu)
    })
}

/// `Delivery::flush` (explicit) of a filled spool over `wire`; seconds for the call (wall, this
/// thread's CPU). Checks it all went.
fn flush(dir: &Path, sync: SyncPolicy, wire: Wire, endpoint: &str, n: usize) -> (f64, f64) {
    let rt = current_thread();
    let spool = Spool::open(dir, opts(sync)).expect("open spool");
    let delivery = Delivery::new(
        spool,
        DeliverySettings {
            endpoint: Some(endpoint.parse().expect("endpoint URI")),
            protocol: wire.protocol(),
            budget: FLUSH_BUDGET,
            ..DeliverySettings::default()
        },
    );
    let start = Instant::now();
    let cpu = thread_cpu();
    let report = rt
        .block_on(delivery.flush(Mode::Explicit, None))
        .expect("flush");
    let secs = start.elapsed().as_secs_f64();
    let cpu = thread_cpu() - cpu;
    assert_eq!(
        report.sent_batches, n as u64,
        "flush did not send every batch: {report:?}"
    );
    assert!(
        report.stopped.is_none() && !report.remaining,
        "flush stopped: {report:?}"
    );
    let stats = delivery.spool().stats().expect("stats");
    assert_eq!(stats.batches, 0, "spool not empty after flush: {stats:?}");
    (secs, cpu)
}

/// Reads and acknowledges every record, no network: the spool's share of a flush.
fn drain_local(dir: &Path, sync: SyncPolicy, n: usize) -> (f64, f64) {
    let spool = Spool::open(dir, opts(sync)).expect("open spool");
    let start = Instant::now();
    let cpu = thread_cpu();
    let mut reader = spool.reader().expect("reader");
    let mut count = 0;
    while let Some(record) = reader.next().expect("next") {
        black_box(&record.payload);
        reader.ack(&record).expect("ack");
        count += 1;
    }
    drop(reader);
    let secs = start.elapsed().as_secs_f64();
    let cpu = thread_cpu() - cpu;
    assert_eq!(count, n);
    assert_eq!(spool.stats().expect("stats").batches, 0);
    (secs, cpu)
}

impl FlushResults {
    /// One value per repetition.
    fn col(&self, f: impl Fn(&Rep) -> f64) -> Vec<f64> {
        self.reps.iter().map(f).collect()
    }

    fn chains(&self, wire: Wire) -> impl Iterator<Item = &Chain> {
        self.reps.iter().filter_map(move |r| r.chain(wire))
    }

    /// Every sample of a measure over `wire`, over all repetitions.
    fn samples(&self, wire: Wire, m: Measure) -> Vec<Sample> {
        self.chains(wire).flat_map(|c| c.samples(m)).collect()
    }

    fn all_replays(&self, wire: Wire) -> Vec<f64> {
        self.chains(wire).flat_map(|c| c.replays.clone()).collect()
    }

    fn all_replays_cpu(&self, wire: Wire) -> Vec<f64> {
        self.chains(wire)
            .flat_map(|c| c.replays_cpu.clone())
            .collect()
    }

    /// Median ratio over all samples of `m` over `wire`.
    fn ratio(&self, wire: Wire, m: Measure) -> f64 {
        median(self.samples(wire, m).iter().map(Sample::ratio).collect())
    }

    /// Median of (CPU of sample − CPU of the replays around it), µs per batch.
    fn extra_cpu_us(&self, wire: Wire, m: Measure) -> f64 {
        let n = self.batches as f64;
        median(
            self.samples(wire, m)
                .iter()
                .map(|s| (s.cpu - s.around_cpu) / n * 1e6)
                .collect(),
        )
    }

    /// Median of (sample − the replays around it), µs per batch.
    fn extra_us(&self, wire: Wire, m: Measure) -> f64 {
        let n = self.batches as f64;
        median(
            self.samples(wire, m)
                .iter()
                .map(|s| (s.secs - s.around) / n * 1e6)
                .collect(),
        )
    }

    fn print(&self) {
        let n = self.batches as f64;
        println!(
            "\n[1] flush throughput to rotel (--exporter blackhole, no debug log), {} batches x {} \
             spans, {:.0} B/batch, {} reps",
            self.batches,
            self.spans_per_batch,
            self.bytes_per_batch,
            self.reps.len()
        );
        self.print_runs(Wire::Http);
        // Where the extra time goes, per batch.
        let replay_us = median(self.all_replays(Wire::Http)) / n * 1e6;
        let extra_a = self.extra_us(Wire::Http, Measure::FlushAlways);
        let extra_n = self.extra_us(Wire::Http, Measure::FlushNever);
        let extra_sync = self.extra_us(Wire::Http, Measure::ReplaySync);
        let local_a = median(self.col(|r| r.local_always)) / n * 1e6;
        let local_n = median(self.col(|r| r.local_never)) / n * 1e6;
        let ceiling = self.ratio(Wire::Http, Measure::ReplaySync);
        println!("  where the flush's extra time goes (medians, µs per batch):");
        println!(
            "    replay {replay_us:.1}; run − replays around it: flush Always {extra_a:+.1}, \
             flush Never {extra_n:+.1}, replay + fdatasync {extra_sync:+.1}"
        );
        println!(
            "    spool side alone (Reader::next + ack, no network): Always {local_a:.1}, Never \
             {local_n:.1}"
        );
        println!(
            "    Per batch, a flush takes the next frame from a 64 KiB chunk (CRC checked; the \
             next chunk is read while a request is in flight) → POST → wait for the answer → \
             classify it → ack (pwrite the cursor slot) → next. Under Always, a background \
             thread syncs the cursor every 64 acknowledgements, off the round trip."
        );
        println!(
            "    Always: one fdatasync costs ≈ {:.0} µs in a tight loop (spool-only Always, which \
             syncs every ack, − Never), ≈ {extra_sync:.0} µs when it alternates with requests \
             (replay + fdatasync). The minimal client itself, made to fdatasync once per answer, \
             reaches only {ceiling:.2} of its replay: where a flush that made each \
             acknowledgement durable before sending the next batch would be, on this disk.",
            local_a - local_n
        );
        let fixed_us = median(self.col(|r| r.one_batch)) * 1e6 - replay_us;
        let cpu_extra_n = self.extra_cpu_us(Wire::Http, Measure::FlushNever);
        let cpu_extra_a = self.extra_cpu_us(Wire::Http, Measure::FlushAlways);
        let cpu_local_n = median(self.col(|r| r.local_never_cpu)) / n * 1e6;
        let cpu_local_a = median(self.col(|r| r.local_always_cpu)) / n * 1e6;
        println!(
            "    fixed cost of one flush (a 1-batch spool, Never, minus one request): ≈ \
             {fixed_us:.0} µs (transport setup, flush lease, delivery state file written on the \
             first success, stats), ≈ {:.1} µs per batch here",
            fixed_us / n
        );
        println!(
            "    Never: spool read + cursor write ≈ {local_n:.1} µs + fixed cost ≈ {:.1} µs; the \
             remaining ≈ {:+.1} µs is the delivery's own per-request work (request headers, \
             timeout timer, answer classification, circuit update) and noise.",
            fixed_us / n,
            extra_n - local_n - fixed_us / n
        );
        println!(
            "    in CPU time of the client thread (load-insensitive): flush − replays around it: \
             Never {cpu_extra_n:+.1} µs, Always {cpu_extra_a:+.1} µs per batch; spool side alone: \
             Never {cpu_local_n:.1}, Always {cpu_local_a:.1}. What the flush adds beyond that \
             CPU is waiting: for the disk (Always) and for the collector to be scheduled again."
        );
        self.print_grpc();
    }

    /// The table of one wire's runs against its replays, the ratios per repetition, and the
    /// median ratios with their target.
    fn print_runs(&self, wire: Wire) {
        let n = self.batches as f64;
        let spans = n * self.spans_per_batch as f64;
        println!(
            "  {:<34} {:>3} {:>8} {:>10} {:>10} {:>9} {:>9} {:>8} {:>9}",
            "median of all runs",
            "n",
            "seconds",
            "batches/s",
            "spans/s",
            "µs/batch",
            "vs replay",
            "best-of",
            "CPU µs/b"
        );
        let replays = self.all_replays(wire);
        let replay_best = min(&replays);
        let secs = |m: Measure| {
            self.samples(wire, m)
                .iter()
                .map(|s| s.secs)
                .collect::<Vec<_>>()
        };
        let cpu = |m: Measure| {
            self.samples(wire, m)
                .iter()
                .map(|s| s.cpu)
                .collect::<Vec<_>>()
        };
        // Label, wall seconds and CPU seconds of each run, and what it is compared with.
        type Row = (&'static str, Vec<f64>, Vec<f64>, Option<Measure>);
        let mut rows: Vec<Row> = vec![
            (
                match wire {
                    Wire::Http => "replay (minimal hyper client)",
                    Wire::Grpc => "replay (minimal tonic client)",
                },
                replays.clone(),
                self.all_replays_cpu(wire),
                None,
            ),
            (
                "flush, SyncPolicy::Always",
                secs(Measure::FlushAlways),
                cpu(Measure::FlushAlways),
                Some(Measure::FlushAlways),
            ),
            (
                "flush, SyncPolicy::Never",
                secs(Measure::FlushNever),
                cpu(Measure::FlushNever),
                Some(Measure::FlushNever),
            ),
            (
                "replay + 64 B write + fdatasync",
                secs(Measure::ReplaySync),
                cpu(Measure::ReplaySync),
                Some(Measure::ReplaySync),
            ),
        ];
        if wire == Wire::Http {
            rows.extend([
                (
                    "spool only, Always (no network)",
                    self.col(|r| r.local_always),
                    self.col(|r| r.local_always_cpu),
                    None,
                ),
                (
                    "spool only, Never (no network)",
                    self.col(|r| r.local_never),
                    self.col(|r| r.local_never_cpu),
                    None,
                ),
            ]);
        }
        for (label, v, cpu, compared) in rows {
            let s = median(v.clone());
            let (vs, best) = match compared {
                Some(m) => (
                    format!("{:.2}", self.ratio(wire, m)),
                    format!("{:.2}", replay_best / min(&v)),
                ),
                None => (String::new(), String::new()),
            };
            println!(
                "  {:<34} {:>3} {:>8.3} {:>10.0} {:>10.0} {:>9.1} {:>9} {:>8} {:>9.1}",
                label,
                v.len(),
                s,
                n / s,
                spans / s,
                s / n * 1e6,
                vs,
                best,
                median(cpu) / n * 1e6
            );
        }
        println!(
            "  vs replay = median over runs of (mean of the replays just before and after) ÷ run; \
             best-of = fastest replay ÷ fastest run (noise only adds time); CPU µs/b = CPU time \
             of the client thread (it runs the whole client side: current-thread runtime) per \
             batch, far less sensitive to the machine's load than wall time"
        );
        println!("  per repetition (ratios = flush batches/s ÷ replay batches/s):");
        for (i, r) in self.reps.iter().enumerate() {
            let Some(c) = r.chain(wire) else { continue };
            println!(
                "    rep {}: Always {} (median {:.2})  Never {:.2}  replay+fdatasync {:.2}",
                i + 1,
                c.always
                    .iter()
                    .map(|s| format!("{:.2}", s.ratio()))
                    .collect::<Vec<_>>()
                    .join(" "),
                c.ratio_always(),
                c.never.ratio(),
                c.sync.ratio(),
            );
            if wire == Wire::Http {
                println!("      order: {}", r.order.join(" → "));
            }
        }
        for (name, m) in [
            ("Always", Measure::FlushAlways),
            ("Never", Measure::FlushNever),
        ] {
            let v: Vec<f64> = self.samples(wire, m).iter().map(Sample::ratio).collect();
            let med = median(v.clone());
            let per_rep: Vec<f64> = self
                .chains(wire)
                .map(|c| match m {
                    Measure::FlushNever => c.never.ratio(),
                    _ => c.ratio_always(),
                })
                .collect();
            println!(
                "  ratio {name:<6}: median {med:.2} over {} runs (min {:.2}, max {:.2}; per-rep \
                 medians {:.2}..{:.2}) → {}",
                v.len(),
                min(&v),
                max(&v),
                min(&per_rep),
                max(&per_rep),
                match m {
                    Measure::FlushAlways if med >= TARGET_FLUSH_RATIO => {
                        format!("target ≥ {TARGET_FLUSH_RATIO:.2}: MET")
                    }
                    Measure::FlushAlways => format!("target ≥ {TARGET_FLUSH_RATIO:.2}: NOT MET"),
                    _ => "no target: a library-only option, no command runs it".to_owned(),
                }
            );
        }
    }

    /// The gRPC runs, beside the HTTP ones of the same repetitions.
    fn print_grpc(&self) {
        if self.chains(Wire::Grpc).next().is_none() {
            return;
        }
        let n = self.batches as f64;
        println!(
            "\n[1] flush over OTLP/gRPC to rotel's gRPC port (Protocol::Grpc), against a minimal \
             tonic client replaying the same stored bytes (one channel, unary \
             TraceService/Export, raw-bytes codec); same batches, same repetitions"
        );
        self.print_runs(Wire::Grpc);
        let per_batch = |wire: Wire| median(self.all_replays(wire)) / n * 1e6;
        println!("  gRPC beside HTTP, same run (medians, µs per batch):");
        println!(
            "    replay: gRPC {:.1}, HTTP {:.1}; flush Always − replays around it: gRPC {:+.1}, \
             HTTP {:+.1}; flush Never: gRPC {:+.1}, HTTP {:+.1}",
            per_batch(Wire::Grpc),
            per_batch(Wire::Http),
            self.extra_us(Wire::Grpc, Measure::FlushAlways),
            self.extra_us(Wire::Http, Measure::FlushAlways),
            self.extra_us(Wire::Grpc, Measure::FlushNever),
            self.extra_us(Wire::Http, Measure::FlushNever),
        );
        println!(
            "    client-thread CPU, flush − replays around it: Always gRPC {:+.1}, HTTP {:+.1}; \
             Never gRPC {:+.1}, HTTP {:+.1}; replay CPU gRPC {:.1}, HTTP {:.1}",
            self.extra_cpu_us(Wire::Grpc, Measure::FlushAlways),
            self.extra_cpu_us(Wire::Http, Measure::FlushAlways),
            self.extra_cpu_us(Wire::Grpc, Measure::FlushNever),
            self.extra_cpu_us(Wire::Http, Measure::FlushNever),
            median(self.all_replays_cpu(Wire::Grpc)) / n * 1e6,
            median(self.all_replays_cpu(Wire::Http)) / n * 1e6,
        );
        println!(
            "    ratio Always: gRPC {:.2}, HTTP {:.2} (target ≥ {TARGET_FLUSH_RATIO:.2})",
            self.ratio(Wire::Grpc, Measure::FlushAlways),
            self.ratio(Wire::Http, Measure::FlushAlways),
        );
    }

    fn to_json(&self) -> Value {
        let n = self.batches as f64;
        let spans = n * self.spans_per_batch as f64;
        let summary = |v: Vec<f64>| {
            let s = median(v.clone());
            json!({"runs": v.len(), "median_secs": s, "min_secs": min(&v), "max_secs": max(&v),
                   "batches_per_sec": n / s, "spans_per_sec": spans / s,
                   "us_per_batch": s / n * 1e6})
        };
        let secs = |wire: Wire, m: Measure| {
            self.samples(wire, m)
                .iter()
                .map(|s| s.secs)
                .collect::<Vec<_>>()
        };
        let sample = |s: &Sample| {
            json!({"secs": s.secs, "replays_around_secs": s.around, "ratio": s.ratio(),
                   "cpu_secs": s.cpu, "replays_around_cpu_secs": s.around_cpu})
        };
        let http = Wire::Http;
        let ra = self.ratio(http, Measure::FlushAlways);
        let rn = self.ratio(http, Measure::FlushNever);
        let mut out = json!({
            "batches": self.batches,
            "spans_per_batch": self.spans_per_batch,
            "bytes_per_batch": self.bytes_per_batch,
            "collector": "rotel --exporter blackhole (no debug log), OTLP/HTTP on loopback",
            "flush_budget_secs": FLUSH_BUDGET.as_secs(),
            "warmup_replay_secs": self.warmup_replay,
            "replay": summary(self.all_replays(http)),
            "flush_always": summary(secs(http, Measure::FlushAlways)),
            "flush_never": summary(secs(http, Measure::FlushNever)),
            "replay_plus_fdatasync": summary(secs(http, Measure::ReplaySync)),
            "spool_only_always": summary(self.col(|r| r.local_always)),
            "spool_only_never": summary(self.col(|r| r.local_never)),
            "flush_never_one_batch_us": median(self.col(|r| r.one_batch)) * 1e6,
            "ratio_always_median": ra,
            "ratio_never_median": rn,
            "ratio_replay_plus_fdatasync_median": self.ratio(http, Measure::ReplaySync),
            "extra_cpu_us_per_batch": {
                "flush_always": self.extra_cpu_us(http, Measure::FlushAlways),
                "flush_never": self.extra_cpu_us(http, Measure::FlushNever),
                "replay_plus_fdatasync": self.extra_cpu_us(http, Measure::ReplaySync),
                "spool_only_always": median(self.col(|r| r.local_always_cpu)) / n * 1e6,
                "spool_only_never": median(self.col(|r| r.local_never_cpu)) / n * 1e6,
                "replay": median(self.all_replays_cpu(http)) / n * 1e6,
            },
            "extra_us_per_batch": {
                "flush_always": self.extra_us(http, Measure::FlushAlways),
                "flush_never": self.extra_us(http, Measure::FlushNever),
                "replay_plus_fdatasync": self.extra_us(http, Measure::ReplaySync),
            },
            "target_ratio": TARGET_FLUSH_RATIO,
            "target_met_always": ra >= TARGET_FLUSH_RATIO,
            "target_met_never": rn >= TARGET_FLUSH_RATIO,
            "reps": self.reps.iter().map(|r| {
                let chain = |c: &Chain| json!({
                    "replays_secs": c.replays,
                    "replays_cpu_secs": c.replays_cpu,
                    "flush_always": c.always.iter().map(sample).collect::<Vec<_>>(),
                    "flush_never": sample(&c.never),
                    "replay_plus_fdatasync": sample(&c.sync),
                });
                let mut rep = chain(&r.http);
                if let Value::Object(o) = &mut rep {
                    o.insert("order".into(), json!(r.order));
                    o.insert("spool_only_always_secs".into(), json!(r.local_always));
                    o.insert("spool_only_never_secs".into(), json!(r.local_never));
                    o.insert("flush_never_one_batch_secs".into(), json!(r.one_batch));
                    if let Some(g) = &r.grpc {
                        o.insert("grpc".into(), chain(g));
                    }
                }
                rep
            }).collect::<Vec<_>>(),
        });
        // The gRPC figures beside the HTTP ones, in the same layout.
        if self.chains(Wire::Grpc).next().is_some() {
            let grpc = Wire::Grpc;
            let always: Vec<f64> = self
                .samples(grpc, Measure::FlushAlways)
                .iter()
                .map(Sample::ratio)
                .collect();
            let rg = median(always.clone());
            let rgn = self.ratio(grpc, Measure::FlushNever);
            if let Value::Object(o) = &mut out {
                o.insert("grpc".into(), json!({
                    "collector": "rotel --exporter blackhole (no debug log), OTLP/gRPC on loopback",
                    "flush": "Delivery::flush with DeliverySettings { protocol: Protocol::Grpc }",
                    "replay_client": "tonic: one Channel, unary TraceService/Export calls one at a time, the stored bytes through a raw-bytes codec",
                    "warmup_replay_secs": self.warmup_replay_grpc,
                    "replay": summary(self.all_replays(grpc)),
                    "flush_always": summary(secs(grpc, Measure::FlushAlways)),
                    "flush_never": summary(secs(grpc, Measure::FlushNever)),
                    "replay_plus_fdatasync": summary(secs(grpc, Measure::ReplaySync)),
                    "ratio_always_median": rg,
                    "ratio_always_min": min(&always),
                    "ratio_always_max": max(&always),
                    "ratio_always_samples": always.len(),
                    "ratio_never_median": rgn,
                    "ratio_replay_plus_fdatasync_median": self.ratio(grpc, Measure::ReplaySync),
                    "extra_cpu_us_per_batch": {
                        "flush_always": self.extra_cpu_us(grpc, Measure::FlushAlways),
                        "flush_never": self.extra_cpu_us(grpc, Measure::FlushNever),
                        "replay_plus_fdatasync": self.extra_cpu_us(grpc, Measure::ReplaySync),
                        "replay": median(self.all_replays_cpu(grpc)) / n * 1e6,
                    },
                    "extra_us_per_batch": {
                        "flush_always": self.extra_us(grpc, Measure::FlushAlways),
                        "flush_never": self.extra_us(grpc, Measure::FlushNever),
                        "replay_plus_fdatasync": self.extra_us(grpc, Measure::ReplaySync),
                    },
                    "target_ratio": TARGET_FLUSH_RATIO,
                    "target_met_always": rg >= TARGET_FLUSH_RATIO,
                    "http_ratio_always_median_same_run": ra,
                }));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Section 2: export-to-spool cost per batch.

/// Per-batch samples (µs) of one span count under one policy.
struct SpoolCase {
    sync: SyncPolicy,
    spans: usize,
    bytes: usize,
    encode: Vec<f64>,
    append: Vec<f64>,
    encode_append: Vec<f64>,
    export: Vec<f64>,
    encode_export: Vec<f64>,
}

fn bench_export_to_spool(tmp: &Tmp, scale: &Scale) -> Vec<SpoolCase> {
    println!("\n[2] export-to-spool per batch (no endpoint)");
    let rt = current_thread();
    let enc = encoder();
    let mut cases = Vec::new();
    for sync in [SyncPolicy::Always, SyncPolicy::Never] {
        for n_spans in [1usize, 10, 100] {
            let samples = match sync {
                SyncPolicy::Always => scale.spool_samples_always,
                SyncPolicy::Never => scale.spool_samples_never,
            };
            let d_append = tmp.dir();
            let d_enc_append = tmp.dir();
            let d_export = tmp.dir();
            let d_enc_export = tmp.dir();
            let s_append = Spool::open(d_append.path(), opts(sync)).expect("open");
            let s_enc_append = Spool::open(d_enc_append.path(), opts(sync)).expect("open");
            let no_endpoint = DeliverySettings::default();
            let del_export = Delivery::new(
                Spool::open(d_export.path(), opts(sync)).expect("open"),
                no_endpoint.clone(),
            );
            let del_enc_export = Delivery::new(
                Spool::open(d_enc_export.path(), opts(sync)).expect("open"),
                no_endpoint,
            );
            let template = spans(7, n_spans);
            let sample_batch = enc.encode(template.clone());
            let mut case = SpoolCase {
                sync,
                spans: n_spans,
                bytes: sample_batch.bytes.len(),
                encode: Vec::new(),
                append: Vec::new(),
                encode_append: Vec::new(),
                export: Vec::new(),
                encode_export: Vec::new(),
            };
            let start = Instant::now();
            // A few unrecorded rounds first (allocator, page cache, first segment).
            let warmup = (samples / 20).max(2);
            for i in 0..warmup + samples {
                let record = i >= warmup;
                let push = |v: &mut Vec<f64>, t: Instant| {
                    if record {
                        v.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                };
                // (a) encode alone.
                let input = template.clone();
                let t = Instant::now();
                let batch = enc.encode(input);
                push(&mut case.encode, t);
                // (b) append alone.
                let t = Instant::now();
                s_append.append(&batch.bytes, batch.items).expect("append");
                push(&mut case.append, t);
                // (c) encode + append.
                let input = template.clone();
                let t = Instant::now();
                let b = enc.encode(input);
                s_enc_append.append(&b.bytes, b.items).expect("append");
                push(&mut case.encode_append, t);
                // (d) Delivery::export alone, then encode + export.
                let t = Instant::now();
                let report = rt.block_on(del_export.export(batch)).expect("export");
                push(&mut case.export, t);
                assert!(report.spooled);
                let input = template.clone();
                let t = Instant::now();
                let b = enc.encode(input);
                let report = rt.block_on(del_enc_export.export(b)).expect("export");
                push(&mut case.encode_export, t);
                assert!(report.spooled);
                if record && start.elapsed() > scale.spool_case_cap {
                    break;
                }
            }
            let stats = del_export.spool().stats().expect("stats");
            assert_eq!(
                stats.dropped_batches, 0,
                "the spool bound dropped batches: the case measures drops"
            );
            println!(
                "  {:<6} {:>3} spans ({:>6} B): {} samples in {:.1} s; medians µs: encode {:.1}, \
                 append {:.1}, encode+append {:.1}, export {:.1}, encode+export {:.1}",
                sync_name(sync),
                n_spans,
                case.bytes,
                case.encode.len(),
                start.elapsed().as_secs_f64(),
                median(case.encode.clone()),
                median(case.append.clone()),
                median(case.encode_append.clone()),
                median(case.export.clone()),
                median(case.encode_export.clone()),
            );
            cases.push(case);
        }
    }
    cases
}

fn sync_name(sync: SyncPolicy) -> &'static str {
    match sync {
        SyncPolicy::Always => "Always",
        SyncPolicy::Never => "Never",
    }
}

fn print_to_spool(cases: &[SpoolCase]) {
    println!("\n[2] export-to-spool cost per batch, no endpoint (µs: median [p90])");
    println!(
        "  {:<7} {:>5} {:>7} {:>7} {:>15} {:>15} {:>15} {:>15} {:>15}",
        "sync",
        "spans",
        "bytes",
        "samples",
        "(a) encode",
        "(b) append",
        "(c) enc+append",
        "(d) export",
        "enc+export"
    );
    let cell = |v: &[f64]| {
        format!(
            "{:.1} [{:.1}]",
            percentile(v.to_vec(), 0.5),
            percentile(v.to_vec(), 0.9)
        )
    };
    for c in cases {
        println!(
            "  {:<7} {:>5} {:>7} {:>7} {:>15} {:>15} {:>15} {:>15} {:>15}",
            sync_name(c.sync),
            c.spans,
            c.bytes,
            c.encode.len(),
            cell(&c.encode),
            cell(&c.append),
            cell(&c.encode_append),
            cell(&c.export),
            cell(&c.encode_export)
        );
    }
    println!(
        "  (d) = Delivery::export of an encoded batch with no endpoint: load the delivery state, \
         append, count the spool (stats); enc+export adds Encoder::encode."
    );
}

fn to_spool_json(cases: &[SpoolCase]) -> Value {
    let stat = |v: &[f64]| {
        json!({"median_us": percentile(v.to_vec(), 0.5), "p10_us": percentile(v.to_vec(), 0.1),
               "p90_us": percentile(v.to_vec(), 0.9)})
    };
    Value::Array(
        cases
            .iter()
            .map(|c| {
                json!({
                    "sync": sync_name(c.sync),
                    "spans_per_batch": c.spans,
                    "bytes_per_batch": c.bytes,
                    "samples": c.encode.len(),
                    "encode": stat(&c.encode),
                    "append": stat(&c.append),
                    "encode_append": stat(&c.encode_append),
                    "delivery_export_no_endpoint": stat(&c.export),
                    "encode_delivery_export_no_endpoint": stat(&c.encode_export),
                })
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Section 3: one export by a fresh process, backend up, spool empty.

struct FreshResults {
    bytes: usize,
    /// µs per run: runtime build, Spool::open, Delivery::new + export, and the total.
    runtime: Vec<f64>,
    open: Vec<f64>,
    export: Vec<f64>,
    total: Vec<f64>,
}

fn bench_fresh_export(tmp: &Tmp, scale: &Scale, rotel: &Rotel) -> FreshResults {
    println!(
        "\n[3] one export of a 1-span batch by a fresh Delivery, rotel up, empty spool ({} runs)",
        scale.fresh_runs
    );
    let dir = tmp.dir();
    let enc = encoder();
    let endpoint: Uri = rotel.endpoint().parse().expect("endpoint URI");
    let mut r = FreshResults {
        bytes: 0,
        runtime: Vec::new(),
        open: Vec::new(),
        export: Vec::new(),
        total: Vec::new(),
    };
    for i in 0..scale.fresh_warmup + scale.fresh_runs {
        let batch = enc.encode(spans(1_000 + i as u64, 1));
        r.bytes = batch.bytes.len();
        let t0 = Instant::now();
        let rt = current_thread();
        let t1 = Instant::now();
        let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("open spool");
        let t2 = Instant::now();
        let delivery = Delivery::new(
            spool,
            DeliverySettings {
                endpoint: Some(endpoint.clone()),
                ..DeliverySettings::default()
            },
        );
        let report = rt.block_on(delivery.export(batch)).expect("export");
        let t3 = Instant::now();
        assert!(
            report.sent_batches == 1 && !report.spooled,
            "not sent: {report:?}"
        );
        drop(delivery);
        drop(rt);
        if i >= scale.fresh_warmup {
            let us = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e6;
            r.runtime.push(us(t0, t1));
            r.open.push(us(t1, t2));
            r.export.push(us(t2, t3));
            r.total.push(us(t0, t3));
        }
    }
    println!(
        "  median µs: runtime {:.0}, Spool::open {:.0}, Delivery::new + export {:.0}, total {:.0}",
        median(r.runtime.clone()),
        median(r.open.clone()),
        median(r.export.clone()),
        median(r.total.clone())
    );
    r
}

impl FreshResults {
    fn print(&self) {
        println!(
            "\n[3] one export, 1 span ({} B), rotel up, empty spool, fresh runtime + spool handle + \
             Delivery each run; {} runs (µs)",
            self.bytes,
            self.total.len()
        );
        println!(
            "  {:<34} {:>9} {:>9} {:>9} {:>9}",
            "", "p10", "median", "p90", "max"
        );
        for (label, v) in [
            ("tokio current-thread runtime", &self.runtime),
            ("Spool::open (SyncPolicy::Always)", &self.open),
            ("Delivery::new + export", &self.export),
            ("total", &self.total),
        ] {
            println!(
                "  {:<34} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
                label,
                percentile(v.clone(), 0.1),
                percentile(v.clone(), 0.5),
                percentile(v.clone(), 0.9),
                max(v)
            );
        }
        println!(
            "  (export = load state, transport setup, flush lease + empty read, new TCP connection, \
             POST, answer; the state file is rewritten only when it changes)"
        );
    }

    fn to_json(&self) -> Value {
        let stat = |v: &[f64]| {
            json!({"p10_us": percentile(v.to_vec(), 0.1), "median_us": percentile(v.to_vec(), 0.5),
                   "p90_us": percentile(v.to_vec(), 0.9), "max_us": max(v)})
        };
        json!({
            "spans": 1,
            "bytes": self.bytes,
            "runs": self.total.len(),
            "runtime_build": stat(&self.runtime),
            "spool_open": stat(&self.open),
            "delivery_new_and_export": stat(&self.export),
            "total": stat(&self.total),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Rotel.

// ---------------------------------------------------------------------------------------------
// Small helpers.

/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
