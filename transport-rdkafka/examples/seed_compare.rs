//! The Rust side of `scripts/seed_vs_ours.py`: sends the seed's event (the
//! same envelope, through `Producer::send_event`) for `--seconds`, then
//! flushes, and prints the number of events acknowledged and the seconds
//! it took, from the first send to the last acknowledgement.
//!
//! `cargo run --release -p robust-producer-rdkafka --example seed_compare -- --bootstrap 127.0.0.1:9092 --seconds 60`

#![expect(
    clippy::print_stdout,
    reason = "the script reads the result from stdout"
)]

use std::time::{Duration, Instant};

use robust_producer::{Config, Producer, TokioRuntime};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};

fn arg(name: &str) -> Option<String> {
    let mut it = std::env::args().skip_while(|a| a != name);
    it.next();
    it.next()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = arg("--bootstrap").ok_or("--bootstrap host:port")?;
    let seconds: f64 = arg("--seconds").map_or(Ok(60.0), |s| s.parse())?;
    let topic = arg("--topic").unwrap_or_else(|| "seed-ours".to_owned());
    let transport = RdkafkaTransport::new(RdkafkaConfig::new(bootstrap))?;
    let config = Config::builder().service_name("patient-service").build()?;
    let producer = Producer::builder(config).start(transport, TokioRuntime::new())?;
    let until = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < until {
        for _ in 0..256 {
            let key = format!("patient-{}", sent % 1000);
            let payload = serde_json::json!({ "patient_id": sent });
            drop(
                producer
                    .send_event(&topic, "patient.registered", &payload, Some(&key))
                    .await?,
            );
            sent += 1;
        }
    }
    producer.flush(Duration::from_secs(300)).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let stats = producer.stats();
    assert_eq!(stats.delivered, sent, "{stats:?}");
    println!("{} {elapsed:.3}", stats.delivered);
    drop(producer.close(Duration::from_secs(5)).await);
    Ok(())
}
