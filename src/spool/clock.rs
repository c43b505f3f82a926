//! The spool's clock: the time written into frames and compared with `max_age`.
//!
//! Under `cfg(test)` a thread's clock can be moved forward ([`advance`]), so that tests age
//! records without waiting. Everything that reads the time for the spool reads it here.

use std::time::SystemTime;

#[cfg(test)]
thread_local! {
    static SKEW: std::cell::Cell<std::time::Duration> = const { std::cell::Cell::new(std::time::Duration::ZERO) };
}

/// Now, for the spool.
pub(super) fn now() -> SystemTime {
    #[cfg(test)]
    return SystemTime::now() + SKEW.with(|s| s.get());
    #[cfg(not(test))]
    SystemTime::now()
}

/// Moves this thread's clock forward by `by`.
#[cfg(test)]
pub(super) fn advance(by: std::time::Duration) {
    SKEW.with(|s| s.set(s.get() + by));
}

/// Puts this thread's clock back to the real time.
#[cfg(test)]
pub(super) fn reset() {
    SKEW.with(|s| s.set(std::time::Duration::ZERO));
}
