//! The unit of work: a [`Record`] the application hands over, and the
//! [`RecordId`] the producer gives it when it is Accepted.
//!
//! Record contents are cheap to share: the topic is an `Arc<str>`, key,
//! payload and header values are [`Bytes`], and header names are
//! `Cow<'static, str>`. Build records from shared parts (a topic held as an
//! `Arc<str>`, payloads as `Bytes`) and the producer copies nothing.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

pub use bytes::Bytes;

use crate::{Headers, IntoRecordBytes};

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

/// One Kafka header: a name and a value.
pub type Header = (Cow<'static, str>, Bytes);

/// One record for Kafka: topic, optional key, payload and headers.
///
/// Records with the same key reach the same partition, in the order they
/// were sent (see the crate docs for the exact guarantee).
///
/// ```
/// use std::sync::Arc;
/// use robust_producer::{Bytes, Record};
///
/// // Held once by the service and shared by every record: no copies.
/// let topic: Arc<str> = Arc::from("patient-events");
/// let record = Record::new(topic.clone(), Bytes::from_static(b"{\"id\":7}"))
///     .with_key("patient-7")
///     .with_header("event_type", "PatientRegistered");
/// assert_eq!(record.header("event_type"), Some(&b"PatientRegistered"[..]));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Partitioning key; `None` lets the transport choose the partition.
    pub key: Option<Bytes>,
    /// Message value.
    pub payload: Bytes,
    /// Kafka headers, in order (the first one is stored inline).
    pub headers: Headers,
}

impl Record {
    /// A record for `topic` carrying `payload`, with no key and no headers.
    ///
    /// `topic` is anything that converts into an `Arc<str>`: pass a clone
    /// of an `Arc<str>` to share it, or a `&str`/`String` to copy it.
    /// `payload` becomes [`Bytes`] without copying from a `Vec<u8>`, a
    /// `String`, a `&'static [u8]`/`&'static str` or `Bytes` itself (see
    /// [`IntoRecordBytes`]).
    pub fn new(topic: impl Into<Arc<str>>, payload: impl IntoRecordBytes) -> Self {
        Self {
            topic: topic.into(),
            key: None,
            payload: payload.into_record_bytes(),
            headers: Headers::new(),
        }
    }

    /// Sets the partitioning key.
    #[must_use]
    pub fn with_key(mut self, key: impl IntoRecordBytes) -> Self {
        self.key = Some(key.into_record_bytes());
        self
    }

    /// Appends a header. A `&'static str` name is not copied.
    #[must_use]
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl IntoRecordBytes,
    ) -> Self {
        self.headers.push((name.into(), value.into_record_bytes()));
        self
    }

    /// The value of the first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Bytes this record counts against the queue's byte bound: topic, key,
    /// payload and headers.
    pub fn size(&self) -> usize {
        self.topic.len()
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.payload.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }

    /// The most this record can take in a Kafka record batch (format v2),
    /// batch header excluded: key, payload, header names and values, and the
    /// largest varint framing of each. This is the size Kafka clients
    /// compare with `message.max.bytes` (librdkafka refuses a record whose
    /// size so computed exceeds it); the producer refuses such a record at
    /// `send` when its transport states the limit (see
    /// [`TransportLimits`](crate::transport::TransportLimits)).
    pub fn kafka_wire_size(&self) -> usize {
        /// Length, attributes, timestamp delta, offset delta, key length,
        /// value length and header count, each at its largest varint.
        const RECORD_FRAMING: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
        /// Name length and value length varints of one header.
        const HEADER_FRAMING: usize = 5 + 5;
        RECORD_FRAMING
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.payload.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| HEADER_FRAMING + n.len() + v.len())
                .sum::<usize>()
    }
}

/// Shows sizes rather than contents: payloads can be large or sensitive.
impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic)
            .field("key_len", &self.key.as_ref().map(Bytes::len))
            .field("payload_len", &self.payload.len())
            .field("headers", &self.headers)
            .finish()
    }
}
