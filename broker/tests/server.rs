//! The broker as a process: startup, request framing, bad input, shutdown.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn accepts_within_a_second_and_answers_api_versions() {
    let started = Instant::now();
    let broker = start_broker("startup", &[]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let mut stream = broker.connect();
    let response = round_trip(&mut stream, &api_versions_request(0, 7));
    assert_eq!(
        &response[0..4],
        &7i32.to_be_bytes(),
        "correlation id echoed"
    );
    assert_eq!(&response[4..6], &0i16.to_be_bytes(), "no error");
    let count = i32::from_be_bytes(response[6..10].try_into().unwrap());
    assert!(count >= 2, "advertises at least ApiVersions and Metadata");
    let keys: Vec<i16> = (0..count as usize)
        .map(|i| i16::from_be_bytes(response[10 + 6 * i..12 + 6 * i].try_into().unwrap()))
        .collect();
    assert!(keys.contains(&18) && keys.contains(&3), "keys {keys:?}");
    // A single broker has no metadata quorum: DescribeQuorum (55) is a cluster's API.
    assert!(!keys.contains(&55), "keys {keys:?}");
}

#[test]
fn api_versions_newer_than_supported_gets_v0_answer_with_ranges() {
    let broker = start_broker("kip511", &[]);
    let mut stream = broker.connect();
    // Version 99 with a v2 header: the broker cannot parse the body and answers in v0.
    let response = round_trip(&mut stream, &api_versions_request(99, 3));
    assert_eq!(&response[0..4], &3i32.to_be_bytes());
    assert_eq!(&response[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    let count = i32::from_be_bytes(response[6..10].try_into().unwrap());
    assert!(count >= 2);
    // The connection stays usable: the client retries with a listed version.
    let response = round_trip(&mut stream, &api_versions_request(3, 4));
    assert_eq!(&response[0..4], &4i32.to_be_bytes());
    assert_eq!(&response[4..6], &0i16.to_be_bytes());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = start_broker("pipeline", &[]);
    let mut stream = broker.connect();
    let mut bytes = Vec::new();
    for id in 0..50i32 {
        let body = api_versions_request(if id % 2 == 0 { 1 } else { 3 }, id);
        bytes.extend_from_slice(&(body.len() as i32).to_be_bytes());
        bytes.extend_from_slice(&body);
    }
    stream.write_all(&bytes).unwrap();
    for id in 0..50i32 {
        let response = read_frame(&mut stream);
        assert_eq!(&response[0..4], &id.to_be_bytes());
    }
}

#[test]
fn bad_input_closes_that_connection_and_broker_keeps_serving() {
    let broker = start_broker("badinput", &[]);

    let mut claims_2gib = broker.connect();
    claims_2gib
        .write_all(&0x7fff_ffffi32.to_be_bytes())
        .unwrap();
    assert!(
        is_closed(&mut claims_2gib, Duration::from_secs(5)),
        "2 GiB frame"
    );

    let mut negative = broker.connect();
    negative.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(
        is_closed(&mut negative, Duration::from_secs(5)),
        "negative size"
    );

    let mut unknown_key = broker.connect();
    let mut body = 999i16.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0]);
    unknown_key
        .write_all(&(body.len() as i32).to_be_bytes())
        .unwrap();
    unknown_key.write_all(&body).unwrap();
    assert!(
        is_closed(&mut unknown_key, Duration::from_secs(5)),
        "unknown key"
    );

    let mut truncated_header = broker.connect();
    truncated_header.write_all(&[0, 0, 0, 3, 0, 18, 0]).unwrap();
    assert!(
        is_closed(&mut truncated_header, Duration::from_secs(5)),
        "truncated"
    );

    let mut garbage = broker.connect();
    garbage
        .write_all(&[0, 0, 0, 40])
        .and_then(|()| garbage.write_all(&[0xAB; 40]))
        .unwrap();
    assert!(is_closed(&mut garbage, Duration::from_secs(5)), "garbage");

    // A half-sent frame from a client that went quiet does not hold up anyone else.
    let mut stalled = broker.connect();
    stalled.write_all(&[0, 0, 1, 0, 0, 18]).unwrap();

    let mut healthy = broker.connect();
    let response = round_trip(&mut healthy, &api_versions_request(2, 11));
    assert_eq!(&response[0..4], &11i32.to_be_bytes());
    assert_eq!(&response[4..6], &0i16.to_be_bytes());
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut broker = start_broker("sigterm", &[]);
    let mut stream = broker.connect();
    let _ = round_trip(&mut stream, &api_versions_request(1, 1));
    let status = broker.stop();
    assert!(status.success(), "exit status {status:?}");
}
