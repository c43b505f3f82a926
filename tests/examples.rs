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

/// `PATH` with the built `tracespool` and the test peers' Python first.
fn path_with_tracespool_and_python() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_tracespool"))
        .parent()
        .unwrap();
    let python = common::python();
    let venv_bin = python.parent().unwrap();
    format!(
        "{}:{}:{}",
        bin.display(),
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn the_python_example_delivers_its_span_metric_and_log_under_exec() {
    let rotel = common::Rotel::start();
    let spool = tempfile::tempdir().unwrap();
    let out = common::tracespool()
        .arg("--spool-dir")
        .arg(spool.path())
        .args(["--endpoint", &rotel.endpoint(), "exec", "--"])
        .arg(common::python())
        .arg(example("python/all_signals.py"))
        .args(["http", "example"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rotel.named("span-example");
    assert!(common::eventually(
        std::time::Duration::from_secs(10),
        || {
            rotel.metric_names().contains(&"metric_example".to_owned())
                && rotel.log_bodies().contains(&"log-example".to_owned())
        }
    ));
}

#[test]
fn the_pytango_example_sends_traces_and_logs_over_grpc_through_the_capture() {
    let rotel = common::Rotel::start();
    common::wait_for_port(rotel.grpc_port, std::time::Duration::from_secs(10));
    let spool = tempfile::tempdir().unwrap();
    let out = common::clean_command(example("pytango/run-device"))
        .arg("sys/tg_test/7")
        .env("PATH", path_with_tracespool_and_python())
        .env("TRACESPOOL_DIR", spool.path())
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", rotel.grpc_port),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("Failed to export"), "{stderr}");
    rotel.named("device-server sys/tg_test/7");
    let init = rotel.named("init sys/tg_test/7");
    assert_eq!(init.service(), Some("tango-device"));
    assert!(common::eventually(
        std::time::Duration::from_secs(10),
        || {
            rotel
                .log_bodies()
                .contains(&"device sys/tg_test/7 initialised".to_owned())
        }
    ));
    // Delivered by the run itself, over gRPC.
    assert_eq!(common::status_json(spool.path(), &[])["batches"], 0);
}

/// The flags (`--name`) `tracespool serve --help` lists.
fn serve_flags() -> std::collections::BTreeSet<String> {
    let out = common::tracespool()
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| w.starts_with("--"))
        .map(str::to_owned)
        .collect()
}

/// `tracespool status --json` with `env` (and the spool in `spool`): exactly what the settings
/// say is wrong with them (one line per bad value), nothing when they are right.
fn settings_warnings(env: &[(String, String)], spool: &Path) -> String {
    let out = common::tracespool()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("TRACESPOOL_DIR", spool)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One `GET` over HTTP/1.1 on loopback: the status and the body.
fn serve_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// A child process killed (and reaped) on drop.
struct ServeChild(std::process::Child);

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_kubernetes_daemonset_runs_serve_with_its_flags_and_probes_healthz_on_the_listener() {
    let text = std::fs::read_to_string(example("kubernetes/daemonset.yaml")).unwrap();
    let doc: serde_json::Value = serde_norway::from_str(&text).expect("well-formed YAML");
    assert_eq!(doc["apiVersion"], "apps/v1");
    assert_eq!(doc["kind"], "DaemonSet");
    let pod = &doc["spec"]["template"];
    assert_eq!(
        doc["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"],
        "the selector matches the pods"
    );
    let container = &pod["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string args"))
        .collect();
    assert_eq!(args.first(), Some(&"serve"), "{args:?}");
    let known = serve_flags();
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            known.contains(*flag),
            "{flag} is not a serve flag: {known:?}"
        );
    }
    let value_of = |flag: &str| {
        let i = args.iter().position(|a| *a == flag).unwrap();
        args[i + 1]
    };
    assert!(args.contains(&"--allow-remote"));
    let listen_port: u64 = value_of("--listen")
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();

    // The probes and the scrape annotations name the HTTP listener's port, and the paths serve
    // answers.
    let port_named = |name: &serde_json::Value| -> u64 {
        if let Some(n) = name.as_u64() {
            return n;
        }
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *name)
            .unwrap_or_else(|| panic!("no port named {name}"))["containerPort"]
            .as_u64()
            .unwrap()
    };
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(port_named(&get["port"]), listen_port, "{probe}");
    }
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(
        annotations["prometheus.io/port"],
        listen_port.to_string().as_str()
    );
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        settings_warnings(&env, &tmp.path().join("spool")),
        "",
        "{env:?}"
    );

    // The container's command line runs: its addresses on free loopback ports, its token file
    // and spool directory in a temporary directory, its backend refusing connections.
    let token = tmp.path().join("token");
    std::fs::write(&token, "k8s-t0ken\n").unwrap();
    let (http, grpc) = (common::free_port(), common::free_port());
    let run_args: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(i, a)| match i.checked_sub(1).map(|p| args[p]) {
            Some("--listen") => format!("127.0.0.1:{http}"),
            Some("--grpc-listen") => format!("127.0.0.1:{grpc}"),
            Some("--auth-token-file") => token.display().to_string(),
            _ => (*a).to_owned(),
        })
        .collect();
    let log = tmp.path().join("serve.log");
    let mut serve = ServeChild(
        common::tracespool()
            .args(&run_args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("TRACESPOOL_DIR", tmp.path().join("spool"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
            .stdin(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let listening = common::eventually(std::time::Duration::from_secs(10), || {
        let exited = serve.0.try_wait().unwrap();
        assert!(
            exited.is_none(),
            "serve {run_args:?} exited ({exited:?}): {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
    });
    assert!(listening, "serve does not listen on {http}");
    assert_eq!(serve_get(http, "/healthz", None), (200, "ok".to_owned()));
    assert_eq!(serve_get(http, "/metrics", None).0, 401);
    let (status, page) = serve_get(http, "/metrics", Some("k8s-t0ken"));
    assert_eq!(status, 200);
    assert!(
        page.contains("tracespool_spool_max_bytes 536870912"),
        "{page}"
    );
    drop(serve);
}

#[test]
fn the_systemd_serve_unit_verifies_and_runs_serve_with_flags_it_accepts() {
    let unit = std::fs::read_to_string(example("systemd/tracespool-serve.service")).unwrap();
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    for wanted in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "tracespool"),
        ("Environment", "TRACESPOOL_DIR=%S/tracespool/spool"),
        ("EnvironmentFile", "/etc/tracespool/serve.env"),
        ("ProtectSystem", "strict"),
        ("Restart", "on-failure"),
    ] {
        assert!(settings.contains(&wanted), "{wanted:?} in {settings:?}");
    }
    let exec: Vec<&str> = settings
        .iter()
        .find(|(k, _)| *k == "ExecStart")
        .expect("ExecStart")
        .1
        .split_whitespace()
        .collect();
    assert_eq!(&exec[..2], ["/usr/local/bin/tracespool", "serve"]);
    let known = serve_flags();
    for flag in exec.iter().filter(|a| a.starts_with("--")) {
        assert!(
            known.contains(*flag),
            "{flag} is not a serve flag: {known:?}"
        );
    }
    // The arguments parse (clap checks them before it answers --help).
    let out = common::tracespool()
        .args(&exec[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // The environment file's settings are valid.
    let env: Vec<(String, String)> = std::fs::read_to_string(example("systemd/serve.env"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert!(env.iter().any(|(k, _)| k == "OTEL_EXPORTER_OTLP_ENDPOINT"));
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        settings_warnings(&env, &tmp.path().join("spool")),
        "",
        "{env:?}"
    );

    // systemd's own check, where systemd is installed, with the built binary in ExecStart=
    // (it checks that the command is executable).
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped systemd-analyze verify: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    let copy = tmp.path().join("tracespool-serve.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/tracespool",
            env!("CARGO_BIN_EXE_tracespool"),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys and bad values are only warned about: none may name the unit.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tracespool-serve"))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
}
