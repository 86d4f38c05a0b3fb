//! The backlog: records accepted while every broker is down, then the
//! broker comes up; how fast the robust producer accepts, reconnects and
//! drains, and how long another task on its executor waits meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use robust_producer::{Producer, TokioRuntime};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};

use crate::args::Args;
use crate::cluster::Cluster;
use crate::cpu::process_cpu;
use crate::variants::{Data, Run, robust_config, robust_record};

/// What one backlog run measured.
pub(crate) struct Backlog {
    pub(crate) accept_rate: f64,
    /// Longest wait of a 1 ms timer task on the same executor during the drain.
    pub(crate) worst_stall: Duration,
    pub(crate) first_delivery: Duration,
    pub(crate) drain: Run,
    pub(crate) total: Duration,
}

/// Accepts `--backlog` records with the broker down, brings it up, and
/// measures the drain.
pub(crate) async fn robust_backlog(
    args: &Args,
    cluster: &Cluster,
    topic: &str,
    data: &Data,
) -> Backlog {
    let n = args.backlog;
    cluster.down();
    let transport = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap())).unwrap();
    let metrics = transport.metrics();
    let producer = Producer::builder(robust_config(args, n))
        .start(transport, TokioRuntime::new())
        .expect("the producer config fits the transport");
    let topic: Arc<str> = Arc::from(topic);
    let t0 = Instant::now();
    for i in 0..n {
        drop(producer.send(robust_record(&topic, i, data)).await.unwrap());
    }
    let accept_rate = n as f64 / t0.elapsed().as_secs_f64();
    assert_eq!(producer.stats().delivered, 0);
    // How long another task on the same executor waits for its turn while
    // the driver drains.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stall = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut worst = Duration::ZERO;
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1)).await;
                worst = worst.max(last.elapsed());
                last = Instant::now();
            }
            worst
        }
    });
    let up = Instant::now();
    cluster.up();
    // Watched from a plain thread on the transport's own counter of
    // successful delivery reports, so that a busy executor cannot delay the
    // observations.
    let watcher = std::thread::spawn(move || {
        let mut first = None;
        loop {
            let delivered = metrics.snapshot().delivered;
            if delivered > 0 && first.is_none() {
                first = Some((Instant::now(), delivered, process_cpu()));
            }
            if delivered >= n {
                return (first.unwrap(), Instant::now(), process_cpu());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    producer.flush(Duration::from_secs(600)).await.unwrap();
    let ((first_at, first_count, first_cpu), end, end_cpu) = watcher.join().unwrap();
    assert_eq!(producer.stats().delivered, n);
    stop.store(true, Ordering::Relaxed);
    let worst_stall = stall.await.unwrap();
    let drain_cpu = end_cpu.saturating_sub(first_cpu);
    producer.close(Duration::from_secs(5)).await;
    Backlog {
        accept_rate,
        worst_stall,
        first_delivery: first_at - up,
        drain: Run {
            acked: n - first_count,
            elapsed: end - first_at,
            cpu: drain_cpu,
            threads: String::new(),
        },
        total: end - up,
    }
}
