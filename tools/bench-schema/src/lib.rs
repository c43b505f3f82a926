//! The figures tracespool's benches write to `target/bench-report/<bench>.json`, typed, and read
//! back by `tools/bench-report`. The drain and fleet benches write their files from these
//! structs; the spool, delivery, exec and serve benches, which write much more (samples, setup),
//! check before writing that their JSON reads back as them.
//!
//! Each module is one bench's file. Every field is optional, so that a file missing a figure
//! reads as "not measured" rather than failing. Each target is stated here once, next to the
//! figure it judges: the bench prints its verdict against it and the report marks it MET or
//! MISSED.

pub mod delivery;
pub mod drain;
pub mod exec;
pub mod fleet;
pub mod serve;
pub mod spool;

use serde::{Deserialize, Serialize};

/// Which side of its aim a figure must be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    AtLeast,
    AtMost,
}

/// A target: the figure it judges (`what`, as the report names it), the value aimed at, and
/// which side of it is good.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub what: &'static str,
    pub aim: f64,
    pub direction: Direction,
}

impl Target {
    pub const fn at_least(what: &'static str, aim: f64) -> Target {
        Target {
            what,
            aim,
            direction: Direction::AtLeast,
        }
    }

    pub const fn at_most(what: &'static str, aim: f64) -> Target {
        Target {
            what,
            aim,
            direction: Direction::AtMost,
        }
    }

    /// The same target with another aim (one that depends on the run, e.g. a budget).
    pub const fn aiming(self, aim: f64) -> Target {
        Target { aim, ..self }
    }

    /// Whether `value` meets the target (the aim itself does).
    pub fn holds(&self, value: f64) -> bool {
        match self.direction {
            Direction::AtLeast => value >= self.aim,
            Direction::AtMost => value <= self.aim,
        }
    }

    /// `≥` or `≤`.
    pub fn op(&self) -> &'static str {
        match self.direction {
            Direction::AtLeast => "≥",
            Direction::AtMost => "≤",
        }
    }
}

/// What every bench file says about its run: the machine, the load, how long it took, and
/// whether it was a smoke run (whose figures mean nothing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Run {
    #[serde(skip_serializing_if = "is_false")]
    pub quick: bool,
    #[serde(alias = "total_seconds", skip_serializing_if = "Option::is_none")]
    pub total_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<Machine>,
    /// Where a bench records the load at its end outside `machine`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_at_end: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Run {
    pub fn load_at_start(&self) -> Option<&str> {
        self.machine.as_ref()?.load_at_start.as_deref()
    }

    pub fn load_at_end(&self) -> Option<&str> {
        self.machine
            .as_ref()
            .and_then(|m| m.load_at_end.as_deref())
            .or(self.load_at_end.as_deref())
    }
}

/// The machine a bench ran on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    pub cpus: Option<u64>,
    pub cpu_model: Option<String>,
    pub mem_total: Option<String>,
    pub kernel: Option<String>,
    pub filesystem: Option<Filesystem>,
    /// Where the bench made its spools.
    pub bench_dir: Option<String>,
    pub dirty_background_ratio_and_dirty_ratio: Option<String>,
    #[serde(alias = "load_start", skip_serializing_if = "Option::is_none")]
    pub load_at_start: Option<String>,
    #[serde(alias = "load_end", skip_serializing_if = "Option::is_none")]
    pub load_at_end: Option<String>,
}

impl Machine {
    /// This machine's facts, each filled in from `other` where this one lacks it (the load is
    /// per bench and is not merged).
    pub fn or(self, other: &Machine) -> Machine {
        Machine {
            cpus: self.cpus.or(other.cpus),
            cpu_model: self.cpu_model.or_else(|| other.cpu_model.clone()),
            mem_total: self.mem_total.or_else(|| other.mem_total.clone()),
            kernel: self.kernel.or_else(|| other.kernel.clone()),
            filesystem: self.filesystem.or_else(|| other.filesystem.clone()),
            bench_dir: self.bench_dir.or_else(|| other.bench_dir.clone()),
            dirty_background_ratio_and_dirty_ratio: self
                .dirty_background_ratio_and_dirty_ratio
                .or_else(|| other.dirty_background_ratio_and_dirty_ratio.clone()),
            load_at_start: None,
            load_at_end: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filesystem {
    pub device: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub mounted_on: Option<String>,
}

/// A bench's file as the report reads it.
pub trait BenchFile: Serialize + serde::de::DeserializeOwned {
    /// The file's name without `.json`.
    const NAME: &'static str;
    fn run(&self) -> &Run;
}

/// Checks that `json` (what a bench is about to write) reads back as `F`: a figure written with
/// another type than the report reads fails the bench that writes it, not the report later.
pub fn check<F: BenchFile>(json: &serde_json::Value) -> Result<F, serde_json::Error> {
    serde_json::from_value(json.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::exec::Exec;
    use super::spool::Spool;
    use super::*;

    #[test]
    fn a_figure_written_with_another_type_fails_the_check() {
        let bad = json!({"small_appends_per_sec_never": "fast"});
        assert!(check::<Spool>(&bad).is_err());
        let good = json!({"small_appends_per_sec_never": 123456.0, "anything": "else"});
        let spool = check::<Spool>(&good).expect("extra keys are the bench's own");
        assert_eq!(spool.small_appends_per_sec_never, Some(123456.0));
    }

    #[test]
    fn the_run_reads_each_spelling_the_benches_use() {
        let exec = check::<Exec>(&json!({
            "total_seconds": 12.0,
            "machine": {"cpus": 2, "load_start": "a", "load_end": "b"},
        }))
        .expect("exec.json's spelling");
        assert_eq!(exec.run().total_secs, Some(12.0));
        assert_eq!(
            (exec.run().load_at_start(), exec.run().load_at_end()),
            (Some("a"), Some("b"))
        );
        let spool = check::<Spool>(&json!({
            "machine": {"load_at_start": "a"},
            "load_at_end": "c",
        }))
        .expect("spool.json's spelling");
        assert_eq!(spool.run().load_at_end(), Some("c"));
    }

    #[test]
    fn a_target_holds_at_its_aim_and_on_its_side() {
        let t = Target::at_most("x", 5.0);
        assert!(t.holds(5.0) && t.holds(4.9) && !t.holds(5.1));
        let t = Target::at_least("y", 0.8).aiming(0.9);
        assert!(t.holds(0.9) && !t.holds(0.85));
        assert_eq!(t.op(), "≥");
    }
}
