//! Spool benchmarks: append throughput against the raw disk, 1 KiB append latency against the
//! spool's size (0, 256 MiB, 512 MiB, 768 MiB and 1 GiB, each size timed interleaved with a fresh
//! empty spool; 1 GiB / empty is the target), the cost of open + append (one hook process), read
//! throughput of a 1 GiB spool, the reader's peak RSS, and compression at rest (spans a 64 MiB
//! spool holds of the benches' typical batch, compressed and not; 1 KiB appends/s of a typical
//! batch and of incompressible bytes, each compressed and not, interleaved).
//!
//! `TRACESPOOL_BENCH_SPOOL_ONLY=compression` runs section 4 alone, and writes no report.
//!
//! Sections 1 to 3 measure the write and read paths themselves: their batches (incompressible
//! bytes) are stored as given (`Encoding::Identity`). Section 4 measures what compression at rest
//! (the default, gzip) adds, for a typical batch and for incompressible bytes, which a spool that
//! compresses tries to compress and then stores as they are.
//!
//! `cargo bench --bench spool` prints a table and writes the same figures to
//! `target/bench-report/spool.json`. Spools are made in `target/bench-tmp` (the filesystem that
//! holds `target/`) and deleted at the end.
//!
//! Without `--bench` (e.g. `cargo test --all-targets`), or with `TRACESPOOL_BENCH_QUICK=1`, every
//! size is scaled down: a smoke run whose figures mean nothing, and no report is written.
//!
//! The peak RSS of reading is measured in a child: this binary re-executed with
//! `TRACESPOOL_BENCH_CHILD=read:<timed records>:<spool dir>`, which reads and acknowledges the
//! whole spool and prints `key=value` lines, `vmhwm_kib` among them, on stdout.

mod common;

use common::{Tmp, load_snapshot, median, quick, sync_all, target_dir, typical, write_report};

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracespool::spool::{Encoding, Spool, SpoolOptions, SyncPolicy};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const GIB: u64 = 1024 * 1024 * 1024;
const CHILD_ENV: &str = "TRACESPOOL_BENCH_CHILD";
/// `compression`: run section 4 only, and write no report.
const ONLY_ENV: &str = "TRACESPOOL_BENCH_SPOOL_ONLY";
/// Temporary directories are named `spool-bench-<pid>-…` so that a later run can remove the
/// leftovers of one that was interrupted (and only those: its pid is gone).
const TMP_PREFIX: &str = "spool-bench-";

const TARGET_RAW_RATIO: f64 = bench_schema::spool::RAW_DISK_RATIO.aim;
const TARGET_SMALL_APPENDS_PER_SEC: f64 = bench_schema::spool::SMALL_APPENDS_PER_SEC.aim;
const TARGET_LATENCY_RATIO: f64 = bench_schema::spool::LATENCY_RATIO.aim;
const TARGET_PEAK_RSS_MIB: f64 = bench_schema::spool::PEAK_RSS_MIB.aim;
const TARGET_HELD_RATIO: f64 = bench_schema::spool::HELD_RATIO.aim;
/// Spans in the benches' typical batch (as the delivery bench flushes them).
const TYPICAL_SPANS: usize = 10;

/// How much work each section does.
struct Scale {
    quick: bool,
    reps: usize,
    /// Aimed duration of one repetition of an append-throughput case.
    rep_secs: f64,
    /// Caps on one repetition: bytes written (page cache and disk space) and appends. The
    /// 64 KiB case writes this three times per repetition (spool, raw, raw in the spool's
    /// layout): kept below the point where background writeback starts (dirty_background_ratio),
    /// or it measures the disk and the other load rather than the write path.
    rep_bytes_cap: u64,
    rep_count_cap: u64,
    /// The 64 KiB spool and raw writes alternate every this many bytes.
    pair_chunk_bytes: u64,
    probe: Duration,
    /// Payload bytes the "full" spool is filled with (64 KiB batches).
    fill_bytes: u64,
    lat_rounds: usize,
    lat_per_round: usize,
    lat_warmup: usize,
    open_iters_never: usize,
    open_iters_always: usize,
}

impl Scale {
    fn full() -> Scale {
        Scale {
            quick: false,
            reps: 7,
            rep_secs: 0.5,
            rep_bytes_cap: 256 * MIB as u64,
            rep_count_cap: 200_000,
            pair_chunk_bytes: 16 * MIB as u64,
            probe: Duration::from_millis(250),
            fill_bytes: GIB,
            lat_rounds: 20,
            lat_per_round: 1_000,
            lat_warmup: 1_000,
            open_iters_never: 1_000,
            open_iters_always: 150,
        }
    }

    fn quick() -> Scale {
        Scale {
            quick: true,
            reps: 1,
            rep_secs: 0.02,
            rep_bytes_cap: 8 * MIB as u64,
            rep_count_cap: 2_000,
            pair_chunk_bytes: MIB as u64,
            probe: Duration::from_millis(10),
            fill_bytes: 16 * MIB as u64,
            lat_rounds: 2,
            lat_per_round: 100,
            lat_warmup: 10,
            open_iters_never: 10,
            open_iters_always: 3,
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_read(&spec);
        return;
    }
    let quick = quick();
    let scale = if quick { Scale::quick() } else { Scale::full() };
    let started = Instant::now();

    let target = target_dir();
    let tmp = Tmp::new(&target.join("bench-tmp"), TMP_PREFIX);
    let machine = Machine::probe(&target, &tmp.base);
    machine.print(scale.quick);

    // Section 4 alone (for the figures of compression at rest): no report.
    if std::env::var(ONLY_ENV).is_ok_and(|v| v == "compression") {
        bench_compression(&tmp, &scale);
        tmp.finish();
        return;
    }
    let appends = bench_appends(&tmp, &scale);
    let latency = bench_latency_and_read(&tmp, &scale);
    let compression = bench_compression(&tmp, &scale);

    let total_secs = started.elapsed().as_secs_f64();
    let report = Report {
        machine,
        appends,
        latency,
        compression,
        total_secs,
        load_end: load_snapshot(),
    };
    report.print_summary();
    tmp.finish();

    if scale.quick {
        println!("\n(quick run: figures are not meaningful; no report written)");
    } else {
        let path = write_report::<bench_schema::spool::Spool>(&report.to_json());
        println!("\nreport: {}", path.display());
    }
}

// ---------------------------------------------------------------------------------------------
// Section 1 and 2: append throughput, and the raw disk.

struct AppendCase {
    size: usize,
    sync: SyncPolicy,
    n: u64,
    /// Seconds of each repetition.
    secs: Vec<f64>,
}

impl AppendCase {
    fn median_secs(&self) -> f64 {
        median(self.secs.clone())
    }
    fn batches_per_sec(&self) -> f64 {
        self.n as f64 / self.median_secs()
    }
    fn mib_per_sec(&self) -> f64 {
        mib(self.n * self.size as u64) / self.median_secs()
    }
    /// Per-repetition MiB/s, for the spread.
    fn mib_per_sec_runs(&self) -> Vec<f64> {
        let m = mib(self.n * self.size as u64);
        self.secs.iter().map(|s| m / s).collect()
    }
    fn to_json(&self) -> Value {
        json!({
            "payload_bytes": self.size,
            "sync": sync_name(self.sync),
            "batches_per_rep": self.n,
            "reps_secs": self.secs,
            "batches_per_sec": self.batches_per_sec(),
            "mib_per_sec": self.mib_per_sec(),
            "mib_per_sec_runs": self.mib_per_sec_runs(),
            "us_per_append": 1e6 / self.batches_per_sec(),
        })
    }
}

/// The raw baselines of the 64 KiB / Never case, measured in the same repetitions.
#[derive(Default)]
struct RawDisk {
    block: usize,
    n: u64,
    /// Per repetition: seconds of plain `write_all`s (page cache only).
    write_secs: Vec<f64>,
    /// Per repetition: the same writes plus the final fsync of the file and its directory.
    fsync_secs: Vec<f64>,
    /// Per repetition: the same blocks written in the spool's layout (page cache only), and
    /// those writes plus their final fsync.
    framed_secs: Vec<f64>,
    framed_fsync_secs: Vec<f64>,
    /// Per repetition: the spool's appends plus the final fsync of every file of the spool and
    /// of its directory (the spool's appends alone are the case's `secs`).
    spool_fsync_secs: Vec<f64>,
}

impl RawDisk {
    fn mib_per_sec(&self, secs: &[f64]) -> f64 {
        mib(self.n * self.block as u64) / median(secs.to_vec())
    }
}

struct Appends {
    cases: Vec<AppendCase>,
    raw: RawDisk,
}

impl Appends {
    fn case(&self, size: usize, sync: SyncPolicy) -> &AppendCase {
        self.cases
            .iter()
            .find(|c| c.size == size && c.sync == sync)
            .expect("case measured")
    }
    /// Raw time / spool time per repetition (the same bytes, so spool MiB/s / raw MiB/s).
    fn ratios_per_rep(spool: &[f64], raw: &[f64]) -> Vec<f64> {
        spool.iter().zip(raw).map(|(s, r)| r / s).collect()
    }
    /// Stricter than the target's definition: both written through to the device (each
    /// followed by one final fsync of its files and directory), paired within each repetition.
    fn device_ratio_per_rep(&self) -> Vec<f64> {
        Self::ratios_per_rep(&self.raw.spool_fsync_secs, &self.raw.fsync_secs)
    }
    fn device_ratio(&self) -> f64 {
        median(self.device_ratio_per_rep())
    }
    /// The definition: 64 KiB append throughput under `never` over the raw sequential
    /// write bandwidth of the disk (the same bytes written and fsync'd, as REFERENCE measures
    /// the disk), paired within each repetition.
    fn disk_ratio_per_rep(&self) -> Vec<f64> {
        let spool = self.case(64 * KIB, SyncPolicy::Never);
        Self::ratios_per_rep(&spool.secs, &self.raw.fsync_secs)
    }
    fn disk_ratio(&self) -> f64 {
        median(self.disk_ratio_per_rep())
    }
    /// Both left in the page cache: the write path alone, no device.
    fn page_cache_ratio_per_rep(&self) -> Vec<f64> {
        let spool = self.case(64 * KIB, SyncPolicy::Never);
        Self::ratios_per_rep(&spool.secs, &self.raw.write_secs)
    }
    fn page_cache_ratio(&self) -> f64 {
        median(self.page_cache_ratio_per_rep())
    }
    /// Against raw writes of the spool's layout, page cache only: the cost of the spool's own
    /// work.
    fn framed_ratio(&self) -> f64 {
        let spool = self.case(64 * KIB, SyncPolicy::Never);
        median(Self::ratios_per_rep(&spool.secs, &self.raw.framed_secs))
    }
    fn small_appends_per_sec(&self) -> f64 {
        self.case(KIB, SyncPolicy::Never).batches_per_sec()
    }
}

fn bench_appends(tmp: &Tmp, scale: &Scale) -> Appends {
    println!(
        "\n[1/3] append throughput ({} repetitions per case, median)",
        scale.reps
    );
    let mut cases = Vec::new();
    let mut raw = None;
    for sync in [SyncPolicy::Never, SyncPolicy::Always] {
        for size in [KIB, 64 * KIB, MIB] {
            let payload = payload(size, size as u64);
            sync_all();
            let rate = probe_rate(tmp, &payload, sync, scale.probe);
            let cap = scale
                .rep_count_cap
                .min(scale.rep_bytes_cap / size as u64)
                .max(1);
            let n = ((rate * scale.rep_secs) as u64).clamp(cap.min(20), cap);
            // The raw disk is measured with the 64 KiB / Never case, in the same repetitions.
            let with_raw = size == 64 * KIB && sync == SyncPolicy::Never;
            let mut secs = Vec::new();
            let mut raw_disk = RawDisk {
                block: size,
                n,
                ..RawDisk::default()
            };
            for rep in 0..scale.reps {
                if with_raw {
                    let chunk = (scale.pair_chunk_bytes / size as u64).max(1);
                    secs.push(paired_rep(tmp, &payload, n, chunk, rep, &mut raw_disk));
                } else {
                    secs.push(append_rep(tmp, &payload, sync, n));
                }
                sync_all();
            }
            let case = AppendCase {
                size,
                sync,
                n,
                secs,
            };
            println!(
                "  {:>6} {:<6} {:>8} batches/rep  {:>12}/s  {:>9.1} MiB/s  ({:.2} s/rep)",
                size_name(size),
                sync_name(sync),
                n,
                thousands(case.batches_per_sec()),
                case.mib_per_sec(),
                case.median_secs()
            );
            if with_raw {
                let r = &raw_disk;
                println!(
                    "  written through to the device (+ final fsync): spool {:.1} MiB/s, \
                     raw {:.1} MiB/s, raw in the spool's layout {:.1} MiB/s",
                    r.mib_per_sec(&r.spool_fsync_secs),
                    r.mib_per_sec(&r.fsync_secs),
                    r.mib_per_sec(&r.framed_fsync_secs)
                );
                println!(
                    "  page cache only: raw {:.1} MiB/s, raw in the spool's layout {:.1} MiB/s",
                    r.mib_per_sec(&r.write_secs),
                    r.mib_per_sec(&r.framed_secs)
                );
                raw = Some(raw_disk);
            }
            cases.push(case);
        }
    }
    Appends {
        cases,
        raw: raw.expect("raw disk measured"),
    }
}

/// Options of sections 1 to 3: batches stored as given (see the module doc).
fn opts(sync: SyncPolicy, max_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        max_bytes,
        sync,
        compression: Encoding::Identity,
        ..SpoolOptions::default()
    }
}

/// A plausible span count for a batch of `size` bytes (irrelevant to the cost).
fn spans_for(size: usize) -> u32 {
    (size / 512).max(1) as u32
}

/// Appends per second over a short run on a throwaway spool (also a warm-up).
fn probe_rate(tmp: &Tmp, payload: &[u8], sync: SyncPolicy, budget: Duration) -> f64 {
    let dir = tmp.dir();
    let spool = Spool::open(dir.path().join("spool"), opts(sync, 8 * GIB)).expect("open spool");
    let spans = spans_for(payload.len());
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < budget || n < 3 {
        spool.append(payload, spans).expect("append");
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Seconds taken by `n` appends of `payload` to a new spool (opening it not counted).
fn append_rep(tmp: &Tmp, payload: &[u8], sync: SyncPolicy, n: u64) -> f64 {
    let dir = tmp.dir();
    let spool = Spool::open(dir.path().join("spool"), opts(sync, 8 * GIB)).expect("open spool");
    let spans = spans_for(payload.len());
    let t = Instant::now();
    for _ in 0..n {
        spool.append(payload, spans).expect("append");
    }
    let secs = t.elapsed().as_secs_f64();
    let stats = spool.stats().expect("stats");
    assert_eq!(
        (stats.batches, stats.dropped_batches),
        (n, 0),
        "every append is stored"
    );
    secs
}

/// One repetition of the 64 KiB / Never case paired with the raw disk, in a new directory:
/// `n` blocks appended to a spool; the same `n` blocks written with plain `write_all` to a file
/// (the baseline of the target); and, to tell the spool's own cost from that of its layout, `n`
/// blocks written to a second file laid out like a segment (a 32-byte header, then each block
/// behind a 32-byte frame header: the kernel's fast path for 64 KiB-aligned writes is lost).
///
/// The three writers alternate every `chunk` blocks, rotating which goes first, so that all see
/// the same machine (page cache, other load). Then each is written through to the device by one
/// final durability step, timed on its own, in an order that rotates with `rep`:
/// - the spool: fsync of every segment file (at most 64 MiB each, so a repetition writes
///   several), then of the spool's directory (they were created and renamed into it during the
///   writes). That is what makes the batches survive a power loss, as under
///   `SyncPolicy::Always` (fdatasync of the segment per append; new segments and the directory
///   synced): the ledger is a cache, rebuilt on the first open after a reboot (boot id), and
///   appends do not write the cursor or the lock file;
/// - each raw file: fsync of the file, then of its directory.
///
/// Per-file fsyncs rather than syncfs(2): syncfs flushes the whole filesystem (the other two
/// writers' dirty pages and whatever other processes have dirty), so whichever went first would
/// pay for the others. Everything made before the writes (directories, the spool's bookkeeping
/// files, the empty raw files) is synced before the clock starts, so neither side pays for it.
///
/// Returns the spool's seconds without the durability step; the rest goes to `into`.
fn paired_rep(tmp: &Tmp, block: &[u8], n: u64, chunk: u64, rep: usize, into: &mut RawDisk) -> f64 {
    let dir = tmp.dir();
    let spool_dir = dir.path().join("spool");
    let spool = Spool::open(&spool_dir, opts(SyncPolicy::Never, 8 * GIB)).expect("open");
    let mut raw = File::create(dir.path().join("raw.bin")).expect("create raw file");
    let mut framed = File::create(dir.path().join("framed.bin")).expect("create raw file");
    framed.write_all(&[0u8; 32]).expect("raw write");
    let mut frame = vec![0u8; 32];
    frame.extend_from_slice(block);
    let spans = spans_for(block.len());
    sync_all();
    let mut secs = [0.0f64; 3];
    let mut done = 0;
    let mut turn = rep;
    while done < n {
        let m = chunk.min(n - done);
        for k in 0..3 {
            let which = (turn + k) % 3;
            let t = Instant::now();
            for _ in 0..m {
                match which {
                    0 => {
                        spool.append(block, spans).expect("append");
                    }
                    1 => raw.write_all(block).expect("raw write"),
                    _ => framed.write_all(&frame).expect("raw write"),
                }
            }
            secs[which] += t.elapsed().as_secs_f64();
        }
        done += m;
        turn += 1;
    }
    let mut durable = [0.0f64; 3];
    for k in 0..3 {
        let which = (rep + k) % 3;
        let t = Instant::now();
        match which {
            0 => {
                for segment in segment_files(&spool_dir) {
                    fsync_path(&segment);
                }
                fsync_path(&spool_dir);
            }
            1 => {
                raw.sync_all().expect("raw fsync");
                fsync_path(dir.path());
            }
            _ => {
                framed.sync_all().expect("raw fsync");
                fsync_path(dir.path());
            }
        }
        durable[which] = t.elapsed().as_secs_f64();
    }
    let stats = spool.stats().expect("stats");
    assert_eq!(
        (stats.batches, stats.dropped_batches),
        (n, 0),
        "every append is stored"
    );
    into.spool_fsync_secs.push(secs[0] + durable[0]);
    into.write_secs.push(secs[1]);
    into.fsync_secs.push(secs[1] + durable[1]);
    into.framed_secs.push(secs[2]);
    into.framed_fsync_secs.push(secs[2] + durable[2]);
    secs[0]
}

/// fsync(2) of a file or directory.
fn fsync_path(path: &Path) {
    File::open(path)
        .and_then(|f| f.sync_all())
        .unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// Section 3: latency against the spool's size (empty … 1 GiB, each point against a fresh empty
// spool); open + append. Then reading a 1 GiB spool.

/// The spool sizes at which 1 KiB append latency is measured: `k / (LAT_POINTS - 1)` of
/// `Scale::fill_bytes` for k = 0 … LAT_POINTS - 1 (0, 256 MiB, 512 MiB, 768 MiB, 1 GiB).
const LAT_POINTS: u64 = 5;

/// 1 KiB append latency (Never) at one size of the growing spool, and on a fresh empty spool
/// in the same interleaved rounds (the reference: drift and load hit both alike).
struct SizePoint {
    /// The size aimed at (the growing spool is filled with 64 KiB batches until it holds this
    /// many bytes on disk, counting the 1 KiB records of the earlier points).
    target_bytes: u64,
    /// Bytes on disk (records + headers) when the point was measured.
    spool_bytes: u64,
    segments: usize,
    /// Nanoseconds, sorted.
    lat: Vec<u64>,
    empty: Vec<u64>,
}

impl SizePoint {
    fn ratio(&self) -> f64 {
        percentile(&self.lat, 0.5) as f64 / percentile(&self.empty, 0.5).max(1) as f64
    }
}

struct Latency {
    /// The last point's distributions (the largest spool, ≥ `fill_bytes`), nanoseconds, sorted.
    empty: Vec<u64>,
    full: Vec<u64>,
    by_size: Vec<SizePoint>,
    open_never_empty: Vec<u64>,
    open_never_full: Vec<u64>,
    open_always_empty: Vec<u64>,
    open_always_full: Vec<u64>,
    /// The 64 KiB batches and seconds that filled the latency spool up to its last point.
    lat_fill_batches: u64,
    lat_fill_secs: f64,
    /// The read spool: `fill_batches` × 64 KiB and nothing else.
    fill_batches: u64,
    fill_secs: f64,
    full_bytes: u64,
    full_segments: usize,
    read: ReadResult,
}

struct ReadResult {
    raw_bytes: u64,
    raw_secs: f64,
    timed_records: u64,
    timed_bytes: u64,
    timed_secs: f64,
    total_records: u64,
    total_bytes: u64,
    total_secs: f64,
    vmhwm_start_kib: u64,
    vmhwm_kib: u64,
    left_batches: u64,
}

impl ReadResult {
    fn mib_per_sec(&self) -> f64 {
        mib(self.timed_bytes) / self.timed_secs
    }
    fn records_per_sec(&self) -> f64 {
        self.timed_records as f64 / self.timed_secs
    }
    fn raw_mib_per_sec(&self) -> f64 {
        mib(self.raw_bytes) / self.raw_secs
    }
    fn peak_rss_mib(&self) -> f64 {
        self.vmhwm_kib as f64 / 1024.0
    }
}

impl Latency {
    fn ratio(&self) -> f64 {
        percentile(&self.full, 0.5) as f64 / percentile(&self.empty, 0.5) as f64
    }
}

/// `scale.lat_rounds` rounds of `scale.lat_per_round` timed 1 KiB appends to each of `a` and
/// `b`, alternating which goes first, so that drift hits both alike. Sorted nanoseconds.
fn interleaved_appends(a: &Spool, b: &Spool, small: &[u8], scale: &Scale) -> [Vec<u64>; 2] {
    let cap = scale.lat_rounds * scale.lat_per_round;
    let mut out = [Vec::with_capacity(cap), Vec::with_capacity(cap)];
    for round in 0..scale.lat_rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let spool = if which == 0 { a } else { b };
            for _ in 0..scale.lat_per_round {
                let t = Instant::now();
                spool.append(small, 2).expect("append");
                out[which].push(t.elapsed().as_nanos() as u64);
            }
        }
    }
    for v in &mut out {
        v.sort_unstable();
    }
    out
}

/// Appends 64 KiB batches until the spool holds `target` bytes on disk; (batches, seconds).
fn fill_to(spool: &Spool, block: &[u8], target: u64) -> (u64, f64) {
    const FRAME: u64 = 32;
    let have = spool.stats().expect("stats").bytes;
    let n = target
        .saturating_sub(have)
        .div_ceil(block.len() as u64 + FRAME);
    let t = Instant::now();
    for _ in 0..n {
        spool.append(block, 128).expect("fill");
    }
    (n, t.elapsed().as_secs_f64())
}

fn bench_latency_and_read(tmp: &Tmp, scale: &Scale) -> Latency {
    let max_bytes = 4 * GIB;
    let full_dir = tmp.dir();
    let full_path = full_dir.path().join("spool");
    let block = payload(64 * KIB, 7);
    let small = payload(KIB, 11);

    println!(
        "\n[2/3] append latency (1 KiB, Never) against the spool's size, 0 … {}, each size \
         against a fresh empty spool",
        size_name(scale.fill_bytes as usize)
    );
    let mut by_size = Vec::new();
    let (mut lat_fill_batches, mut lat_fill_secs) = (0u64, 0.0f64);
    // The empty spool of the last point is kept for the open + append measurements.
    let mut last_empty = None;
    {
        let f = Spool::open(&full_path, opts(SyncPolicy::Never, max_bytes)).expect("open");
        for _ in 0..scale.lat_warmup {
            f.append(&small, 2).expect("append");
        }
        println!(
            "  {:>10} {:>10} {:>9} {:>10} {:>10} {:>12} {:>12} {:>7}",
            "target", "spool", "segments", "p50", "p99", "empty p50", "empty p99", "ratio"
        );
        for k in 0..LAT_POINTS {
            let target = scale.fill_bytes * k / (LAT_POINTS - 1);
            let (n, secs) = fill_to(&f, &block, target);
            if n > 0 {
                lat_fill_batches += n;
                lat_fill_secs += secs;
                // Written back before timing, so that writeback does not land in the samples.
                sync_all();
            }
            let empty_dir = tmp.dir();
            let empty_path = empty_dir.path().join("spool");
            let e = Spool::open(&empty_path, opts(SyncPolicy::Never, max_bytes)).expect("open");
            for _ in 0..scale.lat_warmup {
                e.append(&small, 2).expect("append");
            }
            let spool_bytes = f.stats().expect("stats").bytes;
            let [empty, lat] = interleaved_appends(&e, &f, &small, scale);
            let stats = f.stats().expect("stats");
            assert_eq!(stats.dropped_batches, 0, "nothing dropped from the spool");
            let point = SizePoint {
                target_bytes: target,
                spool_bytes,
                segments: count_segments(&full_path),
                lat,
                empty,
            };
            println!(
                "  {:>10} {:>6.0} MiB {:>9} {:>10} {:>10} {:>12} {:>12} {:>7.2}",
                size_name(target as usize),
                mib(point.spool_bytes),
                point.segments,
                micros(percentile(&point.lat, 0.5)),
                micros(percentile(&point.lat, 0.99)),
                micros(percentile(&point.empty, 0.5)),
                micros(percentile(&point.empty, 0.99)),
                point.ratio()
            );
            by_size.push(point);
            drop(e);
            last_empty = Some(empty_dir);
        }
    }
    println!(
        "  latency spool filled with {lat_fill_batches} × 64 KiB in {lat_fill_secs:.2} s \
         ({:.0} MiB/s)",
        mib(lat_fill_batches * 64 * KIB as u64) / lat_fill_secs.max(1e-9)
    );
    let last = by_size.last().expect("latency points measured");
    let (empty, full, full_bytes, full_segments) = (
        last.empty.clone(),
        last.lat.clone(),
        last.spool_bytes,
        last.segments,
    );
    let empty_dir = last_empty.expect("an empty spool");
    let empty_path = empty_dir.path().join("spool");

    // One hook process: open the spool, append one batch, close it.
    let open_append = |path: &Path, sync: SyncPolicy| -> u64 {
        let t = Instant::now();
        let spool = Spool::open(path, opts(sync, max_bytes)).expect("open");
        spool.append(&small, 2).expect("append");
        drop(spool);
        t.elapsed().as_nanos() as u64
    };
    let mut open_sets: [Vec<u64>; 4] = Default::default();
    for (k, (sync, iters)) in [
        (SyncPolicy::Never, scale.open_iters_never),
        (SyncPolicy::Always, scale.open_iters_always),
    ]
    .into_iter()
    .enumerate()
    {
        sync_all();
        for i in 0..iters {
            if i % 2 == 0 {
                open_sets[2 * k].push(open_append(&empty_path, sync));
                open_sets[2 * k + 1].push(open_append(&full_path, sync));
            } else {
                open_sets[2 * k + 1].push(open_append(&full_path, sync));
                open_sets[2 * k].push(open_append(&empty_path, sync));
            }
        }
    }
    for set in &mut open_sets {
        set.sort_unstable();
    }
    let [
        open_never_empty,
        open_never_full,
        open_always_empty,
        open_always_full,
    ] = open_sets;
    println!(
        "  open + 1 append, median: Never empty {} full {}; Always empty {} full {}",
        micros(percentile(&open_never_empty, 0.5)),
        micros(percentile(&open_never_full, 0.5)),
        micros(percentile(&open_always_empty, 0.5)),
        micros(percentile(&open_always_full, 0.5)),
    );
    drop(empty_dir);
    drop(full_dir);

    println!(
        "\n[3/3] reading a {} spool of 64 KiB batches (child process, Never, page cache warm)",
        size_name(scale.fill_bytes as usize)
    );
    // A spool of 64 KiB batches only (the latency spool also holds the 1 KiB records of its
    // points): the reader is timed on these.
    let read_dir = tmp.dir();
    let read_path = read_dir.path().join("spool");
    let fill_batches = scale.fill_bytes / (64 * KIB) as u64;
    let fill_secs = {
        let spool = Spool::open(&read_path, opts(SyncPolicy::Never, max_bytes)).expect("open");
        let t = Instant::now();
        for _ in 0..fill_batches {
            spool.append(&block, 128).expect("fill");
        }
        t.elapsed().as_secs_f64()
    };
    let wb = Instant::now();
    sync_all();
    println!(
        "  filled: {fill_batches} × 64 KiB in {fill_secs:.2} s ({:.0} MiB/s); writeback {:.2} s",
        mib(fill_batches * 64 * KIB as u64) / fill_secs,
        wb.elapsed().as_secs_f64()
    );
    let (raw_bytes, raw_secs) = raw_read(&read_path);
    let read = spawn_reader(&read_path, fill_batches);
    println!(
        "  raw read of the segment files: {:.0} MiB/s; \
         spool read + ack: {:.0} MiB/s, {} records/s; peak RSS {:.1} MiB",
        mib(raw_bytes) / raw_secs,
        read.mib_per_sec(),
        thousands(read.records_per_sec()),
        read.peak_rss_mib()
    );
    assert_eq!(read.left_batches, 0, "the reader drained the spool");
    drop(read_dir);

    Latency {
        empty,
        full,
        by_size,
        open_never_empty,
        open_never_full,
        open_always_empty,
        open_always_full,
        lat_fill_batches,
        lat_fill_secs,
        fill_batches,
        fill_secs,
        full_bytes,
        full_segments,
        read: ReadResult {
            raw_bytes,
            raw_secs,
            ..read
        },
    }
}

fn count_segments(dir: &Path) -> usize {
    segment_files(dir).len()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read spool dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// Reads every segment file with plain 64 KiB reads: the baseline for the reader.
fn raw_read(dir: &Path) -> (u64, f64) {
    let mut buf = vec![0u8; 64 * KIB];
    let files = segment_files(dir);
    let t = Instant::now();
    let mut total = 0u64;
    for path in files {
        let mut f = File::open(&path).expect("open segment");
        loop {
            let n = f.read(&mut buf).expect("read segment");
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    (total, t.elapsed().as_secs_f64())
}

fn spawn_reader(dir: &Path, timed_records: u64) -> ReadResult {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .env(CHILD_ENV, format!("read:{timed_records}:{}", dir.display()))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the reader child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reader child failed: {}\n{text}",
        out.status
    );
    let kv: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| -> u64 {
        kv.get(k)
            .unwrap_or_else(|| panic!("child did not report {k}:\n{text}"))
            .parse()
            .unwrap_or_else(|_| panic!("bad {k} from the child:\n{text}"))
    };
    let ns = |k: &str| get(k) as f64 / 1e9;
    ReadResult {
        raw_bytes: 0,
        raw_secs: 0.0,
        timed_records: get("timed_records"),
        timed_bytes: get("timed_bytes"),
        timed_secs: ns("timed_ns"),
        total_records: get("total_records"),
        total_bytes: get("total_bytes"),
        total_secs: ns("total_ns"),
        vmhwm_start_kib: get("vmhwm_start_kib"),
        vmhwm_kib: get("vmhwm_kib"),
        left_batches: get("left_batches"),
    }
}

/// The child: reads and acknowledges the whole spool, timing the first `timed` records.
fn child_read(spec: &str) {
    let rest = spec
        .strip_prefix("read:")
        .unwrap_or_else(|| panic!("{CHILD_ENV}: expected read:<n>:<dir>, got {spec}"));
    let (timed, dir) = rest.split_once(':').expect("read:<n>:<dir>");
    let timed: u64 = timed.parse().expect("record count");
    let vmhwm_start = vm_hwm_kib();
    let spool = Spool::open(dir, opts(SyncPolicy::Never, 4 * GIB)).expect("open spool");
    let mut reader = spool.reader().expect("flush lease");
    let (mut records, mut bytes) = (0u64, 0u64);
    let (mut timed_ns, mut timed_bytes) = (None, 0);
    let t = Instant::now();
    while let Some(record) = reader.next().expect("next") {
        bytes += record.payload.len() as u64;
        reader.ack(&record).expect("ack");
        records += 1;
        if records == timed {
            timed_ns = Some(t.elapsed().as_nanos());
            timed_bytes = bytes;
        }
    }
    let total_ns = t.elapsed().as_nanos();
    drop(reader);
    let left = spool.stats().expect("stats").batches;
    let hwm = vm_hwm_kib();
    let mut out = std::io::stdout().lock();
    let timed_ns = timed_ns.unwrap_or(total_ns);
    let timed_records = timed.min(records);
    let timed_bytes = if timed_records == records {
        bytes
    } else {
        timed_bytes
    };
    writeln!(
        out,
        "timed_records={timed_records}\ntimed_bytes={timed_bytes}\ntimed_ns={timed_ns}\n\
         total_records={records}\ntotal_bytes={bytes}\ntotal_ns={total_ns}\n\
         vmhwm_start_kib={vmhwm_start}\nvmhwm_kib={hwm}\nleft_batches={left}"
    )
    .expect("write to the parent");
}

fn vm_hwm_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

// ---------------------------------------------------------------------------------------------
// The report.

struct Report {
    machine: Machine,
    appends: Appends,
    latency: Latency,
    compression: Compression,
    total_secs: f64,
    load_end: String,
}

// ---------------------------------------------------------------------------------------------
// Section 4: compression at rest.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A typical batch of about 1 KiB: spans as a hook records them.
    Typical,
    /// 1 KiB of incompressible bytes: gzip is tried and given up on.
    Noise,
}

struct Compression {
    /// The typical batch, encoded, and gzip-compressed.
    batch_bytes: usize,
    batch_gzip_bytes: usize,
    /// Spans a 64 MiB spool holds of the typical batch: stored as they are, and compressed.
    held: [u64; 2],
    /// The 1 KiB payloads of each kind.
    small_bytes: [usize; 2],
    /// Appends per second of each repetition: [kind][none, gzip].
    rates: [[Vec<f64>; 2]; 2],
}

impl Compression {
    fn held_ratio(&self) -> f64 {
        self.held[1] as f64 / self.held[0].max(1) as f64
    }

    fn rate(&self, kind: Kind, encoding: Encoding) -> f64 {
        median(self.rates[kind as usize][encoding_index(encoding)].clone())
    }

    fn to_json(&self) -> Value {
        let rates = |kind: Kind| {
            json!({
                "payload_bytes": self.small_bytes[kind as usize],
                "none_appends_per_sec": self.rates[kind as usize][0],
                "gzip_appends_per_sec": self.rates[kind as usize][1],
                "none_median": self.rate(kind, Encoding::Identity),
                "gzip_median": self.rate(kind, Encoding::Gzip),
            })
        };
        json!({
            "typical_batch_spans": TYPICAL_SPANS,
            "typical_batch_bytes": self.batch_bytes,
            "typical_batch_gzip_bytes": self.batch_gzip_bytes,
            "spans_held_64mib_none": self.held[0],
            "spans_held_64mib_gzip": self.held[1],
            "held_ratio": self.held_ratio(),
            "small_appends_never_typical": rates(Kind::Typical),
            "small_appends_never_noise": rates(Kind::Noise),
        })
    }
}

fn encoding_index(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Identity => 0,
        Encoding::Gzip => 1,
    }
}

fn with_compression(sync: SyncPolicy, max_bytes: u64, compression: Encoding) -> SpoolOptions {
    SpoolOptions {
        compression,
        ..opts(sync, max_bytes)
    }
}

fn bench_compression(tmp: &Tmp, scale: &Scale) -> Compression {
    println!("\n[4/4] compression at rest");
    let encoder = typical::encoder();
    let batch = typical::encoded(&encoder, 0, TYPICAL_SPANS);
    let batch_gzip_bytes = tracespool::gzip::compress(&batch).len();
    let bound = if scale.quick { 4 * MIB } else { 64 * MIB } as u64;

    // Spans held: distinct typical batches appended until the bound starts dropping.
    let mut held = [0u64; 2];
    for encoding in [Encoding::Identity, Encoding::Gzip] {
        let dir = tmp.dir();
        let spool = Spool::open(
            dir.path().join("spool"),
            with_compression(SyncPolicy::Never, bound, encoding),
        )
        .expect("open spool");
        for i in 0.. {
            let payload = typical::encoded(&encoder, i, TYPICAL_SPANS);
            let outcome = spool
                .append(&payload, TYPICAL_SPANS as u32)
                .expect("append");
            if outcome.dropped_batches > 0 {
                break;
            }
        }
        held[encoding_index(encoding)] = spool.stats().expect("stats").spans;
    }
    println!(
        "  typical batch: {TYPICAL_SPANS} spans, {} bytes ({} gzip-compressed)",
        batch.len(),
        batch_gzip_bytes
    );
    println!(
        "  spans held by {} MiB: none {}, gzip {} -> {:.2}x",
        bound / MIB as u64,
        held[0],
        held[1],
        held[1] as f64 / held[0].max(1) as f64
    );

    // 1 KiB appends: a typical batch of about that size, and noise; none and gzip interleaved.
    let spans_in_1k = (1..TYPICAL_SPANS)
        .find(|&n| typical::encoded(&encoder, 0, n + 1).len() > KIB)
        .unwrap_or(1);
    let small = [typical::encoded(&encoder, 0, spans_in_1k), payload(KIB, 7)];
    let n: u64 = if scale.quick { 2_000 } else { 100_000 };
    let mut rates: [[Vec<f64>; 2]; 2] = Default::default();
    for rep in 0..scale.reps {
        for kind in [Kind::Typical, Kind::Noise] {
            // The order rotates between repetitions.
            let order = if rep % 2 == 0 {
                [Encoding::Identity, Encoding::Gzip]
            } else {
                [Encoding::Gzip, Encoding::Identity]
            };
            for encoding in order {
                let dir = tmp.dir();
                let spool = Spool::open(
                    dir.path().join("spool"),
                    with_compression(SyncPolicy::Never, 8 * GIB, encoding),
                )
                .expect("open spool");
                let payload = &small[kind as usize];
                let t = Instant::now();
                for _ in 0..n {
                    spool.append(payload, 2).expect("append");
                }
                let rate = n as f64 / t.elapsed().as_secs_f64();
                rates[kind as usize][encoding_index(encoding)].push(rate);
                sync_all();
            }
        }
    }
    let c = Compression {
        batch_bytes: batch.len(),
        batch_gzip_bytes,
        held,
        small_bytes: [small[0].len(), small[1].len()],
        rates,
    };
    for (kind, name) in [(Kind::Typical, "typical"), (Kind::Noise, "noise")] {
        println!(
            "  1 KiB appends/s (Never), {name} ({} bytes): none {}, gzip {}",
            c.small_bytes[kind as usize],
            thousands(c.rate(kind, Encoding::Identity)),
            thousands(c.rate(kind, Encoding::Gzip)),
        );
    }
    c
}

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}

impl Report {
    fn targets(&self) -> [(&'static str, String, String, bool); 6] {
        let a = &self.appends;
        let l = &self.latency;
        [
            (
                "64 KiB appends (never) / raw disk bandwidth",
                format!("{:.2}", a.disk_ratio()),
                format!(">= {TARGET_RAW_RATIO:.2}"),
                a.disk_ratio() >= TARGET_RAW_RATIO,
            ),
            (
                "1 KiB appends/s (Never)",
                thousands(a.small_appends_per_sec()),
                format!(">= {}", thousands(TARGET_SMALL_APPENDS_PER_SEC)),
                a.small_appends_per_sec() >= TARGET_SMALL_APPENDS_PER_SEC,
            ),
            (
                "median latency, 1 GiB / empty",
                format!("{:.2}", l.ratio()),
                format!("<= {TARGET_LATENCY_RATIO:.1}"),
                l.ratio() <= TARGET_LATENCY_RATIO,
            ),
            (
                "peak RSS reading 1 GiB",
                format!("{:.1} MiB", l.read.peak_rss_mib()),
                format!("<= {TARGET_PEAK_RSS_MIB:.0} MiB"),
                l.read.peak_rss_mib() <= TARGET_PEAK_RSS_MIB,
            ),
            (
                "spans held by 64 MiB, gzip / none",
                format!("{:.2}", self.compression.held_ratio()),
                format!(">= {TARGET_HELD_RATIO:.1}"),
                self.compression.held_ratio() >= TARGET_HELD_RATIO,
            ),
            (
                "1 KiB typical appends/s (Never, gzip)",
                thousands(self.compression.rate(Kind::Typical, Encoding::Gzip)),
                format!(">= {}", thousands(TARGET_SMALL_APPENDS_PER_SEC)),
                self.compression.rate(Kind::Typical, Encoding::Gzip)
                    >= TARGET_SMALL_APPENDS_PER_SEC,
            ),
        ]
    }

    fn print_summary(&self) {
        let a = &self.appends;
        let l = &self.latency;
        let rule = "-".repeat(86);
        println!("\n{rule}\nSUMMARY\n{rule}");
        println!(
            "Append throughput (payload bytes; median of {} reps; spool opened beforehand)",
            a.case(KIB, SyncPolicy::Never).secs.len()
        );
        println!(
            "  {:<8} {:<7} {:>9} {:>13} {:>10} {:>10}   MiB/s per rep",
            "batch", "sync", "batches", "batches/s", "MiB/s", "µs/append"
        );
        for c in &a.cases {
            let runs: Vec<String> = c
                .mib_per_sec_runs()
                .iter()
                .map(|m| format!("{m:.1}"))
                .collect();
            println!(
                "  {:<8} {:<7} {:>9} {:>13} {:>10.1} {:>10.1}   {}",
                size_name(c.size),
                sync_name(c.sync),
                c.n,
                thousands(c.batches_per_sec()),
                c.mib_per_sec(),
                1e6 / c.batches_per_sec(),
                runs.join(" ")
            );
        }
        let r = &a.raw;
        let per_rep = |v: Vec<f64>| -> String {
            let v: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
            v.join(" ")
        };
        let step = |with: &[f64], without: &[f64]| -> f64 {
            median(
                with.to_vec()
                    .iter()
                    .zip(without)
                    .map(|(w, o)| w - o)
                    .collect::<Vec<_>>(),
            )
        };
        let spool_secs = &a.case(64 * KIB, SyncPolicy::Never).secs;
        println!(
            "\n64 KiB appends (Never) vs raw 64 KiB write_all of the same bytes\n  \
             ({} × 64 KiB per rep, same dir, paired in each rep; medians)",
            r.n
        );
        println!(
            "  RATIO 64 KiB append throughput (never) / raw disk bandwidth (raw write + fsync of \
             the same bytes): {:.2}\n    per rep: {}",
            a.disk_ratio(),
            per_rep(a.disk_ratio_per_rep())
        );
        println!(
            "  stricter, informational: both written through to the device (each + one final \
             fsync of its files and dir):"
        );
        println!(
            "    spool {:.1} MiB/s, raw {:.1} MiB/s (final fsync step, median: spool {:.2} s, \
             raw {:.2} s)",
            r.mib_per_sec(&r.spool_fsync_secs),
            r.mib_per_sec(&r.fsync_secs),
            step(&r.spool_fsync_secs, spool_secs),
            step(&r.fsync_secs, &r.write_secs)
        );
        println!(
            "    ratio 64 KiB appends (never) + final fsync / raw + final fsync: {:.2}\n      \
             per rep: {}",
            a.device_ratio(),
            per_rep(a.device_ratio_per_rep())
        );
        println!(
            "    raw in the spool's layout, written through: {:.1} MiB/s",
            r.mib_per_sec(&r.framed_fsync_secs)
        );
        println!(
            "  secondary, page cache only (no fsync on either side: the write path, not the disk):"
        );
        println!(
            "    spool {:.1} MiB/s, raw {:.1} MiB/s; ratio 64 KiB Never / raw (page cache): \
             {:.2}\n      per rep: {}",
            a.case(64 * KIB, SyncPolicy::Never).mib_per_sec(),
            r.mib_per_sec(&r.write_secs),
            a.page_cache_ratio(),
            per_rep(a.page_cache_ratio_per_rep())
        );
        println!(
            "    raw in the spool's layout (32 B header before each block, so not 64 KiB-aligned): \
             {:.1} MiB/s\n    ratio 64 KiB Never / raw in the spool's layout (page cache; the \
             spool's own overhead): {:.2}",
            r.mib_per_sec(&r.framed_secs),
            a.framed_ratio()
        );

        println!(
            "\nAppend latency, 1 KiB, Never ({} appends each, interleaved)",
            l.empty.len()
        );
        println!(
            "  {:<34} {:>10} {:>10} {:>10} {:>10}",
            "spool", "p50", "p90", "p99", "max"
        );
        let full_name = format!(
            "full: {:.0} MiB, {} segments",
            mib(l.full_bytes),
            l.full_segments
        );
        for (name, v) in [("empty", &l.empty), (full_name.as_str(), &l.full)] {
            println!(
                "  {:<34} {:>10} {:>10} {:>10} {:>10}",
                name,
                micros(percentile(v, 0.5)),
                micros(percentile(v, 0.9)),
                micros(percentile(v, 0.99)),
                micros(*v.last().unwrap_or(&0)),
            );
        }
        println!(
            "  median ratio full / empty: {:.2}; p99 ratio: {:.2}",
            l.ratio(),
            percentile(&l.full, 0.99) as f64 / percentile(&l.empty, 0.99).max(1) as f64
        );
        println!(
            "\nAppend latency, 1 KiB, Never, against the spool's size ({} appends per point, \
             interleaved with a fresh empty spool)",
            l.by_size.first().map_or(0, |p| p.lat.len())
        );
        println!(
            "  {:>10} {:>10} {:>9} {:>10} {:>10} {:>10} {:>12} {:>7}",
            "target", "spool MiB", "segments", "p50", "p90", "p99", "empty p50", "ratio"
        );
        for p in &l.by_size {
            println!(
                "  {:>10} {:>10.0} {:>9} {:>10} {:>10} {:>10} {:>12} {:>7.2}",
                size_name(p.target_bytes as usize),
                mib(p.spool_bytes),
                p.segments,
                micros(percentile(&p.lat, 0.5)),
                micros(percentile(&p.lat, 0.9)),
                micros(percentile(&p.lat, 0.99)),
                micros(percentile(&p.empty, 0.5)),
                p.ratio()
            );
        }
        println!("\nOpen spool + 1 append of 1 KiB + close (one hook process, excluding exec)");
        println!(
            "  {:<8} {:>6} {:>12} {:>12} {:>12} {:>12}",
            "sync", "n", "empty p50", "empty p99", "full p50", "full p99"
        );
        for (sync, e, f) in [
            ("Never", &l.open_never_empty, &l.open_never_full),
            ("Always", &l.open_always_empty, &l.open_always_full),
        ] {
            println!(
                "  {:<8} {:>6} {:>12} {:>12} {:>12} {:>12}",
                sync,
                e.len(),
                micros(percentile(e, 0.5)),
                micros(percentile(e, 0.99)),
                micros(percentile(f, 0.5)),
                micros(percentile(f, 0.99)),
            );
        }

        let r = &l.read;
        println!(
            "\nRead + ack, Never, child process, page cache warm \
             (filled: {} × 64 KiB at {:.0} MiB/s)",
            l.fill_batches,
            mib(l.fill_batches * 64 * KIB as u64) / l.fill_secs
        );
        println!(
            "  the {} × 64 KiB records: {:.2} s, {:.0} MiB/s, {} records/s",
            r.timed_records,
            r.timed_secs,
            r.mib_per_sec(),
            thousands(r.records_per_sec())
        );
        println!(
            "  everything ({} records, {:.0} MiB, with the final acknowledgement): {:.2} s",
            r.total_records,
            mib(r.total_bytes),
            r.total_secs
        );
        println!(
            "  raw 64 KiB reads of the same segment files: {:.0} MiB/s; reader / raw: {:.2}",
            r.raw_mib_per_sec(),
            r.mib_per_sec() / r.raw_mib_per_sec()
        );
        println!(
            "  peak RSS of the reader process (VmHWM): {:.1} MiB (at start: {:.1} MiB)",
            r.peak_rss_mib(),
            r.vmhwm_start_kib as f64 / 1024.0
        );

        println!("\nTargets");
        for (name, value, target, met) in self.targets() {
            println!(
                "  {name:<50} {value:>10}   target {target:<10} {}",
                verdict(met)
            );
        }
        println!(
            "\ntotal bench time: {:.0} s; load at start: {}; at end: {}",
            self.total_secs, self.machine.load_start, self.load_end
        );
    }

    fn to_json(&self) -> Value {
        let a = &self.appends;
        let l = &self.latency;
        let r = &l.read;
        let dist = |v: &Vec<u64>| {
            json!({
                "n": v.len(),
                "p50_ns": percentile(v, 0.5),
                "p90_ns": percentile(v, 0.9),
                "p99_ns": percentile(v, 0.99),
                "max_ns": v.last().copied().unwrap_or(0),
            })
        };
        let targets: Vec<Value> = self
            .targets()
            .into_iter()
            .map(|(name, value, target, met)| {
                json!({"name": name, "value": value, "target": target, "met": met})
            })
            .collect();
        json!({
            "machine": self.machine.to_json(),
            "compression": self.compression.to_json(),
            "append_throughput": a.cases.iter().map(AppendCase::to_json).collect::<Vec<_>>(),
            "raw_disk": {
                "block_bytes": a.raw.block,
                "blocks_per_rep": a.raw.n,
                // Each writer followed by one final fsync of its files and directory.
                "device": {
                    "spool_append_plus_fsync_secs": a.raw.spool_fsync_secs,
                    "raw_write_plus_fsync_secs": a.raw.fsync_secs,
                    "spool_layout_write_plus_fsync_secs": a.raw.framed_fsync_secs,
                    "spool_mib_per_sec": a.raw.mib_per_sec(&a.raw.spool_fsync_secs),
                    "raw_mib_per_sec": a.raw.mib_per_sec(&a.raw.fsync_secs),
                    "spool_layout_mib_per_sec": a.raw.mib_per_sec(&a.raw.framed_fsync_secs),
                },
                // No fsync: the spool's own figures are the 64 KiB Never append_throughput case.
                "page_cache": {
                    "raw_write_secs": a.raw.write_secs,
                    "spool_layout_write_secs": a.raw.framed_secs,
                    "raw_mib_per_sec": a.raw.mib_per_sec(&a.raw.write_secs),
                    "spool_layout_mib_per_sec": a.raw.mib_per_sec(&a.raw.framed_secs),
                },
                // Raw time / spool time for the same bytes; medians of the per-rep ratios.
                "ratio_64k_never_to_raw_disk": a.disk_ratio(),
                "ratio_64k_never_to_raw_disk_per_rep": a.disk_ratio_per_rep(),
                "ratio_64k_never_to_raw_disk_device": a.device_ratio(),
                "ratio_64k_never_to_raw_disk_device_per_rep": a.device_ratio_per_rep(),
                "ratio_64k_never_to_raw_page_cache": a.page_cache_ratio(),
                "ratio_64k_never_to_raw_page_cache_per_rep": a.page_cache_ratio_per_rep(),
                "ratio_64k_never_to_raw_spool_layout_page_cache": a.framed_ratio(),
            },
            "small_appends_per_sec_never": a.small_appends_per_sec(),
            "latency_1k_never": {
                "empty": dist(&l.empty),
                "full": dist(&l.full),
                "full_spool_bytes": l.full_bytes,
                "full_spool_segments": l.full_segments,
                "median_ratio_full_to_empty": l.ratio(),
                // One point per spool size (0 … 1 GiB): the growing spool's latency and that of
                // a fresh empty spool timed in the same interleaved rounds.
                "by_spool_size": l.by_size.iter().map(|p| json!({
                    "target_bytes": p.target_bytes,
                    "spool_bytes": p.spool_bytes,
                    "segments": p.segments,
                    "latency": dist(&p.lat),
                    "empty": dist(&p.empty),
                    "median_ratio_to_empty": p.ratio(),
                })).collect::<Vec<_>>(),
                "fill_batches": l.lat_fill_batches,
                "fill_secs": l.lat_fill_secs,
            },
            "open_plus_append": {
                "never_empty": dist(&l.open_never_empty),
                "never_full": dist(&l.open_never_full),
                "always_empty": dist(&l.open_always_empty),
                "always_full": dist(&l.open_always_full),
            },
            "fill": {
                "batches": l.fill_batches,
                "payload_bytes": 64 * KIB,
                "secs": l.fill_secs,
            },
            "read": {
                "records": r.timed_records,
                "payload_bytes": r.timed_bytes,
                "secs": r.timed_secs,
                "mib_per_sec": r.mib_per_sec(),
                "records_per_sec": r.records_per_sec(),
                "all_records": r.total_records,
                "all_payload_bytes": r.total_bytes,
                "all_secs": r.total_secs,
                "raw_read_bytes": r.raw_bytes,
                "raw_read_mib_per_sec": r.raw_mib_per_sec(),
                "peak_rss_kib": r.vmhwm_kib,
                "rss_at_start_kib": r.vmhwm_start_kib,
            },
            "targets": targets,
            "total_secs": self.total_secs,
            "load_at_end": self.load_end,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The machine.

struct Machine {
    cpus: usize,
    cpu_model: String,
    kernel: String,
    mem_total: String,
    /// `df -PT` of the bench directory: device, type, mount point.
    fs: (String, String, String),
    tmp_dir: PathBuf,
    same_fs_as_target: bool,
    slash_tmp_same_fs: bool,
    dirty_ratio: String,
    load_start: String,
}

impl Machine {
    fn probe(target: &Path, bench_dir: &Path) -> Machine {
        let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let read = |p: &str| {
            fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".into())
        };
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_else(|| "?".into()),
            kernel: read("/proc/sys/kernel/osrelease"),
            mem_total: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or_else(
                    || "?".into(),
                    |k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0),
                ),
            fs: df(bench_dir),
            tmp_dir: bench_dir.to_owned(),
            same_fs_as_target: dev(target).is_some() && dev(target) == dev(bench_dir),
            slash_tmp_same_fs: dev(Path::new("/tmp")) == dev(bench_dir),
            load_start: load_snapshot(),
            dirty_ratio: format!(
                "{} / {} %",
                read("/proc/sys/vm/dirty_background_ratio"),
                read("/proc/sys/vm/dirty_ratio")
            ),
        }
    }

    fn print(&self, quick: bool) {
        println!(
            "tracespool spool bench{}",
            if quick { " (QUICK smoke run)" } else { "" }
        );
        println!(
            "  machine: {} CPUs ({}), {} RAM, Linux {}",
            self.cpus, self.cpu_model, self.mem_total, self.kernel
        );
        println!(
            "  spools in {}: {} {} mounted on {} (same filesystem as target/: {}; /tmp too: {})",
            self.tmp_dir.display(),
            self.fs.0,
            self.fs.1,
            self.fs.2,
            yes_no(self.same_fs_as_target),
            yes_no(self.slash_tmp_same_fs)
        );
        println!(
            "  vm.dirty_background_ratio / dirty_ratio: {} \
             (writes under Never land in the page cache)",
            self.dirty_ratio
        );
        println!("  load at start: {}", self.load_start);
    }

    fn to_json(&self) -> Value {
        json!({
            "cpus": self.cpus,
            "cpu_model": self.cpu_model,
            "kernel": self.kernel,
            "mem_total": self.mem_total,
            "bench_dir": self.tmp_dir.display().to_string(),
            "filesystem": {"device": self.fs.0, "type": self.fs.1, "mounted_on": self.fs.2},
            "same_fs_as_target": self.same_fs_as_target,
            "slash_tmp_same_fs": self.slash_tmp_same_fs,
            "dirty_background_ratio_and_dirty_ratio": self.dirty_ratio,
            "load_at_start": self.load_start,
        })
    }
}

fn df(path: &Path) -> (String, String, String) {
    let unknown = || ("?".to_owned(), "?".to_owned(), "?".to_owned());
    let Ok(out) = Command::new("df").arg("-PT").arg(path).output() else {
        return unknown();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text.lines().nth(1) else {
        return unknown();
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 7 {
        return unknown();
    }
    (f[0].to_owned(), f[1].to_owned(), f[6..].join(" "))
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

/// Incompressible bytes, the same for a given seed.
fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = test_peers::XorShift::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(size);
    v
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn micros(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1000.0)
}

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn size_name(bytes: usize) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

fn sync_name(s: SyncPolicy) -> &'static str {
    match s {
        SyncPolicy::Never => "Never",
        SyncPolicy::Always => "Always",
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
