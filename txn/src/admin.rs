//! What Kafka's transaction admin APIs read from a coordinator: ListTransactions' filters
//! (KIP-664, and KIP-994's duration filter) and the listed entries. DescribeTransactions reads
//! [`TxnMetadata`] through [`TxnCoordinator::get`] directly.

use std::str::FromStr;

use spate_wire::types::ProducerId;

use crate::state::{TxnCoordinator, TxnMetadata, TxnState};

impl FromStr for TxnState {
    type Err = UnknownState;

    /// The state Kafka's admin APIs name `name` (exact, case-sensitive, as Kafka's
    /// `TransactionState.fromName`).
    fn from_str(name: &str) -> Result<TxnState, UnknownState> {
        TxnState::ALL
            .into_iter()
            .find(|s| s.kafka_name() == name)
            .ok_or(UnknownState)
    }
}

/// A state name Kafka does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown transaction state name")]
pub struct UnknownState;

/// ListTransactions' filters; a transactional id is listed when it passes all of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListFilter {
    /// `None`: any state. `Some`: one of these (empty when every name given was unknown, which
    /// lists nothing, as Kafka).
    pub states: Option<Vec<TxnState>>,
    /// Empty: any producer id.
    pub producer_ids: Vec<ProducerId>,
    /// Only transactions open for longer than this (`None`: no duration filter, the wire's -1).
    pub running_longer_than_ms: Option<i64>,
}

impl ListFilter {
    /// The filter of a request: its state names (the unknown ones are returned apart, for the
    /// answer's `unknown_state_filters`), producer ids and duration filter (negative: none).
    pub fn new<'a>(
        state_names: impl IntoIterator<Item = &'a str>,
        producer_ids: Vec<ProducerId>,
        duration_filter_ms: i64,
    ) -> (ListFilter, Vec<String>) {
        let mut states = None::<Vec<TxnState>>;
        let mut unknown = Vec::new();
        for name in state_names {
            let known = states.get_or_insert_with(Vec::new);
            match name.parse::<TxnState>() {
                Ok(state) => known.push(state),
                Err(UnknownState) => unknown.push(name.to_owned()),
            }
        }
        let filter = ListFilter {
            states,
            producer_ids,
            running_longer_than_ms: (duration_filter_ms >= 0).then_some(duration_filter_ms),
        };
        (filter, unknown)
    }

    /// Whether `meta` is listed at `now_ms`. `Dead` ids never are (Kafka: they are being
    /// removed). The duration filter keeps open transactions only: one with no start time
    /// (`Empty`, or completed, whose start Spate clears) has run for no time at all.
    pub fn matches(&self, meta: &TxnMetadata, now_ms: i64) -> bool {
        if meta.state == TxnState::Dead {
            return false;
        }
        if let Some(states) = &self.states {
            if !states.contains(&meta.state) {
                return false;
            }
        }
        if !self.producer_ids.is_empty() && !self.producer_ids.contains(&meta.producer_id) {
            return false;
        }
        match self.running_longer_than_ms {
            None => true,
            Some(duration_ms) => meta.start_ms >= 0 && now_ms - meta.start_ms > duration_ms,
        }
    }
}

/// One listed transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTxn {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: ProducerId,
    /// Its durable state.
    pub state: TxnState,
}

impl TxnCoordinator {
    /// The transactional ids `filter` keeps at `now_ms`, sorted by id.
    pub fn list(&self, filter: &ListFilter, now_ms: i64) -> Vec<ListedTxn> {
        let mut listed: Vec<ListedTxn> = self
            .iter()
            .filter(|(_, meta)| filter.matches(meta, now_ms))
            .map(|(id, meta)| ListedTxn {
                transactional_id: id.to_owned(),
                producer_id: meta.producer_id,
                state: meta.state,
            })
            .collect();
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        listed
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use spate_wire::types::ProducerEpoch;

    use super::*;
    use crate::state::{Step, TopicPartition, TxnConfig};

    fn meta(state: TxnState, producer_id: i64, start_ms: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id: ProducerId(producer_id),
            producer_epoch: ProducerEpoch(0),
            last_producer_epoch: ProducerEpoch(-1),
            timeout_ms: 60_000,
            state,
            partitions: BTreeSet::new(),
            start_ms,
            last_update_ms: 0,
        }
    }

    #[test]
    fn every_state_parses_from_its_kafka_name_and_nothing_else_does() {
        for state in TxnState::ALL {
            assert_eq!(state.kafka_name().parse::<TxnState>(), Ok(state));
        }
        assert_eq!(TxnState::ALL.len(), 8);
        assert_eq!("ongoing".parse::<TxnState>(), Err(UnknownState));
        assert_eq!("Running".parse::<TxnState>(), Err(UnknownState));
    }

    #[test]
    fn unknown_state_names_are_returned_and_match_nothing_on_their_own() {
        let (filter, unknown) = ListFilter::new(["Bogus", "ongoing"], Vec::new(), -1);
        assert_eq!(unknown, vec!["Bogus".to_owned(), "ongoing".to_owned()]);
        assert_eq!(filter.states, Some(Vec::new()));
        assert!(!filter.matches(&meta(TxnState::Ongoing, 1, 0), 10));
        let (filter, unknown) = ListFilter::new(["Ongoing", "Bogus"], Vec::new(), -1);
        assert_eq!(unknown, vec!["Bogus".to_owned()]);
        assert!(filter.matches(&meta(TxnState::Ongoing, 1, 0), 10));
        assert!(!filter.matches(&meta(TxnState::Empty, 1, -1), 10));
    }

    #[test]
    fn an_empty_filter_lists_everything_but_dead_ids() {
        let (filter, unknown) = ListFilter::new([], Vec::new(), -1);
        assert!(unknown.is_empty());
        assert_eq!(filter, ListFilter::default());
        for state in TxnState::ALL {
            assert_eq!(
                filter.matches(&meta(state, 1, -1), 0),
                state != TxnState::Dead
            );
        }
    }

    #[test]
    fn producer_id_filter_keeps_only_the_listed_ids() {
        let (filter, _) = ListFilter::new([], vec![ProducerId(7), ProducerId(9)], -1);
        assert!(filter.matches(&meta(TxnState::Empty, 7, -1), 0));
        assert!(filter.matches(&meta(TxnState::Empty, 9, -1), 0));
        assert!(!filter.matches(&meta(TxnState::Empty, 8, -1), 0));
    }

    #[test]
    fn duration_filter_keeps_transactions_open_longer_than_it() {
        let (filter, _) = ListFilter::new([], Vec::new(), 1_000);
        assert_eq!(filter.running_longer_than_ms, Some(1_000));
        assert!(filter.matches(&meta(TxnState::Ongoing, 1, 5_000), 6_001));
        assert!(!filter.matches(&meta(TxnState::Ongoing, 1, 5_000), 6_000));
        assert!(!filter.matches(&meta(TxnState::CompleteCommit, 1, -1), 6_000));
        let (zero, _) = ListFilter::new([], Vec::new(), 0);
        assert!(zero.matches(&meta(TxnState::Ongoing, 1, 5_000), 5_001));
    }

    #[test]
    fn a_coordinator_lists_its_ids_sorted_and_filtered() {
        let mut c = TxnCoordinator::new(TxnConfig::default());
        for (i, id) in ["b", "a", "c"].into_iter().enumerate() {
            let pid = Some(ProducerId(10 + i as i64));
            assert!(matches!(
                c.init_producer_id(id, 60_000, None, pid, 0),
                Step::Append(_)
            ));
            c.appended(id, true);
        }
        let tp = TopicPartition::new("t", 0);
        let Step::Append(_) = c.add_partitions("a", ProducerId(11), ProducerEpoch(0), &[tp], 100)
        else {
            panic!("add")
        };
        c.appended("a", true);
        let all = c.list(&ListFilter::default(), 200);
        let ids: Vec<&str> = all.iter().map(|l| l.transactional_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(all[0].state, TxnState::Ongoing);
        assert_eq!(all[0].producer_id, ProducerId(11));
        let (ongoing, _) = ListFilter::new(["Ongoing"], Vec::new(), -1);
        assert_eq!(c.list(&ongoing, 200).len(), 1);
        let (empty, _) = ListFilter::new(["Empty"], vec![ProducerId(12)], -1);
        let listed = c.list(&empty, 200);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].transactional_id, "c");
        let (old, _) = ListFilter::new([], Vec::new(), 50);
        assert_eq!(c.list(&old, 200).len(), 1, "a has run 100 ms");
        assert!(c.list(&old, 150).is_empty(), "a has run 50 ms");
    }
}
