//! A partition without a leader holds its records back: the transport finds
//! out why from metadata and says so (`Stats::stalled`, a health reason),
//! the core keeps the session (the wait is explained, not a hang), and
//! every record is delivered once the partition has a leader again.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaApiKey;
use robust_producer::{Config, Producer, Record, TokioRuntime, Verdict};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaderless_partition_is_reported_as_the_reason_records_wait() {
    let mock = MockCluster::new(1).unwrap();
    // librdkafka 2.12's mock broker crashes answering a Produce request v10+
    // for a partition without a leader (it writes the leader's id into the
    // response's tagged fields); v9 has no such field.
    mock.apiversion(RDKafkaApiKey::Produce, Some(0), Some(9))
        .unwrap();
    mock.create_topic("orders", 1, 1).unwrap();
    let rd =
        RdkafkaConfig::new(mock.bootstrap_servers()).probe_timeout(Duration::from_millis(1500));
    // ack_timeout well below the outage: only the explanation keeps the
    // session.
    let config = Config::builder()
        .ack_timeout(Duration::from_secs(11))
        .build()
        .unwrap();
    let producer = Producer::builder(config)
        .start(RdkafkaTransport::new(rd).unwrap(), TokioRuntime::new())
        .unwrap();
    producer
        .send(Record::new("orders", "first"))
        .await
        .unwrap()
        .await
        .expect("delivered while the partition has a leader");

    mock.partition_leader("orders", 0, None).unwrap();
    let mut handles = Vec::new();
    for i in 0..50 {
        handles.push(
            producer
                .send(Record::new("orders", i.to_string()))
                .await
                .unwrap(),
        );
    }
    let start = Instant::now();
    let reason = loop {
        if let Some(reason) = producer.stats().stalled {
            break reason;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no stall reported: {:?}",
            producer.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("stalled after {:?}: {reason}", start.elapsed());
    assert!(reason.contains("orders/0 has no leader"), "{reason}");
    let health = producer.health();
    assert_ne!(health.verdict, Verdict::Healthy);
    assert!(
        health.reasons.iter().any(|r| r.contains("no leader")),
        "{health:?}"
    );

    // Past ack_timeout without a single acknowledgement: still one session.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(producer.stats().link_losses, 0, "{:?}", producer.stats());

    mock.partition_leader("orders", 0, Some(1)).unwrap();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("settled")
            .expect("delivered");
    }
    let stats = producer.stats();
    assert_eq!(stats.stalled, None, "cleared by the acknowledgements");
    assert_eq!(stats.link_losses, 0);
    assert!(producer.close(Duration::from_secs(5)).await.is_empty());
}
