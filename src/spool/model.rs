//! Model-based test: random sequences of appends, reads, acknowledgements, reopenings, damage
//! and the passing of time run against the real spool and against a queue that knows which segment holds each
//! record; after every step they must agree. Inside the crate, so that the small test segment
//! sizes apply and rotations, drops and retirements happen every few appends.
//!
//! What the model predicts:
//! - reads return the stored records in order, less the damaged ones, each of which is skipped
//!   and counted as corrupt once (two damaged headers in a row are one damaged region), and
//!   less those older than `max_age`, which are counted as dropped and expired;
//! - an append drops whole segments, oldest first, and counts what they held unread as dropped
//!   (and as expired when every record of the segment was older than `max_age`);
//! - the totals count every record of the live segments not yet acknowledged, damaged ones
//!   skipped in a segment that is still there included;
//! - the files never take more than `max_bytes`, and `verify` finds exactly the damage ahead.
//!
//! Time moves in steps of 20 s against a `max_age` of 70 s, so that no age falls within the
//! test's own running time of the bound. Damage is done only in runs without `max_age`.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::clock;
use super::dir::segment_name;
use super::format::{Encoding, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::txn::Locked;
use super::{AppendError, Spool, SpoolOptions, SyncPolicy, overhead};

#[derive(Debug, Clone)]
enum Action {
    Append {
        len: usize,
        spans: u32,
        /// Bytes that gzip cannot shrink: stored as they are even by a compressing spool.
        noise: bool,
    },
    /// Read and acknowledge up to `n` records, then read one more without acknowledging it.
    Drain { n: usize, peek: bool },
    /// Reopen the spool, compressing at rest from now on or not: one spool then holds both
    /// kinds of record.
    Reopen { compress: bool },
    /// Flip a byte of the `nth` (modulo) unread, undamaged record: in its header or its payload.
    Damage { nth: usize, in_header: bool },
    /// Move the spool's clock forward.
    Age { secs: u64 },
}

const MAX_AGE: Duration = Duration::from_secs(70);

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0usize..600, 0u32..5, any::<bool>()).prop_map(|(len, spans, noise)| Action::Append { len, spans, noise }),
        1 => (2000usize..9000, 0u32..5, any::<bool>()).prop_map(|(len, spans, noise)| Action::Append { len, spans, noise }),
        3 => (0usize..12, any::<bool>()).prop_map(|(n, peek)| Action::Drain { n, peek }),
        1 => any::<bool>().prop_map(|compress| Action::Reopen { compress }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(nth, in_header)| Action::Damage { nth, in_header }),
        1 => prop_oneof![Just(20u64), Just(40), Just(100)].prop_map(|secs| Action::Age { secs }),
    ]
}

fn config() -> impl Strategy<Value = SpoolOptions> {
    (
        prop_oneof![Just(8u64 << 10), Just(32 << 10), Just(256 << 10)],
        prop_oneof![Just(None), (10u64..200).prop_map(Some)],
        prop_oneof![Just(None), Just(Some(MAX_AGE))],
        any::<bool>(),
    )
        .prop_map(|(max_bytes, max_spans, max_age, compress)| SpoolOptions {
            max_bytes,
            max_spans,
            max_age,
            compression: compression(compress),
            sync: SyncPolicy::Never,
        })
}

fn compression(compress: bool) -> Encoding {
    if compress {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// The payload of record `id`: a repeating pattern (which compresses well) or noise.
fn payload(id: u64, len: usize, noise: bool) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut p: Vec<u8> = (0..len.max(8))
        .map(|i| {
            if noise {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                (id as usize * 31 + i % 64) as u8
            }
        })
        .collect();
    p[..8].copy_from_slice(&id.to_le_bytes());
    p
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    None,
    Header,
    Payload,
}

/// A stored record: where it is, and what was done to it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    len: usize,
    noise: bool,
    /// Its payload's length as stored (compressed or not).
    stored: u64,
    spans: u32,
    segment: u64,
    /// Offset of its frame in the segment.
    at: u64,
    damage: Damage,
    /// When it was appended, in the model's seconds.
    written: u64,
}

#[derive(Default)]
struct Model {
    /// Unread records, oldest first.
    queue: VecDeque<Entry>,
    /// Damaged records the reader skipped; counted until their segment goes.
    skipped: Vec<Entry>,
    dropped_batches: u64,
    dropped_spans: u64,
    corrupt: u64,
    expired: u64,
    /// The model's clock, in seconds.
    now: u64,
    max_age: Option<u64>,
    /// The newest append of each segment, in the model's seconds.
    newest: HashMap<u64, u64>,
}

impl Model {
    fn expired(&self, written: u64) -> bool {
        self.max_age.is_some_and(|max| self.now - written > max)
    }

    /// The reader passes the damaged and the expired records at the front of the queue, in one
    /// pass.
    fn pass(&mut self) {
        let mut last_skipped: Option<Entry> = None;
        while let Some(&e) = self
            .queue
            .front()
            .filter(|e| e.damage != Damage::None || self.expired(e.written))
        {
            self.queue.pop_front();
            if e.damage == Damage::None {
                self.dropped_batches += 1;
                self.dropped_spans += u64::from(e.spans);
                self.expired += 1;
                continue;
            }
            // A damaged header right after another one, both met in this pass: the reader's
            // resync skipped them at once, as one region.
            let merged = last_skipped.is_some_and(|prev| {
                prev.damage == Damage::Header
                    && e.damage == Damage::Header
                    && prev.segment == e.segment
                    && prev.at + FRAME_HEADER_LEN + prev.stored == e.at
            });
            if !merged {
                self.corrupt += 1;
            }
            last_skipped = Some(e);
            self.skipped.push(e);
        }
    }
}

fn live(dir: &Path, segment: u64) -> bool {
    dir.join(segment_name(segment)).exists()
}

fn run(opts: SpoolOptions, actions: Vec<Action>) -> Result<(), TestCaseError> {
    // Cases run one after another on one thread: each starts from the real time.
    clock::reset();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let mut opts = opts;
    let mut spool = Spool::open(&dir, opts).unwrap();
    let mut model = Model {
        max_age: opts.max_age.map(|d| d.as_secs()),
        ..Model::default()
    };
    let mut next_id = 0u64;

    for action in actions {
        match action {
            Action::Append { len, spans, noise } => {
                let id = next_id;
                next_id += 1;
                let p = payload(id, len, noise);
                let before = Locked::acquire(&spool).unwrap().ledger.clone();
                let active_before = before.active_id;
                match spool.append(&p, spans) {
                    Ok(outcome) => {
                        // Whole segments went, oldest first: every record in them is gone, and
                        // what was still unread (skipped damage included) is counted as dropped.
                        let gone = model
                            .queue
                            .iter()
                            .take_while(|e| !live(&dir, e.segment))
                            .count();
                        prop_assert!(
                            model.queue.iter().skip(gone).all(|e| live(&dir, e.segment)),
                            "only the oldest records are dropped"
                        );
                        let mut expected = (0u64, 0u64);
                        let dropped: Vec<Entry> = model.queue.drain(..gone).collect();
                        for e in dropped {
                            expected.0 += 1;
                            expected.1 += u64::from(e.spans);
                            // Counted as expired when its whole segment was.
                            if model.expired(model.newest[&e.segment]) {
                                model.expired += 1;
                            }
                        }
                        model.skipped.retain(|e| {
                            let keep = live(&dir, e.segment);
                            if !keep {
                                expected.0 += 1;
                                expected.1 += u64::from(e.spans);
                            }
                            keep
                        });
                        // The outcome names what went to make room for this batch; expired
                        // segments deleted on the way are in the totals, checked below.
                        prop_assert!(
                            outcome.dropped_batches <= expected.0
                                && outcome.dropped_spans <= expected.1,
                            "{:?} of {expected:?}",
                            (outcome.dropped_batches, outcome.dropped_spans)
                        );
                        if model.max_age.is_none() {
                            prop_assert_eq!(
                                (outcome.dropped_batches, outcome.dropped_spans),
                                expected
                            );
                        }
                        model.dropped_batches += expected.0;
                        model.dropped_spans += expected.1;
                        let l = Locked::acquire(&spool).unwrap().ledger.clone();
                        // First in a new segment, or where the last append ended.
                        let at = if l.active_id == active_before {
                            before.active_len
                        } else {
                            SEGMENT_HEADER_LEN
                        };
                        model.queue.push_back(Entry {
                            id,
                            len: p.len(),
                            noise,
                            stored: l.active_len - at - FRAME_HEADER_LEN,
                            spans,
                            segment: l.active_id,
                            at,
                            damage: Damage::None,
                            written: model.now,
                        });
                        model.newest.insert(l.active_id, model.now);
                        // An append that starts a segment drops the oldest ones that expired.
                        if l.active_id != active_before
                            && let Some(front) = model.queue.front()
                            && front.segment != l.active_id
                        {
                            prop_assert!(
                                !model.expired(model.newest[&front.segment]),
                                "a wholly expired segment outlived the start of a new one"
                            );
                        }
                    }
                    Err(AppendError::TooLarge { .. }) => {
                        prop_assert!(p.len() as u64 + overhead() > opts.max_bytes);
                    }
                    Err(e) => prop_assert!(false, "append failed: {e}"),
                }
            }
            Action::Drain { n, peek } => {
                let mut reader = spool.reader().unwrap();
                for _ in 0..n {
                    let record = reader.next().unwrap();
                    model.pass();
                    let Some(record) = record else {
                        prop_assert!(model.queue.is_empty());
                        break;
                    };
                    let e = model.queue.pop_front().expect("read more than stored");
                    prop_assert_eq!(record.plain().unwrap(), payload(e.id, e.len, e.noise));
                    prop_assert_eq!(record.span_count, e.spans);
                    reader.ack(&record).unwrap();
                }
                if peek {
                    let record = reader.next().unwrap();
                    model.pass();
                    prop_assert_eq!(
                        record.map(|r| r.plain().unwrap().to_vec()),
                        model.queue.front().map(|e| payload(e.id, e.len, e.noise))
                    );
                }
                drop(reader);
                // Segments read to their end were retired: their skipped records are no longer
                // counted.
                model.skipped.retain(|e| live(&dir, e.segment));
            }
            Action::Reopen { compress } => {
                drop(spool);
                opts.compression = compression(compress);
                spool = Spool::open(&dir, opts).unwrap();
            }
            Action::Age { secs } => {
                clock::advance(Duration::from_secs(secs));
                model.now += secs;
            }
            // The reader's count of a damaged record would then depend on the path that met it.
            Action::Damage { .. } if model.max_age.is_some() => {}
            Action::Damage { nth, in_header } => {
                let undamaged: Vec<usize> = (0..model.queue.len())
                    .filter(|&i| model.queue[i].damage == Damage::None)
                    .collect();
                if let Some(&i) = undamaged.get(nth % undamaged.len().max(1)) {
                    let e = &mut model.queue[i];
                    let (pos, damage) = if in_header {
                        (e.at + 8, Damage::Header)
                    } else {
                        (e.at + FRAME_HEADER_LEN + e.stored / 2, Damage::Payload)
                    };
                    let file = fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(dir.join(segment_name(e.segment)))
                        .unwrap();
                    let mut b = [0u8; 1];
                    file.read_exact_at(&mut b, pos).unwrap();
                    file.write_all_at(&[b[0] ^ 0x5a], pos).unwrap();
                    e.damage = damage;
                }
            }
        }
        let stats = spool.stats().unwrap();
        let counted = model
            .queue
            .iter()
            .chain(&model.skipped)
            .fold((0u64, 0u64), |(b, s), e| (b + 1, s + u64::from(e.spans)));
        prop_assert_eq!((stats.batches, stats.spans), counted);
        prop_assert_eq!(stats.dropped_batches, model.dropped_batches);
        prop_assert_eq!(stats.dropped_spans, model.dropped_spans);
        prop_assert_eq!(stats.corrupt_records, model.corrupt);
        prop_assert_eq!(stats.expired_batches, model.expired);
        prop_assert_eq!(stats.torn_records, 0);
        prop_assert!(dir_bytes(&dir) <= opts.max_bytes);
        if let Some(max) = opts.max_spans {
            prop_assert!(stats.spans <= max);
        }
    }
    // Everything still stored comes out, in order, less the damage, which verify finds first.
    let report = spool.verify().unwrap();
    let damaged = model
        .queue
        .iter()
        .filter(|e| e.damage != Damage::None)
        .count() as u64;
    prop_assert_eq!(report.records, model.queue.len() as u64 - damaged);
    prop_assert!(
        report.corrupt_records <= damaged && (damaged == 0) == (report.corrupt_records == 0)
    );
    prop_assert_eq!(report.torn_records, 0);
    let mut reader = spool.reader().unwrap();
    loop {
        let record = reader.next().unwrap();
        model.pass();
        let Some(record) = record else { break };
        let e = model
            .queue
            .pop_front()
            .expect("more records than the model");
        prop_assert_eq!(record.plain().unwrap(), payload(e.id, e.len, e.noise));
        reader.ack(&record).unwrap();
    }
    prop_assert!(model.queue.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_spool_behaves_like_a_bounded_fifo_queue_of_segments(opts in config(), actions in proptest::collection::vec(action(), 1..80)) {
        run(opts, actions)?;
    }
}
