//! Settings, resolved from their sources (CONTRACT §1): flags > environment > defaults.
//!
//! Two stages, as in ripgrep: [`Flags`] is only what the user typed, checked by clap;
//! [`Config::resolve`] combines it with an environment *map* (no process state, no I/O) into
//! the values the commands use, plus one warning per invalid environment value (that source is
//! then ignored for that setting).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::spool::{SpoolOptions, SyncPolicy};
use crate::units::parse_size;

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
}

pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub spool_dir: PathBuf,
    pub spool: SpoolOptions,
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

/// Environment values; empty counts as unset (CONTRACT §1).
fn env_value<'a>(env: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

impl Config {
    pub fn resolve(flags: &Flags, env: &HashMap<String, String>) -> (Config, Vec<Warning>) {
        let mut warnings = Vec::new();
        let mut from_env = |key: &str, parse: &dyn Fn(&str) -> Result<u64, String>| {
            let value = env_value(env, key)?;
            parse(value)
                .map_err(|reason| {
                    warnings.push(Warning {
                        source: key.to_owned(),
                        value: value.to_owned(),
                        reason,
                    })
                })
                .ok()
        };
        let max_bytes = flags
            .max_bytes
            .or_else(|| {
                from_env("TRACESPOOL_MAX_BYTES", &|v| {
                    parse_size(v).map_err(|e| e.to_string())
                })
            })
            .unwrap_or(DEFAULT_MAX_BYTES);
        let max_spans = flags.max_spans.or_else(|| {
            from_env("TRACESPOOL_MAX_SPANS", &|v| {
                v.trim()
                    .parse()
                    .map_err(|_| "expected a whole number of spans".to_owned())
            })
        });
        let spool_dir = flags
            .spool_dir
            .clone()
            .or_else(|| env_value(env, "TRACESPOOL_DIR").map(PathBuf::from))
            .unwrap_or_else(|| default_spool_dir(env));
        let config = Config {
            spool_dir,
            spool: SpoolOptions {
                max_bytes,
                max_spans,
                sync: SyncPolicy::Always,
            },
        };
        (config, warnings)
    }
}

/// `$XDG_STATE_HOME/tracespool`, else `$HOME/.local/state/tracespool`, else `/var/lib/tracespool`.
pub fn default_spool_dir(env: &HashMap<String, String>) -> PathBuf {
    if let Some(state) = env_value(env, "XDG_STATE_HOME") {
        return PathBuf::from(state).join("tracespool");
    }
    if let Some(home) = env_value(env, "HOME") {
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
        let (c, _) = Config::resolve(&Flags::default(), &env(&[]));
        assert_eq!(c.spool.max_bytes, DEFAULT_MAX_BYTES);
    }

    #[test]
    fn a_bad_environment_value_warns_once_and_falls_back() {
        let (c, w) = Config::resolve(&Flags::default(), &env(&[("TRACESPOOL_MAX_BYTES", "lots")]));
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
        let (c, w) = Config::resolve(
            &Flags::default(),
            &env(&[
                ("TRACESPOOL_MAX_BYTES", ""),
                ("TRACESPOOL_DIR", ""),
                ("HOME", "/h"),
            ]),
        );
        assert!(w.is_empty());
        assert_eq!(c.spool_dir, PathBuf::from("/h/.local/state/tracespool"));
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
}
