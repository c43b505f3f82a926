//! `status` and `flush`: what the spool holds, and delivering it now.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use super::{CliError, current_thread, say};
use crate::config::Config;
use crate::delivery::{Deliveries, DeliveryStatus, Mode, Report};
use crate::hook::open_deliveries;
use crate::signal::Signal;
use crate::spool::{Stats, VerifyReport};
use crate::transport::shown;
use crate::units::format_size;

/// One signal, for `status`.
#[derive(Debug, Default)]
struct SignalView {
    endpoint: Option<String>,
    stats: Stats,
    backend: Option<DeliveryStatus>,
}

impl SignalView {
    fn backend(&self) -> &'static str {
        self.backend.as_ref().map_or(
            if self.endpoint.is_some() {
                "unknown"
            } else {
                "no_endpoint"
            },
            |b| b.backend,
        )
    }
}

/// Each signal's spool and backend, without creating a spool that does not exist.
fn views(deliveries: &Deliveries) -> Result<Vec<(Signal, SignalView)>, CliError> {
    let mut views = Vec::with_capacity(3);
    for signal in Signal::ALL {
        let endpoint = deliveries.settings()[signal].endpoint.as_ref().map(shown);
        let view = match deliveries.existing(signal)? {
            Some(delivery) => SignalView {
                endpoint,
                stats: delivery.spool().stats()?,
                backend: Some(delivery.status()),
            },
            None => SignalView {
                endpoint,
                ..SignalView::default()
            },
        };
        views.push((signal, view));
    }
    Ok(views)
}

#[derive(Debug, serde::Serialize)]
struct SignalJson {
    endpoint: Option<String>,
    batches: u64,
    bytes: u64,
    disk_bytes: u64,
    backend: &'static str,
    retry_at: Option<f64>,
    last_error: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct StatusJson {
    spool_dir: String,
    endpoint: Option<String>,
    batches: u64,
    spans: u64,
    data_points: u64,
    log_records: u64,
    /// What is still to deliver, as stored.
    bytes: u64,
    /// What the data files take.
    disk_bytes: u64,
    max_bytes: u64,
    max_spans: Option<u64>,
    oldest_age_seconds: Option<f64>,
    dropped_batches: u64,
    dropped_spans: u64,
    dropped_data_points: u64,
    dropped_log_records: u64,
    /// Of the dropped batches, those dropped for being older than `max_age`.
    expired_batches: u64,
    max_age_seconds: Option<f64>,
    rejected_spans: u64,
    rejected_data_points: u64,
    rejected_log_records: u64,
    torn_records: u64,
    quarantine_bytes: u64,
    backend: &'static str,
    retry_at: Option<f64>,
    last_error: Option<String>,
    signals: std::collections::BTreeMap<&'static str, SignalJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    corrupt_records: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsupported_segments: Option<Vec<String>>,
}

/// `n` with the singular or plural of its unit: "1 batch", "2 batches".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Seconds for people: `42s`, `3m 5s`, `2h 10m`, `3d 4h`.
fn format_age(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `n` items of `signal`: "1 span", "3 data points", "2 log records".
fn items(n: u64, signal: Signal) -> String {
    let one = signal.item();
    count(n, one, &format!("{one}s"))
}

/// "1 batch (3 spans)", "2 batches (1 span, 4 data points)": the items of every signal that
/// has some (of the first signal when none has: "0 batches (0 data points)").
fn batches(batches: u64, by_signal: &[(Signal, u64)]) -> String {
    let mut parts: Vec<String> = by_signal
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|&(signal, n)| items(n, signal))
        .collect();
    if parts.is_empty() {
        let signal = by_signal.first().map_or(Signal::Traces, |(s, _)| *s);
        parts.push(items(0, signal));
    }
    format!(
        "{} ({})",
        count(batches, "batch", "batches"),
        parts.join(", ")
    )
}

pub(super) fn flush(config: &Config) -> Result<ExitCode, CliError> {
    let deliveries = open_deliveries(config)?;
    let runtime = current_thread()?;
    let waiting: u64 = views(&deliveries)?
        .iter()
        .map(|(_, v)| v.stats.batches)
        .sum();
    // A bar on stderr when it is a terminal; indicatif draws nothing otherwise.
    let bar = indicatif::ProgressBar::new(waiting);
    bar.set_style(
        indicatif::ProgressStyle::with_template("flushing {bar:30} {pos}/{len} batches {elapsed}")
            .expect("a valid template"),
    );
    let shown = bar.clone();
    let progress = move |done: u64| shown.set_position(done);
    let reports = runtime.block_on(deliveries.flush(Mode::Explicit, Some(&progress)));
    // Nothing of ours is worth waiting for at exit (a resolver thread, say).
    runtime.shutdown_background();
    bar.finish_and_clear();
    let mut done: Vec<(Signal, Report)> = Vec::with_capacity(reports.len());
    for (signal, report) in reports {
        done.push((signal, report?));
    }
    let sent: u64 = done.iter().map(|(_, r)| r.sent_batches).sum();
    let sent_items: Vec<(Signal, u64)> = done.iter().map(|(s, r)| (*s, r.sent_spans)).collect();
    let mut line = format!("flushed {}", batches(sent, &sent_items));
    let dead: u64 = done.iter().map(|(_, r)| r.dead_lettered).sum();
    if dead > 0 {
        line += &format!("; {dead} rejected as bad data (kept in the dead-letter area)");
    }
    let mut left = 0;
    let mut left_items = Vec::new();
    let mut why = Vec::new();
    for (signal, report) in &done {
        if !report.remaining {
            continue;
        }
        let stats = deliveries.get(*signal)?.spool().stats()?;
        if stats.batches == 0 {
            continue;
        }
        left += stats.batches;
        left_items.push((*signal, stats.spans));
        let stop = report
            .stopped
            .as_ref()
            .map_or_else(|| "stopped".to_owned(), ToString::to_string);
        why.push(if done.len() == 1 {
            stop
        } else {
            format!("{signal}: {stop}")
        });
    }
    if left == 0 {
        say!("{line}; nothing remains");
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{line}; {} remain: {}",
        batches(left, &left_items),
        why.join("; ")
    );
    Ok(ExitCode::from(1))
}

pub(super) fn status(config: &Config, json: bool, verify: bool) -> Result<ExitCode, CliError> {
    let deliveries = open_deliveries(config)?;
    let views = views(&deliveries)?;
    let report = if verify {
        let mut total = VerifyReport::default();
        for signal in Signal::ALL {
            if let Some(lane) = deliveries.store().existing(signal)? {
                let r = lane.verify()?;
                total.records += r.records;
                total.corrupt_records += r.corrupt_records;
                total.torn_records += r.torn_records;
                total.unsupported_segments.extend(r.unsupported_segments);
            }
        }
        Some(total)
    } else {
        None
    };
    let corrupt = report.as_ref().map_or(0, |r| r.corrupt_records);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &status_json(config, &views, report.as_ref()))?;
        writeln!(out)?;
    } else {
        write_status(&mut out, config, &views, report.as_ref())?;
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
    views: &[(Signal, SignalView)],
    report: Option<&VerifyReport>,
) -> StatusJson {
    let of = |signal: Signal| {
        &views
            .iter()
            .find(|(s, _)| *s == signal)
            .expect("every signal")
            .1
    };
    let (traces, metrics, logs) = (of(Signal::Traces), of(Signal::Metrics), of(Signal::Logs));
    let sum = |f: fn(&Stats) -> u64| views.iter().map(|(_, v)| f(&v.stats)).sum::<u64>();
    let oldest = views.iter().filter_map(|(_, v)| v.stats.oldest_write).min();
    let signals = views
        .iter()
        .map(|(signal, v)| {
            let backend = v.backend.as_ref();
            (
                signal.as_str(),
                SignalJson {
                    endpoint: v.endpoint.clone(),
                    batches: v.stats.batches,
                    bytes: v.stats.bytes,
                    disk_bytes: v.stats.disk_bytes,
                    backend: v.backend(),
                    retry_at: backend.and_then(|b| b.retry_at),
                    last_error: backend.and_then(|b| b.last_error.clone()),
                },
            )
        })
        .collect();
    StatusJson {
        spool_dir: config.spool_dir.display().to_string(),
        endpoint: traces.endpoint.clone(),
        batches: sum(|s| s.batches),
        spans: traces.stats.spans,
        data_points: metrics.stats.spans,
        log_records: logs.stats.spans,
        bytes: sum(|s| s.bytes),
        disk_bytes: sum(|s| s.disk_bytes),
        max_bytes: config.spool.max_bytes,
        max_spans: config.spool.max_spans,
        oldest_age_seconds: age_seconds(oldest),
        dropped_batches: sum(|s| s.dropped_batches),
        dropped_spans: traces.stats.dropped_spans,
        dropped_data_points: metrics.stats.dropped_spans,
        dropped_log_records: logs.stats.dropped_spans,
        expired_batches: sum(|s| s.expired_batches),
        max_age_seconds: config.spool.max_age.map(|d| d.as_secs_f64()),
        rejected_spans: traces.stats.rejected_spans,
        rejected_data_points: metrics.stats.rejected_spans,
        rejected_log_records: logs.stats.rejected_spans,
        torn_records: sum(|s| s.torn_records),
        quarantine_bytes: sum(|s| s.quarantine_bytes),
        backend: traces.backend(),
        retry_at: traces.backend.as_ref().and_then(|b| b.retry_at),
        last_error: traces.backend.as_ref().and_then(|b| b.last_error.clone()),
        signals,
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
    views: &[(Signal, SignalView)],
    report: Option<&VerifyReport>,
) -> std::io::Result<()> {
    writeln!(out, "spool      {}", config.spool_dir.display())?;
    let bytes: u64 = views.iter().map(|(_, v)| v.stats.bytes).sum();
    let disk: u64 = views.iter().map(|(_, v)| v.stats.disk_bytes).sum();
    write!(
        out,
        "holds      {} of {}",
        format_size(bytes),
        format_size(config.spool.max_bytes)
    )?;
    if disk != bytes {
        write!(out, " ({} on disk)", format_size(disk))?;
    }
    writeln!(out)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for (signal, view) in views {
        let stats = &view.stats;
        write!(
            out,
            "{:<10} {}",
            signal.as_str(),
            batches(stats.batches, &[(*signal, stats.spans)])
        )?;
        if let Some(age) = age_seconds(stats.oldest_write) {
            write!(out, ", oldest {} old", format_age(age))?;
        }
        match &view.endpoint {
            None => write!(out, "; no endpoint configured: spooling only")?,
            Some(endpoint) => {
                write!(out, "; {endpoint}: {}", view.backend())?;
                let backend = view.backend.as_ref();
                if let Some(t) = backend.and_then(|b| b.retry_at).filter(|t| *t > now) {
                    write!(out, ", next attempt in {}", format_age(t - now))?;
                }
                if let Some(e) = backend.and_then(|b| b.last_error.as_ref()) {
                    write!(out, "; last error {e}")?;
                }
            }
        }
        writeln!(out)?;
        if stats.dropped_batches > 0 || stats.rejected_spans > 0 {
            let expired = match stats.expired_batches {
                0 => String::new(),
                n => format!(" ({} of them expired)", count(n, "batch", "batches")),
            };
            writeln!(
                out,
                "{:<10} lost {} dropped by the bounds{expired}, {} rejected",
                "",
                batches(stats.dropped_batches, &[(*signal, stats.dropped_spans)]),
                items(stats.rejected_spans, *signal)
            )?;
        }
    }
    if let Some(r) = report {
        writeln!(
            out,
            "verify     {}, {} corrupt, {} torn{}",
            count(r.records, "record", "records"),
            r.corrupt_records,
            r.torn_records,
            if r.unsupported_segments.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} of a newer format left alone",
                    count(r.unsupported_segments.len() as u64, "segment", "segments")
                )
            }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_said_with_the_words_of_their_signal_and_number() {
        assert_eq!(batches(1, &[(Signal::Traces, 3)]), "1 batch (3 spans)");
        assert_eq!(
            batches(
                2,
                &[(Signal::Traces, 1), (Signal::Metrics, 4), (Signal::Logs, 0)]
            ),
            "2 batches (1 span, 4 data points)"
        );
        assert_eq!(
            batches(0, &[(Signal::Metrics, 0)]),
            "0 batches (0 data points)"
        );
        assert_eq!(batches(1, &[(Signal::Logs, 1)]), "1 batch (1 log record)");
        assert_eq!(batches(0, &[]), "0 batches (0 spans)");
    }

    #[test]
    fn ages_are_said_in_the_two_largest_units() {
        assert_eq!(format_age(0.4), "0s");
        assert_eq!(format_age(59.0), "59s");
        assert_eq!(format_age(185.0), "3m 5s");
        assert_eq!(format_age(7_800.0), "2h 10m");
        assert_eq!(format_age(3.0 * 86_400.0 + 4.0 * 3600.0), "3d 4h");
    }
}
