//! `delivery.json`: flush and export (section 2/5).

use serde::{Deserialize, Serialize};

use crate::{BenchFile, Run, Target};

/// The flush every command runs (sync Always, the default) against a plain replay of the same
/// stored bytes: the median of the ratios to the replays around each run.
pub const FLUSH_RATIO: Target = Target::at_least(
    "flush throughput to rotel / plain replay (sync Always, the default)",
    0.90,
);
/// The same over OTLP/gRPC, against a minimal tonic replay.
pub const GRPC_FLUSH_RATIO: Target = Target::at_least(
    "flush over OTLP/gRPC to rotel / minimal tonic replay (sync Always, the default)",
    FLUSH_RATIO.aim,
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Delivery {
    #[serde(flatten)]
    pub run: Run,
    pub flush_throughput: Option<FlushThroughput>,
    pub export_to_spool: Vec<ExportCase>,
    pub fresh_process_export: Option<FreshExport>,
}

impl BenchFile for Delivery {
    const NAME: &'static str = "delivery";
    fn run(&self) -> &Run {
        &self.run
    }
}

/// Flushes to rotel over OTLP/HTTP, and (in `grpc`) over OTLP/gRPC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlushThroughput {
    pub replay: Option<Rate>,
    pub flush_always: Option<Rate>,
    pub flush_never: Option<Rate>,
    /// [`FLUSH_RATIO`] (in `grpc`: [`GRPC_FLUSH_RATIO`]).
    pub ratio_always_median: Option<f64>,
    pub ratio_never_median: Option<f64>,
    pub ratio_replay_plus_fdatasync_median: Option<f64>,
    /// Absent from files written before the gRPC flush was measured.
    pub grpc: Option<Box<FlushThroughput>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rate {
    pub spans_per_sec: Option<f64>,
}

/// Exporting one batch into the spool (no endpoint), for one batch size and sync policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportCase {
    /// `Never` or `Always`.
    pub sync: String,
    pub spans_per_batch: u64,
    pub bytes_per_batch: Option<f64>,
    pub encode: Option<Micros>,
    pub append: Option<Micros>,
    pub delivery_export_no_endpoint: Option<Micros>,
    pub encode_delivery_export_no_endpoint: Option<Micros>,
}

/// Percentiles of a duration, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Micros {
    pub median_us: Option<f64>,
    pub p90_us: Option<f64>,
}

/// One export by a fresh process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FreshExport {
    pub total: Option<Micros>,
}
