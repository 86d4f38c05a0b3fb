//! [`ReadBack`]: an rdkafka consumer that reads every partition of a topic
//! from the beginning, either up to the high watermarks taken when it
//! starts or until the expected number of records arrived and the topic
//! went quiet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::EVENT_ID_HEADER;

/// How long a read-back may take by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the consumer waits for a record in one poll.
const POLL: Duration = Duration::from_millis(200);

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Partition it was stored in.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its `event_id` header.
    pub event_id: Option<String>,
    /// What identifies it (see [`ReadBack::id_header`] and
    /// [`ReadBack::id_with`]; the event id by default).
    pub id: Option<String>,
    /// Payload size in bytes.
    pub len: usize,
}

/// Why a topic could not be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The consumer failed (creation, metadata, watermarks, assignment or a
    /// consumer error other than a broker being down).
    #[error("reading {topic} back: {source}")]
    Kafka {
        /// The topic read.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The topic has no partitions (or does not exist).
    #[error("topic {topic} has no partitions")]
    NoPartitions {
        /// The topic read.
        topic: String,
    },
    /// A partition no longer starts at offset 0: records were evicted (the
    /// mock cluster keeps 5 MiB per partition), so the check would be
    /// meaningless.
    #[error(
        "{topic} [{partition}] starts at offset {low}: records were evicted (the mock cluster \
         keeps 5 MiB per partition); use more partitions or fewer bytes"
    )]
    Truncated {
        /// The topic read.
        topic: String,
        /// The partition.
        partition: i32,
        /// Its first offset.
        low: i64,
    },
    /// Reading up to the high watermarks did not finish in time.
    #[error("read {read} of {total} records of {topic} before the timeout")]
    Timeout {
        /// The topic read.
        topic: String,
        /// Records read.
        read: usize,
        /// Records below the high watermarks.
        total: usize,
    },
}

/// What identifies a stored record.
#[derive(Debug, Clone)]
enum Identity {
    /// The value of this header.
    Header(String),
    /// What this function reads from the record.
    With(fn(&BorrowedMessage<'_>) -> Option<String>),
}

/// When reading stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// At the high watermarks taken when reading starts; not reaching them
    /// within the timeout is an error.
    HighWatermarks,
    /// Once `want` records were read and none came for `quiet`, or at the
    /// timeout (what was read then is returned).
    Quiet { want: usize, quiet: Duration },
}

/// Reads a topic back, from the beginning of every partition.
///
/// By default it reads up to the high watermarks taken when it starts
/// (every record stored by then), fails if a partition no longer starts
/// at offset 0, and gives up after 60 s. A broker that is down is not an
/// error: librdkafka reads from the others.
#[derive(Debug, Clone)]
#[must_use]
pub struct ReadBack {
    bootstrap: String,
    topic: String,
    identity: Identity,
    timeout: Duration,
    until: Until,
}

impl ReadBack {
    /// Reads `topic` of the cluster at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap_servers.into(),
            topic: topic.into(),
            identity: Identity::Header(EVENT_ID_HEADER.to_owned()),
            timeout: DEFAULT_TIMEOUT,
            until: Until::HighWatermarks,
        }
    }

    /// Identifies records by header `name` instead of `event_id` (for
    /// example a sequence number a test numbers its records with).
    pub fn id_header(mut self, name: impl Into<String>) -> Self {
        self.identity = Identity::Header(name.into());
        self
    }

    /// Identifies records by what `id` reads from them (for example a
    /// number in the payload) instead of a header.
    pub fn id_with(mut self, id: fn(&BorrowedMessage<'_>) -> Option<String>) -> Self {
        self.identity = Identity::With(id);
        self
    }

    /// How long reading may take (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads until `want` records arrived and then none for `quiet`, or
    /// until the timeout, whichever comes first, instead of up to the high
    /// watermarks; what was read by then is returned (missing records show
    /// in the [`check`](super::check())).
    pub fn until_quiet(mut self, want: usize, quiet: Duration) -> Self {
        self.until = Until::Quiet { want, quiet };
        self
    }

    /// Reads the topic back.
    ///
    /// # Errors
    ///
    /// [`ReadError`]: the consumer failed, the topic has no partitions, or
    /// (reading up to the high watermarks) records were evicted or not all
    /// were read within the timeout.
    pub fn read(&self) -> Result<Vec<StoredRecord>, ReadError> {
        let consumer = self.consumer()?;
        let partitions = self.partitions(&consumer)?;
        let total = match self.until {
            Until::HighWatermarks => Some(self.below_high_watermarks(&consumer, &partitions)?),
            Until::Quiet { .. } => None,
        };
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::Beginning)
                .map_err(|e| self.kafka(e))?;
        }
        consumer.assign(&tpl).map_err(|e| self.kafka(e))?;
        self.poll_records(&consumer, total)
    }

    fn kafka(&self, source: KafkaError) -> ReadError {
        ReadError::Kafka {
            topic: self.topic.clone(),
            source,
        }
    }

    /// A consumer of its own group, committing nothing, reading what is
    /// stored whether or not in a transaction.
    fn consumer(&self) -> Result<BaseConsumer, ReadError> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", unique_group())
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_uncommitted")
            .set("log_level", "3")
            .create()
            .map_err(|e| self.kafka(e))
    }

    /// The topic's partitions, from its metadata.
    fn partitions(&self, consumer: &BaseConsumer) -> Result<Vec<i32>, ReadError> {
        let md = consumer
            .fetch_metadata(Some(&self.topic), self.timeout)
            .map_err(|e| self.kafka(e))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(ReadError::NoPartitions {
                topic: self.topic.clone(),
            });
        }
        Ok(partitions)
    }

    /// The number of records stored now, checking that no partition lost
    /// its first records.
    fn below_high_watermarks(
        &self,
        consumer: &BaseConsumer,
        partitions: &[i32],
    ) -> Result<usize, ReadError> {
        let mut total = 0;
        for &p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, p, self.timeout)
                .map_err(|e| self.kafka(e))?;
            if low != 0 {
                return Err(ReadError::Truncated {
                    topic: self.topic.clone(),
                    partition: p,
                    low,
                });
            }
            total += usize::try_from(high - low).unwrap_or(0);
        }
        Ok(total)
    }

    /// Polls until [`Until`] says stop: `total` records when it is known.
    fn poll_records(
        &self,
        consumer: &BaseConsumer,
        total: Option<usize>,
    ) -> Result<Vec<StoredRecord>, ReadError> {
        let start = Instant::now();
        let mut out = Vec::with_capacity(total.unwrap_or(0));
        let mut last_new = Instant::now();
        loop {
            match (total, self.until) {
                (Some(total), _) if out.len() >= total => return Ok(out),
                (Some(total), _) if start.elapsed() >= self.timeout => {
                    return Err(ReadError::Timeout {
                        topic: self.topic.clone(),
                        read: out.len(),
                        total,
                    });
                }
                (None, _) if start.elapsed() >= self.timeout => return Ok(out),
                _ => {}
            }
            match consumer.poll(POLL) {
                Some(Ok(m)) => {
                    out.push(self.stored(&m));
                    last_new = Instant::now();
                }
                // A broker of the cluster may be down on purpose: librdkafka
                // reports its connection failures and reads from the others.
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
                ))) => {}
                Some(Err(e)) => return Err(self.kafka(e)),
                None => {
                    if let Until::Quiet { want, quiet } = self.until
                        && out.len() >= want
                        && last_new.elapsed() > quiet
                    {
                        return Ok(out);
                    }
                }
            }
        }
    }

    fn stored(&self, m: &BorrowedMessage<'_>) -> StoredRecord {
        StoredRecord {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            event_id: header(m, EVENT_ID_HEADER),
            id: match &self.identity {
                Identity::Header(name) => header(m, name),
                Identity::With(id) => id(m),
            },
            len: m.payload().map_or(0, <[u8]>::len),
        }
    }
}

/// The value of header `name`, if present, as text.
fn header(m: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A consumer group of its own for each read-back.
fn unique_group() -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "robust-producer-readback-{}-{nanos}-{}",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )
}
