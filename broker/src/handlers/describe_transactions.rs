//! DescribeTransactions (key 65), v0: for each transactional id, its coordinator's durable
//! state: state name, timeout, start of the open transaction (-1 if none), producer id and
//! epoch, and the partitions in the transaction by topic. Errors as Kafka's: see
//! [`crate::txn::describe`]; a `Dead` id is not found. Single broker only.

use spate_txn::state::{TxnMetadata, TxnState};
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
use spate_wire::kafka_protocol::messages::describe_transactions_response::{
    DescribeTransactionsResponse, TopicData, TransactionState,
};
use spate_wire::kafka_protocol::messages::ProducerId;
use spate_wire::ErrorCode;

use super::{respond, str_bytes, topic_name};
use crate::connection::ResponseParts;
use crate::core::Core;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: DescribeTransactionsRequest,
) -> Option<ResponseParts> {
    let mut response = DescribeTransactionsResponse::default();
    for id in request.transactional_ids {
        let described = crate::txn::describe(core, &id.0).await;
        let mut state = TransactionState::default();
        state.transactional_id = id;
        match described {
            Ok(meta) if meta.state != TxnState::Dead => fill(&mut state, &meta),
            Ok(_) => state.error_code = ErrorCode::TransactionalIdNotFound.code(),
            Err(error) => state.error_code = error.code(),
        }
        response.transaction_states.push(state);
    }
    respond(header, &response)
}

fn fill(state: &mut TransactionState, meta: &TxnMetadata) {
    state.error_code = ErrorCode::None.code();
    state.transaction_state = str_bytes(meta.state.kafka_name());
    state.transaction_timeout_ms = meta.timeout_ms;
    state.transaction_start_time_ms = meta.start_ms;
    state.producer_id = ProducerId(meta.producer_id.0);
    state.producer_epoch = meta.producer_epoch.0;
    state.topics = topics_of(meta);
}

/// The transaction's partitions grouped by topic (the set is sorted by topic, then partition).
fn topics_of(meta: &TxnMetadata) -> Vec<TopicData> {
    let mut topics: Vec<TopicData> = Vec::new();
    for tp in &meta.partitions {
        match topics.last_mut() {
            Some(last) if *last.topic.0 == *tp.topic => last.partitions.push(tp.partition),
            _ => {
                let mut t = TopicData::default();
                t.topic = topic_name(&tp.topic);
                t.partitions = vec![tp.partition];
                topics.push(t);
            }
        }
    }
    topics
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use spate_txn::state::TopicPartition;
    use spate_wire::types::{ProducerEpoch, ProducerId as Pid};

    use super::*;

    #[test]
    fn an_ongoing_transaction_is_described_with_its_partitions_by_topic() {
        let partitions: BTreeSet<TopicPartition> = [("b", 1), ("a", 2), ("b", 0), ("a", 0)]
            .into_iter()
            .map(|(t, p)| TopicPartition::new(t, p))
            .collect();
        let meta = TxnMetadata {
            producer_id: Pid(42),
            producer_epoch: ProducerEpoch(3),
            last_producer_epoch: ProducerEpoch(-1),
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions,
            start_ms: 1_700,
            last_update_ms: 1_800,
        };
        let mut state = TransactionState::default();
        fill(&mut state, &meta);
        assert_eq!(state.error_code, 0);
        assert_eq!(&*state.transaction_state, "Ongoing");
        assert_eq!(state.transaction_timeout_ms, 60_000);
        assert_eq!(state.transaction_start_time_ms, 1_700);
        assert_eq!((state.producer_id.0, state.producer_epoch), (42, 3));
        let topics: Vec<(&str, Vec<i32>)> = state
            .topics
            .iter()
            .map(|t| (&*t.topic.0, t.partitions.clone()))
            .collect();
        assert_eq!(topics, vec![("a", vec![0, 2]), ("b", vec![0, 1])]);
    }
}
