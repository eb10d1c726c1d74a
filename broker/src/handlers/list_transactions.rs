//! ListTransactions (key 66), v0-v1: every transactional id of every core's coordinator with
//! its producer id and state, filtered by state names and producer ids (v0) and by how long the
//! transaction has been open (v1, KIP-994). Unknown state names come back in
//! `unknown_state_filters`, as Kafka's. Single broker only, as the coordinators are.

use spate_txn::admin::ListFilter;
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::list_transactions_request::ListTransactionsRequest;
use spate_wire::kafka_protocol::messages::list_transactions_response::{
    ListTransactionsResponse, TransactionState,
};
use spate_wire::kafka_protocol::messages::{ProducerId as WireProducerId, TransactionalId};
use spate_wire::types::ProducerId;

use super::{respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: ListTransactionsRequest,
) -> Option<ResponseParts> {
    let (filter, unknown) = filter_of(header.api_version, &request);
    let mut response = ListTransactionsResponse::default();
    response.unknown_state_filters = unknown.iter().map(|name| str_bytes(name)).collect();
    match crate::txn::list(core, filter).await {
        Ok(listed) => {
            response.transaction_states = listed
                .into_iter()
                .map(|txn| {
                    let mut state = TransactionState::default();
                    state.transactional_id = TransactionalId(str_bytes(&txn.transactional_id));
                    state.producer_id = WireProducerId(txn.producer_id.0);
                    state.transaction_state = str_bytes(txn.state.kafka_name());
                    state
                })
                .collect();
        }
        Err(error) => response.error_code = error.code(),
    }
    respond(header, &response)
}

/// The request's filters, and its state names Kafka does not know. v0 has no duration filter.
fn filter_of(version: i16, request: &ListTransactionsRequest) -> (ListFilter, Vec<String>) {
    let duration_ms = if version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    ListFilter::new(
        request.state_filters.iter().map(|name| name.as_str()),
        request
            .producer_id_filters
            .iter()
            .map(|id| ProducerId(id.0))
            .collect(),
        duration_ms,
    )
}

#[cfg(test)]
mod tests {
    use spate_txn::state::TxnState;
    use spate_wire::kafka_protocol::protocol::StrBytes;

    use super::*;

    #[test]
    fn v0_ignores_the_duration_field_and_v1_reads_it() {
        let mut request = ListTransactionsRequest::default();
        request.state_filters = vec![
            StrBytes::from_static_str("Ongoing"),
            StrBytes::from_static_str("Sleeping"),
        ];
        request.producer_id_filters = vec![WireProducerId(4)];
        request.duration_filter = 500;
        let (v0, unknown) = filter_of(0, &request);
        assert_eq!(unknown, vec!["Sleeping".to_owned()]);
        assert_eq!(v0.states, Some(vec![TxnState::Ongoing]));
        assert_eq!(v0.producer_ids, vec![ProducerId(4)]);
        assert_eq!(v0.running_longer_than_ms, None);
        let (v1, _) = filter_of(1, &request);
        assert_eq!(v1.running_longer_than_ms, Some(500));
    }

    #[test]
    fn a_default_v1_request_has_no_filter() {
        let (filter, unknown) = filter_of(1, &ListTransactionsRequest::default());
        assert!(unknown.is_empty());
        assert_eq!(filter, ListFilter::default());
    }
}
