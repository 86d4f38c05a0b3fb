//! The independent check: an rdkafka consumer reads the topic back from the
//! beginning and every event id is accounted for.
//!
//! For each record the producer accepted and did not hand back, its event id
//! must be on the topic; per key, the first copies must be in send order;
//! copies beyond the first are counted as duplicates.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::kafka::Error;

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// Partition it was stored in.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its `event_id` header.
    pub event_id: Option<String>,
    /// Payload size.
    pub len: usize,
}

/// Reads every partition of `topic` from the beginning until `want` records
/// with an event id were read, or nothing new arrived for `quiet` after that
/// many, or `timeout` passed.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> Result<Vec<Consumed>, Error> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("verify-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_uncommitted")
        .set("log_level", "3")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} has no partitions").into());
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let start = Instant::now();
    let mut out = Vec::new();
    let mut last_new = Instant::now();
    while start.elapsed() < timeout {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let event_id = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "event_id")
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                });
                out.push(Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    event_id,
                    len: m.payload().map_or(0, <[u8]>::len),
                });
                last_new = Instant::now();
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                if out.len() >= want && last_new.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// One sent record, in send order: its key and event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its key.
    pub key: String,
    /// Its event id.
    pub event_id: String,
}

/// What the consumer found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records expected on the topic.
    pub expected: usize,
    /// Distinct expected event ids found.
    pub present: usize,
    /// Expected event ids not found.
    pub missing: Vec<String>,
    /// Copies beyond the first of any event id.
    pub duplicates: usize,
    /// Keys whose first copies are not in send order, with the first
    /// out-of-order event id.
    pub reordered: Vec<(String, String)>,
}

impl Report {
    /// True when nothing is missing and nothing is reordered.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.reordered.is_empty()
    }
}

/// Checks `consumed` against `sent` (in send order).
pub fn check(sent: &[Sent], consumed: &[Consumed]) -> Report {
    // Read order per partition is offset order; keys live in one partition.
    let mut by_partition: HashMap<i32, Vec<&Consumed>> = HashMap::new();
    for c in consumed {
        by_partition.entry(c.partition).or_default().push(c);
    }
    let mut seen = HashSet::new();
    let mut first_order: HashMap<String, Vec<String>> = HashMap::new();
    let mut duplicates = 0;
    for records in by_partition.values_mut() {
        records.sort_by_key(|c| c.offset);
        for c in records.iter() {
            let Some(id) = &c.event_id else { continue };
            if !seen.insert(id.clone()) {
                duplicates += 1;
                continue;
            }
            let key = c
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            first_order.entry(key).or_default().push(id.clone());
        }
    }
    let mut expected_order: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut missing = Vec::new();
    for s in sent {
        if seen.contains(&s.event_id) {
            expected_order.entry(&s.key).or_default().push(&s.event_id);
        } else {
            missing.push(s.event_id.clone());
        }
    }
    let mut reordered = Vec::new();
    for (key, want) in &expected_order {
        let sent_ids: HashSet<&str> = want.iter().copied().collect();
        let got: Vec<&str> = first_order
            .get(*key)
            .map(|v| {
                v.iter()
                    .map(String::as_str)
                    .filter(|id| sent_ids.contains(id))
                    .collect()
            })
            .unwrap_or_default();
        if let Some((_, g)) = want.iter().zip(&got).find(|(w, g)| w != g) {
            reordered.push(((*key).to_owned(), (*g).to_owned()));
        }
    }
    Report {
        expected: sent.len(),
        present: sent.len() - missing.len(),
        missing,
        duplicates,
        reordered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(partition: i32, offset: i64, key: &str, id: &str) -> Consumed {
        Consumed {
            partition,
            offset,
            key: Some(key.as_bytes().to_vec()),
            event_id: Some(id.to_owned()),
            len: 0,
        }
    }

    fn s(key: &str, id: &str) -> Sent {
        Sent {
            key: key.to_owned(),
            event_id: id.to_owned(),
        }
    }

    #[test]
    fn finds_missing_duplicates_and_reordering() {
        let sent = [s("a", "1"), s("a", "2"), s("b", "3"), s("a", "4")];
        let ok = [
            c(0, 0, "a", "1"),
            c(0, 1, "a", "2"),
            c(1, 0, "b", "3"),
            c(0, 2, "a", "1"),
            c(0, 3, "a", "4"),
        ];
        let r = check(&sent, &ok);
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(r.duplicates, 1);

        let bad = [c(0, 0, "a", "2"), c(0, 1, "a", "1"), c(1, 0, "b", "3")];
        let r = check(&sent, &bad);
        assert_eq!(r.missing, ["4"]);
        assert_eq!(r.reordered, [("a".to_owned(), "2".to_owned())]);
    }
}
