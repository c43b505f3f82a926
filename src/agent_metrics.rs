//! serve's own metrics, as a Prometheus scrape of `GET /metrics` reads them.
//!
//! A [`Registry`] owned by the agent (nothing process-wide is installed), encoded in the
//! Prometheus text format (version 0.0.4) at each scrape:
//!
//! - **Read from the spool at scrape time** (its ledger, shared with every process that uses
//!   the spool): `tracespool_spool_bytes`, `tracespool_spool_max_bytes`,
//!   `tracespool_spool_batches{signal}`, `tracespool_spool_items{signal}`,
//!   `tracespool_spool_oldest_age_seconds{signal}` (0 when nothing waits) and
//!   `tracespool_dropped_items_total{signal}`, which counts since the spool was made (what the
//!   bound or the maximum age dropped, whichever process dropped it).
//! - **Counted by this serve since it started** (the Prometheus norm for counters: a restart
//!   starts them at 0 again): `tracespool_received_items_total{signal,protocol}` (items
//!   acknowledged to a client, so stored; `protocol` is `http/protobuf`, `http/json` or
//!   `grpc`), `tracespool_delivered_items_total{signal}` (items in batches the backend
//!   accepted), `tracespool_rejected_items_total{signal}` (items the backend refused, as bad
//!   data or in a partial success).
//! - `tracespool_backend_up{signal}`: 1 when the signal's delivery state (shared with `exec`
//!   and `flush` runs on the spool) said "up" at the forwarder's last look, 0 otherwise (down,
//!   not yet tried, TLS not ready, no endpoint).
//! - `tracespool_build_info{version}`: always 1.
//!
//! Every series exists from the start for every signal, at 0, so that a query or an alert
//! never meets a missing series.

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::circuit::Backend;
use crate::delivery::Report;
use crate::receiver::{Metrics, Protocol, RenderError};
use crate::signal::Signal;
use crate::spool::{Stats, Store};

/// The `signal` label: `traces`, `metrics` or `logs`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabel {
    signal: &'static str,
}

impl SignalLabel {
    fn of(signal: Signal) -> SignalLabel {
        SignalLabel {
            signal: signal.as_str(),
        }
    }
}

/// The labels of what was received: `signal` and `protocol`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceivedLabels {
    signal: &'static str,
    protocol: &'static str,
}

impl ReceivedLabels {
    fn of(signal: Signal, protocol: Protocol) -> ReceivedLabels {
        ReceivedLabels {
            signal: signal.as_str(),
            protocol: protocol.as_str(),
        }
    }
}

/// serve's metrics: what the agent counts, and the spool read at each scrape.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    received: Family<ReceivedLabels, Counter>,
    delivered: Family<SignalLabel, Counter>,
    rejected: Family<SignalLabel, Counter>,
    backend_up: Family<SignalLabel, Gauge>,
}

impl AgentMetrics {
    /// The metrics of an agent storing into `store`.
    pub fn new(store: Arc<Store>) -> AgentMetrics {
        let mut registry = Registry::default();
        let received = Family::<ReceivedLabels, Counter>::default();
        let delivered = Family::<SignalLabel, Counter>::default();
        let rejected = Family::<SignalLabel, Counter>::default();
        let backend_up = Family::<SignalLabel, Gauge>::default();
        for signal in Signal::ALL {
            // Created now: every series exists, at 0, from the start.
            for protocol in Protocol::ALL {
                let _ = received.get_or_create(&ReceivedLabels::of(signal, protocol));
            }
            let label = SignalLabel::of(signal);
            let _ = delivered.get_or_create(&label);
            let _ = rejected.get_or_create(&label);
            let _ = backend_up.get_or_create(&label);
        }
        registry.register(
            "tracespool_build",
            "The version of tracespool serving",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(SpoolCollector { store }));
        registry.register(
            "tracespool_received_items",
            "Items (spans, data points, log records) received and stored, since serve started",
            received.clone(),
        );
        registry.register(
            "tracespool_delivered_items",
            "Items in batches the backend accepted, since serve started",
            delivered.clone(),
        );
        registry.register(
            "tracespool_rejected_items",
            "Items the backend refused (bad data, or rejected in a partial success), since serve started",
            rejected.clone(),
        );
        registry.register(
            "tracespool_backend_up",
            "1 when the backend is up (it answered the last attempt), 0 otherwise",
            backend_up.clone(),
        );
        AgentMetrics {
            registry,
            received,
            delivered,
            rejected,
            backend_up,
        }
    }

    /// Counts what one delivery of `signal` did, and how the backend stood after it.
    pub fn count_delivery(&self, signal: Signal, report: &Report) {
        let label = SignalLabel::of(signal);
        self.delivered
            .get_or_create(&label)
            .inc_by(report.sent_spans);
        self.rejected
            .get_or_create(&label)
            .inc_by(report.rejected_spans);
        self.backend_up
            .get_or_create(&label)
            .set(i64::from(report.backend == Backend::Up));
    }
}

impl Metrics for AgentMetrics {
    fn count_received(&self, signal: Signal, protocol: Protocol, items: u64) {
        self.received
            .get_or_create(&ReceivedLabels::of(signal, protocol))
            .inc_by(items);
    }

    fn content_type(&self) -> &'static str {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    }

    /// Every metric in the Prometheus text format. Reads the spool: blocking.
    fn render(&self) -> Result<String, RenderError> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The spool's figures, read at each scrape.
#[derive(Debug)]
struct SpoolCollector {
    store: Arc<Store>,
}

impl SpoolCollector {
    /// Each signal's stats; a signal whose spool was never made holds nothing. A spool that
    /// cannot be read is said (at warn) and shown as empty: the other figures still go out.
    fn stats(&self) -> Vec<(Signal, Stats)> {
        Signal::ALL
            .into_iter()
            .map(|signal| {
                let stats = match self.store.existing(signal) {
                    Ok(Some(lane)) => lane.stats().unwrap_or_else(|e| {
                        tracing::warn!("metrics: cannot read the {signal} spool: {e}");
                        Stats::default()
                    }),
                    Ok(None) => Stats::default(),
                    Err(e) => {
                        tracing::warn!("metrics: cannot open the {signal} spool: {e}");
                        Stats::default()
                    }
                };
                (signal, stats)
            })
            .collect()
    }
}

/// A count as a gauge's value (saturating: no count comes near `i64::MAX`).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One metric with a value per signal.
fn per_signal<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (Signal, M)>,
) -> Result<(), std::fmt::Error> {
    let mut values = values.peekable();
    let Some((_, first)) = values.peek() else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (signal, value) in values {
        let label = SignalLabel::of(signal);
        value.encode(metric.encode_family(&label)?)?;
    }
    Ok(())
}

impl Collector for SpoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.stats();
        let now = SystemTime::now();
        let bytes = ConstGauge::new(int(all.iter().map(|(_, s)| s.bytes).sum()));
        bytes.encode(encoder.encode_descriptor(
            "tracespool_spool_bytes",
            "Bytes still to deliver, as stored in the spool, all signals together.",
            None,
            bytes.metric_type(),
        )?)?;
        let max = ConstGauge::new(int(self.store.options().max_bytes));
        max.encode(encoder.encode_descriptor(
            "tracespool_spool_max_bytes",
            "The spool's size bound, all signals together.",
            None,
            max.metric_type(),
        )?)?;
        per_signal(
            &mut encoder,
            "tracespool_spool_batches",
            "Batches waiting in the spool for delivery.",
            all.iter()
                .map(|(s, st)| (*s, ConstGauge::new(int(st.batches)))),
        )?;
        per_signal(
            &mut encoder,
            "tracespool_spool_items",
            "Items (spans, data points, log records) waiting in the spool for delivery.",
            all.iter()
                .map(|(s, st)| (*s, ConstGauge::new(int(st.spans)))),
        )?;
        per_signal(
            &mut encoder,
            "tracespool_spool_oldest_age_seconds",
            "Age of the oldest batch waiting in the spool (0 when none waits).",
            all.iter().map(|(s, st)| {
                let age = st
                    .oldest_write
                    .and_then(|t| now.duration_since(t).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                (*s, ConstGauge::new(age))
            }),
        )?;
        per_signal(
            &mut encoder,
            "tracespool_dropped_items",
            "Items dropped by the spool's bound or maximum age, since the spool was made.",
            all.iter()
                .map(|(s, st)| (*s, ConstCounter::new(st.dropped_spans))),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolOptions;

    /// The value of `series` (name and labels as written) in `text`.
    fn line(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l[series.len() + 1..].trim().parse().ok())
    }

    #[test]
    fn every_series_is_there_from_the_start_at_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(tmp.path(), SpoolOptions::default()).unwrap());
        let text = AgentMetrics::new(store).render().unwrap();
        for signal in ["traces", "metrics", "logs"] {
            for name in [
                "tracespool_spool_batches",
                "tracespool_spool_items",
                "tracespool_spool_oldest_age_seconds",
                "tracespool_dropped_items_total",
                "tracespool_delivered_items_total",
                "tracespool_rejected_items_total",
                "tracespool_backend_up",
            ] {
                let series = format!("{name}{{signal=\"{signal}\"}}");
                assert_eq!(line(&text, &series), Some(0.0), "{series} in {text}");
            }
            for protocol in ["http/protobuf", "http/json", "grpc"] {
                let series = format!(
                    "tracespool_received_items_total{{signal=\"{signal}\",protocol=\"{protocol}\"}}"
                );
                assert_eq!(line(&text, &series), Some(0.0), "{series} in {text}");
            }
        }
        assert_eq!(line(&text, "tracespool_spool_bytes"), Some(0.0), "{text}");
        let version = format!(
            "tracespool_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(line(&text, &version), Some(1.0), "{text}");
    }

    #[test]
    fn the_spool_is_read_at_each_scrape_and_deliveries_are_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(tmp.path(), SpoolOptions::default()).unwrap());
        let metrics = AgentMetrics::new(store.clone());
        store.append(Signal::Logs, b"not checked here", 3).unwrap();
        metrics.count_received(Signal::Logs, Protocol::Grpc, 3);
        let text = metrics.render().unwrap();
        assert_eq!(
            line(&text, "tracespool_spool_items{signal=\"logs\"}"),
            Some(3.0)
        );
        assert_eq!(
            line(&text, "tracespool_spool_batches{signal=\"logs\"}"),
            Some(1.0)
        );
        assert_eq!(
            line(
                &text,
                "tracespool_received_items_total{signal=\"logs\",protocol=\"grpc\"}"
            ),
            Some(3.0)
        );
        assert_ne!(line(&text, "tracespool_spool_bytes"), Some(0.0), "{text}");

        metrics.count_delivery(
            Signal::Logs,
            &Report {
                sent_batches: 1,
                sent_spans: 3,
                rejected_spans: 1,
                backend: Backend::Up,
                ..Report::default()
            },
        );
        let text = metrics.render().unwrap();
        for (series, value) in [
            ("tracespool_delivered_items_total{signal=\"logs\"}", 3.0),
            ("tracespool_rejected_items_total{signal=\"logs\"}", 1.0),
            ("tracespool_backend_up{signal=\"logs\"}", 1.0),
            ("tracespool_backend_up{signal=\"traces\"}", 0.0),
        ] {
            assert_eq!(line(&text, series), Some(value), "{series} in {text}");
        }
        metrics.count_delivery(
            Signal::Logs,
            &Report {
                backend: Backend::Down,
                ..Report::default()
            },
        );
        let text = metrics.render().unwrap();
        assert_eq!(
            line(&text, "tracespool_backend_up{signal=\"logs\"}"),
            Some(0.0)
        );
    }

    #[test]
    fn what_the_bound_dropped_is_the_spool_ledgers_count() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = SpoolOptions {
            max_spans: Some(2),
            ..SpoolOptions::default()
        };
        let store = Arc::new(Store::open(tmp.path(), opts).unwrap());
        for _ in 0..3 {
            store.append(Signal::Traces, b"one span", 1).unwrap();
        }
        let dropped = store.traces().stats().unwrap().dropped_spans;
        assert!(dropped > 0);
        let text = AgentMetrics::new(store).render().unwrap();
        assert_eq!(
            line(&text, "tracespool_dropped_items_total{signal=\"traces\"}"),
            Some(dropped as f64),
            "{text}"
        );
        assert_eq!(
            line(&text, "tracespool_spool_items{signal=\"traces\"}"),
            Some((3 - dropped) as f64),
            "{text}"
        );
    }
}
