//! `status` and `flush`: what the spool holds, and delivering it now.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use super::{CliError, current_thread, say};
use crate::config::Config;
use crate::delivery::{DeliveryStatus, Mode};
use crate::hook::open_delivery;
use crate::spool::{Stats, VerifyReport};
use crate::transport::shown;

#[derive(Debug, serde::Serialize)]
struct StatusJson {
    spool_dir: String,
    endpoint: Option<String>,
    batches: u64,
    spans: u64,
    bytes: u64,
    max_bytes: u64,
    max_spans: Option<u64>,
    oldest_age_seconds: Option<f64>,
    dropped_batches: u64,
    dropped_spans: u64,
    rejected_spans: u64,
    torn_records: u64,
    quarantine_bytes: u64,
    backend: &'static str,
    retry_at: Option<f64>,
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    corrupt_records: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsupported_segments: Option<Vec<String>>,
}

/// "1 batch (3 spans)", "2 batches (1 span)".
fn batches(batches: u64, spans: u64) -> String {
    let s = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{} ({})",
        s(batches, "batch", "batches"),
        s(spans, "span", "spans")
    )
}

pub(super) fn flush(config: &Config) -> Result<ExitCode, CliError> {
    let delivery = open_delivery(config)?;
    let runtime = current_thread()?;
    // A bar on stderr when it is a terminal; indicatif draws nothing otherwise.
    let bar = indicatif::ProgressBar::new(delivery.spool().stats()?.batches);
    bar.set_style(
        indicatif::ProgressStyle::with_template("flushing {bar:30} {pos}/{len} batches {elapsed}")
            .expect("a valid template"),
    );
    let shown = bar.clone();
    let progress = move |done: u64| shown.set_position(done);
    let report = runtime.block_on(delivery.flush(Mode::Explicit, Some(&progress)));
    // Nothing of ours is worth waiting for at exit (a resolver thread, say).
    runtime.shutdown_background();
    bar.finish_and_clear();
    let report = report?;
    let mut line = format!(
        "flushed {}",
        batches(report.sent_batches, report.sent_spans)
    );
    if report.dead_lettered > 0 {
        line += &format!(
            "; {} rejected as bad data (kept in the dead-letter area)",
            report.dead_lettered
        );
    }
    let left = if report.remaining {
        delivery.spool().stats()?
    } else {
        Stats::default()
    };
    if left.batches == 0 {
        say!("{line}; nothing remains");
        return Ok(ExitCode::SUCCESS);
    }
    let why = report
        .stopped
        .map_or_else(|| "stopped".to_owned(), |s| s.to_string());
    say!(
        "{line}; {} remain: {why}",
        batches(left.batches, left.spans)
    );
    Ok(ExitCode::from(1))
}

pub(super) fn status(config: &Config, json: bool, verify: bool) -> Result<ExitCode, CliError> {
    let delivery = open_delivery(config)?;
    let spool = delivery.spool();
    let stats = spool.stats()?;
    let backend = delivery.status();
    let report = if verify { Some(spool.verify()?) } else { None };
    let corrupt = report.as_ref().map_or(0, |r| r.corrupt_records);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(
            &mut out,
            &status_json(config, &stats, &backend, report.as_ref()),
        )?;
        writeln!(out)?;
    } else {
        write_status(&mut out, config, &stats, &backend, report.as_ref())?;
    }
    out.flush()?;
    Ok(if corrupt > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn age_seconds(t: Option<SystemTime>) -> Option<f64> {
    t.map(|t| {
        SystemTime::now()
            .duration_since(t)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

fn status_json(
    config: &Config,
    stats: &Stats,
    backend: &DeliveryStatus,
    report: Option<&VerifyReport>,
) -> StatusJson {
    StatusJson {
        spool_dir: config.spool_dir.display().to_string(),
        endpoint: config.delivery.endpoint.as_ref().map(shown),
        batches: stats.batches,
        spans: stats.spans,
        bytes: stats.bytes,
        max_bytes: config.spool.max_bytes,
        max_spans: config.spool.max_spans,
        oldest_age_seconds: age_seconds(stats.oldest_write),
        dropped_batches: stats.dropped_batches,
        dropped_spans: stats.dropped_spans,
        rejected_spans: stats.rejected_spans,
        torn_records: stats.torn_records,
        quarantine_bytes: stats.quarantine_bytes,
        backend: backend.backend,
        retry_at: backend.retry_at,
        last_error: backend.last_error.clone(),
        corrupt_records: report.map(|r| r.corrupt_records),
        unsupported_segments: report.map(|r| {
            r.unsupported_segments
                .iter()
                .map(|p| p.display().to_string())
                .collect()
        }),
    }
}

fn write_status(
    out: &mut impl Write,
    config: &Config,
    stats: &Stats,
    backend: &DeliveryStatus,
    report: Option<&VerifyReport>,
) -> std::io::Result<()> {
    writeln!(out, "spool      {}", config.spool_dir.display())?;
    write!(
        out,
        "holds      {} batches, {} spans, {} bytes of {}",
        stats.batches, stats.spans, stats.bytes, config.spool.max_bytes
    )?;
    match age_seconds(stats.oldest_write) {
        Some(age) => writeln!(out, "; oldest {age:.0}s old")?,
        None => writeln!(out)?,
    }
    match &config.delivery.endpoint {
        None => writeln!(out, "backend    no endpoint configured: spooling only")?,
        Some(endpoint) => {
            write!(out, "backend    {}: {}", shown(endpoint), backend.backend)?;
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            match backend.retry_at.filter(|t| *t > now) {
                Some(t) => writeln!(out, ", next attempt in {:.0}s", t - now)?,
                None => writeln!(out)?,
            }
            if let Some(e) = &backend.last_error {
                writeln!(out, "last error {e}")?;
            }
        }
    }
    if stats.dropped_batches > 0 || stats.rejected_spans > 0 {
        writeln!(
            out,
            "lost       {} batches ({} spans) dropped by the bound, {} spans rejected",
            stats.dropped_batches, stats.dropped_spans, stats.rejected_spans
        )?;
    }
    if let Some(r) = report {
        writeln!(
            out,
            "verify     {} records, {} corrupt, {} torn{}",
            r.records,
            r.corrupt_records,
            r.torn_records,
            if r.unsupported_segments.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} segments of a newer format left alone",
                    r.unsupported_segments.len()
                )
            }
        )?;
    }
    Ok(())
}
