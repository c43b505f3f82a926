//! The ledger transaction: the append lock held, and the ledger kept in step with the files.
//!
//! [`Locked`] is held for the span of one append (or one group of them), one rotation seen by
//! the reader, or one retirement. Everything that creates, deletes or moves a file of the spool
//! does it through a `Locked` ([`segments`](super::segments) for the data segments,
//! [`areas`](super::areas) for the quarantine and the dead-letter area).
//!
//! A change to the set of files is a small transaction on the ledger:
//! 1. [`Locked::begin_change`] marks the ledger dirty (written, not synced: only a process
//!    crash needs it, and that leaves the page cache intact);
//! 2. the files change;
//! 3. [`Locked::commit`] writes the new totals with the mark cleared (synced under
//!    [`SyncPolicy::Always`](super::SyncPolicy::Always) when counters changed).
//!
//! Recovery rules, applied when the lock is taken ([`Locked::acquire`]) or the spool opened:
//! - a ledger that is unreadable, or left dirty (its last holder died or failed between 1 and
//!   3), is rebuilt from a walk of the directory: totals from the segment headers, counters kept
//!   when the old ledger was readable;
//! - the rebuilt active segment is the newest one, unless a quarantined or recorded id is newer
//!   (ids only grow). Its committed length is: the recorded one when it is the segment the old
//!   ledger named; the file's own when it is an empty segment whose creator died before
//!   recording it; otherwise unknown (0), so that the next append seals it and starts another
//!   (a torn tail is then read as torn, never appended after);
//! - a segment of a newer format is left out of every total and never touched.

use std::fs::File;
use std::path::PathBuf;
use std::sync::MutexGuard;

use super::Spool;
use super::bounds::Usage;
use super::cursor::Cursor;
use super::dir::{self, Area, file_len, segment_name};
use super::error::SpoolError;
use super::format::{SEGMENT_HEADER_LEN, SegmentCounts, SegmentHeader};
use super::ledger::Ledger;
use super::segments::{self, Leftovers};
use super::sys;

/// Why batches are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lost {
    /// To make room, or because spooling is disabled.
    Dropped,
    /// Older than `max_age`.
    Expired,
}

/// Per-process state behind the spool's mutex.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) ledger_file: File,
    /// The active segment, kept open between appends.
    pub(super) active: Option<(u64, File)>,
    /// Its header is one of ours (the current format): only then may frames be appended to it.
    pub(super) active_ours: bool,
    /// The newest append's second its header records, as this process last wrote or read it.
    pub(super) active_newest: u32,
}

/// The append lock, held: the mutex for the threads of this process, `flock` for the others.
pub(super) struct Locked<'a> {
    pub(super) spool: &'a Spool,
    pub(super) inner: MutexGuard<'a, Inner>,
    pub(super) ledger: Ledger,
    /// Counters changed: the ledger is worth an fsync under `SyncPolicy::Always`.
    pub(super) counters_dirty: bool,
    /// Frames were written to the active segment and not yet synced.
    pub(super) unsynced: bool,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.inner.ledger_file.unlock();
    }
}

impl<'a> Locked<'a> {
    /// Takes the lock and reads the ledger, rebuilding it when it is unreadable or when the
    /// last holder left it dirty (it died, or failed, in the middle of a change).
    pub(super) fn acquire(spool: &'a Spool) -> Result<Locked<'a>, SpoolError> {
        let inner = spool
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ledger_path = spool.dir.join(dir::LEDGER);
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

    pub(super) fn seg_path(&self, id: u64) -> PathBuf {
        self.spool.dir.join(&segment_name(id))
    }

    /// Recomputes the cached part of the ledger from the directory (the rules in the module
    /// doc); keeps the counters of `previous`.
    pub(super) fn rebuild(&mut self, previous: Option<Ledger>) -> Result<(), SpoolError> {
        let dir = &self.spool.dir;
        let known = previous.is_some();
        let prev = previous.unwrap_or_default();
        // Quarantined segments keep their ids: new ids must stay above them too.
        let q_ids = dir.list_segments(&dir.area_dir(Area::Quarantine), Leftovers::Keep)?;
        let area_bytes = |area| -> Result<u64, SpoolError> {
            Ok(dir.area_files(area)?.iter().map(|(_, len)| len).sum())
        };
        let quarantine_bytes = area_bytes(Area::Quarantine)?;
        let deadletter_bytes = area_bytes(Area::DeadLetter)?;
        // (id, size, counts; `None` for a damaged header)
        let mut data: Vec<(u64, u64, Option<SegmentCounts>)> = Vec::new();
        let mut max_id = prev.active_id.max(q_ids.last().copied().unwrap_or(0));
        for segment in segments::walk(dir, 0, Leftovers::Remove)? {
            let segment = segment?;
            max_id = max_id.max(segment.id);
            let size = file_len(&segment.file, &segment.path)?;
            match segment.header {
                SegmentHeader::Future(version) => {
                    tracing::warn!(path = %segment.path.display(), version, "segment written by a newer tracespool; leaving it alone");
                }
                SegmentHeader::Current(counts) | SegmentHeader::Previous(counts) => {
                    data.push((segment.id, size, Some(counts)));
                }
                // Read as the current format (its frames check themselves), never appended to.
                SegmentHeader::Damaged => data.push((segment.id, size, None)),
            }
        }
        let mut ledger = Ledger {
            boot: sys::boot_id(),
            dropped_batches: prev.dropped_batches,
            dropped_spans: prev.dropped_spans,
            corrupt_records: prev.corrupt_records,
            torn_records: prev.torn_records,
            rejected_spans: prev.rejected_spans,
            expired_batches: prev.expired_batches,
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
    pub(super) fn recount(&mut self) -> Result<(), SpoolError> {
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
    pub(super) fn begin_change(&mut self) -> Result<(), SpoolError> {
        if !self.ledger.dirty {
            self.ledger.dirty = true;
            self.ledger
                .write(&self.inner.ledger_file)
                .map_err(|e| SpoolError::io(self.spool.dir.join(dir::LEDGER), e))?;
        }
        Ok(())
    }

    /// Writes the ledger back; syncs it when counters changed and the policy asks for it.
    pub(super) fn commit(&mut self) -> Result<(), SpoolError> {
        self.ledger.dirty = false;
        let path = || self.spool.dir.join(dir::LEDGER);
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

    /// What the spool holds now; `active_size` is the active segment's file size.
    pub(super) fn usage(&self, active_size: u64, cursor: Option<&Cursor>) -> Usage {
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

    /// Counts `batches` of `spans` that will never be delivered as dropped, and as expired too
    /// when they went for their age.
    pub(super) fn count_dropped(&mut self, batches: u64, spans: u64, lost: Lost) {
        let l = &mut self.ledger;
        l.dropped_batches = l.dropped_batches.saturating_add(batches);
        l.dropped_spans = l.dropped_spans.saturating_add(spans);
        if lost == Lost::Expired {
            l.expired_batches = l.expired_batches.saturating_add(batches);
        }
        self.counters_dirty = true;
    }

    /// What the cursor has acknowledged of the segment it is in, if that segment is live.
    pub(super) fn consumed(&self, cursor: &Cursor) -> SegmentCounts {
        if cursor.segment >= self.ledger.oldest_id && cursor.segment <= self.ledger.active_id {
            SegmentCounts {
                batches: cursor.batches,
                spans: cursor.spans,
                newest: 0,
            }
        } else {
            SegmentCounts::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use super::*;
    use crate::spool::format::{SEGMENT_VERSION, encode_segment_header, encode_segment_header_of};
    use crate::spool::tests::spool;

    /// The ledger as a rebuild from the directory finds it, `previous` known or not.
    fn rebuilt(s: &Spool, known: bool) -> Ledger {
        let mut locked = Locked::acquire(s).unwrap();
        let previous = known.then(|| locked.ledger.clone());
        locked.rebuild(previous).unwrap();
        locked.commit().unwrap();
        locked.ledger.clone()
    }

    fn write_segment(dir: &Path, id: u64, header: &[u8]) {
        std::fs::write(dir.join(segment_name(id)), header).unwrap();
    }

    #[test]
    fn the_recorded_active_length_is_kept_when_the_ledger_was_readable_and_unknown_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spool(tmp.path());
        s.append(b"abc", 2).unwrap();
        let before = Locked::acquire(&s).unwrap().ledger.clone();
        let known = rebuilt(&s, true);
        assert_eq!(
            (known.active_id, known.active_len, known.active_batches),
            (before.active_id, before.active_len, 1)
        );
        // Unknown: the next append seals the segment and starts another, and nothing is lost.
        let unknown = rebuilt(&s, false);
        assert_eq!(
            (unknown.active_id, unknown.active_len),
            (before.active_id, 0)
        );
        s.append(b"def", 2).unwrap();
        let after = Locked::acquire(&s).unwrap().ledger.clone();
        assert_eq!(after.active_id, before.active_id + 1);
        assert_eq!(s.stats().unwrap().batches, 2);
    }

    #[test]
    fn an_empty_newest_segment_whose_creator_died_unrecorded_becomes_the_active_one() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spool(tmp.path());
        s.append(b"abc", 2).unwrap();
        let id = Locked::acquire(&s).unwrap().ledger.active_id + 1;
        write_segment(
            tmp.path(),
            id,
            &encode_segment_header(SegmentCounts::default()),
        );
        let l = rebuilt(&s, true);
        assert_eq!((l.active_id, l.active_len), (id, SEGMENT_HEADER_LEN));
        assert_eq!((l.sealed_batches, l.sealed_spans), (1, 2));
        // Taken as it is: the next append goes into it.
        s.append(b"def", 2).unwrap();
        assert_eq!(Locked::acquire(&s).unwrap().ledger.active_id, id);
    }

    #[test]
    fn a_segment_with_a_damaged_header_counts_nothing_and_is_never_appended_to() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spool(tmp.path());
        s.append(b"abc", 2).unwrap();
        let id = Locked::acquire(&s).unwrap().ledger.active_id;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(tmp.path().join(segment_name(id)))
            .unwrap();
        file.write_all_at(b"XXXXXXXX", 0).unwrap();
        let l = rebuilt(&s, true);
        assert_eq!((l.active_id, l.active_len, l.active_batches), (id, 0, 0));
        s.append(b"def", 2).unwrap();
        assert_eq!(Locked::acquire(&s).unwrap().ledger.active_id, id + 1);
        // Its frames still check themselves: the record in it is read.
        let mut reader = s.reader().unwrap();
        assert_eq!(&reader.next().unwrap().unwrap().payload[..], b"abc");
    }

    #[test]
    fn a_newer_formats_segment_is_left_out_of_every_total() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spool(tmp.path());
        s.append(b"abc", 2).unwrap();
        let id = Locked::acquire(&s).unwrap().ledger.active_id;
        let header = encode_segment_header_of(SEGMENT_VERSION + 1, 5, 50);
        write_segment(tmp.path(), id + 1, &header);
        let l = rebuilt(&s, true);
        assert_eq!(l.sealed_batches + l.active_batches, 1, "{l:?}");
        assert_eq!(l.active_id, id + 1, "ids stay above it");
        assert_eq!(l.active_len, 0, "never appended to");
        s.append(b"def", 2).unwrap();
        assert_eq!(Locked::acquire(&s).unwrap().ledger.active_id, id + 2);
        assert!(tmp.path().join(segment_name(id + 1)).exists());
    }

    #[test]
    fn quarantined_segments_keep_new_ids_above_theirs() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spool(tmp.path());
        let q = s.dir.ensure_area(Area::Quarantine, false).unwrap();
        std::fs::write(q.join(segment_name(40)), b"old damage").unwrap();
        let l = rebuilt(&s, false);
        assert_eq!((l.active_id, l.quarantine_bytes), (40, 10));
        s.append(b"abc", 2).unwrap();
        assert_eq!(Locked::acquire(&s).unwrap().ledger.active_id, 41);
    }

    #[test]
    fn a_rebuild_keeps_the_loss_counters_of_a_readable_ledger() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spool(tmp.path());
        {
            let mut locked = Locked::acquire(&s).unwrap();
            locked.ledger.dropped_batches = 7;
            locked.ledger.corrupt_records = 3;
            locked.ledger.expired_batches = 5;
            locked.commit().unwrap();
        }
        let l = rebuilt(&s, true);
        assert_eq!(
            (l.dropped_batches, l.corrupt_records, l.expired_batches),
            (7, 3, 5)
        );
        let l = rebuilt(&s, false);
        assert_eq!(
            (l.dropped_batches, l.corrupt_records, l.expired_batches),
            (0, 0, 0)
        );
    }
}
