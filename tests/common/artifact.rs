//! A `tracespool` built another way than `cargo test` builds it (the wheel's, the static musl
//! one): the gate on the tool that builds it, its own target directory, what its ELF file says
//! about linking, and the hook every such build must run.
//!
//! These builds are release builds of several minutes each. A test that makes one runs only
//! when `.ci/peers` has installed its tool and said so in a `TRACESPOOL_…` variable; with the
//! variable unset it is skipped, except under CI (`CI` set), where it fails: CI never passes a
//! build it did not make.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::clean_command;

/// The value of `var`, which `.ci/peers` exports once the tool it names is installed; `None`
/// (and a `SKIPPED` line) where it is unset, or a failure under CI.
pub fn gate(var: &str, test: &str) -> Option<String> {
    if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Some(value.into_string().expect("a UTF-8 value"));
    }
    let why = format!("{var} is unset: run `bash .ci/test`, which installs the tool (`.ci/peers`)");
    if std::env::var_os("CI").is_some() {
        panic!("{test} cannot run under CI ({why})");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

/// A Cargo target directory of its own under `target/`, so that a nested release build neither
/// waits on nor invalidates the lock and artifacts of the `cargo test` that runs it.
pub fn target_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name)
}

/// Runs `cmd` to its end; panics with its output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// How an executable is linked, as its ELF file says.
#[derive(Debug, PartialEq, Eq)]
pub struct Linkage {
    /// The program interpreter (the dynamic loader) the kernel starts it with, if any: a binary
    /// without one runs on any Linux kernel of its architecture, with no library installed.
    pub interpreter: Option<String>,
    /// How many shared libraries it names (`DT_NEEDED` entries).
    pub needed: usize,
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;

/// Reads the linkage of the 64-bit little-endian ELF executable at `path`; panics if it is not
/// one (a Python launcher script, say).
pub fn linkage(path: &Path) -> Linkage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let head = &bytes[..bytes.len().min(16)];
    assert!(
        head.starts_with(b"\x7fELF") && head.get(4) == Some(&2) && head.get(5) == Some(&1),
        "{} is not a 64-bit little-endian ELF file; it begins {:?}",
        path.display(),
        String::from_utf8_lossy(head)
    );
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    // ELF64 header: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38. Program header:
    // p_type at 0, p_offset at 8, p_filesz at 32. A dynamic entry: d_tag, d_val (8 bytes each).
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    let mut linkage = Linkage {
        interpreter: None,
        needed: 0,
    };
    for header in (0..phnum).map(|i| phoff + i * phentsize) {
        let (offset, size) = (u64_at(header + 8) as usize, u64_at(header + 32) as usize);
        let contents = &bytes[offset..offset + size];
        match u32_at(header) {
            PT_INTERP => {
                let name = contents.split(|&b| b == 0).next().unwrap_or_default();
                linkage.interpreter = Some(String::from_utf8_lossy(name).into_owned());
            }
            PT_DYNAMIC => {
                linkage.needed = contents
                    .chunks_exact(16)
                    .filter(|entry| u64::from_le_bytes(entry[..8].try_into().unwrap()) == DT_NEEDED)
                    .count();
            }
            _ => {}
        }
    }
    linkage
}

/// The first look at a build of `tracespool` at `bin`: its `--version`, then a hook wrapped by
/// `exec` in an empty spool with no endpoint (its exit code 3 comes back, its span is spooled),
/// then `status --json` (one span). `bin` runs with none of the caller's OTel or tracespool
/// settings, and with `PATH` only `bin`'s directory and the system's, so that the first command
/// finds it by its bare name, as a user whose `PATH` holds it would.
pub fn assert_runs_a_hook(bin: &Path) {
    let dir = bin.parent().unwrap();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", dir.display());
    let spool = tempfile::tempdir().unwrap();
    let command = |program: &Path| {
        let mut cmd = clean_command(program);
        cmd.env("PATH", &path).env("TRACESPOOL_DIR", spool.path());
        cmd
    };

    let version = run_ok(command(Path::new("tracespool")).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("tracespool {}\n", env!("CARGO_PKG_VERSION"))
    );

    let hook = command(bin)
        .args(["exec", "--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(
        hook.status.code(),
        Some(3),
        "exec's exit code; stderr: {}",
        String::from_utf8_lossy(&hook.stderr)
    );

    let status = run_ok(command(bin).args(["status", "--json"]));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (status["batches"].as_u64(), status["spans"].as_u64()),
        (Some(1), Some(1)),
        "{status}"
    );
}
