//! Graceful shutdown: a service sends an event every 100 ms until SIGTERM
//! or Ctrl-C (or, so that the example ends by itself, until `--seconds N`
//! have passed, 3 by default), then closes the producer with a deadline and
//! logs what `close` hands back: the records it could not deliver in time,
//! in send order, for the service to keep or report.
//!
//! Kafka is librdkafka's in-process mock cluster, so everything is
//! delivered and `close` hands back nothing. With `--bootstrap
//! 127.0.0.1:1` (nobody listening) every event waits, and `close` hands
//! them all back after its 2 s deadline.
//!
//! ```text
//! cargo run -p robust-producer-examples --example graceful_shutdown [-- --seconds N] [--bootstrap host:port]
//! ```

use robust_producer::{Config, Producer, TokioRuntime};
use robust_producer_rdkafka::rdkafka::mocking::MockCluster;
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let (seconds, bootstrap) = args()?;
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("patient-events", 3, 1)?;
    let bootstrap = bootstrap.unwrap_or_else(|| cluster.bootstrap_servers());

    let transport = RdkafkaTransport::new(RdkafkaConfig::new(bootstrap))?;
    let config = Config::builder().service_name("patient-service").build()?;
    let producer = Producer::builder(config).start(transport, TokioRuntime::new())?;

    let stop = shutdown_signal(Duration::from_secs(seconds));
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut sent = 0u64;
    loop {
        tokio::select! {
            why = &mut stop => {
                tracing::info!(why, sent, "shutting down");
                break;
            }
            _ = tick.tick() => {
                let event = serde_json::json!({ "seq": sent });
                let delivery = producer
                    .send_event("patient-events", "tick", &event, Some("ticker"))
                    .await?;
                // Fire and forget: `close` hands the record back if it is
                // not delivered by then.
                drop(delivery);
                sent += 1;
            }
        }
    }

    let undelivered = producer.close(Duration::from_secs(2)).await;
    if undelivered.is_empty() {
        tracing::info!(stats = ?producer.stats(), "closed: everything delivered");
    } else {
        tracing::warn!(
            count = undelivered.len(),
            "closed: records not delivered by the deadline"
        );
        for record in &undelivered {
            tracing::warn!(topic = %record.topic, key = ?record.key, size = record.size(), "handed back");
        }
    }
    Ok(())
}

/// Completes on SIGTERM, Ctrl-C or after `after`, saying which.
async fn shutdown_signal(after: Duration) -> &'static str {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => sigterm.recv().await,
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<Option<()>>();
    tokio::select! {
        _ = terminate => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = tokio::time::sleep(after) => "time is up",
    }
}

/// `--seconds N` (default 3) and `--bootstrap host:port` (default: the mock cluster).
fn args() -> Result<(u64, Option<String>), String> {
    let (mut seconds, mut bootstrap) = (3, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--seconds" => seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--bootstrap" => bootstrap = Some(value),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok((seconds, bootstrap))
}
