//! `spool.json`: append, read and disk (section 1/5), and compression at rest.

use serde::{Deserialize, Serialize};

use crate::{BenchFile, Run, Target};

/// 64 KiB appends under sync Never against `write_all` + fsync of the same bytes.
pub const RAW_DISK_RATIO: Target = Target::at_least(
    "64 KiB append throughput (Never) / raw disk bandwidth",
    0.80,
);
pub const SMALL_APPENDS_PER_SEC: Target = Target::at_least("1 KiB appends/s (Never)", 100_000.0);
/// Median latency of a 1 KiB append into a 1 GiB spool over that into an empty one.
pub const LATENCY_RATIO: Target =
    Target::at_most("1 KiB append median latency, 1 GiB spool / empty", 1.2);
/// VmHWM of the process reading 1 GiB, in MiB.
pub const PEAK_RSS_MIB: Target = Target::at_most("peak RSS reading 1 GiB", 32.0);
/// Spans a 64 MiB spool holds of a typical batch, gzip over none.
pub const HELD_RATIO: Target = Target::at_least("spans held by 64 MiB, gzip / none", 3.0);
/// Compression at rest must not cost the 1 KiB append rate its target.
pub const GZIP_APPENDS_PER_SEC: Target = Target::at_least(
    "1 KiB typical appends/s (Never, gzip)",
    SMALL_APPENDS_PER_SEC.aim,
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Spool {
    #[serde(flatten)]
    pub run: Run,
    pub append_throughput: Vec<AppendCase>,
    pub raw_disk: Option<RawDisk>,
    pub small_appends_per_sec_never: Option<f64>,
    pub latency_1k_never: Option<Latency>,
    pub read: Option<Read>,
    pub compression: Option<Compression>,
}

impl BenchFile for Spool {
    const NAME: &'static str = "spool";
    fn run(&self) -> &Run {
        &self.run
    }
}

/// Appends of one payload size under one sync policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppendCase {
    /// `Never` or `Always`.
    pub sync: String,
    pub payload_bytes: u64,
    pub mib_per_sec: Option<f64>,
    pub batches_per_sec: Option<f64>,
    pub us_per_append: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawDisk {
    pub device: Option<Bandwidth>,
    pub page_cache: Option<Bandwidth>,
    /// [`RAW_DISK_RATIO`]: the median of the per-repetition ratios.
    pub ratio_64k_never_to_raw_disk: Option<f64>,
    pub ratio_64k_never_to_raw_disk_device: Option<f64>,
    pub ratio_64k_never_to_raw_page_cache: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bandwidth {
    pub raw_mib_per_sec: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub empty: Option<Distribution>,
    pub full: Option<Distribution>,
    pub full_spool_bytes: Option<f64>,
    /// [`LATENCY_RATIO`].
    pub median_ratio_full_to_empty: Option<f64>,
    /// One point per spool size, 0 … 1 GiB (absent from an older file, which has only the
    /// empty and the full spool).
    pub by_spool_size: Option<Vec<LatencyPoint>>,
}

/// Append latency at one spool size, and that of a fresh empty spool timed in the same rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyPoint {
    pub target_bytes: Option<f64>,
    pub spool_bytes: Option<f64>,
    pub latency: Option<Distribution>,
    pub empty: Option<Distribution>,
}

/// Percentiles of a latency, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Distribution {
    pub p50_ns: Option<f64>,
    pub p99_ns: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Read {
    pub mib_per_sec: Option<f64>,
    pub records_per_sec: Option<f64>,
    pub raw_read_mib_per_sec: Option<f64>,
    /// [`PEAK_RSS_MIB`], in KiB.
    pub peak_rss_kib: Option<f64>,
}

/// Compression at rest: a typical batch of spans, and 1 KiB appends with and without gzip.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Compression {
    pub typical_batch_spans: Option<u64>,
    pub typical_batch_bytes: Option<f64>,
    pub typical_batch_gzip_bytes: Option<f64>,
    pub spans_held_64mib_none: Option<f64>,
    pub spans_held_64mib_gzip: Option<f64>,
    /// [`HELD_RATIO`].
    pub held_ratio: Option<f64>,
    /// [`GZIP_APPENDS_PER_SEC`] is `gzip_median` of the typical batch.
    pub small_appends_never_typical: Option<AppendRates>,
    pub small_appends_never_noise: Option<AppendRates>,
}

/// Medians of 1 KiB appends per second, stored as they are and gzip-compressed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppendRates {
    pub none_median: Option<f64>,
    pub gzip_median: Option<f64>,
}
