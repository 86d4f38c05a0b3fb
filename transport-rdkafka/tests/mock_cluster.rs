//! The rdkafka transport under the real producer, against librdkafka's
//! in-process mock cluster (`rdkafka::mocking::MockCluster`, no Docker).
//!
//! Every scenario reads the topic back with an independent consumer and
//! checks: every accepted record stored (or dead-lettered, never both),
//! every stored record carrying its `event_id` header, per-key order, and
//! duplicates, which are allowed only after a lost session (at most the
//! records in flight when it was lost) and must be zero otherwise.
//!
//! Scenarios run one at a time (they share two cores and measure timing).

#![expect(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failure, output helps"
)]
#![expect(
    clippy::await_holding_lock,
    reason = "SERIAL is held across awaits on purpose"
)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use robust_producer::{BackoffConfig, Config, DeliveryError, EnqueueError, State};

use common::{
    Cluster, MAX_IN_FLIGHT, PARTITIONS, TOPIC, Under, assert_clean, core_config, init_tracing,
    record, serial, transport_config, wait_for_state,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_brokers_down_before_start_then_up() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(1);
    cluster.down();
    let t0 = Instant::now();
    let under = Under::start(transport_config(&cluster), core_config());
    const N: u64 = 20_000;
    under.send_range(0..N).await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "accepting must not wait for the broker"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(under.producer.state(), State::Connected);
    assert_eq!(under.producer.stats().delivered, 0);
    cluster.up();
    let (stats, m) = under.finish(N).await;
    assert!(m.connect_failed >= 1, "{m:?}");
    assert_eq!(stats.dead_lettered, 0);
    let v = cluster.verify(N, &HashSet::new());
    // Nothing was handed off before the broker came up: no duplicates.
    assert_clean(&v, 0, "down before start");
    assert_eq!(v.stored, N as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_down_mid_stream_five_times() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(1);
    let under = Under::start(transport_config(&cluster), core_config());
    const N: u64 = 100_000;
    const CYCLE: u64 = 15_000;
    let mut seq = 0;
    for outage in 0..5 {
        under.send_range(seq..seq + CYCLE).await;
        seq += CYCLE;
        cluster.down();
        under.send_range(seq..seq + 2_000).await;
        seq += 2_000;
        // Four outages shorter than the probe timeout (1.5 s), the last
        // one longer.
        let length = if outage < 4 { 800 } else { 3_000 };
        tokio::time::sleep(Duration::from_millis(length)).await;
        cluster.up();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    under.send_range(seq..N).await;
    let (stats, m) = under.finish(N).await;
    eprintln!("stats: {stats:?}\ntransport: {m:?}");
    // librdkafka reports every broker down; the transport gives the session
    // up only when no broker answers within the probe timeout: the short
    // outages are ridden out on the same session (librdkafka keeps its
    // queue, in order), the long one ends it. How many signals each outage
    // raises depends on timing on a loaded machine: at least two outages
    // were noticed, and the long one cost a session.
    assert!(
        m.all_brokers_down >= 2 && stats.link_losses >= 1 && m.sessions >= 2,
        "the outages were noticed: {stats:?} {m:?}"
    );
    assert_eq!(stats.dead_lettered, 0);
    let v = cluster.verify(N, &HashSet::new());
    // Duplicates: the windows resent after a lost session, and the requests
    // librdkafka resent after a reconnect within a session (a Kafka broker
    // drops those by their sequence numbers; the mock cluster checks
    // sequences only for transactional producers).
    assert_clean(
        &v,
        (stats.link_losses as usize + 5) * MAX_IN_FLIGHT,
        "five outages",
    );
}

/// librdkafka's own expiry is off, even when the application configures a
/// finite `message.timeout.ms` (1 s here, which the transport does not pass
/// on): what bounds a stuck record is the core's ack timeout. The partition
/// leader is down for 4 s, four times both, while the other brokers answer
/// metadata: the core gives up on the session several times, the transport
/// rebuilds its producer each time, and once the leader is back everything is
/// delivered, in order. (With librdkafka's expiry on, this scenario reordered
/// records: see `RdkafkaConfig`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_longer_than_message_timeout() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(3);
    for p in 0..PARTITIONS {
        cluster
            .mock
            .partition_leader(TOPIC, p, Some(1))
            .expect("leader");
    }
    let core = Config::builder()
        .max_queued_records(200_000)
        .max_queued_bytes(512 << 20)
        .max_in_flight(MAX_IN_FLIGHT)
        .ack_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(3))
        .backoff(BackoffConfig {
            initial: Duration::from_millis(50),
            multiplier: 2.0,
            max: Duration::from_millis(500),
            jitter: 0.5,
        })
        .seed(5)
        .build()
        .expect("config");
    let config = transport_config(&cluster)
        .set("message.timeout.ms", "1000")
        .set("topic.metadata.propagation.max.ms", "500"); // below ack_timeout
    assert_eq!(config.overridden(), [("message.timeout.ms", "1000")]);
    let under = Under::start(config, core);
    const N: u64 = 30_000;
    under.send_range(0..10_000).await;
    cluster.mock.broker_down(1).expect("down");
    under.send_range(10_000..20_000).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = under.producer.stats();
    cluster.mock.broker_up(1).expect("up");
    under.send_range(20_000..N).await;
    let (stats, m) = under.finish(N).await;
    eprintln!("during: {during:?}\nstats: {stats:?}\ntransport: {m:?}");
    assert!(
        during.link_losses >= 2 && m.producers_built >= 3,
        "the core gave up on stuck sessions and the producer was rebuilt: {during:?} {m:?}"
    );
    assert_eq!(stats.dead_lettered, 0);
    let v = cluster.verify(N, &HashSet::new());
    assert_clean(
        &v,
        stats.link_losses as usize * MAX_IN_FLIGHT,
        "outage longer than every timeout",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_produce_errors_recover_in_order() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(1);
    let under = Under::start(transport_config(&cluster), core_config());
    const N: u64 = 30_000;
    under.send_range(0..5_000).await;
    use RDKafkaRespErr::*;
    cluster.mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    under.send_range(5_000..N).await;
    let (stats, m) = under.finish(N).await;
    eprintln!("stats: {stats:?}\ntransport: {m:?}");
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(stats.link_losses, 0, "librdkafka retried them itself");
    let v = cluster.verify(N, &HashSet::new());
    assert_clean(&v, 0, "retriable produce errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_is_dead_lettered_alone_and_does_not_block() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(1);
    // The transport states librdkafka's message.max.bytes as its limit: a
    // record over it is refused at `send`, never accepted to fail later.
    let config = transport_config(&cluster).set("message.max.bytes", "20000");
    let under = Under::start(config, core_config());
    under.send_range(0..2_000).await;
    // 1. Refused at `send`, in the middle of a stream.
    match under.producer.send(record(2_000, 50_000)).await {
        Err(EnqueueError::RecordTooLarge { limit, max, .. }) => {
            assert_eq!(max, 20_000);
            assert!(limit.contains("message.max.bytes"), "{limit}");
        }
        other => panic!("expected RecordTooLarge at send, got {other:?}"),
    }
    under.send_range(2_001..4_000).await;
    under
        .producer
        .flush(Duration::from_secs(30))
        .await
        .expect("flushed");
    // 2. Refused by the broker: one produce request answered
    //    MSG_SIZE_TOO_LARGE (a batch over the topic's limit). Its records
    //    may be innocent: each is resent alone and delivered, unless
    //    librdkafka stored a later record of its key first (it retries the
    //    batches behind a refused one under a new epoch, racing the
    //    transport's purge): that record is then dead-lettered, saying so,
    //    rather than resent out of order.
    cluster.mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    under.send_range(4_000..6_000).await;
    under
        .producer
        .flush(Duration::from_secs(60))
        .await
        .expect("flushed");
    let refused_batches = under.producer.stats().link_losses;
    assert!(refused_batches >= 1, "the refused batch ended its session");
    let overtaken = under.dead.lock().unwrap().len();
    for dl in under.dead.lock().unwrap().iter() {
        let reason = dl.reason.to_string();
        assert!(
            reason.contains("would break the key's order"),
            "a batch-mate dead-lettered for another reason: {reason}"
        );
    }
    // 3. Refused again when alone: that record, and only it, is
    //    dead-lettered with the broker's words.
    cluster.mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        ],
    );
    let victim = under.send(6_000).await;
    match victim.await {
        Err(DeliveryError::DeadLettered { reason }) => {
            assert!(reason.contains("MessageSizeTooLarge"), "{reason}");
            assert!(reason.contains("refused alone"), "{reason}");
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
    const N: u64 = 10_000;
    under.send_range(6_001..N).await;
    let (stats, m) = under.finish(N - 1).await; // all but the one refused at send
    eprintln!("stats: {stats:?}\ntransport: {m:?}");
    let dead = under.dead_seqs();
    assert!(dead.contains(&6_000), "the victim: {dead:?}");
    assert_eq!(dead.len(), overtaken + 1, "the victim and the overtaken");
    // Never accepted, so never stored: 2 000 is absent like the dead.
    let mut absent = dead.clone();
    absent.insert(2_000);
    let v = cluster.verify(N, &absent);
    // A refused batch ends its session; acknowledgements of that session
    // still on the wire are lost, and their records sent again.
    assert_clean(
        &v,
        (stats.link_losses as usize) * 10_000,
        "message too large",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotence_fatal_error_rebuilds_without_loss() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(1);
    let under = Under::start(transport_config(&cluster), core_config());
    under.send_range(0..5_000).await;
    under
        .producer
        .flush(Duration::from_secs(30))
        .await
        .expect("flushed");
    // The next produce request is head-of-line for its partitions: an
    // out-of-order sequence answer is a fatal idempotence error.
    cluster.mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    const N: u64 = 30_000;
    under.send_range(5_000..N).await;
    let (stats, m) = under.finish(N).await;
    eprintln!("stats: {stats:?}\ntransport: {m:?}");
    assert!(m.fatal >= 1, "the fatal error was seen: {m:?}");
    assert!(m.producers_built >= 2, "the producer was rebuilt: {m:?}");
    assert_eq!(stats.dead_lettered, 0);
    let v = cluster.verify(N, &HashSet::new());
    assert_clean(
        &v,
        stats.link_losses as usize * MAX_IN_FLIGHT,
        "idempotence fatal error",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_broker_recovers() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(1);
    let config = transport_config(&cluster)
        .set("socket.timeout.ms", "1000")
        .set("topic.metadata.propagation.max.ms", "1000") // below ack_timeout
        .probe_timeout(Duration::from_millis(800));
    let core = Config::builder()
        .max_queued_records(200_000)
        .max_queued_bytes(512 << 20)
        .ack_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(1))
        .backoff(BackoffConfig {
            initial: Duration::from_millis(50),
            multiplier: 2.0,
            max: Duration::from_millis(500),
            jitter: 0.5,
        })
        .seed(11)
        .build()
        .expect("config");
    let under = Under::start(config, core);
    wait_for_state(&under.producer, State::Connected, Duration::from_secs(10)).await;
    under.send_range(0..5_000).await;
    // Answers now take 3 s: longer than socket.timeout.ms and the core's
    // ack timeout. The broker is alive but useless: a hang.
    cluster
        .mock
        .broker_round_trip_time(-1, Duration::from_secs(3))
        .expect("rtt");
    under.send_range(5_000..15_000).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = under.producer.stats();
    cluster
        .mock
        .broker_round_trip_time(-1, Duration::ZERO)
        .expect("rtt");
    const N: u64 = 20_000;
    under.send_range(15_000..N).await;
    let (stats, m) = under.finish(N).await;
    eprintln!("during: {during:?}\nstats: {stats:?}\ntransport: {m:?}");
    assert!(stats.link_losses >= 1, "the hang was detected: {stats:?}");
    assert_eq!(stats.dead_lettered, 0);
    let v = cluster.verify(N, &HashSet::new());
    assert_clean(
        &v,
        stats.link_losses as usize * MAX_IN_FLIGHT,
        "hung broker",
    );
}

/// Under load the driver serves librdkafka's delivery reports on its own
/// thread (inline, and nudged by the poll thread while idle) rather than
/// leaving them to the poll thread, whose frees would contend with the
/// driver thread's allocations. On a current-thread runtime, where the
/// application and the driver share the thread, the driver goes idle
/// whenever its window is full: that is when a poll thread without this
/// rule would take the reports over.
#[tokio::test(flavor = "current_thread")]
async fn busy_driver_serves_delivery_reports_on_its_own_thread() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(1);
    let under = Under::start(transport_config(&cluster), core_config());
    wait_for_state(&under.producer, State::Connected, Duration::from_secs(10)).await;
    const N: u64 = 60_000;
    for seq in 0..N {
        drop(under.send(seq).await);
        if seq % 256 == 255 {
            tokio::task::yield_now().await; // the driver runs between bursts
        }
    }
    let (stats, m) = under.finish(N).await;
    assert_eq!(stats.delivered, N);
    eprintln!(
        "reports served by the poll thread: {} of {N}",
        m.reports_by_poll_thread
    );
    // The driver serves the reports of the records it sends. The poll
    // thread takes over only while the driver's executor has not polled for
    // 100 ms: rare on a quiet machine; 5.5% of them once, with both cores
    // loaded by two other builds and stress-ng. A transport whose poll thread served
    // the reports of a busy driver would serve most of them.
    assert!(
        m.reports_by_poll_thread <= N / 4,
        "the poll thread served {} of {N} delivery reports: {m:?}",
        m.reports_by_poll_thread
    );
    let v = cluster.verify(N, &HashSet::new());
    assert_clean(&v, 0, "served inline");
    assert_eq!(v.stored, N as usize);
}
