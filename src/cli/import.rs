//! `import`: OTLP data files appended to the spool for delivery.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{CliError, say};
use crate::config::Config;
use crate::encode::EncodedBatch;
use crate::otlp_file::{self, Layout};
use crate::signal::PerSignal;
use crate::spool::{AppendError, AppendOutcome, Store};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// OTLP/JSON lines, or one binary protobuf export request, gzip-compressed or not; `-` is
    /// standard input
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Appends each request (a JSON line, or a protobuf file) as one batch. A bad one is said as
/// `FILE:LINE: why` (`FILE: why` for a file) and left out, the others appended: exit 1 then,
/// 0 when all were good.
pub(super) fn import(config: &Config, args: &ImportArgs) -> Result<ExitCode, CliError> {
    let store = Store::open(&config.spool_dir, config.spool)?;
    let mut bad = 0u64;
    let mut imported = PerSignal::<(u64, u64)>::default();
    for path in &args.files {
        let stdin = path.as_os_str() == "-";
        let name = if stdin {
            "stdin".to_owned()
        } else {
            path.display().to_string()
        };
        let data = match read(path, stdin) {
            Ok(data) => data,
            Err(why) => {
                say!("{name}: {why}");
                bad += 1;
                continue;
            }
        };
        match otlp_file::layout(&data) {
            Layout::JsonLines => {
                for (line, request) in otlp_file::json_lines(&data) {
                    let at = format!("{name}:{line}");
                    match request {
                        Ok(batch) => bad += append(&store, &batch, &mut imported, &at)?,
                        Err(why) => {
                            say!("{at}: {why}");
                            bad += 1;
                        }
                    }
                }
            }
            Layout::Protobuf => {
                let hint = (!stdin).then(|| otlp_file::signal_named(path)).flatten();
                match otlp_file::protobuf_request(&data, hint) {
                    Ok(batch) => bad += append(&store, &batch, &mut imported, &name)?,
                    Err(why) => {
                        say!("{name}: {why}");
                        bad += 1;
                    }
                }
            }
        }
    }
    for (signal, (batches, items)) in imported.iter() {
        if *batches > 0 {
            tracing::info!(
                %signal,
                batches,
                items,
                "imported"
            );
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Appends one batch and counts it; a batch that no spool with these bounds can hold is said
/// (`AT: why`) and counted as bad (1 is returned), any other failure ends the import. A
/// request without a single item (span, data point, log record) has nothing to deliver: it is
/// passed over.
fn append(
    store: &Store,
    batch: &EncodedBatch,
    imported: &mut PerSignal<(u64, u64)>,
    at: &str,
) -> Result<u64, CliError> {
    if batch.items == 0 {
        return Ok(0);
    }
    match store
        .append_batch(batch.signal, batch.into())
        .and_then(AppendOutcome::accepted)
    {
        Ok(()) => {
            let (batches, items) = imported.get_mut(batch.signal);
            *batches += 1;
            *items += u64::from(batch.items);
            Ok(0)
        }
        Err(e @ (AppendError::TooLarge { .. } | AppendError::TooManySpans { .. })) => {
            say!("{at}: {e}");
            Ok(1)
        }
        Err(e) => Err(e.into()),
    }
}

/// Why a file could not be read as OTLP data.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    File(#[from] otlp_file::BadFile),
}

/// The whole file (or standard input), decompressed if it is gzip.
fn read(path: &Path, stdin: bool) -> Result<Vec<u8>, Unreadable> {
    let mut data = Vec::new();
    if stdin {
        std::io::stdin().lock().read_to_end(&mut data)?;
    } else {
        data = std::fs::read(path)?;
    }
    Ok(otlp_file::unpack(data)?)
}
