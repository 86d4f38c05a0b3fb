//! The unit of work: a [`Record`] the application hands over, and the
//! [`RecordId`] the producer gives it when it is Accepted.

use std::fmt;

/// Identifier the producer gives a record when it accepts it.
///
/// Ids grow by one per accepted record, so they also give the order in which
/// the application sent records. They are unique within one producer session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub u64);

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One record for Kafka: topic, optional key, payload and headers.
///
/// Records with the same key reach the same partition, in the order they
/// were sent (see the crate docs for the exact guarantee).
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// Destination topic.
    pub topic: String,
    /// Partitioning key; `None` lets the transport choose the partition.
    pub key: Option<Vec<u8>>,
    /// Message value.
    pub payload: Vec<u8>,
    /// Kafka headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// A record for `topic` carrying `payload`, with no key and no headers.
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            key: None,
            payload: payload.into(),
            headers: Vec::new(),
        }
    }

    /// Sets the partitioning key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Appends a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of the first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Bytes this record counts against the queue's byte bound: topic, key,
    /// payload and headers.
    pub fn size(&self) -> usize {
        self.topic.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self.payload.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }
}

/// Shows sizes rather than contents: payloads can be large or sensitive.
impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic)
            .field("key_len", &self.key.as_ref().map(Vec::len))
            .field("payload_len", &self.payload.len())
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}
