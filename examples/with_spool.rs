//! A service with the durable on-disk spool: events become Durable (on
//! disk, fsynced) while Kafka is down, and are delivered once it is up. A
//! run that is killed leaves its undelivered Durable events in the spool;
//! the next run replays them first.
//!
//! Kafka is librdkafka's in-process mock cluster, with its broker down at
//! start. The spool lives in `$TMPDIR/robust-producer-example-spool`, or in
//! the directory given as the first argument.
//!
//! ```text
//! cargo run -p robust-producer-examples --example with_spool [-- SPOOL_DIR]
//! ```

use robust_producer::{Config, Producer, TokioRuntime};
use robust_producer_rdkafka::rdkafka::mocking::MockCluster;
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};
use robust_producer_spool::{DiskSpool, FsyncPolicy, SpoolConfig};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let dir = std::env::args().nth(1).map_or_else(
        || std::env::temp_dir().join("robust-producer-example-spool"),
        Into::into,
    );
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("patient-events", 3, 1)?;
    cluster.broker_down(-1)?; // Kafka is down

    // Opening the spool recovers what an earlier run left: it is sent first.
    let spool = DiskSpool::open(
        SpoolConfig::builder(&dir)
            .fsync(FsyncPolicy::Always)
            .build()?,
    )?;
    tracing::info!(dir = %dir.display(), recovery = ?spool.recovery(), "spool open");

    let transport = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap_servers()))?;
    let config = Config::builder().service_name("patient-service").build()?;
    let producer = Producer::builder(config)
        .spool(spool)
        .start(transport, TokioRuntime::new())?;

    let mut deliveries = Vec::new();
    for patient_id in 0..10 {
        let event = serde_json::json!({ "patient_id": patient_id });
        let key = format!("p-{patient_id}");
        let delivery = producer
            .send_event("patient-events", "patient.registered", &event, Some(&key))
            .await?; // Accepted
        deliveries.push(delivery);
    }
    for delivery in &deliveries {
        delivery.durable().await?; // Durable: survives a crash, Kafka still down
    }
    tracing::info!(
        durable = deliveries.len(),
        "all durable while Kafka is down"
    );

    cluster.broker_up(-1)?;
    for delivery in deliveries {
        delivery.await?; // Delivered, then settled in the spool
    }
    tracing::info!(stats = ?producer.stats(), "all delivered");

    let undelivered = producer.close(Duration::from_secs(5)).await;
    tracing::info!(undelivered = undelivered.len(), "closed");
    Ok(())
}
