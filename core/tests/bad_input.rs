//! Bad and unusual input never breaks the producer: every duration a user
//! can give (from zero to `Duration::MAX`) either is refused by name or
//! works, with no panic anywhere; records over the transport's limit are
//! refused at `send`; a configuration that cannot work with the transport
//! is refused at start.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use robust_producer::{
    BackoffConfig, Config, ConfigError, EnqueueError, HealthConfig, OverflowPolicy, Producer,
    Record, TokioRuntime, TransportLimits,
};
use robust_producer_mock::{MockBroker, ScriptedTransport};

/// The durations worth trying: zero, the smallest, ordinary ones, very
/// large ones and the largest.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        (1u64..5_000).prop_map(Duration::from_millis),
        (1u64..u64::MAX).prop_map(Duration::from_secs),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
    ]
}

#[derive(Debug, Clone)]
struct Durations {
    connect_timeout: Duration,
    ack_timeout: Duration,
    block: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    health: [Duration; 3],
    flush: Duration,
    close: Duration,
    drop_grace: Duration,
}

fn any_durations() -> impl Strategy<Value = Durations> {
    (
        (any_duration(), any_duration(), any_duration()),
        (any_duration(), any_duration()),
        [any_duration(), any_duration(), any_duration()],
        (any_duration(), any_duration(), any_duration()),
    )
        .prop_map(
            |(
                (connect_timeout, ack_timeout, block),
                (backoff_initial, backoff_max),
                health,
                (flush, close, drop_grace),
            )| Durations {
                connect_timeout,
                ack_timeout,
                block,
                backoff_initial,
                backoff_max,
                health,
                flush,
                close,
                drop_grace,
            },
        )
}

fn config_of(d: &Durations) -> Result<Config, ConfigError> {
    Config::builder()
        .connect_timeout(d.connect_timeout)
        .ack_timeout(d.ack_timeout)
        .overflow(OverflowPolicy::Block { timeout: d.block })
        .backoff(BackoffConfig {
            initial: d.backoff_initial,
            max: d.backoff_max,
            ..BackoffConfig::default()
        })
        .health(HealthConfig {
            unhealthy_after_disconnected: d.health[0],
            degraded_oldest_age: d.health[1].min(d.health[2]),
            unhealthy_oldest_age: d.health[1].max(d.health[2]),
            ..HealthConfig::default()
        })
        .seed(7)
        .build()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // Beside this file; cargo runs tests from the package's folder.
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/bad_input.proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    /// Every duration is either refused with an error naming its field, or
    /// the producer starts, accepts, reports, flushes and closes with it,
    /// delivering what it accepted: no input makes it panic.
    #[test]
    fn any_duration_is_refused_by_name_or_works(d in any_durations()) {
        let config = match config_of(&d) {
            Ok(config) => config,
            Err(ConfigError::Invalid { field, reason }) => {
                prop_assert!(
                    ["connect_timeout", "ack_timeout", "overflow", "backoff", "health"]
                        .contains(&field),
                    "{field}: {reason}"
                );
                let zero_or_bound = d.connect_timeout.is_zero()
                    || d.ack_timeout.is_zero()
                    || d.block.is_zero()
                    || d.backoff_initial.is_zero()
                    || d.backoff_max < d.backoff_initial
                    || d.backoff_max > Duration::from_secs(600);
                prop_assert!(zero_or_bound, "refused a usable value: {field}: {reason}");
                return Ok(());
            }
            Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let broker = MockBroker::new();
            let producer = Producer::builder(config)
                .drop_grace(d.drop_grace)
                .start(broker.transport(), TokioRuntime::new())
                .unwrap();
            let handle = producer.send(Record::new("t", b"x".to_vec())).await.unwrap();
            let _ = producer.health();
            let _ = producer.stats();
            let flushed = producer.flush(d.flush).await;
            if flushed.is_ok() {
                assert!(handle.await.is_ok());
            }
            let second = producer.try_send(Record::new("t", b"y".to_vec())).unwrap();
            let returned = producer.close(d.close).await;
            // Delivered, or handed back: nothing vanished.
            assert_eq!(producer.stats().delivered + returned.len() as u64, 2);
            drop(second);
            drop(producer); // drop_grace applies only to a producer not closed
        });
        rt.block_on(async {
            let broker = MockBroker::new();
            let config = config_of(&d).unwrap();
            let producer = Producer::builder(config)
                .drop_grace(d.drop_grace)
                .start(broker.transport(), TokioRuntime::new())
                .unwrap();
            drop(producer.try_send(Record::new("t", b"z".to_vec())).unwrap());
            drop(producer); // the last handle, without close: no panic in Drop
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
    }
}

#[tokio::test(start_paused = true)]
async fn duration_max_everywhere_waits_forever_and_never_panics() {
    let broker = MockBroker::new();
    broker.refuse_until_healed();
    let config = Config::builder()
        .connect_timeout(Duration::MAX)
        .ack_timeout(Duration::MAX)
        .max_queued_records(1)
        .max_in_flight(1)
        .overflow(OverflowPolicy::Block {
            timeout: Duration::MAX,
        })
        .build()
        .unwrap();
    let producer = Producer::builder(config)
        .drop_grace(Duration::MAX)
        .start(broker.transport(), TokioRuntime::new())
        .unwrap();
    let first = producer
        .send(Record::new("t", b"1".to_vec()))
        .await
        .unwrap();
    // The queue is full: `send` blocks "forever"; the broker heals later.
    let blocked = tokio::spawn({
        let producer = producer.clone();
        async move { producer.send(Record::new("t", b"2".to_vec())).await }
    });
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!blocked.is_finished(), "Block {{ timeout: MAX }} gave up");
    broker.heal();
    assert!(first.await.is_ok());
    let second = blocked.await.unwrap().unwrap();
    assert!(second.await.is_ok());
    producer.flush(Duration::MAX).await.unwrap();
    assert!(producer.close(Duration::MAX).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn drop_grace_max_does_not_panic_in_drop() {
    let broker = MockBroker::new();
    broker.refuse_until_healed();
    let producer = Producer::builder(Config::builder().build().unwrap())
        .drop_grace(Duration::MAX)
        .start(broker.transport(), TokioRuntime::new())
        .unwrap();
    let handle = producer.try_send(Record::new("t", b"x".to_vec())).unwrap();
    drop(producer);
    tokio::time::sleep(Duration::from_secs(60)).await;
    broker.heal();
    assert!(handle.await.is_ok(), "delivered within the (endless) grace");
}

/// A transport that states limits, and acknowledges everything at once.
fn limited(limits: TransportLimits) -> ScriptedTransport {
    ScriptedTransport::new().with_limits(limits)
}

#[tokio::test]
async fn a_record_over_the_transports_limit_is_refused_at_send() {
    let producer = Producer::builder(Config::builder().build().unwrap())
        .start(
            limited(TransportLimits::new().with_max_wire_bytes(1_000_000)),
            TokioRuntime::new(),
        )
        .unwrap();
    // 1 010 000 bytes: over librdkafka's default message.max.bytes, under
    // nothing else the core had before.
    let big = Record::new("t", vec![0u8; 1_010_000]);
    match producer.send(big).await {
        Err(EnqueueError::RecordTooLarge { max, limit, .. }) => {
            assert_eq!(max, 1_000_000, "the core's own default");
            assert_eq!(limit, "max_record_bytes");
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    // Under the core's limit, over the client's once framing is counted.
    let edge = Record::new("t", vec![0u8; 999_970]).with_header("event_id", vec![0u8; 5]);
    assert!(edge.size() <= 1_000_000);
    let err = producer.send(edge).await.unwrap_err();
    assert!(
        err.to_string().contains("message.max.bytes"),
        "the error names the limit: {err}"
    );
    let fits = Record::new("t", vec![0u8; 999_000]).with_key("k");
    assert!(producer.send(fits).await.unwrap().await.is_ok());
    assert_eq!(
        producer.stats().accepted,
        1,
        "refused records are not accepted"
    );
}

#[tokio::test]
async fn a_connect_timeout_not_above_the_transports_probe_is_refused_at_start() {
    let config = Config::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let probe = TransportLimits::new().with_connect_probe(Duration::from_secs(5));
    let err = Producer::builder(config)
        .start(limited(probe), TokioRuntime::new())
        .unwrap_err();
    let ConfigError::Invalid { field, reason } = &err else {
        panic!("{err}");
    };
    assert_eq!(*field, "connect_timeout");
    assert!(reason.contains("probe"), "{reason}");
    let config = Config::builder()
        .connect_timeout(Duration::from_secs(6))
        .build()
        .unwrap();
    assert!(
        Producer::builder(config)
            .start(limited(probe), TokioRuntime::new())
            .is_ok()
    );
}

#[test]
fn default_max_record_bytes_is_kafkas_message_max_bytes() {
    let config = Config::builder().build().unwrap();
    assert_eq!(config.max_record_bytes(), 1_000_000);
    let _ = Arc::new(config);
}
