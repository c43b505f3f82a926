//! The read cursor: how far delivery has been acknowledged.
//!
//! ```text
//! cursor file = two 64-byte slots, A at offset 0 and B at offset 64 (little-endian)
//!   0  magic "TSCU"   4  version u32 = 1
//!   8  seq u64        a write goes to slot seq % 2; the valid slot with the highest seq wins
//!  16  segment u64    the segment being read
//!  24  offset u64     the first byte not yet acknowledged in it
//!  32  batches u64    records of that segment acknowledged or skipped so far
//!  40  spans u64      spans of those records
//!  48  flags u32      bit 0: damage was skipped in this segment (quarantine it when done)
//!  52  reserved [u8; 8]
//!  60  CRC32C of bytes 0..60
//! ```
//!
//! Writing alternates between the slots, so a write torn by a crash leaves the previous position
//! intact in the other slot: the worst case is re-delivering the record acknowledged last. With
//! both slots unreadable delivery restarts at the oldest segment (duplicates, never loss).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::format::{u32_at, u64_at};

const SLOT_LEN: usize = 64;
const MAGIC: [u8; 4] = *b"TSCU";
const VERSION: u32 = 1;
pub const DAMAGED: u32 = 1;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub seq: u64,
    pub segment: u64,
    pub offset: u64,
    pub batches: u64,
    pub spans: u64,
    pub flags: u32,
}

impl Cursor {
    pub fn damaged(&self) -> bool {
        self.flags & DAMAGED != 0
    }

    fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        for (i, v) in [
            self.seq,
            self.segment,
            self.offset,
            self.batches,
            self.spans,
        ]
        .iter()
        .enumerate()
        {
            b[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        b[48..52].copy_from_slice(&self.flags.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Cursor> {
        if b[0..4] != MAGIC || u32_at(b, 4) != VERSION || crc32c::crc32c(&b[0..60]) != u32_at(b, 60)
        {
            return None;
        }
        Some(Cursor {
            seq: u64_at(b, 8),
            segment: u64_at(b, 16),
            offset: u64_at(b, 24),
            batches: u64_at(b, 32),
            spans: u64_at(b, 40),
            flags: u32_at(b, 48),
        })
    }

    /// The newest valid slot, or the start position when there is none.
    pub fn read(file: &File) -> io::Result<Cursor> {
        let mut b = [0u8; 2 * SLOT_LEN];
        let n = read_up_to(file, &mut b)?;
        let slot = |i: usize| {
            (n >= (i + 1) * SLOT_LEN)
                .then(|| Cursor::decode(&b[i * SLOT_LEN..(i + 1) * SLOT_LEN]))
                .flatten()
        };
        Ok(match (slot(0), slot(1)) {
            (Some(a), Some(b)) => {
                if a.seq >= b.seq {
                    a
                } else {
                    b
                }
            }
            (Some(c), None) | (None, Some(c)) => c,
            (None, None) => Cursor::default(),
        })
    }

    /// Writes `self` with the next sequence number into the slot the last write did not use.
    pub fn write(&mut self, file: &File, durable: bool) -> io::Result<()> {
        self.seq += 1;
        let slot = self.seq % 2;
        file.write_all_at(&self.encode(), slot * SLOT_LEN as u64)?;
        if durable {
            file.sync_data()?;
        }
        Ok(())
    }
}

/// Gives the cursor file its full size, so that acknowledging never needs a new block: on a
/// full disk, delivery (which is what frees space) must still be able to move the cursor.
pub fn preallocate(file: &File) -> io::Result<()> {
    if file.metadata()?.len() >= 2 * SLOT_LEN as u64 {
        return Ok(());
    }
    let current = Cursor::read(file)?;
    let mut b = [0u8; 2 * SLOT_LEN];
    b[..SLOT_LEN].copy_from_slice(&current.encode());
    b[SLOT_LEN..].copy_from_slice(&current.encode());
    file.write_all_at(&b, 0)?;
    file.sync_data()
}

fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_slot_leaves_the_previous_position() {
        let file = tempfile::tempfile().unwrap();
        assert_eq!(Cursor::read(&file).unwrap(), Cursor::default());
        let mut c = Cursor {
            segment: 1,
            offset: 100,
            ..Cursor::default()
        };
        c.write(&file, false).unwrap();
        c.offset = 200;
        c.write(&file, false).unwrap();
        assert_eq!(Cursor::read(&file).unwrap().offset, 200);
        preallocate(&file).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 128);
        assert_eq!(Cursor::read(&file).unwrap().offset, 200);
        // Tear the newest slot (seq 2 lives in slot 0).
        file.write_all_at(&[0xff; 10], 20).unwrap();
        let back = Cursor::read(&file).unwrap();
        assert_eq!((back.seq, back.offset), (1, 100));
    }
}
