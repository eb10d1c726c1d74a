//! DescribeLogDirs (key 35): the data dir as the one log dir, with the size of every partition
//! this broker holds (bytes of batches in its segments), its offset lag and no future replicas.
//! Kafka's tools and UIs ask it for partition sizes.
//!
//! The offset lag is Kafka's (`ReplicaManager.getLogEndOffsetLag` for a current log): how far
//! this replica's log end is below the partition's high watermark as this broker knows it,
//! never below 0. A follower takes the leader's high watermark from each fetch answer, capped
//! at its own log end as Kafka's follower does, so its lag is 0 even while it is far behind the
//! leader: Kafka's number says nothing about replication lag. For that, v2+ answers also carry
//! each replica's log end in a Spate tag ([`spate_wire::tags::LOG_END_OFFSET_TAG`]), which a
//! Kafka client skips and `spate admin cluster --topics` compares with the leader's.

use std::collections::BTreeMap;
use std::path::Path;

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::describe_log_dirs_request::DescribeLogDirsRequest;
use spate_wire::kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use spate_wire::kafka_protocol::messages::TopicName;
use spate_wire::kafka_protocol::protocol::StrBytes;
use spate_wire::tags::put_log_end_offset;
use spate_wire::types::Offset;
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::ops::LogSizeOp;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: DescribeLogDirsRequest,
) -> Option<ResponseParts> {
    let ops = wanted_partitions(core, &request);
    let results = core.scatter_to_replicas(ops.clone()).await;
    // Partitions held elsewhere (another broker, or gone) are left out, as Kafka lists only
    // the replicas in its own log dirs; followers' replicas are listed as leaders' are.
    let mut topics: BTreeMap<&str, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (op, result) in ops.iter().zip(&results) {
        if result.error != ErrorCode::None {
            continue;
        }
        let mut p = DescribeLogDirsPartition::default();
        p.partition_index = op.partition;
        p.partition_size = i64::try_from(result.size_bytes).unwrap_or(i64::MAX);
        p.offset_lag = offset_lag(result.high_watermark, result.log_end_offset);
        p.is_future_key = false;
        put_log_end_offset(&mut p.unknown_tagged_fields, result.log_end_offset);
        topics.entry(&op.topic).or_default().push(p);
    }
    let data_dir = &core.config.data_dir;
    let mut dir = DescribeLogDirsResult::default();
    dir.error_code = ErrorCode::None.code();
    dir.log_dir = StrBytes::from_string(absolute(data_dir));
    (dir.total_bytes, dir.usable_bytes) = volume_bytes(data_dir);
    for (name, partitions) in topics {
        let mut t = DescribeLogDirsTopic::default();
        t.name = TopicName(StrBytes::from_string(name.to_owned()));
        t.partitions = partitions;
        dir.topics.push(t);
    }
    let mut response = DescribeLogDirsResponse::default();
    response.error_code = ErrorCode::None.code();
    response.results = vec![dir];
    respond(header, &response)
}

/// Kafka's offset lag of a current log: the high watermark less the log end, at least 0.
fn offset_lag(high_watermark: Offset, log_end: Offset) -> i64 {
    (high_watermark.0 - log_end.0).max(0)
}

/// Every partition of every topic for a null filter, else the named partitions of the named
/// topics this broker knows (unknown topics are left out, as Kafka leaves them out).
fn wanted_partitions(core: &Core, request: &DescribeLogDirsRequest) -> Vec<LogSizeOp> {
    let topics = core.topics.borrow();
    let mut ops = Vec::new();
    match &request.topics {
        None => {
            for meta in topics.values() {
                ops.extend((0..meta.partitions).map(|partition| LogSizeOp {
                    topic: meta.name.clone(),
                    partition,
                }));
            }
        }
        Some(wanted) => {
            for t in wanted {
                let Some(meta) = topics.get(t.topic.0.as_str()) else {
                    continue;
                };
                for &partition in &t.partitions {
                    if (0..meta.partitions).contains(&partition) {
                        ops.push(LogSizeOp {
                            topic: meta.name.clone(),
                            partition,
                        });
                    }
                }
            }
        }
    }
    ops
}

fn absolute(dir: &Path) -> String {
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_owned())
        .display()
        .to_string()
}

/// The size of the volume holding `dir` and the bytes free on it (v4+), -1 each if unknown.
fn volume_bytes(dir: &Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (-1, -1);
    };
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return (-1, -1);
    }
    let block = stat.f_frsize as i64;
    (
        (stat.f_blocks as i64).saturating_mul(block),
        (stat.f_bavail as i64).saturating_mul(block),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lag_is_the_high_watermark_less_the_log_end_and_never_negative() {
        // A leader (and a follower, whose high watermark is capped at its log end): 0.
        assert_eq!(offset_lag(Offset(100), Offset(100)), 0);
        assert_eq!(offset_lag(Offset(90), Offset(100)), 0);
        // Were a log's end below the high watermark it knows: the difference.
        assert_eq!(offset_lag(Offset(1620), Offset(100)), 1520);
        assert_eq!(offset_lag(Offset(0), Offset(0)), 0);
    }
}
