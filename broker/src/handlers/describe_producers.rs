//! DescribeProducers (key 61), v0: for each requested partition, the idempotent and
//! transactional producers its log's producer state remembers: id, epoch, last sequence, last
//! timestamp and the first offset of its open transaction (-1 if none). The coordinator epoch
//! is not kept per partition and is -1 (Kafka's "unknown"). Read on the core leading the
//! partition; UNKNOWN_TOPIC_OR_PARTITION for a partition not known, NOT_LEADER_OR_FOLLOWER
//! for one another broker leads.

use spate_storage::producer_state::ActiveProducer;
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::describe_producers_request::DescribeProducersRequest;
use spate_wire::kafka_protocol::messages::describe_producers_response::{
    DescribeProducersResponse, PartitionResponse, ProducerState, TopicResponse,
};
use spate_wire::kafka_protocol::messages::ProducerId;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::ops::ProducersOp;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: DescribeProducersRequest,
) -> Option<ResponseParts> {
    let ops: Vec<ProducersOp> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partition_indexes.iter().map(|&partition| ProducersOp {
                topic: t.name.0.to_string(),
                partition,
            })
        })
        .collect();
    let mut results = core.scatter(ops).await.into_iter();
    let mut response = DescribeProducersResponse::default();
    for t in request.topics {
        let mut topic = TopicResponse::default();
        for partition_index in t.partition_indexes {
            let result = results.next().expect("one result per partition");
            let mut p = PartitionResponse::default();
            p.partition_index = partition_index;
            p.error_code = result.error.code();
            p.active_producers = result.producers.iter().map(producer_state).collect();
            topic.partitions.push(p);
        }
        topic.name = t.name;
        response.topics.push(topic);
    }
    respond(header, &response)
}

fn producer_state(p: &ActiveProducer) -> ProducerState {
    let mut state = ProducerState::default();
    state.producer_id = ProducerId(p.producer_id.0);
    state.producer_epoch = i32::from(p.epoch.0);
    state.last_sequence = p.last_sequence;
    state.last_timestamp = p.last_timestamp_ms;
    state.coordinator_epoch = -1;
    state.current_txn_start_offset = p.txn_start_offset.map_or(-1, |o| o.0);
    state
}

#[cfg(test)]
mod tests {
    use spate_wire::types::{Offset, ProducerEpoch, ProducerId as Pid};

    use super::*;

    #[test]
    fn a_producer_without_an_open_transaction_has_start_offset_minus_one() {
        let mut p = ActiveProducer {
            producer_id: Pid(5),
            epoch: ProducerEpoch(2),
            last_sequence: 9,
            last_timestamp_ms: 1_000,
            txn_start_offset: None,
        };
        let state = producer_state(&p);
        assert_eq!(state.producer_id.0, 5);
        assert_eq!(state.producer_epoch, 2);
        assert_eq!(state.last_sequence, 9);
        assert_eq!(state.last_timestamp, 1_000);
        assert_eq!(state.coordinator_epoch, -1);
        assert_eq!(state.current_txn_start_offset, -1);
        p.txn_start_offset = Some(Offset(17));
        assert_eq!(producer_state(&p).current_txn_start_offset, 17);
    }
}
