//! gzip, as tracespool uses it in three places: the spool's compression at rest, request bodies
//! sent upstream with `compression = gzip`, and bodies received gzip-encoded.
//!
//! Compression is at the fast level: it runs on the hook's path and under load in `serve`, and
//! OTLP batches (repeated resource attributes, keys and names) compress well even so.

use std::io::{Read, Write};

/// `data`, gzip-compressed at the fast level.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 32),
        flate2::Compression::fast(),
    );
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// `data` decompressed, if it inflates to at most `limit` bytes (`Ok(None)` past it, without
/// inflating further: a small body cannot make us hold a large one).
///
/// # Errors
///
/// `data` is not valid gzip.
pub fn decompress(data: &[u8], limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    Ok((out.len() <= limit).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_compressed_decompresses_within_its_limit_only() {
        let data = b"resource.attributes service.name ".repeat(100);
        let gz = compress(&data);
        assert!(gz.len() * 5 < data.len(), "{}", gz.len());
        assert_eq!(decompress(&gz, data.len()).unwrap(), Some(data.clone()));
        assert_eq!(decompress(&gz, data.len() - 1).unwrap(), None);
        assert!(decompress(b"not gzip", 100).is_err());
    }
}
