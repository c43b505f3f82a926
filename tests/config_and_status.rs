//! What an operator reads: `config` (every setting with its source, secrets hidden) and
//! `status`'s plain output (binary units, plural forms that agree, a drained spool shown empty).

mod common;

use std::process::{Command, Output};

use common::{Rotel, in_spool as ts, status_json, tracespool};
use serde_json::Value;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run tracespool");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn config_json(cmd: &mut Command) -> Value {
    let out = run(cmd.args(["config", "--json"]));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn setting<'a>(config: &'a Value, name: &str) -> (&'a Value, &'a str) {
    let entry = &config[name];
    (&entry["value"], entry["source"].as_str().unwrap_or("?"))
}

#[test]
fn config_names_the_source_of_every_setting_flag_env_file_or_default() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tracespool.toml");
    std::fs::write(
        &file,
        "max_bytes = \"8MiB\"\nbudget = \"5s\"\nmax_age = \"18h\"\ndrain = \"inline\"\n\
         [resource]\nteam = \"from-file\"\nsite = \"lab\"\n",
    )
    .unwrap();
    let file_source = format!("file {}", file.display());
    let config = config_json(
        ts(tmp.path())
            .env("TRACESPOOL_CONFIG", &file)
            .env("TRACESPOOL_BUDGET", "3s")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
            .env("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc")
            .env("OTEL_RESOURCE_ATTRIBUTES", "team=from-env")
            .args(["--budget", "750ms", "--resource", "site=from-flag"]),
    );

    // Flag over environment over file over default.
    assert_eq!(setting(&config, "budget"), (&Value::from("750ms"), "flag"));
    assert_eq!(
        setting(&config, "max_bytes"),
        (&Value::from(8u64 << 20), file_source.as_str())
    );
    assert_eq!(
        setting(&config, "max_age"),
        (&Value::from("18h"), file_source.as_str())
    );
    assert_eq!(
        setting(&config, "drain"),
        (&Value::from("inline"), file_source.as_str())
    );
    assert_eq!(
        setting(&config, "max_spans"),
        (&Value::Null, "default"),
        "{config}"
    );
    assert_eq!(
        setting(&config, "spool_dir"),
        (&Value::from(tmp.path().to_str().unwrap()), "flag")
    );
    assert_eq!(
        setting(&config, "config"),
        (
            &Value::from(file.to_str().unwrap()),
            "env TRACESPOOL_CONFIG"
        )
    );
    // Each signal's own settings, and the endpoints made from the base variable.
    assert_eq!(
        setting(&config, "endpoint"),
        (
            &Value::from("http://collector:4318/v1/traces"),
            "env OTEL_EXPORTER_OTLP_ENDPOINT"
        )
    );
    assert_eq!(
        setting(&config, "logs_protocol"),
        (&Value::from("grpc"), "env OTEL_EXPORTER_OTLP_LOGS_PROTOCOL")
    );
    assert_eq!(
        setting(&config, "protocol"),
        (&Value::from("http/protobuf"), "default")
    );
    // Resource attributes merge key by key, each with its own source.
    assert_eq!(
        setting(&config, "resource.team"),
        (&Value::from("from-env"), "env OTEL_RESOURCE_ATTRIBUTES")
    );
    assert_eq!(
        setting(&config, "resource.site"),
        (&Value::from("from-flag"), "flag")
    );
    assert_eq!(config["warnings"], Value::Array(vec![]));

    // Nothing named by a flag or a variable: every setting is the default.
    let config = config_json(tracespool().env("HOME", tmp.path()));
    for (name, entry) in config.as_object().unwrap() {
        if name != "warnings" {
            assert_eq!(entry["source"], "default", "{name}: {entry}");
        }
    }
}

#[test]
fn config_shows_secrets_as_stars_and_a_bad_value_as_a_warning_and_the_next_source() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tracespool.toml");
    std::fs::write(
        &file,
        "max_bytes = \"lots\"\n[headers]\nauthorization = \"Bearer file-secret\"\n",
    )
    .unwrap();
    let cmd = || {
        let mut cmd = ts(tmp.path());
        cmd.args(["--config", file.to_str().unwrap()])
            .env("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-api-key=env-secret")
            .env(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://collector/v1/traces?token=query-secret",
            );
        cmd
    };
    let out = run(cmd().args(["config", "--json"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let plain = run(cmd().args(["config", "--header=x-flag=flag-secret"]));
    let plain_text = String::from_utf8_lossy(&plain.stdout);
    for secret in ["file-secret", "env-secret", "query-secret", "flag-secret"] {
        assert!(!text.contains(secret), "{secret} in {text}");
        assert!(!plain_text.contains(secret), "{secret} in {plain_text}");
    }
    let config: Value = serde_json::from_str(&text).unwrap();
    let file_source = format!("file {}", file.display());
    assert_eq!(
        config["headers"],
        serde_json::json!({"value": {"authorization": "***"}, "source": file_source})
    );
    assert_eq!(
        config["metrics_headers"],
        serde_json::json!({"value": {"x-api-key": "***"}, "source": "env OTEL_EXPORTER_OTLP_METRICS_HEADERS"})
    );
    assert_eq!(
        config["endpoint"]["value"],
        "https://collector/v1/traces?***"
    );
    // The bad size is said once, on stderr and in the JSON, and the default applies.
    assert_eq!(
        setting(&config, "max_bytes"),
        (&Value::from(64u64 << 20), "default")
    );
    let warnings = config["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].as_str().unwrap().contains("max_bytes"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // People get a table: name, value, source.
    let line = plain_text
        .lines()
        .find(|l| l.starts_with("headers "))
        .unwrap_or_else(|| panic!("{plain_text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words, ["headers", "x-flag=***", "flag"], "{plain_text}");
    assert!(
        plain_text
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["max_bytes", "64", "MiB", "default"]),
        "{plain_text}"
    );
}

#[test]
fn status_says_sizes_in_binary_units_and_counts_in_agreeing_forms() {
    let tmp = tempfile::tempdir().unwrap();
    run(ts(tmp.path()).args(["span", "--name", "one"]));
    let out = run(ts(tmp.path()).arg("status"));
    let text = String::from_utf8_lossy(&out.stdout);
    let holds = text.lines().find(|l| l.starts_with("holds")).unwrap();
    let words: Vec<&str> = holds.split_whitespace().collect();
    assert!(
        matches!(words[..], ["holds", n, "B", "of", "64", "MiB"] if n.parse::<u64>().is_ok()),
        "{text}"
    );
    assert!(text.contains("traces     1 batch (1 span)"), "{text}");
    assert!(
        text.contains("logs       0 batches (0 log records)"),
        "{text}"
    );

    run(ts(tmp.path()).args(["span", "--name", "two"]));
    let out = run(ts(tmp.path()).args(["--max-bytes", "1536", "status"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" of 1.5 KiB"), "{text}");
    assert!(text.contains("traces     2 batches (2 spans)"), "{text}");
}

#[test]
fn a_drained_spool_holds_no_bytes_to_deliver_though_its_files_remain() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c"] {
        run(ts(tmp.path()).args(["span", "--name", name]));
    }
    let before = status_json(tmp.path(), &[]);
    let held = before["bytes"].as_u64().unwrap();
    assert!(held > 0, "{before}");
    assert_eq!(before["disk_bytes"].as_u64(), Some(held), "{before}");

    let rotel = Rotel::start();
    run(ts(tmp.path()).args(["--endpoint", &rotel.endpoint(), "flush"]));
    rotel.wait_for_spans(3, std::time::Duration::from_secs(10));
    let after = status_json(tmp.path(), &[]);
    assert_eq!(
        (after["batches"].as_u64(), after["bytes"].as_u64()),
        (Some(0), Some(0)),
        "{after}"
    );
    let out = run(ts(tmp.path()).arg("status"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("holds      0 B of 64 MiB"), "{text}");
}
