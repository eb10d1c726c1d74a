//! Record iteration inside one batch, decompressing gzip/snappy/lz4/zstd payloads on the way,
//! on arbitrary bytes. No panic, no hang, and decompression stops at its bound: a small input
//! must not expand past `DECOMPRESSED_BYTES_MAX` (checked here) nor make any single allocation
//! past ci/fuzz.sh's -malloc_limit_mb.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spate_wire::records::batch_records;

/// Small, so bombs hit the bound quickly; the broker's default is 64 MiB.
const DECOMPRESSED_BYTES_MAX: usize = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let Ok((header, records)) = batch_records(data, &mut scratch, DECOMPRESSED_BYTES_MAX) else {
        return;
    };
    let mut count = 0usize;
    let mut failed = false;
    for record in records {
        assert!(!failed, "records yielded after an error");
        match record {
            Ok(record) => {
                count += 1;
                let headers = record.headers();
                let declared = headers.len();
                assert_eq!(headers.count(), declared);
                let _ = (record.key.map(<[u8]>::len), record.value.map(<[u8]>::len));
            }
            Err(_) => failed = true,
        }
    }
    assert!(count <= usize::try_from(header.record_count).unwrap_or(0));
    if !failed {
        assert_eq!(
            count,
            usize::try_from(header.record_count).unwrap_or(usize::MAX)
        );
    }
    assert!(scratch.len() <= DECOMPRESSED_BYTES_MAX);
});
