//! Delivery: send within the budget, else spool the same bytes; flush the spool oldest first.
//!
//! [`Delivery`] composes the [`transport`](crate::transport) (HTTP), the
//! [`spool`](crate::spool) (disk) and the [`circuit`](crate::circuit) (shared backoff);
//! [`SpoolExporter`] puts it behind the OpenTelemetry SDK's `SpanExporter`.
//!
//! One delivery, as [`Delivery::export`] runs it (CONTRACT §5):
//! 1. no endpoint, or TLS not ready (an https endpoint whose CA, certificate or key file is
//!    missing) → spool; nothing is sent, never in clear;
//! 2. the shared backoff is open (`retry_at` in the future) → spool, no connection attempt;
//! 3. take the flush lease: flush the spool oldest first, one batch at a time, stopping at the
//!    first failure or when the budget is spent; then, if the spool is empty, let the lease go
//!    and send the new batch (also when the spool cannot be read: the new batch then goes
//!    ahead of older spooled ones);
//! 4. lease held by another process: send the new batch directly while the backend is up or
//!    unknown; when the backoff has just expired only the lease holder probes, so spool it;
//! 5. whatever was not delivered is spooled. Bad data goes to the dead-letter area.
//!
//! A batch is acknowledged in the spool only after a 2xx. The budget bounds the whole of it.

use std::future::Future;
use std::sync::{Arc, Mutex, mpsc};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::Uri;
use http::header::{HeaderName, HeaderValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::circuit::{self, Backend, Outcome, State};
use crate::encode::{EncodedBatch, Encoder};
use crate::receiver::{Sink, StoreError};
use crate::spool::{AppendError, AppendOutcome, Reader, Spool, SpoolError};
use crate::transport::{Compression, SendError, TlsError, TlsFiles, Transport, TransportSettings};

/// Where to deliver, and how long a delivery may take.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `None`: spool only.
    pub endpoint: Option<Uri>,
    /// Sent with every request; never written to disk.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub compression: Compression,
    pub tls: TlsFiles,
    /// Wall time one delivery may spend on the network.
    pub budget: Duration,
    /// Per request; `None` means the budget alone bounds it.
    pub timeout: Option<Duration>,
}

impl Default for DeliverySettings {
    fn default() -> DeliverySettings {
        DeliverySettings {
            endpoint: None,
            headers: Vec::new(),
            compression: Compression::None,
            tls: TlsFiles::default(),
            budget: Duration::from_secs(2),
            timeout: None,
        }
    }
}

impl DeliverySettings {
    /// Identifies the endpoint and the TLS material: the backoff learnt with other settings is
    /// void. File contents count, so a replaced certificate resets it too.
    pub fn fingerprint(&self) -> String {
        let mut crc = crc32c::crc32c(
            self.endpoint
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        for path in [
            &self.tls.ca_file,
            &self.tls.client_cert,
            &self.tls.client_key,
        ] {
            let part = match path {
                Some(p) => {
                    let mut v = p.as_os_str().as_encoded_bytes().to_vec();
                    v.extend(std::fs::read(p).unwrap_or_else(|_| b"\0absent".to_vec()));
                    v
                }
                None => b"\0none".to_vec(),
            };
            crc = crc32c::crc32c_append(crc, &part);
        }
        format!("{crc:08x}")
    }
}

/// A delivery could not keep a batch: neither sent nor stored. The batch comes back.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("could not spool {} spans: {source}", batch.spans)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

/// Why delivery did not (entirely) happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    NoEndpoint,
    TlsNotReady(String),
    BackingOff {
        retry_at: SystemTime,
    },
    /// Another process is flushing, and the backoff has just expired: it probes, not us.
    LeaseHeld,
    Failed(String),
    Budget,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::NoEndpoint => f.write_str("no endpoint configured"),
            // The message already says "TLS not ready".
            Stop::TlsNotReady(e) => f.write_str(e),
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
            Stop::Failed(e) => write!(f, "backend down: {e}"),
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

/// The delivery engine: one spool, one endpoint.
#[derive(Debug)]
pub struct Delivery {
    spool: Arc<Spool>,
    settings: DeliverySettings,
    /// The settings' fingerprint as last taken, empty before the first run (every run reads the
    /// certificate files again: they can be replaced while a long-lived delivery runs).
    fingerprint: Mutex<String>,
    transport: Mutex<Option<Arc<Transport>>>,
}

enum Target {
    NoEndpoint,
    NotReady(TlsError),
    Ready(Arc<Transport>),
}

impl Delivery {
    pub fn new(spool: Spool, settings: DeliverySettings) -> Delivery {
        Delivery::shared(Arc::new(spool), settings)
    }

    /// A delivery over a spool other deliveries may share (a reconfigured `serve`).
    pub fn shared(spool: Arc<Spool>, settings: DeliverySettings) -> Delivery {
        Delivery {
            fingerprint: Mutex::default(),
            spool,
            settings,
            transport: Mutex::new(None),
        }
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn settings(&self) -> &DeliverySettings {
        &self.settings
    }

    /// The fingerprint of the settings as their files are now. When a certificate file changed,
    /// the transport built from the old one is dropped, and the state recorded under the old
    /// fingerprint is void (for every process alike).
    fn fingerprint(&self) -> String {
        let now = self.settings.fingerprint();
        let mut known = self.fingerprint.lock().unwrap_or_else(|p| p.into_inner());
        if *known != now {
            *known = now.clone();
            *self.transport.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        now
    }

    /// The transport, built on first use; rebuilt while TLS is not ready (a file may appear)
    /// and after a certificate file changed (see [`fingerprint`](Delivery::fingerprint)).
    fn target(&self) -> Target {
        let Some(endpoint) = &self.settings.endpoint else {
            return Target::NoEndpoint;
        };
        let mut cached = self.transport.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cached.as_ref() {
            return Target::Ready(t.clone());
        }
        let settings = TransportSettings {
            endpoint: endpoint.clone(),
            headers: self.settings.headers.clone(),
            compression: self.settings.compression,
            tls: self.settings.tls.clone(),
            connect_timeout: Some(self.settings.timeout.unwrap_or(self.settings.budget)),
        };
        match Transport::new(settings) {
            Ok(t) => Target::Ready(cached.insert(Arc::new(t)).clone()),
            Err(e) => Target::NotReady(e),
        }
    }

    fn load_state(&self) -> State {
        let bytes = self
            .spool
            .load_delivery_state()
            .ok()
            .flatten()
            .unwrap_or_default();
        State::decode(&bytes).for_settings(&self.fingerprint())
    }

    fn store_state(&self, before: &State, after: &State) {
        if before != after
            && let Err(e) = self
                .spool
                .store_delivery_state(&after.encode(crate::spool::MAX_DELIVERY_STATE))
        {
            // Advisory (a later run may probe once more): not worth a second line of its own.
            tracing::info!("could not record the delivery state: {e}");
        }
    }

    /// The backend's state as last recorded, without touching the network.
    pub fn status(&self) -> DeliveryStatus {
        let state = self.load_state();
        let (backend, last_error) = match self.settings.endpoint {
            None => ("no_endpoint", None),
            Some(ref uri) if uri.scheme() == Some(&http::uri::Scheme::HTTPS) => {
                match crate::transport::tls_files_present(&self.settings.tls) {
                    Err(e) => ("tls_not_ready", Some(e.to_string())),
                    Ok(()) => (state.backend.as_str(), state.last_error.clone()),
                }
            }
            Some(_) => (state.backend.as_str(), state.last_error.clone()),
        };
        DeliveryStatus {
            backend,
            retry_at: state.retry_at,
            last_error,
        }
    }

    /// Delivers `batch` within the budget, flushing the spool first; spools what is not
    /// delivered (steps in the module doc).
    ///
    /// # Errors
    ///
    /// [`ExportError::Unspooled`], with the batch, when it could be neither sent nor stored.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future may leave the new batch neither sent nor spooled.
    pub async fn export(&self, batch: EncodedBatch) -> Result<Report, ExportError> {
        self.export_in_run(batch, Instant::now() + self.settings.budget, false)
            .await
    }

    /// [`export`](Delivery::export) as one of several by one short-lived run: within the run's
    /// budget, which ends at `deadline`. `answered`: the backend answered an earlier export of
    /// the run, so a request the budget cuts short says nothing against it.
    pub(crate) async fn export_in_run(
        &self,
        batch: EncodedBatch,
        deadline: Instant,
        answered: bool,
    ) -> Result<Report, ExportError> {
        let mut run = Run::new(self);
        run.answered = answered;
        let transport = match run.preflight(true) {
            Ok(transport) => transport,
            Err(stop) => return run.spool_and_finish(batch, stop),
        };
        let probing = run.state.backend == Backend::Down;
        match self.spool.reader() {
            Ok(mut reader) => match run.drain(&mut reader, &transport, deadline).await {
                Ok(true) => {}
                Ok(false) => {
                    let stop = run.report.stopped.clone().unwrap_or(Stop::Budget);
                    return run.spool_and_finish(batch, stop);
                }
                // The spool's trouble is not the backend's: this batch still goes.
                Err(e) => tracing::warn!("could not deliver the spool: {e}"),
            },
            Err(SpoolError::FlushLeaseHeld { .. }) if probing => {
                return run.spool_and_finish(batch, Stop::LeaseHeld);
            }
            Err(SpoolError::FlushLeaseHeld { .. }) => {}
            Err(e) => tracing::warn!("could not read the spool: {e}"),
        }
        match run
            .send(&transport, batch.bytes.clone(), batch.spans, deadline)
            .await
        {
            Sent::Accepted => run.finish(),
            Sent::BadData => {
                if let Err(e) = self.spool.dead_letter(&batch.bytes, batch.spans) {
                    tracing::warn!("could not count or keep the rejected batch: {e}");
                }
                run.finish()
            }
            Sent::Keep(stop) => run.spool_and_finish(batch, stop),
        }
    }

    /// Delivers the spool oldest first within the budget, stopping at the first failure.
    /// With `ignore_backoff` (an explicit `flush`), the shared backoff does not stop it.
    ///
    /// # Errors
    ///
    /// Spool I/O errors. Another process flushing is not an error: the report says
    /// [`Stop::LeaseHeld`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a batch is acknowledged only after the backend accepted it.
    pub async fn flush(
        &self,
        ignore_backoff: bool,
        progress: Option<&Progress>,
    ) -> Result<Report, ExportError> {
        self.flush_with(ignore_backoff, progress, false).await
    }

    /// One round of the agent's forwarding: like [`flush`](Delivery::flush) obeying the backoff,
    /// except that the budget only stops *starting* sends; a request under way keeps its whole
    /// timeout, so a slow backend is not abandoned mid-answer (and sent the batch twice).
    pub async fn forward(&self) -> Result<Report, ExportError> {
        self.flush_with(false, None, true).await
    }

    async fn flush_with(
        &self,
        ignore_backoff: bool,
        progress: Option<&Progress>,
        patient: bool,
    ) -> Result<Report, ExportError> {
        let deadline = Instant::now() + self.settings.budget;
        let mut run = Run::new(self);
        run.progress = progress;
        run.patient = patient;
        let transport = match run.preflight(!ignore_backoff) {
            Ok(transport) => transport,
            Err(stop) => return run.finish_stopped(stop),
        };
        let mut reader = match self.spool.reader() {
            Ok(reader) => reader,
            Err(SpoolError::FlushLeaseHeld { .. }) => return run.finish_stopped(Stop::LeaseHeld),
            Err(e) => return Err(e.into()),
        };
        run.drain(&mut reader, &transport, deadline).await?;
        drop(reader);
        run.finish()
    }
}

/// Told the number of spooled batches dealt with so far, after each one.
pub type Progress = dyn Fn(u64) + Send + Sync;

/// One delivery in progress: the state before and after, and what happened.
struct Run<'a> {
    delivery: &'a Delivery,
    before: State,
    state: State,
    report: Report,
    progress: Option<&'a Progress>,
    /// The deadline only stops new sends; a request under way keeps its whole timeout (the
    /// agent, which has no process exit to hurry to).
    patient: bool,
    /// The backend answered earlier in this run (this delivery or one before it).
    answered: bool,
}

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
    fn new(delivery: &'a Delivery) -> Run<'a> {
        let state = delivery.load_state();
        Run {
            delivery,
            before: state.clone(),
            state,
            report: Report::default(),
            progress: None,
            patient: false,
            answered: false,
        }
    }

    fn record(&mut self, outcome: Outcome) {
        // Only a failure's delay is jittered.
        let jitter = if matches!(outcome, Outcome::Failed { .. }) {
            jitter()
        } else {
            0.0
        };
        self.state = circuit::next(&self.state, &outcome, SystemTime::now(), jitter);
    }

    /// The transport, unless something stops delivery before any connection: no endpoint, TLS
    /// not ready (recorded as the backend's state), or the shared backoff (when obeyed).
    fn preflight(&mut self, obey_backoff: bool) -> Result<Arc<Transport>, Stop> {
        let transport = match self.delivery.target() {
            Target::NoEndpoint => return Err(Stop::NoEndpoint),
            Target::NotReady(e) => {
                let error = e.to_string();
                self.record(Outcome::TlsNotReady {
                    error: error.clone(),
                });
                return Err(Stop::TlsNotReady(error));
            }
            Target::Ready(t) => t,
        };
        if obey_backoff
            && let Some(retry_at) = self
                .state
                .retry_at_time()
                .filter(|_| self.state.is_open(SystemTime::now()))
        {
            return Err(Stop::BackingOff { retry_at });
        }
        Ok(transport)
    }

    /// Sends one batch within what is left of the budget, and learns from the answer.
    async fn send(
        &mut self,
        transport: &Transport,
        bytes: Bytes,
        spans: u32,
        deadline: Instant,
    ) -> Sent {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Sent::Keep(Stop::Budget);
        }
        // A request's own limit; a short-lived run also stops it where its budget ends.
        let nominal = match self.delivery.settings.timeout {
            Some(t) if !t.is_zero() => t,
            _ => self.delivery.settings.budget,
        };
        let timeout = if self.patient {
            nominal
        } else {
            nominal.min(left)
        };
        match transport.send(bytes, timeout).await {
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
                self.report.rejected_spans += accepted.rejected_spans;
                if let Err(e) = self.delivery.spool.count_rejected(accepted.rejected_spans) {
                    tracing::warn!("could not count rejected spans: {e}");
                }
                if accepted.rejected_spans > 0 {
                    tracing::warn!(
                        rejected_spans = accepted.rejected_spans,
                        message = accepted.message.as_deref().unwrap_or(""),
                        "the backend rejected part of a batch"
                    );
                }
                self.record(Outcome::Answered { note: None });
                Sent::Accepted
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
                tracing::info!("delivery failed: {e}");
                self.record(Outcome::Failed {
                    error: e.to_string(),
                    retry_after: e.retry_after(),
                });
                Sent::Keep(Stop::Failed(e.to_string()))
            }
        }
    }

    /// Flushes the spool oldest first. True when it is empty; false when delivery stopped.
    async fn drain(
        &mut self,
        reader: &mut Reader<'_>,
        transport: &Transport,
        deadline: Instant,
    ) -> Result<bool, ExportError> {
        loop {
            let Some(record) = reader.next()? else {
                return Ok(true);
            };
            // Once the request is on its way (its connection's task has run), read the next
            // record from the disk while the backend works on this one. A record already in
            // memory is not worth the extra turn of the scheduler (which polls for I/O events).
            let sent = {
                let send = self.send(
                    transport,
                    record.payload.clone(),
                    record.span_count,
                    deadline,
                );
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
        match self.delivery.spool.append(&batch.bytes, batch.spans) {
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

/// A number in [-1, 1] that differs between processes and calls: enough to spread retries.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let x = crc32c::crc32c(&[nanos.to_le_bytes(), std::process::id().to_le_bytes()].concat());
    f64::from(x) / f64::from(u32::MAX) * 2.0 - 1.0
}

enum Job {
    Export(
        EncodedBatch,
        tokio::sync::oneshot::Sender<Result<Report, ExportError>>,
    ),
    Flush(mpsc::Sender<Result<Report, ExportError>>),
}

/// An OpenTelemetry `SpanExporter` that never loses a span to a missing backend: it sends
/// within the budget and spools what it could not send, flushing the spool on later exports.
///
/// Deliveries run on a thread of the exporter's own, with a tokio runtime of its own, so the
/// exporter works under `with_simple_exporter` and `with_batch_exporter`, in programs with or
/// without a runtime of their own.
#[derive(Debug)]
pub struct SpoolExporter {
    encoder: Encoder,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    budget: Duration,
}

impl SpoolExporter {
    /// Starts the delivery thread.
    ///
    /// # Errors
    ///
    /// When the thread or its runtime cannot be started.
    pub fn new(spool: Spool, settings: DeliverySettings) -> std::io::Result<SpoolExporter> {
        let budget = settings.budget;
        let delivery = Delivery::new(spool, settings);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("tracespool-delivery".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::Export(batch, reply) => {
                            let _ = reply.send(runtime.block_on(delivery.export(batch)));
                        }
                        Job::Flush(reply) => {
                            let _ = reply.send(runtime.block_on(delivery.flush(false, None)));
                        }
                    }
                }
            })?;
        Ok(SpoolExporter {
            encoder: Encoder::default(),
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            budget,
        })
    }

    fn submit(&self, job: Job) -> Result<(), ExportError> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.as_ref()
            .ok_or(ExportError::Shutdown)?
            .send(job)
            .map_err(|_| ExportError::Shutdown)
    }

    /// Flushes the spool within the budget, waiting at most `timeout` for it.
    fn flush_blocking(&self, timeout: Duration) -> Result<Report, ExportError> {
        let (tx, rx) = mpsc::channel();
        self.submit(Job::Flush(tx))?;
        rx.recv_timeout(timeout).map_err(|_| ExportError::Timeout)?
    }
}

fn sdk_error(e: ExportError) -> OTelSdkError {
    match e {
        ExportError::Shutdown => OTelSdkError::AlreadyShutdown,
        ExportError::Timeout => OTelSdkError::Timeout(Duration::ZERO),
        e => OTelSdkError::InternalFailure(e.to_string()),
    }
}

impl SpanExporter for SpoolExporter {
    /// Encodes the batch once and hands it to the delivery thread.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not cancel the delivery: the batch is still sent or spooled.
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let encoded = self.encoder.encode(batch);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Job::Export(encoded, tx)).map_err(sdk_error)?;
        match rx.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(sdk_error(e)),
            Err(_) => Err(OTelSdkError::AlreadyShutdown),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush_blocking(self.budget + Duration::from_millis(500))
            .map(|_| ())
            .map_err(sdk_error)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let flushed = self.flush_blocking(timeout.min(self.budget + Duration::from_millis(500)));
        // Closing the channel ends the thread once its queue is empty.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
        flushed.map(|_| ()).map_err(sdk_error)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.encoder = Encoder::new(resource);
    }
}

/// Received batches (from `exec`'s capture or `serve`) go to the spool; delivery takes them
/// from there, oldest first, like everything else.
impl Sink for Delivery {
    async fn store(&self, batch: EncodedBatch) -> Result<(), StoreError> {
        self.spool
            .append(&batch.bytes, batch.spans)
            .and_then(AppendOutcome::accepted)
            .map_err(StoreError::failed)
    }
}
