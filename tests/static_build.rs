//! The fully static build for hosts where nothing can be installed (a `salt-ssh` shim, a minimal
//! container): `cargo build --release --target x86_64-unknown-linux-musl`, as the README says,
//! makes a `tracespool` that needs no loader and no shared library, and runs a hook.
//!
//! Runs where `TRACESPOOL_MUSL` is set (`.ci/peers` sets it once the target and `musl-gcc` are
//! installed); a release build of several minutes, in `target/musl`.

mod common;

use std::process::Command;

use common::artifact::{Linkage, assert_runs_a_hook, gate, linkage, run_ok, target_dir};

const MUSL: &str = "x86_64-unknown-linux-musl";

#[test]
fn the_musl_build_is_a_static_binary_that_runs_a_hook() {
    let test = "the_musl_build_is_a_static_binary_that_runs_a_hook";
    if gate("TRACESPOOL_MUSL", test).is_none() {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = target_dir("musl");
    run_ok(
        Command::new(cargo)
            .args(["build", "--release", "--locked", "--bin", "tracespool"])
            .args(["--target", MUSL])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", &target),
    );
    let bin = target.join(MUSL).join("release/tracespool");
    assert_eq!(
        linkage(&bin),
        Linkage {
            interpreter: None,
            needed: 0
        },
        "{} names a loader or a shared library",
        bin.display()
    );
    assert_runs_a_hook(&bin);
}
