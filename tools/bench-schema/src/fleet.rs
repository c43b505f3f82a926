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

/// Written whole by the fleet bench from these structs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fleet {
    #[serde(flatten)]
    pub run: Run,
    pub params: Option<Params>,
    /// By variant: `background`, `inline`, `no_jitter`.
    pub variants: BTreeMap<String, Variant>,
    /// The bench's own verdicts, as it printed them.
    pub targets: Vec<Verdict>,
}

impl BenchFile for Fleet {
    const NAME: &'static str = "fleet";
    fn run(&self) -> &Run {
        &self.run
    }
}

/// The simulated fleet and backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    pub hosts: Option<u64>,
    pub hook_period_secs: Option<u64>,
    pub outage_secs: Option<u64>,
    pub capacity_per_sec: Option<u64>,
    pub retry_after_secs: Option<u64>,
    /// Each hook's budget: [`NETWORK_MAX_MS`]'s aim.
    pub budget_ms: Option<u64>,
    pub drain_budget_secs: Option<u64>,
    pub seed: Option<u64>,
}

/// The recovery under one variant, from the moment the backend is up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Variant {
    pub peak_requests_per_sec: Option<u64>,
    /// [`PEAK_OVER_CAPACITY`].
    pub peak_over_capacity: Option<f64>,
    /// Batches spooled across the fleet when the backend came up.
    pub backlog_at_up: Option<u64>,
    pub ideal_drain_secs: Option<f64>,
    /// `None`: never emptied within the simulated time.
    pub drained_secs: Option<f64>,
    /// [`DRAINED_OVER_IDEAL`].
    pub drained_over_ideal: Option<f64>,
    pub hooks_in_recovery: Option<u64>,
    pub added_p50_ms: Option<f64>,
    /// [`ADDED_P99_MS`].
    pub added_p99_ms: Option<f64>,
    pub added_max_ms: Option<f64>,
    /// [`NETWORK_MAX_MS`].
    pub network_max_ms: Option<f64>,
}

/// One line of the bench's table of targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Verdict {
    pub name: String,
    pub value: String,
    pub target: String,
    pub met: bool,
}
