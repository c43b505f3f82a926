//! `tracespool exec -- true`: what wrapping a hook costs, end to end, as a fresh process.
//!
//! `cargo bench --bench exec` prints a table and writes the same figures to
//! `target/bench-report/exec.json`. The binary measured is the one cargo built for this bench
//! (`CARGO_BIN_EXE_tracespool`: `target/release/tracespool` under `cargo bench`).
//!
//! Each figure is the wall time from `spawn` to the reaping `wait4` of one process, with stdin
//! and stdout on `/dev/null` and stderr in a log file (checked empty at the end); `wait4` also
//! gives the CPU time (user + sys) of the process and of what it waited for (`true`).
//!
//! Cases, one sample of each per round, in a random order that changes every round (the machine
//! is shared and noisy: only figures taken side by side are compared):
//! - `true`: `true` spawned directly: the baseline;
//! - `no_endpoint`: `tracespool --spool-dir D exec -- true`, no endpoint (the span is spooled);
//! - `no_endpoint_no_capture`: the same with `exec --no-capture` (no loopback receiver);
//! - `disabled`: the same with `OTEL_SDK_DISABLED=true`;
//! - `refused`: endpoint `http://127.0.0.1:P` where P is a port bound by a socket that never
//!   listens (so connecting is refused, and nothing else can take the port). The `delivery` state
//!   file is removed before each run, so every run pays one refused connection attempt;
//! - `backoff_open`: the same endpoint with the shared backoff open: no connection attempt;
//! - `rotel_up`: rotel (`--exporter blackhole`, no debug log) as the endpoint; the spool stays
//!   empty, so each run sends its one span;
//! - `hang_backoff`: a server that accepts and never answers, inside the backoff its first run
//!   opened;
//! - for the analysis only (no target): `floor_rust_wrapper` (a five-line Rust program, built at
//!   start by the same rustc, that spawns `true` and waits for it: what any Rust wrapper costs
//!   on this machine before it does anything of its own), `version` (`tracespool --version`:
//!   what starting this binary costs) and `no_endpoint_absolute_path` (`exec -- /usr/bin/true`:
//!   `posix_spawn` with no `PATH` search, against `posix_spawnp` for the bare name).
//!
//! Every 25 rounds, one *first* run against the hanging server (a fresh spool dir, no backoff)
//! with `--budget 500ms`; three times in the run, the same with the default budget (2 s).
//!
//! The backoff is opened the way a real one is (one failed run), then deepened with `tracespool
//! flush` (which ignores it and counts each failure) until `retry_at` is at least 200 s away:
//! after one failure it would close again after about 1 s, and each later run would probe. The
//! bench checks at the end that `retry_at` did not move (no run connected).
//!
//! Overhead = median(case) − median(`true`); "paired" is the median over rounds of
//! (case − `true`) within the same round. Targets (overhead of the median): ≤ 1.5 ms with no
//! endpoint and with the backoff open, ≤ 2 ms with the hanging server in its backoff, ≤ 5 ms
//! refused, ≤ 10 ms with rotel up; the first run against the hanging server ≤ budget + 50 ms
//! (every sample: the worst one is compared).
//!
//! Without `--bench` (e.g. `cargo test --all-targets`), or with `TRACESPOOL_BENCH_QUICK=1`, a
//! smoke run of a few rounds whose figures mean nothing; it writes no report, and skips rotel
//! when it is not installed. `TRACESPOOL_BENCH_ROUNDS=N` changes the number of rounds. Rotel is
//! found at `TRACESPOOL_ROTEL`, else `target/peers/…/rotel-agent` (installed by `.ci/peers`).
//! Everything listens on loopback only.

mod common;

use common::{
    Rotel, Tmp, load_snapshot, machine_json, max, median, min, percentile, print_banner, quick,
    rotel_bin, start_rotel, target_dir, write_report,
};

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const ROUNDS_ENV: &str = "TRACESPOOL_BENCH_ROUNDS";
/// Temporary directories are named `exec-bench-<pid>-…` so that a later run can remove the
/// leftovers of one that was interrupted (and only those: its pid is gone).
const TMP_PREFIX: &str = "exec-bench-";

const ROUNDS_FULL: usize = 300;
const ROUNDS_QUICK: usize = 5;
const WARMUP_ROUNDS: usize = 10;
/// A first run against the hanging server every this many rounds.
const HANG_EVERY: usize = 25;
/// How many first runs with the default budget (spread over the run).
const HANG_DEFAULT_RUNS: usize = 3;

const HANG_BUDGET: Duration = Duration::from_millis(500);
const DEFAULT_BUDGET: Duration = Duration::from_secs(2);
/// What the first run against a server that never answers may take beyond its budget.
const BUDGET_SLACK_MS: f64 = bench_schema::exec::HANG_OVER_BUDGET.aim;
/// Budget used while deepening the backoff against the hanging server.
const PUMP_BUDGET: &str = "200ms";
/// The backoff must stay open at least this long (seconds) once deepened.
const BACKOFF_MIN_LEFT: f64 = 200.0;

/// The cases measured in every round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    True,
    Version,
    NoEndpoint,
    NoEndpointAbsolute,
    NoCapture,
    Disabled,
    Floor,
    Refused,
    BackoffOpen,
    RotelUp,
    HangBackoff,
}

impl Case {
    const ALL: [Case; 11] = [
        Case::True,
        Case::Version,
        Case::NoEndpoint,
        Case::NoEndpointAbsolute,
        Case::NoCapture,
        Case::Disabled,
        Case::Floor,
        Case::Refused,
        Case::BackoffOpen,
        Case::RotelUp,
        Case::HangBackoff,
    ];

    fn key(self) -> &'static str {
        match self {
            Case::True => "true",
            Case::Version => "version",
            Case::NoEndpoint => "no_endpoint",
            Case::NoEndpointAbsolute => "no_endpoint_absolute_path",
            Case::NoCapture => "no_endpoint_no_capture",
            Case::Disabled => "disabled",
            Case::Floor => "floor_rust_wrapper",
            Case::Refused => "refused",
            Case::BackoffOpen => "backoff_open",
            Case::RotelUp => "rotel_up",
            Case::HangBackoff => "hang_backoff",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Case::True => "true (direct spawn)",
            Case::Version => "(info) tracespool --version",
            Case::NoEndpoint => "no endpoint",
            Case::NoEndpointAbsolute => "(info) no endpoint, abs. path",
            Case::NoCapture => "no endpoint, --no-capture",
            Case::Disabled => "OTEL_SDK_DISABLED=true",
            Case::Floor => "(info) minimal Rust wrapper",
            Case::Refused => "endpoint refuses (each run)",
            Case::BackoffOpen => "backoff open (refused)",
            Case::RotelUp => "rotel up, spool empty",
            Case::HangBackoff => "hanging server, in backoff",
        }
    }

    /// The overhead target on the median, in ms.
    fn target_ms(self) -> Option<f64> {
        bench_schema::exec::overhead_target(self.key()).map(|t| t.aim)
    }
}

/// One process, spawned and reaped.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall_ms: f64,
    cpu_ms: f64,
    ok: bool,
}

fn main() {
    let quick = quick();
    let rounds = std::env::var(ROUNDS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { ROUNDS_QUICK } else { ROUNDS_FULL });
    let warmup = if quick { 1 } else { WARMUP_ROUNDS };
    let started = Instant::now();

    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tracespool"));
    let target = target_dir();
    let tmp = Tmp::new(&target.join("bench-tmp"), TMP_PREFIX);
    let load_start = load_snapshot();
    print_banner("exec", quick);
    println!(
        "  binary: {} ({:.1} MB)",
        exe.display(),
        fs::metadata(&exe).map_or(0.0, |m| m.len() as f64 / 1e6)
    );
    println!("  spools in {}", tmp.base.display());
    println!("  load at start: {load_start}");
    println!("  {rounds} rounds (+{warmup} warm-up), order shuffled every round");

    let refused = RefusedPort::bind();
    let refused_endpoint = format!("http://127.0.0.1:{}/v1/traces", refused.port);
    let hang = HangServer::start();
    let hang_endpoint = format!("http://127.0.0.1:{}/v1/traces", hang.port);
    let mut rotel = match rotel_bin() {
        Ok(path) => Some(start_rotel(&path, &tmp)),
        Err(e) if quick => {
            println!("  {e}: skipping rotel (quick run)");
            None
        }
        Err(e) => panic!("{e}"),
    };
    println!("  refused: {refused_endpoint} (bound, never listening)");
    println!("  hanging: {hang_endpoint} (accepts, reads, never answers)");
    if let Some(r) = &rotel {
        println!(
            "  rotel: {} (pid {}), --exporter blackhole, no debug log, {}",
            r.version(),
            r.pid(),
            r.endpoint()
        );
    }

    let logs = tmp.dir();
    let floor = build_floor(logs.path())
        .inspect_err(|e| println!("  no minimal wrapper to compare with: {e}"))
        .ok();
    let mut bench = Bench {
        exe: exe.clone(),
        floor,
        logs: logs.path().to_owned(),
        cases: BTreeMap::new(),
    };
    let dirs: BTreeMap<Case, tempfile::TempDir> =
        Case::ALL.iter().map(|&c| (c, tmp.dir())).collect();
    for case in Case::ALL {
        if (case == Case::RotelUp && rotel.is_none())
            || (case == Case::Floor && bench.floor.is_none())
        {
            continue;
        }
        let endpoint = match case {
            Case::Refused | Case::BackoffOpen => Some(refused_endpoint.clone()),
            Case::RotelUp => rotel.as_ref().map(|r| r.endpoint()),
            Case::HangBackoff => Some(hang_endpoint.clone()),
            _ => None,
        };
        let budget = (case == Case::HangBackoff).then(|| fmt_budget(HANG_BUDGET));
        bench.add(case, dirs[&case].path().join("spool"), endpoint, budget);
    }

    // The backoffs: opened by a failed run, deepened by `flush`.
    let backoff_open = bench.open_backoff(Case::BackoffOpen, None);
    let hang_backoff = bench.open_backoff(Case::HangBackoff, Some(PUMP_BUDGET));
    for (case, state) in [
        (Case::BackoffOpen, &backoff_open),
        (Case::HangBackoff, &hang_backoff),
    ] {
        println!(
            "  {}: backend {}, retry_at in {:.0} s (after {} flushes)",
            case.key(),
            state.backend,
            state.retry_at - unix_now(),
            state.flushes
        );
    }

    // The rounds.
    // Seeded from the clock: the order of the cases differs from run to run.
    let mut rng = test_peers::XorShift::from_clock();
    let mut hang_first: Vec<Sample> = Vec::new();
    let mut hang_first_default: Vec<Sample> = Vec::new();
    let default_rounds: Vec<usize> = if quick {
        Vec::new()
    } else {
        (1..=HANG_DEFAULT_RUNS)
            .map(|i| i * rounds / (HANG_DEFAULT_RUNS + 1))
            .collect()
    };
    let rounds_started = Instant::now();
    for round in 0..warmup + rounds {
        let record = round >= warmup;
        let mut order: Vec<Case> = bench.cases.keys().copied().collect();
        rng.shuffle(&mut order);
        let mut true_ms = None;
        let mut this_round = Vec::new();
        for case in order {
            let sample = bench.run(case);
            if !sample.ok {
                bench.cases.get_mut(&case).expect("case").failed += 1;
            }
            if case == Case::True {
                true_ms = Some(sample.wall_ms);
            }
            this_round.push((case, sample));
        }
        if record {
            let true_ms = true_ms.expect("true runs every round");
            for (case, sample) in this_round {
                let c = bench.cases.get_mut(&case).expect("case");
                c.samples.push(sample);
                c.paired.push(sample.wall_ms - true_ms);
            }
            let r = round - warmup;
            if r % HANG_EVERY == HANG_EVERY / 2 || (quick && r == 0) {
                hang_first.push(bench.first_run(&tmp, &hang_endpoint, HANG_BUDGET));
            }
            if default_rounds.contains(&r) {
                hang_first_default.push(bench.first_run(&tmp, &hang_endpoint, DEFAULT_BUDGET));
            }
        }
    }
    let rounds_secs = rounds_started.elapsed().as_secs_f64();

    // Checks, outside the timings.
    let mut checks: Vec<(String, bool, String)> = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| {
        checks.push((name.to_owned(), ok, detail));
    };
    for c in bench.cases.values() {
        check(
            &format!("{}: every run exited 0", c.case.key()),
            c.failed == 0,
            format!("{} failed (warm-up included)", c.failed),
        );
        let log = fs::read_to_string(&c.log).unwrap_or_default();
        check(
            &format!("{}: nothing on stderr", c.case.key()),
            log.is_empty(),
            log.lines().take(3).collect::<Vec<_>>().join(" | "),
        );
    }
    let runs = (warmup + rounds) as u64;
    for case in [
        Case::NoEndpoint,
        Case::NoEndpointAbsolute,
        Case::NoCapture,
        Case::Refused,
    ] {
        let s = bench.status(case);
        check(
            &format!("{}: every span spooled", case.key()),
            s.batches == runs,
            format!("{} batches after {runs} runs", s.batches),
        );
    }
    let s = bench.status(Case::Refused);
    check(
        "refused: backend down",
        s.backend == "down",
        format!("backend {}, last_error {:?}", s.backend, s.last_error),
    );
    check(
        "disabled: spool dir never created",
        !bench.cases[&Case::Disabled].dir.exists(),
        bench.cases[&Case::Disabled].dir.display().to_string(),
    );
    for (case, before) in [
        (Case::BackoffOpen, &backoff_open),
        (Case::HangBackoff, &hang_backoff),
    ] {
        check(
            &format!("{}: one failed run opened the backoff", case.key()),
            before.first_run_opened,
            before.first_run.clone(),
        );
        let s = bench.status(case);
        check(
            &format!(
                "{}: backoff held (retry_at unchanged, no run connected)",
                case.key()
            ),
            s.backend == "down" && s.retry_at == before.retry_at,
            format!(
                "backend {}, retry_at {} -> {}",
                s.backend, before.retry_at, s.retry_at
            ),
        );
    }
    if bench.cases.contains_key(&Case::RotelUp) {
        let s = bench.status(Case::RotelUp);
        check(
            "rotel_up: spool empty, backend up",
            s.batches == 0 && s.backend == "up",
            format!("{} batches, backend {}", s.batches, s.backend),
        );
    }
    for (budget, samples) in [
        (HANG_BUDGET, &hang_first),
        (DEFAULT_BUDGET, &hang_first_default),
    ] {
        let bad = samples.iter().filter(|s| !s.ok).count();
        check(
            &format!(
                "hang first run ({}): exited 0, span spooled, backend down",
                fmt_budget(budget)
            ),
            bad == 0,
            format!("{bad} of {} not", samples.len()),
        );
    }
    let rotel_alive = rotel.as_mut().map(Rotel::alive);
    check(
        "rotel alive at the end",
        rotel_alive != Some(false),
        String::new(),
    );
    check(
        "refused port still refuses",
        TcpStream::connect(("127.0.0.1", refused.port)).is_err(),
        String::new(),
    );
    let hang_conns = hang.connections();
    let rotel_info = rotel.as_ref().map(|r| {
        json!({"version": r.version(), "endpoint": r.endpoint(), "args": "--exporter blackhole, no debug log"})
    });

    drop(rotel);
    drop(hang);
    drop(refused);
    drop(dirs);
    drop(logs);
    tmp.finish();
    let load_end = load_snapshot();
    let total_secs = started.elapsed().as_secs_f64();

    // The table.
    let base = bench.cases[&Case::True].wall();
    let base_median = median(base.clone());
    println!("\n================ summary ================");
    println!(
        "wall ms per process (spawn → reaped); n = {rounds} each; overhead = median − median(true)\n"
    );
    println!(
        "{:<30} {:>7} {:>7} {:>7} {:>9} {:>8} {:>7} {:>8}  met",
        "case", "median", "p90", "min", "overhead", "paired", "cpu ms", "target"
    );
    let mut case_json = serde_json::Map::new();
    let mut missed = Vec::new();
    for c in bench.cases.values() {
        let wall = c.wall();
        let med = median(wall.clone());
        let overhead = med - base_median;
        let paired = median(c.paired.clone());
        let cpu = median(c.samples.iter().map(|s| s.cpu_ms).collect());
        let (target, met) = match c.case.target_ms() {
            Some(t) => (format!("≤ {t}"), Some(overhead <= t)),
            None => (String::new(), None),
        };
        if met == Some(false) {
            missed.push(c.case.key().to_owned());
        }
        println!(
            "{:<30} {:>7.2} {:>7.2} {:>7.2} {:>9} {:>8} {:>7.2} {:>8}  {}",
            c.case.label(),
            med,
            percentile(wall.clone(), 0.9),
            min(&wall),
            if c.case == Case::True {
                "—".to_owned()
            } else {
                format!("{overhead:+.2}")
            },
            if c.case == Case::True {
                "—".to_owned()
            } else {
                format!("{paired:+.2}")
            },
            cpu,
            target,
            match met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            }
        );
        case_json.insert(
            c.case.key().to_owned(),
            json!({
                "label": c.case.label(),
                "n": wall.len(),
                "median_ms": med,
                "p90_ms": percentile(wall.clone(), 0.9),
                "p10_ms": percentile(wall.clone(), 0.1),
                "min_ms": min(&wall),
                "max_ms": max(&wall),
                "overhead_ms": if c.case == Case::True { Value::Null } else { json!(overhead) },
                "paired_overhead_ms": if c.case == Case::True { Value::Null } else { json!(paired) },
                "cpu_median_ms": cpu,
                "target_overhead_ms": c.case.target_ms(),
                "met": met,
                "endpoint": c.endpoint,
                "args": c.args(),
            }),
        );
    }

    println!(
        "\nfirst run against a server that accepts and never answers (fresh spool dir, no backoff)"
    );
    println!(
        "{:<30} {:>3} {:>8} {:>8} {:>8} {:>10} {:>8}  met",
        "budget", "n", "median", "p90", "max", "max−budget", "limit"
    );
    let mut hang_json = serde_json::Map::new();
    for (budget, samples) in [
        (HANG_BUDGET, &hang_first),
        (DEFAULT_BUDGET, &hang_first_default),
    ] {
        if samples.is_empty() {
            continue;
        }
        let wall: Vec<f64> = samples.iter().map(|s| s.wall_ms).collect();
        let budget_ms = budget.as_secs_f64() * 1000.0;
        let limit = budget_ms + BUDGET_SLACK_MS;
        let worst = max(&wall);
        let met = worst <= limit;
        if !met {
            missed.push(format!("hang_first_{}", fmt_budget(budget)));
        }
        println!(
            "{:<30} {:>3} {:>8.1} {:>8.1} {:>8.1} {:>+10.1} {:>8.0}  {}",
            format!("--budget {}", fmt_budget(budget)),
            wall.len(),
            median(wall.clone()),
            percentile(wall.clone(), 0.9),
            worst,
            worst - budget_ms,
            limit,
            if met { "yes" } else { "NO" }
        );
        hang_json.insert(
            fmt_budget(budget),
            json!({
                "n": wall.len(),
                "budget_ms": budget_ms,
                "limit_ms": limit,
                "median_ms": median(wall.clone()),
                "p90_ms": percentile(wall.clone(), 0.9),
                "min_ms": min(&wall),
                "max_ms": worst,
                "over_budget_median_ms": median(wall.clone()) - budget_ms,
                "over_budget_max_ms": worst - budget_ms,
                "cpu_median_ms": median(samples.iter().map(|s| s.cpu_ms).collect()),
                "samples_ms": wall,
                "samples_cpu_ms": samples.iter().map(|s| s.cpu_ms).collect::<Vec<_>>(),
                "met": met,
            }),
        );
    }

    println!("\nchecks");
    let mut checks_ok = true;
    for (name, ok, detail) in &checks {
        checks_ok &= ok;
        if *ok {
            println!("  ok    {name}");
        } else {
            println!("  FAIL  {name}: {detail}");
        }
    }
    println!(
        "\nhanging server: {hang_conns} connections; rounds {rounds_secs:.1} s; total {total_secs:.1} s"
    );
    println!("load at end: {load_end}");
    if missed.is_empty() {
        println!("targets: all met");
    } else {
        println!("targets MISSED: {}", missed.join(", "));
    }

    let report = json!({
        "quick": quick,
        "machine": machine_json(json!({
            "load_start": load_start,
            "load_end": load_end,
        })),
        "binary": exe.display().to_string(),
        "rounds": rounds,
        "warmup_rounds": warmup,
        "rotel": rotel_info,
        "cases": case_json,
        "hang_first_run": hang_json,
        "backoff": {
            "backoff_open": backoff_open.to_json(),
            "hang_backoff": hang_backoff.to_json(),
        },
        "checks": checks.iter().map(|(n, ok, d)| json!({"name": n, "ok": ok, "detail": d})).collect::<Vec<_>>(),
        "checks_ok": checks_ok,
        "targets_missed": missed,
        "total_seconds": total_secs,
    });
    if quick {
        println!("(quick run: no report written)");
    } else {
        let path = write_report::<bench_schema::exec::Exec>(&report);
        println!("report: {}", path.display());
    }
    assert!(checks_ok, "some checks failed (see above)");
}

/// A program that spawns its arguments as a command and waits for it, and nothing else.
const FLOOR_SRC: &str = "fn main() {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().expect(\"a command\");
    let status = std::process::Command::new(program).args(args).status().expect(\"spawn\");
    std::process::exit(status.code().unwrap_or(1));
}
";

/// Builds [`FLOOR_SRC`] with the rustc that built this bench (optimized, linked like
/// tracespool): what any Rust wrapper pays on this machine before doing anything of its own.
fn build_floor(dir: &Path) -> Result<PathBuf, String> {
    let src = dir.join("floor.rs");
    let out = dir.join("floor");
    fs::write(&src, FLOOR_SRC).map_err(|e| e.to_string())?;
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2021", "-C", "opt-level=3", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .map_err(|e| format!("rustc: {e}"))?;
    if !status.success() {
        return Err(format!("rustc: {status}"));
    }
    Ok(out)
}

fn fmt_budget(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

// ---------------------------------------------------------------------------------------------
// Running the cases.

struct CaseRuns {
    case: Case,
    /// What `exec` runs: `true`, or its absolute path.
    program: String,
    dir: PathBuf,
    endpoint: Option<String>,
    budget: Option<String>,
    log: PathBuf,
    log_file: fs::File,
    samples: Vec<Sample>,
    /// Runs that did not exit 0, warm-up included.
    failed: usize,
    /// Per round: this case's wall time minus `true`'s.
    paired: Vec<f64>,
}

impl CaseRuns {
    fn wall(&self) -> Vec<f64> {
        self.samples.iter().map(|s| s.wall_ms).collect()
    }

    /// The global flags.
    fn flags(&self) -> Vec<String> {
        let mut v = vec!["--spool-dir".to_owned(), self.dir.display().to_string()];
        if let Some(e) = &self.endpoint {
            v.extend(["--endpoint".to_owned(), e.clone()]);
        }
        if let Some(b) = &self.budget {
            v.extend(["--budget".to_owned(), b.clone()]);
        }
        v
    }

    fn args(&self) -> Vec<String> {
        match self.case {
            Case::True => return vec!["true".into()],
            Case::Version => return vec!["--version".into()],
            _ => {}
        }
        let mut v = self.flags();
        v.push("exec".into());
        if self.case == Case::NoCapture {
            v.push("--no-capture".into());
        }
        v.push("--".into());
        v.push(self.program.clone());
        v
    }
}

struct Bench {
    exe: PathBuf,
    /// The minimal wrapper ([`build_floor`]), if it could be built.
    floor: Option<PathBuf>,
    logs: PathBuf,
    cases: BTreeMap<Case, CaseRuns>,
}

/// What `status --json` says.
struct Status {
    batches: u64,
    backend: String,
    retry_at: f64,
    last_error: Option<String>,
}

/// The backoff as deepened before the rounds.
struct Backoff {
    /// The first (unmeasured) run exited 0 and left the backend `down`.
    first_run_opened: bool,
    first_run: String,
    backend: String,
    retry_at: f64,
    last_error: String,
    flushes: usize,
}

impl Backoff {
    fn to_json(&self) -> Value {
        json!({
            "first_run_opened": self.first_run_opened,
            "first_run": self.first_run,
            "backend": self.backend,
            "retry_at": self.retry_at,
            "flushes": self.flushes,
            "last_error": self.last_error,
        })
    }
}

impl Bench {
    fn add(&mut self, case: Case, dir: PathBuf, endpoint: Option<String>, budget: Option<String>) {
        let log = self.logs.join(format!("{}.stderr", case.key()));
        let log_file = fs::File::create(&log).expect("create a log file");
        self.cases.insert(
            case,
            CaseRuns {
                case,
                program: if case == Case::NoEndpointAbsolute {
                    which("true").display().to_string()
                } else {
                    "true".to_owned()
                },
                dir,
                endpoint,
                budget,
                log,
                log_file,
                samples: Vec::new(),
                failed: 0,
                paired: Vec::new(),
            },
        );
    }

    /// `tracespool` with none of the caller's OTel or tracespool settings.
    fn tracespool(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        clean_env(&mut cmd);
        cmd
    }

    fn command(&self, case: Case) -> Command {
        let c = &self.cases[&case];
        let mut cmd = if case == Case::True {
            let mut cmd = Command::new("true");
            clean_env(&mut cmd);
            cmd
        } else if case == Case::Floor {
            let mut cmd = Command::new(self.floor.as_ref().expect("built when the case is run"));
            clean_env(&mut cmd);
            cmd.arg("true");
            cmd
        } else {
            let mut cmd = self.tracespool();
            cmd.args(c.args());
            cmd
        };
        if case == Case::Disabled {
            cmd.env("OTEL_SDK_DISABLED", "true");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(c.log_file.try_clone().expect("dup the log file"));
        cmd
    }

    /// One measured run of `case`.
    fn run(&self, case: Case) -> Sample {
        if case == Case::Refused {
            // Forget the backoff: this run pays one refused connection attempt.
            match fs::remove_file(self.cases[&case].dir.join("delivery")) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("remove the delivery state: {e}"),
            }
        }
        let mut cmd = self.command(case);
        timed(&mut cmd)
    }

    fn status_of(&self, dir: &Path, endpoint: Option<&str>) -> Status {
        let mut cmd = self.tracespool();
        cmd.arg("--spool-dir").arg(dir);
        if let Some(e) = endpoint {
            cmd.args(["--endpoint", e]);
        }
        let out = cmd
            .args(["status", "--json"])
            .stdin(Stdio::null())
            .output()
            .expect("run tracespool status");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        Status {
            batches: v["batches"].as_u64().unwrap_or(u64::MAX),
            backend: v["backend"].as_str().unwrap_or("?").to_owned(),
            retry_at: v["retry_at"].as_f64().unwrap_or(f64::NAN),
            last_error: v["last_error"].as_str().map(str::to_owned),
        }
    }

    fn status(&self, case: Case) -> Status {
        let c = &self.cases[&case];
        self.status_of(&c.dir, c.endpoint.as_deref())
    }

    /// Opens the backoff with one (unmeasured) failed run, then deepens it with `flush` until it
    /// stays open long enough for the whole bench.
    fn open_backoff(&self, case: Case, pump_budget: Option<&str>) -> Backoff {
        let first = self.run(case);
        let c = &self.cases[&case];
        let mut s = self.status(case);
        let first_run_opened = first.ok && s.backend == "down";
        let first_run = format!(
            "exit {}, backend {}, last_error {:?}",
            if first.ok { "0" } else { "not 0" },
            s.backend,
            s.last_error
        );
        let mut flushes = 0;
        // `retry_at` is NaN (null) until the backoff opens.
        while s.retry_at.is_nan() || s.retry_at - unix_now() < BACKOFF_MIN_LEFT {
            assert!(
                flushes < 15,
                "{}: the backoff does not deepen (backend {}, last_error {:?})",
                case.key(),
                s.backend,
                s.last_error
            );
            let mut cmd = self.tracespool();
            cmd.arg("--spool-dir").arg(&c.dir);
            if let Some(e) = &c.endpoint {
                cmd.args(["--endpoint", e]);
            }
            if let Some(b) = pump_budget.or(c.budget.as_deref()) {
                cmd.args(["--budget", b]);
            }
            let out = cmd
                .arg("flush")
                .stdin(Stdio::null())
                .output()
                .expect("run tracespool flush");
            assert_eq!(
                out.status.code(),
                Some(1),
                "{}: flush against a dead backend: {}",
                case.key(),
                String::from_utf8_lossy(&out.stderr)
            );
            flushes += 1;
            s = self.status(case);
        }
        Backoff {
            first_run_opened,
            first_run,
            backend: s.backend,
            retry_at: s.retry_at,
            last_error: s.last_error.unwrap_or_default(),
            flushes,
        }
    }

    /// A first run against the hanging server: fresh spool dir, no backoff. `ok` also requires
    /// that the span was spooled and the backoff opened.
    fn first_run(&self, tmp: &Tmp, endpoint: &str, budget: Duration) -> Sample {
        let dir = tmp.dir();
        let spool = dir.path().join("spool");
        let mut cmd = self.tracespool();
        cmd.arg("--spool-dir")
            .arg(&spool)
            .args(["--endpoint", endpoint]);
        if budget != DEFAULT_BUDGET {
            cmd.args(["--budget", &fmt_budget(budget)]);
        }
        cmd.args(["exec", "--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut sample = timed(&mut cmd);
        let s = self.status_of(&spool, Some(endpoint));
        sample.ok &= s.batches == 1 && s.backend == "down";
        sample
    }
}

/// `name` found in `PATH`, as an absolute path (spawned without a `PATH` search).
fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_absolute() && p.is_file())
        .unwrap_or_else(|| panic!("{name} not found in PATH"))
}

fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if k.starts_with("OTEL_")
            || k.starts_with("TRACESPOOL_")
            || matches!(k, "TRACEPARENT" | "TRACESTATE" | "BAGGAGE" | "RUST_LOG")
        {
            cmd.env_remove(&key);
        }
    }
}

/// Spawns `cmd` and reaps it with `wait4`: wall time from spawn to reaped, and the CPU time of
/// the process and of the children it waited for.
fn timed(cmd: &mut Command) -> Sample {
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // Safety: an all-zero rusage is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // Safety: wait4 on our own child, with valid pointers to locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert!(
            e.kind() == std::io::ErrorKind::Interrupted,
            "wait4({pid}): {e}"
        );
    }
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    // Reaped already: dropping the handle only closes what it holds.
    drop(child);
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    Sample {
        wall_ms,
        cpu_ms: tv(usage.ru_utime) + tv(usage.ru_stime),
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Peers: a port that refuses, a server that hangs, rotel.

/// A TCP port bound on loopback by a socket that never listens: connecting to it is refused,
/// and no other socket (say, a capture receiver on an ephemeral port) can take it meanwhile.
struct RefusedPort {
    port: u16,
    _fd: OwnedFd,
}

impl RefusedPort {
    fn bind() -> RefusedPort {
        // Safety: plain socket(2); the fd is owned right away.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        // Safety: `raw` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // Safety: `addr` is a valid sockaddr_in of `len` bytes.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                len,
            )
        };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        // Safety: an all-zero sockaddr_in is a valid value.
        let mut bound: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut blen = len;
        // Safety: valid pointers to locals of the right size.
        let r = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&raw mut bound).cast::<libc::sockaddr>(),
                &mut blen,
            )
        };
        assert_eq!(r, 0, "getsockname: {}", std::io::Error::last_os_error());
        RefusedPort {
            port: u16::from_be(bound.sin_port),
            _fd: fd,
        }
    }
}

/// Accepts connections, reads whatever comes, never answers; holds each connection until the
/// client closes it. Stopped (and joined) when dropped.
struct HangServer {
    port: u16,
    stop: Arc<AtomicBool>,
    count: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl HangServer {
    fn start() -> HangServer {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop2, count2) = (stop.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                count2.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                let stop3 = stop2.clone();
                conns.push(std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while !stop3.load(Ordering::SeqCst) {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                }));
                conns.retain(|t| !t.is_finished());
            }
            for t in conns {
                let _ = t.join();
            }
        });
        HangServer {
            port,
            stop,
            count,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for HangServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
