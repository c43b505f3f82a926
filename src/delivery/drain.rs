//! Draining the backlog: what a short-lived run does with what older runs spooled.
//!
//! - `background` (the default): the run delivers its own data first; only when the backend
//!   answered it, the spool still holds data and no process holds a flush lease, one detached
//!   drainer (`tracespool flush` in drain mode) sends the backlog, within its own budget, while
//!   the run returns.
//! - `inline`: the run sends the backlog first, oldest first, within its own budget, then its
//!   own data (the behaviour before background drains).
//! - `off`: the run sends only its own data; `flush` and `serve` send the backlog.
//!
//! A drainer that starts right after a backoff expired (the run that started it was the first
//! to find the backend up again) waits a random 0–5 s before its first request, so that a fleet
//! told to come back at the same moment does not drain its backlogs at the same instant.
//!
//! The decisions here are pure (no clock, no global random source, no I/O): a fleet simulation
//! drives them as they are.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::circuit::{Backend, State};

/// The longest random wait of a drainer before its first request.
pub const MAX_START_DELAY: Duration = Duration::from_secs(5);

/// The default budget of a detached drainer.
pub const DEFAULT_DRAIN_BUDGET: Duration = Duration::from_secs(60);

/// What a short-lived run does with the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DrainMode {
    /// Its own data first; then a detached drainer sends the backlog.
    #[default]
    Background,
    /// The backlog first, within the run's budget, then its own data.
    Inline,
    /// Only its own data.
    Off,
}

impl DrainMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainMode::Background => "background",
            DrainMode::Inline => "inline",
            DrainMode::Off => "off",
        }
    }
}

/// `background`, `inline` or `off` (any case).
pub fn parse_drain_mode(s: &str) -> Result<DrainMode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "background" => Ok(DrainMode::Background),
        "inline" => Ok(DrainMode::Inline),
        "off" => Ok(DrainMode::Off),
        _ => Err("expected background, inline or off".into()),
    }
}

/// What a short-lived run knows once it has delivered its own data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterRun {
    /// The backend answered every request of the run with 2xx (none was kept for a failure, a
    /// backoff, a missing endpoint or the budget, nor refused as bad data).
    pub answered: bool,
    /// Batches the spool still holds, every signal together.
    pub backlog_batches: u64,
    /// Some process holds a flush lease of the spool (a flush, a drainer, `serve`).
    pub lease_held: bool,
}

/// Whether the run starts a detached drainer: only in `background` mode, when the backend
/// answered, the spool still holds data and nobody is flushing it already.
pub fn should_start_drain(mode: DrainMode, after: &AfterRun) -> bool {
    mode == DrainMode::Background
        && after.answered
        && after.backlog_batches > 0
        && !after.lease_held
}

/// How long a drainer waits before its first request, given the backend's state `before` the
/// run that starts it: a random 0–5 s when that state was a backoff that has expired by `now`
/// (the run was the first to find the backend up again: every host of a fleet may be doing the
/// same at this moment), else nothing.
pub fn start_delay(before: &State, now: SystemTime, rng: &mut fastrand::Rng) -> Duration {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let expired = before.backend == Backend::Down && before.retry_at.is_none_or(|t| t <= now);
    if expired {
        MAX_START_DELAY.mul_f64(rng.f64())
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(answered: bool, backlog_batches: u64, lease_held: bool) -> AfterRun {
        AfterRun {
            answered,
            backlog_batches,
            lease_held,
        }
    }

    #[test]
    fn a_drainer_starts_only_in_background_mode_after_an_answer_with_a_backlog_and_no_flusher() {
        assert!(should_start_drain(
            DrainMode::Background,
            &after(true, 3, false)
        ));
        for (mode, a) in [
            (DrainMode::Inline, after(true, 3, false)),
            (DrainMode::Off, after(true, 3, false)),
            (DrainMode::Background, after(false, 3, false)),
            (DrainMode::Background, after(true, 0, false)),
            (DrainMode::Background, after(true, 3, true)),
        ] {
            assert!(!should_start_drain(mode, &a), "{mode:?} {a:?}");
        }
    }

    #[test]
    fn drain_modes_parse_in_any_case_and_nothing_else() {
        assert_eq!(parse_drain_mode(" Inline "), Ok(DrainMode::Inline));
        assert_eq!(parse_drain_mode("OFF"), Ok(DrainMode::Off));
        assert_eq!(
            parse_drain_mode("background").map(DrainMode::as_str),
            Ok("background")
        );
        assert!(parse_drain_mode("later").is_err());
        assert!(parse_drain_mode("").is_err());
    }

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_drainer_after_an_expired_backoff_waits_a_random_zero_to_five_seconds() {
        let down = State {
            backend: Backend::Down,
            failures: 2,
            retry_at: Some(1000.0),
            ..State::default()
        };
        let mut rng = fastrand::Rng::with_seed(7);
        let mut v: Vec<f64> = (0..4000)
            .map(|_| start_delay(&down, at(1000.5), &mut rng).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        assert!(v[0] >= 0.0 && v[v.len() - 1] <= 5.0, "{v:?}");
        let (q1, q3) = (v[1000], v[3000]);
        assert!(
            (q1 - 1.25).abs() < 0.25 && (q3 - 3.75).abs() < 0.25,
            "quartiles {q1} {q3}"
        );
    }

    #[test]
    fn a_drainer_starts_at_once_when_the_backend_was_up_unknown_or_still_backing_off() {
        let mut rng = fastrand::Rng::with_seed(7);
        let up = State {
            backend: Backend::Up,
            ..State::default()
        };
        let backing_off = State {
            backend: Backend::Down,
            retry_at: Some(2000.0),
            ..State::default()
        };
        for state in [State::default(), up, backing_off] {
            assert_eq!(
                start_delay(&state, at(1000.0), &mut rng),
                Duration::ZERO,
                "{state:?}"
            );
        }
    }
}
