//! Retention, black box: the maximum age (`--max-age`, `TRACESPOOL_MAX_AGE`, `max_age`), driven
//! through the built binary against a real collector (rotel).

mod common;

use std::time::Duration;

use common::{Rotel, status_json, tracespool};

fn span(spool: &std::path::Path, name: &str) {
    let out = tracespool()
        .arg("--spool-dir")
        .arg(spool)
        .args(["span", "--name", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn an_expired_span_is_never_delivered_and_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path();
    // Started first: the fresh span is flushed well within its maximum age, however slow the
    // machine is to start a collector.
    let rotel = Rotel::start();
    // No endpoint: both are spooled, the first 2.5 s before the second.
    span(spool, "old");
    std::thread::sleep(Duration::from_millis(2500));
    span(spool, "fresh");
    assert_eq!(status_json(spool, &[])["spans"], 2);

    let out = tracespool()
        .arg("--spool-dir")
        .arg(spool)
        .args(["--endpoint", &rotel.endpoint(), "--max-age", "2s", "flush"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let seen = rotel.exactly(1);
    assert_eq!(seen[0].name, "fresh");

    let status = status_json(spool, &[]);
    assert_eq!(status["spans"], 0, "{status}");
    assert_eq!(status["dropped_spans"], 1, "{status}");
    assert_eq!(status["dropped_batches"], 1, "{status}");
    assert_eq!(status["expired_batches"], 1, "{status}");
    // Nothing more arrives later.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rotel.spans().len(), 1);
}

#[test]
fn without_a_maximum_age_old_spans_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    span(tmp.path(), "kept");
    std::thread::sleep(Duration::from_millis(1100));
    let rotel = Rotel::start();
    let out = tracespool()
        .arg("--spool-dir")
        .arg(tmp.path())
        .args(["--endpoint", &rotel.endpoint(), "flush"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(rotel.exactly(1)[0].name, "kept");
    assert_eq!(status_json(tmp.path(), &[])["expired_batches"], 0);
}

#[test]
fn bad_max_age_and_spool_compression_values_get_one_warning_each_and_the_default() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let age_file = tmp.path().join("age.toml");
    std::fs::write(&age_file, "max_age = \"forever\"\n").unwrap();
    let compression_file = tmp.path().join("compression.toml");
    std::fs::write(&compression_file, "spool_compression = \"lz4\"\n").unwrap();
    for (var, value, config, named) in [
        ("TRACESPOOL_MAX_AGE", "banana", None, "TRACESPOOL_MAX_AGE"),
        ("TRACESPOOL_MAX_AGE", "", Some(&age_file), "max_age"),
        (
            "TRACESPOOL_SPOOL_COMPRESSION",
            "zstd",
            None,
            "TRACESPOOL_SPOOL_COMPRESSION",
        ),
        (
            "TRACESPOOL_SPOOL_COMPRESSION",
            "",
            Some(&compression_file),
            "spool_compression",
        ),
    ] {
        let with_bad_value = |args: &[&str]| {
            tracespool()
                .arg("--spool-dir")
                .arg(&spool)
                .env(var, value)
                .env("TRACESPOOL_CONFIG", config.map_or("".into(), |c| c.clone()))
                .args(args)
                .output()
                .unwrap()
        };
        let out = with_bad_value(&["exec", "--", "sh", "-c", "exit 7"]);
        assert_eq!(out.status.code(), Some(7), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].contains(named), "{stderr}");
        // The default applied, under the same bad value.
        let out = with_bad_value(&["config", "--json"]);
        let settings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let setting = if var == "TRACESPOOL_MAX_AGE" {
            "max_age"
        } else {
            "spool_compression"
        };
        let default = if setting == "max_age" {
            serde_json::Value::Null
        } else {
            serde_json::Value::from("gzip")
        };
        assert_eq!(
            settings[setting],
            serde_json::json!({"value": default, "source": "default"}),
            "{var}={value:?}"
        );
    }
    let status = status_json(&spool, &[]);
    assert_eq!(status["spans"], 4, "{status}");

    // A bad flag is a usage error, and nothing runs.
    let marker = tmp.path().join("ran");
    for (flag, value) in [("--max-age", "soon"), ("--spool-compression", "zstd")] {
        let out = tracespool()
            .arg("--spool-dir")
            .arg(&spool)
            .args([flag, value, "exec", "--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(value));
        assert!(!marker.exists());
    }
}
