//! The figures of the report, section by section: each a median, a ratio or a peak as a bench
//! wrote it (nothing is re-measured here), with its target where it has one.

use bench_schema::delivery::{self, Delivery};
use bench_schema::drain::{self, Drain};
use bench_schema::exec::{self, Exec};
use bench_schema::fleet::{self, Fleet};
use bench_schema::serve::{self, Point, Serve};
use bench_schema::spool::{self, Spool};
use bench_schema::{BenchFile, Target};
use serde_json::{Value, json};

use crate::format::{self, KIB, MIB, num, num_or, size_name, thousands};
use crate::sources::{Loaded, Sources};

/// One figure: `value` is `None` when not measured (no file, or a figure the file lacks).
pub struct Figure {
    /// The id of its section ("1/5", …).
    pub section: &'static str,
    pub name: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    pub target: Option<Target>,
    pub note: String,
}

impl Figure {
    fn new(name: impl Into<String>, value: Option<f64>) -> Figure {
        Figure {
            section: "",
            name: name.into(),
            value: value.filter(|v| v.is_finite()),
            unit: "",
            target: None,
            note: String::new(),
        }
    }

    /// The figure `target` judges, under the target's name.
    fn judged(target: Target, value: Option<f64>) -> Figure {
        Figure::new(target.what, value).target(target)
    }

    fn unit(mut self, unit: &'static str) -> Figure {
        self.unit = unit;
        self
    }

    fn target(mut self, target: Target) -> Figure {
        self.target = Some(target);
        self
    }

    fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }

    /// `Some(met)` for a measured figure with a target.
    pub fn met(&self) -> Option<bool> {
        Some(self.target?.holds(self.value?))
    }

    pub fn value_text(&self) -> String {
        match self.value {
            Some(v) => format::with_unit(format::value(v, self.unit), self.unit),
            None => "not measured".into(),
        }
    }

    pub fn target_text(&self) -> String {
        match self.target {
            Some(t) => format!(
                "{} {}",
                t.op(),
                format::with_unit(format::value(t.aim, self.unit), self.unit)
            ),
            None => "—".into(),
        }
    }

    pub fn verdict(&self) -> &'static str {
        match (self.target.is_some(), self.met()) {
            (false, _) => "info",
            (true, Some(true)) => "**MET**",
            (true, Some(false)) => "**MISSED**",
            (true, None) => "not measured",
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "section": self.section,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target.map(|_| self.target_text()),
            "target_value": self.target.map(|t| t.aim),
            "target_cmp": self.target.map(|t| match t.direction {
                bench_schema::Direction::AtLeast => ">=",
                bench_schema::Direction::AtMost => "<=",
            }),
            "met": self.met(),
            "note": self.note,
        })
    }
}

/// A section of the report: the figures of one bench (or one part of one).
pub struct Section {
    /// "1/5" … "4/5" (the issues the first four answer), then the later benches' names.
    pub id: &'static str,
    pub title: &'static str,
    /// The bench whose file it reads.
    pub bench: &'static str,
    pub figures: Vec<Figure>,
    /// The plot shown under it: (file, alt text, caption).
    pub plot: Option<(&'static str, &'static str, &'static str)>,
}

/// `(met, missed, not measured)` over the figures with a target.
pub fn tally<'a>(figures: impl Iterator<Item = &'a Figure>) -> (usize, usize, usize) {
    let (mut met, mut missed, mut unmeasured) = (0, 0, 0);
    for f in figures.filter(|f| f.target.is_some()) {
        match f.met() {
            Some(true) => met += 1,
            Some(false) => missed += 1,
            None => unmeasured += 1,
        }
    }
    (met, missed, unmeasured)
}

pub fn sections(s: &Sources) -> Vec<Section> {
    vec![
        section("1/5", "Spool: append, read, disk", &s.spool, spool_figures).plot(
            "append_latency.svg",
            "1 KiB append latency against spool size",
            "`append_latency.svg`: median and p99 latency of a 1 KiB append (sync Never) \
             against the spool's size, with a fresh empty spool timed in the same \
             interleaved rounds at each point.",
        ),
        section(
            "1/5 gzip",
            "Spool: compression at rest",
            &s.spool,
            compression_figures,
        ),
        section(
            "2/5",
            "Delivery: flush and export",
            &s.delivery,
            delivery_figures,
        ),
        section(
            "3/5",
            "Hook wrapper: `tracespool exec`",
            &s.exec,
            exec_figures,
        )
        .plot(
            "hook_overhead.svg",
            "exec overhead per backend state",
            "`hook_overhead.svg`: median wall time of `tracespool exec -- true` minus \
             that of `true`, per backend state; red lines are the targets.",
        ),
        section("4/5", "Agent: `tracespool serve`", &s.serve, serve_figures),
        section(
            "drain",
            "Hook in front of a backlog: background drain",
            &s.drain,
            drain_figures,
        ),
        section(
            "fleet",
            "Fleet recovering from an outage (simulation)",
            &s.fleet,
            fleet_figures,
        ),
    ]
}

/// The section's figures from its file; for a file that is missing or unreadable, the figures
/// with a target that it should have given, as not measured.
fn section<F: BenchFile + Default>(
    id: &'static str,
    title: &'static str,
    loaded: &Loaded<F>,
    figures: fn(&F) -> Vec<Figure>,
) -> Section {
    let figures = match &loaded.file {
        Some(f) => figures(f),
        None => figures(&F::default())
            .into_iter()
            .filter(|f| f.target.is_some())
            .map(|f| f.note("not measured: no JSON"))
            .collect(),
    };
    Section {
        id,
        title,
        bench: F::NAME,
        figures: figures
            .into_iter()
            .map(|f| Figure { section: id, ..f })
            .collect(),
        plot: None,
    }
}

impl Section {
    fn plot(mut self, file: &'static str, alt: &'static str, caption: &'static str) -> Section {
        self.plot = Some((file, alt, caption));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// 1/5 spool.

fn spool_figures(j: &Spool) -> Vec<Figure> {
    let mut out = Vec::new();
    for sync in ["Never", "Always"] {
        for size in [1024u64, 64 * 1024, 1024 * 1024] {
            let case = j
                .append_throughput
                .iter()
                .find(|c| c.sync == sync && c.payload_bytes == size);
            let note = match case.map(|c| (c.batches_per_sec, c.us_per_append)) {
                Some((Some(b), Some(us))) => {
                    format!("{} appends/s, {} µs/append", thousands(b), num(us))
                }
                _ => String::new(),
            };
            out.push(
                Figure::new(
                    format!(
                        "append throughput, {} batches, sync {sync}",
                        size_name(size)
                    ),
                    case.and_then(|c| c.mib_per_sec),
                )
                .unit("MiB/s")
                .note(note),
            );
        }
    }
    let raw = j.raw_disk.clone().unwrap_or_default();
    out.push(
        Figure::new(
            "raw disk bandwidth (64 KiB write_all + fsync)",
            raw.device.and_then(|d| d.raw_mib_per_sec),
        )
        .unit("MiB/s")
        .note(match raw.page_cache.and_then(|p| p.raw_mib_per_sec) {
            Some(pc) => format!("page cache only: {} MiB/s", num(pc)),
            None => String::new(),
        }),
    );
    out.push(
        Figure::judged(spool::RAW_DISK_RATIO, raw.ratio_64k_never_to_raw_disk)
            .unit("ratio")
            .note("median of the per-repetition ratios, paired in each repetition"),
    );
    out.push(
        Figure::new(
            "(stricter) 64 KiB appends + final fsync / raw + final fsync",
            raw.ratio_64k_never_to_raw_disk_device,
        )
        .unit("ratio")
        .note("informational: both written through to the device"),
    );
    out.push(
        Figure::new(
            "(secondary) 64 KiB appends (Never) / raw write_all, page cache only",
            raw.ratio_64k_never_to_raw_page_cache,
        )
        .unit("ratio")
        .note("informational: the write path without the disk"),
    );
    out.push(
        Figure::judged(spool::SMALL_APPENDS_PER_SEC, j.small_appends_per_sec_never).unit("/s"),
    );
    let lat = j.latency_1k_never.clone().unwrap_or_default();
    let us = |ns: Option<f64>| ns.map_or("?".into(), |n| num(n / 1000.0));
    let (full, empty) = (
        lat.full.clone().unwrap_or_default(),
        lat.empty.clone().unwrap_or_default(),
    );
    out.push(
        Figure::judged(spool::LATENCY_RATIO, lat.median_ratio_full_to_empty)
            .unit("ratio")
            .note(format!(
                "p50 {} µs at {} MiB vs {} µs empty; p99 {} vs {} µs",
                us(full.p50_ns),
                lat.full_spool_bytes
                    .map_or("?".into(), |b| format!("{:.0}", b / MIB)),
                us(empty.p50_ns),
                us(full.p99_ns),
                us(empty.p99_ns),
            )),
    );
    for p in latency_points(j) {
        out.push(
            Figure::new(
                match p.target_mib.unwrap_or(p.spool_mib) {
                    0.0 => "1 KiB append latency p50, empty spool".to_owned(),
                    m => format!("1 KiB append latency p50, {} MiB spool", num(m)),
                },
                Some(p.p50_us),
            )
            .unit("µs")
            .note(format!(
                "{:.0} MiB on disk; p99 {} µs; fresh empty spool in the same rounds: \
                 p50 {} µs, p99 {} µs",
                p.spool_mib,
                num(p.p99_us),
                num_or(p.empty_p50_us),
                num_or(p.empty_p99_us)
            )),
        );
    }
    let read = j.read.clone().unwrap_or_default();
    out.push(
        Figure::new(
            "read + ack throughput (1 GiB of 64 KiB records)",
            read.mib_per_sec,
        )
        .unit("MiB/s")
        .note(match (read.records_per_sec, read.raw_read_mib_per_sec) {
            (Some(r), Some(raw)) => format!(
                "{} records/s; raw reads of the same files {} MiB/s",
                thousands(r),
                num(raw)
            ),
            _ => String::new(),
        }),
    );
    out.push(
        Figure::judged(spool::PEAK_RSS_MIB, read.peak_rss_kib.map(|k| k / KIB))
            .unit("MiB")
            .note("VmHWM of the reading process"),
    );
    out
}

/// One point of append latency against spool size.
pub struct LatPoint {
    /// The size aimed at (`None` in an older spool.json).
    pub target_mib: Option<f64>,
    /// The size on disk when measured.
    pub spool_mib: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub empty_p50_us: Option<f64>,
    pub empty_p99_us: Option<f64>,
}

/// `latency_1k_never.by_spool_size`; from an older spool.json, the two points it had (empty and
/// full).
pub fn latency_points(j: &Spool) -> Vec<LatPoint> {
    let us = |ns: Option<f64>| ns.map(|ns| ns / 1000.0);
    let Some(l) = &j.latency_1k_never else {
        return Vec::new();
    };
    if let Some(points) = &l.by_spool_size {
        return points
            .iter()
            .filter_map(|p| {
                let (lat, empty) = (p.latency.clone()?, p.empty.clone().unwrap_or_default());
                Some(LatPoint {
                    target_mib: p.target_bytes.map(|b| b / MIB),
                    spool_mib: p.spool_bytes? / MIB,
                    p50_us: us(lat.p50_ns)?,
                    p99_us: us(lat.p99_ns)?,
                    empty_p50_us: us(empty.p50_ns),
                    empty_p99_us: us(empty.p99_ns),
                })
            })
            .collect();
    }
    let (empty, full) = (
        l.empty.clone().unwrap_or_default(),
        l.full.clone().unwrap_or_default(),
    );
    let (Some(e50), Some(e99), Some(f50), Some(f99), Some(bytes)) = (
        us(empty.p50_ns),
        us(empty.p99_ns),
        us(full.p50_ns),
        us(full.p99_ns),
        l.full_spool_bytes,
    ) else {
        return Vec::new();
    };
    [(0.0, e50, e99), (bytes / MIB, f50, f99)]
        .into_iter()
        .map(|(spool_mib, p50_us, p99_us)| LatPoint {
            target_mib: None,
            spool_mib,
            p50_us,
            p99_us,
            empty_p50_us: Some(e50),
            empty_p99_us: Some(e99),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Compression at rest (spool.json, the spool bench's section 4).

fn compression_figures(j: &Spool) -> Vec<Figure> {
    let c = j.compression.clone().unwrap_or_default();
    let typical = c.small_appends_never_typical.clone().unwrap_or_default();
    let noise = c.small_appends_never_noise.clone().unwrap_or_default();
    let spans = c.typical_batch_spans.map_or("?".into(), |n| n.to_string());
    vec![
        Figure::new(
            format!("a typical batch ({spans} spans), gzip / encoded size"),
            c.typical_batch_gzip_bytes
                .zip(c.typical_batch_bytes)
                .map(|(g, b)| g / b),
        )
        .unit("ratio")
        .note(format!(
            "{} B encoded, {} B gzip-compressed",
            num_or(c.typical_batch_bytes),
            num_or(c.typical_batch_gzip_bytes)
        )),
        Figure::judged(spool::HELD_RATIO, c.held_ratio)
            .unit("ratio")
            .note(format!(
                "{} spans stored as they are, {} gzip-compressed",
                c.spans_held_64mib_none.map_or("?".into(), thousands),
                c.spans_held_64mib_gzip.map_or("?".into(), thousands)
            )),
        Figure::judged(spool::GZIP_APPENDS_PER_SEC, typical.gzip_median)
            .unit("/s")
            .note(format!(
                "stored as they are: {}/s",
                typical.none_median.map_or("?".into(), thousands)
            )),
        Figure::new(
            "(info) 1 KiB incompressible appends/s (Never, gzip tried and given up)",
            noise.gzip_median,
        )
        .unit("/s")
        .note(format!(
            "stored as they are: {}/s",
            noise.none_median.map_or("?".into(), thousands)
        )),
    ]
}

// ---------------------------------------------------------------------------------------------
// 2/5 delivery.

fn delivery_figures(j: &Delivery) -> Vec<Figure> {
    let mut out = Vec::new();
    let ft = j.flush_throughput.clone().unwrap_or_default();
    let spans = |r: &Option<bench_schema::delivery::Rate>| r.as_ref().and_then(|r| r.spans_per_sec);
    let rate_note = |flush: Option<f64>| match (flush, spans(&ft.replay)) {
        (Some(a), Some(b)) => format!(
            "{} spans/s vs replay {} spans/s (medians; the ratio is the median of ratios \
             to the replays around each run)",
            thousands(a),
            thousands(b)
        ),
        _ => String::new(),
    };
    out.push(
        Figure::judged(delivery::FLUSH_RATIO, ft.ratio_always_median)
            .unit("ratio")
            .note(rate_note(spans(&ft.flush_always))),
    );
    // Over OTLP/gRPC, against a minimal tonic client (files before it have no `grpc`).
    if let Some(grpc) = &ft.grpc {
        out.push(
            Figure::judged(delivery::GRPC_FLUSH_RATIO, grpc.ratio_always_median)
                .unit("ratio")
                .note(match (spans(&grpc.flush_always), spans(&grpc.replay)) {
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
            "(secondary) the same under sync Never, a library-only option",
            ft.ratio_never_median,
        )
        .unit("ratio")
        .note(format!(
            "informational: no command uses Never; {}",
            rate_note(spans(&ft.flush_never))
        )),
    );
    out.push(
        Figure::new(
            "(secondary) replay + fdatasync per answer / plain replay",
            ft.ratio_replay_plus_fdatasync_median,
        )
        .unit("ratio")
        .note("informational: the cost of one fdatasync per batch alone"),
    );
    for sync in ["Never", "Always"] {
        for n in [1u64, 10, 100] {
            let case = j
                .export_to_spool
                .iter()
                .find(|c| c.sync == sync && c.spans_per_batch == n)
                .cloned()
                .unwrap_or_default();
            let median =
                |m: &Option<bench_schema::delivery::Micros>| m.as_ref().and_then(|m| m.median_us);
            let total = case.encode_delivery_export_no_endpoint.clone();
            let note = format!(
                "encode {} µs, append {} µs, export alone {} µs; {} B/batch; p90 {} µs",
                num_or(median(&case.encode)),
                num_or(median(&case.append)),
                num_or(median(&case.delivery_export_no_endpoint)),
                case.bytes_per_batch
                    .map_or("?".into(), |b| format!("{b:.0}")),
                num_or(total.as_ref().and_then(|t| t.p90_us)),
            );
            out.push(
                Figure::new(
                    format!(
                        "export-to-spool per batch, {n} span{}, sync {sync} (encode + export)",
                        if n == 1 { "" } else { "s" }
                    ),
                    median(&total),
                )
                .unit("µs")
                .note(note),
            );
        }
    }
    out.push(
        Figure::new(
            "one export by a fresh process (runtime + spool + Delivery + export, rotel up)",
            j.fresh_process_export
                .as_ref()
                .and_then(|f| f.total.as_ref()?.median_us),
        )
        .unit("µs"),
    );
    out
}

// ---------------------------------------------------------------------------------------------
// 3/5 exec.

fn exec_figures(j: &Exec) -> Vec<Figure> {
    let mut out = Vec::new();
    let case = |key: &str| j.cases.get(key).cloned().unwrap_or_default();
    out.push(
        Figure::new(
            "`true` spawned directly (the baseline)",
            case("true").median_ms,
        )
        .unit("ms")
        .note("median wall time, spawn → reaped"),
    );
    for (key, target, _) in exec::OVERHEAD {
        let c = case(key);
        out.push(
            Figure::judged(target, c.overhead_ms)
                .unit("ms")
                .note(format!(
                    "median {} ms − median(true); paired {} ms; p90 {} ms; CPU {} ms",
                    num_or(c.median_ms),
                    num_or(c.paired_overhead_ms),
                    num_or(c.p90_ms),
                    num_or(c.cpu_median_ms),
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
        if let Some(v) = case(key).overhead_ms {
            out.push(Figure::new(label, Some(v)).unit("ms"));
        }
    }
    let mut budgets: Vec<_> = j.hang_first_run.iter().collect();
    budgets.sort_by(|a, b| {
        let ms = |h: &exec::HangFirstRun| h.budget_ms.unwrap_or(f64::MAX);
        ms(a.1).total_cmp(&ms(b.1))
    });
    if budgets.is_empty() {
        out.push(
            Figure::new(format!("{} (500 ms)", exec::HANG_OVER_BUDGET.what), None)
                .unit("ms")
                .target(exec::HANG_OVER_BUDGET)
                .note("not measured: no `hang_first_run` in exec.json"),
        );
    }
    for (budget, h) in budgets {
        let n = h.n.map_or("?".into(), |n| format!("{n:.0}"));
        out.push(
            Figure::new(
                format!("{} ({budget})", exec::HANG_OVER_BUDGET.what),
                h.over_budget_median_ms,
            )
            .unit("ms")
            .target(exec::HANG_OVER_BUDGET)
            .note(format!(
                "median wall {} ms over {n} runs",
                num_or(h.median_ms)
            )),
        );
        out.push(
            Figure::new(
                format!("{} ({budget})", exec::HANG_WORST_OVER_BUDGET.what),
                h.over_budget_max_ms,
            )
            .unit("ms")
            .target(exec::HANG_WORST_OVER_BUDGET)
            .note(format!("the bench's own criterion: every one of {n} runs")),
        );
    }
    if j.checks_ok == Some(false) {
        out.push(
            Figure::new("exec bench correctness checks", Some(0.0))
                .note("FAILED: see `checks` in exec.json"),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 4/5 serve.

fn serve_figures(j: &Serve) -> Vec<Figure> {
    if j.results.is_empty() {
        let not_measured = "not measured: no `results` in serve.json";
        return vec![
            Figure::new(format!("spans/s {}", serve::RATIO_VS_ROTEL.what), None)
                .unit("ratio")
                .target(serve::RATIO_VS_ROTEL)
                .note(not_measured),
            Figure::judged(serve::ADDED_P99_MS, None)
                .unit("ms")
                .note(not_measured),
        ];
    }
    let mut out = Vec::new();
    serve_signal_figures(&mut out, &j.results, None, "spans");
    // Metrics and logs, beside traces (files before them have no `signals`).
    for (signal, unit) in [("metrics", "data points"), ("logs", "log records")] {
        if let Some(s) = j.signals.get(signal) {
            serve_signal_figures(&mut out, &s.results, Some(signal), unit);
        }
    }
    if let Some(direct) = j.rotel_vm_hwm_kib.as_ref().and_then(|r| r.direct) {
        out.push(
            Figure::new("(info) peak RSS of rotel direct", Some(direct / KIB))
                .unit("MiB")
                .note("VmHWM of the rotel the clients sent to directly"),
        );
    }
    out
}

/// The figures of one signal's results: each serve target against rotel at the same load.
/// `words` names the signal's items (spans, data points, log records).
fn serve_signal_figures(
    out: &mut Vec<Figure>,
    results: &[Point],
    signal: Option<&str>,
    words: &str,
) {
    let median = |s: &Option<serve::Stat>| s.as_ref().and_then(|s| s.median);
    for r in results.iter().filter(|r| r.target != "rotel") {
        let rotel = results
            .iter()
            .find(|o| o.target == "rotel" && o.protocol == r.protocol && o.clients == r.clients);
        let who = format!(
            "{}{}, {}, {} client{}",
            signal.map_or(String::new(), |s| format!("{s}, ")),
            r.target.trim_start_matches("serve_").replace('_', "-"),
            r.protocol,
            r.clients.map_or("?".into(), |c| format!("{c:.0}")),
            if r.clients == Some(1.0) { "" } else { "s" }
        );
        // This target's figure and rotel's at the same load, formatted.
        let pair = |get: fn(&Point) -> &Option<serve::Stat>, f: fn(f64) -> String| {
            (
                median(get(r)).map_or("?".into(), f),
                rotel.and_then(|o| median(get(o))).map_or("?".into(), f),
            )
        };
        let (ours, theirs) = pair(|p| &p.items_per_s, thousands);
        out.push(
            Figure::new(
                format!("{words}/s {}: {who}", serve::RATIO_VS_ROTEL.what),
                median(&r.ratio_vs_rotel),
            )
            .unit("ratio")
            .target(serve::RATIO_VS_ROTEL)
            .note(format!(
                "{ours} {words}/s vs rotel {theirs} {words}/s (medians)"
            )),
        );
        let (ours, theirs) = pair(|p| &p.p50_ms, num);
        out.push(
            Figure::new(format!("added p50 latency: {who}"), median(&r.added_p50_ms))
                .unit("ms")
                .note(format!("p50 {ours} ms vs rotel {theirs} ms")),
        );
        let (ours, theirs) = pair(|p| &p.p99_ms, num);
        out.push(
            Figure::new(
                format!("{}: {who}", serve::ADDED_P99_MS.what),
                median(&r.added_p99_ms),
            )
            .unit("ms")
            .target(serve::ADDED_P99_MS)
            .note(format!("p99 {ours} ms vs rotel {theirs} ms")),
        );
        out.push(
            Figure::new(
                format!("peak RSS of serve: {who}"),
                r.vm_hwm_kib_max.map(|k| k / KIB),
            )
            .unit("MiB")
            .note("VmHWM, largest over the repetitions"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Drain.

fn drain_figures(j: &Drain) -> Vec<Figure> {
    let hook = j.hook.clone().unwrap_or_default();
    let t = j.throughput.clone().unwrap_or_default();
    let inline = (!hook.inline_ms.is_empty()).then(|| median(&hook.inline_ms));
    vec![
        Figure::judged(drain::HOOK_ADDED_MS, hook.added_ms)
            .unit("ms")
            .note(format!(
                "`exec -- true` against rotel: median {} ms with a {} MiB backlog vs {} ms \
                 with an empty spool, over {} rounds",
                num_or(hook.backlog_median_ms),
                j.backlog_bytes
                    .map_or("?".into(), |b| format!("{:.0}", b as f64 / MIB)),
                num_or(hook.empty_median_ms),
                hook.rounds.map_or("?".into(), |n| n.to_string()),
            )),
        Figure::new("(info) the same hook with `--drain inline`", inline)
            .unit("ms")
            .note("median wall time: the hook delivers the backlog itself, up to its budget"),
        Figure::judged(drain::THROUGHPUT_RATIO, t.ratio)
            .unit("ratio")
            .note(format!(
                "{} batches: drain {} batches/s vs flush {} batches/s (medians)",
                t.batches.map_or("?".into(), |n| thousands(n as f64)),
                t.drain_batches_per_sec.map_or("?".into(), thousands),
                t.flush_batches_per_sec.map_or("?".into(), thousands),
            )),
    ]
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// Fleet.

fn fleet_figures(j: &Fleet) -> Vec<Figure> {
    let params = j.params.clone().unwrap_or_default();
    let mut out = Vec::new();
    let setup = format!(
        "{} hosts, {} s outage, backend capacity {}/s",
        params.hosts.map_or("?".into(), |n| thousands(n as f64)),
        params.outage_secs.map_or("?".into(), |n| n.to_string()),
        params
            .capacity_per_sec
            .map_or("?".into(), |n| n.to_string())
    );
    let bg = j
        .variants
        .get(fleet::JUDGED_VARIANT)
        .cloned()
        .unwrap_or_default();
    out.push(
        Figure::judged(fleet::PEAK_OVER_CAPACITY, bg.peak_over_capacity)
            .unit("ratio")
            .note(format!(
                "peak {} requests/s; {setup}",
                bg.peak_requests_per_sec
                    .map_or("?".into(), |n| n.to_string())
            )),
    );
    out.push(
        Figure::judged(fleet::DRAINED_OVER_IDEAL, bg.drained_over_ideal)
            .unit("ratio")
            .note(format!(
                "{} s to empty {} batches vs {} s ideal",
                num_or(bg.drained_secs),
                bg.backlog_at_up.map_or("?".into(), |n| thousands(n as f64)),
                num_or(bg.ideal_drain_secs)
            )),
    );
    let budget = params.budget_ms.map_or(fleet::NETWORK_MAX_MS, |b| {
        fleet::NETWORK_MAX_MS.aiming(b as f64)
    });
    out.push(
        Figure::judged(budget, bg.network_max_ms)
            .unit("ms")
            .note("the target is the hook's budget"),
    );
    out.push(Figure::judged(fleet::ADDED_P99_MS, bg.added_p99_ms).unit("ms"));
    for (key, label) in [
        ("inline", "(info) with `--drain inline`"),
        ("no_jitter", "(info) without jitter"),
    ] {
        if let Some(v) = j.variants.get(key) {
            out.push(
                Figure::new(
                    format!("peak request rate / C {label}"),
                    v.peak_over_capacity,
                )
                .unit("ratio")
                .note(format!(
                    "time to empty / ideal {}; p99 added {} ms; longest on the network {} ms",
                    v.drained_over_ideal
                        .map_or("never".into(), |r| format!("{r:.2}")),
                    num_or(v.added_p99_ms),
                    num_or(v.network_max_ms)
                )),
            );
        }
    }
    out
}
