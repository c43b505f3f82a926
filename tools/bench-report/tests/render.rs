//! The report rendered from small fixture files (`tests/fixtures/`, one per bench, each with
//! the figures the report reads).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A copy of the fixtures in a fresh directory, without the files named in `leave_out`.
fn fixture_dir(leave_out: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for entry in fs::read_dir(fixtures()).expect("the fixtures") {
        let path = entry.expect("a fixture").path();
        let name = path
            .file_name()
            .expect("a file name")
            .to_str()
            .expect("UTF-8");
        if !leave_out.contains(&name) {
            fs::copy(&path, dir.path().join(name)).expect("copy a fixture");
        }
    }
    dir
}

fn render(dir: &Path) -> (String, serde_json::Value, String) {
    let report = bench_report::render(dir, SystemTime::now());
    let file = |name: &str| {
        report
            .files
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("the report writes {name}"))
            .1
            .clone()
    };
    let json = serde_json::from_str(&file("report.json")).expect("report.json is JSON");
    (file("report.md"), json, file("hook_overhead.svg"))
}

/// The markdown table row of the figure `name` in its section.
fn row<'a>(md: &'a str, name: &str) -> &'a str {
    md.lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no row for {name:?} in:\n{md}"))
}

#[test]
fn every_bench_has_its_section_with_the_figures_of_its_file() {
    let dir = fixture_dir(&[]);
    let (md, json, svg) = render(dir.path());
    for heading in [
        "## 1/5 Spool: append, read, disk",
        "## 1/5 gzip Spool: compression at rest",
        "## 2/5 Delivery: flush and export",
        "## 3/5 Hook wrapper: `tracespool exec`",
        "## 4/5 Agent: `tracespool serve`",
        "## drain Hook in front of a backlog: background drain",
        "## fleet Fleet recovering from an outage (simulation)",
    ] {
        assert!(md.contains(heading), "{heading} missing from:\n{md}");
    }
    assert!(
        row(&md, "64 KiB append throughput (Never) / raw disk bandwidth")
            .contains("| 1.84 | ≥ 0.80 | **MET** |")
    );
    assert!(row(&md, "spans held by 64 MiB, gzip / none").contains("| 4.16 | ≥ 3.00 | **MET** |"));
    assert!(
        row(&md, "background drain throughput / flush throughput")
            .contains("| 1.04 | ≥ 0.80 | **MET** |")
    );
    assert!(row(&md, "peak request rate / C (background)").contains("| 1.24 | ≤ 1.50 | **MET** |"));
    assert!(row(&md, "exec overhead: rotel up").contains("| 3.60 ms | ≤ 10.0 ms | **MET** |"));
    assert!(
        md.contains("- every figure measured in this run: **no** (see below)"),
        "no run.json in the fixtures"
    );
    assert!(
        svg.contains("rotel up"),
        "the plot has a bar per backend state"
    );
    let summary = &json["summary"];
    assert_eq!(summary["not_measured"], 0, "{summary}");
    assert_eq!(json["sources"].as_array().map(Vec::len), Some(6));
}

#[test]
fn a_figure_beyond_its_target_is_marked_missed() {
    let dir = fixture_dir(&[]);
    let (md, json, _) = render(dir.path());
    // backoff_open: 1.7 ms over `true`, against at most 1.5 ms.
    assert!(
        row(&md, "exec overhead: backoff open").contains("| 1.70 ms | ≤ 1.50 ms | **MISSED** |")
    );
    // metrics, spool-only: 0.40 of rotel's rate, against at least 0.50.
    assert!(
        row(
            &md,
            "data points/s accepted / rotel direct: metrics, spool-only, HTTP, 1 client"
        )
        .contains("| 0.40 | ≥ 0.50 | **MISSED** |")
    );
    let missed = json["figures"]
        .as_array()
        .expect("figures")
        .iter()
        .filter(|f| f["met"] == false)
        .count();
    assert_eq!(json["summary"]["missed"], missed);
    assert!(missed >= 2);
}

#[test]
fn a_missing_file_leaves_its_targets_not_measured() {
    let dir = fixture_dir(&["exec.json", "drain.json"]);
    let (md, json, svg) = render(dir.path());
    assert!(
        row(&md, "exec overhead: no endpoint")
            .contains("| not measured | ≤ 1.50 ms | not measured |")
    );
    assert!(
        row(&md, "background drain throughput / flush throughput")
            .contains("| not measured | ≥ 0.80 | not measured |")
    );
    assert!(md.contains("From `exec.json`: not measured (missing:"));
    assert!(svg.contains("not measured: no exec.json"));
    // The others are still read.
    assert!(row(&md, "peak request rate / C (background)").contains("**MET**"));
    assert_eq!(json["summary"]["not_measured"], 5 + 2 + 1);
}

#[test]
fn an_unreadable_file_is_not_measured_and_says_why() {
    let dir = fixture_dir(&[]);
    fs::write(dir.path().join("fleet.json"), "{\"variants\": 3}").expect("write");
    let (md, _, _) = render(dir.path());
    assert!(
        md.contains("From `fleet.json`: not measured (unreadable:"),
        "{md}"
    );
    assert!(row(&md, "p99 time added per hook (background)").contains("| not measured |"));
}

#[test]
fn a_file_older_than_the_run_is_marked_stale() {
    let dir = fixture_dir(&[]);
    let later = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        + 60.0;
    fs::write(
        dir.path().join("run.json"),
        format!("{{\"started_unix\": {later}, \"commit\": \"abc1234\", \"dirty\": false, \"command\": \".ci/bench-report\"}}"),
    )
    .expect("write run.json");
    let (md, _, _) = render(dir.path());
    assert!(md.contains("- source: commit `abc1234`"));
    assert!(md.contains("**STALE** (before this run)"));
}

#[test]
fn every_target_of_the_schema_judges_a_figure_of_the_report() {
    use bench_schema::{delivery, drain, exec, fleet, serve, spool};
    let dir = fixture_dir(&[]);
    let (_, json, _) = render(dir.path());
    let judged: Vec<(String, f64)> = json["figures"]
        .as_array()
        .expect("figures")
        .iter()
        .filter_map(|f| Some((f["name"].as_str()?.to_owned(), f["target_value"].as_f64()?)))
        .collect();
    let targets = [
        spool::RAW_DISK_RATIO,
        spool::SMALL_APPENDS_PER_SEC,
        spool::LATENCY_RATIO,
        spool::PEAK_RSS_MIB,
        spool::HELD_RATIO,
        spool::GZIP_APPENDS_PER_SEC,
        delivery::FLUSH_RATIO,
        delivery::GRPC_FLUSH_RATIO,
        exec::HANG_OVER_BUDGET,
        exec::HANG_WORST_OVER_BUDGET,
        serve::RATIO_VS_ROTEL,
        serve::ADDED_P99_MS,
        drain::HOOK_ADDED_MS,
        drain::THROUGHPUT_RATIO,
        fleet::PEAK_OVER_CAPACITY,
        fleet::DRAINED_OVER_IDEAL,
        fleet::NETWORK_MAX_MS,
        fleet::ADDED_P99_MS,
    ]
    .into_iter()
    .chain(exec::OVERHEAD.iter().map(|(_, t, _)| *t));
    for t in targets {
        assert!(
            judged
                .iter()
                .any(|(name, aim)| name.contains(t.what) && *aim == t.aim),
            "no figure judged by {t:?} in {judged:#?}"
        );
    }
}
