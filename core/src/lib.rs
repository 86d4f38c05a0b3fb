//! # robust-producer
//!
//! The core of a Kafka producer that starts instantly with Kafka down,
//! queues events within clear bounds, reconnects forever with jittered
//! exponential backoff, and delivers everything it accepted, in order per
//! key, once Kafka is back.
//!
//! ## A producer
//!
//! A service builds a [`Config`], starts a [`Producer`] with a transport
//! and a [`Runtime`], and sends. `send` returns a [`DeliveryHandle`] as soon
//! as the record is Accepted; the handle resolves once the broker stored
//! it; [`Producer::close`] hands back what it could not deliver by its
//! deadline. Services use the librdkafka transport of the
//! `robust-producer-rdkafka` crate; this example uses the in-memory one of
//! `robust-producer-mock`, whose broker starts down.
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use robust_producer::{Config, Producer, Record, TokioRuntime};
//! use robust_producer_mock::MockBroker;
//! use std::time::Duration;
//!
//! let broker = MockBroker::new();
//! broker.refuse_until_healed(); // Kafka is down
//!
//! let config = Config::builder().service_name("patient-service").build()?;
//! let producer = Producer::builder(config)
//!     .on_dead_letter(|dead| tracing::error!(id = %dead.id, reason = %dead.reason, "dead letter"))
//!     .start(broker.transport(), TokioRuntime::new())?; // returns at once
//!
//! let record = Record::new("patient-events", r#"{"patient_id":7}"#).with_key("p-7");
//! let delivery = producer.send(record).await?; // Accepted, although Kafka is down
//!
//! broker.heal(); // Kafka is back
//! let ack = delivery.await?; // Delivered: the broker stored it
//! tracing::info!(partition = ?ack.partition, offset = ?ack.offset, "delivered");
//!
//! let undelivered = producer.close(Duration::from_secs(5)).await;
//! assert!(undelivered.is_empty());
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))]
//! # fn main() {}
//! ```
//!
//! [`Producer::send_event`] wraps a serializable payload in a JSON event
//! envelope; [`Producer::stats`] and [`Producer::health`] say what the
//! producer is doing; [`Producer::state`] and [`Producer::watch_state`]
//! give its latest [`State`], and [`Producer::transitions`] every
//! transition in order, none skipped.
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `metrics` | off | Publishes the producer's figures through the [`metrics`](https://docs.rs/metrics) facade (no exporter included): the series are listed in the `metrics` module, and [`Producer::publish_metrics`] refreshes them before a scrape. |
//! | `tokio` | off | [`TokioRuntime`], the [`Runtime`] for tokio. Without it, `use robust_producer::TokioRuntime` fails with "no `TokioRuntime` in the root": enable it (`robust-producer = { version = "0.1", features = ["tokio"] }`) or implement [`Runtime`] for your executor. |
//!
//! With no feature the crate's dependencies contain no async runtime.
//! Transports and the durable spool are crates of their own:
//! `robust-producer-rdkafka` (librdkafka), `robust-producer-mock` (a
//! fault-injecting in-memory transport for tests) and
//! `robust-producer-spool` (records kept on disk across crashes).
//!
//! ## Guarantees
//!
//! | level | meaning |
//! |---|---|
//! | Accepted | `send` returned a handle (`enqueue` an id): the record is in the bounded queue |
//! | Durable | with a [`Spool`]: the record is on disk ([`DeliveryHandle::durable`]) |
//! | Delivered | the broker acknowledged it (with `acks=all` in the rdkafka transport) |
//!
//! * Every accepted record ends exactly one way: Delivered, dead-lettered
//!   with a reason (permanent failure), dropped by an explicit overflow policy
//!   (counted and reported), handed back at shutdown, or, with a spool,
//!   kept Durable on disk for the next start. None vanishes.
//! * Order: records are handed to the transport in id order. After a link
//!   loss or a retriable failure, unacknowledged records go back among the
//!   waiting ones at their place, so nothing newer overtakes them. With a
//!   transport that keeps the contract of [`transport`] (Kafka's idempotent
//!   producer does), records with the same key reach the broker in the order
//!   they were sent; resends after a link loss or a lost acknowledgement may
//!   duplicate records that were never acknowledged, never others.
//! * Bounds: at most `max_queued_records` records and `max_queued_bytes`
//!   bytes are held; at most `max_in_flight` are in flight.
//! * No busy loop: every timer, once handled, is cleared or moved forward;
//!   retries and reconnects wait for a backoff of at least its initial delay.
//!
//! ## Driving the machine yourself
//!
//! The [`Producer`] is a thin driver around [`Machine`], a pure (sans-IO)
//! state machine: it takes inputs with `now` as an argument and yields
//! commands, events and its next deadline; it never reads a clock, sleeps
//! or does I/O. Tests drive it with a fake clock, deterministically; so can
//! an application that wants its own event loop. The driver owns a
//! [`Transport`] (a Kafka client) and a [`Runtime`] (a clock, timers, a
//! spawner) and keeps this contract:
//!
//! ```text
//! loop {
//!     1. feed inputs as they happen:
//!          machine.enqueue(record, now)               application records
//!          machine.enqueue_with(record, now, room)    the same, with one more bound
//!                                                     (a spool's disk space)
//!          machine.enqueue_recovered(record, now)     records a spool recovered, at
//!                                                     start, before any other record
//!          machine.handle_transport(event, now)       transport events
//!          machine.handle_spool_unrecorded(n)         with a spool: settle marks it
//!                                                     has yet to write (they share
//!                                                     the in-flight window)
//!          machine.handle_timeout(now)                when now >= poll_timeout()
//!          machine.flush(now) / machine.shutdown(deadline, now)
//!     2. carry out every command, in order, until poll_command returns None:
//!          Connect          -> transport.connect()
//!          Send{id, record} -> transport.send(id, record),
//!                              on Err: machine.handle_send_error(id, err, now)
//!          Close            -> transport.close(timeout)
//!     3. report every event (poll_event): state changes, deliveries,
//!        dead letters, dropped and returned records
//!     4. sleep until poll_timeout() or the next input, whichever is first
//!        (send_hold(now) names what holds waiting records back, if anything)
//! }
//! ```
//!
//! All time is external input: pass the same clock's `now` everywhere.
//!
//! ### States
//!
//! ```text
//!                      retry timer
//!  ┌──────────────┐ ──────────────────────▶ ┌────────────┐
//!  │ Disconnected │                         │ Connecting │
//!  └──────────────┘ ◀────────────────────── └────────────┘
//!         ▲           failed / timed out      │        │
//!         │           ┌───────────────────────┘        │
//!         │           │ connected,                     │ connected,
//!         │           ▼ nothing queued                 ▼ backlog
//!         │     ┌───────────┐      shutdown      ┌──────────┐
//!         │     │ Connected │ ─────────────────▶ │ Draining │
//!         │     └───────────┘ ◀───────────────── └──────────┘
//!         │           │            drained             │
//!         └───────────┴────────────────────────────────┘
//!                  link lost / hung / fatal
//!
//!  any state ── shutdown: all delivered, or the deadline ──▶ Closed
//! ```
//!
//! [`State::may_become`] encodes these arrows. [`State::Failed`] is off the
//! diagram: only the [`Producer`] reports it, when its driver stopped
//! unexpectedly.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod config;
mod driver;
mod event;
mod headers;
mod histogram;
mod machine;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod record;
mod record_bytes;
pub mod spool;
mod state;
mod stats;
mod time;
pub mod transport;

pub use backoff::Backoff;
pub use config::{
    BackoffConfig, Config, ConfigBuilder, ConfigError, DEFAULT_MAX_RECORD_BYTES, HealthConfig,
    OverflowPolicy,
};
#[cfg(feature = "tokio")]
pub use driver::TokioRuntime;
pub use driver::{
    BoxFuture, DEFAULT_DROP_GRACE, DeadLetter, DeadLetterReason, DeliveryError, DeliveryHandle,
    ENVELOPE_VERSION, EVENT_ID_HEADER, EVENT_TYPE_HEADER, EventEnvelope, FlushError,
    PRODUCER_HEADER, Producer, ProducerBuilder, Runtime, SendEventError, StateWatch, Transition,
    Transitions,
};
pub use event::{Command, EnqueueError, Event};
pub use headers::Headers;
pub use histogram::{DELIVERY_BUCKETS, DurationHistogram};
pub use machine::{BACKPRESSURE_PAUSE, LOST_ACK_FACTOR, Machine};
pub use record::{Bytes, Header, Record, RecordId};
pub use record_bytes::IntoRecordBytes;
pub use spool::{DurableError, Room, SPOOL_CLOSE_GRACE, Spool, SpoolSignal};
pub use state::State;
pub use stats::{AccountingMismatch, Counted, Health, SendHold, SpoolFigures, Stats, Verdict};
pub use time::{FAR_FUTURE, deadline_after};
pub use transport::{Ack, ErrorClass, Transport, TransportError, TransportEvent, TransportLimits};
