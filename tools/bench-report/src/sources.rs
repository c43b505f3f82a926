//! The files the report reads: each bench's JSON, and `run.json` (written by
//! `.ci/bench-report` when the run started).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bench_schema::delivery::Delivery;
use bench_schema::drain::Drain;
use bench_schema::exec::Exec;
use bench_schema::fleet::Fleet;
use bench_schema::serve::Serve;
use bench_schema::spool::Spool;
use bench_schema::{BenchFile, Run};
use serde::{Deserialize, Serialize};

use crate::format::{unix_secs, utc};

/// `run.json`: one `.ci/bench-report` run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunFile {
    pub started_unix: Option<f64>,
    pub commit: Option<String>,
    pub dirty: Option<bool>,
    pub command: Option<String>,
}

impl RunFile {
    pub fn load(dir: &Path) -> Option<RunFile> {
        serde_json::from_str(&fs::read_to_string(dir.join("run.json")).ok()?).ok()
    }
}

/// What the report says of a bench's file, whatever the bench.
pub struct Meta {
    pub name: &'static str,
    pub path: PathBuf,
    /// Why there is no figure from this file (missing, unparsable).
    pub error: Option<String>,
    pub modified: Option<SystemTime>,
    /// Written before `run.json`'s start: left over from an earlier run.
    pub stale: bool,
    /// The file's own account of its run (default when there is no file).
    pub run: Run,
}

impl Meta {
    pub fn present(&self) -> bool {
        self.error.is_none()
    }

    pub fn status_line(&self) -> String {
        match &self.error {
            None => format!(
                "{} written {}{}{}",
                self.path.display(),
                self.modified.map_or("?".into(), utc),
                if self.stale {
                    " (STALE: before this run started)"
                } else {
                    ""
                },
                if self.run.quick { " (QUICK run)" } else { "" }
            ),
            Some(e) => format!("not measured ({e})"),
        }
    }
}

/// One bench's file: `file` is `None` when it is missing or unreadable.
pub struct Loaded<F> {
    pub meta: Meta,
    pub file: Option<F>,
}

impl<F: BenchFile> Loaded<F> {
    pub fn load(dir: &Path, run: Option<&RunFile>) -> Loaded<F> {
        let path = dir.join(format!("{}.json", F::NAME));
        let modified = fs::metadata(&path).and_then(|m| m.modified()).ok();
        let (file, error) = match fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str::<F>(&text) {
                Ok(f) => (Some(f), None),
                Err(e) => (None, Some(format!("unreadable: {e}"))),
            },
            Err(e) => (None, Some(format!("missing: {e}"))),
        };
        let stale = match (modified, run.and_then(|r| r.started_unix)) {
            (Some(m), Some(s)) => unix_secs(m) < s,
            _ => false,
        };
        let run = file.as_ref().map(|f| f.run().clone()).unwrap_or_default();
        Loaded {
            meta: Meta {
                name: F::NAME,
                path,
                error,
                modified,
                stale,
                run,
            },
            file,
        }
    }
}

/// Every file the report reads.
pub struct Sources {
    pub run: Option<RunFile>,
    pub spool: Loaded<Spool>,
    pub delivery: Loaded<Delivery>,
    pub exec: Loaded<Exec>,
    pub serve: Loaded<Serve>,
    pub drain: Loaded<Drain>,
    pub fleet: Loaded<Fleet>,
}

impl Sources {
    pub fn load(dir: &Path) -> Sources {
        let run = RunFile::load(dir);
        let r = run.as_ref();
        Sources {
            spool: Loaded::load(dir, r),
            delivery: Loaded::load(dir, r),
            exec: Loaded::load(dir, r),
            serve: Loaded::load(dir, r),
            drain: Loaded::load(dir, r),
            fleet: Loaded::load(dir, r),
            run,
        }
    }

    /// The benches' files, in the order of the report.
    pub fn metas(&self) -> [&Meta; 6] {
        [
            &self.spool.meta,
            &self.delivery.meta,
            &self.exec.meta,
            &self.serve.meta,
            &self.drain.meta,
            &self.fleet.meta,
        ]
    }
}
