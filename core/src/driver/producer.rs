//! The [`Producer`] handle applications call, and its [`ProducerBuilder`].

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, ConfigError, OverflowPolicy};
use crate::event::{EnqueueError, Event};
use crate::machine::Machine;
use crate::record::Record;
use crate::spool::Spool;
use crate::state::State;
use crate::stats::{Health, Stats};
use crate::time::deadline_after;
use crate::transport::Transport;

use super::delivery::{DeliveryHandle, Durability};
use super::envelope::EventEnvelope;
use super::outcome::DeadLetter;
use super::runtime::{BoxFuture, Runtime};
use super::shared::{DeadLetterSink, Shared, register, unlock_and_wake_driver};
use super::spooling::Spooling;
use super::supervise::Supervised;
use super::task::Driver;
use super::transitions::{StateWatch, Transitions};

/// How long the driver keeps delivering after the last [`Producer`] handle
/// is dropped without [`Producer::close`], unless set with
/// [`ProducerBuilder::drop_grace`].
pub const DEFAULT_DROP_GRACE: Duration = Duration::from_secs(5);

/// Why [`Producer::send_event`] did not accept an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendEventError {
    /// The payload could not be serialized to JSON.
    #[error("event payload is not serializable to JSON: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The record was refused; it is inside.
    #[error(transparent)]
    Enqueue(#[from] EnqueueError),
}

/// Why [`Producer::flush`] returned before everything was delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The timeout passed; records are still held and still being delivered.
    #[error("flush timed out with {held} records still held")]
    Timeout {
        /// Records held when it timed out.
        held: usize,
    },
    /// The producer stopped; see [`Producer::close`].
    #[error("producer stopped")]
    Stopped,
}

/// Builds and starts a [`Producer`].
#[must_use]
pub struct ProducerBuilder {
    config: Config,
    dead_letters: Option<DeadLetterSink>,
    drop_grace: Duration,
    spool: Option<Arc<dyn Spool>>,
}

impl ProducerBuilder {
    /// Receives every record that leaves the producer undelivered:
    /// permanent failures, overflow drops, and records still held when the
    /// last handle is dropped without `close` past the grace period. It runs
    /// on the driver's task: keep it short (send to a channel, log, count).
    /// Without one, dead letters are logged at `error` level.
    pub fn on_dead_letter(mut self, f: impl Fn(DeadLetter) + Send + Sync + 'static) -> Self {
        self.dead_letters = Some(Arc::new(f));
        self
    }

    /// How long the driver keeps delivering after the last handle is
    /// dropped without [`Producer::close`]. Default [`DEFAULT_DROP_GRACE`].
    pub fn drop_grace(mut self, grace: Duration) -> Self {
        self.drop_grace = grace;
        self
    }

    /// Makes records Durable in `spool` (for example the disk spool of the
    /// `robust-producer-spool` crate). At build, the records an earlier
    /// session left Durable but not delivered are taken from it and sent
    /// first, in their original order, before anything new; they may exceed
    /// the memory bounds until they drain. `send` still returns once a
    /// record is Accepted; [`DeliveryHandle::durable`] tells when it is
    /// Durable. The spool has its own bound on disk, under the same
    /// overflow policy as the memory queue.
    ///
    /// At close (or past the drop grace), records not delivered that are
    /// Durable stay in the spool for the next start and are not handed
    /// back; their handles end with
    /// [`DeliveryError::Spooled`](crate::DeliveryError::Spooled). Records
    /// not Durable by the close deadline (plus
    /// [`SPOOL_CLOSE_GRACE`](crate::SPOOL_CLOSE_GRACE) for the final fsync)
    /// are handed back as without a spool. Nothing is dropped silently.
    pub fn spool(mut self, spool: impl Spool) -> Self {
        self.spool = Some(Arc::new(spool));
        self
    }

    /// Starts the producer: spawns its driver on `runtime` and returns at
    /// once. Never waits for, or fails because of, the broker.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the configuration cannot work with this
    /// transport (see [`Config::with_transport_limits`]); nothing is
    /// started then.
    pub fn start<T, R>(self, transport: T, runtime: R) -> Result<Producer, ConfigError>
    where
        T: Transport + 'static,
        R: Runtime,
    {
        let runtime = Arc::new(runtime);
        let (producer, driver) = self.build(transport, runtime.clone())?;
        runtime.spawn(driver);
        Ok(producer)
    }

    /// Like [`ProducerBuilder::start`] but hands the driver future back
    /// instead of spawning it: poll it yourself (on a custom executor, or
    /// step by step in a deterministic test).
    ///
    /// # Errors
    ///
    /// As [`ProducerBuilder::start`].
    pub fn build<T>(
        self,
        transport: T,
        runtime: Arc<dyn Runtime>,
    ) -> Result<(Producer, BoxFuture), ConfigError>
    where
        T: Transport + 'static,
    {
        let config = self.config.with_transport_limits(transport.limits())?;
        let overflow = config.overflow();
        let service_name = config.service_name().to_owned();
        let now = runtime.now();
        let mut machine = Machine::new(config, now);
        let spool = self
            .spool
            .map(|spool| Spooling::open(spool, &mut machine, now));
        let dead_letters = self.dead_letters.unwrap_or_else(|| {
            Arc::new(|dl: DeadLetter| {
                tracing::error!(id = %dl.id, topic = %dl.record.topic, reason = %dl.reason, "dead letter");
            })
        });
        let shared = Arc::new(Shared::new(machine, runtime, dead_letters, spool));
        let driver = Box::pin(Driver::new(Arc::clone(&shared), transport).run());
        let driver = Supervised::new(Arc::clone(&shared), driver);
        let producer = Producer {
            handle: Arc::new(Handle {
                shared,
                drop_grace: self.drop_grace,
                overflow,
                service_name,
            }),
        };
        Ok((producer, Box::pin(driver)))
    }
}

/// The application's handle on a producer: cheap to clone, `Send + Sync`.
///
/// `send` returns as soon as the record is Accepted, whatever the broker is
/// doing; the [`DeliveryHandle`] it gives tells the record's fate.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    drop_grace: Duration,
    /// Copies of immutable config, read without the lock.
    overflow: OverflowPolicy,
    service_name: String,
}

impl Drop for Handle {
    /// The last handle is gone without `close`: deliver what is held for the
    /// grace period, then dead-letter the rest.
    fn drop(&mut self) {
        let now = self.shared.runtime.now();
        let mut g = self.shared.lock();
        if g.stopped && g.failure.is_some() && g.machine.state() != State::Closed {
            // The driver failed and nobody can `close` any more.
            let dead = g.dead_letter_held(now);
            drop(g);
            for letter in dead {
                self.shared.dead_letter(letter);
            }
            return;
        }
        if g.stopped || g.machine.state() == State::Closed {
            return;
        }
        g.abandoned = true;
        g.machine
            .shutdown(deadline_after(now, self.drop_grace), now);
        unlock_and_wake_driver(g);
    }
}

impl fmt::Debug for ProducerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerBuilder")
            .field("config", &self.config)
            .field("dead_letter_handler", &self.dead_letters.is_some())
            .field("drop_grace", &self.drop_grace)
            .field("spool", &self.spool.is_some())
            .finish()
    }
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// A builder for a producer with `config`.
    pub fn builder(config: Config) -> ProducerBuilder {
        ProducerBuilder {
            config,
            dead_letters: None,
            drop_grace: DEFAULT_DROP_GRACE,
            spool: None,
        }
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    fn now(&self) -> Instant {
        self.shared().runtime.now()
    }

    /// Accepts `record` without waiting.
    ///
    /// # Errors
    ///
    /// [`EnqueueError`], with the record inside, when it is malformed or too
    /// large, when the queue is full and the policy refuses (here
    /// [`OverflowPolicy::Block`] refuses at once, like `Reject`), or when
    /// the producer is closing.
    pub fn try_send(&self, record: Record) -> Result<DeliveryHandle, EnqueueError> {
        self.enqueue(record, None)
    }

    /// Accepts `record`, waiting for room only under
    /// [`OverflowPolicy::Block`]. Never waits for the broker.
    ///
    /// # Errors
    ///
    /// As [`Producer::try_send`]; under `Block`, `QueueFull` comes after the
    /// policy's timeout.
    pub async fn send(&self, record: Record) -> Result<DeliveryHandle, EnqueueError> {
        let timeout = match self.handle.overflow {
            OverflowPolicy::Block { timeout } => timeout,
            _ => return self.try_send(record),
        };
        // Most records find room: they take this path, with no waiter to
        // register, no clock read and one move less.
        let record = match self.enqueue(record, None) {
            Err(e @ (EnqueueError::QueueFull { .. } | EnqueueError::SpoolFull { .. })) => {
                e.into_record()
            }
            other => return other,
        };
        let mut record = Some(record);
        // Started at the first refusal, right above.
        let mut sleep: Option<BoxFuture> = None;
        poll_fn(|cx| {
            let Some(r) = record.take() else {
                return Poll::Pending; // polled after completion
            };
            let timed_out = sleep
                .as_mut()
                .is_some_and(|s| s.as_mut().poll(cx).is_ready());
            match self.enqueue(r, (!timed_out).then_some(cx)) {
                Err(e @ (EnqueueError::QueueFull { .. } | EnqueueError::SpoolFull { .. }))
                    if !timed_out =>
                {
                    record = Some(e.into_record());
                    let s = sleep.get_or_insert_with(|| {
                        self.shared()
                            .runtime
                            .sleep_until(deadline_after(self.now(), timeout))
                    });
                    if s.as_mut().poll(cx).is_ready() {
                        cx.waker().wake_by_ref(); // one last try, then give up
                    }
                    Poll::Pending
                }
                other => Poll::Ready(other),
            }
        })
        .await
    }

    /// Enqueues under the lock; when the queue is full and `waiter` is given,
    /// registers it to be woken when records settle.
    #[inline]
    fn enqueue(
        &self,
        record: Record,
        waiter: Option<&mut Context<'_>>,
    ) -> Result<DeliveryHandle, EnqueueError> {
        let now = self.now();
        let mut g = self.shared().lock();
        if g.stopped {
            return Err(match &g.failure {
                Some(reason) => EnqueueError::Failed {
                    record: Box::new(record),
                    reason: reason.clone(),
                },
                None => EnqueueError::Closed {
                    record: Box::new(record),
                },
            });
        }
        let result = match &self.shared().spool {
            None => g
                .machine
                .enqueue(record, now)
                .map(|id| (id, Durability::NoSpool)),
            Some(spooling) => spooling.enqueue(&mut g.machine, record, now),
        };
        match result {
            Ok((id, durability)) => {
                let ahead = g.machine.held_records().saturating_sub(1);
                let handle = g.slots.open(id, durability, ahead, &self.handle.shared);
                unlock_and_wake_driver(g);
                Ok(handle)
            }
            Err(e) => {
                if let (EnqueueError::QueueFull { .. } | EnqueueError::SpoolFull { .. }, Some(cx)) =
                    (&e, waiter)
                {
                    register(&mut g.progress, cx.waker());
                }
                Err(e)
            }
        }
    }

    /// Wraps `payload` in the event envelope (event id, type, RFC 3339 UTC
    /// timestamp, producer = the configured service name, version) as JSON,
    /// with `event_id`, `event_type` and `producer` also as Kafka headers,
    /// and sends it like [`Producer::send`].
    ///
    /// # Errors
    ///
    /// [`SendEventError::Serialize`] when the payload is not JSON-serializable,
    /// otherwise as [`Producer::send`].
    pub async fn send_event<P: Serialize + ?Sized>(
        &self,
        topic: &str,
        event_type: &str,
        payload: &P,
        key: Option<&str>,
    ) -> Result<DeliveryHandle, SendEventError> {
        let record = EventEnvelope::new(event_type, &self.handle.service_name, payload)
            .into_record(topic, key)?;
        Ok(self.send(record).await?)
    }

    /// Waits until every record accepted before the call has settled
    /// (delivered, dead-lettered or dropped), at most `timeout`. Records
    /// stay queued when it times out; the producer keeps going.
    ///
    /// # Errors
    ///
    /// [`FlushError::Timeout`] with the number still held, or
    /// [`FlushError::Stopped`].
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let now = self.now();
        let target = {
            let mut g = self.shared().lock();
            let target = g.machine.flush(now);
            unlock_and_wake_driver(g);
            target
        };
        let Some(target) = target else {
            return Ok(());
        };
        let mut sleep = self
            .shared()
            .runtime
            .sleep_until(deadline_after(now, timeout));
        poll_fn(|cx| {
            let mut g = self.shared().lock();
            if g.machine.is_settled(target) {
                return Poll::Ready(Ok(()));
            }
            if g.stopped {
                return Poll::Ready(Err(FlushError::Stopped));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(FlushError::Timeout {
                    held: g.machine.held_records(),
                }));
            }
            register(&mut g.progress, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Stops accepting, delivers what it can within `timeout`, closes the
    /// transport, and hands back every record not delivered, in send order.
    /// Those records may have reached the broker if they were in flight.
    /// Later calls return an empty list.
    pub async fn close(&self, timeout: Duration) -> Vec<Record> {
        {
            let now = self.now();
            let mut g = self.shared().lock();
            if !g.stopped {
                g.machine.shutdown(deadline_after(now, timeout), now);
                unlock_and_wake_driver(g);
            }
        }
        poll_fn(|cx| {
            let mut g = self.shared().lock();
            if !g.stopped {
                register(&mut g.progress, cx.waker());
                return Poll::Pending;
            }
            if g.machine.state() != State::Closed {
                // The driver died before closing: hand back what it held.
                let now = self.now();
                g.machine.shutdown(now, now);
                while let Some(event) = g.machine.poll_event() {
                    if let Event::Returned { record, .. } = event {
                        g.returned.push(*record);
                    }
                }
            }
            Poll::Ready(std::mem::take(&mut g.returned))
        })
        .await
    }

    /// The current state ([`State::Failed`] if the driver stopped
    /// unexpectedly).
    pub fn state(&self) -> State {
        self.shared().lock().public_state()
    }

    /// A watch on the latest state: each read gives the state now, and
    /// may skip states that came and went between two reads. For every
    /// transition in order, use [`Producer::transitions`].
    pub fn watch_state(&self) -> StateWatch {
        StateWatch::new(Arc::clone(&self.handle.shared))
    }

    /// Every state transition from now on, in order, none skipped (a
    /// transition log, an audit trail). Transitions wait until read.
    pub fn transitions(&self) -> Transitions {
        Transitions::new(Arc::clone(&self.handle.shared))
    }

    /// Gauges and counters, now. After a failure, `state` is
    /// [`State::Failed`] and `last_error` says why.
    pub fn stats(&self) -> Stats {
        let now = self.now();
        let shared = self.shared();
        shared.lock().stats(now, shared.spool.as_ref())
    }

    /// Copies the producer's [`Stats`] and [`Health`] to its metrics now:
    /// call it before rendering a scrape, so that the scrape is exact. The
    /// driver also refreshes them on every state change, and every
    /// [`REFRESH`](crate::metrics::REFRESH) while records are held or the
    /// producer is not connected. See [`crate::metrics`].
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn publish_metrics(&self) {
        let now = self.now();
        let shared = self.shared();
        shared.publish_metrics(&shared.lock(), now);
    }

    /// The health verdict with its reasons (rules on
    /// [`HealthConfig`](crate::HealthConfig); `Unhealthy` after a failure).
    pub fn health(&self) -> Health {
        let stats = self.stats();
        let g = self.shared().lock();
        Health::assess(&stats, g.machine.config().health())
    }
}
