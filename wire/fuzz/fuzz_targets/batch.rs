//! Record batch v2 parsing, CRC checking, iteration and header patching on arbitrary bytes:
//! none may panic, and what they report must be self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spate_wire::batch::{self, BatchError, BatchHeader, BATCH_HEADER_BYTES};
use spate_wire::types::{LeaderEpoch, Offset};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = BatchHeader::parse(data) {
        assert_eq!(header.magic, 2);
        assert!(header.total_bytes() >= BATCH_HEADER_BYTES);
        let _ = header.last_offset();
        let _ = header.compression();
        let _ = (header.is_transactional(), header.is_control());
    }
    let mut consumed = 0;
    let mut failed = false;
    for item in batch::batches(data) {
        assert!(!failed, "batches() yielded after an error");
        match item {
            Ok((header, bytes)) => {
                assert_eq!(bytes.len(), header.total_bytes());
                assert_eq!(&data[consumed..consumed + bytes.len()], bytes);
                consumed += bytes.len();
                check_whole_batch(header, bytes);
            }
            Err(BatchError::Truncated { needed, available }) => {
                assert!(needed > available);
                assert_eq!(available, data.len() - consumed);
                failed = true;
            }
            Err(_) => failed = true,
        }
    }
    assert!(
        failed || consumed == data.len(),
        "batches() stopped early without an error"
    );
});

fn check_whole_batch(header: BatchHeader, bytes: &[u8]) {
    let crc_ok = batch::verify_crc(bytes).is_ok();
    assert_eq!(crc_ok, batch::compute_crc(bytes) == header.crc);
    // Offset and epoch lie outside the CRC range: patching them never changes the verdict.
    let mut patched = bytes.to_vec();
    batch::set_base_offset(&mut patched, Offset(header.base_offset.0.wrapping_add(1)));
    batch::set_partition_leader_epoch(&mut patched, LeaderEpoch(7));
    assert_eq!(batch::verify_crc(&patched).is_ok(), crc_ok);
    let again = BatchHeader::parse(&patched).expect("patched header still parses");
    assert_eq!(
        again.base_offset,
        Offset(header.base_offset.0.wrapping_add(1))
    );
    assert_eq!(again.partition_leader_epoch, LeaderEpoch(7));
    assert_eq!(again.crc, header.crc);
}
