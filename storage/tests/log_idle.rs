//! An idle partition under flush mode `never`: nothing appends, syncs or waits, so only the
//! owner's periodic [`Log::drive_io`] moves its queued writes and a roll's seal on.

mod common;

use std::path::{Path, PathBuf};

use common::{append_now, batch, names, poll_n, small_config};
use spate_storage::io::mem::MemDisk;
use spate_storage::{block_on, FlushPolicy, Log, LogConfig};
use spate_wire::types::Offset;

const DIR: &str = "/data/topic-0";
const BUFFER_BYTES: usize = 4096;

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn seg(base: Offset) -> PathBuf {
    dir().join(format!("{:020}.log", base.0))
}

/// One call of `drive_io`, which must return within two polls (it yields once at most).
fn drive_io_now(log: &Log<MemDisk>) {
    poll_n(std::pin::pin!(log.drive_io()), 2)
        .expect("drive_io never waits")
        .expect("drive_io");
}

/// The whole batches at the start of `bytes` (a segment file's contents), as (base offset,
/// bytes) pairs, until the first invalid one.
fn whole_batches(bytes: &[u8]) -> Vec<(Offset, Vec<u8>)> {
    spate_wire::batch::batches(bytes)
        .map_while(Result::ok)
        .filter(|(_, raw)| spate_wire::batch::verify_crc(raw).is_ok())
        .map(|(header, raw)| (header.base_offset, raw.to_vec()))
        .collect()
}

#[test]
fn drive_io_writes_an_idle_partitions_queued_buffers_without_another_append() {
    let disk = MemDisk::new();
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        write_buffer_bytes_max: BUFFER_BYTES,
        ..small_config(FlushPolicy::Never)
    };
    let log = block_on(Log::open(disk.clone(), dir(), config)).expect("open");
    // Nothing pending: a no-op that returns at once.
    drive_io_now(&log);
    let mut sent = Vec::new();
    // The first append writes the leader-epoch checkpoint (a file write): before the hold.
    append_now(&log, &mut sent);
    disk.hold_writes(true);
    // More full buffers than the device takes at once: two submitted, the others queued.
    let full_buffers = spate_storage::WRITES_IN_FLIGHT_MAX + 4;
    assert!(full_buffers < spate_storage::FULL_WRITES_QUEUED_MAX);
    let batch_bytes = batch(4, 100, 0, 0).len();
    while sent.len() * batch_bytes < full_buffers * BUFFER_BYTES {
        append_now(&log, &mut sent);
    }
    assert_eq!(disk.writes_in_flight(), spate_storage::WRITES_IN_FLIGHT_MAX);
    // While the device holds the writes, drive_io returns without waiting for them.
    drive_io_now(&log);
    assert_eq!(disk.writes_in_flight(), spate_storage::WRITES_IN_FLIGHT_MAX);
    // The partition goes idle and the device catches up, but nobody drives the queue: the
    // writes completed on the device are not collected and the queued ones never submitted, so
    // the file holds none of the data.
    disk.hold_writes(false);
    let file = disk.file_bytes(&seg(Offset(0))).expect("segment");
    assert!(whole_batches(&file).is_empty(), "nothing was driven yet");
    for _ in 0..20 {
        drive_io_now(&log);
    }
    assert_eq!(disk.writes_in_flight(), 0);
    // Every full buffer is on the file: the batches that fit in them whole, byte for byte (past
    // baseOffset, batchLength and partitionLeaderEpoch, which the log patches).
    let file = disk.file_bytes(&seg(Offset(0))).expect("segment");
    let written = whole_batches(&file[..full_buffers * BUFFER_BYTES]);
    assert_eq!(written.len(), full_buffers * BUFFER_BYTES / batch_bytes);
    for (i, (base, raw)) in written.iter().enumerate() {
        assert_eq!(*base, Offset(4 * i as i64), "dense offsets");
        assert_eq!(&raw[17..], &sent[i][17..]);
    }
    // Nothing more to do: the partly filled buffer stays in memory under `never`.
    drive_io_now(&log);
    assert_eq!(disk.writes_in_flight(), 0);
    assert_eq!(log.log_end_offset(), Offset(4 * sent.len() as i64));
    block_on(log.close()).expect("close");
}

#[test]
fn drive_io_completes_a_rolls_seal_on_an_idle_partition() {
    let disk = MemDisk::new();
    let log = block_on(Log::open(
        disk.clone(),
        dir(),
        small_config(FlushPolicy::Never),
    ))
    .expect("open");
    let mut sent = Vec::new();
    let new_base = loop {
        let base = append_now(&log, &mut sent);
        if block_on(log.segment_count()) == 2 {
            break base;
        }
        assert!(sent.len() < 10_000, "never rolled");
    };
    // The append that rolled started the seal; nothing appends after it.
    assert_eq!(names(&disk, ".sealing"), [format!("{:020}.sealing", 0)]);
    assert_eq!(log.durable_offset(), Offset(0));
    let syncs_before = disk.sync_count();
    let mut calls = 0;
    while !names(&disk, ".sealing").is_empty() || log.durable_offset() < new_base {
        drive_io_now(&log);
        calls += 1;
        assert!(calls < 100, "the seal never completed");
    }
    // The seal ran: the old segment was cut to its data and synced, its marker removed, its
    // index checkpoint and the producer snapshot at the new base written.
    assert_eq!(log.durable_offset(), new_base);
    assert!(disk.sync_count() > syncs_before);
    assert_eq!(
        disk.file_bytes(&seg(Offset(0))).expect("old segment").len(),
        (new_base.0 / 4) as usize * sent[0].len()
    );
    assert_eq!(names(&disk, ".index"), [format!("{:020}.index", 0)]);
    assert!(names(&disk, ".snapshot").contains(&format!("{:020}.snapshot", new_base.0)));
    // The next roll's file is made by later calls too.
    for _ in 0..20 {
        drive_io_now(&log);
    }
    assert_eq!(names(&disk, ".tmp"), ["next-segment.log.tmp"]);
    block_on(log.close()).expect("close");
}
