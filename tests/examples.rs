//! The examples in `examples/` work as their comments say.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use tracespool::config::{Config, ConfigFile, Flags};

fn example(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

#[test]
fn the_shell_examples_are_valid_sh() {
    for script in ["juju/dispatch", "git/pre-commit"] {
        let out = Command::new("sh")
            .arg("-n")
            .arg(example(script))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_example_config_file_resolves_without_a_warning() {
    let path = example("tracespool.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let file = ConfigFile::new(path, Ok(text));
    let (config, warnings) = Config::resolve(&Flags::default(), &HashMap::new(), Some(&file));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.spool.max_bytes, 64 << 20);
    assert_eq!(config.service_name.as_deref(), Some("charm-hooks"));
    assert!(config.delivery.traces.endpoint.is_some());
}

#[test]
fn the_juju_dispatch_runs_the_charm_in_a_span_named_after_the_hook() {
    let charm = tempfile::tempdir().unwrap();
    std::fs::create_dir(charm.path().join("src")).unwrap();
    let charm_py = charm.path().join("src/charm.py");
    std::fs::write(
        &charm_py,
        "#!/bin/sh\necho \"charm ran: $JUJU_DISPATCH_PATH\"\nexit 3\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&charm_py)
        .status()
        .unwrap();
    let spool = charm.path().join("spool");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_tracespool"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let out = Command::new(example("juju/dispatch"))
        .current_dir(charm.path())
        .env("PATH", path)
        .env("TRACESPOOL_DIR", &spool)
        .env("JUJU_DISPATCH_PATH", "hooks/install")
        .env("JUJU_UNIT_NAME", "app/0")
        .env("JUJU_MODEL_NAME", "m")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the charm's exit code: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "charm ran: hooks/install\n"
    );

    // One span waits in the spool, named after the hook.
    let spool_handle = tracespool::spool::Spool::open(&spool, Default::default()).unwrap();
    let mut reader = spool_handle.reader().unwrap();
    let record = reader.next().unwrap().expect("a span was spooled");
    let request = tracespool::encode::decode(&record.payload).unwrap();
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.name, "hooks/install");
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert!(
        format!("{resource:?}").contains("\"app\""),
        "service.name from the unit: {resource:?}"
    );
}
