//! Trace context through the environment: `TRACEPARENT` in, what a child's environment changes
//! out. Pure: it never reads or changes the process environment.
//!
//! `TRACEPARENT` is valid only as W3C Trace Context version `00`: exactly `00-` + 32 lowercase
//! hex (trace id, not all zero) + `-` + 16 lowercase hex (parent id, not all zero) + `-` + 2 hex
//! (flags). Version `ff`, upper case, any other length: invalid.

use std::ffi::OsStr;

use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

use crate::signal::Signal;

/// A valid incoming `TRACEPARENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

/// What the environment's `TRACEPARENT` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// None: start a new trace.
    Absent,
    Valid(Parent),
    /// Present but not valid: start a new trace, and warn once.
    Invalid(String),
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a `TRACEPARENT` value.
pub fn parse_traceparent(value: &str) -> Option<Parent> {
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || version != "00"
        || !lower_hex(trace, 32)
        || !lower_hex(span, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// What a `TRACEPARENT` value says (empty counts as unset).
pub fn incoming(value: Option<&OsStr>) -> Incoming {
    match value.filter(|v| !v.is_empty()) {
        None => Incoming::Absent,
        Some(v) => match v.to_str().and_then(parse_traceparent) {
            Some(p) => Incoming::Valid(p),
            None => Incoming::Invalid(v.to_string_lossy().into_owned()),
        },
    }
}

/// The `TRACEPARENT` of a sampled span.
pub fn traceparent(trace_id: TraceId, span_id: SpanId) -> String {
    traceparent_with(trace_id, span_id, TraceFlags::SAMPLED)
}

/// The `TRACEPARENT` of a span that is not recorded (flags `00`): a child's parent-based
/// sampler drops its spans too.
pub fn unsampled_traceparent(trace_id: TraceId, span_id: SpanId) -> String {
    traceparent_with(trace_id, span_id, TraceFlags::NOT_SAMPLED)
}

fn traceparent_with(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> String {
    format!("00-{trace_id}-{span_id}-{:02x}", flags.to_u8())
}

/// The endpoint variables a capturing `exec` points at its own receiver: the base, then each
/// signal's, in the order of [`Signal::ALL`].
const CAPTURE_ENDPOINTS: [&str; 4] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
];

/// Each signal's protocol variable, in the order of [`Signal::ALL`].
const PROTOCOLS: [&str; 3] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
];

/// Certificate settings that would make the child's SDK try TLS against a plain receiver.
const CAPTURE_REMOVALS: [&str; 12] = [
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
];

/// How a child's environment differs from ours: these variables set, then those removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvChanges {
    pub set: Vec<(&'static str, String)>,
    pub remove: &'static [&'static str],
}

/// True when the child's SDK will export `signal` over gRPC: its protocol variable for the
/// signal, else the generic one, says `grpc` (the SDK default is `http/protobuf`).
fn exports_grpc(signal: Signal, var: &dyn Fn(&str) -> Option<String>) -> bool {
    let own = PROTOCOLS[Signal::ALL
        .iter()
        .position(|s| *s == signal)
        .expect("a signal")];
    [own, "OTEL_EXPORTER_OTLP_PROTOCOL"]
        .into_iter()
        .find_map(|k| var(k).filter(|v| !v.trim().is_empty()))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("grpc"))
}

/// The child's environment: ours with `TRACEPARENT` set to the new span and, when capturing,
/// the OTLP endpoints pointed at the receiver on `capture_port` (which speaks OTLP/HTTP and
/// OTLP/gRPC): each signal's to `/v1/{signal}` when the child exports it over HTTP, to the bare
/// receiver when over gRPC (`var` reads the child's protocol variables, which are left as they
/// are); the certificate variables are removed. `TRACESTATE`, `BAGGAGE` and everything else pass
/// through untouched.
pub fn child_env(
    traceparent: &str,
    capture_port: Option<u16>,
    var: &dyn Fn(&str) -> Option<String>,
) -> EnvChanges {
    let mut set = vec![("TRACEPARENT", traceparent.to_owned())];
    let Some(port) = capture_port else {
        return EnvChanges { set, remove: &[] };
    };
    let base = format!("http://127.0.0.1:{port}");
    set.push((CAPTURE_ENDPOINTS[0], base.clone()));
    for (signal, name) in Signal::ALL.into_iter().zip(&CAPTURE_ENDPOINTS[1..]) {
        let endpoint = if exports_grpc(signal, var) {
            base.clone()
        } else {
            format!("{base}{}", signal.http_path())
        };
        set.push((name, endpoint));
    }
    EnvChanges {
        set,
        remove: &CAPTURE_REMOVALS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_w3c_version_00_traceparent_parses() {
        let p = parse_traceparent(GOOD).unwrap();
        assert_eq!(p.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(p.span_id.to_string(), "b7ad6b7169203331");
        assert!(p.sampled);
        assert!(
            !parse_traceparent(&GOOD.replace("-01", "-00"))
                .unwrap()
                .sampled
        );
        assert!(
            parse_traceparent(&GOOD.replace("-01", "-03"))
                .unwrap()
                .sampled
        );
    }

    #[test]
    fn anything_else_is_invalid() {
        for bad in [
            "",
            "00",
            &GOOD.to_uppercase(),
            &GOOD.replace("0af7", "0AF7"),
            &GOOD.replacen("00-", "ff-", 1),
            &GOOD.replacen("00-", "01-", 1),
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319cc-b7ad6b7169203331-01",
            &format!("{GOOD}-extra"),
            &GOOD.replace("-01", "-1"),
            &GOOD.replace("-01", "-0g"),
            " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_environment_says_absent_valid_or_invalid() {
        let env = |v: &'static str| Some(OsStr::new(v));
        assert_eq!(incoming(None), Incoming::Absent);
        assert_eq!(incoming(env("")), Incoming::Absent);
        assert!(matches!(incoming(env(GOOD)), Incoming::Valid(_)));
        assert_eq!(incoming(env("junk")), Incoming::Invalid("junk".into()));
    }

    #[test]
    fn the_child_gets_the_new_span_and_when_capturing_our_receiver() {
        let tp = traceparent(TraceId::from(1u128), SpanId::from(2u64));
        assert_eq!(
            tp,
            "00-00000000000000000000000000000001-0000000000000002-01"
        );
        assert_eq!(
            unsampled_traceparent(TraceId::from(1u128), SpanId::from(2u64)),
            "00-00000000000000000000000000000001-0000000000000002-00"
        );

        let none = |_: &str| None;
        let plain = child_env(&tp, None, &none);
        assert_eq!(plain.set, [("TRACEPARENT", tp.clone())]);
        assert!(plain.remove.is_empty());

        let captured = child_env(&tp, Some(4999), &none);
        let get = |k: &str| {
            captured
                .set
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("TRACEPARENT"), Some(tp.as_str()));
        assert_eq!(
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some("http://127.0.0.1:4999")
        );
        for (key, path) in [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "/v1/metrics"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "/v1/logs"),
        ] {
            assert_eq!(
                get(key),
                Some(format!("http://127.0.0.1:4999{path}").as_str())
            );
        }
        // The child's protocol is its own.
        assert_eq!(get("OTEL_EXPORTER_OTLP_PROTOCOL"), None);
        assert_eq!(get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), None);
        assert!(captured.remove.contains(&"OTEL_EXPORTER_OTLP_CERTIFICATE"));
        assert!(
            captured
                .remove
                .contains(&"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY")
        );
        // Nothing else is touched: TRACESTATE, BAGGAGE and PATH pass through.
        for key in ["TRACESTATE", "BAGGAGE", "PATH"] {
            assert_eq!(get(key), None);
            assert!(!captured.remove.contains(&key));
        }
    }

    #[test]
    fn a_signal_the_child_exports_over_grpc_gets_the_bare_receiver() {
        let tp = traceparent(TraceId::from(1u128), SpanId::from(2u64));
        let vars = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".to_owned()),
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL" => Some("http/protobuf".to_owned()),
            _ => None,
        };
        let env = child_env(&tp, Some(7), &vars);
        let get = |k: &str| {
            env.set
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").as_deref(),
            Some("http://127.0.0.1:7")
        );
        assert_eq!(
            get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").as_deref(),
            Some("http://127.0.0.1:7/v1/metrics")
        );
        assert_eq!(
            get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT").as_deref(),
            Some("http://127.0.0.1:7")
        );
    }
}
