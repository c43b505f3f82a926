//! The detached drainer: a `tracespool flush` a hook starts to send the backlog while the hook
//! itself returns.
//!
//! - It is this same executable, with the hook's delivery flags (headers in its environment,
//!   not on its command line), in a session of its own, stdin, stdout and stderr on
//!   `/dev/null`; the hook does not wait for it (it is reparented when the hook exits).
//! - It takes every signal's flush lease, waits its start delay, then delivers oldest first
//!   within `drain_budget`, obeying the shared backoff, stopping at the first retryable failure.
//!   A lease held by another process means someone is flushing already: it leaves that spool to
//!   them. It prints nothing and always exits 0.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use super::current_thread;
use crate::config::{Config, Flags};
use crate::hook::open_deliveries;

/// The hidden `flush` option that makes it a drainer; its value is the start delay.
pub(super) const DRAINER_FLAG: &str = "--as-drainer";

/// Starts a drainer that waits `start_delay` before its first request. Best effort: when it
/// cannot start, the backlog waits for a later run (said only with `-v`).
pub(super) fn start(flags: &Flags, start_delay: Duration) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::info!("not starting a background drain: {e}");
            return;
        }
    };
    let mut command = Command::new(exe);
    command
        .args(flags.delivery_args())
        .arg("flush")
        .arg(DRAINER_FLAG)
        .arg(format!("{:.3}ms", start_delay.as_secs_f64() * 1000.0))
        .envs(flags.header_vars())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Safety: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match command.spawn() {
        // Not waited for: the hook exits right after, and the drainer is reparented.
        Ok(child) => tracing::info!(pid = child.id(), "started a background drain"),
        Err(e) => tracing::info!("not starting a background drain: {e}"),
    }
}

/// The drainer's work (see the module doc). Silent whatever happens.
pub(super) fn run(config: &Config, start_delay: Duration) -> ExitCode {
    let Ok(deliveries) = open_deliveries(config) else {
        return ExitCode::SUCCESS;
    };
    let Ok(runtime) = current_thread() else {
        return ExitCode::SUCCESS;
    };
    for (signal, report) in runtime.block_on(deliveries.drain(start_delay)) {
        tracing::info!(?signal, ?report, "background drain done");
    }
    runtime.shutdown_background();
    ExitCode::SUCCESS
}
