//! Store batches in a spool and deliver them back, oldest first.
//!
//! `cargo run --example spool_roundtrip [DIR]`

use tracespool::spool::{Spool, SpoolOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tracespool-example"));
    let spool = Spool::open(&dir, SpoolOptions::default())?;

    // Any bytes will do; tracespool stores encoded OTLP ExportTraceServiceRequests.
    for i in 0..3u32 {
        let outcome = spool.append(format!("batch {i}").as_bytes(), 1)?;
        assert_eq!(outcome.dropped_batches, 0);
    }
    println!("stored: {:?}", spool.stats()?);

    // One reader at a time (the flush lease); a record is gone once acknowledged.
    let mut reader = spool.reader()?;
    while let Some(record) = reader.next()? {
        println!(
            "deliver {:?} ({} spans)",
            String::from_utf8_lossy(&record.payload),
            record.span_count
        );
        reader.ack(&record)?;
    }
    Ok(())
}
