//! Bounded decompression of record batch payloads (gzip, snappy, lz4, zstd).
//!
//! Only for when the broker must look inside a batch (validation, compaction): produce and fetch
//! move compressed batches as they are. Every decoder stops at `decompressed_bytes_max` so a
//! small zip bomb cannot make the broker allocate gigabytes.
//!
//! Formats, as Kafka and its clients write them for record batch v2:
//! - gzip: a gzip stream (members may be concatenated, as Java's `GZIPInputStream` allows);
//! - snappy: the Java client writes xerial framing (`\x82SNAPPY\0`, versions, then
//!   length-prefixed raw blocks); librdkafka writes one raw snappy block. Java reads both, and so
//!   does this module;
//! - lz4: the LZ4 frame format;
//! - zstd: a zstd frame, with a window of at most [`ZSTD_WINDOW_LOG_MAX`] (8 MiB).
//!
//! Memory besides the output (bounded in capacity, not just length): gzip keeps a 32 KiB window,
//! lz4 buffers one block (at most 4 MiB, as the frame header declares), zstd its capped window,
//! snappy nothing (block sizes are read and checked before decoding).

use std::io::Read;

use crate::batch::Compression;
use crate::error::WireError;

/// Default `decompressed_bytes_max`: Kafka's default `message.max.bytes` is 1 MiB compressed;
/// 64 MiB leaves room for well-compressed batches and still bounds a bomb.
pub const DECOMPRESSED_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Largest zstd window accepted, as a power of two (8 MiB). Producers' default levels use 2 MiB
/// windows or less (level 3: 2^21); only levels above 19 without a known content size go higher,
/// and such batches are refused as corrupt rather than let a frame header pick our memory use.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
/// Magic, version, compatible version.
const XERIAL_HEADER_BYTES: usize = 16;

fn codec_name(codec: Compression) -> &'static str {
    match codec {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// Decompresses `input` (a batch's bytes after the 61-byte header) into `out` (cleared first).
///
/// `Compression::None` copies `input`, still bounded.
///
/// # Errors
/// [`WireError::DecompressedTooLarge`] past `decompressed_bytes_max`, [`WireError::Decompress`]
/// for corrupt input.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
    decompressed_bytes_max: usize,
) -> Result<(), WireError> {
    out.clear();
    match codec {
        Compression::None => {
            if input.len() > decompressed_bytes_max {
                return Err(WireError::DecompressedTooLarge {
                    max: decompressed_bytes_max,
                });
            }
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => read_bounded(
            codec,
            flate2::read::MultiGzDecoder::new(input),
            out,
            decompressed_bytes_max,
        ),
        Compression::Snappy if input.starts_with(XERIAL_MAGIC) => {
            snappy_xerial(input, out, decompressed_bytes_max)
        }
        Compression::Snappy => snappy_block(input, out, decompressed_bytes_max),
        Compression::Lz4 => read_bounded(
            codec,
            lz4_flex::frame::FrameDecoder::new(input),
            out,
            decompressed_bytes_max,
        ),
        Compression::Zstd => {
            let zstd_error = |e: std::io::Error| WireError::Decompress {
                codec: "zstd",
                reason: e.to_string(),
            };
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(input).map_err(zstd_error)?;
            // zstd allocates the window a frame header asks for before decoding a byte, outside
            // Rust's allocator; cap it so a 100-byte batch cannot claim 128 MiB.
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(zstd_error)?;
            read_bounded(codec, decoder, out, decompressed_bytes_max)
        }
    }
}

/// First growth step of the output buffer; later steps double it, never past the limit.
const READ_STEP_BYTES_MIN: usize = 16 * 1024;

fn read_bounded(
    codec: Compression,
    mut reader: impl Read,
    out: &mut Vec<u8>,
    decompressed_bytes_max: usize,
) -> Result<(), WireError> {
    // One byte over the limit tells "exactly at the limit" from "over it". The buffer is grown
    // by hand (not read_to_end) so its capacity, not just its length, stays near the limit.
    let limit = decompressed_bytes_max.saturating_add(1);
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() >= limit {
                break;
            }
            let grow = out.len().max(READ_STEP_BYTES_MIN).min(limit - out.len());
            reserve_capped(out, grow, limit);
            out.resize(out.len() + grow, 0);
        }
        let n = match reader.read(&mut out[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                out.clear();
                return Err(WireError::Decompress {
                    codec: codec_name(codec),
                    reason: e.to_string(),
                });
            }
        };
        if n == 0 {
            break;
        }
        filled += n;
    }
    out.truncate(filled);
    if out.len() > decompressed_bytes_max {
        out.clear();
        return Err(WireError::DecompressedTooLarge {
            max: decompressed_bytes_max,
        });
    }
    Ok(())
}

/// Makes room for `additional` bytes, doubling like `Vec` does but never past `limit` (which
/// the caller has checked `out.len() + additional` against).
fn reserve_capped(out: &mut Vec<u8>, additional: usize, limit: usize) {
    if out.capacity() - out.len() >= additional {
        return;
    }
    let needed = out.len() + additional;
    let doubled = out.len() + out.capacity().max(READ_STEP_BYTES_MIN);
    let target = doubled.min(limit).max(needed);
    out.reserve_exact(target - out.len());
}

fn snappy_error(e: snap::Error) -> WireError {
    WireError::Decompress {
        codec: "snappy",
        reason: e.to_string(),
    }
}

/// Appends one raw snappy block to `out`, checking its declared size first.
fn snappy_block(
    block: &[u8],
    out: &mut Vec<u8>,
    decompressed_bytes_max: usize,
) -> Result<(), WireError> {
    let len = snap::raw::decompress_len(block).map_err(snappy_error)?;
    if out.len().saturating_add(len) > decompressed_bytes_max {
        return Err(WireError::DecompressedTooLarge {
            max: decompressed_bytes_max,
        });
    }
    let start = out.len();
    reserve_capped(out, len, decompressed_bytes_max);
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(snappy_error)?;
    out.truncate(start + written);
    Ok(())
}

fn snappy_xerial(
    input: &[u8],
    out: &mut Vec<u8>,
    decompressed_bytes_max: usize,
) -> Result<(), WireError> {
    let mut cur = input
        .get(XERIAL_HEADER_BYTES..)
        .ok_or(WireError::Truncated {
            needed: XERIAL_HEADER_BYTES,
            available: input.len(),
        })?;
    while !cur.is_empty() {
        let len = crate::codec::read_i32(&mut cur)?;
        let len = usize::try_from(len).map_err(|_| WireError::Malformed {
            what: "snappy block length",
        })?;
        let block = crate::codec::take(&mut cur, len)?;
        snappy_block(block, out, decompressed_bytes_max)?;
    }
    Ok(())
}

/// Compresses `input` with `codec` into `out` (cleared first), in the format Kafka's Java
/// producer writes (xerial framing for snappy). For tests, benchmarks and tools: the broker
/// never compresses.
///
/// # Errors
/// [`WireError::Decompress`] (named for the codec) if the compressor fails.
pub fn compress(codec: Compression, input: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    use std::io::Write;
    out.clear();
    let fail = |e: std::io::Error| WireError::Decompress {
        codec: codec_name(codec),
        reason: e.to_string(),
    };
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            enc.write_all(input).map_err(fail)?;
            enc.finish().map_err(fail)?;
        }
        Compression::Snappy => {
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            // xerial's default block size.
            for chunk in input.chunks(32 * 1024) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).map_err(|e| {
                    WireError::Decompress {
                        codec: "snappy",
                        reason: e.to_string(),
                    }
                })?;
                let len = i32::try_from(block.len()).expect("snappy block under 2 GiB");
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&block);
            }
        }
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(out);
            enc.write_all(input).map_err(fail)?;
            enc.finish().map_err(|e| WireError::Decompress {
                codec: "lz4",
                reason: e.to_string(),
            })?;
        }
        Compression::Zstd => {
            let compressed = zstd::bulk::compress(input, 3).map_err(fail)?;
            out.extend_from_slice(&compressed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let input = sample();
        for codec in CODECS {
            let mut compressed = Vec::new();
            compress(codec, &input, &mut compressed).unwrap();
            if codec != Compression::None {
                assert!(
                    compressed.len() < input.len() / 2,
                    "{codec:?} did not compress"
                );
            }
            let mut out = Vec::new();
            decompress(codec, &compressed, &mut out, input.len()).unwrap();
            assert_eq!(out, input, "{codec:?}");
        }
    }

    #[test]
    fn raw_snappy_blocks_as_librdkafka_writes_them_are_read() {
        let input = sample();
        let block = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        let mut out = Vec::new();
        decompress(Compression::Snappy, &block, &mut out, usize::MAX).unwrap();
        assert_eq!(out, input);
    }

    #[test]
    fn a_zip_bomb_is_refused_at_the_limit() {
        let bomb = vec![0u8; 16 * 1024 * 1024];
        for codec in CODECS {
            let mut compressed = Vec::new();
            compress(codec, &bomb, &mut compressed).unwrap();
            let mut out = Vec::new();
            let err = decompress(codec, &compressed, &mut out, 1024 * 1024);
            assert_eq!(
                err,
                Err(WireError::DecompressedTooLarge { max: 1024 * 1024 }),
                "{codec:?}"
            );
            assert!(
                out.capacity() <= 1024 * 1024 + 64,
                "{codec:?} grew to {}",
                out.capacity()
            );
        }
    }

    #[test]
    fn output_exactly_at_the_limit_is_accepted() {
        let input = vec![9u8; 4096];
        for codec in CODECS {
            let mut compressed = Vec::new();
            compress(codec, &input, &mut compressed).unwrap();
            let mut out = Vec::new();
            decompress(codec, &compressed, &mut out, 4096).unwrap();
            assert_eq!(out.len(), 4096, "{codec:?}");
        }
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut out = Vec::new();
            let err = decompress(
                codec,
                b"\x82SNAPPY\0garbage-garbage-garbage",
                &mut out,
                1 << 20,
            );
            assert!(err.is_err(), "{codec:?}");
        }
    }

    #[test]
    fn a_zstd_frame_asking_for_a_huge_window_is_refused() {
        use std::io::Write;
        let input = sample();
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(25))
            .unwrap();
        enc.write_all(&input).unwrap();
        let big_window = enc.finish().unwrap();
        let mut out = Vec::new();
        let err = decompress(Compression::Zstd, &big_window, &mut out, usize::MAX >> 1);
        assert!(
            matches!(err, Err(WireError::Decompress { codec: "zstd", .. })),
            "{err:?}"
        );

        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(
            ZSTD_WINDOW_LOG_MAX,
        ))
        .unwrap();
        enc.write_all(&input).unwrap();
        let at_the_cap = enc.finish().unwrap();
        decompress(Compression::Zstd, &at_the_cap, &mut out, usize::MAX >> 1).unwrap();
        assert_eq!(out, input);
    }
}
