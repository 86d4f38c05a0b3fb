//! The mock transport in a service's own test, as a user writes it: the
//! network fails while the service sends, nothing is delivered during the
//! outage, and after the network heals every record is stored once, in
//! send order per key. tokio's paused clock makes the timeouts instant and
//! every run the same.
//!
//! ```text
//! cargo test -p robust-producer-examples
//! ```

use robust_producer::{Config, Producer, Record, State, TokioRuntime};
use robust_producer_mock::MockBroker;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn all_delivered_in_order_after_an_outage() -> Result<(), Box<dyn std::error::Error>> {
    let broker = MockBroker::builder()
        .partitions(3)
        .runtime(TokioRuntime::new())
        .build();
    let config = Config::builder()
        .ack_timeout(Duration::from_secs(3))
        .build()?;
    let producer = Producer::builder(config).start(broker.transport(), TokioRuntime::new())?;

    broker.partition(); // the network swallows everything, silently
    let mut sent = Vec::new();
    let mut deliveries = Vec::new();
    for n in 0..100 {
        let record = Record::new("orders", format!("order {n}"))
            .with_key(format!("customer-{}", n % 7))
            .with_header("event_id", format!("evt-{n}"));
        deliveries.push(producer.send(record.clone()).await?); // accepted at once
        sent.push(record);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(broker.stored_count("orders"), 0);
    assert_ne!(producer.state(), State::Connected);

    broker.heal();
    for delivery in deliveries {
        delivery.await?; // each handle resolves once the broker acknowledged it
    }
    let report = broker.verify(&sent)?; // all stored, per key in send order
    assert_eq!(report.duplicates, 0);
    assert!(producer.close(Duration::from_secs(5)).await.is_empty());
    Ok(())
}
