//! The transport's series through the `metrics` facade (feature
//! `metrics`), read back from a recorder installed globally for this test
//! binary: librdkafka's statistics callback runs on whichever thread serves
//! librdkafka's events, so a thread-local recorder would miss it. One test
//! does everything, against librdkafka's mock cluster: the descriptions and
//! units, the rebuild counters at zero from the start, the queue and
//! per-broker gauges following a broker's outage, and a rebuild counted as
//! `fatal` after an idempotence error.
//!
//! The recorder keeps the values in `metrics-util`'s registry and reads them
//! without resetting them (`DebuggingRecorder`'s snapshots reset gauges to
//! zero, which would make a broker reported down indistinguishable from a
//! gauge not set since the last read).

#![expect(
    clippy::unwrap_used,
    reason = "test code outside #[test] functions: a panic is a failure"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use robust_producer::{Config, DeliveryHandle, Producer, Record, TokioRuntime};
use robust_producer_rdkafka::telemetry::{
    BROKER_OUTSTANDING_REQUESTS, BROKER_RTT_SECONDS, BROKER_UP, QUEUE_BYTES, QUEUE_MESSAGES,
    REBUILDS_TOTAL,
};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport, TransportMetrics};

const TOPIC: &str = "metered";
const SERVICE: &str = "metrics-test-service";
const REASONS: [&str; 5] = [
    "fatal",
    "hand_off_failed",
    "link_lost",
    "abandoned",
    "build_failed",
];

/// What the recorder saw: values in a registry, descriptions by name.
struct Seen {
    registry: Registry<Key, AtomicStorage>,
    described: Mutex<HashMap<String, Option<Unit>>>,
}

impl Seen {
    /// The series named `name`, by their labels.
    fn series(&self, name: &str, gauges: bool) -> Vec<(BTreeMap<String, String>, f64)> {
        let mut found = Vec::new();
        let labels = |key: &Key| {
            key.labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        if gauges {
            self.registry.visit_gauges(|key, g| {
                if key.name() == name {
                    found.push((labels(key), f64::from_bits(g.load(Ordering::Acquire))));
                }
            });
        } else {
            self.registry.visit_counters(|key, c| {
                if key.name() == name {
                    found.push((labels(key), c.load(Ordering::Acquire) as f64));
                }
            });
        }
        found
    }

    /// The value of the series `name` with exactly `want` as labels.
    fn value(&self, name: &str, gauge: bool, want: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.series(name, gauge)
            .into_iter()
            .find(|(labels, _)| *labels == want)
            .map(|(_, v)| v)
    }

    fn gauge(&self, name: &str, broker: Option<&str>) -> Option<f64> {
        match broker {
            Some(b) => self.value(name, true, &[("service", SERVICE), ("broker", b)]),
            None => self.value(name, true, &[("service", SERVICE)]),
        }
    }

    fn rebuilds(&self, reason: &str) -> Option<f64> {
        self.value(
            REBUILDS_TOTAL,
            false,
            &[("service", SERVICE), ("reason", reason)],
        )
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        self.described
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned(), unit);
    }
}

/// The global recorder over a leaked [`Seen`].
struct TestRecorder(&'static Seen);

impl Recorder for TestRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.0.describe(key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.0.describe(key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.0.describe(key, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.registry.get_or_create_counter(key, Arc::clone))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.0.registry.get_or_create_gauge(key, Arc::clone))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.0.registry.get_or_create_histogram(key, Arc::clone))
    }
}

/// Waits (generously: a loaded two-core machine) until `ok`; fails with
/// `what` and the state of the named series.
async fn wait_until(seen: &Seen, what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "never {what}; up: {:?}; queue: {:?}; rebuilds: {:?}",
            seen.series(BROKER_UP, true),
            seen.series(QUEUE_MESSAGES, true),
            seen.series(REBUILDS_TOTAL, false),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// librdkafka's name of broker `node_id`, from the latest snapshot.
async fn broker_name(metrics: &TransportMetrics, node_id: i32) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(b) = metrics
            .librdkafka_statistics()
            .and_then(|s| s.broker(node_id).cloned())
        {
            return b.name;
        }
        assert!(Instant::now() < deadline, "broker {node_id} never listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn settle(handles: Vec<DeliveryHandle>) {
    for handle in handles {
        tokio::time::timeout(Duration::from_secs(90), handle)
            .await
            .expect("settled in time")
            .expect("delivered");
    }
}

async fn send(producer: &Producer, range: std::ops::Range<u32>) -> Vec<DeliveryHandle> {
    let mut handles = Vec::new();
    for i in range {
        let record = Record::new(TOPIC, "x").with_key(format!("k{i}"));
        handles.push(producer.send(record).await.unwrap());
    }
    handles
}

#[test]
fn the_transport_emits_its_series() {
    let seen: &'static Seen = Box::leak(Box::new(Seen {
        registry: Registry::atomic(),
        described: Mutex::default(),
    }));
    metrics::set_global_recorder(TestRecorder(seen)).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario(seen));
}

async fn scenario(seen: &'static Seen) {
    let mock = MockCluster::new(2).unwrap();
    mock.create_topic(TOPIC, 2, 1).unwrap();
    for p in 0..2 {
        mock.partition_leader(TOPIC, p, Some(p + 1)).unwrap();
    }
    let config = RdkafkaConfig::new(mock.bootstrap_servers())
        .set("client.id", SERVICE)
        .probe_timeout(Duration::from_millis(1500))
        .statistics_interval(Duration::from_millis(100));
    let transport = RdkafkaTransport::new(config).unwrap();
    let metrics = transport.metrics();

    // Described once, with their units, when the transport is created.
    {
        let described = seen.described.lock().unwrap();
        for (name, unit) in [
            (REBUILDS_TOTAL, Some(Unit::Count)),
            (QUEUE_MESSAGES, Some(Unit::Count)),
            (QUEUE_BYTES, Some(Unit::Bytes)),
            (BROKER_UP, None),
            (BROKER_RTT_SECONDS, Some(Unit::Seconds)),
            (BROKER_OUTSTANDING_REQUESTS, Some(Unit::Count)),
        ] {
            assert_eq!(described.get(name), Some(&unit), "{name}");
        }
    }
    // Every reason's counter exists, at zero, before anything happened.
    for reason in REASONS {
        assert_eq!(seen.rebuilds(reason), Some(0.0), "{reason}");
    }
    assert_eq!(seen.series(REBUILDS_TOTAL, false).len(), REASONS.len());

    let producer = Producer::builder(Config::builder().build().unwrap())
        .start(transport, TokioRuntime::new())
        .unwrap();
    settle(send(&producer, 0..50).await).await;
    let one = broker_name(&metrics, 1).await;
    let two = broker_name(&metrics, 2).await;
    wait_until(seen, "both brokers up, with a round-trip time", || {
        [&one, &two].iter().all(|b| {
            seen.gauge(BROKER_UP, Some(b)) == Some(1.0)
                && seen
                    .gauge(BROKER_RTT_SECONDS, Some(b))
                    .is_some_and(|s| s > 0.0 && s < 10.0)
                && seen.gauge(BROKER_OUTSTANDING_REQUESTS, Some(b)).is_some()
        })
    })
    .await;
    assert!(seen.gauge(QUEUE_BYTES, None).is_some());

    // Broker 2 down: its partition's records wait in librdkafka's queue.
    mock.broker_down(2).unwrap();
    let stuck = send(&producer, 50..150).await;
    wait_until(seen, "broker 2 down with records queued", || {
        seen.gauge(BROKER_UP, Some(&two)) == Some(0.0)
            && seen.gauge(QUEUE_MESSAGES, None).is_some_and(|n| n > 0.0)
            && seen.gauge(QUEUE_BYTES, None).is_some_and(|n| n > 0.0)
    })
    .await;
    assert!(seen.gauge(QUEUE_MESSAGES, None).unwrap() <= 100.0);
    assert_eq!(seen.gauge(BROKER_UP, Some(&one)), Some(1.0));
    mock.broker_up(2).unwrap();
    settle(stuck).await;
    wait_until(seen, "broker 2 up again, queue empty", || {
        seen.gauge(BROKER_UP, Some(&two)) == Some(1.0)
            && seen.gauge(QUEUE_MESSAGES, None) == Some(0.0)
    })
    .await;

    // An idempotence error is fatal: the next session gets a new producer,
    // counted with reason `fatal`.
    let before = metrics.snapshot().producers_built;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    settle(send(&producer, 150..300).await).await;
    wait_until(seen, "a fatal rebuild counted", || {
        seen.rebuilds("fatal").is_some_and(|n| n >= 1.0)
    })
    .await;
    let m = metrics.snapshot();
    assert!(m.fatal >= 1 && m.producers_built > before, "{m:?}");
    let counted: f64 = REASONS.iter().filter_map(|r| seen.rebuilds(r)).sum();
    assert_eq!(
        counted as u64,
        m.producers_built - 1,
        "every producer after the first is counted once: {:?} {m:?}",
        seen.series(REBUILDS_TOTAL, false)
    );
    assert!(producer.close(Duration::from_secs(10)).await.is_empty());

    // Every series carries the service label, from `client.id`.
    for name in [
        REBUILDS_TOTAL,
        QUEUE_MESSAGES,
        QUEUE_BYTES,
        BROKER_UP,
        BROKER_RTT_SECONDS,
        BROKER_OUTSTANDING_REQUESTS,
    ] {
        let gauge = name != REBUILDS_TOTAL;
        let series = seen.series(name, gauge);
        assert!(!series.is_empty(), "{name}");
        for (labels, _) in series {
            assert_eq!(labels.get("service").map(String::as_str), Some(SERVICE));
        }
    }
}
