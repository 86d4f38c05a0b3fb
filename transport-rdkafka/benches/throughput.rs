//! Throughput of the robust producer against raw rdkafka, in one run, on the
//! same librdkafka mock cluster with the same settings: 100-byte payloads,
//! a key and a 36-byte `event_id` header per record, `acks=all`,
//! idempotence on, `linger.ms=5`. Counted: records the broker acknowledged.
//!
//! ```text
//! cargo bench -p robust-producer-rdkafka --bench throughput
//! cargo bench -p robust-producer-rdkafka --bench throughput -- --records 1000000 --backlog 1000000 --rounds 3
//! ```
//!
//! Variants, interleaved over `--rounds` rounds (medians reported):
//! * `raw`: rdkafka `BaseProducer`, `send` in a loop, `poll` inline (every
//!   1024 sends, and when the queue is full), acks counted in the delivery
//!   callback.
//! * `ours`: `Producer::send(...).await` per record over the rdkafka
//!   transport on a current-thread tokio runtime (the application and the
//!   driver share one thread; the sender yields every 256 records), then
//!   `flush`.
//! * `ours-mt`: the same from a task on a multi-thread runtime (2 workers).
//! * `future`: rdkafka `FutureProducer`, `send_result` pipelined, a window of
//!   delivery futures awaited in order.
//!
//! Each is reported as msgs/s (wall clock) and as CPU time of the whole
//! process (all threads, the mock broker's included) per acknowledged
//! record, which other load on the machine disturbs less.
//!
//! Then the backlog, `--backlog-rounds` times per runtime (medians
//! reported; a single drain swung by a factor of 1.5 between runs of the
//! same code): `--backlog` records accepted while
//! every broker is down, then the broker comes up. Reported: the accept
//! rate, broker-up to first acknowledgement (the core's reconnect backoff and
//! the transport's probe), the drain rate from the first to the last
//! acknowledgement as a ratio of raw BaseProducer's steady rate, and the
//! longest wait of a 1 ms timer task on the same executor meanwhile.
//!
//! Against a real broker: `--bootstrap host:port`, and `--container NAME`
//! (its Docker container, stopped and started for the backlog; without it
//! the backlog is skipped). `scripts/bench-real-broker.sh` starts one.
//!
//! Options: `--records N`, `--backlog N`, `--backlog-rounds N`, `--rounds N`, `--partitions N`,
//! `--max-in-flight N` (the core's), `--queue N` (the core's bound on queued
//! records), `--variants raw,ours,ours-mt,future`, `--threads` (CPU per
//! record of each thread, in each round's line).
//!
//! Every variant first sends one record and waits for its acknowledgement,
//! outside the measured time: an idempotent producer cannot send before it
//! has a producer id, and librdkafka retries that request after 500 ms when
//! its first attempt finds no broker connection up yet. Timed from the
//! metadata probe, a round that hit the retry measured about half its true
//! rate (this made earlier figures bimodal, raw and ours alike).

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

#[path = "common/cpu.rs"]
mod cpu;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer as _,
    ProducerContext,
};
use robust_producer::{Bytes, Config, Producer, Record, TokioRuntime};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};

use cpu::{process_cpu, thread_cpu};

const PAYLOAD: usize = 100;
const KEYS: usize = 1024;

#[derive(Clone)]
struct Args {
    records: u64,
    backlog: u64,
    backlog_rounds: usize,
    rounds: usize,
    partitions: i32,
    max_in_flight: usize,
    queue: u64,
    variants: String,
    threads: bool,
    /// A real broker instead of the mock cluster.
    bootstrap: Option<String>,
    /// Its Docker container, stopped and started for the backlog.
    container: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        records: 1_000_000,
        backlog: 1_000_000,
        backlog_rounds: 3,
        rounds: 3,
        partitions: 8,
        max_in_flight: Config::builder().build().unwrap().max_in_flight(),
        queue: Config::builder().build().unwrap().max_queued_records() as u64,
        variants: "raw,ours,ours-mt,future".to_owned(),
        threads: false,
        bootstrap: None,
        container: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<u64>().ok());
        match flag.as_str() {
            "--records" => a.records = value().expect("--records N"),
            "--backlog" => a.backlog = value().expect("--backlog N"),
            "--backlog-rounds" => {
                a.backlog_rounds = value().expect("--backlog-rounds N") as usize;
            }
            "--rounds" => a.rounds = value().expect("--rounds N") as usize,
            "--partitions" => a.partitions = value().expect("--partitions N") as i32,
            "--max-in-flight" => a.max_in_flight = value().expect("--max-in-flight N") as usize,
            "--queue" => a.queue = value().expect("--queue N"),
            "--variants" => a.variants = it.next().expect("--variants raw,ours,future"),
            "--threads" => a.threads = true,
            "--bootstrap" => a.bootstrap = it.next(),
            "--container" => a.container = it.next(),
            _ => {} // `cargo bench` passes --bench
        }
    }
    a
}

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

#[derive(Clone)]
struct Data {
    payload: Bytes,
    keys: Vec<Bytes>,
}

impl Data {
    fn new() -> Self {
        Self {
            payload: Bytes::from(vec![b'p'; PAYLOAD]),
            keys: (0..KEYS).map(|k| format!("key-{k:04}").into()).collect(),
        }
    }
    fn key(&self, i: u64) -> &Bytes {
        &self.keys[i as usize % KEYS]
    }
}

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

#[derive(Default)]
struct Counting {
    acked: AtomicU64,
    failed: AtomicU64,
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

struct Run {
    acked: u64,
    elapsed: Duration,
    /// CPU time of the whole process (every thread, the mock broker's
    /// included) during the run.
    cpu: Duration,
    /// CPU microseconds per record of each thread (`--threads`).
    threads: String,
}

impl Run {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64()
    }
    /// CPU microseconds per acknowledged record.
    fn cpu_us(&self) -> f64 {
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

fn raw_base_producer(bootstrap: &str, topic: &str, n: u64, data: &Data) -> Run {
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

async fn future_producer(bootstrap: &str, topic: &str, n: u64, data: &Data) -> Run {
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

fn robust_config(args: &Args, queued: u64) -> Config {
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
fn robust_record(topic: &Arc<str>, i: u64, data: &Data) -> Record {
    Record::new(Arc::clone(topic), data.payload.clone())
        .with_key(data.key(i).clone())
        .with_header("event_id", event_id(i))
}

/// Sends between two yields to the executor, as an application with other
/// work does (on a current-thread runtime the driver runs only then).
const YIELD_EVERY: u64 = 256;

async fn robust_producer(args: &Args, bootstrap: &str, topic: &str, n: u64, data: &Data) -> Run {
    let transport = RdkafkaTransport::new(RdkafkaConfig::new(bootstrap)).unwrap();
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

struct Backlog {
    accept_rate: f64,
    /// Longest wait of a 1 ms timer task on the same executor during the drain.
    worst_stall: Duration,
    first_delivery: Duration,
    drain: Run,
    total: Duration,
}

async fn robust_backlog(args: &Args, cluster: &Cluster, topic: &str, data: &Data) -> Backlog {
    let n = args.backlog;
    cluster.down();
    let transport = RdkafkaTransport::new(RdkafkaConfig::new(cluster.bootstrap())).unwrap();
    let metrics = transport.metrics();
    let producer = Producer::builder(robust_config(args, n))
        .start(transport, TokioRuntime::new())
        .expect("the producer config fits the transport");
    let topic: Arc<str> = Arc::from(topic);
    let t0 = Instant::now();
    for i in 0..n {
        drop(producer.send(robust_record(&topic, i, data)).await.unwrap());
    }
    let accept_rate = n as f64 / t0.elapsed().as_secs_f64();
    assert_eq!(producer.stats().delivered, 0);
    // How long another task on the same executor waits for its turn while
    // the driver drains.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stall = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut worst = Duration::ZERO;
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1)).await;
                worst = worst.max(last.elapsed());
                last = Instant::now();
            }
            worst
        }
    });
    let up = Instant::now();
    cluster.up();
    // Watched from a plain thread on the transport's own counter of
    // successful delivery reports, so that a busy executor cannot delay the
    // observations.
    let watcher = std::thread::spawn(move || {
        let mut first = None;
        loop {
            let delivered = metrics.snapshot().delivered;
            if delivered > 0 && first.is_none() {
                first = Some((Instant::now(), delivered, process_cpu()));
            }
            if delivered >= n {
                return (first.unwrap(), Instant::now(), process_cpu());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    producer.flush(Duration::from_secs(600)).await.unwrap();
    let ((first_at, first_count, first_cpu), end, end_cpu) = watcher.join().unwrap();
    assert_eq!(producer.stats().delivered, n);
    stop.store(true, Ordering::Relaxed);
    let worst_stall = stall.await.unwrap();
    let drain_cpu = end_cpu.saturating_sub(first_cpu);
    producer.close(Duration::from_secs(5)).await;
    Backlog {
        accept_rate,
        worst_stall,
        first_delivery: first_at - up,
        drain: Run {
            acked: n - first_count,
            elapsed: end - first_at,
            cpu: drain_cpu,
            threads: String::new(),
        },
        total: end - up,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The runs of one variant.
#[derive(Default)]
struct Series {
    rates: Vec<f64>,
    cpu_us: Vec<f64>,
}

impl Series {
    fn push(&mut self, run: &Run) {
        if run.acked > 0 {
            self.rates.push(run.rate());
            self.cpu_us.push(run.cpu_us());
        }
    }
    fn rate(&self) -> f64 {
        median(self.rates.clone())
    }
    fn cpu(&self) -> f64 {
        median(self.cpu_us.clone())
    }
}

/// Where the records go: librdkafka's mock cluster, or a real broker.
enum Cluster {
    Mock(MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
    /// A real broker; its container, if given, is stopped and started for
    /// the backlog.
    Real {
        bootstrap: String,
        container: Option<String>,
    },
}

impl Cluster {
    fn bootstrap(&self) -> String {
        match self {
            Cluster::Mock(m) => m.bootstrap_servers(),
            Cluster::Real { bootstrap, .. } => bootstrap.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Cluster::Mock(_) => "mock cluster 1 broker".to_owned(),
            Cluster::Real { bootstrap, .. } => format!("real broker at {bootstrap}"),
        }
    }

    /// Creates `topic` (a real broker creates it on first use, with its
    /// default partition count, when the admin request fails).
    fn create_topic(&self, rt: &tokio::runtime::Runtime, topic: &str, partitions: i32) {
        match self {
            Cluster::Mock(m) => m.create_topic(topic, partitions, 1).unwrap(),
            Cluster::Real { bootstrap, .. } => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .create()
                    .unwrap();
                let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
                let created = rt.block_on(admin.create_topics([&new], &AdminOptions::new()));
                if let Err(e) = created {
                    println!(
                        "  (topic {topic} not created: {e}; the broker creates it on first use)"
                    );
                }
            }
        }
    }

    fn can_go_down(&self) -> bool {
        matches!(
            self,
            Cluster::Mock(_)
                | Cluster::Real {
                    container: Some(_),
                    ..
                }
        )
    }

    fn down(&self) {
        match self {
            Cluster::Mock(m) => m.broker_down(-1).unwrap(),
            Cluster::Real { container, .. } => docker("stop", container),
        }
    }

    fn up(&self) {
        match self {
            Cluster::Mock(m) => m.broker_up(-1).unwrap(),
            Cluster::Real { container, .. } => docker("start", container),
        }
    }
}

/// `docker <verb> <container>`, which must succeed.
fn docker(verb: &str, container: &Option<String>) {
    let name = container.as_deref().expect("--container NAME");
    let status = std::process::Command::new("docker")
        .args([verb, name])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "docker {verb} {name} failed");
}

fn main() {
    let args = args();
    let cluster = match &args.bootstrap {
        None => Cluster::Mock(MockCluster::new(1).unwrap()),
        Some(b) => Cluster::Real {
            bootstrap: b.clone(),
            container: args.container.clone(),
        },
    };
    let bootstrap = cluster.bootstrap();
    let data = Data::new();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{}, {} partitions; {} records of {PAYLOAD} B per run, {} rounds; \
         acks=all, idempotence, linger.ms=5; core max_in_flight {}",
        cluster.describe(),
        args.partitions,
        args.records,
        args.rounds,
        args.max_in_flight
    );
    let wanted = |v: &str| args.variants.split(',').any(|w| w == v);
    let names = [
        ("raw", "raw rdkafka BaseProducer"),
        ("ours", "robust producer, current-thread tokio"),
        ("ours-mt", "robust producer, multi-thread tokio (2 workers)"),
        ("future", "rdkafka FutureProducer, pipelined"),
    ];
    let mut series: Vec<Series> = names.iter().map(|_| Series::default()).collect();
    for round in 0..args.rounds {
        let topic = |v: &str| {
            let t = format!("bench-{v}-{round}-{}", std::process::id());
            cluster.create_topic(&rt, &t, args.partitions);
            t
        };
        let mut line = format!("round {round}:");
        for (i, (key, _)) in names.iter().enumerate() {
            if !wanted(key) {
                continue;
            }
            let run = match *key {
                "raw" => raw_base_producer(&bootstrap, &topic(key), args.records, &data),
                "ours" => current.block_on(robust_producer(
                    &args,
                    &bootstrap,
                    &topic(key),
                    args.records,
                    &data,
                )),
                "ours-mt" => {
                    let (a, b, t, d) = (args.clone(), bootstrap.clone(), topic(key), data.clone());
                    rt.block_on(async move {
                        tokio::spawn(
                            async move { robust_producer(&a, &b, &t, a.records, &d).await },
                        )
                        .await
                        .unwrap()
                    })
                }
                _ => rt.block_on(future_producer(
                    &bootstrap,
                    &topic(key),
                    args.records,
                    &data,
                )),
            };
            line.push_str(&format!(
                "  {key} {:.0}/s {:.2}us",
                run.rate(),
                run.cpu_us()
            ));
            if args.threads {
                line.push_str(&format!(" ({})", run.threads));
            }
            series[i].push(&run);
        }
        println!("{line}");
    }
    let raw_rate = series[0].rate();
    let raw_cpu = series[0].cpu();
    println!();
    println!(
        "| variant | msgs/s (median) | ratio to raw BaseProducer | CPU us per record (median, whole process) | raw CPU / this CPU |"
    );
    println!("|---|---:|---:|---:|---:|");
    for ((key, name), s) in names.iter().zip(&series) {
        if !wanted(key) || s.rates.is_empty() {
            continue;
        }
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} |",
            s.rate(),
            s.rate() / raw_rate,
            s.cpu(),
            raw_cpu / s.cpu()
        );
    }
    if args.backlog > 0 && !cluster.can_go_down() {
        println!();
        println!("backlog skipped: a real broker needs --container NAME to be stopped and started");
    }
    if args.backlog > 0 && cluster.can_go_down() {
        for (name, runtime) in [("multi-thread", &rt), ("current-thread", &current)] {
            println!();
            println!(
                "backlog of {} records accepted while the broker was down ({name} tokio), {} times:",
                args.backlog, args.backlog_rounds
            );
            let mut drains = Vec::new();
            for round in 0..args.backlog_rounds {
                let topic = format!("bench-backlog-{name}-{round}-{}", std::process::id());
                cluster.create_topic(&rt, &topic, args.partitions);
                let b = runtime.block_on(robust_backlog(&args, &cluster, &topic, &data));
                println!(
                    "  {round}: accepted at {:.0}/s; broker up -> first ack {:.0?}; \
                     drain (first to last ack) {:.0}/s = {:.2} of raw BaseProducer steady, \
                     {:.2} us CPU per record; broker up -> all acked {:.0?} = {:.2} of raw; \
                     longest wait of a 1 ms timer task on the same executor {:.1?}",
                    b.accept_rate,
                    b.first_delivery,
                    b.drain.rate(),
                    b.drain.rate() / raw_rate,
                    b.drain.cpu_us(),
                    b.total,
                    args.backlog as f64 / b.total.as_secs_f64() / raw_rate,
                    b.worst_stall
                );
                drains.push(b.drain.rate());
            }
            let drain = median(drains);
            println!(
                "  drain, median: {drain:.0}/s = {:.2} of raw BaseProducer steady",
                drain / raw_rate
            );
        }
    }
}
