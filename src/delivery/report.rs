//! What a delivery did, why it stopped, and how the backend stands.

use std::time::SystemTime;

use crate::circuit::{Backend, State};
use crate::encode::EncodedBatch;
use crate::spool::{AppendError, AppendOutcome, SpoolError};
use crate::transport::{SendError, TlsError, chain};

/// A delivery could not keep a batch: neither sent nor stored. The batch comes back.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("could not spool {} {}s: {source}", batch.items, batch.signal.item())]
    Unspooled {
        batch: EncodedBatch,
        #[source]
        source: AppendError,
    },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the exporter is shut down")]
    Shutdown,
    #[error("the delivery thread did not answer in time")]
    Timeout,
}

/// What one delivery did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Batches and spans the backend accepted (spooled ones and the new one).
    pub sent_batches: u64,
    pub sent_spans: u64,
    /// The new batch went to the spool (not with spooling disabled: `max_bytes = 0`).
    pub spooled: bool,
    /// Stored batches dropped by the bound to make room for it.
    pub dropped: AppendOutcome,
    pub dead_lettered: u64,
    pub rejected_spans: u64,
    /// The spool still holds deliverable batches. When delivery stopped (see `stopped`) this is
    /// set without counting them: it may hold none (count with `Spool::stats`).
    pub remaining: bool,
    /// What stopped delivery, if anything did.
    pub stopped: Option<Stop>,
    pub backend: Backend,
    pub last_error: Option<String>,
    /// The backend's state as the delivery found it (what a drainer's start delay depends on).
    pub before: State,
}

/// Why delivery did not (entirely) happen.
#[derive(Debug, Clone)]
pub enum Stop {
    NoEndpoint,
    TlsNotReady(TlsError),
    BackingOff {
        retry_at: SystemTime,
    },
    /// Another process is flushing, and the backoff has just expired: it probes, not us.
    LeaseHeld,
    /// The backend did not take a batch, and it is kept.
    Failed(SendError),
    Budget,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::NoEndpoint => f.write_str("no endpoint configured"),
            // The message already says "TLS not ready".
            Stop::TlsNotReady(e) => f.write_str(&chain(e)),
            Stop::BackingOff { retry_at } => {
                let left = retry_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                write!(
                    f,
                    "backend down; next attempt in {:.1}s",
                    left.as_secs_f64()
                )
            }
            Stop::LeaseHeld => f.write_str("another process is flushing the spool"),
            Stop::Failed(e) => write!(f, "backend down: {}", chain(e)),
            Stop::Budget => f.write_str("time budget spent"),
        }
    }
}

/// How the delivery settings stand, for `status` (no network, no change).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryStatus {
    pub backend: &'static str,
    pub retry_at: Option<f64>,
    pub last_error: Option<String>,
}

/// Told the number of spooled batches dealt with so far, after each one.
pub type Progress<'a> = dyn Fn(u64) + Send + Sync + 'a;
