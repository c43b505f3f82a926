//! The backlog after an outage, driven as a user drives it: the built binary, a real collector
//! (rotel) and a fault server. A hook delivers its own data first and leaves the backlog to a
//! detached drain (`background`), sends it first itself (`inline`) or leaves it to `flush`
//! (`off`); retries after a `Retry-After` spread over a fleet.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::backlog::{
    no_tracespool_left, numbered, span_names, spool_backlog, tracespool_processes,
};
use common::{
    Answer, FaultServer, Rotel, assert_drained, name_counts, status_json, stderr, tracespool,
};

const SECOND: Duration = Duration::from_secs(1);

/// `tracespool --spool-dir DIR --endpoint E ARGS…`, run to its end.
fn run(dir: &Path, endpoint: &str, args: &[&str]) -> Output {
    tracespool()
        .arg("--spool-dir")
        .arg(dir)
        .args(["--endpoint", endpoint])
        .args(args)
        .output()
        .unwrap()
}

/// How many times each name was seen.
fn spool_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("spool")
}

/// A spool in a temporary directory holding `n` one-span batches named `old0`, `old1`, …:
/// the directory (removed when dropped), the spool's path and the names.
fn backlog(n: usize) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = spool_dir(&tmp);
    let old = numbered("old", n);
    spool_backlog(&dir, &old);
    (tmp, dir, old)
}

#[test]
fn with_a_300_batch_backlog_a_hook_returns_at_once_and_a_background_drain_sends_every_span_exactly_once()
 {
    let rotel = Rotel::start();
    let (_tmp, dir, _) = backlog(300);

    let start = Instant::now();
    let out = run(
        &dir,
        &rotel.endpoint(),
        &["exec", "--name", "hook", "--", "true"],
    );
    let took = start.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "a background drain prints nothing");
    eprintln!("exec -- true with a 300-batch backlog, drain = background: {took:?}");

    let spans = rotel.wait_for_spans(301, 30 * SECOND);
    assert_eq!(
        spans.first().map(|s| s.name.as_str()),
        Some("hook"),
        "the hook's own span goes first"
    );
    let seen = name_counts(spans.into_iter().map(|s| s.name));
    assert_eq!(seen.len(), 301, "every span arrives");
    assert!(seen.values().all(|n| *n == 1), "exactly once: {seen:?}");
    assert!(
        no_tracespool_left(&dir, 10 * SECOND),
        "the drain is over: {:?}",
        tracespool_processes(&dir)
    );
    assert_drained(&dir, &rotel.endpoint());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rotel.spans().len(), 301, "nothing more");
}

#[test]
fn with_drain_inline_the_hook_sends_the_backlog_first_itself_and_with_off_it_leaves_it_to_flush() {
    // inline: the backlog oldest first, then the hook's span, before exec returns.
    let rotel = Rotel::start();
    let (_tmp, dir, old) = backlog(300);
    let start = Instant::now();
    let out = run(
        &dir,
        &rotel.endpoint(),
        &[
            "--budget", "10s", "--drain", "inline", "exec", "--name", "hook", "--", "true",
        ],
    );
    let took = start.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("exec -- true with a 300-batch backlog, drain = inline: {took:?}");
    assert!(tracespool_processes(&dir).is_empty(), "no drain started");
    assert_eq!(
        status_json(&dir, &["--endpoint", &rotel.endpoint()])["batches"].as_u64(),
        Some(0),
        "delivered before exec returned"
    );
    let spans = rotel.wait_for_spans(301, 10 * SECOND);
    assert_eq!(spans.last().map(|s| s.name.as_str()), Some("hook"));
    assert!(
        name_counts(spans.into_iter().map(|s| s.name))
            .values()
            .all(|n| *n == 1)
    );

    // off (from the environment): the hook's span only; the backlog waits for flush.
    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = spool_dir(&tmp);
    spool_backlog(&dir, &old);
    let out = tracespool()
        .env("TRACESPOOL_DRAIN", "off")
        .arg("--spool-dir")
        .arg(&dir)
        .args(["--endpoint", &rotel.endpoint()])
        .args(["exec", "--name", "hook", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(tracespool_processes(&dir).is_empty(), "no drain started");
    rotel.named("hook");
    let status = status_json(&dir, &["--endpoint", &rotel.endpoint()]);
    assert_eq!(
        (status["batches"].as_u64(), status["backend"].as_str()),
        (Some(300), Some("up")),
        "{status}"
    );
    let out = run(&dir, &rotel.endpoint(), &["flush"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let spans = rotel.exactly(301);
    assert_eq!(spans.len(), 301);
    assert!(
        name_counts(spans.into_iter().map(|s| s.name))
            .values()
            .all(|n| *n == 1)
    );
}

/// A backend answering every request after 20 ms, a spool of `backlog` one-span batches, and a
/// hook that has started the drain: returned once the backend has had `under_way` requests.
fn slow_drain_under_way(
    tmp: &tempfile::TempDir,
    backlog: usize,
    under_way: usize,
) -> (FaultServer, PathBuf, Vec<String>) {
    let server = FaultServer::start(Answer::Late(
        Duration::from_millis(20),
        Box::new(Answer::status(200)),
    ));
    let dir = spool_dir(tmp);
    let old = numbered("old", backlog);
    spool_backlog(&dir, &old);
    let out = run(
        &dir,
        &server.endpoint(),
        &["exec", "--name", "hook", "--", "true"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        common::eventually(10 * SECOND, || server.requests().len() >= under_way),
        "the drain is under way"
    );
    (server, dir, old)
}

#[test]
fn a_drain_killed_mid_way_loses_nothing_and_the_next_flush_sends_at_most_one_batch_again() {
    // 200 batches take the drain 4 s or more.
    let tmp = tempfile::tempdir().unwrap();
    let (server, dir, old) = slow_drain_under_way(&tmp, 200, 30);
    let drainers = tracespool_processes(&dir);
    assert_eq!(drainers.len(), 1, "one drain: {drainers:?}");
    common::signal(drainers[0], 9);
    assert!(no_tracespool_left(&dir, 5 * SECOND));
    let before_flush = server.requests().len();
    assert!(before_flush < 201, "killed mid-way: {before_flush}");

    let out = run(&dir, &server.endpoint(), &["--budget", "30s", "flush"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = name_counts(server.requests().iter().flat_map(|r| span_names(&r.body)));
    for name in old.iter().chain([&"hook".to_owned()]) {
        assert!(seen.contains_key(name), "{name} lost");
    }
    let again: usize = seen.values().map(|n| n - 1).sum();
    assert!(again <= 1, "sent again: {again} (the window is one batch)");
    eprintln!("drain killed after {before_flush} requests: {again} batch(es) sent twice");
}

#[test]
fn twenty_spools_told_retry_after_30_at_once_retry_no_sooner_and_spread_over_seconds() {
    let server = FaultServer::start(Answer::with(503, &[("retry-after", "30")], b""));
    let tmp = tempfile::tempdir().unwrap();
    let endpoint = server.endpoint();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(41);
    // Each spool's hooks: a span every 300 ms, each tagged with its spool's number.
    let hooks: Vec<_> = (0..20)
        .map(|i| {
            let dir = tmp.path().join(format!("spool{i}"));
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    let out = tracespool()
                        .arg("--spool-dir")
                        .arg(&dir)
                        .args(["--endpoint", &endpoint])
                        .args(["--header", &format!("x-spool={i}")])
                        .args(["span", "--name", "tick"])
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "{}", stderr(&out));
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        })
        .collect();
    // When each request arrived, per spool (polled every 20 ms).
    let arrivals: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let mut seen = 0;
    while Instant::now() < deadline + SECOND {
        let requests = server.requests();
        let now = Instant::now();
        for r in &requests[seen..] {
            let spool = r.headers.get("x-spool").cloned().unwrap_or_default();
            arrivals.lock().unwrap().entry(spool).or_default().push(now);
        }
        seen = requests.len();
        std::thread::sleep(Duration::from_millis(20));
    }
    for hook in hooks {
        hook.join().unwrap();
    }
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 20, "{arrivals:?}");
    let mut retries = Vec::new();
    for (spool, times) in arrivals.iter() {
        assert_eq!(times.len(), 2, "spool {spool}: the first try and one retry");
        let waited = times[1] - times[0];
        // Polling can shift each arrival by 20 ms.
        assert!(
            waited >= Duration::from_millis(29_950),
            "spool {spool} retried after {waited:?}"
        );
        retries.push(times[1]);
    }
    let first = retries.iter().min().unwrap();
    let last = retries.iter().max().unwrap();
    let spread = *last - *first;
    eprintln!("20 spools told Retry-After: 30 retried over {spread:?}");
    assert!(spread >= 3 * SECOND, "retries spread over {spread:?}");
}

#[test]
fn a_bad_drain_setting_in_the_environment_or_file_is_said_once_and_the_command_still_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = spool_dir(&tmp);
    let config = tmp.path().join("tracespool.toml");
    for (var, value, file) in [
        ("TRACESPOOL_DRAIN", "sometimes", ""),
        ("TRACESPOOL_DRAIN_BUDGET", "forever", ""),
        ("", "later", "drain = \"later\"\n"),
        ("", "5", "drain_budget = 5\n"),
    ] {
        std::fs::write(&config, file).unwrap();
        let mut cmd = tracespool();
        if !var.is_empty() {
            cmd.env(var, value);
        }
        let out = cmd
            .arg("--spool-dir")
            .arg(&dir)
            .arg("--config")
            .arg(&config)
            .args(["exec", "--", "sh", "-c", "exit 3"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{var}{file}");
        let said = stderr(&out);
        let name = if var.is_empty() {
            file.split(' ').next().unwrap()
        } else {
            var
        };
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(said.contains(name) && said.contains(value), "{said}");
    }

    // On the command line: a usage error, and nothing runs.
    let marker = tmp.path().join("ran");
    let out = tracespool()
        .arg("--spool-dir")
        .arg(&dir)
        .args(["--drain", "sometimes", "exec", "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!marker.exists());
}

#[test]
fn while_a_drain_holds_the_spool_a_hook_starts_no_second_one_and_flush_waits_for_it() {
    // The drain of 100 batches takes 2 s or more.
    let tmp = tempfile::tempdir().unwrap();
    let (server, dir, _) = slow_drain_under_way(&tmp, 100, 10);
    let drainers = tracespool_processes(&dir);
    assert_eq!(drainers.len(), 1, "the drain is at work");

    // A second hook meanwhile: its span goes at once, and it starts no second drain.
    let out = run(
        &dir,
        &server.endpoint(),
        &["exec", "--name", "hook2", "--", "true"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        tracespool_processes(&dir),
        drainers,
        "at most one per spool"
    );

    let out = run(&dir, &server.endpoint(), &["--budget", "30s", "flush"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing remains"), "{}", stderr(&out));
    let seen = name_counts(server.requests().iter().flat_map(|r| span_names(&r.body)));
    assert_eq!(seen.len(), 102);
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
}

#[test]
fn the_library_exporter_sends_its_own_span_first_and_its_thread_then_drains_the_backlog() {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use tracespool::delivery::DeliverySettings;
    use tracespool::exporter::SpoolExporter;
    use tracespool::spool::{Spool, SpoolOptions};

    let rotel = Rotel::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = spool_dir(&tmp);
    spool_backlog(&dir, &numbered("old", 200));
    let settings = DeliverySettings {
        endpoint: Some(rotel.endpoint().parse().unwrap()),
        ..DeliverySettings::default()
    };
    let exporter = SpoolExporter::new(
        Spool::open(&dir, SpoolOptions::default()).unwrap(),
        settings,
    )
    .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    provider.tracer("t").in_span("new", |_| {});

    // No flush, no shutdown yet: the exporter's thread sends the backlog by itself.
    let spans = rotel.wait_for_spans(201, 20 * SECOND);
    assert_eq!(spans.first().map(|s| s.name.as_str()), Some("new"));
    let seen = name_counts(spans.into_iter().map(|s| s.name));
    assert!(
        seen.len() == 201 && seen.values().all(|n| *n == 1),
        "{seen:?}"
    );
    provider.shutdown().unwrap();
    assert_drained(&dir, &rotel.endpoint());
}

#[test]
fn a_drain_started_by_the_first_hook_after_a_backoff_waits_a_random_start_delay_of_at_most_5_s() {
    let server = FaultServer::start(Answer::with(503, &[("retry-after", "1")], b""));
    let tmp = tempfile::tempdir().unwrap();
    let dir = spool_dir(&tmp);
    spool_backlog(&dir, &numbered("old", 10));
    let out = run(&dir, &server.endpoint(), &["span", "--name", "refused"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let retry_at = status_json(&dir, &["--endpoint", &server.endpoint()])["retry_at"]
        .as_f64()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64((retry_at - now).max(0.0) + 0.1));
    server.set(Answer::status(200));

    let out = run(&dir, &server.endpoint(), &["span", "--name", "back"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let drainers = tracespool_processes(&dir);
    assert_eq!(drainers.len(), 1, "{drainers:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", drainers[0])).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let delay = args
        .iter()
        .position(|a| a == "--as-drainer")
        .and_then(|i| args.get(i + 1))
        .and_then(|d| d.strip_suffix("ms"))
        .and_then(|d| d.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{args:?}"));
    // Zero only if the draw fell below a microsecond.
    assert!(delay > 0.0 && delay <= 5000.0, "{delay} ms");
    eprintln!("the first drain after the backoff waits {delay} ms");

    assert!(no_tracespool_left(&dir, 15 * SECOND));
    let seen = name_counts(server.requests().iter().flat_map(|r| span_names(&r.body)));
    // The refused span was spooled and goes with the backlog; each exactly once after the 503.
    assert_eq!(seen.len(), 12, "{seen:?}");
    assert_eq!(seen["refused"], 2, "refused once, then delivered");
    assert!(
        seen.iter()
            .filter(|(name, _)| *name != "refused")
            .all(|(_, n)| *n == 1),
        "{seen:?}"
    );
    assert_drained(&dir, &server.endpoint());
}
