//! `send` through the `Producer` handle, with the mock transport
//! acknowledging at once: records per second (counted when acknowledged)
//! and the latency of each `try_send` call, p50 / p99 / p99.9.
//!
//! Runs on a current-thread tokio runtime, so the application and the
//! driver share one core. Run with
//! `cargo bench -p robust-producer --bench send` (`RECORDS=N` to change the
//! count, default 2 000 000). With `--features metrics` it publishes to a
//! Prometheus recorder, as a service would: compare the two builds for the
//! feature's overhead.

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a bench binary: it stops on an unexpected error and prints its figures"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use robust_producer::{Bytes, Config, OverflowPolicy, Producer, Record, TokioRuntime};
use robust_producer_mock::{MockBroker, Storage};

/// Sends between two yields to the driver.
const BURST: usize = 512;

fn percentile(sorted: &[u32], p: f64) -> u32 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

async fn run(records: usize, config: Config) -> (f64, Vec<u32>) {
    let broker = MockBroker::builder()
        .partitions(12)
        .storage(Storage::CountOnly)
        .build();
    let producer = Producer::builder(config)
        .start(broker.transport(), TokioRuntime::new())
        .expect("the producer config fits the transport");
    // Let the first connect complete.
    while !producer.state().is_connected() {
        tokio::task::yield_now().await;
    }
    // Built as the README recommends: topic, payload and keys shared.
    let topic: Arc<str> = Arc::from("bench");
    let payload = Bytes::from(vec![b'x'; 100]);
    let keys: Vec<Bytes> = (0..64).map(|k| Bytes::from(format!("key-{k}"))).collect();
    let mut latencies = Vec::with_capacity(records);
    let start = Instant::now();
    for i in 0..records {
        let record =
            Record::new(Arc::clone(&topic), payload.clone()).with_key(keys[i % keys.len()].clone());
        let t = Instant::now();
        let handle = producer.try_send(record);
        latencies.push(t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
        drop(handle.unwrap());
        if i % BURST == BURST - 1 {
            tokio::task::yield_now().await;
        }
    }
    producer.flush(Duration::from_secs(60)).await.unwrap();
    let elapsed = start.elapsed();
    let stats = producer.stats();
    assert_eq!(stats.delivered, records as u64, "every record acknowledged");
    assert_eq!(broker.stored_count("bench"), records as u64);
    let _ = producer.close(Duration::from_secs(5)).await;
    latencies.sort_unstable();
    (records as f64 / elapsed.as_secs_f64(), latencies)
}

fn main() {
    let records: usize = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    #[cfg(feature = "metrics")]
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let config = Config::builder()
        .max_queued_records(200_000)
        .max_in_flight(10_000)
        .overflow(OverflowPolicy::Reject)
        .build()
        .unwrap();
    runtime.block_on(async {
        // Warm-up, then three measured runs; report the median run.
        run(records / 10, config.clone()).await;
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(run(records, config.clone()).await);
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (rate, lat) = &runs[1];
        println!("send through Producer handle, mock transport acking at once, 1 core (current-thread tokio)");
        println!("metrics:            {}", if cfg!(feature = "metrics") { "published to a Prometheus recorder" } else { "feature off" });
        println!("records per run:    {records}");
        println!("throughput:         {:.2} M records/s (median of 3; all: {})", rate / 1e6,
            runs.iter().map(|r| format!("{:.2}", r.0 / 1e6)).collect::<Vec<_>>().join(", "));
        println!("try_send latency:   p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
            percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 0.999), lat[lat.len() - 1]);
    });
}
