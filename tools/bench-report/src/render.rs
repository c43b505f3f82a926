//! `report.md` and `report.json`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bench_schema::Machine;
use serde_json::{Value, json};

use crate::figures::{Section, tally};
use crate::format::{md_cell, unix_secs, utc};
use crate::sources::{Meta, Sources};

/// The machine the benches ran on: each fact from the first file that has it (spool.json
/// records the most).
fn machine(sources: &Sources) -> Option<Machine> {
    let mut present = sources
        .metas()
        .into_iter()
        .filter_map(|m| m.run.machine.clone());
    let first = present.next()?;
    Some(
        present
            .fold(first, |acc, m| acc.or(&m))
            .or(&Machine::default()),
    )
}

fn q(v: Option<&str>) -> &str {
    v.unwrap_or("?")
}

fn written(s: &Meta) -> String {
    match (&s.error, s.modified) {
        (None, Some(m)) => format!(
            "{}{}{}",
            utc(m),
            if s.stale {
                " **STALE** (before this run)"
            } else {
                ""
            },
            if s.run.quick {
                " **QUICK** (not meaningful)"
            } else {
                ""
            }
        ),
        _ => format!(
            "**not measured** ({})",
            s.error.as_deref().unwrap_or("no file")
        ),
    }
}

pub fn markdown(sources: &Sources, sections: &[Section], now: SystemTime) -> String {
    let mut md = String::new();
    let figures = || sections.iter().flat_map(|s| &s.figures);
    let (met, missed, unmeasured) = tally(figures());
    let _ = writeln!(md, "# tracespool benchmark report\n");
    let _ = writeln!(md, "Generated {} by `cargo run -p bench-report`.", utc(now));
    let _ = writeln!(
        md,
        "\n**Targets: {met} MET, {missed} MISSED, {unmeasured} not measured** (of {}).\n",
        met + missed + unmeasured
    );

    let _ = writeln!(md, "## Run\n");
    match &sources.run {
        Some(r) => {
            let _ = writeln!(
                md,
                "- command: `{}`, started {}",
                r.command.as_deref().unwrap_or(".ci/bench-report"),
                r.started_unix.map_or("?".into(), |s| utc(
                    UNIX_EPOCH + Duration::from_secs_f64(s.max(0.0))
                ))
            );
            let _ = writeln!(
                md,
                "- source: commit `{}`{}",
                q(r.commit.as_deref()),
                if r.dirty == Some(true) {
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
    let all_fresh = sources.run.is_some()
        && sources
            .metas()
            .iter()
            .all(|s| s.present() && !s.stale && !s.run.quick);
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
    for s in sources.metas() {
        let ids: Vec<&str> = sections
            .iter()
            .filter(|x| x.bench == s.name && x.id != s.name)
            .map(|x| x.id)
            .collect();
        let _ = writeln!(
            md,
            "| {} | `{}.json` | {} | {} | {} | {} |",
            if ids.is_empty() {
                s.name.to_owned()
            } else {
                format!("{} {}", ids.join(", "), s.name)
            },
            s.name,
            written(s),
            s.run.total_secs.map_or("?".into(), |t| format!("{t:.0} s")),
            md_cell(q(s.run.load_at_start())),
            md_cell(q(s.run.load_at_end()))
        );
    }

    let _ = writeln!(md, "\n## Machine\n");
    match machine(sources) {
        None => {
            let _ = writeln!(md, "Not recorded (no bench JSON).");
        }
        Some(m) => {
            let fs = m.filesystem.clone().unwrap_or_default();
            let _ = writeln!(
                md,
                "- CPU: {} × {}\n- memory: {}\n- kernel: Linux {}",
                m.cpus.map_or("?".into(), |c| c.to_string()),
                q(m.cpu_model.as_deref()),
                q(m.mem_total.as_deref()),
                q(m.kernel.as_deref())
            );
            let _ = writeln!(
                md,
                "- bench filesystem: {} {} mounted on {} ({})",
                q(fs.device.as_deref()),
                q(fs.kind.as_deref()),
                q(fs.mounted_on.as_deref()),
                q(m.bench_dir.as_deref())
            );
            let _ = writeln!(
                md,
                "- vm.dirty_background_ratio / dirty_ratio: {}",
                q(m.dirty_background_ratio_and_dirty_ratio.as_deref())
            );
            let _ = writeln!(
                md,
                "- load: the machine is shared; \"CPU pressure\" is the share of time some task \
                 waited for a CPU (per bench in the table above). Figures taken under heavy load \
                 read worse than on an idle machine."
            );
        }
    }

    let _ = writeln!(md, "\n## Targets\n");
    let _ = writeln!(md, "| section | figure | value | target | verdict |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for f in figures().filter(|f| f.target.is_some()) {
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

    for sec in sections {
        let meta = sources
            .metas()
            .into_iter()
            .find(|m| m.name == sec.bench)
            .expect("every section reads one of the sources");
        let _ = writeln!(md, "\n## {} {}\n", sec.id, sec.title);
        let _ = writeln!(
            md,
            "From `{}.json`: {}.\n",
            sec.bench,
            md_cell(&meta.status_line())
        );
        let _ = writeln!(md, "| figure | value | target | verdict | notes |");
        let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
        for f in &sec.figures {
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
        if let Some((file, alt, caption)) = sec.plot {
            let _ = writeln!(md, "\n![{alt}]({file})\n\n{caption}");
        }
    }
    let _ = writeln!(
        md,
        "\n---\nValues are the benches' medians (or medians of per-repetition ratios) as written \
         in their JSON; `report.json` holds the same figures as one flat list."
    );
    md
}

pub fn json(sources: &Sources, sections: &[Section], now: SystemTime) -> Value {
    let figures = || sections.iter().flat_map(|s| &s.figures);
    let (met, missed, unmeasured) = tally(figures());
    json!({
        "generated_unix": unix_secs(now),
        "generated": utc(now),
        "run": sources.run,
        "machine": machine(sources),
        "sources": sources.metas().iter().map(|s| json!({
            "bench": s.name,
            "sections": sections.iter().filter(|x| x.bench == s.name).map(|x| x.id).collect::<Vec<_>>(),
            "file": s.path.display().to_string(),
            "present": s.present(),
            "error": s.error,
            "written_unix": s.modified.map(unix_secs),
            "stale": s.stale,
            "quick": s.run.quick,
            "total_secs": s.run.total_secs,
            "load_at_start": q(s.run.load_at_start()),
            "load_at_end": q(s.run.load_at_end()),
        })).collect::<Vec<_>>(),
        "summary": {"met": met, "missed": missed, "not_measured": unmeasured},
        "figures": figures().map(|f| f.to_json()).collect::<Vec<_>>(),
    })
}
