//! OTLP data files: what `tracespool dump` writes and `tracespool import` reads. Pure: no I/O.
//!
//! - OTLP/JSON lines: one `Export…ServiceRequest` object per line, its signal told by its
//!   top-level key (`resourceSpans`, `resourceMetrics`, `resourceLogs`); empty lines are
//!   skipped. The JSON mapping is the HTTP intake's ([`encode::json_to_protobuf`]): ids in hex,
//!   64-bit integers as strings or numbers, keys in lowerCamelCase. Before it, a line is made
//!   lenient: a key in snake_case is taken for its lowerCamelCase, and an enum value given by
//!   its name (`SPAN_KIND_SERVER`) for its number.
//! - Protobuf: one binary `Export…ServiceRequest` per file, as the spool's `deadletter/` keeps
//!   them. Its signal is the one its path names (a `metrics` or `logs` spool's dead letters, or
//!   a file name holding one signal's name), else the one it decodes as without any field
//!   left unknown.
//! - Either may be gzip-compressed (told by its magic bytes, whatever the name).
//!
//! `dump` writes each stored batch as one such JSON line, optionally cut down to one trace.

use std::path::Path;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

use crate::encode::{self, EncodedBatch};
use crate::signal::Signal;

/// Why a line (or a protobuf file) is not an export request we can append.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("not a JSON object with one of resourceSpans, resourceMetrics, resourceLogs")]
    NoSignal,
    #[error("more than one of resourceSpans, resourceMetrics, resourceLogs")]
    ManySignals,
    #[error("not an OTLP/JSON {signal} export request: {source}")]
    Json {
        signal: Signal,
        #[source]
        source: serde_json::Error,
    },
    #[error("not a protobuf export request of any signal")]
    NotProtobuf,
    #[error("{0} items in one request, more than a batch can count")]
    TooManyItems(u64),
}

/// Why a whole file cannot be read as OTLP data.
#[derive(Debug, thiserror::Error)]
pub enum BadFile {
    #[error("gzip: {0}")]
    Gzip(#[source] std::io::Error),
}

/// How a file holds its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One OTLP/JSON request per line.
    JsonLines,
    /// One binary protobuf request: the whole file.
    Protobuf,
}

/// The file's contents, decompressed when they start with gzip's magic bytes.
///
/// # Errors
///
/// Gzip that does not decompress, or past 4 GiB decompressed.
pub fn unpack(data: Vec<u8>) -> Result<Vec<u8>, BadFile> {
    if data.starts_with(&[0x1f, 0x8b]) {
        crate::gzip::decompress_stored(&data).map_err(BadFile::Gzip)
    } else {
        Ok(data)
    }
}

/// Protobuf when it holds a control byte other than tab, newline and carriage return (JSON
/// text never does; every export request with anything in it does: the tag of a resource's
/// second field is 0x12), JSON lines otherwise: text, even text that is no JSON, is read line
/// by line so that each bad line is named.
pub fn layout(data: &[u8]) -> Layout {
    if data
        .iter()
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        Layout::Protobuf
    } else {
        Layout::JsonLines
    }
}

/// The non-empty lines of `data`, numbered from 1, each read as a request.
pub fn json_lines(
    data: &[u8],
) -> impl Iterator<Item = (usize, Result<EncodedBatch, BadRequest>)> + '_ {
    data.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(i, line)| (i + 1, json_request(line)))
}

/// One OTLP/JSON export request as protobuf, its signal told by its top-level key. A line that
/// leniency leaves as it is, is read as given, so that an error names a position in it.
///
/// # Errors
///
/// Not JSON, no signal or more than one, or not that signal's request.
pub fn json_request(line: &[u8]) -> Result<EncodedBatch, BadRequest> {
    let mut value: Value = serde_json::from_slice(line).map_err(BadRequest::NotJson)?;
    let Value::Object(top) = &value else {
        return Err(BadRequest::NoSignal);
    };
    let mut signals = Signal::ALL
        .into_iter()
        .filter(|s| top.keys().any(|k| camel(k) == top_key(*s)));
    let signal = signals.next().ok_or(BadRequest::NoSignal)?;
    if signals.next().is_some() {
        return Err(BadRequest::ManySignals);
    }
    let read = if lenient(&mut value, None) {
        let json = serde_json::to_vec(&value).expect("a JSON value always serializes");
        encode::json_to_protobuf(signal, &json)
    } else {
        encode::json_to_protobuf(signal, line)
    };
    let (items, bytes) = read.map_err(|source| BadRequest::Json { signal, source })?;
    batch(signal, items, bytes)
}

fn batch(signal: Signal, items: u64, bytes: Bytes) -> Result<EncodedBatch, BadRequest> {
    let items = u32::try_from(items).map_err(|_| BadRequest::TooManyItems(items))?;
    Ok(EncodedBatch::new(signal, bytes, items))
}

/// The key of a request's list of resources: `resourceSpans`, `resourceMetrics`, `resourceLogs`.
fn top_key(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "resourceSpans",
        Signal::Metrics => "resourceMetrics",
        Signal::Logs => "resourceLogs",
    }
}

/// Renames snake_case keys to lowerCamelCase, and replaces the names of enum values by their
/// numbers (under `kind`, `code`, `aggregationTemporality`, `severityNumber`). Attribute keys
/// are values (`{"key": …}`), never object keys, so they are left as they are. True when it
/// changed anything.
fn lenient(value: &mut Value, key: Option<&str>) -> bool {
    let mut changed = false;
    match value {
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('_')) {
                let old = std::mem::take(map);
                for (k, v) in old {
                    map.insert(camel(&k), v);
                }
                changed = true;
            }
            for (k, v) in map.iter_mut() {
                changed |= lenient(v, Some(k));
            }
        }
        Value::Array(items) => {
            for v in items {
                changed |= lenient(v, key);
            }
        }
        Value::String(name) => {
            if let Some(n) = key.and_then(|k| enum_number(k, name)) {
                *value = Value::from(n);
                changed = true;
            }
        }
        _ => {}
    }
    changed
}

fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The number of the enum value `name` of the field `key`, if it is one.
fn enum_number(key: &str, name: &str) -> Option<i32> {
    use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
    use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
    match key {
        "kind" => SpanKind::from_str_name(name).map(|v| v as i32),
        "code" => StatusCode::from_str_name(name).map(|v| v as i32),
        "aggregationTemporality" => AggregationTemporality::from_str_name(name).map(|v| v as i32),
        "severityNumber" => SeverityNumber::from_str_name(name).map(|v| v as i32),
        _ => None,
    }
}

/// The signal a file's path names: the spool keeps the dead letters of metrics in
/// `metrics/deadletter/` and of logs in `logs/deadletter/` (those of traces directly in the
/// spool's `deadletter/`); otherwise a file name holding exactly one of `trace`, `metric`,
/// `log` names that signal.
pub fn signal_named(path: &Path) -> Option<Signal> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let parent = path.parent();
    if parent
        .and_then(Path::file_name)
        .is_some_and(|d| d == "deadletter")
    {
        let spool = parent.and_then(Path::parent).and_then(Path::file_name);
        return Some(match spool.and_then(|s| s.to_str()) {
            Some("metrics") => Signal::Metrics,
            Some("logs") => Signal::Logs,
            _ => Signal::Traces,
        });
    }
    let mut named = Signal::ALL
        .into_iter()
        .filter(|s| name.contains(s.as_str().trim_end_matches('s')));
    let signal = named.next()?;
    named.next().is_none().then_some(signal)
}

/// A binary protobuf export request of the first signal, `hint` tried first, that it decodes
/// as with no field left unknown (re-encoded, it is as long as it was), else of the first it
/// decodes as at all.
///
/// # Errors
///
/// It decodes as no signal's request.
pub fn protobuf_request(data: &[u8], hint: Option<Signal>) -> Result<EncodedBatch, BadRequest> {
    let decoded = |signal: Signal| -> Option<usize> {
        Some(match signal {
            Signal::Traces => ExportTraceServiceRequest::decode(data).ok()?.encoded_len(),
            Signal::Metrics => ExportMetricsServiceRequest::decode(data)
                .ok()?
                .encoded_len(),
            Signal::Logs => ExportLogsServiceRequest::decode(data).ok()?.encoded_len(),
        })
    };
    // Each signal it decodes as, and whether with no field left unknown.
    let decodes: Vec<(Signal, bool)> = hint
        .into_iter()
        .chain(Signal::ALL)
        .filter_map(|s| Some((s, decoded(s)? == data.len())))
        .collect();
    let signal = decodes
        .iter()
        .find(|(_, clean)| *clean)
        .or(decodes.first())
        .map(|(s, _)| *s)
        .ok_or(BadRequest::NotProtobuf)?;
    let items = encode::count_items_in(signal, data).map_err(|_| BadRequest::NotProtobuf)?;
    batch(signal, items, Bytes::copy_from_slice(data))
}

/// A trace id given in hex: 32 hex digits, not all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

impl std::str::FromStr for TraceId {
    type Err = String;

    fn from_str(s: &str) -> Result<TraceId, String> {
        let bad = || format!("{s:?} is not a trace id (32 hex digits, not all zero)");
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        if id == [0; 16] {
            return Err(bad());
        }
        Ok(TraceId(id))
    }
}

/// A stored request of `signal` (protobuf, plain) as one line of OTLP/JSON, without the newline.
/// With `trace`, only the spans and log records of that trace are kept (resources and scopes
/// left empty are left out), and `None` is returned when none is: metrics belong to no trace.
///
/// # Errors
///
/// `plain` is not a request of `signal`.
pub fn json_line(
    signal: Signal,
    plain: &[u8],
    trace: Option<TraceId>,
) -> Result<Option<Vec<u8>>, prost::DecodeError> {
    let Some(TraceId(id)) = trace else {
        return encode::protobuf_to_json(signal, plain).map(Some);
    };
    let json = match signal {
        Signal::Metrics => return Ok(None),
        Signal::Traces => {
            let mut request = ExportTraceServiceRequest::decode(plain)?;
            request.resource_spans.retain_mut(|rs| {
                rs.scope_spans.retain_mut(|ss| {
                    ss.spans.retain(|s| s.trace_id == id);
                    !ss.spans.is_empty()
                });
                !rs.scope_spans.is_empty()
            });
            if request.resource_spans.is_empty() {
                return Ok(None);
            }
            serde_json::to_vec(&request)
        }
        Signal::Logs => {
            let mut request = ExportLogsServiceRequest::decode(plain)?;
            request.resource_logs.retain_mut(|rl| {
                rl.scope_logs.retain_mut(|sl| {
                    sl.log_records.retain(|r| r.trace_id == id);
                    !sl.log_records.is_empty()
                });
                !rl.scope_logs.is_empty()
            });
            if request.resource_logs.is_empty() {
                return Ok(None);
            }
            serde_json::to_vec(&request)
        }
    };
    Ok(Some(json.expect("a decoded request always serializes")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn spans(ids: &[(u8, &str)]) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: ids
                        .iter()
                        .map(|&(t, name)| Span {
                            trace_id: vec![t; 16],
                            span_id: vec![t; 8],
                            name: name.into(),
                            kind: 2,
                            ..Span::default()
                        })
                        .collect(),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn a_json_line_is_told_its_signal_by_its_top_level_key() {
        let b =
            json_request(br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}, {}]}]}]}"#).unwrap();
        assert_eq!((b.signal, b.items), (Signal::Logs, 2));
        let b = json_request(br#"{"resourceMetrics":[]}"#).unwrap();
        assert_eq!((b.signal, b.items), (Signal::Metrics, 0));
        assert!(matches!(json_request(b"{}"), Err(BadRequest::NoSignal)));
        assert!(matches!(json_request(b"[1]"), Err(BadRequest::NoSignal)));
        assert!(matches!(
            json_request(br#"{"resourceSpans":[],"resourceLogs":[]}"#),
            Err(BadRequest::ManySignals)
        ));
        assert!(matches!(
            json_request(b"{\"resou"),
            Err(BadRequest::NotJson(_))
        ));
        // The position is the line's own, as given.
        let err = json_request(br#"{"resourceSpans":   [{"scopeSpans": 7}]}"#).unwrap_err();
        assert!(err.to_string().ends_with("at line 1 column 37"), "{err}");
        let err =
            json_request(br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#)
                .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("not an OTLP/JSON traces export request"),
            "{err}"
        );
    }

    #[test]
    fn snake_case_keys_and_enum_names_read_as_camel_case_keys_and_numbers() {
        let strict = json_request(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0101010101010101010101010101010a","spanId":"0101010101010101","name":"s","kind":2,"startTimeUnixNano":"5","status":{"code":2}}]}]}]}"#,
        )
        .unwrap();
        let lenient = json_request(
            br#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"0101010101010101010101010101010A","span_id":"0101010101010101","name":"s","kind":"SPAN_KIND_SERVER","start_time_unix_nano":5,"status":{"code":"STATUS_CODE_ERROR"}}]}]}]}"#,
        )
        .unwrap();
        assert_eq!(strict, lenient);
        assert_eq!(strict.items, 1);
        let logs = json_request(
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_WARN","attributes":[{"key":"kind","value":{"stringValue":"SPAN_KIND_SERVER"}}]}]}]}]}"#,
        )
        .unwrap();
        let request = ExportLogsServiceRequest::decode(&logs.bytes[..]).unwrap();
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.severity_number, 13);
        // An attribute's value is data, not an enum: left as it is.
        let json = String::from_utf8(serde_json::to_vec(&record.attributes).unwrap()).unwrap();
        assert!(json.contains("SPAN_KIND_SERVER"), "{json}");
    }

    #[test]
    fn dump_lines_read_back_as_the_same_requests() {
        let bytes = spans(&[(1, "a"), (2, "b")]);
        let line = json_line(Signal::Traces, &bytes, None).unwrap().unwrap();
        let back = json_request(&line).unwrap();
        assert_eq!(
            (back.signal, back.items, &back.bytes[..]),
            (Signal::Traces, 2, &bytes[..])
        );
    }

    #[test]
    fn a_trace_id_keeps_only_that_traces_spans_and_no_metrics() {
        let bytes = spans(&[(1, "a"), (2, "b"), (1, "c")]);
        let id: TraceId = "01010101010101010101010101010101".parse().unwrap();
        let line = json_line(Signal::Traces, &bytes, Some(id))
            .unwrap()
            .unwrap();
        let kept =
            ExportTraceServiceRequest::decode(&json_request(&line).unwrap().bytes[..]).unwrap();
        let names: Vec<&str> = kept.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["a", "c"]);
        let other: TraceId = "03030303030303030303030303030303".parse().unwrap();
        assert_eq!(
            json_line(Signal::Traces, &bytes, Some(other)).unwrap(),
            None
        );
        assert_eq!(json_line(Signal::Metrics, b"", Some(id)).unwrap(), None);
        for bad in [
            "0101",
            "00000000000000000000000000000000",
            "g1010101010101010101010101010101",
        ] {
            assert!(bad.parse::<TraceId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_protobuf_file_takes_the_signal_its_path_names_else_the_one_it_decodes_as_cleanly() {
        let p = |s: &str| signal_named(Path::new(s));
        assert_eq!(p("/s/deadletter/1-2.pb"), Some(Signal::Traces));
        assert_eq!(p("/s/metrics/deadletter/1-2.pb.gz"), Some(Signal::Metrics));
        assert_eq!(p("/s/logs/deadletter/1-2.pb"), Some(Signal::Logs));
        assert_eq!(p("/tmp/app-logs.pb"), Some(Signal::Logs));
        assert_eq!(p("/tmp/x.pb"), None);
        assert_eq!(p("/tmp/traces-and-metrics.pb"), None);

        let bytes = spans(&[(1, "a")]);
        for hint in [None, Some(Signal::Metrics)] {
            let b = protobuf_request(&bytes, hint).unwrap();
            assert_eq!((b.signal, b.items), (Signal::Traces, 1), "{hint:?}");
        }
        let logs = json_request(
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"7"}]}]}]}"#,
        )
        .unwrap();
        let b = protobuf_request(&logs.bytes, None).unwrap();
        assert_eq!((b.signal, b.items), (Signal::Logs, 1));
        assert!(matches!(
            protobuf_request(b"\x0a\x05ab", None),
            Err(BadRequest::NotProtobuf)
        ));
    }

    #[test]
    fn gzip_is_told_by_its_magic_and_protobuf_by_its_control_bytes() {
        let text = b"\n{\"resourceSpans\":[]}\n\n".to_vec();
        assert_eq!(unpack(crate::gzip::compress(&text)).unwrap(), text);
        assert_eq!(unpack(text.clone()).unwrap(), text);
        assert!(unpack(vec![0x1f, 0x8b, 0]).is_err());
        assert_eq!(layout(&text), Layout::JsonLines);
        assert_eq!(layout(&spans(&[(1, "a")])), Layout::Protobuf);
        assert_eq!(layout(b"\x0a\x00"), Layout::Protobuf);
        assert_eq!(layout(b"not json\r\n\t{}"), Layout::JsonLines);
        let lines: Vec<usize> = json_lines(&text)
            .map(|(n, r)| {
                r.unwrap();
                n
            })
            .collect();
        assert_eq!(lines, [2]);
    }
}
