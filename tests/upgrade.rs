//! Upgrades: a spool left by an earlier version opens and delivers unchanged.
//!
//! `fixtures/spool-v1/spool` was written by tracespool in the first on-disk format and is never
//! regenerated (its README says how it was made): ten spans `upgrade-span-0` to `-9` recorded,
//! the first three delivered and acknowledged, the fourth answered 503, so it holds a delivered
//! prefix, a cursor in the middle of its first segment, three segments and a failure in its
//! delivery state.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Rotel, status_json, tracespool};

/// The spans the fixture still holds, oldest first.
const UNDELIVERED: [&str; 7] = [
    "upgrade-span-3",
    "upgrade-span-4",
    "upgrade-span-5",
    "upgrade-span-6",
    "upgrade-span-7",
    "upgrade-span-8",
    "upgrade-span-9",
];

/// The spans delivered before the fixture was kept: never to be delivered again.
const DELIVERED: [&str; 3] = ["upgrade-span-0", "upgrade-span-1", "upgrade-span-2"];

/// Every span was recorded with this attribute, 700 × `p`, to fill three segments.
const PADDING_KEY: &str = "upgrade.padding";
const PADDING_LEN: usize = 700;

/// A private copy of the fixture spool. Git keeps no modes, and a spool directory must be the
/// user's own: the copy is `0700`, its files `0600`, as the tool creates them.
fn fixture_spool() -> (tempfile::TempDir, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/spool-v1/spool");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    fs::create_dir(&dir).unwrap();
    let mut copied = 0;
    for entry in fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        assert!(
            entry.file_type().unwrap().is_file(),
            "the fixture holds plain files only: {}",
            entry.path().display()
        );
        let to = dir.join(entry.file_name());
        fs::copy(entry.path(), &to).unwrap();
        fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).unwrap();
        copied += 1;
    }
    assert!(copied > 0, "{} is empty", fixture.display());
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    (tmp, dir)
}

#[test]
fn a_spool_written_by_the_first_format_counts_what_it_holds_and_verifies_clean() {
    let (_tmp, dir) = fixture_spool();

    let status = status_json(&dir, &[]);
    assert_eq!(
        (status["batches"].as_u64(), status["spans"].as_u64()),
        (Some(7), Some(7)),
        "{status}"
    );

    // Every stored record is read back and checks out (a corrupt one would also exit 1).
    let out = tracespool()
        .arg("--spool-dir")
        .arg(&dir)
        .args(["status", "--json", "--verify"])
        .output()
        .unwrap();
    let verified: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --verify --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(verified["corrupt_records"].as_u64(), Some(0), "{verified}");
    assert!(
        out.status.success(),
        "status --verify: {}: {verified}",
        out.status
    );
    assert_eq!(
        (verified["batches"].as_u64(), verified["spans"].as_u64()),
        (Some(7), Some(7)),
        "{verified}"
    );
}

#[test]
fn a_spool_written_by_the_first_format_opens_and_delivers_every_span_once() {
    let (_tmp, dir) = fixture_spool();
    let rotel = Rotel::start();

    let out = tracespool()
        .arg("--spool-dir")
        .arg(&dir)
        .args(["--endpoint", &rotel.endpoint(), "--budget", "10s"])
        .arg("flush")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "flush: {}: {stderr}", out.status);

    // Exactly the undelivered spans, each once; the acknowledged prefix is not sent again.
    let seen = rotel.exactly(UNDELIVERED.len());
    let mut names: Vec<&str> = seen.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, UNDELIVERED, "flush said: {stderr}");
    for name in DELIVERED {
        assert!(!names.contains(&name), "{name} was delivered again");
    }

    // The stored bytes arrive as they were written.
    for span in &seen {
        let padding = span.attributes.get(PADDING_KEY).map(String::as_str);
        assert_eq!(
            padding,
            Some("p".repeat(PADDING_LEN).as_str()),
            "{}: {span:?}",
            span.name
        );
    }

    let status = status_json(&dir, &[]);
    assert_eq!(status["batches"].as_u64(), Some(0), "{status}");
}

/// The segment files of `dir`, oldest first, with their format version.
fn segment_versions(dir: &Path) -> Vec<u32> {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    segments
        .iter()
        .map(|p| {
            let b = fs::read(p).unwrap();
            u32::from_le_bytes(b[8..12].try_into().unwrap())
        })
        .collect()
}

#[test]
fn old_segments_plain_records_and_compressed_records_in_one_spool_are_all_delivered_once() {
    let (_tmp, dir) = fixture_spool();
    // Appended by this version: one stored as it is, one compressed (the default).
    for (name, compression) in [("plain-span", "none"), ("compressed-span", "gzip")] {
        let out = tracespool()
            .arg("--spool-dir")
            .arg(&dir)
            .args(["--spool-compression", compression, "span", "--name", name])
            .args([
                "--attr",
                &format!("{PADDING_KEY}={}", "p".repeat(PADDING_LEN)),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    // The first format's segments are left as they were; the new records went to a segment of
    // the current format, one of them with the gzip flag.
    let versions = segment_versions(&dir);
    assert_eq!(versions.first(), Some(&1), "{versions:?}");
    assert_eq!(versions.last(), Some(&2), "{versions:?}");
    let newest = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .unwrap();
    let bytes = fs::read(newest).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    // Frames follow the 32-byte segment header; a frame header is 32 bytes, its payload length
    // at 4 and its flags at 24.
    let second = 32 + 32 + u32_at(32 + 4) as usize;
    assert_eq!(
        [u32_at(32 + 24), u32_at(second + 24)],
        [0, 1],
        "plain, then gzip"
    );

    let rotel = Rotel::start();
    let out = tracespool()
        .arg("--spool-dir")
        .arg(&dir)
        .args(["--endpoint", &rotel.endpoint(), "--budget", "10s", "flush"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let seen = rotel.exactly(UNDELIVERED.len() + 2);
    let mut names: Vec<&str> = seen.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = UNDELIVERED.to_vec();
    expected.extend(["compressed-span", "plain-span"]);
    expected.sort_unstable();
    assert_eq!(names, expected);
    for span in &seen {
        assert_eq!(
            span.attributes.get(PADDING_KEY).map(String::as_str),
            Some("p".repeat(PADDING_LEN).as_str()),
            "{}",
            span.name
        );
    }
    assert_eq!(status_json(&dir, &[])["batches"].as_u64(), Some(0));
}
