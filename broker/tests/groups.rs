//! Consumer groups over raw Kafka requests: what real clients rely on at the edges.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use spate_wire::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use spate_wire::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use spate_wire::kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use spate_wire::kafka_protocol::protocol::{Decodable, StrBytes};

const JOIN_VERSION: i16 = 5;
const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;
const NOT_COORDINATOR: i16 = 16;

fn join_request(member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(60_000)
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"sub"))])
}

/// A new member's id: the first join answers MEMBER_ID_REQUIRED with it (KIP-394).
fn member_id(stream: &mut std::net::TcpStream) -> String {
    let first: JoinGroupResponse = call(stream, ApiKey::JoinGroup, JOIN_VERSION, &join_request(""));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert!(
        first.member_id.starts_with("spate-test-"),
        "{}",
        first.member_id
    );
    first.member_id.to_string()
}

#[test]
fn a_parked_join_is_answered_not_coordinator_when_the_broker_stops() {
    let mut broker = start_broker(
        "group-shutdown",
        &["--group-initial-rebalance-delay-ms", "0"],
    );
    let mut a = broker.connect();
    let a_id = member_id(&mut a);
    let joined: JoinGroupResponse = call(
        &mut a,
        ApiKey::JoinGroup,
        JOIN_VERSION,
        &join_request(&a_id),
    );
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), a_id.as_str());
    assert_eq!(joined.members.len(), 1);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id(1)
        .with_member_id(StrBytes::from_string(a_id.clone()))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(StrBytes::from_string(a_id.clone()))
            .with_assignment(Bytes::from_static(b"all"))]);
    let synced: SyncGroupResponse = call(&mut a, ApiKey::SyncGroup, 3, &sync);
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"all");

    // b joins and waits for a to rejoin, which it never does.
    let mut b = broker.connect();
    let b_id = member_id(&mut b);
    let parked = encode_request(ApiKey::JoinGroup, JOIN_VERSION, 9, &join_request(&b_id));
    let mut frame = (parked.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&parked);
    std::io::Write::write_all(&mut b, &frame).unwrap();
    // a's heartbeat hears of the rebalance once b's join arrived: b is parked now.
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id(1)
        .with_member_id(StrBytes::from_string(a_id));
    let mut rebalancing = false;
    for _ in 0..100 {
        let beat: HeartbeatResponse = call(&mut a, ApiKey::Heartbeat, 3, &heartbeat);
        if beat.error_code == REBALANCE_IN_PROGRESS {
            rebalancing = true;
            break;
        }
        assert_eq!(beat.error_code, 0);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(rebalancing, "b's join never started a rebalance");
    drop(a);

    broker.sigterm();
    b.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let response = read_frame(&mut b);
    assert_eq!(&response[..4], &9i32.to_be_bytes());
    let mut body = Bytes::from(response).slice(4..);
    let answer = JoinGroupResponse::decode(&mut body, JOIN_VERSION).unwrap();
    assert_eq!(answer.error_code, NOT_COORDINATOR);
    drop(b);
    // One SIGTERM only: a second one makes the broker exit at once with status 2.
    let status = broker.wait_exit();
    assert!(status.success(), "{status:?}");
}
