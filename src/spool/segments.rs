//! The data segments: which one takes appends, and how they are created, sealed, written,
//! retired and dropped. Every change goes through the ledger transaction ([`Locked`]).
//!
//! Order of operations, and what a crash between two steps leaves:
//! - rotate: the new segment appears whole (tmp, sync, rename, sync dir), then the ledger names
//!   it. A crash in between leaves an empty newest segment, which the next rebuild adopts.
//! - drop / retire: the file goes, then the ledger forgets it. A crash in between leaves the
//!   ledger dirty, and the next process to take the lock rebuilds the totals.
//! - write: one vectored `pwrite` of the frame at the committed length, then the header's
//!   counters; on failure both are put back, so a failed append leaves no trace.
//!
//! [`walk`] is the one way to go over the segment files, oldest first: the rebuild, the reader,
//! `verify` and the age of the oldest record all use it.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::bounds;
use super::clock;
use super::cursor::Cursor;
pub(super) use super::dir::Leftovers;
use super::dir::{SpoolDir, file_len, segment_name};
use super::error::SpoolError;
use super::format::{
    COUNTS_OFFSET, FRAME_HEADER_LEN, FrameHeader, SEGMENT_HEADER_LEN, SegmentCounts, SegmentHeader,
    decode_segment_header, encode_counts, encode_segment_header,
};
use super::sys;
use super::txn::{Locked, Lost};

/// How a segment read to its end went, which decides where it goes when retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadThrough {
    /// Every record in it was valid: it is deleted.
    Clean,
    /// Damage was skipped in it: it is moved to the quarantine, for inspection.
    Damaged,
}

/// The oldest data segment, as [`Locked::oldest_segment`] finds it.
enum Oldest {
    Segment(Dropping),
    /// Segments were found gone and the totals recounted: room may have appeared.
    Recounted,
    /// Nothing that may be dropped.
    None,
}

/// A data segment about to be dropped, opened and its header read.
struct Dropping {
    id: u64,
    path: PathBuf,
    file: File,
    counts: SegmentCounts,
}

/// A segment file met by [`walk`], open for reading.
pub(super) struct SegmentFile {
    pub(super) id: u64,
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) header: SegmentHeader,
}

/// The segment files of `dir` with ids from `from` on, oldest first, each opened and its header
/// read. A file that vanishes between the listing and its opening (retired or dropped by another
/// process) is left out.
pub(super) fn walk(
    dir: &SpoolDir,
    from: u64,
    leftovers: Leftovers,
) -> Result<impl Iterator<Item = Result<SegmentFile, SpoolError>> + '_, SpoolError> {
    let ids = dir.list_segments(dir.path(), leftovers)?;
    Ok(ids
        .into_iter()
        .filter(move |&id| id >= from)
        .filter_map(move |id| {
            let path = dir.join(&segment_name(id));
            match dir.open_read(&path) {
                Ok(Some(file)) => {
                    let header = read_segment_header(&file);
                    Some(Ok(SegmentFile {
                        id,
                        path,
                        file,
                        header,
                    }))
                }
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        }))
}

impl Locked<'_> {
    /// The active segment, opened if needed, with its current size; `None` if it does not exist.
    pub(super) fn active(&mut self) -> Result<Option<u64>, SpoolError> {
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
            let header = read_segment_header(&file);
            self.inner.active_ours = matches!(header, SegmentHeader::Current(_));
            self.inner.active_newest = header.counts().map_or(0, |c| c.newest);
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
    pub(super) fn rotate(&mut self) -> Result<u64, SpoolError> {
        // Frames written to the outgoing segment must be durable before anything is told so.
        self.sync_written()
            .map_err(|e| SpoolError::io(self.seg_path(self.ledger.active_id), e))?;
        self.begin_change()?;
        let had_active = self.active()?;
        // The header is the truth: a writer may have died after counting its record there.
        // A newer format's segment is not ours to count.
        let sealed = had_active.and_then(|size| {
            let (_, file) = self.inner.active.as_ref().expect("active() opened it");
            Some((size, read_segment_header(file).counts()?))
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
        self.inner.active_newest = 0;
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

    /// Frees space: the oldest quarantined, then dead-lettered file first, else the oldest data
    /// segment (its unacknowledged records are counted as dropped). False when nothing is left.
    pub(super) fn drop_oldest(&mut self, cursor: &Cursor) -> Result<bool, SpoolError> {
        if self.drop_oldest_in_areas()? {
            return Ok(true);
        }
        match self.oldest_segment()? {
            Oldest::Segment(segment) => {
                self.remove_oldest(segment, cursor)?;
                Ok(true)
            }
            Oldest::Recounted => Ok(true),
            Oldest::None => Ok(false),
        }
    }

    /// Drops the oldest sealed segments while every record in them is older than `max_age`
    /// (their unacknowledged records counted as dropped and expired). Cheap: one header read
    /// per segment looked at, so appends do it when they start a segment.
    pub(super) fn drop_expired(&mut self, cursor: &Cursor) -> Result<(), SpoolError> {
        let Some(max_age) = self.spool.opts.max_age else {
            return Ok(());
        };
        let now = clock::now();
        while self.ledger.oldest_id < self.ledger.active_id {
            match self.oldest_segment()? {
                Oldest::Segment(segment)
                    if segment.id < self.ledger.active_id
                        && bounds::segment_expired(segment.counts.newest, now, max_age) =>
                {
                    self.remove_oldest(segment, cursor)?;
                }
                Oldest::Recounted => {}
                _ => break,
            }
        }
        Ok(())
    }

    /// The oldest data segment that may be dropped. Segments of a newer format are stepped
    /// over (never read or deleted); one that is gone makes the spool recount itself, rather
    /// than drop data for room that is free already.
    fn oldest_segment(&mut self) -> Result<Oldest, SpoolError> {
        while self.ledger.oldest_id <= self.ledger.active_id {
            let id = self.ledger.oldest_id;
            let path = self.seg_path(id);
            let Some(file) = self.spool.dir.open_read(&path)? else {
                if id == self.ledger.active_id {
                    return Ok(Oldest::None);
                }
                // Deleted behind our back (a cleaner, a user).
                self.recount()?;
                return Ok(Oldest::Recounted);
            };
            // As the active one, a newer format's segment is left for the next append to
            // rotate past.
            let Some(counts) = read_segment_header(&file).counts() else {
                if id == self.ledger.active_id {
                    return Ok(Oldest::None);
                }
                self.ledger.oldest_id += 1;
                continue;
            };
            return Ok(Oldest::Segment(Dropping {
                id,
                path,
                file,
                counts,
            }));
        }
        Ok(Oldest::None)
    }

    /// Deletes the oldest data segment, counting what it held unacknowledged as dropped (and
    /// as expired when all of it was older than `max_age`).
    fn remove_oldest(&mut self, segment: Dropping, cursor: &Cursor) -> Result<(), SpoolError> {
        let Dropping {
            id,
            path,
            file,
            counts,
        } = segment;
        let size = file_len(&file, &path)?;
        self.begin_change()?;
        fs::remove_file(&path).map_err(|e| SpoolError::io(&path, e))?;
        let consumed = if cursor.segment == id {
            self.consumed(cursor)
        } else {
            SegmentCounts::default()
        };
        let expired =
            self.spool.opts.max_age.is_some_and(|max_age| {
                bounds::segment_expired(counts.newest, clock::now(), max_age)
            });
        self.count_dropped(
            counts.batches.saturating_sub(consumed.batches),
            counts.spans.saturating_sub(consumed.spans),
            if expired {
                Lost::Expired
            } else {
                Lost::Dropped
            },
        );
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
        Ok(())
    }

    /// Removes sealed segment `id`, fully read through `file`: deleted, or moved to the
    /// quarantine when damage was skipped in it. False when a writer dropped it meanwhile: it
    /// is gone already, and nothing changes.
    pub(super) fn retire(
        &mut self,
        id: u64,
        file: &File,
        read: ReadThrough,
    ) -> Result<bool, SpoolError> {
        let path = self.seg_path(id);
        if fs::symlink_metadata(&path).is_err() {
            return Ok(false);
        }
        let size = file_len(file, &path)?;
        let counts = read_segment_header(file).counts().unwrap_or_default();
        self.begin_change()?;
        match read {
            ReadThrough::Damaged => self.quarantine(id, size)?,
            ReadThrough::Clean => fs::remove_file(&path).map_err(|e| SpoolError::io(&path, e))?,
        }
        if self.spool.opts.sync.is_always() {
            self.spool.dir.sync()?;
        }
        self.ledger.forget_sealed(size, counts);
        if self.ledger.oldest_id <= id {
            self.ledger.oldest_id = id + 1;
        }
        Ok(true)
    }

    /// Appends one frame to the active segment at `at` and counts it in the segment header.
    /// On failure the segment is cut back to `at`, so a failed append leaves no trace.
    pub(super) fn write_frame(
        &mut self,
        at: u64,
        header: &FrameHeader,
        payload: &[u8],
    ) -> Result<(), io::Error> {
        let (_, file) = self.inner.active.as_ref().expect("caller checked active()");
        let before = SegmentCounts {
            batches: self.ledger.active_batches,
            spans: self.ledger.active_spans,
            newest: self.inner.active_newest,
        };
        let after = SegmentCounts {
            batches: before.batches + 1,
            spans: before.spans + u64::from(header.span_count),
            // Never back, should the clock step back.
            newest: before.newest.max(bounds::unix_second(header.written_at())),
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
        self.inner.active_newest = after.newest;
        self.unsynced = true;
        Ok(())
    }

    /// Makes the frames written since the last call durable (one `fdatasync` of the active
    /// segment) under [`SyncPolicy::Always`](super::SyncPolicy::Always).
    pub(super) fn sync_written(&mut self) -> io::Result<()> {
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
    let header = decode_segment_header(&b);
    match header {
        SegmentHeader::Current(counts) | SegmentHeader::Previous(counts) => {
            let frames = file.metadata().map_or(0, |m| {
                m.len().saturating_sub(SEGMENT_HEADER_LEN) / FRAME_HEADER_LEN
            });
            if counts.batches <= frames
                && counts.spans <= counts.batches.saturating_mul(u64::from(u32::MAX))
            {
                header
            } else {
                SegmentHeader::Damaged
            }
        }
        other => other,
    }
}
