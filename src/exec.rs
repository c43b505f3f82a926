//! Running the wrapped command: spawned directly (no shell) with stdio inherited, signals
//! forwarded, and its exit status passed back (CONTRACT §2).
//!
//! Exit codes: the child's own; `128 + N` when signal N killed it; `127` when the command is not
//! found; `126` when it is found but cannot be executed.
//!
//! # Caveats
//!
//! [`run`] installs handlers for the forwarded signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT,
//! SIGUSR1, SIGUSR2, SIGWINCH) **for the duration of the entire process**: tracespool does not
//! die of them while its child runs, so that it can report the child's fate. A signal sent by a
//! process (`kill`) is forwarded to the child; one the kernel sends (Ctrl-C on a terminal goes to
//! the whole foreground process group, the child included) is not forwarded again.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};

use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::{Cause, Origin};

pub const FORWARDED: [i32; 7] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

/// How the child ended, or why it never started.
#[derive(Debug)]
pub enum Outcome {
    Exited {
        pid: u32,
        code: i32,
    },
    Signaled {
        pid: u32,
        signal: i32,
    },
    /// No such command (exit code 127).
    NotFound(io::Error),
    /// Found, but not executable (exit code 126).
    NotExecutable(io::Error),
}

impl Outcome {
    fn from_status(pid: u32, status: ExitStatus) -> Outcome {
        match (status.code(), status.signal()) {
            (Some(code), _) => Outcome::Exited { pid, code },
            (None, Some(signal)) => Outcome::Signaled { pid, signal },
            // Neither: stopped/continued are not reported by wait(); treat as a plain failure.
            (None, None) => Outcome::Exited { pid, code: 1 },
        }
    }

    /// The exit code tracespool returns.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Exited { code, .. } => (*code & 0xff) as u8,
            Outcome::Signaled { signal, .. } => (128 + signal).clamp(0, 255) as u8,
            Outcome::NotFound(_) => 127,
            Outcome::NotExecutable(_) => 126,
        }
    }

    /// The child's pid, if it started.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Outcome::Exited { pid, .. } | Outcome::Signaled { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

/// `SIGTERM` for 15, or `signal 64` when it has no name.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}

/// Forward only what a process sent: the kernel's own signals (a terminal's Ctrl-C) reach the
/// child's process group directly.
fn should_forward(cause: Cause) -> bool {
    matches!(cause, Cause::Sent(_))
}

fn spawn_error(e: io::Error) -> Outcome {
    match e.kind() {
        io::ErrorKind::NotFound => Outcome::NotFound(e),
        _ => Outcome::NotExecutable(e),
    }
}

/// Runs `program` with `args`, with `env` as its whole environment (or ours when `None`), and
/// waits for it, forwarding signals meanwhile.
pub fn run(
    program: &OsStr,
    args: &[OsString],
    env: Option<&BTreeMap<OsString, OsString>>,
) -> Outcome {
    // Register before spawning: a signal that arrives while the child starts is queued and
    // forwarded once its pid is known, never lost and never fatal to us.
    let signals = SignalsInfo::<WithOrigin>::new(FORWARDED);
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(env) = env {
        cmd.env_clear().envs(env);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return spawn_error(e),
    };
    let pid = child.id();
    let forwarder = signals.ok().map(|mut signals| {
        let handle = signals.handle();
        let thread = std::thread::spawn(move || {
            for Origin { signal, cause, .. } in signals.forever() {
                if should_forward(cause) {
                    // The child may have exited already; ESRCH then is harmless.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::try_from(signal).ok(),
                    );
                }
            }
        });
        (handle, thread)
    });
    // Waiting on our own child handle (not /proc): reaping is ours, whatever PID 1 does.
    let status = loop {
        match child.wait() {
            Ok(status) => break Some(status),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break None,
        }
    };
    if let Some((handle, thread)) = forwarder {
        handle.close();
        let _ = thread.join();
    }
    match status {
        Some(status) => Outcome::from_status(pid, status),
        None => Outcome::Exited { pid, code: 1 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through_and_signals_become_128_plus_n() {
        let ok = Outcome::Exited { pid: 1, code: 0 };
        assert_eq!(ok.exit_code(), 0);
        assert_eq!(Outcome::Exited { pid: 1, code: 7 }.exit_code(), 7);
        assert_eq!(Outcome::Signaled { pid: 1, signal: 15 }.exit_code(), 143);
        assert_eq!(Outcome::Signaled { pid: 1, signal: 9 }.exit_code(), 137);
        assert_eq!(
            Outcome::NotFound(io::ErrorKind::NotFound.into()).exit_code(),
            127
        );
        assert_eq!(
            Outcome::NotExecutable(io::ErrorKind::PermissionDenied.into()).exit_code(),
            126
        );
        assert_eq!(
            Outcome::from_status(5, ExitStatus::from_raw(9)).exit_code(),
            137
        );
        assert_eq!(
            Outcome::from_status(5, ExitStatus::from_raw(3 << 8)).exit_code(),
            3
        );
    }

    #[test]
    fn signals_have_their_usual_names() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(2), "SIGINT");
        assert_eq!(signal_name(200), "signal 200");
    }

    #[test]
    fn only_signals_sent_by_a_process_are_forwarded() {
        use signal_hook::low_level::siginfo::Sent;
        assert!(should_forward(Cause::Sent(Sent::User)));
        assert!(should_forward(Cause::Sent(Sent::Queue)));
        assert!(!should_forward(Cause::Kernel));
        assert!(!should_forward(Cause::Unknown));
    }

    #[test]
    fn a_missing_command_is_127_and_a_non_executable_file_is_126() {
        let out = run(OsStr::new("/nonexistent/cmd"), &[], None);
        assert_eq!(out.exit_code(), 127);
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let out = run(tmp.path().as_os_str(), &[], None);
        assert_eq!(out.exit_code(), 126);
        let out = run(OsStr::new("sh"), &["-c".into(), "exit 9".into()], None);
        assert_eq!(out.exit_code(), 9);
        assert!(out.pid().is_some());
    }
}
