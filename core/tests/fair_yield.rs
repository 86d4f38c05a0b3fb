//! A busy driver shares a current-thread tokio runtime fairly: while it
//! drains a large backlog, another task's 1 ms timer keeps firing (the
//! driver yields through `Runtime::yield_soon`, which lets tokio poll its
//! timers, instead of waking itself, which tokio's current-thread scheduler
//! serves before its timers for up to 61 polls).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use robust_producer::{Config, Producer, Record, TokioRuntime};
use robust_producer_mock::{MockBroker, Storage};

const BACKLOG: usize = 200_000;

#[tokio::test(flavor = "current_thread")]
async fn timers_of_other_tasks_fire_while_the_driver_drains() {
    let broker = MockBroker::builder()
        .storage(Storage::CountOnly)
        .runtime(TokioRuntime::new())
        .build();
    broker.refuse_until_healed();
    let config = Config::builder()
        .max_queued_records(BACKLOG)
        .max_in_flight(BACKLOG)
        .build()
        .unwrap();
    let producer = Producer::builder(config)
        .start(broker.transport(), TokioRuntime::new())
        .expect("the producer config fits the transport");
    let topic: Arc<str> = Arc::from("backlog");
    for i in 0..BACKLOG {
        drop(
            producer
                .try_send(Record::new(Arc::clone(&topic), i.to_string()))
                .unwrap(),
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut worst = Duration::ZERO;
            let mut ticks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let before = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                worst = worst.max(before.elapsed());
                ticks += 1;
            }
            (worst, ticks)
        }
    });
    tokio::task::yield_now().await; // the ticker's first sleep is armed
    let started = Instant::now();
    broker.heal();
    producer.flush(Duration::from_secs(60)).await.unwrap();
    let drain = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (worst, ticks) = ticker.await.unwrap();
    assert_eq!(producer.stats().delivered, BACKLOG as u64);
    // A 1 ms timer waits about one driver poll (3 ms here) beyond its
    // deadline; starved, it waits for up to 61 polls (56 ms here).
    assert!(
        worst < Duration::from_millis(30),
        "a 1 ms timer waited {worst:?} while the driver drained {BACKLOG} records in {drain:?} ({ticks} ticks)"
    );
}
