//! tracespool: OpenTelemetry tracing for intermittent runtimes.
//!
//! The [`spool`] is a bounded, crash-safe, multi-process on-disk queue of encoded OTLP batches.
//! [`units`] parses the sizes and durations of the configuration.

pub mod agent;
pub mod agent_metrics;
pub mod circuit;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod encode;
pub mod exec;
pub mod exporter;
#[doc(hidden)]
pub mod fuzzing;
pub mod gzip;
pub mod hook;
pub mod otlp_file;
pub mod propagation;
pub mod receiver;
pub mod record;
pub mod sampling;
pub mod signal;
pub mod spool;
pub mod transport;
pub mod units;
