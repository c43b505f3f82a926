//! The benches' typical batch: spans as a short-lived process records them (a hook, a step),
//! a few attributes each, now and then an event, under one realistic resource.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use tracespool::encode::Encoder;

/// Span `i` of batch `batch`.
pub fn span(batch: u64, i: u64) -> SpanData {
    let trace = (u128::from(batch) << 64) | 0x5eed_0000_0000_0001;
    let ctx = SpanContext::new(
        TraceId::from(trace),
        SpanId::from((batch << 20) | (i + 1)),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let start = UNIX_EPOCH + Duration::from_secs(1_760_000_000) + Duration::from_micros(batch * 7);
    let mut events = SpanEvents::default();
    if i % 4 == 3 {
        events.events.push(Event::new(
            "retry",
            start + Duration::from_millis(3),
            vec![KeyValue::new("attempt", 2i64)],
            0,
        ));
    }
    let names = [
        "hook install",
        "exec apt-get",
        "config-changed",
        "http GET /v1/status",
    ];
    SpanData {
        span_context: ctx,
        parent_span_id: if i == 0 {
            SpanId::INVALID
        } else {
            SpanId::from((batch << 20) | 1)
        },
        parent_span_is_remote: false,
        span_kind: if i == 0 {
            SpanKind::Server
        } else {
            SpanKind::Internal
        },
        name: Cow::Borrowed(names[(i % 4) as usize]),
        start_time: start,
        end_time: start + Duration::from_micros(1_500 + 37 * i),
        attributes: vec![
            KeyValue::new("hook.name", "config-changed"),
            KeyValue::new("juju.unit", "postgresql/0"),
            KeyValue::new("process.exit_code", 0i64),
            KeyValue::new("attempt", (i % 3) as i64),
            KeyValue::new("duration.ms", 1.5 + i as f64),
        ],
        dropped_attributes_count: 0,
        events,
        links: SpanLinks::default(),
        status: if i % 10 == 9 {
            Status::error("exit code 1")
        } else {
            Status::Unset
        },
        instrumentation_scope: InstrumentationScope::builder("tracespool-bench")
            .with_version("0.1.0")
            .build(),
    }
}

/// The `n` spans of batch `batch`.
pub fn spans(batch: u64, n: usize) -> Vec<SpanData> {
    (0..n as u64).map(|i| span(batch, i)).collect()
}

/// The encoder of the benches' resource.
pub fn encoder() -> Encoder {
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "charm-postgresql"),
            KeyValue::new("service.version", "14.15"),
            KeyValue::new("host.name", "juju-4f2a1c-0"),
            KeyValue::new("process.pid", 41_234i64),
        ])
        .build();
    Encoder::new(&resource)
}

/// Batch `batch` of `n` spans, encoded: an `ExportTraceServiceRequest`.
pub fn encoded(encoder: &Encoder, batch: u64, n: usize) -> Vec<u8> {
    encoder.encode(spans(batch, n)).bytes.to_vec()
}
