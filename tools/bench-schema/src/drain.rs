//! `drain.json`: a hook that leaves its backlog to a background drainer.

use serde::{Deserialize, Serialize};

use crate::{BenchFile, Run, Target};

/// What a backlog adds to a hook's wall time with the background drain (median over median
/// with an empty spool), in ms.
pub const HOOK_ADDED_MS: Target = Target::at_most(
    "hook time added by a 64 MiB backlog (drain in background)",
    5.0,
);
/// Batches per second the background drainers deliver over those one flush delivers.
pub const THROUGHPUT_RATIO: Target =
    Target::at_least("background drain throughput / flush throughput", 0.8);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Drain {
    #[serde(flatten)]
    pub run: Run,
    pub backlog_bytes: Option<f64>,
    pub hook: Option<Hook>,
    pub throughput: Option<Throughput>,
}

impl BenchFile for Drain {
    const NAME: &'static str = "drain";
    fn run(&self) -> &Run {
        &self.run
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hook {
    pub rounds: Option<f64>,
    pub backlog_median_ms: Option<f64>,
    pub empty_median_ms: Option<f64>,
    /// [`HOOK_ADDED_MS`].
    pub added_ms: Option<f64>,
    /// Wall times with `--drain inline`, which delivers the backlog within the hook.
    pub inline_ms: Vec<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throughput {
    pub batches: Option<f64>,
    pub flush_batches_per_sec: Option<f64>,
    pub drain_batches_per_sec: Option<f64>,
    /// [`THROUGHPUT_RATIO`].
    pub ratio: Option<f64>,
}
