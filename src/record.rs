//! The spans tracespool records itself (`exec`, `span`), built as SDK `SpanData` so that they take
//! the same encode → deliver-or-spool path as any exported span. Pure: no I/O.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanLinks};

use crate::propagation::Parent;

/// Where a new span sits in its trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The remote parent from `TRACEPARENT`, if any.
    pub parent: Option<SpanId>,
    pub trace_state: TraceState,
}

impl Placement {
    /// A new span id, in the parent's trace or a new one.
    pub fn new(parent: Option<&Parent>, trace_state: Option<&str>) -> Placement {
        let ids = RandomIdGenerator::default();
        Placement {
            trace_id: parent.map_or_else(|| ids.new_trace_id(), |p| p.trace_id),
            span_id: ids.new_span_id(),
            parent: parent.map(|p| p.span_id),
            // An unparsable TRACESTATE is dropped rather than passed on broken.
            trace_state: parent
                .and(trace_state)
                .and_then(|s| TraceState::from_str(s).ok())
                .unwrap_or_default(),
        }
    }
}

/// One span to record.
#[derive(Debug, Clone)]
pub struct SpanSpec {
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    pub status: Status,
}

pub fn span_data(placement: &Placement, spec: SpanSpec) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            placement.trace_id,
            placement.span_id,
            TraceFlags::SAMPLED,
            false,
            placement.trace_state.clone(),
        ),
        parent_span_id: placement.parent.unwrap_or(SpanId::INVALID),
        parent_span_is_remote: placement.parent.is_some(),
        span_kind: spec.kind,
        name: Cow::Owned(spec.name),
        start_time: spec.start,
        end_time: spec.end.max(spec.start),
        attributes: spec.attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: spec.status,
        instrumentation_scope: InstrumentationScope::builder("tracespool")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    }
}

/// The resource: the configured attributes, with `service.name` set to `service_name`.
/// (Built empty: the SDK's detectors would read the process environment behind config's back.)
pub fn resource(service_name: &str, attributes: &[(String, String)]) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            attributes
                .iter()
                .filter(|(k, _)| k != "service.name")
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_service_name(service_name.to_owned())
        .build()
}

/// The service name: the configured one, else `service.name` among the resource attributes,
/// else `default`.
pub fn service_name(
    configured: Option<&str>,
    attributes: &[(String, String)],
    default: &str,
) -> String {
    configured
        .map(str::to_owned)
        .or_else(|| {
            attributes
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| default.to_owned())
}

pub fn parse_kind(s: &str) -> Result<SpanKind, String> {
    match s {
        "internal" => Ok(SpanKind::Internal),
        "server" => Ok(SpanKind::Server),
        "client" => Ok(SpanKind::Client),
        "producer" => Ok(SpanKind::Producer),
        "consumer" => Ok(SpanKind::Consumer),
        _ => Err("expected internal, server, client, producer or consumer".into()),
    }
}

/// RFC 3339 with any offset, or unix seconds with an optional fraction.
/// `1704161045` or `1704161045.123`, exactly (no float rounding); `None` if not digits.
fn unix_seconds(s: &str) -> Option<Result<SystemTime, String>> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) {
        return None;
    }
    if frac.len() > 9 {
        return Some(Err("more than nanosecond precision".into()));
    }
    let Ok(secs) = whole.parse::<u64>() else {
        return Some(Err("unix seconds out of range".into()));
    };
    let nanos: u32 = format!("{frac:0<9}").parse().expect("nine digits");
    Some(
        UNIX_EPOCH
            .checked_add(Duration::new(secs, nanos))
            .ok_or_else(|| "unix seconds out of range".to_owned()),
    )
}

pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    let s = s.trim();
    if let Some(t) = unix_seconds(s) {
        return t;
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("neither RFC 3339 nor unix seconds: {e}"))?;
    let nanos = t.unix_timestamp_nanos();
    u64::try_from(nanos)
        .map(|n| UNIX_EPOCH + Duration::from_nanos(n))
        .map_err(|_| "before 1970".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::parse_traceparent;

    #[test]
    fn a_child_span_keeps_the_parents_trace_and_tracestate() {
        let parent =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        let p = Placement::new(Some(&parent), Some("vendor=a"));
        assert_eq!(p.trace_id, parent.trace_id);
        assert_ne!(p.span_id, parent.span_id);
        assert_eq!(p.parent, Some(parent.span_id));
        assert_eq!(p.trace_state.header(), "vendor=a");
        let root = Placement::new(None, Some("vendor=a"));
        assert_ne!(root.trace_id, TraceId::INVALID);
        assert_eq!(
            (root.parent, root.trace_state.header()),
            (None, String::new())
        );
    }

    #[test]
    fn times_are_rfc3339_with_any_offset_or_unix_seconds() {
        let t = |s| parse_time(s).unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(t("1700000000"), Duration::from_secs(1_700_000_000));
        assert_eq!(t("1700000000.25"), Duration::from_millis(1_700_000_000_250));
        assert_eq!(
            t("1704161045.123"),
            Duration::new(1_704_161_045, 123_000_000)
        );
        assert_eq!(t("1704161045.000000001"), Duration::new(1_704_161_045, 1));
        assert!(parse_time("1.0000000001").is_err());
        assert_eq!(
            t("2023-11-14T22:13:20Z"),
            Duration::from_secs(1_700_000_000)
        );
        assert_eq!(
            t("2023-11-15T00:13:20+02:00"),
            Duration::from_secs(1_700_000_000)
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("-5").is_err());
    }

    #[test]
    fn the_service_name_comes_from_config_then_resource_then_default() {
        let attrs = vec![("service.name".to_owned(), "res".to_owned())];
        assert_eq!(service_name(Some("cfg"), &attrs, "sh"), "cfg");
        assert_eq!(service_name(None, &attrs, "sh"), "res");
        assert_eq!(service_name(None, &[], "sh"), "sh");
        let r = resource(
            "svc",
            &[
                ("team".into(), "ops".into()),
                ("service.name".into(), "x".into()),
            ],
        );
        assert_eq!(
            r.get(&opentelemetry::Key::new("service.name"))
                .unwrap()
                .as_str(),
            "svc"
        );
        assert_eq!(
            r.get(&opentelemetry::Key::new("team")).unwrap().as_str(),
            "ops"
        );
    }
}
