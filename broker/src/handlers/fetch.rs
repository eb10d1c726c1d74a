//! Fetch (key 1): read whole batches from partitions on their owning cores, long-polling until
//! `min_bytes` are there or `max_wait_ms` passes, woken by appends.
//!
//! `max_bytes` is a soft limit as in Kafka: partitions are filled in request order until it is
//! reached, and the first non-empty partition always returns at least one whole batch, so a
//! batch larger than the limit never stalls a consumer.

use std::time::{Duration, Instant};

use futures::future::{select_all, FutureExt, LocalBoxFuture};
use spate_wire::fetch::{FetchResponseEncoder, Part, PartitionHeader, Records};
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::fetch_request::FetchRequest;
use spate_wire::types::{Offset, PartitionIndex};
use spate_wire::ErrorCode;

use crate::connection::ResponseParts;
use crate::core::Core;
use crate::handoff::Affinity;
use crate::ops::{CoreRequest, FetchOp, FetchResult, Isolation};
use crate::routing::Leader;
use crate::routing::Route;

/// Longest long-poll honoured, whatever the client asks: bounds how long a request holds
/// its connection.
const MAX_WAIT_MS_MAX: u64 = 60_000;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: FetchRequest,
    affinity: &Affinity,
) -> Option<ResponseParts> {
    let ops: Vec<FetchOp> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| FetchOp {
                topic: t.topic.0.to_string(),
                partition: p.partition,
                offset: Offset(p.fetch_offset),
                bytes_max: u64::try_from(p.partition_max_bytes).unwrap_or(0),
                current_leader_epoch: super::current_leader_epoch(
                    header.api_version,
                    9,
                    p.current_leader_epoch,
                ),
                isolation: if request.isolation_level == 1 {
                    Isolation::ReadCommitted
                } else {
                    Isolation::ReadUncommitted
                },
            })
        })
        .collect();
    let min_bytes = u64::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = u64::try_from(request.max_bytes).unwrap_or(0);
    let wait = Duration::from_millis(
        u64::try_from(request.max_wait_ms)
            .unwrap_or(0)
            .min(MAX_WAIT_MS_MAX),
    );
    let deadline = Instant::now() + wait;

    // Only the first round is noted: a long-poll's later rounds name the same partitions.
    let mut results = core.scatter_noting(ops.clone(), affinity).await;
    loop {
        let bytes: u64 = results.iter().map(|r| r.bytes).sum();
        let has_error = results.iter().any(|r| r.error != ErrorCode::None);
        let now = Instant::now();
        if bytes >= min_bytes.max(1) || has_error || now >= deadline || ops.is_empty() {
            break;
        }
        wait_for_data(core, &ops, &results, deadline - now).await;
        results = core.scatter(ops.clone()).await;
    }
    trim_to_max_bytes(&mut results, max_bytes);
    for (op, result) in ops.iter().zip(&results) {
        if result.error == ErrorCode::None {
            if result.bytes > 0 {
                let records = crate::metrics::record_count(&result.records);
                core.metrics
                    .fetched(&op.topic, op.partition, result.bytes, records);
            }
        } else {
            core.metrics.fetch_error(result.error);
        }
    }

    let read_committed = request.isolation_level == 1;
    let mut encoder = match FetchResponseEncoder::new(
        header.api_version,
        header.correlation_id,
        ErrorCode::None,
        0, // no fetch sessions: every request is a full fetch
        request.topics.len(),
    ) {
        Ok(encoder) => encoder,
        Err(error) => {
            tracing::error!(version = header.api_version, %error, "fetch version not encodable; closing connection");
            return None;
        }
    };
    let mut results = results.into_iter();
    for topic in &request.topics {
        encoder.topic(topic.topic.0.as_str(), topic.partitions.len());
        for partition in &topic.partitions {
            let result = results.next().expect("one result per partition");
            let mut p = PartitionHeader::new(PartitionIndex(partition.partition));
            p.error_code = result.error;
            p.high_watermark = result.high_watermark;
            p.last_stable_offset = result.last_stable_offset;
            p.log_start_offset = result.log_start_offset;
            p.aborted_transactions = read_committed.then_some(&result.aborted[..]);
            // v12+ (KIP-595's tagged CurrentLeader): the leader a consumer should move to,
            // so it does not need a Metadata round trip first.
            if header.api_version >= 12 && result.error == ErrorCode::NotLeaderOrFollower {
                if let Some(placed) = core.placement(topic.topic.0.as_str(), partition.partition) {
                    let leader = match placed.leader {
                        Leader::Core(_) => core.config.node_id,
                        Leader::Broker(node) => node.0,
                        Leader::None => -1,
                    };
                    p.current_leader = Some((leader, placed.leader_epoch));
                }
            }
            let len = result.bytes as usize;
            encoder.partition(
                &p,
                Some(Records {
                    len,
                    data: result.records,
                }),
            );
        }
    }
    let response = encoder.finish();
    let mut parts = Vec::with_capacity(response.parts.len() + 8);
    for part in response.parts {
        match part {
            Part::Bytes(bytes) => parts.push(bytes),
            Part::Records(chunks) => parts.extend(chunks),
        }
    }
    Some(parts)
}

/// Waits until a partition of the fetch gets data, on whichever core owns it, or the time is up.
async fn wait_for_data(core: &Core, ops: &[FetchOp], results: &[FetchResult], wait: Duration) {
    let mut by_core: Vec<Vec<(String, i32, Offset)>> = vec![Vec::new(); core.cores];
    for (op, result) in ops.iter().zip(results) {
        // Wake when the high watermark passes what the consumer already has.
        // A read_committed read held back by an open transaction waits for the high watermark
        // to move (the marker that ends it is appended past it), not for the data it already
        // cannot see.
        let seen =
            if result.records.is_empty() && result.last_stable_offset >= result.high_watermark {
                op.offset
            } else {
                result.high_watermark
            };
        let owner = match core.route(&op.topic, op.partition) {
            Route::ThisCore => core.id,
            Route::OtherCore(owner) => owner,
            // Nothing to wait for here: the answer already carries the partition's error.
            Route::OtherBroker(_) | Route::NoLeader | Route::NotHere => continue,
        };
        by_core[owner].push((op.topic.clone(), op.partition, seen));
    }
    let wait_ms = wait.as_millis() as u64;
    let mut waits: Vec<LocalBoxFuture<'_, ()>> = Vec::new();
    for (owner, partitions) in by_core.into_iter().enumerate() {
        if partitions.is_empty() {
            continue;
        }
        if owner == core.id {
            waits.push(
                async move {
                    core.wait_for_data(&partitions, wait_ms, crate::partition::Reader::Consumer)
                        .await
                }
                .boxed_local(),
            );
        } else {
            let request = CoreRequest::WaitForData {
                partitions,
                wait_ms,
                reader: crate::partition::Reader::Consumer,
            };
            waits.push(
                async move {
                    core.call(owner, request).await;
                }
                .boxed_local(),
            );
        }
    }
    waits.push(glommio::timer::sleep(wait).boxed_local());
    select_all(waits).await;
}

/// Drops record data past `max_bytes`, in request order, keeping at least the first non-empty
/// partition's data.
fn trim_to_max_bytes(results: &mut [FetchResult], max_bytes: u64) {
    let mut total = 0u64;
    for result in results.iter_mut() {
        if result.records.is_empty() {
            continue;
        }
        if total > 0 && total + result.bytes > max_bytes {
            result.records.clear();
            result.bytes = 0;
            continue;
        }
        total += result.bytes;
    }
}
