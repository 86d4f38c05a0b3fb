//! A steady trickle of events through the producer, so that its metrics
//! move; it can be paused (a test pauses it to read counters at rest).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use robust_producer::{Producer, Record};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// What the trickle sends, and how fast.
#[derive(Debug, Clone)]
pub struct TrickleConfig {
    /// The topic the events go to.
    pub topic: String,
    /// Events per second (at least one).
    pub per_second: u32,
    /// Events are keyed `key-0` to `key-{keys - 1}`, round robin (at least
    /// one key).
    pub keys: u32,
}

impl TrickleConfig {
    /// `per_second` events a second to `topic`, over 16 keys.
    pub fn new(topic: impl Into<String>, per_second: u32) -> Self {
        Self {
            topic: topic.into(),
            per_second,
            keys: 16,
        }
    }
}

/// Whether the trickle sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Running,
    Paused,
    Stopped,
}

/// The running trickle.
#[derive(Debug)]
pub struct Trickle {
    flow: Arc<Mutex<Flow>>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Trickle {
    /// Starts trickling into `producer`. Call it inside a tokio runtime.
    pub fn start(producer: Producer, config: TrickleConfig) -> Self {
        let flow = Arc::new(Mutex::new(Flow::Running));
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(
            producer,
            config,
            Arc::clone(&flow),
            Arc::clone(&accepted),
        ));
        Self {
            flow,
            accepted,
            task,
        }
    }

    /// Pauses: once this returns, no event is sent until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.set(Flow::Paused);
    }

    /// Resumes after a [`pause`](Self::pause).
    pub fn resume(&self) {
        self.set(Flow::Running);
    }

    /// Events the producer accepted from the trickle so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops for good and waits for the task to end.
    pub async fn stop(self) {
        self.set(Flow::Stopped);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the trickle's task ended abnormally");
        }
    }

    fn set(&self, to: Flow) {
        // Sends happen under this lock: once it is taken, none is under way.
        let mut flow = self.flow.lock().unwrap_or_else(PoisonError::into_inner);
        if *flow != Flow::Stopped {
            *flow = to;
        }
    }
}

async fn run(
    producer: Producer,
    config: TrickleConfig,
    flow: Arc<Mutex<Flow>>,
    accepted: Arc<AtomicU64>,
) {
    let period = Duration::from_secs(1) / config.per_second.max(1);
    let keys = u64::from(config.keys.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        // Held while sending: `Trickle::set` waits for a send under way.
        let now = flow.lock().unwrap_or_else(PoisonError::into_inner);
        match *now {
            Flow::Stopped => break,
            Flow::Paused => continue,
            Flow::Running => {}
        }
        let record = Record::new(config.topic.as_str(), format!("{{\"seq\":{seq}}}"))
            .with_key(format!("key-{}", seq % keys));
        match producer.try_send(record) {
            Ok(delivery) => {
                drop(delivery); // its fate shows in the metrics
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "the producer refused a trickled event"),
        }
        seq += 1;
    }
}
