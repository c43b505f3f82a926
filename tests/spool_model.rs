//! Model-based test: random sequences of appends, reads, acknowledgements and reopenings run
//! against the real spool and against a `VecDeque`; after every step they must agree.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;

use proptest::prelude::*;
use tracespool::spool::{AppendError, Spool, SpoolOptions, SyncPolicy, overhead};

#[derive(Debug, Clone)]
enum Action {
    Append {
        len: usize,
        spans: u32,
    },
    /// Read and acknowledge up to `n` records, then read one more without acknowledging it.
    Drain {
        n: usize,
        peek: bool,
    },
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0usize..3000, 0u32..5).prop_map(|(len, spans)| Action::Append { len, spans }),
        1 => (30_000usize..70_000, 0u32..5).prop_map(|(len, spans)| Action::Append { len, spans }),
        3 => (0usize..12, any::<bool>()).prop_map(|(n, peek)| Action::Drain { n, peek }),
        1 => Just(Action::Reopen),
    ]
}

fn config() -> impl Strategy<Value = SpoolOptions> {
    (
        prop_oneof![Just(64u64 << 10), Just(256 << 10), Just(8 << 20)],
        prop_oneof![Just(None), (10u64..200).prop_map(Some)],
    )
        .prop_map(|(max_bytes, max_spans)| SpoolOptions {
            max_bytes,
            max_spans,
            sync: SyncPolicy::Never,
        })
}

fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len.max(8))
        .map(|i| (id as usize * 31 + i) as u8)
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

#[derive(Default)]
struct Model {
    queue: VecDeque<(u64, usize, u32)>,
    dropped_batches: u64,
    dropped_spans: u64,
}

fn run(opts: SpoolOptions, actions: Vec<Action>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = Spool::open(&dir, opts).unwrap();
    let mut model = Model::default();
    let mut next_id = 0u64;

    for action in actions {
        match action {
            Action::Append { len, spans } => {
                let id = next_id;
                next_id += 1;
                let p = payload(id, len);
                match spool.append(&p, spans) {
                    Ok(outcome) => {
                        let mut spans_gone = 0;
                        for _ in 0..outcome.dropped_batches {
                            let (_, _, s) =
                                model.queue.pop_front().expect("dropped more than stored");
                            spans_gone += u64::from(s);
                        }
                        prop_assert_eq!(
                            outcome.dropped_spans,
                            spans_gone,
                            "drops are the oldest batches"
                        );
                        model.dropped_batches += outcome.dropped_batches;
                        model.dropped_spans += outcome.dropped_spans;
                        model.queue.push_back((id, p.len(), spans));
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
                    let Some(record) = reader.next().unwrap() else {
                        prop_assert!(model.queue.is_empty());
                        break;
                    };
                    let (id, len, spans) = model.queue.pop_front().expect("read more than stored");
                    prop_assert_eq!(&record.payload, &payload(id, len));
                    prop_assert_eq!(record.span_count, spans);
                    reader.ack(&record).unwrap();
                }
                if peek {
                    let record = reader.next().unwrap();
                    prop_assert_eq!(
                        record.map(|r| r.payload.to_vec()),
                        model.queue.front().map(|&(id, len, _)| payload(id, len))
                    );
                }
            }
            Action::Reopen => {
                drop(spool);
                spool = Spool::open(&dir, opts).unwrap();
            }
        }
        let stats = spool.stats().unwrap();
        prop_assert_eq!(stats.batches, model.queue.len() as u64);
        prop_assert_eq!(
            stats.spans,
            model
                .queue
                .iter()
                .map(|&(_, _, s)| u64::from(s))
                .sum::<u64>()
        );
        prop_assert_eq!(stats.dropped_batches, model.dropped_batches);
        prop_assert_eq!(stats.dropped_spans, model.dropped_spans);
        prop_assert!(dir_bytes(&dir) <= opts.max_bytes);
        if let Some(max) = opts.max_spans {
            prop_assert!(stats.spans <= max);
        }
    }
    // Everything still stored comes out, in order, and verifies clean.
    let report = spool.verify().unwrap();
    prop_assert_eq!(
        (report.records, report.corrupt_records, report.torn_records),
        (model.queue.len() as u64, 0, 0)
    );
    let mut reader = spool.reader().unwrap();
    while let Some(record) = reader.next().unwrap() {
        let (id, len, _) = model
            .queue
            .pop_front()
            .expect("more records than the model");
        prop_assert_eq!(&record.payload, &payload(id, len));
        reader.ack(&record).unwrap();
    }
    prop_assert!(model.queue.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_spool_behaves_like_a_bounded_fifo_queue(opts in config(), actions in proptest::collection::vec(action(), 1..80)) {
        run(opts, actions)?;
    }
}
