//! What the benches share: where they work, and the facts about the machine they print.

#![allow(dead_code)]

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
