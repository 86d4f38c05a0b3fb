//! The `metrics` feature: the series a producer publishes follow its stats
//! through an outage, a recovery, a dead letter, an overflow and a close;
//! the driver refreshes them unasked while records wait; and every scrape
//! keeps the accounting identity, in records and in bytes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use robust_producer::metrics as names;
use robust_producer::{Config, OverflowPolicy, Producer, Record, State, TokioRuntime};
use robust_producer_mock::{Matcher, MockBroker};

const SERVICE: &str = "patient-service";

/// One snapshot: value by (name, labels other than `service`).
/// (The debugging recorder resets gauges and counters as it reads them.)
struct Scrape(BTreeMap<(String, Vec<(String, String)>), DebugValue>);

impl Scrape {
    fn take(snapshotter: &Snapshotter) -> Self {
        let mut values = BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels = Vec::new();
            for label in key.labels() {
                if label.key() == "service" {
                    assert_eq!(label.value(), SERVICE, "{}", key.name());
                } else {
                    labels.push((label.key().to_owned(), label.value().to_owned()));
                }
            }
            labels.sort();
            values.insert((key.name().to_owned(), labels), value);
        }
        Scrape(values)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        match self.0.get(&(name.to_owned(), labels.clone())) {
            Some(DebugValue::Counter(n)) => *n as f64,
            Some(DebugValue::Gauge(x)) => x.into_inner(),
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    /// The one state whose gauge is 1; every other state's gauge is 0.
    fn state(&self) -> String {
        self.one_of(names::STATE, "state")
    }

    fn verdict(&self) -> String {
        self.one_of(names::HEALTH, "verdict")
    }

    fn one_of(&self, name: &str, label: &str) -> String {
        let set: Vec<_> = self
            .0
            .iter()
            .filter(|((n, l), _)| n == name && l.len() == 1 && l[0].0 == label)
            .collect();
        assert!(set.len() >= 3, "{name}: every value has a series: {set:?}");
        let on: Vec<_> = set
            .iter()
            .filter(|(_, v)| **v == DebugValue::Gauge(1.0.into()))
            .map(|((_, l), _)| l[0].1.clone())
            .collect();
        let off = set
            .iter()
            .filter(|(_, v)| **v == DebugValue::Gauge(0.0.into()))
            .count();
        assert_eq!((on.len(), off + 1), (1, set.len()), "{name}: {set:?}");
        on[0].clone()
    }

    /// received = sent + discarded (both reasons) + returned + held, in
    /// events and in bytes.
    fn assert_identity(&self) {
        for (received, sent, discarded, returned, held) in [
            (
                names::RECEIVED_EVENTS,
                names::SENT_EVENTS,
                names::DISCARDED_EVENTS,
                names::RETURNED_EVENTS,
                names::BUFFER_EVENTS,
            ),
            (
                names::RECEIVED_BYTES,
                names::SENT_BYTES,
                names::DISCARDED_BYTES,
                names::RETURNED_BYTES,
                names::BUFFER_BYTE_SIZE,
            ),
        ] {
            let dead = [("reason", "dead_lettered"), ("intentional", "false")];
            let dropped = [("reason", "dropped"), ("intentional", "true")];
            let ended = self.value(sent, &[])
                + self.value(discarded, &dead)
                + self.value(discarded, &dropped)
                + self.value(returned, &[])
                + self.value(held, &[]);
            assert_eq!(self.value(received, &[]), ended, "{received}");
        }
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_follow_an_outage_a_recovery_and_a_close() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let broker = MockBroker::new();
    broker.refuse_until_healed();
    broker.reject(Matcher::key("poison"), "record too large for the topic");
    let config = Config::builder()
        .service_name(SERVICE)
        .max_queued_records(3)
        .max_in_flight(3)
        .overflow(OverflowPolicy::DropNewest)
        .build()
        .unwrap();
    // The handles are registered at start, with the recorder in scope then.
    let producer = metrics::with_local_recorder(&recorder, || {
        Producer::builder(config)
            .on_dead_letter(|_| {})
            .start(broker.transport(), TokioRuntime::new())
            .unwrap()
    });
    let record = |key: &str| Record::new("patients", "{}").with_key(key.to_owned());
    let size = record("p-1").size() as f64;

    // Kafka down: three records wait, a fourth is dropped by the policy.
    let mut handles = Vec::new();
    for key in ["p-1", "p-2", "p-3", "p-4"] {
        handles.push(producer.send(record(key)).await.unwrap());
    }
    producer.publish_metrics();
    let s = Scrape::take(&snapshotter);
    assert_ne!(s.state(), "connected");
    assert_eq!(s.value(names::RECEIVED_EVENTS, &[]), 4.0);
    assert_eq!(s.value(names::RECEIVED_BYTES, &[]), 4.0 * size);
    assert_eq!(s.value(names::BUFFER_EVENTS, &[]), 3.0);
    assert_eq!(s.value(names::BUFFER_BYTE_SIZE, &[]), 3.0 * size);
    let dropped = [("reason", "dropped"), ("intentional", "true")];
    assert_eq!(s.value(names::DISCARDED_EVENTS, &dropped), 1.0);
    assert_eq!(s.value(names::SENT_EVENTS, &[]), 0.0);
    s.assert_identity();

    // Unasked, the driver refreshes the series while records wait: the
    // queue and its growing age reappear after the snapshot reset them.
    let mut oldest_age = 0.0;
    wait_until("the driver refreshes the gauges", || {
        let s = Scrape::take(&snapshotter);
        oldest_age = s.value(names::OLDEST_EVENT_AGE, &[]);
        s.value(names::BUFFER_EVENTS, &[]) == 3.0 && oldest_age > 0.5
    })
    .await;

    // Kafka back: everything waiting is delivered; the latency histogram
    // saw each, outage included.
    broker.heal();
    for handle in handles.drain(..3) {
        handle.await.unwrap();
    }
    producer.publish_metrics();
    let s = Scrape::take(&snapshotter);
    assert_eq!(s.state(), "connected");
    assert_eq!(s.verdict(), "healthy");
    assert_eq!(s.value(names::SENT_EVENTS, &[]), 3.0);
    assert_eq!(s.value(names::SENT_BYTES, &[]), 3.0 * size);
    assert_eq!(s.value(names::BUFFER_EVENTS, &[]), 0.0);
    assert_eq!(s.value(names::OLDEST_EVENT_AGE, &[]), 0.0);
    assert!(s.value(names::CONNECT_ATTEMPTS, &[]) >= 1.0);
    // Down since start, so at least as long as the oldest record waited
    // (less a millisecond of truncation).
    assert!(s.value(names::DISCONNECTED_MILLIS, &[]) >= (oldest_age * 1000.0).floor() - 1.0);
    // The three waited at least `oldest_age`: no bucket below it holds any.
    assert_eq!(s.value(names::DELIVERY_DURATION_COUNT, &[]), 3.0);
    assert_eq!(
        s.value(names::DELIVERY_DURATION_BUCKET, &[("le", "+Inf")]),
        3.0
    );
    for bound in robust_producer::DELIVERY_BUCKETS {
        let le = bound.as_secs_f64().to_string();
        let at_most = s.value(names::DELIVERY_DURATION_BUCKET, &[("le", &le)]);
        let expected = if bound.as_secs_f64() < oldest_age {
            0.0
        } else {
            at_most
        };
        assert_eq!(at_most, expected, "le {le}");
    }
    assert!(s.value(names::DELIVERY_DURATION_SUM, &[]) >= 3.0 * oldest_age);
    s.assert_identity();

    // A poison record is dead-lettered, not dropped.
    assert!(
        producer
            .send(record("poison"))
            .await
            .unwrap()
            .await
            .is_err()
    );
    producer.publish_metrics();
    let s = Scrape::take(&snapshotter);
    let dead = [("reason", "dead_lettered"), ("intentional", "false")];
    assert_eq!(s.value(names::DISCARDED_EVENTS, &dead), 1.0);
    assert_eq!(
        s.value(names::DISCARDED_BYTES, &dead),
        record("poison").size() as f64
    );
    s.assert_identity();

    // Kafka down again, then a close that cannot wait: the link loss
    // counts, the records come back, and the last state is published.
    broker.down();
    wait_until("the link is lost", || producer.stats().link_losses == 1).await;
    let _unresolved = producer.send(record("p-5")).await.unwrap();
    let _unresolved_too = producer.send(record("p-6")).await.unwrap();
    let returned = producer.close(Duration::ZERO).await;
    assert_eq!(returned.len(), 2);
    assert_eq!(producer.state(), State::Closed);
    let s = Scrape::take(&snapshotter);
    assert_eq!(s.state(), "closed");
    assert_eq!(s.verdict(), "unhealthy");
    assert_eq!(s.value(names::LINK_LOSSES, &[]), 1.0);
    assert_eq!(s.value(names::RETURNED_EVENTS, &[]), 2.0);
    assert_eq!(s.value(names::RETURNED_BYTES, &[]), 2.0 * size);
    s.assert_identity();
}
