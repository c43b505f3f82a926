//! The command line: the only module that prints, exits, or sets anything process-wide.
//!
//! `main` calls [`parse`] then [`run`]; each command lives in its own file and returns an exit
//! code or a [`CliError`], printed once here as `tracespool: …`.

mod config;
mod drainer;
mod dump;
mod import;
mod serve;
mod status;
mod trace;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::path::PathBuf;

use crate::config::{Config, ConfigFile, Flags, Origin, Warning};

#[derive(Debug, Parser)]
#[command(
    name = "tracespool",
    version,
    about = "OpenTelemetry tracing for intermittent runtimes: hooks, cron jobs, CI steps",
    after_help = "Spans are sent to the OTLP/HTTP endpoint when it answers within the budget, \
                  and kept in the spool otherwise; once the endpoint answers again, a background \
                  `tracespool flush` started by a later run delivers the spool (see --drain)."
)]
pub struct Cli {
    #[command(flatten)]
    pub flags: Flags,
    /// Diagnostics on stderr; repeat for more (also RUST_LOG)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run CMD in a span; pass it TRACEPARENT; capture its own spans; return its exit code
    Exec(trace::ExecArgs),
    /// Record one span (parent from TRACEPARENT)
    Span(trace::SpanArgs),
    /// Show what the spool holds; never touches the network
    Status {
        /// Exactly one JSON object on stdout
        #[arg(long)]
        json: bool,
        /// Read every stored record and count the damaged ones (exit 1 if any)
        #[arg(long)]
        verify: bool,
    },
    /// Deliver the spool now, ignoring the shared backoff (exit 1 if anything remains)
    Flush {
        /// A background drain a hook started, waiting DELAY before its first request: obeys
        /// the backoff, uses drain_budget, prints nothing
        #[arg(long = "as-drainer", hide = true, value_name = "DELAY", value_parser = crate::units::parse_duration)]
        as_drainer: Option<std::time::Duration>,
    },
    /// Run the agent: OTLP receivers on loopback that spool, and a forwarder that delivers
    Serve(serve::ServeArgs),
    /// Show the effective settings and where each came from (secrets as ***)
    Config {
        /// Exactly one JSON object on stdout
        #[arg(long)]
        json: bool,
    },
    /// Print the undelivered data as OTLP/JSON, one export request per line; changes nothing
    Dump(dump::DumpArgs),
    /// Append OTLP data files (JSON lines or protobuf, gzip or not; - is stdin) for delivery
    Import(import::ImportArgs),
}

/// Parses the command line; on a usage error prints it and exits 2 (nothing runs).
pub fn parse() -> Cli {
    let cli = Cli::parse();
    if let Command::Span(args) = &cli.command
        && let Err(e) = args.check()
    {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        cli.build();
        let span = cli
            .find_subcommand_mut("span")
            .expect("the span subcommand");
        span.error(clap::error::ErrorKind::ArgumentConflict, e)
            .exit();
    }
    cli
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init();
}

/// One line on stderr. A closed stderr loses the line, and nothing else (`eprintln!` panics).
macro_rules! say {
    ($($tt:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "tracespool: {}", format_args!($($tt)*));
    }};
}
pub(crate) use say;

/// The environment as strings; a variable whose name or value is not UTF-8 is none of ours.
fn env_map() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The config file named by `--config` or `TRACESPOOL_CONFIG`, and which named it.
fn config_path(flags: &Flags, env: &HashMap<String, String>) -> Option<(PathBuf, Origin)> {
    match &flags.config {
        Some(path) => Some((path.clone(), Origin::Flag)),
        None => env
            .get("TRACESPOOL_CONFIG")
            .filter(|v| !v.is_empty())
            .map(|v| (v.into(), Origin::Env("TRACESPOOL_CONFIG".into()))),
    }
}

/// Reads the config file named by `--config` or `TRACESPOOL_CONFIG`, if any.
fn config_file(flags: &Flags, env: &HashMap<String, String>) -> Option<ConfigFile> {
    let (path, _) = config_path(flags, env)?;
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string());
    Some(ConfigFile::new(path, text))
}

/// The configuration from the flags, the environment and the config file as they are now, its
/// warnings said (once each) and returned.
fn resolve(flags: &Flags) -> (Config, Vec<Warning>) {
    let env = env_map();
    let file = config_file(flags, &env);
    settle(flags, &env, file.as_ref())
}

/// The configuration again, for `serve`'s SIGHUP: `None` (said in one line) when the config
/// file cannot be read or is not TOML, so that the running settings stay.
fn reload(flags: &Flags) -> Option<Config> {
    let env = env_map();
    let file = config_file(flags, &env);
    if let Some(file) = &file
        && let Err(reason) = &file.table
    {
        say!(
            "reload: keeping the running settings: config file {}: {reason}",
            file.path.display()
        );
        return None;
    }
    Some(settle(flags, &env, file.as_ref()).0)
}

/// [`Config::resolve`], its warnings said (once each).
fn settle(
    flags: &Flags,
    env: &HashMap<String, String>,
    file: Option<&ConfigFile>,
) -> (Config, Vec<Warning>) {
    let (config, warnings) = Config::resolve(flags, env, file);
    for w in &warnings {
        say!("{w}");
    }
    (config, warnings)
}

pub fn run(cli: Cli) -> ExitCode {
    init_logging(cli.verbose);
    let (config, warnings) = resolve(&cli.flags);
    let result = match cli.command {
        // Settings are shown whatever they say, OTEL_SDK_DISABLED included.
        Command::Config { json } => {
            let path = config_path(&cli.flags, &env_map());
            let path = path.as_ref().map(|(p, o)| (p.as_path(), o.clone()));
            config::config(&config, path, &warnings, json)
        }
        // `exec` never fails on our account: its exit code is the child's.
        Command::Exec(args) => return trace::exec(&config, &cli.flags, args),
        Command::Flush {
            as_drainer: Some(delay),
        } => return drainer::run(&config, delay),
        Command::Span(_) if config.disabled => return ExitCode::SUCCESS,
        _ if config.disabled => {
            say!("tracing is disabled (OTEL_SDK_DISABLED=true)");
            return ExitCode::SUCCESS;
        }
        Command::Span(args) => trace::span(&config, &cli.flags, args),
        Command::Status { json, verify } => status::status(&config, json, verify),
        Command::Flush { as_drainer: None } => status::flush(&config),
        Command::Serve(args) => serve::serve(&config, &cli.flags, args),
        Command::Dump(args) => dump::dump(&config, &args),
        Command::Import(args) => import::import(&config, &args),
    };
    match result {
        Ok(code) => code,
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            say!("{err}");
            ExitCode::from(2)
        }
    }
}

/// An error at the edge, with its message ready.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    #[error("encoding status: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Export(#[from] crate::delivery::ExportError),
    #[error(transparent)]
    Append(#[from] crate::spool::AppendError),
}

impl CliError {
    fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// A runtime on this thread, for one delivery.
fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
