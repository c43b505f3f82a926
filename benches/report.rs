//! The benchmark report: reads what the four benches wrote (`target/bench-report/{spool,
//! delivery,exec,serve}.json`) and writes, next to them:
//!
//! - `report.md`: every figure of the issues 1/5–4/5 with its target and MET / MISSED, the
//!   machine, the date, the load during each bench, and whether each file comes from this run;
//! - `report.json`: the same figures as one flat list (`section`, `name`, `value`, `unit`,
//!   `target`, `met`, `note`);
//! - `hook_overhead.svg`: `tracespool exec -- true` minus `true`, per backend state, with the
//!   targets;
//! - `append_latency.svg`: median and p99 latency of a 1 KiB append against the spool's size.
//!
//! `cargo bench --bench report` does that (`.ci/bench-report` runs the four benches first, then
//! this). A missing or unreadable file is reported as "not measured", never an error. Figures
//! are the benches' medians and ratios, taken as they are: nothing is re-measured here.
//!
//! `.ci/bench-report` also writes `run.json` (when the run started, the commit): a file written
//! before that is marked stale. Without `--bench` (e.g. `cargo test --all-targets`) the report is
//! built but nothing is written.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use common::target_dir;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{Value, json};

const SOURCES: [&str; 4] = ["spool", "delivery", "exec", "serve"];
const SECTIONS: [(&str, &str, &str); 4] = [
    ("spool", "1/5", "Spool: append, read, disk"),
    ("delivery", "2/5", "Delivery: flush and export"),
    ("exec", "3/5", "Hook wrapper: `tracespool exec`"),
    ("serve", "4/5", "Agent: `tracespool serve`"),
];
const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let write = std::env::args().any(|a| a == "--bench");
    let dir = target_dir().join("bench-report");
    let run = read_json(&dir.join("run.json"));
    let sources: Vec<Source> = SOURCES
        .iter()
        .map(|name| Source::load(&dir, name, run.as_ref()))
        .collect();
    let figures: Vec<Figure> = sources.iter().flat_map(Source::figures).collect();

    let now = SystemTime::now();
    let markdown = render_markdown(&sources, &figures, run.as_ref(), now);
    let report_json = render_json(&sources, &figures, run.as_ref(), now);
    let hook_svg = hook_overhead_svg(source(&sources, "exec"));
    let latency_svg = append_latency_svg(source(&sources, "spool"));

    let (met, missed, unmeasured) = tally(&figures);
    println!(
        "bench report: {} figures with a target: {met} MET, {missed} MISSED, {unmeasured} not \
         measured; {} informational",
        met + missed + unmeasured,
        figures.iter().filter(|f| f.target.is_none()).count()
    );
    for s in &sources {
        println!("  {:<9} {}", s.name, s.status_line());
    }
    if !write {
        println!("(not run by `cargo bench`: nothing written)");
        return;
    }
    fs::create_dir_all(&dir).expect("create target/bench-report");
    let outputs = [
        ("report.md", markdown),
        (
            "report.json",
            serde_json::to_string_pretty(&report_json).expect("serialize the report") + "\n",
        ),
        ("hook_overhead.svg", hook_svg),
        ("append_latency.svg", latency_svg),
    ];
    for (name, text) in outputs {
        let path = dir.join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        println!("  wrote {}", path.display());
    }
}

// ---------------------------------------------------------------------------------------------
// The figures.

#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    AtLeast,
    AtMost,
}

#[derive(Clone, Copy)]
struct Target {
    cmp: Cmp,
    value: f64,
}

impl Target {
    fn at_least(value: f64) -> Option<Target> {
        Some(Target {
            cmp: Cmp::AtLeast,
            value,
        })
    }
    fn at_most(value: f64) -> Option<Target> {
        Some(Target {
            cmp: Cmp::AtMost,
            value,
        })
    }
    fn holds(&self, v: f64) -> bool {
        match self.cmp {
            Cmp::AtLeast => v >= self.value,
            Cmp::AtMost => v <= self.value,
        }
    }
}

/// One figure: a median, a ratio or a peak, with its target if it has one.
struct Figure {
    /// "1/5" … "4/5".
    section: &'static str,
    name: String,
    /// `None`: not measured (missing file, or a key the file does not have).
    value: Option<f64>,
    unit: &'static str,
    target: Option<Target>,
    note: String,
}

impl Figure {
    fn new(section: &'static str, name: impl Into<String>, value: Option<f64>) -> Figure {
        Figure {
            section,
            name: name.into(),
            value: value.filter(|v| v.is_finite()),
            unit: "",
            target: None,
            note: String::new(),
        }
    }
    fn unit(mut self, unit: &'static str) -> Figure {
        self.unit = unit;
        self
    }
    fn target(mut self, target: Option<Target>) -> Figure {
        self.target = target;
        self
    }
    fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }
    /// `Some(met)` for a measured figure with a target.
    fn met(&self) -> Option<bool> {
        Some(self.target?.holds(self.value?))
    }
    fn value_text(&self) -> String {
        match self.value {
            Some(v) => with_unit(fmt_value(v, self.unit), self.unit),
            None => "not measured".into(),
        }
    }
    fn target_text(&self) -> String {
        match self.target {
            Some(t) => {
                let op = if t.cmp == Cmp::AtLeast { "≥" } else { "≤" };
                format!(
                    "{op} {}",
                    with_unit(fmt_value(t.value, self.unit), self.unit)
                )
            }
            None => "—".into(),
        }
    }
    fn verdict(&self) -> &'static str {
        match (self.target.is_some(), self.met()) {
            (false, _) => "info",
            (true, Some(true)) => "**MET**",
            (true, Some(false)) => "**MISSED**",
            (true, None) => "not measured",
        }
    }
    fn to_json(&self) -> Value {
        json!({
            "section": self.section,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target.map(|_| self.target_text()),
            "target_value": self.target.map(|t| t.value),
            "target_cmp": self.target.map(|t| if t.cmp == Cmp::AtLeast { ">=" } else { "<=" }),
            "met": self.met(),
            "note": self.note,
        })
    }
}

fn tally(figures: &[Figure]) -> (usize, usize, usize) {
    let with_target = figures.iter().filter(|f| f.target.is_some());
    let (mut met, mut missed, mut unmeasured) = (0, 0, 0);
    for f in with_target {
        match f.met() {
            Some(true) => met += 1,
            Some(false) => missed += 1,
            None => unmeasured += 1,
        }
    }
    (met, missed, unmeasured)
}

// ---------------------------------------------------------------------------------------------
// The sources: one bench's JSON.

struct Source {
    name: &'static str,
    path: PathBuf,
    json: Option<Value>,
    /// Why there is no JSON (missing file, unparsable).
    error: Option<String>,
    modified: Option<SystemTime>,
    /// Written before `run.json`'s start: left over from an earlier run.
    stale: bool,
}

impl Source {
    fn load(dir: &Path, name: &'static str, run: Option<&Value>) -> Source {
        let path = dir.join(format!("{name}.json"));
        let modified = fs::metadata(&path).and_then(|m| m.modified()).ok();
        let (json, error) = match fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(format!("unreadable: {e}"))),
            },
            Err(e) => (None, Some(format!("missing: {e}"))),
        };
        let started = run.and_then(|r| num(r, "/started_unix"));
        let stale = match (modified, started) {
            (Some(m), Some(s)) => unix_secs(m) < s,
            _ => false,
        };
        Source {
            name,
            path,
            json,
            error,
            modified,
            stale,
        }
    }

    fn section(&self) -> &'static str {
        SECTIONS
            .iter()
            .find(|s| s.0 == self.name)
            .map_or("?", |s| s.1)
    }

    fn quick(&self) -> bool {
        self.json
            .as_ref()
            .and_then(|j| j.get("quick"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    fn status_line(&self) -> String {
        match (&self.json, &self.error) {
            (Some(_), _) => format!(
                "{} written {}{}{}",
                self.path.display(),
                self.modified.map_or("?".into(), utc),
                if self.stale {
                    " (STALE: before this run started)"
                } else {
                    ""
                },
                if self.quick() { " (QUICK run)" } else { "" }
            ),
            (None, Some(e)) => format!("not measured ({e})"),
            (None, None) => "not measured".into(),
        }
    }

    /// `(load at start, load at end)` as the bench recorded them (the keys differ by bench).
    fn machine_load(&self) -> (String, String) {
        let j = self.json.as_ref();
        let first = |ptrs: &[&str]| -> String {
            ptrs.iter()
                .find_map(|p| j.and_then(|j| j.pointer(p)).and_then(Value::as_str))
                .unwrap_or("?")
                .to_owned()
        };
        (
            first(&["/machine/load_at_start", "/machine/load_start"]),
            first(&["/machine/load_at_end", "/machine/load_end", "/load_at_end"]),
        )
    }

    fn total_secs(&self) -> Option<f64> {
        let j = self.json.as_ref()?;
        num(j, "/total_secs").or_else(|| num(j, "/total_seconds"))
    }

    fn figures(&self) -> Vec<Figure> {
        let sec = self.section();
        let Some(j) = &self.json else {
            return expected_figures(self.name, sec, "not measured: no JSON");
        };
        match self.name {
            "spool" => spool_figures(sec, j),
            "delivery" => delivery_figures(sec, j),
            "exec" => exec_figures(sec, j),
            "serve" => serve_figures(sec, j),
            _ => Vec::new(),
        }
    }
}

fn source<'a>(sources: &'a [Source], name: &str) -> &'a Source {
    sources.iter().find(|s| s.name == name).expect("a source")
}

/// The figures with a target that a bench should have given, for a bench that gave nothing.
fn expected_figures(name: &str, sec: &'static str, note: &str) -> Vec<Figure> {
    let f = |n: &str, unit, target| {
        Figure::new(sec, n, None)
            .unit(unit)
            .target(target)
            .note(note)
    };
    match name {
        "spool" => vec![
            f(
                "64 KiB append throughput (Never) / raw disk bandwidth",
                "ratio",
                Target::at_least(0.80),
            ),
            f("1 KiB appends/s (Never)", "/s", Target::at_least(100_000.0)),
            f(
                "1 KiB append median latency, 1 GiB spool / empty",
                "ratio",
                Target::at_most(1.2),
            ),
            f("peak RSS reading 1 GiB", "MiB", Target::at_most(32.0)),
        ],
        "delivery" => vec![f(FLUSH_RATIO, "ratio", Target::at_least(0.90))],
        "exec" => EXEC_CASES
            .iter()
            .map(|(_, label, t)| f(label, "ms", Target::at_most(*t)))
            .chain([f(
                "hang, first run: median − budget (500 ms)",
                "ms",
                Target::at_most(50.0),
            )])
            .collect(),
        "serve" => vec![
            f(
                "spans/s accepted / rotel direct",
                "ratio",
                Target::at_least(0.50),
            ),
            f("added p99 latency", "ms", Target::at_most(5.0)),
        ],
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1/5 spool.

fn spool_figures(sec: &'static str, j: &Value) -> Vec<Figure> {
    let mut out = Vec::new();
    let cases = j
        .get("append_throughput")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for sync in ["Never", "Always"] {
        for size in [1024u64, 64 * 1024, 1024 * 1024] {
            let case = cases.iter().find(|c| {
                c.get("sync").and_then(Value::as_str) == Some(sync)
                    && c.get("payload_bytes").and_then(Value::as_u64) == Some(size)
            });
            let get = |k: &str| case.and_then(|c| num(c, k));
            let note = match (get("/batches_per_sec"), get("/us_per_append")) {
                (Some(b), Some(us)) => {
                    format!("{} appends/s, {} µs/append", thousands(b), fmt_num(us))
                }
                _ => String::new(),
            };
            out.push(
                Figure::new(
                    sec,
                    format!(
                        "append throughput, {} batches, sync {sync}",
                        size_name(size)
                    ),
                    get("/mib_per_sec"),
                )
                .unit("MiB/s")
                .note(note),
            );
        }
    }
    let raw = |p: &str| num(j, &format!("/raw_disk{p}"));
    out.push(
        Figure::new(
            sec,
            "raw disk bandwidth (64 KiB write_all + fsync)",
            raw("/device/raw_mib_per_sec"),
        )
        .unit("MiB/s")
        .note(match raw("/page_cache/raw_mib_per_sec") {
            Some(pc) => format!("page cache only: {} MiB/s", fmt_num(pc)),
            None => String::new(),
        }),
    );
    let ratio_note = if raw("/ratio_64k_never_to_raw_disk").is_some() {
        "median of the per-repetition ratios, paired in each repetition".to_owned()
    } else {
        "not measured: spool.json predates `raw_disk.ratio_64k_never_to_raw_disk`".to_owned()
    };
    out.push(
        Figure::new(
            sec,
            "64 KiB append throughput (Never) / raw disk bandwidth",
            raw("/ratio_64k_never_to_raw_disk"),
        )
        .unit("ratio")
        .target(Target::at_least(0.80))
        .note(ratio_note),
    );
    out.push(
        Figure::new(
            sec,
            "(stricter) 64 KiB appends + final fsync / raw + final fsync",
            raw("/ratio_64k_never_to_raw_disk_device"),
        )
        .unit("ratio")
        .note("informational: both written through to the device"),
    );
    out.push(
        Figure::new(
            sec,
            "(secondary) 64 KiB appends (Never) / raw write_all, page cache only",
            raw("/ratio_64k_never_to_raw_page_cache"),
        )
        .unit("ratio")
        .note("informational: the write path without the disk"),
    );
    out.push(
        Figure::new(
            sec,
            "1 KiB appends/s (Never)",
            num(j, "/small_appends_per_sec_never"),
        )
        .unit("/s")
        .target(Target::at_least(100_000.0)),
    );
    let lat = |p: &str| num(j, &format!("/latency_1k_never{p}"));
    let us = |ns: Option<f64>| ns.map_or("?".into(), |n| fmt_num(n / 1000.0));
    out.push(
        Figure::new(
            sec,
            "1 KiB append median latency, 1 GiB spool / empty",
            lat("/median_ratio_full_to_empty"),
        )
        .unit("ratio")
        .target(Target::at_most(1.2))
        .note(format!(
            "p50 {} µs at {} MiB vs {} µs empty; p99 {} vs {} µs",
            us(lat("/full/p50_ns")),
            lat("/full_spool_bytes").map_or("?".into(), |b| format!("{:.0}", b / MIB)),
            us(lat("/empty/p50_ns")),
            us(lat("/full/p99_ns")),
            us(lat("/empty/p99_ns")),
        )),
    );
    for p in latency_points(j) {
        out.push(
            Figure::new(
                sec,
                match p.target_mib.unwrap_or(p.spool_mib) {
                    0.0 => "1 KiB append latency p50, empty spool".to_owned(),
                    m => format!("1 KiB append latency p50, {} MiB spool", fmt_num(m)),
                },
                Some(p.p50_us),
            )
            .unit("µs")
            .note(format!(
                "{:.0} MiB on disk; p99 {} µs; fresh empty spool in the same rounds: \
                 p50 {} µs, p99 {} µs",
                p.spool_mib,
                fmt_num(p.p99_us),
                p.empty_p50_us.map_or("?".into(), fmt_num),
                p.empty_p99_us.map_or("?".into(), fmt_num)
            )),
        );
    }
    out.push(
        Figure::new(
            sec,
            "read + ack throughput (1 GiB of 64 KiB records)",
            num(j, "/read/mib_per_sec"),
        )
        .unit("MiB/s")
        .note(
            match (
                num(j, "/read/records_per_sec"),
                num(j, "/read/raw_read_mib_per_sec"),
            ) {
                (Some(r), Some(raw)) => format!(
                    "{} records/s; raw reads of the same files {} MiB/s",
                    thousands(r),
                    fmt_num(raw)
                ),
                _ => String::new(),
            },
        ),
    );
    out.push(
        Figure::new(
            sec,
            "peak RSS reading 1 GiB",
            num(j, "/read/peak_rss_kib").map(|k| k / KIB),
        )
        .unit("MiB")
        .target(Target::at_most(32.0))
        .note("VmHWM of the reading process"),
    );
    out
}

/// One point of append latency against spool size.
struct LatPoint {
    /// The size aimed at (`None` in an older spool.json).
    target_mib: Option<f64>,
    /// The size on disk when measured.
    spool_mib: f64,
    p50_us: f64,
    p99_us: f64,
    empty_p50_us: Option<f64>,
    empty_p99_us: Option<f64>,
}

/// `latency_1k_never.by_spool_size`; from an older spool.json, the two points it had (empty and
/// full).
fn latency_points(j: &Value) -> Vec<LatPoint> {
    let us = |v: &Value, p: &str| num(v, p).map(|ns| ns / 1000.0);
    if let Some(points) = j
        .pointer("/latency_1k_never/by_spool_size")
        .and_then(Value::as_array)
    {
        return points
            .iter()
            .filter_map(|p| {
                Some(LatPoint {
                    target_mib: num(p, "/target_bytes").map(|b| b / MIB),
                    spool_mib: num(p, "/spool_bytes")? / MIB,
                    p50_us: us(p, "/latency/p50_ns")?,
                    p99_us: us(p, "/latency/p99_ns")?,
                    empty_p50_us: us(p, "/empty/p50_ns"),
                    empty_p99_us: us(p, "/empty/p99_ns"),
                })
            })
            .collect();
    }
    let Some(l) = j.get("latency_1k_never") else {
        return Vec::new();
    };
    let (Some(e50), Some(e99), Some(f50), Some(f99), Some(bytes)) = (
        us(l, "/empty/p50_ns"),
        us(l, "/empty/p99_ns"),
        us(l, "/full/p50_ns"),
        us(l, "/full/p99_ns"),
        num(l, "/full_spool_bytes"),
    ) else {
        return Vec::new();
    };
    vec![
        LatPoint {
            target_mib: None,
            spool_mib: 0.0,
            p50_us: e50,
            p99_us: e99,
            empty_p50_us: Some(e50),
            empty_p99_us: Some(e99),
        },
        LatPoint {
            target_mib: None,
            spool_mib: bytes / MIB,
            p50_us: f50,
            p99_us: f99,
            empty_p50_us: Some(e50),
            empty_p99_us: Some(e99),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// 2/5 delivery.

/// The flush every command runs: sync `Always`, the default.
const FLUSH_RATIO: &str = "flush throughput to rotel / plain replay (sync Always, the default)";

fn delivery_figures(sec: &'static str, j: &Value) -> Vec<Figure> {
    let mut out = Vec::new();
    let ft = |p: &str| num(j, &format!("/flush_throughput{p}"));
    let target = ft("/target_ratio").unwrap_or(0.90);
    let spans = |k: &str| ft(&format!("/{k}/spans_per_sec"));
    let rate_note = |k: &str| match (spans(k), spans("replay")) {
        (Some(a), Some(b)) => format!(
            "{} spans/s vs replay {} spans/s (medians; the ratio is the median of ratios \
             to the replays around each run)",
            thousands(a),
            thousands(b)
        ),
        _ => String::new(),
    };
    out.push(
        Figure::new(sec, FLUSH_RATIO, ft("/ratio_always_median"))
            .unit("ratio")
            .target(Target::at_least(target))
            .note(rate_note("flush_always")),
    );
    // Over OTLP/gRPC, against a minimal tonic client (benches before it have no `grpc`).
    if let Some(ratio) = ft("/grpc/ratio_always_median") {
        let grpc = |k: &str| ft(&format!("/grpc/{k}/spans_per_sec"));
        out.push(
            Figure::new(
                sec,
                "flush over OTLP/gRPC to rotel / minimal tonic replay (sync Always, the default)",
                Some(ratio),
            )
            .unit("ratio")
            .target(Target::at_least(ft("/grpc/target_ratio").unwrap_or(target)))
            .note(match (grpc("flush_always"), grpc("replay")) {
                (Some(a), Some(b)) => format!(
                    "{} spans/s vs replay {} spans/s (medians, same runs as OTLP/HTTP; the \
                     ratio is the median of ratios to the gRPC replays around each run)",
                    thousands(a),
                    thousands(b)
                ),
                _ => String::new(),
            }),
        );
    }
    out.push(
        Figure::new(
            sec,
            "(secondary) the same under sync Never, a library-only option",
            ft("/ratio_never_median"),
        )
        .unit("ratio")
        .note(format!(
            "informational: no command uses Never; {}",
            rate_note("flush_never")
        )),
    );
    out.push(
        Figure::new(
            sec,
            "(secondary) replay + fdatasync per answer / plain replay",
            ft("/ratio_replay_plus_fdatasync_median"),
        )
        .unit("ratio")
        .note("informational: the cost of one fdatasync per batch alone"),
    );
    let cases = j
        .get("export_to_spool")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for sync in ["Never", "Always"] {
        for spans in [1u64, 10, 100] {
            let case = cases.iter().find(|c| {
                c.get("sync").and_then(Value::as_str) == Some(sync)
                    && c.get("spans_per_batch").and_then(Value::as_u64) == Some(spans)
            });
            let get = |k: &str| case.and_then(|c| num(c, k));
            let note = format!(
                "encode {} µs, append {} µs, export alone {} µs; {} B/batch; p90 {} µs",
                get("/encode/median_us").map_or("?".into(), fmt_num),
                get("/append/median_us").map_or("?".into(), fmt_num),
                get("/delivery_export_no_endpoint/median_us").map_or("?".into(), fmt_num),
                get("/bytes_per_batch").map_or("?".into(), |b| format!("{b:.0}")),
                get("/encode_delivery_export_no_endpoint/p90_us").map_or("?".into(), fmt_num),
            );
            out.push(
                Figure::new(
                    sec,
                    format!(
                        "export-to-spool per batch, {spans} span{}, sync {sync} (encode + export)",
                        if spans == 1 { "" } else { "s" }
                    ),
                    get("/encode_delivery_export_no_endpoint/median_us"),
                )
                .unit("µs")
                .note(note),
            );
        }
    }
    out.push(
        Figure::new(
            sec,
            "one export by a fresh process (runtime + spool + Delivery + export, rotel up)",
            num(j, "/fresh_process_export/total/median_us"),
        )
        .unit("µs"),
    );
    out
}

// ---------------------------------------------------------------------------------------------
// 3/5 exec.

/// The backend states with a target: (key in exec.json, label, target in ms).
const EXEC_CASES: [(&str, &str, f64); 5] = [
    ("no_endpoint", "exec overhead: no endpoint", 1.5),
    ("refused", "exec overhead: endpoint refuses", 5.0),
    ("backoff_open", "exec overhead: backoff open", 1.5),
    ("rotel_up", "exec overhead: rotel up", 10.0),
    (
        "hang_backoff",
        "exec overhead: hanging server, runs after the first (in backoff)",
        2.0,
    ),
];

fn exec_figures(sec: &'static str, j: &Value) -> Vec<Figure> {
    let mut out = Vec::new();
    out.push(
        Figure::new(
            sec,
            "`true` spawned directly (the baseline)",
            num(j, "/cases/true/median_ms"),
        )
        .unit("ms")
        .note("median wall time, spawn → reaped"),
    );
    for (key, label, default_target) in EXEC_CASES {
        let c = |p: &str| num(j, &format!("/cases/{key}{p}"));
        let target = c("/target_overhead_ms").unwrap_or(default_target);
        out.push(
            Figure::new(sec, label, c("/overhead_ms"))
                .unit("ms")
                .target(Target::at_most(target))
                .note(format!(
                    "median {} ms − median(true); paired {} ms; p90 {} ms; CPU {} ms",
                    c("/median_ms").map_or("?".into(), fmt_num),
                    c("/paired_overhead_ms").map_or("?".into(), fmt_num),
                    c("/p90_ms").map_or("?".into(), fmt_num),
                    c("/cpu_median_ms").map_or("?".into(), fmt_num),
                )),
        );
    }
    for (key, label) in [
        ("disabled", "(info) exec overhead: OTEL_SDK_DISABLED=true"),
        (
            "no_endpoint_no_capture",
            "(info) exec overhead: no endpoint, --no-capture",
        ),
        ("version", "(info) `tracespool --version` over `true`"),
        (
            "floor_rust_wrapper",
            "(info) a minimal Rust wrapper (spawn + wait) over `true`",
        ),
    ] {
        if let Some(v) = num(j, &format!("/cases/{key}/overhead_ms")) {
            out.push(Figure::new(sec, label, Some(v)).unit("ms"));
        }
    }
    let mut budgets: Vec<(String, Value)> = j
        .get("hang_first_run")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    budgets.sort_by(|a, b| {
        let ms = |v: &Value| num(v, "/budget_ms").unwrap_or(f64::MAX);
        ms(&a.1).total_cmp(&ms(&b.1))
    });
    if budgets.is_empty() {
        out.push(
            Figure::new(sec, "hang, first run: median − budget (500 ms)", None)
                .unit("ms")
                .target(Target::at_most(50.0))
                .note("not measured: no `hang_first_run` in exec.json"),
        );
    }
    for (budget, h) in &budgets {
        let slack = match (num(h, "/limit_ms"), num(h, "/budget_ms")) {
            (Some(l), Some(b)) => l - b,
            _ => 50.0,
        };
        let n = num(h, "/n").map_or("?".into(), |n| format!("{n:.0}"));
        out.push(
            Figure::new(
                sec,
                format!("hang, first run: median − budget ({budget})"),
                num(h, "/over_budget_median_ms"),
            )
            .unit("ms")
            .target(Target::at_most(slack))
            .note(format!(
                "median wall {} ms over {n} runs",
                num(h, "/median_ms").map_or("?".into(), fmt_num)
            )),
        );
        out.push(
            Figure::new(
                sec,
                format!("hang, first run: worst run − budget ({budget})"),
                num(h, "/over_budget_max_ms"),
            )
            .unit("ms")
            .target(Target::at_most(slack))
            .note(format!("the bench's own criterion: every one of {n} runs")),
        );
    }
    if j.get("checks_ok").and_then(Value::as_bool) == Some(false) {
        out.push(
            Figure::new(sec, "exec bench correctness checks", Some(0.0))
                .note("FAILED: see `checks` in exec.json"),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 4/5 serve.

fn serve_figures(sec: &'static str, j: &Value) -> Vec<Figure> {
    let mut out = Vec::new();
    let array = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    let results = array(j.get("results"));
    if results.is_empty() {
        return expected_figures("serve", sec, "not measured: no `results` in serve.json");
    }
    serve_signal_figures(sec, &mut out, &results, None, "spans");
    // Metrics and logs, beside traces (benches before them have no `signals`).
    for signal in ["metrics", "logs"] {
        let results = array(j.pointer(&format!("/signals/{signal}/results")));
        let unit = match signal {
            "metrics" => "data_points",
            _ => "log_records",
        };
        serve_signal_figures(sec, &mut out, &results, Some(signal), unit);
    }
    if let Some(direct) = num(j, "/rotel_vm_hwm_kib/direct") {
        out.push(
            Figure::new(sec, "(info) peak RSS of rotel direct", Some(direct / KIB))
                .unit("MiB")
                .note("VmHWM of the rotel the clients sent to directly"),
        );
    }
    out
}

/// The figures of one signal's `results`: each serve target against rotel at the same load.
/// `unit` names the signal's items in the JSON keys (`spans`, `data_points`, `log_records`).
fn serve_signal_figures(
    sec: &'static str,
    out: &mut Vec<Figure>,
    results: &[Value],
    signal: Option<&str>,
    unit: &str,
) {
    let words = unit.replace('_', " ");
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let rotel_at = |protocol: &str, clients: Option<f64>| {
        results.iter().find(|r| {
            text(r, "target") == "rotel"
                && text(r, "protocol") == protocol
                && num(r, "/clients") == clients
        })
    };
    for r in results {
        let target = text(r, "target");
        if target == "rotel" {
            continue;
        }
        let protocol = text(r, "protocol");
        let clients = num(r, "/clients");
        let rotel = rotel_at(&protocol, clients);
        let who = format!(
            "{}{}, {}, {} client{}",
            signal.map_or(String::new(), |s| format!("{s}, ")),
            target.trim_start_matches("serve_").replace('_', "-"),
            protocol,
            clients.map_or("?".into(), |c| format!("{c:.0}")),
            if clients == Some(1.0) { "" } else { "s" }
        );
        // This target's figure at `key` and rotel's at the same load, formatted.
        let pair = |key: &str, f: fn(f64) -> String| {
            (
                num(r, key).map_or("?".into(), f),
                rotel.and_then(|r| num(r, key)).map_or("?".into(), f),
            )
        };
        let (ours, theirs) = pair(&format!("/{unit}_per_s/median"), thousands);
        out.push(
            Figure::new(
                sec,
                format!("{words}/s accepted / rotel direct: {who}"),
                num(r, "/ratio_vs_rotel/median"),
            )
            .unit("ratio")
            .target(Target::at_least(0.50))
            .note(format!(
                "{ours} {words}/s vs rotel {theirs} {words}/s (medians)"
            )),
        );
        for (q, target) in [("p50", None), ("p99", Target::at_most(5.0))] {
            let (ours, theirs) = pair(&format!("/{q}_ms/median"), fmt_num);
            out.push(
                Figure::new(
                    sec,
                    format!("added {q} latency: {who}"),
                    num(r, &format!("/added_{q}_ms/median")),
                )
                .unit("ms")
                .target(target)
                .note(format!("{q} {ours} ms vs rotel {theirs} ms")),
            );
        }
        out.push(
            Figure::new(
                sec,
                format!("peak RSS of serve: {who}"),
                num(r, "/vm_hwm_kib_max").map(|k| k / KIB),
            )
            .unit("MiB")
            .note("VmHWM, largest over the repetitions"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// report.md and report.json.

fn machine(sources: &[Source]) -> Value {
    // spool.json records the most; the others fill in.
    let mut m = serde_json::Map::new();
    for s in sources {
        if let Some(Value::Object(o)) = s.json.as_ref().and_then(|j| j.get("machine")) {
            for (k, v) in o {
                if !k.starts_with("load") {
                    m.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    Value::Object(m)
}

fn render_markdown(
    sources: &[Source],
    figures: &[Figure],
    run: Option<&Value>,
    now: SystemTime,
) -> String {
    let mut md = String::new();
    let (met, missed, unmeasured) = tally(figures);
    let _ = writeln!(md, "# tracespool benchmark report\n");
    let _ = writeln!(
        md,
        "Generated {} by `cargo bench --bench report`.",
        utc(now)
    );
    let _ = writeln!(
        md,
        "\n**Targets: {met} MET, {missed} MISSED, {unmeasured} not measured** (of {}).\n",
        met + missed + unmeasured
    );

    let _ = writeln!(md, "## Run\n");
    match run {
        Some(r) => {
            let _ = writeln!(
                md,
                "- command: `{}`, started {}",
                r.get("command")
                    .and_then(Value::as_str)
                    .unwrap_or(".ci/bench-report"),
                num(r, "/started_unix").map_or("?".into(), |s| utc(
                    UNIX_EPOCH + std::time::Duration::from_secs_f64(s.max(0.0))
                ))
            );
            let _ = writeln!(
                md,
                "- source: commit `{}`{}",
                r.get("commit").and_then(Value::as_str).unwrap_or("?"),
                if r.get("dirty").and_then(Value::as_bool) == Some(true) {
                    " with uncommitted changes"
                } else {
                    ""
                }
            );
        }
        None => {
            let _ = writeln!(
                md,
                "- no `run.json`: the files below were not produced by one `.ci/bench-report` run; \
                 each figure comes from the file named with its section"
            );
        }
    }
    let all_fresh = run.is_some()
        && sources
            .iter()
            .all(|s| s.json.is_some() && !s.stale && !s.quick());
    let _ = writeln!(
        md,
        "- every figure measured in this run: {}\n",
        if all_fresh {
            "yes"
        } else {
            "**no** (see below)"
        }
    );
    let _ = writeln!(
        md,
        "| bench | file | written | bench time | load at start | load at end |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    for s in sources {
        let (start, end) = s.machine_load();
        let written = match (&s.json, s.modified) {
            (Some(_), Some(m)) => format!(
                "{}{}{}",
                utc(m),
                if s.stale {
                    " **STALE** (before this run)"
                } else {
                    ""
                },
                if s.quick() {
                    " **QUICK** (not meaningful)"
                } else {
                    ""
                }
            ),
            _ => format!(
                "**not measured** ({})",
                s.error.as_deref().unwrap_or("no file")
            ),
        };
        let _ = writeln!(
            md,
            "| {} {} | `{}.json` | {} | {} | {} | {} |",
            s.section(),
            s.name,
            s.name,
            written,
            s.total_secs().map_or("?".into(), |t| format!("{t:.0} s")),
            md_cell(&start),
            md_cell(&end)
        );
    }

    let _ = writeln!(md, "\n## Machine\n");
    let m = machine(sources);
    if m.as_object().is_none_or(|o| o.is_empty()) {
        let _ = writeln!(md, "Not recorded (no bench JSON).");
    } else {
        let s = |p: &str| {
            m.pointer(p)
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "?".into())
        };
        let _ = writeln!(
            md,
            "- CPU: {} × {}\n- memory: {}\n- kernel: Linux {}",
            s("/cpus"),
            s("/cpu_model"),
            s("/mem_total"),
            s("/kernel")
        );
        let _ = writeln!(
            md,
            "- bench filesystem: {} {} mounted on {} ({})",
            s("/filesystem/device"),
            s("/filesystem/type"),
            s("/filesystem/mounted_on"),
            s("/bench_dir")
        );
        let _ = writeln!(
            md,
            "- vm.dirty_background_ratio / dirty_ratio: {}",
            s("/dirty_background_ratio_and_dirty_ratio")
        );
        let _ = writeln!(
            md,
            "- load: the machine is shared; \"CPU pressure\" is the share of time some task \
             waited for a CPU (per bench in the table above). Figures taken under heavy load \
             read worse than on an idle machine."
        );
    }

    let _ = writeln!(md, "\n## Targets\n");
    let _ = writeln!(md, "| issue | figure | value | target | verdict |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for f in figures.iter().filter(|f| f.target.is_some()) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            f.section,
            md_cell(&f.name),
            f.value_text(),
            f.target_text(),
            f.verdict()
        );
    }

    for (name, sec, title) in SECTIONS {
        let s = source(sources, name);
        let _ = writeln!(md, "\n## {sec} {title}\n");
        let _ = writeln!(md, "From `{name}.json`: {}.\n", md_cell(&s.status_line()));
        let _ = writeln!(md, "| figure | value | target | verdict | notes |");
        let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
        for f in figures.iter().filter(|f| f.section == sec) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                md_cell(&f.name),
                f.value_text(),
                f.target_text(),
                f.verdict(),
                md_cell(&f.note)
            );
        }
        match name {
            "spool" => {
                let _ = writeln!(
                    md,
                    "\n![1 KiB append latency against spool size](append_latency.svg)\n\n\
                     `append_latency.svg`: median and p99 latency of a 1 KiB append (sync Never) \
                     against the spool's size, with a fresh empty spool timed in the same \
                     interleaved rounds at each point."
                );
            }
            "exec" => {
                let _ = writeln!(
                    md,
                    "\n![exec overhead per backend state](hook_overhead.svg)\n\n\
                     `hook_overhead.svg`: median wall time of `tracespool exec -- true` minus \
                     that of `true`, per backend state; red lines are the targets."
                );
            }
            _ => {}
        }
    }
    let _ = writeln!(
        md,
        "\n---\nValues are the benches' medians (or medians of per-repetition ratios) as written \
         in their JSON; `report.json` holds the same figures as one flat list."
    );
    md
}

fn render_json(
    sources: &[Source],
    figures: &[Figure],
    run: Option<&Value>,
    now: SystemTime,
) -> Value {
    let (met, missed, unmeasured) = tally(figures);
    json!({
        "generated_unix": unix_secs(now),
        "generated": utc(now),
        "run": run,
        "machine": machine(sources),
        "sources": sources.iter().map(|s| {
            let (start, end) = s.machine_load();
            json!({
                "bench": s.name,
                "section": s.section(),
                "file": s.path.display().to_string(),
                "present": s.json.is_some(),
                "error": s.error,
                "written_unix": s.modified.map(unix_secs),
                "stale": s.stale,
                "quick": s.quick(),
                "total_secs": s.total_secs(),
                "load_at_start": start,
                "load_at_end": end,
            })
        }).collect::<Vec<_>>(),
        "summary": {"met": met, "missed": missed, "not_measured": unmeasured},
        "figures": figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------------------------
// The plots.

const PLOT_FONT: &str = "sans-serif";

/// An SVG saying why there is no plot.
fn placeholder_svg(title: &str, why: &str) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 200)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let _ = root.draw(&Text::new(title.to_owned(), (20, 40), (PLOT_FONT, 22)));
        let _ = root.draw(&Text::new(why.to_owned(), (20, 90), (PLOT_FONT, 16)));
        let _ = root.present();
    }
    svg
}

struct Bar {
    label: String,
    value: f64,
    target: f64,
}

fn hook_overhead_svg(exec: &Source) -> String {
    let title = "tracespool exec -- true: overhead over `true` per backend state";
    let Some(j) = &exec.json else {
        return placeholder_svg(title, "not measured: no exec.json");
    };
    let bars: Vec<Bar> = EXEC_CASES
        .iter()
        .filter_map(|(key, _, default_target)| {
            let c = |p: &str| num(j, &format!("/cases/{key}{p}"));
            Some(Bar {
                label: match *key {
                    "no_endpoint" => "no endpoint",
                    "refused" => "refused",
                    "backoff_open" => "backoff open",
                    "rotel_up" => "rotel up",
                    "hang_backoff" => "hang, in backoff",
                    other => other,
                }
                .to_owned(),
                value: c("/overhead_ms")?,
                target: c("/target_overhead_ms").unwrap_or(*default_target),
            })
        })
        .collect();
    if bars.is_empty() {
        return placeholder_svg(title, "not measured: no backend-state cases in exec.json");
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        if let Err(e) = draw_hook_overhead(&root, title, &bars, exec) {
            drop(root);
            return placeholder_svg(title, &format!("plotting failed: {e}"));
        }
    }
    svg
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

fn draw_hook_overhead(
    root: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    bars: &[Bar],
    exec: &Source,
) -> PlotResult {
    root.fill(&WHITE)?;
    let n = bars.len();
    let top = bars
        .iter()
        .map(|b| b.value.max(b.target))
        .fold(0.0f64, f64::max)
        * 1.22;
    let subtitle = format!(
        "median wall time − median(true), ms; {}",
        exec.modified.map_or("?".into(), utc)
    );
    let (upper, lower) = root.split_vertically(500);
    lower.draw(&Text::new(
        subtitle,
        (60, 12),
        (PLOT_FONT, 13).into_font().color(&BLACK.mix(0.7)),
    ))?;
    let mut chart = ChartBuilder::on(&upper)
        .caption(title, (PLOT_FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top.max(1.0))?;
    let labels: Vec<String> = bars
        .iter()
        .map(|b| format!("{} (≤ {} ms)", b.label, fmt_num(b.target)))
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("overhead (ms)")
        .x_labels(n + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style((PLOT_FONT, 14))
        .axis_desc_style((PLOT_FONT, 14))
        .draw()?;
    let met_color = RGBColor(46, 139, 87);
    let missed_color = RGBColor(214, 96, 39);
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let color = if b.value <= b.target {
            met_color
        } else {
            missed_color
        };
        let mut r = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), b.value),
            ],
            color.filled(),
        );
        r.set_margin(0, 0, 22, 22);
        r
    }))?;
    // Legend entries only (no data).
    for (label, color) in [
        ("median overhead, target MET", met_color),
        ("median overhead, target MISSED", missed_color),
    ] {
        chart
            .draw_series(std::iter::empty::<Rectangle<(SegmentValue<usize>, f64)>>())?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    let target_style = RED.stroke_width(3);
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            PathElement::new(
                vec![
                    (SegmentValue::Exact(i), b.target),
                    (SegmentValue::Exact(i + 1), b.target),
                ],
                target_style,
            )
        }))?
        .label("target (under each state's name)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], target_style));
    let value_style =
        TextStyle::from((PLOT_FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        Text::new(
            format!("{} ms", fmt_num(b.value)),
            (SegmentValue::CenterOf(i), b.value + top * 0.01),
            value_style.clone(),
        )
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((PLOT_FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(())
}

fn append_latency_svg(spool: &Source) -> String {
    let title = "1 KiB append latency (sync Never) against spool size";
    let Some(j) = &spool.json else {
        return placeholder_svg(title, "not measured: no spool.json");
    };
    let points = latency_points(j);
    if points.is_empty() {
        return placeholder_svg(title, "not measured: no latency in spool.json");
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 560)).into_drawing_area();
        let by_size = j.pointer("/latency_1k_never/by_spool_size").is_some();
        if let Err(e) = draw_append_latency(&root, title, &points, by_size, spool) {
            drop(root);
            return placeholder_svg(title, &format!("plotting failed: {e}"));
        }
    }
    svg
}

/// A labelled line of the latency plot: (legend, colour, (MiB, µs) points).
type Curve = (&'static str, RGBColor, Vec<(f64, f64)>);

fn draw_append_latency(
    root: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    points: &[LatPoint],
    by_size: bool,
    spool: &Source,
) -> PlotResult {
    root.fill(&WHITE)?;
    let x_max = points.iter().map(|p| p.spool_mib).fold(0.0f64, f64::max);
    let x_top = (x_max * 1.05).max(1.0);
    let last = points.last().expect("points");
    // The target: median at 1 GiB ≤ 1.2 × the empty spool's median (same rounds).
    let target = last.empty_p50_us.map(|e| e * 1.2);
    let y_top = points
        .iter()
        .flat_map(|p| [Some(p.p99_us), p.empty_p99_us, target])
        .flatten()
        .fold(0.0f64, f64::max)
        * 1.15;
    let note = format!(
        "{}; {}",
        if by_size {
            "each point: the growing spool and a fresh empty one, timed in the same interleaved rounds"
        } else {
            "older spool.json: only the empty and the full spool were measured"
        },
        spool.modified.map_or("?".into(), utc)
    );
    let (upper, lower) = root.split_vertically(520);
    lower.draw(&Text::new(
        note,
        (60, 12),
        (PLOT_FONT, 13).into_font().color(&BLACK.mix(0.7)),
    ))?;
    let mut chart = ChartBuilder::on(&upper)
        .caption(title, (PLOT_FONT, 20))
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-x_top * 0.03..x_top, 0.0..y_top.max(1.0))?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("spool size (MiB on disk)")
        .y_desc("latency (µs)")
        .label_style((PLOT_FONT, 14))
        .axis_desc_style((PLOT_FONT, 14))
        .draw()?;

    let p50_color = RGBColor(31, 119, 180);
    let p99_color = RGBColor(214, 96, 39);
    let series: [Curve; 2] = [
        (
            "p50, growing spool",
            p50_color,
            points.iter().map(|p| (p.spool_mib, p.p50_us)).collect(),
        ),
        (
            "p99, growing spool",
            p99_color,
            points.iter().map(|p| (p.spool_mib, p.p99_us)).collect(),
        ),
    ];
    for (label, color, data) in series {
        let style = color.stroke_width(3);
        chart
            .draw_series(LineSeries::new(data.clone(), style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        chart.draw_series(
            data.iter()
                .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
        )?;
        let label_style = TextStyle::from((PLOT_FONT, 12).into_font())
            .color(&color)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(data.iter().map(|&(x, y)| {
                Text::new(fmt_num(y), (x, y + y_top * 0.012), label_style.clone())
            }))?;
    }
    let empties: [Curve; 2] = [
        (
            "p50, fresh empty spool (reference)",
            p50_color,
            points
                .iter()
                .filter_map(|p| Some((p.spool_mib, p.empty_p50_us?)))
                .collect(),
        ),
        (
            "p99, fresh empty spool (reference)",
            p99_color,
            points
                .iter()
                .filter_map(|p| Some((p.spool_mib, p.empty_p99_us?)))
                .collect(),
        ),
    ];
    for (label, color, data) in empties {
        if data.is_empty() {
            continue;
        }
        let style = color.mix(0.55).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(data, 8, 5, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    if let Some(t) = target {
        let style = RED.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, t), (x_top, t)],
                3,
                4,
                style,
            ))?
            .label(format!(
                "target: p50 at {} MiB ≤ 1.2 × empty p50 = {} µs",
                fmt_num(last.spool_mib),
                fmt_num(t)
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((PLOT_FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// A number at a JSON pointer (`/a/b`).
fn num(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer)?.as_f64().filter(|x| x.is_finite())
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ratio" => format!("{v:.2}"),
        "/s" => thousands(v),
        _ => fmt_num(v),
    }
}

fn with_unit(value: String, unit: &str) -> String {
    match unit {
        "" | "ratio" => value,
        "/s" => format!("{value}/s"),
        u => format!("{value} {u}"),
    }
}

/// About three significant digits, thousands grouped.
fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        thousands(v)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    if x < 0.0 && digits != "0" {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn size_name(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A table cell: no line breaks, no bare pipes.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(t: SystemTime) -> String {
    let secs = unix_secs(t) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
