//! The set of segment files, changed only under the append lock.
//!
//! [`Locked`] is held for the span of one append, one rotation seen by the reader, or one
//! retirement; it is the only code that creates, deletes or moves segment files, and it keeps the
//! ledger in step with what it did.
//!
//! Order of operations, and what a crash between two steps leaves:
//! - rotate: the new segment appears whole (tmp, sync, rename, sync dir), then the ledger names
//!   it. A crash in between leaves an empty newest segment, which the next rebuild adopts.
//! - drop / retire: the file goes, then the ledger forgets it. A crash in between leaves the
//!   ledger dirty, and the next process to take the lock rebuilds the totals.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::MutexGuard;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Spool;
use super::bounds::{self, Usage};
use super::cursor::Cursor;
use super::dir::{Area, file_len, segment_name};
use super::error::SpoolError;
use super::format::{
    COUNTS_OFFSET, FRAME_HEADER_LEN, FrameHeader, SEGMENT_HEADER_LEN, SegmentCounts, SegmentHeader,
    decode_segment_header, encode_counts, encode_segment_header,
};
use super::ledger::Ledger;
use super::sys;

/// Per-process state behind the spool's mutex.
#[derive(Debug)]
pub(super) struct Inner {
    pub ledger_file: File,
    /// The active segment, kept open between appends.
    pub active: Option<(u64, File)>,
    /// Its header is one of ours (format 1): only then may frames be appended to it.
    pub active_ours: bool,
}

/// The append lock, held: the mutex for the threads of this process, `flock` for the others.
pub(super) struct Locked<'a> {
    pub spool: &'a Spool,
    pub inner: MutexGuard<'a, Inner>,
    pub ledger: Ledger,
    /// Counters changed: the ledger is worth an fsync under `SyncPolicy::Always`.
    pub counters_dirty: bool,
    /// Frames were written to the active segment and not yet synced.
    pub unsynced: bool,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.inner.ledger_file.unlock();
    }
}

impl<'a> Locked<'a> {
    /// Takes the lock and reads the ledger, rebuilding it when it is unreadable or when the
    /// last holder left it dirty (it died, or failed, in the middle of a change).
    pub fn acquire(spool: &'a Spool) -> Result<Locked<'a>, SpoolError> {
        let inner = spool
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ledger_path = spool.dir.join(super::dir::LEDGER);
        inner
            .ledger_file
            .lock()
            .map_err(|e| SpoolError::io(&ledger_path, e))?;
        let mut locked = Locked {
            spool,
            inner,
            ledger: Ledger::default(),
            counters_dirty: false,
            unsynced: false,
        };
        match Ledger::read(&locked.inner.ledger_file)
            .map_err(|e| SpoolError::io(&ledger_path, e))?
        {
            Some(ledger) if ledger.dirty => {
                locked.rebuild(Some(ledger))?;
                locked.commit()?;
            }
            Some(ledger) => locked.ledger = ledger,
            None => {
                // Empty is a new spool; anything else unreadable is damage worth a word.
                if file_len(&locked.inner.ledger_file, &ledger_path)? > 0 {
                    tracing::warn!(path = %ledger_path.display(), "spool ledger damaged; rebuilding it (loss counters restart at 0)");
                }
                locked.rebuild(None)?;
                locked.commit()?;
            }
        }
        Ok(locked)
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.spool.dir.join(&segment_name(id))
    }

    /// Recomputes the cached part of the ledger from the directory; keeps the counters of
    /// `previous`.
    pub fn rebuild(&mut self, previous: Option<Ledger>) -> Result<(), SpoolError> {
        let dir = &self.spool.dir;
        let known = previous.is_some();
        let prev = previous.unwrap_or_default();
        let ids = dir.list_segments(dir.path(), true)?;
        // Quarantined segments keep their ids: new ids must stay above them too.
        let q_ids = dir.list_segments(&dir.area_dir(Area::Quarantine), false)?;
        let area_bytes = |area| -> Result<u64, SpoolError> {
            Ok(dir.area_files(area)?.iter().map(|(_, len)| len).sum())
        };
        let quarantine_bytes = area_bytes(Area::Quarantine)?;
        let deadletter_bytes = area_bytes(Area::DeadLetter)?;
        let mut data = Vec::new();
        let mut max_id = prev.active_id.max(q_ids.last().copied().unwrap_or(0));
        for id in ids {
            max_id = max_id.max(id);
            let path = self.seg_path(id);
            let Some(file) = dir.open_read(&path)? else {
                continue;
            };
            let size = file_len(&file, &path)?;
            match read_segment_header(&file) {
                SegmentHeader::Future(version) => {
                    tracing::warn!(path = %path.display(), version, "segment written by a newer tracespool; leaving it alone");
                }
                SegmentHeader::Current(counts) => data.push((id, size, Some(counts))),
                // Read as format 1 (its frames check themselves), never appended to.
                SegmentHeader::Damaged => data.push((id, size, None)),
            }
        }
        let mut ledger = Ledger {
            boot: sys::boot_id(),
            dropped_batches: prev.dropped_batches,
            dropped_spans: prev.dropped_spans,
            corrupt_records: prev.corrupt_records,
            torn_records: prev.torn_records,
            rejected_spans: prev.rejected_spans,
            quarantine_bytes,
            deadletter_bytes,
            ..Ledger::default()
        };
        let newest = data.last().copied().filter(|&(id, _, _)| id == max_id);
        match newest {
            Some((id, size, counts)) => {
                ledger.active_id = id;
                ledger.active_len = match counts {
                    // A damaged header: the next append seals it and starts a new segment.
                    None => 0,
                    Some(_) if id == prev.active_id && known => prev.active_len,
                    // An empty segment whose creator died before recording it.
                    Some(_) if size == SEGMENT_HEADER_LEN => size,
                    // Unknown: the next append seals it and starts a new one.
                    Some(_) => 0,
                };
                let counts = counts.unwrap_or_default();
                ledger.active_batches = counts.batches;
                ledger.active_spans = counts.spans;
                data.pop();
            }
            None => ledger.active_id = max_id,
        }
        ledger.oldest_id = data.first().map_or(ledger.active_id, |&(id, _, _)| id);
        for (_, size, counts) in data {
            ledger.add_sealed(size, counts.unwrap_or_default());
        }
        self.ledger = ledger;
        Ok(())
    }

    /// Rebuilds the totals after segments the ledger counts were found gone: deleted behind the
    /// spool's back (a cleaner, a user). Said once per process.
    pub fn recount(&mut self) -> Result<(), SpoolError> {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!(dir = %self.spool.dir.path().display(), "segments of the spool went missing; recounting it");
        });
        self.begin_change()?;
        let previous = self.ledger.clone();
        self.rebuild(Some(previous))
    }

    /// Marks the ledger dirty before the set of files changes (cleared by [`commit`]), so that
    /// a process dying (or failing) before its commit makes the next holder of the lock rebuild
    /// the ledger.
    ///
    /// [`commit`]: Locked::commit
    fn begin_change(&mut self) -> Result<(), SpoolError> {
        if !self.ledger.dirty {
            self.ledger.dirty = true;
            self.ledger
                .write(&self.inner.ledger_file)
                .map_err(|e| SpoolError::io(self.spool.dir.join(super::dir::LEDGER), e))?;
        }
        Ok(())
    }

    /// Writes the ledger back; syncs it when counters changed and the policy asks for it.
    pub fn commit(&mut self) -> Result<(), SpoolError> {
        self.ledger.dirty = false;
        let path = || self.spool.dir.join(super::dir::LEDGER);
        self.ledger
            .write(&self.inner.ledger_file)
            .map_err(|e| SpoolError::io(path(), e))?;
        if self.counters_dirty && self.spool.opts.sync.is_always() {
            self.inner
                .ledger_file
                .sync_data()
                .map_err(|e| SpoolError::io(path(), e))?;
        }
        self.counters_dirty = false;
        Ok(())
    }

    /// The active segment, opened if needed, with its current size; `None` if it does not exist.
    pub fn active(&mut self) -> Result<Option<u64>, SpoolError> {
        let id = self.ledger.active_id;
        if self
            .inner
            .active
            .as_ref()
            .is_none_or(|(cached, _)| *cached != id)
        {
            self.inner.active = None;
            let path = self.seg_path(id);
            let Some(file) = self.spool.dir.open_write(&path)? else {
                return Ok(None);
            };
            // Checked once per handle: a newer format's segment, or a damaged one, is read (or
            // left alone) but never appended to.
            self.inner.active_ours =
                matches!(read_segment_header(&file), SegmentHeader::Current(_));
            self.inner.active = Some((id, file));
        }
        let (_, file) = self.inner.active.as_ref().expect("opened above");
        let (size, links) =
            sys::size_and_links(file).map_err(|e| SpoolError::io(self.seg_path(id), e))?;
        // Unlinked by a process that died before it recorded the deletion in the ledger.
        if links == 0 {
            self.inner.active = None;
            return Ok(None);
        }
        Ok(Some(size))
    }

    /// Seals the active segment (if any) and starts a new, empty one; returns its size.
    pub fn rotate(&mut self) -> Result<u64, SpoolError> {
        // Frames written to the outgoing segment must be durable before anything is told so.
        self.sync_written()
            .map_err(|e| SpoolError::io(self.seg_path(self.ledger.active_id), e))?;
        self.begin_change()?;
        let had_active = self.active()?;
        // The header is the truth: a writer may have died after counting its record there.
        // A newer format's segment is not ours to count.
        let sealed = had_active.and_then(|size| {
            let (_, file) = self.inner.active.as_ref().expect("active() opened it");
            match read_segment_header(file) {
                SegmentHeader::Current(c) => Some((size, c)),
                SegmentHeader::Damaged => Some((size, SegmentCounts::default())),
                SegmentHeader::Future(_) => None,
            }
        });
        // Ids only grow. A name already taken (by something that is not a segment of ours,
        // since we hold the lock) is stepped over rather than replaced.
        let mut id = self.ledger.active_id + 1;
        while fs::symlink_metadata(self.seg_path(id)).is_ok() {
            id += 1;
        }
        let file = self.spool.dir.create_atomic(
            &segment_name(id),
            &encode_segment_header(SegmentCounts::default()),
            self.spool.opts.sync.is_always(),
        )?;
        // Only now that the new segment exists does the ledger change: a failed rotation (a full
        // disk) leaves it as it was.
        if let Some((size, counts)) = sealed {
            self.ledger.add_sealed(size, counts);
        }
        self.inner.active = Some((id, file));
        self.inner.active_ours = true;
        // With nothing sealed and no active file, the new segment is the only (so oldest) one.
        if had_active.is_none() && self.ledger.sealed_bytes == 0 {
            self.ledger.oldest_id = id;
        }
        self.ledger.active_id = id;
        self.ledger.active_len = SEGMENT_HEADER_LEN;
        self.ledger.active_batches = 0;
        self.ledger.active_spans = 0;
        Ok(SEGMENT_HEADER_LEN)
    }

    /// What the spool holds now; `active_size` is the active segment's file size.
    pub fn usage(&self, active_size: u64, cursor: Option<&Cursor>) -> Usage {
        let l = &self.ledger;
        let consumed = cursor.map_or(0, |c| self.consumed(c).spans);
        Usage {
            bytes: l
                .sealed_bytes
                .saturating_add(active_size)
                .saturating_add(l.quarantine_bytes)
                .saturating_add(l.deadletter_bytes),
            spans: l
                .sealed_spans
                .saturating_add(l.active_spans)
                .saturating_sub(consumed),
        }
    }

    /// What the cursor has acknowledged of the segment it is in, if that segment is live.
    fn consumed(&self, cursor: &Cursor) -> SegmentCounts {
        if cursor.segment >= self.ledger.oldest_id && cursor.segment <= self.ledger.active_id {
            SegmentCounts {
                batches: cursor.batches,
                spans: cursor.spans,
            }
        } else {
            SegmentCounts::default()
        }
    }

    /// Frees space: the oldest quarantined, then dead-lettered file first, else the oldest data
    /// segment (its unacknowledged records are counted as dropped). False when nothing is left.
    pub fn drop_oldest(&mut self, cursor: &Cursor) -> Result<bool, SpoolError> {
        for area in Area::ALL {
            if *self.area_bytes(area) > 0 {
                if self.drop_oldest_in(area)? {
                    return Ok(true);
                }
                *self.area_bytes(area) = 0;
            }
        }
        while self.ledger.oldest_id <= self.ledger.active_id {
            let id = self.ledger.oldest_id;
            let path = self.seg_path(id);
            let file = match self.spool.dir.open_read(&path)? {
                Some(file) => file,
                None => {
                    if id == self.ledger.active_id {
                        return Ok(false);
                    }
                    // Deleted behind our back: take stock again rather than drop data for room
                    // that is free already.
                    self.recount()?;
                    return Ok(true);
                }
            };
            let counts = match read_segment_header(&file) {
                // A newer format's segment is never read or deleted; as the active one, it is
                // left for the next append to rotate past.
                SegmentHeader::Future(_) if id == self.ledger.active_id => return Ok(false),
                SegmentHeader::Future(_) => {
                    self.ledger.oldest_id += 1;
                    continue;
                }
                SegmentHeader::Current(c) => c,
                SegmentHeader::Damaged => SegmentCounts::default(),
            };
            let size = file_len(&file, &path)?;
            self.begin_change()?;
            fs::remove_file(&path).map_err(|e| SpoolError::io(&path, e))?;
            let consumed = if cursor.segment == id {
                SegmentCounts {
                    batches: cursor.batches,
                    spans: cursor.spans,
                }
            } else {
                SegmentCounts::default()
            };
            self.ledger.dropped_batches += counts.batches.saturating_sub(consumed.batches);
            self.ledger.dropped_spans += counts.spans.saturating_sub(consumed.spans);
            self.counters_dirty = true;
            if id == self.ledger.active_id {
                // Nothing sealed is left: totals still above zero counted files that vanished
                // (a cleaner, a user), and must not make room look taken forever.
                self.ledger.forget_all_sealed();
                self.inner.active = None;
                self.rotate()?;
                self.ledger.oldest_id = self.ledger.active_id;
            } else {
                self.ledger.forget_sealed(size, counts);
                self.ledger.oldest_id = id + 1;
            }
            return Ok(true);
        }
        Ok(false)
    }

    fn area_bytes(&mut self, area: Area) -> &mut u64 {
        match area {
            Area::Quarantine => &mut self.ledger.quarantine_bytes,
            Area::DeadLetter => &mut self.ledger.deadletter_bytes,
        }
    }

    fn drop_oldest_in(&mut self, area: Area) -> Result<bool, SpoolError> {
        let Some((path, size)) = self.spool.dir.area_files(area)?.into_iter().next() else {
            return Ok(false);
        };
        self.begin_change()?;
        fs::remove_file(&path).map_err(|e| SpoolError::io(&path, e))?;
        let bytes = self.area_bytes(area);
        *bytes = bytes.saturating_sub(size);
        Ok(true)
    }

    /// Deletes an area's oldest files until it is within its share of the bound.
    fn trim_area(&mut self, area: Area) -> Result<(), SpoolError> {
        while *self.area_bytes(area) > bounds::area_share(self.spool.opts.max_bytes) {
            if !self.drop_oldest_in(area)? {
                *self.area_bytes(area) = 0;
            }
        }
        Ok(())
    }

    /// Keeps a rejected batch in the dead-letter area for inspection (if it fits the area's share
    /// and the bound with room made in the areas only: the oldest go first) and counts its spans
    /// as rejected. Never read back for delivery, and never kept at the cost of data.
    pub fn dead_letter(&mut self, payload: &[u8], spans: u64) -> Result<(), SpoolError> {
        self.ledger.rejected_spans += spans;
        self.counters_dirty = true;
        let len = payload.len() as u64;
        let max_bytes = self.spool.opts.max_bytes;
        if len > bounds::area_share(max_bytes) {
            tracing::warn!(
                bytes = len,
                "rejected batch too large to keep in the dead-letter area"
            );
            return Ok(());
        }
        // Room within the area's share, then within the whole bound.
        while self.ledger.deadletter_bytes + len > bounds::area_share(max_bytes)
            && self.drop_oldest_in(Area::DeadLetter)?
        {}
        loop {
            let active = self.active()?.unwrap_or(0);
            if self.usage(active, None).admits(len, 0, max_bytes, None) {
                break;
            }
            if !(self.drop_oldest_in(Area::Quarantine)? || self.drop_oldest_in(Area::DeadLetter)?) {
                tracing::warn!(
                    bytes = len,
                    "the spool is full: the rejected batch is not kept in the dead-letter area"
                );
                return Ok(());
            }
        }
        // The copy is for inspection only: failing to keep it must not hold up delivery.
        if let Err(e) = self.keep_dead_letter(payload) {
            tracing::warn!("the rejected batch is not kept in the dead-letter area: {e}");
        }
        Ok(())
    }

    fn keep_dead_letter(&mut self, payload: &[u8]) -> Result<(), SpoolError> {
        let durable = self.spool.opts.sync.is_always();
        let dir = self.spool.dir.ensure_area(Area::DeadLetter, durable)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = dir.join(format!("{nanos:020}-{}.pb", std::process::id()));
        self.begin_change()?;
        self.spool.dir.write_new(&path, payload, durable)?;
        self.ledger.deadletter_bytes += payload.len() as u64;
        Ok(())
    }

    /// Removes sealed segment `id`, fully read through `file`: deleted, or moved to the
    /// quarantine when damage was skipped in it. A segment a writer dropped meanwhile is gone
    /// already and changes nothing.
    pub fn retire(&mut self, id: u64, file: &File, damaged: bool) -> Result<(), SpoolError> {
        let path = self.seg_path(id);
        if fs::symlink_metadata(&path).is_err() {
            return Ok(());
        }
        let size = file_len(file, &path)?;
        let counts = match read_segment_header(file) {
            SegmentHeader::Current(c) => c,
            _ => SegmentCounts::default(),
        };
        self.begin_change()?;
        let durable = self.spool.opts.sync.is_always();
        if damaged {
            let q_dir = self.spool.dir.ensure_area(Area::Quarantine, durable)?;
            fs::rename(&path, q_dir.join(segment_name(id)))
                .map_err(|e| SpoolError::io(&path, e))?;
            if durable {
                // Both ends of the rename.
                self.spool.dir.sync_area(Area::Quarantine)?;
            }
            self.ledger.quarantine_bytes += size;
            self.trim_area(Area::Quarantine)?;
        } else {
            fs::remove_file(&path).map_err(|e| SpoolError::io(&path, e))?;
        }
        if durable {
            self.spool.dir.sync()?;
        }
        self.ledger.forget_sealed(size, counts);
        if self.ledger.oldest_id <= id {
            self.ledger.oldest_id = id + 1;
        }
        Ok(())
    }

    /// Appends one frame to the active segment at `at` and counts it in the segment header.
    /// On failure the segment is cut back to `at`, so a failed append leaves no trace.
    pub fn write_frame(
        &mut self,
        at: u64,
        header: &FrameHeader,
        payload: &[u8],
    ) -> Result<(), io::Error> {
        let (_, file) = self.inner.active.as_ref().expect("caller checked active()");
        let before = SegmentCounts {
            batches: self.ledger.active_batches,
            spans: self.ledger.active_spans,
        };
        let after = SegmentCounts {
            batches: before.batches + 1,
            spans: before.spans + u64::from(header.span_count),
        };
        let result = sys::write_all_at_vectored(file, &[&header.encode(), payload], at)
            .and_then(|()| file.write_all_at(&encode_counts(after), COUNTS_OFFSET));
        if let Err(e) = result {
            let _ = file.set_len(at);
            let _ = file.write_all_at(&encode_counts(before), COUNTS_OFFSET);
            return Err(e);
        }
        self.ledger.active_len = at + header.frame_len();
        self.ledger.active_batches = after.batches;
        self.ledger.active_spans = after.spans;
        self.unsynced = true;
        Ok(())
    }

    /// Makes the frames written since the last call durable (one `fdatasync` of the active
    /// segment) under [`SyncPolicy::Always`](super::SyncPolicy::Always).
    pub fn sync_written(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.unsynced)
            && self.spool.opts.sync.is_always()
            && let Some((_, file)) = self.inner.active.as_ref()
        {
            file.sync_data()?;
        }
        Ok(())
    }
}

/// The header of a segment. Its counts have no checksum of their own: counts the file is too
/// short to hold (each frame takes at least its 32-byte header) are damage, so that no total
/// built from them can overflow.
pub(super) fn read_segment_header(file: &File) -> SegmentHeader {
    let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
    if file.read_exact_at(&mut b, 0).is_err() {
        return SegmentHeader::Damaged;
    }
    match decode_segment_header(&b) {
        SegmentHeader::Current(counts) => {
            let frames = file.metadata().map_or(0, |m| {
                m.len().saturating_sub(SEGMENT_HEADER_LEN) / FRAME_HEADER_LEN
            });
            if counts.batches <= frames
                && counts.spans <= counts.batches.saturating_mul(u64::from(u32::MAX))
            {
                SegmentHeader::Current(counts)
            } else {
                SegmentHeader::Damaged
            }
        }
        other => other,
    }
}
