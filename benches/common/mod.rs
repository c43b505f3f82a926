//! What the benches share: where they work, and the facts about the machine they print.

#![allow(dead_code)]

pub mod otlp;

use std::fs;
use std::path::{Path, PathBuf};

/// The cargo target directory: the nearest ancestor of this executable holding `CACHEDIR.TAG`.
pub fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.join("CACHEDIR.TAG").is_file() {
                return dir.to_owned();
            }
        }
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

/// Writes dirty pages back, so that filling the spools does not land in what is measured next.
pub fn sync_all() {
    // Safety: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

pub fn read_trim(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// The load average and the CPU pressure (share of time some task waited for a CPU): other work
/// on the machine shows up in every figure.
/// The first lines a bench prints: its name, whether this is a smoke run, and the machine.
pub fn print_banner(bench: &str, quick: bool) {
    println!(
        "tracespool {bench} bench{}",
        if quick { " (QUICK smoke run)" } else { "" }
    );
    println!(
        "  machine: {} CPUs ({}), Linux {}",
        cpus(),
        cpu_model(),
        read_trim("/proc/sys/kernel/osrelease")
    );
}

pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The machine a bench ran on, for its JSON: CPUs, model and kernel, and `extra` (an object:
/// load, directories) merged in.
pub fn machine_json(extra: serde_json::Value) -> serde_json::Value {
    let mut machine = serde_json::json!({
        "cpus": cpus(),
        "cpu_model": cpu_model(),
        "kernel": read_trim("/proc/sys/kernel/osrelease"),
    });
    if let (Some(m), serde_json::Value::Object(extra)) = (machine.as_object_mut(), extra) {
        m.extend(extra);
    }
    machine
}

pub fn load_snapshot() -> String {
    let loadavg = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let avg: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    let pressure = fs::read_to_string("/proc/pressure/cpu").unwrap_or_default();
    let some = pressure
        .lines()
        .find(|l| l.starts_with("some"))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")))
        .unwrap_or("?");
    format!("loadavg {}, CPU pressure avg10 {some}%", avg.join(" "))
}

/// Temporary directories under one base (`target/bench-tmp`), named `<prefix><pid>-…` so that a
/// later run can remove the leftovers of one that was interrupted (and only those: its pid is
/// gone).
pub struct Tmp {
    pub base: PathBuf,
    prefix: &'static str,
}

impl Tmp {
    pub fn new(base: &Path, prefix: &'static str) -> Tmp {
        fs::create_dir_all(base).expect("create target/bench-tmp");
        // Remove what an interrupted run left behind (its process is gone).
        if let Ok(entries) = fs::read_dir(base) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(prefix))
                    .and_then(|n| n.split('-').next())
                    .and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        Tmp {
            base: base.to_owned(),
            prefix,
        }
    }

    /// A new empty directory, deleted with everything in it when dropped.
    pub fn dir(&self) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("{}{}-", self.prefix, std::process::id()))
            .tempdir_in(&self.base)
            .expect("create a temporary directory")
    }

    pub fn finish(self) {
        // Only removed if empty: something else may use it.
        let _ = fs::remove_dir(&self.base);
    }
}

// Each bench uses some of them.
#[allow(unused_imports)]
pub use test_peers::{Peer, Rotel, free_port, rotel_bin};

/// Rotel exporting to a blackhole with no debug log (what the benches measure against), its
/// files in a directory of `tmp`.
pub fn start_rotel(bin: &Path, tmp: &Tmp) -> Rotel {
    Rotel::start(bin, tmp.dir(), test_peers::RotelLog::Quiet)
}

/// The `q` quantile (0..=1) of `v`, interpolated between neighbours; NaN when empty.
pub fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

pub fn median(v: Vec<f64>) -> f64 {
    percentile(v, 0.5)
}

pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// A smoke run whose figures mean nothing: not under `cargo bench` (which passes `--bench` to a
/// harness-less bench; any other argument is ignored), or with `TRACESPOOL_BENCH_QUICK` set (to
/// anything but `0`).
pub fn quick() -> bool {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    !bench_mode || std::env::var_os("TRACESPOOL_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Writes `report` as `target/bench-report/<bench>.json` and says where, once it reads back as
/// the report reads it (`F`, from `bench-schema`): a figure written with another type than the
/// report reads fails the bench here.
pub fn write_report<F: bench_schema::BenchFile>(report: &serde_json::Value) -> PathBuf {
    write_checked::<F>(report)
}

/// Writes `file` (built from the report's own structs) as `target/bench-report/<bench>.json`.
pub fn write_file<F: bench_schema::BenchFile>(file: &F) -> PathBuf {
    write_checked::<F>(&serde_json::to_value(file).expect("serialize the report"))
}

fn write_checked<F: bench_schema::BenchFile>(report: &serde_json::Value) -> PathBuf {
    if let Err(e) = bench_schema::check::<F>(report) {
        panic!(
            "{}.json does not read back as the report reads it: {e}",
            F::NAME
        );
    }
    let dir = target_dir().join("bench-report");
    fs::create_dir_all(&dir).expect("create target/bench-report");
    let path = dir.join(format!("{}.json", F::NAME));
    let text = serde_json::to_string_pretty(report).expect("serialize the report");
    fs::write(&path, text + "\n").expect("write the report");
    path
}

pub mod typical;
