//! `exec.json`: the hook wrapper, `tracespool exec` (section 3/5).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{BenchFile, Run, Target};

/// The median wall time of `tracespool exec -- true` minus that of `true`, in ms, per backend
/// state: (the case's key in `cases`, its target, its short name on the plot).
pub const OVERHEAD: [(&str, Target, &str); 5] = [
    (
        "no_endpoint",
        Target::at_most("exec overhead: no endpoint", 1.5),
        "no endpoint",
    ),
    (
        "refused",
        Target::at_most("exec overhead: endpoint refuses", 5.0),
        "refused",
    ),
    (
        "backoff_open",
        Target::at_most("exec overhead: backoff open", 1.5),
        "backoff open",
    ),
    (
        "rotel_up",
        Target::at_most("exec overhead: rotel up", 10.0),
        "rotel up",
    ),
    (
        "hang_backoff",
        Target::at_most(
            "exec overhead: hanging server, runs after the first (in backoff)",
            2.0,
        ),
        "hang, in backoff",
    ),
];

/// The overhead target of the case `key`, if it has one.
pub fn overhead_target(key: &str) -> Option<Target> {
    OVERHEAD
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, t, _)| *t)
}

/// A hook's first run against a hanging server: how far past its budget it returns, in ms
/// (every run, and so the median and the worst one).
pub const HANG_OVER_BUDGET: Target = Target::at_most("hang, first run: median − budget", 50.0);
pub const HANG_WORST_OVER_BUDGET: Target =
    Target::at_most("hang, first run: worst run − budget", HANG_OVER_BUDGET.aim);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Exec {
    #[serde(flatten)]
    pub run: Run,
    /// By case key (`true`, `no_endpoint`, …).
    pub cases: BTreeMap<String, Case>,
    /// By budget (`500ms`, …).
    pub hang_first_run: BTreeMap<String, HangFirstRun>,
    /// `false` when one of the bench's correctness checks failed.
    pub checks_ok: Option<bool>,
}

impl BenchFile for Exec {
    const NAME: &'static str = "exec";
    fn run(&self) -> &Run {
        &self.run
    }
}

/// One way of running `true`: directly, or through `tracespool exec` in one backend state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Case {
    pub median_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    /// The median minus that of `true` spawned directly.
    pub overhead_ms: Option<f64>,
    pub paired_overhead_ms: Option<f64>,
    pub cpu_median_ms: Option<f64>,
}

/// The first runs of a hook against a hanging server, with one `--budget`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HangFirstRun {
    pub n: Option<f64>,
    pub budget_ms: Option<f64>,
    pub median_ms: Option<f64>,
    /// [`HANG_OVER_BUDGET`].
    pub over_budget_median_ms: Option<f64>,
    /// [`HANG_WORST_OVER_BUDGET`].
    pub over_budget_max_ms: Option<f64>,
}
