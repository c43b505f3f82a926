//! The three OTLP signals, and what each is called on the wire. Pure: no I/O.

/// An OTLP signal: what a batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Signal {
    /// `ExportTraceServiceRequest`: spans.
    #[default]
    Traces,
    /// `ExportMetricsServiceRequest`: metric data points.
    Metrics,
    /// `ExportLogsServiceRequest`: log records.
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// `traces`, `metrics`, `logs`: as in the OTLP/HTTP path and the `status` keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The OTLP/HTTP path: `/v1/traces`, `/v1/metrics`, `/v1/logs`.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }

    /// The OTLP/gRPC method.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }

    /// What one item of the signal is called in messages: `span`, `data point`, `log record`.
    pub fn item(self) -> &'static str {
        match self {
            Signal::Traces => "span",
            Signal::Metrics => "data point",
            Signal::Logs => "log record",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
