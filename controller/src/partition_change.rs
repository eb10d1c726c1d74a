//! How a partition's leader and ISR change: the one place that builds
//! [`MetadataRecord::ChangePartition`] records, so that fencing, unfencing, controlled shutdown,
//! re-registration, AlterPartition, preferred-leader election and reassignment follow the same
//! rules (the role Kafka's `PartitionChangeBuilder` plays in KRaft):
//!
//! - the ISR never becomes empty: a change that would remove its last member keeps it, so a leaderless
//!   partition's ISR names the broker known to hold every committed record;
//! - the leader is a member of the new ISR that may lead (registered, unfenced, not shutting down):
//!   the current leader if it still qualifies, else the first such replica in replica order (a
//!   preferred election tries the first replica before the current leader);
//! - no leader qualifies: the partition has none, unless the topic allows unclean election
//!   (`unclean.leader.election.enable=true`): then the first eligible replica in replica order leads,
//!   out of sync, and the ISR becomes just it (what the lost ISR members had and it lacks is gone);
//! - a reassignment (KIP-455) completes in the first change whose ISR holds every target replica:
//!   the removing replicas leave the replicas and the ISR, the adding and removing lists clear, and
//!   the leader, if it was removed, is elected among the target replicas in target order;
//! - every change bumps the partition epoch; a change of leader, including to or from none, bumps
//!   the leader epoch, and so does a replica leaving the replicas (Kafka's rule, so that it is
//!   fenced); nothing else does (Kafka 3.6+ no longer bumps it on an ISR shrink);
//! - nothing changes: no record.

use crate::controller::UNCLEAN_LEADER_ELECTION_CONFIG;
use crate::ids::{NodeId, PartitionIndex, TopicId};
use crate::image::{MetadataImage, PartitionState};
use crate::records::{LeaderChange, MetadataRecord};

/// Which rule picks the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Election {
    /// Keep the partition online: the current leader if it may still lead, else the first replica that may.
    Online,
    /// ElectLeaders PREFERRED: the first replica if it may lead, else as [`Election::Online`].
    Preferred,
    /// As [`Election::Online`], and when no ISR member may lead, the first replica that may, with the
    /// ISR reset to it: the topic chose availability over durability.
    Unclean,
}

impl Election {
    /// The election that keeps a partition of `topic_id` online: [`Election::Unclean`] when the topic
    /// sets `unclean.leader.election.enable` to true (any case, as Kafka parses booleans).
    pub(crate) fn online_for(image: &MetadataImage, topic_id: TopicId) -> Election {
        let unclean = image
            .topic(topic_id)
            .and_then(|t| t.configs.get(UNCLEAN_LEADER_ELECTION_CONFIG))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if unclean {
            Election::Unclean
        } else {
            Election::Online
        }
    }
}

/// Who may lead, as the image says, with one broker's state taken as changing in the same batch: the
/// records of a batch are built before any of them is applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Eligibility<'a> {
    image: &'a MetadataImage,
    change: BrokerChange,
}

/// A broker whose eligibility the batch changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokerChange {
    /// No broker changes state in this batch.
    None,
    /// This broker is being fenced, shut down or replaced by a new incarnation: it may not lead.
    Leaving(NodeId),
    /// This broker is being unfenced: it may lead.
    Joining(NodeId),
    /// Draining brokers (decommission) may not lead: their leaderships are being moved away.
    AvoidDraining,
}

impl<'a> Eligibility<'a> {
    pub(crate) fn new(image: &'a MetadataImage, change: BrokerChange) -> Self {
        Self { image, change }
    }

    /// Whether `node` may lead (or join an ISR): Kafka's "active" broker.
    pub(crate) fn may_lead(&self, node: NodeId) -> bool {
        match self.change {
            BrokerChange::Leaving(n) if n == node => return false,
            BrokerChange::Joining(n) if n == node => return true,
            _ => {}
        }
        let avoid_draining = self.change == BrokerChange::AvoidDraining;
        self.image.broker(node).is_some_and(|b| {
            let avoided = avoid_draining && b.draining;
            !(b.fenced || b.in_controlled_shutdown || avoided)
        })
    }
}

/// What a change aims a partition at before its leader is chosen (Kafka's `PartitionChangeBuilder`
/// targets): replicas in order, ISR, and a reassignment's adding and removing replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) replicas: Vec<NodeId>,
    pub(crate) isr: Vec<NodeId>,
    pub(crate) adding: Vec<NodeId>,
    pub(crate) removing: Vec<NodeId>,
    /// Whether to complete a reassignment this change makes completable (see [`build_change`]).
    pub(crate) complete: bool,
}

impl Target {
    /// The partition as it is, with `isr` as the new ISR (kept as is if empty).
    pub(crate) fn isr(p: &PartitionState, isr: Vec<NodeId>) -> Target {
        Target {
            replicas: p.replicas.clone(),
            isr: if isr.is_empty() { p.isr.clone() } else { isr },
            adding: p.adding.clone(),
            removing: p.removing.clone(),
            complete: true,
        }
    }

    /// Kafka's `maybeCompleteReassignment`: once every target replica (the replicas not being
    /// removed) is in the ISR, the removing ones leave the replicas and the ISR and the lists
    /// clear. Not when that would leave no replica or an empty ISR.
    fn complete_reassignment(&mut self) {
        if self.adding.is_empty() && self.removing.is_empty() {
            return;
        }
        let kept = |list: &[NodeId]| -> Vec<NodeId> {
            list.iter()
                .copied()
                .filter(|n| !self.removing.contains(n))
                .collect()
        };
        let (isr, replicas) = (kept(&self.isr), kept(&self.replicas));
        if isr.is_empty() || replicas.is_empty() || !replicas.iter().all(|n| isr.contains(n)) {
            return;
        }
        self.isr = isr;
        self.replicas = replicas;
        self.adding.clear();
        self.removing.clear();
    }
}

/// The record that takes partition `p` to `target_isr` (kept as is if empty) with a leader chosen by
/// `election`, or `None` when nothing would change.
pub(crate) fn change_partition(
    topic_id: TopicId,
    index: PartitionIndex,
    p: &PartitionState,
    target_isr: Vec<NodeId>,
    election: Election,
    eligibility: &Eligibility<'_>,
) -> Option<MetadataRecord> {
    let target = Target::isr(p, target_isr);
    build_change(topic_id, index, p, target, election, eligibility)
}

/// The record that takes partition `p` to `target` with a leader chosen by `election`, or `None`
/// when nothing would change. In Kafka's order: a reassignment the target ISR makes completable
/// is completed first (unless `target.complete` is false), then the leader is elected among the
/// target replicas, then the leader epoch is bumped if the leader changes or a replica leaves.
pub(crate) fn build_change(
    topic_id: TopicId,
    index: PartitionIndex,
    p: &PartitionState,
    mut target: Target,
    election: Election,
    eligibility: &Eligibility<'_>,
) -> Option<MetadataRecord> {
    assert!(!target.isr.is_empty() && !target.replicas.is_empty());
    if target.complete {
        target.complete_reassignment();
    }
    let leader = match elect(p, &target, election, eligibility) {
        Some(leader) => Some(leader),
        None if election == Election::Unclean => {
            let unclean = target
                .replicas
                .iter()
                .copied()
                .find(|n| eligibility.may_lead(*n));
            if let Some(leader) = unclean {
                // The ISR becomes the new leader alone. That can make a reassignment completable
                // (an adding replica elected, every target replica now "in sync"): complete it
                // now, even in a fence, so that no committed state is left completable (see
                // `remove_broker`). Such a record's ISR is one broker, so it stays within the
                // fence batches' per-record bound (`FENCE_CHANGE_BYTES_MAX`).
                target.isr = vec![leader];
                target.complete_reassignment();
                assert!(
                    target.isr.contains(&leader),
                    "completion keeps a kept leader"
                );
            }
            unclean
        }
        None => None,
    };
    let isr = target.isr;
    let isr_changes = isr != p.isr;
    let replicas_change = target.replicas != p.replicas;
    let adding_changes = target.adding != p.adding;
    let removing_changes = target.removing != p.removing;
    if leader == p.leader
        && !isr_changes
        && !replicas_change
        && !adding_changes
        && !removing_changes
    {
        return None;
    }
    // Kafka bumps the leader epoch when a replica leaves, so that it is fenced at once (its
    // fetches carry the old epoch) and the leader starts its follower set afresh.
    let replica_leaves = p.replicas.iter().any(|n| !target.replicas.contains(n));
    let (leader_change, leader_epoch) = if leader == p.leader && !replica_leaves {
        (LeaderChange::Unchanged, p.leader_epoch)
    } else {
        let change = leader.map_or(LeaderChange::NoLeader, LeaderChange::To);
        (change, p.leader_epoch.next())
    };
    Some(MetadataRecord::ChangePartition {
        topic_id,
        index,
        leader: leader_change,
        isr: isr_changes.then_some(isr),
        replicas: replicas_change.then_some(target.replicas),
        leader_epoch,
        partition_epoch: p.partition_epoch.next(),
        adding: adding_changes.then_some(target.adding),
        removing: removing_changes.then_some(target.removing),
    })
}

fn elect(
    p: &PartitionState,
    target: &Target,
    election: Election,
    eligibility: &Eligibility<'_>,
) -> Option<NodeId> {
    let valid = |n: &NodeId| target.isr.contains(n) && eligibility.may_lead(*n);
    let first_valid = || target.replicas.iter().copied().find(valid);
    match election {
        Election::Online | Election::Unclean => p.leader.filter(valid).or_else(first_valid),
        Election::Preferred => target
            .replicas
            .first()
            .copied()
            .filter(valid)
            .or(p.leader.filter(valid))
            .or_else(first_valid),
    }
}

/// The records that take `node` out of every ISR and leadership (it is fenced, shutting down or
/// replaced by a new incarnation), in topic and partition order.
pub(crate) fn remove_broker(image: &MetadataImage, node: NodeId) -> Vec<MetadataRecord> {
    let eligibility = Eligibility::new(image, BrokerChange::Leaving(node));
    partitions(image)
        .filter(|(_, _, p)| p.isr.contains(&node) || p.leader == Some(node))
        .filter_map(|(topic_id, index, p)| {
            let isr = p.isr.iter().copied().filter(|n| *n != node).collect();
            let election = Election::online_for(image, topic_id);
            // Taking a member out of an ISR never makes a reassignment completable (completion
            // needs more of the ISR, not less, and every committed state has been tried), so a
            // fence never changes replicas: its records keep the size its batches are bounded by.
            let target = Target {
                complete: false,
                ..Target::isr(p, isr)
            };
            build_change(topic_id, index, p, target, election, &eligibility)
        })
        .collect()
}

/// The records that give leaderless partitions a leader now that `node` may lead again: those whose
/// ISR kept it, and, where the topic allows unclean election, those it is a replica of.
pub(crate) fn broker_joins(image: &MetadataImage, node: NodeId) -> Vec<MetadataRecord> {
    let eligibility = Eligibility::new(image, BrokerChange::Joining(node));
    partitions(image)
        .filter(|(_, _, p)| p.leader.is_none() && p.replicas.contains(&node))
        .filter_map(|(topic_id, index, p)| {
            let election = Election::online_for(image, topic_id);
            if election != Election::Unclean && !p.isr.contains(&node) {
                return None;
            }
            change_partition(topic_id, index, p, p.isr.clone(), election, &eligibility)
        })
        .collect()
}

/// The records that give each leaderless partition of `topic_id` a leader by unclean election: the
/// topic has just allowed it.
pub(crate) fn unclean_elections(image: &MetadataImage, topic_id: TopicId) -> Vec<MetadataRecord> {
    let eligibility = Eligibility::new(image, BrokerChange::None);
    partitions(image)
        .filter(|(id, _, p)| *id == topic_id && p.leader.is_none())
        .filter_map(|(_, index, p)| {
            change_partition(
                topic_id,
                index,
                p,
                p.isr.clone(),
                Election::Unclean,
                &eligibility,
            )
        })
        .collect()
}

/// Every partition of the image with its topic and index.
pub(crate) fn partitions(
    image: &MetadataImage,
) -> impl Iterator<Item = (TopicId, PartitionIndex, &PartitionState)> {
    image.topics().iter().flat_map(|(id, t)| {
        t.partitions
            .iter()
            .enumerate()
            .map(move |(i, p)| (*id, PartitionIndex(i as i32), p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Incarnation, LeaderEpoch, MetadataOffset, PartitionEpoch};
    use crate::records::Endpoint;

    /// Brokers 1..=4, unfenced except those in `fenced`.
    fn image(fenced: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::new();
        let mut offset = 0;
        for n in 1..=4 {
            let endpoint = Endpoint {
                host: "h".into(),
                port: 1,
            };
            let mut records = vec![MetadataRecord::RegisterBroker {
                node: NodeId(n),
                incarnation: Incarnation(1),
                client: endpoint.clone(),
                cluster: endpoint,
                rack: None,
            }];
            if !fenced.contains(&n) {
                records.push(MetadataRecord::UnfenceBroker {
                    node: NodeId(n),
                    incarnation: Incarnation(1),
                });
            }
            offset += 1;
            image.apply_batch(MetadataOffset(offset), &records).unwrap();
        }
        image
    }

    fn state(replicas: &[i32], isr: &[i32], leader: Option<i32>) -> PartitionState {
        PartitionState {
            replicas: replicas.iter().copied().map(NodeId).collect(),
            isr: isr.iter().copied().map(NodeId).collect(),
            leader: leader.map(NodeId),
            leader_epoch: LeaderEpoch(3),
            partition_epoch: PartitionEpoch(7),
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    fn change(
        image: &MetadataImage,
        p: &PartitionState,
        isr: &[i32],
        election: Election,
        change: BrokerChange,
    ) -> Option<(LeaderChange, Option<Vec<i32>>, i32, i32)> {
        let e = Eligibility::new(image, change);
        let isr = isr.iter().copied().map(NodeId).collect();
        match change_partition(TopicId([1; 16]), PartitionIndex(0), p, isr, election, &e)? {
            MetadataRecord::ChangePartition {
                leader,
                isr,
                leader_epoch,
                partition_epoch,
                ..
            } => Some((
                leader,
                isr.map(|i| i.iter().map(|n| n.0).collect()),
                leader_epoch.0,
                partition_epoch.0,
            )),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_leaving_leader_hands_over_to_the_first_eligible_isr_member_in_replica_order() {
        let image = image(&[3]);
        let p = state(&[1, 3, 2, 4], &[1, 2, 3, 4], Some(1));
        // 3 comes before 2 in replica order but is fenced; 2 is next.
        let got = change(
            &image,
            &p,
            &[2, 3, 4],
            Election::Online,
            BrokerChange::Leaving(NodeId(1)),
        );
        assert_eq!(
            got,
            Some((LeaderChange::To(NodeId(2)), Some(vec![2, 3, 4]), 4, 8))
        );
    }

    #[test]
    fn a_leaving_follower_only_shrinks_the_isr_and_the_leader_epoch_stays() {
        let image = image(&[]);
        let p = state(&[1, 2, 3], &[1, 2, 3], Some(1));
        let got = change(
            &image,
            &p,
            &[1, 3],
            Election::Online,
            BrokerChange::Leaving(NodeId(2)),
        );
        assert_eq!(got, Some((LeaderChange::Unchanged, Some(vec![1, 3]), 3, 8)));
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_goes_leaderless() {
        let image = image(&[2]);
        let p = state(&[1, 2], &[1], Some(1));
        let got = change(
            &image,
            &p,
            &[],
            Election::Online,
            BrokerChange::Leaving(NodeId(1)),
        );
        assert_eq!(got, Some((LeaderChange::NoLeader, None, 4, 8)));
    }

    #[test]
    fn a_non_isr_replica_is_never_elected() {
        // 2 is live but out of the ISR: without unclean election the partition waits for 1.
        let image = image(&[1]);
        let p = state(&[1, 2], &[1], None);
        assert_eq!(
            change(&image, &p, &[1], Election::Online, BrokerChange::None),
            None
        );
        let back = change(
            &image,
            &p,
            &[1],
            Election::Online,
            BrokerChange::Joining(NodeId(1)),
        );
        assert_eq!(back, Some((LeaderChange::To(NodeId(1)), None, 4, 8)));
    }

    #[test]
    fn an_unclean_election_picks_a_live_replica_outside_the_isr_and_resets_the_isr_to_it() {
        let image = image(&[1, 2]);
        let p = state(&[1, 2, 3], &[1], None);
        let got = change(&image, &p, &[1], Election::Unclean, BrokerChange::None);
        assert_eq!(
            got,
            Some((LeaderChange::To(NodeId(3)), Some(vec![3]), 4, 8))
        );
        // An in-sync replica that may lead still comes first.
        let back = change(
            &image,
            &p,
            &[1],
            Election::Unclean,
            BrokerChange::Joining(NodeId(1)),
        );
        assert_eq!(back, Some((LeaderChange::To(NodeId(1)), None, 4, 8)));
        let none = super::tests::image(&[1, 2, 3]);
        assert_eq!(
            change(&none, &p, &[1], Election::Unclean, BrokerChange::None),
            None
        );
    }

    #[test]
    fn a_preferred_election_moves_to_the_first_replica_only_when_it_is_in_sync_and_live() {
        let image = image(&[]);
        let p = state(&[1, 2, 3], &[1, 2, 3], Some(2));
        let got = change(
            &image,
            &p,
            &[1, 2, 3],
            Election::Preferred,
            BrokerChange::None,
        );
        assert_eq!(got, Some((LeaderChange::To(NodeId(1)), None, 4, 8)));
        let out_of_sync = state(&[1, 2, 3], &[2, 3], Some(2));
        assert_eq!(
            change(
                &image,
                &out_of_sync,
                &[2, 3],
                Election::Preferred,
                BrokerChange::None
            ),
            None
        );
        let fenced = super::tests::image(&[1]);
        assert_eq!(
            change(
                &fenced,
                &p,
                &[1, 2, 3],
                Election::Preferred,
                BrokerChange::None
            ),
            None
        );
    }

    #[test]
    fn a_broker_leaving_takes_it_out_of_every_isr_it_is_in() {
        let mut image = image(&[]);
        let id = TopicId([9; 16]);
        let mut records = vec![MetadataRecord::CreateTopic {
            name: "a".into(),
            topic_id: id,
            configs: vec![],
        }];
        for (i, (replicas, leader)) in [(&[1, 2][..], 1), (&[2, 3][..], 2), (&[3, 4][..], 3)]
            .into_iter()
            .enumerate()
        {
            let replicas: Vec<NodeId> = replicas.iter().copied().map(NodeId).collect();
            records.push(MetadataRecord::CreatePartition {
                topic_id: id,
                index: PartitionIndex(i as i32),
                isr: replicas.clone(),
                replicas,
                leader: Some(NodeId(leader)),
                leader_epoch: LeaderEpoch(0),
                partition_epoch: PartitionEpoch(0),
            });
        }
        image.apply_batch(MetadataOffset(10), &records).unwrap();
        let mut records = remove_broker(&image, NodeId(2));
        assert_eq!(records.len(), 2, "{records:?}");
        records.push(MetadataRecord::FenceBroker {
            node: NodeId(2),
            incarnation: Incarnation(1),
        });
        image.apply_batch(MetadataOffset(11), &records).unwrap();
        let parts = &image.topic(id).unwrap().partitions;
        assert_eq!(parts[0].isr, vec![NodeId(1)]);
        assert_eq!(parts[1].leader, Some(NodeId(3)));
        assert_eq!(parts[1].isr, vec![NodeId(3)]);
        assert_eq!(parts[2].partition_epoch, PartitionEpoch(0));
    }
}
