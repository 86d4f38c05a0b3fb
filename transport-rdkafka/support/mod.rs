//! Shared by this crate's tests, demo and benchmark (included with
//! `#[path]`; not part of the library): reading a topic back with an
//! independent rdkafka consumer and checking what the broker stored against
//! what was sent.
//!
//! Every record sent carries an `event_id` header and a sequence number
//! (`seq`), unique per record and increasing in send order. The check:
//! every expected `seq` present (unless dead-lettered), every stored record
//! has an event id, duplicates (same event id again) counted, and per key,
//! first occurrences in offset order have increasing `seq`.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// Header carrying the sequence number in tests and benches.
pub const SEQ_HEADER: &str = "seq";

/// One stored record, as read back.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub event_id: Option<String>,
    pub seq: Option<u64>,
}

/// The value of header `name`, if present.
pub fn header<'a>(m: &'a BorrowedMessage<'a>, name: &str) -> Option<&'a [u8]> {
    let h = m.headers()?;
    h.iter().find(|h| h.key == name).and_then(|h| h.value)
}

/// `seq` from the `seq` header.
pub fn seq_from_header(m: &BorrowedMessage<'_>) -> Option<u64> {
    std::str::from_utf8(header(m, SEQ_HEADER)?)
        .ok()?
        .parse()
        .ok()
}

/// Reads every record stored in `topic` (all partitions, from the
/// beginning up to the high watermarks taken at the start), extracting the
/// sequence number with `seq`.
///
/// # Panics
///
/// When the topic cannot be read within `timeout`.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    seq: impl Fn(&BorrowedMessage<'_>) -> Option<u64>,
) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "robust-producer-verifier")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + timeout;
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("topic metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut total = 0i64;
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .expect("watermarks");
        assert_eq!(
            low, 0,
            "{topic} [{p}] starts at offset {low}: records were evicted (the mock cluster keeps \
             5 MiB per partition); use more partitions or fewer bytes"
        );
        total += high - low;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    while (out.len() as i64) < total {
        assert!(
            Instant::now() < deadline,
            "read {} of {total} records of {topic} before the timeout",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Consumed {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                event_id: header(&m, "event_id").map(|v| String::from_utf8_lossy(v).into_owned()),
                seq: seq(&m),
            }),
            // A broker of the cluster may be down on purpose: librdkafka
            // reports its connection failures and reads from the others.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
            ))) => {}
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// What the broker stored, compared with what was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Records expected (sent and not dead-lettered).
    pub expected: usize,
    /// Records stored, duplicates included.
    pub stored: usize,
    /// Expected records absent from the topic.
    pub lost: usize,
    /// Stored records whose event id was already seen.
    pub duplicates: usize,
    /// First occurrences stored after a higher `seq` of the same key.
    pub reordered: usize,
    /// Stored records without an `event_id` header or `seq`.
    pub unidentified: usize,
    /// Stored records that were dead-lettered (must not be stored).
    pub dead_letters_stored: usize,
    /// A few lost sequence numbers, for messages.
    pub lost_sample: Vec<u64>,
}

impl Verdict {
    /// Nothing lost, reordered, unidentified or wrongly stored.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.reordered == 0
            && self.unidentified == 0
            && self.dead_letters_stored == 0
    }
}

/// Checks `consumed` against the records sent with sequence numbers
/// `0..sent`, except those in `dead_lettered`.
pub fn verify(sent: u64, dead_lettered: &HashSet<u64>, consumed: &[Consumed]) -> Verdict {
    let mut v = Verdict {
        expected: (sent as usize).saturating_sub(dead_lettered.len()),
        stored: consumed.len(),
        ..Verdict::default()
    };
    let mut by_position: Vec<&Consumed> = consumed.iter().collect();
    by_position.sort_by_key(|c| (c.partition, c.offset));
    let mut seen_ids: HashSet<&str> = HashSet::with_capacity(consumed.len());
    let mut seen_seqs: HashSet<u64> = HashSet::with_capacity(consumed.len());
    let mut last_per_key: HashMap<Option<&[u8]>, u64> = HashMap::new();
    for c in by_position {
        let (Some(id), Some(seq)) = (c.event_id.as_deref(), c.seq) else {
            v.unidentified += 1;
            continue;
        };
        if !seen_ids.insert(id) {
            v.duplicates += 1;
            continue;
        }
        seen_seqs.insert(seq);
        if dead_lettered.contains(&seq) {
            v.dead_letters_stored += 1;
        }
        let last = last_per_key.entry(c.key.as_deref()).or_insert(seq);
        if seq < *last {
            v.reordered += 1;
        } else {
            *last = seq;
        }
    }
    for s in 0..sent {
        if !dead_lettered.contains(&s) && !seen_seqs.contains(&s) {
            v.lost += 1;
            if v.lost_sample.len() < 10 {
                v.lost_sample.push(s);
            }
        }
    }
    v
}
