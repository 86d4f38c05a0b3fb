//! # robust-producer-mock
//!
//! A fault-injecting, in-memory [`Transport`](robust_producer::Transport)
//! for testing code that uses `robust-producer`: put a [`MockBroker`] in
//! your test, give its [`MockTransport`] to the producer, break the
//! "network" with verbs named like a network simulator's (`partition`,
//! `heal`, `refuse`, `reset`, `hold`, `release`, `delay`, `reject`,
//! `lose_acks`, `chaos`), then assert on what the broker stored.
//!
//! * **It keeps the transport contract** of
//!   [`robust_producer::transport`] exactly, so a producer bug shows up as a
//!   failed assertion, never as a mock artefact: no event about a record
//!   handed off before a `connect`; per partition, the stored records are a
//!   prefix of each session's hand-offs (a retriable failure fails the later
//!   records of its partition until it is re-sent, a reset stores at most a
//!   per-partition prefix); `next_event` is cancel-safe.
//! * **It is deterministic.** Every random choice (jitter, reset prefixes,
//!   [`Chaos`]) comes from a seed; time is the producer's runtime clock (for
//!   example tokio's paused clock) or a manual clock moved by
//!   [`MockBroker::advance`]. The same seed and the same calls give the
//!   same log.
//! * **It keeps the evidence.** [`MockBroker::log`] and
//!   [`MockBroker::records`] return what each partition stored, with
//!   offsets, transport, session and record id; [`MockBroker::verify`]
//!   checks that every expected record is there and that per key the first
//!   copies are in send order; [`MockBroker::duplicates`],
//!   [`MockBroker::stored_unacknowledged`] and
//!   [`MockBroker::resent_after_ack`] tell which duplicates happened and
//!   whether they were legitimate; [`BrokerStats`] counts everything.
//! * **It is fast.** With no fault active a record costs one lock, a hash
//!   of its key, a clone into the log and an acknowledgement; events are
//!   drained in batches with one lock each. [`Storage::CountOnly`] skips the
//!   clone for benchmarks: about 70 ns per record through the transport
//!   alone, against about 0.7 µs with [`Storage::Full`] (release build).
//!
//! See [`MockBroker`] for the table of fault verbs and their exact
//! semantics.
//!
//! ## The test kit
//!
//! For tests that drive the producer by hand or need exact answers rather
//! than a simulated network: [`ManualRuntime`] is a runtime whose clock
//! moves only when the test moves it (and counts yields; [`CountYields`]
//! counts them around any runtime), and [`ScriptedTransport`] is a
//! transport whose `connect` and `send` answers ([`ConnectReply`],
//! [`SendReply`]) and events the test chooses.
//!
//! ## Example: a user's test
//!
//! The producer runs on tokio's paused clock (in a test, write
//! `#[tokio::test(start_paused = true)]`); the broker follows the same
//! clock, so timeouts and delays take no real time and every run is the
//! same.
//!
//! ```
//! use std::time::Duration;
//! use robust_producer::{Config, Producer, Record, State, TokioRuntime};
//! use robust_producer_mock::MockBroker;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let rt = tokio::runtime::Builder::new_current_thread()
//! #     .enable_time()
//! #     .start_paused(true)
//! #     .build()?;
//! # rt.block_on(async {
//! let broker = MockBroker::builder()
//!     .partitions(3)
//!     .runtime(TokioRuntime::new())
//!     .build();
//! let config = Config::builder()
//!     .ack_timeout(Duration::from_secs(3))
//!     .build()?;
//! let producer = Producer::builder(config).start(broker.transport(), TokioRuntime::new())?;
//!
//! broker.partition(); // the network swallows everything, silently
//! let mut sent = Vec::new();
//! for n in 0..100 {
//!     let record = Record::new("orders", format!("order {n}"))
//!         .with_key(format!("customer-{}", n % 7))
//!         .with_header("event_id", format!("evt-{n}"));
//!     let _delivery = producer.send(record.clone()).await?; // accepted at once
//!     sent.push(record);
//! }
//! tokio::time::sleep(Duration::from_secs(10)).await;
//! assert_eq!(broker.stored_count("orders"), 0);
//! assert_ne!(producer.state(), State::Connected);
//!
//! broker.heal();
//! producer.flush(Duration::from_secs(30)).await?;
//! // Every record stored, and per key in send order.
//! let report = broker.verify(&sent)?;
//! assert_eq!(report.duplicates, 0);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
//!
//! ## Example: a partition, seen from the transport
//!
//! ```
//! use robust_producer::{Record, RecordId, Transport, TransportEvent};
//! use robust_producer_mock::MockBroker;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = MockBroker::builder().partitions(3).build();
//! let mut transport = broker.transport();
//!
//! broker.partition();
//! transport.connect();
//! assert_eq!(transport.try_next_event(), None); // the connect hangs
//!
//! broker.heal();
//! assert_eq!(transport.try_next_event(), Some(TransportEvent::Connected));
//!
//! let record = Record::new("orders", "order 1").with_key("customer-7");
//! transport.send(RecordId(1), &record)?;
//! assert!(matches!(
//!     transport.try_next_event(),
//!     Some(TransportEvent::Delivered(ack)) if ack.id == RecordId(1)
//! ));
//!
//! let partition = MockBroker::partition_for_key(b"customer-7", 3);
//! assert_eq!(broker.log("orders", partition)[0].record, record);
//! broker.verify([&record])?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

mod broker;
mod fault;
mod hash;
mod idset;
mod kit;
mod log;
mod rng;
mod state;
mod transport;
mod verify;

pub use broker::{MockBroker, MockBrokerBuilder};
pub use fault::{Chaos, InFlight, Matcher, Reset, RuleId};
pub use kit::{ConnectReply, CountYields, ManualRuntime, ScriptedTransport, SendReply};
pub use log::{BrokerStats, Storage, StoredRecord, TransportId};
pub use transport::MockTransport;
pub use verify::{Verification, VerifyError};
