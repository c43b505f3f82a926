//! `config`: the effective settings, each with where it came from.
//!
//! Every setting the commands use is listed, by the config file's key name (a signal's own
//! delivery setting carries `metrics_` or `logs_` in front; each resource attribute is
//! `resource.KEY`), with its value and its source: `flag`, `env VAR`, `file PATH` or `default`.
//! Secrets are never printed: header values are `***`, and so is an endpoint's query string.
//! Plain output is a table for people; `--json` one object, `{"NAME": {"value": …, "source":
//! …}, …, "warnings": [...]}`, with sizes in bytes, durations as they are written in the config
//! file (`2s`) and a setting that is not set as `null`.

use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::CliError;
use crate::config::{Config, Origin, Warning, spool_compression_name};
use crate::delivery::DeliverySettings;
use crate::sampling::Root;
use crate::signal::Signal;
use crate::transport::shown;
use crate::units::{format_duration, format_size};

/// One setting's value, for scripts and for people.
struct Shown {
    json: Value,
    text: String,
}

impl Shown {
    fn of(json: Value, text: impl Into<String>) -> Shown {
        Shown {
            json,
            text: text.into(),
        }
    }

    fn string(s: impl Into<String>) -> Shown {
        let s = s.into();
        Shown::of(Value::String(s.clone()), s)
    }

    fn optional(value: Option<Shown>, absent: &str) -> Shown {
        value.unwrap_or_else(|| Shown::of(Value::Null, absent))
    }
}

fn endpoint(uri: &http::Uri) -> String {
    let base = shown(uri);
    match uri.query() {
        Some(_) => format!("{base}?***"),
        None => base,
    }
}

fn delivery_setting(key: &str, d: &DeliverySettings) -> Option<Shown> {
    let path = |p: &Option<std::path::PathBuf>| {
        Shown::optional(
            p.as_ref().map(|p| Shown::string(p.display().to_string())),
            "none",
        )
    };
    Some(match key {
        "endpoint" => Shown::optional(
            d.endpoint.as_ref().map(|e| Shown::string(endpoint(e))),
            "none: spool only",
        ),
        "protocol" => Shown::string(d.protocol.as_str()),
        "timeout_ms" => {
            let ms = d.timeout.map_or(0, |t| t.as_millis() as u64);
            let text = if ms == 0 {
                "0 (none: the budget alone)".to_owned()
            } else {
                ms.to_string()
            };
            Shown::of(json!(ms), text)
        }
        "ca_file" => path(&d.tls.ca_file),
        "client_cert" => path(&d.tls.client_cert),
        "client_key" => path(&d.tls.client_key),
        "headers" => {
            let names: Vec<&str> = d.headers.iter().map(|(k, _)| k.as_str()).collect();
            let object: serde_json::Map<String, Value> = names
                .iter()
                .map(|k| ((*k).to_owned(), json!("***")))
                .collect();
            let text = if names.is_empty() {
                "none".to_owned()
            } else {
                names
                    .iter()
                    .map(|k| format!("{k}=***"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            Shown::of(Value::Object(object), text)
        }
        "compression" => Shown::string(d.compression.as_str()),
        _ => return None,
    })
}

/// The value of setting `name` in `config`; `None` for a name that is no setting.
fn value(config: &Config, name: &str) -> Option<Shown> {
    let spool = &config.spool;
    let traces = &config.delivery[Signal::Traces];
    Some(match name {
        "spool_dir" => Shown::string(config.spool_dir.display().to_string()),
        "max_bytes" => Shown::of(json!(spool.max_bytes), format_size(spool.max_bytes)),
        "max_spans" => Shown::optional(
            spool.max_spans.map(|n| Shown::of(json!(n), n.to_string())),
            "unlimited",
        ),
        "max_age" => Shown::optional(
            spool.max_age.map(|d| Shown::string(format_duration(d))),
            "none",
        ),
        "spool_compression" => Shown::string(spool_compression_name(spool.compression)),
        "budget" => Shown::string(format_duration(traces.budget)),
        "drain" => Shown::string(traces.drain.as_str()),
        "drain_budget" => Shown::string(format_duration(traces.drain_budget)),
        "service_name" => Shown::optional(
            config.service_name.clone().map(Shown::string),
            "none: exec names it after the command, the others tracespool",
        ),
        "disabled" => Shown::of(json!(config.disabled), config.disabled.to_string()),
        "sampler" => Shown::string(config.sampler.name()),
        "sampler_arg" => Shown::optional(
            match config.sampler.root {
                Root::TraceIdRatio(p) => Some(Shown::of(json!(p), p.to_string())),
                _ => None,
            },
            "none",
        ),
        _ => {
            if let Some(key) = name.strip_prefix("resource.") {
                let (_, v) = config.resource.iter().find(|(k, _)| k == key)?;
                return Some(Shown::string(v.clone()));
            }
            let (signal, key) = match name.split_once('_') {
                Some(("metrics", key)) => (Signal::Metrics, key),
                Some(("logs", key)) => (Signal::Logs, key),
                _ => (Signal::Traces, name),
            };
            return delivery_setting(key, &config.delivery[signal]);
        }
    })
}

/// `config_path`: the config file and where it was named, if one was.
pub(super) fn config(
    config: &Config,
    config_path: Option<(&std::path::Path, Origin)>,
    warnings: &[Warning],
    json: bool,
) -> Result<ExitCode, CliError> {
    let mut rows: Vec<(String, Shown, String)> = Vec::new();
    let file = match config_path {
        Some((path, origin)) => (
            Shown::string(path.display().to_string()),
            origin.to_string(),
        ),
        None => (Shown::of(Value::Null, "none"), Origin::Default.to_string()),
    };
    rows.push(("config".to_owned(), file.0, file.1));
    for (name, origin) in config.origins.iter() {
        let shown = value(config, name).expect("every noted setting has a value to show");
        rows.push((name.to_owned(), shown, origin.to_string()));
    }
    let mut out = std::io::stdout().lock();
    if json {
        let mut object = serde_json::Map::new();
        for (name, shown, source) in rows {
            object.insert(name, json!({ "value": shown.json, "source": source }));
        }
        let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        object.insert("warnings".to_owned(), json!(warnings));
        serde_json::to_writer(&mut out, &Value::Object(object))?;
        writeln!(out)?;
    } else {
        let width = rows.iter().map(|(n, ..)| n.len()).max().unwrap_or(0);
        let value_width = rows
            .iter()
            .map(|(_, v, _)| v.text.chars().count())
            .max()
            .unwrap_or(0)
            .min(48);
        for (name, shown, source) in rows {
            writeln!(
                out,
                "{name:<width$}  {:<value_width$}  {source}",
                shown.text
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Flags;

    #[test]
    fn every_setting_the_resolver_notes_has_a_value_to_show() {
        let vars: HashMap<String, String> = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://h:4318/m?k=secret",
            ),
            ("OTEL_RESOURCE_ATTRIBUTES", "a=1,b=2"),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-token=hunter2"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let (config, _) = Config::resolve(&Flags::default(), &vars, None);
        let mut names = 0;
        for (name, _) in config.origins.iter() {
            let shown = value(&config, name).unwrap_or_else(|| panic!("{name} has no value"));
            assert!(!shown.text.contains("secret") && !shown.text.contains("hunter2"));
            names += 1;
        }
        // 12 spool and process settings, 8 per signal, and the two resource attributes.
        assert_eq!(names, 12 + 3 * 8 + 2);
        assert_eq!(value(&config, "logs_headers").unwrap().text, "x-token=***");
        assert_eq!(
            value(&config, "endpoint").unwrap().text,
            "http://h:4318/v1/traces"
        );
        assert_eq!(
            value(&config, "metrics_endpoint").unwrap().text,
            "http://h:4318/m?***"
        );
        assert!(value(&config, "no_such").is_none());
    }
}
