//! Admission: which records the machine accepts (topic rules, size
//! limits, the memory bounds and an external bound such as the spool's,
//! under the overflow policy), and records recovered from a spool.

use std::sync::Arc;
use std::time::Instant;

use tracing::{trace, warn};

use super::queue::Held;
use super::{Link, Machine};
use crate::config::OverflowPolicy;
use crate::event::{EnqueueError, Event};
use crate::record::{Record, RecordId};

impl Machine {
    /// Accepts a record, or hands it back with the reason.
    ///
    /// # Errors
    ///
    /// [`EnqueueError`] when the record is malformed, too large, the queue
    /// is full under [`OverflowPolicy::Reject`] or [`OverflowPolicy::Block`]
    /// (the driver does the waiting), or the machine is closing.
    #[inline]
    pub fn enqueue(&mut self, record: Record, now: Instant) -> Result<RecordId, EnqueueError> {
        self.enqueue_with(record, now, |_, _| true)
    }

    /// Like [`Machine::enqueue`], with one more bound: `room(record,
    /// oldest_held)` says whether `record` fits beside the records held now,
    /// `oldest_held` being the id of the oldest of them (the spool uses it:
    /// everything before that record has settled). The overflow policy
    /// applies to this bound as to the memory bounds; `DropOldest` drops
    /// records for it only while the oldest held record is waiting (so that
    /// dropping it moves `oldest_held`), never the ones in flight.
    ///
    /// `room` must be a pure, cheap check; it may be called several times.
    ///
    /// # Errors
    ///
    /// As [`Machine::enqueue`], and [`EnqueueError::SpoolFull`] when `room`
    /// refuses under `Reject` or `Block`.
    #[inline]
    pub fn enqueue_with(
        &mut self,
        record: Record,
        now: Instant,
        mut room: impl FnMut(&Record, Option<RecordId>) -> bool,
    ) -> Result<RecordId, EnqueueError> {
        if self.link == Link::Closed || self.closing.is_some() {
            return Err(EnqueueError::Closed {
                record: Box::new(record),
            });
        }
        if !self
            .valid_topic
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, &record.topic))
        {
            if let Err(reason) = validate_topic(&record.topic) {
                return Err(EnqueueError::InvalidRecord {
                    record: Box::new(record),
                    reason,
                });
            }
            self.valid_topic = Some(Arc::clone(&record.topic));
        }
        let size = record.size();
        if size > self.config.max_record_bytes() {
            return Err(EnqueueError::RecordTooLarge {
                record: Box::new(record),
                size,
                max: self.config.max_record_bytes(),
                limit: "max_record_bytes",
            });
        }
        if let Some(max) = self.config.max_wire_bytes() {
            let wire = record.kafka_wire_size();
            if wire > max {
                return Err(EnqueueError::RecordTooLarge {
                    record: Box::new(record),
                    size: wire,
                    max,
                    limit: "the transport's message.max.bytes",
                });
            }
        }
        let mut external = room(&record, self.oldest_held());
        if !self.fits(size) || !external {
            match self.config.overflow() {
                OverflowPolicy::Reject | OverflowPolicy::Block { .. } => {
                    return Err(if self.fits(size) {
                        EnqueueError::SpoolFull {
                            record: Box::new(record),
                        }
                    } else {
                        EnqueueError::QueueFull {
                            record: Box::new(record),
                            held_records: self.queue.len(),
                            held_bytes: self.queue.bytes(),
                        }
                    });
                }
                OverflowPolicy::DropOldest => {
                    while !self.fits(size) || !external {
                        if !external && !self.queue.oldest_is_waiting() {
                            break; // only acknowledgements can move the oldest held record
                        }
                        let Some(old) = self.queue.pop_oldest_waiting() else {
                            break;
                        };
                        self.drop_record(old.id, old.record, "DropOldest");
                        external = room(&record, self.oldest_held());
                    }
                }
                OverflowPolicy::DropNewest => {}
            }
        }
        let id = RecordId(self.next_id);
        self.next_id += 1;
        self.counters.accepted += 1;
        self.counters.accepted_bytes += size as u64;
        if !self.fits(size) || !external {
            // DropNewest, or DropOldest with everything in flight.
            self.drop_record(id, record, "overflow");
            return Ok(id);
        }
        trace!(%id, size, "accepted");
        self.hold(id, record, size, now);
        Ok(id)
    }

    /// Accepts a record recovered from a spool at start-up, whatever the
    /// bounds: it was accepted by an earlier session and must not be lost
    /// now. Call it before anything else is enqueued, in the records'
    /// original order; they get the first ids and are sent first. While
    /// recovered records exceed the bounds, new records meet the overflow
    /// policy.
    pub fn enqueue_recovered(&mut self, record: Record, now: Instant) -> RecordId {
        let id = RecordId(self.next_id);
        self.next_id += 1;
        let size = record.size();
        self.counters.accepted += 1;
        self.counters.accepted_bytes += size as u64;
        trace!(%id, size, "recovered");
        self.hold(id, record, size, now);
        id
    }

    /// Takes an accepted record into the queue.
    #[inline]
    fn hold(&mut self, id: RecordId, record: Record, size: usize, now: Instant) {
        self.queue.push_new(Held {
            id,
            record,
            size,
            accepted_at: now,
            bucket: 0,
        });
    }

    pub(super) fn drop_record(&mut self, id: RecordId, record: Record, policy: &'static str) {
        self.counters.dropped += 1;
        self.counters.dropped_bytes += record.size() as u64;
        self.isolate.remove(&id);
        warn!(%id, policy, "queue full: record dropped by overflow policy");
        self.events.push_back(Event::Dropped {
            id,
            record: Box::new(record),
        });
    }

    #[inline]
    pub(super) fn fits(&self, size: usize) -> bool {
        self.queue.len() < self.config.max_queued_records()
            && self.queue.bytes() + size <= self.config.max_queued_bytes()
    }
}

/// Kafka's topic name rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, and
/// not `.` or `..`.
fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 249 {
        return Err(format!(
            "topic name must have 1 to 249 characters (got {})",
            topic.len()
        ));
    }
    if topic == "." || topic == ".." {
        return Err(format!("topic name {topic:?} is reserved"));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {topic:?} has {bad:?}; only [a-zA-Z0-9._-] are allowed"
        ));
    }
    Ok(())
}
