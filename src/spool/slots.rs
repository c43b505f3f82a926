//! Two alternating slots in one small file, for state that is rewritten in place: a write goes
//! to the slot the last write did not use, so a write torn by a crash leaves the previous value
//! readable; and the file never grows, so a rewrite needs no free space (on a full disk, the
//! cursor must still move so that delivery can free space).
//!
//! ```text
//! file = slot A at offset 0, slot B at offset `slot_len` (little-endian)
//! slot
//!   0  magic   "TSSL"
//!   4  seq     u64     a write goes to slot seq % 2; the valid slot with the higher seq wins
//!  12  len     u32     payload length (at most slot_len - 20)
//!  16  crc     u32     CRC32C of bytes 4..16 and the payload
//!  20  payload, then zeros to slot_len
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::format::{u32_at, u64_at};

const MAGIC: [u8; 4] = *b"TSSL";
pub const SLOT_HEADER: usize = 20;
/// The largest slot any caller uses (the delivery state's, 532 bytes), rounded up.
const MAX_SLOT: usize = 1024;

fn crc(b: &[u8], len: usize) -> u32 {
    crc32c::crc32c_append(
        crc32c::crc32c(&b[4..16]),
        &b[SLOT_HEADER..SLOT_HEADER + len],
    )
}

fn decode(b: &[u8]) -> Option<(u64, Vec<u8>)> {
    if b.len() < SLOT_HEADER || b[0..4] != MAGIC {
        return None;
    }
    let len = u32_at(b, 12) as usize;
    if SLOT_HEADER + len > b.len() || crc(b, len) != u32_at(b, 16) {
        return None;
    }
    Some((u64_at(b, 4), b[SLOT_HEADER..SLOT_HEADER + len].to_vec()))
}

/// The newest valid slot's sequence number and payload, if any slot is valid.
pub fn read(file: &File, slot_len: usize) -> io::Result<Option<(u64, Vec<u8>)>> {
    let mut b = vec![0u8; 2 * slot_len];
    let mut n = 0;
    while n < b.len() {
        match file.read_at(&mut b[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let slot = |i: usize| {
        (n >= (i + 1) * slot_len)
            .then(|| decode(&b[i * slot_len..(i + 1) * slot_len]))
            .flatten()
    };
    Ok(match (slot(0), slot(1)) {
        (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
        (a, b) => a.or(b),
    })
}

/// Writes `payload` as sequence number `seq` into slot `seq % 2`.
///
/// # Panics
///
/// When the payload does not fit a slot (a caller's bug: the sizes are constants).
pub fn write(file: &File, slot_len: usize, seq: u64, payload: &[u8]) -> io::Result<()> {
    assert!(
        SLOT_HEADER + payload.len() <= slot_len && slot_len <= MAX_SLOT,
        "payload over the slot size"
    );
    let mut buf = [0u8; MAX_SLOT];
    let b = &mut buf[..slot_len];
    b[0..4].copy_from_slice(&MAGIC);
    b[4..12].copy_from_slice(&seq.to_le_bytes());
    b[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    b[SLOT_HEADER..SLOT_HEADER + payload.len()].copy_from_slice(payload);
    let crc = crc(b, payload.len());
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(b, (seq % 2) * slot_len as u64)
}

/// Gives the file both slots' room now, so that no later write needs a new block. Only the
/// missing tail is written (zeros, which no slot reads as valid): what the file holds is never
/// rewritten, so a crash here, or a writer in another process, loses nothing.
pub fn preallocate(file: &File, slot_len: usize) -> io::Result<()> {
    let len = file.metadata()?.len();
    let full = 2 * slot_len as u64;
    if len >= full {
        return Ok(());
    }
    // Written, not `set_len`: a hole would still need blocks at the first rewrite.
    file.write_all_at(&vec![0u8; (full - len) as usize], len)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_valid_slot_wins_and_a_torn_one_falls_back() {
        let f = tempfile::tempfile().unwrap();
        assert_eq!(read(&f, 64).unwrap(), None);
        preallocate(&f, 64).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 128);
        assert_eq!(read(&f, 64).unwrap(), None);
        write(&f, 64, 1, b"one").unwrap();
        write(&f, 64, 2, b"two").unwrap();
        assert_eq!(read(&f, 64).unwrap(), Some((2, b"two".to_vec())));
        // Tear slot 0 (seq 2): the previous value is back.
        f.write_all_at(&[0xff; 6], 22).unwrap();
        assert_eq!(read(&f, 64).unwrap(), Some((1, b"one".to_vec())));
    }

    #[test]
    fn preallocating_keeps_what_the_file_holds() {
        let f = tempfile::tempfile().unwrap();
        write(&f, 64, 0, b"kept").unwrap();
        assert_eq!(f.metadata().unwrap().len(), 64);
        preallocate(&f, 64).unwrap();
        assert_eq!(
            read(&f, 64).unwrap().map(|(_, p)| p),
            Some(b"kept".to_vec())
        );
    }
}
