//! OTLP bytes, made once: the same bytes are sent, spooled and re-sent. Pure: no I/O.
//!
//! Spans are encoded here from the SDK's `SpanData`; received requests of every signal are
//! checked for framing and their items counted without being decoded ([`count_items_in`]).

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::Message;

use crate::signal::Signal;

/// An encoded export request of one signal (`ExportTraceServiceRequest`,
/// `ExportMetricsServiceRequest` or `ExportLogsServiceRequest`) and the number of items in it:
/// spans, metric data points or log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    pub signal: Signal,
    /// The encoded export request. Shared, not copied, from the receiver to the spool and the
    /// request body.
    pub bytes: Bytes,
    /// The same request gzip-compressed, when it was received so: stored and sent as it is
    /// rather than compressed again.
    pub gzip: Option<Bytes>,
    pub items: u32,
}

impl EncodedBatch {
    pub fn new(signal: Signal, bytes: Bytes, items: u32) -> EncodedBatch {
        EncodedBatch {
            signal,
            bytes,
            gzip: None,
            items,
        }
    }
}

/// The resource, converted once for every batch of an exporter.
#[derive(Debug)]
pub struct Encoder {
    resource: ResourceAttributesWithSchema,
}

impl Encoder {
    pub fn new(resource: &Resource) -> Encoder {
        Encoder {
            resource: resource.into(),
        }
    }

    /// Encodes `spans` (grouped by instrumentation scope) under the resource.
    pub fn encode(&self, spans: Vec<SpanData>) -> EncodedBatch {
        let count = u32::try_from(spans.len()).unwrap_or(u32::MAX);
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &self.resource),
        };
        EncodedBatch::new(Signal::Traces, request.encode_to_vec().into(), count)
    }
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new(&Resource::builder_empty().build())
    }
}

/// `google.rpc.Status`: the body of an OTLP error answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// The format a `Content-Type` names (parameters ignored), if it is an OTLP one.
    pub fn from_content_type(content_type: Option<&str>) -> Option<Format> {
        let ct = content_type?.split(';').next()?.trim();
        if ct.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Format::Protobuf)
        } else if ct.eq_ignore_ascii_case("application/json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Joins encoded requests of one signal into one: protobuf appends repeated fields of
/// concatenated messages, so the bytes one after the other are a request holding every
/// `resource_spans` (or `resource_metrics`, `resource_logs`). No decoding.
///
/// # Panics
///
/// When `batches` is empty (debug builds also check that they are of one signal).
pub fn concat(batches: &[EncodedBatch]) -> EncodedBatch {
    let signal = batches[0].signal;
    debug_assert!(batches.iter().all(|b| b.signal == signal));
    if let [one] = batches {
        return one.clone();
    }
    EncodedBatch::new(
        signal,
        batches
            .iter()
            .map(|b| &b.bytes[..])
            .collect::<Vec<_>>()
            .concat()
            .into(),
        batches.iter().fold(0u32, |n, b| n.saturating_add(b.items)),
    )
}

/// Decodes a protobuf `ExportTraceServiceRequest`.
pub fn decode(bytes: &[u8]) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
    ExportTraceServiceRequest::decode(bytes)
}

/// The items in a protobuf export request of `signal`, counted without decoding them: the
/// request is decoded as far as its item lists (spans; the data points of each metric; log
/// records), and each item (like the resources and scopes) is only checked to be well-framed
/// protobuf (tags, wire types, lengths). What a receiver that stores and forwards the very bytes
/// it got needs to know, at a fraction of a full decode: no allocation per item or attribute.
/// What is inside an item is the backend's to judge (a batch it refuses as bad data is
/// dead-lettered and counted).
pub fn count_items_in(signal: Signal, bytes: &[u8]) -> Result<u64, prost::DecodeError> {
    let count = |n: usize| n as u64;
    Ok(match signal {
        Signal::Traces => outline::Request::decode(bytes)?
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| count(ss.spans.len()))
            .sum(),
        Signal::Metrics => outline::MetricsRequest::decode(bytes)?
            .resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(|m| count(m.data_points()))
            .sum(),
        Signal::Logs => outline::LogsRequest::decode(bytes)?
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .map(|sl| count(sl.log_records.len()))
            .sum(),
    })
}

/// The spans in a protobuf `ExportTraceServiceRequest`, counted without decoding them.
pub fn count_spans_in(bytes: &[u8]) -> Result<u64, prost::DecodeError> {
    count_items_in(Signal::Traces, bytes)
}

/// An OTLP/JSON export request of `signal` as protobuf, with its items counted.
///
/// # Errors
///
/// When `json` is not such a request.
pub fn json_to_protobuf(signal: Signal, json: &[u8]) -> Result<(u64, Bytes), serde_json::Error> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    let bytes: Bytes = match signal {
        Signal::Traces => serde_json::from_slice::<ExportTraceServiceRequest>(json)?
            .encode_to_vec()
            .into(),
        Signal::Metrics => serde_json::from_slice::<ExportMetricsServiceRequest>(json)?
            .encode_to_vec()
            .into(),
        Signal::Logs => serde_json::from_slice::<ExportLogsServiceRequest>(json)?
            .encode_to_vec()
            .into(),
    };
    let items = count_items_in(signal, &bytes).expect("prost encodes well-framed protobuf");
    Ok((items, bytes))
}

/// A protobuf export request of `signal` as OTLP/JSON (ids as hex, keys in lowerCamelCase).
///
/// # Errors
///
/// When `bytes` is not such a request.
pub fn protobuf_to_json(signal: Signal, bytes: &[u8]) -> Result<Vec<u8>, prost::DecodeError> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    let json = match signal {
        Signal::Traces => serde_json::to_vec(&ExportTraceServiceRequest::decode(bytes)?),
        Signal::Metrics => serde_json::to_vec(&ExportMetricsServiceRequest::decode(bytes)?),
        Signal::Logs => serde_json::to_vec(&ExportLogsServiceRequest::decode(bytes)?),
    };
    Ok(json.expect("a decoded request always serializes"))
}

/// The export requests down to their items, with the field numbers of
/// `opentelemetry/proto/{collector/trace,trace}/v1`. Every other field is skipped (and
/// checked for framing) as unknown.
mod outline {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        /// Zero-sized: counting them allocates nothing.
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Item>,
    }

    /// Any item, checked for framing only.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Item {}

    /// `opentelemetry/proto/{collector/metrics,metrics}/v1`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricsRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_metrics: Vec<ResourceMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceMetrics {
        #[prost(message, repeated, tag = "2")]
        pub scope_metrics: Vec<ScopeMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeMetrics {
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
    }

    /// A metric's data, one of gauge (5), sum (7), histogram (9), exponential histogram (10),
    /// summary (11); each holds its `data_points` as field 1. As a oneof, the last one given
    /// is the metric's data (what a full decode keeps).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(oneof = "Data", tags = "5, 7, 9, 10, 11")]
        pub data: Option<Data>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        #[prost(message, tag = "5")]
        Gauge(Points),
        #[prost(message, tag = "7")]
        Sum(Points),
        #[prost(message, tag = "9")]
        Histogram(Points),
        #[prost(message, tag = "10")]
        ExponentialHistogram(Points),
        #[prost(message, tag = "11")]
        Summary(Points),
    }

    impl Metric {
        pub fn data_points(&self) -> usize {
            match &self.data {
                None => 0,
                Some(
                    Data::Gauge(p)
                    | Data::Sum(p)
                    | Data::Histogram(p)
                    | Data::ExponentialHistogram(p)
                    | Data::Summary(p),
                ) => p.data_points.len(),
            }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Points {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<Item>,
    }

    /// `opentelemetry/proto/{collector/logs,logs}/v1`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogsRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceLogs {
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeLogs {
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<Item>,
    }
}

/// Spans in a request.
pub fn count_spans(request: &ExportTraceServiceRequest) -> u64 {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::borrow::Cow;
    use std::time::{Duration, UNIX_EPOCH};

    fn span(name: &'static str, scope: &'static str, parent: u64) -> SpanData {
        let ctx = SpanContext::new(
            TraceId::from(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10u128),
            SpanId::from(u64::from(name.len() as u32) + 0x1000),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let mut events = SpanEvents::default();
        events.events.push(Event::new(
            "checkpoint",
            UNIX_EPOCH + Duration::from_secs(5),
            vec![KeyValue::new("step", 2i64)],
            0,
        ));
        let mut links = SpanLinks::default();
        links.links.push(Link::with_context(SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(8u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        )));
        SpanData {
            span_context: ctx,
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Borrowed(name),
            start_time: UNIX_EPOCH + Duration::from_secs(1),
            end_time: UNIX_EPOCH + Duration::from_secs(2),
            attributes: vec![
                KeyValue::new("hook", "install"),
                KeyValue::new("attempt", 3i64),
            ],
            dropped_attributes_count: 0,
            events,
            links,
            status: Status::error("exit code 7"),
            instrumentation_scope: InstrumentationScope::builder(scope)
                .with_version("1.2")
                .build(),
        }
    }

    #[test]
    fn concatenated_requests_are_one_request_with_every_span() {
        let enc = Encoder::default();
        let a = enc.encode(vec![span("a", "s1", 0)]);
        let b = enc.encode(vec![span("bb", "s2", 0), span("ccc", "s2", 0)]);
        let joined = concat(&[a, b]);
        assert_eq!(joined.items, 3);
        let req = decode(&joined.bytes).unwrap();
        assert_eq!(req.resource_spans.len(), 2);
        let names: Vec<&str> = req
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["a", "bb", "ccc"]);
    }

    #[test]
    fn spans_are_counted_without_decoding_and_broken_framing_is_refused() {
        let enc = Encoder::default();
        let joined = concat(&[
            enc.encode(vec![span("a", "s1", 0), span("b", "s2", 1)]),
            enc.encode(vec![
                span("c", "s3", 0),
                span("d", "s3", 0),
                span("e", "s4", 2),
            ]),
        ]);
        let full = count_spans(&decode(&joined.bytes).unwrap());
        assert_eq!(full, 5);
        assert_eq!(count_spans_in(&joined.bytes).unwrap(), full);
        assert_eq!(count_spans_in(&[]).unwrap(), 0);

        assert!(count_spans_in(b"this is not protobuf at all").is_err());
        for cut in [1, joined.bytes.len() / 2, joined.bytes.len() - 1] {
            assert!(
                count_spans_in(&joined.bytes[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
        // One span whose name (field 5) is 1 byte long, or claims 5: nested in ScopeSpans
        // (field 2), ResourceSpans (field 2) and the request (field 1).
        let request = |name_len: u8| [0x0a, 7, 0x12, 5, 0x12, 3, 0x2a, name_len, b'a'];
        assert_eq!(count_spans_in(&request(1)).unwrap(), 1);
        assert!(count_spans_in(&request(5)).is_err());
    }

    #[test]
    fn data_points_and_log_records_are_counted_without_decoding() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
            ScopeMetrics, metric::Data,
        };
        let metric = |data| Metric {
            name: "m".into(),
            data: Some(data),
            ..Metric::default()
        };
        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint::default(); 2],
                        })),
                        metric(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint::default(); 3],
                            aggregation_temporality: 1,
                        })),
                    ],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        }
        .encode_to_vec();
        assert_eq!(count_items_in(Signal::Metrics, &metrics).unwrap(), 5);
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 4],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
        .encode_to_vec();
        assert_eq!(count_items_in(Signal::Logs, &logs).unwrap(), 4);
        for signal in [Signal::Metrics, Signal::Logs] {
            assert!(count_items_in(signal, b"this is not protobuf at all").is_err());
        }
        assert!(count_items_in(Signal::Logs, &logs[..logs.len() - 1]).is_err());

        let json =
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#;
        let (items, bytes) = json_to_protobuf(Signal::Logs, json).unwrap();
        assert_eq!(
            (items, count_items_in(Signal::Logs, &bytes).unwrap()),
            (1, 1)
        );
        assert!(json_to_protobuf(Signal::Metrics, b"[1, 2]").is_err());

        // Upstream OTLP/JSON: the stored protobuf as JSON reads back as the same request.
        for (signal, bytes) in [(Signal::Metrics, &metrics), (Signal::Logs, &logs)] {
            let json = protobuf_to_json(signal, bytes).unwrap();
            let (items, again) = json_to_protobuf(signal, &json).unwrap();
            assert_eq!(
                (items, &again[..]),
                (count_items_in(signal, bytes).unwrap(), &bytes[..])
            );
        }
        let spans = Encoder::default().encode(vec![span("a", "s", 0)]);
        let json = protobuf_to_json(Signal::Traces, &spans.bytes).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(
            text.contains("\"traceId\":\"0102030405060708090a0b0c0d0e0f10\""),
            "{text}"
        );
        assert_eq!(
            json_to_protobuf(Signal::Traces, &json).unwrap().1,
            spans.bytes
        );
    }

    #[test]
    fn content_types_are_recognised_with_parameters() {
        assert_eq!(
            Format::from_content_type(Some("application/x-protobuf")),
            Some(Format::Protobuf)
        );
        assert_eq!(
            Format::from_content_type(Some("Application/JSON; charset=utf-8")),
            Some(Format::Json)
        );
        assert_eq!(Format::from_content_type(Some("text/html")), None);
        assert_eq!(Format::from_content_type(None), None);
    }

    #[test]
    fn spans_round_trip_with_everything_that_identifies_them() {
        let resource = Resource::builder_empty()
            .with_attributes([KeyValue::new("service.name", "charm")])
            .build();
        let batch = Encoder::new(&resource).encode(vec![
            span("install", "a", 0),
            span("config-changed", "b", 0x1007),
        ]);
        assert_eq!(batch.items, 2);
        let req = decode(&batch.bytes).unwrap();
        assert_eq!(count_spans(&req), 2);
        let rs = &req.resource_spans[0];
        let res_attr = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(res_attr.key, "service.name");
        assert_eq!(
            res_attr.value.as_ref().unwrap().value,
            Some(Value::StringValue("charm".into()))
        );
        // One scope each, named and versioned.
        assert_eq!(rs.scope_spans.len(), 2);
        let scope = rs.scope_spans[1].scope.as_ref().unwrap();
        assert_eq!((scope.name.as_str(), scope.version.as_str()), ("b", "1.2"));

        let s = &rs.scope_spans[1].spans[0];
        assert_eq!(s.name, "config-changed");
        assert_eq!(
            s.trace_id,
            0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10u128.to_be_bytes()
        );
        assert_eq!(s.span_id, (14u64 + 0x1000).to_be_bytes());
        assert_eq!(s.parent_span_id, 0x1007u64.to_be_bytes());
        assert_eq!(s.kind, 3); // SPAN_KIND_CLIENT
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (1_000_000_000, 2_000_000_000)
        );
        assert_eq!(s.attributes[1].key, "attempt");
        assert_eq!(
            s.attributes[1].value.as_ref().unwrap().value,
            Some(Value::IntValue(3))
        );
        assert_eq!(s.events[0].name, "checkpoint");
        assert_eq!(s.events[0].time_unix_nano, 5_000_000_000);
        assert_eq!(s.links[0].span_id, 8u64.to_be_bytes());
        let status = s.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "exit code 7"));
        // A root span has no parent id.
        assert!(rs.scope_spans[0].spans[0].parent_span_id.is_empty());
    }
}
