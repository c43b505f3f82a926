//! The long-lived agent behind `serve`: OTLP receivers that spool first, and a forwarder that
//! drains the spool to the backend (CONTRACT §3 `serve`, §4–§6).
//!
//! - **Acknowledged means stored.** A client gets 200 / OK only after its batch is in the spool
//!   under the spool's sync policy. Concurrent requests are committed together: the committer
//!   takes every request waiting, appends them all under one lock with one `fdatasync`
//!   ([`Spool::append_all`]), then answers each. When the spool cannot take a batch (too large
//!   for the bound, disk full, I/O error) the client gets 503 / UNAVAILABLE, never a success.
//! - **Forwarding** runs [`Delivery::flush`] in a loop, obeying the shared backoff: after a
//!   failure it sleeps until `retry_at`; while TLS is not ready it re-checks the certificate
//!   files every second; with nothing to send it waits for a commit, or polls (other processes
//!   append to the same spool). Only the flush-lease holder delivers, so `exec` and `flush` runs
//!   on the same spool never cause double delivery.
//! - **Reconfiguring** swaps the delivery settings (a new endpoint or CA resets the backoff).
//! - **Stopping**: receivers stop accepting and finish in-flight requests (for [`DRAIN`] at most;
//!   connections still open then are cut, their requests never acknowledged), the committer
//!   commits what was queued, then one last flush within the budget.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::delivery::{Delivery, DeliverySettings, Mode, Stop};
use crate::encode::EncodedBatch;
use crate::receiver::{self, ReceiverSettings, Sink, StoreError};
use crate::spool::{AppendOutcome, Spool};

/// How many waiting requests one commit takes at most.
const MAX_GROUP: usize = 256;
/// How often an idle forwarder looks for batches appended by other processes.
const IDLE_POLL: Duration = Duration::from_secs(1);
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
    spool: Arc<Spool>,
    mut queue: mpsc::Receiver<(EncodedBatch, Reply)>,
    committed: Arc<Notify>,
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
        let (batches, replies): (Vec<EncodedBatch>, Vec<Reply>) = group.into_iter().unzip();
        let spool = spool.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let items: Vec<(&[u8], u32)> =
                batches.iter().map(|b| (&b.bytes[..], b.items)).collect();
            spool.append_all(&items).map(|results| {
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
        match outcome {
            Ok(Ok(results)) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Ok(Err(e)) => {
                let e = StoreError::failed(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(join) => {
                let e = StoreError::failed(join);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        committed.notify_one();
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

/// Drains the spool until `stopping` turns true, then makes one last flush.
async fn forwarder(
    spool: Arc<Spool>,
    mut settings: watch::Receiver<DeliverySettings>,
    committed: Arc<Notify>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut delivery = Delivery::shared(spool.clone(), settings.borrow_and_update().clone());
    loop {
        // Woken early by a commit only when nothing stopped delivery.
        let (wake_on_commit, pause) = match delivery.forward().await {
            Ok(report) => {
                if report.sent_batches > 0 {
                    tracing::info!(
                        batches = report.sent_batches,
                        spans = report.sent_spans,
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
                tracing::warn!("forwarding: {e}");
                (false, ERROR_PAUSE)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = committed.notified(), if wake_on_commit => {}
            changed = settings.changed() => {
                if changed.is_ok() {
                    delivery = Delivery::shared(spool.clone(), settings.borrow_and_update().clone());
                    tracing::info!("delivery settings reloaded");
                }
            }
            _ = stopping.changed() => {}
        }
        if *stopping.borrow() {
            break;
        }
    }
    match delivery.flush(Mode::Hurried, None).await {
        Ok(r) if r.remaining => {
            tracing::info!(reason = ?r.stopped.map(|s| s.to_string()), "stopping with batches left in the spool")
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
    spool: Arc<Spool>,
    listen: Listen,
    settings: watch::Receiver<DeliverySettings>,
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

    let committed = Arc::new(Notify::new());
    let (queue, queued) = mpsc::channel(4 * MAX_GROUP);
    let sink = Arc::new(GroupCommit { queue });
    let (close_queue, queue_closed) = oneshot::channel();
    let commit_task = tokio::spawn(committer(
        spool.clone(),
        queued,
        committed.clone(),
        queue_closed,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stop_forwarding, forwarding_stopped) = watch::channel(false);
    let forward_task = tokio::spawn(forwarder(
        spool.clone(),
        settings,
        committed,
        forwarding_stopped,
    ));

    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut receivers = Vec::new();
    if let Some(listener) = http {
        receivers.push(tokio::spawn(receiver::http::serve(
            listener,
            listen.receiver.clone(),
            sink.clone(),
            stopped(stop_rx.clone()),
            DRAIN,
        )));
    }
    if let Some(listener) = grpc {
        let (settings, sink, signal) = (
            listen.receiver.clone(),
            sink.clone(),
            stopped(stop_rx.clone()),
        );
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
    let _ = forward_task.await;
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
