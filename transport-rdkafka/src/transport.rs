//! [`RdkafkaTransport`]: the core's [`Transport`] over librdkafka.
//!
//! Sessions: each [`Transport::connect`] starts generation `n + 1`. The
//! current librdkafka producer serves it if it is reusable (not fatal, never
//! purged, nothing outstanding from earlier sessions); otherwise it is
//! retired (purged and destroyed on a background thread) and a new one is
//! built. Either way nothing about an earlier generation is reported after
//! `connect` returns: the event queue drops stale events on push and on pop.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use robust_producer::{
    Record, RecordId, Transport, TransportError, TransportEvent, TransportLimits,
};
use tracing::{debug, warn};

use crate::client::{Client, Shared};
use crate::config::RdkafkaConfig;
use crate::error::Error;
use crate::events::{EventQueue, Tagged};
use crate::metrics::{Counters, TransportMetrics};
use crate::rebuild::RebuildReason;
use crate::statistics::StatisticsStore;
#[cfg(feature = "metrics")]
use crate::telemetry::Exporter;

/// The core's [`Transport`] over a librdkafka producer. See the
/// [crate docs](crate) for how librdkafka's signals are mapped.
///
/// Runtime-agnostic: it starts its own threads (poll, probe, retire) and
/// wakes the driver through a [`Waker`]; it needs no async runtime.
pub struct RdkafkaTransport {
    config: RdkafkaConfig,
    /// The event queue, counters, statistics and metric handles, kept
    /// across the producers built.
    shared: Shared,
    /// Events taken from `events`, not yet returned.
    local: VecDeque<Tagged>,
    /// The current session's generation.
    generation: u64,
    client: Option<Client>,
}

impl std::fmt::Debug for RdkafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdkafkaTransport")
            .field("config", &self.config)
            .field("generation", &self.generation)
            .field(
                "client",
                &self.client.as_ref().map(|_| "librdkafka producer"),
            )
            .finish_non_exhaustive()
    }
}

impl RdkafkaTransport {
    /// Creates the transport and its first librdkafka producer, which
    /// validates every property. Does not contact the cluster: the first
    /// session starts on the core's first `connect`.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] for a setting that would break the delivery
    /// guarantee (`transactional.id`; `acks` other than `all` or
    /// idempotence off without
    /// [`RdkafkaConfig::allow_weaker_delivery`]),
    /// [`Error::InvalidSetting`] for an unusable
    /// [`probe_timeout`](RdkafkaConfig::probe_timeout),
    /// [`Error::InvalidProperty`] for bootstrap servers that are not
    /// `host:port` or when librdkafka rejects a property (secret values are
    /// never included), [`Error::Create`] or [`Error::Thread`] when the
    /// producer or its poll thread cannot be created. See
    /// [`RdkafkaConfig`], "Refused at `RdkafkaTransport::new`".
    pub fn new(config: RdkafkaConfig) -> Result<Self, Error> {
        config.validate()?;
        for (name, value) in config.overridden() {
            warn!(
                property = name,
                value,
                "not passed to librdkafka: it would let librdkafka give up on records by itself \
                 and break per-key order; the core's ack_timeout bounds unacknowledged time"
            );
        }
        if !config.idempotent() {
            warn!(
                "enable.idempotence is off (allow_weaker_delivery): librdkafka's retries may \
                 duplicate or reorder records"
            );
        }
        let counters = Arc::new(Counters::default());
        let shared = Shared {
            events: Arc::new(EventQueue::new(Arc::clone(&counters))),
            counters,
            outage_log: Arc::default(),
            statistics: Arc::new(StatisticsStore::default()),
            #[cfg(feature = "metrics")]
            exporter: Arc::new(Exporter::new(&config)),
        };
        let client = Client::build(&config, &shared)?;
        Ok(Self {
            config,
            shared,
            local: VecDeque::new(),
            generation: 0,
            client: Some(client),
        })
    }

    /// The configuration (secrets redacted in its `Debug`).
    pub fn config(&self) -> &RdkafkaConfig {
        &self.config
    }

    /// A handle on the transport's counters and librdkafka's latest
    /// statistics, usable after the transport was moved into a producer.
    pub fn metrics(&self) -> TransportMetrics {
        TransportMetrics {
            counters: Arc::clone(&self.shared.counters),
            statistics: Arc::clone(&self.shared.statistics),
        }
    }

    /// Counts a rebuild (feature `metrics`) and logs why.
    fn note_rebuild(&self, reason: RebuildReason) {
        debug!(
            reason = reason.as_str(),
            "building a new librdkafka producer"
        );
        #[cfg(feature = "metrics")]
        self.shared.exporter.count_rebuild(reason);
    }

    /// The next event of the current session already taken from the queue.
    #[inline]
    fn pop_local(&mut self) -> Option<TransportEvent> {
        while let Some((generation, event)) = self.local.pop_front() {
            if generation == self.generation {
                return Some(event);
            }
            self.shared
                .counters
                .stale_events
                .fetch_add(1, Ordering::Relaxed);
        }
        None
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<TransportEvent> {
        loop {
            if let Some(event) = self.pop_local() {
                return Poll::Ready(event);
            }
            if self
                .shared
                .events
                .take_or_register(&mut self.local, cx)
                .is_pending()
            {
                return Poll::Pending;
            }
        }
    }
}

#[async_trait]
impl Transport for RdkafkaTransport {
    fn connect(&mut self) {
        self.generation += 1;
        let generation = self.generation;
        self.shared.events.set_generation(generation);
        self.local.clear();
        self.shared
            .counters
            .sessions
            .fetch_add(1, Ordering::Relaxed);
        let rebuild = match &self.client {
            Some(client) => client.rebuild_reason(),
            None => Some(RebuildReason::BuildFailed),
        };
        if let Some(reason) = rebuild {
            self.note_rebuild(reason);
            if let Some(old) = self.client.take() {
                debug!(
                    outstanding = old.outstanding(),
                    "retiring librdkafka producer"
                );
                old.retire();
            }
            match Client::build(&self.config, &self.shared) {
                Ok(client) => self.client = Some(client),
                Err(e) => {
                    self.shared
                        .counters
                        .connect_failed
                        .fetch_add(1, Ordering::Relaxed);
                    self.shared
                        .events
                        .push(generation, TransportEvent::ConnectFailed(e.to_string()));
                    return;
                }
            }
        }
        if let Some(client) = &self.client {
            client.open_session(
                generation,
                self.config.probe_timeout_value(),
                self.config.probe_topic_value(),
            );
        }
    }

    #[inline]
    fn send(&mut self, id: RecordId, record: &Record) -> Result<(), TransportError> {
        match &self.client {
            Some(client) => client.send(id, record),
            None => Err(TransportError::link("no librdkafka producer")),
        }
    }

    #[inline]
    fn try_next_event(&mut self) -> Option<TransportEvent> {
        if let Some(event) = self.pop_local() {
            return Some(event);
        }
        if let Some(client) = &self.client {
            client.poll_inline();
        }
        self.shared.events.take_all(&mut self.local);
        self.pop_local()
    }

    async fn next_event(&mut self) -> TransportEvent {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    fn idle(&mut self) {
        if let Some(client) = &self.client {
            client.hand_over();
        }
    }

    /// `max_wire_bytes`: librdkafka's `message.max.bytes` (its default,
    /// 1 000 000, when not set), which librdkafka compares with the same
    /// size the core computes (key, value, headers and the record's
    /// framing); `connect_probe`: the
    /// [`probe_timeout`](RdkafkaConfig::probe_timeout), which the core's
    /// `connect_timeout` must exceed; `unknown_topic_after`:
    /// `topic.metadata.propagation.max.ms`, which the core's `ack_timeout`
    /// must exceed.
    fn limits(&self) -> TransportLimits {
        TransportLimits::new()
            .with_max_wire_bytes(self.config.message_max_bytes())
            .with_connect_probe(self.config.probe_timeout_value())
            .with_unknown_topic_after(self.config.unknown_topic_after())
    }

    async fn close(&mut self, timeout: Duration) {
        // Nothing more is reported.
        self.generation += 1;
        self.shared.events.set_generation(self.generation);
        self.local.clear();
        let Some(client) = self.client.take() else {
            return;
        };
        // rdkafka turns a flush timeout into `Instant::now() + timeout`,
        // which panics on overflow (`Duration::MAX`, "wait forever"), and
        // librdkafka counts it in i32 milliseconds anyway.
        let timeout = timeout.min(MAX_CLOSE_FLUSH);
        let done = Arc::new(Done::default());
        // Set when the job ends, even by a panic: `close` never hangs.
        let signal = SetOnDrop(Arc::clone(&done));
        let job = move || {
            let _signal = signal;
            client.destroy(timeout);
        };
        match std::thread::Builder::new()
            .name("rdkafka-close".to_owned())
            .spawn(job)
        {
            Ok(_) => WaitDone(done).await,
            Err(e) => warn!(error = %e, "cannot start the close thread; producer destroyed inline"),
        }
    }
}

impl Drop for RdkafkaTransport {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            client.retire();
        }
    }
}

/// The longest flush on close: librdkafka's limit (`i32::MAX` milliseconds,
/// about 24.8 days).
const MAX_CLOSE_FLUSH: Duration = Duration::from_millis(i32::MAX as u64);

/// Sets its flag when dropped.
struct SetOnDrop(Arc<Done>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// A one-shot completion flag a thread sets and a future waits on.
#[derive(Default)]
struct Done(Mutex<(bool, Option<Waker>)>);

impl Done {
    fn set(&self) {
        let waker = {
            let mut g = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            g.0 = true;
            g.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

struct WaitDone(Arc<Done>);

impl Future for WaitDone {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        if g.0 {
            return Poll::Ready(());
        }
        g.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}
