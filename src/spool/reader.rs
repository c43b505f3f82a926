//! Reading for delivery, and verification.
//!
//! Recovery rules, in the order [`examine`] applies them at a position:
//! - fewer bytes left than a frame header: *torn* when they could start a frame, else *corrupt*;
//!   either way the rest of the segment is skipped;
//! - a header that fails its magic or checksum: *corrupt*; resume at the next position (within
//!   the committed length) where a header checks out, or at the end;
//! - a valid header whose frame runs past the committed length: *torn*; skip to the end;
//! - a payload that fails its checksum: *corrupt*; the header's length is trusted to skip it.
//!
//! For the active segment the reader only looks below the length committed by the last complete
//! append, read under the append lock, so it never mistakes a write in progress for damage. When
//! that length disagrees with the file (a writer died mid-append) the reader seals the segment,
//! as the next writer would.

use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};

use super::bounds;
use super::clock;
use super::cursor::{Cursor, DAMAGED};
use super::dir::{FLUSH_LEASE, file_len, segment_name};
use super::error::SpoolError;
use super::format::{
    Encoding, FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, SEGMENT_HEADER_LEN, SEGMENT_VERSION,
    SegmentCounts, SegmentHeader, is_frame_prefix,
};
use super::segments::{self, Leftovers, ReadThrough, SegmentFile};
use super::txn::{Locked, Lost};
use super::{Spool, dir};

/// One stored batch, as returned by [`Reader::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Shared with the reader's chunk: cloning it copies nothing.
    pub payload: Bytes,
    /// How the payload is stored: gzip-compressed, or as it was given.
    pub encoding: Encoding,
    pub span_count: u32,
    pub written_at: SystemTime,
    segment: u64,
    start: u64,
    end: u64,
}

impl Record {
    /// The payload as it was given to the append: decompressed if stored compressed.
    ///
    /// # Errors
    ///
    /// A compressed payload that does not decompress (`InvalidData`). Its checksum held, so
    /// only a bug could write one.
    pub fn plain(&self) -> std::io::Result<Bytes> {
        match self.encoding {
            Encoding::Identity => Ok(self.payload.clone()),
            Encoding::Gzip => crate::gzip::decompress_stored(&self.payload).map(Bytes::from),
        }
    }

    fn new(segment: u64, start: u64, header: &FrameHeader, payload: Bytes) -> Record {
        Record {
            payload,
            encoding: header.encoding,
            span_count: header.span_count,
            written_at: header.written_at(),
            segment,
            start,
            end: start + header.frame_len(),
        }
    }
}

/// The result of [`Spool::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Valid unacknowledged records.
    pub records: u64,
    pub spans: u64,
    /// Damaged regions that are not torn tails.
    pub corrupt_records: u64,
    /// Incomplete frames at the end of a segment: appends that never returned.
    pub torn_records: u64,
    /// Segments of a newer format, left alone.
    pub unsupported_segments: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    Corrupt,
    Torn,
}

enum Found {
    Record(FrameHeader, Bytes),
    Damage(Damage, u64),
    End,
}

/// Reads a segment in chunks, so that a run of small records costs one `pread`, not two each,
/// and hands out payloads as slices of the chunk (no copy). Bytes below the committed limit never
/// change (segments are append-only), so what a chunk holds stays true; it is dropped when the
/// reader moves to another file. Memory: one chunk, plus the chunks that payloads still in use
/// hold on to, plus the largest record (read into its own buffer).
#[derive(Debug, Default)]
struct ReadAhead {
    buf: Bytes,
    /// File offset of `buf[0]`.
    start: u64,
}

impl ReadAhead {
    const CHUNK: usize = 64 * 1024;

    fn reset(&mut self) {
        self.buf = Bytes::new();
    }

    /// Where `pos..pos + len` starts in the chunk, if it holds all of it.
    fn holds(&self, pos: u64, len: usize) -> Option<usize> {
        let at = usize::try_from(pos.checked_sub(self.start)?).ok()?;
        (at.checked_add(len)? <= self.buf.len()).then_some(at)
    }

    /// Reads a new chunk at `pos`, of at least `len` (< [`CHUNK`](Self::CHUNK)) bytes; the
    /// caller checked that `pos + len <= limit`.
    fn fill(&mut self, file: &File, pos: u64, len: usize, limit: u64) -> std::io::Result<()> {
        debug_assert!(len < Self::CHUNK);
        let want = ((limit - pos) as usize).min(Self::CHUNK);
        let mut chunk = BytesMut::zeroed(want);
        self.buf = Bytes::new();
        file.read_exact_at(&mut chunk, pos)?;
        self.buf = chunk.freeze();
        self.start = pos;
        Ok(())
    }

    /// Fills `out` (a frame header, or less) with the bytes at `pos`; the caller checked
    /// `pos + out.len() <= limit`.
    fn read(&mut self, file: &File, pos: u64, out: &mut [u8], limit: u64) -> std::io::Result<()> {
        if self.holds(pos, out.len()).is_none() {
            self.fill(file, pos, out.len(), limit)?;
        }
        let at = self.holds(pos, out.len()).expect("filled above");
        out.copy_from_slice(&self.buf[at..at + out.len()]);
        Ok(())
    }

    /// The `len` bytes at `pos`, shared with the chunk; the caller checked
    /// `pos + len <= limit`.
    fn bytes(&mut self, file: &File, pos: u64, len: usize, limit: u64) -> std::io::Result<Bytes> {
        if self.holds(pos, len).is_none() {
            if len >= Self::CHUNK {
                // A buffer of its own, starting with what the chunk holds already (the chunk
                // read for its header).
                let mut own = BytesMut::zeroed(len);
                let held = match self.holds(pos, 0) {
                    Some(at) => (self.buf.len() - at).min(len),
                    None => 0,
                };
                if held > 0 {
                    let at = self.holds(pos, held).expect("held");
                    own[..held].copy_from_slice(&self.buf[at..at + held]);
                }
                file.read_exact_at(&mut own[held..], pos + held as u64)?;
                return Ok(own.freeze());
            }
            self.fill(file, pos, len, limit)?;
        }
        let at = self.holds(pos, len).expect("filled above");
        Ok(self.buf.slice(at..at + len))
    }
}

/// Reads the frame at `pos`, looking no further than `limit`.
fn examine(ahead: &mut ReadAhead, file: &File, pos: u64, limit: u64) -> std::io::Result<Found> {
    if pos >= limit {
        return Ok(Found::End);
    }
    let left = limit - pos;
    if left < FRAME_HEADER_LEN {
        let mut b = vec![0u8; left as usize];
        ahead.read(file, pos, &mut b, limit)?;
        let kind = if is_frame_prefix(&b) {
            Damage::Torn
        } else {
            Damage::Corrupt
        };
        return Ok(Found::Damage(kind, limit));
    }
    let mut b = [0u8; FRAME_HEADER_LEN as usize];
    ahead.read(file, pos, &mut b, limit)?;
    let Some(header) = FrameHeader::decode(&b) else {
        return Ok(Found::Damage(
            Damage::Corrupt,
            resync(file, pos + 1, limit)?,
        ));
    };
    let end = pos + header.frame_len();
    if end > limit {
        return Ok(Found::Damage(Damage::Torn, limit));
    }
    let payload = ahead.bytes(
        file,
        pos + FRAME_HEADER_LEN,
        header.payload_len as usize,
        limit,
    )?;
    if header.payload_matches(&payload) {
        Ok(Found::Record(header, payload))
    } else {
        Ok(Found::Damage(Damage::Corrupt, end))
    }
}

/// The first position in `from..limit` holding a frame header that checks out, else `limit`.
fn resync(file: &File, from: u64, limit: u64) -> std::io::Result<u64> {
    const CHUNK: usize = 64 * 1024;
    let hdr = FRAME_HEADER_LEN as usize;
    let mut buf = vec![0u8; CHUNK + hdr];
    let mut base = from;
    while base + FRAME_HEADER_LEN <= limit {
        let want = ((limit - base) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..want], base)?;
        let window = &buf[..want];
        let mut i = 0;
        while i + hdr <= want {
            match window[i..want - hdr + FRAME_MAGIC.len()]
                .windows(FRAME_MAGIC.len())
                .position(|w| w == FRAME_MAGIC)
            {
                None => break,
                Some(p) => {
                    let at = i + p;
                    let h: &[u8; FRAME_HEADER_LEN as usize] =
                        window[at..at + hdr].try_into().expect("32 bytes");
                    if FrameHeader::decode(h).is_some() {
                        return Ok(base + at as u64);
                    }
                    i = at + 1;
                }
            }
        }
        // Overlap by a header so a header straddling the chunk boundary is seen whole.
        if want < buf.len() {
            break;
        }
        base += (want - hdr + 1) as u64;
    }
    Ok(limit)
}

/// The segment being read.
#[derive(Debug)]
struct Open {
    id: u64,
    file: File,
    /// How far the segment may be read: its size when sealed, else the committed length.
    limit: u64,
    sealed: bool,
}

/// Delivers records oldest first. Holds the flush lease until dropped.
#[derive(Debug)]
pub struct Reader<'a> {
    spool: &'a Spool,
    _lease: File,
    cursor: Cursor,
    open: Option<Open>,
    warned_future: bool,
    /// Cursor writes not yet synced (nor handed to a background sync).
    unsynced: u32,
    ahead: ReadAhead,
    /// A sync of the cursor under way on a thread of its own (at most one).
    syncing: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    /// The record after the one being delivered, read ahead ([`read_ahead`](Reader::read_ahead)).
    ready: Option<Record>,
    /// Records passed for being older than `max_age`, not yet counted in the ledger (they are,
    /// before the cursor moves past them durably).
    expired: Passed,
}

/// Batches and spans passed over, all in one segment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Passed {
    segment: u64,
    batches: u64,
    spans: u64,
}

/// Deferred acknowledgements are synced in the background every this many (and waited for at
/// every sync point): at most twice this many can be undone by a power loss.
pub const DEFERRED_ACKS: u32 = 64;

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        // Before the lease goes: the next flusher must not find progress that a power loss
        // could still undo.
        let _ = self.sync();
    }
}

impl<'a> Reader<'a> {
    pub(super) fn new(spool: &'a Spool) -> Result<Reader<'a>, SpoolError> {
        let lease = spool.dir.open_rw(FLUSH_LEASE)?;
        match lease.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::FlushLeaseHeld {
                    dir: spool.dir.path().to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(SpoolError::io(spool.dir.join(FLUSH_LEASE), e));
            }
        }
        Ok(Reader {
            spool,
            _lease: lease,
            cursor: spool.read_cursor()?,
            open: None,
            warned_future: false,
            unsynced: 0,
            ahead: ReadAhead::default(),
            syncing: None,
            ready: None,
            expired: Passed::default(),
        })
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.spool.dir.join(&segment_name(id))
    }

    fn save_cursor(&mut self) -> Result<(), SpoolError> {
        // Counted first: a crash in between may count them twice, never lose the count.
        self.count_expired()?;
        self.write_cursor()?;
        self.sync()
    }

    /// Counts the expired records passed so far as dropped (and expired) in the ledger, unless
    /// their segment was dropped meanwhile (a writer making room, or deleting expired
    /// segments, counted them then). Kept to count again when counting fails.
    fn count_expired(&mut self) -> Result<(), SpoolError> {
        let passed = std::mem::take(&mut self.expired);
        if passed.batches == 0 {
            return Ok(());
        }
        let counted = (|| {
            let mut locked = Locked::acquire(self.spool)?;
            if passed.segment >= locked.ledger.oldest_id {
                locked.count_dropped(passed.batches, passed.spans, Lost::Expired);
                locked.commit()?;
            }
            Ok(())
        })();
        if counted.is_err() {
            self.expired = passed;
        }
        counted
    }

    /// True when `record` is older than `max_age`.
    fn is_expired(&self, record: &Record) -> bool {
        self.spool
            .opts
            .max_age
            .is_some_and(|max_age| bounds::expired(record.written_at, clock::now(), max_age))
    }

    fn write_cursor(&mut self) -> Result<(), SpoolError> {
        self.cursor
            .write(&self.spool.cursor_file)
            .map_err(|e| SpoolError::io(self.spool.dir.join(dir::CURSOR), e))?;
        self.unsynced += 1;
        Ok(())
    }

    /// Makes every acknowledgement so far durable (under
    /// [`SyncPolicy::Always`](super::SyncPolicy::Always)). Dropping the reader does it too.
    ///
    /// # Errors
    ///
    /// I/O errors syncing the cursor.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.finish_background_sync()?;
        if self.unsynced > 0 && self.spool.opts.sync.is_always() {
            self.spool
                .cursor_file
                .sync_data()
                .map_err(|e| SpoolError::io(self.spool.dir.join(dir::CURSOR), e))?;
        }
        self.unsynced = 0;
        Ok(())
    }

    /// The oldest record not yet acknowledged, or `None` when everything stored has been.
    /// Calling it again without [`ack`](Reader::ack) returns the same record.
    ///
    /// # Errors
    ///
    /// I/O errors naming the file. Damage is not an error: it is skipped, counted and
    /// quarantined.
    // Not an `Iterator`: it is fallible, and it does not advance until `ack`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record>, SpoolError> {
        let found = self.next_in_age();
        // Records passed for their age are counted, and the cursor saved past them, now: the
        // caller may never acknowledge what comes next.
        if self.expired.batches > 0 {
            self.save_cursor()?;
        }
        found
    }

    /// The oldest unacknowledged record that is not older than `max_age`; older ones are passed
    /// (the cursor moved past them in memory, and they are counted in `expired`).
    fn next_in_age(&mut self) -> Result<Option<Record>, SpoolError> {
        if let Some(ready) = self.ready.take()
            && ready.segment == self.cursor.segment
            && ready.start == self.cursor.offset
        {
            if !self.is_expired(&ready) {
                return Ok(Some(ready));
            }
            self.pass_expired(&ready)?;
        }
        loop {
            if self.open.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let open = self.open.as_ref().expect("opened above");
            if self.cursor.offset >= open.limit {
                self.refresh()?;
                let open = self.open.as_ref().expect("still open");
                if self.cursor.offset >= open.limit {
                    if !open.sealed {
                        return Ok(None);
                    }
                    self.retire()?;
                    continue;
                }
            }
            let open = self.open.as_ref().expect("still open");
            let found = examine(&mut self.ahead, &open.file, self.cursor.offset, open.limit)
                .map_err(|e| SpoolError::io(self.seg_path(open.id), e))?;
            match found {
                Found::End => continue,
                Found::Record(header, payload) => {
                    let record = Record::new(open.id, self.cursor.offset, &header, payload);
                    if !self.is_expired(&record) {
                        return Ok(Some(record));
                    }
                    self.pass_expired(&record)?;
                }
                Found::Damage(kind, resume) => self.skip(kind, resume)?,
            }
        }
    }

    /// Whether the record that follows `record` is already in memory, whole, so that
    /// [`next`](Reader::next) will not touch the disk for it (and reading it ahead gains nothing).
    pub fn next_in_memory(&self, record: &Record) -> bool {
        if self
            .open
            .as_ref()
            .is_none_or(|open| open.id != record.segment)
        {
            return false;
        }
        let hdr = FRAME_HEADER_LEN as usize;
        let Some(at) = self.ahead.holds(record.end, hdr) else {
            return false;
        };
        let header = self.ahead.buf[at..at + hdr]
            .try_into()
            .expect("a frame header");
        FrameHeader::decode(header).is_some_and(|h| {
            usize::try_from(h.frame_len())
                .is_ok_and(|len| self.ahead.holds(record.end, len).is_some())
        })
    }

    /// Reads the record that follows `record` (the one [`next`](Reader::next) returned last)
    /// now, so that `next` finds it ready once `record` is acknowledged: a flush does it while
    /// `record` is on its way. Only a whole, valid record in the same segment and below the limit
    /// already known is read ahead; anything else (the segment's end, damage, an I/O error) is
    /// left for `next` to deal with.
    pub fn read_ahead(&mut self, record: &Record) {
        let Some(open) = self.open.as_ref() else {
            return;
        };
        if open.id != record.segment || record.end >= open.limit {
            return;
        }
        if let Ok(Found::Record(header, payload)) =
            examine(&mut self.ahead, &open.file, record.end, open.limit)
        {
            self.ready = Some(Record::new(open.id, record.end, &header, payload));
        }
    }

    /// Acknowledges `record`, the one [`next`](Reader::next) returned last: it will not be
    /// returned again, durably under [`SyncPolicy::Always`](super::SyncPolicy::Always).
    ///
    /// # Errors
    ///
    /// [`SpoolError::NotNext`] for any other record; I/O errors writing the cursor.
    pub fn ack(&mut self, record: &Record) -> Result<(), SpoolError> {
        self.advance(record)?;
        self.save_cursor()
    }

    /// Acknowledges `record` like [`ack`](Reader::ack), except that under
    /// [`SyncPolicy::Always`](super::SyncPolicy::Always) the cursor is synced in the background
    /// every [`DEFERRED_ACKS`] acknowledgements, and waited for at [`sync`](Reader::sync), when a
    /// segment is done and when the reader is dropped. A crash of the process loses nothing (the
    /// cursor is in the page cache); a power loss may return up to twice [`DEFERRED_ACKS`] of
    /// these again.
    ///
    /// # Errors
    ///
    /// As [`ack`](Reader::ack).
    pub fn ack_deferred(&mut self, record: &Record) -> Result<(), SpoolError> {
        self.advance(record)?;
        self.write_cursor()?;
        if self.unsynced >= DEFERRED_ACKS {
            self.sync_in_background()?;
        }
        Ok(())
    }

    /// Starts syncing the cursor on a thread of its own, so that delivery does not wait for
    /// the disk; waits first for the previous one, so at most one is under way.
    fn sync_in_background(&mut self) -> Result<(), SpoolError> {
        self.finish_background_sync()?;
        self.unsynced = 0;
        if !self.spool.opts.sync.is_always() {
            return Ok(());
        }
        let path = || self.spool.dir.join(dir::CURSOR);
        let file = self
            .spool
            .cursor_file
            .try_clone()
            .map_err(|e| SpoolError::io(path(), e))?;
        match std::thread::Builder::new().spawn(move || file.sync_data()) {
            Ok(thread) => self.syncing = Some(thread),
            // No thread to be had: sync here and now.
            Err(_) => self
                .spool
                .cursor_file
                .sync_data()
                .map_err(|e| SpoolError::io(path(), e))?,
        }
        Ok(())
    }

    fn finish_background_sync(&mut self) -> Result<(), SpoolError> {
        if let Some(thread) = self.syncing.take() {
            let done = thread
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the cursor sync panicked")));
            done.map_err(|e| SpoolError::io(self.spool.dir.join(dir::CURSOR), e))?;
        }
        Ok(())
    }

    /// [`SpoolError::NotNext`] unless `record` is the one at the cursor.
    fn expect_next(&self, record: &Record) -> Result<(), SpoolError> {
        if record.segment != self.cursor.segment || record.start != self.cursor.offset {
            return Err(SpoolError::NotNext);
        }
        Ok(())
    }

    /// Passes `record`, the next one, for being older than `max_age`.
    fn pass_expired(&mut self, record: &Record) -> Result<(), SpoolError> {
        if self.expired.batches > 0 && self.expired.segment != record.segment {
            self.count_expired()?;
        }
        self.advance(record)?;
        self.expired.segment = record.segment;
        self.expired.batches += 1;
        self.expired.spans += u64::from(record.span_count);
        Ok(())
    }

    /// Moves the cursor (in memory) past `record`, which must be the next one.
    fn advance(&mut self, record: &Record) -> Result<(), SpoolError> {
        self.expect_next(record)?;
        self.cursor.offset = record.end;
        self.cursor.batches += 1;
        self.cursor.spans += u64::from(record.span_count);
        Ok(())
    }

    /// Moves `record` (the one [`next`](Reader::next) returned last) to the dead-letter area,
    /// counting its spans as rejected, and acknowledges it.
    ///
    /// # Errors
    ///
    /// As [`ack`](Reader::ack); I/O errors writing the dead-letter file.
    pub fn dead_letter(&mut self, record: &Record) -> Result<(), SpoolError> {
        self.expect_next(record)?;
        // The copy first: a record is never gone from both places.
        {
            let mut locked = Locked::acquire(self.spool)?;
            locked.dead_letter(&record.payload, record.encoding, record.span_count.into())?;
            locked.commit()?;
        }
        self.ack(record)
    }

    /// Opens the oldest segment at or after the cursor's. False when there is none.
    fn open_next(&mut self) -> Result<bool, SpoolError> {
        for segment in segments::walk(&self.spool.dir, 0, Leftovers::Keep)? {
            let SegmentFile {
                id, file, header, ..
            } = segment?;
            if let SegmentHeader::Future(version) = header {
                if !self.warned_future {
                    tracing::warn!(path = %self.seg_path(id).display(), version, "segment written by a newer tracespool; not delivering it");
                    self.warned_future = true;
                }
                continue;
            }
            if id < self.cursor.segment {
                if matches!(header, SegmentHeader::Current(_))
                    && self.cursor.reads < SEGMENT_VERSION
                {
                    // Stepped over, not read, by an older tracespool that cannot read this
                    // format (a downgrade): read it now. What that version acknowledged after
                    // it may be delivered again (duplicates, never loss).
                    tracing::warn!(path = %self.seg_path(id).display(), "a segment an older tracespool left unread is delivered now; what it delivered after it may be sent again");
                    self.cursor = Cursor {
                        seq: self.cursor.seq,
                        segment: id,
                        offset: SEGMENT_HEADER_LEN,
                        ..Cursor::default()
                    };
                } else {
                    // Read to its end by a reader that died before deleting it.
                    let mut locked = Locked::acquire(self.spool)?;
                    if id < locked.ledger.active_id {
                        locked.retire(id, &file, ReadThrough::Clean)?;
                        locked.commit()?;
                        continue;
                    }
                }
            }
            if id != self.cursor.segment {
                // Moving on, past segments the ledger still counts: they were deleted behind
                // the spool's back, and the totals must stop counting them.
                let mut locked = Locked::acquire(self.spool)?;
                if locked.ledger.oldest_id < id {
                    locked.recount()?;
                    locked.commit()?;
                }
                drop(locked);
                self.cursor = Cursor {
                    seq: self.cursor.seq,
                    segment: id,
                    offset: SEGMENT_HEADER_LEN,
                    ..Cursor::default()
                };
            }
            self.cursor.offset = self.cursor.offset.max(SEGMENT_HEADER_LEN);
            if let Some(counts) = header.counts()
                && self.spool.opts.max_age.is_some_and(|max_age| {
                    bounds::segment_expired(counts.newest, clock::now(), max_age)
                })
                && self.pass_expired_segment(id, &file, counts)?
            {
                continue;
            }
            self.ahead.reset();
            self.open = Some(Open {
                id,
                file,
                limit: 0,
                sealed: false,
            });
            return Ok(true);
        }
        // Nothing left to read: totals that still count something counted files deleted
        // behind the spool's back (all of them, the active one too).
        let mut locked = Locked::acquire(self.spool)?;
        if locked.ledger.sealed_batches > 0
            || (locked.ledger.active_batches > 0 && locked.active()?.is_none())
        {
            locked.recount()?;
            locked.commit()?;
        }
        Ok(false)
    }

    /// Passes sealed segment `id`, every record of which is older than `max_age`, without
    /// reading it: what it holds unacknowledged is counted as dropped and expired, and it is
    /// deleted. False for the active segment, whose records are judged one by one.
    fn pass_expired_segment(
        &mut self,
        id: u64,
        file: &File,
        counts: SegmentCounts,
    ) -> Result<bool, SpoolError> {
        self.count_expired()?;
        {
            let mut locked = Locked::acquire(self.spool)?;
            if id >= locked.ledger.active_id {
                return Ok(false);
            }
            let read = if self.cursor.damaged() {
                ReadThrough::Damaged
            } else {
                ReadThrough::Clean
            };
            // Counted only by whoever removes it: a writer may have dropped it (and counted it)
            // since its header was read.
            if locked.retire(id, file, read)? {
                locked.count_dropped(
                    counts.batches.saturating_sub(self.cursor.batches),
                    counts.spans.saturating_sub(self.cursor.spans),
                    Lost::Expired,
                );
            }
            locked.commit()?;
        }
        self.cursor = Cursor {
            seq: self.cursor.seq,
            segment: id + 1,
            offset: SEGMENT_HEADER_LEN,
            ..Cursor::default()
        };
        self.save_cursor()?;
        Ok(true)
    }

    /// Learns under the append lock how far the open segment may be read.
    fn refresh(&mut self) -> Result<(), SpoolError> {
        let open = self.open.as_mut().expect("caller opened a segment");
        let path = self.spool.dir.join(&segment_name(open.id));
        let mut locked = Locked::acquire(self.spool)?;
        let size = file_len(&open.file, &path)?;
        if open.id == locked.ledger.active_id {
            if size != locked.ledger.active_len {
                // A writer died mid-append: seal the segment so its tail reads as torn.
                locked.rotate()?;
                locked.commit()?;
                open.sealed = true;
            }
        } else {
            open.sealed = true;
        }
        open.limit = size;
        Ok(())
    }

    /// Skips damage up to `resume`, counting it once and marking the segment for quarantine.
    fn skip(&mut self, kind: Damage, resume: u64) -> Result<(), SpoolError> {
        let id = self.open.as_ref().expect("open").id;
        tracing::warn!(
            path = %self.seg_path(id).display(),
            offset = self.cursor.offset,
            bytes = resume - self.cursor.offset,
            kind = ?kind,
            "skipping damaged spool data; the segment will be quarantined"
        );
        {
            let mut locked = Locked::acquire(self.spool)?;
            match kind {
                Damage::Corrupt => locked.ledger.corrupt_records += 1,
                Damage::Torn => locked.ledger.torn_records += 1,
            }
            locked.counters_dirty = true;
            locked.commit()?;
        }
        self.cursor.offset = resume;
        self.cursor.flags |= DAMAGED;
        self.save_cursor()
    }

    /// The open segment is sealed and read to its end: delete or quarantine it, then move on.
    fn retire(&mut self) -> Result<(), SpoolError> {
        // While the segment still counts: its expired records are counted against it.
        self.count_expired()?;
        let open = self.open.take().expect("open");
        {
            let mut locked = Locked::acquire(self.spool)?;
            let read = if self.cursor.damaged() {
                ReadThrough::Damaged
            } else {
                ReadThrough::Clean
            };
            locked.retire(open.id, &open.file, read)?;
            locked.commit()?;
        }
        self.cursor = Cursor {
            seq: self.cursor.seq,
            segment: open.id + 1,
            offset: SEGMENT_HEADER_LEN,
            ..Cursor::default()
        };
        self.save_cursor()
    }
}

/// Reads every unacknowledged record, oldest first, without the flush lease: hands each valid
/// one to `visit` until it breaks, and counts the damaged ones. Changes nothing. The cursor is
/// read once at the start, so a flush running meanwhile is not blocked, and what it acknowledges
/// afterwards is still visited (a segment it deletes before this opens it is not).
pub(super) fn scan(
    spool: &Spool,
    mut visit: impl FnMut(Record) -> ControlFlow<()>,
) -> Result<VerifyReport, SpoolError> {
    let (active_id, active_len) = {
        let locked = Locked::acquire(spool)?;
        (locked.ledger.active_id, locked.ledger.active_len)
    };
    let cursor = spool.read_cursor()?;
    let mut report = VerifyReport::default();
    for segment in segments::walk(&spool.dir, 0, Leftovers::Keep)? {
        let SegmentFile {
            id,
            path,
            file,
            header,
        } = segment?;
        if let SegmentHeader::Future(_) = header {
            report.unsupported_segments.push(path);
            continue;
        }
        if id < cursor.segment {
            continue;
        }
        let size = file_len(&file, &path)?;
        // In the active segment, bytes past the committed length belong to an append in
        // progress; if the file is shorter or otherwise off, a writer died: read it as sealed.
        let limit = if id == active_id && size >= active_len && active_len >= SEGMENT_HEADER_LEN {
            active_len
        } else {
            size
        };
        let mut ahead = ReadAhead::default();
        let mut pos = if id == cursor.segment {
            cursor.offset.max(SEGMENT_HEADER_LEN)
        } else {
            SEGMENT_HEADER_LEN
        };
        loop {
            match examine(&mut ahead, &file, pos, limit).map_err(|e| SpoolError::io(&path, e))? {
                Found::End => break,
                Found::Record(header, payload) => {
                    report.records += 1;
                    report.spans += u64::from(header.span_count);
                    let record = Record::new(id, pos, &header, payload);
                    pos = record.end;
                    if visit(record).is_break() {
                        return Ok(report);
                    }
                }
                Found::Damage(Damage::Corrupt, resume) => {
                    report.corrupt_records += 1;
                    pos = resume;
                }
                Found::Damage(Damage::Torn, resume) => {
                    report.torn_records += 1;
                    pos = resume;
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file holding `bytes` after a segment header, and the position of the first frame.
    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file()
            .write_all_at(&[0u8; SEGMENT_HEADER_LEN as usize], 0)
            .unwrap();
        f.as_file().write_all_at(bytes, SEGMENT_HEADER_LEN).unwrap();
        (f, SEGMENT_HEADER_LEN)
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader::new(payload, 3, SystemTime::now(), Encoding::Identity);
        [&header.encode()[..], payload].concat()
    }

    fn found(bytes: &[u8], limit_cut: u64) -> (Found, u64) {
        let (f, pos) = file_with(bytes);
        let limit = pos + bytes.len() as u64 - limit_cut;
        let mut ahead = ReadAhead::default();
        (examine(&mut ahead, f.as_file(), pos, limit).unwrap(), pos)
    }

    #[test]
    fn a_whole_frame_is_a_record_with_its_payload() {
        let (f, _) = found(&frame(b"hello"), 0);
        let Found::Record(header, payload) = f else {
            panic!("not a record")
        };
        assert_eq!((header.span_count, &payload[..]), (3, &b"hello"[..]));
    }

    #[test]
    fn a_tail_shorter_than_a_header_is_torn_when_it_could_start_a_frame_else_corrupt() {
        let whole = frame(b"hello");
        let (f, pos) = found(&whole[..10], 0);
        assert!(matches!(f, Found::Damage(Damage::Torn, end) if end == pos + 10));
        let (f, pos) = found(b"garbage", 0);
        assert!(matches!(f, Found::Damage(Damage::Corrupt, end) if end == pos + 7));
    }

    #[test]
    fn a_header_that_fails_its_checksum_is_corrupt_and_reading_resumes_at_the_next_good_one() {
        let mut bytes = frame(b"first");
        bytes[6] ^= 0xff; // inside the header: its checksum fails
        let second = frame(b"second");
        let at = bytes.len() as u64;
        bytes.extend_from_slice(&second);
        let (f, pos) = found(&bytes, 0);
        assert!(
            matches!(f, Found::Damage(Damage::Corrupt, resume) if resume == pos + at),
            "resumes at the second frame"
        );
        // Nothing good after it: the rest of the committed length is skipped.
        let mut lone = frame(b"first");
        lone[6] ^= 0xff;
        let (f, pos) = found(&lone, 0);
        assert!(matches!(f, Found::Damage(Damage::Corrupt, end) if end == pos + lone.len() as u64));
    }

    #[test]
    fn a_good_header_whose_frame_runs_past_the_committed_length_is_torn() {
        let bytes = frame(b"a payload cut short by a crash");
        let (f, pos) = found(&bytes, 5);
        let limit = pos + bytes.len() as u64 - 5;
        assert!(matches!(f, Found::Damage(Damage::Torn, end) if end == limit));
    }

    #[test]
    fn a_payload_that_fails_its_checksum_is_corrupt_and_skipped_by_the_headers_length() {
        let mut bytes = frame(b"payload");
        let len = bytes.len() as u64;
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        bytes.extend_from_slice(&frame(b"next"));
        let (f, pos) = found(&bytes, 0);
        assert!(matches!(f, Found::Damage(Damage::Corrupt, resume) if resume == pos + len));
    }

    fn aged_spool(dir: &std::path::Path) -> Spool {
        let opts = crate::spool::SpoolOptions {
            max_bytes: 8192,
            max_age: Some(std::time::Duration::from_secs(60)),
            compression: Encoding::Identity,
            sync: crate::spool::SyncPolicy::Never,
            ..crate::spool::SpoolOptions::default()
        };
        Spool::open(dir, opts).unwrap()
    }

    #[test]
    fn an_expired_segment_a_writer_dropped_first_is_not_counted_again_by_the_reader() {
        clock::reset();
        let tmp = tempfile::tempdir().unwrap();
        let s = aged_spool(tmp.path());
        for _ in 0..6 {
            s.append(&[7u8; 100], 1).unwrap();
        }
        clock::advance(std::time::Duration::from_secs(120));
        // The reader's walk has read the oldest segment's header...
        let first = segments::walk(&s.dir, 0, Leftovers::Keep)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let counts = first.header.counts().unwrap();
        // ...when a writer, first to the lock, drops every wholly expired segment.
        {
            let mut l = Locked::acquire(&s).unwrap();
            l.drop_expired(&s.read_cursor().unwrap()).unwrap();
            l.commit().unwrap();
        }
        let by_writer = s.stats().unwrap();
        assert!(by_writer.expired_batches >= counts.batches);
        let mut r = s.reader().unwrap();
        r.pass_expired_segment(first.id, &first.file, counts)
            .unwrap();
        drop(r);
        let after = s.stats().unwrap();
        clock::reset();
        assert_eq!(
            (after.dropped_batches, after.expired_batches),
            (by_writer.dropped_batches, by_writer.expired_batches)
        );
    }

    #[test]
    fn records_of_a_segment_a_writer_dropped_meanwhile_are_not_counted_again_as_they_are_passed() {
        clock::reset();
        let tmp = tempfile::tempdir().unwrap();
        let s = aged_spool(tmp.path());
        for _ in 0..6 {
            s.append(&[7u8; 100], 1).unwrap();
        }
        let mut r = s.reader().unwrap();
        let first = r.next().unwrap().unwrap();
        // While the first is on its way, everything expires and a writer drops what it can.
        clock::advance(std::time::Duration::from_secs(120));
        {
            let mut l = Locked::acquire(&s).unwrap();
            l.drop_expired(&s.read_cursor().unwrap()).unwrap();
            l.commit().unwrap();
        }
        r.ack(&first).unwrap();
        while let Some(record) = r.next().unwrap() {
            r.ack(&record).unwrap();
        }
        drop(r);
        let st = s.stats().unwrap();
        clock::reset();
        // 6 batches, 1 of them delivered (which the drop may also have counted: the record in
        // flight is the documented window): the 5 never delivered are counted as expired, once
        // each, and never more than 6.
        assert!(
            (5..=6).contains(&st.dropped_batches) && (5..=6).contains(&st.expired_batches),
            "dropped {} expired {}",
            st.dropped_batches,
            st.expired_batches
        );
        assert_eq!(st.batches, 0);
    }

    #[test]
    fn a_current_format_segment_an_older_version_stepped_over_is_delivered_not_dropped() {
        use crate::spool::format::encode_segment_header_of;
        clock::reset();
        let tmp = tempfile::tempdir().unwrap();
        let s = crate::spool::tests::spool(tmp.path());
        s.append(b"in a version 2 segment", 1).unwrap();
        let v2 = Locked::acquire(&s).unwrap().ledger.active_id;
        // An older tracespool rotated past it into a segment of its own format...
        let header = encode_segment_header_of(1, 1, 1);
        let payload = b"in a version 1 segment";
        let frame = FrameHeader::new(payload, 1, SystemTime::now(), Encoding::Identity).encode();
        std::fs::write(
            tmp.path().join(segment_name(v2 + 1)),
            [&header[..], &frame[..], &payload[..]].concat(),
        )
        .unwrap();
        {
            let mut l = Locked::acquire(&s).unwrap();
            let prev = l.ledger.clone();
            l.rebuild(Some(prev)).unwrap();
            l.commit().unwrap();
        }
        // ...and its reader, which cannot read the version 2 one, moved the cursor past it
        // (it writes 0 where this version writes the format it reads).
        let mut b = [0u8; 44];
        b[0..4].copy_from_slice(&1u32.to_le_bytes());
        b[4..12].copy_from_slice(&(v2 + 1).to_le_bytes());
        b[12..20].copy_from_slice(&SEGMENT_HEADER_LEN.to_le_bytes());
        crate::spool::slots::write(&s.cursor_file, 64, 99, &b).unwrap();
        let mut r = s.reader().unwrap();
        let mut got = Vec::new();
        while let Some(record) = r.next().unwrap() {
            got.push(String::from_utf8_lossy(&record.plain().unwrap()).into_owned());
            r.ack(&record).unwrap();
        }
        assert_eq!(got, ["in a version 2 segment", "in a version 1 segment"]);
        drop(r);
        assert_eq!(s.stats().unwrap().dropped_batches, 0);
    }
}
