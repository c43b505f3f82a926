//! `dump`: the undelivered data as OTLP/JSON lines on stdout, changing nothing.

use std::io::Write;
use std::process::ExitCode;

use super::{CliError, say};
use crate::config::Config;
use crate::otlp_file::{TraceId, json_line};
use crate::signal::Signal;
use crate::spool::Store;

#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// Only this signal's batches: traces, metrics or logs
    #[arg(long, value_name = "SIGNAL", value_parser = parse_signal)]
    signal: Option<Signal>,
    /// Only the spans and log records of this trace (32 hex digits); no metrics
    #[arg(long = "trace-id", value_name = "HEX")]
    trace_id: Option<TraceId>,
    /// At most N lines
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

fn parse_signal(s: &str) -> Result<Signal, String> {
    Signal::ALL
        .into_iter()
        .find(|signal| signal.as_str() == s)
        .ok_or_else(|| format!("{s:?} is not a signal: traces, metrics or logs"))
}

/// One `Export…ServiceRequest` per line, oldest first across the signals; damaged records
/// (and stored requests that do not decode) are skipped and counted on stderr. A spool that
/// does not exist is empty: nothing is created.
pub(super) fn dump(config: &Config, args: &DumpArgs) -> Result<ExitCode, CliError> {
    // Only a spool that does not exist is empty; anything else there is the spool's to refuse.
    if std::fs::symlink_metadata(&config.spool_dir)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    {
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(&config.spool_dir, config.spool)?;
    let signals: Vec<Signal> = match args.signal {
        Some(signal) => vec![signal],
        None => Signal::ALL.to_vec(),
    };
    let found = store.undelivered(&signals)?;
    let mut damaged = found.damaged;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut lines = 0u64;
    for (signal, record) in found.records {
        if args.limit.is_some_and(|limit| lines >= limit) {
            break;
        }
        let line = record
            .plain()
            .ok()
            .and_then(|plain| json_line(signal, &plain, args.trace_id).ok());
        match line {
            Some(Some(line)) => {
                out.write_all(&line)?;
                out.write_all(b"\n")?;
                lines += 1;
            }
            // Not of that trace.
            Some(None) => {}
            None => damaged += 1,
        }
    }
    out.flush()?;
    if damaged > 0 {
        let records = if damaged == 1 { "record" } else { "records" };
        say!("dump: skipped {damaged} damaged {records}");
    }
    Ok(ExitCode::SUCCESS)
}
