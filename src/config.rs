//! Settings, resolved from their sources: flags > environment > config file >
//! defaults.
//!
//! Two stages, as in ripgrep: [`Flags`] is only what the user typed, checked by clap;
//! [`Config::resolve`] combines it with an environment *map* and the text of the config file (no
//! process state, no I/O) into the values the commands use, plus one warning per invalid
//! environment or file value (that source is then ignored for that setting and the next one
//! applies) and one for an unreadable or unparsable file (ignored whole).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use http::header::{HeaderName, HeaderValue};

use crate::delivery::drain::{DEFAULT_DRAIN_BUDGET, parse_drain_mode};
use crate::delivery::{DeliverySettings, DrainMode};
use crate::sampling::Sampler;
use crate::signal::{PerSignal, Signal};
use crate::spool::{Encoding, SpoolOptions, SyncPolicy};
use crate::transport::{Compression, Protocol, TlsFiles};
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
    /// How batches are kept on disk: gzip (when that saves a tenth) or none
    /// [env: TRACESPOOL_SPOOL_COMPRESSION] [default: gzip]
    #[arg(long, global = true, value_name = "ALG", value_parser = parse_spool_compression)]
    pub spool_compression: Option<Encoding>,
    /// Drop spooled data older than this, e.g. 18h; it is never delivered
    /// [env: TRACESPOOL_MAX_AGE] [default: none, kept until delivered or pushed out]
    #[arg(long, global = true, value_name = "DUR", value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// OTLP/HTTP traces endpoint, used as is [env: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
    /// OTEL_EXPORTER_OTLP_ENDPOINT + v1/traces] [default: none, spool only]
    #[arg(long, global = true, value_name = "URL", value_parser = parse_endpoint)]
    pub endpoint: Option<Uri>,
    /// OTLP metrics endpoint, used as is [env: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, or
    /// OTEL_EXPORTER_OTLP_ENDPOINT + v1/metrics] [default: from the traces endpoint]
    #[arg(long, global = true, value_name = "URL", value_parser = parse_endpoint)]
    pub metrics_endpoint: Option<Uri>,
    /// OTLP logs endpoint, used as is [env: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, or
    /// OTEL_EXPORTER_OTLP_ENDPOINT + v1/logs] [default: from the traces endpoint]
    #[arg(long, global = true, value_name = "URL", value_parser = parse_endpoint)]
    pub logs_endpoint: Option<Uri>,
    /// Upstream protocol: http/protobuf, http/json or grpc [env: OTEL_EXPORTER_OTLP_PROTOCOL and
    /// the per-signal OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_PROTOCOL] [default: http/protobuf]
    #[arg(long, global = true, value_name = "P", value_parser = parse_protocol)]
    pub protocol: Option<Protocol>,
    /// Wall time spent on the network after the real work, e.g. 2s [env: TRACESPOOL_BUDGET]
    #[arg(long, global = true, value_name = "DUR", value_parser = parse_duration)]
    pub budget: Option<Duration>,
    /// What a hook does with the backlog: background (a detached `tracespool flush` sends it
    /// after the hook's own data), inline (the hook sends it first, within its budget) or off
    /// [env: TRACESPOOL_DRAIN] [default: background]
    #[arg(long, global = true, value_name = "MODE", value_parser = parse_drain_mode)]
    pub drain: Option<DrainMode>,
    /// Wall time a background drain may spend, e.g. 60s [env: TRACESPOOL_DRAIN_BUDGET]
    /// [default: 60s]
    #[arg(long, global = true, value_name = "DUR", value_parser = parse_duration)]
    pub drain_budget: Option<Duration>,
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
    /// Service name [env: OTEL_SERVICE_NAME] [default for exec: the command's file name]
    #[arg(long, global = true, value_name = "NAME")]
    pub service: Option<String>,
    /// Resource attribute K=V, repeatable [env: OTEL_RESOURCE_ATTRIBUTES]
    #[arg(long = "resource", global = true, value_name = "K=V", value_parser = parse_key_value)]
    pub resource: Vec<(String, String)>,
    /// TOML config file, the lowest source but defaults [env: TRACESPOOL_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl Flags {
    /// The flags a `tracespool flush` started on the user's behalf needs to find the same spool
    /// and endpoints, as a command line that parses back to the same values. Headers are not
    /// among them (a command line is visible to every user): see
    /// [`header_vars`](Flags::header_vars).
    pub fn delivery_args(&self) -> Vec<OsString> {
        // Every flag named, none with `..`: a new flag does not compile until it is decided
        // here whether the drainer needs it.
        let Flags {
            spool_dir,
            max_bytes,
            max_spans,
            spool_compression,
            max_age,
            endpoint,
            metrics_endpoint,
            logs_endpoint,
            protocol,
            budget,
            drain,
            drain_budget,
            timeout,
            ca_file,
            client_cert,
            client_key,
            // Passed in the environment: a command line is visible to every user.
            headers: _,
            compression,
            // What a span says of its process; a drainer records no span.
            service: _,
            resource: _,
            config,
        } = self;
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |flag: &str, value: OsString| {
            args.push(flag.into());
            args.push(value);
        };
        let millis = |d: &Duration| OsString::from(format!("{}ms", d.as_millis().max(1)));
        if let Some(v) = spool_dir {
            push("--spool-dir", v.into());
        }
        if let Some(v) = *max_bytes {
            push("--max-bytes", v.to_string().into());
        }
        if let Some(v) = *max_spans {
            push("--max-spans", v.to_string().into());
        }
        if let Some(v) = max_age {
            push("--max-age", millis(v));
        }
        if let Some(v) = *spool_compression {
            push("--spool-compression", spool_compression_name(v).into());
        }
        for (flag, uri) in [
            ("--endpoint", endpoint),
            ("--metrics-endpoint", metrics_endpoint),
            ("--logs-endpoint", logs_endpoint),
        ] {
            if let Some(uri) = uri {
                push(flag, uri.to_string().into());
            }
        }
        if let Some(v) = *protocol {
            push("--protocol", v.as_str().into());
        }
        if let Some(v) = budget {
            push("--budget", millis(v));
        }
        if let Some(v) = *drain {
            push("--drain", v.as_str().into());
        }
        if let Some(v) = drain_budget {
            push("--drain-budget", millis(v));
        }
        if let Some(v) = *timeout {
            push("--timeout", v.to_string().into());
        }
        for (flag, path) in [
            ("--ca-file", ca_file),
            ("--client-cert", client_cert),
            ("--client-key", client_key),
            ("--config", config),
        ] {
            if let Some(path) = path {
                push(flag, path.into());
            }
        }
        if let Some(v) = *compression {
            push("--compression", v.as_str().into());
        }
        args
    }

    /// `--header` values as environment variables that give every signal the same headers
    /// (each signal's own `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_HEADERS`, which win over
    /// every other source but the flag), for a process started on the user's behalf; none
    /// without `--header`.
    pub fn header_vars(&self) -> Vec<(String, String)> {
        if self.headers.is_empty() {
            return Vec::new();
        }
        const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
            .add(b'%')
            .add(b',')
            .add(b'=')
            .add(b' ');
        let encode = |b: &[u8]| percent_encoding::percent_encode(b, RESERVED).to_string();
        let list = self
            .headers
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k.as_str().as_bytes()), encode(v.as_bytes())))
            .collect::<Vec<_>>()
            .join(",");
        Signal::ALL
            .into_iter()
            .map(|signal| {
                let upper = signal.as_str().to_ascii_uppercase();
                (format!("OTEL_EXPORTER_OTLP_{upper}_HEADERS"), list.clone())
            })
            .collect()
    }
}

pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(2);

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub spool_dir: PathBuf,
    pub spool: SpoolOptions,
    /// Each signal's endpoint and how to reach it.
    pub delivery: PerSignal<DeliverySettings>,
    /// `--service`, `OTEL_SERVICE_NAME` or the file's `service_name`; the command picks the
    /// default when none is set (for `exec`: the command's file name).
    pub service_name: Option<String>,
    /// Resource attributes: the file's `[resource]`, then `OTEL_RESOURCE_ATTRIBUTES`, then
    /// `--resource`, later ones winning key by key.
    pub resource: Vec<(String, String)>,
    /// `OTEL_SDK_DISABLED=true`: no telemetry at all.
    pub disabled: bool,
    /// Which of `exec`'s and `span`'s spans are recorded.
    pub sampler: Sampler,
    /// Where each setting came from.
    pub origins: Origins,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env(String),
    File(PathBuf),
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag => f.write_str("flag"),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// The origin of every resolved setting, in the order they were resolved, by name: the config
/// file's key; `metrics_` or `logs_` in front for those signals' delivery settings (`protocol`
/// is the traces one, `metrics_protocol` the metrics one); `resource.KEY` for each resource
/// attribute.
#[derive(Debug, Clone, Default)]
pub struct Origins(Vec<(String, Origin)>);

impl Origins {
    fn note(&mut self, name: impl Into<String>, origin: Origin) {
        let name = name.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = origin,
            None => self.0.push((name, origin)),
        }
    }

    /// Where the setting `name` came from; `None` for a name that is no setting.
    pub fn get(&self, name: &str) -> Option<&Origin> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Origin)> {
        self.0.iter().map(|(n, o)| (n.as_str(), o))
    }
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
            self.source,
            without_credentials(&self.value),
            self.reason
        )
    }
}

/// `scheme://user:secret@host/…` as `scheme://…@host/…`: a refused endpoint is said without
/// the credentials that got it refused.
fn without_credentials(value: &str) -> std::borrow::Cow<'_, str> {
    if let Some((scheme, rest)) = value.split_once("://") {
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@') {
            return format!("{scheme}://…{}", &rest[at..]).into();
        }
    }
    value.into()
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
    // They would be shown, and kept in the delivery state file: headers are neither.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("credentials in the URL; pass them with --header instead".into());
    }
    // Used as is, but an empty path is "/": the OTLP rule for an endpoint used as is.
    Ok(uri)
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL: `v1/traces` (`v1/metrics`, `v1/logs`) is
/// appended, with one slash.
fn endpoint_from_base(base: &str, signal: Signal) -> Result<Uri, String> {
    let base = base.trim();
    // The signal's path goes after the base's path, before any query string it carries.
    let (base, query) = match base.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (base, None),
    };
    let sep = if base.ends_with('/') { "" } else { "/" };
    let mut url = format!("{base}{sep}{}", &signal.http_path()[1..]);
    if let Some(query) = query {
        url = format!("{url}?{query}");
    }
    parse_endpoint(&url)
}

/// A signal without an endpoint of its own uses the traces endpoint's when that one ends in
/// `/v1/traces`, with the signal's path in its place.
fn endpoint_beside_traces(traces: &Uri, signal: Signal) -> Option<Uri> {
    let path = traces.path();
    let stem = path.strip_suffix(Signal::Traces.http_path())?;
    let mut parts = traces.clone().into_parts();
    let query = traces.query().map(|q| format!("?{q}")).unwrap_or_default();
    parts.path_and_query = Some(
        format!("{stem}{}{query}", signal.http_path())
            .parse()
            .ok()?,
    );
    Uri::from_parts(parts).ok()
}

pub fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Ok(Protocol::HttpJson),
        "grpc" => Ok(Protocol::Grpc),
        _ => Err("expected http/protobuf, http/json or grpc".into()),
    }
}

pub fn parse_compression(s: &str) -> Result<Compression, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        _ => Err("expected gzip or none".into()),
    }
}

/// The spool's compression at rest: the same words as the upstream compression.
pub fn parse_spool_compression(s: &str) -> Result<Encoding, String> {
    parse_compression(s).map(|c| match c {
        Compression::Gzip => Encoding::Gzip,
        Compression::None => Encoding::Identity,
    })
}

/// The word [`parse_spool_compression`] reads for `encoding`.
pub fn spool_compression_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Gzip => Compression::Gzip.as_str(),
        Encoding::Identity => Compression::None.as_str(),
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

/// Strict: a `%` must start a two-digit hex escape (the crate passes malformed ones through).
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    if let Some(i) = (0..b.len()).find(|&i| {
        b[i] == b'%'
            && !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
    }) {
        return Err(format!("malformed percent escape at {:?}", &s[i..]));
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "not UTF-8 after percent-decoding".into())
}

/// `k=v,k2=v2`, keys and values percent-decoded, keys non-empty (the OTel environment format
/// of headers and resource attributes). Any error discards the whole value.
fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not K=V"))?;
            let k = percent_decode(k.trim())?;
            if k.is_empty() {
                return Err(format!("{item:?} has an empty key"));
            }
            Ok((k, percent_decode(v.trim())?))
        })
        .collect()
}

/// `OTEL_EXPORTER_OTLP_HEADERS`.
pub fn parse_header_list(s: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    headers(&parse_pairs(s)?)
}

fn headers(pairs: &[(String, String)]) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    pairs.iter().map(|(k, v)| header(k, v)).collect()
}

/// Integer milliseconds (the OTel `TIMEOUT` variables); `0` means no per-request limit.
fn parse_millis(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a whole number of milliseconds".into())
}

/// The config file as read by the caller (`Config::resolve` does no I/O), parsed once.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// The file's settings, or why it has none: it could not be read, or is not TOML.
    pub table: Result<toml::Table, String>,
}

impl ConfigFile {
    /// `text`: the file's text, or why it could not be read.
    pub fn new(path: PathBuf, text: Result<String, String>) -> ConfigFile {
        let table = text
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|text| {
                text.parse::<toml::Table>()
                    .map_err(|e| format!("not valid TOML: {}", e.message()))
            });
        ConfigFile { path, table }
    }
}

/// The lower sources: environment (empty counts as unset) and config file.
struct Sources<'a> {
    vars: &'a HashMap<String, String>,
    file: Option<&'a toml::Table>,
    file_name: String,
    warnings: Vec<Warning>,
    /// Where the value the last [`Sources::env`] or [`Sources::file`] returned came from.
    hit: Option<Origin>,
    origins: Origins,
}

/// Keys the config file may hold.
const FILE_KEYS: [&str; 22] = [
    "endpoint",
    "protocol",
    "metrics_endpoint",
    "logs_endpoint",
    "spool_dir",
    "max_bytes",
    "max_spans",
    "max_age",
    "spool_compression",
    "budget",
    "drain",
    "drain_budget",
    "timeout_ms",
    "ca_file",
    "client_cert",
    "client_key",
    "headers",
    "compression",
    "service_name",
    "resource",
    "sampler",
    "sampler_arg",
];

fn as_str(v: &toml::Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| "expected a string".to_owned())
}

fn as_count(v: &toml::Value) -> Result<u64, String> {
    v.as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| "expected a non-negative integer".to_owned())
}

/// A TOML table of strings, e.g. `[headers]`.
fn as_pairs(v: &toml::Value) -> Result<Vec<(String, String)>, String> {
    v.as_table()
        .ok_or("expected a table")?
        .iter()
        .map(|(k, v)| Ok((k.clone(), as_str(v)?.to_owned())))
        .collect()
}

impl<'a> Sources<'a> {
    fn new(vars: &'a HashMap<String, String>, file: Option<&'a ConfigFile>) -> Sources<'a> {
        let mut sources = Sources {
            vars,
            file: None,
            file_name: String::new(),
            warnings: Vec::new(),
            hit: None,
            origins: Origins::default(),
        };
        let Some(file) = file else { return sources };
        sources.file_name = file.path.display().to_string();
        let warn = |reason: String| Warning {
            source: format!("config file {}", file.path.display()),
            value: String::new(),
            reason,
        };
        match &file.table {
            Err(reason) => sources.warnings.push(warn(reason.clone())),
            Ok(table) => {
                for key in table.keys().filter(|k| !FILE_KEYS.contains(&k.as_str())) {
                    sources.warnings.push(Warning {
                        source: format!("{} key {key}", sources.file_name),
                        value: table[key].to_string(),
                        reason: "unknown setting".into(),
                    });
                }
                sources.file = Some(table);
            }
        }
        sources
    }

    /// Each bad value is said once, however many settings read it (every signal reads the
    /// generic `OTEL_EXPORTER_OTLP_*` variables).
    fn warn(&mut self, warning: Warning) {
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The first of the environment `keys` that is set and valid; every invalid one is warned about.
    fn env<T>(&mut self, keys: &[&str], parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        for key in keys {
            let Some(value) = self.get(key) else {
                continue;
            };
            match parse(value) {
                Ok(v) => {
                    self.hit = Some(Origin::Env((*key).to_owned()));
                    return Some(v);
                }
                Err(reason) => {
                    let warning = Warning {
                        source: (*key).to_owned(),
                        value: value.to_owned(),
                        reason,
                    };
                    self.warn(warning);
                }
            }
        }
        None
    }

    /// The config file's `key`, if present and valid.
    fn file<T>(
        &mut self,
        key: &str,
        parse: impl Fn(&toml::Value) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.file?.get(key)?;
        match parse(value) {
            Ok(v) => {
                self.hit = Some(Origin::File(PathBuf::from(&self.file_name)));
                Some(v)
            }
            Err(reason) => {
                let warning = Warning {
                    source: format!("{} key {key}", self.file_name),
                    value: value.to_string(),
                    reason,
                };
                self.warn(warning);
                None
            }
        }
    }

    /// The setting `name`: the flag when given, else the first value `lower` finds in the
    /// environment or the file; where it came from is noted under `name`.
    fn pick<T>(
        &mut self,
        name: impl Into<String>,
        flag: Option<T>,
        lower: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<T> {
        let (value, origin) = match flag {
            Some(v) => (Some(v), Origin::Flag),
            None => {
                self.hit = None;
                let value = lower(self);
                let origin = match value {
                    Some(_) => self.hit.take().unwrap_or(Origin::Default),
                    None => Origin::Default,
                };
                (value, origin)
            }
        };
        self.origins.note(name, origin);
        value
    }

    /// A string setting in the file, parsed like its environment variable.
    fn file_str<T>(&mut self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        self.file(key, |v| parse(as_str(v)?))
    }
}

impl Sources<'_> {
    /// The sampler: `OTEL_TRACES_SAMPLER` with `OTEL_TRACES_SAMPLER_ARG`, else the file's
    /// `sampler` with its `sampler_arg`, else the default. A name and its argument are one
    /// setting, taken from one source: an argument is read only beside a name in the same source
    /// (the file's `sampler_arg` does not complete `OTEL_TRACES_SAMPLER`). An invalid name or
    /// argument is warned about once, naming the one that is wrong, and that source is ignored.
    fn sampler(&mut self) -> Option<Sampler> {
        const NAME: &str = "OTEL_TRACES_SAMPLER";
        const ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
        if let Some(name) = self.get(NAME).map(str::to_owned) {
            let arg = self.get(ARG).map(str::to_owned);
            match Sampler::parse(&name, arg.as_deref()) {
                Ok(sampler) => {
                    self.hit = Some(Origin::Env(NAME.to_owned()));
                    return Some(sampler);
                }
                Err(e) => {
                    let (source, value) = if e.is_about_the_argument() {
                        (ARG, arg.unwrap_or_default())
                    } else {
                        (NAME, name)
                    };
                    self.warn(Warning {
                        source: source.to_owned(),
                        value,
                        reason: e.to_string(),
                    });
                }
            }
        }
        let table = self.file?;
        let name = table.get("sampler")?;
        // A string as its text; the argument may be a number as well as a string holding one.
        let text = |v: &toml::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        let arg = table.get("sampler_arg").map(text);
        let (key, value, reason) = match as_str(name) {
            Ok(name) => match Sampler::parse(name, arg.as_deref()) {
                Ok(sampler) => {
                    self.hit = Some(Origin::File(PathBuf::from(&self.file_name)));
                    return Some(sampler);
                }
                Err(e) if e.is_about_the_argument() => {
                    ("sampler_arg", arg.unwrap_or_default(), e.to_string())
                }
                Err(e) => ("sampler", name.to_owned(), e.to_string()),
            },
            Err(reason) => ("sampler", text(name), reason),
        };
        let warning = Warning {
            source: format!("{} key {key}", self.file_name),
            value,
            reason,
        };
        self.warn(warning);
        None
    }
}

/// The two names of one setting, as the `&str`s [`Sources::env`] takes.
fn both(names: &[String; 2]) -> [&str; 2] {
    [names[0].as_str(), names[1].as_str()]
}

impl Sources<'_> {
    /// One signal's delivery settings. Every `OTEL_EXPORTER_OTLP_*` variable has a twin for
    /// the signal (`OTEL_EXPORTER_OTLP_TRACES_*`, `…_METRICS_*`, `…_LOGS_*`), which wins over it;
    /// the flags and the file's keys apply to every signal but the endpoint, which is each
    /// signal's own (an endpoint left unset is derived from the traces one by the caller).
    fn delivery(
        &mut self,
        flags: &Flags,
        signal: Signal,
        budget: Duration,
        drain: (DrainMode, Duration),
    ) -> DeliverySettings {
        let upper = signal.as_str().to_ascii_uppercase();
        let names = |what: &str| {
            [
                format!("OTEL_EXPORTER_OTLP_{upper}_{what}"),
                format!("OTEL_EXPORTER_OTLP_{what}"),
            ]
        };

        // Each signal's settings are named by the config file's key, with `metrics_` or
        // `logs_` in front for those signals.
        let name = |key: &str| match signal {
            Signal::Traces => key.to_owned(),
            other => format!("{}_{key}", other.as_str()),
        };
        let (flag, file_key) = match signal {
            Signal::Traces => (&flags.endpoint, "endpoint"),
            Signal::Metrics => (&flags.metrics_endpoint, "metrics_endpoint"),
            Signal::Logs => (&flags.logs_endpoint, "logs_endpoint"),
        };
        let endpoint = self.pick(name("endpoint"), flag.clone(), |src| {
            let [own, base] = names("ENDPOINT");
            src.env(&[own.as_str()], parse_endpoint)
                .or_else(|| src.env(&[base.as_str()], |v| endpoint_from_base(v, signal)))
                .or_else(|| src.file_str(file_key, parse_endpoint))
        });
        let timeout_ms = self.pick(name("timeout_ms"), flags.timeout, |src| {
            src.env(&both(&names("TIMEOUT")), parse_millis)
                .or_else(|| src.file("timeout_ms", as_count))
        });
        let mut path = |what: &str, file_key: &str, flag: &Option<PathBuf>| {
            self.pick(name(file_key), flag.clone(), |src| {
                src.env(&both(&names(what)), |v| Ok(PathBuf::from(v)))
                    .or_else(|| src.file_str(file_key, |v| Ok(PathBuf::from(v))))
            })
        };
        let tls = TlsFiles {
            ca_file: path("CERTIFICATE", "ca_file", &flags.ca_file),
            client_cert: path("CLIENT_CERTIFICATE", "client_cert", &flags.client_cert),
            client_key: path("CLIENT_KEY", "client_key", &flags.client_key),
        };
        let given = (!flags.headers.is_empty()).then(|| flags.headers.clone());
        let headers = self
            .pick(name("headers"), given, |src| {
                src.env(&both(&names("HEADERS")), parse_header_list)
                    .or_else(|| src.file("headers", |v| headers(&as_pairs(v)?)))
            })
            .unwrap_or_default();
        let compression = self
            .pick(name("compression"), flags.compression, |src| {
                src.env(&both(&names("COMPRESSION")), parse_compression)
                    .or_else(|| src.file_str("compression", parse_compression))
            })
            .unwrap_or_default();
        let protocol = self
            .pick(name("protocol"), flags.protocol, |src| {
                src.env(&both(&names("PROTOCOL")), parse_protocol)
                    .or_else(|| src.file_str("protocol", parse_protocol))
            })
            .unwrap_or_default();
        DeliverySettings {
            endpoint,
            headers,
            compression,
            protocol,
            tls,
            budget,
            timeout: match timeout_ms {
                None => Some(budget),
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
            },
            drain: drain.0,
            drain_budget: drain.1,
        }
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `,` and `=` in keys and values are percent-encoded.
pub fn parse_resource_list(s: &str) -> Result<Vec<(String, String)>, String> {
    parse_pairs(s)
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected K=V")?;
    if k.is_empty() {
        return Err("the key is empty".into());
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Later pairs win over earlier ones with the same key; order of first appearance is kept.
fn merge(layers: impl IntoIterator<Item = Vec<(String, String)>>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in layers.into_iter().flatten() {
        match out.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

impl Config {
    /// Resolves every setting from its sources. `file` is the config file named by `--config`
    /// or `TRACESPOOL_CONFIG`, already read by the caller.
    pub fn resolve(
        flags: &Flags,
        vars: &HashMap<String, String>,
        file: Option<&ConfigFile>,
    ) -> (Config, Vec<Warning>) {
        let mut src = Sources::new(vars, file);
        let size = |v: &str| parse_size(v).map_err(|e| e.to_string());
        let duration = |v: &str| parse_duration(v).map_err(|e| e.to_string());
        let count = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| "expected a whole number".to_owned())
        };

        let max_bytes = src
            .pick("max_bytes", flags.max_bytes, |src| {
                src.env(&["TRACESPOOL_MAX_BYTES"], size).or_else(|| {
                    src.file("max_bytes", |v| match v.as_str() {
                        Some(s) => size(s),
                        None => as_count(v),
                    })
                })
            })
            .unwrap_or(DEFAULT_MAX_BYTES);
        let max_spans = src.pick("max_spans", flags.max_spans, |src| {
            src.env(&["TRACESPOOL_MAX_SPANS"], count)
                .or_else(|| src.file("max_spans", as_count))
        });
        let max_age = src.pick("max_age", flags.max_age, |src| {
            src.env(&["TRACESPOOL_MAX_AGE"], duration)
                .or_else(|| src.file_str("max_age", duration))
        });
        let compression = src
            .pick("spool_compression", flags.spool_compression, |src| {
                src.env(&["TRACESPOOL_SPOOL_COMPRESSION"], parse_spool_compression)
                    .or_else(|| src.file_str("spool_compression", parse_spool_compression))
            })
            .unwrap_or(SpoolOptions::default().compression);
        let spool_dir = src
            .pick("spool_dir", flags.spool_dir.clone(), |src| {
                src.env(&["TRACESPOOL_DIR"], |v| Ok(PathBuf::from(v)))
                    .or_else(|| src.file_str("spool_dir", |v| Ok(PathBuf::from(v))))
            })
            .unwrap_or_else(|| default_spool_dir(vars));

        let budget = src
            .pick("budget", flags.budget, |src| {
                src.env(&["TRACESPOOL_BUDGET"], duration)
                    .or_else(|| src.file_str("budget", duration))
            })
            .unwrap_or(DEFAULT_BUDGET);
        let drain = src
            .pick("drain", flags.drain, |src| {
                src.env(&["TRACESPOOL_DRAIN"], parse_drain_mode)
                    .or_else(|| src.file_str("drain", parse_drain_mode))
            })
            .unwrap_or_default();
        let drain_budget = src
            .pick("drain_budget", flags.drain_budget, |src| {
                src.env(&["TRACESPOOL_DRAIN_BUDGET"], duration)
                    .or_else(|| src.file_str("drain_budget", duration))
            })
            .unwrap_or(DEFAULT_DRAIN_BUDGET);
        let mut delivery =
            PerSignal::from_fn(|signal| src.delivery(flags, signal, budget, (drain, drain_budget)));
        // A gRPC endpoint names no path: over gRPC the traces endpoint serves as it is.
        for signal in [Signal::Metrics, Signal::Logs] {
            if delivery[signal].endpoint.is_none() {
                let grpc = delivery[signal].protocol == Protocol::Grpc;
                delivery.get_mut(signal).endpoint =
                    delivery.traces.endpoint.as_ref().and_then(|traces| {
                        if grpc {
                            Some(traces.clone())
                        } else {
                            endpoint_beside_traces(traces, signal)
                        }
                    });
            }
        }

        let layers = [
            (
                src.file("resource", as_pairs).unwrap_or_default(),
                Origin::File(PathBuf::from(&src.file_name)),
            ),
            (
                src.env(&["OTEL_RESOURCE_ATTRIBUTES"], parse_resource_list)
                    .unwrap_or_default(),
                Origin::Env("OTEL_RESOURCE_ATTRIBUTES".into()),
            ),
            (flags.resource.clone(), Origin::Flag),
        ];
        // Attributes merge key by key, so each key has its own source.
        for (pairs, origin) in &layers {
            for (key, _) in pairs {
                src.origins.note(format!("resource.{key}"), origin.clone());
            }
        }
        let resource = merge(layers.into_iter().map(|(pairs, _)| pairs));
        let service_name = src.pick("service_name", flags.service.clone(), |src| {
            src.env(&["OTEL_SERVICE_NAME"], |v| Ok(v.to_owned()))
                .or_else(|| src.file_str("service_name", |v| Ok(v.to_owned())))
        });
        let disabled = src
            .pick("disabled", None, |src| {
                src.env(&["OTEL_SDK_DISABLED"], |v| {
                    Ok(v.trim().eq_ignore_ascii_case("true"))
                })
            })
            .unwrap_or(false);
        let sampler = src
            .pick("sampler", None, Sources::sampler)
            .unwrap_or_default();
        // The sampler and its argument come from one source together.
        let origin = src
            .origins
            .get("sampler")
            .cloned()
            .unwrap_or(Origin::Default);
        src.origins.note("sampler_arg", origin);

        let config = Config {
            spool_dir,
            spool: SpoolOptions {
                max_bytes,
                max_spans,
                max_age,
                compression,
                sync: SyncPolicy::Always,
            },
            delivery,
            service_name,
            resource,
            disabled,
            sampler,
            origins: src.origins,
        };
        (config, src.warnings)
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
        Config::resolve(&Flags::default(), &env(pairs), None)
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_defaults() {
        let e = env(&[
            ("TRACESPOOL_MAX_BYTES", "1MiB"),
            ("TRACESPOOL_DIR", "/env/dir"),
        ]);
        let (c, w) = Config::resolve(&Flags::default(), &e, None);
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
        let (c, _) = Config::resolve(&flags, &e, None);
        assert_eq!(
            (c.spool.max_bytes, c.spool_dir),
            (5, PathBuf::from("/flag"))
        );
        let (c, _) = resolve(&[]);
        assert_eq!(c.spool.max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(
            (c.delivery.traces.endpoint, c.delivery.traces.budget),
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
        assert_eq!(c.delivery.traces.endpoint, None);
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
    fn credentials_in_the_endpoint_url_are_refused_and_not_repeated() {
        let err = parse_endpoint("https://user:token@h/v1/traces").unwrap_err();
        assert!(err.contains("--header"), "{err}");
        assert!(parse_endpoint("https://h:4318/v1/traces?x=y").is_ok());
        let (_, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://user:token@h")]);
        let said = warnings[0].to_string();
        assert!(
            said.contains("https://…@h") && !said.contains("token"),
            "{said}"
        );
    }

    #[test]
    fn the_traces_endpoint_is_used_as_is_and_the_base_gets_v1_traces() {
        let ep = |pairs| {
            resolve(pairs)
                .0
                .delivery
                .traces
                .endpoint
                .map(|u| u.to_string())
        };
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
            ep(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://h/otlp/?tenant=a")]).as_deref(),
            Some("https://h/otlp/v1/traces?tenant=a")
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
            c.delivery.traces.endpoint.unwrap().to_string(),
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
        let t = |pairs| resolve(pairs).0.delivery.traces.timeout;
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
            .traces
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
        assert!(c.delivery.traces.headers.is_empty());
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
        assert_eq!(
            c.delivery.traces.tls.ca_file,
            Some(PathBuf::from("/traces.pem"))
        );
        assert_eq!(
            c.delivery.traces.tls.client_key,
            Some(PathBuf::from("/k.pem"))
        );
        assert_eq!(c.delivery.traces.compression, Compression::Gzip);
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile::new("/etc/tracespool.toml".into(), Ok(text.to_owned()))
    }

    #[test]
    fn the_config_file_is_below_the_environment_and_above_defaults() {
        let f = file(
            r#"
            endpoint = "http://file:4318/v1/traces"
            max_bytes = "1MiB"
            max_spans = 50
            budget = "500ms"
            timeout_ms = 0
            service_name = "from-file"
            [headers]
            api-key = "k"
            [resource]
            "deployment.environment" = "prod"
            "service.name" = "res"
        "#,
        );
        let (c, w) = Config::resolve(
            &Flags::default(),
            &env(&[("TRACESPOOL_MAX_BYTES", "2MiB")]),
            Some(&f),
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.delivery.traces.endpoint.unwrap().to_string(),
            "http://file:4318/v1/traces"
        );
        assert_eq!(
            c.spool.max_bytes,
            2 << 20,
            "the environment wins over the file"
        );
        assert_eq!(c.spool.max_spans, Some(50));
        assert_eq!(
            (c.delivery.traces.budget, c.delivery.traces.timeout),
            (Duration::from_millis(500), None)
        );
        assert_eq!(c.delivery.traces.headers[0].0.as_str(), "api-key");
        assert_eq!(c.service_name.as_deref(), Some("from-file"));
        assert!(
            c.resource
                .contains(&("deployment.environment".into(), "prod".into()))
        );
    }

    #[test]
    fn the_drain_mode_and_budget_follow_flag_environment_file_and_default() {
        let (c, w) = resolve(&[]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            (c.delivery.traces.drain, c.delivery.logs.drain_budget),
            (DrainMode::Background, Duration::from_secs(60))
        );
        let f = file("drain = \"off\"\ndrain_budget = \"10s\"");
        let vars = env(&[("TRACESPOOL_DRAIN", "inline")]);
        let (c, w) = Config::resolve(&Flags::default(), &vars, Some(&f));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            (c.delivery.metrics.drain, c.delivery.traces.drain_budget),
            (DrainMode::Inline, Duration::from_secs(10))
        );
        let flags = Flags {
            drain: Some(DrainMode::Off),
            drain_budget: Some(Duration::from_secs(5)),
            ..Flags::default()
        };
        let vars = env(&[
            ("TRACESPOOL_DRAIN", "inline"),
            ("TRACESPOOL_DRAIN_BUDGET", "1m"),
        ]);
        let (c, _) = Config::resolve(&flags, &vars, Some(&f));
        assert_eq!(
            (c.delivery.traces.drain, c.delivery.traces.drain_budget),
            (DrainMode::Off, Duration::from_secs(5))
        );
    }

    #[test]
    fn a_bad_drain_mode_or_budget_warns_once_and_the_next_source_applies() {
        let (c, w) = resolve(&[
            ("TRACESPOOL_DRAIN", "later"),
            ("TRACESPOOL_DRAIN_BUDGET", "forever"),
        ]);
        assert_eq!(
            (c.delivery.traces.drain, c.delivery.traces.drain_budget),
            (DrainMode::Background, Duration::from_secs(60))
        );
        let said: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].contains("TRACESPOOL_DRAIN=\"later\""), "{said:?}");
        assert!(
            said[1].contains("TRACESPOOL_DRAIN_BUDGET=\"forever\""),
            "{said:?}"
        );

        let f = file("drain = \"inline\"\ndrain_budget = \"5s\"");
        let vars = env(&[("TRACESPOOL_DRAIN", "sometimes")]);
        let (c, w) = Config::resolve(&Flags::default(), &vars, Some(&f));
        assert_eq!(
            c.delivery.traces.drain,
            DrainMode::Inline,
            "the file applies"
        );
        assert_eq!(w.len(), 1, "{w:?}");

        let f = file("drain = 3\ndrain_budget = \"soon\"");
        let (c, w) = Config::resolve(&Flags::default(), &env(&[]), Some(&f));
        assert_eq!(
            (c.delivery.traces.drain, c.delivery.traces.drain_budget),
            (DrainMode::Background, Duration::from_secs(60))
        );
        let said: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert!(
            said.len() == 2 && said[0].contains("key drain=") && said[1].contains("drain_budget"),
            "{said:?}"
        );
    }

    #[test]
    fn the_delivery_flags_parse_back_to_the_same_settings_with_headers_in_the_environment() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: Flags,
        }
        use clap::Parser as _;
        let typed = [
            "x",
            "--spool-dir=/tmp/s p",
            "--max-bytes=1MiB",
            "--max-spans=5000",
            "--max-age=18h",
            "--spool-compression=none",
            "--endpoint=http://h:4318/v1/traces",
            "--metrics-endpoint=http://m:4318/v1/metrics",
            "--logs-endpoint=http://l:4318/v1/logs",
            "--protocol=grpc",
            "--budget=1.5s",
            "--drain=inline",
            "--drain-budget=2m",
            "--timeout=700",
            "--ca-file=/ca.pem",
            "--client-cert=/cert.pem",
            "--client-key=/key.pem",
            "--config=/etc/tracespool.toml",
            "--compression=gzip",
            "--header=authorization=Bearer a,b=c%",
        ];
        let flags = Cli::parse_from(typed).flags;
        let again =
            Cli::parse_from(std::iter::once(OsString::from("x")).chain(flags.delivery_args()))
                .flags;
        let vars: HashMap<String, String> = flags.header_vars().into_iter().collect();
        assert_eq!(vars.len(), 3);
        let (theirs, w) = Config::resolve(&again, &vars, None);
        assert!(w.is_empty(), "{w:?}");
        let (ours, _) = Config::resolve(&flags, &HashMap::new(), None);
        assert!(
            !flags
                .delivery_args()
                .iter()
                .any(|a| a.to_string_lossy().contains("Bearer")),
            "no header on the command line"
        );
        assert_eq!(theirs.spool_dir, ours.spool_dir);
        assert_eq!(theirs.spool, ours.spool);
        assert_eq!(again.config, flags.config, "the same config file");
        assert_eq!(
            (ours.spool.max_age, ours.spool.compression),
            (Some(Duration::from_secs(18 * 3600)), Encoding::Identity)
        );
        for signal in Signal::ALL {
            let (a, b) = (&theirs.delivery[signal], &ours.delivery[signal]);
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{signal:?}");
        }
        assert_eq!(
            theirs.delivery.metrics.headers[0].1.to_str().unwrap(),
            "Bearer a,b=c%"
        );
    }

    #[test]
    fn bad_file_values_and_unknown_keys_warn_once_each_and_an_unparsable_file_is_ignored() {
        let f = file("max_bytes = \"huge\"\nbogus = 1\nbudget = \"2s\"");
        let (c, w) = Config::resolve(&Flags::default(), &env(&[]), Some(&f));
        assert_eq!(c.spool.max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(c.delivery.traces.budget, Duration::from_secs(2));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].to_string().contains("bogus") && w[1].to_string().contains("max_bytes"),
            "{w:?}"
        );

        let (c, w) = Config::resolve(
            &Flags::default(),
            &env(&[]),
            Some(&file("this is = = not toml")),
        );
        assert_eq!((w.len(), c.spool.max_bytes), (1, DEFAULT_MAX_BYTES));
        assert!(w[0].to_string().contains("/etc/tracespool.toml"));
        let unreadable =
            ConfigFile::new("/nope.toml".into(), Err("No such file or directory".into()));
        let (_, w) = Config::resolve(&Flags::default(), &env(&[]), Some(&unreadable));
        assert!(
            w[0].to_string().contains("/nope.toml") && w[0].to_string().contains("cannot read")
        );
    }

    #[test]
    fn resource_attributes_merge_key_by_key_and_a_bad_list_is_dropped_whole() {
        let f = file("[resource]\nteam = \"file\"\nregion = \"eu\"");
        let flags = Flags {
            resource: vec![("region".into(), "us".into())],
            ..Flags::default()
        };
        let (c, w) = Config::resolve(
            &flags,
            &env(&[("OTEL_RESOURCE_ATTRIBUTES", "team=env%2Cops,host=h1")]),
            Some(&f),
        );
        assert!(w.is_empty());
        let mut got = c.resource.clone();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("host".into(), "h1".into()),
                ("region".into(), "us".into()),
                ("team".into(), "env,ops".into())
            ]
        );
        let (c, w) = Config::resolve(
            &Flags::default(),
            &env(&[("OTEL_RESOURCE_ATTRIBUTES", "ok=1,broken%zz=2")]),
            None,
        );
        assert!(c.resource.is_empty());
        assert!(w[0].to_string().contains("OTEL_RESOURCE_ATTRIBUTES"));
    }

    #[test]
    fn service_name_and_sdk_disabled_follow_the_otel_variables() {
        let (c, _) = resolve(&[("OTEL_SERVICE_NAME", "svc"), ("OTEL_SDK_DISABLED", "TRUE")]);
        assert_eq!(c.service_name.as_deref(), Some("svc"));
        assert!(c.disabled);
        for not_true in ["", "1", "yes", "false"] {
            assert!(
                !resolve(&[("OTEL_SDK_DISABLED", not_true)]).0.disabled,
                "{not_true:?}"
            );
        }
    }

    #[test]
    fn the_sampler_and_its_argument_come_together_from_the_environment_or_the_file() {
        use crate::sampling::{Root, Sampler};
        let (c, w) = resolve(&[]);
        assert_eq!((c.sampler, w.len()), (Sampler::default(), 0));
        let ratio = |p| Sampler {
            root: Root::TraceIdRatio(p),
            parent_based: false,
        };
        let (c, w) = resolve(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.sampler, ratio(0.25));

        for arg in ["sampler_arg = 0.1", "sampler_arg = \"0.1\""] {
            let f = file(&format!("sampler = \"traceidratio\"\n{arg}"));
            let (c, w) = Config::resolve(&Flags::default(), &env(&[]), Some(&f));
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(c.sampler, ratio(0.1), "{arg}");
        }
        let f = file("sampler = \"always_off\"\nsampler_arg = 0.1");
        let vars = env(&[("OTEL_TRACES_SAMPLER", "traceidratio")]);
        let (c, w) = Config::resolve(&Flags::default(), &vars, Some(&f));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.sampler,
            ratio(1.0),
            "the environment wins, and the file's argument is not its"
        );
        // An argument alone says nothing.
        let (c, w) = resolve(&[("OTEL_TRACES_SAMPLER_ARG", "0.5")]);
        assert_eq!((c.sampler, w.len()), (Sampler::default(), 0));
    }

    #[test]
    fn a_bad_sampler_or_argument_warns_once_naming_it_and_the_next_source_applies() {
        use crate::sampling::Sampler;
        for (vars, named) in [
            (
                [
                    ("OTEL_TRACES_SAMPLER", "sometimes"),
                    ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
                ],
                "OTEL_TRACES_SAMPLER=\"sometimes\"",
            ),
            (
                [
                    ("OTEL_TRACES_SAMPLER", "xray"),
                    ("OTEL_TRACES_SAMPLER_ARG", ""),
                ],
                "OTEL_TRACES_SAMPLER=\"xray\"",
            ),
            (
                [
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ],
                "OTEL_TRACES_SAMPLER_ARG=\"1.5\"",
            ),
        ] {
            let (c, w) = resolve(&vars);
            assert_eq!(c.sampler, Sampler::default(), "{vars:?}");
            let said: Vec<String> = w.iter().map(ToString::to_string).collect();
            assert!(said.len() == 1 && said[0].contains(named), "{said:?}");
        }
        let f = file("sampler = \"always_off\"");
        let vars = env(&[("OTEL_TRACES_SAMPLER", "never")]);
        let (c, w) = Config::resolve(&Flags::default(), &vars, Some(&f));
        assert_eq!((c.sampler.name(), w.len()), ("always_off", 1));

        for (text, key) in [
            (
                "sampler = \"parentbased_traceidratio\"\nsampler_arg = 2",
                "key sampler_arg=\"2\"",
            ),
            (
                "sampler = \"traceidratio\"\nsampler_arg = true",
                "key sampler_arg=\"true\"",
            ),
            ("sampler = 1", "key sampler=\"1\""),
            (
                "sampler = \"jaeger_remote\"",
                "key sampler=\"jaeger_remote\"",
            ),
        ] {
            let (c, w) = Config::resolve(&Flags::default(), &env(&[]), Some(&file(text)));
            assert_eq!(c.sampler, Sampler::default(), "{text}");
            let said: Vec<String> = w.iter().map(ToString::to_string).collect();
            assert!(said.len() == 1 && said[0].contains(key), "{said:?}");
        }
    }

    #[test]
    fn each_signal_has_its_endpoint_from_its_own_variable_the_base_or_beside_the_traces_one() {
        let ep = |c: &Config, signal| c.delivery[signal].endpoint.as_ref().map(|u| u.to_string());
        let (c, w) = resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert!(w.is_empty());
        assert_eq!(
            ep(&c, Signal::Metrics).as_deref(),
            Some("http://c:4318/v1/metrics")
        );
        assert_eq!(
            ep(&c, Signal::Logs).as_deref(),
            Some("http://c:4318/v1/logs")
        );

        let (c, _) = resolve(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://h/otlp/v1/traces?k=1",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "https://l/ingest"),
        ]);
        assert_eq!(
            ep(&c, Signal::Metrics).as_deref(),
            Some("https://h/otlp/v1/metrics?k=1")
        );
        assert_eq!(ep(&c, Signal::Logs).as_deref(), Some("https://l/ingest"));

        // A traces endpoint of another shape says nothing of the others.
        let (c, _) = resolve(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://h/traces")]);
        assert_eq!(ep(&c, Signal::Metrics), None);

        let flags = Flags {
            endpoint: Some("http://f/v1/traces".parse().unwrap()),
            metrics_endpoint: Some("http://m/x".parse().unwrap()),
            ..Flags::default()
        };
        let (c, _) = Config::resolve(&flags, &env(&[]), None);
        assert_eq!(ep(&c, Signal::Metrics).as_deref(), Some("http://m/x"));
        assert_eq!(ep(&c, Signal::Logs).as_deref(), Some("http://f/v1/logs"));
    }

    #[test]
    fn a_signals_own_variable_wins_for_that_signal_and_a_bad_generic_one_is_said_once() {
        let (c, w) = resolve(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "b=2"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
        ]);
        let names = |signal| -> Vec<String> {
            c.delivery[signal]
                .headers
                .iter()
                .map(|(k, _)| k.to_string())
                .collect()
        };
        assert_eq!(names(Signal::Traces), ["a"]);
        assert_eq!(names(Signal::Metrics), ["b"]);
        assert_eq!(names(Signal::Logs), ["a"]);
        assert_eq!(c.delivery.logs.compression, Compression::Gzip);
        assert_eq!(c.delivery.traces.compression, Compression::None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].to_string().contains("OTEL_EXPORTER_OTLP_TIMEOUT"));
    }

    #[test]
    fn the_protocol_is_per_signal_and_a_bad_one_warns_and_is_the_default() {
        let (c, w) = resolve(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://h:4317"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.delivery.traces.protocol, Protocol::Grpc);
        assert_eq!(c.delivery.metrics.protocol, Protocol::Grpc);
        assert_eq!(c.delivery.logs.protocol, Protocol::HttpJson);
        // Over gRPC, metrics go to the traces endpoint as it is.
        assert_eq!(
            c.delivery
                .metrics
                .endpoint
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("http://h:4317/")
        );
        let (c, w) = resolve(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")]);
        assert_eq!(c.delivery.traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].to_string().contains("carrier-pigeon"));
    }
}
