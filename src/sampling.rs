//! Head sampling of the spans tracespool records itself (`exec`, `span`): the OTel
//! `OTEL_TRACES_SAMPLER` samplers, their parsing and their decision. Pure: no I/O.
//!
//! - `always_on` records every span, `always_off` none, whatever the parent says.
//! - `traceidratio` (ARG: a probability from 0 to 1, 1 when absent) decides by the trace id
//!   alone, by the rule of the OpenTelemetry Rust SDK: the lower 8 bytes of the trace id, as a
//!   big-endian u64, shifted right by one (63 random bits), sampled when below `ARG × 2^63`. A
//!   child's SDK with the same ratio makes the same decision for the same trace.
//! - `parentbased_*`: with a parent, the parent's sampled flag decides (sampled → recorded,
//!   not sampled → dropped); without one, the named root sampler does.
//!
//! The Jaeger remote and X-Ray samplers are known names that tracespool does not support: they
//! are refused like an unknown one.

use opentelemetry::trace::TraceId;

use crate::propagation::{self, Parent};
use crate::record::Placement;

/// What decides a span with no parent (or any span, unless parent-based).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    /// Sampled with this probability, from 0 to 1, by the trace id.
    TraceIdRatio(f64),
}

/// A sampler: a root sampler, followed only where no parent says otherwise when parent-based.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    pub root: Root,
    /// A parent's sampled flag wins over the root sampler.
    pub parent_based: bool,
}

impl Default for Sampler {
    /// `parentbased_always_on`, the OTel default.
    fn default() -> Sampler {
        Sampler {
            root: Root::AlwaysOn,
            parent_based: true,
        }
    }
}

/// Why a sampler name or argument was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplerError {
    #[error(
        "unknown sampler; expected always_on, always_off, traceidratio, parentbased_always_on, \
         parentbased_always_off or parentbased_traceidratio"
    )]
    Unknown,
    #[error("a sampler tracespool does not support (it needs a remote sampling service)")]
    Unsupported,
    #[error("expected a probability from 0 to 1, e.g. 0.25")]
    BadRatio,
}

impl SamplerError {
    /// True when the argument was refused, not the sampler's name.
    pub fn is_about_the_argument(&self) -> bool {
        matches!(self, SamplerError::BadRatio)
    }
}

/// A probability from 0 to 1, as a decimal number.
pub fn parse_ratio(s: &str) -> Result<f64, SamplerError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or(SamplerError::BadRatio)
}

impl Sampler {
    /// The sampler `name` (an `OTEL_TRACES_SAMPLER` value, any case) with its `arg`
    /// (`OTEL_TRACES_SAMPLER_ARG`): the ratio samplers take a probability (1 when `None`); the
    /// others ignore it.
    ///
    /// # Errors
    ///
    /// An unknown or unsupported name, or a ratio sampler's argument that is not a number from
    /// 0 to 1.
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Sampler, SamplerError> {
        let name = name.trim().to_ascii_lowercase();
        let (parent_based, root) = match name.strip_prefix("parentbased_") {
            Some(root) => (true, root),
            None => (false, name.as_str()),
        };
        let root = match root {
            "always_on" => Root::AlwaysOn,
            "always_off" => Root::AlwaysOff,
            "traceidratio" => Root::TraceIdRatio(arg.map_or(Ok(1.0), parse_ratio)?),
            "jaeger_remote" => return Err(SamplerError::Unsupported),
            "xray" if !parent_based => return Err(SamplerError::Unsupported),
            _ => return Err(SamplerError::Unknown),
        };
        Ok(Sampler { root, parent_based })
    }

    /// The `OTEL_TRACES_SAMPLER` name of this sampler.
    pub fn name(&self) -> &'static str {
        match (self.parent_based, self.root) {
            (false, Root::AlwaysOn) => "always_on",
            (false, Root::AlwaysOff) => "always_off",
            (false, Root::TraceIdRatio(_)) => "traceidratio",
            (true, Root::AlwaysOn) => "parentbased_always_on",
            (true, Root::AlwaysOff) => "parentbased_always_off",
            (true, Root::TraceIdRatio(_)) => "parentbased_traceidratio",
        }
    }

    /// Whether a new span in trace `trace_id` under `parent` (its `TRACEPARENT`, if any) is
    /// recorded.
    pub fn should_sample(&self, parent: Option<&Parent>, trace_id: TraceId) -> bool {
        match parent {
            Some(parent) if self.parent_based => parent.sampled,
            _ => match self.root {
                Root::AlwaysOn => true,
                Root::AlwaysOff => false,
                Root::TraceIdRatio(ratio) => ratio_samples(ratio, trace_id),
            },
        }
    }
}

/// What the children of a span at `placement` that is not recorded get as `TRACEPARENT`: under
/// an unsampled parent, `None` (the parent's reaches them unchanged); otherwise the span's own
/// ids with flags `00` (for a root, a new trace id and span id), so that their parent-based
/// samplers drop their spans too.
pub fn unrecorded_traceparent(parent: Option<&Parent>, placement: &Placement) -> Option<String> {
    match parent {
        Some(parent) if !parent.sampled => None,
        _ => Some(propagation::unsampled_traceparent(
            placement.trace_id,
            placement.span_id,
        )),
    }
}

/// The trace id ratio rule: the lower 8 bytes of the trace id as a big-endian u64, shifted right
/// by one, below `ratio × 2^63`; a ratio of 1 samples every trace.
fn ratio_samples(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let low = u64::from_be_bytes(bytes[8..].try_into().expect("16 bytes"));
    (low >> 1) < bound
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;

    fn parent(sampled: bool) -> Parent {
        Parent {
            trace_id: TraceId::from(7u128),
            span_id: SpanId::from(9u64),
            sampled,
        }
    }

    #[test]
    fn each_sampler_name_parses_in_any_case_and_names_itself_back() {
        for name in [
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ] {
            let sampler = Sampler::parse(&name.to_uppercase(), None).unwrap();
            assert_eq!(sampler.name(), name);
            assert_eq!(sampler.parent_based, name.starts_with("parentbased_"));
        }
        assert_eq!(Sampler::default().name(), "parentbased_always_on");
        assert_eq!(
            Sampler::parse(" traceidratio ", Some(" 0.25 ")),
            Ok(Sampler {
                root: Root::TraceIdRatio(0.25),
                parent_based: false
            })
        );
        assert_eq!(
            Sampler::parse("parentbased_traceidratio", None)
                .unwrap()
                .root,
            Root::TraceIdRatio(1.0),
            "a ratio without ARG is 1"
        );
    }

    #[test]
    fn the_argument_of_a_sampler_that_takes_none_is_ignored() {
        assert_eq!(
            Sampler::parse("always_off", Some("lots")).unwrap().root,
            Root::AlwaysOff
        );
    }

    #[test]
    fn a_ratio_outside_0_to_1_or_not_a_number_is_refused() {
        for bad in ["-0.1", "1.5", "25%", "", "NaN", "inf", "a quarter"] {
            let err = Sampler::parse("traceidratio", Some(bad)).unwrap_err();
            assert_eq!(err, SamplerError::BadRatio, "{bad:?}");
            assert!(err.is_about_the_argument());
        }
        assert_eq!(parse_ratio("0"), Ok(0.0));
        assert_eq!(parse_ratio("1"), Ok(1.0));
        assert_eq!(parse_ratio("1e-1"), Ok(0.1));
    }

    #[test]
    fn unknown_and_unsupported_samplers_are_refused() {
        for unsupported in ["jaeger_remote", "parentbased_jaeger_remote", "xray"] {
            let err = Sampler::parse(unsupported, None).unwrap_err();
            assert_eq!(err, SamplerError::Unsupported, "{unsupported}");
            assert!(!err.is_about_the_argument());
        }
        for unknown in ["", "on", "parentbased_", "parentbased_xray", "always-on"] {
            assert_eq!(
                Sampler::parse(unknown, None),
                Err(SamplerError::Unknown),
                "{unknown:?}"
            );
        }
    }

    #[test]
    fn the_ratio_rule_reads_the_low_63_bits_of_the_trace_id() {
        let ratio = |p: f64| Sampler {
            root: Root::TraceIdRatio(p),
            parent_based: false,
        };
        let id = |hex: &str| TraceId::from_hex(hex).unwrap();
        // Low 8 bytes 0x3fff…ff: 63 bits 0x1fff…ff, just under 2^61 = 0.25 × 2^63.
        let under = id("ffffffffffffffff3fffffffffffffff");
        // Low 8 bytes 0x4000…00: 63 bits exactly 2^61, not below it.
        let at = id("00000000000000004000000000000000");
        assert!(ratio(0.25).should_sample(None, under));
        assert!(!ratio(0.25).should_sample(None, at));
        // The lowest bit is not part of the decision, the high 8 bytes neither.
        assert!(!ratio(0.25).should_sample(None, id("00000000000000004000000000000001")));
        assert!(ratio(0.25).should_sample(None, id("0000000000000000000000000000000f")));
        // 0 samples nothing, 1 everything.
        let lowest = id("ffffffffffffffff0000000000000001");
        let highest = id("0000000000000001ffffffffffffffff");
        assert!(!ratio(0.0).should_sample(None, lowest));
        assert!(ratio(1.0).should_sample(None, highest));
        assert!(!ratio(0.999_999).should_sample(None, highest));
    }

    #[test]
    fn the_ratio_rule_agrees_with_the_sdk_sampler_on_random_trace_ids() {
        use opentelemetry::trace::SpanKind;
        use opentelemetry_sdk::trace::{
            IdGenerator, RandomIdGenerator, SamplingDecision, ShouldSample,
        };
        let ids = RandomIdGenerator::default();
        for p in [0.0, 0.01, 0.25, 0.5, 0.9, 1.0] {
            let sdk = opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(p);
            let ours = Sampler {
                root: Root::TraceIdRatio(p),
                parent_based: false,
            };
            for _ in 0..2000 {
                let trace_id = ids.new_trace_id();
                let theirs = sdk
                    .should_sample(None, trace_id, "x", &SpanKind::Internal, &[], &[])
                    .decision
                    == SamplingDecision::RecordAndSample;
                assert_eq!(ours.should_sample(None, trace_id), theirs, "{trace_id} {p}");
            }
        }
    }

    #[test]
    fn parent_based_samplers_follow_the_parent_and_the_root_sampler_without_one() {
        let trace = TraceId::from(1u128);
        for root in [Root::AlwaysOn, Root::AlwaysOff, Root::TraceIdRatio(0.5)] {
            let sampler = Sampler {
                root,
                parent_based: true,
            };
            assert!(
                sampler.should_sample(Some(&parent(true)), trace),
                "{root:?}"
            );
            assert!(
                !sampler.should_sample(Some(&parent(false)), trace),
                "{root:?}"
            );
        }
        let on = Sampler::default();
        assert!(on.should_sample(None, trace));
        let off = Sampler::parse("parentbased_always_off", None).unwrap();
        assert!(!off.should_sample(None, trace));
    }

    #[test]
    fn children_of_an_unrecorded_span_get_flags_00_or_an_unsampled_parents_context_unchanged() {
        let root = Placement::new(None, None);
        let tp = unrecorded_traceparent(None, &root).unwrap();
        assert_eq!(
            tp,
            format!("00-{}-{}-00", root.trace_id, root.span_id),
            "a new root"
        );
        let sampled = parent(true);
        let under = Placement::new(Some(&sampled), None);
        assert_eq!(
            unrecorded_traceparent(Some(&sampled), &under).unwrap(),
            format!("00-{}-{}-00", sampled.trace_id, under.span_id),
            "the parent's trace, a span id of its own"
        );
        let unsampled = parent(false);
        let under = Placement::new(Some(&unsampled), None);
        assert_eq!(unrecorded_traceparent(Some(&unsampled), &under), None);
    }

    #[test]
    fn other_samplers_ignore_the_parents_flag() {
        let trace = TraceId::from(1u128);
        let on = Sampler::parse("always_on", None).unwrap();
        let off = Sampler::parse("always_off", None).unwrap();
        for sampled in [true, false] {
            assert!(on.should_sample(Some(&parent(sampled)), trace));
            assert!(!off.should_sample(Some(&parent(sampled)), trace));
        }
        // The ratio decides by the trace id, whatever the parent says.
        let ratio = Sampler::parse("traceidratio", Some("0.25")).unwrap();
        let kept = TraceId::from(0x1u128);
        let dropped = TraceId::from(u64::MAX as u128);
        assert!(ratio.should_sample(Some(&parent(false)), kept));
        assert!(!ratio.should_sample(Some(&parent(true)), dropped));
    }
}
