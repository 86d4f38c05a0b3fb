//! The main job: four services of a psychotherapy matching platform
//! (patient, therapist, matching, communication) publish events through the
//! robust producer while Kafka is down, comes up, and is cut again
//! mid-stream; then an independent consumer reads every topic back and the
//! demo proves nothing was lost or reordered.
//!
//! ```text
//! cargo run --release -p robust-producer-rdkafka --example demo
//! cargo run --release -p robust-producer-rdkafka --example demo -- --rate 20000 --duration 10
//! cargo run --release -p robust-producer-rdkafka --example demo -- --bootstrap localhost:9092
//! ```
//!
//! With no `--bootstrap` it runs librdkafka's in-process mock cluster (no
//! Kafka, no Docker) and scripts the outages: the broker is down when the
//! services start, comes up at 20% of the run, is cut at 50% and back at
//! 70%. With `--bootstrap host:port` it runs against a real broker (topics
//! are named after the run so old data does not interfere; stop and start
//! the broker during the run to see recovery).
//!
//! Exit code: 0 when every accepted event was delivered exactly as sent
//! (duplicates, if any, carry the same event id and are reported), 1 when
//! anything was lost or reordered, 2 on a usage or setup error.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use robust_producer::{BackoffConfig, Config, Producer, State, TokioRuntime};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport, TransportMetrics};

/// A simulated service: its name, the event types it publishes, and the kind
/// of entity its events are keyed by.
struct Service {
    name: &'static str,
    events: &'static [&'static str],
    entity: &'static str,
}

const SERVICES: [Service; 4] = [
    Service {
        name: "patient",
        events: &[
            "patient.registered",
            "patient.profile_updated",
            "patient.preferences_changed",
        ],
        entity: "patient",
    },
    Service {
        name: "therapist",
        events: &["therapist.registered", "therapist.availability_changed"],
        entity: "therapist",
    },
    Service {
        name: "matching",
        events: &["match.requested", "match.proposed", "match.accepted"],
        entity: "match",
    },
    Service {
        name: "communication",
        events: &["message.sent", "notification.queued"],
        entity: "conversation",
    },
];

/// Entities per service: events for one entity share a key, so their order
/// is checked.
const ENTITIES: u64 = 500;
/// Partitions per topic on the mock cluster, which keeps at most 5 MiB per
/// partition: room for about 400 000 events per service.
const PARTITIONS: i32 = 32;
/// Events per service the mock cluster can hold for the read-back.
const MOCK_CAPACITY: u64 = 400_000;

struct Args {
    bootstrap: Option<String>,
    rate: u64,
    duration: Duration,
}

fn usage() -> ! {
    eprintln!(
        "usage: demo [--bootstrap host:port] [--rate EVENTS_PER_SERVICE_PER_S] [--duration SECONDS]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        bootstrap: None,
        rate: 5_000,
        duration: Duration::from_secs(8),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--bootstrap" => a.bootstrap = Some(it.next().unwrap_or_else(|| usage())),
            "--rate" => {
                a.rate = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--duration" => {
                let s: f64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage());
                a.duration = Duration::from_secs_f64(s.max(1.0));
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    a
}

/// The broker the demo talks to, and whether it can cut it.
enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    Real(String),
}

impl Broker {
    fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Real(b) => b.clone(),
        }
    }
    fn set_up(&self, up: bool) {
        if let Broker::Mock(m) = self {
            if up {
                m.broker_up(-1).unwrap();
            } else {
                m.broker_down(-1).unwrap();
            }
        }
    }
}

/// One service's producer.
struct Running {
    service: &'static Service,
    topic: String,
    producer: Producer,
    metrics: TransportMetrics,
}

/// A backlog waiting when the broker came up, and how fast it drained.
struct Backlog {
    events: usize,
    up: Instant,
    drained_in: Option<Duration>,
}

/// Everything the monitor saw.
#[derive(Default)]
struct Observed {
    peak_queued: usize,
    backlogs: Vec<Backlog>,
    first_delivery_after_up: Option<Duration>,
    first_delivery_after_cut: Option<Duration>,
    first_delivery_at: Option<Instant>,
}

fn totals(running: &[Running]) -> (u64, u64, usize) {
    running.iter().fold((0, 0, 0), |(a, d, q), r| {
        let s = r.producer.stats();
        (a + s.accepted, d + s.delivered, q + s.queued_records)
    })
}

fn states(running: &[Running]) -> String {
    running
        .iter()
        .map(|r| format!("{}:{}", r.service.name, short(r.producer.state())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn short(s: State) -> &'static str {
    match s {
        State::Disconnected => "down",
        State::Connecting => "conn",
        State::Connected => "up",
        State::Draining => "drain",
        _ => "closed",
    }
}

/// `payload.seq` of an event envelope.
fn seq_of_envelope(m: &BorrowedMessage<'_>) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(m.payload()?).ok()?;
    v.get("payload")?.get("seq")?.as_u64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let broker = match &args.bootstrap {
        Some(b) => Broker::Real(b.clone()),
        None => {
            let mock = MockCluster::new(1).unwrap_or_else(|e| {
                eprintln!("cannot start librdkafka's mock cluster: {e}");
                std::process::exit(2)
            });
            for s in &SERVICES {
                mock.create_topic(&format!("{}-events", s.name), PARTITIONS, 1)
                    .unwrap();
            }
            Broker::Mock(mock)
        }
    };
    let mock = matches!(broker, Broker::Mock(_));
    let per_service = (args.rate / 100).max(1) * (args.duration.as_secs_f64() * 100.0) as u64;
    if mock && per_service > MOCK_CAPACITY {
        eprintln!(
            "{per_service} events per service exceed what the mock cluster keeps for the read-back \
             ({MOCK_CAPACITY}); lower --rate or --duration"
        );
        std::process::exit(2);
    }
    let topic_of = |s: &Service| {
        if mock {
            format!("{}-events", s.name)
        } else {
            format!("demo-{run_id}.{}-events", s.name)
        }
    };
    let terminal = std::io::stdout().is_terminal();
    println!(
        "robust-producer demo: {} services x {} events/s for {:?} against {}",
        SERVICES.len(),
        args.rate,
        args.duration,
        if mock {
            "librdkafka's mock cluster (broker down at start; up at 20%, cut at 50%, up at 70%)"
                .to_owned()
        } else {
            format!("{} (no scripted outages)", broker.bootstrap())
        }
    );

    // The broker is down before anyone starts.
    broker.set_up(false);
    let start = Instant::now();
    let mut running = Vec::new();
    for service in &SERVICES {
        let transport = RdkafkaTransport::new(RdkafkaConfig::new(broker.bootstrap()))
            .unwrap_or_else(|e| {
                eprintln!("cannot create the transport: {e}");
                std::process::exit(2)
            });
        let metrics = transport.metrics();
        let config = Config::builder()
            .service_name(format!("{}-service", service.name))
            .max_queued_records(2_000_000)
            .max_queued_bytes(2 << 30)
            .backoff(BackoffConfig {
                initial: Duration::from_millis(100),
                multiplier: 2.0,
                max: Duration::from_secs(1),
                jitter: 0.5,
            })
            .build()
            .unwrap();
        let producer = Producer::builder(config)
            .on_dead_letter(|dl| eprintln!("dead letter {}: {}", dl.id, dl.reason))
            .start(transport, TokioRuntime::new())
            .expect("the producer config fits the transport");
        running.push(Running {
            service,
            topic: topic_of(service),
            producer,
            metrics,
        });
    }
    println!(
        "[{:>5.1}s] 4 producers started{}: {}",
        start.elapsed().as_secs_f64(),
        if mock { " with the broker down" } else { "" },
        states(&running)
    );

    // Publishers: each service sends `rate` events per second.
    let per_tick = (args.rate / 100).max(1);
    let ticks = (args.duration.as_secs_f64() * 100.0) as u64;
    let mut publishers = Vec::new();
    for r in &running {
        let producer = r.producer.clone();
        let topic = r.topic.clone();
        let service = r.service;
        publishers.push(tokio::spawn(async move {
            let mut seq = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for _ in 0..ticks {
                tick.tick().await;
                for _ in 0..per_tick {
                    let entity = format!("{}-{}", service.entity, seq % ENTITIES);
                    let event_type = service.events[(seq % service.events.len() as u64) as usize];
                    let payload = serde_json::json!({
                        "seq": seq,
                        "entity": entity,
                        "service": service.name,
                    });
                    match producer
                        .send_event(&topic, event_type, &payload, Some(&entity))
                        .await
                    {
                        Ok(handle) => drop(handle),
                        Err(e) => {
                            eprintln!("{} could not publish: {e}", service.name);
                            return seq;
                        }
                    }
                    seq += 1;
                }
            }
            seq
        }));
    }

    // Progress bar and monitor.
    let expected = per_tick * ticks * SERVICES.len() as u64;
    let bar = if terminal {
        let b = ProgressBar::with_draw_target(Some(expected), ProgressDrawTarget::stdout());
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed:>3} {bar:20.cyan/blue} {pos:>7}/{len} delivered {msg}",
            )
            .unwrap(),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let say = |bar: &ProgressBar, line: String| {
        if terminal {
            bar.println(line);
        } else {
            println!("{line}");
        }
    };
    let mut observed = Observed::default();
    let script: Vec<(f64, bool)> = if mock {
        vec![(0.2, true), (0.5, false), (0.7, true)]
    } else {
        vec![]
    };
    let mut next_step = 0;
    let mut up_at: Option<Instant> = if mock { None } else { Some(start) };
    let mut cut_recovered_at: Option<Instant> = None;
    let mut delivered_at_up = 0;
    let publishing_done = Arc::new(AtomicBool::new(false));
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    let mut publishers_done = false;
    let mut flush_started: Option<Instant> = None;
    loop {
        let t = start.elapsed().as_secs_f64() / args.duration.as_secs_f64();
        if let Some(&(at, up)) = script.get(next_step)
            && t >= at
        {
            broker.set_up(up);
            let (_, delivered, queued) = totals(&running);
            say(
                &bar,
                format!(
                    "[{:>5.1}s] broker {}  (queued {queued}, delivered {delivered})",
                    start.elapsed().as_secs_f64(),
                    if up { "UP" } else { "CUT" }
                ),
            );
            if up {
                observed.backlogs.push(Backlog {
                    events: queued,
                    up: Instant::now(),
                    drained_in: None,
                });
                delivered_at_up = delivered;
                if up_at.is_none() {
                    up_at = Some(Instant::now());
                } else {
                    cut_recovered_at = Some(Instant::now());
                }
            }
            next_step += 1;
        }
        let (accepted, delivered, queued) = totals(&running);
        observed.peak_queued = observed.peak_queued.max(queued);
        // Drained: back to what a few ticks of publishing leave queued.
        let steady = (per_tick * SERVICES.len() as u64 * 5) as usize;
        for b in &mut observed.backlogs {
            if b.drained_in.is_none() && queued <= steady.max(b.events / 50) {
                b.drained_in = Some(b.up.elapsed());
            }
        }
        if delivered > 0 && observed.first_delivery_at.is_none() {
            observed.first_delivery_at = Some(Instant::now());
            if let Some(up) = up_at {
                observed.first_delivery_after_up = Some(up.elapsed());
            }
        }
        if let Some(rec) = cut_recovered_at
            && observed.first_delivery_after_cut.is_none()
            && delivered > delivered_at_up
        {
            observed.first_delivery_after_cut = Some(rec.elapsed());
        }
        if last_draw.elapsed() >= Duration::from_millis(100) {
            last_draw = Instant::now();
            bar.set_position(delivered);
            bar.set_message(format!("queued {queued:>6} | {}", states(&running)));
        }
        if !publishers_done && publishers.iter().all(|p| p.is_finished()) {
            publishers_done = true;
            publishing_done.store(true, Ordering::Relaxed);
            flush_started = Some(Instant::now());
            say(
                &bar,
                format!(
                    "[{:>5.1}s] publishing done: {accepted} events accepted; flushing",
                    start.elapsed().as_secs_f64()
                ),
            );
        }
        if publishers_done && next_step >= script.len() && queued == 0 && delivered >= accepted {
            break;
        }
        if flush_started.is_some_and(|f| f.elapsed() > Duration::from_secs(120)) {
            say(&bar, "flush did not finish within 120 s".to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let finished = Instant::now();
    bar.finish_and_clear();

    let mut sent = Vec::new();
    for p in publishers {
        sent.push(p.await.unwrap_or(0));
    }
    let mut returned = 0;
    let mut stats = Vec::new();
    for r in &running {
        stats.push((r.producer.stats(), r.metrics.snapshot()));
        returned += r.producer.close(Duration::from_secs(10)).await.len();
    }

    // Read every topic back with an independent consumer.
    println!(
        "[{:>5.1}s] reading the topics back with an independent consumer...",
        start.elapsed().as_secs_f64()
    );
    let bootstrap = broker.bootstrap();
    let mut verdict = support::Verdict::default();
    let mut per_service = Vec::new();
    for (r, &n) in running.iter().zip(&sent) {
        let consumed = support::read_topic(
            &bootstrap,
            &r.topic,
            Duration::from_secs(120),
            seq_of_envelope,
        );
        let v = support::verify(n, &HashSet::new(), &consumed);
        per_service.push((r.service.name, n, v.clone()));
        verdict.expected += v.expected;
        verdict.stored += v.stored;
        verdict.lost += v.lost;
        verdict.duplicates += v.duplicates;
        verdict.reordered += v.reordered;
        verdict.unidentified += v.unidentified;
    }

    let accepted: u64 = stats.iter().map(|(s, _)| s.accepted).sum();
    let delivered: u64 = stats.iter().map(|(s, _)| s.delivered).sum();
    let dead: u64 = stats.iter().map(|(s, _)| s.dead_lettered).sum();
    let link_losses: u64 = stats.iter().map(|(s, _)| s.link_losses).sum();
    let reconnects: u64 = stats.iter().map(|(s, _)| s.reconnect_attempts).sum();
    let rebuilt: u64 = stats
        .iter()
        .map(|(_, m)| m.producers_built.saturating_sub(1))
        .sum();
    let throughput = observed
        .first_delivery_at
        .map(|f| delivered as f64 / finished.duration_since(f).as_secs_f64().max(1e-3));
    let ms = |d: Option<Duration>| d.map_or("n/a".to_owned(), |d| format!("{} ms", d.as_millis()));

    println!();
    println!("| service | sent | stored | lost | reordered | duplicates |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, n, v) in &per_service {
        println!(
            "| {name} | {n} | {} | {} | {} | {} |",
            v.stored, v.lost, v.reordered, v.duplicates
        );
    }
    println!();
    println!("| summary | value |");
    println!("|---|---:|");
    println!("| accepted | {accepted} |");
    println!("| delivered (acknowledged, acks=all) | {delivered} |");
    println!(
        "| stored in Kafka (read back, duplicates included) | {} |",
        verdict.stored
    );
    println!("| lost | {} |", verdict.lost);
    println!("| reordered (per key) | {} |", verdict.reordered);
    println!("| duplicates (same event_id) | {} |", verdict.duplicates);
    println!("| without event_id | {} |", verdict.unidentified);
    println!("| dead-lettered | {dead} |");
    println!("| handed back at close | {returned} |");
    println!(
        "| delivery rate, first to last delivery (publishing is paced at --rate) | {} |",
        throughput.map_or("n/a".to_owned(), |t| format!("{t:.0} events/s"))
    );
    println!(
        "| {} -> first delivery | {} |",
        if mock { "broker up" } else { "start" },
        ms(observed.first_delivery_after_up)
    );
    if mock {
        println!(
            "| broker back after the cut -> first delivery | {} |",
            ms(observed.first_delivery_after_cut)
        );
    }
    for (i, b) in observed.backlogs.iter().enumerate() {
        let when = if i == 0 {
            "at first broker-up"
        } else {
            "after the cut"
        };
        match b.drained_in {
            Some(d) => println!(
                "| backlog {when}: {} events, drained in | {} ms ({:.0} events/s) |",
                b.events,
                d.as_millis(),
                b.events as f64 / d.as_secs_f64().max(1e-3)
            ),
            None => println!("| backlog {when}: {} events, drained in | n/a |", b.events),
        }
    }
    println!(
        "| peak queue depth (all services) | {} |",
        observed.peak_queued
    );
    println!(
        "| link losses / connect attempts / producers rebuilt | {link_losses} / {reconnects} / {rebuilt} |"
    );
    println!(
        "| wall time | {:.1} s |",
        finished.duration_since(start).as_secs_f64()
    );
    println!();

    let ok = verdict.lost == 0
        && verdict.reordered == 0
        && verdict.unidentified == 0
        && accepted == delivered
        && returned == 0;
    if ok {
        println!("OK: every accepted event was delivered, in order per key.");
    } else {
        println!("FAILED: events were lost or reordered.");
        std::process::exit(1);
    }
}
