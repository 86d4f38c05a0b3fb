//! How an accepted record can end other than delivered: the
//! [`DeliveryError`] its handle resolves to, and the [`DeadLetter`] handed
//! to the application's dead-letter handler with its reason.

use crate::record::{Record, RecordId};

/// Why an accepted record was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The broker refused it for good; the record went to the dead-letter
    /// handler.
    #[error("dead-lettered: {reason}")]
    DeadLettered {
        /// What the broker or transport said.
        reason: String,
    },
    /// The overflow policy dropped it; the record went to the dead-letter
    /// handler.
    #[error("dropped by the overflow policy")]
    Dropped,
    /// It was not delivered by the close deadline; `close` handed it back.
    #[error("not delivered before close; handed back by close()")]
    Returned,
    /// It was not delivered by the close deadline (or before the last handle
    /// was dropped), but it is Durable in the spool: the next producer
    /// started on the same spool sends it first. `close` does not hand it
    /// back.
    #[error("not delivered before close; kept in the spool and replayed at the next start")]
    Spooled,
    /// The producer's driver stopped before the record settled (its runtime
    /// shut down, or every handle was dropped); the record went to the
    /// dead-letter handler.
    #[error("producer stopped before the record settled")]
    Abandoned,
    /// The producer's driver failed (it panicked, or its executor dropped it
    /// before the producer closed): nothing will be sent any more. The
    /// record is still held: [`Producer::close`](crate::Producer::close)
    /// hands it back (or, when every handle was dropped, it goes to the
    /// dead-letter handler).
    #[error("producer failed before the record settled: {reason}")]
    Failed {
        /// Why the driver stopped.
        reason: String,
    },
}

/// Why a record became a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// A permanent failure, with what the broker or transport said.
    Rejected(String),
    /// Dropped by the overflow policy.
    Overflow,
    /// Every `Producer` handle was dropped without `close`, and the record
    /// was not delivered within the drop grace period.
    Abandoned,
    /// The producer's driver failed (see [`DeliveryError::Failed`]) and
    /// every `Producer` handle was dropped, so nobody could take the record
    /// back with `close`.
    Failed(String),
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadLetterReason::Rejected(reason) => write!(f, "rejected: {reason}"),
            DeadLetterReason::Overflow => f.write_str("dropped by the overflow policy"),
            DeadLetterReason::Abandoned => f.write_str("producer dropped without close"),
            DeadLetterReason::Failed(reason) => write!(f, "producer failed: {reason}"),
        }
    }
}

/// A record that left the producer without being delivered, with the reason.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The record's id.
    pub id: RecordId,
    /// The record.
    pub record: Record,
    /// Why it was not delivered.
    pub reason: DeadLetterReason,
}

impl DeadLetter {
    pub(crate) fn new(id: RecordId, record: Record, reason: DeadLetterReason) -> Self {
        Self { id, record, reason }
    }
}
