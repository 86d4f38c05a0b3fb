//! # robust-producer
//!
//! The core of a Kafka producer that starts instantly with Kafka down,
//! queues events within clear bounds, reconnects forever with jittered
//! exponential backoff, and delivers everything it accepted, in order per
//! key, once Kafka is back.
//!
//! The crate has two layers:
//!
//! * [`Machine`], a pure (sans-IO) state machine. It takes inputs with `now`
//!   as an argument and yields commands, events and its next deadline; it
//!   never reads a clock, sleeps or does I/O. Tests drive it with a fake
//!   clock, deterministically.
//! * A runtime-agnostic driver and the [`Producer`] handle applications use.
//!   The driver owns a [`Transport`] (a Kafka client) and a [`Runtime`] (a
//!   clock and timers) and feeds the machine. A tokio runtime is behind the
//!   `tokio` feature; this crate's normal dependencies contain no async
//!   runtime.
//!
//! ## Calling contract of the machine
//!
//! ```text
//! loop {
//!     1. feed inputs as they happen:
//!          machine.enqueue(record, now)              application records
//!          machine.handle_transport(event, now)      transport events
//!          machine.handle_timeout(now)               when now >= poll_timeout()
//!          machine.flush(now) / machine.shutdown(deadline, now)
//!     2. carry out every command, in order, until poll_command returns None:
//!          Connect          -> transport.connect()
//!          Send{id, record} -> transport.send(id, record),
//!                              on Err: machine.handle_send_error(id, err, now)
//!          Close            -> transport.close(timeout)
//!     3. report every event (poll_event): state changes, deliveries,
//!        dead letters, dropped and returned records
//!     4. sleep until poll_timeout() or the next input, whichever is first
//! }
//! ```
//!
//! All time is external input: pass the same clock's `now` everywhere.
//!
//! ## States
//!
//! ```text
//!  Disconnected ──retry timer──▶ Connecting ──connected, backlog──▶ Draining
//!       ▲  ▲                       │     └──connected, nothing queued──▶ Connected
//!       │  └──failed / timed out───┘                                     │   ▲
//!       └──────── link lost / hung / fatal (from Connected or Draining) ─┘   │
//!                                           Draining ──drained──▶ Connected ─┘ flush
//!  any state ──shutdown: all delivered, or deadline──▶ Closed
//! ```
//!
//! [`State`] draws the full diagram; [`State::may_become`] encodes it.
//!
//! ## Guarantees
//!
//! | level | meaning |
//! |---|---|
//! | Accepted | `enqueue`/`send` returned an id: the record is in the queue |
//! | Delivered | the broker acknowledged it (with `acks=all` in the rdkafka transport) |
//!
//! * Every accepted record ends exactly one way: Delivered, dead-lettered
//!   with a reason (permanent failure), dropped by an explicit overflow policy
//!   (counted and reported), or handed back at shutdown. None vanishes.
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

#![forbid(unsafe_code)]

mod backoff;
mod config;
mod driver;
mod event;
mod headers;
mod machine;
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
    PRODUCER_HEADER, Producer, ProducerBuilder, Runtime, SendEventError, StateWatch,
};
pub use event::{Command, EnqueueError, Event};
pub use headers::Headers;
pub use machine::{BACKPRESSURE_PAUSE, LOST_ACK_FACTOR, Machine};
pub use record::{Bytes, Header, Record, RecordId};
pub use record_bytes::IntoRecordBytes;
pub use spool::{DurableError, Room, SPOOL_CLOSE_GRACE, Spool, SpoolSignal};
pub use state::State;
pub use stats::{Health, SendHold, Stats, Verdict};
pub use time::{FAR_FUTURE, deadline_after};
pub use transport::{Ack, ErrorClass, Transport, TransportError, TransportEvent, TransportLimits};
