//! gzip, as tracespool uses it in three places: the spool's compression at rest, request bodies
//! sent upstream with `compression = gzip`, and bodies received gzip-encoded.
//!
//! Compression is at the fast level: it runs on the hook's path and under load in `serve`, and
//! OTLP batches (repeated resource attributes, keys and names) compress well even so. Each thread
//! keeps one deflate state and resets it for each payload: setting one up costs more than
//! compressing a small batch (a 1 KiB batch: about 9 µs with a new one, 5 µs reused, measured
//! here). flate2 has no reusable gzip encoder, so the gzip framing (RFC 1952: a fixed 10-byte
//! header, then the CRC-32 and length of the data) is written around the raw deflate stream here.

use std::cell::RefCell;
use std::io::Read;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Magic, method deflate, no flags, no time, "fastest" (XFL 4), OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

thread_local! {
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
}

/// `data`, gzip-compressed at the fast level.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    out.extend_from_slice(&HEADER);
    DEFLATE.with(|deflate| {
        let mut deflate = deflate.borrow_mut();
        deflate.reset();
        // It writes only into spare capacity: more room until the stream ends.
        loop {
            let done = deflate.total_in() as usize;
            match deflate.compress_vec(&data[done..], &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => break,
                Ok(_) => out.reserve(out.capacity().max(256)),
                Err(e) => unreachable!("deflating into a Vec cannot fail: {e}"),
            }
        }
    });
    let mut crc = Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the length modulo 2^32.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// `data` decompressed, if it inflates to at most `limit` bytes (`Ok(None)` past it, without
/// inflating further: a small body cannot make us hold a large one). Every gzip member is
/// read, as the Collector's decoder (Go's) reads them, so that what a receiver checks is all
/// that a body it keeps compressed holds.
///
/// # Errors
///
/// `data` is not valid gzip, or something other than a gzip member follows one.
pub fn decompress(data: &[u8], limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    Ok((out.len() <= limit).then_some(out))
}

/// A stored batch decompressed: at most 4 GiB, the most a frame's payload can say it holds.
///
/// # Errors
///
/// Not valid gzip, or larger than that decompressed (`InvalidData`).
pub fn decompress_stored(data: &[u8]) -> std::io::Result<Vec<u8>> {
    decompress(data, u32::MAX as usize)?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "larger than 4 GiB decompressed",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reused_deflater_makes_valid_gzip_of_any_size_call_after_call() {
        let big: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
            .collect();
        for data in [
            &b""[..],
            b"x",
            &big,
            b"again, after a large one",
            &big[..5000],
        ] {
            let gz = compress(data);
            assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
            // Read back by flate2's own gzip decoder (header, CRC and length checked).
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn what_is_compressed_decompresses_within_its_limit_only() {
        let data = b"resource.attributes service.name ".repeat(100);
        let gz = compress(&data);
        assert!(gz.len() * 5 < data.len(), "{}", gz.len());
        assert_eq!(decompress(&gz, data.len()).unwrap(), Some(data.clone()));
        assert_eq!(decompress(&gz, data.len() - 1).unwrap(), None);
        assert!(decompress(b"not gzip", 100).is_err());
    }

    #[test]
    fn every_member_is_read_and_anything_else_after_one_is_an_error() {
        let two = [compress(b"first, "), compress(b"second")].concat();
        assert_eq!(
            decompress(&two, 100).unwrap().as_deref(),
            Some(&b"first, second"[..])
        );
        let junk = [compress(b"first"), b"JUNK".to_vec()].concat();
        assert!(decompress(&junk, 100).is_err());
    }
}
