//! A record for a topic the cluster does not have (auto-creation off) is
//! dead-lettered with librdkafka's reason once the transport's wait for the
//! topic ends (`topic.metadata.propagation.max.ms`), while the records of
//! other topics are delivered; the session is never given up as hung for
//! it. Before, the core gave the session up every `ack_timeout`, rebuilt
//! the client, and the record never settled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use robust_producer::{Config, DeadLetter, DeliveryError, Producer, Record, TokioRuntime};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_for_an_unknown_topic_is_dead_lettered_and_the_rest_delivered() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("known", 2, 1).unwrap();
    let rd = RdkafkaConfig::new(mock.bootstrap_servers())
        .probe_timeout(Duration::from_millis(1500))
        .set("allow.auto.create.topics", "false");
    let transport = RdkafkaTransport::new(rd).unwrap();
    // The defaults: the transport waits 10 s for a topic, the core's
    // ack_timeout is 30 s.
    let config = Config::builder().build().unwrap();
    let dead: Arc<Mutex<Vec<DeadLetter>>> = Arc::default();
    let producer = Producer::builder(config)
        .on_dead_letter({
            let dead = Arc::clone(&dead);
            move |dl| dead.lock().unwrap().push(dl)
        })
        .start(transport, TokioRuntime::new())
        .unwrap();
    let unknown = producer.send(Record::new("nope", "x")).await.unwrap();
    let mut known = Vec::new();
    for i in 0..100 {
        known.push(
            producer
                .send(Record::new("known", i.to_string()))
                .await
                .unwrap(),
        );
    }
    // Generous: librdkafka gives up on the topic after 10 s.
    let outcome = tokio::time::timeout(Duration::from_secs(60), unknown)
        .await
        .expect("the record for an unknown topic settled");
    match outcome {
        Err(DeliveryError::DeadLettered { reason }) => {
            assert!(reason.to_lowercase().contains("unknown topic"), "{reason}");
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
    for k in known {
        assert!(
            tokio::time::timeout(Duration::from_secs(60), k)
                .await
                .unwrap()
                .is_ok()
        );
    }
    let stats = producer.stats();
    eprintln!("{stats:?}");
    assert_eq!(stats.link_losses, 0, "no session given up as hung");
    // The handle may settle just before the driver calls the handler.
    for _ in 0..1000 {
        if !dead.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dead.lock().unwrap().len(), 1);
    assert!(producer.close(Duration::from_secs(5)).await.is_empty());
}

#[test]
fn an_ack_timeout_not_above_the_unknown_topic_wait_is_refused_at_start() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let transport = RdkafkaTransport::new(RdkafkaConfig::new("127.0.0.1:9")).unwrap();
    let config = Config::builder()
        .ack_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = Producer::builder(config)
        .start(transport, TokioRuntime::new())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("ack_timeout") && msg.contains("unknown topic"),
        "{msg}"
    );
}
