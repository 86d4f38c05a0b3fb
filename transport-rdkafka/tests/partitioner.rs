//! Keyed records land on the partition Kafka's Java client (and
//! kafka-python) would pick: `(murmur2(key) & 0x7fffffff) % partitions`,
//! with Kafka's murmur2 (seed `0x9747b28c`). Checked against an
//! independent murmur2 written here, for 10 000 keys and five partition
//! counts, through the rdkafka transport on librdkafka's mock cluster (the
//! partition of each acknowledgement) and through the mock transport of
//! `robust-producer-mock` (the same).

#![expect(clippy::unwrap_used, reason = "test code: a panic is a failure")]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use robust_producer::{Record, RecordId, Transport, TransportEvent};
use robust_producer_mock::MockBroker;
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};

const KEYS: u64 = 10_000;
const PARTITION_COUNTS: [i32; 5] = [1, 3, 6, 12, 50];

/// Kafka's `Utils.murmur2` (MurmurHash2, seed `0x9747b28c`), as Java's
/// signed int, written from Kafka's Java source.
fn kafka_murmur2(data: &[u8]) -> i32 {
    let length = data.len() as i32;
    let seed: i32 = 0x9747_b28c_u32 as i32;
    let m: i32 = 0x5bd1_e995;
    let r = 24;
    let mut h: i32 = seed ^ length;
    let length4 = data.len() / 4;
    for i in 0..length4 {
        let i4 = i * 4;
        let mut k: i32 = (i32::from(data[i4]) & 0xff)
            + ((i32::from(data[i4 + 1]) & 0xff) << 8)
            + ((i32::from(data[i4 + 2]) & 0xff) << 16)
            + ((i32::from(data[i4 + 3]) & 0xff) << 24);
        k = k.wrapping_mul(m);
        k ^= ((k as u32) >> r) as i32; // Java's >>>
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let tail = length4 * 4;
    match data.len() % 4 {
        3 => {
            h ^= (i32::from(data[tail + 2]) & 0xff) << 16;
            h ^= (i32::from(data[tail + 1]) & 0xff) << 8;
            h ^= i32::from(data[tail]) & 0xff;
            h = h.wrapping_mul(m);
        }
        2 => {
            h ^= (i32::from(data[tail + 1]) & 0xff) << 8;
            h ^= i32::from(data[tail]) & 0xff;
            h = h.wrapping_mul(m);
        }
        1 => {
            h ^= i32::from(data[tail]) & 0xff;
            h = h.wrapping_mul(m);
        }
        _ => {}
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    h
}

/// Kafka's default partitioner for a keyed record.
fn java_partition(key: &str, partitions: i32) -> i32 {
    (kafka_murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions
}

#[test]
fn reference_murmur2_matches_kafkas_test_vectors() {
    // Kafka's UtilsTest.testMurmur2.
    let cases: [(&str, i32); 6] = [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        ("abc", 479_470_107),
    ];
    for (input, want) in cases {
        assert_eq!(kafka_murmur2(input.as_bytes()), want, "{input}");
    }
}

fn topic(partitions: i32) -> String {
    format!("partitions-{partitions}")
}

fn key(i: u64) -> String {
    format!("patient-{i}")
}

/// Record id of key `i` in the topic with `partitions` partitions.
fn id(partitions: i32, i: u64) -> RecordId {
    let at = PARTITION_COUNTS
        .iter()
        .position(|&p| p == partitions)
        .unwrap() as u64;
    RecordId(at * KEYS + i + 1)
}

fn record(partitions: i32, i: u64) -> Record {
    Record::new(topic(partitions), b"x".to_vec()).with_key(key(i))
}

/// The partition each record id was acknowledged on.
fn partitions_acked(events: &[TransportEvent]) -> HashMap<u64, i32> {
    events
        .iter()
        .filter_map(|e| match e {
            TransportEvent::Delivered(ack) => Some((ack.id.0, ack.partition.expect("partition"))),
            _ => None,
        })
        .collect()
}

/// Every (key, partition count) acknowledged on Java's partition.
fn assert_java_partitions(what: &str, acked: &HashMap<u64, i32>) {
    let mut wrong = Vec::new();
    for partitions in PARTITION_COUNTS {
        for i in 0..KEYS {
            let want = java_partition(&key(i), partitions);
            let got = acked.get(&id(partitions, i).0).copied();
            if got != Some(want) {
                wrong.push((key(i), partitions, got, want));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{what}: {} of {} records on another partition than Java's, for example \
         (key, partitions, got, Java's): {:?}",
        wrong.len(),
        KEYS as usize * PARTITION_COUNTS.len(),
        &wrong[..wrong.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_transport_partitions_keys_like_kafkas_java_client() {
    let cluster = MockCluster::new(1).unwrap();
    for partitions in PARTITION_COUNTS {
        cluster
            .create_topic(&topic(partitions), partitions, 1)
            .unwrap();
    }
    let mut t = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap_servers())).unwrap();
    t.connect();
    let first = tokio::time::timeout(Duration::from_secs(30), t.next_event())
        .await
        .expect("connect outcome");
    assert_eq!(first, TransportEvent::Connected);
    let t0 = Instant::now();
    for partitions in PARTITION_COUNTS {
        for i in 0..KEYS {
            t.send(id(partitions, i), &record(partitions, i)).unwrap();
        }
    }
    let total = KEYS as usize * PARTITION_COUNTS.len();
    let mut events = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.len() < total {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, t.next_event()).await {
            Ok(e) => events.push(e),
            Err(_) => panic!("{} of {total} events before the deadline", events.len()),
        }
    }
    eprintln!("{total} records acknowledged in {:?}", t0.elapsed());
    t.close(Duration::from_secs(1)).await;
    let acked = partitions_acked(&events);
    assert_eq!(acked.len(), total, "every record delivered: {events:?}");
    assert_java_partitions("rdkafka transport", &acked);
}

#[test]
fn mock_transport_partitions_keys_like_kafkas_java_client() {
    let mut builder = MockBroker::builder();
    for partitions in PARTITION_COUNTS {
        builder = builder.topic(topic(partitions), partitions as u32);
    }
    let broker = builder.build();
    let mut t = broker.transport();
    t.connect();
    assert_eq!(t.try_next_event(), Some(TransportEvent::Connected));
    let mut events = Vec::new();
    for partitions in PARTITION_COUNTS {
        for i in 0..KEYS {
            t.send(id(partitions, i), &record(partitions, i)).unwrap();
            let want = java_partition(&key(i), partitions);
            assert_eq!(
                MockBroker::partition_for_key(key(i).as_bytes(), partitions as u32),
                want
            );
        }
        while let Some(e) = t.try_next_event() {
            events.push(e);
        }
    }
    let acked = partitions_acked(&events);
    assert_eq!(acked.len(), KEYS as usize * PARTITION_COUNTS.len());
    assert_java_partitions("mock transport", &acked);
}
