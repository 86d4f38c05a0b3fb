//! The contract between the core and a Kafka client: the [`Transport`] trait,
//! the events a transport reports, and how its errors are classified.
//!
//! # Contract
//!
//! A transport is a thin adapter. It never retries, backs off, expires or
//! reorders records on its own: the core decides all of that. In detail:
//!
//! 1. [`Transport::connect`] starts a new session (abandoning any previous
//!    one) and returns at once; the outcome arrives later as
//!    [`TransportEvent::Connected`] or [`TransportEvent::ConnectFailed`].
//!    After `connect` returns, the transport reports no event about a record
//!    handed off before the call. Such a record may still reach the broker;
//!    the core resends it and the copy is a duplicate that consumers drop by
//!    its event id.
//! 2. [`Transport::send`] only hands a record off; its outcome arrives later
//!    as [`TransportEvent::Delivered`] or [`TransportEvent::Failed`]. An
//!    `Err` from `send` means the record was not taken.
//! 3. Per partition, records reach the broker in hand-off order and the
//!    stored ones form a prefix of what was handed off in a session: once a
//!    record fails (whether or not the failure was reported yet), no record
//!    of its partition handed off after it in the same session is stored
//!    until it has been handed off again. Kafka's idempotent producer with
//!    no message expiry gives exactly this. The core helps: after a
//!    retriable failure it resends nothing until every record in flight has
//!    an outcome, so late failures go back in order first.
//! 4. [`Transport::next_event`] is the only method that waits and it is
//!    cancel-safe: dropping its future loses no event.
//! 5. Errors are classified once, by the transport, into an [`ErrorClass`].
//! 6. The driver calls [`Transport::idle`] each time it goes to sleep
//!    waiting for [`Transport::next_event`]; until it wakes it calls
//!    nothing. A transport that serves its client on the driver's thread
//!    while the driver is busy must then see that the work still gets
//!    done: on its own thread, or by waking the driver (through
//!    `next_event`'s waker) when there is some.

use std::time::Duration;

use async_trait::async_trait;

use crate::record::{Record, RecordId};

/// How the core treats a failure that a transport reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The connection to the cluster is gone (all brokers down, transport
    /// failure): the core reconnects and resends unacknowledged records.
    Link,
    /// This record failed but may succeed later (for example a timeout): the
    /// core retries it in order, after a backoff.
    Retriable,
    /// This record can never be delivered (too large, invalid topic, not
    /// authorized): the core dead-letters it with the reason and moves on.
    Permanent,
    /// The transport's client is unusable (for example an idempotence fatal
    /// error): the core reconnects, and the transport builds a new client on
    /// the next [`Transport::connect`]; unacknowledged records are resent in
    /// order.
    Fatal,
    /// The transport's own buffer is full: the core keeps the record and
    /// pauses sending until [`TransportEvent::Ready`] or a short timer.
    Backpressure,
    /// The record was refused together with the records batched with it,
    /// for a reason that may belong to only one of them (a batch over the
    /// topic's `max.message.bytes`, say). The core resends it alone, with
    /// nothing else in flight; only a refusal of it alone is permanent (it
    /// is then dead-lettered with the reason). Its batch-mates are resent
    /// the same way, so one bad record costs none of the others. A
    /// transport reporting this should also end its session if records
    /// handed off after the batch could otherwise be stored ahead of the
    /// resend; if a later record of the same key is acknowledged all the
    /// same, the record is dead-lettered instead, since a resend would break
    /// the key's order.
    Isolate,
}

/// A classified failure reported by a transport. Built with
/// [`TransportError::new`] or a shorthand such as
/// [`TransportError::retriable`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class:?}: {reason}")]
#[non_exhaustive]
pub struct TransportError {
    /// What the core should do about it.
    pub class: ErrorClass,
    /// Human-readable reason, for logs, stats and dead letters. Must not
    /// contain secrets.
    pub reason: String,
}

impl TransportError {
    /// A failure of the given class.
    pub fn new(class: ErrorClass, reason: impl Into<String>) -> Self {
        Self {
            class,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ErrorClass::Link`].
    pub fn link(reason: impl Into<String>) -> Self {
        Self::new(ErrorClass::Link, reason)
    }

    /// Shorthand for [`ErrorClass::Retriable`].
    pub fn retriable(reason: impl Into<String>) -> Self {
        Self::new(ErrorClass::Retriable, reason)
    }

    /// Shorthand for [`ErrorClass::Permanent`].
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, reason)
    }

    /// Shorthand for [`ErrorClass::Fatal`].
    pub fn fatal(reason: impl Into<String>) -> Self {
        Self::new(ErrorClass::Fatal, reason)
    }

    /// Shorthand for [`ErrorClass::Backpressure`].
    pub fn backpressure(reason: impl Into<String>) -> Self {
        Self::new(ErrorClass::Backpressure, reason)
    }

    /// Shorthand for [`ErrorClass::Isolate`].
    pub fn isolate(reason: impl Into<String>) -> Self {
        Self::new(ErrorClass::Isolate, reason)
    }
}

/// The broker's acknowledgement of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The acknowledged record.
    pub id: RecordId,
    /// Partition the record was stored in, when the transport knows it.
    pub partition: Option<i32>,
    /// Offset the record was stored at, when the transport knows it.
    pub offset: Option<i64>,
}

impl Ack {
    /// An acknowledgement with no partition or offset information.
    pub fn new(id: RecordId) -> Self {
        Self {
            id,
            partition: None,
            offset: None,
        }
    }
}

/// What a transport can carry and how long its own connect step may take,
/// so that the producer refuses at start and at `send` what could never
/// work, instead of failing later. See [`Transport::limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportLimits {
    /// The client's largest record, compared with
    /// [`Record::kafka_wire_size`]: a larger record is refused at `send`
    /// with [`EnqueueError::RecordTooLarge`](crate::EnqueueError::RecordTooLarge).
    pub max_wire_bytes: Option<usize>,
    /// How long the transport's own connect step (a metadata probe, say)
    /// may take: the core's `connect_timeout` must be longer, or every
    /// connect would time out before the transport could report it.
    pub connect_probe: Option<Duration>,
    /// How long the transport waits for a topic to appear in the cluster's
    /// metadata before it fails that topic's records as unknown: the core's
    /// `ack_timeout` must be longer, or the session would be given up as
    /// hung first, again and again, and the records never settle.
    pub unknown_topic_after: Option<Duration>,
}

impl TransportLimits {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`TransportLimits::max_wire_bytes`].
    #[must_use]
    pub fn with_max_wire_bytes(mut self, bytes: usize) -> Self {
        self.max_wire_bytes = Some(bytes);
        self
    }

    /// Sets [`TransportLimits::connect_probe`].
    #[must_use]
    pub fn with_connect_probe(mut self, timeout: Duration) -> Self {
        self.connect_probe = Some(timeout);
        self
    }

    /// Sets [`TransportLimits::unknown_topic_after`].
    #[must_use]
    pub fn with_unknown_topic_after(mut self, wait: Duration) -> Self {
        self.unknown_topic_after = Some(wait);
        self
    }
}

/// Something that happened in the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportEvent {
    /// The session started by the last [`Transport::connect`] is up.
    Connected,
    /// The session started by the last [`Transport::connect`] failed.
    ConnectFailed(String),
    /// The connection to the cluster is gone.
    LinkLost(String),
    /// The client is unusable and must be rebuilt (on the next `connect`).
    Fatal(String),
    /// The broker acknowledged a record (with `acks=all`).
    Delivered(Ack),
    /// A record failed; the class says what to do.
    Failed {
        /// The record that failed.
        id: RecordId,
        /// Why, and what to do about it.
        error: TransportError,
    },
    /// Room is back after an [`ErrorClass::Backpressure`] failure.
    Ready,
    /// The cluster answers but holds records back, and says why (for
    /// example: partitions with fewer in-sync replicas than the topic's
    /// `min.insync.replicas`). The records stay in flight; the reason shows
    /// in [`Stats::stalled`](crate::Stats::stalled) and in the health
    /// verdict until the next acknowledgement or the end of the session.
    /// It counts as a report: a session whose wait is explained is not hung
    /// (see `ack_timeout`). Report it again, at most every few seconds,
    /// while it lasts.
    Stalled(String),
}

/// A Kafka client as the core sees it. See the [module docs](self) for the
/// contract every implementation must keep.
#[async_trait]
pub trait Transport: Send {
    /// Starts a new session, abandoning any previous one. Returns at once;
    /// the outcome is reported by [`Transport::next_event`].
    fn connect(&mut self);

    /// Hands one record off. Returns at once; the outcome is reported by
    /// [`Transport::next_event`].
    ///
    /// # Errors
    ///
    /// A classified failure when the record was not taken.
    fn send(&mut self, id: RecordId, record: &Record) -> Result<(), TransportError>;

    /// Returns an event that is ready now, without waiting. Lets the driver
    /// drain events in batches; the default says nothing is ready.
    fn try_next_event(&mut self) -> Option<TransportEvent> {
        None
    }

    /// Waits for the next event. Must be cancel-safe.
    async fn next_event(&mut self) -> TransportEvent;

    /// The driver has nothing to do and is about to sleep until
    /// [`Transport::next_event`] wakes it (or the application gives it
    /// work): until then it calls nothing. A transport that does work on
    /// the driver's thread while it is busy (for example serving its
    /// client's callbacks inside [`Transport::try_next_event`]) arranges
    /// here for that work to go on: on its own thread, or by waking the
    /// driver when there is some. The default does nothing.
    fn idle(&mut self) {}

    /// Delivers what it can within `timeout`, then releases the client.
    async fn close(&mut self, timeout: Duration);

    /// What this transport can carry; the producer checks its configuration
    /// against it when it starts and every record against it at `send`.
    /// The default states no limits.
    fn limits(&self) -> TransportLimits {
        TransportLimits::default()
    }
}
