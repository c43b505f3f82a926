//! The ledger: the spool's shared bookkeeping, and its append lock.
//!
//! ```text
//! ledger file (160 bytes, little-endian)
//!   0  magic  "TSLG"     4  version u32 = 1
//!   8  14 u64s: active_id, active_len, active_batches, active_spans, oldest_id,
//!      sealed_bytes, sealed_batches, sealed_spans, quarantine_bytes, dropped_batches,
//!      dropped_spans, corrupt_records, torn_records, rejected_spans
//! 120  dirty u64         1 while a process changes the set of files (see below)
//! 128  boot  u128        the boot id of the machine when the ledger was last trusted
//! 144  deadletter_bytes u64
//! 152  expired_batches u32   batches dropped for being older than max_age (saturates; 0 in a
//!                           ledger of a version that kept this word reserved)
//! 156  CRC32C of bytes 0..156
//! ```
//!
//! The ledger is a cache of what the directory holds (which segment is active and how long its
//! committed part is, the totals of the sealed segments) plus the counters of what was lost
//! (dropped, corrupt, torn). It is only read and written while the append lock (an exclusive
//! `flock` on this same file) is held. Before creating, deleting or moving a file, a process sets
//! `dirty` (no fsync: only a process crash needs it, and that leaves the page cache intact), and
//! its commit clears it. The cached part is rebuilt from a scan of the directory when the ledger
//! is unreadable or found `dirty` on taking the lock (its last holder died or failed
//! mid-change), and on opening the spool when the machine has rebooted since (unsynced ledger
//! writes may be lost); otherwise the ledger is trusted, so
//! opening costs the same whatever the spool holds. The counters survive as long as the
//! ledger's checksum holds.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::format::{SegmentCounts, u32_at, u64_at};

pub const LEDGER_LEN: usize = 160;
const CRC_AT: usize = LEDGER_LEN - 4;
const MAGIC: [u8; 4] = *b"TSLG";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The segment appends go to. It may not exist yet (created on the next append).
    pub active_id: u64,
    /// Length of the active segment after the last append that completed. A file of any other
    /// length was left by a writer that died mid-append: the next append seals it and rotates.
    pub active_len: u64,
    pub active_batches: u64,
    pub active_spans: u64,
    /// The oldest data segment that may exist.
    pub oldest_id: u64,
    /// Totals over the data segments other than the active one.
    pub sealed_bytes: u64,
    pub sealed_batches: u64,
    pub sealed_spans: u64,
    /// Bytes held in the quarantine directory.
    pub quarantine_bytes: u64,
    pub dropped_batches: u64,
    pub dropped_spans: u64,
    pub corrupt_records: u64,
    pub torn_records: u64,
    pub rejected_spans: u64,
    pub dirty: bool,
    pub boot: u128,
    /// Bytes held in the dead-letter directory.
    pub deadletter_bytes: u64,
    /// Of the dropped batches, those dropped for being older than `max_age`.
    pub expired_batches: u64,
}

impl Ledger {
    /// Counts a sealed segment in the totals. Its counts come from its header on disk (no
    /// checksum): they saturate rather than overflow.
    pub fn add_sealed(&mut self, bytes: u64, counts: SegmentCounts) {
        self.sealed_bytes = self.sealed_bytes.saturating_add(bytes);
        self.sealed_batches = self.sealed_batches.saturating_add(counts.batches);
        self.sealed_spans = self.sealed_spans.saturating_add(counts.spans);
    }

    /// Takes a sealed segment that is gone out of the totals.
    pub fn forget_sealed(&mut self, bytes: u64, counts: SegmentCounts) {
        self.sealed_bytes = self.sealed_bytes.saturating_sub(bytes);
        self.sealed_batches = self.sealed_batches.saturating_sub(counts.batches);
        self.sealed_spans = self.sealed_spans.saturating_sub(counts.spans);
    }

    /// No sealed segment is left.
    pub fn forget_all_sealed(&mut self) {
        self.sealed_bytes = 0;
        self.sealed_batches = 0;
        self.sealed_spans = 0;
    }

    fn fields(&self) -> [u64; 14] {
        [
            self.active_id,
            self.active_len,
            self.active_batches,
            self.active_spans,
            self.oldest_id,
            self.sealed_bytes,
            self.sealed_batches,
            self.sealed_spans,
            self.quarantine_bytes,
            self.dropped_batches,
            self.dropped_spans,
            self.corrupt_records,
            self.torn_records,
            self.rejected_spans,
        ]
    }

    pub fn encode(&self) -> [u8; LEDGER_LEN] {
        let mut b = [0u8; LEDGER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        for (i, v) in self.fields().iter().enumerate() {
            b[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        b[120..128].copy_from_slice(&u64::from(self.dirty).to_le_bytes());
        b[128..144].copy_from_slice(&self.boot.to_le_bytes());
        b[144..152].copy_from_slice(&self.deadletter_bytes.to_le_bytes());
        let expired = u32::try_from(self.expired_batches).unwrap_or(u32::MAX);
        b[152..156].copy_from_slice(&expired.to_le_bytes());
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` for an empty, short, foreign or damaged ledger.
    pub fn decode(b: &[u8]) -> Option<Ledger> {
        if b.len() < LEDGER_LEN
            || b[0..4] != MAGIC
            || u32_at(b, 4) != VERSION
            || crc32c::crc32c(&b[..CRC_AT]) != u32_at(b, CRC_AT)
        {
            return None;
        }
        let f = |i: usize| u64_at(b, 8 + i * 8);
        Some(Ledger {
            active_id: f(0),
            active_len: f(1),
            active_batches: f(2),
            active_spans: f(3),
            oldest_id: f(4),
            sealed_bytes: f(5),
            sealed_batches: f(6),
            sealed_spans: f(7),
            quarantine_bytes: f(8),
            dropped_batches: f(9),
            dropped_spans: f(10),
            corrupt_records: f(11),
            torn_records: f(12),
            rejected_spans: f(13),
            dirty: f(14) != 0,
            boot: u128::from_le_bytes(b[128..144].try_into().expect("16 bytes")),
            deadletter_bytes: u64_at(b, 144),
            expired_batches: u32_at(b, 152).into(),
        })
    }

    pub fn read(file: &File) -> io::Result<Option<Ledger>> {
        let mut b = [0u8; LEDGER_LEN];
        match file.read_exact_at(&mut b, 0) {
            Ok(()) => Ok(Ledger::decode(&b)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write(&self, file: &File) -> io::Result<()> {
        file.write_all_at(&self.encode(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_round_trips_and_rejects_damage() {
        let l = Ledger {
            active_id: 3,
            active_len: 4096,
            dropped_spans: 12,
            rejected_spans: 5,
            dirty: true,
            boot: u128::MAX - 7,
            deadletter_bytes: 77,
            expired_batches: 9,
            ..Ledger::default()
        };
        let b = l.encode();
        assert_eq!(Ledger::decode(&b), Some(l));
        let mut bad = b;
        bad[20] ^= 0x40;
        assert_eq!(Ledger::decode(&bad), None);
        assert_eq!(Ledger::decode(&b[..100]), None);
        assert_eq!(Ledger::decode(&[0u8; LEDGER_LEN]), None);
    }

    #[test]
    fn an_expired_count_past_its_word_saturates() {
        let l = Ledger {
            expired_batches: u64::from(u32::MAX) + 5,
            ..Ledger::default()
        };
        let back = Ledger::decode(&l.encode()).unwrap();
        assert_eq!(back.expired_batches, u64::from(u32::MAX));
    }
}
