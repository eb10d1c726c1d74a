//! What clients are told about the cluster itself: its id, its brokers and their client
//! endpoints, and which node is the active controller. Metadata, DescribeCluster and
//! FindCoordinator answer from one [`ClusterView`], so they never disagree.
//!
//! A single broker is a cluster of one: itself, as broker and controller. The cluster's
//! metadata image (broker registrations, fencing, the quorum's leader) will replace the view
//! on every change.
//!
//! Metadata lists the live brokers and, for a while, brokers fenced without a controlled
//! shutdown ([`ClusterView::linger_after`]): Spate fences a broker whose process is gone at
//! once, where Kafka fences only when its session expires and lists it until then. A client may
//! still wait on such a broker (librdkafka's coordinator requests do, see the function), and
//! forgets it as soon as Metadata stops listing it. FindCoordinator, DescribeCluster and the
//! Produce leader hints name only live brokers: a fenced broker leads and coordinates nothing.

use std::time::{Duration, Instant};

use crate::config::Config;

/// The id clients see in Metadata (v2+) and DescribeCluster. One fixed value while a broker is
/// alone; a cluster will keep a generated id in its metadata log.
pub const SINGLE_NODE_CLUSTER_ID: &str = "spate";

/// A broker as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// Its node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Its rack, if configured.
    pub rack: Option<String>,
}

/// The cluster as this broker knows it; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The cluster id.
    pub cluster_id: String,
    /// The active controller's node id.
    pub controller_id: i32,
    /// Live (unfenced) brokers, by node id.
    pub brokers: Vec<BrokerEndpoint>,
    /// Registered brokers that are fenced (missed heartbeats, gone, or shutting down): listed by
    /// DescribeCluster v2 when asked (`include_fenced_brokers`), and by Metadata while they
    /// linger.
    pub fenced: Vec<FencedBroker>,
    /// Whether this view is as new as this run of the broker: always for a single broker; in a
    /// cluster once the applied image holds this run's registration. Until then the image is
    /// the one replayed from the local metadata log, which can be any age (a broker restarted
    /// after a kill would tell clients of the in-sync replicas and leaders from before it
    /// died), so answers built from it wait for it ([`ClusterView::wait_caught_up`]), as
    /// Kafka's broker serves no request before its first metadata catch-up.
    pub caught_up: bool,
}

/// A registered broker that is fenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedBroker {
    /// Where clients reach it.
    pub endpoint: BrokerEndpoint,
    /// Why, as far as the metadata image tells.
    pub cause: FenceCause,
    /// Until when Metadata still lists it ([`ClusterView::linger_after`]); `None`: not listed.
    pub listed_until: Option<Instant>,
}

/// Why a broker is fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceCause {
    /// It asked to stop: it leaves Metadata at once, as in Kafka, where a controlled shutdown
    /// ends with the broker fenced.
    ControlledShutdown,
    /// It missed its session, its process was seen gone, or a new registration of it has not
    /// caught up yet. The image does not tell these apart.
    Lost,
}

impl ClusterView {
    /// The view of a broker that runs alone: itself.
    pub fn single_node(config: &Config) -> ClusterView {
        ClusterView {
            cluster_id: SINGLE_NODE_CLUSTER_ID.to_owned(),
            controller_id: config.node_id,
            brokers: vec![BrokerEndpoint {
                node_id: config.node_id,
                host: config.advertised_host.clone(),
                port: config.advertised_port,
                rack: None,
            }],
            fenced: Vec::new(),
            caught_up: config.cluster.is_none(),
        }
    }
}

/// How long an answer built from the cluster view waits for a restarted broker to catch up
/// with the metadata log before answering from what it has: its registration usually commits
/// within a heartbeat or two; without a quorum it cannot, and a client is better served by an
/// old answer than by a request that times out.
pub const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a waiting answer looks again.
const CATCH_UP_POLL: std::time::Duration = std::time::Duration::from_millis(20);

impl ClusterView {
    /// Waits, up to [`CATCH_UP_WAIT`], until the view in `cell` is caught up (see
    /// [`ClusterView::caught_up`]); returns whether it is. Only a broker that just started
    /// waits, so polling costs nothing in steady state.
    pub async fn wait_caught_up(cell: &std::cell::RefCell<ClusterView>) -> bool {
        let deadline = std::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            if cell.borrow().caught_up {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            glommio::timer::sleep(CATCH_UP_POLL).await;
        }
    }

    /// The brokers Metadata lists at `now`: the live ones, then the fenced ones still lingering.
    pub fn listed(&self, now: Instant) -> impl Iterator<Item = &BrokerEndpoint> {
        let lingering = self
            .fenced
            .iter()
            .filter(move |f| f.listed_until.is_some_and(|until| now < until))
            .map(|f| &f.endpoint);
        self.brokers.iter().chain(lingering)
    }

    /// Carries the lingering of fenced brokers over from `before`, the view this one replaces:
    /// a broker live in `before` and fenced here without a controlled shutdown stays listed in
    /// Metadata until `now + linger`, one already lingering keeps its deadline while it stays
    /// fenced, and a controlled shutdown ends it.
    ///
    /// Why: Kafka fences a broker whose process died only when its session expires
    /// (`broker.session.timeout.ms`), so clients see it in Metadata for that long, failing to
    /// connect, until its partitions and coordinators move in the same step that drops it.
    /// Spate moves them at once but would also drop the broker at once, and librdkafka (2.16)
    /// then decommissions its handle for that broker while its coordinator cache may still name
    /// it: a later coordinator request (TxnOffsetCommit of `send_offsets_to_transaction`) finds
    /// the cached broker down and waits for a state change of that handle that never comes, with
    /// no timeout (librdkafka issues #5511 and #5456). Listed, the handle lives on: each failed
    /// connect wakes the request, which asks FindCoordinator again and finds the new coordinator.
    /// `linger` is the session timeout, so a dead broker is listed at least as long as in Kafka.
    ///
    /// Only a broker whose process this broker saw gone (`gone`: its cluster port refuses
    /// connections) lingers, since only that fence comes before Kafka's would. One fenced
    /// because its session expired (stopped, hung or cut off) is dropped where Kafka drops
    /// it too; listing it longer would only point clients at a broker whose connections stay
    /// open but silent.
    pub fn linger_after(
        &mut self,
        before: &ClusterView,
        gone: &[i32],
        now: Instant,
        linger: Duration,
    ) {
        for fenced in &mut self.fenced {
            let node = fenced.endpoint.node_id;
            fenced.listed_until = match fenced.cause {
                FenceCause::ControlledShutdown => None,
                FenceCause::Lost
                    if before.brokers.iter().any(|b| b.node_id == node) && gone.contains(&node) =>
                {
                    Some(now + linger)
                }
                FenceCause::Lost => before
                    .fenced
                    .iter()
                    .find(|f| f.endpoint.node_id == node)
                    .and_then(|f| f.listed_until),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_secs(9);
    /// Every broker these tests fence was seen gone, except where a test says otherwise.
    const GONE: [i32; 3] = [1, 2, 3];

    fn endpoint(node_id: i32) -> BrokerEndpoint {
        BrokerEndpoint {
            node_id,
            host: format!("b{node_id}"),
            port: 9090 + node_id as u16,
            rack: None,
        }
    }

    /// A view with `live` brokers and `fenced` ones, none lingering yet (as `plan` builds it).
    fn view(live: &[i32], fenced: &[(i32, FenceCause)]) -> ClusterView {
        ClusterView {
            cluster_id: "c".to_owned(),
            controller_id: 1,
            brokers: live.iter().map(|&n| endpoint(n)).collect(),
            fenced: fenced
                .iter()
                .map(|&(n, cause)| FencedBroker {
                    endpoint: endpoint(n),
                    cause,
                    listed_until: None,
                })
                .collect(),
            caught_up: true,
        }
    }

    fn listed(view: &ClusterView, at: Instant) -> Vec<i32> {
        view.listed(at).map(|b| b.node_id).collect()
    }

    #[test]
    fn a_broker_fenced_but_not_seen_gone_is_dropped_at_once() {
        // Its session expired (stopped or cut off): Kafka drops it at that fence too.
        let t0 = Instant::now();
        let mut after = view(&[1, 2], &[(3, FenceCause::Lost)]);
        after.linger_after(&view(&[1, 2, 3], &[]), &[], t0, LINGER);
        assert_eq!(listed(&after, t0), [1, 2]);
    }

    #[test]
    fn a_broker_fenced_as_lost_is_listed_for_the_linger_then_dropped() {
        let t0 = Instant::now();
        let before = view(&[1, 2, 3], &[]);
        let mut after = view(&[1, 2], &[(3, FenceCause::Lost)]);
        after.linger_after(&before, &GONE, t0, LINGER);
        assert_eq!(listed(&after, t0), [1, 2, 3]);
        assert_eq!(
            listed(&after, t0 + LINGER - Duration::from_millis(1)),
            [1, 2, 3]
        );
        assert_eq!(listed(&after, t0 + LINGER), [1, 2]);
        // Only Metadata's list: the live brokers are still the live ones.
        assert_eq!(after.brokers.len(), 2);
    }

    #[test]
    fn a_lingering_broker_keeps_its_deadline_through_later_images() {
        let t0 = Instant::now();
        let mut fenced = view(&[1, 2], &[(3, FenceCause::Lost)]);
        fenced.linger_after(&view(&[1, 2, 3], &[]), &GONE, t0, LINGER);
        // Later images (a topic created, say) do not restart it.
        let mut later = view(&[1, 2], &[(3, FenceCause::Lost)]);
        later.linger_after(&fenced, &GONE, t0 + Duration::from_secs(5), LINGER);
        assert_eq!(later.fenced[0].listed_until, Some(t0 + LINGER));
        assert_eq!(listed(&later, t0 + LINGER), [1, 2]);
    }

    #[test]
    fn a_controlled_shutdown_leaves_metadata_at_once() {
        let t0 = Instant::now();
        let mut after = view(&[1, 2], &[(3, FenceCause::ControlledShutdown)]);
        after.linger_after(&view(&[1, 2, 3], &[]), &GONE, t0, LINGER);
        assert_eq!(listed(&after, t0), [1, 2]);
        // Nor does a lingering broker that then shuts down stay listed.
        let mut lost = view(&[1, 2], &[(3, FenceCause::Lost)]);
        lost.linger_after(&view(&[1, 2, 3], &[]), &GONE, t0, LINGER);
        let mut shut = view(&[1, 2], &[(3, FenceCause::ControlledShutdown)]);
        shut.linger_after(&lost, &GONE, t0, LINGER);
        assert_eq!(listed(&shut, t0), [1, 2]);
    }

    #[test]
    fn a_broker_already_fenced_in_the_first_image_seen_is_not_listed() {
        // A broker that starts knows nothing of when the others were fenced.
        let t0 = Instant::now();
        let mut first = view(&[1, 2], &[(3, FenceCause::Lost)]);
        first.linger_after(&view(&[1], &[]), &GONE, t0, LINGER);
        assert_eq!(listed(&first, t0), [1, 2]);
    }

    #[test]
    fn a_broker_back_from_lingering_is_listed_once_as_live() {
        let t0 = Instant::now();
        let mut fenced = view(&[1, 2], &[(3, FenceCause::Lost)]);
        fenced.linger_after(&view(&[1, 2, 3], &[]), &GONE, t0, LINGER);
        // Restarted within the linger: registered again (fenced until caught up), then live.
        let mut registered = view(&[1, 2], &[(3, FenceCause::Lost)]);
        registered.linger_after(&fenced, &GONE, t0 + Duration::from_secs(2), LINGER);
        assert_eq!(listed(&registered, t0 + Duration::from_secs(2)), [1, 2, 3]);
        let mut live = view(&[1, 2, 3], &[]);
        live.linger_after(&registered, &GONE, t0 + Duration::from_secs(3), LINGER);
        assert_eq!(listed(&live, t0 + Duration::from_secs(3)), [1, 2, 3]);
    }
}
