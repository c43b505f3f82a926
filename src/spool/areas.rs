//! The bounded areas: `quarantine/` (segments in which damage was skipped) and `deadletter/`
//! (batches the backend rejected as bad data), both kept for inspection only, never delivered.
//!
//! - Each keeps at most [`area_share`](super::bounds::area_share) of `max_bytes` (an eighth);
//!   past it, its oldest files go.
//! - They count towards the bound, and are the first to go when an append needs room.
//! - A rejected batch is kept only if it fits the area's share and the bound with room made in
//!   the areas alone: no undelivered batch is ever dropped to keep one, and failing to keep the
//!   copy never holds up delivery.
//! - Listing an area never goes through a symlink: an area that is not a directory of ours is
//!   neither read nor emptied.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use super::bounds;
use super::dir::{Area, segment_name};
use super::error::SpoolError;
use super::format::Encoding;
use super::txn::Locked;

impl Locked<'_> {
    fn area_bytes(&mut self, area: Area) -> &mut u64 {
        match area {
            Area::Quarantine => &mut self.ledger.quarantine_bytes,
            Area::DeadLetter => &mut self.ledger.deadletter_bytes,
        }
    }

    /// Deletes the oldest file of either area, the quarantine first. False when both are empty.
    pub(super) fn drop_oldest_in_areas(&mut self) -> Result<bool, SpoolError> {
        for area in Area::ALL {
            if *self.area_bytes(area) > 0 {
                if self.drop_oldest_in(area)? {
                    return Ok(true);
                }
                // Counted, but nothing there (removed by hand): stop counting it.
                *self.area_bytes(area) = 0;
            }
        }
        Ok(false)
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

    /// Moves sealed segment `id` (at `size` bytes) into the quarantine, then trims it to its
    /// share. The caller has begun the change.
    pub(super) fn quarantine(&mut self, id: u64, size: u64) -> Result<(), SpoolError> {
        let path = self.seg_path(id);
        let durable = self.spool.opts.sync.is_always();
        let q_dir = self.spool.dir.ensure_area(Area::Quarantine, durable)?;
        fs::rename(&path, q_dir.join(segment_name(id))).map_err(|e| SpoolError::io(&path, e))?;
        if durable {
            // The destination's entries; the caller syncs the spool directory, the source.
            self.spool.dir.sync_area(Area::Quarantine)?;
        }
        self.ledger.quarantine_bytes += size;
        self.trim_area(Area::Quarantine)
    }

    /// Keeps a rejected batch in the dead-letter area for inspection (if it fits the area's share
    /// and the bound with room made in the areas only: the oldest go first) and counts its spans
    /// as rejected. Never read back for delivery, and never kept at the cost of data.
    pub(super) fn dead_letter(
        &mut self,
        payload: &[u8],
        encoding: Encoding,
        spans: u64,
    ) -> Result<(), SpoolError> {
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
        if let Err(e) = self.keep_dead_letter(payload, encoding) {
            tracing::warn!("the rejected batch is not kept in the dead-letter area: {e}");
        }
        Ok(())
    }

    /// `deadletter/TIME-PID.pb`, or `.pb.gz` for a payload stored compressed (kept as it is).
    fn keep_dead_letter(&mut self, payload: &[u8], encoding: Encoding) -> Result<(), SpoolError> {
        let durable = self.spool.opts.sync.is_always();
        let dir = self.spool.dir.ensure_area(Area::DeadLetter, durable)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let suffix = match encoding {
            Encoding::Identity => "pb",
            Encoding::Gzip => "pb.gz",
        };
        let path = dir.join(format!("{nanos:020}-{}.{suffix}", std::process::id()));
        self.begin_change()?;
        self.spool.dir.write_new(&path, payload, durable)?;
        self.ledger.deadletter_bytes += payload.len() as u64;
        Ok(())
    }
}
