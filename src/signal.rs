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

/// One value for each signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerSignal<T> {
    pub traces: T,
    pub metrics: T,
    pub logs: T,
}

impl<T> PerSignal<T> {
    /// The value `f` gives each signal.
    pub fn from_fn(mut f: impl FnMut(Signal) -> T) -> PerSignal<T> {
        PerSignal {
            traces: f(Signal::Traces),
            metrics: f(Signal::Metrics),
            logs: f(Signal::Logs),
        }
    }

    pub fn get(&self, signal: Signal) -> &T {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    pub fn get_mut(&mut self, signal: Signal) -> &mut T {
        match signal {
            Signal::Traces => &mut self.traces,
            Signal::Metrics => &mut self.metrics,
            Signal::Logs => &mut self.logs,
        }
    }

    /// Each signal with its value, in the order of [`Signal::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (Signal, &T)> {
        Signal::ALL.into_iter().map(|s| (s, self.get(s)))
    }
}

impl<T> std::ops::Index<Signal> for PerSignal<T> {
    type Output = T;

    fn index(&self, signal: Signal) -> &T {
        self.get(signal)
    }
}
