//! `exec` and `span`: the spans users record. Parsing and printing; the work is in
//! [`hook`](crate::hook).
//!
//! `exec` never lets tracing break the hook: whatever happens to the config, the spool or the
//! network, the command runs and its exit code comes back. Problems are said once on stderr.

use std::ffi::{OsStr, OsString};
use std::process::ExitCode;
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, Status};

use super::{CliError, current_thread, drainer, say};
use crate::config::{Config, Flags, parse_key_value};
use crate::exec;
use crate::hook::{self, CommandSpan, Problem};
use crate::propagation::{self, EnvChanges, Incoming, Parent};
use crate::record::{Placement, SpanSpec, parse_kind, parse_time};
use crate::sampling;

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
    /// The command to run, and its arguments. Everything from CMD on is the command's, flags
    /// included; before CMD, a word starting with `-` that is not one of ours is a usage error
    /// (a typo'd option must not run as the command).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
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

/// Whether the sampler records a new span at `placement`; with `-v`, why not.
fn recorded(config: &Config, parent: Option<&Parent>, placement: &Placement) -> bool {
    let recorded = config.sampler.should_sample(parent, placement.trace_id);
    if !recorded {
        tracing::info!(
            "not recording a span of trace {}: the {} sampler drops it",
            placement.trace_id,
            config.sampler.name()
        );
    }
    recorded
}

fn trace_state() -> Option<String> {
    std::env::var("TRACESTATE").ok()
}

/// Runs the command with our environment changed by `env` only (tracing off, or not recorded):
/// no capture, no spool.
fn run_untraced(program: &OsStr, args: &[OsString], env: Option<&EnvChanges>) -> ExitCode {
    let outcome = match current_thread() {
        Ok(runtime) => runtime.block_on(exec::run(program, args, env)),
        // No runtime (cannot really happen: it starts no thread): run it plainly all the same.
        Err(_) => return plain_run(program, args, env),
    };
    let code = outcome.exit_code();
    report_spawn_failure(program, outcome);
    ExitCode::from(code)
}

/// The command, and nothing else of ours: the last resort that still returns its exit code.
fn plain_run(program: &OsStr, args: &[OsString], env: Option<&EnvChanges>) -> ExitCode {
    let outcome = exec::run_blocking(program, args, env);
    let code = outcome.exit_code();
    report_spawn_failure(program, outcome);
    ExitCode::from(code)
}

fn report_spawn_failure(program: &OsStr, outcome: exec::Outcome) {
    if let Some(problem) = hook::spawn_problem(program, outcome) {
        say!("{problem}");
    }
}

fn tell(problem: Problem) {
    say!("{problem}");
}

pub(super) fn exec(config: &Config, flags: &Flags, args: ExecArgs) -> ExitCode {
    let (program, rest) = args.command.split_first().expect("clap requires CMD");
    if config.disabled {
        return run_untraced(program, rest, None);
    }
    let parent = parent();
    let placement = Placement::new(parent.as_ref(), trace_state().as_deref());
    if !recorded(config, parent.as_ref(), &placement) {
        // Not recorded: the child runs all the same, told that its parent is not sampled.
        let env = sampling::unrecorded_traceparent(parent.as_ref(), &placement)
            .map(|tp| propagation::child_env(&tp, None, &|_| None));
        return run_untraced(program, rest, env.as_ref());
    }
    // One thread does it all: the capture receiver, the wait for the command (and the signals
    // forwarded to it) and the delivery are tasks of this runtime.
    let runtime = match current_thread() {
        Ok(rt) => rt,
        Err(e) => {
            say!("not tracing this run: {e}");
            return plain_run(program, rest, None);
        }
    };
    let span = CommandSpan {
        name: args.name,
        kind: args.kind,
        attrs: args.attrs,
        record_args: args.record_args,
        capture: !args.no_capture,
    };
    let ran = runtime.block_on(hook::run(config, &placement, program, rest, &span, &tell));
    // Nothing of ours is worth waiting for at exit (a resolver thread, say).
    runtime.shutdown_background();
    if let Some(delay) = ran.drain {
        drainer::start(flags, delay);
    }
    ExitCode::from(ran.code)
}

/// `TRACEPARENT=…` on stdout. A reader gone (a closed pipe) does not stop the span from being
/// recorded.
fn print_traceparent(traceparent: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "TRACEPARENT={traceparent}");
}

pub(super) fn span(config: &Config, flags: &Flags, args: SpanArgs) -> Result<ExitCode, CliError> {
    let parent = parent();
    let placement = Placement::new(parent.as_ref(), trace_state().as_deref());
    if !recorded(config, parent.as_ref(), &placement) {
        // Not recorded. The children's context: this span's with flags 00, or an unsampled
        // caller's unchanged.
        if args.print_traceparent {
            match sampling::unrecorded_traceparent(parent.as_ref(), &placement) {
                Some(tp) => print_traceparent(&tp),
                None => {
                    if let Some(tp) = std::env::var_os("TRACEPARENT") {
                        print_traceparent(&tp.to_string_lossy());
                    }
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
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
    let deliveries = hook::open_deliveries(config)?;
    let runtime = current_thread()?;
    let drain = runtime.block_on(hook::deliver(
        &deliveries,
        config,
        &placement,
        spec,
        "tracespool",
        Vec::new(),
        &tell,
    ));
    runtime.shutdown_background();
    if let Some(delay) = drain {
        drainer::start(flags, delay);
    }
    Ok(ExitCode::SUCCESS)
}
