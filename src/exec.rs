//! Running the wrapped command: spawned directly (no shell) with stdio inherited, signals
//! forwarded, and its exit status passed back.
//!
//! Exit codes: the child's own; `128 + N` when signal N killed it; `127` when the command is not
//! found; `126` when it is found but cannot be executed.
//!
//! # Caveats
//!
//! [`spawn`] (and so [`run`]) installs handlers for the forwarded signals (SIGINT, SIGTERM,
//! SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH) **for the duration of the entire process**:
//! tracespool does not die of them while its child runs, so that it can report the child's fate.
//! A signal sent by a process (`kill`) is forwarded to the child by [`Running::wait`], on the
//! caller's runtime (no thread of its own), until the child is reaped; one the kernel sends
//! (Ctrl-C on a terminal goes to the whole foreground process group, the child included) is not
//! forwarded again. A process that signals the whole process group (`kill -- -PGID`, GNU
//! `timeout` without `--foreground`) reaches the child directly and through tracespool: twice.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use futures_util::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::{Cause, Origin};
use signal_hook_tokio::SignalsInfo;

use crate::propagation::EnvChanges;

const FORWARDED: [i32; 7] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

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

/// Runs `program` with `args`, with our environment changed by `env`, and waits for it,
/// forwarding signals meanwhile.
pub async fn run(program: &OsStr, args: &[OsString], env: Option<&EnvChanges>) -> Outcome {
    match spawn(program, args, env) {
        Ok(running) => running.wait().await,
        Err(outcome) => outcome,
    }
}

/// Runs `program` with our environment changed by `env` and waits for it, with no runtime and
/// no signals forwarded: the last resort when no runtime can be had.
pub fn run_blocking(program: &OsStr, args: &[OsString], env: Option<&EnvChanges>) -> Outcome {
    let mut child = match command(program, args, env).spawn() {
        Ok(child) => child,
        Err(e) => return spawn_error(e),
    };
    let pid = child.id();
    match child.wait() {
        Ok(status) => Outcome::from_status(pid, status),
        Err(_) => Outcome::Exited { pid, code: 1 },
    }
}

/// `program` with `args`, in our environment changed by `env`: std then spawns with
/// `posix_spawnp`, which searches the `PATH` as `execvp` does (a changed `PATH` makes it fall
/// back to fork + exec).
fn command(program: &OsStr, args: &[OsString], env: Option<&EnvChanges>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    if let Some(env) = env {
        cmd.envs(env.set.iter().map(|(k, v)| (k, v)));
        for key in env.remove {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A started command whose signals are being taken for it.
pub struct Running {
    child: tokio::process::Child,
    pid: u32,
    signals: Option<SignalsInfo<WithOrigin>>,
}

/// Starts `program` (see [`run`]); a command that cannot start is its [`Outcome`] already.
/// Must be called within a tokio runtime.
pub fn spawn(
    program: &OsStr,
    args: &[OsString],
    env: Option<&EnvChanges>,
) -> Result<Running, Outcome> {
    // Register before spawning: a signal that arrives while the child starts is queued and
    // forwarded once its pid is known, never lost and never fatal to us.
    let signals = SignalsInfo::<WithOrigin>::new(FORWARDED).ok();
    let child = tokio::process::Command::from(command(program, args, env))
        .spawn()
        .map_err(spawn_error)?;
    let pid = child.id().expect("a child not yet waited for has a pid");
    Ok(Running {
        child,
        pid,
        signals,
    })
}

impl Running {
    /// Waits for the command, forwarding signals until it is reaped. The caller's runtime keeps
    /// serving its other tasks (the capture receiver) meanwhile.
    pub async fn wait(self) -> Outcome {
        let Running {
            mut child,
            pid,
            signals,
        } = self;
        // Waiting on our own child handle (not /proc): reaping is ours, whatever PID 1 does.
        // The wait is polled first, so nothing is forwarded once the child is reaped (its pid
        // may be reused then).
        let wait = child.wait();
        tokio::pin!(wait);
        let status = match signals {
            Some(mut signals) => loop {
                tokio::select! {
                    biased;
                    status = &mut wait => break status.ok(),
                    Some(Origin { signal, cause, .. }) = signals.next() => {
                        if should_forward(cause) {
                            // The child may have exited already; ESRCH then is harmless.
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid as i32),
                                nix::sys::signal::Signal::try_from(signal).ok(),
                            );
                        }
                    }
                }
            },
            None => wait.await.ok(),
        };
        match status {
            Some(status) => Outcome::from_status(pid, status),
            None => Outcome::Exited { pid, code: 1 },
        }
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

    fn run_now(program: &str, args: &[&str], env: Option<&EnvChanges>) -> Outcome {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let args: Vec<OsString> = args.iter().map(Into::into).collect();
        rt.block_on(run(OsStr::new(program), &args, env))
    }

    #[test]
    fn a_missing_command_is_127_and_a_non_executable_file_is_126() {
        assert_eq!(run_now("/nonexistent/cmd", &[], None).exit_code(), 127);
        assert_eq!(
            run_now("no-such-command-anywhere", &[], None).exit_code(),
            127
        );
        let tmp = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(
            run_now(tmp.path().to_str().unwrap(), &[], None).exit_code(),
            126
        );
        let out = run_now("sh", &["-c", "exit 9"], None);
        assert_eq!(out.exit_code(), 9);
        assert!(out.pid().is_some());
    }

    #[test]
    fn a_bare_name_is_found_in_the_childs_path() {
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("hook");
        std::fs::write(&script, "#!/bin/sh\nexit 5\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let path = format!("/nonexistent:{}", tmp.path().display());
        let env = EnvChanges {
            set: vec![("PATH", path)],
            remove: &[],
        };
        assert_eq!(run_now("hook", &[], Some(&env)).exit_code(), 5);
        // Not executable, found in the PATH: 126; a relative path is not searched for: 127.
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        assert_eq!(run_now("hook", &[], Some(&env)).exit_code(), 126);
        assert_eq!(run_now("./hook", &[], Some(&env)).exit_code(), 127);
    }
}
