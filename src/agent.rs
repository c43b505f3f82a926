//! The long-lived agent behind `serve`: OTLP receivers that spool first, and a forwarder that
//! drains the spool to the backend.
//!
//! - **Acknowledged means stored.** A client gets 200 / OK only after its batch is in the spool
//!   under the spool's sync policy. Concurrent requests are committed together: the committer
//!   takes every request waiting, appends them all, signal by signal, under one lock with one
//!   `fdatasync` each ([`Store::append_all`]), then answers each. When the spool cannot take a batch (too large
//!   for the bound, disk full, I/O error) the client gets 503 / UNAVAILABLE, never a success.
//! - **Forwarding**: one forwarder per signal, each from its own spool to its own endpoint, so
//!   that one signal's trouble never holds up another's. Each runs [`Delivery::forward`] in a
//!   loop, obeying the shared backoff: after a
//!   failure it sleeps until `retry_at`; while TLS is not ready it re-checks the certificate
//!   files every second; with nothing to send it waits for a commit, or polls (other processes
//!   append to the same spool). Only the flush-lease holder delivers, so `exec` and `flush` runs
//!   on the same spool never cause double delivery.
//! - **Its own metrics**: the HTTP listener answers `GET /metrics` with [`AgentMetrics`],
//!   rendered at each scrape (the spool read then; what the receivers acknowledged and the
//!   forwarders delivered and saw rejected counted as it happens), and `GET /healthz`.
//! - **Reconfiguring** swaps the delivery settings (a new endpoint or CA resets the backoff).
//! - **Stopping**: receivers stop accepting and finish in-flight requests (for [`DRAIN`] at most;
//!   connections still open then are cut, their requests never acknowledged), the committer
//!   commits what was queued, then one last flush within the budget.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::agent_metrics::AgentMetrics;
use crate::delivery::{Delivery, DeliverySettings, Mode, Stop, delivery_in};
use crate::encode::EncodedBatch;
use crate::receiver::{self, ReceiverSettings, Sink, StoreError};
use crate::signal::{PerSignal, Signal};
use crate::spool::{AppendOutcome, Batch, Compress, Store};
use crate::transport;

/// How many waiting requests one commit takes at most.
const MAX_GROUP: usize = 256;
/// Undelivered batches from which serve compresses what it stores (see `compress_now`).
const COMPRESS_BACKLOG: u64 = 64;
/// How often an idle forwarder looks for batches appended by other processes.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long the forwarder, woken by a commit, lets further commits gather before it flushes.
/// Clients were answered at their commit: this delays only the forwarding.
const GATHER: Duration = Duration::from_millis(20);
/// How often a forwarder with TLS not ready looks for the certificate files.
const TLS_POLL: Duration = Duration::from_secs(1);
/// How soon a forwarder looks again after a failed delivery (which recorded the backoff).
const FAILED_RECHECK: Duration = Duration::from_millis(10);
/// How long a forwarder waits after the spool itself failed.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How long requests in flight may take to finish once the agent is stopping.
const DRAIN: Duration = Duration::from_secs(5);

/// Where the agent listens.
#[derive(Debug, Clone)]
pub struct Listen {
    pub http: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
    pub receiver: ReceiverSettings,
}

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// The receivers' sink: queues each batch for the committer and waits for its verdict.
struct GroupCommit {
    queue: mpsc::Sender<(EncodedBatch, Reply)>,
}

impl Sink for GroupCommit {
    async fn store(&self, batch: EncodedBatch) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((batch, tx))
            .await
            .map_err(|_| StoreError::Stopping)?;
        rx.await.map_err(|_| StoreError::Stopping)?
    }
}

/// Commits queued batches in groups until the queue closes: every receiver has stopped, or
/// `close` fired (then what is queued already is still committed).
async fn committer(
    store: Arc<Store>,
    mut queue: mpsc::Receiver<(EncodedBatch, Reply)>,
    committed: Arc<PerSignal<Notify>>,
    close: oneshot::Receiver<()>,
) {
    tokio::pin!(close);
    let mut closing = false;
    loop {
        let first = tokio::select! {
            item = queue.recv() => item,
            _ = &mut close, if !closing => {
                closing = true;
                queue.close();
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        for signal in Signal::ALL {
            let (batches, replies): (Vec<EncodedBatch>, Vec<Reply>) =
                group.extract_if(.., |(b, _)| b.signal == signal).unzip();
            if batches.is_empty() {
                continue;
            }
            commit(&store, signal, batches, replies).await;
            committed[signal].notify_one();
        }
    }
}

/// What serve compresses at rest: batches received compressed, always (as they came, at no
/// cost); its own compression only once a backlog waits. While the forwarder keeps up, what is
/// stored goes out within milliseconds, and compressing it would only slow the intake down
/// (by a fifth at one client, measured here).
fn compress_now(store: &Store, signal: Signal) -> Compress {
    match store.existing(signal) {
        Ok(Some(lane)) if lane.waiting_batches().is_ok_and(|n| n < COMPRESS_BACKLOG) => {
            Compress::ReceivedOnly
        }
        _ => Compress::Always,
    }
}

/// Appends one signal's batches under one lock and one sync, and answers each.
async fn commit(
    store: &Arc<Store>,
    signal: Signal,
    batches: Vec<EncodedBatch>,
    replies: Vec<Reply>,
) {
    let store = store.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let items: Vec<Batch<'_>> = batches.iter().map(Batch::from).collect();
        store
            .append_all_compressing(signal, &items, compress_now(&store, signal))
            .map(|results| {
                results
                    .into_iter()
                    .map(|r| {
                        r.and_then(AppendOutcome::accepted)
                            .map_err(StoreError::failed)
                    })
                    .collect::<Vec<_>>()
            })
    })
    .await;
    let failed = match outcome {
        Ok(Ok(results)) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            return;
        }
        Ok(Err(e)) => StoreError::failed(e),
        Err(join) => StoreError::failed(join),
    };
    for reply in replies {
        let _ = reply.send(Err(failed.clone()));
    }
}

/// How long to wait before the next flush, after one that stopped for `stop`.
fn pause_after(stop: Option<&Stop>) -> Duration {
    match stop {
        None => IDLE_POLL,
        Some(Stop::BackingOff { retry_at }) => retry_at
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
        Some(Stop::TlsNotReady(_)) => TLS_POLL,
        Some(Stop::Budget) => Duration::ZERO,
        // The failure opened the backoff; the next flush learns how long from the state (a
        // state that could not be stored still makes no busy loop).
        Some(Stop::Failed(_)) => FAILED_RECHECK,
        Some(Stop::LeaseHeld) | Some(Stop::NoEndpoint) => IDLE_POLL,
    }
}

/// The forwarding of `signal`, once its spool exists (it is not created for nothing).
fn delivery_of(
    store: &Store,
    signal: Signal,
    settings: &PerSignal<DeliverySettings>,
) -> Option<Delivery> {
    let opened = match store.existing(signal) {
        Ok(Some(_)) => delivery_in(store, signal, settings, Arc::new(transport::connect)),
        Ok(None) => return None,
        Err(e) => Err(e),
    };
    opened
        .inspect_err(|e| tracing::warn!("forwarding {signal}: {e}"))
        .ok()
}

/// Drains one signal's spool until `stopping` turns true, then makes one last flush.
async fn forwarder(
    store: Arc<Store>,
    signal: Signal,
    mut settings: watch::Receiver<PerSignal<DeliverySettings>>,
    committed: Arc<PerSignal<Notify>>,
    mut stopping: watch::Receiver<bool>,
    metrics: Arc<AgentMetrics>,
) {
    let mut delivery = delivery_of(&store, signal, &settings.borrow_and_update());
    loop {
        if delivery.is_none() {
            delivery = delivery_of(&store, signal, &settings.borrow());
        }
        // Woken early by a commit only when nothing stopped delivery.
        let forwarded = match &delivery {
            Some(delivery) => delivery.forward().await,
            None => Ok(crate::delivery::Report::default()),
        };
        let (wake_on_commit, pause) = match forwarded {
            Ok(report) => {
                metrics.count_delivery(signal, &report);
                if report.sent_batches > 0 {
                    tracing::info!(
                        %signal,
                        batches = report.sent_batches,
                        items = report.sent_spans,
                        "forwarded"
                    );
                }
                (
                    report.stopped.is_none(),
                    pause_after(report.stopped.as_ref()),
                )
            }
            // The spool itself failed (a disk error): no backoff was recorded for it, so wait
            // here rather than retry at once.
            Err(e) => {
                tracing::warn!("forwarding {signal}: {e}");
                (false, ERROR_PAUSE)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = committed[signal].notified(), if wake_on_commit => {
                // Commits that follow meanwhile go out in the same flush: at one request at a
                // time, a flush per request would cost more than the request itself.
                tokio::time::sleep(GATHER).await;
            }
            changed = settings.changed() => {
                if changed.is_ok() {
                    delivery = delivery_of(&store, signal, &settings.borrow_and_update());
                    tracing::info!(%signal, "delivery settings reloaded");
                }
            }
            _ = stopping.changed() => {}
        }
        if *stopping.borrow() {
            break;
        }
    }
    let Some(delivery) = delivery else { return };
    let last = delivery.flush(Mode::Hurried, None).await;
    if let Ok(report) = &last {
        metrics.count_delivery(signal, report);
    }
    match last {
        Ok(r) if r.remaining => {
            tracing::info!(%signal, reason = ?r.stopped.map(|s| s.to_string()), "stopping with batches left in the spool")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("last flush: {e}"),
    }
}

/// Runs the agent until `shutdown` completes. `settings` carries the delivery settings; sending
/// new ones reconfigures the forwarder.
///
/// # Errors
///
/// When a listener cannot be bound.
pub async fn run(
    store: Arc<Store>,
    listen: Listen,
    settings: watch::Receiver<PerSignal<DeliverySettings>>,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(Option<SocketAddr>, Option<SocketAddr>),
) -> std::io::Result<()> {
    // A bind error names the address.
    let bind = |addr: SocketAddr| async move {
        receiver::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
    };
    let http = match listen.http {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let grpc = match listen.grpc {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    ready(
        http.as_ref().and_then(|l| l.local_addr().ok()),
        grpc.as_ref().and_then(|l| l.local_addr().ok()),
    );

    let metrics = Arc::new(AgentMetrics::new(store.clone()));
    let committed = Arc::new(PerSignal::<Notify>::default());
    let (queue, queued) = mpsc::channel(4 * MAX_GROUP);
    let sink = Arc::new(GroupCommit { queue });
    let (close_queue, queue_closed) = oneshot::channel();
    let commit_task = tokio::spawn(committer(
        store.clone(),
        queued,
        committed.clone(),
        queue_closed,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stop_forwarding, forwarding_stopped) = watch::channel(false);
    let forward_tasks: Vec<_> = Signal::ALL
        .into_iter()
        .map(|signal| {
            tokio::spawn(forwarder(
                store.clone(),
                signal,
                settings.clone(),
                committed.clone(),
                forwarding_stopped.clone(),
                metrics.clone(),
            ))
        })
        .collect();

    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut receivers = Vec::new();
    // Both listeners count what they acknowledge; only the HTTP one answers `/metrics` (and
    // `/healthz`).
    let settings = ReceiverSettings {
        metrics: Some(metrics.clone()),
        ..listen.receiver.clone()
    };
    if let Some(listener) = http {
        receivers.push(tokio::spawn(receiver::serve(
            listener,
            settings.clone(),
            sink.clone(),
            stopped(stop_rx.clone()),
            DRAIN,
        )));
    }
    if let Some(listener) = grpc {
        let (settings, sink, signal) = (settings.clone(), sink.clone(), stopped(stop_rx.clone()));
        receivers.push(tokio::spawn(async move {
            if let Err(e) = receiver::grpc::serve(listener, settings, sink, signal).await {
                tracing::warn!("gRPC receiver: {e}");
            }
        }));
    }
    drop(sink);

    shutdown.await;
    tracing::info!("stopping: finishing requests in flight");
    let _ = stop_tx.send(true);
    // One drain for all the receivers: one past it (a client that never finishes its request)
    // is cut.
    let drained = tokio::time::Instant::now() + DRAIN + Duration::from_secs(1);
    for mut task in receivers {
        if tokio::time::timeout_at(drained, &mut task).await.is_err() {
            task.abort();
        }
    }
    // Whatever still holds the queue (a connection the abort left behind) queues no more; what
    // is queued already is committed.
    let _ = close_queue.send(());
    let _ = commit_task.await;
    let _ = stop_forwarding.send(true);
    for task in forward_tasks {
        let _ = task.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{SendError, TlsError};

    #[test]
    fn the_forwarder_waits_for_the_backoff_and_polls_otherwise() {
        let later = SystemTime::now() + Duration::from_secs(30);
        let wait = pause_after(Some(&Stop::BackingOff { retry_at: later }));
        assert!(wait > Duration::from_secs(29) && wait <= Duration::from_secs(30));
        assert_eq!(pause_after(Some(&Stop::Budget)), Duration::ZERO);
        assert_eq!(
            pause_after(Some(&Stop::Failed(SendError::TimedOut {
                endpoint: "http://h".into(),
                after: Duration::from_secs(1),
            }))),
            FAILED_RECHECK
        );
        let not_ready = TlsError::HalfPair { given: "key" };
        assert_eq!(pause_after(Some(&Stop::TlsNotReady(not_ready))), TLS_POLL);
        assert_eq!(pause_after(None), IDLE_POLL);
    }
}
