//! The read cursor: how far delivery has been acknowledged. Stored in two alternating slots
//! (see `slots`), so a torn write leaves the previous position and moving the cursor never
//! needs free space.
//!
//! ```text
//! cursor file = two 64-byte slots; payload (44 bytes, little-endian):
//!   0  version u32 = 1
//!   4  segment u64    the segment being read
//!  12  offset  u64    the first byte not yet acknowledged in it
//!  20  batches u64    records of that segment acknowledged or skipped so far
//!  28  spans   u64    spans of those records
//!  36  flags   u32    bit 0: damage was skipped in this segment (quarantine it when done)
//!  40  reads   u32    the newest segment format its writer reads (0 from a version that kept
//!                     this word reserved: it read format 1 only, and stepped over format 2)
//! ```
//!
//! The worst a process crash can do is re-deliver the record acknowledged last (its slot was
//! being written); a power loss also what was acknowledged since the last sync (see
//! `Reader::ack_deferred`). With both slots unreadable, delivery restarts at the oldest segment
//! (duplicates, never loss).

use std::fs::File;
use std::io;

use super::format::{SEGMENT_VERSION, u32_at, u64_at};
use super::slots;

const SLOT_LEN: usize = 64;
const VERSION: u32 = 1;
pub const DAMAGED: u32 = 1;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The sequence number of the slot it was read from (or last written to).
    pub seq: u64,
    pub segment: u64,
    pub offset: u64,
    pub batches: u64,
    pub spans: u64,
    pub flags: u32,
    /// The newest segment format the process that wrote it reads (see the module doc).
    pub reads: u32,
}

impl Cursor {
    pub fn damaged(&self) -> bool {
        self.flags & DAMAGED != 0
    }

    fn encode(&self) -> [u8; 44] {
        let mut b = [0u8; 44];
        b[0..4].copy_from_slice(&VERSION.to_le_bytes());
        for (i, v) in [self.segment, self.offset, self.batches, self.spans]
            .iter()
            .enumerate()
        {
            b[4 + i * 8..12 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        b[36..40].copy_from_slice(&self.flags.to_le_bytes());
        b[40..44].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b
    }

    fn decode(seq: u64, b: &[u8]) -> Option<Cursor> {
        (b.len() == 44 && u32_at(b, 0) == VERSION).then(|| Cursor {
            seq,
            segment: u64_at(b, 4),
            offset: u64_at(b, 12),
            batches: u64_at(b, 20),
            spans: u64_at(b, 28),
            flags: u32_at(b, 36),
            reads: u32_at(b, 40),
        })
    }

    /// The newest valid slot, or the start position when there is none.
    pub fn read(file: &File) -> io::Result<Cursor> {
        Ok(slots::read(file, SLOT_LEN)?
            .and_then(|(seq, payload)| Cursor::decode(seq, &payload))
            .unwrap_or_default())
    }

    /// Writes `self` with the next sequence number into the slot the last write did not use.
    pub fn write(&mut self, file: &File) -> io::Result<()> {
        // The number moves only once written: after a failed write, the next one still goes
        // to the slot that does not hold the last good value.
        let seq = self.seq + 1;
        slots::write(file, SLOT_LEN, seq, &self.encode())?;
        self.seq = seq;
        Ok(())
    }
}

/// Gives the cursor file its full size, so that acknowledging never needs a new block: on a
/// full disk, delivery (which is what frees space) must still be able to move the cursor.
pub fn preallocate(file: &File) -> io::Result<()> {
    slots::preallocate(file, SLOT_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn a_torn_slot_leaves_the_previous_position() {
        let file = tempfile::tempfile().unwrap();
        assert_eq!(Cursor::read(&file).unwrap(), Cursor::default());
        let mut c = Cursor {
            segment: 1,
            offset: 100,
            ..Cursor::default()
        };
        c.write(&file).unwrap();
        c.offset = 200;
        c.write(&file).unwrap();
        assert_eq!(Cursor::read(&file).unwrap().offset, 200);
        preallocate(&file).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 128);
        assert_eq!(Cursor::read(&file).unwrap().offset, 200);
        // Tear the newest slot (seq 2 lives in slot 0).
        file.write_all_at(&[0xff; 10], 30).unwrap();
        let back = Cursor::read(&file).unwrap();
        assert_eq!(back.offset, 100);
    }
}
