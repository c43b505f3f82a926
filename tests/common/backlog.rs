//! A spool with a backlog, what a backend was sent, and the tracespool processes still at work
//! on a spool (a background drain).

use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tracespool::spool::{Spool, SpoolOptions};

use super::eventually;

/// `prefix0`, `prefix1`, … : `n` span names.
pub fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// A traces request holding `spans`, in one resource and one scope.
pub fn request_of(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// An OTLP/protobuf traces request of one span per name.
pub fn spans_request(names: &[impl AsRef<str>]) -> Vec<u8> {
    let spans = names
        .iter()
        .enumerate()
        .map(|(i, name)| Span {
            trace_id: [7u8; 16].to_vec(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: name.as_ref().to_owned(),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            ..Span::default()
        })
        .collect();
    request_of(spans).encode_to_vec()
}

/// Spools one batch of one span per name, as earlier runs with the backend down left them.
pub fn spool_backlog(dir: &Path, names: &[String]) {
    let spool = Spool::open(dir, SpoolOptions::default()).unwrap();
    for name in names {
        spool
            .append(&spans_request(std::slice::from_ref(name)), 1)
            .unwrap();
    }
}

/// The names of the spans in an OTLP/protobuf traces request.
pub fn span_names(body: &[u8]) -> Vec<String> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP traces request");
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

/// Live processes of the built `tracespool` whose command line names `dir` (a zombie, which
/// PID 1 here reaps only every few seconds, counts as gone).
pub fn tracespool_processes(dir: &Path) -> Vec<u32> {
    let bin = env!("CARGO_BIN_EXE_tracespool");
    let dir = dir.to_string_lossy();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().map(String::as_str) != Some(bin) || !args.iter().any(|a| *a == dir) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if !zombie && !status.is_empty() {
            found.push(pid);
        }
    }
    found
}

/// Waits until no `tracespool` process works on `dir`; true if none is left within `within`.
pub fn no_tracespool_left(dir: &Path, within: Duration) -> bool {
    eventually(within, || tracespool_processes(dir).is_empty())
}
