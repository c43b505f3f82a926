//! The spool: a bounded, crash-safe, multi-process on-disk queue of OTLP batches.
//!
//! A batch is opaque bytes (an encoded export request of one signal) plus the number of items
//! in it (called spans throughout: for metrics and logs they are data points and log records).
//! Many short-lived processes append at once; one at a time delivers, oldest first. A [`Store`]
//! keeps one such spool per signal under one bound (the traces spool is the directory itself).
//!
//! # Files
//!
//! ```text
//! DIR/                       0700, owned by the user, never a symlink
//!   ledger                   160 B: totals, counters, active segment; its flock is the append lock
//!   cursor                   2 × 64 B: how far delivery has been acknowledged (two alternating slots)
//!   flush.lock               empty; its flock is the flush lease
//!   delivery                 2 × 532 B: the shared backoff state (see `circuit`), in two alternating slots
//!   NNNNNNNNNNNNNNNNNNNN.seg segments, 20-digit ids, oldest first: header + frames
//!   quarantine/NNN….seg      segments in which damage was skipped, kept for inspection
//!   deadletter/TIME-PID.pb   batches the backend rejected as bad data, kept for inspection
//! ```
//!
//! The byte layouts are in [`format`] (segments, frames), `ledger` and `cursor`. Any other file
//! in the directory is ignored. A segment whose header names a newer format version is left
//! alone: never read, never deleted, not counted.
//!
//! # Appending
//!
//! Under the append lock (held for one append only): read the ledger; if the active segment's
//! size is not the length the ledger recorded after the last complete append, a writer died
//! mid-append, so seal that segment and start a new one; start a new one too when the segment has
//! reached a sixteenth of `max_bytes`; delete the oldest segments (quarantine first) until the
//! frame fits the bounds, counting their unacknowledged batches and spans as dropped; write the
//! frame at the end of the active segment with one `pwrite`, update the header counters, and
//! `fdatasync` under [`SyncPolicy::Always`]. On any failure the segment is cut back to where it
//! was. An append never reads or rewrites records.
//!
//! # Reading
//!
//! A [`Reader`] holds the flush lease (a non-blocking `flock`: a second flusher is told at once).
//! [`Reader::next`] returns the oldest unacknowledged record; [`Reader::ack`] moves the cursor past
//! it durably. A segment read to its end is deleted (or quarantined) before the cursor moves on.
//! Recovery rules, applied as the reader meets damage:
//! - a frame whose header checks out but which runs past the end of a sealed segment is *torn*
//!   (its append never returned): skipped, counted as torn;
//! - a frame whose header does not check out is *corrupt*: counted, and reading resumes at the
//!   next position where a frame header checks out;
//! - a frame whose payload does not match its checksum is *corrupt*: counted and skipped whole;
//! - a segment in which anything was skipped goes to `quarantine/` instead of being deleted.
//!
//! Nothing damaged is ever returned, and no valid record after damage is lost.
//!
//! # Guarantees
//!
//! - An append that returned `Ok` under [`SyncPolicy::Always`] survives a crash of the process
//!   or the machine. Under [`SyncPolicy::Never`] it survives a crash of the process only.
//! - A record being appended when the process died is either whole or skipped as torn.
//! - An acknowledged record is never returned again (under `Always`, even after a power loss;
//!   with [`Reader::ack_deferred`], after a power loss up to twice [`DEFERRED_ACKS`] records
//!   acknowledged since the last completed sync may be). The duplicate window: a record delivered but not
//!   yet acknowledged when the process died is returned again by the next reader.
//! - After any append returns, the spool's files total at most `max_bytes` (the bookkeeping files
//!   counted as a fixed 2 KiB), and at most `max_spans` spans are stored. The quarantine and the
//!   dead-letter area each keep at most an eighth of `max_bytes`, and are the first to go when
//!   room is needed.
//! - Dropped batches and spans, corrupt and torn records are counted in the ledger, across
//!   processes. A record dropped while a reader was delivering it may be both delivered and
//!   counted as dropped; counts of damage may repeat if a reader dies right after finding it.

mod areas;
mod bounds;
mod clock;
mod cursor;
mod dir;
mod error;
pub mod format;
mod ledger;
#[cfg(test)]
mod model;
mod reader;
mod segments;
mod slots;
mod store;
mod sys;
mod txn;
mod writer;

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub use bounds::overhead;
pub use error::{AppendError, SpoolError};
pub use format::Encoding;
pub use reader::{DEFERRED_ACKS, Reader, Record, VerifyReport};
pub use store::{Store, Undelivered};
pub use writer::{AppendOutcome, Batch, Compress};

use cursor::Cursor;
use dir::SpoolDir;
use format::{FRAME_HEADER_LEN, FrameHeader, SEGMENT_HEADER_LEN, SegmentHeader};
use ledger::Ledger;
use segments::SegmentFile;
use txn::{Inner, Locked};

/// Size allowance of the delivery state.
pub const MAX_DELIVERY_STATE: usize = 512;
/// A slot of the delivery state file, which holds two (counted in `bounds::META_RESERVE`).
const DELIVERY_SLOT: usize = slots::SLOT_HEADER + MAX_DELIVERY_STATE;

/// When appended data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// `fdatasync` before an append returns: survives power loss.
    #[default]
    Always,
    /// Leave it to the kernel: survives a crash of the process, not of the machine.
    Never,
}

impl SyncPolicy {
    pub fn is_always(self) -> bool {
        self == SyncPolicy::Always
    }
}

/// Limits and policy of a spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Total size of the spool's files. `0` disables spooling: every append is dropped and counted.
    pub max_bytes: u64,
    /// Total spans stored, if bounded.
    pub max_spans: Option<u64>,
    /// How long after its append a record may still be delivered, if bounded: an older one is
    /// never delivered. A reader passes it (counted as dropped and expired); an append that
    /// starts a segment deletes the oldest segments whose every record has expired.
    pub max_age: Option<Duration>,
    /// [`Encoding::Gzip`]: batches are stored gzip-compressed when that saves at least a
    /// tenth; [`Encoding::Identity`]: as given.
    pub compression: Encoding,
    pub sync: SyncPolicy,
}

impl Default for SpoolOptions {
    fn default() -> SpoolOptions {
        SpoolOptions {
            max_bytes: 64 * 1024 * 1024,
            max_spans: None,
            max_age: None,
            compression: Encoding::Gzip,
            sync: SyncPolicy::Always,
        }
    }
}

/// What a spool holds and what it has lost, as of one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Batches waiting for delivery.
    pub batches: u64,
    pub spans: u64,
    /// What is still to deliver, as stored: the data segments from the cursor on; 0 when
    /// nothing waits (an emptied segment's header is not data).
    pub bytes: u64,
    /// What the data segments take on disk, delivered parts of the current ones included.
    pub disk_bytes: u64,
    /// When the oldest waiting batch was appended.
    pub oldest_write: Option<SystemTime>,
    pub dropped_batches: u64,
    pub dropped_spans: u64,
    /// Of the dropped batches, those dropped for being older than `max_age`.
    pub expired_batches: u64,
    pub corrupt_records: u64,
    pub torn_records: u64,
    pub rejected_spans: u64,
    pub quarantine_bytes: u64,
    pub deadletter_bytes: u64,
}

/// An open spool directory. Cheap to share between threads (`&Spool` is enough).
#[derive(Debug)]
pub struct Spool {
    dir: SpoolDir,
    opts: SpoolOptions,
    cursor_file: File,
    delivery_file: File,
    inner: Mutex<Inner>,
}

impl Spool {
    /// Opens the spool in `path`, creating the directory `0700` if needed, and repairs the
    /// ledger if the last process died while changing the directory, or the machine rebooted.
    ///
    /// # Errors
    ///
    /// A path that is a symlink, not a directory, or another user's ([`SpoolError::is_refused_path`]);
    /// I/O errors naming the file.
    pub fn open(path: impl AsRef<Path>, opts: SpoolOptions) -> Result<Spool, SpoolError> {
        let dir = SpoolDir::open(path.as_ref())?;
        let ledger_file = dir.open_rw(dir::LEDGER)?;
        let cursor_file = dir.open_rw(dir::CURSOR)?;
        if let Err(e) = cursor::preallocate(&cursor_file) {
            // Only a full disk gets here; acknowledging will fail the same way until it has room.
            tracing::warn!(path = %dir.join(dir::CURSOR).display(), "cannot size the cursor file: {e}");
        }
        // Kept open and sized now too, so that recording the backoff never needs space later.
        let delivery_file = dir.open_rw(dir::DELIVERY_STATE)?;
        if let Err(e) = slots::preallocate(&delivery_file, DELIVERY_SLOT) {
            tracing::info!("cannot size the delivery state file: {e}");
        }
        let spool = Spool {
            dir,
            opts,
            cursor_file,
            delivery_file,
            inner: Mutex::new(Inner {
                ledger_file,
                active: None,
                active_ours: false,
                active_newest: 0,
            }),
        };
        {
            // A dirty ledger is rebuilt by `acquire` itself; a reboot may have lost writes.
            let mut locked = Locked::acquire(&spool)?;
            if locked.ledger.boot != sys::boot_id() {
                let previous = locked.ledger.clone();
                locked.rebuild(Some(previous))?;
                locked.commit()?;
            }
        }
        Ok(spool)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn read_cursor(&self) -> Result<Cursor, SpoolError> {
        Cursor::read(&self.cursor_file).map_err(|e| SpoolError::io(self.dir.join(dir::CURSOR), e))
    }

    /// Takes the flush lease and returns a reader positioned at the oldest unacknowledged record.
    ///
    /// # Errors
    ///
    /// [`SpoolError::FlushLeaseHeld`] at once when another reader (in any process) holds it.
    pub fn reader(&self) -> Result<Reader<'_>, SpoolError> {
        Reader::new(self)
    }

    /// Batches waiting for delivery ([`Stats::batches`] alone). Cost: the ledger and the cursor.
    pub fn waiting_batches(&self) -> Result<u64, SpoolError> {
        let cursor = self.read_cursor()?;
        let locked = Locked::acquire(self)?;
        let done = locked.consumed(&cursor);
        let l = &locked.ledger;
        Ok((l.sealed_batches.saturating_add(l.active_batches)).saturating_sub(done.batches))
    }

    /// Counts what the spool holds. Cost: the ledger, the cursor, and one frame header.
    pub fn stats(&self) -> Result<Stats, SpoolError> {
        let cursor = self.read_cursor()?;
        let (ledger, active_size, done) = {
            let mut locked = Locked::acquire(self)?;
            let size = locked.active()?.unwrap_or(0);
            (locked.ledger.clone(), size, locked.consumed(&cursor))
        };
        let batches = (ledger.sealed_batches.saturating_add(ledger.active_batches))
            .saturating_sub(done.batches);
        let disk_bytes = ledger.sealed_bytes.saturating_add(active_size);
        // Read segments are retired as the cursor leaves them: what lies before the cursor is
        // in its own segment.
        let read_bytes = if (ledger.oldest_id..=ledger.active_id).contains(&cursor.segment) {
            cursor.offset
        } else {
            0
        };
        Ok(Stats {
            batches,
            spans: (ledger.sealed_spans.saturating_add(ledger.active_spans))
                .saturating_sub(done.spans),
            bytes: if batches == 0 {
                0
            } else {
                disk_bytes.saturating_sub(read_bytes)
            },
            disk_bytes,
            oldest_write: if batches > 0 {
                self.oldest_write(&ledger, &cursor)?
            } else {
                None
            },
            dropped_batches: ledger.dropped_batches,
            dropped_spans: ledger.dropped_spans,
            expired_batches: ledger.expired_batches,
            corrupt_records: ledger.corrupt_records,
            torn_records: ledger.torn_records,
            rejected_spans: ledger.rejected_spans,
            quarantine_bytes: ledger.quarantine_bytes,
            deadletter_bytes: ledger.deadletter_bytes,
        })
    }

    /// The write time of the first frame at or after the cursor.
    fn oldest_write(
        &self,
        ledger: &Ledger,
        cursor: &Cursor,
    ) -> Result<Option<SystemTime>, SpoolError> {
        let from = cursor.segment.max(ledger.oldest_id);
        for segment in segments::walk(&self.dir, from, segments::Leftovers::Keep)? {
            // An unreadable segment has no age to tell; the next one may.
            let Ok(SegmentFile {
                id, file, header, ..
            }) = segment
            else {
                continue;
            };
            if let SegmentHeader::Future(_) = header {
                continue;
            }
            let at = if id == cursor.segment {
                cursor.offset
            } else {
                SEGMENT_HEADER_LEN
            };
            let mut b = [0u8; FRAME_HEADER_LEN as usize];
            if std::os::unix::fs::FileExt::read_exact_at(&file, &mut b, at).is_ok()
                && let Some(h) = FrameHeader::decode(&b)
            {
                return Ok(Some(h.written_at()));
            }
        }
        Ok(None)
    }

    /// Keeps a batch the backend rejected as bad data in `deadletter/` (bounded, never
    /// delivered) and counts its spans as rejected.
    pub fn dead_letter(&self, payload: &[u8], spans: u32) -> Result<(), SpoolError> {
        let mut locked = Locked::acquire(self)?;
        locked.dead_letter(payload, Encoding::Identity, spans.into())?;
        locked.commit()
    }

    /// Counts spans a backend refused in a partial success.
    pub fn count_rejected(&self, spans: u64) -> Result<(), SpoolError> {
        if spans == 0 {
            return Ok(());
        }
        let mut locked = Locked::acquire(self)?;
        locked.ledger.rejected_spans += spans;
        locked.counters_dirty = true;
        locked.commit()
    }

    /// The delivery state file's contents, if any (see `circuit`).
    pub fn load_delivery_state(&self) -> Result<Option<Vec<u8>>, SpoolError> {
        let state = slots::read(&self.delivery_file, DELIVERY_SLOT)
            .map_err(|e| SpoolError::io(self.dir.join(dir::DELIVERY_STATE), e))?;
        Ok(state.map(|(_, payload)| payload))
    }

    /// Rewrites the delivery state in place (two alternating slots, see `slots`): a reader
    /// sees the old state or the new, and no write needs free space, so the backoff is recorded
    /// on a full disk too. Not synced: the backoff is advisory, and a power loss costs at most
    /// one more attempt. At most [`MAX_DELIVERY_STATE`] bytes: it lives in the bookkeeping
    /// allowance of the bound.
    ///
    /// # Errors
    ///
    /// I/O errors; contents over the allowance (`InvalidInput`).
    pub fn store_delivery_state(&self, contents: &[u8]) -> Result<(), SpoolError> {
        let path = self.dir.join(dir::DELIVERY_STATE);
        if contents.len() > MAX_DELIVERY_STATE {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes of delivery state, over its {MAX_DELIVERY_STATE}",
                    contents.len()
                ),
            );
            return Err(SpoolError::io(path, e));
        }
        let file = &self.delivery_file;
        let io = |e| SpoolError::io(&path, e);
        slots::preallocate(file, DELIVERY_SLOT).map_err(io)?;
        let seq = slots::read(file, DELIVERY_SLOT)
            .map_err(io)?
            .map_or(0, |(seq, _)| seq + 1);
        slots::write(file, DELIVERY_SLOT, seq, contents).map_err(io)
    }

    /// The bytes this spool's files take towards the bound, the bookkeeping allowance included.
    pub(crate) fn footprint(&self) -> Result<u64, SpoolError> {
        let mut locked = Locked::acquire(self)?;
        let size = locked.active()?.unwrap_or(0);
        Ok(locked
            .usage(size, None)
            .bytes
            .saturating_add(bounds::META_RESERVE))
    }

    /// Frees room as an append would: the oldest quarantined or dead-lettered file, else the
    /// oldest segment (its unacknowledged batches counted as dropped). False when there is
    /// nothing left to drop.
    pub(crate) fn drop_oldest(&self) -> Result<bool, SpoolError> {
        let mut locked = Locked::acquire(self)?;
        let cursor = self.read_cursor()?;
        let dropped = locked.drop_oldest(&cursor)?;
        locked.commit()?;
        Ok(dropped)
    }

    /// Reads every unacknowledged record and counts the damaged ones. Changes nothing.
    pub fn verify(&self) -> Result<VerifyReport, SpoolError> {
        reader::scan(self, |_| std::ops::ControlFlow::Continue(()))
    }

    /// Hands every unacknowledged valid record, oldest first, to `visit` until it breaks, and
    /// counts the damaged ones, as [`verify`](Spool::verify) does. Changes nothing and takes no
    /// lease: a flush running meanwhile is neither blocked nor waited for.
    pub fn scan(
        &self,
        visit: impl FnMut(Record) -> std::ops::ControlFlow<()>,
    ) -> Result<VerifyReport, SpoolError> {
        reader::scan(self, visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spool in `dir` that syncs nothing: for tests of everything but durability.
    pub(in crate::spool) fn spool(dir: &Path) -> Spool {
        let opts = SpoolOptions {
            sync: SyncPolicy::Never,
            ..SpoolOptions::default()
        };
        Spool::open(dir, opts).unwrap()
    }

    /// Overwrites the ledger's totals, as a process that died mid-change could leave them.
    fn falsify_ledger(s: &Spool, dirty: bool) {
        let mut locked = Locked::acquire(s).unwrap();
        locked.ledger.sealed_bytes = 1 << 40;
        locked.ledger.active_batches = 999;
        locked.ledger.dirty = dirty;
        locked.ledger.write(&locked.inner.ledger_file).unwrap();
    }

    #[test]
    fn a_ledger_left_dirty_is_rebuilt_on_open_and_a_clean_one_is_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spool(tmp.path());
        for _ in 0..3 {
            s.append(b"abc", 2).unwrap();
        }
        falsify_ledger(&s, false);
        drop(s);
        // Clean: trusted as is (opening costs the same whatever the spool holds).
        let s = spool(tmp.path());
        assert_eq!(s.stats().unwrap().batches, 999);
        falsify_ledger(&s, true);
        drop(s);
        // Dirty: rebuilt from the segment headers; the counters are kept.
        let s = spool(tmp.path());
        let stats = s.stats().unwrap();
        assert_eq!((stats.batches, stats.spans), (3, 6));
        assert!(stats.disk_bytes < 1 << 20);
    }

    #[test]
    fn a_ledger_left_dirty_is_rebuilt_by_the_next_process_to_take_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let live = spool(tmp.path());
        live.append(b"abc", 2).unwrap();
        // Another process dies mid-change; this one, open all along, appends next.
        falsify_ledger(&spool(tmp.path()), true);
        live.append(b"def", 2).unwrap();
        let stats = live.stats().unwrap();
        assert_eq!((stats.batches, stats.spans), (2, 4), "{stats:?}");
        assert!(stats.disk_bytes < 1 << 20, "{stats:?}");
    }

    #[test]
    fn a_delivery_state_over_its_allowance_is_refused_and_the_stored_one_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spool(tmp.path());
        s.store_delivery_state(b"{\"backend\":\"up\"}").unwrap();
        let err = s
            .store_delivery_state(&[b'x'; MAX_DELIVERY_STATE + 1])
            .unwrap_err();
        assert!(err.to_string().contains("over its"), "{err}");
        assert_eq!(
            s.load_delivery_state().unwrap().as_deref(),
            Some(&b"{\"backend\":\"up\"}"[..])
        );
    }

    #[test]
    fn the_batches_waiting_are_those_stats_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spool(tmp.path());
        for i in 0..5u8 {
            s.append(&[i; 300], 1).unwrap();
        }
        assert_eq!(s.waiting_batches().unwrap(), 5);
        let mut reader = s.reader().unwrap();
        for _ in 0..2 {
            let record = reader.next().unwrap().unwrap();
            reader.ack(&record).unwrap();
        }
        drop(reader);
        assert_eq!(s.waiting_batches().unwrap(), s.stats().unwrap().batches);
        assert_eq!(s.waiting_batches().unwrap(), 3);
    }

    #[test]
    fn a_ledger_from_another_boot_is_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spool(tmp.path());
        s.append(b"abc", 2).unwrap();
        {
            let mut locked = Locked::acquire(&s).unwrap();
            locked.ledger.active_batches = 999;
            locked.ledger.boot ^= 1;
            locked.ledger.write(&locked.inner.ledger_file).unwrap();
        }
        drop(s);
        assert_eq!(spool(tmp.path()).stats().unwrap().batches, 1);
    }
}
