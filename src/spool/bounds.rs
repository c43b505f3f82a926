//! The size bound, as pure arithmetic.
//!
//! `max_bytes` covers every file of the spool: the segments, the quarantine, and a fixed
//! allowance for the small bookkeeping files (ledger, cursor, locks, delivery state).

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

#[cfg(test)]
mod tests {
    use super::*;

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
