//! The peers tracespool's tests and benches run it against, and what starting them takes: the
//! installed programs, free ports on loopback, waits for a port to listen, a peer process that
//! is killed when dropped, rotel itself, and a seeded generator.
//!
//! The peers are installed by `.ci/peers`; their paths come from environment variables
//! (`TRACESPOOL_ROTEL`, …), else from where `.ci/peers` puts them under the workspace's
//! `target/peers`.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a peer may take to listen on its ports.
pub const LISTEN_WITHIN: Duration = Duration::from_secs(10);

/// Where rotel is: `TRACESPOOL_ROTEL`, else where `.ci/peers` installs it.
pub const ROTEL_ENV: &str = "TRACESPOOL_ROTEL";
pub const ROTEL_DEFAULT: &str = "target/peers/venv/lib/python3.11/site-packages/rotel/rotel-agent";

/// The workspace's root directory.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Path of an installed peer: the variable `var`, else `default` under the workspace; an error
/// that says how to install it when it is not there.
pub fn peer_path(var: &str, default: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join(default));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found ({var} unset): run `bash .ci/test`, which installs the test peers \
             (or `bash .ci/peers`)",
            path.display()
        ))
    }
}

pub fn rotel_bin() -> Result<PathBuf, String> {
    peer_path(ROTEL_ENV, ROTEL_DEFAULT)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a port on loopback")
        .local_addr()
        .expect("the bound address")
        .port()
}

/// Waits until something listens on `port` on loopback; panics after `within`.
pub fn wait_for_port(port: u16, within: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < within,
            "nothing listens on port {port} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `child` listens on `port` on loopback; panics with its log if it dies or takes
/// more than [`LISTEN_WITHIN`].
pub fn wait_listening(port: u16, child: &mut Child, what: &str, log: &Path) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let dead = !matches!(child.try_wait(), Ok(None));
        if dead || start.elapsed() > LISTEN_WITHIN {
            panic!(
                "{what} does not listen on {port}{}: {}",
                if dead { " (it exited)" } else { "" },
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `f` until it returns true (then true) or `within` passes (then false).
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends signal `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // Safety: plain kill(2), no memory involved.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// A peer process, killed and reaped when dropped (also on panic), unless taken before.
pub struct Peer(pub Option<Child>);

impl Peer {
    /// Spawns `cmd` (stdin null, stdout and stderr appended to `log`) and waits until it listens
    /// on every one of `ports`.
    pub fn spawn(cmd: &mut Command, log: &Path, ports: &[u16], what: &str) -> Peer {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup the log"))
            .stderr(out);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        for &port in ports {
            wait_listening(port, &mut child, what, log);
        }
        Peer(Some(child))
    }

    /// 0 once taken.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    pub fn alive(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops it with SIGTERM, waiting for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            signal(child.id(), libc::SIGTERM);
            let _ = child.wait();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What rotel prints of what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotelLog {
    /// Every span, metric and log record, in detail, to its output (what tests read back).
    Detailed,
    /// Nothing (what benches measure against): its own log and pid file go in its directory.
    Quiet,
}

/// A real OTLP collector on loopback (OTLP/HTTP and gRPC), exporting to a blackhole; killed when
/// dropped. Its output and files go in a directory of its own.
pub struct Rotel {
    pub http_port: u16,
    pub grpc_port: u16,
    bin: PathBuf,
    log: RotelLog,
    child: Peer,
    dir: tempfile::TempDir,
}

impl Rotel {
    /// Starts `bin` with its files in `dir`, and waits until it listens on both ports.
    pub fn start(bin: &Path, dir: tempfile::TempDir, log: RotelLog) -> Rotel {
        let mut rotel = Rotel {
            http_port: free_port(),
            grpc_port: free_port(),
            bin: bin.to_owned(),
            log,
            child: Peer(None),
            dir,
        };
        rotel.resume();
        rotel
    }

    /// Its OTLP/HTTP traces endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.http_port)
    }

    /// Its stdout and stderr (with [`RotelLog::Detailed`], what it received), appended to
    /// across restarts.
    pub fn output_path(&self) -> PathBuf {
        self.dir.path().join("rotel.out")
    }

    pub fn version(&self) -> String {
        Command::new(&self.bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// 0 while stopped.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn alive(&mut self) -> bool {
        self.child.alive()
    }

    /// Starts it again on the same ports (its output is appended to).
    pub fn resume(&mut self) {
        assert!(self.child.0.is_none(), "rotel is running");
        let mut cmd = Command::new(&self.bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("ROTEL_") || key.starts_with("OTEL_") {
                cmd.env_remove(key);
            }
        }
        cmd.args(["start", "--exporter", "blackhole"]);
        match self.log {
            RotelLog::Detailed => {
                for signal in ["traces", "metrics", "logs"] {
                    cmd.args(["--debug-log", signal]);
                }
                cmd.args(["--debug-log-verbosity", "detailed"]);
            }
            RotelLog::Quiet => {
                cmd.arg("--pid-file")
                    .arg(self.dir.path().join("rotel.pid"))
                    .arg("--log-file")
                    .arg(self.dir.path().join("rotel.log"));
            }
        }
        cmd.arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{}", self.grpc_port));
        self.child = Peer::spawn(
            &mut cmd,
            &self.output_path(),
            &[self.http_port, self.grpc_port],
            "rotel",
        );
    }

    /// Stops it (SIGTERM), waiting for it to exit.
    pub fn stop(&mut self) {
        self.child.stop();
    }
}

/// A small seeded generator (xorshift), for payloads and for random moments and sizes.
pub struct XorShift(u64);

impl XorShift {
    /// The sequence of `seed` (made odd: zero is a fixed point).
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    /// Seeded from the clock and the pid: a different sequence each run.
    pub fn from_clock() -> XorShift {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970");
        XorShift::new((t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32))
    }

    /// A fresh seed for a test, printed; the variable `seed_var` replays it.
    pub fn for_test(test: &str, seed_var: &str) -> XorShift {
        let rng = match std::env::var(seed_var).ok().and_then(|s| s.parse().ok()) {
            Some(seed) => XorShift::new(seed),
            None => XorShift::from_clock(),
        };
        let seed = rng.0;
        eprintln!("{test}: seed {seed} (set {seed_var}={seed} to replay)");
        rng
    }

    /// The next number (never `None`, unlike an iterator's `next`: not an `Iterator`).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// Puts `v` in a random order (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_sequence() {
        let (mut a, mut b) = (XorShift::new(42), XorShift::new(42));
        let first: Vec<u64> = (0..5).map(|_| a.next()).collect();
        assert_eq!(first, (0..5).map(|_| b.next()).collect::<Vec<_>>());
        assert_ne!(first[0], first[1]);
        assert!((0..100).all(|_| a.below(7) < 7));
        assert_eq!(a.below(0), 0);
        let mut v: Vec<u32> = (0..50).collect();
        a.shuffle(&mut v);
        assert_ne!(
            v,
            (0..50).collect::<Vec<_>>(),
            "50! orders, one of them sorted"
        );
        v.sort_unstable();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn a_free_port_can_be_bound_and_waited_for() {
        let port = free_port();
        let _listener = TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        wait_for_port(port, Duration::from_secs(1));
    }

    #[test]
    fn a_missing_peer_says_how_to_install_it() {
        let err = peer_path("TRACESPOOL_TEST_PEERS_NO_SUCH_VAR", "no/such/peer")
            .expect_err("not installed");
        assert!(err.contains("bash .ci/peers"), "{err}");
    }
}
