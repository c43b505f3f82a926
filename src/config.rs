//! Settings, resolved from their sources (CONTRACT §1): flags > environment > defaults.
//!
//! Two stages, as in ripgrep: [`Flags`] is only what the user typed, checked by clap;
//! [`Config::resolve`] combines it with an environment *map* (no process state, no I/O) into
//! the values the commands use, plus one warning per invalid environment value (that source is
//! then ignored for that setting and the next one applies).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use http::header::{HeaderName, HeaderValue};

use crate::exporter::DeliverySettings;
use crate::spool::{SpoolOptions, SyncPolicy};
use crate::transport::{Compression, TlsFiles};
use crate::units::{parse_duration, parse_size};

/// Global flags, as typed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// Spool directory [env: TRACESPOOL_DIR] [default: $XDG_STATE_HOME/tracespool]
    #[arg(long, global = true, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Size bound of the spool, e.g. 64MiB; 0 disables spooling [env: TRACESPOOL_MAX_BYTES]
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub max_bytes: Option<u64>,
    /// Span bound of the spool [env: TRACESPOOL_MAX_SPANS] [default: unlimited]
    #[arg(long, global = true, value_name = "N")]
    pub max_spans: Option<u64>,
    /// OTLP/HTTP traces endpoint, used as is [env: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
    /// OTEL_EXPORTER_OTLP_ENDPOINT + v1/traces] [default: none, spool only]
    #[arg(long, global = true, value_name = "URL", value_parser = parse_endpoint)]
    pub endpoint: Option<Uri>,
    /// Wall time spent on the network after the real work, e.g. 2s [env: TRACESPOOL_BUDGET]
    #[arg(long, global = true, value_name = "DUR", value_parser = parse_duration)]
    pub budget: Option<Duration>,
    /// Per-request timeout in milliseconds; 0 = none [env: OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    /// OTEL_EXPORTER_OTLP_TIMEOUT] [default: the budget]
    #[arg(long, global = true, value_name = "MS")]
    pub timeout: Option<u64>,
    /// CA certificate(s) to trust, PEM; only these when set [env: OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mTLS, PEM [env: OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE]
    #[arg(long, global = true, value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// Client key for mTLS, PEM [env: OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY]
    #[arg(long, global = true, value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// Request header K=V, repeatable [env: OTEL_EXPORTER_OTLP_TRACES_HEADERS]
    #[arg(long = "header", global = true, value_name = "K=V", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// gzip or none [env: OTEL_EXPORTER_OTLP_TRACES_COMPRESSION]
    #[arg(long, global = true, value_name = "ALG", value_parser = parse_compression)]
    pub compression: Option<Compression>,
}

pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(2);

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub spool_dir: PathBuf,
    pub spool: SpoolOptions,
    pub delivery: DeliverySettings,
}

/// An invalid value in a source other than the command line: reported once, then ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub source: String,
    pub value: String,
    pub reason: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ignoring {}={:?}: {}",
            self.source, self.value, self.reason
        )
    }
}

/// An endpoint URL: http or https, with a host.
pub fn parse_endpoint(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.trim().parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("expected an http:// or https:// URL".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    // Used as is, but an empty path is "/" (REFERENCE §1).
    Ok(uri)
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL: `v1/traces` is appended, with one slash.
fn traces_endpoint_from_base(base: &str) -> Result<Uri, String> {
    let base = base.trim();
    let sep = if base.ends_with('/') { "" } else { "/" };
    parse_endpoint(&format!("{base}{sep}v1/traces"))
}

pub fn parse_compression(s: &str) -> Result<Compression, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        _ => Err("expected gzip or none".into()),
    }
}

fn header(key: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(key.trim().as_bytes())
        .map_err(|_| format!("{key:?} is not a header name"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {key:?} is not a valid header value"))?;
    Ok((name, value))
}

pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (k, v) = s.split_once('=').ok_or("expected K=V")?;
    header(k, v)
}

fn percent_decode(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "not UTF-8 after percent-decoding".into())
}

/// `k=v,k2=v2`, keys and values percent-decoded (the OTel environment format).
pub fn parse_header_list(s: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    s.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not K=V"))?;
            header(&percent_decode(k.trim())?, &percent_decode(v.trim())?)
        })
        .collect()
}

/// Integer milliseconds (the OTel `TIMEOUT` variables); `0` means no per-request limit.
fn parse_millis(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a whole number of milliseconds".into())
}

/// Environment values; empty counts as unset (CONTRACT §1).
struct Env<'a> {
    vars: &'a HashMap<String, String>,
    warnings: Vec<Warning>,
}

impl Env<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The first of `keys` that is set and valid; every invalid one is warned about.
    fn pick<T>(&mut self, keys: &[&str], parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        for key in keys {
            let Some(value) = self.vars.get(*key).filter(|v| !v.is_empty()) else {
                continue;
            };
            match parse(value) {
                Ok(v) => return Some(v),
                Err(reason) => self.warnings.push(Warning {
                    source: (*key).to_owned(),
                    value: value.clone(),
                    reason,
                }),
            }
        }
        None
    }
}

impl Config {
    pub fn resolve(flags: &Flags, vars: &HashMap<String, String>) -> (Config, Vec<Warning>) {
        let mut env = Env {
            vars,
            warnings: Vec::new(),
        };
        let max_bytes = flags
            .max_bytes
            .or_else(|| {
                env.pick(&["TRACESPOOL_MAX_BYTES"], |v| {
                    parse_size(v).map_err(|e| e.to_string())
                })
            })
            .unwrap_or(DEFAULT_MAX_BYTES);
        let max_spans = flags.max_spans.or_else(|| {
            env.pick(&["TRACESPOOL_MAX_SPANS"], |v| {
                v.trim()
                    .parse()
                    .map_err(|_| "expected a whole number of spans".to_owned())
            })
        });
        let spool_dir = flags
            .spool_dir
            .clone()
            .or_else(|| env.get("TRACESPOOL_DIR").map(PathBuf::from))
            .unwrap_or_else(|| default_spool_dir(vars));

        let endpoint = flags.endpoint.clone().or_else(|| {
            env.pick(&["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], parse_endpoint)
                .or_else(|| env.pick(&["OTEL_EXPORTER_OTLP_ENDPOINT"], traces_endpoint_from_base))
        });
        let budget = flags
            .budget
            .or_else(|| {
                env.pick(&["TRACESPOOL_BUDGET"], |v| {
                    parse_duration(v).map_err(|e| e.to_string())
                })
            })
            .unwrap_or(DEFAULT_BUDGET);
        let timeout_ms = flags.timeout.or_else(|| {
            env.pick(
                &[
                    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                    "OTEL_EXPORTER_OTLP_TIMEOUT",
                ],
                parse_millis,
            )
        });
        let path = |keys: &[&str], flag: &Option<PathBuf>, env: &mut Env| {
            flag.clone()
                .or_else(|| env.pick(keys, |v| Ok(PathBuf::from(v))))
        };
        let tls = TlsFiles {
            ca_file: path(
                &[
                    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                ],
                &flags.ca_file,
                &mut env,
            ),
            client_cert: path(
                &[
                    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                ],
                &flags.client_cert,
                &mut env,
            ),
            client_key: path(
                &[
                    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
                    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                ],
                &flags.client_key,
                &mut env,
            ),
        };
        let headers = if flags.headers.is_empty() {
            env.pick(
                &[
                    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                    "OTEL_EXPORTER_OTLP_HEADERS",
                ],
                parse_header_list,
            )
            .unwrap_or_default()
        } else {
            flags.headers.clone()
        };
        let compression = flags
            .compression
            .or_else(|| {
                env.pick(
                    &[
                        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                        "OTEL_EXPORTER_OTLP_COMPRESSION",
                    ],
                    parse_compression,
                )
            })
            .unwrap_or_default();

        let config = Config {
            spool_dir,
            spool: SpoolOptions {
                max_bytes,
                max_spans,
                sync: SyncPolicy::Always,
            },
            delivery: DeliverySettings {
                endpoint,
                headers,
                compression,
                tls,
                budget,
                timeout: match timeout_ms {
                    None => Some(budget),
                    Some(0) => None,
                    Some(ms) => Some(Duration::from_millis(ms)),
                },
            },
        };
        (config, env.warnings)
    }
}

/// `$XDG_STATE_HOME/tracespool`, else `$HOME/.local/state/tracespool`, else `/var/lib/tracespool`.
pub fn default_spool_dir(vars: &HashMap<String, String>) -> PathBuf {
    let get = |k: &str| vars.get(k).filter(|v| !v.is_empty());
    if let Some(state) = get("XDG_STATE_HOME") {
        return PathBuf::from(state).join("tracespool");
    }
    if let Some(home) = get("HOME") {
        return PathBuf::from(home).join(".local/state/tracespool");
    }
    PathBuf::from("/var/lib/tracespool")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn resolve(pairs: &[(&str, &str)]) -> (Config, Vec<Warning>) {
        Config::resolve(&Flags::default(), &env(pairs))
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_defaults() {
        let e = env(&[
            ("TRACESPOOL_MAX_BYTES", "1MiB"),
            ("TRACESPOOL_DIR", "/env/dir"),
        ]);
        let (c, w) = Config::resolve(&Flags::default(), &e);
        assert_eq!(
            (c.spool.max_bytes, c.spool_dir.clone()),
            (1 << 20, PathBuf::from("/env/dir"))
        );
        assert!(w.is_empty());
        let flags = Flags {
            max_bytes: Some(5),
            spool_dir: Some("/flag".into()),
            ..Flags::default()
        };
        let (c, _) = Config::resolve(&flags, &e);
        assert_eq!(
            (c.spool.max_bytes, c.spool_dir),
            (5, PathBuf::from("/flag"))
        );
        let (c, _) = resolve(&[]);
        assert_eq!(c.spool.max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(
            (c.delivery.endpoint, c.delivery.budget),
            (None, DEFAULT_BUDGET)
        );
    }

    #[test]
    fn a_bad_environment_value_warns_once_and_falls_back() {
        let (c, w) = resolve(&[("TRACESPOOL_MAX_BYTES", "lots")]);
        assert_eq!(c.spool.max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(w.len(), 1);
        let line = w[0].to_string();
        assert!(
            line.contains("TRACESPOOL_MAX_BYTES") && line.contains("lots"),
            "{line}"
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let (c, w) = resolve(&[
            ("TRACESPOOL_MAX_BYTES", ""),
            ("TRACESPOOL_DIR", ""),
            ("HOME", "/h"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ]);
        assert!(w.is_empty());
        assert_eq!(c.spool_dir, PathBuf::from("/h/.local/state/tracespool"));
        assert_eq!(c.delivery.endpoint, None);
    }

    #[test]
    fn the_default_directory_follows_xdg_then_home() {
        assert_eq!(
            default_spool_dir(&env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")])),
            PathBuf::from("/x/tracespool")
        );
        assert_eq!(
            default_spool_dir(&env(&[])),
            PathBuf::from("/var/lib/tracespool")
        );
    }

    #[test]
    fn the_traces_endpoint_is_used_as_is_and_the_base_gets_v1_traces() {
        let ep = |pairs| resolve(pairs).0.delivery.endpoint.map(|u| u.to_string());
        assert_eq!(
            ep(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318")]).as_deref(),
            Some("http://h:4318/v1/traces")
        );
        assert_eq!(
            ep(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318/")]).as_deref(),
            Some("http://h:4318/v1/traces")
        );
        assert_eq!(
            ep(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://h/otlp")]).as_deref(),
            Some("https://h/otlp/v1/traces")
        );
        assert_eq!(
            ep(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://h:1/custom"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x")
            ])
            .as_deref(),
            Some("http://h:1/custom")
        );
        assert_eq!(
            ep(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://h:1")]).as_deref(),
            Some("http://h:1/")
        );
        let (c, w) = resolve(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://h"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b"),
        ]);
        assert_eq!(
            c.delivery.endpoint.unwrap().to_string(),
            "http://b/v1/traces"
        );
        assert_eq!(w.len(), 1);
        assert!(
            w[0].to_string()
                .contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        );
    }

    #[test]
    fn timeouts_are_milliseconds_and_zero_means_none() {
        let t = |pairs| resolve(pairs).0.delivery.timeout;
        assert_eq!(t(&[]), Some(DEFAULT_BUDGET));
        assert_eq!(
            t(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "250")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            t(&[
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "9")
            ]),
            None
        );
        assert_eq!(
            t(&[("TRACESPOOL_BUDGET", "500ms")]),
            Some(Duration::from_millis(500))
        );
        let (_, w) = resolve(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "2s")]);
        assert!(w[0].to_string().contains("OTEL_EXPORTER_OTLP_TIMEOUT"));
    }

    #[test]
    fn headers_are_percent_decoded_and_bad_lists_are_ignored_whole() {
        let (c, w) = resolve(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=a%20b%3Dc, x-team=ops",
        )]);
        assert!(w.is_empty());
        let h: Vec<(String, String)> = c
            .delivery
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            h,
            vec![
                ("api-key".into(), "a b=c".into()),
                ("x-team".into(), "ops".into())
            ]
        );
        let (c, w) = resolve(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "novalue")]);
        assert!(c.delivery.headers.is_empty());
        assert!(
            w[0].to_string()
                .contains("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        );
    }

    #[test]
    fn tls_files_and_compression_follow_the_traces_variables_first() {
        let (c, _) = resolve(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/traces.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP"),
        ]);
        assert_eq!(c.delivery.tls.ca_file, Some(PathBuf::from("/traces.pem")));
        assert_eq!(c.delivery.tls.client_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(c.delivery.compression, Compression::Gzip);
    }
}
