//! Iterating the records inside a v2 record batch.
//!
//! For when the broker must look inside a batch (validation, compaction, tests); the produce and
//! fetch paths never do. Records borrow from the batch (or from the caller's decompression
//! buffer): nothing is allocated per record.
//!
//! Record layout (all lengths and deltas are zigzag varints):
//! `length, attributes: i8, timestampDelta: varlong, offsetDelta: varint, keyLength, key,
//! valueLength, value, headerCount, [headerKeyLength, headerKey, headerValueLength, headerValue]*`

use crate::batch::{BatchHeader, Compression, BATCH_HEADER_BYTES};
use crate::codec::{read_i8, read_varint, read_varlong, take};
use crate::compression::decompress;
use crate::error::WireError;

/// One record, borrowed from its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Record attributes (unused by Kafka today).
    pub attributes: i8,
    /// Timestamp relative to the batch's `first_timestamp_ms`.
    pub timestamp_delta_ms: i64,
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// The key, or `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value, or `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    headers: RecordHeaders<'a>,
}

impl<'a> Record<'a> {
    /// The record's headers.
    pub fn headers(&self) -> RecordHeaders<'a> {
        self.headers
    }
}

/// Iterator over a record's headers: `(key, value)`; already validated, so it cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeaders<'a> {
    cur: &'a [u8],
    left: usize,
}

impl RecordHeaders<'_> {
    /// Headers not yet returned.
    pub fn len(&self) -> usize {
        self.left
    }

    /// Whether all headers were returned.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<'a> Iterator for RecordHeaders<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let header = read_header(&mut self.cur);
        assert!(
            header.is_ok(),
            "headers are validated when the record is read"
        );
        match header {
            Ok((key, value)) => Some((key.unwrap_or(&[]), value)),
            Err(_) => None,
        }
    }
}

fn read_field<'a>(cur: &mut &'a [u8]) -> Result<Option<&'a [u8]>, WireError> {
    match read_varint(cur)? {
        -1 => Ok(None),
        len if len < -1 => Err(WireError::Malformed {
            what: "record field length",
        }),
        len => Ok(Some(take(cur, len as usize)?)),
    }
}

type Header<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

fn read_header<'a>(cur: &mut &'a [u8]) -> Result<Header<'a>, WireError> {
    let key = read_field(cur)?;
    let value = read_field(cur)?;
    Ok((key, value))
}

/// Iterator over the records of one batch; yields an error once and then stops.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    cur: &'a [u8],
    left: usize,
    failed: bool,
}

impl<'a> Records<'a> {
    /// Records in an uncompressed record section (the bytes after a batch header), expecting
    /// `record_count` of them.
    pub fn new(section: &'a [u8], record_count: usize) -> Records<'a> {
        Records {
            cur: section,
            left: record_count,
            failed: false,
        }
    }

    fn read(&mut self) -> Result<Record<'a>, WireError> {
        let len = read_varint(&mut self.cur)?;
        let len = usize::try_from(len).map_err(|_| WireError::Malformed {
            what: "record length",
        })?;
        let mut body = take(&mut self.cur, len)?;
        let attributes = read_i8(&mut body)?;
        let timestamp_delta_ms = read_varlong(&mut body)?;
        let offset_delta = read_varint(&mut body)?;
        let key = read_field(&mut body)?;
        let value = read_field(&mut body)?;
        let count = read_varint(&mut body)?;
        let count = usize::try_from(count).map_err(|_| WireError::Malformed {
            what: "record header count",
        })?;
        let headers_start = body;
        for _ in 0..count {
            read_header(&mut body)?;
        }
        if !body.is_empty() {
            return Err(WireError::Malformed {
                what: "record length (bytes left over)",
            });
        }
        Ok(Record {
            attributes,
            timestamp_delta_ms,
            offset_delta,
            key,
            value,
            headers: RecordHeaders {
                cur: headers_start,
                left: count,
            },
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            if self.cur.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(WireError::Malformed {
                what: "record batch (bytes after the last record)",
            }));
        }
        self.left -= 1;
        let record = self.read();
        self.failed = record.is_err();
        Some(record)
    }
}

/// The records of `batch` (exactly one whole batch), decompressing into `scratch` if needed.
///
/// # Errors
/// [`WireError::Batch`] for a bad header, or decompression errors (see
/// [`crate::compression::decompress`]). Record-level errors come from the iterator.
pub fn batch_records<'a>(
    batch: &'a [u8],
    scratch: &'a mut Vec<u8>,
    decompressed_bytes_max: usize,
) -> Result<(BatchHeader, Records<'a>), WireError> {
    let header = BatchHeader::parse(batch)?;
    let records = header_records(&header, batch, scratch, decompressed_bytes_max)?;
    Ok((header, records))
}

/// [`batch_records`] for a caller that already parsed `batch`'s header (a loop over stored
/// batches parses each header once and passes it along).
///
/// # Errors
/// As [`batch_records`], except header errors: `header` must be `BatchHeader::parse(batch)`.
pub fn header_records<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
    scratch: &'a mut Vec<u8>,
    decompressed_bytes_max: usize,
) -> Result<Records<'a>, WireError> {
    debug_assert_eq!(BatchHeader::parse(batch).ok().as_ref(), Some(header));
    if batch.len() < header.total_bytes() {
        return Err(WireError::Truncated {
            needed: header.total_bytes(),
            available: batch.len(),
        });
    }
    let section = &batch[BATCH_HEADER_BYTES..header.total_bytes()];
    let count = usize::try_from(header.record_count).map_err(|_| WireError::Malformed {
        what: "record count",
    })?;
    let section: &'a [u8] = match header.compression() {
        Compression::None => section,
        codec => {
            decompress(codec, section, scratch, decompressed_bytes_max)?;
            scratch
        }
    };
    Ok(Records::new(section, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{compute_crc, BatchBuilder, BatchSpec};
    use crate::compression::compress;
    use bytes::BytesMut;

    fn build(n: usize) -> BytesMut {
        let mut out = BytesMut::new();
        let mut b = BatchBuilder::new(
            &mut out,
            BatchSpec {
                first_timestamp_ms: 1_000,
                ..BatchSpec::default()
            },
        );
        for i in 0..n {
            let key = format!("k{i}");
            let value = vec![i as u8; i * 10];
            let headers: &[(&str, Option<&[u8]>)] = if i % 2 == 0 {
                &[("h1", Some(b"v1")), ("h2", None)]
            } else {
                &[]
            };
            let key = if i == 1 { None } else { Some(key.as_bytes()) };
            b.push(1_000 + i as i64 * 5, key, Some(&value), headers);
        }
        b.finish();
        out
    }

    /// Re-packs an uncompressed batch with `codec`, fixing length, attributes and CRC.
    fn recompress(batch: &[u8], codec: Compression) -> Vec<u8> {
        let mut payload = Vec::new();
        compress(codec, &batch[BATCH_HEADER_BYTES..], &mut payload).unwrap();
        let mut out = batch[..BATCH_HEADER_BYTES].to_vec();
        out.extend_from_slice(&payload);
        let batch_length = (out.len() - 12) as i32;
        out[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let attributes = i16::from_be_bytes([out[21], out[22]]) | codec.id();
        out[21..23].copy_from_slice(&attributes.to_be_bytes());
        let crc = compute_crc(&out);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }

    fn check_records(records: Records<'_>, n: usize) {
        let mut seen = 0;
        for (i, r) in records.enumerate() {
            let r = r.unwrap();
            assert_eq!(r.offset_delta, i as i32);
            assert_eq!(r.timestamp_delta_ms, i as i64 * 5);
            if i == 1 {
                assert_eq!(r.key, None);
            } else {
                assert_eq!(r.key, Some(format!("k{i}").as_bytes()));
            }
            assert_eq!(r.value, Some(&vec![i as u8; i * 10][..]));
            let headers: Vec<_> = r.headers().collect();
            if i % 2 == 0 {
                assert_eq!(
                    headers,
                    vec![(&b"h1"[..], Some(&b"v1"[..])), (&b"h2"[..], None)]
                );
            } else {
                assert!(headers.is_empty());
            }
            seen += 1;
        }
        assert_eq!(seen, n);
    }

    #[test]
    fn uncompressed_batch_records_come_back_field_by_field() {
        let batch = build(20);
        let mut scratch = Vec::new();
        let (header, records) = batch_records(&batch, &mut scratch, 1 << 20).unwrap();
        assert_eq!(header.record_count, 20);
        check_records(records, 20);
        assert!(
            scratch.is_empty(),
            "no decompression for an uncompressed batch"
        );
    }

    #[test]
    fn batches_compressed_with_every_codec_decode_to_the_same_records() {
        let batch = build(50);
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = recompress(&batch, codec);
            crate::batch::verify_crc(&packed).unwrap();
            let mut scratch = Vec::new();
            let (header, records) = batch_records(&packed, &mut scratch, 1 << 20).unwrap();
            assert_eq!(header.compression(), codec);
            check_records(records, 50);
        }
    }

    #[test]
    fn a_compressed_bomb_batch_is_refused() {
        let mut out = BytesMut::new();
        let mut b = BatchBuilder::new(&mut out, BatchSpec::default());
        let zeros = vec![0u8; 4 * 1024 * 1024];
        b.push(0, None, Some(&zeros), &[]);
        b.finish();
        let packed = recompress(&out, Compression::Zstd);
        assert!(packed.len() < 4096, "bomb is small: {}", packed.len());
        let mut scratch = Vec::new();
        let err = batch_records(&packed, &mut scratch, 1024 * 1024).map(|_| ());
        assert_eq!(
            err,
            Err(WireError::DecompressedTooLarge { max: 1024 * 1024 })
        );
    }

    #[test]
    fn a_record_count_that_disagrees_with_the_bytes_is_an_error() {
        let batch = build(3);
        let section = &batch[BATCH_HEADER_BYTES..];
        let fewer: Vec<_> = Records::new(section, 2).collect();
        assert_eq!(fewer.len(), 3);
        assert!(fewer[2].is_err());
        let more: Vec<_> = Records::new(section, 4).collect();
        assert_eq!(more.len(), 4);
        assert!(matches!(more[3], Err(WireError::Truncated { .. })));
    }

    #[test]
    fn a_truncated_record_is_an_error_once() {
        let batch = build(3);
        let section = &batch[BATCH_HEADER_BYTES..batch.len() - 1];
        let got: Vec<_> = Records::new(section, 3).collect();
        assert_eq!(got.len(), 3);
        assert!(got[0].is_ok() && got[1].is_ok() && got[2].is_err());
    }
}
