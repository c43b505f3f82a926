//! Damage on disk: the spool opens, skips, counts and quarantines it, and loses nothing valid.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracespool::spool::{Encoding, Spool, SpoolOptions, SyncPolicy};

const PAYLOAD: usize = 1000;
const FRAME: u64 = 32 + PAYLOAD as u64;
const SEGMENT_HEADER: u64 = 32;

fn opts() -> SpoolOptions {
    // Segments of 64 KiB: 1000-byte batches fill one with 63 records.
    SpoolOptions {
        max_bytes: 1 << 20,
        max_spans: None,
        max_age: None,
        compression: Encoding::Identity,
        sync: SyncPolicy::Never,
    }
}

fn payload(i: u32) -> Vec<u8> {
    let mut p = vec![(i % 251) as u8; PAYLOAD];
    p[..4].copy_from_slice(&i.to_le_bytes());
    p
}

fn id_of(p: &[u8]) -> u32 {
    u32::from_le_bytes(p[..4].try_into().unwrap())
}

/// A spool with `n` records 0..n spread over several segments.
fn filled(dir: &Path, n: u32) -> Spool {
    let spool = Spool::open(dir, opts()).unwrap();
    append_ids(&spool, 0..n);
    spool
}

fn append_ids(spool: &Spool, ids: std::ops::Range<u32>) {
    for i in ids {
        spool.append(&payload(i), 1).unwrap();
    }
}

/// [`opts`] with a smaller bound.
fn bounded(max_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        max_bytes,
        ..opts()
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn quarantined(dir: &Path) -> usize {
    fs::read_dir(dir.join("quarantine")).map_or(0, |d| d.count())
}

/// Reads and acknowledges everything; returns the ids delivered.
fn drain(spool: &Spool) -> Vec<u32> {
    let mut reader = spool.reader().unwrap();
    let mut ids = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        assert_eq!(
            record.payload,
            payload(id_of(&record.payload)),
            "delivered a damaged payload"
        );
        ids.push(id_of(&record.payload));
        reader.ack(&record).unwrap();
    }
    ids
}

fn write_at(path: &Path, at: u64, bytes: &[u8]) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, at)
        .unwrap();
}

fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
}

#[test]
fn a_flipped_payload_byte_loses_only_that_record_and_quarantines_its_segment() {
    for sync in [SyncPolicy::Never, SyncPolicy::Always] {
        a_flipped_payload_byte_under(sync);
    }
}

fn a_flipped_payload_byte_under(sync: SyncPolicy) {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path(), SpoolOptions { sync, ..opts() }).unwrap();
    append_ids(&spool, 0..200);
    let first = &segments(tmp.path())[0];
    // Record 5 of the first segment, in the middle of its payload.
    flip(first, SEGMENT_HEADER + 5 * FRAME + 32 + 500);

    let report = spool.verify().unwrap();
    assert_eq!(
        (report.records, report.corrupt_records, report.torn_records),
        (199, 1, 0)
    );
    let ids = drain(&spool);
    assert_eq!(ids, (0..200).filter(|&i| i != 5).collect::<Vec<_>>());
    assert_eq!(spool.stats().unwrap().corrupt_records, 1);
    assert_eq!(quarantined(tmp.path()), 1);
}

#[test]
fn a_flipped_length_byte_is_resynchronised_past() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = filled(tmp.path(), 200);
    let first = &segments(tmp.path())[0];
    // The length field of record 3: the header checksum fails, the reader looks for the next one.
    flip(first, SEGMENT_HEADER + 3 * FRAME + 5);
    let ids = drain(&spool);
    assert_eq!(ids, (0..200).filter(|&i| i != 3).collect::<Vec<_>>());
    let stats = spool.stats().unwrap();
    assert_eq!((stats.corrupt_records, stats.batches), (1, 0));
}

#[test]
fn a_truncated_segment_keeps_what_precedes_the_cut_and_everything_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = filled(tmp.path(), 200);
    let first = &segments(tmp.path())[0];
    // Cut record 10 in half: records 10.. of this segment are gone; later segments are whole.
    let per_segment = (fs::metadata(first).unwrap().len() - SEGMENT_HEADER) / FRAME;
    OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(SEGMENT_HEADER + 10 * FRAME + 600)
        .unwrap();

    let report = spool.verify().unwrap();
    assert_eq!((report.corrupt_records, report.torn_records), (0, 1));
    let ids = drain(&spool);
    let expected: Vec<u32> = (0..200)
        .filter(|&i| i < 10 || u64::from(i) >= per_segment)
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(spool.stats().unwrap().torn_records, 1);
}

#[test]
fn a_zero_filled_tail_is_skipped_as_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = filled(tmp.path(), 200);
    let first = &segments(tmp.path())[0];
    let len = fs::metadata(first).unwrap().len();
    // The last two records and a bit of the third-last, as after a power loss.
    write_at(
        first,
        len - 2 * FRAME - 100,
        &vec![0u8; (2 * FRAME + 100) as usize],
    );
    let per_segment = ((len - SEGMENT_HEADER) / FRAME) as u32;

    // Two damaged regions: the third-last payload fails its checksum, then zeros to the end.
    let report = spool.verify().unwrap();
    assert_eq!(report.corrupt_records, 2);
    let ids = drain(&spool);
    let expected: Vec<u32> = (0..200)
        .filter(|&i| i < per_segment - 3 || i >= per_segment)
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(quarantined(tmp.path()), 1);
}

#[test]
fn garbage_files_in_the_directory_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(dir.join("notes.txt"), b"hello").unwrap();
    fs::write(dir.join("123.seg"), b"not ours").unwrap();
    fs::write(dir.join("00000000000000000001.seg.bak"), b"backup").unwrap();
    fs::create_dir(dir.join("00000000000000000009.seg.d")).unwrap();
    let spool = filled(dir, 100);
    assert_eq!(drain(&spool), (0..100).collect::<Vec<_>>());
    assert!(dir.join("notes.txt").exists() && dir.join("123.seg").exists());
    assert_eq!(spool.verify().unwrap().corrupt_records, 0);
}

#[test]
fn a_segment_full_of_garbage_is_counted_and_never_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spool = filled(dir, 100);
    // Segment ids start at 1: id 0 is older than any real segment. Fill it with noise.
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(dir.join(format!("{:020}.seg", 0)), &noise).unwrap();
    drop(spool);

    let spool = Spool::open(dir, opts()).unwrap();
    assert_eq!(drain(&spool), (0..100).collect::<Vec<_>>());
    assert!(spool.stats().unwrap().corrupt_records >= 1);
    assert_eq!(quarantined(dir), 1);
}

#[test]
fn a_segment_of_a_newer_format_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spool = filled(dir, 100);
    let first = segments(dir)[0].clone();
    let before = fs::read(&first).unwrap();
    write_at(&first, 8, &3u32.to_le_bytes());
    let per_segment = ((before.len() as u64 - SEGMENT_HEADER) / FRAME) as u32;

    let report = spool.verify().unwrap();
    assert_eq!(report.unsupported_segments, vec![first.clone()]);
    assert_eq!(report.corrupt_records, 0);
    assert_eq!(drain(&spool), (per_segment..100).collect::<Vec<_>>());
    // Still there, untouched but for our edit, and not quarantined.
    assert!(first.exists());
    assert_eq!(fs::read(&first).unwrap()[32..], before[32..]);
    assert_eq!(quarantined(dir), 0);
    // Appends go on around it.
    spool.append(&payload(500), 1).unwrap();
    assert_eq!(drain(&spool), vec![500]);
}

/// Runs `f` on a thread of its own; fails the test if it has not returned within 20 s.
fn within_20s(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: still running after 20 s")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{what}: failed (see the panic above)")
        }
    }
}

#[test]
fn segments_deleted_behind_the_spools_back_leave_appends_working() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let small = bounded(256 * 1024);
    let spool = Spool::open(&dir, small).unwrap();
    // Nearly full: the next appends need room, and the totals say there is none.
    append_ids(&spool, 0..245);
    let dropped = spool.stats().unwrap().dropped_batches;
    drop(spool);
    // A cleaner (or a user) removes the oldest sealed segments; the ledger still counts them.
    let all = segments(&dir);
    for sealed in &all[..all.len() - 3] {
        fs::remove_file(sealed).unwrap();
    }
    within_20s("appending after the segments vanished", move || {
        let spool = Spool::open(&dir, small).unwrap();
        // Room the vanished files held is free: nothing more is dropped to make it.
        append_ids(&spool, 480..500);
        assert_eq!(spool.stats().unwrap().dropped_batches, dropped);
        // The flush finds them missing and stops counting them.
        let delivered = drain(&spool);
        assert_eq!(delivered.last(), Some(&499));
        let stats = spool.stats().unwrap();
        assert_eq!((stats.batches, stats.spans), (0, 0), "{stats:?}");
        assert!(stats.disk_bytes < 64 * 1024, "{stats:?}");
        // Larger than what is left of the bound by the totals' reckoning.
        let big = vec![7u8; 200 * 1024];
        spool.append(&big, 1).unwrap();
        append_ids(&spool, 1000..1100);
        assert!(spool.stats().unwrap().disk_bytes <= 256 * 1024);
    });
}

#[test]
fn a_spool_emptied_by_hand_counts_nothing_once_a_flush_has_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    drop(filled(&dir, 200));
    for seg in segments(&dir) {
        fs::remove_file(seg).unwrap();
    }
    let spool = Spool::open(&dir, opts()).unwrap();
    assert_eq!(drain(&spool), Vec::<u32>::new());
    let stats = spool.stats().unwrap();
    assert_eq!(
        (stats.batches, stats.spans, stats.bytes),
        (0, 0, 0),
        "{stats:?}"
    );
    append_ids(&spool, 0..1);
    assert_eq!(drain(&spool), [0]);
}

#[test]
fn a_dead_letter_area_that_cannot_be_written_does_not_hold_up_delivery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let spool = filled(&dir, 3);
    // Not a directory: nothing can be kept there.
    fs::write(dir.join("deadletter"), b"in the way").unwrap();
    let mut reader = spool.reader().unwrap();
    let record = reader.next().unwrap().unwrap();
    reader.dead_letter(&record).unwrap();
    drop(reader);
    assert_eq!(drain(&spool), [1, 2]);
    assert_eq!(spool.stats().unwrap().rejected_spans, 1);
}

#[test]
fn a_symlinked_quarantine_is_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), vec![1u8; 4000]).unwrap();
    let dir = tmp.path().join("s");
    drop(Spool::open(&dir, opts()).unwrap());
    for area in ["quarantine", "deadletter"] {
        std::os::unix::fs::symlink(&outside, dir.join(area)).unwrap();
    }
    // No ledger: the next open takes stock of the directory, areas included.
    fs::remove_file(dir.join("ledger")).unwrap();
    let spool = Spool::open(&dir, bounded(128 * 1024)).unwrap();
    // Fill well past the bound: room is made, and never in the areas.
    append_ids(&spool, 0..400);
    assert!(
        outside.join("precious").exists(),
        "a file outside the spool was deleted"
    );
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn dead_lettering_in_a_full_spool_drops_no_data() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path().join("s"), bounded(16 * 1024)).unwrap();
    // Sizes at which the copy does not fit in what is left: room must be made for it.
    for i in 0..40 {
        let mut p = payload(i);
        p.resize(500, 0);
        spool.append(&p, 1).unwrap();
    }
    let before = spool.stats().unwrap();
    let mut reader = spool.reader().unwrap();
    let record = reader.next().unwrap().unwrap();
    reader.dead_letter(&record).unwrap();
    drop(reader);
    let after = spool.stats().unwrap();
    assert_eq!(after.dropped_batches, before.dropped_batches, "{after:?}");
    assert_eq!(after.batches, before.batches - 1, "{after:?}");
    assert_eq!(after.rejected_spans, 1, "{after:?}");
}

#[test]
fn a_segment_name_beyond_any_id_of_ours_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    drop(filled(&dir, 3));
    fs::write(dir.join("18446744073709551615.seg"), b"not ours").unwrap();
    fs::remove_file(dir.join("ledger")).unwrap();
    let spool = Spool::open(&dir, opts()).unwrap();
    spool.append(&payload(3), 1).unwrap();
    assert_eq!(drain(&spool), [0, 1, 2, 3]);
    assert!(dir.join("18446744073709551615.seg").exists());
}

#[test]
fn absurd_counts_in_a_segment_header_do_not_overflow_the_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    drop(filled(&dir, 200));
    for seg in &segments(&dir)[..2] {
        write_at(seg, 16, &[0xff; 16]);
    }
    // No ledger: the next open rebuilds the totals from the headers.
    fs::remove_file(dir.join("ledger")).unwrap();
    let spool = Spool::open(&dir, opts()).unwrap();
    // The absurd counts are not trusted (those two segments count as damaged: none), and no
    // total saturated or wrapped around them.
    let stats = spool.stats().unwrap();
    assert!(stats.batches <= 200 && stats.spans <= 200, "{stats:?}");
    spool.append(&payload(200), 1).unwrap();
    assert_eq!(drain(&spool).len(), 201);
}

#[test]
fn a_damaged_ledger_is_rebuilt_without_losing_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    drop(filled(dir, 150));
    fs::write(dir.join("ledger"), b"garbage garbage garbage").unwrap();
    let spool = Spool::open(dir, opts()).unwrap();
    assert_eq!(spool.stats().unwrap().batches, 150);
    spool.append(&payload(150), 1).unwrap();
    assert_eq!(drain(&spool), (0..151).collect::<Vec<_>>());
}

#[test]
fn a_damaged_cursor_redelivers_rather_than_loses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spool = filled(dir, 10);
    let mut reader = spool.reader().unwrap();
    for _ in 0..4 {
        let r = reader.next().unwrap().unwrap();
        reader.ack(&r).unwrap();
    }
    drop(reader);
    fs::write(dir.join("cursor"), vec![0xAB; 128]).unwrap();
    assert_eq!(drain(&spool), (0..10).collect::<Vec<_>>());
}

#[test]
fn damage_in_the_active_segment_is_skipped_and_appends_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spool = filled(dir, 5);
    let only = segments(dir)[0].clone();
    flip(&only, SEGMENT_HEADER + 2 * FRAME + 100);
    spool.append(&payload(5), 1).unwrap();
    assert_eq!(drain(&spool), vec![0, 1, 3, 4, 5]);
    spool.append(&payload(6), 1).unwrap();
    assert_eq!(drain(&spool), vec![6]);
    assert_eq!(spool.stats().unwrap().corrupt_records, 1);
}
