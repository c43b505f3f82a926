//! Replays the fuzzers' minimized corpora (`fixtures/fuzz/<target>/`) through the same entry
//! points the fuzz targets call (`tracespool::fuzzing`), as ordinary tests: every input that
//! once found new behaviour keeps working. Regenerate with `bash .ci/fuzz` (see README).

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fuzz")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    for input in &inputs {
        let data = std::fs::read(input).unwrap();
        // A panic names the input that caused it.
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panicked", input.display());
    }
}

#[test]
fn the_spool_survives_every_directory_in_the_corpus() {
    replay("spool_dir", tracespool::fuzzing::spool_dir);
}

#[test]
fn the_receivers_decode_every_body_in_the_corpus_or_refuse_it_cleanly() {
    replay("otlp_decode", tracespool::fuzzing::otlp_decode);
}

#[test]
fn the_parsers_take_every_string_in_the_corpus_or_refuse_it_cleanly() {
    replay("parsers", tracespool::fuzzing::parsers);
}
