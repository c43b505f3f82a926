//! tracespool's benchmark report: reads what the benches wrote
//! (`target/bench-report/{spool,delivery,exec,serve,drain,fleet}.json`, typed by `bench-schema`)
//! and renders, next to them:
//!
//! - `report.md`: every figure with its target and MET / MISSED, the machine, the date, the load
//!   during each bench, and whether each file comes from this run;
//! - `report.json`: the same figures as one flat list (`section`, `name`, `value`, `unit`,
//!   `target`, `met`, `note`);
//! - `hook_overhead.svg`: `tracespool exec -- true` minus `true`, per backend state, with the
//!   targets;
//! - `append_latency.svg`: median and p99 latency of a 1 KiB append against the spool's size.
//!
//! A missing or unreadable file is reported as "not measured", never an error. Figures are the
//! benches' medians and ratios, taken as they are: nothing is re-measured here. `run.json`
//! (written by `.ci/bench-report` when its run started) marks a file written before it stale.

mod figures;
pub mod format;
mod plots;
mod render;
mod sources;

use std::path::Path;
use std::time::SystemTime;

pub use figures::{Figure, Section};
pub use sources::{Meta, Sources};

/// What the report writes, by file name, and a summary to print.
pub struct Report {
    pub files: Vec<(&'static str, String)>,
    pub summary: String,
}

/// Reads the files in `dir` and renders the report as of `now`.
pub fn render(dir: &Path, now: SystemTime) -> Report {
    let sources = Sources::load(dir);
    let sections = figures::sections(&sources);
    let all = || sections.iter().flat_map(|s| &s.figures);
    let (met, missed, unmeasured) = figures::tally(all());
    let mut summary = format!(
        "bench report: {} figures with a target: {met} MET, {missed} MISSED, {unmeasured} not \
         measured; {} informational",
        met + missed + unmeasured,
        all().filter(|f| f.target.is_none()).count()
    );
    for s in sources.metas() {
        summary.push_str(&format!("\n  {:<9} {}", s.name, s.status_line()));
    }
    let json = render::json(&sources, &sections, now);
    let files = vec![
        ("report.md", render::markdown(&sources, &sections, now)),
        (
            "report.json",
            serde_json::to_string_pretty(&json).expect("a JSON value serializes") + "\n",
        ),
        ("hook_overhead.svg", plots::hook_overhead_svg(&sources.exec)),
        (
            "append_latency.svg",
            plots::append_latency_svg(&sources.spool),
        ),
    ];
    Report { files, summary }
}
