//! CPU when quiet: what a producer costs a service that sends little, or
//! waits for Kafka, measured as CPU seconds per wall second of the whole
//! process (a fraction of one core), ours against raw rdkafka in the same
//! run.
//!
//! ```text
//! cargo bench -p robust-producer-rdkafka --bench quiet_cpu
//! cargo bench -p robust-producer-rdkafka --bench quiet_cpu -- --seconds 20 --bootstrap 127.0.0.1:9092
//! ```
//!
//! Variants, each with 1 and then 4 producers in the process:
//! * `raw`: rdkafka `BaseProducer` per producer, with a thread per producer
//!   calling `poll(100 ms)` in a loop (serving delivery reports), and
//!   `send` from the application's thread;
//! * `ours`: `Producer` over the rdkafka transport, on a current-thread
//!   tokio runtime.
//!
//! Modes: `idle` (connected, nothing sent), `10/s` and `1000/s` per
//! producer (100-byte records), `down` (nothing listens at the bootstrap
//! address from the start; 10 records/s are sent), and `outage` (the
//! brokers of the mock cluster go down after the producers connected and
//! sent, with records in flight; 10 records/s are sent meanwhile). Each is
//! measured over `--seconds` (default 10) after a second of warm-up.
//!
//! Against librdkafka's in-process mock cluster (the default) the process
//! also runs the mock brokers: the `cluster` line measures the cluster alone,
//! idle, and each figure is also given less that baseline. With
//! `--bootstrap` the broker is elsewhere (a real one); `outage` then needs
//! the mock cluster and is skipped. Also reported: the CPU of the transport's
//! `rdkafka-poll` threads alone.

#![expect(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark: it prints its figures, and any failure ends it"
)]

#[path = "common/cpu.rs"]
mod cpu;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use robust_producer::{Config, Producer, Record, TokioRuntime};
use robust_producer_rdkafka::{DEFAULT_PARTITIONER, RdkafkaConfig, RdkafkaTransport};

use cpu::{process_cpu, thread_cpu};

const TOPIC: &str = "quiet";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Idle,
    Rate(u32),
    Down,
    Outage,
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Idle => "idle".into(),
            Mode::Rate(r) => format!("{r}/s"),
            Mode::Down => "down".into(),
            Mode::Outage => "outage".into(),
        }
    }

    fn rate(self) -> u32 {
        match self {
            Mode::Idle => 0,
            Mode::Rate(r) => r,
            Mode::Down | Mode::Outage => 10,
        }
    }
}

struct Args {
    seconds: u64,
    bootstrap: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10,
        bootstrap: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds N"),
            "--bootstrap" => a.bootstrap = Some(it.next().expect("--bootstrap host:port")),
            _ => {} // `cargo bench` passes --bench
        }
    }
    a
}

/// An address where nothing listens: a port bound, then released.
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

/// The broker side of one measurement: the mock cluster (kept for the
/// outage), or a given bootstrap string.
struct Broker {
    cluster: Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    bootstrap: String,
}

impl Broker {
    fn new(args: &Args, mode: Mode) -> Option<Self> {
        if mode == Mode::Down {
            return Some(Self {
                cluster: None,
                bootstrap: closed_port(),
            });
        }
        match &args.bootstrap {
            Some(b) if mode != Mode::Outage => Some(Self {
                cluster: None,
                bootstrap: b.clone(),
            }),
            Some(_) => None,
            None => {
                let cluster = MockCluster::new(1).unwrap();
                cluster.create_topic(TOPIC, 4, 1).unwrap();
                let bootstrap = cluster.bootstrap_servers();
                Some(Self {
                    cluster: Some(cluster),
                    bootstrap,
                })
            }
        }
    }

    fn down(&self) {
        if let Some(c) = &self.cluster {
            c.broker_down(-1).unwrap();
        }
    }
}

fn record(i: u64) -> Record {
    Record::new(TOPIC, vec![b'x'; 100]).with_key(format!("k{}", i % 64))
}

/// One measurement: CPU share of the whole process and of the poll
/// threads, over `seconds`.
struct Measured {
    process: f64,
    poll_threads: f64,
}

fn measure(seconds: u64, during: impl FnOnce(Duration)) -> Measured {
    let threads = thread_cpu();
    let c0 = process_cpu();
    let t0 = Instant::now();
    during(Duration::from_secs(seconds));
    let wall = t0.elapsed().as_secs_f64();
    Measured {
        process: process_cpu().saturating_sub(c0).as_secs_f64() / wall,
        poll_threads: threads_named_since(&threads, "rdkafka-poll").as_secs_f64() / wall,
    }
}

fn ours(args: &Args, mode: Mode, producers: usize) -> Option<Measured> {
    let broker = Broker::new(args, mode)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let measured = rt.block_on(async {
        let config = Config::builder()
            .max_queued_records(1_000_000)
            .max_queued_bytes(1 << 30)
            .build()
            .unwrap();
        let all: Vec<Producer> = (0..producers)
            .map(|_| {
                let transport =
                    RdkafkaTransport::new(RdkafkaConfig::new(broker.bootstrap.clone())).unwrap();
                Producer::builder(config.clone())
                    .start(transport, TokioRuntime::new())
                    .unwrap()
            })
            .collect();
        if mode != Mode::Down {
            for p in &all {
                p.send(record(0)).await.unwrap().await.unwrap();
            }
        }
        if mode == Mode::Outage {
            for i in 1..=100 {
                for p in &all {
                    drop(p.send(record(i)).await.unwrap());
                }
            }
            broker.down();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = all
            .iter()
            .map(|p| {
                let (p, stop) = (p.clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let rate = mode.rate();
                    if rate == 0 {
                        return;
                    }
                    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
                    let mut i = 1_000;
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        drop(p.send(record(i)).await);
                        i += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
        let threads = thread_cpu();
        let c0 = process_cpu();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        let wall = t0.elapsed().as_secs_f64();
        let m = Measured {
            process: process_cpu().saturating_sub(c0).as_secs_f64() / wall,
            poll_threads: threads_named_since(&threads, "rdkafka-poll").as_secs_f64() / wall,
        };
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.await.unwrap();
        }
        for p in &all {
            drop(p.close(Duration::ZERO).await);
        }
        m
    });
    drop(rt);
    Some(measured)
}

fn raw(args: &Args, mode: Mode, producers: usize) -> Option<Measured> {
    let broker = Broker::new(args, mode)?;
    let all: Vec<Arc<BaseProducer>> = (0..producers)
        .map(|_| {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", &broker.bootstrap)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "5")
                .set("partitioner", DEFAULT_PARTITIONER)
                .set("message.timeout.ms", "0");
            Arc::new(c.create().unwrap())
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let pollers: Vec<JoinHandle<()>> = all
        .iter()
        .map(|p| {
            let (p, stop) = (Arc::clone(p), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    p.poll(Duration::from_millis(100));
                }
            })
        })
        .collect();
    let send = |p: &BaseProducer, i: u64| {
        let key = format!("k{}", i % 64);
        let payload = [b'x'; 100];
        let _ = p.send(BaseRecord::to(TOPIC).key(&key).payload(&payload[..]));
    };
    if mode != Mode::Down {
        for p in &all {
            send(p, 0);
            p.flush(Duration::from_secs(30)).unwrap();
        }
    }
    if mode == Mode::Outage {
        for i in 1..=100 {
            for p in &all {
                send(p, i);
            }
        }
        broker.down();
    }
    let rate = mode.rate();
    let sending = |wall: Duration| {
        let end = Instant::now() + wall;
        let mut i = 1_000;
        while Instant::now() < end {
            if rate == 0 {
                std::thread::sleep(end.saturating_duration_since(Instant::now()));
                break;
            }
            for p in &all {
                send(p, i);
            }
            i += 1;
            std::thread::sleep(Duration::from_secs(1) / rate);
        }
    };
    sending(Duration::from_secs(1)); // warm-up
    let m = measure(args.seconds, sending);
    stop.store(true, Ordering::Relaxed);
    for p in pollers {
        p.join().unwrap();
    }
    for p in &all {
        p.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    }
    Some(m)
}

/// The mock cluster alone, idle, for the baseline.
fn cluster_alone(args: &Args) -> f64 {
    if args.bootstrap.is_some() {
        return 0.0;
    }
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 4, 1).unwrap();
    let m = measure(args.seconds, std::thread::sleep);
    drop(cluster);
    m.process
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// CPU time spent since `before` by the threads whose name starts with
/// `prefix` (threads started since count from zero).
fn threads_named_since(before: &BTreeMap<String, (String, Duration)>, prefix: &str) -> Duration {
    thread_cpu()
        .into_iter()
        .filter(|(_, (name, _))| name.starts_with(prefix))
        .map(|(tid, (_, cpu))| {
            cpu.saturating_sub(before.get(&tid).map(|(_, c)| *c).unwrap_or_default())
        })
        .sum()
}

fn main() {
    let args = args();
    let modes = [
        Mode::Idle,
        Mode::Rate(10),
        Mode::Rate(1000),
        Mode::Down,
        Mode::Outage,
    ];
    let broker = args
        .bootstrap
        .as_deref()
        .unwrap_or("librdkafka's mock cluster");
    println!(
        "quiet CPU, {} s per measurement, broker: {broker}; % of one core, whole process",
        args.seconds
    );
    let baseline = cluster_alone(&args);
    println!("cluster alone, idle: {}", pct(baseline));
    println!();
    println!(
        "| mode | producers | raw (poll thread at 100 ms) | ours | ours less the cluster, per producer | ours: poll threads | ours / raw |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for mode in modes {
        for producers in [1usize, 4] {
            let (Some(r), Some(o)) = (raw(&args, mode, producers), ours(&args, mode, producers))
            else {
                continue;
            };
            let base = if mode == Mode::Down { 0.0 } else { baseline };
            let per = ((o.process - base) / producers as f64).max(0.0);
            println!(
                "| {} | {producers} | {} | {} | {} | {} | {:.2} |",
                mode.name(),
                pct(r.process),
                pct(o.process),
                pct(per),
                pct(o.poll_threads),
                o.process / r.process.max(1e-9),
            );
        }
    }
}
