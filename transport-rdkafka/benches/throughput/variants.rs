//! The variants measured against each other, one function each: raw
//! rdkafka `BaseProducer`, rdkafka `FutureProducer`, and the robust producer
//! over the rdkafka transport; the records they send and what a run
//! measures.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer as _,
    ProducerContext,
};
use robust_producer::{Bytes, Config, Producer, Record, TokioRuntime};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};

use crate::args::Args;
use crate::cpu::{process_cpu, thread_cpu};

/// Payload size in bytes.
pub(crate) const PAYLOAD: usize = 100;
/// Distinct keys.
const KEYS: usize = 1024;

/// The Kafka settings every variant shares.
fn kafka_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("partitioner", robust_producer_rdkafka::DEFAULT_PARTITIONER)
        .set("message.timeout.ms", "0");
    c
}

/// The payload and keys every variant sends, shared by its records.
#[derive(Clone)]
pub(crate) struct Data {
    pub(crate) payload: Bytes,
    pub(crate) keys: Vec<Bytes>,
}

impl Data {
    pub(crate) fn new() -> Self {
        Self {
            payload: Bytes::from(vec![b'p'; PAYLOAD]),
            keys: (0..KEYS).map(|k| format!("key-{k:04}").into()).collect(),
        }
    }
    pub(crate) fn key(&self, i: u64) -> &Bytes {
        &self.keys[i as usize % KEYS]
    }
}

/// Record `i`'s event id, the same in every variant.
fn event_id(i: u64) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

/// Record `i`'s `event_id` header, for the raw rdkafka variants.
fn raw_headers(i: u64) -> OwnedHeaders {
    let id = event_id(i);
    OwnedHeaders::new_with_capacity(1).insert(Header {
        key: "event_id",
        value: Some(id.as_bytes()),
    })
}

/// Counts raw BaseProducer's delivery reports.
#[derive(Default)]
struct Counting {
    pub(crate) acked: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// What one run of a variant measured.
pub(crate) struct Run {
    pub(crate) acked: u64,
    pub(crate) elapsed: Duration,
    /// CPU time of the whole process (every thread, the mock broker's
    /// included) during the run.
    pub(crate) cpu: Duration,
    /// CPU microseconds per record of each thread (`--threads`).
    pub(crate) threads: String,
}

impl Run {
    pub(crate) fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64()
    }
    /// CPU microseconds per acknowledged record.
    pub(crate) fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.acked.max(1) as f64
    }
}

/// CPU microseconds per record spent since `before`, summed by thread name
/// (trailing digits dropped: `rdkafka-poll-3` counts as `rdkafka-poll`).
fn per_thread(before: &BTreeMap<String, (String, Duration)>, records: u64) -> String {
    let mut by_name: BTreeMap<String, Duration> = BTreeMap::new();
    for (tid, (name, cpu)) in thread_cpu() {
        let earlier = before.get(&tid).map(|(_, c)| *c).unwrap_or_default();
        let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        *by_name.entry(name.to_owned()).or_default() += cpu.saturating_sub(earlier);
    }
    by_name
        .iter()
        .filter(|(_, cpu)| !cpu.is_zero())
        .map(|(name, cpu)| {
            let us = cpu.as_secs_f64() * 1e6 / records.max(1) as f64;
            format!("{name} {us:.2}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `raw`: BaseProducer, `send` in a loop, `poll` inline.
pub(crate) fn raw_base_producer(bootstrap: &str, topic: &str, n: u64, data: &Data) -> Run {
    let producer: BaseProducer<Counting> = kafka_config(bootstrap)
        .create_with_context(Counting::default())
        .unwrap();
    let ctx = producer.context().clone();
    producer
        .send(BaseRecord::to(topic).key("warm-up").payload("warm-up"))
        .map_err(|(e, _)| e)
        .unwrap();
    while ctx.acked.load(Ordering::Relaxed) == 0 {
        producer.poll(Duration::from_millis(1));
    }
    let n = n + 1; // counting the warm-up record
    let threads = thread_cpu();
    let t0 = Instant::now();
    let c0 = process_cpu();
    for i in 1..n {
        let headers = raw_headers(i);
        let mut record = BaseRecord::to(topic)
            .key(&data.key(i)[..])
            .payload(&data.payload[..])
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("{e}"),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    while ctx.acked.load(Ordering::Relaxed) + ctx.failed.load(Ordering::Relaxed) < n {
        producer.poll(Duration::from_millis(1));
    }
    let elapsed = t0.elapsed();
    assert_eq!(ctx.failed.load(Ordering::Relaxed), 0);
    Run {
        acked: ctx.acked.load(Ordering::Relaxed) - 1,
        elapsed,
        cpu: process_cpu().saturating_sub(c0),
        threads: per_thread(&threads, n - 1),
    }
}

/// `future`: FutureProducer, a window of delivery futures awaited in order.
pub(crate) async fn future_producer(bootstrap: &str, topic: &str, n: u64, data: &Data) -> Run {
    let producer: FutureProducer = kafka_config(bootstrap).create().unwrap();
    let warm_up = FutureRecord::to(topic).key("warm-up").payload("warm-up");
    producer.send(warm_up, Duration::ZERO).await.unwrap();
    let mut window = VecDeque::new();
    let mut acked = 0;
    let mut settle = |r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, _>| {
        if matches!(r, Ok(Ok(_))) {
            acked += 1;
        }
    };
    let threads = thread_cpu();
    let t0 = Instant::now();
    let c0 = process_cpu();
    for i in 0..n {
        let headers = raw_headers(i);
        let mut record = FutureRecord::to(topic)
            .key(&data.key(i)[..])
            .payload(&data.payload[..])
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    window.push_back(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    let oldest = window.pop_front().expect("queue full with nothing pending");
                    settle(oldest.await);
                }
                Err((e, _)) => panic!("{e}"),
            }
        }
    }
    while let Some(f) = window.pop_front() {
        settle(f.await);
    }
    Run {
        acked,
        elapsed: t0.elapsed(),
        cpu: process_cpu().saturating_sub(c0),
        threads: per_thread(&threads, n),
    }
}

/// The core's settings in every robust variant, bounding the queue at
/// `queued` records.
pub(crate) fn robust_config(args: &Args, queued: u64) -> Config {
    Config::builder()
        .max_queued_records(queued as usize)
        .max_queued_bytes(4 << 30)
        .max_in_flight(args.max_in_flight)
        .seed(1)
        .build()
        .unwrap()
}

/// The same record as the raw variants send, built as a service would:
/// topic, payload and key shared, the event id owned.
pub(crate) fn robust_record(topic: &Arc<str>, i: u64, data: &Data) -> Record {
    Record::new(Arc::clone(topic), data.payload.clone())
        .with_key(data.key(i).clone())
        .with_header("event_id", event_id(i))
}

/// Sends between two yields to the executor, as an application with other
/// work does (on a current-thread runtime the driver runs only then).
const YIELD_EVERY: u64 = 256;

/// `ours` and `ours-mt`: `Producer::send(...).await` per record, then
/// `flush`.
pub(crate) async fn robust_producer(
    args: &Args,
    bootstrap: &str,
    topic: &str,
    n: u64,
    data: &Data,
) -> Run {
    let mut config = RdkafkaConfig::new(bootstrap);
    if args.metrics {
        config = config.statistics_interval(Duration::from_secs(1));
    }
    let transport = RdkafkaTransport::new(config).unwrap();
    let producer = Producer::builder(robust_config(args, args.queue))
        .start(transport, TokioRuntime::new())
        .expect("the producer config fits the transport");
    let topic: Arc<str> = Arc::from(topic);
    let warm_up = Record::new(Arc::clone(&topic), "warm-up").with_key("warm-up");
    producer.send(warm_up).await.unwrap().await.unwrap();
    let threads = thread_cpu();
    let t0 = Instant::now();
    let c0 = process_cpu();
    for i in 0..n {
        drop(producer.send(robust_record(&topic, i, data)).await.unwrap());
        if i % YIELD_EVERY == YIELD_EVERY - 1 {
            tokio::task::yield_now().await;
        }
    }
    producer.flush(Duration::from_secs(600)).await.unwrap();
    let run = Run {
        acked: n,
        elapsed: t0.elapsed(),
        cpu: process_cpu().saturating_sub(c0),
        threads: per_thread(&threads, n),
    };
    let stats = producer.stats();
    assert_eq!(stats.delivered, n + 1, "{stats:?}");
    producer.close(Duration::from_secs(5)).await;
    run
}
