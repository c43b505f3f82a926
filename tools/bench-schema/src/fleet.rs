//! `fleet.json`: a simulated fleet of hosts recovering from a backend outage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{BenchFile, Run, Target};

/// The peak request rate on the backend during the recovery over its capacity.
pub const PEAK_OVER_CAPACITY: Target = Target::at_most("peak request rate / C (background)", 1.5);
/// Time to empty every spool over the ideal (backlog / capacity).
pub const DRAINED_OVER_IDEAL: Target = Target::at_most("time to empty / ideal (background)", 2.0);
/// The longest a hook spends on the network, in ms: within its budget, 2 s by default (a run
/// with another budget is judged against its own, with [`Target::aiming`]).
pub const NETWORK_MAX_MS: Target =
    Target::at_most("longest hook on the network (background)", 2000.0);
/// The p99 of the time a hook spends beyond its command, in ms.
pub const ADDED_P99_MS: Target = Target::at_most("p99 time added per hook (background)", 10.0);

/// The variant the targets judge: hooks leave delivery to a background drainer.
pub const JUDGED_VARIANT: &str = "background";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fleet {
    #[serde(flatten)]
    pub run: Run,
    pub params: Option<Params>,
    /// By variant: `background`, `inline`, `no_jitter`.
    pub variants: BTreeMap<String, Variant>,
}

impl BenchFile for Fleet {
    const NAME: &'static str = "fleet";
    fn run(&self) -> &Run {
        &self.run
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    pub hosts: Option<f64>,
    pub outage_secs: Option<f64>,
    pub capacity_per_sec: Option<f64>,
    pub budget_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Variant {
    pub peak_requests_per_sec: Option<f64>,
    /// [`PEAK_OVER_CAPACITY`].
    pub peak_over_capacity: Option<f64>,
    pub backlog_at_up: Option<f64>,
    pub ideal_drain_secs: Option<f64>,
    pub drained_secs: Option<f64>,
    /// [`DRAINED_OVER_IDEAL`]; `None`: never emptied.
    pub drained_over_ideal: Option<f64>,
    pub added_p99_ms: Option<f64>,
    pub network_max_ms: Option<f64>,
}
