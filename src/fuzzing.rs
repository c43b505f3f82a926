//! Entry points shared by the fuzz targets (`fuzz/`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`): each takes arbitrary bytes and must neither panic nor hang, and
//! checks what must hold whatever the input.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::encode::{Format, decode};
use crate::receiver::http::decode_body;
use crate::signal::Signal;
use crate::spool::{Encoding, Spool, SpoolOptions, SyncPolicy};

/// A directory of the spool's own file names filled with arbitrary contents: opening, counting,
/// verifying, reading, acknowledging and appending must all work or fail cleanly, and nothing
/// damaged may be delivered.
///
/// Input: a sequence of `[kind: u8][len: u16 le][bytes]`; kind picks the file (segments 0–3,
/// ledger, cursor, a quarantined segment, a stray file). The segments may be of either format
/// (1, or 2 with gzip-compressed frames); the spool compresses what it appends.
pub fn spool_dir(data: &[u8]) {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "tracespool-fuzz-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("quarantine")).expect("temp dir");
    let mut rest = data;
    while rest.len() >= 3 {
        let (kind, len) = (rest[0], u16::from_le_bytes([rest[1], rest[2]]) as usize);
        let body = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[(3 + len).min(rest.len())..];
        let name = match kind % 8 {
            k @ 0..=3 => format!("{:020}.seg", u64::from(k) + 1),
            4 => "ledger".into(),
            5 => "cursor".into(),
            6 => "quarantine/00000000000000000001.seg".into(),
            _ => "notes.txt".into(),
        };
        let _ = std::fs::write(dir.join(name), body);
    }
    let opts = SpoolOptions {
        max_bytes: 1 << 20,
        max_spans: None,
        max_age: None,
        compression: Encoding::Gzip,
        sync: SyncPolicy::Never,
    };
    if let Ok(spool) = Spool::open(&dir, opts) {
        let _ = spool.stats();
        let _ = spool.verify();
        if let Ok(mut reader) = spool.reader() {
            // Every record handed out passed its checksums: bounded by the input's size. One
            // stored compressed decompresses, or says it does not (never a panic).
            for _ in 0..10_000 {
                match reader.next() {
                    Ok(Some(record)) => {
                        let _ = record.plain();
                        if reader.ack(&record).is_err() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        }
        if spool.append(b"after the damage", 1).is_ok()
            && let Ok(mut reader) = spool.reader()
        {
            let mut found = false;
            for _ in 0..10_000 {
                match reader.next() {
                    Ok(Some(record)) => {
                        found |= record
                            .plain()
                            .is_ok_and(|p| p[..] == b"after the damage"[..]);
                        if reader.ack(&record).is_err() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            assert!(found, "a fresh append after damage must come back");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The receivers' body decoding: protobuf or JSON, plain or gzip, of each signal. A batch it
/// accepts is well-framed protobuf with the item count it was given; where it also decodes in
/// full (always, for JSON), the full decode counts the same items.
///
/// Input: `[flags: u8][body]`; bit 0 = JSON, bit 1 = gzip, bits 2–3 = the signal (0 traces,
/// 1 metrics, 2 logs; 3 traces).
pub fn otlp_decode(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let format = if flags & 1 == 1 {
        Format::Json
    } else {
        Format::Protobuf
    };
    let signal = match (flags >> 2) & 3 {
        1 => Signal::Metrics,
        2 => Signal::Logs,
        _ => Signal::Traces,
    };
    if let Ok(batch) = decode_body(
        signal,
        format,
        flags & 2 == 2,
        bytes::Bytes::copy_from_slice(body),
        1 << 20,
    ) {
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        assert_eq!(batch.signal, signal);
        let framed = crate::encode::count_items_in(signal, &batch.bytes)
            .expect("an accepted batch is well-framed protobuf");
        assert_eq!(count(framed), batch.items);
        match full_count(signal, &batch.bytes) {
            Ok(again) => assert_eq!(count(again), batch.items),
            Err(e) => assert!(
                format == Format::Protobuf,
                "a JSON body is stored as valid protobuf: {e}"
            ),
        }
        if format == Format::Protobuf && flags & 2 == 0 {
            assert_eq!(
                batch.bytes, body,
                "a plain protobuf body is stored as received"
            );
        }
    }
}

/// The items of a request decoded in full.
fn full_count(signal: Signal, bytes: &[u8]) -> Result<u64, prost::DecodeError> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use prost::Message;
    Ok(match signal {
        Signal::Traces => crate::encode::count_spans(&decode(bytes)?),
        Signal::Metrics => ExportMetricsServiceRequest::decode(bytes)?
            .resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(|m| match &m.data {
                None => 0,
                Some(Data::Gauge(g)) => g.data_points.len(),
                Some(Data::Sum(s)) => s.data_points.len(),
                Some(Data::Histogram(h)) => h.data_points.len(),
                Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                Some(Data::Summary(s)) => s.data_points.len(),
            } as u64)
            .sum(),
        Signal::Logs => ExportLogsServiceRequest::decode(bytes)?
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .map(|sl| sl.log_records.len() as u64)
            .sum(),
    })
}

/// The parsers of what users type: sizes, durations, header and resource lists, endpoints,
/// times and `TRACEPARENT`. A traceparent that parses prints back the same.
pub fn parsers(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::units::parse_size(s);
    let _ = crate::units::parse_duration(s);
    let _ = crate::config::parse_header_list(s);
    let _ = crate::config::parse_resource_list(s);
    let _ = crate::config::parse_endpoint(s);
    let _ = crate::record::parse_time(s);
    if let Some(parent) = crate::propagation::parse_traceparent(s) {
        let flags = if parent.sampled { "01" } else { "00" };
        let printed = format!("00-{}-{}-", parent.trace_id, parent.span_id);
        assert!(s.starts_with(&printed), "{s:?} parsed as {printed}");
        assert!(
            parent.sampled == (u8::from_str_radix(&s[53..], 16).expect("two hex digits") & 1 == 1),
            "{flags}"
        );
    }
}
