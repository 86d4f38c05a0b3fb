//! The transport on its own, driven by hand against librdkafka's mock
//! cluster: the session contract of `robust_producer::transport`, the
//! back-pressure signal, and configuration errors.

#![expect(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failure, output helps"
)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use robust_producer::{ErrorClass, Record, RecordId, Transport, TransportEvent};
use robust_producer_rdkafka::{Error, RdkafkaConfig, RdkafkaTransport};

const TOPIC: &str = "contract";

fn record(n: u64) -> Record {
    Record::new(TOPIC, vec![b'x'; 100])
        .with_key(format!("k{}", n % 4))
        .with_header("event_id", format!("e{n}"))
}

/// Every event within `within`, stopping early once `stop` says so.
async fn events_until(
    t: &mut RdkafkaTransport,
    within: Duration,
    mut stop: impl FnMut(&[TransportEvent]) -> bool,
) -> Vec<TransportEvent> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while !stop(&out) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, t.next_event()).await {
            Ok(e) => out.push(e),
            Err(_) => break,
        }
    }
    out
}

async fn connected(t: &mut RdkafkaTransport) {
    t.connect();
    let events = events_until(t, Duration::from_secs(10), |e| !e.is_empty()).await;
    assert_eq!(events, [TransportEvent::Connected]);
}

fn delivered_ids(events: &[TransportEvent]) -> HashSet<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            TransportEvent::Delivered(ack) => Some(ack.id.0),
            _ => None,
        })
        .collect()
}

/// Ids any event mentions.
fn mentioned(events: &[TransportEvent]) -> HashSet<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            TransportEvent::Delivered(ack) => Some(ack.id.0),
            TransportEvent::Failed { id, .. } => Some(id.0),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_carry_partition_and_offset() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    let mut t = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap_servers())).unwrap();
    connected(&mut t).await;
    for n in 1..=10 {
        t.send(RecordId(n), &record(n)).unwrap();
    }
    let events = events_until(&mut t, Duration::from_secs(10), |e| e.len() == 10).await;
    assert_eq!(delivered_ids(&events), (1..=10).collect());
    for e in &events {
        let TransportEvent::Delivered(ack) = e else {
            panic!("{e:?}")
        };
        assert!(matches!(ack.partition, Some(0 | 1)), "{ack:?}");
        assert!(ack.offset.is_some_and(|o| o >= 0), "{ack:?}");
    }
    t.close(Duration::from_secs(1)).await;
}

/// Contract point 1: after `connect` returns, nothing is reported about a
/// record handed off before it, even when the old session's records do
/// reach the broker later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_reported_about_earlier_handoffs_after_connect() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    let mut t = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap_servers())).unwrap();
    connected(&mut t).await;

    // Old session A: the broker is slow, so records 1..=100 are in flight
    // (on the wire, or queued) when the core gives up on the session.
    cluster
        .broker_round_trip_time(-1, Duration::from_millis(1500))
        .unwrap();
    for n in 1..=100 {
        t.send(RecordId(n), &record(n)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Session B.
    t.connect();
    cluster.broker_round_trip_time(-1, Duration::ZERO).unwrap();
    let events = events_until(&mut t, Duration::from_secs(10), |e| {
        e.contains(&TransportEvent::Connected)
    })
    .await;
    assert!(events.contains(&TransportEvent::Connected), "{events:?}");
    for n in 101..=110 {
        t.send(RecordId(n), &record(n)).unwrap();
    }
    // Collect for a while: reports about 1..=100 would show up here.
    let mut later = events_until(&mut t, Duration::from_secs(4), |_| false).await;
    later.extend(events);
    assert_eq!(mentioned(&later), (101..=110).collect(), "{later:?}");
    assert_eq!(
        t.metrics().snapshot().producers_built,
        2,
        "A's producer held records: rebuilt"
    );
    t.close(Duration::from_secs(1)).await;
}

/// A session that ended with nothing outstanding keeps its producer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intact_producer_is_reused_across_sessions() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let mut t = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap_servers())).unwrap();
    connected(&mut t).await;
    t.send(RecordId(1), &record(1)).unwrap();
    let events = events_until(&mut t, Duration::from_secs(10), |e| !e.is_empty()).await;
    assert_eq!(delivered_ids(&events), HashSet::from([1]));
    connected(&mut t).await;
    assert_eq!(t.metrics().snapshot().producers_built, 1);
    t.close(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_brokers_down_is_link_lost_once() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let mut t = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap_servers())).unwrap();
    connected(&mut t).await;
    t.send(RecordId(1), &record(1)).unwrap();
    let _ = events_until(&mut t, Duration::from_secs(10), |e| !e.is_empty()).await;
    cluster.broker_down(-1).unwrap();
    // The link is reported lost once no broker answered within the probe
    // timeout (5 s by default) after librdkafka said all were down.
    let events = events_until(&mut t, Duration::from_secs(12), |_| false).await;
    let lost = events
        .iter()
        .filter(|e| matches!(e, TransportEvent::LinkLost(_)))
        .count();
    assert_eq!(lost, 1, "{events:?}");
    // Reconnecting while down fails with librdkafka's reason.
    t.connect();
    let events = events_until(&mut t, Duration::from_secs(10), |e| !e.is_empty()).await;
    match events.as_slice() {
        [TransportEvent::ConnectFailed(reason)] => {
            assert!(
                reason.contains("down") || reason.contains("transport"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Nothing was outstanding when the link went: the producer is kept.
    cluster.broker_up(-1).unwrap();
    connected(&mut t).await;
    t.send(RecordId(2), &record(2)).unwrap();
    let events = events_until(&mut t, Duration::from_secs(10), |e| !e.is_empty()).await;
    assert_eq!(delivered_ids(&events), HashSet::from([2]));
    assert_eq!(t.metrics().snapshot().producers_built, 1);
    t.close(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_full_is_backpressure_then_ready() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let config = RdkafkaConfig::new(cluster.bootstrap_servers())
        .set("queue.buffering.max.messages", "10")
        .set("linger.ms", "200");
    let mut t = RdkafkaTransport::new(config).unwrap();
    connected(&mut t).await;
    let mut refused = None;
    for n in 1..=20 {
        if let Err(e) = t.send(RecordId(n), &record(n)) {
            refused = Some((n, e));
            break;
        }
    }
    let (n, e) = refused.expect("librdkafka's queue holds 10");
    assert_eq!(n, 11);
    assert_eq!(e.class, ErrorClass::Backpressure, "{e}");
    let events = events_until(&mut t, Duration::from_secs(10), |e| {
        e.contains(&TransportEvent::Ready) && delivered_ids(e).len() == 10
    })
    .await;
    let ready = events
        .iter()
        .filter(|e| **e == TransportEvent::Ready)
        .count();
    assert_eq!(ready, 1, "{events:?}");
    assert_eq!(delivered_ids(&events), (1..=10).collect());
    t.send(RecordId(11), &record(11)).expect("room again");
    t.close(Duration::from_secs(5)).await;
}

#[test]
fn invalid_property_is_reported_by_name() {
    let err = RdkafkaTransport::new(RdkafkaConfig::new("localhost:9").set("no.such.property", "1"))
        .unwrap_err();
    match &err {
        Error::InvalidProperty { name, .. } => assert_eq!(name, "no.such.property"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("no.such.property"), "{err}");
}

#[test]
fn invalid_secret_value_is_not_echoed() {
    // librdkafka validates enum values: an invalid one is echoed in its
    // message, so a secret-looking property with a bad value must not be.
    let err = RdkafkaTransport::new(
        RdkafkaConfig::new("localhost:9").set("ssl.key.password.not.a.property", "TOPSECRET"),
    )
    .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
}

/// A record of every shape the hand-off builds: with and without key,
/// headers (none, one, several, one with an empty value) and payload bytes.
fn shaped(n: u64, topic: &str) -> Record {
    let mut r = Record::new(
        topic.to_owned(),
        vec![b'a' + (n % 26) as u8; (n % 3) as usize * 50],
    );
    if n.is_multiple_of(2) {
        r = r.with_key(format!("key-{n}"));
    }
    for h in 0..n % 4 {
        r = r.with_header(
            format!("h{h}"),
            if h == 2 {
                String::new()
            } else {
                format!("v{n}.{h}")
            },
        );
    }
    r
}

/// A record as a consumer reads it: key, payload, headers.
type Stored = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Every record of `topics` (one partition each), by topic, in offset order.
fn read_all(bootstrap: &str, topics: &[String], expected: usize) -> HashMap<String, Vec<Stored>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "shapes")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out: HashMap<String, Vec<Stored>> = HashMap::new();
    let mut read = 0;
    while read < expected && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let headers = m.headers().map_or_else(Vec::new, |hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            });
            out.entry(m.topic().to_owned()).or_default().push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
                headers,
            ));
            read += 1;
        }
    }
    out
}

/// The transport hands records off through a librdkafka topic handle per
/// topic, up to a limit, and by topic name past it: both paths store every
/// record exactly as sent (key or none, payload, headers in order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_exactly_as_sent_through_topic_handles_and_by_name() {
    const TOPICS: u64 = 70; // past the transport's 64 topic handles
    let cluster = MockCluster::new(1).unwrap();
    let topics: Vec<String> = (0..TOPICS).map(|t| format!("shape-{t}")).collect();
    for topic in &topics {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let mut t = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap_servers())).unwrap();
    connected(&mut t).await;
    let mut sent = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        for k in 0..2 {
            let n = i as u64 * 2 + k;
            let r = shaped(n, topic);
            t.send(RecordId(n + 1), &r).unwrap();
            sent.push(r);
        }
    }
    let total = sent.len();
    let events = events_until(&mut t, Duration::from_secs(20), |e| {
        delivered_ids(e).len() == total
    })
    .await;
    assert_eq!(delivered_ids(&events).len(), total, "{events:?}");
    t.close(Duration::from_secs(5)).await;
    let mut stored = read_all(&cluster.bootstrap_servers(), &topics, total);
    for (i, topic) in topics.iter().enumerate() {
        let stored = stored.remove(topic).unwrap_or_default();
        let expected: Vec<Stored> = sent[i * 2..i * 2 + 2]
            .iter()
            .map(|r| {
                (
                    r.key.as_ref().map(|k| k.to_vec()),
                    r.payload.to_vec(),
                    r.headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_vec()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(stored, expected, "topic {topic}");
    }
}

/// `RdkafkaTransport::new` refuses what would break the delivery guarantee
/// or cannot work, before building anything (the checks themselves are unit
/// tested in `config/tests.rs`).
#[test]
fn new_refuses_settings_that_break_delivery() {
    let refused = |config: RdkafkaConfig| match RdkafkaTransport::new(config) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    let e = refused(RdkafkaConfig::new("localhost:9").set("transactional.id", "tx"));
    assert!(
        matches!(&e, Error::Refused { name, .. } if name == "transactional.id"),
        "{e:?}"
    );
    let e = refused(RdkafkaConfig::new("localhost:9").set("acks", "1"));
    assert!(
        matches!(&e, Error::Refused { name, .. } if name == "acks"),
        "{e:?}"
    );
    assert!(e.to_string().contains("allow_weaker_delivery"), "{e}");
    let e = refused(RdkafkaConfig::new("localhost:9").set("enable.idempotence", "false"));
    assert!(
        matches!(&e, Error::Refused { name, .. } if name == "enable.idempotence"),
        "{e:?}"
    );
    let e = refused(RdkafkaConfig::new("http://kafka:9092"));
    assert!(
        matches!(&e, Error::InvalidProperty { name, .. } if name == "bootstrap.servers"),
        "{e:?}"
    );
    assert!(e.to_string().contains("http://"), "{e}");
    let e = refused(RdkafkaConfig::new("not a host"));
    assert!(e.to_string().contains("bootstrap.servers"), "{e}");
    let e = refused(RdkafkaConfig::new("localhost:9").probe_timeout(Duration::ZERO));
    assert!(
        matches!(&e, Error::InvalidSetting { name, .. } if *name == "probe_timeout"),
        "{e:?}"
    );
    let e = refused(RdkafkaConfig::new("localhost:9").probe_timeout(Duration::MAX));
    assert!(e.to_string().contains("probe_timeout"), "{e}");
    // Opted in: weaker delivery is accepted.
    RdkafkaTransport::new(
        RdkafkaConfig::new("localhost:9")
            .allow_weaker_delivery()
            .set("acks", "1")
            .set("enable.idempotence", "false"),
    )
    .expect("weaker delivery allowed");
}

/// The limits the core checks: librdkafka's `message.max.bytes` and the
/// probe timeout.
#[test]
fn limits_state_message_max_bytes_and_probe_timeout() {
    let t = RdkafkaTransport::new(RdkafkaConfig::new("localhost:9")).unwrap();
    let limits = t.limits();
    assert_eq!(limits.max_wire_bytes, Some(1_000_000));
    assert_eq!(limits.connect_probe, Some(Duration::from_secs(5)));
    let t = RdkafkaTransport::new(
        RdkafkaConfig::new("localhost:9")
            .set("message.max.bytes", "20000")
            .probe_timeout(Duration::from_millis(1500)),
    )
    .unwrap();
    let limits = t.limits();
    assert_eq!(limits.max_wire_bytes, Some(20_000));
    assert_eq!(limits.connect_probe, Some(Duration::from_millis(1500)));
}

/// With `acks=0` (allowed with `allow_weaker_delivery`) librdkafka reports
/// no offset (-1001): the acknowledgement says `None`, not a negative one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_reports_no_offset() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    let config = RdkafkaConfig::new(cluster.bootstrap_servers())
        .allow_weaker_delivery()
        .set("acks", "0")
        .set("enable.idempotence", "false");
    let mut t = RdkafkaTransport::new(config).unwrap();
    connected(&mut t).await;
    for n in 1..=10 {
        t.send(RecordId(n), &record(n)).unwrap();
    }
    let events = events_until(&mut t, Duration::from_secs(10), |e| e.len() == 10).await;
    assert_eq!(delivered_ids(&events), (1..=10).collect());
    for e in &events {
        let TransportEvent::Delivered(ack) = e else {
            panic!("{e:?}")
        };
        assert_eq!(ack.offset, None, "{ack:?}");
        assert!(matches!(ack.partition, Some(0 | 1)), "{ack:?}");
    }
    t.close(Duration::from_secs(1)).await;
}

/// A failed connect says why in librdkafka's words, not only that the
/// probe timed out.
async fn connect_failure(bootstrap: &str) -> String {
    let config = RdkafkaConfig::new(bootstrap).probe_timeout(Duration::from_millis(1500));
    let mut t = RdkafkaTransport::new(config).unwrap();
    t.connect();
    let events = events_until(&mut t, Duration::from_secs(10), |e| !e.is_empty()).await;
    t.close(Duration::ZERO).await;
    match events.as_slice() {
        [TransportEvent::ConnectFailed(reason)] => {
            eprintln!("{bootstrap}: {reason}");
            reason.clone()
        }
        other => panic!("{bootstrap}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_carries_librdkafka_reason() {
    let reason = connect_failure("nohost.invalid:9092").await;
    assert!(
        reason.contains("Failed to resolve 'nohost.invalid:9092'"),
        "{reason}"
    );
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reason = connect_failure(&format!("127.0.0.1:{port}")).await;
    assert!(reason.contains("Connection refused"), "{reason}");
}

/// `close(Duration::MAX)` ("as long as it takes") neither panics nor hangs:
/// the flush is bounded by librdkafka's own limit and ends as soon as the
/// record is delivered. (rdkafka computes `Instant::now() + timeout`, which
/// panics on overflow.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_an_unbounded_timeout_flushes_and_returns() {
    static CLOSE_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("rdkafka-close") {
            CLOSE_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        default_hook(info);
    }));
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let mut t = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap_servers())).unwrap();
    connected(&mut t).await;
    // Slow answers: the record is still outstanding when `close` flushes.
    cluster
        .broker_round_trip_time(-1, Duration::from_millis(300))
        .unwrap();
    t.send(RecordId(1), &record(1)).unwrap();
    tokio::time::timeout(Duration::from_secs(20), t.close(Duration::MAX))
        .await
        .expect("close returns once the record is flushed");
    assert_eq!(
        CLOSE_PANICS.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the close thread panicked"
    );
}
