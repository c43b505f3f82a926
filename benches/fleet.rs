//! Fleet simulation: how a fleet of hosts comes back after an outage.
//!
//! 10 000 hosts each run a hook every 5 minutes, each at its own phase. The backend refuses
//! connections for the first hour, then is up with a capacity of C requests per second: beyond
//! it, within each second, it answers 503 with `Retry-After: R`. Seeded, on a virtual clock. It
//! drives tracespool's own decisions, not copies of them:
//! - the shared backoff and its jitter: `circuit::next` (with a seeded `fastrand::Rng`) and
//!   `State::is_open`;
//! - whether a hook starts a detached drain: `delivery::drain::should_start_drain`;
//! - the drainer's random start delay: `delivery::drain::start_delay`.
//!
//! What is modelled around them: the network (an accepted request takes 5 ms, a 503 2 ms, a
//! refused connection 1 ms), each host's spool (a count of batches, one per hook), the drainer
//! (it starts after its delay, holds the flush lease, sends back to back, and stops at the first
//! retryable answer, when the spool is empty, or after `drain_budget`), and starting it (1 ms: a
//! fork and exec, time added to the hook). A hook whose backoff is open spools without a request;
//! one whose backoff just expired while a drainer holds the lease spools too (only the lease
//! holder probes).
//!
//! Variants:
//! - `background`: the default drain;
//! - `inline`: each hook sends the backlog first, within its 2 s budget, then its own batch;
//! - `no jitter`: `background` with the retry delays at their nominal values (`Retry-After`
//!   obeyed exactly, the exponential delay at d) and no start delay: the behaviour before
//!   jitter. Only this variant sets `retry_at` itself.
//!
//! Reported for each: the peak request rate over C (once the backend is up); the time until
//! every host's spool is empty over the ideal (the backlog when the backend came up ÷ C); the
//! time each hook spends during the recovery beyond sending its own batch (p50, p99, max); and
//! the longest time a hook spent on the network, against its budget. The targets are for
//! `background`: peak <= 1.5 C, drained within 2x the ideal, no hook over its budget, p99 added
//! <= 10 ms.
//!
//! `cargo bench --bench fleet` prints a table and writes `target/bench-report/fleet.json` and
//! `fleet.svg` (requests per second over time, the three variants). Without `--bench`, or with
//! `TRACESPOOL_BENCH_QUICK=1`, a 1 000-host smoke run writes nothing.
//! `TRACESPOOL_BENCH_FLEET_SEED`, `…_HOSTS` and `…_CAPACITY` change the seed, the fleet and C.

mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bench_schema::fleet;
use plotters::prelude::*;
use tracespool::circuit::{self, Backend, Outcome, State};
use tracespool::delivery::drain::{self, AfterRun, DrainMode};

use common::{quick, target_dir, write_file};

/// Microseconds of virtual time.
type Micros = u64;

const SECOND: Micros = 1_000_000;
const MS: Micros = 1_000;

const RTT_ACCEPTED: Micros = 5 * MS;
const RTT_UNAVAILABLE: Micros = 2 * MS;
const RTT_REFUSED: Micros = MS;
/// Starting the detached drainer (fork and exec), added to the hook that starts it.
const SPAWN: Micros = MS;

const TARGET_PEAK: f64 = fleet::PEAK_OVER_CAPACITY.aim;
const TARGET_DRAINED: f64 = fleet::DRAINED_OVER_IDEAL.aim;
const TARGET_P99_ADDED_MS: f64 = fleet::ADDED_P99_MS.aim;

/// The virtual clock starts here (any time: only differences matter).
const EPOCH_SECS: u64 = 1_800_000_000;

struct Params {
    hosts: usize,
    period: Micros,
    outage: Micros,
    /// Requests per second the backend accepts once up.
    capacity: u64,
    retry_after: Duration,
    budget: Micros,
    drain_budget: Micros,
    /// Simulated time, from the start of the outage.
    horizon: Micros,
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Background,
    Inline,
    NoJitter,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Background, Variant::Inline, Variant::NoJitter];

    fn name(self) -> &'static str {
        match self {
            Variant::Background => "background",
            Variant::Inline => "inline",
            Variant::NoJitter => "background, no jitter",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Variant::Background => "background",
            Variant::Inline => "inline",
            Variant::NoJitter => "no_jitter",
        }
    }

    fn mode(self) -> DrainMode {
        match self {
            Variant::Inline => DrainMode::Inline,
            Variant::Background | Variant::NoJitter => DrainMode::Background,
        }
    }
}

/// What the backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accepted,
    Unavailable,
    Refused,
}

/// The backend: down until `up_at`, then C requests per second. Counts what reaches it.
struct Server {
    up_at: Micros,
    capacity: u64,
    second: u64,
    used: u64,
    /// Requests (and, during the outage, connection attempts) per second.
    per_second: Vec<u32>,
}

impl Server {
    fn request(&mut self, t: Micros) -> Answer {
        let second = t / SECOND;
        if let Some(n) = self.per_second.get_mut(second as usize) {
            *n += 1;
        }
        if t < self.up_at {
            return Answer::Refused;
        }
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        if self.used < self.capacity {
            self.used += 1;
            Answer::Accepted
        } else {
            Answer::Unavailable
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Hook(usize),
    DrainerSend(usize),
}

struct Host {
    state: State,
    /// Batches in the spool.
    backlog: u64,
    /// A drainer holds the flush lease, until this time.
    drainer: Option<Micros>,
}

/// One hook run during the recovery.
struct HookRun {
    at: Micros,
    /// Time spent beyond sending its own batch.
    added: Micros,
    /// Time spent on the network in all.
    network: Micros,
}

struct Recovery {
    variant: Variant,
    per_second: Vec<u32>,
    backlog_at_up: u64,
    /// When every spool was first empty after the backend came up.
    emptied_at: Option<Micros>,
    hooks: Vec<HookRun>,
}

struct Sim<'p> {
    p: &'p Params,
    variant: Variant,
    rng: fastrand::Rng,
    server: Server,
    hosts: Vec<Host>,
    queue: BinaryHeap<Reverse<(Micros, Event)>>,
    total_backlog: u64,
    backlog_at_up: Option<u64>,
    emptied_at: Option<Micros>,
    hooks: Vec<HookRun>,
}

fn time(t: Micros) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(EPOCH_SECS) + Duration::from_micros(t)
}

fn micros(d: Duration) -> Micros {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl<'p> Sim<'p> {
    fn new(p: &'p Params, variant: Variant) -> Sim<'p> {
        let mut rng = fastrand::Rng::with_seed(p.seed);
        let mut queue = BinaryHeap::new();
        for h in 0..p.hosts {
            queue.push(Reverse((rng.u64(0..p.period), Event::Hook(h))));
        }
        Sim {
            p,
            variant,
            rng,
            server: Server {
                up_at: p.outage,
                capacity: p.capacity,
                second: u64::MAX,
                used: 0,
                per_second: vec![0; (p.horizon / SECOND) as usize + 1],
            },
            hosts: (0..p.hosts)
                .map(|_| Host {
                    state: State::default(),
                    backlog: 0,
                    drainer: None,
                })
                .collect(),
            queue,
            total_backlog: 0,
            backlog_at_up: None,
            emptied_at: None,
            hooks: Vec::new(),
        }
    }

    fn run(mut self) -> Recovery {
        while let Some(Reverse((t, event))) = self.queue.pop() {
            if t >= self.p.horizon {
                break;
            }
            if t >= self.p.outage && self.backlog_at_up.is_none() {
                self.backlog_at_up = Some(self.total_backlog);
            }
            match event {
                Event::Hook(h) => {
                    self.hook(h, t);
                    self.queue
                        .push(Reverse((t + self.p.period, Event::Hook(h))));
                }
                Event::DrainerSend(h) => self.drainer_send(h, t),
            }
            if t >= self.p.outage && self.total_backlog == 0 && self.emptied_at.is_none() {
                self.emptied_at = Some(t);
            }
        }
        Recovery {
            variant: self.variant,
            per_second: self.server.per_second,
            backlog_at_up: self.backlog_at_up.unwrap_or(0),
            emptied_at: self.emptied_at,
            hooks: self.hooks,
        }
    }

    /// The backend's state after `answer` at `t`, through the real backoff and jitter (or,
    /// without jitter, at the nominal delays).
    fn learn(&mut self, h: usize, answer: Answer, t: Micros) {
        let outcome = match answer {
            Answer::Accepted => Outcome::Answered { note: None },
            Answer::Unavailable => Outcome::Failed {
                error: "HTTP 503".into(),
                retry_after: Some(self.p.retry_after),
            },
            Answer::Refused => Outcome::Failed {
                error: "connection refused".into(),
                retry_after: None,
            },
        };
        let state = &mut self.hosts[h].state;
        *state = circuit::next(state, &outcome, time(t), &mut self.rng);
        if self.variant == Variant::NoJitter
            && let Outcome::Failed { retry_after, .. } = outcome
        {
            let nominal = retry_after.unwrap_or_else(|| {
                Duration::from_secs(1 << state.failures.saturating_sub(1).min(16))
                    .min(Duration::from_secs(300))
            });
            let at = time(t) + nominal;
            state.retry_at = Some(at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
        }
    }

    fn spool(&mut self, h: usize) {
        self.hosts[h].backlog += 1;
        self.total_backlog += 1;
    }

    fn unspool(&mut self, h: usize) {
        self.hosts[h].backlog -= 1;
        self.total_backlog -= 1;
    }

    fn hook(&mut self, h: usize, t: Micros) {
        let now = time(t);
        let before = self.hosts[h].state.clone();
        let (added, network) = if before.is_open(now)
            || (before.backend == Backend::Down && self.hosts[h].drainer.is_some())
        {
            // In backoff, or the backoff just expired and a drainer holds the lease: spooled,
            // no request.
            self.spool(h);
            (0, 0)
        } else if self.variant.mode() == DrainMode::Inline {
            self.inline_hook(h, t)
        } else {
            self.background_hook(h, t, &before)
        };
        if t >= self.p.outage {
            self.hooks.push(HookRun {
                at: t,
                added,
                network,
            });
        }
    }

    /// Its own batch; then, if the backend answered, maybe a drainer.
    fn background_hook(&mut self, h: usize, t: Micros, before: &State) -> (Micros, Micros) {
        let answer = self.server.request(t);
        self.learn(h, answer, t);
        let rtt = match answer {
            Answer::Accepted => RTT_ACCEPTED,
            Answer::Unavailable => RTT_UNAVAILABLE,
            Answer::Refused => RTT_REFUSED,
        };
        if answer != Answer::Accepted {
            self.spool(h);
            return (0, rtt);
        }
        let after = AfterRun {
            answered: true,
            backlog_batches: self.hosts[h].backlog,
            lease_held: self.hosts[h].drainer.is_some(),
        };
        if !drain::should_start_drain(self.variant.mode(), &after) {
            return (0, rtt);
        }
        let delay = match self.variant {
            Variant::NoJitter => 0,
            _ => micros(drain::start_delay(before, time(t + rtt), &mut self.rng)),
        };
        let start = t + rtt + SPAWN + delay;
        self.hosts[h].drainer = Some(start + self.p.drain_budget);
        self.queue.push(Reverse((start, Event::DrainerSend(h))));
        (SPAWN, rtt + SPAWN)
    }

    /// The backlog first, within the budget, then its own batch.
    fn inline_hook(&mut self, h: usize, t: Micros) -> (Micros, Micros) {
        let mut elapsed = 0;
        while self.hosts[h].backlog > 0 && elapsed + RTT_ACCEPTED <= self.p.budget {
            let answer = self.server.request(t + elapsed);
            self.learn(h, answer, t + elapsed);
            match answer {
                Answer::Accepted => {
                    self.unspool(h);
                    elapsed += RTT_ACCEPTED;
                }
                Answer::Unavailable | Answer::Refused => {
                    elapsed += if answer == Answer::Refused {
                        RTT_REFUSED
                    } else {
                        RTT_UNAVAILABLE
                    };
                    self.spool(h);
                    return (elapsed, elapsed);
                }
            }
        }
        let backlog_time = elapsed;
        if self.hosts[h].backlog > 0 || elapsed + RTT_ACCEPTED > self.p.budget {
            self.spool(h);
            return (backlog_time, elapsed);
        }
        let answer = self.server.request(t + elapsed);
        self.learn(h, answer, t + elapsed);
        elapsed += match answer {
            Answer::Accepted => RTT_ACCEPTED,
            Answer::Unavailable => RTT_UNAVAILABLE,
            Answer::Refused => RTT_REFUSED,
        };
        if answer != Answer::Accepted {
            self.spool(h);
        }
        (backlog_time, elapsed)
    }

    /// One request of a drainer; it goes on until the spool is empty, an answer is not a
    /// success, or its budget is spent.
    fn drainer_send(&mut self, h: usize, t: Micros) {
        let Some(deadline) = self.hosts[h].drainer else {
            return;
        };
        if t >= deadline || self.hosts[h].backlog == 0 || self.hosts[h].state.is_open(time(t)) {
            self.hosts[h].drainer = None;
            return;
        }
        let answer = self.server.request(t);
        self.learn(h, answer, t);
        if answer == Answer::Accepted {
            self.unspool(h);
            self.queue
                .push(Reverse((t + RTT_ACCEPTED, Event::DrainerSend(h))));
        } else {
            self.hosts[h].drainer = None;
        }
    }
}

/// The figures of one variant.
struct Figures {
    variant: Variant,
    peak_per_sec: u32,
    peak_ratio: f64,
    ideal_secs: f64,
    drained_secs: Option<f64>,
    drained_ratio: Option<f64>,
    added_p50_ms: f64,
    added_p99_ms: f64,
    added_max_ms: f64,
    network_max_ms: f64,
    hooks_in_recovery: usize,
    backlog_at_up: u64,
}

fn percentile_ms(sorted: &[Micros], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / MS as f64
}

fn figures(p: &Params, o: &Recovery) -> Figures {
    let up = (p.outage / SECOND) as usize;
    let peak_per_sec = o.per_second[up..].iter().copied().max().unwrap_or(0);
    let ideal_secs = o.backlog_at_up as f64 / p.capacity as f64;
    let drained_secs = o.emptied_at.map(|t| (t - p.outage) as f64 / SECOND as f64);
    let end = o.emptied_at.unwrap_or(p.horizon);
    let mut added: Vec<Micros> = o
        .hooks
        .iter()
        .filter(|r| r.at <= end)
        .map(|r| r.added)
        .collect();
    added.sort_unstable();
    let network_max = o.hooks.iter().map(|r| r.network).max().unwrap_or(0);
    Figures {
        variant: o.variant,
        peak_per_sec,
        peak_ratio: f64::from(peak_per_sec) / p.capacity as f64,
        ideal_secs,
        drained_secs,
        drained_ratio: drained_secs.map(|d| d / ideal_secs.max(f64::MIN_POSITIVE)),
        added_p50_ms: percentile_ms(&added, 0.50),
        added_p99_ms: percentile_ms(&added, 0.99),
        added_max_ms: added.last().copied().unwrap_or(0) as f64 / MS as f64,
        network_max_ms: network_max as f64 / MS as f64,
        hooks_in_recovery: added.len(),
        backlog_at_up: o.backlog_at_up,
    }
}

fn env_parse<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let quick = quick();
    let p = Params {
        hosts: env_parse("TRACESPOOL_BENCH_FLEET_HOSTS").unwrap_or(if quick {
            1_000
        } else {
            10_000
        }),
        period: 300 * SECOND,
        outage: 3600 * SECOND,
        capacity: env_parse("TRACESPOOL_BENCH_FLEET_CAPACITY").unwrap_or(if quick {
            20
        } else {
            200
        }),
        retry_after: Duration::from_secs(30),
        budget: 2 * SECOND,
        drain_budget: micros(drain::DEFAULT_DRAIN_BUDGET),
        horizon: (3600 + 4 * 3600) * SECOND,
        seed: env_parse("TRACESPOOL_BENCH_FLEET_SEED").unwrap_or(20_261_205),
    };
    println!(
        "fleet: {} hosts, a hook every {} s, backend down for {} s then {} requests/s \
         (503 + Retry-After: {} s beyond), seed {}",
        p.hosts,
        p.period / SECOND,
        p.outage / SECOND,
        p.capacity,
        p.retry_after.as_secs(),
        p.seed
    );
    let outcomes: Vec<Recovery> = Variant::ALL
        .into_iter()
        .map(|v| Sim::new(&p, v).run())
        .collect();
    let all: Vec<Figures> = outcomes.iter().map(|o| figures(&p, o)).collect();

    println!(
        "\n{:<22} {:>10} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "variant",
        "peak req/s",
        "peak / C",
        "drained s",
        "/ ideal",
        "p50 ms",
        "p99 ms",
        "max ms",
        "max network"
    );
    for f in &all {
        println!(
            "{:<22} {:>10} {:>9.2} {:>11} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>10.0}ms",
            f.variant.name(),
            f.peak_per_sec,
            f.peak_ratio,
            f.drained_secs.map_or("never".into(), |d| format!("{d:.0}")),
            f.drained_ratio.map_or("-".into(), |r| format!("{r:.2}")),
            f.added_p50_ms,
            f.added_p99_ms,
            f.added_max_ms,
            f.network_max_ms,
        );
    }
    let bg = &all[0];
    println!(
        "\nbacklog when the backend came up: {} batches; ideal drain {:.0} s",
        bg.backlog_at_up, bg.ideal_secs
    );
    let budget_ms = (p.budget / MS) as f64;
    let targets = [
        (
            "peak request rate / C (background)",
            format!("{:.2}", bg.peak_ratio),
            format!("<= {TARGET_PEAK}"),
            bg.peak_ratio <= TARGET_PEAK,
        ),
        (
            "time to empty / ideal (background)",
            bg.drained_ratio
                .map_or("never".into(), |r| format!("{r:.2}")),
            format!("<= {TARGET_DRAINED}"),
            bg.drained_ratio.is_some_and(|r| r <= TARGET_DRAINED),
        ),
        (
            "longest hook on the network (background)",
            format!("{:.0} ms", bg.network_max_ms),
            format!("<= {budget_ms:.0} ms (budget)"),
            bg.network_max_ms <= budget_ms,
        ),
        (
            "p99 time added per hook (background)",
            format!("{:.1} ms", bg.added_p99_ms),
            format!("<= {TARGET_P99_ADDED_MS} ms"),
            bg.added_p99_ms <= TARGET_P99_ADDED_MS,
        ),
    ];
    println!();
    for (name, value, target, met) in &targets {
        println!(
            "  {name:<42} {value:>10}  target {target:<22} {}",
            if *met { "MET" } else { "MISSED" }
        );
    }

    if quick {
        println!("\n(quick run: figures are not meaningful; no report written)");
        return;
    }
    let report = fleet::Fleet {
        params: Some(fleet::Params {
            hosts: Some(p.hosts as u64),
            hook_period_secs: Some(p.period / SECOND),
            outage_secs: Some(p.outage / SECOND),
            capacity_per_sec: Some(p.capacity),
            retry_after_secs: Some(p.retry_after.as_secs()),
            budget_ms: Some(p.budget / MS),
            drain_budget_secs: Some(p.drain_budget / SECOND),
            seed: Some(p.seed),
        }),
        variants: all
            .iter()
            .map(|f| {
                let v = fleet::Variant {
                    peak_requests_per_sec: Some(u64::from(f.peak_per_sec)),
                    peak_over_capacity: Some(f.peak_ratio),
                    backlog_at_up: Some(f.backlog_at_up),
                    ideal_drain_secs: Some(f.ideal_secs),
                    drained_secs: f.drained_secs,
                    drained_over_ideal: f.drained_ratio,
                    hooks_in_recovery: Some(f.hooks_in_recovery as u64),
                    added_p50_ms: Some(f.added_p50_ms),
                    added_p99_ms: Some(f.added_p99_ms),
                    added_max_ms: Some(f.added_max_ms),
                    network_max_ms: Some(f.network_max_ms),
                };
                (f.variant.key().to_owned(), v)
            })
            .collect(),
        targets: targets
            .iter()
            .map(|(name, value, target, met)| fleet::Verdict {
                name: (*name).to_owned(),
                value: value.clone(),
                target: target.clone(),
                met: *met,
            })
            .collect(),
        ..Default::default()
    };
    let path = write_file(&report);
    println!("\nreport: {}", path.display());
    let svg = target_dir().join("bench-report").join("fleet.svg");
    match plot(&p, &outcomes, &all, &svg) {
        Ok(()) => println!("plot:   {}", svg.display()),
        Err(e) => println!("plot failed: {e}"),
    }
}

/// Requests per second (10-second means) around the recovery, one line per variant.
fn plot(
    p: &Params,
    outcomes: &[Recovery],
    all: &[Figures],
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    const BIN: usize = 10;
    let up = (p.outage / SECOND) as usize;
    let from = up.saturating_sub(600);
    let last = all
        .iter()
        .filter_map(|f| f.drained_secs)
        .fold(0.0f64, f64::max);
    let to = (up + last as usize + 900).min(outcomes[0].per_second.len());
    let series: Vec<(Variant, Vec<(f64, f64)>)> = outcomes
        .iter()
        .map(|o| {
            let points = o.per_second[from..to]
                .chunks(BIN)
                .enumerate()
                .map(|(i, c)| {
                    let minute = ((from + i * BIN) as f64 - up as f64) / 60.0;
                    let mean = c.iter().map(|&n| f64::from(n)).sum::<f64>() / c.len() as f64;
                    (minute, mean)
                })
                .collect();
            (o.variant, points)
        })
        .collect();
    let y_top = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|&(_, y)| y))
        .fold(p.capacity as f64 * 1.6, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} hosts back from a 1 h outage: requests/s (10 s means), C = {}/s",
                p.hosts, p.capacity
            ),
            ("sans-serif", 20),
        )
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            ((from as f64 - up as f64) / 60.0)..((to as f64 - up as f64) / 60.0),
            0.0..y_top,
        )?;
    chart
        .configure_mesh()
        .x_desc("minutes since the backend came up")
        .y_desc("requests per second")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 96, 39),
        RGBColor(44, 160, 44),
    ];
    for ((variant, points), color) in series.into_iter().zip(colors) {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(variant.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    let c = p.capacity as f64;
    let x0 = (from as f64 - up as f64) / 60.0;
    let x1 = (to as f64 - up as f64) / 60.0;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(x0, c), (x1, c)],
            6,
            4,
            BLACK.mix(0.6).stroke_width(1),
        ))?
        .label("capacity C")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.6)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
