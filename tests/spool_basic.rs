//! The spool's API, one behaviour per test.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use tracespool::spool::{
    AppendError, Batch, Encoding, Spool, SpoolError, SpoolOptions, SyncPolicy,
};

fn opts(max_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        max_bytes,
        max_spans: None,
        max_age: None,
        compression: Encoding::Identity,
        sync: SyncPolicy::Never,
    }
}

fn drain(spool: &Spool) -> Vec<Vec<u8>> {
    let mut reader = spool.reader().unwrap();
    let mut out = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        reader.ack(&record).unwrap();
        out.push(record.payload.to_vec());
    }
    out
}

/// `n` batches of `len` bytes each (`batch 7 xxx…`), appended to `spool` in order.
fn append_numbered(spool: &Spool, n: u32, len: usize) -> Vec<Vec<u8>> {
    let batches: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut b = format!("batch {i} ").into_bytes();
            b.resize(len, b'x');
            b
        })
        .collect();
    for b in &batches {
        spool.append(b, 1).unwrap();
    }
    batches
}

#[test]
fn a_record_read_ahead_is_the_next_one_only_once_its_predecessor_is_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    // Small segments: some records are the last of theirs, and are not read ahead across.
    let spool = Spool::open(tmp.path().join("s"), opts(64 * 1024)).unwrap();
    let batches = append_numbered(&spool, 60, 311);
    let mut reader = spool.reader().unwrap();
    let mut got = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        reader.read_ahead(&record);
        // Not acknowledged yet: still this record, whatever was read ahead.
        assert_eq!(reader.next().unwrap().unwrap(), record);
        reader.read_ahead(&record);
        if got.len() % 7 == 3 {
            // Dead-lettered instead of delivered: the record read ahead still comes next.
            reader.dead_letter(&record).unwrap();
        } else {
            reader.ack_deferred(&record).unwrap();
        }
        got.push(record.payload.to_vec());
    }
    assert_eq!(got, batches);
    drop(reader);
    assert_eq!(spool.stats().unwrap().batches, 0);
}

#[test]
fn the_next_record_is_in_memory_except_across_a_read_chunk_and_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path().join("s"), opts(64 * 1024 * 1024)).unwrap();
    // 400 KB: the reader's 64 KiB chunks end a few times in the middle of a record.
    let batches = append_numbered(&spool, 400, 1001);
    let mut reader = spool.reader().unwrap();
    let mut in_memory = Vec::new();
    let mut got = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        in_memory.push(reader.next_in_memory(&record));
        reader.ack_deferred(&record).unwrap();
        got.push(record.payload.to_vec());
    }
    assert_eq!(got, batches);
    assert_eq!(
        in_memory.last(),
        Some(&false),
        "nothing follows the last record"
    );
    let misses = in_memory.iter().filter(|&&m| !m).count();
    assert!(
        (5..=10).contains(&misses),
        "{misses} of 400 records not followed by one in memory"
    );
}

#[test]
fn records_larger_than_a_read_chunk_come_back_whole_between_small_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path().join("s"), opts(64 * 1024 * 1024)).unwrap();
    let batches: Vec<Vec<u8>> = [10usize, 200_000, 65_536, 65_535, 7, 131_072, 3]
        .iter()
        .enumerate()
        .map(|(i, &len)| (0..len).map(|j| (i * 31 + j * 7) as u8).collect())
        .collect();
    for b in &batches {
        spool.append(b, 1).unwrap();
    }
    assert_eq!(drain(&spool), batches);
}

#[test]
fn a_deferred_acknowledgement_of_any_record_but_the_next_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path().join("s"), opts(1024 * 1024)).unwrap();
    for i in 0..3u32 {
        spool.append(format!("batch {i}").as_bytes(), 1).unwrap();
    }
    let mut reader = spool.reader().unwrap();
    let first = reader.next().unwrap().unwrap();
    reader.read_ahead(&first);
    reader.ack_deferred(&first).unwrap();
    let second = reader.next().unwrap().unwrap();
    assert!(matches!(
        reader.ack_deferred(&first),
        Err(SpoolError::NotNext)
    ));
    reader.read_ahead(&second);
    reader.ack_deferred(&second).unwrap();
    assert!(matches!(
        reader.ack_deferred(&second),
        Err(SpoolError::NotNext)
    ));
    drop(reader);
    assert_eq!(drain(&spool), vec![b"batch 2".to_vec()]);
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[test]
fn records_come_back_oldest_first_and_acknowledged_ones_are_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path().join("s"), SpoolOptions::default()).unwrap();
    for i in 0..10u32 {
        spool.append(format!("batch {i}").as_bytes(), i).unwrap();
    }
    let stats = spool.stats().unwrap();
    assert_eq!((stats.batches, stats.spans), (10, 45));
    assert!(stats.oldest_write.is_some());

    let mut reader = spool.reader().unwrap();
    let first = reader.next().unwrap().unwrap();
    assert_eq!(first.payload, &b"batch 0"[..]);
    // Not acknowledged: the same record again.
    assert_eq!(reader.next().unwrap().unwrap(), first);
    reader.ack(&first).unwrap();
    assert!(matches!(reader.ack(&first), Err(SpoolError::NotNext)));
    drop(reader);

    let reopened = Spool::open(tmp.path().join("s"), SpoolOptions::default()).unwrap();
    let rest = drain(&reopened);
    assert_eq!(rest.len(), 9);
    assert_eq!(rest[0], b"batch 1");
    assert_eq!(rest[8], b"batch 9");
    let stats = reopened.stats().unwrap();
    assert_eq!(
        (stats.batches, stats.spans, stats.oldest_write),
        (0, 0, None)
    );
    assert!(drain(&reopened).is_empty());
}

#[test]
fn the_size_bound_holds_after_every_append_and_drops_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s");
    let max = 64 * 1024;
    let spool = Spool::open(&path, opts(max)).unwrap();
    let mut dropped = 0;
    for i in 0..500u32 {
        let payload = vec![i as u8; 700 + (i as usize * 37) % 900];
        let outcome = spool.append(&payload, 2).unwrap();
        dropped += outcome.dropped_batches;
        assert!(
            dir_bytes(&path) <= max,
            "after append {i}: {} > {max}",
            dir_bytes(&path)
        );
    }
    let stats = spool.stats().unwrap();
    assert!(dropped > 0);
    assert_eq!(stats.dropped_batches, dropped);
    assert_eq!(stats.dropped_spans, dropped * 2);
    let kept = drain(&spool);
    assert_eq!(kept.len() as u64 + dropped, 500);
    // The newest survive, in order.
    assert_eq!(kept.last().unwrap()[0], 499u32 as u8);
}

#[test]
fn a_batch_larger_than_the_bound_is_refused_naming_both_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path(), opts(64 * 1024)).unwrap();
    let err = spool.append(&vec![0u8; 70_000], 1).unwrap_err();
    assert!(err.is_unfit());
    let msg = err.to_string();
    assert!(msg.contains("70000") && msg.contains("65536"), "{msg}");
    assert_eq!(spool.stats().unwrap().batches, 0);
}

#[test]
fn max_bytes_zero_drops_and_counts_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path(), opts(0)).unwrap();
    let outcome = spool.append(b"x", 3).unwrap();
    assert_eq!((outcome.dropped_batches, outcome.dropped_spans), (1, 3));
    let stats = spool.stats().unwrap();
    assert_eq!(
        (stats.batches, stats.dropped_batches, stats.dropped_spans),
        (0, 1, 3)
    );
    assert!(drain(&spool).is_empty());
}

#[test]
fn the_span_bound_drops_the_oldest_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        tmp.path(),
        SpoolOptions {
            max_spans: Some(10),
            ..opts(1 << 20)
        },
    )
    .unwrap();
    for i in 0..8u8 {
        spool.append(&[i; 5000], 3).unwrap();
    }
    let stats = spool.stats().unwrap();
    assert!(stats.spans <= 10, "{stats:?}");
    assert_eq!(stats.dropped_spans + stats.spans, 24);
    assert!(matches!(
        spool.append(b"x", 11),
        Err(AppendError::TooManySpans {
            spans: 11,
            max_spans: 10
        })
    ));
}

#[test]
fn a_second_flusher_learns_at_once_that_one_is_running() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Spool::open(tmp.path(), opts(1 << 20)).unwrap();
    let b = Spool::open(tmp.path(), opts(1 << 20)).unwrap();
    let reader = a.reader().unwrap();
    assert!(matches!(b.reader(), Err(SpoolError::FlushLeaseHeld { .. })));
    drop(reader);
    b.reader().unwrap();
}

#[test]
fn directory_is_private_and_files_are_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nested/spool");
    let spool = Spool::open(&path, SpoolOptions::default()).unwrap();
    spool.append(b"x", 1).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for entry in fs::read_dir(&path).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
    }
}

#[test]
fn a_symlinked_directory_or_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = Spool::open(&link, SpoolOptions::default()).unwrap_err();
    assert!(matches!(err, SpoolError::Symlink { .. }), "{err}");
    assert!(err.to_string().contains("link"));

    let dir = tmp.path().join("s");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("elsewhere"), dir.join("ledger")).unwrap();
    let err = Spool::open(&dir, SpoolOptions::default()).unwrap_err();
    assert!(matches!(err, SpoolError::Symlink { .. }), "{err}");
    assert!(!tmp.path().join("elsewhere").exists());
}

#[test]
fn a_directory_owned_by_another_user_is_refused() {
    // Safety: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("not root: cannot create a directory owned by another user; covered in CI");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("theirs");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let err = Spool::open(&dir, SpoolOptions::default()).unwrap_err();
    assert!(
        matches!(err, SpoolError::ForeignOwner { owner: 65534, .. }),
        "{err}"
    );
    assert!(err.is_refused_path());
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn a_symlink_under_a_segment_name_is_neither_followed_nor_in_the_way() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let outside = tmp.path().join("outside");
    fs::write(&outside, b"secret").unwrap();
    let spool = Spool::open(&dir, opts(1 << 20)).unwrap();
    spool.append(b"one", 1).unwrap();
    // Planted at the id the next segment would take, and at an older one.
    std::os::unix::fs::symlink(&outside, dir.join("00000000000000000002.seg")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("00000000000000000000.seg")).unwrap();
    drop(spool);

    let spool = Spool::open(&dir, opts(1 << 20)).unwrap();
    for _ in 0..200 {
        spool.append(&[7u8; 1000], 1).unwrap(); // rotates past the planted name
    }
    let got = drain(&spool);
    assert_eq!(got.len(), 201);
    assert_eq!(got[0], b"one");
    assert_eq!(fs::read(&outside).unwrap(), b"secret");
    assert!(
        fs::symlink_metadata(dir.join("00000000000000000002.seg"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn threads_sharing_one_spool_and_separate_handles_append_without_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = Spool::open(tmp.path(), opts(64 << 20)).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let shared = &shared;
            let path = tmp.path();
            s.spawn(move || {
                // Half the threads use the shared handle, half their own.
                let own = (t % 2 == 1).then(|| Spool::open(path, opts(64 << 20)).unwrap());
                let spool = own.as_ref().unwrap_or(shared);
                for i in 0..200u32 {
                    let mut p = vec![t; 100 + (i as usize % 7) * 300];
                    p[..4].copy_from_slice(&i.to_le_bytes());
                    spool.append(&p, 1).unwrap();
                }
            });
        }
    });
    let mut next = [0u32; 8];
    for p in drain(&shared) {
        let t = p[p.len() - 1] as usize;
        let i = u32::from_le_bytes(p[..4].try_into().unwrap());
        assert_eq!(i, next[t], "thread {t}: out of order or duplicated");
        next[t] += 1;
    }
    assert_eq!(next, [200; 8]);
    assert_eq!(shared.verify().unwrap().corrupt_records, 0);
}

#[test]
fn rejected_batches_go_to_a_bounded_dead_letter_area_and_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let max = 256 * 1024;
    let spool = Spool::open(&dir, opts(max)).unwrap();
    for i in 0..3u8 {
        spool.append(&[i; 10_000], 4).unwrap();
    }
    let mut reader = spool.reader().unwrap();
    let first = reader.next().unwrap().unwrap();
    reader.dead_letter(&first).unwrap();
    let second = reader.next().unwrap().unwrap();
    assert_eq!(
        second.payload[0], 1,
        "a dead-lettered record is acknowledged"
    );
    drop(reader);
    spool.count_rejected(2).unwrap();
    let stats = spool.stats().unwrap();
    assert_eq!(
        (stats.batches, stats.rejected_spans, stats.deadletter_bytes),
        (2, 6, 10_000)
    );
    let kept: Vec<_> = fs::read_dir(dir.join("deadletter"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(fs::read(&kept[0]).unwrap(), vec![0u8; 10_000]);
    assert_eq!(fs::metadata(&kept[0]).unwrap().mode() & 0o777, 0o600);

    // The area keeps at most an eighth of the bound: the oldest go.
    for i in 0..10u8 {
        spool.dead_letter(&[i; 10_000], 1).unwrap();
        assert!(dir_bytes(&dir) <= max);
    }
    assert!(spool.stats().unwrap().deadletter_bytes <= max / 8);
    assert_eq!(spool.stats().unwrap().rejected_spans, 16);
    // Never delivered.
    assert_eq!(drain(&spool).len(), 2);
}

#[test]
fn the_delivery_state_file_is_replaced_whole_and_private() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path(), opts(1 << 20)).unwrap();
    assert_eq!(spool.load_delivery_state().unwrap(), None);
    spool.store_delivery_state(b"first").unwrap();
    spool.store_delivery_state(b"second").unwrap();
    assert_eq!(
        spool.load_delivery_state().unwrap().as_deref(),
        Some(&b"second"[..])
    );
    let meta = fs::metadata(tmp.path().join("delivery")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert!(
        fs::read_dir(tmp.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
}

#[test]
fn a_group_commit_stores_each_batch_in_order_and_refuses_only_the_unfit_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path(), opts(64 * 1024)).unwrap();
    let big = vec![9u8; 70_000];
    let results = spool
        .append_all(&[
            Batch::new(b"one", 1),
            Batch::new(&big, 1),
            Batch::new(b"three", 3),
        ])
        .unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(
        results[1],
        Err(AppendError::TooLarge { size: 70_000, .. })
    ));
    assert_eq!(drain(&spool), vec![b"one".to_vec(), b"three".to_vec()]);
    // A group larger than the bound drops its own oldest members, as single appends would.
    let many: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 1500]).collect();
    let group: Vec<Batch<'_>> = many.iter().map(|p| Batch::new(p, 1)).collect();
    let results = spool.append_all(&group).unwrap();
    let dropped: u64 = results
        .iter()
        .map(|r| r.as_ref().unwrap().dropped_batches)
        .sum();
    assert!(dropped > 0);
    let kept = drain(&spool);
    assert_eq!(kept.len() as u64 + dropped, 100);
    assert_eq!(kept.last().unwrap()[0], 99);
}

#[test]
fn deferred_acknowledgements_hold_once_the_reader_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path(), SpoolOptions::default()).unwrap();
    for i in 0..100u8 {
        spool.append(&[i; 100], 1).unwrap();
    }
    let mut reader = spool.reader().unwrap();
    for _ in 0..70 {
        let r = reader.next().unwrap().unwrap();
        reader.ack_deferred(&r).unwrap();
    }
    let seventy_first = reader.next().unwrap().unwrap();
    reader.ack_deferred(&seventy_first).unwrap();
    drop(reader);
    drop(spool);
    let spool = Spool::open(tmp.path(), SpoolOptions::default()).unwrap();
    let rest = drain(&spool);
    assert_eq!(rest.len(), 29);
    assert_eq!(rest[0][0], 71);
}
