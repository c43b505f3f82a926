//! A hook in front of a backlog: what `tracespool exec -- true` pays when its spool holds a
//! full 64 MiB backlog and the backend (rotel) is up, and how fast the detached drain it starts
//! empties a backlog, against `tracespool flush` emptying the same one.
//!
//! 1. Hook overhead. A template spool is filled once to its 64 MiB bound with the hook-sized
//!    batches a fleet of hooks leaves behind (one typical span each, stored as a hook stores it:
//!    gzip-compressed). Each round copies it (not timed), then times, in an order that alternates,
//!    `exec -- true` on the copy and `exec -- true` on an empty spool, both against rotel: the
//!    difference of the medians is what the backlog costs the hook (target: at most 5 ms). The
//!    copy's drain is given `--drain-budget 100ms` and waited for before the next round, so that
//!    it does not load the machine under the next timing. A few rounds with `--drain inline` show
//!    what the hook paid before background drains (up to its budget).
//! 2. Drain throughput. A smaller template (20 000 batches of the typical 10 spans) is copied
//!    for each repetition and emptied either by `flush` or by the drain an `exec -- true`
//!    starts (timed from the spawn of `exec` until the drain process is gone, the spool
//!    checked empty); repetitions alternate, and the ratio of the medians (drain / flush
//!    batches per second) is the figure (target: at least 0.8).
//!
//! `cargo bench --bench drain` prints a table and writes `target/bench-report/drain.json`.
//! Without `--bench`, or with `TRACESPOOL_BENCH_QUICK=1`, a smoke run with small templates
//! writes nothing. Rotel is found at `TRACESPOOL_ROTEL`, else where `.ci/peers` installs it.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench_schema::drain;
use tracespool::spool::{Spool, SpoolOptions, SyncPolicy};

use common::{Tmp, median, quick, rotel_bin, start_rotel, target_dir, typical, write_file};

const TMP_PREFIX: &str = "drain-bench-";
const BIN: &str = env!("CARGO_BIN_EXE_tracespool");
const TARGET_ADDED_MS: f64 = drain::HOOK_ADDED_MS.aim;
const TARGET_THROUGHPUT_RATIO: f64 = drain::THROUGHPUT_RATIO.aim;

/// A `tracespool` command on `spool`, with nothing of the environment that would change it.
fn tracespool(spool: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") || key.starts_with("TRACESPOOL_") || key == "TRACEPARENT" {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--spool-dir")
        .arg(spool)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Milliseconds from spawning `cmd` to its exit (which must be 0).
fn timed_ms(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let status = cmd.status().expect("run tracespool");
    assert!(status.success(), "{cmd:?}: {status}");
    t.elapsed().as_secs_f64() * 1000.0
}

/// True while process `pid` runs (a zombie does not: PID 1 here reaps only every ~2 s).
fn running(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

/// The drain processes (`flush --as-drainer`) working on `spool`, by pid: one scan of `/proc`.
fn drainers_of(spool: &Path) -> Vec<String> {
    let needle = spool.as_os_str().as_encoded_bytes();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .windows(b"--as-drainer".len())
                    .any(|w| w == b"--as-drainer")
                    && cmdline.windows(needle.len()).any(|w| w == needle)
            })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| running(pid))
        .collect()
}

/// Waits (at most `within`) until no drain works on `spool`; the time it took. The drainer was
/// started before the hook exited, so one scan finds it; then only its own status is read, every
/// 5 ms (a scan of every process as often would take CPU from the drain itself).
fn wait_for_drainers(spool: &Path, within: Duration) -> Duration {
    let t = Instant::now();
    let pids = drainers_of(spool);
    while pids.iter().any(|pid| running(pid)) && t.elapsed() < within {
        std::thread::sleep(Duration::from_millis(5));
    }
    t.elapsed()
}

/// Copies the spool directory `from` to `to` (files only: a spool has no subdirectories
/// worth copying here).
fn copy_spool(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("spool copy");
    let mut perms = fs::metadata(from).expect("template").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    fs::set_permissions(to, perms).expect("spool copy mode");
    for entry in fs::read_dir(from).expect("template").flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Fills a spool in `dir` with batches of `spans` typical spans until it has `batches` of them
/// or its bound starts dropping; returns how many it holds.
fn fill(dir: &Path, spans: usize, batches: u64, max_bytes: u64) -> u64 {
    let spool = Spool::open(
        dir,
        SpoolOptions {
            max_bytes,
            sync: SyncPolicy::Never,
            ..SpoolOptions::default()
        },
    )
    .expect("template spool");
    let encoder = typical::encoder();
    for i in 0..batches {
        let payload = typical::encoded(&encoder, i, spans);
        if spool
            .append(&payload, spans as u32)
            .expect("append")
            .dropped_batches
            > 0
        {
            break;
        }
    }
    // The ledger is a cache rebuilt after a reboot: syncing makes the copies honest.
    let stats = spool.stats().expect("stats");
    drop(spool);
    common::sync_all();
    stats.batches
}

fn batches_in(spool: &Path) -> u64 {
    Spool::open(spool, SpoolOptions::default())
        .and_then(|s| s.stats())
        .map_or(u64::MAX, |s| s.batches)
}

fn main() {
    let quick = quick();
    let target = target_dir();
    let tmp = Tmp::new(&target.join("bench-tmp"), TMP_PREFIX);
    common::print_banner("drain", quick);
    let rotel = start_rotel(&rotel_bin().expect("rotel"), &tmp);
    let endpoint = rotel.endpoint();
    println!("  rotel {} at {endpoint}", rotel.version());

    // 1. Hook overhead in front of a full backlog.
    let (bound, rounds, inline_rounds) = if quick {
        (1u64 << 20, 3, 1)
    } else {
        (64u64 << 20, 40, 5)
    };
    let template = tmp.dir();
    let held = fill(&template.path().join("spool"), 1, u64::MAX, bound);
    println!(
        "\n[1/2] exec -- true with a full {} MiB backlog ({held} one-span batches) against an \
         empty spool, rotel up, {rounds} rounds",
        bound >> 20
    );
    let empty = tmp.dir();
    let empty_spool = empty.path().join("spool");
    let mut with_backlog = Vec::new();
    let mut without = Vec::new();
    let mut drain_waits = Vec::new();
    let exec = |spool: &Path, extra: &[&str]| {
        let mut cmd = tracespool(spool);
        cmd.args(["--endpoint", &endpoint, "--max-bytes", &bound.to_string()])
            .args(extra)
            .args(["exec", "--", "true"]);
        cmd
    };
    for round in 0..rounds {
        let copy = tmp.dir();
        let spool = copy.path().join("spool");
        copy_spool(&template.path().join("spool"), &spool);
        let mut backlog_run = || {
            let ms = timed_ms(&mut exec(&spool, &["--drain-budget", "100ms"]));
            drain_waits.push(wait_for_drainers(&spool, Duration::from_secs(10)).as_secs_f64());
            ms
        };
        if round % 2 == 0 {
            with_backlog.push(backlog_run());
            without.push(timed_ms(&mut exec(&empty_spool, &[])));
        } else {
            without.push(timed_ms(&mut exec(&empty_spool, &[])));
            with_backlog.push(backlog_run());
        }
    }
    let mut inline = Vec::new();
    for _ in 0..inline_rounds {
        let copy = tmp.dir();
        let spool = copy.path().join("spool");
        copy_spool(&template.path().join("spool"), &spool);
        inline.push(timed_ms(&mut exec(&spool, &["--drain", "inline"])));
    }
    drop(template);
    let (backlog_ms, empty_ms) = (median(with_backlog.clone()), median(without.clone()));
    let added = backlog_ms - empty_ms;
    println!(
        "  exec -- true, median ms: backlog {backlog_ms:.2}, empty spool {empty_ms:.2}, \
         added {added:+.2} (target <= {TARGET_ADDED_MS}); with --drain inline {:.0}",
        median(inline.clone())
    );

    // 2. Drain throughput against flush.
    let (batches, reps) = if quick { (200u64, 2) } else { (20_000, 5) };
    let template = tmp.dir();
    let held = fill(&template.path().join("spool"), 10, batches, 1 << 30);
    println!(
        "\n[2/2] emptying {held} batches of 10 spans: drain against flush, {reps} repetitions"
    );
    let mut flush_secs = Vec::new();
    let mut drain_secs = Vec::new();
    for rep in 0..reps {
        for by_flush in if rep % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let copy = tmp.dir();
            let spool = copy.path().join("spool");
            copy_spool(&template.path().join("spool"), &spool);
            let t = Instant::now();
            if by_flush {
                let mut cmd = tracespool(&spool);
                cmd.args(["--endpoint", &endpoint, "--budget", "120s", "flush"]);
                timed_ms(&mut cmd);
                flush_secs.push(t.elapsed().as_secs_f64());
            } else {
                let mut cmd = tracespool(&spool);
                cmd.args(["--endpoint", &endpoint, "--drain-budget", "120s"])
                    .args(["exec", "--", "true"]);
                timed_ms(&mut cmd);
                wait_for_drainers(&spool, Duration::from_secs(120));
                drain_secs.push(t.elapsed().as_secs_f64());
            }
            let left = batches_in(&spool);
            assert_eq!(left, 0, "emptied (by flush: {by_flush})");
        }
    }
    let rate = |secs: &[f64]| held as f64 / median(secs.to_vec());
    let (flush_rate, drain_rate) = (rate(&flush_secs), rate(&drain_secs));
    let ratio = drain_rate / flush_rate;
    println!(
        "  batches/s, median: flush {flush_rate:.0}, drain {drain_rate:.0} -> {ratio:.2} \
         (target >= {TARGET_THROUGHPUT_RATIO})"
    );
    drop(rotel);
    tmp.finish();

    if quick {
        println!("\n(quick run: figures are not meaningful; no report written)");
        return;
    }
    let report = drain::Drain {
        backlog_bytes: Some(bound),
        hook: Some(drain::Hook {
            rounds: Some(rounds as u64),
            backlog_ms: with_backlog,
            empty_ms: without,
            inline_ms: inline,
            drain_wait_secs: drain_waits,
            backlog_median_ms: Some(backlog_ms),
            empty_median_ms: Some(empty_ms),
            added_ms: Some(added),
            target_added_ms: Some(TARGET_ADDED_MS),
            met: Some(added <= TARGET_ADDED_MS),
        }),
        throughput: Some(drain::Throughput {
            batches: Some(held),
            flush_secs,
            drain_secs,
            flush_batches_per_sec: Some(flush_rate),
            drain_batches_per_sec: Some(drain_rate),
            ratio: Some(ratio),
            target_ratio: Some(TARGET_THROUGHPUT_RATIO),
            met: Some(ratio >= TARGET_THROUGHPUT_RATIO),
        }),
        ..Default::default()
    };
    let path = write_file(&report);
    println!("\nreport: {}", path.display());
}
