//! Delivery: send within the budget, else spool the same bytes; flush the spool oldest first.
//!
//! [`Delivery`] composes an [`Upstream`] (the network, through
//! [`transport`](crate::transport)), the [`spool`](crate::spool) (disk) and the
//! [`circuit`](crate::circuit) (shared backoff); it knows neither sockets nor files itself.
//!
//! One delivery, as [`Delivery::export`] runs it:
//! 1. no endpoint, or TLS not ready (an https endpoint whose CA, certificate or key file is
//!    missing) → spool; nothing is sent, never in clear;
//! 2. the shared backoff is open (`retry_at` in the future) → spool, no connection attempt;
//! 3. drain mode `inline` only: take the flush lease: flush the spool oldest first, one batch
//!    at a time, stopping at the first failure or when the budget is spent; then, if the spool
//!    is empty, let the lease go and send the new batch (also when the spool cannot be read:
//!    the new batch then goes ahead of older spooled ones);
//! 4. drain modes `background` and `off`, or the lease held by another process: send the new
//!    batch directly while the backend is up or unknown; when the backoff has just expired only
//!    the lease holder probes (the run takes the lease for its probe, and spools the batch when
//!    another process holds it);
//! 5. whatever was not delivered is spooled. Bad data goes to the dead-letter area.
//!
//! What starts a detached drainer after a `background` run is decided in [`drain`].
//!
//! A batch is acknowledged in the spool only after a 2xx. The budget bounds the whole of it.

pub mod drain;
mod report;
mod run;
mod signals;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Uri;
use http::header::{HeaderName, HeaderValue};

pub use drain::DrainMode;
pub use report::{DeliveryStatus, ExportError, Progress, Report, Stop};
use run::Run;
pub use signals::{Deliveries, delivery_in};

use crate::circuit::State;
use crate::encode::EncodedBatch;
use crate::signal::Signal;
use crate::spool::Spool;
use crate::transport::{
    self, Compression, Connect, Protocol, TlsError, TlsFiles, TransportSettings, Upstream,
};

/// Where to deliver, and how long a delivery may take.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `None`: spool only.
    pub endpoint: Option<Uri>,
    /// Sent with every request; never written to disk.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub compression: Compression,
    pub protocol: Protocol,
    pub tls: TlsFiles,
    /// Wall time one delivery may spend on the network.
    pub budget: Duration,
    /// Per request; `None` means the budget alone bounds it.
    pub timeout: Option<Duration>,
    /// What a short-lived export does with the backlog.
    pub drain: DrainMode,
    /// Wall time a detached drainer (or an exporter's worker, after its exports) may spend on
    /// the backlog.
    pub drain_budget: Duration,
}

impl Default for DeliverySettings {
    fn default() -> DeliverySettings {
        DeliverySettings {
            endpoint: None,
            headers: Vec::new(),
            compression: Compression::None,
            protocol: Protocol::default(),
            tls: TlsFiles::default(),
            budget: Duration::from_secs(2),
            timeout: None,
            drain: DrainMode::default(),
            drain_budget: drain::DEFAULT_DRAIN_BUDGET,
        }
    }
}

impl DeliverySettings {
    /// Identifies the endpoint, its protocol and the TLS material: the backoff learnt with other
    /// settings is void. File contents count, so a replaced certificate resets it too.
    pub fn fingerprint(&self) -> String {
        let mut endpoint = self
            .endpoint
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_default();
        // The default protocol adds nothing: fingerprints of earlier versions stay valid.
        if self.protocol != Protocol::HttpProtobuf {
            endpoint = format!("{} {endpoint}", self.protocol.as_str());
        }
        let mut crc = crc32c::crc32c(endpoint.as_bytes());
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

    /// A request's own limit: the timeout when one is set, else the budget.
    fn request_timeout(&self) -> Duration {
        match self.timeout {
            Some(t) if !t.is_zero() => t,
            _ => self.budget,
        }
    }
}

/// How a run treats the shared backoff, and a request under way when its budget runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A short-lived process (a hook's export, an exporter's flush): obeys the shared backoff;
    /// the end of its budget cuts a request short.
    Hurried,
    /// `tracespool flush`, an explicit request: the shared backoff does not stop it, and a flush
    /// lease held by another process is waited for within the budget.
    Explicit,
    /// `serve`'s forwarding: obeys the backoff; the budget only stops *starting* sends, and a
    /// request under way keeps its whole timeout, so a slow backend is not abandoned
    /// mid-answer (and sent the batch twice).
    Patient,
}

impl Mode {
    fn obeys_backoff(self) -> bool {
        self != Mode::Explicit
    }

    fn waits_for_the_lease(self) -> bool {
        self == Mode::Explicit
    }
}

/// The budget of one short-lived run, shared by all its exports: when it ends, and whether the
/// backend answered earlier in the run (then a request the budget cuts short is no verdict on
/// the backend, which is merely behind a backlog).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
    answered: bool,
}

impl Budget {
    /// A budget of `length` from now.
    pub fn starting_now(length: Duration) -> Budget {
        Budget {
            deadline: Instant::now() + length,
            answered: false,
        }
    }
}

/// The delivery engine: one signal's spool, one endpoint.
pub struct Delivery {
    signal: Signal,
    spool: Arc<Spool>,
    /// Whose `delivery` file holds the backoff: the spool's own, or that of another signal with
    /// the same endpoint (one backoff per distinct endpoint).
    state: Arc<Spool>,
    settings: DeliverySettings,
    connect: Connect,
    /// The settings' fingerprint as last taken, empty before the first run (every run reads the
    /// certificate files again: they can be replaced while a long-lived delivery runs).
    fingerprint: Mutex<String>,
    upstream: Mutex<Option<Arc<dyn Upstream>>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("signal", &self.signal)
            .field("spool", &self.spool)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

enum Target {
    NoEndpoint,
    NotReady(TlsError),
    Ready(Arc<dyn Upstream>),
}

impl Delivery {
    pub fn new(spool: Spool, settings: DeliverySettings) -> Delivery {
        Delivery::shared(Arc::new(spool), settings)
    }

    /// A delivery over a spool other deliveries may share (a reconfigured `serve`).
    pub fn shared(spool: Arc<Spool>, settings: DeliverySettings) -> Delivery {
        Delivery::with_connect(spool, settings, Arc::new(transport::connect))
    }

    /// A traces delivery that reaches its backend through `connect` (a test's mock, say).
    pub fn with_connect(
        spool: Arc<Spool>,
        settings: DeliverySettings,
        connect: Connect,
    ) -> Delivery {
        Delivery::for_signal(Signal::Traces, spool, settings, connect)
    }

    /// The delivery of `signal` from its spool, reaching its backend through `connect`.
    pub fn for_signal(
        signal: Signal,
        spool: Arc<Spool>,
        settings: DeliverySettings,
        connect: Connect,
    ) -> Delivery {
        Delivery {
            signal,
            state: spool.clone(),
            spool,
            settings,
            connect,
            fingerprint: Mutex::default(),
            upstream: Mutex::new(None),
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// The same delivery, learning and obeying the backoff recorded in `state`'s spool: that of
    /// another signal whose endpoint is this one's.
    pub fn sharing_backoff_with(mut self, state: Arc<Spool>) -> Delivery {
        self.state = state;
        self
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
            *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        now
    }

    /// The transport, built on first use; rebuilt while TLS is not ready (a file may appear)
    /// and after a certificate file changed (see [`fingerprint`](Delivery::fingerprint)).
    fn target(&self) -> Target {
        let Some(endpoint) = &self.settings.endpoint else {
            return Target::NoEndpoint;
        };
        let mut cached = self.upstream.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cached.as_ref() {
            return Target::Ready(t.clone());
        }
        let settings = TransportSettings {
            endpoint: endpoint.clone(),
            protocol: self.settings.protocol,
            headers: self.settings.headers.clone(),
            compression: self.settings.compression,
            tls: self.settings.tls.clone(),
            connect_timeout: Some(self.settings.timeout.unwrap_or(self.settings.budget)),
        };
        match (self.connect)(settings) {
            Ok(t) => Target::Ready(cached.insert(t).clone()),
            Err(e) => Target::NotReady(e),
        }
    }

    fn load_state(&self) -> State {
        let bytes = self
            .state
            .load_delivery_state()
            .ok()
            .flatten()
            .unwrap_or_default();
        State::decode(&bytes).for_settings(&self.fingerprint())
    }

    fn store_state(&self, before: &State, after: &State) {
        if before != after
            && let Err(e) = self
                .state
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

    /// Delivers `batch` within the budget (in drain mode `inline` after flushing the spool);
    /// spools what is not delivered (steps in the module doc).
    ///
    /// # Errors
    ///
    /// [`ExportError::Unspooled`], with the batch, when it could be neither sent nor stored.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future may leave the new batch neither sent nor spooled.
    pub async fn export(&self, batch: EncodedBatch) -> Result<Report, ExportError> {
        self.export_within(batch, &mut Budget::starting_now(self.settings.budget))
            .await
    }

    /// [`export`](Delivery::export) as one of several by one short-lived run, within the run's
    /// `budget`, which learns whether the backend answered.
    ///
    /// # Errors
    ///
    /// As [`export`](Delivery::export).
    pub async fn export_within(
        &self,
        batch: EncodedBatch,
        budget: &mut Budget,
    ) -> Result<Report, ExportError> {
        Run::new(self, Mode::Hurried, budget.deadline, budget.answered)
            .export(batch, budget)
            .await
    }

    /// Delivers the spool oldest first within the budget, stopping at the first failure; the
    /// `mode` says whether the shared backoff stops it and whether the budget may cut a request
    /// short.
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
        mode: Mode,
        progress: Option<&Progress<'_>>,
    ) -> Result<Report, ExportError> {
        let deadline = Instant::now() + self.settings.budget;
        let mut run = Run::new(self, mode, deadline, false);
        run.progress = progress;
        run.flush(Duration::ZERO).await
    }

    /// A detached drainer's flush: obeys the shared backoff, within the drain budget, and waits
    /// `start_delay` (within that budget) between taking the flush lease and its first request.
    /// Holding the lease while it waits, it keeps other drainers from starting.
    ///
    /// # Errors
    ///
    /// As [`flush`](Delivery::flush).
    pub async fn drain(&self, start_delay: Duration) -> Result<Report, ExportError> {
        let deadline = Instant::now() + self.settings.drain_budget;
        Run::new(self, Mode::Hurried, deadline, false)
            .flush(start_delay)
            .await
    }

    /// One round of the agent's forwarding: a [`Mode::Patient`] flush.
    pub async fn forward(&self) -> Result<Report, ExportError> {
        self.flush(Mode::Patient, None).await
    }
}
