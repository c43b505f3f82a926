//! The delivery engine against a mock backend: backoff, budget, flush lease, dead letter,
//! partial success, and which signal goes where.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::*;
use crate::circuit::Backend;
use crate::signal::Signal;
use crate::spool::{Spool, SpoolOptions};
use crate::transport::{Accepted, Body, Code, SendError, TlsError, Upstream};

/// What the mock answers one request with.
#[derive(Clone)]
enum Answer {
    Take(Accepted),
    Refuse(SendError),
    /// Answers 2xx after this long (a timeout of the run cuts it short).
    Slow(Duration),
    Never,
}

fn unavailable(retry_after: Option<Duration>) -> Answer {
    Answer::Refuse(SendError::Unavailable {
        status: Code::Http(503),
        endpoint: "http://mock/v1/traces".into(),
        message: String::new(),
        retry_after,
    })
}

/// A backend that answers from a script (then 2xx) and records what it was sent.
#[derive(Debug, Default)]
struct Mock {
    script: Mutex<VecDeque<Answer>>,
    sent: Mutex<Vec<(Signal, Bytes)>>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answer")
    }
}

impl Mock {
    fn answering(answers: impl IntoIterator<Item = Answer>) -> Arc<Mock> {
        Arc::new(Mock {
            script: Mutex::new(answers.into_iter().collect()),
            sent: Mutex::default(),
        })
    }

    fn sent(&self) -> Vec<Bytes> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

impl Upstream for Mock {
    fn send(
        &self,
        signal: Signal,
        body: Body,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Accepted, SendError>> {
        // As the transports do: what does not decompress is never sent.
        let body = match body.into_plain() {
            Ok(body) => body,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        self.sent.lock().unwrap().push((signal, body));
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Take(Accepted::default()));
        Box::pin(async move {
            let wait = match answer {
                Answer::Take(a) => return Ok(a),
                Answer::Refuse(e) => return Err(e),
                Answer::Slow(d) => d,
                Answer::Never => Duration::MAX,
            };
            match tokio::time::timeout(timeout, tokio::time::sleep(wait)).await {
                Ok(()) => Ok(Accepted::default()),
                Err(_) => Err(SendError::TimedOut {
                    endpoint: "http://mock/v1/traces".into(),
                    after: timeout,
                }),
            }
        })
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    delivery: Delivery,
    mock: Arc<Mock>,
}

fn setup(mock: Arc<Mock>, budget: Duration) -> Setup {
    setup_draining(mock, budget, DrainMode::default())
}

fn setup_draining(mock: Arc<Mock>, budget: Duration, drain: DrainMode) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path().join("spool"), SpoolOptions::default()).unwrap();
    let settings = DeliverySettings {
        endpoint: Some("http://mock/v1/traces".parse().unwrap()),
        budget,
        drain,
        ..DeliverySettings::default()
    };
    let upstream = mock.clone();
    let connect: Connect = Arc::new(move |_| Ok(upstream.clone() as Arc<dyn Upstream>));
    Setup {
        _dir: dir,
        delivery: Delivery::with_connect(Arc::new(spool), settings, connect),
        mock,
    }
}

fn batch(name: &str) -> EncodedBatch {
    EncodedBatch::new(Signal::Traces, Bytes::copy_from_slice(name.as_bytes()), 1)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_batch_the_backend_takes_is_sent_once_and_not_spooled() {
    let s = setup(Mock::answering([]), Duration::from_secs(2));
    let report = runtime().block_on(s.delivery.export(batch("a"))).unwrap();
    assert_eq!((report.sent_batches, report.spooled), (1, false));
    assert_eq!(report.backend, Backend::Up);
    assert_eq!(s.mock.sent(), [Bytes::from("a")]);
    assert_eq!(s.mock.sent.lock().unwrap()[0].0, Signal::Traces);
    assert_eq!(s.delivery.spool().stats().unwrap().batches, 0);
}

#[test]
fn a_retryable_failure_spools_the_batch_and_opens_the_backoff_for_later_runs() {
    let s = setup(
        Mock::answering([unavailable(Some(Duration::from_secs(30)))]),
        Duration::from_secs(2),
    );
    let rt = runtime();
    let first = rt.block_on(s.delivery.export(batch("a"))).unwrap();
    assert!(first.spooled && matches!(first.stopped, Some(Stop::Failed(_))));
    assert_eq!(first.backend, Backend::Down);
    let retry_at = s.delivery.status().retry_at.unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        // Retry-After: 30 is drawn from [30 s, 38.5 s].
        (now + 29.0..=now + 39.5).contains(&retry_at),
        "{retry_at} vs {now}"
    );

    // Backing off: no connection at all, the batch goes to the spool behind the first.
    let second = rt.block_on(s.delivery.export(batch("b"))).unwrap();
    assert!(matches!(second.stopped, Some(Stop::BackingOff { .. })));
    assert_eq!(s.mock.sent().len(), 1);

    // An explicit flush ignores the backoff and delivers oldest first.
    let flushed = rt.block_on(s.delivery.flush(Mode::Explicit, None)).unwrap();
    assert_eq!((flushed.sent_batches, flushed.remaining), (2, false));
    assert_eq!(&s.mock.sent()[1..], [Bytes::from("a"), Bytes::from("b")]);
    assert_eq!(s.delivery.status().backend, "up");
    assert_eq!(s.delivery.status().retry_at, None);
}

#[test]
fn hurried_and_patient_flushes_obey_the_backoff() {
    let s = setup(Mock::answering([unavailable(None)]), Duration::from_secs(2));
    let rt = runtime();
    rt.block_on(s.delivery.export(batch("a"))).unwrap();
    for mode in [Mode::Hurried, Mode::Patient] {
        let report = rt.block_on(s.delivery.flush(mode, None)).unwrap();
        assert!(
            matches!(report.stopped, Some(Stop::BackingOff { .. })),
            "{mode:?}"
        );
    }
    assert_eq!(s.mock.sent().len(), 1);
}

#[test]
fn a_backend_that_never_answers_costs_the_budget_and_the_batch_is_kept() {
    let budget = Duration::from_millis(300);
    let s = setup(Mock::answering([Answer::Never]), budget);
    let start = Instant::now();
    let report = runtime().block_on(s.delivery.export(batch("a"))).unwrap();
    let took = start.elapsed();
    assert!(
        took >= budget && took < budget + Duration::from_millis(200),
        "{took:?}"
    );
    assert!(report.spooled);
    assert!(
        matches!(
            report.stopped,
            Some(Stop::Failed(SendError::TimedOut { .. }))
        ),
        "{:?}",
        report.stopped
    );
    assert_eq!(report.backend, Backend::Down);
}

#[test]
fn the_budget_cutting_short_a_backend_that_answered_earlier_in_the_run_is_no_verdict_on_it() {
    let s = setup(
        Mock::answering([Answer::Take(Accepted::default()), Answer::Never]),
        Duration::from_millis(300),
    );
    let rt = runtime();
    let mut budget = Budget::starting_now(Duration::from_millis(300));
    let first = rt
        .block_on(s.delivery.export_within(batch("a"), &mut budget))
        .unwrap();
    assert_eq!(first.sent_batches, 1);
    let second = rt
        .block_on(s.delivery.export_within(batch("b"), &mut budget))
        .unwrap();
    assert!(second.spooled && matches!(second.stopped, Some(Stop::Budget)));
    assert_eq!(second.backend, Backend::Up, "not marked down");
    assert_eq!(s.delivery.status().retry_at, None);
}

#[test]
fn a_patient_flush_lets_a_request_under_way_finish_past_the_budget() {
    let s = setup(
        Mock::answering([unavailable(None), Answer::Slow(Duration::from_millis(400))]),
        Duration::from_millis(200),
    );
    let rt = runtime();
    rt.block_on(s.delivery.export(batch("a"))).unwrap();
    // The backoff (about a second) must pass before a patient flush tries again.
    std::thread::sleep(Duration::from_millis(1300));
    let mut settings = s.delivery.settings().clone();
    settings.timeout = Some(Duration::from_secs(2));
    let upstream = s.mock.clone();
    let patient = Delivery::with_connect(
        Arc::new(Spool::open(s.delivery.spool().path(), SpoolOptions::default()).unwrap()),
        settings,
        Arc::new(move |_| Ok(upstream.clone() as Arc<dyn Upstream>)),
    );
    let report = rt.block_on(patient.forward()).unwrap();
    assert_eq!(
        (report.sent_batches, report.remaining),
        (1, false),
        "{report:?}"
    );
}

#[test]
fn while_another_process_holds_the_lease_a_healthy_backend_gets_the_new_batch_directly() {
    let s = setup(Mock::answering([]), Duration::from_secs(2));
    let other = Spool::open(s.delivery.spool().path(), SpoolOptions::default()).unwrap();
    let lease = other.reader().unwrap();
    let report = runtime().block_on(s.delivery.export(batch("a"))).unwrap();
    assert_eq!((report.sent_batches, report.spooled), (1, false));
    drop(lease);
}

#[test]
fn bad_data_goes_to_the_dead_letter_area_and_its_spans_are_counted_rejected() {
    let bad = Answer::Refuse(SendError::BadData {
        status: Code::Http(400),
        message: "invalid span id".into(),
    });
    let s = setup(
        Mock::answering([unavailable(None), bad]),
        Duration::from_secs(2),
    );
    let rt = runtime();
    rt.block_on(s.delivery.export(batch("a"))).unwrap();
    let report = rt.block_on(s.delivery.flush(Mode::Explicit, None)).unwrap();
    assert_eq!((report.dead_lettered, report.rejected_spans), (1, 1));
    assert_eq!(
        report.backend,
        Backend::Up,
        "a backend that judges the data is up"
    );
    let stats = s.delivery.spool().stats().unwrap();
    assert_eq!((stats.batches, stats.rejected_spans), (0, 1));
    assert!(stats.deadletter_bytes > 0);
}

#[test]
fn a_stored_batch_that_does_not_decompress_is_dead_lettered_without_a_request() {
    let s = setup(Mock::answering([unavailable(None)]), Duration::from_secs(2));
    let rt = runtime();
    // A body said to be gzip that is not: stored as it came, flagged compressed.
    let broken = EncodedBatch {
        gzip: Some(Bytes::from_static(b"not gzip at all")),
        ..EncodedBatch::new(Signal::Traces, Bytes::from(vec![b'x'; 400]), 3)
    };
    rt.block_on(s.delivery.export(broken)).unwrap();
    let before = s.delivery.status().backend;
    let report = rt.block_on(s.delivery.flush(Mode::Explicit, None)).unwrap();
    assert_eq!((report.dead_lettered, report.rejected_spans), (1, 3));
    assert_eq!(
        s.mock.sent().len(),
        1,
        "only the first attempt, refused, was sent"
    );
    assert_eq!(
        s.delivery.status().backend,
        before,
        "no answer of the backend's: its state stays"
    );
    let stats = s.delivery.spool().stats().unwrap();
    assert_eq!((stats.batches, stats.rejected_spans), (0, 3));
    assert!(stats.deadletter_bytes > 0);
}

#[test]
fn a_partial_success_counts_the_rejected_spans_and_acknowledges_the_batch() {
    let partial = Answer::Take(Accepted {
        rejected: 2,
        message: Some("too old".into()),
    });
    let s = setup(Mock::answering([partial]), Duration::from_secs(2));
    let report = runtime().block_on(s.delivery.export(batch("a"))).unwrap();
    assert_eq!((report.sent_batches, report.rejected_spans), (1, 2));
    assert_eq!(s.delivery.spool().stats().unwrap().rejected_spans, 2);
}

#[test]
fn tls_not_ready_spools_without_any_connection_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path().join("spool"), SpoolOptions::default()).unwrap();
    let settings = DeliverySettings {
        endpoint: Some("https://mock/v1/traces".parse().unwrap()),
        ..DeliverySettings::default()
    };
    let connect: Connect = Arc::new(|_| Err(TlsError::HalfPair { given: "key" }));
    let delivery = Delivery::with_connect(Arc::new(spool), settings, connect);
    let report = runtime().block_on(delivery.export(batch("a"))).unwrap();
    assert!(report.spooled && matches!(report.stopped, Some(Stop::TlsNotReady(_))));
    assert_eq!(report.backend, Backend::TlsNotReady);
}

#[test]
fn no_endpoint_spools_and_the_flush_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path().join("spool"), SpoolOptions::default()).unwrap();
    let delivery = Delivery::new(spool, DeliverySettings::default());
    let rt = runtime();
    let report = rt.block_on(delivery.export(batch("a"))).unwrap();
    assert!(report.spooled && matches!(report.stopped, Some(Stop::NoEndpoint)));
    let flushed = rt.block_on(delivery.flush(Mode::Explicit, None)).unwrap();
    assert!(flushed.remaining && matches!(flushed.stopped, Some(Stop::NoEndpoint)));
}

fn deliveries(mock: Arc<Mock>, endpoints: [&str; 3]) -> (tempfile::TempDir, Deliveries) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        crate::spool::Store::open(dir.path().join("spool"), SpoolOptions::default()).unwrap();
    let settings = crate::signal::PerSignal::from_fn(|signal| DeliverySettings {
        endpoint: Some(
            endpoints[Signal::ALL.iter().position(|s| *s == signal).unwrap()]
                .parse()
                .unwrap(),
        ),
        protocol: crate::transport::Protocol::Grpc,
        ..DeliverySettings::default()
    });
    let connect: Connect = Arc::new(move |_| Ok(mock.clone() as Arc<dyn Upstream>));
    (
        dir,
        Deliveries::with_connect(Arc::new(store), settings, connect),
    )
}

fn signal_batch(signal: Signal) -> EncodedBatch {
    EncodedBatch::new(signal, Bytes::from(signal.as_str()), 1)
}

#[test]
fn signals_with_one_endpoint_share_its_backoff_and_others_keep_their_own() {
    let mock = Mock::answering([unavailable(Some(Duration::from_secs(30)))]);
    let (_dir, all) = deliveries(
        mock.clone(),
        ["http://a:4317", "http://a:4317", "http://b:4317"],
    );
    let rt = runtime();
    let run = |signal| {
        rt.block_on(all.export_run(vec![signal_batch(signal)], Duration::from_secs(2), 1 << 20))
            .pop()
            .unwrap()
            .unwrap()
    };
    // Traces fail at endpoint a: the backoff is a's.
    assert!(matches!(run(Signal::Traces).stopped, Some(Stop::Failed(_))));
    // Metrics go to a too: backing off, no call.
    assert!(matches!(
        run(Signal::Metrics).stopped,
        Some(Stop::BackingOff { .. })
    ));
    assert_eq!(mock.sent().len(), 1);
    // Logs go to b: sent at once.
    assert_eq!(run(Signal::Logs).sent_batches, 1);
    let sent = mock.sent.lock().unwrap().clone();
    assert_eq!(
        sent.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [Signal::Traces, Signal::Logs]
    );
}

#[test]
fn a_failing_signal_holds_up_no_other_in_one_run() {
    let mock = Mock::answering([]);
    let (_dir, all) = deliveries(
        mock.clone(),
        ["http://a:4317", "http://m:4317", "http://a:4317"],
    );
    // The metrics endpoint never answers; traces and logs are sent within the same run.
    let slow = Mock::answering([Answer::Never]);
    let connect: Connect = {
        let (fast, slow) = (mock.clone(), slow.clone());
        Arc::new(move |settings: crate::transport::TransportSettings| {
            let chosen: Arc<dyn Upstream> = if settings.endpoint.host() == Some("m") {
                slow.clone()
            } else {
                fast.clone()
            };
            Ok(chosen)
        })
    };
    let all = Deliveries::with_connect(all.store().clone(), all.settings().clone(), connect);
    let start = Instant::now();
    let reports = runtime().block_on(all.export_run(
        Signal::ALL.into_iter().map(signal_batch).collect(),
        Duration::from_millis(300),
        1 << 20,
    ));
    assert!(
        start.elapsed() < Duration::from_millis(600),
        "one budget, side by side"
    );
    let sent: Vec<u64> = reports
        .iter()
        .map(|r| r.as_ref().unwrap().sent_batches)
        .collect();
    assert_eq!(sent, [1, 0, 1], "traces, metrics, logs");
    assert_eq!(slow.sent().len(), 1);
}

/// Spools `names` as older runs left them.
fn backlog(s: &Setup, names: &[&str]) {
    for name in names {
        s.delivery.spool().append(name.as_bytes(), 1).unwrap();
    }
}

#[test]
fn a_background_or_off_export_sends_its_own_batch_and_leaves_the_backlog() {
    for drain in [DrainMode::Background, DrainMode::Off] {
        let s = setup_draining(Mock::answering([]), Duration::from_secs(2), drain);
        backlog(&s, &["old1", "old2"]);
        let report = runtime().block_on(s.delivery.export(batch("new"))).unwrap();
        assert_eq!((report.sent_batches, report.spooled), (1, false));
        assert!(report.stopped.is_none(), "{:?}", report.stopped);
        assert_eq!(s.mock.sent(), [Bytes::from("new")], "{drain:?}");
        assert_eq!(s.delivery.spool().stats().unwrap().batches, 2);
    }
}

#[test]
fn an_inline_export_sends_the_backlog_oldest_first_then_its_own_batch() {
    let s = setup_draining(
        Mock::answering([]),
        Duration::from_secs(2),
        DrainMode::Inline,
    );
    backlog(&s, &["old1", "old2"]);
    let report = runtime().block_on(s.delivery.export(batch("new"))).unwrap();
    assert_eq!(report.sent_batches, 3);
    assert_eq!(
        s.mock.sent(),
        [Bytes::from("old1"), Bytes::from("old2"), Bytes::from("new")]
    );
    assert_eq!(s.delivery.spool().stats().unwrap().batches, 0);
}

#[test]
fn a_background_export_that_finds_the_backoff_expired_probes_only_with_the_lease() {
    let s = setup(Mock::answering([unavailable(None)]), Duration::from_secs(2));
    let rt = runtime();
    rt.block_on(s.delivery.export(batch("a"))).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let other = Spool::open(s.delivery.spool().path(), SpoolOptions::default()).unwrap();
    let lease = other.reader().unwrap();
    let report = rt.block_on(s.delivery.export(batch("b"))).unwrap();
    assert!(report.spooled && matches!(report.stopped, Some(Stop::LeaseHeld)));
    assert_eq!(
        s.mock.sent().len(),
        1,
        "no probe while another process holds the lease"
    );
    drop(lease);
    let report = rt.block_on(s.delivery.export(batch("c"))).unwrap();
    assert_eq!(report.sent_batches, 1);
    assert_eq!(report.before.backend, Backend::Down, "it was the probe");
    assert_eq!(s.mock.sent(), [Bytes::from("a"), Bytes::from("c")]);
}

#[test]
fn an_explicit_flush_waits_for_a_lease_another_process_holds_then_delivers_the_rest() {
    let s = setup(Mock::answering([]), Duration::from_secs(2));
    backlog(&s, &["old1", "old2"]);
    let other = Spool::open(s.delivery.spool().path(), SpoolOptions::default()).unwrap();
    let releaser = std::thread::spawn(move || {
        let lease = other.reader().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(lease);
    });
    std::thread::sleep(Duration::from_millis(50));
    let rt = runtime();
    let report = rt.block_on(s.delivery.flush(Mode::Explicit, None)).unwrap();
    releaser.join().unwrap();
    assert_eq!((report.sent_batches, report.remaining), (2, false));

    // Held past the budget: it says so, having waited the budget and no longer.
    let s = setup(Mock::answering([]), Duration::from_millis(300));
    backlog(&s, &["old"]);
    let other = Spool::open(s.delivery.spool().path(), SpoolOptions::default()).unwrap();
    let lease = other.reader().unwrap();
    let start = Instant::now();
    let report = rt.block_on(s.delivery.flush(Mode::Explicit, None)).unwrap();
    let took = start.elapsed();
    assert!(matches!(report.stopped, Some(Stop::LeaseHeld)));
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(1),
        "{took:?}"
    );
    drop(lease);
}

#[test]
fn a_drain_holds_the_lease_through_its_start_delay_and_obeys_the_backoff() {
    let s = setup(Mock::answering([]), Duration::from_secs(2));
    backlog(&s, &["old1", "old2"]);
    let rt = runtime();
    let other = Spool::open(s.delivery.spool().path(), SpoolOptions::default()).unwrap();
    let report = rt.block_on(async {
        let drain = s.delivery.drain(Duration::from_millis(300));
        let probe = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(matches!(
                other.reader(),
                Err(crate::spool::SpoolError::FlushLeaseHeld { .. })
            ));
            assert!(s.mock.sent().is_empty(), "nothing sent during the delay");
        };
        futures_util::future::join(drain, probe).await.0
    });
    assert_eq!(report.unwrap().sent_batches, 2);

    let s = setup(Mock::answering([unavailable(None)]), Duration::from_secs(2));
    rt.block_on(s.delivery.export(batch("a"))).unwrap();
    let report = rt.block_on(s.delivery.drain(Duration::ZERO)).unwrap();
    assert!(matches!(report.stopped, Some(Stop::BackingOff { .. })));
    assert_eq!(s.mock.sent().len(), 1);
}

#[test]
fn a_drain_that_learns_of_a_backoff_during_its_start_delay_sends_nothing() {
    let s = setup(Mock::answering([unavailable(None)]), Duration::from_secs(2));
    backlog(&s, &["old"]);
    let report = runtime().block_on(async {
        let drain = s.delivery.drain(Duration::from_millis(300));
        let hook = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.delivery.export(batch("new")).await.unwrap()
        };
        futures_util::future::join(drain, hook).await.0
    });
    let report = report.unwrap();
    assert!(
        matches!(report.stopped, Some(Stop::BackingOff { .. })),
        "{report:?}"
    );
    assert_eq!(
        s.mock.sent(),
        [Bytes::from("new")],
        "only the hook's failed try"
    );
}

#[test]
fn after_an_answered_run_a_drain_is_wanted_and_it_sends_every_signals_backlog() {
    let mock = Mock::answering([]);
    let (_dir, all) = deliveries(
        mock.clone(),
        ["http://a:4317", "http://a:4317", "http://a:4317"],
    );
    for signal in [Signal::Metrics, Signal::Logs] {
        all.store().append(signal, b"old", 1).unwrap();
    }
    let rt = runtime();
    let mut rng = fastrand::Rng::with_seed(1);
    let reports = rt.block_on(all.export_run(
        vec![signal_batch(Signal::Traces)],
        Duration::from_secs(2),
        1 << 20,
    ));
    assert_eq!(mock.sent().len(), 1, "the run's own batch only");
    // The backend was not backing off: no start delay.
    assert_eq!(all.drain_after(&reports, &mut rng), Some(Duration::ZERO));

    // Someone flushing the logs: no drain.
    let lease = all.store().lane(Signal::Logs).unwrap().reader().unwrap();
    assert_eq!(all.drain_after(&reports, &mut rng), None);
    drop(lease);

    let drained = rt.block_on(all.drain(Duration::ZERO));
    let sent: Vec<(Signal, u64)> = drained
        .iter()
        .map(|(s, r)| (*s, r.as_ref().unwrap().sent_batches))
        .collect();
    assert_eq!(
        sent,
        [(Signal::Traces, 0), (Signal::Metrics, 1), (Signal::Logs, 1)]
    );
    // Nothing left: no drain.
    assert_eq!(all.drain_after(&reports, &mut rng), None);
}

#[test]
fn a_run_kept_back_by_a_failure_wants_no_drain_and_in_inline_mode_neither() {
    let mock = Mock::answering([unavailable(None)]);
    let (_dir, all) = deliveries(mock, ["http://a:4317", "http://a:4317", "http://a:4317"]);
    all.store().append(Signal::Logs, b"old", 1).unwrap();
    let rt = runtime();
    let mut rng = fastrand::Rng::with_seed(1);
    let reports = rt.block_on(all.export_run(
        vec![signal_batch(Signal::Traces)],
        Duration::from_secs(2),
        1 << 20,
    ));
    assert_eq!(all.drain_after(&reports, &mut rng), None);

    // Inline: the run sent the backlog itself (a backlog it could not send waits for the next).
    let mock = Mock::answering([]);
    let (_dir, fresh) = deliveries(
        mock.clone(),
        ["http://a:4317", "http://a:4317", "http://a:4317"],
    );
    let mut settings = fresh.settings().clone();
    for signal in Signal::ALL {
        settings.get_mut(signal).drain = DrainMode::Inline;
    }
    let connect: Connect = Arc::new(move |_| Ok(mock.clone() as Arc<dyn Upstream>));
    let inline = Deliveries::with_connect(fresh.store().clone(), settings, connect);
    inline.store().append(Signal::Logs, b"old", 1).unwrap();
    let reports = rt.block_on(inline.export_run(
        vec![signal_batch(Signal::Metrics)],
        Duration::from_secs(2),
        1 << 20,
    ));
    assert!(
        reports
            .iter()
            .all(|r| r.as_ref().unwrap().stopped.is_none())
    );
    assert_eq!(
        inline
            .store()
            .stats()
            .unwrap()
            .iter()
            .map(|(_, s)| s.batches)
            .sum::<u64>(),
        1
    );
    assert_eq!(inline.drain_after(&reports, &mut rng), None);
}
