//! Byte layout of segment files and record frames.
//!
//! Everything is little-endian. Checksums are CRC32C (Castagnoli, the `crc32c` crate).
//!
//! ```text
//! segment file  = segment header, then frames back to back
//!
//! segment header (32 bytes)
//!   0  magic       [u8; 8] = "TSPOOLSG"
//!   8  version     u32     = 2   (1 is read too, never appended to; a higher version is left
//!                                 alone, never read, deleted or counted)
//!  12  newest      u32     unix second of the newest append (idem); 0: none yet, or written
//!                          by a version that kept this word reserved (and ignores it)
//!  16  batches     u64     records appended to this segment (a statistic, rewritten per append)
//!  24  spans       u64     spans in those records (idem)
//!
//! frame (32-byte header + payload)
//!   0  magic       [u8; 4] = "TSF1"  (frame format 1)
//!   4  payload_len u32
//!   8  span_count  u32
//!  12  payload_crc u32     CRC32C of the payload
//!  16  written_at  u64     unix time of the append, nanoseconds
//!  24  flags       u32     bit 0: the payload is gzip-compressed; the other bits are 0 (a
//!                          frame with any of them set is not one of ours: corrupt)
//!  28  header_crc  u32     CRC32C of bytes 0..28
//!  32  payload     [u8; payload_len]   an encoded export request (as stored: see flags)
//! ```
//!
//! Version 2 differs from 1 only in the flags word, which version 1 kept reserved (0): version 1
//! segments read the same, and a version 1 tracespool leaves version 2 segments alone instead of
//! sending a compressed payload as if it were plain.
//!
//! The header checksum makes the length trustworthy on its own: a frame whose header checks out
//! but whose payload runs past the end of the file is *torn* (the append never finished); a frame
//! whose header does not check out is *corrupt*, and the reader looks for the next header that does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SEGMENT_MAGIC: [u8; 8] = *b"TSPOOLSG";
pub const SEGMENT_VERSION: u32 = 2;
/// The version before: read, never appended to.
pub const SEGMENT_VERSION_1: u32 = 1;
pub const SEGMENT_HEADER_LEN: u64 = 32;

pub const FRAME_MAGIC: [u8; 4] = *b"TSF1";
pub const FRAME_HEADER_LEN: u64 = 32;
/// The largest payload a frame can describe.
pub const MAX_PAYLOAD_LEN: u64 = u32::MAX as u64;

const FLAG_GZIP: u32 = 1;

/// How a payload is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// As given: an encoded export request.
    #[default]
    Identity,
    /// gzip-compressed.
    Gzip,
}

/// The counters kept in a segment's header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentCounts {
    pub batches: u64,
    pub spans: u64,
    /// Unix second of the newest append; 0 when unknown.
    pub newest: u32,
}

/// What a segment header says about its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentHeader {
    /// Our format; the counters may be read, and frames appended.
    Current(SegmentCounts),
    /// The format before ours: read like ours, never appended to.
    Previous(SegmentCounts),
    /// Written by a newer tracespool: leave the file alone.
    Future(u32),
    /// Not a segment header we recognise. The frames behind it are still self-checking, so the
    /// file is read as format 1 with unknown counters.
    Damaged,
}

impl SegmentHeader {
    /// The counts to take for the file: a damaged header's are unknown (nothing), and a newer
    /// format's are not ours to count (`None`).
    pub fn counts(self) -> Option<SegmentCounts> {
        match self {
            SegmentHeader::Current(counts) | SegmentHeader::Previous(counts) => Some(counts),
            SegmentHeader::Damaged => Some(SegmentCounts::default()),
            SegmentHeader::Future(_) => None,
        }
    }
}

pub fn encode_segment_header(counts: SegmentCounts) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
    b[0..8].copy_from_slice(&SEGMENT_MAGIC);
    b[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    b[COUNTS_OFFSET as usize..].copy_from_slice(&encode_counts(counts));
    b
}

/// A segment header of another format `version` (an older or a newer tracespool's), for tests.
#[cfg(test)]
pub fn encode_segment_header_of(
    version: u32,
    batches: u64,
    spans: u64,
) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut b = encode_segment_header(SegmentCounts {
        batches,
        spans,
        newest: 0,
    });
    b[8..12].copy_from_slice(&version.to_le_bytes());
    b
}

/// The last 20 bytes of the segment header (newest, batches, spans), rewritten in place after
/// each append.
pub const COUNTS_OFFSET: u64 = 12;
pub fn encode_counts(counts: SegmentCounts) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..4].copy_from_slice(&counts.newest.to_le_bytes());
    b[4..12].copy_from_slice(&counts.batches.to_le_bytes());
    b[12..20].copy_from_slice(&counts.spans.to_le_bytes());
    b
}

pub fn decode_segment_header(b: &[u8; SEGMENT_HEADER_LEN as usize]) -> SegmentHeader {
    if b[0..8] != SEGMENT_MAGIC {
        return SegmentHeader::Damaged;
    }
    let counts = SegmentCounts {
        batches: u64_at(b, 16),
        spans: u64_at(b, 24),
        newest: u32_at(b, 12),
    };
    match u32_at(b, 8) {
        SEGMENT_VERSION => SegmentHeader::Current(counts),
        SEGMENT_VERSION_1 => SegmentHeader::Previous(counts),
        v if v > SEGMENT_VERSION => SegmentHeader::Future(v),
        _ => SegmentHeader::Damaged,
    }
}

/// A frame header that passed its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub payload_len: u32,
    pub span_count: u32,
    pub payload_crc: u32,
    pub written_at_ns: u64,
    pub encoding: Encoding,
}

impl FrameHeader {
    pub fn new(
        payload: &[u8],
        span_count: u32,
        written_at: SystemTime,
        encoding: Encoding,
    ) -> FrameHeader {
        let written_at_ns = written_at
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        FrameHeader {
            payload_len: u32::try_from(payload.len()).expect("caller checked MAX_PAYLOAD_LEN"),
            span_count,
            payload_crc: crc32c::crc32c(payload),
            written_at_ns,
            encoding,
        }
    }

    /// Length of the whole frame, header included.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN + u64::from(self.payload_len)
    }

    pub fn written_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.written_at_ns)
    }

    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN as usize] {
        let mut b = [0u8; FRAME_HEADER_LEN as usize];
        b[0..4].copy_from_slice(&FRAME_MAGIC);
        b[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.span_count.to_le_bytes());
        b[12..16].copy_from_slice(&self.payload_crc.to_le_bytes());
        b[16..24].copy_from_slice(&self.written_at_ns.to_le_bytes());
        let flags = match self.encoding {
            Encoding::Identity => 0,
            Encoding::Gzip => FLAG_GZIP,
        };
        b[24..28].copy_from_slice(&flags.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` when the magic or the header checksum is wrong, or a flag is not one of ours.
    pub fn decode(b: &[u8; FRAME_HEADER_LEN as usize]) -> Option<FrameHeader> {
        if b[0..4] != FRAME_MAGIC || crc32c::crc32c(&b[0..28]) != u32_at(b, 28) {
            return None;
        }
        let encoding = match u32_at(b, 24) {
            0 => Encoding::Identity,
            FLAG_GZIP => Encoding::Gzip,
            _ => return None,
        };
        Some(FrameHeader {
            payload_len: u32_at(b, 4),
            span_count: u32_at(b, 8),
            payload_crc: u32_at(b, 12),
            written_at_ns: u64_at(b, 16),
            encoding,
        })
    }

    pub fn payload_matches(&self, payload: &[u8]) -> bool {
        payload.len() == self.payload_len as usize && crc32c::crc32c(payload) == self.payload_crc
    }
}

/// True when `b` (shorter than a frame header) could be the start of one that was cut short.
pub fn is_frame_prefix(b: &[u8]) -> bool {
    let n = b.len().min(FRAME_MAGIC.len());
    !b.is_empty() && b[..n] == FRAME_MAGIC[..n]
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnoli() {
        // RFC 3720 B.4 check value for "123456789".
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn frame_header_has_a_stable_golden_encoding() {
        let h = FrameHeader {
            payload_len: 3,
            span_count: 2,
            payload_crc: crc32c::crc32c(b"abc"),
            written_at_ns: 1_700_000_000_000_000_000,
            encoding: Encoding::Identity,
        };
        let bytes = h.encode();
        assert_eq!(&bytes[0..4], b"TSF1");
        assert_eq!(&bytes[4..8], &[3, 0, 0, 0]);
        assert_eq!(&bytes[8..12], &[2, 0, 0, 0]);
        assert_eq!(&bytes[12..16], &0x364b_3fb7u32.to_le_bytes());
        assert_eq!(&bytes[16..24], &1_700_000_000_000_000_000u64.to_le_bytes());
        assert_eq!(&bytes[24..28], &[0, 0, 0, 0]);
        assert_eq!(u32_at(&bytes, 28), crc32c::crc32c(&bytes[0..28]));
        assert_eq!(FrameHeader::decode(&bytes), Some(h));
        // gzip sets bit 0 of the flags, and only that.
        let gz = FrameHeader {
            encoding: Encoding::Gzip,
            ..h
        };
        let bytes = gz.encode();
        assert_eq!(&bytes[24..28], &[1, 0, 0, 0]);
        assert_eq!(FrameHeader::decode(&bytes), Some(gz));
    }

    #[test]
    fn a_frame_with_a_flag_that_is_not_ours_is_not_a_frame() {
        let mut b = FrameHeader::new(b"abc", 1, SystemTime::now(), Encoding::Gzip).encode();
        b[24] = 3;
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(FrameHeader::decode(&b), None);
    }

    #[test]
    fn any_flipped_header_bit_is_detected() {
        let h = FrameHeader::new(b"payload", 1, SystemTime::now(), Encoding::Gzip);
        let good = h.encode();
        for bit in 0..(good.len() * 8) {
            let mut bad = good;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(FrameHeader::decode(&bad), None, "bit {bit}");
        }
    }

    #[test]
    fn segment_header_round_trips_and_flags_future_versions() {
        let counts = SegmentCounts {
            batches: 7,
            spans: 70,
            newest: 1_795_263_208,
        };
        let mut b = encode_segment_header(counts);
        assert_eq!(&b[0..8], b"TSPOOLSG");
        assert_eq!(&b[8..12], &[2, 0, 0, 0]);
        assert_eq!(decode_segment_header(&b), SegmentHeader::Current(counts));
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(decode_segment_header(&b), SegmentHeader::Previous(counts));
        b[8..12].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(decode_segment_header(&b), SegmentHeader::Future(3));
        b[0] = b'X';
        assert_eq!(decode_segment_header(&b), SegmentHeader::Damaged);
    }

    #[test]
    fn frame_prefixes_are_recognised() {
        assert!(is_frame_prefix(b"TS"));
        assert!(is_frame_prefix(b"TSF1\x05\x00"));
        assert!(!is_frame_prefix(b"\0\0\0"));
        assert!(!is_frame_prefix(b""));
    }
}
