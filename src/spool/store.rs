//! The store: one spool per OTLP signal, under one size bound.
//!
//! ```text
//! DIR/            the traces spool (the layout of every earlier version: an old spool is
//!                 a store holding traces only, read and delivered unchanged)
//!   metrics/      the metrics spool, the same layout, created with its first batch
//!   logs/         the logs spool, likewise
//! ```
//!
//! Each signal's spool has its own ledger, cursor, flush lease, dead-letter area and delivery
//! state, so the delivery of one signal never waits on another's: a missing, failing or
//! backed-off endpoint stops only its own signal. Their counters (items, dropped, rejected)
//! persist across processes in their own ledgers.
//!
//! One `max_bytes` bounds all of them together. An append that needs room first drops the
//! oldest data of whichever signal holds the oldest (counted as dropped there), then makes room
//! in its own spool as a spool alone does. The other signals' sizes are read without holding
//! their locks, so appends of different signals at the same instant can each see the other's
//! size from just before: together they may pass the bound by their own frames until the next
//! append. `max_spans` counts spans, so it bounds the traces spool only.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use super::{
    AppendError, AppendOutcome, Batch, Compress, Record, Spool, SpoolError, SpoolOptions, Stats,
};
use crate::encode::EncodedBatch;
use crate::signal::{PerSignal, Signal};

impl<'a> From<&'a EncodedBatch> for Batch<'a> {
    fn from(batch: &'a EncodedBatch) -> Batch<'a> {
        Batch {
            plain: &batch.bytes,
            gzip: batch.gzip.as_deref(),
            items: batch.items,
        }
    }
}

/// What [`Store::undelivered`] found.
#[derive(Debug, Default)]
pub struct Undelivered {
    /// Oldest append first.
    pub records: Vec<(Signal, Record)>,
    /// Damaged records skipped (corrupt or torn).
    pub damaged: u64,
}

/// One spool per signal (module doc).
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    opts: SpoolOptions,
    /// Traces opened with the store, the others on first use.
    lanes: PerSignal<OnceLock<Arc<Spool>>>,
}

impl Store {
    /// Opens the store in `path` (creating the directory `0700` if needed) and its traces spool.
    ///
    /// # Errors
    ///
    /// As [`Spool::open`].
    pub fn open(path: impl AsRef<Path>, opts: SpoolOptions) -> Result<Store, SpoolError> {
        let path = path.as_ref().to_owned();
        let traces = Spool::open(&path, opts)?;
        let store = Store {
            path,
            opts,
            lanes: Default::default(),
        };
        let _ = store.lanes.traces.set(Arc::new(traces));
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> SpoolOptions {
        self.opts
    }

    /// Where `signal`'s spool lives.
    pub fn lane_path(&self, signal: Signal) -> PathBuf {
        match signal {
            Signal::Traces => self.path.clone(),
            other => self.path.join(other.as_str()),
        }
    }

    /// The spool of `signal`, opened (and created) on first use.
    ///
    /// # Errors
    ///
    /// As [`Spool::open`], naming the signal's directory.
    pub fn lane(&self, signal: Signal) -> Result<&Arc<Spool>, SpoolError> {
        let slot = &self.lanes[signal];
        if let Some(lane) = slot.get() {
            return Ok(lane);
        }
        let opts = SpoolOptions {
            max_spans: self.opts.max_spans.filter(|_| signal == Signal::Traces),
            ..self.opts
        };
        let lane = Spool::open(self.lane_path(signal), opts)?;
        // Another thread may have opened it meanwhile: either handle serves.
        Ok(slot.get_or_init(|| Arc::new(lane)))
    }

    /// The spool of `signal` if it exists (nothing is created).
    ///
    /// # Errors
    ///
    /// As [`Spool::open`].
    pub fn existing(&self, signal: Signal) -> Result<Option<&Arc<Spool>>, SpoolError> {
        if self.lanes[signal].get().is_none()
            && !std::fs::symlink_metadata(self.lane_path(signal)).is_ok_and(|m| m.is_dir())
        {
            return Ok(None);
        }
        self.lane(signal).map(Some)
    }

    /// The traces spool (always open).
    pub fn traces(&self) -> &Arc<Spool> {
        self.lanes.traces.get().expect("opened with the store")
    }

    /// Appends one batch of `items` items (spans, data points, log records) of `signal`.
    ///
    /// # Errors
    ///
    /// As [`Spool::append`].
    pub fn append(
        &self,
        signal: Signal,
        payload: &[u8],
        items: u32,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_batch(signal, Batch::new(payload, items))
    }

    /// Appends one batch of `signal`, stored compressed as it came when it came so.
    ///
    /// # Errors
    ///
    /// As [`Spool::append`].
    pub fn append_batch(
        &self,
        signal: Signal,
        batch: Batch<'_>,
    ) -> Result<AppendOutcome, AppendError> {
        let mut results = self.append_all(signal, &[batch])?;
        results.pop().expect("one batch, one result")
    }

    /// Group commit of batches of one signal, as [`Spool::append_all`], under the shared bound.
    ///
    /// # Errors
    ///
    /// As [`Spool::append_all`].
    pub fn append_all(
        &self,
        signal: Signal,
        batches: &[Batch<'_>],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, AppendError> {
        self.append_all_compressing(signal, batches, Compress::Always)
    }

    /// [`append_all`](Store::append_all), compressing as `compress` says.
    ///
    /// # Errors
    ///
    /// As [`Spool::append_all`].
    pub fn append_all_compressing(
        &self,
        signal: Signal,
        batches: &[Batch<'_>],
        compress: Compress,
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, AppendError> {
        let lane = self.lane(signal)?;
        let others: Vec<&Arc<Spool>> = Signal::ALL
            .into_iter()
            .filter(|&s| s != signal)
            .filter_map(|s| self.existing(s).ok().flatten())
            .collect();
        // Room is made for the batches as they will be stored (compressed, or not).
        let stored = lane.stored_forms(batches, compress);
        if others.is_empty() || self.opts.max_bytes == 0 {
            return lane.append_stored_within(&stored, self.opts.max_bytes);
        }
        let incoming: u64 = stored
            .iter()
            .map(|s| s.bytes.len() as u64 + super::FRAME_HEADER_LEN)
            .sum();
        let others_bytes = self.make_room(lane, &others, incoming)?;
        lane.append_stored_within(&stored, self.opts.max_bytes.saturating_sub(others_bytes))
    }

    /// Drops the oldest data of the other signals while they hold older data than `lane` and the
    /// store has no room for `incoming` more bytes. Returns what the others take then.
    fn make_room(
        &self,
        lane: &Spool,
        others: &[&Arc<Spool>],
        incoming: u64,
    ) -> Result<u64, SpoolError> {
        // Each round drops one file; a bound's worth of segments is sixteen or so.
        const ROUNDS: usize = 64;
        let mut others_bytes = 0;
        for _ in 0..ROUNDS {
            let mut sizes = Vec::with_capacity(others.len());
            for other in others {
                sizes.push(other.footprint()?);
            }
            others_bytes = sizes.iter().sum();
            let total = others_bytes
                .saturating_add(lane.footprint()?)
                .saturating_add(incoming);
            if total <= self.opts.max_bytes {
                break;
            }
            let own_oldest = lane.stats()?.oldest_write;
            let mut victim: Option<(&Arc<Spool>, Option<SystemTime>)> = None;
            for (other, size) in others.iter().zip(sizes) {
                // An empty spool (its bookkeeping and an empty segment) has nothing to give.
                if size <= super::bounds::META_RESERVE + super::SEGMENT_HEADER_LEN {
                    continue;
                }
                // None: it holds only delivered records or inspection areas, which go first.
                let oldest = other.stats()?.oldest_write;
                let older_than_ours = match (oldest, own_oldest) {
                    (Some(theirs), Some(ours)) => theirs < ours,
                    _ => true,
                };
                if older_than_ours && victim.is_none_or(|(_, best)| oldest < best) {
                    victim = Some((other, oldest));
                }
            }
            match victim {
                Some((victim, _)) if victim.drop_oldest()? => {}
                _ => break,
            }
        }
        Ok(others_bytes)
    }

    /// The batches of `signals` waiting for delivery, and the number of damaged records
    /// skipped. Each signal's batches come in their spool's order; across signals, the one
    /// appended first comes first. Those older than `max_age` are left out: they will never be
    /// delivered. Changes nothing and takes no lease (see [`Spool::scan`]); a signal whose
    /// spool does not exist has none.
    ///
    /// # Errors
    ///
    /// As [`Spool::scan`].
    pub fn undelivered(&self, signals: &[Signal]) -> Result<Undelivered, SpoolError> {
        let now = super::clock::now();
        let mut damaged = 0;
        let mut lanes: Vec<std::collections::VecDeque<Record>> = Vec::new();
        let mut of = Vec::new();
        for &signal in signals {
            let Some(lane) = self.existing(signal)? else {
                continue;
            };
            let mut records = std::collections::VecDeque::new();
            let report = lane.scan(|record| {
                let expired = self
                    .opts
                    .max_age
                    .is_some_and(|age| super::bounds::expired(record.written_at, now, age));
                if !expired {
                    records.push_back(record);
                }
                ControlFlow::Continue(())
            })?;
            damaged += report.corrupt_records + report.torn_records;
            lanes.push(records);
            of.push(signal);
        }
        // A merge, not a sort: a spool's own order stands even if the clock went back.
        let mut records = Vec::with_capacity(lanes.iter().map(|l| l.len()).sum());
        while let Some(next) = (0..lanes.len())
            .filter_map(|i| Some((i, lanes[i].front()?.written_at)))
            .min_by_key(|&(i, at)| (at, i))
            .map(|(i, _)| i)
        {
            let record = lanes[next].pop_front().expect("a front was seen");
            records.push((of[next], record));
        }
        Ok(Undelivered { records, damaged })
    }

    /// What each signal's spool holds, for those that exist.
    ///
    /// # Errors
    ///
    /// As [`Spool::stats`].
    pub fn stats(&self) -> Result<Vec<(Signal, Stats)>, SpoolError> {
        let mut all = Vec::with_capacity(3);
        for signal in Signal::ALL {
            if let Some(lane) = self.existing(signal)? {
                all.push((signal, lane.stats()?));
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Encoding, SyncPolicy};

    fn store(dir: &Path, max_bytes: u64) -> Store {
        // Sizes as given: the bound's arithmetic is what is tested.
        let opts = SpoolOptions {
            max_bytes,
            compression: Encoding::Identity,
            sync: SyncPolicy::Never,
            ..SpoolOptions::default()
        };
        Store::open(dir, opts).unwrap()
    }

    fn waiting(store: &Store, signal: Signal) -> (u64, u64) {
        store
            .existing(signal)
            .unwrap()
            .map(|lane| {
                let s = lane.stats().unwrap();
                (s.batches, s.spans)
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_store_is_the_traces_spool_and_creates_no_other_signal_until_it_gets_one() {
        let tmp = tempfile::tempdir().unwrap();
        let old = Spool::open(tmp.path(), SpoolOptions::default()).unwrap();
        old.append(b"an old batch", 3).unwrap();
        drop(old);

        let s = store(tmp.path(), 64 * 1024 * 1024);
        assert_eq!(waiting(&s, Signal::Traces), (1, 3));
        assert_eq!(s.stats().unwrap().len(), 1, "only traces");
        assert!(!tmp.path().join("metrics").exists());
        s.append(Signal::Metrics, b"points", 5).unwrap();
        assert!(tmp.path().join("metrics").is_dir());
        assert_eq!(waiting(&s, Signal::Metrics), (1, 5));
        assert_eq!(waiting(&s, Signal::Traces), (1, 3));
        assert_eq!(waiting(&s, Signal::Logs), (0, 0));
    }

    #[test]
    fn each_signal_has_its_own_flush_lease_and_cursor() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), 64 * 1024 * 1024);
        s.append(Signal::Traces, b"span", 1).unwrap();
        s.append(Signal::Metrics, b"point", 1).unwrap();
        // A metrics flush under way (its lease held) holds up no trace delivery.
        let metrics = s.lane(Signal::Metrics).unwrap();
        let _metrics_reader = metrics.reader().unwrap();
        let mut traces = s.traces().reader().unwrap();
        let record = traces.next().unwrap().expect("the span");
        assert_eq!(&record.payload[..], b"span");
        traces.ack(&record).unwrap();
        assert!(
            traces.next().unwrap().is_none(),
            "no metrics in the traces spool"
        );
        drop(traces);
        assert_eq!(waiting(&s, Signal::Traces), (0, 0));
        assert_eq!(waiting(&s, Signal::Metrics), (1, 1));
    }

    #[test]
    fn one_bound_holds_all_signals_and_the_oldest_data_goes_first_whatever_its_signal() {
        let tmp = tempfile::tempdir().unwrap();
        let max = 16 * 1024;
        let s = store(tmp.path(), max);
        let batch = [7u8; 200];
        // Metrics fill the store first: they are the oldest data.
        for _ in 0..60 {
            s.append(Signal::Metrics, &batch, 2).unwrap();
        }
        let metrics_before = waiting(&s, Signal::Metrics).0;
        let metrics_dropped_before = s
            .lane(Signal::Metrics)
            .unwrap()
            .stats()
            .unwrap()
            .dropped_batches;
        // Then traces arrive: room is made in the metrics, not in the newer traces.
        for _ in 0..20 {
            let outcome = s.append(Signal::Traces, &batch, 1).unwrap();
            assert!(outcome.stored);
        }
        let total: u64 = Signal::ALL
            .into_iter()
            .filter_map(|sig| s.existing(sig).unwrap())
            .map(|lane| lane.footprint().unwrap())
            .sum();
        assert!(total <= max, "{total} > {max}");
        assert_eq!(waiting(&s, Signal::Traces), (20, 20), "no trace dropped");
        let metrics = s.lane(Signal::Metrics).unwrap().stats().unwrap();
        assert!(metrics.batches < metrics_before, "{metrics:?}");
        let dropped = metrics.dropped_batches - metrics_dropped_before;
        assert_eq!(
            dropped,
            metrics_before - metrics.batches,
            "every loss counted"
        );
        assert_eq!(metrics.dropped_spans, 2 * metrics.dropped_batches);
    }

    #[test]
    fn counts_of_each_signal_persist_across_processes() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let s = store(tmp.path(), 64 * 1024 * 1024);
            s.append(Signal::Logs, b"records", 4).unwrap();
            s.lane(Signal::Logs).unwrap().count_rejected(3).unwrap();
        }
        let s = store(tmp.path(), 64 * 1024 * 1024);
        let logs = s.existing(Signal::Logs).unwrap().unwrap().stats().unwrap();
        assert_eq!((logs.batches, logs.spans, logs.rejected_spans), (1, 4, 3));
        assert_eq!(s.traces().stats().unwrap().rejected_spans, 0);
    }

    #[test]
    fn the_span_bound_applies_to_traces_only() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = SpoolOptions {
            max_spans: Some(10),
            sync: SyncPolicy::Never,
            ..SpoolOptions::default()
        };
        let s = Store::open(tmp.path(), opts).unwrap();
        s.append(Signal::Metrics, b"many points", 50).unwrap();
        assert_eq!(waiting(&s, Signal::Metrics), (1, 50));
        assert!(s.append(Signal::Traces, b"spans", 50).is_err());
    }

    #[test]
    fn the_undelivered_batches_come_oldest_first_across_signals_and_nothing_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), 1 << 20);
        let appends = [
            (Signal::Traces, "t1"),
            (Signal::Logs, "l1"),
            (Signal::Traces, "t2"),
            (Signal::Metrics, "m1"),
            (Signal::Logs, "l2"),
        ];
        for (signal, payload) in appends {
            s.append(signal, payload.as_bytes(), 1).unwrap();
        }
        // One delivered already: not waiting any more.
        let mut reader = s.traces().reader().unwrap();
        let first = reader.next().unwrap().unwrap();
        reader.ack(&first).unwrap();
        drop(reader);
        let stats = s.stats().unwrap();

        let all = s.undelivered(&Signal::ALL).unwrap();
        let got: Vec<(Signal, &[u8])> = all
            .records
            .iter()
            .map(|(signal, r)| (*signal, &r.payload[..]))
            .collect();
        let want: Vec<(Signal, &[u8])> = appends[1..]
            .iter()
            .map(|(signal, p)| (*signal, p.as_bytes()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(all.damaged, 0);
        let logs = s.undelivered(&[Signal::Logs]).unwrap();
        assert_eq!(logs.records.len(), 2);
        assert_eq!(s.stats().unwrap(), stats, "a read-only pass");
    }

    #[test]
    fn undelivered_batches_past_max_age_are_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = SpoolOptions {
            max_age: Some(std::time::Duration::from_secs(3600)),
            sync: SyncPolicy::Never,
            ..SpoolOptions::default()
        };
        let s = Store::open(tmp.path(), opts).unwrap();
        s.append(Signal::Traces, b"old", 1).unwrap();
        crate::spool::clock::advance(std::time::Duration::from_secs(3000));
        s.append(Signal::Traces, b"new", 1).unwrap();
        crate::spool::clock::advance(std::time::Duration::from_secs(1000));
        let left: Vec<Vec<u8>> = s
            .undelivered(&Signal::ALL)
            .unwrap()
            .records
            .into_iter()
            .map(|(_, r)| r.payload.to_vec())
            .collect();
        crate::spool::clock::reset();
        assert_eq!(left, [b"new".to_vec()]);
    }

    #[test]
    fn a_signal_directory_that_is_a_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), 64 * 1024 * 1024);
        std::os::unix::fs::symlink(elsewhere.path(), tmp.path().join("logs")).unwrap();
        let err = s.append(Signal::Logs, b"x", 1).unwrap_err();
        assert!(err.to_string().contains("logs"), "{err}");
        assert!(
            std::fs::read_dir(elsewhere.path())
                .unwrap()
                .next()
                .is_none()
        );
    }
}
