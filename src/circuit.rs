//! The shared backoff: "the backend is down until T", for every process on a spool.
//!
//! Pure: [`next`] computes the state after an attempt without a clock or randomness of its own
//! (the caller passes the time and the random source: a seeded one in tests and simulations, an
//! OS-seeded one in production); the spool stores the encoded state beside the ledger, in two
//! alternating slots rewritten in place (see `spool::slots`).
//!
//! - After a retryable or misconfigured answer the delay is drawn at random, so that processes
//!   told the same thing at the same moment do not come back at the same instant:
//!   - the server's `Retry-After` (or gRPC `RetryInfo`) R: from `[R, 1.25·R + 1 s]`, never
//!     earlier than the server asked;
//!   - otherwise d = 1 s doubling per consecutive failure, capped at 5 min, then drawn from
//!     `[d/2, d]` (the cap comes first, so failures past it still spread).
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
/// A server-given delay R is stretched up to `RETRY_AFTER_SPREAD·R + RETRY_AFTER_SLACK`.
const RETRY_AFTER_SPREAD: f64 = 1.25;
const RETRY_AFTER_SLACK: Duration = Duration::from_secs(1);
const MAX_ERROR_LEN: usize = 300;
/// Beyond any real `retry_at` (about 35 000 years), and still a valid time.
const FAR_FUTURE: Duration = Duration::from_secs(1 << 40);

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
            .map(|t| UNIX_EPOCH + seconds(t).min(FAR_FUTURE))
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

/// The delay after the `failures`-th consecutive failure, before jitter: 1 s doubling, capped.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    (BASE_DELAY * 2u32.pow(exp)).min(MAX_DELAY)
}

/// A duration of `secs` seconds, saturating instead of panicking on huge or odd values.
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

/// The wait after a server asked for `retry_after` (`Retry-After`, gRPC `RetryInfo`): drawn
/// from `[R, 1.25·R + 1 s]`, never shorter than asked.
pub fn retry_after_delay(retry_after: Duration, rng: &mut fastrand::Rng) -> Duration {
    let r = retry_after.as_secs_f64();
    let hi = r * RETRY_AFTER_SPREAD + RETRY_AFTER_SLACK.as_secs_f64();
    seconds(r + (hi - r) * rng.f64()).max(retry_after)
}

/// The wait after the `failures`-th consecutive failure without a server-given delay: d is 1 s
/// doubling per failure, capped at 5 min, and the wait is drawn from `[d/2, d]` (after the cap,
/// so that a fleet long past it still spreads).
pub fn exponential_delay(failures: u32, rng: &mut fastrand::Rng) -> Duration {
    let d = backoff(failures).as_secs_f64();
    seconds(d / 2.0 + d / 2.0 * rng.f64())
}

/// The state after `outcome` at `now`; a failure's delay is drawn from `rng`.
pub fn next(state: &State, outcome: &Outcome, now: SystemTime, rng: &mut fastrand::Rng) -> State {
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
            let delay = match retry_after {
                Some(r) => retry_after_delay(*r, rng),
                None => exponential_delay(failures, rng),
            };
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

    fn rng() -> fastrand::Rng {
        fastrand::Rng::with_seed(12)
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            error: "connection refused".into(),
            retry_after: None,
        }
    }

    /// `n` draws of `draw`, in seconds, sorted.
    fn draws(n: usize, mut draw: impl FnMut(&mut fastrand::Rng) -> Duration) -> Vec<f64> {
        let mut rng = rng();
        let mut v: Vec<f64> = (0..n).map(|_| draw(&mut rng).as_secs_f64()).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The first and third quartiles of sorted `v`.
    fn quartiles(v: &[f64]) -> (f64, f64) {
        (v[v.len() / 4], v[v.len() * 3 / 4])
    }

    #[test]
    fn failures_double_the_delay_from_one_second_to_five_minutes_each_drawn_from_its_lower_half() {
        let mut s = State::default();
        let mut rng = rng();
        for failures in 1..=12u32 {
            s = next(&s, &failed(), at(1000), &mut rng);
            let d = f64::from(2u32.pow(failures - 1)).min(300.0);
            let delay = s.retry_at.unwrap() - 1000.0;
            assert!(
                d / 2.0 <= delay && delay <= d,
                "failure {failures}: {delay} not in [{}, {d}]",
                d / 2.0
            );
        }
        assert_eq!((s.backend, s.failures), (Backend::Down, 12));
        assert!(s.is_open(at(1149)) && !s.is_open(at(1300)));
    }

    #[test]
    fn the_exponential_delay_spreads_over_its_whole_range_even_past_the_cap() {
        for (failures, d) in [(1, 1.0), (4, 8.0), (9, 256.0), (10, 300.0), (40, 300.0)] {
            let v = draws(4000, |rng| exponential_delay(failures, rng));
            let (q1, q3) = quartiles(&v);
            assert!(v[0] >= d / 2.0 && v[v.len() - 1] <= d, "{failures}: {v:?}");
            // Uniform over [d/2, d]: the quartiles lie near 5/8·d and 7/8·d.
            assert!(
                (q1 - 0.625 * d).abs() < 0.05 * d && (q3 - 0.875 * d).abs() < 0.05 * d,
                "{failures}: quartiles {q1} {q3}"
            );
        }
    }

    #[test]
    fn a_retry_after_is_never_shortened_and_spreads_up_to_a_quarter_more_plus_a_second() {
        for r in [0.0, 1.0, 30.0, 3600.0] {
            let v = draws(4000, |rng| {
                retry_after_delay(Duration::from_secs_f64(r), rng)
            });
            let hi = 1.25 * r + 1.0;
            assert!(v[0] >= r && v[v.len() - 1] <= hi + 1e-9, "{r}: {v:?}");
            let (q1, q3) = quartiles(&v);
            let spread = hi - r;
            assert!(
                (q1 - (r + spread / 4.0)).abs() < 0.05 * spread
                    && (q3 - (r + spread * 0.75)).abs() < 0.05 * spread,
                "{r}: quartiles {q1} {q3}"
            );
        }
        // 30 s for everyone: the fleet comes back over more than 3 s, none before 30 s.
        let v = draws(20, |rng| retry_after_delay(Duration::from_secs(30), rng));
        assert!(v[0] >= 30.0 && v[19] - v[0] > 3.0, "{v:?}");
    }

    #[test]
    fn huge_delays_saturate_instead_of_overflowing() {
        let mut rng = rng();
        assert!(retry_after_delay(Duration::MAX, &mut rng) >= Duration::MAX / 2);
        assert!(exponential_delay(u32::MAX, &mut rng) <= MAX_DELAY);
        let out = Outcome::Failed {
            error: "HTTP 503".into(),
            retry_after: Some(Duration::MAX),
        };
        let s = next(&State::default(), &out, at(10), &mut rng);
        assert!(s.is_open(at(u64::from(u32::MAX))));
        assert!(s.retry_at_time().unwrap() > at(1 << 39));
    }

    #[test]
    fn retry_after_from_the_server_wins() {
        let out = Outcome::Failed {
            error: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        let retry_at = next(&State::default(), &out, at(10), &mut rng())
            .retry_at
            .unwrap();
        assert!((40.0..=48.5).contains(&retry_at), "{retry_at}");
    }

    #[test]
    fn an_answer_clears_the_backoff() {
        let down = next(&State::default(), &failed(), at(0), &mut rng());
        let up = next(&down, &Outcome::Answered { note: None }, at(1), &mut rng());
        assert_eq!(
            (up.backend, up.failures, up.retry_at, up.last_error),
            (Backend::Up, 0, None, None)
        );
    }

    #[test]
    fn new_settings_void_the_state() {
        let s = State {
            fingerprint: "a".into(),
            ..next(&State::default(), &failed(), at(0), &mut rng())
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
            &mut rng(),
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
                &mut rng(),
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
