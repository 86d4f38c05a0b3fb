//! What the single-broker scenario files (`tests/real_kafka.rs`,
//! `tests/security.rs`) share: one scenario at a time on its own runtime,
//! the producers' configuration, waiting for a delivery, and the
//! independent read-back.

#![expect(clippy::unwrap_used, reason = "a scenario's failure is a test failure")]

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use robust_producer::{BackoffConfig, Config, OverflowPolicy, Producer};
use robust_producer_rdkafka::readback::{ReadBack, Report, Sent, check};

use crate::prereq;

/// Runs one scenario on its own runtime, one at a time (each starts its
/// own broker); returns at once when the prerequisites are missing outside
/// CI (see [`prereq::skip`]).
pub fn scenario<F: Future<Output = ()>>(body: impl FnOnce() -> F) {
    if prereq::skip() {
        return;
    }
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(body());
}

/// The producers' configuration: short timeouts and backoff so that
/// scenarios move quickly, and `Block` so that nothing is dropped.
pub fn core_config(service: &str) -> Config {
    Config::builder()
        .service_name(service)
        .max_queued_records(200_000)
        .connect_timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(10))
        .overflow(OverflowPolicy::Block {
            timeout: Duration::from_secs(30),
        })
        .backoff(BackoffConfig {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(2),
            jitter: 0.5,
        })
        .build()
        .unwrap()
}

/// Polls until `producer` delivered more than `baseline`; returns when.
pub async fn first_delivery(producer: &Producer, baseline: u64, timeout: Duration) -> Instant {
    let start = Instant::now();
    loop {
        if producer.stats().delivered > baseline {
            return Instant::now();
        }
        assert!(
            start.elapsed() < timeout,
            "no delivery within {timeout:?}: {:?}",
            producer.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads `topic` back with an independent consumer and checks `sent`
/// against it; also returns how many records were consumed.
pub async fn read_back(bootstrap: &str, topic: &str, sent: &[Sent]) -> (Report, usize) {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    let want = sent.len();
    let consumed = tokio::task::spawn_blocking(move || {
        ReadBack::new(bootstrap, topic)
            .until_quiet(want, Duration::from_secs(2))
            .timeout(Duration::from_secs(90))
            .read()
    })
    .await
    .unwrap()
    .unwrap();
    (check(sent, &HashSet::new(), &consumed), consumed.len())
}
