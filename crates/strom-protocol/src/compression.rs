//! Decompression of record batches with a bound on the result, for every place that must look
//! inside compressed batches (the consumer's reader, the broker's key check for compacted topics
//! and its `compression.type` recoding). `kafka-protocol`'s decompressors have no bound, so a
//! small batch could inflate without limit (a compression bomb); these stop at `limit` bytes
//! and say so.

use std::io::Read;

/// The bound every Strom component puts on one decompressed records section: a guard against
/// compression bombs, far above what real batches reach (a batch is at most a request, and
/// requests are capped at 100 MiB by default).
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Decompresses a records section with Kafka's codec `codec` (1 gzip, 2 snappy, 3 lz4, 4 zstd),
/// failing once the result would exceed `limit` bytes.
pub fn decompress(codec: i16, section: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    match codec {
        1 => read_bounded(
            flate2::read::MultiGzDecoder::new(section),
            section.len(),
            limit,
        )
        .map_err(|e| format!("gzip: {e}")),
        2 => snappy(section, limit).map_err(|e| format!("snappy: {e}")),
        3 => lz4::Decoder::new(section)
            .and_then(|decoder| read_bounded(decoder, section.len(), limit))
            .map_err(|e| format!("lz4: {e}")),
        4 => zstd::stream::read::Decoder::with_buffer(section)
            .and_then(|decoder| read_bounded(decoder, section.len(), limit))
            .map_err(|e| format!("zstd: {e}")),
        codec => Err(format!("unknown compression codec {codec}")),
    }
}

fn read_bounded(reader: impl Read, compressed: usize, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(compressed.saturating_mul(4).min(limit));
    reader.take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(std::io::Error::other(format!(
            "decompresses to more than {limit} bytes"
        )));
    }
    Ok(out)
}

/// Kafka's snappy: the xerial framing (a 16-byte header, then blocks of a 4-byte length and raw
/// snappy), or raw snappy without it.
fn snappy(section: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER_BYTES: usize = 16;
    let mut out = Vec::new();
    let decode_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), String> {
        let length = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
        if length > limit.saturating_sub(out.len()) {
            return Err(format!("decompresses to more than {limit} bytes"));
        }
        let start = out.len();
        out.resize(start + length, 0);
        let written = snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| e.to_string())?;
        out.truncate(start + written);
        Ok(())
    };
    if !(section.len() >= XERIAL_HEADER_BYTES && section.starts_with(XERIAL_MAGIC)) {
        decode_block(section, &mut out)?;
        return Ok(out);
    }
    let mut at = XERIAL_HEADER_BYTES;
    while at < section.len() {
        let Some(length) = section.get(at..at + 4) else {
            return Err(format!("truncated block length at byte {at}"));
        };
        let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
        at += 4;
        let Some(block) = section.get(at..at.saturating_add(length)) else {
            return Err(format!("block of {length} bytes at byte {at} is truncated"));
        };
        at += length;
        decode_block(block, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_bombs_stop_at_the_bound() {
        let zeros = vec![0u8; 1 << 20];
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gzip, &zeros).unwrap();
        let gzip = gzip.finish().unwrap();
        assert!(decompress(1, &gzip, 1 << 20).is_ok());
        let error = decompress(1, &gzip, 1000).unwrap_err();
        assert!(error.contains("more than 1000"), "{error}");
        let zstd = zstd::bulk::compress(&zeros, 3).unwrap();
        assert!(decompress(4, &zstd, 1000)
            .unwrap_err()
            .contains("more than"));
        // Raw snappy that claims 4 GiB: refused before anything is allocated.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(decompress(2, &claim, 1000).is_err());
    }
}
