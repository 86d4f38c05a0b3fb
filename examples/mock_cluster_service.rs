//! A service publishing one event through librdkafka, on librdkafka's
//! in-process mock cluster (no Kafka, no Docker): the smallest real setup.
//!
//! ```text
//! cargo run -p robust-producer-examples --example mock_cluster_service
//! ```

use robust_producer::{Config, Producer, TokioRuntime};
use robust_producer_rdkafka::rdkafka::mocking::MockCluster;
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let cluster = MockCluster::new(1)?; // one broker, inside this process
    cluster.create_topic("patient-events", 3, 1)?;

    let transport = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap_servers()))?;
    let config = Config::builder().service_name("patient-service").build()?;
    let producer = Producer::builder(config).start(transport, TokioRuntime::new())?;

    let event = serde_json::json!({ "patient_id": 7 });
    let delivery = producer
        .send_event("patient-events", "patient.registered", &event, Some("p-7"))
        .await?; // Accepted
    let ack = delivery.await?; // Delivered, acks=all
    tracing::info!(partition = ?ack.partition, offset = ?ack.offset, "delivered");

    let undelivered = producer.close(Duration::from_secs(5)).await;
    tracing::info!(undelivered = undelivered.len(), "closed");
    Ok(())
}
