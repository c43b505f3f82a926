//! The shared backoff: "the backend is down until T", for every process on a spool.
//!
//! Pure: [`next`] computes the state after an attempt without a clock or randomness of its own;
//! the spool stores the encoded state beside the ledger, in two alternating slots rewritten in
//! place (see `spool::slots`).
//!
//! - After a retryable or misconfigured answer the delay is the server's `Retry-After` when it
//!   gave one, else 1 s doubling per consecutive failure up to 5 min, ±20 % jitter.
//! - Until `retry_at` no process connects: spans go to the spool. `flush` ignores it.
//! - Any success clears it, and so does a change of the delivery settings' fingerprint (endpoint,
//!   CA, client certificate and key).
//!
//! ```text
//! delivery state file (JSON, at most 512 bytes; headers and tokens are never in it)
//!   {"fingerprint":"…","backend":"down","failures":3,"retry_at":1795263208.5,"last_error":"…"}
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BASE_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(300);
const JITTER: f64 = 0.2;
const MAX_ERROR_LEN: usize = 300;

/// What is known of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// No attempt yet (with these settings).
    #[default]
    Unknown,
    /// It answered.
    Up,
    /// A retryable failure or a misconfigured answer: backing off.
    Down,
    /// https, but a certificate file is missing or unreadable: no attempt is made.
    TlsNotReady,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Unknown => "unknown",
            Backend::Up => "up",
            Backend::Down => "down",
            Backend::TlsNotReady => "tls_not_ready",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Of the delivery settings this state was learnt with.
    pub fingerprint: String,
    pub backend: Backend,
    /// Consecutive failures.
    pub failures: u32,
    /// Unix seconds before which nobody connects.
    pub retry_at: Option<f64>,
    pub last_error: Option<String>,
}

/// The result of an attempt to deliver.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The backend answered 2xx, or rejected the data as bad (it is up either way).
    Answered { note: Option<String> },
    /// Retryable failure or misconfiguration: back off.
    Failed {
        error: String,
        retry_after: Option<Duration>,
    },
    /// TLS files missing: nothing was attempted.
    TlsNotReady { error: String },
}

impl State {
    /// The state that applies to `fingerprint`: a state learnt with other settings is void.
    pub fn for_settings(self, fingerprint: &str) -> State {
        if self.fingerprint == fingerprint {
            self
        } else {
            State {
                fingerprint: fingerprint.to_owned(),
                ..State::default()
            }
        }
    }

    /// True while no process may connect.
    pub fn is_open(&self, now: SystemTime) -> bool {
        self.retry_at.is_some_and(|t| t > unix(now))
    }

    pub fn retry_at_time(&self) -> Option<SystemTime> {
        self.retry_at
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| UNIX_EPOCH + Duration::from_secs_f64(t))
    }

    /// The state as JSON of at most `max` bytes: `last_error` is cut further if escaping made
    /// it longer than that (the fingerprint and the numbers always fit).
    pub fn encode(&self, max: usize) -> Vec<u8> {
        let mut state = self.clone();
        loop {
            let bytes = serde_json::to_vec(&state).expect("a State always serializes");
            let Some(error) = state.last_error.as_mut().filter(|_| bytes.len() > max) else {
                return bytes;
            };
            // Halved until it fits: escaping may have made each byte of it up to six.
            let mut end = error.len() / 2;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            if end == 0 {
                state.last_error = None;
            } else {
                error.truncate(end);
            }
        }
    }

    /// A missing, unreadable or foreign state file is no state.
    pub fn decode(bytes: &[u8]) -> State {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn clip(error: String) -> String {
    if error.len() <= MAX_ERROR_LEN {
        return error;
    }
    let mut end = MAX_ERROR_LEN;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &error[..end])
}

/// The delay after the `failures`-th consecutive failure, before jitter.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    (BASE_DELAY * 2u32.pow(exp)).min(MAX_DELAY)
}

/// The state after `outcome` at `now`. `jitter` is a number in `[-1, 1]` (scaled to ±20 %).
pub fn next(state: &State, outcome: &Outcome, now: SystemTime, jitter: f64) -> State {
    match outcome {
        Outcome::Answered { note } => State {
            fingerprint: state.fingerprint.clone(),
            backend: Backend::Up,
            failures: 0,
            retry_at: None,
            last_error: note.clone().map(clip),
        },
        Outcome::Failed { error, retry_after } => {
            let failures = state.failures.saturating_add(1);
            let delay = retry_after.unwrap_or_else(|| {
                backoff(failures).mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0))
            });
            State {
                fingerprint: state.fingerprint.clone(),
                backend: Backend::Down,
                failures,
                retry_at: Some(unix(now) + delay.as_secs_f64()),
                last_error: Some(clip(error.clone())),
            }
        }
        Outcome::TlsNotReady { error } => State {
            fingerprint: state.fingerprint.clone(),
            backend: Backend::TlsNotReady,
            failures: state.failures,
            retry_at: None,
            last_error: Some(clip(error.clone())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            error: "connection refused".into(),
            retry_after: None,
        }
    }

    #[test]
    fn failures_double_the_delay_from_one_second_to_five_minutes() {
        let mut s = State::default();
        let mut delays = Vec::new();
        for _ in 0..12 {
            s = next(&s, &failed(), at(1000), 0.0);
            delays.push(s.retry_at.unwrap() - 1000.0);
        }
        assert_eq!(&delays[..5], &[1.0, 2.0, 4.0, 8.0, 16.0]);
        assert_eq!(delays[11], 300.0);
        assert_eq!((s.backend, s.failures), (Backend::Down, 12));
        assert!(s.is_open(at(1299)) && !s.is_open(at(1300)));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let s = State {
            failures: 3,
            ..State::default()
        };
        let lo = next(&s, &failed(), at(0), -1.0).retry_at.unwrap();
        let hi = next(&s, &failed(), at(0), 1.0).retry_at.unwrap();
        assert!(
            (lo - 6.4).abs() < 1e-9 && (hi - 9.6).abs() < 1e-9,
            "{lo} {hi}"
        );
        assert_eq!(next(&s, &failed(), at(0), 7.0).retry_at, Some(hi));
    }

    #[test]
    fn retry_after_from_the_server_wins() {
        let out = Outcome::Failed {
            error: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            next(&State::default(), &out, at(10), 1.0).retry_at,
            Some(40.0)
        );
    }

    #[test]
    fn an_answer_clears_the_backoff() {
        let down = next(&State::default(), &failed(), at(0), 0.0);
        let up = next(&down, &Outcome::Answered { note: None }, at(1), 0.0);
        assert_eq!(
            (up.backend, up.failures, up.retry_at, up.last_error),
            (Backend::Up, 0, None, None)
        );
    }

    #[test]
    fn new_settings_void_the_state() {
        let s = State {
            fingerprint: "a".into(),
            ..next(&State::default(), &failed(), at(0), 0.0)
        };
        assert_eq!(s.clone().for_settings("a"), s);
        let fresh = s.for_settings("b");
        assert_eq!(
            (fresh.backend, fresh.retry_at, fresh.fingerprint.as_str()),
            (Backend::Unknown, None, "b")
        );
    }

    #[test]
    fn the_encoded_state_is_small_and_garbage_decodes_to_nothing() {
        let s = next(
            &State {
                fingerprint: "0123456789abcdef".into(),
                ..State::default()
            },
            &Outcome::Failed {
                error: "x".repeat(5000),
                retry_after: None,
            },
            at(1_795_263_208),
            0.3,
        );
        assert!(s.encode(512).len() <= 512, "{}", s.encode(512).len());
        assert_eq!(State::decode(&s.encode(512)), s);
        assert_eq!(State::decode(b"\x00garbage"), State::default());
    }

    #[test]
    fn an_error_that_escaping_makes_longer_still_fits() {
        for message in ["\u{1}".repeat(400), "\"\\".repeat(400)] {
            let s = next(
                &State {
                    fingerprint: "0123456789abcdef".into(),
                    ..State::default()
                },
                &Outcome::Answered {
                    note: Some(format!("HTTP 400: {message}")),
                },
                at(1_795_263_208),
                0.0,
            );
            let last = s.last_error.as_deref().unwrap();
            let bytes = s.encode(512);
            assert!(bytes.len() <= 512, "{}", bytes.len());
            let back = State::decode(&bytes);
            assert_eq!(back.fingerprint, s.fingerprint);
            assert!(last.starts_with(back.last_error.as_deref().unwrap()));
        }
    }
}
