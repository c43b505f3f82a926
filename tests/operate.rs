//! Operating a spool, black-box: `dump` prints the undelivered data as OTLP/JSON lines and
//! changes nothing; `import` appends OTLP data files (the Python SDK's JSON-lines file exporter,
//! `dump`'s own output, dead letters, gzip or not) that `flush` then delivers to rotel.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::backlog::{request_of, spans_request, spool_backlog};
use common::*;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tracespool::spool::{Encoding, Spool, SpoolOptions, SyncPolicy};

/// Nothing listens there: what is appended stays in the spool.
fn down() -> String {
    format!("http://127.0.0.1:{}/v1/traces", free_port())
}

/// `tracespool --spool-dir DIR ARGS…`.
fn ts(spool: &Path, args: &[&str]) -> Command {
    let mut cmd = tracespool();
    cmd.arg("--spool-dir").arg(spool).args(args);
    cmd
}

fn run(spool: &Path, args: &[&str]) -> Output {
    ts(spool, args).output().unwrap()
}

fn import(spool: &Path, files: &[&Path]) -> Output {
    ts(spool, &["--endpoint", &down(), "import"])
        .args(files)
        .output()
        .unwrap()
}

fn flush_to(spool: &Path, rotel: &Rotel) {
    let out = run(spool, &["--endpoint", &rotel.endpoint(), "flush"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `dump ARGS…` (which must exit 0): its lines, each parsed, and its stderr.
fn dump(spool: &Path, args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = ts(spool, &["--endpoint", &down(), "dump"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (lines, stderr(&out))
}

/// The `(traceId, spanId, name)` of every span in OTLP/JSON traces requests.
fn json_spans(lines: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let mut spans = Vec::new();
    for line in lines {
        for rs in line["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for s in ss["spans"].as_array().unwrap() {
                    let field = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                    spans.push((field("traceId"), field("spanId"), field("name")));
                }
            }
        }
    }
    spans
}

/// The top-level key of each line: `resourceSpans`, `resourceMetrics` or `resourceLogs`.
fn kinds(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.as_object().unwrap().keys().next().unwrap().clone())
        .collect()
}

/// Writes the Python SDK's OTLP/JSON file exporter output: two spans (a server span and its
/// client child), a counter and a histogram, and a warning log record, all tagged `tag`.
fn python_json_file(dir: &Path, tag: &str) -> PathBuf {
    const SCRIPT: &str = r#"
import logging, sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.json.file.trace_exporter import FileSpanExporter
from opentelemetry.exporter.otlp.json.file.metric_exporter import FileMetricExporter
from opentelemetry.exporter.otlp.json.file._log_exporter import FileLogExporter
from opentelemetry.trace import SpanKind

path, tag = sys.argv[1], sys.argv[2]
resource = Resource.create({"service.name": "pyjson"})
traces = TracerProvider(resource=resource)
traces.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
tracer = traces.get_tracer("gen")
with tracer.start_as_current_span("parent-" + tag, kind=SpanKind.SERVER, attributes={"n": 7}):
    with tracer.start_as_current_span("child-" + tag, kind=SpanKind.CLIENT):
        pass
traces.shutdown()
reader = PeriodicExportingMetricReader(FileMetricExporter(path), export_interval_millis=600000)
meters = MeterProvider(resource=resource, metric_readers=[reader])
meter = meters.get_meter("gen")
meter.create_counter("count_" + tag).add(3, {"a": "b"})
meter.create_histogram("hist_" + tag).record(2.5)
meters.shutdown()
logs = LoggerProvider(resource=resource)
logs.add_log_record_processor(SimpleLogRecordProcessor(FileLogExporter(path)))
logger = logging.getLogger("gen")
logger.addHandler(LoggingHandler(logger_provider=logs))
logger.warning("log-" + tag)
logs.shutdown()
"#;
    let script = dir.join("json_file.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let file = dir.join("python.jsonl");
    let out = Command::new(python())
        .arg(&script)
        .arg(&file)
        .arg(tag)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    file
}

#[test]
fn a_python_json_file_of_every_signal_is_imported_and_then_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let file = python_json_file(tmp.path(), "py");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"resourceLogs\""), "{text}");
    let spool = tmp.path().join("spool");
    let out = import(&spool, &[&file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let s = status_json(&spool, &[]);
    assert_eq!(
        (&s["spans"], &s["data_points"], &s["log_records"]),
        (&2.into(), &2.into(), &1.into()),
        "{s}"
    );

    let rotel = Rotel::start();
    flush_to(&spool, &rotel);
    let parent = rotel.named("parent-py");
    let child = rotel.named("child-py");
    assert_eq!(child.parent_id, parent.id);
    assert_eq!(child.trace_id, parent.trace_id);
    assert_eq!(
        (parent.kind.as_str(), child.kind.as_str()),
        ("SPAN_KIND_SERVER", "SPAN_KIND_CLIENT")
    );
    assert_eq!(parent.attr("n"), Some("Int(7)"));
    assert_eq!(parent.service(), Some("pyjson"));
    assert!(
        eventually(Duration::from_secs(10), || {
            let names = rotel.metric_names();
            names.contains(&"count_py".to_owned())
                && names.contains(&"hist_py".to_owned())
                && rotel.log_bodies().contains(&"log-py".to_owned())
        }),
        "metrics {:?}, logs {:?}",
        rotel.metric_names(),
        rotel.log_bodies()
    );
    assert_eq!(status_json(&spool, &[])["batches"], 0);
}

#[test]
fn spans_of_span_and_exec_dumped_and_imported_into_another_spool_are_delivered_once() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let endpoint = down();
    let out = run(
        &first,
        &[
            "--endpoint",
            &endpoint,
            "span",
            "--name",
            "one",
            "--kind",
            "server",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(
        &first,
        &[
            "--endpoint",
            &endpoint,
            "exec",
            "--name",
            "two",
            "--",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (lines, _) = dump(&first, &[]);
    let dumped = json_spans(&lines);
    let names: BTreeSet<&str> = dumped.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["one", "two"]), "{lines:?}");

    let file = tmp.path().join("dump.jsonl");
    let out = ts(&first, &["--endpoint", &endpoint, "dump"])
        .stdout(std::fs::File::create(&file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let second = tmp.path().join("second");
    let out = import(&second, &[&file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let rotel = Rotel::start();
    flush_to(&second, &rotel);
    let seen: BTreeSet<(String, String, String)> = rotel
        .exactly(2)
        .into_iter()
        .map(|s| (s.trace_id, s.id, s.name))
        .collect();
    assert_eq!(rotel.spans().len(), 2, "{:#?}", rotel.spans());
    assert_eq!(seen, dumped.into_iter().collect());
    assert_eq!(
        status_json(&first, &[])["spans"],
        2,
        "dump took nothing away"
    );
}

#[test]
fn a_dead_letter_is_imported_and_then_delivered() {
    let server = FaultServer::start(Answer::with(
        400,
        &[("content-type", "application/x-protobuf")],
        &[0x08, 0x03],
    ));
    let tmp = tempfile::tempdir().unwrap();
    let refused = tmp.path().join("refused");
    spool_backlog(&refused, &["dead1".to_owned(), "dead2".to_owned()]);
    let out = run(&refused, &["--endpoint", &server.endpoint(), "flush"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let letters: Vec<PathBuf> = std::fs::read_dir(refused.join("deadletter"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:?}");

    let spool = tmp.path().join("spool");
    let files: Vec<&Path> = letters.iter().map(PathBuf::as_path).collect();
    let out = import(&spool, &files);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rotel = Rotel::start();
    flush_to(&spool, &rotel);
    rotel.named("dead1");
    rotel.named("dead2");
}

#[test]
fn gzipped_json_lines_and_a_gzipped_protobuf_request_are_imported_whatever_their_names() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    spool_backlog(&source, &["gz-json1".to_owned(), "gz-json2".to_owned()]);
    let out = run(&source, &["--endpoint", &down(), "dump"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Named as plain text: told gzip by its magic bytes.
    let json = tmp.path().join("spans.jsonl");
    std::fs::write(&json, tracespool::gzip::compress(&out.stdout)).unwrap();
    let pb = tmp.path().join("request.pb.gz");
    std::fs::write(
        &pb,
        tracespool::gzip::compress(&spans_request(&["gz-pb1", "gz-pb2"])),
    )
    .unwrap();

    let spool = tmp.path().join("spool");
    let out = import(&spool, &[&json, &pb]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = status_json(&spool, &[]);
    assert_eq!((&s["batches"], &s["spans"]), (&3.into(), &4.into()), "{s}");
    let rotel = Rotel::start();
    flush_to(&spool, &rotel);
    for name in ["gz-json1", "gz-json2", "gz-pb1", "gz-pb2"] {
        rotel.named(name);
    }
}

#[test]
fn a_missing_a_corrupt_gzip_and_a_junk_file_are_each_named_and_lose_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    // Already spooled before the import: it must stay.
    let out = run(
        &spool,
        &["--endpoint", &down(), "span", "--name", "spooled-before"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let good = tmp.path().join("good.pb");
    std::fs::write(&good, spans_request(&["imported"])).unwrap();
    let missing = tmp.path().join("missing.jsonl");
    let corrupt = tmp.path().join("cut.jsonl.gz");
    // A gzip header, then nothing: the stream ends early.
    std::fs::write(&corrupt, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff]).unwrap();
    let junk = tmp.path().join("junk.pb");
    std::fs::write(&junk, [0xffu8, 0x00, 0x13, 0x37, 0x01, 0x02]).unwrap();

    let out = import(&spool, &[&missing, &corrupt, &junk, &good]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let said: Vec<&str> = err.lines().collect();
    assert_eq!(said.len(), 3, "one line each: {err}");
    for (line, file) in said.iter().zip([&missing, &corrupt, &junk]) {
        assert!(
            line.starts_with(&format!("tracespool: {}: ", file.display())),
            "{line} names {}",
            file.display()
        );
    }

    let rotel = Rotel::start();
    flush_to(&spool, &rotel);
    let names: BTreeSet<String> = rotel.exactly(2).into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        BTreeSet::from(["spooled-before", "imported"].map(String::from))
    );
}

#[test]
fn a_bad_line_is_named_and_left_out_and_the_good_ones_are_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let line = |name: &str| {
        let bytes = spans_request(&[name]);
        let request =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                &bytes[..],
            )
            .unwrap();
        serde_json::to_string(&request).unwrap()
    };
    let file = tmp.path().join("mixed.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n\n{{\"resourceSpans\": [{{\"scopeSpans\": 7}}]}}\n{}\n",
            line("good-before"),
            line("good-after")
        ),
    )
    .unwrap();
    let spool = tmp.path().join("spool");
    // Standard input too: the same bad line, named by `stdin`.
    let mut child = ts(&spool, &["--endpoint", &down(), "import"])
        .arg(&file)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("not json\n{}\n", line("from-stdin")).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let said: Vec<&str> = err.lines().collect();
    assert_eq!(said.len(), 2, "{err}");
    assert!(
        said[0].starts_with(&format!("tracespool: {}:3: ", file.display())),
        "{err}"
    );
    assert!(said[0].contains("traces"), "{err}");
    assert!(
        said[1].starts_with("tracespool: stdin:1: not JSON"),
        "{err}"
    );

    let rotel = Rotel::start();
    flush_to(&spool, &rotel);
    let names: BTreeSet<String> = rotel.exactly(3).into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        BTreeSet::from(["good-before", "good-after", "from-stdin"].map(String::from))
    );
}

/// Every file of the spool (recursively), with its contents.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            all.push((path, bytes));
        }
    }
    all.sort();
    all
}

/// A span of trace `t` (all its bytes), named `name`.
fn span(t: u8, name: &str) -> Span {
    Span {
        trace_id: vec![t; 16],
        span_id: vec![t, name.len() as u8, 1, 2, 3, 4, 5, 6],
        name: name.into(),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        ..Span::default()
    }
}

#[test]
fn dump_prints_what_waits_oldest_first_filtered_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    {
        let store = tracespool::spool::Store::open(&spool, SpoolOptions::default()).unwrap();
        let traces = |spans| request_of(spans).encode_to_vec();
        let t = tracespool::signal::Signal::Traces;
        store
            .append(t, &traces(vec![span(1, "a1"), span(2, "b1")]), 2)
            .unwrap();
        let logs = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"01010101010101010101010101010101","body":{"stringValue":"in-1"}},{"body":{"stringValue":"no-trace"}}]}]}]}"#;
        let logs = tracespool::otlp_file::json_request(logs).unwrap();
        store.append(logs.signal, &logs.bytes, logs.items).unwrap();
        let metrics = tracespool::otlp_file::json_request(
            br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asInt":"4"}]}}]}]}]}"#,
        )
        .unwrap();
        store
            .append(metrics.signal, &metrics.bytes, metrics.items)
            .unwrap();
        store.append(t, &traces(vec![span(2, "b2")]), 1).unwrap();
    }
    let status = || {
        let mut s = status_json(&spool, &[]);
        // The only thing that moves by itself.
        s["oldest_age_seconds"] = serde_json::Value::Null;
        s
    };
    let (before, before_files) = (status(), files(&spool));

    let (all, err) = dump(&spool, &[]);
    assert_eq!(err, "");
    assert_eq!(
        kinds(&all),
        [
            "resourceSpans",
            "resourceLogs",
            "resourceMetrics",
            "resourceSpans"
        ]
    );
    let names = |lines: &[serde_json::Value]| -> Vec<String> {
        json_spans(lines).into_iter().map(|(_, _, n)| n).collect()
    };
    assert_eq!(names(&all), ["a1", "b1", "b2"]);
    assert_eq!(
        all[2]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["name"],
        "m"
    );

    let (logs, _) = dump(&spool, &["--signal", "logs"]);
    assert_eq!(kinds(&logs), ["resourceLogs"]);
    let (two, _) = dump(&spool, &["--limit", "2"]);
    assert_eq!(two, all[..2]);

    let (trace2, _) = dump(&spool, &["--trace-id", &"02".repeat(16)]);
    assert_eq!(kinds(&trace2), ["resourceSpans", "resourceSpans"]);
    assert_eq!(names(&trace2), ["b1", "b2"]);
    let (trace1, _) = dump(&spool, &["--trace-id", &"01".repeat(16)]);
    assert_eq!(kinds(&trace1), ["resourceSpans", "resourceLogs"]);
    assert_eq!(names(&trace1), ["a1"]);
    let records = trace1[1]["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        .as_array()
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["body"]["stringValue"], "in-1");
    let (none, _) = dump(
        &spool,
        &["--trace-id", &"03".repeat(16), "--signal", "traces"],
    );
    assert!(none.is_empty(), "{none:?}");

    let out = run(&spool, &["dump", "--trace-id", "xyz"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(&spool, &["dump", "--signal", "profiles"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    assert_eq!(status(), before);
    assert!(
        files(&spool) == before_files,
        "dump changed the spool's files"
    );
}

#[test]
fn dump_reads_while_a_flush_holds_the_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let names = ["leased1".to_owned(), "leased2".to_owned()];
    spool_backlog(tmp.path(), &names);
    let spool = Spool::open(tmp.path(), SpoolOptions::default()).unwrap();
    let _lease = spool.reader().unwrap();
    let (lines, _) = dump(tmp.path(), &[]);
    let dumped: Vec<String> = json_spans(&lines).into_iter().map(|(_, _, n)| n).collect();
    assert_eq!(dumped, names);
}

#[test]
fn dump_skips_damaged_records_and_counts_them_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = SpoolOptions {
        compression: Encoding::Identity,
        sync: SyncPolicy::Never,
        ..SpoolOptions::default()
    };
    let requests: Vec<Vec<u8>> = ["kept1", "damaged", "kept2"]
        .iter()
        .map(|n| spans_request(&[n]))
        .collect();
    {
        let spool = Spool::open(tmp.path(), opts).unwrap();
        for r in &requests {
            spool.append(r, 1).unwrap();
        }
    }
    // Segment header 32 bytes, frame header 32 bytes: a byte inside the second payload.
    let at = 32 + (32 + requests[0].len() as u64) + 32 + 10;
    let segment = tmp.path().join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[at as usize] ^= 0x10;
    std::fs::write(&segment, bytes).unwrap();

    let (lines, err) = dump(tmp.path(), &[]);
    let names: Vec<String> = json_spans(&lines).into_iter().map(|(_, _, n)| n).collect();
    assert_eq!(names, ["kept1", "kept2"]);
    assert_eq!(err.trim(), "tracespool: dump: skipped 1 damaged record");
}

#[test]
fn dump_of_a_spool_that_does_not_exist_prints_nothing_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("none");
    let (lines, err) = dump(&spool, &[]);
    assert!(lines.is_empty() && err.is_empty(), "{lines:?} {err}");
    assert!(!spool.exists());

    // A file where the spool should be is not an empty spool: it is refused, and named.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a spool").unwrap();
    let out = run(&file, &["dump"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("a-file"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&file).unwrap(), b"not a spool");
}

#[test]
fn import_keeps_the_spools_bounds_a_request_over_max_spans_is_a_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let json = |names: &[&str]| {
        let bytes = spans_request(names);
        let request =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                &bytes[..],
            )
            .unwrap();
        serde_json::to_string(&request).unwrap()
    };
    let file = tmp.path().join("spans.jsonl");
    let lines = [
        json(&["s1", "s2"]),
        json(&["t1", "t2", "t3", "t4"]),
        json(&["u1", "u2"]),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let spool = tmp.path().join("spool");
    let out = ts(
        &spool,
        &["--endpoint", &down(), "--max-spans", "3", "import"],
    )
    .arg(&file)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let bad: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("tracespool: "))
        .collect();
    assert_eq!(bad.len(), 1, "{err}");
    assert!(
        bad[0].starts_with(&format!("tracespool: {}:2: ", file.display()))
            && bad[0].contains("3 spans"),
        "{err}"
    );
    // The third batch made room by dropping the first, as any append under the bound does
    // (and says).
    assert!(err.contains("dropped the oldest batches"), "{err}");
    let s = status_json(&spool, &["--max-spans", "3"]);
    assert_eq!(
        (&s["batches"], &s["spans"], &s["dropped_spans"]),
        (&1.into(), &2.into(), &2.into()),
        "{s}"
    );
    let (left, _) = dump(&spool, &[]);
    let names: Vec<String> = json_spans(&left).into_iter().map(|(_, _, n)| n).collect();
    assert_eq!(names, ["u1", "u2"]);
}
