//! `pip install tracespool`: the wheel maturin builds from `pyproject.toml` (its `bin` bindings),
//! installed into a fresh venv as a user installs it, puts a native `tracespool` on that venv's
//! `PATH` that runs with no Rust toolchain and no Python.
//!
//! Runs where `TRACESPOOL_MATURIN` names maturin (`.ci/peers` installs it); a release build of
//! several minutes, in `target/wheel`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::artifact::{assert_runs_a_hook, gate, linkage, run_ok, target_dir};

/// Builds the wheel into `out` as the README says (`maturin build --release`); its path.
fn build_wheel(maturin: &str, out: &Path) -> PathBuf {
    run_ok(
        Command::new(maturin)
            .args(["build", "--release", "--locked", "--out"])
            .arg(out)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target_dir("wheel")),
    );
    let wheels: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "one wheel built: {wheels:?}");
    wheels.into_iter().next().unwrap()
}

#[test]
fn pip_install_of_the_wheel_puts_a_native_tracespool_on_the_venv_path_that_runs_a_hook() {
    let test =
        "pip_install_of_the_wheel_puts_a_native_tracespool_on_the_venv_path_that_runs_a_hook";
    let Some(maturin) = gate("TRACESPOOL_MATURIN", test) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let wheel = build_wheel(&maturin, work.path());

    // One wheel for every Python 3 (`py3-none`), for this machine's platform: manylinux_2_X or
    // plain linux, as maturin's audit of the binary's glibc symbols decides.
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    let prefix = format!("tracespool-{}-py3-none-", env!("CARGO_PKG_VERSION"));
    let suffix = format!("_{}.whl", std::env::consts::ARCH);
    assert!(
        name.starts_with(&prefix) && name.ends_with(&suffix),
        "the wheel's name {name} is not {prefix}<platform>{suffix}"
    );

    let venv = work.path().join("venv");
    run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv));

    // What the wheel installs as commands: the `tracespool` binary, nothing else.
    let list = run_ok(
        Command::new(venv.join("bin/python"))
            .args([
                "-c",
                "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
            ])
            .arg(&wheel),
    );
    let scripts: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|entry| entry.contains(".data/scripts/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        scripts,
        [format!(
            "tracespool-{}.data/scripts/tracespool",
            env!("CARGO_PKG_VERSION")
        )],
        "the commands in {name}"
    );
    run_ok(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--no-index",
                "--disable-pip-version-check",
            ])
            .arg(&wheel),
    );

    // The installed command is the binary itself, not a Python launcher script: it links only
    // the C library's loader, which every glibc host has.
    let bin = venv.join("bin/tracespool");
    let linked = linkage(&bin);
    assert!(
        linked
            .interpreter
            .as_deref()
            .is_some_and(|loader| loader.contains("ld-linux")),
        "{}: {linked:?}",
        bin.display()
    );
    assert_runs_a_hook(&bin);
}
