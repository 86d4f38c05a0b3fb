//! The main job: four services of a psychotherapy matching platform
//! (patient, therapist, matching, communication) publish events through the
//! robust producer while Kafka is down, comes up, and is cut again
//! mid-stream; then an independent consumer reads every topic back and the
//! demo proves nothing was lost or reordered.
//!
//! ```text
//! cargo run --release -p robust-producer-rdkafka --example demo
//! cargo run --release -p robust-producer-rdkafka --example demo -- --rate 20000 --duration 10
//! cargo run --release -p robust-producer-rdkafka --example demo -- --bootstrap localhost:9092
//! ```
//!
//! With no `--bootstrap` it runs librdkafka's in-process mock cluster (no
//! Kafka, no Docker) and scripts the outages: the broker is down when the
//! services start, comes up at 20% of the run, is cut at 50% and back at
//! 70%. With `--bootstrap host:port` it runs against a real broker (topics
//! are named after the run so old data does not interfere; stop and start
//! the broker during the run to see recovery).
//!
//! Exit code: 0 when every accepted event was delivered exactly as sent
//! (duplicates, if any, carry the same event id and are reported), 1 when
//! anything was lost or reordered, 2 on a usage or setup error.
//!
//! The steps, one module each: [`args`], [`broker`], [`services`] (start
//! the producers, publish), [`monitor`] (scripted outages, progress,
//! observations), [`report`] (read back, tables, verdict).

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    reason = "a command-line demo: it prints, and a failed setup step ends it"
)]

mod args;
mod broker;
mod monitor;
mod report;
mod services;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use args::Args;
use broker::{Broker, MOCK_CAPACITY};
use monitor::{Watched, states};
use report::Outcome;
use robust_producer::Stats;
use robust_producer_rdkafka::MetricsSnapshot;
use services::{Running, SERVICES, Service};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args::args();
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let broker = Broker::start(args.bootstrap.as_deref());
    let mock = broker.is_mock();
    if mock {
        check_capacity(&args);
    }
    let topic_of = |s: &Service| {
        if mock {
            format!("{}-events", s.name)
        } else {
            format!("demo-{run_id}.{}-events", s.name)
        }
    };
    banner(&args, &broker);

    // The broker is down before anyone starts.
    broker.set_up(false);
    let start = Instant::now();
    let running = services::start(&broker.bootstrap(), topic_of);
    println!(
        "[{:>5.1}s] 4 producers started{}: {}",
        start.elapsed().as_secs_f64(),
        if mock { " with the broker down" } else { "" },
        states(&running)
    );

    // Publishers: each service sends `rate` events per second.
    let per_tick = (args.rate / 100).max(1);
    let ticks = (args.duration.as_secs_f64() * 100.0) as u64;
    let publishers = services::publish(&running, per_tick, ticks);
    let (observed, finished) = monitor::watch(Watched {
        broker: &broker,
        running: &running,
        publishers: &publishers,
        start,
        duration: args.duration,
        per_tick,
        ticks,
    })
    .await;

    let mut sent = Vec::new();
    for p in publishers {
        sent.push(p.await.unwrap_or(0));
    }
    let (stats, returned) = close(&running).await;

    // Read every topic back with an independent consumer.
    println!(
        "[{:>5.1}s] reading the topics back with an independent consumer...",
        start.elapsed().as_secs_f64()
    );
    let results = report::read_back(&broker.bootstrap(), &running, &sent);
    let outcome = Outcome {
        mock,
        stats: &stats,
        returned,
        observed: &observed,
        start,
        finished,
    };
    if report::print(&outcome, &results) {
        println!("OK: every accepted event was delivered, in order per key.");
    } else {
        println!("FAILED: events were lost or reordered.");
        std::process::exit(1);
    }
}

/// Exits with 2 if the run would send more than the mock cluster keeps for
/// the read-back.
fn check_capacity(args: &Args) {
    let per_service = (args.rate / 100).max(1) * (args.duration.as_secs_f64() * 100.0) as u64;
    if per_service > MOCK_CAPACITY {
        eprintln!(
            "{per_service} events per service exceed what the mock cluster keeps for the read-back \
             ({MOCK_CAPACITY}); lower --rate or --duration"
        );
        std::process::exit(2);
    }
}

/// The first line: what runs, against what.
fn banner(args: &Args, broker: &Broker) {
    println!(
        "robust-producer demo: {} services x {} events/s for {:?} against {}",
        SERVICES.len(),
        args.rate,
        args.duration,
        if broker.is_mock() {
            "librdkafka's mock cluster (broker down at start; up at 20%, cut at 50%, up at 70%)"
                .to_owned()
        } else {
            format!("{} (no scripted outages)", broker.bootstrap())
        }
    );
}

/// Each producer's stats and transport metrics, then closes it; returns
/// them with the number of records handed back at close.
async fn close(running: &[Running]) -> (Vec<(Stats, MetricsSnapshot)>, usize) {
    let mut returned = 0;
    let mut stats = Vec::new();
    for r in running {
        stats.push((r.producer.stats(), r.metrics.snapshot()));
        returned += r.producer.close(Duration::from_secs(10)).await.len();
    }
    (stats, returned)
}
