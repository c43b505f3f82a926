//! `exec`'s library side: run a hook's command in a span, capture what its own OpenTelemetry SDK
//! sends, and deliver the run's data once the command has exited.
//!
//! Tracing never breaks the hook: whatever happens to the config, the spool or the network, the
//! command runs and its exit code comes back. What goes wrong is told to the caller as a
//! [`Problem`], once, for it to say.
//!
//! - The capture receiver listens on `127.0.0.1`, on a port of its own, for the command's
//!   lifetime. What it receives is held in memory (up to [`CAPTURE_MEMORY`] bytes, then spooled
//!   at once) and delivered with the command's span, in as few requests as fit.
//! - The command starts before the spool is opened; the spool is opened while it runs.
//! - One budget bounds the whole delivery of the run, however many requests it takes.
//! - In drain mode `background` the run delivers only its own data, and tells the caller when
//!   a detached drainer should send the backlog (the caller starts it: a library does not start
//!   processes); `inline` sends the backlog first; `off` leaves it to `flush` and `serve`.

use std::ffi::{OsStr, OsString};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, KeyValue, StringValue, Value};

use crate::config::Config;
use crate::delivery::{Deliveries, ExportError};
use crate::encode::{EncodedBatch, Encoder};
use crate::exec::{self, Outcome};
use crate::propagation;
use crate::receiver::{self, ReceiverSettings, Sink, StoreError};
use crate::record::{self, Placement, SpanSpec};
use crate::spool::{SpoolError, Store};

/// How long in-flight captured requests may take to finish once the command has exited.
const CAPTURE_DRAIN: Duration = Duration::from_millis(500);

/// The most captured bytes held in memory until the command exits.
pub const CAPTURE_MEMORY: usize = 16 * 1024 * 1024;

/// What went wrong for tracing (never for the command), for the caller to say once.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{}: command not found", .0.to_string_lossy())]
    NotFound(OsString),
    #[error("{}: cannot execute ({source})", program.to_string_lossy())]
    NotExecutable {
        program: OsString,
        #[source]
        source: std::io::Error,
    },
    #[error("not capturing the command's own spans: {0}")]
    NoCapture(#[source] std::io::Error),
    #[error("not tracing this run: {0}")]
    NoSpool(#[source] SpoolError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("tracing this run failed (a bug: please report it); exit code kept")]
    Bug,
}

/// The span of a command, as the command line describes it.
#[derive(Debug, Clone)]
pub struct CommandSpan {
    /// Span name; the command's file name when `None`.
    pub name: Option<String>,
    pub kind: SpanKind,
    /// String attributes, in order.
    pub attrs: Vec<(String, String)>,
    /// Record the command line as `process.command_args`.
    pub record_args: bool,
    /// Run a capture receiver for the command's own telemetry.
    pub capture: bool,
}

/// The spool and deliveries `config` describes.
///
/// # Errors
///
/// The spool cannot be opened (a refused path, an I/O error naming the file).
pub fn open_deliveries(config: &Config) -> Result<Deliveries, SpoolError> {
    let store = Store::open(&config.spool_dir, config.spool)?;
    Ok(Deliveries::new(Arc::new(store), config.delivery.clone()))
}

/// Tells the caller that `program` could not be started, if so.
pub fn spawn_problem(program: &OsStr, outcome: Outcome) -> Option<Problem> {
    match outcome {
        Outcome::NotFound(_) => Some(Problem::NotFound(program.to_owned())),
        Outcome::NotExecutable(source) => Some(Problem::NotExecutable {
            program: program.to_owned(),
            source,
        }),
        _ => None,
    }
}

/// The command's file name (`/bin/sh` → `sh`).
pub fn file_name(program: &OsStr) -> String {
    Path::new(program)
        .file_name()
        .unwrap_or(program)
        .to_string_lossy()
        .into_owned()
}

/// How a hook's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ran {
    /// The command's exit code (128+N for a signal, 127 not found, 126 not executable).
    pub code: u8,
    /// A detached drainer should send the backlog, waiting this long before its first request.
    pub drain: Option<Duration>,
}

/// Runs `program` with `args` in a span placed by `placement`, captures its own telemetry,
/// delivers the run's data within the budget (else spools it), and returns the command's exit
/// code and whether a drainer should start. Every problem goes to `say`, once.
pub async fn run(
    config: &Config,
    placement: &Placement,
    program: &OsStr,
    args: &[OsString],
    span: &CommandSpan,
    say: &(dyn Fn(Problem) + Sync),
) -> Ran {
    let captured = Arc::new(Captured::default());
    let capture = if span.capture {
        Capture::start(captured.clone())
            .await
            .map_err(|e| say(Problem::NoCapture(e)))
            .ok()
    } else {
        None
    };
    let traceparent = propagation::traceparent(placement.trace_id, placement.span_id);
    let child_env = propagation::child_env(&traceparent, capture.as_ref().map(|c| c.port), &|k| {
        std::env::var(k).ok()
    });

    let start = SystemTime::now();
    let running = exec::spawn(program, args, Some(&child_env));
    let delivery = match open_deliveries(config) {
        Ok(delivery) => Some(Arc::new(delivery)),
        Err(e) => {
            say(Problem::NoSpool(e));
            None
        }
    };
    if let Some(delivery) = &delivery {
        let _ = captured.spill.set(delivery.clone());
    }
    let outcome = match running {
        Ok(running) => running.wait().await,
        Err(outcome) => outcome,
    };
    let end = SystemTime::now();

    if let Some(capture) = capture {
        capture.stop().await;
    }
    let code = outcome.exit_code();
    let spec = command_span(span, program, args, &outcome, start, end);
    if let Some(problem) = spawn_problem(program, outcome) {
        say(problem);
    }
    let mut drain = None;
    if let Some(delivery) = delivery {
        let service = file_name(program);
        let delivered = deliver(
            &delivery,
            config,
            placement,
            spec,
            &service,
            captured.take(),
            say,
        );
        // Whatever happens to tracing, even a bug of ours, the command's code comes back.
        match AssertUnwindSafe(delivered).catch_unwind().await {
            Ok(start) => drain = start,
            Err(_) => say(Problem::Bug),
        }
    }
    Ran { code, drain }
}

/// What the command's own OpenTelemetry SDK sends: held until it exits, then delivered with
/// its span. Holding, rather than spooling at once, also means that a tracespool inside the
/// command draining the same spool into us moves records here once, instead of feeding them
/// back to itself. Past [`CAPTURE_MEMORY`] bytes, batches go to the spool at once.
#[derive(Default)]
struct Captured {
    spill: OnceLock<Arc<Deliveries>>,
    held: Mutex<(Vec<EncodedBatch>, usize)>,
}

impl Sink for Captured {
    async fn store(&self, batch: EncodedBatch) -> Result<(), StoreError> {
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            // Both forms of a batch received compressed are held.
            let size = batch.bytes.len() + batch.gzip.as_ref().map_or(0, |gz| gz.len());
            if held.1 + size <= CAPTURE_MEMORY {
                held.1 += size;
                held.0.push(batch);
                return Ok(());
            }
        }
        // No spool only when it could not be opened (already said): refused, the client keeps it.
        let delivery = self.spill.get().ok_or(StoreError::NotTracing)?;
        Sink::store(delivery.as_ref(), batch).await
    }
}

impl Captured {
    fn take(&self) -> Vec<EncodedBatch> {
        std::mem::take(&mut self.held.lock().unwrap_or_else(|p| p.into_inner()).0)
    }
}

/// The receiver that takes the command's own telemetry for the command's lifetime.
struct Capture {
    port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    /// Starts the receiver as a task of the current runtime.
    async fn start(sink: Arc<Captured>) -> std::io::Result<Capture> {
        let listener = receiver::bind(([127, 0, 0, 1], 0).into()).await?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(receiver::serve(
            listener,
            ReceiverSettings::default(),
            sink,
            shutdown,
            CAPTURE_DRAIN,
        ));
        Ok(Capture { port, stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The command's span: its attributes and status from how it ended.
fn command_span(
    span: &CommandSpan,
    program: &OsStr,
    args: &[OsString],
    outcome: &Outcome,
    start: SystemTime,
    end: SystemTime,
) -> SpanSpec {
    let executable = file_name(program);
    let mut attributes = vec![KeyValue::new("process.executable.name", executable.clone())];
    if let Some(pid) = outcome.pid() {
        attributes.push(KeyValue::new("process.pid", i64::from(pid)));
    }
    let status = match outcome {
        Outcome::Exited { code, .. } => {
            attributes.push(KeyValue::new("process.exit.code", i64::from(*code)));
            if *code == 0 {
                Status::Unset
            } else {
                Status::error(format!("exit code {code}"))
            }
        }
        Outcome::Signaled { signal, .. } => {
            Status::error(format!("killed by signal {}", exec::signal_name(*signal)))
        }
        Outcome::NotFound(_) | Outcome::NotExecutable(_) => {
            let code = outcome.exit_code();
            attributes.push(KeyValue::new("process.exit.code", i64::from(code)));
            Status::error(if code == 127 {
                "command not found"
            } else {
                "command not executable"
            })
        }
    };
    if span.record_args {
        let argv: Vec<StringValue> = std::iter::once(program)
            .chain(args.iter().map(OsString::as_os_str))
            .map(|a| StringValue::from(a.to_string_lossy().into_owned()))
            .collect();
        attributes.push(KeyValue::new(
            "process.command_args",
            Value::Array(Array::String(argv)),
        ));
    }
    attributes.extend(
        span.attrs
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    SpanSpec {
        name: span.name.clone().unwrap_or(executable),
        kind: span.kind.clone(),
        start,
        end,
        attributes,
        status,
    }
}

/// Encodes the span under the configured resource and delivers it, with `captured` batches in
/// the same request, within the budget (in drain mode `inline` after whatever the spool holds);
/// spools what is not delivered. Returns the start delay of a detached drainer when one should
/// send the backlog now.
pub async fn deliver(
    deliveries: &Deliveries,
    config: &Config,
    placement: &Placement,
    spec: SpanSpec,
    default_service: &str,
    captured: Vec<EncodedBatch>,
    say: &(dyn Fn(Problem) + Sync),
) -> Option<Duration> {
    let service = record::service_name(
        config.service_name.as_deref(),
        &config.resource,
        default_service,
    );
    let resource = record::resource(&service, &config.resource);
    let mut batches =
        vec![Encoder::new(&resource).encode(vec![record::span_data(placement, spec)])];
    batches.extend(captured);
    // Few requests, each small enough to spool whole if it cannot be sent.
    let chunk_limit = (config.spool.max_bytes / 4).clamp(64 * 1024, 4 * 1024 * 1024) as usize;
    // One budget for the run, however many requests it takes.
    let budget = config.delivery.traces.budget;
    let reports = deliveries.export_run(batches, budget, chunk_limit).await;
    let drain = deliveries.drain_after(&reports, &mut fastrand::Rng::new());
    for result in reports {
        match result {
            Ok(report) => {
                tracing::info!(
                    sent = report.sent_batches,
                    spooled = report.spooled,
                    stopped = ?report.stopped.map(|s| s.to_string()),
                    "delivery done"
                );
            }
            Err(e) => say(e.into()),
        }
    }
    drain
}
