//! Sampling of `exec`'s and `span`'s spans (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`,
//! the file's `sampler` and `sampler_arg`), driven as a user drives it: the built binary, its
//! spool, a real collector (rotel) and the Python OpenTelemetry SDK as a child.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use common::{Rotel, in_spool as ts, python, status_json, stderr, stdout};

const PARENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN: &str = "b7ad6b7169203331";

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run tracespool")
}

/// The spans the spool holds.
fn spooled_spans(spool: &Path) -> u64 {
    let status = status_json(spool, &[]);
    status["spans"].as_u64().expect("a span count")
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A W3C traceparent's trace id, span id and flags; fails on anything else, all-zero ids too.
fn parts(tp: &str) -> (String, String, String) {
    let p: Vec<&str> = tp.trim().split('-').collect();
    assert!(
        p.len() == 4
            && p[0] == "00"
            && is_lower_hex(p[1], 32)
            && is_lower_hex(p[2], 16)
            && is_lower_hex(p[3], 2)
            && p[1].bytes().any(|b| b != b'0')
            && p[2].bytes().any(|b| b != b'0'),
        "not a valid W3C traceparent: {tp:?}"
    );
    (p[1].to_owned(), p[2].to_owned(), p[3].to_owned())
}

/// The OTel SDK's trace id ratio rule: the low 8 bytes of the trace id, shifted right by one,
/// below `ratio × 2^63`.
fn ratio_samples(ratio: f64, trace_id: &str) -> bool {
    let low = u64::from_str_radix(&trace_id[16..], 16).unwrap();
    (low >> 1) < (ratio * (1u64 << 63) as f64) as u64
}

/// Runs `tracespool ARGS` `runs` times in 4 threads against one spool, with `vars`; every run
/// must succeed and say nothing.
fn run_many(spool: &Path, runs: usize, vars: &[(&str, &str)], args: &[&str]) {
    const THREADS: usize = 4;
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..runs / THREADS {
                    let out = run(ts(spool).envs(vars.iter().copied()).args(args));
                    assert!(
                        out.status.success() && out.stderr.is_empty(),
                        "{:?}: {}",
                        out.status,
                        stderr(&out)
                    );
                }
            });
        }
    });
}

/// 25 % ± 4 % of 2000: the bounds are 4 standard deviations of the binomial count away from
/// 500 (σ ≈ 19.4), so a correct sampler fails them about once in 30 000 runs.
fn assert_a_quarter_of_2000(recorded: u64) {
    assert!(
        (420..=580).contains(&recorded),
        "{recorded} of 2000 recorded, not 25 % ± 4 %"
    );
}

const RATIO_QUARTER: [(&str, &str); 2] = [
    ("OTEL_TRACES_SAMPLER", "traceidratio"),
    ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
];

#[test]
fn exec_with_traceidratio_a_quarter_records_a_quarter_of_2000_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    run_many(&spool, 2000, &RATIO_QUARTER, &["exec", "--", "true"]);
    assert_a_quarter_of_2000(spooled_spans(&spool));
}

#[test]
fn span_with_traceidratio_a_quarter_records_a_quarter_of_2000_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    run_many(&spool, 2000, &RATIO_QUARTER, &["span", "--name", "step"]);
    assert_a_quarter_of_2000(spooled_spans(&spool));
}

#[test]
fn the_ratio_decides_by_the_trace_id_and_every_child_of_an_unsampled_root_gets_flags_00() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut sampled = BTreeSet::new();
    let mut unsampled = BTreeSet::new();
    for _ in 0..64 {
        let out = run(ts(&spool)
            .env("OTEL_TRACES_SAMPLER", "traceidratio")
            .env("OTEL_TRACES_SAMPLER_ARG", "0.5")
            .args(["--endpoint", &rotel.endpoint(), "exec", "--"])
            .args(["sh", "-c", "echo \"$TRACEPARENT\"; exit 3"]));
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
        let (trace, span, flags) = parts(&stdout(&out));
        match flags.as_str() {
            "01" => assert!(sampled.insert((trace, span))),
            "00" => assert!(unsampled.insert(trace)),
            other => panic!("flags {other}"),
        }
    }
    assert!(
        !sampled.is_empty() && !unsampled.is_empty(),
        "64 runs at one half: {} sampled",
        sampled.len()
    );
    for (trace, _) in &sampled {
        assert!(ratio_samples(0.5, trace), "{trace} sampled");
    }
    for trace in &unsampled {
        assert!(!ratio_samples(0.5, trace), "{trace} not sampled");
    }
    // Exactly the sampled runs' spans were delivered, each the parent its child was told of.
    let spans = rotel.exactly(sampled.len());
    let delivered: BTreeSet<(String, String)> =
        spans.into_iter().map(|s| (s.trace_id, s.id)).collect();
    assert_eq!(delivered, sampled);
    assert_eq!(spooled_spans(&spool), 0, "all delivered, nothing spooled");
}

#[test]
fn always_off_records_nothing_and_the_children_get_a_new_trace_with_flags_00() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let off = ("OTEL_TRACES_SAMPLER", "always_off");
    let mut traces = BTreeSet::new();
    for _ in 0..2 {
        let out = run(ts(&spool).env(off.0, off.1).args([
            "exec",
            "--",
            "sh",
            "-c",
            "echo \"$TRACEPARENT\"; exit 3",
        ]));
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
        let (trace, _, flags) = parts(&stdout(&out));
        assert_eq!(flags, "00");
        traces.insert(trace);

        let out = run(ts(&spool).env(off.0, off.1).args([
            "span",
            "--name",
            "step",
            "--print-traceparent",
        ]));
        assert!(out.status.success(), "{}", stderr(&out));
        let line = stdout(&out);
        let (trace, _, flags) = parts(line.strip_prefix("TRACEPARENT=").unwrap());
        assert_eq!(flags, "00");
        traces.insert(trace);
    }
    assert_eq!(traces.len(), 4, "a new trace each time: {traces:?}");
    // A sampled parent does not change always_off: its trace, a span id of our own, flags 00.
    let out = run(ts(&spool)
        .env(off.0, off.1)
        .env("TRACEPARENT", format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01"))
        .args(["exec", "--", "sh", "-c", "echo \"$TRACEPARENT\""]));
    let (trace, span, flags) = parts(&stdout(&out));
    assert_eq!((trace.as_str(), flags.as_str()), (PARENT_TRACE, "00"));
    assert_ne!(span, PARENT_SPAN);
    assert_eq!(spooled_spans(&spool), 0);
}

#[test]
fn parentbased_always_on_records_nothing_under_an_unsampled_parent_and_passes_it_on() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let unsampled = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-00");
    // Named, and as the default.
    for sampler in ["parentbased_always_on", ""] {
        let out = run(ts(&spool)
            .env("OTEL_TRACES_SAMPLER", sampler)
            .env("TRACEPARENT", &unsampled)
            .args(["exec", "--", "sh", "-c", "echo \"$TRACEPARENT\""]));
        assert_eq!(stdout(&out), format!("{unsampled}\n"), "{sampler:?}");
        let out = run(ts(&spool)
            .env("OTEL_TRACES_SAMPLER", sampler)
            .env("TRACEPARENT", &unsampled)
            .args(["span", "--name", "step", "--print-traceparent"]));
        assert_eq!(stdout(&out), format!("TRACEPARENT={unsampled}\n"));
    }
    assert_eq!(spooled_spans(&spool), 0);
    // Without a parent it records.
    let out = run(ts(&spool)
        .env("OTEL_TRACES_SAMPLER", "parentbased_always_on")
        .args(["exec", "--", "true"]));
    assert!(out.status.success() && out.stderr.is_empty());
    assert_eq!(spooled_spans(&spool), 1);
}

#[test]
fn always_on_records_under_an_unsampled_parent_and_its_child_gets_flags_01() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(ts(&tmp.path().join("spool"))
        .env("OTEL_TRACES_SAMPLER", "always_on")
        .env("TRACEPARENT", format!("00-{PARENT_TRACE}-{PARENT_SPAN}-00"))
        .args(["--endpoint", &rotel.endpoint(), "exec", "--name", "hook"])
        .args(["--", "sh", "-c", "echo \"$TRACEPARENT\""]));
    assert!(out.status.success(), "{}", stderr(&out));
    let (trace, span, flags) = parts(&stdout(&out));
    assert_eq!((trace.as_str(), flags.as_str()), (PARENT_TRACE, "01"));
    let recorded = rotel.named("hook");
    assert_eq!(
        (recorded.trace_id, recorded.parent_id, recorded.id),
        (PARENT_TRACE.to_owned(), PARENT_SPAN.to_owned(), span)
    );
}

#[test]
fn parentbased_always_off_records_only_under_a_sampled_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let sampler = ("OTEL_TRACES_SAMPLER", "parentbased_always_off");
    let out = run(ts(&spool)
        .env(sampler.0, sampler.1)
        .args(["span", "--name", "root"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(spooled_spans(&spool), 0);
    let out = run(ts(&spool)
        .env(sampler.0, sampler.1)
        .env("TRACEPARENT", format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01"))
        .args(["span", "--name", "child"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(spooled_spans(&spool), 1);
}

#[test]
fn a_bad_sampler_or_argument_is_one_warning_naming_the_variable_and_the_default_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let unsampled = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-00");
    for (sampler, arg, named) in [
        ("sometimes", "", "OTEL_TRACES_SAMPLER=\"sometimes\""),
        ("jaeger_remote", "", "OTEL_TRACES_SAMPLER=\"jaeger_remote\""),
        ("xray", "", "OTEL_TRACES_SAMPLER=\"xray\""),
        ("traceidratio", "1.5", "OTEL_TRACES_SAMPLER_ARG=\"1.5\""),
        ("traceidratio", "half", "OTEL_TRACES_SAMPLER_ARG=\"half\""),
    ] {
        let vars = [
            ("OTEL_TRACES_SAMPLER", sampler),
            ("OTEL_TRACES_SAMPLER_ARG", arg),
        ];
        // The default, parentbased_always_on: nothing under an unsampled parent (a ratio of 1,
        // or always_on, would record)...
        let out = run(ts(&spool).envs(vars).env("TRACEPARENT", &unsampled).args([
            "exec",
            "--",
            "sh",
            "-c",
            "echo \"$TRACEPARENT\"; exit 4",
        ]));
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(stdout(&out), format!("{unsampled}\n"));
        let said = stderr(&out);
        let lines: Vec<&str> = said.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].contains(named),
            "one warning naming {named}: {said}"
        );
        assert_eq!(spooled_spans(&spool), 0, "{sampler} {arg}");
        // ... and a root recorded.
        let out = run(ts(&spool).envs(vars).args(["span", "--name", "root"]));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        assert_eq!(spooled_spans(&spool), 1, "{sampler} {arg}");
        std::fs::remove_dir_all(&spool).unwrap();
    }
}

#[test]
fn the_config_files_sampler_and_sampler_arg_apply_below_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let config = tmp.path().join("tracespool.toml");
    let span = |vars: &[(&str, &str)]| {
        let out = run(ts(&spool)
            .arg("--config")
            .arg(&config)
            .envs(vars.iter().copied())
            .args(["span", "--name", "step", "--print-traceparent"]));
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
        parts(stdout(&out).strip_prefix("TRACEPARENT=").unwrap()).2
    };
    std::fs::write(&config, "sampler = \"traceidratio\"\nsampler_arg = 0.0\n").unwrap();
    assert_eq!(span(&[]), "00");
    std::fs::write(&config, "sampler = \"traceidratio\"\nsampler_arg = \"1\"\n").unwrap();
    assert_eq!(span(&[]), "01");
    std::fs::write(&config, "sampler = \"always_off\"\n").unwrap();
    assert_eq!(span(&[]), "00");
    assert_eq!(span(&[("OTEL_TRACES_SAMPLER", "always_on")]), "01");
    assert_eq!(spooled_spans(&spool), 2);
}

#[test]
fn a_python_child_of_an_unsampled_root_drops_its_own_spans() {
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("child.py");
    std::fs::write(&script, common::PYTHON_CHILD).unwrap();
    let config = tmp.path().join("tracespool.toml");
    // The sampler in the file, so that the child's SDK keeps its own default sampler
    // (parentbased_always_on) and decides by the TRACEPARENT it is given.
    std::fs::write(&config, "sampler = \"always_off\"\n").unwrap();
    let exec = |config: Option<&Path>| {
        let mut cmd = ts(&tmp.path().join("spool"));
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        // The child exports there too when it is not captured.
        let base = format!("http://127.0.0.1:{}", rotel.http_port);
        let out = run(cmd
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", base)
            .env("TRACESPOOL_BUDGET", "5s")
            .args(["exec", "--name", "hook", "--"])
            .arg(python())
            .arg(&script));
        assert!(out.status.success(), "{}", stderr(&out));
    };
    exec(Some(&config));
    // Then a sampled run, whose two spans show what the unsampled one would have sent.
    exec(None);
    let spans = rotel.exactly(2);
    let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["hook", "python-work"], "{spans:#?}");
}
