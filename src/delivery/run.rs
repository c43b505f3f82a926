//! One run of the delivery engine: the state before and after, each send and what its answer
//! asks for, and the report.

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use super::{Budget, Delivery, DrainMode, Mode, Progress, Report, Stop, Target};
use crate::circuit::{self, Backend, Outcome, State};
use crate::delivery::ExportError;
use crate::encode::EncodedBatch;
use crate::spool::{Batch, Encoding, Reader, Record, SpoolError};
use crate::transport::{Body, SendError, Upstream, chain};

/// One delivery in progress.
pub(super) struct Run<'a> {
    delivery: &'a Delivery,
    mode: Mode,
    deadline: Instant,
    before: State,
    state: State,
    report: Report,
    pub(super) progress: Option<&'a Progress<'a>>,
    /// The backend answered earlier in this run (this delivery or one before it).
    answered: bool,
    /// Draws the jitter of a failure's backoff.
    rng: fastrand::Rng,
}

/// How often a flush waiting for another process's flush lease tries again.
const LEASE_POLL: Duration = Duration::from_millis(50);

/// What the answer to one send asks the caller to do with the batch.
enum Sent {
    /// Accepted (rejected spans already counted): acknowledge it.
    Accepted,
    /// Rejected as bad data: move it to the dead-letter area.
    BadData,
    /// Not delivered: keep it.
    Keep(Stop),
}

impl<'a> Run<'a> {
    pub(super) fn new(
        delivery: &'a Delivery,
        mode: Mode,
        deadline: Instant,
        answered: bool,
    ) -> Run<'a> {
        let state = delivery.load_state();
        Run {
            delivery,
            mode,
            deadline,
            before: state.clone(),
            state,
            report: Report::default(),
            progress: None,
            answered,
            // Seeded from the OS: processes told the same delay draw different ones.
            rng: fastrand::Rng::new(),
        }
    }

    /// A short-lived run's export: in drain mode `inline` the spool first, then `batch`; else
    /// `batch` alone (steps in the module doc).
    pub(super) async fn export(
        mut self,
        batch: EncodedBatch,
        budget: &mut Budget,
    ) -> Result<Report, ExportError> {
        let upstream = match self.preflight() {
            Ok(upstream) => upstream,
            Err(stop) => return self.spool_and_finish(batch, stop),
        };
        let probing = self.state.backend == Backend::Down;
        if self.delivery.settings.drain != DrainMode::Inline {
            // Only the lease holder probes a backend whose backoff has just expired: the lease
            // is held for the probe.
            let spool = &self.delivery.spool;
            let _lease = match probing.then(|| spool.reader()) {
                None => None,
                Some(Ok(reader)) => Some(reader),
                Some(Err(SpoolError::FlushLeaseHeld { .. })) => {
                    return self.spool_and_finish(batch, Stop::LeaseHeld);
                }
                Some(Err(e)) => {
                    tracing::warn!("could not read the spool: {e}");
                    None
                }
            };
            return self.send_own(upstream.as_ref(), batch, budget).await;
        }
        match self.delivery.spool.reader() {
            Ok(mut reader) => match self.drain(&mut reader, upstream.as_ref()).await {
                Ok(true) => {}
                Ok(false) => {
                    budget.answered |= self.answered;
                    let stop = self.report.stopped.clone().unwrap_or(Stop::Budget);
                    return self.spool_and_finish(batch, stop);
                }
                // The spool's trouble is not the backend's: this batch still goes.
                Err(e) => tracing::warn!("could not deliver the spool: {e}"),
            },
            Err(SpoolError::FlushLeaseHeld { .. }) if probing => {
                return self.spool_and_finish(batch, Stop::LeaseHeld);
            }
            Err(SpoolError::FlushLeaseHeld { .. }) => {}
            Err(e) => tracing::warn!("could not read the spool: {e}"),
        }
        self.send_own(upstream.as_ref(), batch, budget).await
    }

    /// Sends the run's own `batch`; spools it when it is not delivered.
    async fn send_own(
        mut self,
        upstream: &dyn Upstream,
        batch: EncodedBatch,
        budget: &mut Budget,
    ) -> Result<Report, ExportError> {
        let body = Body::both(batch.bytes.clone(), batch.gzip.clone());
        let sent = self.send(upstream, body, batch.items).await;
        budget.answered |= self.answered;
        match sent {
            Sent::Accepted => self.finish(),
            Sent::BadData => {
                if let Err(e) = self.delivery.spool.dead_letter(&batch.bytes, batch.items) {
                    tracing::warn!("could not count or keep the rejected batch: {e}");
                }
                self.finish()
            }
            Sent::Keep(stop) => self.spool_and_finish(batch, stop),
        }
    }

    /// Delivers the spool oldest first, stopping at the first failure. The first request waits
    /// `start_delay` (within the budget) after the flush lease is taken. An explicit flush
    /// waits for a lease another process holds, within its budget.
    pub(super) async fn flush(mut self, start_delay: Duration) -> Result<Report, ExportError> {
        let upstream = match self.preflight() {
            Ok(upstream) => upstream,
            Err(stop) => return self.finish_stopped(stop),
        };
        let spool = &self.delivery.spool;
        let mut reader = loop {
            match spool.reader() {
                Ok(reader) => break reader,
                Err(SpoolError::FlushLeaseHeld { .. })
                    if self.mode.waits_for_the_lease() && Instant::now() < self.deadline =>
                {
                    let left = self.deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(LEASE_POLL.min(left)).await;
                }
                Err(SpoolError::FlushLeaseHeld { .. }) => {
                    return self.finish_stopped(Stop::LeaseHeld);
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut upstream = upstream;
        if !start_delay.is_zero() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(start_delay.min(left)).await;
            // Another process may have learnt of a failure meanwhile.
            self.state = self.delivery.load_state();
            self.before = self.state.clone();
            upstream = match self.preflight() {
                Ok(upstream) => upstream,
                Err(stop) => {
                    drop(reader);
                    return self.finish_stopped(stop);
                }
            };
        }
        self.drain(&mut reader, upstream.as_ref()).await?;
        drop(reader);
        self.finish()
    }

    fn record(&mut self, outcome: Outcome) {
        self.state = circuit::next(&self.state, &outcome, SystemTime::now(), &mut self.rng);
    }

    /// The transport, unless something stops delivery before any connection: no endpoint, TLS
    /// not ready (recorded as the backend's state), or the shared backoff (when obeyed).
    fn preflight(&mut self) -> Result<std::sync::Arc<dyn Upstream>, Stop> {
        let upstream = match self.delivery.target() {
            Target::NoEndpoint => return Err(Stop::NoEndpoint),
            Target::NotReady(e) => {
                self.record(Outcome::TlsNotReady {
                    error: e.to_string(),
                });
                return Err(Stop::TlsNotReady(e));
            }
            Target::Ready(t) => t,
        };
        if self.mode.obeys_backoff()
            && let Some(retry_at) = self
                .state
                .retry_at_time()
                .filter(|_| self.state.is_open(SystemTime::now()))
        {
            return Err(Stop::BackingOff { retry_at });
        }
        Ok(upstream)
    }

    /// Sends one batch within what is left of the budget, and learns from the answer.
    async fn send(&mut self, upstream: &dyn Upstream, body: Body, spans: u32) -> Sent {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Sent::Keep(Stop::Budget);
        }
        // A request's own limit; a short-lived run also stops it where its budget ends.
        let nominal = self.delivery.settings.request_timeout();
        let timeout = if self.mode == Mode::Patient {
            nominal
        } else {
            nominal.min(left)
        };
        match upstream.send(self.delivery.signal, body, timeout).await {
            // It answered earlier in this run, and our budget (not its own timeout) ran out:
            // no verdict on a backend that is merely behind a backlog.
            Err(e) if e.is_timeout() && timeout < nominal && self.answered => {
                tracing::info!("budget spent while waiting for an answer: {e}");
                Sent::Keep(Stop::Budget)
            }
            Ok(accepted) => {
                self.answered = true;
                self.report.sent_batches += 1;
                self.report.sent_spans += u64::from(spans);
                self.report.rejected_spans += accepted.rejected;
                if let Err(e) = self.delivery.spool.count_rejected(accepted.rejected) {
                    tracing::warn!("could not count rejected spans: {e}");
                }
                if accepted.rejected > 0 {
                    tracing::warn!(
                        rejected_spans = accepted.rejected,
                        message = accepted.message.as_deref().unwrap_or(""),
                        "the backend rejected part of a batch"
                    );
                }
                self.record(Outcome::Answered { note: None });
                Sent::Accepted
            }
            // Ours to judge: the backend was not asked, and its state stays as it was.
            Err(e @ SendError::Undecodable { .. }) => {
                tracing::warn!("{e}; keeping the batch in the dead-letter area");
                self.report.dead_lettered += 1;
                self.report.rejected_spans += u64::from(spans);
                Sent::BadData
            }
            Err(e @ SendError::BadData { .. }) => {
                self.answered = true;
                tracing::warn!("{e}; keeping the batch in the dead-letter area");
                self.report.dead_lettered += 1;
                self.report.rejected_spans += u64::from(spans);
                self.record(Outcome::Answered {
                    note: Some(e.to_string()),
                });
                Sent::BadData
            }
            Err(e) => {
                let error = chain(&e);
                tracing::info!("delivery failed: {error}");
                self.record(Outcome::Failed {
                    error,
                    retry_after: e.retry_after(),
                });
                Sent::Keep(Stop::Failed(e))
            }
        }
    }

    /// Flushes the spool oldest first. True when it is empty; false when delivery stopped.
    async fn drain(
        &mut self,
        reader: &mut Reader<'_>,
        upstream: &dyn Upstream,
    ) -> Result<bool, ExportError> {
        loop {
            let Some(record) = reader.next()? else {
                return Ok(true);
            };
            // Once the request is on its way (its connection's task has run), read the next
            // record from the disk while the backend works on this one. A record already in
            // memory is not worth the extra turn of the scheduler (which polls for I/O events).
            let sent = {
                let send = self.send(upstream, stored_body(&record), record.span_count);
                tokio::pin!(send);
                let first = std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await;
                match first {
                    Poll::Ready(sent) => sent,
                    Poll::Pending => {
                        if !reader.next_in_memory(&record) {
                            tokio::task::yield_now().await;
                            reader.read_ahead(&record);
                        }
                        send.await
                    }
                }
            };
            match sent {
                Sent::Accepted => reader.ack_deferred(&record)?,
                Sent::BadData => reader.dead_letter(&record)?,
                Sent::Keep(stop) => {
                    self.report.remaining = true;
                    self.report.stopped = Some(stop);
                    return Ok(false);
                }
            }
            if let Some(progress) = self.progress {
                progress(self.report.sent_batches + self.report.dead_lettered);
            }
        }
    }

    fn spool_and_finish(mut self, batch: EncodedBatch, stop: Stop) -> Result<Report, ExportError> {
        match self.delivery.spool.append_batch(Batch::from(&batch)) {
            Ok(outcome) => {
                outcome.warn_if_dropped();
                self.report.spooled = outcome.stored;
                self.report.dropped = outcome;
            }
            Err(source) => {
                self.finish_stopped(stop)?;
                return Err(ExportError::Unspooled { batch, source });
            }
        }
        self.finish_stopped(stop)
    }

    fn finish_stopped(mut self, stop: Stop) -> Result<Report, ExportError> {
        self.report.stopped = Some(stop);
        self.report.remaining = true;
        self.finish()
    }

    fn finish(mut self) -> Result<Report, ExportError> {
        self.delivery.store_state(&self.before, &self.state);
        self.report.backend = self.state.backend;
        self.report.last_error = self.state.last_error.clone();
        self.report.before = self.before.clone();
        // Stopped: something remains by definition. Ran to the end: count what others added
        // meanwhile (`flush` exits on it). A hook's spooling run skips the count.
        if self.report.stopped.is_none()
            && let Ok(stats) = self.delivery.spool.stats()
        {
            self.report.remaining = stats.batches > 0;
        }
        Ok(self.report)
    }
}

/// A stored record as a request body, in the form it is stored in.
fn stored_body(record: &Record) -> Body {
    match record.encoding {
        Encoding::Identity => Body::plain(record.payload.clone()),
        Encoding::Gzip => Body::gzip(record.payload.clone()),
    }
}
