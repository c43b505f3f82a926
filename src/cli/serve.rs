//! `serve`: the long-lived agent (see `agent`), with its listeners, token and signals.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use super::{CliError, reload, say};
use crate::agent::{self, Listen};
use crate::config::{Config, Flags};
use crate::receiver::ReceiverSettings;
use crate::spool::Store;
use crate::units::parse_size;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// OTLP/HTTP address (path /v1/traces), or none
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318")]
    listen: String,
    /// OTLP/gRPC address, or none
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4317")]
    grpc_listen: String,
    /// Allow listening on addresses other than loopback
    #[arg(long)]
    allow_remote: bool,
    /// Require `Authorization: Bearer <token>` with the token in this file
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
    /// Largest request body, on the wire and decompressed
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_size)]
    max_body: u64,
}

/// Why `serve` cannot start; each names what is wrong.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("{flag} {value:?}: not an address ({reason})")]
    BadAddress {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "refusing to listen on {addr} ({flag}): not a loopback address; pass --allow-remote to allow it"
    )]
    Remote {
        flag: &'static str,
        addr: SocketAddr,
    },
    #[error("auth token file {path}: {reason}")]
    Token { path: PathBuf, reason: String },
}

fn address(
    flag: &'static str,
    value: &str,
    allow_remote: bool,
) -> Result<Option<SocketAddr>, ServeError> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bad = |reason: String| ServeError::BadAddress {
        flag,
        value: value.to_owned(),
        reason,
    };
    let addr = value
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("it resolves to nothing".into()))?;
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(ServeError::Remote { flag, addr });
    }
    Ok(Some(addr))
}

fn token(path: &PathBuf) -> Result<String, ServeError> {
    let err = |reason: String| ServeError::Token {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(err("it is empty".into()));
    }
    Ok(token.to_owned())
}

fn listen(args: &ServeArgs) -> Result<Listen, ServeError> {
    Ok(Listen {
        http: address("--listen", &args.listen, args.allow_remote)?,
        grpc: address("--grpc-listen", &args.grpc_listen, args.allow_remote)?,
        receiver: ReceiverSettings {
            body_limit: usize::try_from(args.max_body).unwrap_or(usize::MAX),
            token: args.auth_token_file.as_ref().map(token).transpose()?,
            metrics: None,
        },
    })
}

pub(super) fn serve(config: &Config, flags: &Flags, args: ServeArgs) -> Result<ExitCode, CliError> {
    let listen = match listen(&args) {
        Ok(listen) => listen,
        Err(e) => {
            say!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let store = Arc::new(Store::open(&config.spool_dir, config.spool)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (settings_tx, settings_rx) = tokio::sync::watch::channel(config.delivery.clone());
    let result = runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let flags = flags.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // The configuration again: the same flags, the environment and file now.
                if let Some(config) = reload(&flags) {
                    let _ = settings_tx.send(config.delivery);
                }
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        let ready = |http: Option<SocketAddr>, grpc: Option<SocketAddr>| {
            tracing::info!(http = ?http, grpc = ?grpc, "serving OTLP");
        };
        agent::run(store, listen, settings_rx, shutdown, ready).await
    });
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            say!("serve: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed_and_none_turns_a_listener_off() {
        assert_eq!(
            address("--listen", "127.0.0.1:4318", false).unwrap(),
            Some("127.0.0.1:4318".parse().unwrap())
        );
        assert_eq!(
            address("--listen", "[::1]:4318", false).unwrap(),
            Some("[::1]:4318".parse().unwrap())
        );
        assert_eq!(address("--grpc-listen", "none", false).unwrap(), None);
        let e = address("--listen", "0.0.0.0:4318", false).unwrap_err();
        assert!(
            e.to_string().contains("--allow-remote") && e.to_string().contains("0.0.0.0:4318"),
            "{e}"
        );
        assert!(address("--listen", "0.0.0.0:4318", true).unwrap().is_some());
        let e = address("--listen", "nonsense", false).unwrap_err();
        assert!(
            e.to_string().contains("--listen") && e.to_string().contains("nonsense"),
            "{e}"
        );
    }

    #[test]
    fn the_token_file_must_hold_a_token() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token");
        assert!(token(&path).unwrap_err().to_string().contains("token"));
        std::fs::write(&path, "  \n").unwrap();
        assert!(token(&path).unwrap_err().to_string().contains("empty"));
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(token(&path).unwrap(), "s3cret");
    }
}
