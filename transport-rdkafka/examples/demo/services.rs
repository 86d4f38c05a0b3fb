//! The simulated services of a psychotherapy matching platform, their
//! producers over the rdkafka transport, and the publishers that send each
//! service's events at the requested rate.

use std::time::Duration;

use robust_producer::{BackoffConfig, Config, Producer, TokioRuntime};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport, TransportMetrics};
use tokio::task::JoinHandle;

/// A simulated service: its name, the event types it publishes, and the kind
/// of entity its events are keyed by.
pub(crate) struct Service {
    pub(crate) name: &'static str,
    events: &'static [&'static str],
    entity: &'static str,
}

pub(crate) const SERVICES: [Service; 4] = [
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

impl Service {
    /// The key of this service's event `seq`: its entity.
    pub(crate) fn key(&self, seq: u64) -> String {
        format!("{}-{}", self.entity, seq % ENTITIES)
    }
}

/// One service's producer.
pub(crate) struct Running {
    pub(crate) service: &'static Service,
    pub(crate) topic: String,
    pub(crate) producer: Producer,
    pub(crate) metrics: TransportMetrics,
}

/// Starts one producer per service against `bootstrap`, each sending to
/// `topic_of(service)`; exits with 2 if a transport cannot be created.
pub(crate) fn start(bootstrap: &str, topic_of: impl Fn(&Service) -> String) -> Vec<Running> {
    let mut running = Vec::new();
    for service in &SERVICES {
        let transport = RdkafkaTransport::new(RdkafkaConfig::new(bootstrap)).unwrap_or_else(|e| {
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
    running
}

/// Spawns one publisher per service: `per_tick` events every 10 ms for
/// `ticks` ticks. Each returns how many events its service sent.
pub(crate) fn publish(running: &[Running], per_tick: u64, ticks: u64) -> Vec<JoinHandle<u64>> {
    running
        .iter()
        .map(|r| {
            let producer = r.producer.clone();
            let topic = r.topic.clone();
            let service = r.service;
            tokio::spawn(async move {
                let mut seq = 0u64;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                for _ in 0..ticks {
                    tick.tick().await;
                    for _ in 0..per_tick {
                        let entity = service.key(seq);
                        let event_type =
                            service.events[(seq % service.events.len() as u64) as usize];
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
            })
        })
        .collect()
}
