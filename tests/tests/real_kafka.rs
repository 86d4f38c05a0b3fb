//! The real thing: robust-producer over librdkafka against Apache Kafka
//! 4.4.0 in a container, under outages, crashes, hangs, resets, flapping,
//! expiry, poison records and shutdown. After each scenario an independent
//! consumer reads the topic back: every event id the producer accepted and
//! did not hand back is there, per key in send order; duplicates counted.
//!
//! Prerequisites (Docker engine, image) come from
//! `tests/kafka-image/prepare.sh`; see `robust_producer_tests::prereq`.
//! Scenarios run one at a time (each starts its own broker).

#![expect(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failure, output helps"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use robust_producer::{
    Config, DeadLetter, DeliveryError, DeliveryHandle, EventEnvelope, Producer, State, TokioRuntime,
};
use robust_producer_rdkafka::readback::{Report, Sent};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};
use robust_producer_tests::kafka::{BrokerOptions, Kafka, Ports};
use robust_producer_tests::proxy::Mode;
use robust_producer_tests::single::{core_config, first_delivery, read_back, scenario};

struct Service {
    name: &'static str,
    producer: Producer,
    sent: Vec<Sent>,
    handles: Vec<DeliveryHandle>,
    dead: Arc<Mutex<Vec<DeadLetter>>>,
}

impl Drop for Service {
    /// Every scenario ends with the accounting identity checked.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let stats = self.producer.stats();
            if let Err(e) = stats.check_accounting() {
                panic!("{}: {e}: {stats:?}", self.name);
            }
        }
    }
}

impl Service {
    fn start(name: &'static str, bootstrap: &str, extra: &[(&str, &str)], config: Config) -> Self {
        let mut rd = RdkafkaConfig::new(bootstrap)
            .set("socket.timeout.ms", "5000")
            .set("topic.metadata.propagation.max.ms", "5000") // below ack_timeout
            .probe_timeout(Duration::from_secs(4)); // below connect_timeout
        for (k, v) in extra {
            rd = rd.set(*k, *v);
        }
        let transport = RdkafkaTransport::new(rd).unwrap();
        let dead = Arc::new(Mutex::new(Vec::new()));
        let sink = dead.clone();
        let producer = Producer::builder(config)
            .on_dead_letter(move |dl| sink.lock().unwrap().push(dl))
            .start(transport, TokioRuntime::new())
            .expect("the producer config fits the transport");
        Self {
            name,
            producer,
            sent: Vec::new(),
            handles: Vec::new(),
            dead,
        }
    }

    fn new(name: &'static str, bootstrap: &str) -> Self {
        Self::start(name, bootstrap, &[], core_config(name))
    }

    /// Sends one event with a key from `keys` distinct ones.
    async fn send(&mut self, topic: &str, seq: usize, keys: usize, payload_len: usize) {
        let key = format!("{}-{}", self.name, seq % keys);
        let body = serde_json::json!({ "seq": seq, "pad": "x".repeat(payload_len) });
        let envelope = EventEnvelope::new("test.event", self.name, body);
        let id = envelope.event_id.clone();
        let record = envelope.into_record(topic, Some(&key)).unwrap();
        let handle = self.producer.send(record).await.expect("accepted");
        self.sent.push(Sent::keyed(key, id));
        self.handles.push(handle);
    }

    async fn send_many(&mut self, topic: &str, n: usize, keys: usize) {
        for _ in 0..n {
            let seq = self.sent.len();
            self.send(topic, seq, keys, 40).await;
        }
    }

    /// Waits for every handle; returns (delivered, failures).
    async fn settle(&mut self, timeout: Duration) -> (usize, Vec<DeliveryError>) {
        let handles = std::mem::take(&mut self.handles);
        let all = async {
            let mut ok = 0;
            let mut failed = Vec::new();
            for h in handles {
                match h.await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        };
        tokio::time::timeout(timeout, all)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: not settled within {timeout:?}: {:?}",
                    self.name,
                    self.producer.stats()
                )
            })
    }

    /// After the broker became available at `available` (with `before`
    /// records delivered then): waits for the first delivery, every handle,
    /// and an independent read-back; prints the summary and asserts that
    /// nothing failed, went missing or was reordered. Returns the number
    /// delivered.
    async fn recover_and_verify(
        &mut self,
        scenario: &str,
        bootstrap: &str,
        topic: &str,
        available: Instant,
        before: u64,
    ) -> usize {
        let first = first_delivery(&self.producer, before, Duration::from_secs(60)).await;
        let (delivered, failed) = self.settle(Duration::from_secs(120)).await;
        assert!(failed.is_empty(), "{failed:?}");
        let (report, _) = read_back(bootstrap, topic, &self.sent).await;
        summary(
            scenario,
            self.sent.len(),
            delivered,
            &report,
            Some(first - available),
        );
        assert!(report.is_clean(), "{report:?}");
        delivered
    }
}

fn summary(
    name: &str,
    accepted: usize,
    delivered: usize,
    report: &Report,
    recovery: Option<Duration>,
) {
    eprintln!(
        "SCENARIO {name}: accepted {accepted}, delivered {delivered}, present {}, duplicates {}, lost {}, reordered {}, recovery {}",
        report.present,
        report.duplicates,
        report.missing.len(),
        report.reordered.len(),
        recovery.map_or("-".to_owned(), |d| format!("{} ms", d.as_millis())),
    );
}

fn topic(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[test]
fn kafka_not_running_when_the_services_start() {
    scenario(|| async {
        let ports = Ports::reserve().unwrap();
        let proxy = Kafka::proxy_only(ports).await.unwrap();
        let bootstrap = format!("127.0.0.1:{}", ports.proxy);
        let topic = topic("down-at-start");
        let t0 = Instant::now();
        let mut svc = Service::new("patient-service", &bootstrap);
        svc.send_many(&topic, 10_000, 50).await;
        let accepted_in = t0.elapsed();
        let stats = svc.producer.stats();
        assert_eq!((stats.accepted, stats.delivered), (10_000, 0));
        assert!(!svc.producer.state().is_connected());
        assert!(
            accepted_in < Duration::from_secs(5),
            "accepting 10,000 took {accepted_in:?}"
        );

        tokio::time::sleep(Duration::from_secs(15).saturating_sub(t0.elapsed())).await;
        let kafka = Kafka::start_behind(proxy, ports, BrokerOptions::default())
            .await
            .unwrap();
        let available = Instant::now();
        let delivered = svc
            .recover_and_verify("1 down at start", &kafka.bootstrap(), &topic, available, 0)
            .await;
        assert_eq!(delivered, 10_000);
        assert!(svc.producer.close(Duration::from_secs(5)).await.is_empty());
    });
}

#[test]
fn broker_crash_in_the_middle_of_a_stream() {
    scenario(|| async {
        let kafka = Kafka::start(BrokerOptions::default()).await.unwrap();
        let topic = topic("crash");
        let mut svc = Service::new("matching-service", &kafka.bootstrap());
        svc.send_many(&topic, 5_000, 40).await;
        first_delivery(&svc.producer, 0, Duration::from_secs(30)).await;
        kafka.kill().await.unwrap();
        svc.send_many(&topic, 10_000, 40).await; // accepted while the broker is dead
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = svc.producer.stats().delivered;
        kafka.restart().await.unwrap();
        let available = Instant::now();
        svc.send_many(&topic, 5_000, 40).await;
        svc.recover_and_verify(
            "2 broker crash",
            &kafka.bootstrap(),
            &topic,
            available,
            before,
        )
        .await;
        assert!(svc.producer.stats().link_losses >= 1);
    });
}

#[test]
fn hung_broker_behind_a_blackhole_partition() {
    scenario(|| async {
        let kafka = Kafka::start(BrokerOptions::default()).await.unwrap();
        let topic = topic("blackhole");
        let mut svc = Service::new("therapist-service", &kafka.bootstrap());
        svc.send_many(&topic, 2_000, 30).await;
        first_delivery(&svc.producer, 0, Duration::from_secs(30)).await;
        kafka.set_network(Mode::Blackhole);
        let cut = Instant::now();
        // Keep sending through the hang: accepted at memory speed.
        let mut noticed = None;
        while cut.elapsed() < Duration::from_secs(30) {
            svc.send_many(&topic, 100, 30).await;
            if noticed.is_none() && !svc.producer.state().is_connected() {
                noticed = Some(cut.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let noticed = noticed.expect("the hang was never noticed");
        assert!(
            noticed <= Duration::from_secs(15),
            "noticed after {noticed:?}"
        );
        let before = svc.producer.stats().delivered;
        kafka.set_network(Mode::Pass);
        let available = Instant::now();
        eprintln!("hang noticed after {} ms", noticed.as_millis());
        svc.recover_and_verify(
            "3 blackhole 30 s",
            &kafka.bootstrap(),
            &topic,
            available,
            before,
        )
        .await;
    });
}

#[test]
fn connection_resets_lose_nothing() {
    scenario(|| async {
        let kafka = Kafka::start(BrokerOptions::default()).await.unwrap();
        let topic = topic("resets");
        let mut svc = Service::new("communication-service", &kafka.bootstrap());
        let mut recoveries = Vec::new();
        for _ in 0..5 {
            svc.send_many(&topic, 2_000, 20).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            kafka.set_network(Mode::Reset);
            svc.send_many(&topic, 500, 20).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = svc.producer.stats().delivered;
            kafka.set_network(Mode::Pass);
            let healed = Instant::now();
            recoveries.push(
                first_delivery(&svc.producer, before, Duration::from_secs(60)).await - healed,
            );
        }
        let (delivered, failed) = svc.settle(Duration::from_secs(120)).await;
        assert!(failed.is_empty(), "{failed:?}");
        let (report, _) = read_back(&kafka.bootstrap(), &topic, &svc.sent).await;
        summary(
            "4 resets x5",
            svc.sent.len(),
            delivered,
            &report,
            recoveries.iter().max().copied(),
        );
        assert!(report.is_clean(), "{report:?}");
    });
}

#[test]
fn flapping_while_four_services_publish() {
    scenario(|| async {
        let kafka = Kafka::start(BrokerOptions::default()).await.unwrap();
        let topic = topic("flapping");
        let names = [
            "patient-service",
            "therapist-service",
            "matching-service",
            "communication-service",
        ];
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for name in names {
            let bootstrap = kafka.bootstrap();
            let (topic, stop) = (topic.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut svc = Service::new(name, &bootstrap);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    svc.send_many(&topic, 50, 25).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let (delivered, failed) = svc.settle(Duration::from_secs(120)).await;
                assert!(failed.is_empty(), "{name}: {failed:?}");
                (std::mem::take(&mut svc.sent), delivered)
            }));
        }
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            kafka.set_network(Mode::Reset);
            tokio::time::sleep(Duration::from_secs(3)).await;
            kafka.set_network(Mode::Pass);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all_sent = Vec::new();
        let mut delivered = 0;
        for t in tasks {
            let (sent, d) = t.await.unwrap();
            all_sent.extend(sent);
            delivered += d;
        }
        let (report, _) = read_back(&kafka.bootstrap(), &topic, &all_sent).await;
        summary(
            "5 flapping 10x(3 s down/3 s up), 4 services",
            all_sent.len(),
            delivered,
            &report,
            None,
        );
        assert!(report.is_clean(), "{report:?}");
    });
}

#[test]
fn outage_longer_than_librdkafka_message_timeout() {
    scenario(|| async {
        let kafka = Kafka::start(BrokerOptions::default()).await.unwrap();
        let topic = topic("expiry");
        let mut svc = Service::start(
            "patient-service",
            &kafka.bootstrap(),
            &[("message.timeout.ms", "5000")],
            core_config("patient-service"),
        );
        svc.send_many(&topic, 1_000, 10).await;
        first_delivery(&svc.producer, 0, Duration::from_secs(30)).await;
        kafka.stop().await.unwrap();
        svc.send_many(&topic, 3_000, 10).await;
        tokio::time::sleep(Duration::from_secs(15)).await; // three message timeouts
        let before = svc.producer.stats().delivered;
        kafka.restart().await.unwrap();
        let available = Instant::now();
        let scenario = "6 outage 15 s > message.timeout.ms 5 s";
        svc.recover_and_verify(scenario, &kafka.bootstrap(), &topic, available, before)
            .await;
    });
}

#[test]
fn poison_record_is_dead_lettered_alone_and_the_rest_delivered_in_order() {
    scenario(|| async {
        // The topic's limit (100 000 bytes, from the broker's default) is
        // below the client's message.max.bytes, left at its default: the
        // broker refuses whole produce batches, and the producer must find
        // the one record that is too large on its own.
        let options = BrokerOptions {
            env: vec![("KAFKA_MESSAGE_MAX_BYTES".into(), "100000".into())],
            ..BrokerOptions::default()
        };
        let kafka = Kafka::start(options).await.unwrap();
        let topic = topic("poison");
        // 1 kB events, queued while the broker is out of reach and drained
        // at once when it is back: the poison record travels among them.
        // (Innocent records refused with a whole batch are resent alone:
        // the mock-cluster test `too_large_is_dead_lettered_alone_...`
        // injects exactly that.)
        kafka.set_network(Mode::Reset);
        let mut svc = Service::new("matching-service", &kafka.bootstrap());
        for seq in 0..500 {
            svc.send(&topic, seq, 50, 1_000).await;
        }
        svc.send(&topic, 500, 50, 200_000).await; // over the topic's limit
        let poison = svc.sent.pop().unwrap();
        let poison_handle = svc.handles.pop().unwrap();
        for seq in 501..1_001 {
            svc.send(&topic, seq, 50, 1_000).await;
        }
        kafka.set_network(Mode::Pass);
        let outcome = tokio::time::timeout(Duration::from_secs(120), poison_handle)
            .await
            .unwrap();
        let Err(DeliveryError::DeadLettered { reason }) = outcome else {
            panic!("poison record: {outcome:?}");
        };
        let (delivered, failed) = svc.settle(Duration::from_secs(120)).await;
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(delivered, 1_000, "every batch-mate delivered");
        let dead = svc.dead.lock().unwrap().clone();
        assert_eq!(dead.len(), 1, "{dead:?}");
        let (report, _) = read_back(&kafka.bootstrap(), &topic, &svc.sent).await;
        eprintln!("poison record reason: {reason}; {:?}", svc.producer.stats());
        summary("7 poison record", 1_001, delivered, &report, None);
        assert!(reason.to_lowercase().contains("too large"), "{reason}");
        assert!(reason.contains("refused alone"), "{reason}");
        assert!(report.is_clean(), "{report:?}");
        let _ = poison;
    });
}

#[test]
fn graceful_shutdown_during_an_outage_hands_back_the_rest() {
    scenario(|| async {
        let kafka = Kafka::start(BrokerOptions::default()).await.unwrap();
        let topic = topic("shutdown");
        let mut svc = Service::new("communication-service", &kafka.bootstrap());
        svc.send_many(&topic, 1_000, 10).await;
        let (delivered_before, failed) = svc.settle(Duration::from_secs(60)).await;
        assert!(failed.is_empty() && delivered_before == 1_000);
        let sent_before = svc.sent.len();
        kafka.set_network(Mode::Reset);
        svc.send_many(&topic, 2_000, 10).await;
        let started = Instant::now();
        let returned = svc.producer.close(Duration::from_secs(3)).await;
        let took = started.elapsed();
        // The deadline is 3 s; the rest is the transport's teardown, with
        // room for a loaded machine: `close` must end, not race a clock.
        assert!(took < Duration::from_secs(15), "close took {took:?}");
        let (_, outcomes) = svc.settle(Duration::from_secs(10)).await;
        assert_eq!(svc.producer.state(), State::Closed);
        let stats = svc.producer.stats();
        assert_eq!(
            stats.accepted,
            stats.delivered + stats.returned,
            "{stats:?}"
        );
        assert_eq!(returned.len() as u64, stats.returned);
        assert_eq!(outcomes.len(), returned.len());
        assert!(outcomes.iter().all(|e| *e == DeliveryError::Returned));
        // Handed back in send order, and exactly the undelivered tail.
        let returned_ids: Vec<String> = returned
            .iter()
            .map(|r| String::from_utf8(r.header("event_id").unwrap().to_vec()).unwrap())
            .collect();
        let tail: Vec<String> = svc.sent[svc.sent.len() - returned.len()..]
            .iter()
            .map(|s| s.id.clone())
            .collect();
        assert_eq!(returned_ids, tail);
        kafka.set_network(Mode::Pass);
        let delivered: Vec<Sent> = svc.sent[..svc.sent.len() - returned.len()].to_vec();
        let (report, _) = read_back(&kafka.bootstrap(), &topic, &delivered).await;
        summary(
            "8 close(3 s) during an outage",
            svc.sent.len(),
            delivered.len(),
            &report,
            None,
        );
        eprintln!(
            "close returned {} records in {} ms ({} sent before the outage)",
            returned.len(),
            took.as_millis(),
            sent_before
        );
        assert!(report.is_clean(), "{report:?}");
    });
}
