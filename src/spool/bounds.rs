//! The bounds, as pure arithmetic.
//!
//! `max_bytes` covers every file of the spool: the segments, the quarantine, and a fixed
//! allowance for the small bookkeeping files (ledger, cursor, locks, delivery state).
//! `max_age` bounds how long ago a record may have been appended and still be delivered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::format::{FRAME_HEADER_LEN, MAX_PAYLOAD_LEN, SEGMENT_HEADER_LEN};

/// Allowance for the bookkeeping files, which never grow past it: ledger (160 B), cursor
/// (128 B), delivery state (1064 B), the lock files (empty).
pub const META_RESERVE: u64 = 2048;

#[cfg(not(test))]
const MIN_SEGMENT: u64 = 4 * 1024;
#[cfg(test)]
const MIN_SEGMENT: u64 = 256;
const MAX_SEGMENT: u64 = 64 * 1024 * 1024;

/// Bytes a spool needs besides the payload of a batch stored alone.
pub const fn overhead() -> u64 {
    META_RESERVE + SEGMENT_HEADER_LEN + FRAME_HEADER_LEN
}

/// The size at which a segment stops taking appends. Space is freed by deleting whole segments,
/// so segments are a sixteenth of the bound: the bound is reached with at most that much slack.
pub fn segment_target(max_bytes: u64) -> u64 {
    (max_bytes / 16).clamp(MIN_SEGMENT, MAX_SEGMENT)
}

/// The frame length of a payload, if a spool bounded to `max_bytes` can ever hold it.
pub fn frame_len_if_fits(payload_len: u64, max_bytes: u64) -> Option<u64> {
    if payload_len > MAX_PAYLOAD_LEN {
        return None;
    }
    let frame = FRAME_HEADER_LEN.checked_add(payload_len)?;
    (frame.checked_add(META_RESERVE + SEGMENT_HEADER_LEN)? <= max_bytes).then_some(frame)
}

/// Share of `max_bytes` that each of the quarantine and the dead-letter area may keep for
/// inspection before their oldest files go.
pub fn area_share(max_bytes: u64) -> u64 {
    max_bytes / 8
}

/// What the spool holds, as far as the bound is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub spans: u64,
}

impl Usage {
    /// True when adding a frame of `frame_len` bytes and `spans` spans stays within the bounds.
    pub fn admits(
        &self,
        frame_len: u64,
        spans: u64,
        max_bytes: u64,
        max_spans: Option<u64>,
    ) -> bool {
        let bytes_ok = self
            .bytes
            .checked_add(META_RESERVE)
            .and_then(|b| b.checked_add(frame_len))
            .is_some_and(|total| total <= max_bytes);
        let spans_ok =
            max_spans.is_none_or(|max| self.spans.checked_add(spans).is_some_and(|t| t <= max));
        bytes_ok && spans_ok
    }
}

/// True when a record appended at `written` is older than `max_age` at `now`.
pub fn expired(written: SystemTime, now: SystemTime, max_age: Duration) -> bool {
    now.duration_since(written).is_ok_and(|age| age > max_age)
}

/// True when every record of a segment whose newest append was in unix second `newest` is
/// older than `max_age` at `now` (that append may have been up to a second after `newest`
/// began). An unknown `newest` (0) is never expired: its records are judged one by one.
pub fn segment_expired(newest: u32, now: SystemTime, max_age: Duration) -> bool {
    newest != 0
        && expired(
            UNIX_EPOCH + Duration::from_secs(u64::from(newest) + 1),
            now,
            max_age,
        )
}

/// The unix second of `t`, as a segment header keeps it (0 before 1970, saturating in 2106).
pub fn unix_second(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_expires_once_older_than_max_age_and_a_segment_once_its_newest_does() {
        let t = UNIX_EPOCH + Duration::from_secs(1000);
        let age = Duration::from_secs(60);
        assert!(!expired(t, t + age, age));
        assert!(expired(t, t + age + Duration::from_millis(1), age));
        // A clock that went back: nothing is expired.
        assert!(!expired(t, t - Duration::from_secs(5), age));
        // Newest in second 1000 may have been 1000.999: expired only past 1061.
        assert!(!segment_expired(
            1000,
            t + age + Duration::from_millis(999),
            age
        ));
        assert!(segment_expired(
            1000,
            t + age + Duration::from_millis(1001),
            age
        ));
        assert!(!segment_expired(0, t + Duration::from_secs(1 << 40), age));
        assert_eq!(unix_second(t + Duration::from_millis(1500)), 1001);
        assert_eq!(unix_second(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn segments_are_a_sixteenth_of_the_bound_within_limits() {
        assert_eq!(segment_target(64 * 1024 * 1024), 4 * 1024 * 1024);
        assert_eq!(segment_target(0), MIN_SEGMENT);
        assert_eq!(segment_target(u64::MAX), MAX_SEGMENT);
    }

    #[test]
    fn a_batch_fits_only_with_its_overhead() {
        let max = 64 * 1024;
        let biggest = max - overhead();
        assert_eq!(
            frame_len_if_fits(biggest, max),
            Some(biggest + FRAME_HEADER_LEN)
        );
        assert_eq!(frame_len_if_fits(biggest + 1, max), None);
        assert_eq!(frame_len_if_fits(u64::MAX, u64::MAX), None);
        assert_eq!(frame_len_if_fits(MAX_PAYLOAD_LEN + 1, u64::MAX), None);
    }

    #[test]
    fn usage_admits_up_to_the_bound_and_never_overflows() {
        let u = Usage {
            bytes: 1000,
            spans: 9,
        };
        assert!(u.admits(24, 1, 1000 + META_RESERVE + 24, Some(10)));
        assert!(!u.admits(25, 1, 1000 + META_RESERVE + 24, Some(10)));
        assert!(!u.admits(24, 2, 1000 + META_RESERVE + 24, Some(10)));
        assert!(u.admits(24, 2, 1000 + META_RESERVE + 24, None));
        let huge = Usage {
            bytes: u64::MAX,
            spans: u64::MAX,
        };
        assert!(!huge.admits(1, 1, u64::MAX, Some(u64::MAX)));
    }
}
