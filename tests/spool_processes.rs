//! The spool under real processes: sixteen writers at once, `kill -9` at any instant of an
//! append or a delivery, and a disk that fills up.
//!
//! Child processes are this test binary run again (`--exact child_… --nocapture`) on one of the
//! `child_process_*` tests, which return at once unless the environment variable [`ROLE`] names
//! them. A child prints one line per event on stdout (`@@ ok 3 17`), flushed at once, so the
//! parent knows exactly what returned before the child died.
//!
//! Payloads encode (writer, seq) and are otherwise a pure function of it, so every byte read
//! back is checked. Random delays come from a seed printed at the start of each test; set
//! `TRACESPOOL_PROCTEST_SEED` to replay one.

mod common;

use common::{Tmpfs, XorShift, collect_events, emit, fill_disk};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracespool::spool::{
    AppendError, Encoding, Record, Spool, SpoolError, SpoolOptions, SyncPolicy,
};

// ---------------------------------------------------------------------------------------------
// Payloads: (writer, seq) -> bytes, checked byte for byte on the way out.

const PAYLOAD_MAGIC: [u8; 4] = *b"TSPT";
const PAYLOAD_HEADER: usize = 12;

fn mix(writer: u32, seq: u32) -> u64 {
    // splitmix64 of the pair.
    let mut z = ((u64::from(writer) << 32) | u64::from(seq)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `len` bytes: magic, writer, seq, then words that depend on the pair and their position.
fn payload(writer: u32, seq: u32, len: usize) -> Vec<u8> {
    assert!(len >= PAYLOAD_HEADER);
    let mut b = vec![0u8; len];
    b[0..4].copy_from_slice(&PAYLOAD_MAGIC);
    b[4..8].copy_from_slice(&writer.to_le_bytes());
    b[8..12].copy_from_slice(&seq.to_le_bytes());
    let key = mix(writer, seq);
    for (i, chunk) in b[PAYLOAD_HEADER..].chunks_mut(8).enumerate() {
        let word = (key ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    b
}

fn spans_of(writer: u32, seq: u32) -> u32 {
    (mix(seq, writer) % 9) as u32 + 1
}

type LenOf = fn(u32, u32) -> usize;

/// The (writer, seq) of a record, after checking every byte and the span count against them.
fn check_record(record: &Record, len_of: LenOf) -> (u32, u32) {
    let b = &record.payload;
    assert!(
        b.len() >= PAYLOAD_HEADER && b[0..4] == PAYLOAD_MAGIC,
        "a record that is not one of ours: {} bytes starting {:02x?}",
        b.len(),
        &b[..b.len().min(16)]
    );
    let writer = u32::from_le_bytes(b[4..8].try_into().unwrap());
    let seq = u32::from_le_bytes(b[8..12].try_into().unwrap());
    let expected = payload(writer, seq, len_of(writer, seq));
    if *b != expected {
        let at = b.iter().zip(&expected).position(|(x, y)| x != y);
        panic!(
            "batch ({writer}, {seq}) came back damaged: {} bytes (expected {}), first differing byte {at:?}",
            b.len(),
            expected.len()
        );
    }
    assert_eq!(
        record.span_count,
        spans_of(writer, seq),
        "span count of batch ({writer}, {seq})"
    );
    (writer, seq)
}

/// Takes the flush lease. Tests of this binary run as threads that spawn children: a child
/// between fork and exec briefly holds a copy of every descriptor, our lease's included (it is
/// close-on-exec, so only briefly), and a flock lasts until every copy is closed.
fn lease(spool: &Spool) -> tracespool::spool::Reader<'_> {
    for _ in 0..100 {
        match spool.reader() {
            Err(SpoolError::FlushLeaseHeld { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other.unwrap(),
        }
    }
    panic!("the flush lease stayed held for a second");
}

/// Delivers and acknowledges everything, checking each record.
fn drain_checked(spool: &Spool, len_of: LenOf) -> Vec<(u32, u32)> {
    let mut reader = lease(spool);
    let mut out = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        out.push(check_record(&record, len_of));
        reader.ack(&record).unwrap();
    }
    out
}

/// A copy of a spool directory, to read everything in it without acknowledging anything in
/// the original (a reader only ever offers the oldest unacknowledged record).
fn snapshot(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            snapshot(&entry.path(), &to.join(entry.file_name()));
        } else if ty.is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Names and sizes of the files in a spool directory, for failure messages.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

fn opts(max_bytes: u64, sync: SyncPolicy) -> SpoolOptions {
    SpoolOptions {
        max_bytes,
        max_spans: None,
        max_age: None,
        compression: Encoding::Identity,
        sync,
    }
}

fn sync_name(sync: SyncPolicy) -> &'static str {
    match sync {
        SyncPolicy::Always => "always",
        SyncPolicy::Never => "never",
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness without a crate.

// ---------------------------------------------------------------------------------------------
// Child processes: the parent's side.

/// Names the child test that should act; absent in a normal run.
const ROLE: &str = "TRACESPOOL_PROCTEST_ROLE";
const VAR_PREFIX: &str = "TRACESPOOL_PROCTEST_";

const CHILD_WRITER: &str = "child_process_appending_a_numbered_run";
const CHILD_CONCURRENT_READER: &str = "child_process_delivering_while_others_append";
const CHILD_KILLED_WRITER: &str = "child_process_appending_until_killed";
const CHILD_KILLED_READER: &str = "child_process_acknowledging_until_killed";

/// A running child and the events it has printed.
struct Proc {
    name: String,
    child: Child,
    events: Receiver<String>,
    collector: Option<JoinHandle<()>>,
    seen: Vec<String>,
    finished: bool,
}

fn spawn(role: &str, name: String, vars: &[(&str, String)]) -> Proc {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", role, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in vars {
        cmd.env(format!("{VAR_PREFIX}{k}"), v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (rx, collector) = collect_events(stdout);
    Proc {
        name,
        child,
        events: rx,
        collector: Some(collector),
        seen: Vec::new(),
        finished: false,
    }
}

impl Proc {
    /// Waits until the child prints `event`, keeping what it printed before.
    fn wait_for(&mut self, event: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(line) => {
                    let hit = line == event;
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no {event:?} within {timeout:?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().unwrap();
                    self.finished = true;
                    panic!("{} ended ({status}) before printing {event:?}", self.name);
                }
            }
        }
    }

    fn kill9(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // Safety: kill has no memory-safety preconditions; the pid is our unreaped child.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
    }

    /// Reaps the child and returns its status and every event it printed.
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().unwrap();
        self.finished = true;
        if let Some(collector) = self.collector.take() {
            collector.join().unwrap();
        }
        let mut events = std::mem::take(&mut self.seen);
        events.extend(self.events.try_iter());
        (status, events)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Splits `"ok 3 17"` into `("ok", [3, 17])`.
fn parse_event(line: &str) -> (&str, Vec<u32>) {
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or("");
    let nums = words
        .map(|w| w.parse().unwrap_or_else(|_| panic!("bad event {line:?}")))
        .collect();
    (kind, nums)
}

fn assert_killed(status: ExitStatus, name: &str) {
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{name} was supposed to be killed by SIGKILL but ended with {status}"
    );
}

// ---------------------------------------------------------------------------------------------
// Child processes: the child's side.

/// The parameters of a child, if this process is the child `role`.
struct ChildArgs;

impl ChildArgs {
    fn for_role(role: &str) -> Option<ChildArgs> {
        (std::env::var(ROLE).ok()? == role).then_some(ChildArgs)
    }

    fn get(&self, key: &str) -> String {
        std::env::var(format!("{VAR_PREFIX}{key}")).unwrap_or_else(|_| panic!("{key} not set"))
    }

    fn num(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap()
    }

    fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(self.get(key))
    }

    fn opts(&self) -> SpoolOptions {
        let sync = match self.get("SYNC").as_str() {
            "always" => SyncPolicy::Always,
            "never" => SyncPolicy::Never,
            other => panic!("SYNC={other}"),
        };
        opts(self.num("MAX_BYTES"), sync)
    }
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        thread::sleep(Duration::from_micros(200));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Sixteen writers at once.

const WRITERS: u32 = 16;
const PER_WRITER: u32 = 100;
/// Segments of 256 KiB: they rotate every few dozen appends.
const WRITERS_MAX_BYTES: u64 = 4 << 20;

/// Mostly small batches; every tenth a few KiB; once per writer 48–160 KiB, which rarely fits
/// in what is left of a 256 KiB segment.
fn concurrent_len(writer: u32, seq: u32) -> usize {
    let h = mix(writer, seq);
    if seq % PER_WRITER == (writer * 37 + 11) % PER_WRITER {
        48 * 1024 + (h % (112 * 1024)) as usize
    } else if seq % 10 == writer % 10 {
        2 * 1024 + (h % (10 * 1024)) as usize
    } else {
        PAYLOAD_HEADER + (h % 700) as usize
    }
}

#[test]
fn child_process_appending_a_numbered_run() {
    let Some(args) = ChildArgs::for_role(CHILD_WRITER) else {
        return;
    };
    let spool = Spool::open(args.path("DIR"), args.opts()).unwrap();
    let writer = args.num("WRITER") as u32;
    emit("ready");
    wait_for_file(&args.path("GO"));
    for seq in 0..args.num("COUNT") as u32 {
        let bytes = payload(writer, seq, concurrent_len(writer, seq));
        if let Err(e) = spool.append(&bytes, spans_of(writer, seq)) {
            panic!("writer {writer}: append {seq} failed: {e}");
        }
        emit(&format!("ok {writer} {seq}"));
        // Unsynced appends take microseconds: without a pause now and then, a writer would often
        // finish its run within one time slice, before the others got going.
        if seq % 4 == 3 {
            thread::sleep(Duration::from_micros(mix(seq, writer) % 200));
        }
    }
}

#[test]
fn child_process_delivering_while_others_append() {
    let Some(args) = ChildArgs::for_role(CHILD_CONCURRENT_READER) else {
        return;
    };
    let spool = Spool::open(args.path("DIR"), args.opts()).unwrap();
    let mut reader = lease(&spool);
    let stop = args.path("STOP");
    emit("ready");
    wait_for_file(&args.path("GO"));
    loop {
        // Looked at before `next`: a `None` after the writers finished means all was read.
        let writers_done = stop.exists();
        match reader.next().unwrap() {
            Some(record) => {
                let (writer, seq) = check_record(&record, concurrent_len);
                reader.ack(&record).unwrap();
                emit(&format!("acked {writer} {seq}"));
            }
            None if writers_done => return,
            None => thread::sleep(Duration::from_micros(300)),
        }
    }
}

/// Runs the writers (and a concurrent reader), then checks that every batch comes out exactly
/// once and each writer's batches in the order it appended them.
fn sixteen_writers(sync: SyncPolicy, with_reader: bool) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let go = tmp.path().join("go");
    let stop = tmp.path().join("stop");
    let opts = opts(WRITERS_MAX_BYTES, sync);

    // The parameters must leave the bound out of it: nothing may be dropped.
    let total_bytes: u64 = (0..WRITERS)
        .flat_map(|w| (0..PER_WRITER).map(move |s| concurrent_len(w, s) as u64 + 32))
        .sum();
    assert!(
        total_bytes + 64 * 1024 < WRITERS_MAX_BYTES - (WRITERS_MAX_BYTES / 16),
        "test parameters: {total_bytes} bytes of frames would not fit"
    );
    drop(Spool::open(&dir, opts).unwrap());

    let vars = |writer: u32| {
        vec![
            ("DIR", dir.display().to_string()),
            ("SYNC", sync_name(sync).to_owned()),
            ("MAX_BYTES", WRITERS_MAX_BYTES.to_string()),
            ("WRITER", writer.to_string()),
            ("COUNT", PER_WRITER.to_string()),
            ("GO", go.display().to_string()),
            ("STOP", stop.display().to_string()),
        ]
    };
    let mut writers: Vec<Proc> = (0..WRITERS)
        .map(|w| spawn(CHILD_WRITER, format!("writer {w}"), &vars(w)))
        .collect();
    let mut reader =
        with_reader.then(|| spawn(CHILD_CONCURRENT_READER, "reader".to_owned(), &vars(0)));
    for p in writers.iter_mut().chain(reader.iter_mut()) {
        p.wait_for("ready", Duration::from_secs(120));
    }
    fs::write(&go, b"").unwrap();

    let mut reported = BTreeSet::new();
    for w in writers.drain(..) {
        let name = w.name.clone();
        let (status, events) = w.finish();
        assert!(status.success(), "{name} failed: {status}");
        for event in events {
            if let ("ok", nums) = parse_event(&event) {
                reported.insert((nums[0], nums[1]));
            }
        }
    }
    let expected: BTreeSet<(u32, u32)> = (0..WRITERS)
        .flat_map(|w| (0..PER_WRITER).map(move |s| (w, s)))
        .collect();
    assert_eq!(reported, expected, "every append must have returned Ok");
    let appended = started.elapsed();

    fs::write(&stop, b"").unwrap();
    let mut order = Vec::new();
    if let Some(r) = reader.take() {
        let (status, events) = r.finish();
        assert!(status.success(), "the reader failed: {status}");
        for event in events {
            if let ("acked", nums) = parse_event(&event) {
                order.push((nums[0], nums[1]));
            }
        }
    }
    let by_reader = order.len() as u64;

    let spool = Spool::open(&dir, opts).unwrap();
    let stats = spool.stats().unwrap();
    assert_eq!(
        (stats.dropped_batches, stats.dropped_spans),
        (0, 0),
        "nothing may be dropped: {stats:?}"
    );
    let report = spool.verify().unwrap();
    assert_eq!(
        (report.corrupt_records, report.torn_records),
        (0, 0),
        "{report:?}"
    );
    let total = u64::from(WRITERS * PER_WRITER);
    assert_eq!(report.records, total - by_reader, "{report:?}");
    assert_eq!(stats.batches, total - by_reader, "{stats:?}");

    order.extend(drain_checked(&spool, concurrent_len));

    let mut counts: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    for &key in &order {
        *counts.entry(key).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|&(_, &n)| n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "delivered more than once: {duplicated:?}"
    );
    let delivered: BTreeSet<(u32, u32)> = counts.keys().copied().collect();
    let lost: Vec<_> = expected.difference(&delivered).take(10).collect();
    assert!(
        lost.is_empty(),
        "{} batches never delivered, e.g. {lost:?}",
        expected.len() - expected.intersection(&delivered).count()
    );
    let unknown: Vec<_> = delivered.difference(&expected).collect();
    assert!(
        unknown.is_empty(),
        "delivered but never appended: {unknown:?}"
    );

    // Each writer appended one batch after the other: they come out in that order.
    let mut last: Vec<Option<u32>> = vec![None; WRITERS as usize];
    for &(writer, seq) in &order {
        let prev = &mut last[writer as usize];
        assert!(
            prev.is_none_or(|p| p < seq),
            "writer {writer}: batch {seq} delivered after batch {prev:?}"
        );
        *prev = Some(seq);
    }

    // How often consecutive batches come from different writers: the appends interleaved.
    let switches = order.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert!(
        switches >= 4 * WRITERS as usize,
        "the writers hardly overlapped ({switches} changes of writer): nothing was tested"
    );

    let after = spool.stats().unwrap();
    assert_eq!(
        (after.batches, after.corrupt_records, after.torn_records),
        (0, 0, 0),
        "{after:?}"
    );
    assert_eq!(spool.verify().unwrap().records, 0);
    eprintln!(
        "sync={} reader={with_reader}: {total} appends by {WRITERS} processes in {appended:?}, \
         {by_reader} delivered concurrently, writer changed {switches} times in delivery order, \
         {total_bytes} bytes of frames, total {:?}",
        sync_name(sync),
        started.elapsed()
    );
}

#[test]
fn sixteen_processes_appending_at_once_lose_nothing_and_duplicate_nothing() {
    sixteen_writers(SyncPolicy::Always, false);
    sixteen_writers(SyncPolicy::Never, false);
}

#[test]
fn a_reader_draining_while_sixteen_processes_append_delivers_each_batch_exactly_once() {
    sixteen_writers(SyncPolicy::Always, true);
    sixteen_writers(SyncPolicy::Never, true);
}

// ---------------------------------------------------------------------------------------------
// 2. kill -9 during appends.

const KILL_ROUNDS_PER_POLICY: usize = 30;
/// Segments of 1 MiB; nothing is dropped between the drains made every few rounds.
const KILL_MAX_BYTES: u64 = 16 << 20;
/// A child stops appending after this much; the parent drains the spool past `KILL_DRAIN_AT`.
const KILL_CAP_BYTES: u64 = 5 << 20;
const KILL_DRAIN_AT: u64 = 6 << 20;

/// From ~100 B to 300 KiB, spread over the orders of magnitude: the large ones take long
/// enough to write that a kill can tear them.
fn kill_len(_writer: u32, seq: u32) -> usize {
    let h = mix(7, seq);
    let base = 100usize << (h % 12);
    (base + ((h >> 8) as usize % base)).min(300 * 1024)
}

#[test]
fn child_process_appending_until_killed() {
    let Some(args) = ChildArgs::for_role(CHILD_KILLED_WRITER) else {
        return;
    };
    emit("opening");
    let spool = Spool::open(args.path("DIR"), args.opts()).unwrap();
    // Made beforehand (slow in a debug build), so that the appends follow each other closely
    // and a kill often lands inside one. Capped to keep the spool under its bound between the
    // parent's drains.
    let start = args.num("START") as u32;
    let mut batches = Vec::new();
    let mut total = 0;
    for seq in start.. {
        let len = kill_len(0, seq);
        if total + len as u64 > args.num("CAP_BYTES") {
            break;
        }
        total += len as u64;
        batches.push((seq, payload(0, seq, len)));
    }
    emit("ready");
    for (seq, bytes) in batches {
        emit(&format!("try {seq}"));
        match spool.append(&bytes, spans_of(0, seq)) {
            Ok(outcome) => emit(&format!("ok {seq} {}", outcome.dropped_batches)),
            Err(e) => panic!("append {seq} failed: {e}"),
        }
    }
    emit("done");
    thread::sleep(Duration::from_secs(20));
    // Not killed: the parent fails the test on a normal exit.
}

/// What the appends of all rounds so far returned, and what real drains delivered.
#[derive(Default)]
struct AppendLog {
    tried: BTreeSet<u32>,
    ok: BTreeSet<u32>,
    delivered: BTreeMap<u32, u32>,
}

impl AppendLog {
    /// Takes in the events of one child; true when it was killed during an append.
    fn record_round(&mut self, events: &[String]) -> bool {
        let mut in_flight = None;
        for event in events {
            match parse_event(event) {
                ("try", n) => {
                    assert!(self.tried.insert(n[0]), "seq {} tried twice", n[0]);
                    in_flight = Some(n[0]);
                }
                ("ok", n) => {
                    assert_eq!(in_flight.take(), Some(n[0]), "events out of order");
                    assert_eq!(
                        n[1], 0,
                        "test parameters: the size bound dropped batches to make room for {}",
                        n[0]
                    );
                    self.ok.insert(n[0]);
                }
                _ => {}
            }
        }
        in_flight.is_some()
    }

    /// Drains the real spool, counting what it delivers.
    fn drain(&mut self, spool: &Spool) {
        for (_, seq) in drain_checked(spool, kill_len) {
            *self.delivered.entry(seq).or_default() += 1;
        }
    }
}

/// After a kill: nothing corrupt, and everything whose append returned is there, intact, once.
fn check_after_append_kill(dir: &Path, scratch: &Path, opts: SpoolOptions, log: &AppendLog) {
    let spool = Spool::open(dir, opts).unwrap();
    let report = spool.verify().unwrap();
    assert_eq!(report.corrupt_records, 0, "after a kill: {report:?}");
    drop(spool);

    let _ = fs::remove_dir_all(scratch);
    snapshot(dir, scratch);
    let copy = Spool::open(scratch, opts).unwrap();
    let seqs: Vec<u32> = drain_checked(&copy, kill_len)
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "one writer at a time: batches must come out once each, in order: {seqs:?}"
    );
    for &seq in &seqs {
        assert!(log.tried.contains(&seq), "batch {seq} was never appended");
        assert!(
            !log.delivered.contains_key(&seq),
            "batch {seq} delivered and acknowledged before, yet returned again"
        );
    }
    let present: BTreeSet<u32> = seqs.iter().copied().collect();
    let missing: Vec<u32> = log
        .ok
        .iter()
        .filter(|s| !log.delivered.contains_key(s) && !present.contains(s))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "appends that returned Ok are missing after a kill: {missing:?}; a reader found {seqs:?}; \
         verify: {report:?}; files: {:?}",
        listing(dir)
    );
    // verify() stops at the committed length of the active segment; a reader also finds a
    // complete frame past it, written by the append the kill interrupted.
    let found = seqs.len() as u64;
    assert!(
        report.records <= found && found - report.records <= 1,
        "verify counted {} records, a reader found {}",
        report.records,
        seqs.len()
    );
    let stats = copy.stats().unwrap();
    assert_eq!(stats.corrupt_records, 0, "reading after a kill: {stats:?}");
    drop(copy);
    fs::remove_dir_all(scratch).unwrap();
}

fn kill_appends(sync: SyncPolicy, rng: &mut XorShift) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let scratch = tmp.path().join("snapshot");
    let opts = opts(KILL_MAX_BYTES, sync);
    let mut log = AppendLog::default();
    let mut next_seq = 0u32;
    let mut in_flight_kills = 0;
    let mut late_kills = 0;
    // Without syncing a child appends hundreds of batches in 30 ms: aim at the first ones.
    let max_delay_us = match sync {
        SyncPolicy::Always => 30_000,
        SyncPolicy::Never => 4_000,
    };

    for round in 0..KILL_ROUNDS_PER_POLICY {
        let vars = [
            ("DIR", dir.display().to_string()),
            ("SYNC", sync_name(sync).to_owned()),
            ("MAX_BYTES", KILL_MAX_BYTES.to_string()),
            ("START", next_seq.to_string()),
            ("CAP_BYTES", KILL_CAP_BYTES.to_string()),
        ];
        let mut child = spawn(CHILD_KILLED_WRITER, format!("appender {round}"), &vars);
        // Now and then aim at opening (repairing) the spool rather than at appending.
        let early = round % 6 == 5;
        if early {
            child.wait_for("opening", Duration::from_secs(60));
            thread::sleep(Duration::from_micros(rng.below(3_000)));
        } else {
            child.wait_for("ready", Duration::from_secs(60));
            thread::sleep(Duration::from_micros(rng.below(max_delay_us)));
        }
        child.kill9();
        let name = child.name.clone();
        let (status, events) = child.finish();
        assert_killed(status, &name);
        in_flight_kills += usize::from(log.record_round(&events));
        late_kills += usize::from(events.iter().any(|e| e == "done"));
        if let Some(&last) = log.tried.last() {
            next_seq = last + 1;
        }

        check_after_append_kill(&dir, &scratch, opts, &log);
        let spool = Spool::open(&dir, opts).unwrap();
        if round % 10 == 9 || spool.stats().unwrap().bytes > KILL_DRAIN_AT {
            log.drain(&spool);
        }
    }

    let spool = Spool::open(&dir, opts).unwrap();
    log.drain(&spool);
    for seq in &log.ok {
        assert_eq!(
            log.delivered.get(seq),
            Some(&1),
            "batch {seq} returned Ok: it must be delivered exactly once"
        );
    }
    for (seq, &n) in &log.delivered {
        assert!(log.tried.contains(seq), "batch {seq} was never appended");
        assert_eq!(
            n, 1,
            "batch {seq} (in flight at a kill) delivered {n} times"
        );
    }
    let stats = spool.stats().unwrap();
    assert_eq!(stats.corrupt_records, 0, "{stats:?}");
    assert_eq!(stats.dropped_batches, 0, "{stats:?}");
    assert_eq!(stats.batches, 0, "{stats:?}");
    let report = spool.verify().unwrap();
    assert_eq!(
        (report.records, report.corrupt_records),
        (0, 0),
        "{report:?}"
    );
    eprintln!(
        "sync={}: {KILL_ROUNDS_PER_POLICY} kills, {} appends returned, {} of {} interrupted \
         appends delivered, {in_flight_kills} kills during an append, {late_kills} after the last, \
         {} torn tails, {:?}",
        sync_name(sync),
        log.ok.len(),
        log.delivered.len() - log.ok.len(),
        log.tried.len() - log.ok.len(),
        stats.torn_records,
        started.elapsed()
    );
    assert!(
        in_flight_kills > 0,
        "no kill landed during an append: the test did not test anything"
    );
}

#[test]
fn appends_survive_kill_9_at_any_instant() {
    let mut rng = XorShift::for_test(
        "appends_survive_kill_9_at_any_instant",
        "TRACESPOOL_PROCTEST_SEED",
    );
    kill_appends(SyncPolicy::Always, &mut rng);
    kill_appends(SyncPolicy::Never, &mut rng);
}

// ---------------------------------------------------------------------------------------------
// 3. kill -9 during delivery.

const DELIVERY_ROUNDS_PER_POLICY: usize = 30;
/// Segments of 256 KiB, so delivery often finishes one and deletes it.
const DELIVERY_MAX_BYTES: u64 = 4 << 20;

/// 100 B to ~16 KiB.
fn delivery_len(_writer: u32, seq: u32) -> usize {
    let h = mix(9, seq);
    let base = 100usize << (h % 8);
    base + ((h >> 8) as usize % base)
}

#[test]
fn child_process_acknowledging_until_killed() {
    let Some(args) = ChildArgs::for_role(CHILD_KILLED_READER) else {
        return;
    };
    let spool = Spool::open(args.path("DIR"), args.opts()).unwrap();
    let mut reader = lease(&spool);
    emit("ready");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match reader.next().unwrap() {
            Some(record) => {
                let (_, seq) = check_record(&record, delivery_len);
                emit(&format!("got {seq}"));
                reader.ack(&record).unwrap();
                emit(&format!("acked {seq}"));
            }
            None => thread::sleep(Duration::from_micros(300)),
        }
    }
}

/// `batch` batches are added whenever fewer than half that wait; the kill comes up to
/// `max_delay_us` after the reader is ready.
fn kill_deliveries(sync: SyncPolicy, rng: &mut XorShift, batch: u32, max_delay_us: u64) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let scratch = tmp.path().join("snapshot");
    let opts = opts(DELIVERY_MAX_BYTES, sync);
    // Batches first..next_seq are in the spool; everything before `first` was acknowledged.
    let mut first = 0u32;
    let mut next_seq = 0u32;
    let mut acked_by_children = BTreeSet::new();
    let mut got_by_children = BTreeSet::new();
    let mut mid_delivery_kills = 0;
    let mut ack_in_flight = 0;
    let mut ack_in_flight_durable = 0;

    for round in 0..DELIVERY_ROUNDS_PER_POLICY {
        {
            let spool = Spool::open(&dir, opts).unwrap();
            if next_seq - first < batch / 2 {
                for _ in 0..batch {
                    let bytes = payload(0, next_seq, delivery_len(0, next_seq));
                    spool.append(&bytes, spans_of(0, next_seq)).unwrap();
                    next_seq += 1;
                }
            }
        }
        let vars = [
            ("DIR", dir.display().to_string()),
            ("SYNC", sync_name(sync).to_owned()),
            ("MAX_BYTES", DELIVERY_MAX_BYTES.to_string()),
        ];
        let mut child = spawn(CHILD_KILLED_READER, format!("reader {round}"), &vars);
        child.wait_for("ready", Duration::from_secs(60));
        thread::sleep(Duration::from_micros(rng.below(max_delay_us)));
        child.kill9();
        let name = child.name.clone();
        let (status, events) = child.finish();
        assert_killed(status, &name);

        // The child delivers oldest first, starting at `first`.
        let mut expect = first;
        let mut got_unacked = None;
        for event in &events {
            match parse_event(event) {
                ("got", n) => {
                    assert_eq!(n[0], expect, "{name} was given the wrong batch");
                    got_by_children.insert(n[0]);
                    got_unacked = Some(n[0]);
                }
                ("acked", n) => {
                    assert_eq!(got_unacked.take(), Some(n[0]), "events out of order");
                    assert!(acked_by_children.insert(n[0]), "batch {} acked twice", n[0]);
                    expect += 1;
                }
                _ => {}
            }
        }
        // A batch whose ack did not return may or may not be acknowledged.
        ack_in_flight += usize::from(got_unacked.is_some());
        let allowed_first = match got_unacked {
            Some(seq) => vec![seq, seq + 1],
            None => vec![expect],
        };

        let spool = Spool::open(&dir, opts).unwrap();
        let report = spool.verify().unwrap();
        assert_eq!(
            (report.corrupt_records, report.torn_records),
            (0, 0),
            "{report:?}"
        );
        drop(spool);
        let _ = fs::remove_dir_all(&scratch);
        snapshot(&dir, &scratch);
        let seqs: Vec<u32> = drain_checked(&Spool::open(&scratch, opts).unwrap(), delivery_len)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        fs::remove_dir_all(&scratch).unwrap();
        if let Some(again) = seqs.iter().find(|s| acked_by_children.contains(s)) {
            panic!("batch {again} was acknowledged (the ack returned), yet delivered again");
        }
        let now_first = seqs.first().copied().unwrap_or(next_seq);
        assert!(
            allowed_first.contains(&now_first),
            "after the kill delivery resumes at {now_first}, expected one of {allowed_first:?}"
        );
        let expected: Vec<u32> = (now_first..next_seq).collect();
        assert_eq!(seqs, expected, "batches waiting after the kill");
        assert_eq!(report.records, seqs.len() as u64);
        if got_unacked.is_some_and(|s| now_first == s + 1) {
            ack_in_flight_durable += 1;
        }
        if expect > first && now_first < next_seq {
            mid_delivery_kills += 1;
        }
        first = now_first;
    }

    let spool = Spool::open(&dir, opts).unwrap();
    let rest: Vec<u32> = drain_checked(&spool, delivery_len)
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(rest, (first..next_seq).collect::<Vec<_>>());
    for seq in 0..next_seq {
        assert!(
            got_by_children.contains(&seq) || rest.contains(&seq),
            "batch {seq} was never delivered"
        );
    }
    let stats = spool.stats().unwrap();
    assert_eq!(
        (
            stats.batches,
            stats.dropped_batches,
            stats.corrupt_records,
            stats.torn_records
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    eprintln!(
        "sync={}: {DELIVERY_ROUNDS_PER_POLICY} kills, {next_seq} batches, {} acknowledged by \
         killed readers, {mid_delivery_kills} kills in the middle of delivering, \
         {ack_in_flight} during an ack ({ack_in_flight_durable} of them already durable), {:?}",
        sync_name(sync),
        acked_by_children.len(),
        started.elapsed()
    );
}

#[test]
fn acknowledgements_survive_kill_9_during_delivery() {
    let mut rng = XorShift::for_test(
        "acknowledgements_survive_kill_9_during_delivery",
        "TRACESPOOL_PROCTEST_SEED",
    );
    kill_deliveries(SyncPolicy::Always, &mut rng, 200, 30_000);
    // Without syncing, delivery is an order of magnitude faster.
    kill_deliveries(SyncPolicy::Never, &mut rng, 400, 6_000);
}

// ---------------------------------------------------------------------------------------------
// 4. A full disk.

/// Seqs are numbered by phase so that a batch's length follows from its seq alone.
const PHASE: u32 = 10_000;

/// Phase 0: 200 B to ~40 KiB; phases 1–3: the same capped at 8 KiB, 1 KiB, 64 B, to use up the
/// last pages of the disk; phase 4 and later: 8 KiB.
fn disk_len(_writer: u32, seq: u32) -> usize {
    let len = 200 + (mix(11, seq) % 40_000) as usize;
    match seq / PHASE {
        0 => len,
        1 => len.min(8192),
        2 => len.min(1024),
        3 => 64,
        _ => 8192,
    }
}

fn assert_no_space(e: &AppendError, what: &str) {
    assert!(
        e.is_no_space(),
        "{what}: the disk is full, but the error does not say so \
         (is_no_space() is false): {e} / {e:?}"
    );
}

#[test]
fn a_full_disk_fails_the_append_cleanly_and_the_spool_stays_readable() {
    const TEST: &str = "a_full_disk_fails_the_append_cleanly_and_the_spool_stays_readable";
    let Some(disk) = Tmpfs::mount("512k", TEST) else {
        return;
    };
    // Space to give back later without touching the spool.
    let filler = disk.path().join("filler");
    fs::write(&filler, vec![0xA5u8; 96 * 1024]).unwrap();
    let dir = disk.path().join("spool");
    // A bound far above the disk: the disk is what runs out.
    let opts = opts(64 << 20, SyncPolicy::Always);
    let mut stored = Vec::new();
    let mut failures = 0;
    {
        let spool = Spool::open(&dir, opts).unwrap();
        // Batches of every size until one fails, then smaller and smaller ones to use up the
        // last pages: every failure must be a clean "no space".
        for phase in 0..4 {
            for seq in phase * PHASE..(phase + 1) * PHASE {
                let len = disk_len(0, seq);
                let before = spool.stats().unwrap();
                match spool.append(&payload(0, seq, len), spans_of(0, seq)) {
                    Ok(outcome) => {
                        assert_eq!(outcome.dropped_batches, 0);
                        stored.push(seq);
                    }
                    Err(e) => {
                        assert_no_space(&e, &format!("append {seq} of {len} bytes"));
                        let after = spool.stats().unwrap();
                        assert_eq!(
                            (after.batches, after.spans, after.bytes),
                            (before.batches, before.spans, before.bytes),
                            "a failed append must leave the spool as it was"
                        );
                        failures += 1;
                        break;
                    }
                }
                assert!(seq + 1 < (phase + 1) * PHASE, "the disk never filled up");
            }
        }
        assert_eq!(spool.stats().unwrap().batches, stored.len() as u64);
    }
    assert!(stored.len() >= 5, "only {} appends fitted", stored.len());
    let filled = stored.len();

    // As a fresh process finds it: everything whose append returned, nothing damaged.
    let spool = Spool::open(&dir, opts).unwrap();
    let report = spool.verify().unwrap();
    assert_eq!(
        (report.records, report.corrupt_records, report.torn_records),
        (stored.len() as u64, 0, 0),
        "{report:?}"
    );

    // Space comes back: appends work again, and the old batches are still delivered first.
    fs::remove_file(&filler).unwrap();
    for seq in 4 * PHASE..4 * PHASE + 5 {
        let bytes = payload(0, seq, disk_len(0, seq));
        if let Err(e) = spool.append(&bytes, spans_of(0, seq)) {
            panic!("with space freed, append {seq} failed: {e}");
        }
        stored.push(seq);
    }
    let delivered: Vec<u32> = drain_checked(&spool, disk_len)
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(delivered, stored);
    let stats = spool.stats().unwrap();
    assert_eq!(
        (stats.batches, stats.corrupt_records, stats.torn_records),
        (0, 0, 0),
        "{stats:?}"
    );
    eprintln!("{filled} batches stored on a 512 KiB disk, {failures} clean failures");
    drop(spool);
}

#[test]
fn a_full_disk_met_while_starting_a_new_segment_is_reported_as_no_space() {
    const TEST: &str = "a_full_disk_met_while_starting_a_new_segment_is_reported_as_no_space";
    let Some(disk) = Tmpfs::mount("512k", TEST) else {
        return;
    };
    let dir = disk.path().join("spool");
    // Segments of 64 KiB; one batch fills a segment exactly, so the next append must start a
    // new segment file.
    let opts = opts(1 << 20, SyncPolicy::Always);
    let full_segment = 64 * 1024 - 32 - 32;
    let spool = Spool::open(&dir, opts).unwrap();
    spool
        .append(&payload(0, 0, full_segment), spans_of(0, 0))
        .unwrap();
    let filler = disk.path().join("filler");
    fill_disk(&filler);

    let before = spool.stats().unwrap();
    let err = spool
        .append(&payload(0, 1, 100), spans_of(0, 1))
        .expect_err("the disk is full");
    let after = spool.stats().unwrap();
    assert_eq!(
        (after.batches, after.bytes),
        (before.batches, before.bytes),
        "a failed append must leave the spool as it was"
    );
    let report = Spool::open(&dir, opts).unwrap().verify().unwrap();
    assert_eq!(
        (report.records, report.corrupt_records, report.torn_records),
        (1, 0, 0),
        "{report:?}"
    );
    // The classification is checked last so that the checks above run either way.
    let classified = err.is_no_space();

    fs::remove_file(&filler).unwrap();
    spool.append(&payload(0, 2, 100), spans_of(0, 2)).unwrap();
    let delivered: Vec<u32> =
        drain_checked(&spool, |_, s| if s == 0 { 64 * 1024 - 64 } else { 100 })
            .into_iter()
            .map(|(_, s)| s)
            .collect();
    assert_eq!(delivered, [0, 2]);
    drop(spool);
    assert!(
        classified,
        "starting a new segment on a full disk: is_no_space() is false for {err} / {err:?}"
    );
}

#[test]
fn a_reader_delivers_and_frees_space_on_a_full_disk() {
    const TEST: &str = "a_reader_delivers_and_frees_space_on_a_full_disk";
    let Some(disk) = Tmpfs::mount("512k", TEST) else {
        return;
    };
    let dir = disk.path().join("spool");
    // Segments of 64 KiB, so that delivering deletes some; the bound is above the disk.
    let opts = opts(1 << 20, SyncPolicy::Always);
    let spool = Spool::open(&dir, opts).unwrap();
    let mut stored = 0u32;
    loop {
        match spool.append(&payload(0, stored, 4000), spans_of(0, stored)) {
            Ok(_) => stored += 1,
            Err(e) => {
                // Whether it is classified as such is the business of the tests above.
                assert!(
                    e.to_string().contains("No space left") || e.is_no_space(),
                    "append {stored} failed, and not for lack of space: {e}"
                );
                break;
            }
        }
        assert!(stored < 1000, "the disk never filled up");
    }
    assert!(stored > 32, "only {stored} batches fitted");

    // Nothing else frees space: delivery must be able to.
    let mut reader = lease(&spool);
    let mut delivered = 0u32;
    while let Some(record) = reader.next().unwrap() {
        assert_eq!(check_record(&record, |_, _| 4000), (0, delivered));
        if let Err(e) = reader.ack(&record) {
            panic!(
                "acknowledging batch {delivered} of {stored} on a full disk failed: {e} \
                 (delivery cannot free the space it needs)"
            );
        }
        delivered += 1;
    }
    drop(reader);
    assert_eq!(delivered, stored);
    for seq in stored..stored + 10 {
        spool
            .append(&payload(0, seq, 4000), spans_of(0, seq))
            .unwrap_or_else(|e| panic!("after delivery freed the disk, append {seq}: {e}"));
    }
    let again: Vec<u32> = drain_checked(&spool, |_, _| 4000)
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(again, (stored..stored + 10).collect::<Vec<_>>());
    drop(spool);
}
