//! Reading a topic back and checking what the brokers stored against what
//! was sent (feature `readback`): every expected record present, none
//! stored that must not be, duplicates counted, and per key the first
//! copies in send order.
//!
//! It is independent of the producer: a plain rdkafka consumer reads every
//! partition from the beginning. The crate's mock-cluster tests, its demo
//! and the workspace's real-Kafka suite use it; so can an application, to
//! verify its own topic after a test run:
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::HashSet;
//! use robust_producer_rdkafka::readback::{ReadBack, Sent, check};
//!
//! // What the application sent, in send order: each record's key and its
//! // `event_id` header.
//! let sent = vec![
//!     Sent::keyed("p-7", "7f1c..."),
//!     Sent::keyed("p-7", "9a02..."),
//! ];
//! let stored = ReadBack::new("kafka-1:9092", "patient-events").read()?;
//! let report = check(&sent, &HashSet::new(), &stored);
//! assert!(report.is_clean(), "{report:?}");
//! # Ok(()) }
//! ```
//!
//! Records are identified by a header, `event_id` by default (the one
//! [`robust_producer::EventEnvelope`] records carry); tests that number
//! their records can identify them by another header with
//! [`ReadBack::id_header`], or by anything else in the record with
//! [`ReadBack::id_with`]. Every stored record must carry an event id and
//! an identity.

mod check;
mod read;

pub use check::{Reordered, Report, Sent, check};
pub use read::{ReadBack, ReadError, StoredRecord};

/// The header that carries a record's event id.
pub const EVENT_ID_HEADER: &str = "event_id";
