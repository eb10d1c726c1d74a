//! Scenario tests of `ControllerNode` on a perfect, hand-driven network: the ready protocol's ordering
//! rules, restarts from the durable log, and snapshots sent to a follower that fell behind.

use raft::eraftpb::MessageType;
use spate_controller::ids::{MetadataOffset, NodeId};
use spate_controller::log_store::{PersistBatch, RaftLogStore};
use spate_controller::node::{
    decode_message, encode_message, Applied, CommittedRead, ControllerNode, MetadataFollower,
    NodeConfig, NodeError, Outbound,
};
use spate_controller::records::MetadataRecord;

struct Cluster {
    nodes: Vec<ControllerNode>,
    disks: Vec<RaftLogStore>,
    /// Batches produced and not yet written, per node.
    unwritten: Vec<Vec<PersistBatch>>,
    wire: Vec<(NodeId, Outbound)>,
    applied: Vec<Vec<Applied>>,
    down: Vec<bool>,
    /// Links (from, to) that drop everything.
    blocked: Vec<(NodeId, NodeId)>,
}

fn voters() -> Vec<NodeId> {
    vec![NodeId(1), NodeId(2), NodeId(3)]
}

fn config(id: NodeId) -> NodeConfig {
    let mut c = NodeConfig::new(id, voters(), u64::from(id.0.unsigned_abs()));
    c.snapshot_every_entries = 8;
    c
}

fn record(n: i32) -> MetadataRecord {
    MetadataRecord::UnregisterBroker { node: NodeId(n) }
}

impl Cluster {
    fn new() -> Self {
        let disks: Vec<RaftLogStore> = voters()
            .iter()
            .map(|_| RaftLogStore::new(&voters()))
            .collect();
        let nodes = voters()
            .into_iter()
            .zip(&disks)
            .map(|(id, d)| ControllerNode::new(config(id), d.clone()).unwrap())
            .collect();
        Cluster {
            nodes,
            disks,
            unwritten: vec![vec![]; 3],
            wire: vec![],
            applied: vec![vec![]; 3],
            down: vec![false; 3],
            blocked: vec![],
        }
    }

    /// Collects every node's actions without writing or delivering anything.
    fn collect(&mut self) {
        for i in 0..3 {
            if self.down[i] {
                continue;
            }
            let actions = self.nodes[i].ready();
            let from = self.nodes[i].id();
            self.wire
                .extend(actions.messages.into_iter().map(|m| (from, m)));
            self.unwritten[i].extend(actions.persist);
            self.applied[i].extend(actions.applied);
        }
    }

    fn write_all(&mut self, i: usize) {
        for batch in std::mem::take(&mut self.unwritten[i]) {
            self.disks[i].apply(&batch);
            self.nodes[i].on_persisted(batch.token.unwrap());
        }
    }

    fn deliver_all(&mut self) {
        for (from, m) in std::mem::take(&mut self.wire) {
            let i = (m.to.0 - 1) as usize;
            if self.down[i] || self.blocked.contains(&(from, m.to)) {
                continue;
            }
            let message = decode_message(&encode_message(&m.message)).unwrap();
            assert_eq!(message.from, from.to_raft_id());
            let _ = self.nodes[i].step(message);
        }
    }

    /// Runs the perfect network until quiet.
    fn settle(&mut self) {
        for _ in 0..50 {
            self.collect();
            for i in 0..3 {
                if !self.down[i] {
                    self.write_all(i);
                }
            }
            self.collect();
            if self.wire.is_empty() {
                return;
            }
            self.deliver_all();
        }
        panic!("no quiet after 50 rounds");
    }

    fn elect(&mut self, i: usize) {
        self.nodes[i].campaign();
        self.settle();
        assert!(self.nodes[i].is_leader());
    }
}

#[test]
fn a_node_refuses_a_voter_set_other_than_its_durable_one() {
    let durable = RaftLogStore::new(&voters());
    let other = NodeConfig::new(NodeId(1), vec![NodeId(1), NodeId(2)], 0);
    assert!(matches!(
        ControllerNode::new(other, durable.clone()),
        Err(NodeError::InvalidConfig { .. })
    ));
    let not_a_voter = NodeConfig::new(NodeId(4), voters(), 0);
    assert!(matches!(
        ControllerNode::new(not_a_voter, durable.clone()),
        Err(NodeError::InvalidConfig { .. })
    ));
    // The same voters in another order are the same set.
    let reordered = NodeConfig::new(NodeId(1), vec![NodeId(3), NodeId(1), NodeId(2)], 0);
    assert!(ControllerNode::new(reordered, durable).is_ok());
}

#[test]
fn a_proposal_commits_on_every_node_in_the_same_place() {
    let mut c = Cluster::new();
    c.elect(0);
    let id = c.nodes[0].propose(&[record(7)]).unwrap();
    c.settle();
    for i in 0..3 {
        let a = c.applied[i]
            .iter()
            .find(|a| a.offset == id.offset)
            .expect("applied everywhere");
        assert_eq!((a.term, a.records.clone()), (id.term, vec![record(7)]));
        assert_eq!(c.nodes[i].image().last_applied(), id.offset);
    }
    assert_eq!(
        c.nodes[1].propose(&[record(8)]),
        Err(NodeError::NotLeader {
            leader_hint: Some(NodeId(1))
        })
    );
}

#[test]
fn a_follower_does_not_acknowledge_an_append_before_it_is_durable() {
    let mut c = Cluster::new();
    c.elect(0);
    c.nodes[0].propose(&[record(1)]).unwrap();
    c.collect();
    // The leader's append goes out before its own write: that is allowed.
    assert!(c
        .wire
        .iter()
        .any(|(_, m)| m.message.get_msg_type() == MessageType::MsgAppend));
    assert!(!c.unwritten[0].is_empty());
    c.deliver_all();
    c.collect();
    // The followers have the entries to persist, and no append response may leave yet.
    assert!(!c.unwritten[1].is_empty() && !c.unwritten[2].is_empty());
    assert!(
        !c.wire
            .iter()
            .any(|(_, m)| m.message.get_msg_type() == MessageType::MsgAppendResponse),
        "append responses sent before persistence: {:?}",
        c.wire
    );
    c.write_all(1);
    c.collect();
    let responses: Vec<NodeId> = c
        .wire
        .iter()
        .filter(|(_, m)| m.message.get_msg_type() == MessageType::MsgAppendResponse)
        .map(|(from, _)| *from)
        .collect();
    assert_eq!(
        responses,
        vec![NodeId(2)],
        "only the follower that persisted answers"
    );
}

#[test]
fn a_restarted_node_recovers_its_image_from_its_durable_log_and_catches_up_by_snapshot() {
    let mut c = Cluster::new();
    c.elect(0);
    for n in 0..5 {
        c.nodes[0].propose(&[record(n)]).unwrap();
    }
    c.settle();
    // Node 3 crashes; the others go on long enough to compact past what it has.
    c.down[2] = true;
    c.unwritten[2].clear();
    for n in 5..40 {
        c.nodes[0].propose(&[record(n)]).unwrap();
        c.settle();
    }
    let leader_snapshot = c.nodes[0].log_store().snapshot_index();
    assert!(
        leader_snapshot > c.disks[2].entries_ref().last().unwrap().index,
        "the leader compacted past node 3"
    );
    // Restart from the durable log: the image comes back to what was applied and durable.
    c.nodes[2] = ControllerNode::new(config(NodeId(3)), c.disks[2].clone()).unwrap();
    c.down[2] = false;
    c.applied[2].clear();
    for _ in 0..30 {
        for n in &mut c.nodes {
            n.tick();
        }
        c.settle();
    }
    assert_eq!(c.nodes[2].image(), c.nodes[0].image());
    assert_eq!(
        c.nodes[2].image().last_applied(),
        c.nodes[0].image().last_applied()
    );
    assert!(
        c.disks[2].snapshot_index() >= leader_snapshot,
        "node 3 caught up through a snapshot"
    );
    // A non-voting broker following from any voter gets the same image, through a snapshot first.
    let mut follower = MetadataFollower::new();
    let read = c.nodes[1].read_committed(follower.next_offset());
    assert!(matches!(read, CommittedRead::Snapshot(_)));
    follower.apply(read).unwrap();
    let read = c.nodes[1].read_committed(follower.next_offset());
    follower.apply(read).unwrap();
    assert_eq!(follower.image(), c.nodes[1].image());
    assert!(follower.image().last_applied() >= MetadataOffset(40));
}

fn leaders(c: &Cluster) -> Vec<usize> {
    (0..3)
        .filter(|i| !c.down[*i] && c.nodes[*i].is_leader())
        .collect()
}

fn run_ticks(c: &mut Cluster, ticks: usize) {
    for _ in 0..ticks {
        for i in 0..3 {
            if !c.down[i] {
                c.nodes[i].tick();
            }
        }
        c.settle();
    }
}

#[test]
fn a_leader_that_cannot_hear_its_followers_steps_down_and_another_is_elected() {
    let mut c = Cluster::new();
    c.elect(0);
    let term = c.nodes[0].term();
    // One-way: node 1 still sends, but hears nobody.
    c.blocked = vec![(NodeId(2), NodeId(1)), (NodeId(3), NodeId(1))];
    run_ticks(&mut c, 60);
    // check-quorum: the old leader hears no responses and steps down, stops heartbeating, and one of
    // the others wins a later term.
    assert!(
        !c.nodes[0].is_leader(),
        "a leader without a quorum of responses must step down"
    );
    let now = leaders(&c);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], 0);
    assert!(c.nodes[now[0]].term() > term);
    let id = c.nodes[now[0]].propose(&[record(1)]).unwrap();
    c.settle();
    assert!(c.nodes[now[0]].image().last_applied() >= id.offset);
}

#[test]
fn an_isolated_follower_does_not_disrupt_the_leader_when_it_returns() {
    let mut c = Cluster::new();
    c.elect(0);
    let term = c.nodes[0].term();
    c.blocked = [1, 3]
        .iter()
        .flat_map(|n| [(NodeId(2), NodeId(*n)), (NodeId(*n), NodeId(2))])
        .collect();
    run_ticks(&mut c, 60);
    assert_eq!(
        c.nodes[1].term(),
        term,
        "pre-vote: an isolated node does not bump its term"
    );
    c.blocked.clear();
    run_ticks(&mut c, 10);
    assert_eq!(leaders(&c), vec![0]);
    assert_eq!(c.nodes[0].term(), term);
}

#[test]
fn only_the_leader_describes_the_quorum_and_it_sees_how_far_each_voter_is() {
    let mut c = Cluster::new();
    c.elect(0);
    assert_eq!(c.nodes[1].quorum_status(), None);
    // Node 3 hears nothing more: it stays behind while the others commit.
    c.blocked.push((NodeId(1), NodeId(3)));
    let id = c.nodes[0].propose(&[record(7)]).unwrap();
    c.settle();
    let status = c.nodes[0]
        .quorum_status()
        .expect("the leader describes the quorum");
    assert_eq!(status.leader, NodeId(1));
    assert_eq!(status.term, id.term);
    assert_eq!(status.committed, id.offset);
    assert_eq!(status.last, id.offset);
    let matched: Vec<(NodeId, MetadataOffset)> =
        status.voters.iter().map(|v| (v.node, v.matched)).collect();
    assert_eq!(matched[0], (NodeId(1), id.offset));
    assert_eq!(matched[1], (NodeId(2), id.offset));
    assert_eq!(matched[2].0, NodeId(3));
    assert!(matched[2].1 < id.offset, "node 3 was cut off: {matched:?}");
}

/// When the leader's process is known to be gone (every survivor's transport sees its port
/// refuse), the survivors elect a new leader at once, not after an election timeout: the
/// lowest-id survivor campaigns and the other, its lease ended and its own timeout held back,
/// votes for it.
#[test]
fn survivors_told_the_leader_is_gone_elect_a_new_one_without_waiting_for_a_timeout() {
    for dead in 0..3 {
        let mut c = Cluster::new();
        c.elect(dead);
        let term = c.nodes[dead].term();
        c.down[dead] = true;
        let leader = c.nodes[dead].id();
        // One tick: far below the election timeout (10 ticks).
        for i in (0..3).filter(|i| *i != dead) {
            c.nodes[i].leader_gone(leader);
        }
        run_ticks(&mut c, 1);
        let now = leaders(&c);
        assert_eq!(now.len(), 1, "killed node {}: leaders {now:?}", dead + 1);
        let lowest = (0..3).find(|i| *i != dead).unwrap();
        assert_eq!(now, vec![lowest]);
        assert!(c.nodes[lowest].term() > term);
        // It commits, with the other survivor.
        let id = c.nodes[lowest].propose(&[record(7)]).unwrap();
        c.settle();
        for i in (0..3).filter(|i| *i != dead) {
            assert!(c.nodes[i].image().last_applied() >= id.offset);
        }
    }
    // A live leader is not deposed by a stale report about another node.
    let mut c = Cluster::new();
    c.elect(0);
    let term = c.nodes[0].term();
    c.nodes[1].leader_gone(NodeId(3));
    c.nodes[2].leader_gone(NodeId(2));
    run_ticks(&mut c, 3);
    assert_eq!(leaders(&c), vec![0]);
    assert_eq!(c.nodes[0].term(), term);
}
