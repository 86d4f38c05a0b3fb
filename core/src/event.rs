//! What the machine tells its driver: [`Command`]s to carry out, [`Event`]s
//! to report, and the [`EnqueueError`] a refused record comes back in.

use std::time::Duration;

use crate::record::{Record, RecordId};
use crate::state::State;
use crate::transport::Ack;

/// Something the driver must do with the transport, in order.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// Call [`Transport::connect`](crate::Transport::connect).
    Connect,
    /// Call [`Transport::send`](crate::Transport::send) with this record; on
    /// `Err`, report it with [`Machine::handle_send_error`](crate::Machine::handle_send_error).
    Send {
        /// The record's id.
        id: RecordId,
        /// The record, borrowed from the machine.
        record: &'a Record,
    },
    /// Call [`Transport::close`](crate::Transport::close); the machine is
    /// [`State::Closed`].
    Close,
}

/// Something that happened, for the application. Records are boxed, so
/// that the event of every acknowledgement stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The state changed; `from.may_become(to)` always holds.
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
    },
    /// The broker acknowledged the record: it is Delivered.
    Delivered {
        /// The acknowledgement.
        ack: Ack,
        /// From acceptance to the acknowledgement: what the application's
        /// event waited, retries and outages included.
        waited: Duration,
    },
    /// The record can never be delivered; it left the queue.
    DeadLettered {
        /// The record's id.
        id: RecordId,
        /// The record.
        record: Box<Record>,
        /// Why, as the transport (or broker) said it.
        reason: String,
    },
    /// The overflow policy dropped the record.
    Dropped {
        /// The record's id.
        id: RecordId,
        /// The record.
        record: Box<Record>,
    },
    /// The record was not delivered when shutdown reached its deadline; it is
    /// handed back to the application. It may still have reached the broker
    /// if it was in flight.
    Returned {
        /// The record's id.
        id: RecordId,
        /// The record.
        record: Box<Record>,
    },
}

/// Why a record was not accepted. Every variant hands the record back
/// (boxed, so that `Result<_, EnqueueError>` stays small on the hot path).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// The queue is full (by records or bytes) and the policy refuses.
    #[error("queue full: {held_records} records / {held_bytes} bytes held")]
    QueueFull {
        /// The refused record.
        record: Box<Record>,
        /// Records held when it was refused.
        held_records: usize,
        /// Bytes held when it was refused.
        held_bytes: usize,
    },
    /// The record is larger than a limit: the core's `max_record_bytes`
    /// (by [`Record::size`]), the transport's client limit (by
    /// [`Record::kafka_wire_size`], see
    /// [`TransportLimits`](crate::TransportLimits)) or the spool's.
    #[error("record of {size} bytes exceeds {limit} ({max} bytes)")]
    RecordTooLarge {
        /// The refused record.
        record: Box<Record>,
        /// Its size, as the limit counts it.
        size: usize,
        /// The limit.
        max: usize,
        /// Which limit: `max_record_bytes`, `the transport's message.max.bytes`
        /// or `the spool's max_record_bytes`.
        limit: &'static str,
    },
    /// The record is malformed (for example an invalid topic name).
    #[error("invalid record: {reason}")]
    InvalidRecord {
        /// The refused record.
        record: Box<Record>,
        /// What is wrong with it.
        reason: String,
    },
    /// The spool has no room for the record on disk and the policy refuses
    /// (see [`Spool`](crate::Spool)).
    #[error("spool full: no room on disk for the record")]
    SpoolFull {
        /// The refused record.
        record: Box<Record>,
    },
    /// The spool stopped after an I/O error (a failed write or fsync, a full
    /// disk): the producer accepts nothing more, since it could not make it
    /// Durable. Records accepted before keep being delivered.
    #[error("spool failed: {reason}")]
    SpoolFailed {
        /// The refused record.
        record: Box<Record>,
        /// What went wrong, naming the file and the operation.
        reason: String,
    },
    /// The producer is shutting down or closed.
    #[error("producer is closed")]
    Closed {
        /// The refused record.
        record: Box<Record>,
    },
    /// The producer failed: its driver stopped unexpectedly (see
    /// [`State::Failed`]), so nothing can be sent any more.
    #[error("producer failed: {reason}")]
    Failed {
        /// The refused record.
        record: Box<Record>,
        /// Why the driver stopped.
        reason: String,
    },
}

impl EnqueueError {
    /// The record that was not accepted.
    pub fn into_record(self) -> Record {
        match self {
            EnqueueError::QueueFull { record, .. }
            | EnqueueError::RecordTooLarge { record, .. }
            | EnqueueError::InvalidRecord { record, .. }
            | EnqueueError::SpoolFull { record }
            | EnqueueError::SpoolFailed { record, .. }
            | EnqueueError::Closed { record }
            | EnqueueError::Failed { record, .. } => *record,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stay_small() {
        // Every acknowledgement passes through the machine's event queue.
        let size = std::mem::size_of::<Event>();
        assert!(size <= 48, "Event is {size} bytes");
    }
}
