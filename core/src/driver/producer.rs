//! The [`Producer`] handle applications call, and its [`ProducerBuilder`].

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, OverflowPolicy};
use crate::event::{EnqueueError, Event};
use crate::machine::Machine;
use crate::record::Record;
use crate::state::State;
use crate::stats::{Health, Stats};
use crate::transport::Transport;

use super::delivery::{DeadLetter, DeliveryHandle};
use super::envelope::EventEnvelope;
use super::runtime::{BoxFuture, Runtime};
use super::shared::{DeadLetterSink, Shared, register, unlock_and_wake_driver};
use super::task::Driver;

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

    /// Starts the producer: spawns its driver on `runtime` and returns at
    /// once. Never waits for, or fails because of, the broker.
    pub fn start<T, R>(self, transport: T, runtime: R) -> Producer
    where
        T: Transport + 'static,
        R: Runtime,
    {
        let runtime = Arc::new(runtime);
        let (producer, driver) = self.build(transport, runtime.clone());
        runtime.spawn(driver);
        producer
    }

    /// Like [`ProducerBuilder::start`] but hands the driver future back
    /// instead of spawning it: poll it yourself (on a custom executor, or
    /// step by step in a deterministic test).
    pub fn build<T>(self, transport: T, runtime: Arc<dyn Runtime>) -> (Producer, BoxFuture)
    where
        T: Transport + 'static,
    {
        let overflow = self.config.overflow();
        let service_name = self.config.service_name().to_owned();
        let machine = Machine::new(self.config, runtime.now());
        let dead_letters = self.dead_letters.unwrap_or_else(|| {
            Arc::new(|dl: DeadLetter| {
                tracing::error!(id = %dl.id, topic = %dl.record.topic, reason = %dl.reason, "dead letter");
            })
        });
        let shared = Arc::new(Shared::new(machine, runtime, dead_letters));
        let driver = Driver::new(Arc::clone(&shared), transport);
        let producer = Producer {
            handle: Arc::new(Handle {
                shared,
                drop_grace: self.drop_grace,
                overflow,
                service_name,
            }),
        };
        (producer, Box::pin(driver.run()))
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
        if g.stopped || g.machine.state() == State::Closed {
            return;
        }
        g.abandoned = true;
        g.close_deadline = Some(now + self.drop_grace);
        g.machine.shutdown(now + self.drop_grace, now);
        unlock_and_wake_driver(g);
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
        let mut record = Some(record);
        let mut sleep: Option<BoxFuture> = None;
        let deadline = self.now() + timeout;
        poll_fn(|cx| {
            let Some(r) = record.take() else {
                return Poll::Pending; // polled after completion
            };
            let timed_out = sleep
                .as_mut()
                .is_some_and(|s| s.as_mut().poll(cx).is_ready());
            match self.enqueue(r, (!timed_out).then_some(cx)) {
                Err(EnqueueError::QueueFull { record: r, .. }) if !timed_out => {
                    record = Some(r);
                    let s =
                        sleep.get_or_insert_with(|| self.shared().runtime.sleep_until(deadline));
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
    fn enqueue(
        &self,
        record: Record,
        waiter: Option<&mut Context<'_>>,
    ) -> Result<DeliveryHandle, EnqueueError> {
        let now = self.now();
        let mut g = self.shared().lock();
        if g.stopped {
            return Err(EnqueueError::Closed { record });
        }
        match g.machine.enqueue(record, now) {
            Ok(id) => {
                let handle = g.slots.open(id);
                unlock_and_wake_driver(g);
                Ok(handle)
            }
            Err(e) => {
                if let (EnqueueError::QueueFull { .. }, Some(cx)) = (&e, waiter) {
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
        let mut sleep = self.shared().runtime.sleep_until(now + timeout);
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
                g.close_deadline = Some(
                    g.close_deadline
                        .map_or(now + timeout, |d| d.min(now + timeout)),
                );
                g.machine.shutdown(now + timeout, now);
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
                        g.returned.push(record);
                    }
                }
            }
            Poll::Ready(std::mem::take(&mut g.returned))
        })
        .await
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared().lock().machine.state()
    }

    /// A watch on state changes.
    pub fn watch_state(&self) -> StateWatch {
        let seen = self.shared().lock().state.1;
        StateWatch {
            shared: Arc::clone(&self.handle.shared),
            seen,
        }
    }

    /// Gauges and counters, now.
    pub fn stats(&self) -> Stats {
        let now = self.now();
        self.shared().lock().machine.stats(now)
    }

    /// The health verdict with its reasons (rules on
    /// [`HealthConfig`](crate::HealthConfig)).
    pub fn health(&self) -> Health {
        let now = self.now();
        self.shared().lock().machine.health(now)
    }
}

/// Follows a producer's state changes (see [`Producer::watch_state`]).
/// It does not keep the producer open.
pub struct StateWatch {
    shared: Arc<Shared>,
    seen: u64,
}

impl fmt::Debug for StateWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateWatch")
            .field("seen", &self.seen)
            .finish()
    }
}

impl StateWatch {
    /// Waits for the next state change and returns the new state; `None`
    /// once the producer has stopped and no change will come.
    pub async fn changed(&mut self) -> Option<State> {
        poll_fn(|cx| {
            let mut g = self.shared.lock();
            let (state, version) = g.state;
            if version != self.seen {
                self.seen = version;
                return Poll::Ready(Some(state));
            }
            if g.stopped {
                return Poll::Ready(None);
            }
            register(&mut g.state_watchers, cx.waker());
            Poll::Pending
        })
        .await
    }
}
