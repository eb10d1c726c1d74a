//! The client against the real broker: produce, consume, admin, with exact counts and contents.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use common::{run, start_broker};
use spate_client::connection::{Connection, ConnectionConfig};
use spate_client::partitioner::partition_for_key;
use spate_client::{
    Acks, Admin, ClientConfig, ClientError, Compression, Consumer, ConsumerConfig, Delivery,
    Idempotence, NewTopic, OffsetSpec, Producer, ProducerConfig,
};
use spate_wire::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_wire::kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId as WireProducerId, TopicName, TransactionalId,
};
use spate_wire::kafka_protocol::protocol::StrBytes;
use spate_wire::ErrorCode;

type Deliveries = Rc<RefCell<Vec<(String, i32, i32, Option<i64>)>>>;

fn recorder() -> (Deliveries, Box<dyn FnMut(Delivery)>) {
    let log: Deliveries = Rc::default();
    let sink = Rc::clone(&log);
    let callback = Box::new(move |d: Delivery| {
        let offset = d.result.expect("delivery succeeded").map(|o| o.0);
        sink.borrow_mut()
            .push((d.topic.to_string(), d.partition, d.record_count, offset));
    });
    (log, callback)
}

/// Reads until `want` records arrived from every assigned partition; returns them per partition.
async fn consume_all(
    consumer: &mut Consumer,
    want: usize,
) -> Result<HashMap<i32, Vec<(i64, Option<Vec<u8>>, Vec<u8>)>>, ClientError> {
    let mut got: HashMap<i32, Vec<_>> = HashMap::new();
    let mut total = 0;
    let mut empty_polls = 0;
    while total < want {
        let fetched = consumer.poll().await?;
        let mut n = 0;
        for record in fetched.records() {
            let r = record?;
            got.entry(r.partition).or_default().push((
                r.offset,
                r.key.map(|k| k.to_vec()),
                r.value.expect("value").to_vec(),
            ));
            n += 1;
        }
        total += n;
        if n == 0 {
            empty_polls += 1;
            assert!(empty_polls < 40, "no progress: {total} of {want} records");
        }
    }
    assert_eq!(total, want);
    Ok(got)
}

#[test]
fn keyed_records_round_trip_with_java_partitioning() {
    let broker = start_broker("keyed");
    let addr = broker.addr;
    run(async move {
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        let created = admin
            .create_topics(&[NewTopic::new("keyed", 3)])
            .await
            .unwrap();
        assert!(created[0].is_ok(), "{created:?}");

        let (deliveries, callback) = recorder();
        let mut config = ProducerConfig::new(ClientConfig::new(addr));
        config.acks = Acks::Leader;
        config.batch.batch_bytes_max = 4096;
        let mut producer = Producer::connect(config, callback).await.unwrap();
        for i in 0..1000u32 {
            let key = format!("key-{}", i % 37);
            let value = format!("value-{i}");
            producer
                .send("keyed", Some(key.as_bytes()), Some(value.as_bytes()), &[])
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
        assert_eq!(producer.in_flight(), 0);
        let deliveries = deliveries.borrow().clone();
        let delivered: i32 = deliveries.iter().map(|d| d.2).sum();
        assert_eq!(delivered, 1000);
        assert!(
            deliveries.len() > 3,
            "4 KiB batches: more than one per partition"
        );
        // Base offsets of each partition's batches are consecutive.
        for p in 0..3 {
            let mut next = 0;
            for d in deliveries.iter().filter(|d| d.1 == p) {
                assert_eq!(d.3, Some(next), "partition {p}");
                next += i64::from(d.2);
            }
        }

        let mut consumer = Consumer::connect(ConsumerConfig::new(ClientConfig::new(addr)))
            .await
            .unwrap();
        for p in 0..3 {
            consumer
                .assign("keyed", p, OffsetSpec::Earliest)
                .await
                .unwrap();
        }
        let got = consume_all(&mut consumer, 1000).await.unwrap();
        let mut seen = 0;
        for (partition, records) in &got {
            for (index, (offset, key, value)) in records.iter().enumerate() {
                assert_eq!(*offset, index as i64, "offsets dense and in order");
                let key = key.as_ref().expect("keyed");
                assert_eq!(partition_for_key(key, 3), *partition);
                let i: u32 = std::str::from_utf8(value).unwrap()[6..].parse().unwrap();
                assert_eq!(key, format!("key-{}", i % 37).as_bytes());
                seen += 1;
            }
            // Within a partition, values come in send order.
            let order: Vec<u32> = records
                .iter()
                .map(|r| std::str::from_utf8(&r.2).unwrap()[6..].parse().unwrap())
                .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(seen, 1000);
        assert_eq!(consumer.position("keyed", 0), Some(got[&0].len() as i64));
    });
}

#[test]
fn compressed_batches_round_trip() {
    let broker = start_broker("compressed");
    let addr = broker.addr;
    run(async move {
        for (i, codec) in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ]
        .into_iter()
        .enumerate()
        {
            let topic = format!("compressed-{i}");
            let (deliveries, callback) = recorder();
            let mut config = ProducerConfig::new(ClientConfig::new(addr));
            config.acks = Acks::All;
            config.batch.compression = codec;
            let mut producer = Producer::connect(config, callback).await.unwrap();
            for n in 0..300u32 {
                let value = format!("{n:08}").repeat(10);
                producer
                    .send_to(
                        &topic,
                        0,
                        None,
                        Some(value.as_bytes()),
                        &[("h", Some(b"v"))],
                    )
                    .await
                    .unwrap();
            }
            producer.flush().await.unwrap();
            let delivered: i32 = deliveries.borrow().iter().map(|d| d.2).sum();
            assert_eq!(delivered, 300, "{codec:?}");

            let mut consumer = Consumer::connect(ConsumerConfig::new(ClientConfig::new(addr)))
                .await
                .unwrap();
            consumer
                .assign(&topic, 0, OffsetSpec::Offset(0))
                .await
                .unwrap();
            let got = consume_all(&mut consumer, 300).await.unwrap();
            for (n, (offset, key, value)) in got[&0].iter().enumerate() {
                assert_eq!(*offset, n as i64);
                assert_eq!(*key, None);
                assert_eq!(value, format!("{n:08}").repeat(10).as_bytes(), "{codec:?}");
            }
            // Starting inside a batch: the broker returns the whole batch, the records before
            // the position are skipped.
            let mut consumer = Consumer::connect(ConsumerConfig::new(ClientConfig::new(addr)))
                .await
                .unwrap();
            consumer
                .assign(&topic, 0, OffsetSpec::Offset(157))
                .await
                .unwrap();
            let tail = consume_all(&mut consumer, 143).await.unwrap();
            let offsets: Vec<i64> = tail[&0].iter().map(|r| r.0).collect();
            assert_eq!(offsets, (157..300).collect::<Vec<i64>>(), "{codec:?}");
        }
    });
}

#[test]
fn admin_creates_lists_and_deletes_topics() {
    let broker = start_broker("admin");
    let addr = broker.addr;
    run(async move {
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        let results = admin
            .create_topics(&[NewTopic::new("a", 2), NewTopic::new("b", 1)])
            .await
            .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let again = admin.create_topics(&[NewTopic::new("a", 2)]).await.unwrap();
        assert!(
            matches!(
                &again[0],
                Err(ClientError::Broker {
                    code: ErrorCode::TopicAlreadyExists,
                    ..
                })
            ),
            "{again:?}"
        );
        let metadata = admin.metadata(Some(&["a"])).await.unwrap();
        assert_eq!(metadata.topics.len(), 1);
        assert_eq!(metadata.topics[0].partitions.len(), 2);

        let (_, callback) = recorder();
        let mut config = ProducerConfig::new(ClientConfig::new(addr));
        // acks=all: ListOffsets(latest) answers the high watermark, which acks=1 may not have
        // moved yet.
        config.acks = Acks::All;
        let mut producer = Producer::connect(config, callback).await.unwrap();
        for _ in 0..25 {
            producer
                .send_to("a", 1, None, Some(b"x"), &[])
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
        assert_eq!(
            admin
                .list_offset("a", 1, OffsetSpec::Earliest)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            admin.list_offset("a", 1, OffsetSpec::Latest).await.unwrap(),
            25
        );
        assert_eq!(
            admin.list_offset("a", 0, OffsetSpec::Latest).await.unwrap(),
            0
        );
        assert_eq!(
            admin
                .list_offset("a", 1, OffsetSpec::Timestamp(0))
                .await
                .unwrap(),
            0
        );

        let deleted = admin.delete_topics(&["a"]).await.unwrap();
        assert!(deleted[0].is_ok(), "{deleted:?}");
        let metadata = admin.metadata(None).await.unwrap();
        let names: Vec<String> = metadata
            .topics
            .iter()
            // __consumer_offsets is listed too, marked internal, as Kafka does.
            .filter(|t| !t.is_internal)
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .collect();
        assert_eq!(names, vec!["b".to_string()]);
        assert!(metadata
            .topics
            .iter()
            .any(|t| t.is_internal
                && t.name.as_ref().map(|n| n.as_str()) == Some("__consumer_offsets")));
    });
}

#[test]
fn consumer_at_latest_long_polls_for_new_records_and_acks_zero_delivers() {
    let broker = start_broker("tail");
    let addr = broker.addr;
    run(async move {
        let (deliveries, callback) = recorder();
        let mut config = ProducerConfig::new(ClientConfig::new(addr));
        config.acks = Acks::None;
        let mut producer = Producer::connect(config, callback).await.unwrap();
        for _ in 0..10 {
            producer
                .send_to("tail", 0, None, Some(b"old"), &[])
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
        assert!(
            deliveries.borrow().iter().all(|d| d.3.is_none()),
            "acks=0: no offsets"
        );

        let mut cc = ConsumerConfig::new(ClientConfig::new(addr));
        cc.max_wait_ms = 200;
        let mut consumer = Consumer::connect(cc).await.unwrap();
        // acks=0 gives no confirmation: wait for the log end to reach 10 before seeking.
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        let mut end = 0;
        for _ in 0..100 {
            end = admin
                .list_offset("tail", 0, OffsetSpec::Latest)
                .await
                .unwrap();
            if end == 10 {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(end, 10);
        consumer
            .assign("tail", 0, OffsetSpec::Latest)
            .await
            .unwrap();
        assert_eq!(consumer.position("tail", 0), Some(10));
        let first = consumer.poll().await.unwrap();
        assert_eq!(first.records().count(), 0, "nothing new yet");
        for _ in 0..5 {
            producer
                .send_to("tail", 0, None, Some(b"new"), &[])
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
        let got = consume_all(&mut consumer, 5).await.unwrap();
        let offsets: Vec<i64> = got[&0].iter().map(|r| r.0).collect();
        assert_eq!(offsets, vec![10, 11, 12, 13, 14]);
        assert!(got[&0].iter().all(|r| r.2 == b"new"));
        // Seeking back re-reads the old records.
        consumer
            .seek("tail", 0, OffsetSpec::Earliest)
            .await
            .unwrap();
        let again = consume_all(&mut consumer, 15).await.unwrap();
        assert_eq!(again[&0].iter().filter(|r| r.2 == b"old").count(), 10);
    });
}

#[test]
fn producer_meets_a_new_topic_while_requests_are_in_flight() {
    let broker = start_broker("two-topics");
    let addr = broker.addr;
    run(async move {
        let (deliveries, callback) = recorder();
        let mut config = ProducerConfig::new(ClientConfig::new(addr));
        config.acks = Acks::Leader;
        config.batch.batch_bytes_max = 1024;
        config.batch.linger_ms = 0;
        let mut producer = Producer::connect(config, callback).await.unwrap();
        let value = [5u8; 200];
        for _ in 0..50 {
            producer
                .send("first", None, Some(&value), &[])
                .await
                .unwrap();
        }
        assert!(producer.in_flight() > 0, "requests still unanswered");
        // Needs a Metadata round trip for the new topic on the same connection.
        producer
            .send("second", None, Some(&value), &[])
            .await
            .unwrap();
        producer.flush().await.unwrap();
        let d = deliveries.borrow();
        let count = |t: &str| d.iter().filter(|x| x.0 == t).map(|x| x.2).sum::<i32>();
        assert_eq!((count("first"), count("second")), (50, 1));
    });
}

/// One idempotent batch of `records` records for partition 0 of `topic`, as a Produce request.
fn idempotent_produce(
    topic: &str,
    pid: i64,
    epoch: i16,
    seq: i32,
    records: usize,
) -> ProduceRequest {
    use bytes::BytesMut;
    use spate_wire::batch::{BatchBuilder, BatchSpec};
    use spate_wire::types::{ProducerEpoch, ProducerId};
    let mut buf = BytesMut::new();
    let spec = BatchSpec {
        producer_id: ProducerId(pid),
        producer_epoch: ProducerEpoch(epoch),
        base_sequence: seq,
        ..BatchSpec::default()
    };
    let mut builder = BatchBuilder::new(&mut buf, spec);
    for i in 0..records {
        builder.push(0, None, Some(format!("{seq}-{i}").as_bytes()), &[]);
    }
    builder.finish();
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(buf.freeze()))])])
}

/// Sends a Produce and returns (error code, base offset) of its only partition.
async fn produce(conn: &mut Connection, request: ProduceRequest) -> (i16, i64) {
    let response: ProduceResponse = conn.call(ApiKey::Produce, 9, &request).await.unwrap();
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn idempotent_produce_dedups_retries_and_refuses_gaps_and_old_epochs() {
    let broker = start_broker("idempotent");
    let addr = broker.addr;
    run(async move {
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        let created = admin
            .create_topics(&[NewTopic::new("idem", 1)])
            .await
            .unwrap();
        assert!(created[0].is_ok(), "{created:?}");
        let mut conn = Connection::connect(addr, ConnectionConfig::default())
            .await
            .unwrap();
        let init = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1)
            .with_producer_id(WireProducerId(-1))
            .with_producer_epoch(-1);
        let first: InitProducerIdResponse =
            conn.call(ApiKey::InitProducerId, 4, &init).await.unwrap();
        let second: InitProducerIdResponse =
            conn.call(ApiKey::InitProducerId, 4, &init).await.unwrap();
        assert_eq!((first.error_code, first.producer_epoch), (0, 0));
        assert!(first.producer_id.0 >= 0);
        assert_ne!(first.producer_id, second.producer_id, "ids are unique");
        // A transactional id needs a valid transaction timeout (Kafka's INVALID_TRANSACTION_TIMEOUT
        // otherwise); with one it gets its own producer id, epoch 0.
        let txn = init
            .clone()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("txn"))));
        let refused: InitProducerIdResponse =
            conn.call(ApiKey::InitProducerId, 4, &txn).await.unwrap();
        assert_eq!(
            refused.error_code,
            ErrorCode::InvalidTransactionTimeout.code()
        );
        assert_eq!(refused.producer_id.0, -1);
        let txn = txn.with_transaction_timeout_ms(10_000);
        let transactional: InitProducerIdResponse =
            conn.call(ApiKey::InitProducerId, 4, &txn).await.unwrap();
        assert_eq!(
            (transactional.error_code, transactional.producer_epoch),
            (0, 0)
        );
        assert!(![first.producer_id, second.producer_id].contains(&transactional.producer_id));

        let pid = first.producer_id.0;
        assert_eq!(
            produce(&mut conn, idempotent_produce("idem", pid, 0, 0, 3)).await,
            (0, 0)
        );
        assert_eq!(
            produce(&mut conn, idempotent_produce("idem", pid, 0, 3, 2)).await,
            (0, 3)
        );
        // A retry of either batch: no error, the original offsets, nothing appended.
        assert_eq!(
            produce(&mut conn, idempotent_produce("idem", pid, 0, 0, 3)).await,
            (0, 0)
        );
        assert_eq!(
            produce(&mut conn, idempotent_produce("idem", pid, 0, 3, 2)).await,
            (0, 3)
        );
        // A gap.
        let gap = produce(&mut conn, idempotent_produce("idem", pid, 0, 9, 1)).await;
        assert_eq!(gap.0, ErrorCode::OutOfOrderSequenceNumber.code());
        // A new epoch must start at 0; after it, the old epoch is fenced.
        let bad_start = produce(&mut conn, idempotent_produce("idem", pid, 1, 5, 1)).await;
        assert_eq!(bad_start.0, ErrorCode::OutOfOrderSequenceNumber.code());
        assert_eq!(
            produce(&mut conn, idempotent_produce("idem", pid, 1, 0, 1)).await,
            (0, 5)
        );
        let fenced = produce(&mut conn, idempotent_produce("idem", pid, 0, 5, 1)).await;
        assert_eq!(fenced.0, ErrorCode::InvalidProducerEpoch.code());
        // An unknown producer id is accepted at any sequence (Kafka 2.5+).
        assert_eq!(
            produce(&mut conn, idempotent_produce("idem", pid + 100, 0, 7, 1)).await,
            (0, 6)
        );

        let end = spate_client::admin::list_offset(&mut conn, "idem", 0, OffsetSpec::Latest)
            .await
            .unwrap();
        assert_eq!(end, 7, "3 + 2 + 1 + 1 records, retries not appended");
    });
}

#[test]
fn idempotent_producer_round_trips_records_in_order() {
    let broker = start_broker("idempotent-producer");
    let addr = broker.addr;
    run(async move {
        let mut admin = Admin::connect(ClientConfig::new(addr)).await.unwrap();
        let created = admin
            .create_topics(&[NewTopic::new("ip", 2)])
            .await
            .unwrap();
        assert!(created[0].is_ok(), "{created:?}");
        let (deliveries, callback) = recorder();
        let mut config = ProducerConfig::new(ClientConfig::new(addr));
        config.idempotence = Idempotence::On;
        config.batch.batch_bytes_max = 2048;
        let mut producer = Producer::connect(config, callback).await.unwrap();
        for i in 0..2000u32 {
            let value = format!("value-{i}");
            producer
                .send_to("ip", (i % 2) as i32, None, Some(value.as_bytes()), &[])
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
        let delivered: i32 = deliveries.borrow().iter().map(|d| d.2).sum();
        assert_eq!(delivered, 2000);
        let mut consumer = Consumer::connect(ConsumerConfig::new(ClientConfig::new(addr)))
            .await
            .unwrap();
        for p in 0..2 {
            consumer
                .assign("ip", p, OffsetSpec::Earliest)
                .await
                .unwrap();
        }
        let got = consume_all(&mut consumer, 2000).await.unwrap();
        for (p, records) in &got {
            let values: Vec<u32> = records
                .iter()
                .map(|r| std::str::from_utf8(&r.2).unwrap()[6..].parse().unwrap())
                .collect();
            let expected: Vec<u32> = (0..2000).filter(|i| (i % 2) as i32 == *p).collect();
            assert_eq!(values, expected, "partition {p}");
        }
    });
}
