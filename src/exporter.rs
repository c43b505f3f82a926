//! [`SpoolExporter`]: the [delivery engine](crate::delivery) behind the OpenTelemetry SDK's
//! `SpanExporter`, on a thread of its own.

use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::delivery::{Delivery, DeliverySettings, DrainMode, ExportError, Mode, Report, Stop};
use crate::encode::{EncodedBatch, Encoder};
use crate::spool::Spool;

enum Job {
    Export(
        EncodedBatch,
        tokio::sync::oneshot::Sender<Result<Report, ExportError>>,
    ),
    Flush(mpsc::Sender<Result<Report, ExportError>>),
}

/// An OpenTelemetry `SpanExporter` that never loses a span to a missing backend: it sends
/// within the budget and spools what it could not send, and sends the spool later.
///
/// Deliveries run on a thread of the exporter's own, with a tokio runtime of its own, so the
/// exporter works under `with_simple_exporter` and `with_batch_exporter`, in programs with or
/// without a runtime of their own.
///
/// The backlog, by the settings' drain mode: `background` (the default): an export sends its
/// own batch and returns; then, while no export is waiting, the thread sends the backlog in
/// rounds of one budget each (an export arriving meanwhile waits at most the end of the round),
/// until the spool is empty, a round stops for anything but the budget (a failure, the backoff,
/// another process flushing) or `drain_budget` is spent. No process is started. `inline`: an
/// export sends the backlog first, within its budget. `off`: only `force_flush` and `shutdown`
/// send it.
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
        let drain = settings.drain;
        let drain_budget = settings.drain_budget;
        let delivery = Delivery::new(spool, settings);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("tracespool-delivery".into())
            .spawn(move || {
                // Until when the backlog gets rounds between exports, if it does.
                let mut draining: Option<Instant> = None;
                loop {
                    let job = match draining {
                        Some(until) => match rx.try_recv() {
                            Ok(job) => job,
                            Err(mpsc::TryRecvError::Empty) => {
                                let round = runtime.block_on(delivery.flush(Mode::Hurried, None));
                                let more = round.is_ok_and(|r| {
                                    r.remaining && matches!(r.stopped, Some(Stop::Budget))
                                });
                                draining = draining.filter(|_| more && Instant::now() < until);
                                continue;
                            }
                            Err(mpsc::TryRecvError::Disconnected) => break,
                        },
                        None => match rx.recv() {
                            Ok(job) => job,
                            Err(_) => break,
                        },
                    };
                    match job {
                        Job::Export(batch, reply) => {
                            let result = runtime.block_on(delivery.export(batch));
                            let backlog = result
                                .as_ref()
                                .is_ok_and(|r| r.stopped.is_none() && r.remaining);
                            if drain == DrainMode::Background && backlog && draining.is_none() {
                                draining = Some(Instant::now() + drain_budget);
                            }
                            let _ = reply.send(result);
                        }
                        Job::Flush(reply) => {
                            let _ =
                                reply.send(runtime.block_on(delivery.flush(Mode::Hurried, None)));
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
