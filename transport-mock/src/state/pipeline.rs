//! The record pipeline: a record from hand-off (`send`) through the chaos
//! draw, the partition's gap and the rules, to stored, failed or
//! acknowledged.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use robust_producer::{Ack, Record, RecordId, TransportError, TransportEvent, deadline_after};

use super::Shared;
use super::sessions::{Break, LinkState};
use crate::fault::{Action, ChaosState, InFlight, RecordFault};
use crate::log::{Storage, StoredRecord};

/// What the chaos draw does to the record being processed.
enum ChaosDraw {
    /// The session breaks this way; the record is among those in flight.
    Break(Break, InFlight, bool),
    /// The record is stored, its acknowledgement lost.
    LoseAck,
    /// The record fails retriably unless a rule decides otherwise.
    FailRetriable,
    /// No chaos for this record.
    Nothing,
}

/// Reason of the cascade failure that keeps a partition's order.
const OUT_OF_ORDER: &str =
    "OUT_OF_ORDER_SEQUENCE_NUMBER: an earlier record of this partition failed in this session";

/// A record handed off and not yet processed.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) id: RecordId,
    pub(super) record: Record,
    pub(super) topic: usize,
    pub(super) partition: u32,
    pub(super) due: Instant,
}

/// The records of one partition that failed retriably in this session and
/// were not stored since. While one of them is older than a record handed
/// off, that record fails too: nothing overtakes a failed record, as with
/// Kafka's idempotent producer (`OUT_OF_ORDER_SEQUENCE_NUMBER`).
#[derive(Debug, Clone)]
pub(super) struct Gap {
    pub(super) topic: usize,
    pub(super) partition: u32,
    pub(super) failed: BTreeSet<u64>,
}

impl Shared {
    /// Hands one record off on link `li`.
    pub(crate) fn send(
        &mut self,
        li: usize,
        id: RecordId,
        record: &Record,
        resent_after_ack: bool,
        now: Instant,
    ) -> Result<(), TransportError> {
        let link = &mut self.links[li];
        if resent_after_ack {
            self.stats.resent_after_ack += 1;
            self.resent_after_ack.push((link.tid, id));
        }
        match link.state {
            LinkState::Up { blackholed: false } => {}
            LinkState::Up { blackholed: true } => {
                self.stats.blackholed += 1;
                return Ok(());
            }
            LinkState::Closed => return Err(TransportError::link("mock transport is closed")),
            LinkState::Idle | LinkState::Connecting { .. } | LinkState::Down => {
                return Err(TransportError::link("not connected"));
            }
        }
        if self.net.partitioned {
            self.stats.blackholed += 1;
            self.break_link(li, Break::Blackhole, InFlight::Lost, false, now);
            return Ok(());
        }
        if let Some(cap) = self.net.capacity
            && link.unserved >= cap
        {
            link.bp_refused = true;
            self.stats.backpressured += 1;
            return Err(TransportError::backpressure(
                "QUEUE_FULL: mock transport buffer is full",
            ));
        }
        let (topic, partition) = self.locate(li, id, record);
        self.stats.handed_off += 1;
        let link = &mut self.links[li];
        link.unserved += 1;
        let net = &self.net;
        if net.held || !net.delay.is_zero() || !net.jitter.is_zero() || !link.pending.is_empty() {
            self.queue_pending(li, id, record, topic, partition, now);
            return Ok(());
        }
        self.process(li, id, Cow::Borrowed(record), topic, partition, now);
        Ok(())
    }

    /// Queues a record on link `li` until its delay (and jitter) has
    /// passed; due times never decrease along the queue.
    fn queue_pending(
        &mut self,
        li: usize,
        id: RecordId,
        record: &Record,
        topic: usize,
        partition: u32,
        now: Instant,
    ) {
        let net = &self.net;
        let mut due = deadline_after(now, net.delay);
        if !net.jitter.is_zero() {
            let nanos = u64::try_from(net.jitter.as_nanos()).unwrap_or(u64::MAX);
            due += Duration::from_nanos(self.rng.up_to(nanos));
        }
        let link = &mut self.links[li];
        if let Some(last) = link.last_due {
            due = due.max(last);
        }
        link.last_due = Some(due);
        link.pending.push_back(Pending {
            id,
            record: record.clone(),
            topic,
            partition,
            due,
        });
    }

    /// Processes one record of link `li`. Returns false when the session
    /// broke (chaos) and no further record of it may be processed.
    pub(super) fn process(
        &mut self,
        li: usize,
        id: RecordId,
        record: Cow<'_, Record>,
        topic: usize,
        partition: u32,
        now: Instant,
    ) -> bool {
        let (mut lose_ack, chaos_fail) = match self.chaos_draw() {
            ChaosDraw::Break(how, in_flight, drop_unreported) => {
                self.links[li].pending.push_front(Pending {
                    id,
                    record: record.into_owned(),
                    topic,
                    partition,
                    due: now,
                });
                self.break_link(li, how, in_flight, drop_unreported, now);
                return false;
            }
            ChaosDraw::LoseAck => (true, false),
            ChaosDraw::FailRetriable => (false, true),
            ChaosDraw::Nothing => (false, false),
        };
        if self.behind_gap(li, id, topic, partition) {
            self.fail_retriable(li, id, topic, partition, OUT_OF_ORDER.to_owned());
            return true;
        }
        match self.rule_action(id, &record) {
            Some(Action::Reject(reason)) => {
                self.stats.rejected += 1;
                // Never re-sent: it must not hold its partition back.
                self.close_gap(li, id, topic, partition);
                self.fail(li, id, TransportError::permanent(reason));
                return true;
            }
            Some(Action::FailRetriable(reason)) => {
                self.fail_retriable(li, id, topic, partition, reason);
                return true;
            }
            Some(Action::LoseAck) => lose_ack = true,
            None if chaos_fail => {
                let reason = "REQUEST_TIMED_OUT (mock broker chaos)".to_owned();
                self.fail_retriable(li, id, topic, partition, reason);
                return true;
            }
            None => {}
        }
        let offset = self.store(li, id, record, topic, partition, now);
        let link = &mut self.links[li];
        if lose_ack {
            link.unserved = link.unserved.saturating_sub(1);
            let tid = link.tid;
            self.note_unacked(tid, id);
        } else {
            self.stats.acked += 1;
            link.push_record_event(TransportEvent::Delivered(Ack {
                id,
                partition: Some(partition as i32),
                offset: Some(offset),
            }));
        }
        true
    }

    /// Draws the chaos fault (if chaos is on) for the record being processed.
    fn chaos_draw(&mut self) -> ChaosDraw {
        let Some(fault) = self.chaos.as_mut().and_then(ChaosState::on_record) else {
            return ChaosDraw::Nothing;
        };
        match fault {
            RecordFault::Reset { drop_unreported } => ChaosDraw::Break(
                Break::LinkLost("connection reset (mock broker chaos)"),
                InFlight::Prefix,
                drop_unreported,
            ),
            RecordFault::Fatal => ChaosDraw::Break(
                Break::Fatal("fatal client error (mock broker chaos)"),
                InFlight::Lost,
                false,
            ),
            RecordFault::Hang => ChaosDraw::Break(Break::Blackhole, InFlight::Lost, false),
            RecordFault::LoseAck => ChaosDraw::LoseAck,
            RecordFault::FailRetriable => ChaosDraw::FailRetriable,
        }
    }

    /// Whether a record of the partition older than `id` failed in this
    /// session and was not stored since.
    pub(super) fn behind_gap(&self, li: usize, id: RecordId, topic: usize, partition: u32) -> bool {
        self.links[li]
            .gaps
            .iter()
            .find(|g| g.topic == topic && g.partition == partition)
            .and_then(|g| g.failed.first())
            .is_some_and(|&oldest| oldest < id.0)
    }

    /// Notes that `id` failed retriably: younger records of its partition
    /// fail until it is stored.
    pub(super) fn open_gap(&mut self, li: usize, id: RecordId, topic: usize, partition: u32) {
        let gaps = &mut self.links[li].gaps;
        match gaps
            .iter_mut()
            .find(|g| g.topic == topic && g.partition == partition)
        {
            Some(g) => {
                g.failed.insert(id.0);
            }
            None => gaps.push(Gap {
                topic,
                partition,
                failed: BTreeSet::from([id.0]),
            }),
        }
    }

    /// Notes that `id` no longer holds its partition back (stored, or
    /// failed permanently).
    pub(super) fn close_gap(&mut self, li: usize, id: RecordId, topic: usize, partition: u32) {
        let gaps = &mut self.links[li].gaps;
        if let Some(at) = gaps
            .iter()
            .position(|g| g.topic == topic && g.partition == partition)
        {
            gaps[at].failed.remove(&id.0);
            if gaps[at].failed.is_empty() {
                gaps.swap_remove(at);
            }
        }
    }

    pub(super) fn rule_action(&mut self, id: RecordId, record: &Record) -> Option<Action> {
        self.rules
            .iter_mut()
            .find_map(|r| r.matcher.check(id, record).then(|| r.action.clone()))
    }

    pub(super) fn fail_retriable(
        &mut self,
        li: usize,
        id: RecordId,
        topic: usize,
        partition: u32,
        reason: String,
    ) {
        self.open_gap(li, id, topic, partition);
        self.fail(li, id, TransportError::retriable(reason));
    }

    pub(super) fn fail(&mut self, li: usize, id: RecordId, error: TransportError) {
        if error.class == robust_producer::ErrorClass::Retriable {
            self.stats.failed_retriable += 1;
        }
        self.links[li].push_record_event(TransportEvent::Failed { id, error });
    }

    pub(super) fn store(
        &mut self,
        li: usize,
        id: RecordId,
        record: Cow<'_, Record>,
        topic: usize,
        partition: u32,
        now: Instant,
    ) -> i64 {
        if !self.links[li].gaps.is_empty() {
            self.close_gap(li, id, topic, partition);
        }
        let link = &mut self.links[li];
        let (tid, session) = (link.tid, link.session);
        if !link.stored_ids.insert(id.0) {
            self.stats.duplicates += 1;
            self.duplicates.push((tid, id));
        }
        self.stats.stored += 1;
        let log = &mut self.topics[topic].partitions[partition as usize];
        let offset = log.next_offset;
        log.next_offset += 1;
        if self.storage == Storage::Full {
            log.records.push(StoredRecord {
                record: record.into_owned(),
                partition: partition as i32,
                offset,
                id,
                transport: tid,
                session,
                at: now.saturating_duration_since(self.start),
            });
        }
        offset
    }

    /// Processes a pending record of a breaking session: stored without an
    /// acknowledgement unless a gap or a rule says otherwise.
    pub(super) fn process_silently(&mut self, li: usize, p: Pending, now: Instant) {
        if self.behind_gap(li, p.id, p.topic, p.partition) {
            self.open_gap(li, p.id, p.topic, p.partition);
            self.stats.discarded += 1;
            return;
        }
        match self.rule_action(p.id, &p.record) {
            Some(Action::Reject(_)) => self.stats.discarded += 1,
            Some(Action::FailRetriable(_)) => {
                self.open_gap(li, p.id, p.topic, p.partition);
                self.stats.discarded += 1;
            }
            Some(Action::LoseAck) | None => {
                self.store(li, p.id, Cow::Owned(p.record), p.topic, p.partition, now);
                let tid = self.links[li].tid;
                self.note_unacked(tid, p.id);
            }
        }
    }
}
