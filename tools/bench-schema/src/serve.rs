//! `serve.json`: the agent, `tracespool serve` (section 4/5).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{BenchFile, Run, Target};

/// Items accepted per second by serve over those rotel accepts at the same load (the report
/// names the items: spans, data points, log records).
pub const RATIO_VS_ROTEL: Target = Target::at_least("accepted / rotel direct", 0.50);
/// Serve's p99 request latency minus rotel's at the same load, in ms.
pub const ADDED_P99_MS: Target = Target::at_most("added p99 latency", 5.0);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Serve {
    #[serde(flatten)]
    pub run: Run,
    /// Traces.
    pub results: Vec<Point>,
    /// The other signals (`metrics`, `logs`), each with the layout of traces (absent from files
    /// written before they were measured).
    pub signals: BTreeMap<String, Signal>,
    pub rotel_vm_hwm_kib: Option<RotelHwm>,
}

impl BenchFile for Serve {
    const NAME: &'static str = "serve";
    fn run(&self) -> &Run {
        &self.run
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Signal {
    pub results: Vec<Point>,
}

/// One load level (protocol, clients) against one target: rotel itself, or serve (forwarding
/// or spool-only) in front of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Point {
    /// `rotel`, `serve_forwarding`, `serve_spool_only`.
    pub target: String,
    pub protocol: String,
    pub clients: Option<f64>,
    /// Spans, data points or log records per second, by the signal.
    #[serde(
        rename = "spans_per_s",
        alias = "data_points_per_s",
        alias = "log_records_per_s"
    )]
    pub items_per_s: Option<Stat>,
    pub p50_ms: Option<Stat>,
    pub p99_ms: Option<Stat>,
    /// [`RATIO_VS_ROTEL`] (serve only, as are the fields below).
    pub ratio_vs_rotel: Option<Stat>,
    pub added_p50_ms: Option<Stat>,
    /// [`ADDED_P99_MS`].
    pub added_p99_ms: Option<Stat>,
    pub vm_hwm_kib_max: Option<f64>,
}

/// Over the repetitions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stat {
    pub median: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RotelHwm {
    /// The rotel the clients sent to directly.
    pub direct: Option<f64>,
}
