//! The torture suite: the spool and the commands under kill -9, many processes, a backend that
//! comes and goes, and a full disk.
//!
//! - R1: `kill -9` at random moments of appends (a library child) and of deliveries (the
//!   `tracespool flush` binary): nothing corrupt is ever delivered, an append that returned is
//!   never lost, at most the in-flight batch is lost per kill, every reopen is clean, and a batch
//!   is delivered twice only inside the duplicate window. Compression at rest is on, and half
//!   the batches compress: the spool holds both kinds of frame.
//! - R2: many processes × many `exec` runs with the backend down, on one spool, then one `flush`:
//!   every span once.
//! - R3: `exec` runs (and a `flush` every 0.25 s) while the backend is stopped and started every
//!   0.5 s, then a final flush: every span is delivered or counted as dropped; duplicates stay
//!   within the documented window (requests cut by a stop or timed out).
//! - R4: a full disk (a small tmpfs; skipped where mounting is not allowed): the exit code is
//!   the command's, the full disk is said once per run, the spool verifies clean, and once space
//!   is back `flush` delivers what the spool holds exactly once.
//!
//! By default (`cargo test`) a shortened version runs: R1 100 kills, R2 8 processes × 25 runs,
//! R3 200 runs. The full version (1000 kills, 64 × 100 runs, 2000 runs):
//!
//! ```sh
//! TRACESPOOL_TORTURE=full cargo test --release --test torture -- --test-threads=1 --nocapture
//! ```
//!
//! Each scenario prints one summary line (`--nocapture` shows it). Random moments come from a
//! seed printed at the start of R1; `TRACESPOOL_TORTURE_SEED` replays it.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    Incoming, Rotel, SeenSpan, Tmpfs, XorShift, collect_events, emit, fill_disk, name_counts,
    read_request, status_json, status_verify_json, stderr, tracespool,
};
use tracespool::spool::{Encoding, Spool, SpoolOptions, Stats, SyncPolicy, VerifyReport};

// ---------------------------------------------------------------------------------------------
// Scale.

/// How hard each scenario pushes.
struct Scale {
    full: bool,
    r1_kills: usize,
    r2_procs: usize,
    r2_runs: usize,
    r3_runs: usize,
    r3_workers: usize,
}

impl Scale {
    fn get() -> Scale {
        let full = std::env::var("TRACESPOOL_TORTURE").is_ok_and(|v| v == "full");
        if full {
            Scale {
                full,
                r1_kills: 1000,
                r2_procs: 64,
                r2_runs: 100,
                r3_runs: 2000,
                r3_workers: 8,
            }
        } else {
            Scale {
                full,
                r1_kills: 100,
                r2_procs: 8,
                r2_runs: 25,
                r3_runs: 200,
                r3_workers: 4,
            }
        }
    }

    fn name(&self) -> &'static str {
        if self.full { "full" } else { "shortened" }
    }
}

// ---------------------------------------------------------------------------------------------
// Small tools.

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A child process killed (and reaped) when the guard goes, whatever happened.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn kill9(child: &Child) {
    // Safety: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9: {}", std::io::Error::last_os_error());
}

/// The binary on a spool directory of the test's.
fn ts(spool: &Path) -> Command {
    let mut cmd = tracespool();
    cmd.arg("--spool-dir").arg(spool).stdin(Stdio::null());
    cmd
}

fn stderr_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("status --json has no integer {key:?}: {v}"))
}

/// `tracespool flush` with a generous budget; its output.
fn flush(spool: &Path, endpoint: &str) -> Output {
    ts(spool)
        .args(["--endpoint", endpoint, "--budget", "120s", "flush"])
        .output()
        .expect("run tracespool flush")
}

/// How many times each span name arrived.
/// Polls the collector (every 200 ms: its dump grows large) until `enough` says so or `within`
/// passes, then waits a little more so that late arrivals are seen too.
fn collected(
    rotel: &Rotel,
    within: Duration,
    mut enough: impl FnMut(&[SeenSpan]) -> bool,
) -> Vec<SeenSpan> {
    let deadline = Instant::now() + within;
    loop {
        let spans = rotel.spans();
        if enough(&spans) || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    thread::sleep(Duration::from_millis(500));
    rotel.spans()
}

/// Of the names in `expected`: how many arrived, duplicates (extra arrivals), the missing
/// ones; and the names nobody expected.
struct Tally {
    unique: usize,
    duplicates: usize,
    missing: Vec<String>,
    unexpected: Vec<String>,
}

fn tally(spans: &[SeenSpan], expected: &HashSet<String>, prefix: &str) -> Tally {
    let counts = name_counts(spans.iter().map(|s| s.name.clone()));
    let mut t = Tally {
        unique: 0,
        duplicates: 0,
        missing: Vec::new(),
        unexpected: Vec::new(),
    };
    for (name, &n) in &counts {
        if expected.contains(name) {
            t.unique += 1;
            t.duplicates += n - 1;
        } else if name.starts_with(prefix) {
            t.unexpected.push(name.clone());
        }
    }
    t.missing = expected
        .iter()
        .filter(|n| !counts.contains_key(*n))
        .cloned()
        .collect();
    t.missing.sort();
    t.unexpected.sort();
    t
}

// ---------------------------------------------------------------------------------------------
// R1 payloads: a function of the sequence number, checked byte for byte on delivery.

const MAGIC: [u8; 4] = *b"TRT1";
const HEADER: usize = 8;

fn mix(seq: u32) -> u64 {
    // splitmix64
    let mut z = u64::from(seq).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// From ~100 B to 128 KiB, spread over the orders of magnitude: the large ones take long
/// enough to write or send that a kill lands inside them.
fn r1_len(seq: u32) -> usize {
    let h = mix(seq);
    let base = 100usize << (h % 11);
    (base + ((h >> 8) as usize % base)).min(128 * 1024)
}

fn r1_spans(seq: u32) -> u32 {
    (mix(seq) >> 40) as u32 % 7 + 1
}

fn payload(seq: u32) -> Vec<u8> {
    let len = r1_len(seq);
    let mut b = vec![0u8; len];
    b[0..4].copy_from_slice(&MAGIC);
    b[4..8].copy_from_slice(&seq.to_le_bytes());
    let key = mix(seq);
    // Half of them repeat one word and compress well, the others do not: with compression at
    // rest on, the spool holds both kinds of frame.
    let compressible = key & 1 == 0;
    for (i, chunk) in b[HEADER..].chunks_mut(8).enumerate() {
        let word = if compressible {
            key
        } else {
            key ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    b
}

/// The sequence number of an intact payload, or what is wrong with it.
fn check_payload(b: &[u8]) -> Result<u32, String> {
    if b.len() < HEADER || b[0..4] != MAGIC {
        return Err(format!(
            "not one of ours: {} bytes starting {:02x?}",
            b.len(),
            &b[..b.len().min(16)]
        ));
    }
    let seq = u32::from_le_bytes(b[4..8].try_into().unwrap());
    let expected = payload(seq);
    if b != expected.as_slice() {
        let at = b.iter().zip(&expected).position(|(x, y)| x != y);
        return Err(format!(
            "batch {seq} damaged: {} bytes (expected {}), first differing byte {at:?}",
            b.len(),
            expected.len()
        ));
    }
    Ok(seq)
}

// ---------------------------------------------------------------------------------------------
// R1 backend: a loopback HTTP server answering 200 to everything that checks every body the
// moment it arrives and keeps only sequence numbers (a FaultServer would keep every body, and
// the full run delivers gigabytes).

#[derive(Default)]
struct Deliveries {
    /// Sequence numbers in the order the requests arrived.
    log: Vec<u32>,
    damaged: Vec<String>,
    /// The client address of every connection accepted since the last `settle`.
    accepted: HashSet<SocketAddr>,
    /// Connections accepted whose thread has not ended yet.
    serving: usize,
}

struct CheckingBackend {
    port: u16,
    state: Arc<Mutex<Deliveries>>,
    stop: Arc<AtomicBool>,
}

impl CheckingBackend {
    fn start() -> CheckingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Deliveries::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (state.clone(), stop.clone());
        thread::spawn(move || {
            loop {
                let accepted = listener.accept();
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok((stream, peer)) = accepted else {
                    continue;
                };
                {
                    let mut st = shared.lock().unwrap();
                    st.accepted.insert(peer);
                    st.serving += 1;
                }
                let shared = shared.clone();
                thread::spawn(move || {
                    serve_checked(stream, &shared);
                    shared.lock().unwrap().serving -= 1;
                });
            }
        });
        CheckingBackend { port, state, stop }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    fn received(&self) -> usize {
        self.state.lock().unwrap().log.len()
    }

    /// Returns once every request of the flushers that ran so far (and are gone now) is in the
    /// log, so that the next flusher's requests are logged after them: the log is then the order
    /// in which the flushers sent them. Without it, a busy machine may hold back the thread that
    /// serves a killed flusher's connection between reading its last request and logging it, for
    /// longer than the next flusher takes to deliver that batch again and several after it; the
    /// late entry would read as an acknowledged batch delivered again. A connection of our own
    /// marks the point: the listen queue hands out connections in the order they were made, so
    /// once it is accepted every flusher's connection has been; and the thread serving each one
    /// ends at the end of its stream, which a dead process's socket reaches at once.
    fn settle(&self) {
        // Forgotten first, so that an address the system hands out again is not taken for ours.
        self.state.lock().unwrap().accepted.clear();
        let marker = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mark = marker.local_addr().unwrap();
        drop(marker);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let st = self.state.lock().unwrap();
                if st.accepted.contains(&mark) && st.serving == 0 {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "the backend still serves {} connections 60 s after their flusher ended",
                    st.serving
                );
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for CheckingBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_checked(stream: TcpStream, state: &Mutex<Deliveries>) {
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        // A request cut short by a kill was never answered: not a delivery.
        let Incoming::Request(request) = read_request(&mut reader) else {
            return;
        };
        {
            let mut st = state.lock().unwrap();
            match check_payload(&request.body) {
                Ok(seq) => st.log.push(seq),
                Err(e) => st.damaged.push(e),
            }
        }
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if (&stream).write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// R1 appending child: this test binary run again on `child_r1_appender`, which returns at once
// unless ROLE names it. It prints one line per event on stdout (`@@ ok 17`), flushed at once, so
// the parent knows exactly which appends returned before the kill.

const ROLE: &str = "TRACESPOOL_TORTURE_ROLE";
const APPENDER: &str = "child_r1_appender";
/// A child stops appending after this many bytes (the parent kills it long before, mostly).
const R1_CAP_BYTES: usize = 2 << 20;
/// Segments of 1 MiB; the parent keeps the spool far below the bound (nothing is dropped).
const R1_MAX_BYTES: u64 = 16 << 20;
const R1_FLUSH_AT: u64 = 4 << 20;

fn r1_opts(sync: SyncPolicy) -> SpoolOptions {
    SpoolOptions {
        max_bytes: R1_MAX_BYTES,
        max_spans: None,
        max_age: None,
        compression: Encoding::Gzip,
        sync,
    }
}

#[test]
fn child_r1_appender() {
    if std::env::var(ROLE).ok().as_deref() != Some(APPENDER) {
        return;
    }
    let var = |k: &str| std::env::var(format!("TRACESPOOL_TORTURE_{k}")).unwrap();
    let sync = if var("SYNC") == "always" {
        SyncPolicy::Always
    } else {
        SyncPolicy::Never
    };
    let start: u32 = var("START").parse().unwrap();
    emit("opening");
    let spool = Spool::open(var("DIR"), r1_opts(sync)).unwrap();
    // Made beforehand, so that appends follow each other closely.
    let mut batches = Vec::new();
    let mut total = 0;
    for seq in start.. {
        total += r1_len(seq);
        if total > R1_CAP_BYTES {
            break;
        }
        batches.push((seq, payload(seq)));
    }
    emit("ready");
    for (seq, bytes) in batches {
        emit(&format!("try {seq}"));
        match spool.append(&bytes, r1_spans(seq)) {
            Ok(outcome) => emit(&format!("ok {seq} {}", outcome.dropped_batches)),
            Err(e) => panic!("append {seq} failed: {e}"),
        }
    }
    emit("done");
    thread::sleep(Duration::from_secs(60));
}

/// A running appender and the events it printed.
struct Appender {
    child: KillOnDrop,
    events: mpsc::Receiver<String>,
    collector: Option<JoinHandle<()>>,
    seen: Vec<String>,
}

impl Appender {
    fn spawn(dir: &Path, start: u32, sync: SyncPolicy) -> Appender {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", APPENDER, "--nocapture", "--test-threads=1"])
            .env(ROLE, APPENDER)
            .env("TRACESPOOL_TORTURE_DIR", dir)
            .env("TRACESPOOL_TORTURE_START", start.to_string())
            .env(
                "TRACESPOOL_TORTURE_SYNC",
                if sync == SyncPolicy::Always {
                    "always"
                } else {
                    "never"
                },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (rx, collector) = collect_events(stdout);
        Appender {
            child: KillOnDrop(child),
            events: rx,
            collector: Some(collector),
            seen: Vec::new(),
        }
    }

    /// Waits for an event that satisfies `hit`; false when the child stopped printing first.
    fn wait_until(&mut self, mut hit: impl FnMut(&str) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(line) => {
                    let done = hit(&line);
                    self.seen.push(line);
                    if done {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("appender: no event within 60 s"),
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Kills it with SIGKILL and returns every event it printed.
    fn kill(mut self) -> (ExitStatus, Vec<String>) {
        kill9(&self.child.0);
        let status = self.child.0.wait().unwrap();
        if let Some(c) = self.collector.take() {
            c.join().unwrap();
        }
        let mut events = std::mem::take(&mut self.seen);
        events.extend(self.events.try_iter());
        (status, events)
    }
}

/// Names and sizes of the files in a spool directory (and its subdirectories), for messages.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            for (name, len) in listing(&path) {
                out.push((
                    format!("{}/{name}", entry.file_name().to_string_lossy()),
                    len,
                ));
            }
        } else {
            out.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
        }
    }
    out.sort();
    out
}

/// After a kill: the spool opens (repairing what needs it), a full scan finds nothing corrupt,
/// no reader ever met corrupt data, and the bound never dropped anything.
fn reopen_clean(dir: &Path, after: &str) -> (VerifyReport, Stats) {
    let spool = Spool::open(dir, r1_opts(SyncPolicy::Always))
        .unwrap_or_else(|e| panic!("reopening after {after}: {e}"));
    let report = spool.verify().unwrap();
    assert_eq!(report.corrupt_records, 0, "after {after}: {report:?}");
    let stats = spool.stats().unwrap();
    assert_eq!(stats.corrupt_records, 0, "after {after}: {stats:?}");
    assert_eq!(
        stats.dropped_batches, 0,
        "test parameters: the bound dropped batches: {stats:?}"
    );
    (report, stats)
}

/// `tracespool flush` on the R1 spool, with the bound the children use.
fn r1_flush(dir: &Path, backend: &CheckingBackend) -> Command {
    let mut cmd = ts(dir);
    cmd.args(["--endpoint", &backend.endpoint()])
        .args(["--max-bytes", &R1_MAX_BYTES.to_string()])
        .args(["--budget", "120s", "flush"]);
    cmd
}

/// R1. Deliveries are made by the real `tracespool flush` against a loopback backend that
/// answers 200, rather than by a library reader in a child: that way the kill also lands in the
/// binary's opening of the spool, in the HTTP exchange and in its acknowledgement, and what was
/// delivered is what the backend received, checked byte for byte as it arrives. Appends are
/// made by a library child (the binary has no way to append a chosen payload).
///
/// Rounds alternate between the two kinds of kill; one writer or one flusher runs at a time,
/// and the backend has logged every request of a flusher before the next one starts, so
/// deliveries arrive in sequence order, and a batch may arrive twice only right after itself
/// (the flusher killed between the backend's 200 and the acknowledgement).
#[test]
fn r1_kill_9_during_appends_and_flushes_delivers_nothing_corrupt_and_loses_only_in_flight_appends()
{
    let scale = Scale::get();
    let started = Instant::now();
    let mut rng = XorShift::for_test("r1", "TRACESPOOL_TORTURE_SEED");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let backend = CheckingBackend::start();

    let (want_append, want_flush) = (scale.r1_kills / 2, scale.r1_kills - scale.r1_kills / 2);
    let (mut append_kills, mut flush_kills) = (0usize, 0usize);
    let mut mid_append_kills = 0usize;
    let mut opening_kills = 0usize;
    let mut late_append_kills = 0usize;
    let mut flushes_finished = 0usize;
    let mut tried = BTreeSet::new();
    let mut ok = BTreeSet::new();
    let mut next_seq = 0u32;
    let mut pending = 0u64;
    let mut bytes = 0u64;
    let mut torn_rounds = 0usize;
    let mut round = 0usize;
    let mut drains = 0usize;

    while append_kills < want_append || flush_kills < want_flush {
        round += 1;
        if bytes > R1_FLUSH_AT && flush_kills >= want_flush {
            // Enough flushes killed: drain whole, so that the bound never has to drop.
            let out = r1_flush(&dir, &backend).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "flush: {}", stderr(&out));
            backend.settle();
            drains += 1;
            let (_, stats) = reopen_clean(&dir, "a whole flush");
            (pending, bytes) = (stats.batches, stats.bytes);
            continue;
        }
        let flush_round = flush_kills < want_flush
            && pending >= 2
            && (append_kills >= want_append || bytes > R1_FLUSH_AT || flush_kills < append_kills);
        if flush_round {
            let mut child = KillOnDrop(
                r1_flush(&dir, &backend)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            // Aim at a random batch of what waits (or, with 0, at the opening), then a
            // random moment up to 1.5 ms later: inside a send, an ack, or between them.
            let base = backend.received();
            let target = base + rng.below(pending.min(48)) as usize;
            while backend.received() < target && matches!(child.0.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_micros(100));
            }
            thread::sleep(Duration::from_micros(rng.below(1500)));
            let status = if matches!(child.0.try_wait(), Ok(None)) {
                kill9(&child.0);
                child.0.wait().unwrap()
            } else {
                child.0.wait().unwrap()
            };
            backend.settle();
            if status.signal() == Some(libc::SIGKILL) {
                flush_kills += 1;
            } else {
                assert_eq!(
                    status.code(),
                    Some(0),
                    "a flush ended on its own with {status}"
                );
                flushes_finished += 1;
            }
        } else {
            let sync = if append_kills % 2 == 0 {
                SyncPolicy::Always
            } else {
                SyncPolicy::Never
            };
            let mut child = Appender::spawn(&dir, next_seq, sync);
            if rng.below(8) == 0 {
                // At the opening, which may repair what the last kill left.
                child.wait_until(|e| e == "opening");
                thread::sleep(Duration::from_micros(rng.below(3000)));
                opening_kills += 1;
            } else {
                // After a random number of appends returned, a random moment later.
                let mut oks = rng.below(24);
                child.wait_until(|e| {
                    if e.starts_with("ok ") {
                        if oks == 0 {
                            return true;
                        }
                        oks -= 1;
                    }
                    e == "done"
                });
                thread::sleep(Duration::from_micros(rng.below(1500)));
            }
            let (status, events) = child.kill();
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "the appender was supposed to die by SIGKILL: {status}"
            );
            append_kills += 1;
            let mut in_flight = None;
            for event in &events {
                let mut words = event.split_whitespace();
                match (
                    words.next(),
                    words.next().and_then(|w| w.parse::<u32>().ok()),
                ) {
                    (Some("try"), Some(seq)) => {
                        assert!(tried.insert(seq), "seq {seq} tried twice");
                        in_flight = Some(seq);
                    }
                    (Some("ok"), Some(seq)) => {
                        assert_eq!(
                            in_flight.take(),
                            Some(seq),
                            "events out of order: {events:?}"
                        );
                        assert_eq!(
                            words.next(),
                            Some("0"),
                            "append {seq} dropped batches to make room, in a spool far below \
                             its bound: before this round it held {pending} batches, {bytes} \
                             bytes; now: {:?}; files: {:?}",
                            Spool::open(&dir, r1_opts(SyncPolicy::Never)).and_then(|s| s.stats()),
                            listing(&dir)
                        );
                        ok.insert(seq);
                    }
                    _ => {}
                }
            }
            mid_append_kills += usize::from(in_flight.is_some());
            late_append_kills += usize::from(events.iter().any(|e| e == "done"));
            if let Some(&last) = tried.last() {
                next_seq = last + 1;
            }
        }
        let what = format!(
            "kill round {round} ({})",
            if flush_round { "flush" } else { "append" }
        );
        let (report, stats) = reopen_clean(&dir, &what);
        torn_rounds += usize::from(report.torn_records > 0);
        pending = stats.batches;
        bytes = stats.bytes;
        let damaged = backend.state.lock().unwrap().damaged.clone();
        assert!(damaged.is_empty(), "delivered damaged: {damaged:?}");
    }

    // One flush to the end, not killed: everything left goes out.
    let out = r1_flush(&dir, &backend).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "final flush: {}", stderr(&out));
    backend.settle();
    let (report, stats) = reopen_clean(&dir, "the final flush");
    assert_eq!(
        (report.records, stats.batches),
        (0, 0),
        "{report:?} {stats:?}"
    );

    let st = backend.state.lock().unwrap();
    assert!(st.damaged.is_empty(), "delivered damaged: {:?}", st.damaged);
    // Oldest first, once each; the only repeat allowed is the batch delivered last by a
    // flusher that was killed, delivered again first by the next one.
    let mut redelivered = 0usize;
    for (i, &seq) in st.log.iter().enumerate() {
        if i == 0 {
            continue;
        }
        let prev = st.log[i - 1];
        if seq == prev {
            redelivered += 1;
        } else {
            assert!(
                seq > prev,
                "batch {seq} delivered after {prev}: out of order, or an acknowledged batch \
                 delivered again (deliveries {:?})",
                &st.log[i.saturating_sub(5)..(i + 5).min(st.log.len())]
            );
        }
    }
    assert!(
        redelivered <= flush_kills,
        "{redelivered} re-deliveries after {flush_kills} killed flushes: beyond the window"
    );
    let delivered: BTreeSet<u32> = st.log.iter().copied().collect();
    for seq in &delivered {
        assert!(
            tried.contains(seq),
            "batch {seq} delivered but never appended"
        );
    }
    let lost_ok: Vec<u32> = ok.difference(&delivered).copied().collect();
    assert!(
        lost_ok.is_empty(),
        "appends that returned were never delivered: {lost_ok:?}"
    );
    let in_flight: BTreeSet<u32> = tried.difference(&ok).copied().collect();
    let in_flight_delivered = in_flight.intersection(&delivered).count();
    let in_flight_lost = in_flight.len() - in_flight_delivered;
    assert!(
        in_flight.len() <= append_kills,
        "more appends in flight than kills"
    );
    assert!(
        mid_append_kills > 0 && flush_kills > 0,
        "no kill landed inside an append or a flush: the test tested nothing"
    );
    println!(
        "R1 [{}] kill -9: {} kills ({append_kills} of appenders: {mid_append_kills} mid-append, \
         {opening_kills} aimed at opening, {late_append_kills} after the last append; \
         {flush_kills} of flushers, {flushes_finished} flushes finished before their kill, \
         {drains} whole flushes between rounds); \
         {} appends returned, {} in flight at a kill ({in_flight_delivered} delivered, \
         {in_flight_lost} lost); torn tails: {} counted by readers, verify saw one after \
         {torn_rounds} kills; 0 corrupt; {} deliveries of {} batches, {redelivered} re-delivered in the \
         window; {:.1?}",
        scale.name(),
        append_kills + flush_kills,
        ok.len(),
        in_flight.len(),
        stats.torn_records,
        st.log.len(),
        delivered.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// R2: many processes, backend down, then one flush.

#[test]
fn r2_many_processes_spool_while_the_backend_is_down_and_one_flush_delivers_every_span_once() {
    let scale = Scale::get();
    let started = Instant::now();
    let (procs, runs) = (scale.r2_procs, scale.r2_runs);
    let total = procs * runs;
    let mut rotel = Rotel::start();
    rotel.stop();
    let endpoint = rotel.endpoint();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");

    let noisy = AtomicUsize::new(0);
    let failures: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = (0..procs)
            .map(|p| {
                let (spool, endpoint, noisy) = (&spool, &endpoint, &noisy);
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for i in 0..runs {
                        let name = format!("run-{p}-{i}");
                        let out = ts(spool)
                            .args(["--endpoint", endpoint, "exec", "--name", &name])
                            .args(["--attr", &format!("run={p}-{i}"), "--", "true"])
                            .output()
                            .unwrap();
                        if out.status.code() != Some(0) {
                            failures.push(format!("{name}: {} {}", out.status, stderr(&out)));
                        }
                        if !out.stderr.is_empty() {
                            noisy.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "runs failed: {failures:?}");
    let spooling = started.elapsed();

    let before = status_json(&spool, &["--endpoint", &endpoint]);
    assert_eq!(
        (num(&before, "batches"), num(&before, "spans")),
        (total as u64, total as u64),
        "every run's span is in the spool: {before}"
    );
    assert_eq!(num(&before, "dropped_spans"), 0, "{before}");

    rotel.resume();
    let flushing = Instant::now();
    let out = flush(&spool, &endpoint);
    assert_eq!(out.status.code(), Some(0), "flush: {}", stderr(&out));
    let flush_took = flushing.elapsed();
    let expected: HashSet<String> = (0..procs)
        .flat_map(|p| (0..runs).map(move |i| format!("run-{p}-{i}")))
        .collect();
    let spans = collected(&rotel, Duration::from_secs(60), |s| s.len() >= total);
    let t = tally(&spans, &expected, "run-");
    let after = status_json(&spool, &["--endpoint", &endpoint]);
    println!(
        "R2 [{}] {procs} processes x {runs} exec runs, backend down: {total} spans produced, \
         {} spooled, {} delivered by one flush, {} duplicated, {} missing, {} dropped; \
         {} runs wrote to stderr; spooling {spooling:.1?}, flush {flush_took:.1?}, total {:.1?}",
        scale.name(),
        num(&before, "spans"),
        t.unique,
        t.duplicates,
        t.missing.len(),
        num(&after, "dropped_spans"),
        noisy.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(
        t.unexpected.is_empty(),
        "spans nobody made: {:?}",
        t.unexpected
    );
    assert!(
        t.missing.is_empty(),
        "{} spans never arrived: {:?}",
        t.missing.len(),
        &t.missing[..t.missing.len().min(20)]
    );
    assert_eq!(t.duplicates, 0, "without a crash, every span exactly once");
    assert_eq!(num(&after, "batches"), 0, "{after}");
    assert_eq!(after["backend"], "up", "{after}");
}

// ---------------------------------------------------------------------------------------------
// R3: a backend that comes and goes.

/// Stops and starts the collector every `period` until finished; leaves it running.
struct Toggler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<(Instant, Instant)>>>,
}

impl Toggler {
    fn start(rotel: Arc<Mutex<Rotel>>, period: Duration) -> Toggler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = thread::spawn(move || {
            let mut up = true;
            let mut stops = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                let until = Instant::now() + period;
                while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(10));
                }
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let mut r = rotel.lock().unwrap();
                if up {
                    let from = Instant::now();
                    r.stop();
                    stops.push((from, Instant::now()));
                } else {
                    r.resume();
                }
                up = !up;
            }
            if !up {
                rotel.lock().unwrap().resume();
            }
            stops
        });
        Toggler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops toggling with the collector up; returns when each stop began and ended.
    fn finish(mut self) -> Vec<(Instant, Instant)> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Toggler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The budget of each run in R3: a run that spends it whole may have had a request time out.
const R3_BUDGET: Duration = Duration::from_secs(1);

/// One process of R3: when it ran.
struct Ran {
    from: Instant,
    to: Instant,
}

impl Ran {
    /// Whether this run could have made a duplicate: a request of it was received by the
    /// collector but not answered, because the collector was stopping meanwhile (cut), or
    /// because the answer did not come within the budget (timed out).
    fn in_window(&self, stops: &[(Instant, Instant)]) -> bool {
        let margin = Duration::from_millis(50);
        self.to - self.from >= R3_BUDGET - margin
            || stops
                .iter()
                .any(|&(a, b)| self.from <= b + margin && a <= self.to + margin)
    }
}

/// R3. `exec` runs (several at a time) and, between them, a `flush` every 0.25 s (it ignores
/// the shared backoff, so the spool is delivered while the collector comes and goes), while a
/// thread stops and starts the collector every 0.5 s; then one final flush with it up.
///
/// The duplicate window, as documented: a request the backend received but did not answer
/// (cut by the stop, or timed out) is kept and sent again. A run (exec or flush) stops
/// delivering at its first failure, so it leaves at most one such batch; it can leave one only
/// if it overlapped a stop or spent its whole budget. Duplicates must not exceed the number of
/// such runs.
#[test]
fn r3_runs_while_the_backend_flaps_are_delivered_or_counted_and_duplicates_stay_in_the_window() {
    let scale = Scale::get();
    let started = Instant::now();
    let (runs, workers) = (scale.r3_runs, scale.r3_workers);
    let rotel = Arc::new(Mutex::new(Rotel::start()));
    let endpoint = rotel.lock().unwrap().endpoint();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");

    let toggler = Toggler::start(rotel.clone(), Duration::from_millis(500));
    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let budget = format!("{}ms", R3_BUDGET.as_millis());
    let (execs, flushes, failures) = thread::scope(|s| {
        let flusher = s.spawn(|| {
            let mut ran = Vec::new();
            let mut failures = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let from = Instant::now();
                let out = ts(&spool)
                    .args(["--endpoint", &endpoint, "--budget", &budget, "flush"])
                    .output()
                    .unwrap();
                ran.push(Ran {
                    from,
                    to: Instant::now(),
                });
                // 1: something remains (the collector is down).
                if !matches!(out.status.code(), Some(0 | 1)) {
                    failures.push(format!("flush: {} {}", out.status, stderr(&out)));
                }
                thread::sleep(Duration::from_millis(250));
            }
            (ran, failures)
        });
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut ran = Vec::new();
                    let mut failures = Vec::new();
                    loop {
                        let j = next.fetch_add(1, Ordering::SeqCst);
                        if j >= runs {
                            return (ran, failures);
                        }
                        let name = format!("r3-{j}");
                        let from = Instant::now();
                        let out = ts(&spool)
                            .args(["--endpoint", &endpoint, "--budget", &budget])
                            .args(["exec", "--name", &name, "--", "true"])
                            .output()
                            .unwrap();
                        ran.push(Ran {
                            from,
                            to: Instant::now(),
                        });
                        if out.status.code() != Some(0) {
                            failures.push(format!("{name}: {} {}", out.status, stderr(&out)));
                        }
                    }
                })
            })
            .collect();
        let mut execs = Vec::new();
        let mut failures = Vec::new();
        for h in handles {
            let (r, f) = h.join().unwrap();
            execs.extend(r);
            failures.extend(f);
        }
        done.store(true, Ordering::SeqCst);
        let (flushes, f) = flusher.join().unwrap();
        failures.extend(f);
        (execs, flushes, failures)
    });
    let running = started.elapsed();
    let stops = toggler.finish();
    assert!(failures.is_empty(), "runs failed: {failures:?}");
    let mid = status_json(&spool, &["--endpoint", &endpoint]);

    let out = flush(&spool, &endpoint);
    assert_eq!(out.status.code(), Some(0), "final flush: {}", stderr(&out));
    let after = status_json(&spool, &["--endpoint", &endpoint]);
    assert_eq!(num(&after, "batches"), 0, "{after}");
    let dropped = num(&after, "dropped_spans") as usize;
    let expected: HashSet<String> = (0..runs).map(|j| format!("r3-{j}")).collect();
    let rotel = rotel.lock().unwrap();
    let spans = collected(&rotel, Duration::from_secs(60), |s| {
        tally(s, &expected, "r3-").unique + dropped >= runs
    });
    let t = tally(&spans, &expected, "r3-");
    let window = execs
        .iter()
        .chain(&flushes)
        .filter(|r| r.in_window(&stops))
        .count();
    let slow = execs
        .iter()
        .chain(&flushes)
        .filter(|r| r.to - r.from >= R3_BUDGET)
        .count();
    println!(
        "R3 [{}] {runs} exec runs ({workers} at a time) and {} flushes while the collector was \
         stopped {} times (every 0.5 s): {runs} spans produced, {} delivered, {dropped} counted \
         as dropped, {} duplicated (window: {window} runs overlapped a stop or timed out), {} \
         missing; {} waited for the final flush; {slow} runs spent their whole budget; runs \
         {running:.1?}, total {:.1?}",
        scale.name(),
        flushes.len(),
        stops.len(),
        t.unique,
        t.duplicates,
        t.missing.len(),
        num(&mid, "spans"),
        started.elapsed()
    );
    assert!(
        t.unexpected.is_empty(),
        "spans nobody made: {:?}",
        t.unexpected
    );
    assert_eq!(
        t.unique + dropped,
        runs,
        "delivered + dropped must be what was produced; missing: {:?}",
        &t.missing[..t.missing.len().min(20)]
    );
    assert!(
        t.duplicates <= window,
        "{} duplicates, beyond the window ({window} runs could have left one each)",
        t.duplicates
    );
    assert!(
        !stops.is_empty(),
        "the collector was never stopped: the test tested nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// R4: a full disk.

/// One R4 run.
struct DiskRun {
    name: String,
    stored: bool,
    lines: Vec<String>,
}

#[test]
fn r4_a_full_disk_keeps_exit_codes_warns_once_per_run_and_loses_nothing_stored() {
    const TEST: &str = "r4_a_full_disk";
    let scale = Scale::get();
    let started = Instant::now();
    let Some(disk) = Tmpfs::mount("256k", TEST) else {
        return;
    };
    let spool = disk.path().join("spool");
    let filler = disk.path().join("filler");
    let mut rotel = Rotel::start();
    rotel.stop();
    let endpoint = rotel.endpoint();

    let mut spans_now = 0u64;
    let mut runs: Vec<DiskRun> = Vec::new();
    let mut run = |runs: &mut Vec<DiskRun>| {
        let name = format!("r4-{}", runs.len());
        let out = ts(&spool)
            .args(["--endpoint", &endpoint, "--budget", "500ms", "exec"])
            .args(["--name", &name, "--", "sh", "-c", "exit 3"])
            .output()
            .unwrap();
        let lines = stderr_lines(&out);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{name}: the exit code must be the command's: {lines:?}"
        );
        let status = status_json(&spool, &["--endpoint", &endpoint]);
        let spans = num(&status, "spans");
        assert!(
            spans == spans_now || spans == spans_now + 1,
            "{name}: the spool went from {spans_now} to {spans} spans: {status}"
        );
        let stored = spans == spans_now + 1;
        spans_now = spans;
        runs.push(DiskRun {
            name,
            stored,
            lines,
        });
        status
    };

    // The spool exists and holds one span; then the disk is filled but for a few pages.
    run(&mut runs);
    assert!(
        runs[0].stored && runs[0].lines.is_empty(),
        "{:?}",
        runs[0].lines
    );
    fill_disk(&filler);
    let len = fs::metadata(&filler).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len.saturating_sub(12 * 1024))
        .unwrap();

    // Runs until the disk is full, then on until at least one run has probed the backend
    // after the backoff expired (it records the delivery state: more to write on a full disk).
    let mut full_since: Option<(Instant, f64)> = None;
    let mut full_runs = 0;
    loop {
        let status = run(&mut runs);
        let last = runs.last().unwrap();
        if !last.stored {
            full_runs += 1;
            if full_since.is_none() {
                let retry_at = status["retry_at"].as_f64().unwrap_or(0.0);
                full_since = Some((Instant::now(), retry_at));
            }
        }
        if let Some((_, retry_at)) = full_since
            && full_runs >= 5
            && unix_now() > retry_at + 0.3
        {
            break;
        }
        assert!(
            runs.len() < 2000 && started.elapsed() < Duration::from_secs(60),
            "the disk never filled up ({} runs, {full_runs} not stored)",
            runs.len()
        );
    }
    let full_phase = full_since.map(|(t, _)| t.elapsed()).unwrap_or_default();

    // Full, and clean.
    let v = status_verify_json(&spool, &["--endpoint", &endpoint]);
    assert_eq!(v["corrupt_records"], 0, "{v}");
    let held = num(&v, "spans");
    let stored: HashSet<String> = runs
        .iter()
        .filter(|r| r.stored)
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(held, stored.len() as u64, "{v}");

    // Space comes back, and so does the backend: everything stored goes out, once.
    fs::remove_file(&filler).unwrap();
    rotel.resume();
    let out = flush(&spool, &endpoint);
    assert_eq!(out.status.code(), Some(0), "flush: {}", stderr(&out));
    let spans = collected(&rotel, Duration::from_secs(30), |s| s.len() >= stored.len());
    let t = tally(&spans, &stored, "r4-");
    let a = status_verify_json(&spool, &["--endpoint", &endpoint]);
    // How each run said it: at most one line each (CONTRACT: problems are said once), and a
    // run whose span could not be stored must say so.
    let noisy: Vec<(&str, &[String])> = runs
        .iter()
        .filter(|r| r.lines.len() > 1)
        .map(|r| (r.name.as_str(), r.lines.as_slice()))
        .collect();
    let silent_losses: Vec<&str> = runs
        .iter()
        .filter(|r| !r.stored && r.lines.is_empty())
        .map(|r| r.name.as_str())
        .collect();
    let said = |stored: bool| {
        let of: Vec<&DiskRun> = runs.iter().filter(|r| r.stored == stored).collect();
        let warned = of.iter().filter(|r| !r.lines.is_empty()).count();
        let sample = of
            .iter()
            .find(|r| !r.lines.is_empty())
            .map(|r| r.lines.join(" | "))
            .unwrap_or_default();
        (of.len(), warned, sample)
    };
    let (kept, kept_warned, kept_sample) = said(true);
    let (lost, lost_warned, lost_sample) = said(false);
    println!(
        "R4 [{}] full disk (tmpfs 256k): {} runs, all exit 3; {kept} spooled ({kept_warned} of \
         them with a warning, e.g. {kept_sample:?}); {lost} not spooled, disk full \
         ({lost_warned} warned, {} in more than one line, e.g. {lost_sample:?}); {:.1}s with the \
         disk full; after freeing space one flush delivered {} of {kept} spooled, {} duplicated, \
         {} not-spooled delivered; {:.1?}",
        scale.name(),
        runs.len(),
        noisy.len(),
        full_phase.as_secs_f64(),
        t.unique,
        t.duplicates,
        t.unexpected.len(),
        started.elapsed()
    );
    assert!(
        t.unexpected.is_empty(),
        "spans whose run could not spool them were delivered: {:?}",
        t.unexpected
    );
    assert!(
        t.missing.is_empty(),
        "spooled spans never delivered: {:?}",
        t.missing
    );
    assert_eq!(t.duplicates, 0, "delivered more than once");
    assert!(
        silent_losses.is_empty(),
        "runs whose span could not be stored said nothing: {silent_losses:?}"
    );
    assert!(
        noisy.is_empty(),
        "a full disk must be said once per run; {} runs said it in several lines, first: {:#?}",
        noisy.len(),
        noisy[0]
    );
    assert_eq!(
        (num(&a, "batches"), a["corrupt_records"].as_u64()),
        (0, Some(0)),
        "{a}"
    );
    drop(rotel);
    drop(disk);
}
