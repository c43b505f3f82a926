//! Appending a batch. The steps and their order are described in the module doc of `spool`.

use std::borrow::Cow;

use super::Spool;
use super::bounds;
use super::clock;
use super::dir::segment_name;
use super::error::AppendError;
use super::format::{Encoding, FrameHeader, SEGMENT_HEADER_LEN};
use super::txn::{Locked, Lost};
use crate::gzip;

/// Payloads shorter than this are stored as they are: gzip's own framing (18 bytes) leaves too
/// little to gain.
const MIN_COMPRESSED: usize = 128;

/// A batch to append: its encoded export request and the number of items in it.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The payload, plain.
    pub plain: &'a [u8],
    /// The same payload gzip-compressed, when the caller has it already (a body received
    /// gzip-encoded): a spool that compresses stores it instead of compressing again.
    pub gzip: Option<&'a [u8]>,
    pub items: u32,
}

impl<'a> Batch<'a> {
    pub fn new(plain: &'a [u8], items: u32) -> Batch<'a> {
        Batch {
            plain,
            gzip: None,
            items,
        }
    }
}

/// Which batches an append compresses, in a spool that compresses at rest (one that does not
/// compresses nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// Every batch worth it: it is likely to wait (the default).
    Always,
    /// Only keep the gzip form a batch came with (that costs nothing): for batches that are
    /// about to be forwarded, where compressing would only slow the intake down.
    ReceivedOnly,
}

/// A batch in the form it is stored in.
pub(crate) struct Stored<'b> {
    pub(crate) bytes: Cow<'b, [u8]>,
    encoding: Encoding,
    items: u32,
}

/// What an append cost others: batches and spans dropped to make room (already counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// False when spooling is disabled (`max_bytes = 0`): the batch itself was dropped (and is
    /// counted in the fields below).
    pub stored: bool,
    pub dropped_batches: u64,
    pub dropped_spans: u64,
}

impl AppendOutcome {
    /// For a receiver, whose client must never be told "stored" for data that was not: `Ok`
    /// when the batch is in the spool (warning about older batches dropped for it).
    ///
    /// # Errors
    ///
    /// [`AppendError::Disabled`] when spooling is disabled and the batch was dropped.
    pub fn accepted(self) -> Result<(), AppendError> {
        if !self.stored {
            return Err(AppendError::Disabled);
        }
        self.warn_if_dropped();
        Ok(())
    }

    /// Says so (a warning) when the append dropped stored batches to make room.
    pub fn warn_if_dropped(&self) {
        if self.stored && self.dropped_batches > 0 {
            tracing::warn!(
                batches = self.dropped_batches,
                spans = self.dropped_spans,
                "spool full: dropped the oldest batches"
            );
        }
    }
}

impl Spool {
    /// Appends one batch of `span_count` spans. When `Ok` is returned the batch is stored (synced
    /// under [`SyncPolicy::Always`](super::SyncPolicy::Always)); the outcome tells what was
    /// dropped to make room for it.
    ///
    /// # Errors
    ///
    /// [`AppendError::TooLarge`] / [`AppendError::TooManySpans`] for a batch no spool with these
    /// bounds can hold; [`AppendError::NoSpace`] when the disk is full; I/O errors otherwise.
    /// After an error the batch is not to be taken as stored, though one whose final sync failed
    /// may still be delivered (at least once); nothing else held before is lost (less any
    /// drops made to make room).
    pub fn append(&self, payload: &[u8], span_count: u32) -> Result<AppendOutcome, AppendError> {
        self.append_batch(Batch::new(payload, span_count))
    }

    /// [`append`](Spool::append) of a batch that may come with its gzip form (stored as it is
    /// when the spool compresses).
    ///
    /// # Errors
    ///
    /// As [`append`](Spool::append).
    pub fn append_batch(&self, batch: Batch<'_>) -> Result<AppendOutcome, AppendError> {
        let mut results = self.append_all(&[batch])?;
        results.pop().expect("one batch, one result")
    }

    /// Group commit: appends `batches` in order under one hold of the append lock, with one
    /// `fdatasync` for all of them. The result at each index is that batch's, as from
    /// [`append`](Spool::append); the `Ok`s are durable once this returns `Ok`.
    ///
    /// # Errors
    ///
    /// The outer error when the lock cannot be taken or the final sync fails: then none of the
    /// group may be taken as stored (those written may still be delivered: at least once).
    pub fn append_all(
        &self,
        batches: &[Batch<'_>],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, AppendError> {
        self.append_all_within(batches, self.opts.max_bytes)
    }

    /// [`append_all`](Spool::append_all), making room as if the bound were `limit` bytes (at
    /// most `max_bytes`): what is left of the bound that this spool shares with others (one
    /// per signal, under one `max_bytes`).
    pub(crate) fn append_all_within(
        &self,
        batches: &[Batch<'_>],
        limit: u64,
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, AppendError> {
        self.append_stored_within(&self.stored_forms(batches, Compress::Always), limit)
    }

    /// `batches` as they will be stored (see [`stored_form`](Spool::stored_form)). Done before
    /// the lock is taken: other appenders do not wait for the compression.
    pub(crate) fn stored_forms<'b>(
        &self,
        batches: &[Batch<'b>],
        compress: Compress,
    ) -> Vec<Stored<'b>> {
        batches
            .iter()
            .map(|batch| {
                let (bytes, encoding) = self.stored_form(batch, compress);
                Stored {
                    bytes,
                    encoding,
                    items: batch.items,
                }
            })
            .collect()
    }

    /// [`append_all_within`](Spool::append_all_within) of batches in their stored form.
    pub(crate) fn append_stored_within(
        &self,
        stored: &[Stored<'_>],
        limit: u64,
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, AppendError> {
        let limit = limit.min(self.opts.max_bytes);
        let mut locked = Locked::acquire(self)?;
        let results = stored
            .iter()
            .map(|s| self.append_locked(&mut locked, &s.bytes, s.encoding, s.items, limit))
            .collect();
        let synced = locked.sync_written();
        locked.commit()?;
        synced.map_err(|e| {
            AppendError::from_io(self.dir.join(&segment_name(locked.ledger.active_id)), e)
        })?;
        Ok(results)
    }

    /// The bytes a batch is stored as: gzip-compressed when the spool compresses and that
    /// saves at least a tenth (the batch's own gzip form when it came with one; compressed
    /// here as `compress` says), else as given.
    fn stored_form<'b>(&self, batch: &Batch<'b>, compress: Compress) -> (Cow<'b, [u8]>, Encoding) {
        let plain = batch.plain;
        if self.opts.compression != Encoding::Gzip || plain.len() < MIN_COMPRESSED {
            return (Cow::Borrowed(plain), Encoding::Identity);
        }
        let gz = match (batch.gzip, compress) {
            (Some(gz), _) => Cow::Borrowed(gz),
            (None, Compress::Always) => Cow::Owned(gzip::compress(plain)),
            (None, Compress::ReceivedOnly) => return (Cow::Borrowed(plain), Encoding::Identity),
        };
        // At least a tenth smaller, or not worth decompressing later.
        if gz.len().saturating_mul(10) <= plain.len().saturating_mul(9) {
            (gz, Encoding::Gzip)
        } else {
            (Cow::Borrowed(plain), Encoding::Identity)
        }
    }

    fn append_locked(
        &self,
        locked: &mut Locked<'_>,
        payload: &[u8],
        encoding: Encoding,
        span_count: u32,
        limit: u64,
    ) -> Result<AppendOutcome, AppendError> {
        let max_bytes = self.opts.max_bytes;
        if max_bytes == 0 {
            locked.count_dropped(1, span_count.into(), Lost::Dropped);
            return Ok(AppendOutcome {
                stored: false,
                dropped_batches: 1,
                dropped_spans: span_count.into(),
            });
        }
        let Some(frame_len) = bounds::frame_len_if_fits(payload.len() as u64, max_bytes) else {
            return Err(AppendError::TooLarge {
                size: payload.len() as u64,
                max_bytes,
                overhead: bounds::overhead(),
            });
        };
        if let Some(max_spans) = self.opts.max_spans.filter(|&m| u64::from(span_count) > m) {
            return Err(AppendError::TooManySpans {
                spans: span_count.into(),
                max_spans,
            });
        }

        let header = FrameHeader::new(payload, span_count, clock::now(), encoding);

        let target = bounds::segment_target(max_bytes);
        let mut size = match locked.active()? {
            // Equal to the recorded length: no writer died mid-append (else its torn tail is
            // left behind in a sealed segment); a header of ours (not cut short, damaged or of a
            // newer format); and room before the segment target.
            Some(size)
                if locked.inner.active_ours
                    && size >= SEGMENT_HEADER_LEN
                    && size == locked.ledger.active_len
                    && (size + frame_len <= target || locked.ledger.active_batches == 0) =>
            {
                size
            }
            _ => {
                let size = locked.rotate()?;
                // Once per segment: the oldest ones, if wholly expired, go now.
                if self.opts.max_age.is_some() {
                    locked.drop_expired(&self.read_cursor()?)?;
                }
                size
            }
        };
        // What goes from here on goes to make room (expired segments went above, and are
        // counted as such, not as the price of this batch).
        let before = (locked.ledger.dropped_batches, locked.ledger.dropped_spans);

        // The cursor tells what is already acknowledged: needed to count spans, or to drop.
        let mut cursor = match self.opts.max_spans {
            Some(_) => Some(self.read_cursor()?),
            None => None,
        };
        while !locked.usage(size, cursor.as_ref()).admits(
            frame_len,
            span_count.into(),
            limit,
            self.opts.max_spans,
        ) {
            let c = match cursor {
                Some(c) => c,
                None => *cursor.insert(self.read_cursor()?),
            };
            if !locked.drop_oldest(&c)? {
                break; // unreachable for a batch that passed frame_len_if_fits
            }
            size = match locked.active()? {
                Some(size) => size,
                None => locked.rotate()?,
            };
        }

        let id = locked.ledger.active_id;
        locked
            .write_frame(size, &header, payload)
            .map_err(|e| AppendError::from_io(self.dir.join(&segment_name(id)), e))?;
        Ok(AppendOutcome {
            stored: true,
            dropped_batches: locked.ledger.dropped_batches - before.0,
            dropped_spans: locked.ledger.dropped_spans - before.1,
        })
    }
}
