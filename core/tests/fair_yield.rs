//! A busy driver shares a current-thread tokio runtime fairly: while it
//! drains a large backlog, another task's 1 ms timer keeps firing (the
//! driver yields through `Runtime::yield_soon`, which lets tokio poll its
//! timers, instead of waking itself, which tokio's current-thread scheduler
//! serves before its timers for up to 61 polls).
//!
//! Fairness is counted in the driver's yields, not in wall time, so a
//! loaded machine cannot fail it: a slower machine only makes the timer
//! due after fewer yields.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use robust_producer::{Config, Producer, Record, TokioRuntime};
use robust_producer_mock::{CountYields, MockBroker, Storage};

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
    // Tokio's runtime, counting the driver's yields.
    let runtime = CountYields::new(TokioRuntime::new());
    let yields = runtime.counter();
    let producer = Producer::builder(config)
        .start(broker.transport(), runtime)
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
        let (stop, yields) = (Arc::clone(&stop), Arc::clone(&yields));
        async move {
            // The most driver yields between two ticks of a 1 ms timer.
            let mut worst = 0;
            let mut ticks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let before = yields.load(Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
                worst = worst.max(yields.load(Ordering::Relaxed) - before);
                ticks += 1;
            }
            (worst, ticks)
        }
    });
    tokio::task::yield_now().await; // the ticker's first sleep is armed
    let yields_before = yields.load(Ordering::Relaxed);
    broker.heal();
    producer.flush(Duration::from_secs(600)).await.unwrap();
    let drain_yields = yields.load(Ordering::Relaxed) - yields_before;
    stop.store(true, Ordering::Relaxed);
    let (worst, ticks) = ticker.await.unwrap();
    assert_eq!(producer.stats().delivered, BACKLOG as u64);
    assert!(drain_yields > 0, "the driver never yielded while draining");
    // Fair: a due timer fires at the driver's next yield, and one driver
    // poll takes about as long as the timer, so a tick spans a few yields.
    // Starved, it would span up to 61 polls.
    assert!(
        worst <= 20,
        "a 1 ms timer waited {worst} driver yields ({drain_yields} yields in the drain, {ticks} ticks)"
    );
}
