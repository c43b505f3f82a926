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

/// The directory of the built `tracespool`.
fn tracespool_bin_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tracespool"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `PATH` with the built `tracespool` first.
fn path_with_tracespool() -> String {
    format!(
        "{}:{}",
        tracespool_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
fn base_url(rotel: &common::Rotel) -> String {
    format!("http://127.0.0.1:{}", rotel.http_port)
}

/// Asserts that `child` is a child of `parent`, in its trace.
fn assert_child_of(child: &common::SeenSpan, parent: &common::SeenSpan) {
    assert_eq!(
        (&child.trace_id, &child.parent_id),
        (&parent.trace_id, &parent.id),
        "{:?} is no child of {:?}",
        child.name,
        parent.name
    );
}

/// Asserts that a command succeeded, saying what it printed when it did not.
fn assert_ran(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_juju_dispatch_makes_the_charms_spans_children_of_the_hooks_span() {
    let rotel = common::Rotel::start();
    let spool = tempfile::tempdir().unwrap();
    let out = common::clean_command(example("juju/dispatch"))
        .current_dir(example("juju"))
        .env("PATH", path_with_tracespool_and_python())
        .env("TRACESPOOL_DIR", spool.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", base_url(&rotel))
        .env("JUJU_DISPATCH_PATH", "hooks/install")
        .env("JUJU_HOOK_NAME", "install")
        .env("JUJU_UNIT_NAME", "app/0")
        .env("JUJU_MODEL_NAME", "m")
        .output()
        .unwrap();
    assert_ran("dispatch", &out);
    assert!(
        out.stderr.is_empty(),
        "no export error: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let hook = rotel.named("hooks/install");
    let main = rotel.named("ops.main");
    let handler = rotel.named("DemoCharm._on_install");
    assert_child_of(&main, &hook);
    assert_child_of(&handler, &main);
    assert_eq!(hook.service(), Some("app"));
    assert_eq!(main.service(), Some("app"));
    assert_eq!(
        hook.attributes.get("juju.unit").map(String::as_str),
        Some("app/0")
    );
    assert_eq!(common::status_json(spool.path(), &[])["batches"], 0);
}

/// What an `/etc/cron.d` file says: its variables, and each job's command.
fn cron_file(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut vars = Vec::new();
    let mut commands = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap();
        if let Some((key, value)) = first.split_once('=') {
            assert_eq!(first, line, "a variable line holds one word: {line}");
            vars.push((key.to_owned(), value.to_owned()));
        } else {
            // Five time fields and the user, then the command.
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() > 6, "a job line: {line}");
            commands.push(fields[6..].join(" "));
        }
    }
    (vars, commands)
}

#[test]
fn the_cron_lines_spool_the_job_when_the_collector_is_down_and_the_flush_line_delivers_it() {
    let (vars, commands) =
        cron_file(&std::fs::read_to_string(example("cron/tracespool.cron")).unwrap());
    let [job, flush] = &commands[..] else {
        panic!("two jobs: {commands:?}")
    };
    assert!(job.starts_with("tracespool exec --name nightly-backup -- /usr/local/bin/backup.sh"));
    let home = tempfile::tempdir().unwrap();
    let spool = home.path().join("spool");
    let backup = home.path().join("backup.sh");
    std::fs::write(&backup, "#!/bin/sh\necho done > \"$HOME/backup-ran\"\n").unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&backup)
        .status()
        .unwrap();
    let job = job.replace("/usr/local/bin/backup.sh", backup.to_str().unwrap());

    // cron's environment: HOME, LOGNAME, SHELL, its own PATH, then the file's variables; here
    // the file's /usr/local/bin is the build's, its collector ours, its spool a temporary one.
    let run = |command: &str, endpoint: &str| {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .env_clear()
            .env("HOME", home.path())
            .env("LOGNAME", "root")
            .env("SHELL", "/bin/sh")
            .env("PATH", "/usr/bin:/bin");
        for (key, value) in &vars {
            match key.as_str() {
                "PATH" => {
                    let bin = tracespool_bin_dir();
                    cmd.env(key, value.replace("/usr/local/bin", bin.to_str().unwrap()))
                }
                "OTEL_EXPORTER_OTLP_ENDPOINT" => cmd.env(key, endpoint),
                // The collector here speaks plain HTTP.
                "OTEL_EXPORTER_OTLP_CERTIFICATE" => &mut cmd,
                "TRACESPOOL_DIR" => cmd.env(key, &spool),
                _ => cmd.env(key, value),
            };
        }
        cmd.current_dir(home.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };

    let down = format!("http://127.0.0.1:{}", common::free_port());
    let out = run(&job, &down);
    assert_ran("the backup line", &out);
    assert!(home.path().join("backup-ran").exists(), "the backup ran");
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "silent about a down collector: {out:?}"
    );
    assert_eq!(common::status_json(&spool, &[])["spans"], 1);

    let rotel = common::Rotel::start();
    let out = run(flush, &base_url(&rotel));
    assert_ran("the flush line", &out);
    let span = rotel.named("nightly-backup");
    assert_eq!(span.attr("process.exit.code"), Some("Int(0)"));
    assert_eq!(common::status_json(&spool, &[])["batches"], 0);
}

#[test]
fn the_git_pre_commit_hook_puts_each_commits_checks_in_a_span_and_keeps_their_verdict() {
    let rotel = common::Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("shop");
    let spool = dir.path().join("spool");
    let git = |args: &[&str]| {
        common::clean_command("git")
            .current_dir(&repo)
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
            .args(args)
            .env("HOME", dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PATH", path_with_tracespool())
            .env("TRACESPOOL_DIR", &spool)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", base_url(&rotel))
            .output()
            .unwrap()
    };
    std::fs::create_dir_all(repo.join("scripts")).unwrap();
    assert_ran("git init", &git(&["init", "-q"]));
    std::fs::copy(
        example("git/pre-commit"),
        repo.join(".git/hooks/pre-commit"),
    )
    .unwrap();
    let checks = repo.join("scripts/checks.sh");
    std::fs::write(&checks, "#!/bin/sh\necho 'checks: not yet' >&2\nexit 1\n").unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&checks)
        .arg(repo.join(".git/hooks/pre-commit"))
        .status()
        .unwrap();
    std::fs::write(repo.join("README"), "shop\n").unwrap();
    assert_ran("git add", &git(&["add", "README", "scripts"]));

    let refused = git(&["commit", "-q", "-m", "first"]);
    assert!(
        !refused.status.success(),
        "the failing checks refuse the commit"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("checks: not yet"));
    assert!(
        !git(&["rev-parse", "-q", "--verify", "HEAD"])
            .status
            .success()
    );
    let failed = rotel.named("pre-commit");
    assert_eq!(
        (failed.status_code.as_str(), failed.status_message.as_str()),
        ("STATUS_CODE_ERROR", "exit code 1")
    );
    assert_eq!(
        failed.attributes.get("git.repo").map(String::as_str),
        Some("shop")
    );

    std::fs::write(&checks, "#!/bin/sh\nexit 0\n").unwrap();
    assert_ran("git commit", &git(&["commit", "-q", "-m", "first"]));
    assert_ran("HEAD", &git(&["rev-parse", "-q", "--verify", "HEAD"]));
    let spans = rotel.exactly(2);
    let passed: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "pre-commit" && s.id != failed.id)
        .collect();
    assert_eq!(passed.len(), 1, "{spans:#?}");
    assert_eq!(passed[0].attr("process.exit.code"), Some("Int(0)"));
    assert_ne!(passed[0].trace_id, failed.trace_id, "one trace per commit");
}

#[test]
fn the_ci_pipeline_script_puts_every_step_under_the_pipeline_span_and_flushes() {
    let rotel = common::Rotel::start();
    let spool = tempfile::tempdir().unwrap();
    let out = common::clean_command(example("ci/pipeline.sh"))
        .env("PATH", path_with_tracespool())
        .env("TRACESPOOL_DIR", spool.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", base_url(&rotel))
        .env("PIPELINE_NAME", "pipeline #7")
        .env("LINT", "true")
        .env("BUILD", "echo built")
        .env("TEST", "exit 4")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "the failing step's exit code: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built\n");

    let pipeline = rotel.named("pipeline #7");
    assert_eq!(
        pipeline.parent_id, "",
        "the pipeline span is a root: {pipeline:#?}"
    );
    for step in ["lint", "build", "test"] {
        assert_child_of(&rotel.named(step), &pipeline);
    }
    let test = rotel.named("test");
    assert_eq!(
        (test.status_code.as_str(), test.status_message.as_str()),
        ("STATUS_CODE_ERROR", "exit code 4")
    );
    assert_eq!(rotel.exactly(4).len(), 4);
    assert_eq!(common::status_json(spool.path(), &[])["batches"], 0);
}

#[test]
fn the_ci_pipeline_script_runs_its_steps_untraced_when_tracing_is_off() {
    let spool = tempfile::tempdir().unwrap();
    let out = common::clean_command(example("ci/pipeline.sh"))
        .env("PATH", path_with_tracespool())
        .env("TRACESPOOL_DIR", spool.path().join("spool"))
        .env("OTEL_SDK_DISABLED", "true")
        .env("LINT", "true")
        .env("BUILD", "echo built")
        .env("TEST", "echo \"tested ${TRACEPARENT:-untraced}\"")
        .output()
        .unwrap();
    assert_ran("pipeline.sh", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "built\ntested untraced\n"
    );
    assert!(!spool.path().join("spool").exists(), "no spool made");
}

#[test]
fn the_ci_snippets_are_well_formed_yaml_that_trace_every_step() {
    // PyYAML from the test peers' venv: each file parses, and its steps are what the guide says
    // (a pipeline span's TRACEPARENT handed on, every step under `tracespool exec`, a flush).
    let check = r#"
import sys, yaml
github = yaml.safe_load(open(sys.argv[1]))
steps = github["jobs"]["build"]["steps"]
runs = [s.get("run", "") for s in steps]
assert "--print-traceparent" in runs[1] and '>> "$GITHUB_ENV"' in runs[1], runs[1]
assert all(r.startswith("tracespool exec --name ") for r in runs[2:-1]), runs
assert steps[-1]["if"] == "always()" and runs[-1].startswith("tracespool flush"), steps[-1]
gitlab = yaml.safe_load(open(sys.argv[2]))
span = gitlab["pipeline-span"]
assert span["script"][0].endswith("--print-traceparent > trace.env"), span
assert span["artifacts"]["reports"]["dotenv"] == "trace.env", span
jobs = [j for n, j in gitlab.items() if isinstance(j, dict) and "stage" in j and n != "pipeline-span"]
assert len(jobs) == 3 and all(j["script"][0].startswith("tracespool exec --name ") for j in jobs), jobs
assert gitlab["default"]["after_script"][0].startswith("tracespool flush"), gitlab["default"]
print("ok")
"#;
    let out = Command::new(common::python())
        .arg("-c")
        .arg(check)
        .arg(example("ci/github-actions.yml"))
        .arg(example("ci/gitlab-ci.yml"))
        .output()
        .unwrap();
    assert_ran("the YAML check", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

fn salt_call() -> std::path::PathBuf {
    common::peer("TRACESPOOL_SALT_CALL", "target/peers/salt/bin/salt-call")
}

/// A masterless minion in `dir` (`salt-call --local -c <returned dir>`): the example's state
/// tree, and a pillar whose `backup:command` is `true` (the example's backup script is not here).
fn salt_minion(dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("conf");
    let pillar = dir.join("pillar");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&pillar).unwrap();
    std::fs::write(pillar.join("top.sls"), "base:\n  '*':\n    - backup\n").unwrap();
    std::fs::write(pillar.join("backup.sls"), "backup:\n  command: /bin/true\n").unwrap();
    std::fs::write(
        conf.join("minion"),
        format!(
            "id: web1\nfile_client: local\nroot_dir: {}\nfile_roots:\n  base:\n    - {}\npillar_roots:\n  base:\n    - {}\n",
            dir.join("root").display(),
            example("salt/states").display(),
            pillar.display()
        ),
    )
    .unwrap();
    conf
}

/// `salt-call --local state.apply backup ARGS...` under `tracespool exec`, sending to `rotel`;
/// asserts that the state succeeded and returns what salt-call printed.
fn salt_call_state_apply_backup(rotel: &common::Rotel, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let conf = salt_minion(dir.path());
    let out = common::tracespool()
        .args(["exec", "--name", "salt-call state.apply backup", "--"])
        .arg(salt_call())
        .args(["--local", "--retcode-passthrough", "-c"])
        .arg(&conf)
        .args(["state.apply", "backup"])
        .args(args)
        .env("PATH", path_with_tracespool())
        .env("TRACESPOOL_DIR", dir.path().join("spool"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", base_url(rotel))
        .output()
        .unwrap();
    assert_ran("salt-call", &out);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("Succeeded: 1"), "{stdout}");
    stdout
}

#[test]
fn salt_call_runs_the_states_command_in_a_span_under_the_runs_span() {
    let rotel = common::Rotel::start();
    salt_call_state_apply_backup(&rotel, &[]);
    let run = rotel.named("salt-call state.apply backup");
    let state = rotel.named("nightly-backup");
    assert_child_of(&state, &run);
    assert_eq!(
        state.attributes.get("salt.minion").map(String::as_str),
        Some("web1")
    );
}

#[test]
fn the_salt_ssh_wrapper_hands_traceparent_to_the_target_in_the_pillar() {
    let rotel = common::Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let conf = salt_minion(dir.path());
    // salt-ssh's stand-in: the target's side starts, as over ssh, with a fresh environment (no
    // TRACEPARENT, no capture endpoint) and its own collector settings and spool, and runs the
    // state as the thin shim would, with salt-call.
    let target = format!(
        "env -i PATH={} HOME={} OTEL_EXPORTER_OTLP_ENDPOINT={} TRACESPOOL_DIR={} {} --local --retcode-passthrough -c {}",
        path_with_tracespool(),
        dir.path().display(),
        base_url(&rotel),
        dir.path().join("target-spool").display(),
        salt_call().display(),
        conf.display()
    );
    let out = common::clean_command(example("salt/salt-ssh-traced"))
        .args(["state.apply", "backup"])
        .env("SALT_SSH", target)
        .env("PATH", path_with_tracespool())
        .env("TRACESPOOL_DIR", dir.path().join("master-spool"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", base_url(&rotel))
        .output()
        .unwrap();
    assert_ran("salt-ssh-traced", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Succeeded: 1"));

    let master = rotel.named("salt-ssh");
    let state = rotel.named("nightly-backup");
    assert_child_of(&state, &master);
    assert_eq!(
        master.attributes.get("salt.args").map(String::as_str),
        Some("state.apply backup")
    );
}

#[test]
fn the_salt_pillars_sampler_and_sampler_arg_reach_the_states_command_as_otel_traces_sampler() {
    let rotel = common::Rotel::start();
    let out = salt_call_state_apply_backup(
        &rotel,
        &[concat!(
            r#"pillar={"tracing": {"sampler": "traceidratio", "sampler_arg": 0.25}, "#,
            r#""backup": {"command": "sh -c 'echo sampler=$OTEL_TRACES_SAMPLER:$OTEL_TRACES_SAMPLER_ARG'"}}"#
        )],
    );
    assert!(
        out.contains("sampler=traceidratio:0.25"),
        "the command's environment: {out}"
    );
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
