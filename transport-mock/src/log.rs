//! What the mock broker keeps for assertions: [`StoredRecord`]s in per
//! partition logs, and the [`BrokerStats`] counters.

use std::fmt;
use std::time::Duration;

use robust_producer::{Record, RecordId};

/// Identifies one [`MockTransport`](crate::MockTransport) of a broker (think:
/// one producer process). Record ids are unique only within a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransportId(pub u32);

impl fmt::Display for TransportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transport-{}", self.0)
    }
}

/// How much the broker keeps of the records it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Storage {
    /// Every stored record is kept (cloned) with its position, for
    /// [`MockBroker::log`](crate::MockBroker::log) and
    /// [`MockBroker::verify`](crate::MockBroker::verify).
    #[default]
    Full,
    /// Only offsets, counts and duplicate detection by record id: no clone
    /// per record. For benchmarks.
    CountOnly,
}

/// One record as the broker stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredRecord {
    /// The record, as handed off.
    pub record: Record,
    /// Partition it was stored in.
    pub partition: i32,
    /// Its offset in that partition (0, 1, 2, ... per partition).
    pub offset: i64,
    /// The id the producer gave it.
    pub id: RecordId,
    /// The transport that handed it off.
    pub transport: TransportId,
    /// The transport's session (counted by `connect` calls, from 1) it was
    /// handed off in.
    pub session: u64,
    /// When it was stored, measured from the broker's creation on its clock.
    pub at: Duration,
}

impl StoredRecord {
    /// The record's key.
    pub fn key(&self) -> Option<&[u8]> {
        self.record.key.as_deref()
    }

    /// The value of the record's first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.record.header(name)
    }
}

/// Counters of everything the broker saw and did, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// `connect` calls.
    pub connect_attempts: u64,
    /// Sessions that came up ([`TransportEvent::Connected`](robust_producer::TransportEvent::Connected) reported).
    pub connects: u64,
    /// Connect attempts refused.
    pub refused: u64,
    /// Connect attempts that hung (partition or chaos).
    pub hung_connects: u64,
    /// Connects that rebuilt a client after a fatal error.
    pub rebuilds: u64,
    /// Records handed off and taken (`send` returned `Ok`).
    pub handed_off: u64,
    /// Records stored, duplicates included.
    pub stored: u64,
    /// Acknowledgements the broker sent.
    pub acked: u64,
    /// Records stored whose acknowledgement was never reported (lost-ack
    /// rules and chaos, records stored by a reset, acknowledgements dropped
    /// by a reset, a reconnect or a close).
    pub stored_unacknowledged: u64,
    /// Records failed permanently.
    pub rejected: u64,
    /// Records failed retriably (by a rule or chaos, or because an earlier
    /// record of their partition failed in the same session).
    pub failed_retriable: u64,
    /// `send` calls refused with back-pressure.
    pub backpressured: u64,
    /// Records that vanished into a partition or a hung session.
    pub blackholed: u64,
    /// Unprocessed records discarded when their session ended (reset,
    /// fatal error, reconnect, close).
    pub discarded: u64,
    /// Link losses reported ([`TransportEvent::LinkLost`](robust_producer::TransportEvent::LinkLost)).
    pub resets: u64,
    /// Fatal errors reported ([`TransportEvent::Fatal`](robust_producer::TransportEvent::Fatal)).
    pub fatals: u64,
    /// Records stored again with the same transport and record id.
    pub duplicates: u64,
    /// Hand-offs of a record whose acknowledgement the transport had
    /// already reported: the core must never do this.
    pub resent_after_ack: u64,
}
