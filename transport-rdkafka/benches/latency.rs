//! Accept-to-delivered latency at fixed rates, ours against raw rdkafka in
//! the same run, on the same broker with the same settings (100-byte
//! payloads, `acks=all`, idempotence on, `linger.ms=5`).
//!
//! ```text
//! cargo bench -p robust-producer-rdkafka --bench latency
//! cargo bench -p robust-producer-rdkafka --bench latency -- --seconds 10 --rates 1000,10000 --quiet-seconds 60 --bootstrap 127.0.0.1:9092
//! ```
//!
//! * `raw`: rdkafka `BaseProducer`, a thread calling `poll(100 ms)` in a
//!   loop; latency from just before `send` to its delivery callback.
//! * `ours`: `Producer::send` over the rdkafka transport on a current-thread
//!   tokio runtime; latency from just before `send` to the moment a task
//!   awaiting the record's `DeliveryHandle` sees it delivered (what an
//!   application sees).
//!
//! Records are sent paced, in 1 ms steps, at each of `--rates` (default
//! 1000, 10000 and 100000 per second) for `--seconds` (default 5); reported:
//! p50, p99, p99.9 and max. Then, unless `--quiet-seconds 0`, the latency
//! of one record sent after the producer stayed quiet that long (default 60
//! s; connection and metadata warm).

#![expect(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark: it prints its figures, and any failure ends it"
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, ProducerContext};
use robust_producer::{Config, Producer, Record, TokioRuntime};
use robust_producer_rdkafka::{DEFAULT_PARTITIONER, RdkafkaConfig, RdkafkaTransport};

const TOPIC: &str = "latency";

struct Args {
    seconds: u64,
    rates: Vec<u64>,
    quiet_seconds: u64,
    bootstrap: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        rates: vec![1_000, 10_000, 100_000],
        quiet_seconds: 60,
        bootstrap: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds N"),
            "--rates" => {
                a.rates = it
                    .next()
                    .expect("--rates 1000,10000")
                    .split(',')
                    .map(|r| r.parse().expect("a rate"))
                    .collect();
            }
            "--quiet-seconds" => {
                a.quiet_seconds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--quiet-seconds N");
            }
            "--bootstrap" => a.bootstrap = Some(it.next().expect("--bootstrap host:port")),
            _ => {} // `cargo bench` passes --bench
        }
    }
    a
}

fn payload() -> Vec<u8> {
    vec![b'x'; 100]
}

fn key(i: u64) -> String {
    format!("k{}", i % 1024)
}

/// Latencies, sorted on demand.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn summary(mut self) -> [Duration; 4] {
        self.0.sort_unstable();
        let at = |q: f64| {
            let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
            self.0.get(i).copied().unwrap_or_default()
        };
        [at(0.5), at(0.99), at(0.999), at(1.0)]
    }
}

/// How many records should have been sent `elapsed` into a run at `rate`.
fn due(rate: u64, elapsed: Duration) -> u64 {
    (rate as f64 * elapsed.as_secs_f64()) as u64
}

struct Timed(Arc<Mutex<Samples>>);

impl ClientContext for Timed {}

impl ProducerContext for Timed {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        if result.is_ok() {
            let latency = sent.elapsed();
            self.0.lock().unwrap().0.push(latency);
        }
    }
}

struct Raw {
    producer: Arc<BaseProducer<Timed>>,
    samples: Arc<Mutex<Samples>>,
    stop: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl Raw {
    fn new(bootstrap: &str) -> Self {
        let samples = Arc::new(Mutex::new(Samples::default()));
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("partitioner", DEFAULT_PARTITIONER)
            .set("message.timeout.ms", "0");
        let producer: Arc<BaseProducer<Timed>> =
            Arc::new(c.create_with_context(Timed(Arc::clone(&samples))).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (p, stop) = (Arc::clone(&producer), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    p.poll(Duration::from_millis(100));
                }
            })
        };
        let raw = Self {
            producer,
            samples,
            stop,
            poller: Some(poller),
        };
        raw.send(0);
        raw.producer.flush(Duration::from_secs(30)).unwrap();
        raw.take();
        raw
    }

    fn send(&self, i: u64) {
        let (k, p) = (key(i), payload());
        let mut record = BaseRecord::with_opaque_to(TOPIC, Box::new(Instant::now()))
            .key(&k)
            .payload(&p[..]);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    }

    fn take(&self) -> Samples {
        std::mem::take(&mut *self.samples.lock().unwrap())
    }

    fn run(&self, rate: u64, seconds: u64) -> Samples {
        let n = rate * seconds;
        let t0 = Instant::now();
        let mut sent = 0;
        while sent < n {
            let target = due(rate, t0.elapsed()).min(n);
            while sent < target {
                sent += 1;
                self.send(sent);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.producer.flush(Duration::from_secs(60)).unwrap();
        self.take()
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.poller.take() {
            p.join().unwrap();
        }
    }
}

async fn ours_send(producer: &Producer, samples: &Arc<Mutex<Samples>>, i: u64) {
    let t = Instant::now();
    let handle = producer
        .send(Record::new(TOPIC, payload()).with_key(key(i)))
        .await
        .unwrap();
    let samples = Arc::clone(samples);
    tokio::spawn(async move {
        if handle.await.is_ok() {
            let latency = t.elapsed();
            samples.lock().unwrap().0.push(latency);
        }
    });
}

async fn ours_run(producer: &Producer, rate: u64, seconds: u64) -> Samples {
    let samples = Arc::new(Mutex::new(Samples::default()));
    let n = rate * seconds;
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < n {
        let target = due(rate, t0.elapsed()).min(n);
        while sent < target {
            sent += 1;
            ours_send(producer, &samples, sent).await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    producer.flush(Duration::from_secs(60)).await.unwrap();
    // Let the collecting tasks see their handles.
    while samples.lock().unwrap().0.len() < n as usize {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    std::mem::take(&mut *samples.lock().unwrap())
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn main() {
    let args = args();
    let cluster = args.bootstrap.is_none().then(|| {
        let c = MockCluster::new(1).unwrap();
        c.create_topic(TOPIC, 4, 1).unwrap();
        c
    });
    let bootstrap = args
        .bootstrap
        .clone()
        .or_else(|| cluster.as_ref().map(MockCluster::bootstrap_servers))
        .unwrap();
    println!(
        "accept-to-delivered latency, {} s per rate, broker: {}; milliseconds",
        args.seconds,
        args.bootstrap
            .as_deref()
            .unwrap_or("librdkafka's mock cluster")
    );
    println!();
    println!("| rate (records/s) | variant | p50 | p99 | p99.9 | max | ours p99 − raw p99 |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = Raw::new(&bootstrap);
    let producer = rt.block_on(start_ours(&bootstrap));
    for &rate in &args.rates {
        let r = raw.run(rate, args.seconds).summary();
        let o = rt
            .block_on(ours_run(&producer, rate, args.seconds))
            .summary();
        let diff = o[1].as_secs_f64() - r[1].as_secs_f64();
        println!(
            "| {rate} | raw | {} | {} | {} | {} | |",
            ms(r[0]),
            ms(r[1]),
            ms(r[2]),
            ms(r[3])
        );
        println!(
            "| {rate} | ours | {} | {} | {} | {} | {:+.2} |",
            ms(o[0]),
            ms(o[1]),
            ms(o[2]),
            ms(o[3]),
            diff * 1e3
        );
    }
    if args.quiet_seconds > 0 {
        after_quiet(&rt, &raw, &producer, args.quiet_seconds);
    }
    drop(rt.block_on(producer.close(Duration::from_secs(5))));
}

/// The robust producer under test, started and warmed up with one record.
async fn start_ours(bootstrap: &str) -> Producer {
    let config = Config::builder()
        .max_queued_records(1_000_000)
        .max_queued_bytes(1 << 30)
        .build()
        .unwrap();
    let transport = RdkafkaTransport::new(RdkafkaConfig::new(bootstrap)).unwrap();
    let p = Producer::builder(config)
        .start(transport, TokioRuntime::new())
        .unwrap();
    p.send(Record::new(TOPIC, payload()))
        .await
        .unwrap()
        .await
        .unwrap();
    p
}

/// The latency of one record sent after `quiet_seconds` without any, raw
/// and ours.
fn after_quiet(rt: &tokio::runtime::Runtime, raw: &Raw, producer: &Producer, quiet_seconds: u64) {
    std::thread::sleep(Duration::from_secs(quiet_seconds));
    raw.send(1);
    raw.producer.flush(Duration::from_secs(60)).unwrap();
    let r = raw.take().summary()[3];
    let o = rt
        .block_on(async {
            let samples = Arc::new(Mutex::new(Samples::default()));
            ours_send(producer, &samples, 1).await;
            producer.flush(Duration::from_secs(60)).await.unwrap();
            while samples.lock().unwrap().0.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            std::mem::take(&mut *samples.lock().unwrap())
        })
        .summary()[3];
    println!();
    println!(
        "first record after {} s quiet: raw {} ms, ours {} ms",
        quiet_seconds,
        ms(r),
        ms(o)
    );
}
