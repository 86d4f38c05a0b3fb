//! Topic logs and where a record goes: creating and growing topics, and
//! the partition of a key (or of a keyless record's id).

use robust_producer::{Record, RecordId};

use super::Shared;
use crate::hash::partition_of_key;
use crate::log::StoredRecord;

#[derive(Debug, Default)]
pub(crate) struct PartitionLog {
    pub(super) next_offset: i64,
    pub(crate) records: Vec<StoredRecord>,
}

#[derive(Debug)]
pub(crate) struct TopicLog {
    pub(crate) name: String,
    pub(crate) partitions: Vec<PartitionLog>,
}

impl TopicLog {
    pub(super) fn new(name: String, partitions: u32) -> Self {
        let mut t = Self {
            name,
            partitions: Vec::new(),
        };
        t.grow(partitions);
        t
    }

    pub(super) fn grow(&mut self, partitions: u32) {
        let n = partitions.max(1) as usize;
        if self.partitions.len() < n {
            self.partitions.resize_with(n, PartitionLog::default);
        }
    }

    /// Records stored, duplicates included.
    pub(crate) fn stored(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| u64::try_from(p.next_offset).unwrap_or(0))
            .sum()
    }
}

impl Shared {
    pub(crate) fn create_topic(&mut self, name: &str, partitions: u32) -> usize {
        if let Some(&t) = self.topic_index.get(name) {
            self.topics[t].grow(partitions);
            return t;
        }
        let t = self.topics.len();
        self.topics.push(TopicLog::new(name.to_owned(), partitions));
        self.topic_index.insert(name.to_owned(), t);
        t
    }

    pub(crate) fn topic(&self, name: &str) -> Option<&TopicLog> {
        self.topic_index.get(name).map(|&t| &self.topics[t])
    }

    /// The partition a key (or a keyless record id) goes to.
    pub(crate) fn partition_of(key: Option<&[u8]>, id: RecordId, partitions: u32) -> u32 {
        match key {
            Some(k) => partition_of_key(k, partitions),
            // Keyless records spread by id: stable across re-sends.
            None => (id.0 % u64::from(partitions.max(1))) as u32,
        }
    }

    pub(super) fn locate(&mut self, li: usize, id: RecordId, record: &Record) -> (usize, u32) {
        let cached = self.links[li].topic_cache;
        let t = match self.topics.get(cached) {
            Some(tl) if *tl.name == *record.topic => cached,
            _ => {
                let t = match self.topic_index.get(&*record.topic) {
                    Some(&t) => t,
                    None => self.create_topic(&record.topic, self.default_partitions),
                };
                self.links[li].topic_cache = t;
                t
            }
        };
        let n = self.topics[t].partitions.len() as u32;
        (t, Self::partition_of(record.key.as_deref(), id, n))
    }
}
