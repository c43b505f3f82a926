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

/// Written whole by the drain bench from these structs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Drain {
    #[serde(flatten)]
    pub run: Run,
    /// The backlog in front of each hook: a spool filled to this bound.
    pub backlog_bytes: Option<u64>,
    pub hook: Option<Hook>,
    pub throughput: Option<Throughput>,
}

impl BenchFile for Drain {
    const NAME: &'static str = "drain";
    fn run(&self) -> &Run {
        &self.run
    }
}

/// `exec -- true` in front of the backlog and in front of an empty spool, interleaved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hook {
    pub rounds: Option<u64>,
    /// Wall times, one per round.
    pub backlog_ms: Vec<f64>,
    pub empty_ms: Vec<f64>,
    /// Wall times with `--drain inline`, which delivers the backlog within the hook.
    pub inline_ms: Vec<f64>,
    /// How long each round waited for the drain it started to finish (not timed).
    pub drain_wait_secs: Vec<f64>,
    pub backlog_median_ms: Option<f64>,
    pub empty_median_ms: Option<f64>,
    /// [`HOOK_ADDED_MS`]: the difference of the medians.
    pub added_ms: Option<f64>,
    pub target_added_ms: Option<f64>,
    pub met: Option<bool>,
}

/// The same backlog emptied by `flush` and by the drain an `exec` starts, alternately.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throughput {
    pub batches: Option<u64>,
    pub flush_secs: Vec<f64>,
    pub drain_secs: Vec<f64>,
    pub flush_batches_per_sec: Option<f64>,
    pub drain_batches_per_sec: Option<f64>,
    /// [`THROUGHPUT_RATIO`]: the ratio of the medians.
    pub ratio: Option<f64>,
    pub target_ratio: Option<f64>,
    pub met: Option<bool>,
}
