//! librdkafka's statistics through the transport, against librdkafka's
//! in-process mock cluster: with statistics enabled, the latest snapshot is
//! readable through `TransportMetrics` while the producer owns the
//! transport, lists the cluster's brokers as `UP` with a plausible queue,
//! and a broker taken down shows up as not `UP` (or gone: the mock
//! cluster's metadata leaves it out), with the records for its partition
//! waiting in librdkafka's queue.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use robust_producer::{Config, Producer, Record, TokioRuntime};
use robust_producer_rdkafka::{
    LibrdkafkaStatistics, RdkafkaConfig, RdkafkaTransport, TransportMetrics,
};

const TOPIC: &str = "stats";

/// Waits (generously: a loaded two-core machine) for a snapshot received
/// after `after` that satisfies `ok`; fails with the last one seen.
async fn wait_for_snapshot(
    metrics: &TransportMetrics,
    after: Instant,
    what: &str,
    ok: impl Fn(&LibrdkafkaStatistics) -> bool,
) -> LibrdkafkaStatistics {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let latest = metrics.librdkafka_statistics();
        if let Some(s) = &latest
            && s.received_at > after
            && ok(s)
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot where {what}; last: {latest:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_snapshot_follows_the_cluster() {
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic(TOPIC, 3, 1).unwrap();
    // Partition p is led by broker p + 1: every broker serves records.
    for p in 0..3 {
        mock.partition_leader(TOPIC, p, Some(p + 1)).unwrap();
    }
    let config = RdkafkaConfig::new(mock.bootstrap_servers())
        .probe_timeout(Duration::from_millis(1500))
        .statistics_interval(Duration::from_millis(100));
    assert_eq!(config.get("statistics.interval.ms"), Some("100"));
    let transport = RdkafkaTransport::new(config).unwrap();
    let metrics = transport.metrics();
    let started = Instant::now();
    let producer = Producer::builder(Config::builder().build().unwrap())
        .start(transport, TokioRuntime::new())
        .unwrap();

    // Delivered to every partition, hence through every broker.
    let mut partitions = [false; 3];
    let mut key = 0;
    while partitions.contains(&false) {
        assert!(key < 1_000, "keys never covered every partition");
        let record = Record::new(TOPIC, "x").with_key(format!("k{key}"));
        key += 1;
        let handle = producer.send(record).await.unwrap();
        let ack = tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .expect("delivered in time")
            .expect("delivered");
        partitions[usize::try_from(ack.partition.unwrap()).unwrap()] = true;
    }
    let sent = key;

    let up = wait_for_snapshot(&metrics, started, "every broker is UP", |s| {
        s.brokers.len() == 3 && s.brokers_up() == 3
    })
    .await;
    let ids: Vec<i32> = up.brokers.iter().map(|b| b.node_id).collect();
    assert_eq!(ids, [1, 2, 3], "the mock cluster's brokers: {up:#?}");
    for b in &up.brokers {
        assert!(b.is_up());
        assert_eq!(b.state, "UP");
        assert!(
            b.name.ends_with(&format!("/{}", b.node_id)),
            "librdkafka's host:port/id name: {}",
            b.name
        );
        assert!(b.connects.is_some_and(|c| c >= 1), "{b:#?}");
    }
    assert!(
        up.client_name.starts_with("robust-producer#producer-"),
        "{up:#?}"
    );
    assert!(up.queue_messages <= sent, "{up:#?}");
    assert!(
        up.queue_max_messages > 0 && up.queue_max_bytes > 0,
        "{up:#?}"
    );
    assert!(up.age() < Duration::from_secs(60));
    // Once every record is acknowledged, the queue is empty.
    let drained = wait_for_snapshot(&metrics, Instant::now(), "the queue is empty", |s| {
        s.queue_messages == 0 && s.queue_bytes == 0
    })
    .await;
    assert!(drained.received_at > up.received_at);

    // Broker 2 goes down: its partition's records wait in librdkafka.
    mock.broker_down(2).unwrap();
    let down_at = Instant::now();
    let mut stuck = Vec::new();
    for i in 0..200 {
        let record = Record::new(TOPIC, "y").with_key(format!("k{i}"));
        stuck.push(producer.send(record).await.unwrap());
    }
    // The mock cluster's metadata leaves a down broker out, and librdkafka
    // then forgets it: not UP, or absent.
    let down = wait_for_snapshot(&metrics, down_at, "broker 2 is not UP, records wait", |s| {
        s.broker(2).is_none_or(|b| !b.is_up()) && s.queue_messages > 0
    })
    .await;
    assert!(down.brokers_up() >= 1, "the others still serve: {down:#?}");
    assert!(down.queue_messages <= 200, "{down:#?}");
    assert!(down.queue_bytes > 0, "{down:#?}");

    // Back up: everything is delivered and the broker is UP again.
    mock.broker_up(2).unwrap();
    for handle in stuck {
        tokio::time::timeout(Duration::from_secs(90), handle)
            .await
            .expect("delivered in time")
            .expect("delivered");
    }
    let back = wait_for_snapshot(&metrics, Instant::now(), "broker 2 is UP again", |s| {
        s.broker(2).is_some_and(|b| b.is_up()) && s.queue_messages == 0
    })
    .await;
    assert!(back.broker(2).unwrap().connects >= Some(1), "{back:#?}");
    assert!(producer.close(Duration::from_secs(10)).await.is_empty());
}

#[test]
fn without_an_interval_statistics_stay_off() {
    let config = RdkafkaConfig::new("localhost:9092");
    assert_eq!(config.get("statistics.interval.ms"), None);
    let transport = RdkafkaTransport::new(config).unwrap();
    assert!(transport.metrics().librdkafka_statistics().is_none());
}
