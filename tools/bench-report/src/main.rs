//! `cargo run -p bench-report [-- DIR]`: renders the benchmark report from the benches' JSON in
//! DIR (default: `target/bench-report` of this workspace) and writes it there.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

/// The cargo target directory: the nearest ancestor of this executable holding `CACHEDIR.TAG`,
/// else `CARGO_TARGET_DIR`, else the workspace's `target`.
fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.join("CACHEDIR.TAG").is_file() {
                return dir.to_owned();
            }
        }
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => workspace.join(d),
        None => workspace.join("target"),
    }
}

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| target_dir().join("bench-report"), PathBuf::from);
    let report = bench_report::render(&dir, SystemTime::now());
    println!("{}", report.summary);
    for (name, text) in report.files {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("bench-report: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("  wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
