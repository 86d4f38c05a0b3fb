//! An outage reads as an outage in the logs: with Kafka down at start (and
//! unreachable in three ways: nothing listening, a name that does not
//! resolve, librdkafka's mock cluster with every broker down) and a broker
//! restart mid-stream, nothing is logged at ERROR, and once the brokers are
//! back everything is delivered.
//!
//! Its own test binary: it installs a global `tracing` subscriber that
//! counts every event per level (the transport's, librdkafka's and the
//! core's).

#![expect(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failure, output helps"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use robust_producer::{BackoffConfig, Config, Producer, Record, TokioRuntime};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

const TOPIC: &str = "outage";

/// One captured event: level, target and its fields as text.
#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    target: String,
    text: String,
}

/// Captures every event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            text: fields.0,
        });
    }
}

impl Capture {
    fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Prints the counts per level and every WARN and ERROR of a phase;
/// returns the ERRORs.
fn report(phase: &str, events: &[Captured]) -> Vec<Captured> {
    let mut counts: BTreeMap<Level, usize> = BTreeMap::new();
    for e in events {
        *counts.entry(e.level).or_default() += 1;
    }
    eprintln!("== {phase}: events per level {counts:?}");
    for e in events
        .iter()
        .filter(|e| e.level <= Level::WARN && e.target != "robust_producer::driver::producer")
    {
        eprintln!("  {} {}:{}", e.level, e.target, e.text);
    }
    // Instants must be printed as durations: Debug of `Instant` shows
    // `tv_sec`/`tv_nsec`, which means nothing to a reader.
    for e in events.iter().filter(|e| e.text.contains("tv_sec")) {
        if e.target.starts_with("robust_producer_rdkafka") || e.target == "librdkafka" {
            panic!("unreadable Instant in a transport log field: {e:?}");
        }
        eprintln!("  NOTE: an Instant in a log field outside the transport: {e:?}");
    }
    events
        .iter()
        .filter(|e| e.level == Level::ERROR)
        .cloned()
        .collect()
}

fn core_config() -> Config {
    Config::builder()
        .connect_timeout(Duration::from_secs(3))
        .backoff(BackoffConfig {
            initial: Duration::from_millis(50),
            multiplier: 2.0,
            max: Duration::from_millis(500),
            jitter: 0.5,
        })
        .service_name("outage-logs")
        .build()
        .unwrap()
}

fn record(n: u64) -> Record {
    Record::new(TOPIC, format!("record {n}")).with_key(format!("key-{}", n % 8))
}

fn start(bootstrap: &str) -> Producer {
    let transport = RdkafkaTransport::new(
        RdkafkaConfig::new(bootstrap).probe_timeout(Duration::from_millis(1500)),
    )
    .unwrap();
    Producer::builder(core_config())
        .start(transport, TokioRuntime::new())
        .expect("the producer config fits the transport")
}

/// A producer against `bootstrap`, where no broker will ever answer, with a
/// few records sent, for `how_long`.
async fn unreachable(bootstrap: &str, how_long: Duration) {
    let producer = start(bootstrap);
    for n in 0..10 {
        drop(producer.send(record(n)).await.unwrap());
    }
    tokio::time::sleep(how_long).await;
    let stats = producer.stats();
    assert_eq!(stats.delivered, 0);
    assert!(stats.last_error.is_some(), "{stats:?}");
    eprintln!("{bootstrap}: last error {:?}", stats.last_error);
    let returned = producer.close(Duration::from_millis(200)).await;
    assert_eq!(returned.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_logs_no_error() {
    let capture = Capture::default();
    tracing_subscriber::registry().with(capture.clone()).init();
    let mut errors = Vec::new();

    // 1. Nothing listens (connection refused), and a name that does not
    //    resolve.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    unreachable(&format!("127.0.0.1:{port}"), Duration::from_secs(3)).await;
    errors.extend(report("nothing listening", &capture.take()));
    unreachable("nohost.invalid:9092", Duration::from_secs(3)).await;
    errors.extend(report("unresolvable name", &capture.take()));

    // 2. Every broker down at start for about 10 s, records sent meanwhile;
    //    then up: everything delivered.
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic(TOPIC, 6, 3).unwrap();
    cluster.broker_down(-1).unwrap();
    let producer = start(&cluster.bootstrap_servers());
    let mut sent = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        for _ in 0..100 {
            drop(producer.send(record(sent)).await.unwrap());
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(producer.stats().delivered, 0);
    errors.extend(report("all brokers down for 10 s", &capture.take()));
    cluster.broker_up(-1).unwrap();
    producer
        .flush(Duration::from_secs(90))
        .await
        .expect("everything delivered once the brokers are up");
    assert_eq!(producer.stats().delivered, sent);
    errors.extend(report("brokers up", &capture.take()));

    // 3. A broker restart (every broker, 3 s) mid-stream.
    for _ in 0..5 {
        for _ in 0..200 {
            drop(producer.send(record(sent)).await.unwrap());
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.broker_down(-1).unwrap();
    for _ in 0..6 {
        for _ in 0..100 {
            drop(producer.send(record(sent)).await.unwrap());
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.broker_up(-1).unwrap();
    producer
        .flush(Duration::from_secs(90))
        .await
        .expect("everything delivered after the restart");
    let stats = producer.stats();
    assert_eq!(stats.delivered, sent, "{stats:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let returned = producer.close(Duration::from_secs(5)).await;
    assert!(returned.is_empty());
    errors.extend(report("broker restart mid-stream", &capture.take()));

    assert!(
        errors.is_empty(),
        "an outage logged {} ERROR event(s): {errors:#?}",
        errors.len()
    );
}
