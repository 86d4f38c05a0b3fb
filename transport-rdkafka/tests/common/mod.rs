//! Shared by the mock-cluster suites (`mock_cluster.rs`,
//! `mock_cluster_leaders.rs`): the mock cluster with the test topic, the
//! producer under test over the rdkafka transport, the records sent and the
//! checks of what the broker stored.

#![expect(
    dead_code,
    unreachable_pub,
    reason = "shared by several test crates, each using part of it, from a private module"
)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use robust_producer::{
    BackoffConfig, Config, DeadLetter, EventEnvelope, Producer, Record, State, TokioRuntime,
};
use robust_producer_rdkafka::readback::{ReadBack, Report, Sent, check};
use robust_producer_rdkafka::{MetricsSnapshot, RdkafkaConfig, RdkafkaTransport};

/// Header carrying each record's sequence number, by which the read-back
/// identifies it.
pub const SEQ_HEADER: &str = "seq";

pub const TOPIC: &str = "events";
/// Enough partitions that the mock cluster, which keeps 5 MiB per
/// partition, evicts nothing.
pub const PARTITIONS: i32 = 16;
pub const KEYS: u64 = 64;
pub const MAX_IN_FLIGHT: usize = 10_000;

/// Held for a whole scenario, across awaits on purpose: each test blocks its
/// own thread on its own runtime, and scenarios must not overlap.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

/// A mock cluster with the test topic.
pub struct Cluster {
    pub mock: MockCluster<'static, DefaultProducerContext>,
    pub bootstrap: String,
}

impl Cluster {
    pub fn new(brokers: i32) -> Self {
        let mock = MockCluster::new(brokers).expect("mock cluster");
        mock.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
        let bootstrap = mock.bootstrap_servers();
        Self { mock, bootstrap }
    }

    pub fn down(&self) {
        self.mock.broker_down(-1).expect("broker down");
    }

    pub fn up(&self) {
        self.mock.broker_up(-1).expect("broker up");
    }

    /// Makes `leader` (`None`: no leader) the leader of every partition.
    pub fn lead_all(&self, leader: Option<i32>) {
        for p in 0..PARTITIONS {
            self.mock
                .partition_leader(TOPIC, p, leader)
                .expect("partition leader");
        }
    }

    /// Reads the topic back and checks it against records `0..sent`, of
    /// which those in `dead` must be absent.
    pub fn verify(&self, sent: u64, dead: &HashSet<u64>) -> Report {
        let stored = ReadBack::new(&self.bootstrap, TOPIC)
            .id_header(SEQ_HEADER)
            .timeout(Duration::from_secs(60))
            .read()
            .unwrap_or_else(|e| panic!("{e}"));
        let expected: Vec<Sent> = (0..sent)
            .filter(|s| !dead.contains(s))
            .map(|s| Sent::keyed(key(s), s.to_string()))
            .collect();
        let absent = dead.iter().map(u64::to_string).collect();
        check(&expected, &absent, &stored)
    }
}

/// The transport settings of the tests: the defaults, plus quick probes.
pub fn transport_config(cluster: &Cluster) -> RdkafkaConfig {
    RdkafkaConfig::new(&cluster.bootstrap).probe_timeout(Duration::from_millis(1500))
}

pub fn core_config() -> Config {
    Config::builder()
        .max_queued_records(200_000)
        .max_queued_bytes(512 << 20)
        .max_in_flight(MAX_IN_FLIGHT)
        .connect_timeout(Duration::from_secs(3))
        .backoff(BackoffConfig {
            initial: Duration::from_millis(50),
            multiplier: 2.0,
            max: Duration::from_millis(500),
            jitter: 0.5,
        })
        .seed(7)
        .service_name("mock-tests")
        .build()
        .expect("config")
}

/// A producer over the rdkafka transport, collecting dead letters.
pub struct Under {
    pub producer: Producer,
    pub metrics: robust_producer_rdkafka::TransportMetrics,
    pub dead: Arc<Mutex<Vec<DeadLetter>>>,
}

impl Under {
    pub fn start(transport: RdkafkaConfig, config: Config) -> Self {
        let transport = RdkafkaTransport::new(transport).expect("transport");
        let metrics = transport.metrics();
        let dead = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&dead);
        let producer = Producer::builder(config)
            .on_dead_letter(move |dl| sink.lock().unwrap().push(dl))
            .start(transport, TokioRuntime::new())
            .expect("the producer config fits the transport");
        Self {
            producer,
            metrics,
            dead,
        }
    }

    pub async fn send(&self, seq: u64) -> robust_producer::DeliveryHandle {
        self.producer
            .send(record(seq, 100))
            .await
            .expect("accepted")
    }

    pub async fn send_range(&self, seqs: std::ops::Range<u64>) {
        for seq in seqs {
            drop(self.send(seq).await);
        }
    }

    pub fn dead_seqs(&self) -> HashSet<u64> {
        self.dead
            .lock()
            .unwrap()
            .iter()
            .map(|dl| {
                let s = dl.record.header(SEQ_HEADER).expect("seq header");
                std::str::from_utf8(s).unwrap().parse().unwrap()
            })
            .collect()
    }

    /// Flushes, checks the counters add up, and closes.
    pub async fn finish(&self, sent: u64) -> (robust_producer::Stats, MetricsSnapshot) {
        self.producer
            .flush(Duration::from_secs(90))
            .await
            .expect("everything settles");
        let stats = self.producer.stats();
        assert_eq!(stats.accepted, sent);
        assert_eq!(stats.delivered + stats.dead_lettered, sent, "{stats:?}");
        assert_eq!(stats.dropped, 0);
        stats.check_accounting().expect("the counters add up");
        let returned = self.producer.close(Duration::from_secs(5)).await;
        assert!(returned.is_empty());
        let closed = self.producer.stats();
        closed
            .check_accounting()
            .expect("the counters add up after close");
        (stats, self.metrics.snapshot())
    }
}

/// Record `seq`: a 100-byte-ish envelope with an event id, keyed by one of
/// `KEYS` keys, and the `seq` header the verifier reads.
pub fn record(seq: u64, pad: usize) -> Record {
    let key = key(seq);
    let payload = serde_json::json!({ "seq": seq, "pad": "x".repeat(pad.saturating_sub(60)) });
    EventEnvelope::new("test.event", "mock-tests", payload)
        .into_record(TOPIC, Some(&key))
        .expect("serializable")
        .with_header(SEQ_HEADER, seq.to_string())
}

/// The key of record `seq`.
pub fn key(seq: u64) -> String {
    format!("key-{}", seq % KEYS)
}

pub fn assert_clean(v: &Report, max_duplicates: usize, what: &str) {
    eprintln!("{what}: {v:?}");
    assert!(v.is_clean(), "{what}: {v:?}");
    assert!(
        v.duplicates <= max_duplicates,
        "{what}: {} duplicates, at most {max_duplicates} allowed: {v:?}",
        v.duplicates
    );
}

pub async fn wait_for_state(p: &Producer, want: State, within: Duration) {
    let deadline = Instant::now() + within;
    while p.state() != want {
        assert!(
            Instant::now() < deadline,
            "state {:?}, wanted {want:?}",
            p.state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
