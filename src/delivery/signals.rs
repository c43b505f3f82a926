//! Every signal's delivery over one [`Store`]: each signal from its own spool, to its own
//! endpoint, with its own backoff, side by side, so that one signal's missing, failing or
//! backed-off endpoint never holds up another's.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;

use super::drain::{self, AfterRun, DrainMode};
use super::{Budget, Delivery, DeliverySettings, ExportError, Mode, Progress, Report};
use crate::circuit::Backend;
use crate::encode::{self, EncodedBatch};
use crate::receiver::{Sink, StoreError};
use crate::signal::{PerSignal, Signal};
use crate::spool::{AppendOutcome, Batch, SpoolError, Store};
use crate::transport::{self, Connect};

/// The deliveries of the three signals.
pub struct Deliveries {
    store: Arc<Store>,
    settings: PerSignal<DeliverySettings>,
    connect: Connect,
    /// Made on first use (a signal's spool is opened, or created, then).
    lanes: PerSignal<OnceLock<Delivery>>,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Deliveries {
    pub fn new(store: Arc<Store>, settings: PerSignal<DeliverySettings>) -> Deliveries {
        Deliveries::with_connect(store, settings, Arc::new(transport::connect))
    }

    /// Deliveries that reach their backends through `connect` (a test's mock, say).
    pub fn with_connect(
        store: Arc<Store>,
        settings: PerSignal<DeliverySettings>,
        connect: Connect,
    ) -> Deliveries {
        Deliveries {
            store,
            settings,
            connect,
            lanes: PerSignal::default(),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn settings(&self) -> &PerSignal<DeliverySettings> {
        &self.settings
    }

    /// The delivery of `signal`, its spool opened (and created) on first use.
    ///
    /// # Errors
    ///
    /// The signal's spool cannot be opened.
    pub fn get(&self, signal: Signal) -> Result<&Delivery, SpoolError> {
        let slot = self.lanes.get(signal);
        if let Some(delivery) = slot.get() {
            return Ok(delivery);
        }
        let delivery = delivery_in(&self.store, signal, &self.settings, self.connect.clone())?;
        Ok(slot.get_or_init(|| delivery))
    }

    /// The delivery of `signal` if its spool exists (nothing is created).
    ///
    /// # Errors
    ///
    /// The signal's spool exists but cannot be opened.
    pub fn existing(&self, signal: Signal) -> Result<Option<&Delivery>, SpoolError> {
        match self.store.existing(signal)? {
            Some(_) => self.get(signal).map(Some),
            None => Ok(None),
        }
    }

    /// Delivers `batches` (of any signals, in order) as one short-lived run: the signals side by
    /// side, each after what its spool holds, all within one budget of `budget`; what is not
    /// delivered is spooled. Batches of one signal go in requests of at most `chunk_limit`
    /// bytes (a larger batch alone). One result per request.
    pub async fn export_run(
        &self,
        batches: Vec<EncodedBatch>,
        budget: Duration,
        chunk_limit: usize,
    ) -> Vec<Result<Report, ExportError>> {
        let budget = Budget::starting_now(budget);
        let runs = Signal::ALL.into_iter().filter_map(|signal| {
            let of_signal: Vec<EncodedBatch> = batches
                .iter()
                .filter(|b| b.signal == signal)
                .cloned()
                .collect();
            (!of_signal.is_empty())
                .then(|| self.export_signal(signal, of_signal, budget, chunk_limit))
        });
        join_all(runs).await.into_iter().flatten().collect()
    }

    async fn export_signal(
        &self,
        signal: Signal,
        batches: Vec<EncodedBatch>,
        mut budget: Budget,
        chunk_limit: usize,
    ) -> Vec<Result<Report, ExportError>> {
        let delivery = match self.get(signal) {
            Ok(delivery) => delivery,
            Err(e) => return vec![Err(e.into())],
        };
        let mut reports = Vec::new();
        for chunk in chunks(batches, chunk_limit) {
            reports.push(
                delivery
                    .export_within(encode::concat(&chunk), &mut budget)
                    .await,
            );
        }
        reports
    }

    /// After a short-lived run delivered its own data (`reports`, from
    /// [`export_run`](Deliveries::export_run)): the start delay of a detached drainer when one
    /// should start (see [`drain::should_start_drain`] and [`drain::start_delay`]), else `None`.
    /// Looks at the spool only when the mode and the answers allow a drainer.
    pub fn drain_after(
        &self,
        reports: &[Result<Report, ExportError>],
        rng: &mut fastrand::Rng,
    ) -> Option<Duration> {
        let mode = self.settings.traces.drain;
        // Every request answered 2xx: none kept back, none refused as bad data.
        let answered = !reports.is_empty()
            && reports.iter().all(|r| {
                r.as_ref()
                    .is_ok_and(|r| r.stopped.is_none() && r.dead_lettered == 0)
            });
        let mut after = AfterRun {
            answered,
            backlog_batches: 0,
            lease_held: false,
        };
        if mode == DrainMode::Background && answered {
            let lanes = Signal::ALL
                .into_iter()
                .filter_map(|signal| self.store.existing(signal).ok().flatten());
            for lane in lanes {
                // The count alone: a hook's path (stats would also read a segment for the age).
                let waiting = lane.waiting_batches().unwrap_or(0);
                after.backlog_batches += waiting;
                // Only a spool with a backlog can have a drain under way worth asking about.
                if waiting > 0 {
                    after.lease_held |=
                        matches!(lane.reader(), Err(SpoolError::FlushLeaseHeld { .. }));
                }
            }
        }
        if !drain::should_start_drain(mode, &after) {
            return None;
        }
        // The state the run found: a backoff on any of its endpoints counts.
        let found = reports.iter().flatten().map(|r| &r.before);
        let before = found
            .clone()
            .find(|state| state.backend == Backend::Down)
            .or_else(|| found.clone().next())?;
        Some(drain::start_delay(before, SystemTime::now(), rng))
    }

    /// A detached drainer's work: every signal's spool that exists, side by side, each under
    /// its flush lease, obeying the shared backoff, within the drain budget, the first request
    /// after `start_delay` (see [`Delivery::drain`]).
    pub async fn drain(&self, start_delay: Duration) -> Vec<(Signal, Result<Report, ExportError>)> {
        let mut runs = Vec::new();
        for signal in Signal::ALL {
            match self.existing(signal) {
                Ok(Some(delivery)) => runs.push(futures_util::future::Either::Left(async move {
                    (signal, delivery.drain(start_delay).await)
                })),
                Ok(None) => {}
                Err(e) => runs.push(futures_util::future::Either::Right(async move {
                    (signal, Err(e.into()))
                })),
            }
        }
        join_all(runs).await
    }

    /// Flushes every signal's spool that exists, side by side (see [`Delivery::flush`]). The
    /// progress counts batches of all signals together.
    pub async fn flush(
        &self,
        mode: Mode,
        progress: Option<&Progress<'_>>,
    ) -> Vec<(Signal, Result<Report, ExportError>)> {
        let done = std::sync::atomic::AtomicU64::new(0);
        let mut runs = Vec::new();
        for signal in Signal::ALL {
            let delivery = match self.existing(signal) {
                Ok(Some(delivery)) => delivery,
                Ok(None) => continue,
                Err(e) => {
                    runs.push(futures_util::future::Either::Left(async move {
                        (signal, Err(e.into()))
                    }));
                    continue;
                }
            };
            let done = &done;
            runs.push(futures_util::future::Either::Right(async move {
                let last = std::sync::atomic::AtomicU64::new(0);
                let counted = |n: u64| {
                    let step = n - last.swap(n, std::sync::atomic::Ordering::Relaxed);
                    let total = done.fetch_add(step, std::sync::atomic::Ordering::Relaxed) + step;
                    if let Some(progress) = progress {
                        progress(total);
                    }
                };
                (signal, delivery.flush(mode, Some(&counted)).await)
            }));
        }
        join_all(runs).await
    }
}

/// The delivery of `signal` from its spool in `store` (opened, or created, now). It shares the
/// backoff of an earlier signal (in the order of [`Signal::ALL`]) whose spool exists and whose
/// endpoint, protocol and TLS files are the same: one backoff per distinct endpoint (a gRPC
/// collector taking every signal at one address is down for all of them at once).
///
/// # Errors
///
/// The signal's spool cannot be opened.
pub fn delivery_in(
    store: &Store,
    signal: Signal,
    settings: &PerSignal<DeliverySettings>,
    connect: Connect,
) -> Result<Delivery, SpoolError> {
    let spool = store.lane(signal)?.clone();
    let own = &settings[signal];
    let delivery = Delivery::for_signal(signal, spool, own.clone(), connect);
    if own.endpoint.is_none() {
        return Ok(delivery);
    }
    let fingerprint = own.fingerprint();
    for earlier in Signal::ALL.into_iter().take_while(|s| *s != signal) {
        let theirs = &settings[earlier];
        if theirs.endpoint == own.endpoint
            && theirs.fingerprint() == fingerprint
            && let Some(lane) = store.existing(earlier)?
        {
            return Ok(delivery.sharing_backoff_with(lane.clone()));
        }
    }
    Ok(delivery)
}

/// `batches` in order, grouped into runs of at most `limit` bytes (a larger batch alone).
fn chunks(batches: Vec<EncodedBatch>, limit: usize) -> Vec<Vec<EncodedBatch>> {
    let mut chunks: Vec<Vec<EncodedBatch>> = Vec::new();
    let mut size = 0;
    for batch in batches {
        // A batch received compressed goes alone: sent and stored as it came, not merged into
        // a request that would be compressed again.
        // A chunk's first batch tells whether it is such a one.
        let merges = |chunk: &Vec<EncodedBatch>| {
            batch.gzip.is_none() && chunk[0].gzip.is_none() && size + batch.bytes.len() <= limit
        };
        match chunks.last_mut() {
            Some(chunk) if merges(chunk) => {
                size += batch.bytes.len();
                chunk.push(batch);
            }
            _ => {
                size = batch.bytes.len();
                chunks.push(vec![batch]);
            }
        }
    }
    chunks
}

/// Received batches (from `exec`'s capture or `serve`) go to their signal's spool; delivery
/// takes them from there, oldest first, like everything else.
impl Sink for Deliveries {
    async fn store(&self, batch: EncodedBatch) -> Result<(), StoreError> {
        self.store
            .append_batch(batch.signal, Batch::from(&batch))
            .and_then(AppendOutcome::accepted)
            .map_err(StoreError::failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(n: usize) -> EncodedBatch {
        EncodedBatch::new(Signal::Traces, vec![0; n].into(), 1)
    }

    #[test]
    fn batches_are_grouped_in_order_into_requests_of_at_most_the_limit() {
        let sizes = |chunks: Vec<Vec<EncodedBatch>>| -> Vec<Vec<usize>> {
            chunks
                .iter()
                .map(|c| c.iter().map(|b| b.bytes.len()).collect())
                .collect()
        };
        let got = chunks(vec![sized(4), sized(5), sized(2), sized(20), sized(1)], 10);
        assert_eq!(sizes(got), [vec![4, 5], vec![2], vec![20], vec![1]]);
        assert!(chunks(Vec::new(), 10).is_empty());
        // One received compressed goes alone, as it came.
        let gz = EncodedBatch {
            gzip: Some(vec![1; 3].into()),
            ..sized(3)
        };
        let got = chunks(vec![sized(1), gz, sized(2), sized(3)], 10);
        assert_eq!(sizes(got), [vec![1], vec![3], vec![2, 3]]);
    }
}
