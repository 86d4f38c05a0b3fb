//! Services under load: each [`Service`] is a producer over the rdkafka
//! transport with default settings that sends a steady stream of keyed
//! events from a background task, like a platform service would, and
//! records what it needs to be audited afterwards: every accepted event id
//! in send order, every dead letter, and when each acknowledgement arrived
//! on which partition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use robust_producer::{
    Config, DeadLetter, EVENT_ID_HEADER, EventEnvelope, Producer, Record, Stats, TokioRuntime,
};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport, TransportMetrics};
use tokio::task::JoinHandle;

use crate::kafka::Error;
use robust_producer_rdkafka::readback::Sent;

/// One acknowledgement as the service saw it.
#[derive(Debug, Clone, Copy)]
pub struct AckSeen {
    /// When the delivery handle resolved.
    pub at: Instant,
    /// The partition the record was stored in.
    pub partition: i32,
}

/// How a service sends.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Events per second.
    pub rate: u32,
    /// Distinct keys (`<service>-<n>`).
    pub keys: usize,
    /// Payload padding, in bytes.
    pub payload: usize,
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self {
            rate: 1_000,
            keys: 1_000,
            payload: 100,
        }
    }
}

#[derive(Default)]
struct ServiceLog {
    sent: Vec<Sent>,
    acks: Vec<AckSeen>,
    dead: Vec<DeadLetter>,
    refused: Vec<String>,
}

type Log = Arc<Mutex<ServiceLog>>;

fn lock(log: &Log) -> std::sync::MutexGuard<'_, ServiceLog> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A producer sending a steady stream from a background task.
pub struct Service {
    /// The service's name (also the key prefix).
    pub name: String,
    producer: Producer,
    metrics: TransportMetrics,
    log: Log,
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Starts a producer with the core's default [`Config`] (its service
    /// name aside) over [`RdkafkaTransport`] with its defaults, and starts
    /// sending `spec` to `topic`.
    pub fn start(name: &str, bootstrap: &str, topic: &str, spec: LoadSpec) -> Result<Self, Error> {
        let config = Config::builder().service_name(name).build()?;
        Self::start_with(name, RdkafkaConfig::new(bootstrap), config, topic, spec)
    }

    /// Like [`Service::start`] with the given configurations.
    pub fn start_with(
        name: &str,
        rdkafka: RdkafkaConfig,
        config: Config,
        topic: &str,
        spec: LoadSpec,
    ) -> Result<Self, Error> {
        let transport = RdkafkaTransport::new(rdkafka)?;
        let metrics = transport.metrics();
        let log: Log = Arc::default();
        let sink = log.clone();
        let producer = Producer::builder(config)
            .on_dead_letter(move |dl| lock(&sink).dead.push(dl))
            .start(transport, TokioRuntime::new())?;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(send_loop(
            name.to_owned(),
            producer.clone(),
            topic.to_owned(),
            spec,
            log.clone(),
            stop.clone(),
        ));
        Ok(Self {
            name: name.to_owned(),
            producer,
            metrics,
            log,
            stop,
            task: Some(task),
        })
    }

    /// The producer.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// The producer's stats.
    pub fn stats(&self) -> Stats {
        self.producer.stats()
    }

    /// Events accepted so far.
    pub fn accepted(&self) -> usize {
        lock(&self.log).sent.len()
    }

    /// Acknowledgements seen so far on `partitions`.
    pub fn acks_on(&self, partitions: &[i32]) -> usize {
        lock(&self.log)
            .acks
            .iter()
            .filter(|a| partitions.contains(&a.partition))
            .count()
    }

    /// Stops sending (the producer keeps delivering).
    pub async fn stop_sending(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops sending, flushes within `timeout`, closes, and hands back what
    /// the service recorded, with the records the close returned.
    pub async fn finish(mut self, timeout: Duration) -> Finished {
        self.stop_sending().await;
        let flushed = self
            .producer
            .flush(timeout)
            .await
            .map_err(|e| e.to_string());
        let returned = self.producer.close(Duration::from_secs(5)).await;
        // Let the last acknowledgement tasks record their time.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stats = self.producer.stats();
        let rebuilds = self.metrics.snapshot().producers_built.saturating_sub(1);
        let log = std::mem::take(&mut *lock(&self.log));
        Finished {
            name: std::mem::take(&mut self.name),
            stats,
            rebuilds,
            flushed,
            sent: log.sent,
            acks: log.acks,
            dead: log.dead,
            refused: log.refused,
            returned,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a service recorded, once it finished.
#[derive(Debug)]
pub struct Finished {
    /// The service's name.
    pub name: String,
    /// The producer's final stats.
    pub stats: Stats,
    /// librdkafka clients built after the first (a rebuild follows a
    /// session given up with records outstanding, or a fatal error).
    pub rebuilds: u64,
    /// The flush's outcome.
    pub flushed: Result<(), String>,
    /// Accepted events, in send order.
    pub sent: Vec<Sent>,
    /// Acknowledgements as they arrived.
    pub acks: Vec<AckSeen>,
    /// Dead letters.
    pub dead: Vec<DeadLetter>,
    /// Sends refused by the producer (should be none).
    pub refused: Vec<String>,
    /// Records handed back by `close`.
    pub returned: Vec<Record>,
}

async fn send_loop(
    name: String,
    producer: Producer,
    topic: String,
    spec: LoadSpec,
    log: Log,
    stop: Arc<AtomicBool>,
) {
    const TICK: Duration = Duration::from_millis(10);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut seq = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        // Catch up after a late tick: the rate holds on average.
        let due = (started.elapsed().as_secs_f64() * f64::from(spec.rate)) as usize;
        while seq < due {
            let key = format!("{name}-{}", seq % spec.keys.max(1));
            let body = serde_json::json!({ "seq": seq, "pad": "x".repeat(spec.payload) });
            let envelope = EventEnvelope::new("load.event", &name, body);
            let event_id = envelope.event_id.clone();
            seq += 1;
            let record = match envelope.into_record(&topic, Some(&key)) {
                Ok(r) => r,
                Err(e) => {
                    lock(&log).refused.push(e.to_string());
                    continue;
                }
            };
            match producer.send(record).await {
                Ok(handle) => {
                    lock(&log).sent.push(Sent::keyed(key, event_id));
                    let acks = log.clone();
                    tokio::spawn(async move {
                        if let Ok(ack) = handle.await
                            && let Some(partition) = ack.partition
                        {
                            lock(&acks).acks.push(AckSeen {
                                at: Instant::now(),
                                partition,
                            });
                        }
                    });
                }
                Err(e) => lock(&log).refused.push(e.to_string()),
            }
        }
    }
}

/// The event id header of a record, if any.
pub fn event_id(record: &Record) -> Option<String> {
    record
        .header(EVENT_ID_HEADER)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
