//! `exec` and `span`: the spans users record (CONTRACT §2, §3).
//!
//! `exec` never lets tracing break the hook: whatever happens to the config, the spool or the
//! network, the command runs and its exit code comes back. Problems are said once on stderr.

use std::ffi::{OsStr, OsString};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, KeyValue, StringValue, Value};

use super::{CliError, current_thread, lossy, open_delivery, say};
use crate::config::{Config, parse_key_value};
use crate::delivery::{Budget, Delivery};
use crate::encode::{self, EncodedBatch, Encoder};
use crate::exec::{self, Outcome};
use crate::propagation::{self, Incoming, Parent};
use crate::receiver::{self, ReceiverSettings, Sink, StoreError};
use crate::record::{self, Placement, SpanSpec, parse_kind, parse_time};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Span name [default: the command's file name]
    #[arg(long)]
    name: Option<String>,
    /// Span kind: internal, server, client, producer or consumer
    #[arg(long, default_value = "internal", value_parser = parse_kind)]
    kind: SpanKind,
    /// Span attribute K=V (a string), repeatable
    #[arg(long = "attr", value_name = "K=V", value_parser = parse_key_value)]
    attrs: Vec<(String, String)>,
    /// Record the command line as process.command_args
    #[arg(long)]
    record_args: bool,
    /// Leave the command's OTEL_EXPORTER_OTLP_* variables alone (no capture of its own spans)
    #[arg(long)]
    no_capture: bool,
    /// The command to run, and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy)]
enum StatusArg {
    Ok,
    Error,
    Unset,
}

fn parse_status(s: &str) -> Result<StatusArg, String> {
    match s {
        "ok" => Ok(StatusArg::Ok),
        "error" => Ok(StatusArg::Error),
        "unset" => Ok(StatusArg::Unset),
        _ => Err("expected ok, error or unset".into()),
    }
}

#[derive(Debug, clap::Args)]
pub struct SpanArgs {
    /// Span name
    #[arg(long)]
    name: String,
    /// Start time: RFC 3339 or unix seconds [default: now]
    #[arg(long, value_name = "T", value_parser = parse_time)]
    start: Option<SystemTime>,
    /// End time: RFC 3339 or unix seconds [default: now]
    #[arg(long, value_name = "T", value_parser = parse_time)]
    end: Option<SystemTime>,
    /// Span attribute K=V (a string), repeatable
    #[arg(long = "attr", value_name = "K=V", value_parser = parse_key_value)]
    attrs: Vec<(String, String)>,
    /// Span kind: internal, server, client, producer or consumer
    #[arg(long, default_value = "internal", value_parser = parse_kind)]
    kind: SpanKind,
    /// ok, error or unset
    #[arg(long, default_value = "unset", value_parser = parse_status)]
    status: StatusArg,
    /// Print TRACEPARENT=… of the new span on stdout, for its children
    #[arg(long)]
    print_traceparent: bool,
}

impl SpanArgs {
    /// What the command line contradicts itself with: an `--end` before the `--start`.
    pub(super) fn check(&self) -> Result<(), String> {
        match (self.start, self.end) {
            (Some(start), Some(end)) if end < start => Err(format!(
                "--end ({}) is before --start ({})",
                unix_seconds(end),
                unix_seconds(start)
            )),
            _ => Ok(()),
        }
    }

    /// Start and end: each as given, else now, moved to the other if that one is given and now
    /// would put the end before the start.
    fn times(&self) -> (SystemTime, SystemTime) {
        let now = SystemTime::now();
        let start = self
            .start
            .unwrap_or(self.end.map_or(now, |end| now.min(end)));
        (start, self.end.unwrap_or(now.max(start)))
    }
}

/// `t` as unix seconds with nanoseconds, the way `--start` and `--end` take it.
fn unix_seconds(t: SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// How long in-flight captured requests may take to finish once the command has exited.
const CAPTURE_DRAIN: Duration = Duration::from_millis(500);

/// The parent from our `TRACEPARENT`, warning once about an invalid one.
fn parent() -> Option<Parent> {
    match propagation::incoming(std::env::var_os("TRACEPARENT").as_deref()) {
        Incoming::Valid(p) => Some(p),
        Incoming::Invalid(v) => {
            say!("ignoring TRACEPARENT={v:?}: not a valid W3C traceparent; starting a new trace");
            None
        }
        Incoming::Absent => None,
    }
}

fn trace_state() -> Option<String> {
    std::env::var("TRACESTATE").ok()
}

/// Runs the command with our environment untouched (tracing off, or not recorded).
fn run_untraced(program: &OsStr, args: &[OsString]) -> ExitCode {
    let outcome = match current_thread() {
        Ok(runtime) => runtime.block_on(exec::run(program, args, None)),
        // No runtime (cannot really happen: it starts no thread): run it plainly all the same.
        Err(_) => return plain_run(program, args),
    };
    report_spawn_failure(program, &outcome);
    ExitCode::from(outcome.exit_code())
}

/// The command, and nothing else of ours: the last resort that still returns its exit code.
fn plain_run(program: &OsStr, args: &[OsString]) -> ExitCode {
    let outcome = exec::run_blocking(program, args);
    report_spawn_failure(program, &outcome);
    ExitCode::from(outcome.exit_code())
}

fn report_spawn_failure(program: &OsStr, outcome: &Outcome) {
    match outcome {
        Outcome::NotFound(_) => say!("{}: command not found", program.to_string_lossy()),
        Outcome::NotExecutable(e) => say!("{}: cannot execute ({e})", program.to_string_lossy()),
        _ => {}
    }
}

fn file_name(program: &OsStr) -> String {
    Path::new(program)
        .file_name()
        .unwrap_or(program)
        .to_string_lossy()
        .into_owned()
}

/// What the command's own OpenTelemetry SDK sends: held until it exits, then delivered with
/// our span (CONTRACT §2). Holding, rather than spooling at once, also means that a tracespool
/// inside the command draining the same spool into us moves records here once, instead of
/// feeding them back to itself. Past [`CAPTURE_MEMORY`] bytes, batches go to the spool at once.
#[derive(Default)]
struct Captured {
    spill: std::sync::OnceLock<Arc<Delivery>>,
    held: std::sync::Mutex<(Vec<EncodedBatch>, usize)>,
}

/// The most captured bytes held in memory until the command exits.
const CAPTURE_MEMORY: usize = 16 * 1024 * 1024;

impl Sink for Captured {
    async fn store(&self, batch: EncodedBatch) -> Result<(), StoreError> {
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if held.1 + batch.bytes.len() <= CAPTURE_MEMORY {
                held.1 += batch.bytes.len();
                held.0.push(batch);
                return Ok(());
            }
        }
        // No spool only when it could not be opened (already said): refused, the client keeps it.
        let delivery = self.spill.get().ok_or(StoreError::NotTracing)?;
        delivery.store(batch).await
    }
}

impl Captured {
    fn take(&self) -> Vec<EncodedBatch> {
        std::mem::take(&mut self.held.lock().unwrap_or_else(|p| p.into_inner()).0)
    }
}

/// The receiver that takes the command's own spans for the command's lifetime.
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
        let task = tokio::spawn(receiver::http::serve(
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

fn exec_span(
    args: &ExecArgs,
    program: &OsStr,
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
    if args.record_args {
        let argv: Vec<StringValue> = lossy(&args.command)
            .into_iter()
            .map(StringValue::from)
            .collect();
        attributes.push(KeyValue::new(
            "process.command_args",
            Value::Array(Array::String(argv)),
        ));
    }
    attributes.extend(
        args.attrs
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    SpanSpec {
        name: args.name.clone().unwrap_or(executable),
        kind: args.kind.clone(),
        start,
        end,
        attributes,
        status,
    }
}

/// Encodes the span under the configured resource and delivers it, with `captured` batches in
/// the same request, within the budget and after whatever the spool holds; spools what is not
/// delivered.
async fn deliver(
    delivery: &Delivery,
    config: &Config,
    placement: &Placement,
    spec: SpanSpec,
    default_service: &str,
    captured: Vec<EncodedBatch>,
) {
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
    let mut chunks: Vec<Vec<EncodedBatch>> = Vec::new();
    let mut size = 0;
    for batch in batches {
        match chunks.last_mut() {
            Some(chunk) if size + batch.bytes.len() <= chunk_limit => {
                size += batch.bytes.len();
                chunk.push(batch);
            }
            _ => {
                size = batch.bytes.len();
                chunks.push(vec![batch]);
            }
        }
    }
    // One budget for the run, however many requests it takes.
    let mut budget = Budget::starting_now(config.delivery.budget);
    for chunk in chunks {
        match delivery
            .export_within(encode::concat(&chunk), &mut budget)
            .await
        {
            Ok(report) => {
                tracing::info!(
                    sent = report.sent_batches,
                    spooled = report.spooled,
                    stopped = ?report.stopped.map(|s| s.to_string()),
                    "delivery done"
                );
            }
            Err(e) => say!("{e}"),
        }
    }
}

pub(super) fn exec(config: &Config, args: ExecArgs) -> ExitCode {
    let (program, rest) = args.command.split_first().expect("clap requires CMD");
    if config.disabled {
        return run_untraced(program, rest);
    }
    let parent = parent();
    if parent.is_some_and(|p| !p.sampled) {
        return run_untraced(program, rest);
    }
    // One thread does it all: the capture receiver, the wait for the command (and the signals
    // forwarded to it) and the delivery are tasks of this runtime.
    let runtime = match current_thread() {
        Ok(rt) => rt,
        Err(e) => {
            say!("not tracing this run: {e}");
            return plain_run(program, rest);
        }
    };
    let placement = Placement::new(parent.as_ref(), trace_state().as_deref());
    let captured = Arc::new(Captured::default());
    let code = runtime.block_on(async {
        let capture = if args.no_capture {
            None
        } else {
            Capture::start(captured.clone())
                .await
                .inspect_err(|e| say!("not capturing the command's own spans: {e}"))
                .ok()
        };
        let traceparent = propagation::traceparent(placement.trace_id, placement.span_id);
        let child_env = propagation::child_env(&traceparent, capture.as_ref().map(|c| c.port));

        // The command starts first; the spool is opened while it runs.
        let start = SystemTime::now();
        let running = exec::spawn(program, rest, Some(&child_env));
        let delivery = match open_delivery(config) {
            Ok(delivery) => Some(Arc::new(delivery)),
            Err(e) => {
                say!("not tracing this run: {e}");
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
        report_spawn_failure(program, &outcome);
        if let Some(delivery) = delivery {
            let spec = exec_span(&args, program, &outcome, start, end);
            let service = file_name(program);
            let delivered = deliver(
                &delivery,
                config,
                &placement,
                spec,
                &service,
                captured.take(),
            );
            // Whatever happens to tracing, even a bug of ours, the command's code comes back.
            if AssertUnwindSafe(delivered).catch_unwind().await.is_err() {
                say!("tracing this run failed (a bug: please report it); exit code kept");
            }
        }
        outcome.exit_code()
    });
    // Nothing of ours is worth waiting for at exit (a resolver thread, say).
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// `TRACEPARENT=…` on stdout. A reader gone (a closed pipe) does not stop the span from being
/// recorded.
fn print_traceparent(traceparent: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "TRACEPARENT={traceparent}");
}

pub(super) fn span(config: &Config, args: SpanArgs) -> Result<ExitCode, CliError> {
    let parent = parent();
    if parent.is_some_and(|p| !p.sampled) {
        // Not recorded; the caller's context goes on unchanged.
        if args.print_traceparent
            && let Some(tp) = std::env::var_os("TRACEPARENT")
        {
            print_traceparent(&tp.to_string_lossy());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let placement = Placement::new(parent.as_ref(), trace_state().as_deref());
    if args.print_traceparent {
        print_traceparent(&propagation::traceparent(
            placement.trace_id,
            placement.span_id,
        ));
    }
    let (start, end) = args.times();
    let spec = SpanSpec {
        name: args.name,
        kind: args.kind,
        start,
        end,
        attributes: args
            .attrs
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect(),
        status: match args.status {
            StatusArg::Ok => Status::Ok,
            StatusArg::Error => Status::error(""),
            StatusArg::Unset => Status::Unset,
        },
    };
    let delivery = open_delivery(config)?;
    let runtime = current_thread()?;
    runtime.block_on(deliver(
        &delivery,
        config,
        &placement,
        spec,
        "tracespool",
        Vec::new(),
    ));
    runtime.shutdown_background();
    Ok(ExitCode::SUCCESS)
}
