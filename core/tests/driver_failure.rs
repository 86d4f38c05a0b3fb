//! The driver never dies silently: when it panics (here, in a transport) or
//! its executor drops it, the producer says so everywhere (state, stats,
//! health, `send`, delivery handles) and every held record is handed back
//! by `close`, or dead-lettered with the reason when no handle is left.

#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use robust_producer::{
    Config, DeadLetter, DeadLetterReason, DeliveryError, EnqueueError, Producer, Record, State,
    TokioRuntime, Verdict,
};
use robust_producer_mock::{MockBroker, ScriptedTransport};

/// Acknowledges records at once, and panics on the `panic_on`-th send.
fn panics_on_send(panic_on: u64) -> ScriptedTransport {
    ScriptedTransport::new().on_send(move |sent, _, _| {
        assert!(sent < panic_on, "transport bug on send {sent}");
    })
}

fn rec(i: usize) -> Record {
    Record::new("t", i.to_string()).with_key("k")
}

async fn wait_for_state(producer: &Producer, state: State) {
    for _ in 0..10_000 {
        if producer.state() == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("state stayed {}", producer.state());
}

#[tokio::test]
async fn a_panicking_driver_leaves_a_failed_producer_that_says_why() {
    let producer = Producer::builder(Config::builder().build().unwrap())
        .start(panics_on_send(3), TokioRuntime::new())
        .unwrap();
    let first = producer.send(rec(1)).await.unwrap();
    assert!(first.await.is_ok());
    let second = producer.send(rec(2)).await.unwrap();
    assert!(second.await.is_ok());
    let mut watch = producer.watch_state();
    // The third send panics inside the driver; more are queued behind it.
    let handles: Vec<_> = (3..=5)
        .map(|i| producer.try_send(rec(i)).unwrap())
        .collect();
    wait_for_state(&producer, State::Failed).await;

    for handle in handles {
        match handle.await {
            Err(DeliveryError::Failed { reason }) => {
                assert!(reason.contains("transport bug on send 3"), "{reason}");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }
    let stats = producer.stats();
    assert_eq!(stats.state, State::Failed);
    let last_error = stats.last_error.unwrap();
    assert!(last_error.contains("panicked"), "{last_error}");
    assert!(
        last_error.contains("transport bug on send 3"),
        "{last_error}"
    );
    let health = producer.health();
    assert_eq!(health.verdict, Verdict::Unhealthy);
    assert!(
        health.reasons.iter().any(|r| r.contains("failed")),
        "{:?}",
        health.reasons
    );
    match producer.send(rec(6)).await {
        Err(e @ EnqueueError::Failed { .. }) => {
            assert!(e.to_string().contains("transport bug"), "{e}");
            assert_eq!(e.into_record().payload, "6");
        }
        other => panic!("expected EnqueueError::Failed, got {other:?}"),
    }
    let mut seen = Vec::new();
    while let Some(state) = watch.changed().await {
        seen.push(state);
    }
    assert_eq!(seen.last(), Some(&State::Failed), "{seen:?}");

    // Nothing accepted is lost: the three undelivered records come back, in
    // order (the one the transport panicked on among them).
    let returned = producer.close(Duration::from_secs(1)).await;
    let payloads: Vec<_> = returned.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(payloads, ["3", "4", "5"]);
    assert_eq!(producer.state(), State::Failed, "close does not hide it");
}

#[tokio::test]
async fn without_handles_a_failed_producers_records_become_dead_letters() {
    let letters: Arc<Mutex<Vec<DeadLetter>>> = Arc::default();
    let producer = Producer::builder(Config::builder().build().unwrap())
        .on_dead_letter({
            let letters = Arc::clone(&letters);
            move |dl| letters.lock().unwrap().push(dl)
        })
        .start(panics_on_send(1), TokioRuntime::new())
        .unwrap();
    let handles: Vec<_> = (1..=3)
        .map(|i| producer.try_send(rec(i)).unwrap())
        .collect();
    wait_for_state(&producer, State::Failed).await;
    drop(producer);
    let letters = letters.lock().unwrap();
    assert_eq!(letters.len(), 3, "every held record reported");
    for letter in letters.iter() {
        assert!(
            matches!(&letter.reason, DeadLetterReason::Failed(r) if r.contains("transport bug")),
            "{:?}",
            letter.reason
        );
    }
    drop(handles);
}

#[test]
fn a_driver_dropped_by_its_runtime_is_a_failure_not_a_silent_stop() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let broker = MockBroker::new();
    broker.refuse_until_healed();
    let (producer, handle) = rt.block_on(async {
        let producer = Producer::builder(Config::builder().build().unwrap())
            .start(broker.transport(), TokioRuntime::new())
            .unwrap();
        let handle = producer.try_send(rec(1)).unwrap();
        (producer, handle)
    });
    drop(rt); // drops the driver task
    assert_eq!(producer.state(), State::Failed);
    let reason = producer.stats().last_error.unwrap();
    assert!(reason.contains("dropped"), "{reason}");
    let outcome = futures_lite_block_on(handle);
    assert!(
        matches!(outcome, Err(DeliveryError::Failed { .. })),
        "{outcome:?}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let returned = rt.block_on(producer.close(Duration::from_secs(1)));
    assert_eq!(returned.len(), 1);
}

#[tokio::test]
async fn a_panicking_dead_letter_handler_does_not_stop_the_producer() {
    let broker = MockBroker::new();
    let producer = Producer::builder(Config::builder().build().unwrap())
        .on_dead_letter(|_| panic!("handler bug"))
        .start(broker.transport(), TokioRuntime::new())
        .unwrap();
    broker.reject(robust_producer_mock::Matcher::key("poison"), "bad record");
    let poison = producer
        .send(Record::new("t", "p").with_key("poison"))
        .await
        .unwrap();
    assert!(matches!(
        poison.await,
        Err(DeliveryError::DeadLettered { .. })
    ));
    let next = producer.send(rec(2)).await.unwrap();
    assert!(next.await.is_ok(), "the driver kept going");
    assert_ne!(producer.state(), State::Failed);
    assert!(producer.close(Duration::from_secs(1)).await.is_empty());
}

/// Polls a future to completion on this thread (its outcome is ready).
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}
