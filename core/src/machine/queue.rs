//! The records the machine holds: those waiting to be sent and those in
//! flight, each kept sorted by id, with the byte and record counts that the
//! queue bounds apply to.
//!
//! Keeping both sides sorted by id is what preserves order: a record that
//! fails or whose link is lost goes back among the waiting ones at its id's
//! place, so nothing newer overtakes it.
//!
//! Acknowledgements come in id order per partition but interleaved across
//! partitions, so most of them are not for the oldest record in flight.
//! Removing from the middle of a `VecDeque` would shift up to half of it
//! per acknowledgement (about a third of a megabyte with 10 000 records in
//! flight); the in-flight side therefore leaves a tombstone in place of a
//! removed record, trims tombstones at both ends, and compacts when they
//! outnumber the live records.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::ack_clock::AckClock;
use crate::record::{Record, RecordId};

/// One held record.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) id: RecordId,
    pub(crate) record: Record,
    pub(crate) size: usize,
    pub(crate) accepted_at: Instant,
    /// Hand-off time bucket, while in flight.
    pub(crate) bucket: u64,
}

/// Waiting and in-flight records, both sorted by id.
#[derive(Debug)]
pub(crate) struct RecordQueue {
    waiting: VecDeque<Held>,
    in_flight: InFlight,
    bytes: usize,
    clock: AckClock,
}

/// In-flight records sorted by id, with tombstones (`None`) where records
/// were removed. Invariant: the first and last slots are live (or there are
/// none), and tombstones never exceed `live + COMPACT_SLACK` for long.
#[derive(Debug, Default)]
struct InFlight {
    slots: VecDeque<(RecordId, Option<Held>)>,
    live: usize,
}

/// Tombstones tolerated beyond the number of live records before compacting.
const COMPACT_SLACK: usize = 1024;

impl InFlight {
    fn len(&self) -> usize {
        self.live
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn front(&self) -> Option<&Held> {
        self.slots.front().and_then(|(_, h)| h.as_ref())
    }

    /// The slot of `id`, or where it would go. Records are sent in id order
    /// and tombstones keep their place, so slot ids are usually consecutive
    /// and `id - front` finds the slot at once. A compaction leaves gaps
    /// below the records sent after it, which `back - id` still finds at
    /// once; only the compacted ones need a binary search.
    fn position(&self, id: RecordId) -> Result<usize, usize> {
        let (Some((front, _)), Some((back, _))) = (self.slots.front(), self.slots.back()) else {
            return Err(0);
        };
        let from_front = id.0.checked_sub(front.0);
        let from_back = back.0.checked_sub(id.0).and_then(|d| {
            let d = usize::try_from(d).ok()?;
            (self.slots.len() - 1).checked_sub(d)
        });
        for guess in [from_front.and_then(|d| usize::try_from(d).ok()), from_back] {
            if let Some(at) = guess
                && self.slots.get(at).is_some_and(|(i, _)| *i == id)
            {
                return Ok(at);
            }
        }
        self.slots.binary_search_by_key(&id, |(i, _)| *i)
    }

    /// Inserts at its id's place (reusing its own tombstone if it has one);
    /// returns the slot.
    fn insert(&mut self, held: Held) -> usize {
        self.live += 1;
        let id = held.id;
        if self.slots.back().is_none_or(|(b, _)| *b < id) {
            self.slots.push_back((id, Some(held)));
            return self.slots.len() - 1;
        }
        match self.position(id) {
            Ok(at) => {
                debug_assert!(self.slots[at].1.is_none(), "{id} is already in flight");
                self.slots[at].1 = Some(held);
                at
            }
            Err(at) => {
                self.slots.insert(at, (id, Some(held)));
                at
            }
        }
    }

    fn get(&self, at: usize) -> Option<&Held> {
        self.slots.get(at).and_then(|(_, h)| h.as_ref())
    }

    fn take(&mut self, id: RecordId) -> Option<Held> {
        let at = self.position(id).ok()?;
        let held = self.slots[at].1.take()?;
        self.live -= 1;
        while self.slots.front().is_some_and(|(_, h)| h.is_none()) {
            self.slots.pop_front();
        }
        while self.slots.back().is_some_and(|(_, h)| h.is_none()) {
            self.slots.pop_back();
        }
        if self.slots.len() > 2 * self.live + COMPACT_SLACK {
            self.slots.retain(|(_, h)| h.is_some());
        }
        Some(held)
    }

    /// Removes every live record, in id order.
    fn take_all(&mut self) -> impl Iterator<Item = Held> + use<> {
        self.live = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .filter_map(|(_, h)| h)
    }

    #[cfg(test)]
    fn ids(&self) -> Vec<RecordId> {
        self.slots
            .iter()
            .filter(|(_, h)| h.is_some())
            .map(|(id, _)| *id)
            .collect()
    }
}

impl RecordQueue {
    pub(crate) fn new(ack_timeout: Duration) -> Self {
        Self {
            waiting: VecDeque::new(),
            in_flight: InFlight::default(),
            bytes: 0,
            clock: AckClock::new(ack_timeout),
        }
    }

    /// The latest hand-off time among the oldest in-flight records.
    pub(crate) fn oldest_hand_off(&self) -> Option<Instant> {
        self.clock.oldest()
    }

    /// Records held, waiting or in flight.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }

    /// Bytes held, waiting or in flight.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    pub(crate) fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// The held record with the smallest id (the oldest accepted).
    pub(crate) fn oldest(&self) -> Option<&Held> {
        match (self.waiting.front(), self.in_flight.front()) {
            (Some(w), Some(f)) => Some(if w.id < f.id { w } else { f }),
            (w, f) => w.or(f),
        }
    }

    /// Whether the oldest held record is waiting (not in flight).
    pub(crate) fn oldest_is_waiting(&self) -> bool {
        match (self.waiting.front(), self.in_flight.front()) {
            (Some(w), Some(f)) => w.id < f.id,
            (w, _) => w.is_some(),
        }
    }

    /// The held record `id`, waiting or in flight.
    pub(crate) fn get(&self, id: RecordId) -> Option<&Held> {
        fn find(q: &VecDeque<Held>, id: RecordId) -> Option<&Held> {
            // A record just accepted is last among the waiting ones.
            if q.back().is_some_and(|b| b.id == id) {
                return q.back();
            }
            position(q, id).ok().and_then(|at| q.get(at))
        }
        find(&self.waiting, id).or_else(|| {
            let at = self.in_flight.position(id).ok()?;
            self.in_flight.get(at)
        })
    }

    /// Appends a newly accepted record; its id is above every held one.
    pub(crate) fn push_new(&mut self, held: Held) {
        debug_assert!(self.waiting.back().is_none_or(|b| b.id < held.id));
        self.bytes += held.size;
        self.waiting.push_back(held);
    }

    /// Moves the first waiting record in flight at `now` and returns it.
    pub(crate) fn send_next(&mut self, now: Instant) -> Option<&Held> {
        let mut held = self.waiting.pop_front()?;
        held.bucket = self.clock.sent(now);
        let at = self.in_flight.insert(held);
        self.in_flight.get(at)
    }

    /// Removes a record, wherever it is held.
    pub(crate) fn remove(&mut self, id: RecordId) -> Option<Held> {
        let held = match self.in_flight.take(id) {
            Some(held) => {
                self.clock.settled(held.bucket);
                held
            }
            None => take_sorted(&mut self.waiting, id)?,
        };
        self.bytes -= held.size;
        Some(held)
    }

    /// Moves an in-flight record back among the waiting ones, at its place.
    /// Returns false when it was not in flight.
    pub(crate) fn requeue(&mut self, id: RecordId) -> bool {
        match self.in_flight.take(id) {
            Some(held) => {
                self.clock.settled(held.bucket);
                insert_sorted(&mut self.waiting, held);
                true
            }
            None => false,
        }
    }

    /// Moves every in-flight record back among the waiting ones, in order.
    /// Returns how many moved.
    pub(crate) fn requeue_all(&mut self) -> usize {
        let moved = self.in_flight.len();
        if moved == 0 {
            return 0;
        }
        self.clock.clear();
        let mut merged = VecDeque::with_capacity(self.len());
        let mut flying = self.in_flight.take_all().peekable();
        let mut waiting = std::mem::take(&mut self.waiting).into_iter().peekable();
        loop {
            let take_flying = match (flying.peek(), waiting.peek()) {
                (Some(f), Some(w)) => f.id < w.id,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_flying {
                flying.next()
            } else {
                waiting.next()
            };
            merged.extend(next);
        }
        self.waiting = merged;
        moved
    }

    /// Removes the oldest waiting (not in flight) record.
    pub(crate) fn pop_oldest_waiting(&mut self) -> Option<Held> {
        let held = self.waiting.pop_front()?;
        self.bytes -= held.size;
        Some(held)
    }

    /// Removes every held record, in id order.
    pub(crate) fn take_all(&mut self) -> Vec<Held> {
        self.requeue_all();
        self.bytes = 0;
        std::mem::take(&mut self.waiting).into()
    }

    /// Ids currently in flight, in order (for tests and checks).
    #[cfg(test)]
    pub(crate) fn in_flight_ids(&self) -> Vec<RecordId> {
        self.in_flight.ids()
    }
}

fn position(q: &VecDeque<Held>, id: RecordId) -> Result<usize, usize> {
    // Acknowledgements mostly arrive in order: check the front first.
    match q.front() {
        Some(front) if front.id == id => Ok(0),
        _ => q.binary_search_by_key(&id, |h| h.id),
    }
}

fn take_sorted(q: &mut VecDeque<Held>, id: RecordId) -> Option<Held> {
    position(q, id).ok().and_then(|at| q.remove(at))
}

fn insert_sorted(q: &mut VecDeque<Held>, held: Held) -> usize {
    if q.back().is_none_or(|b| b.id < held.id) {
        q.push_back(held);
        return q.len() - 1;
    }
    let at = position(q, held.id).unwrap_or_else(|at| at);
    q.insert(at, held);
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: u64, now: Instant) -> Held {
        Held {
            id: RecordId(id),
            record: Record::new("t", vec![0; 10]),
            size: 11,
            accepted_at: now,
            bucket: 0,
        }
    }

    fn queue_with_all_in_flight(n: u64) -> RecordQueue {
        let now = Instant::now();
        let mut q = RecordQueue::new(Duration::from_secs(30));
        for id in 1..=n {
            q.push_new(held(id, now));
        }
        for _ in 1..=n {
            assert!(q.send_next(now).is_some());
        }
        q
    }

    #[test]
    fn interleaved_acks_leave_order_and_counts_intact() {
        // Acks per "partition" (id mod 8), partitions interleaved; record 1
        // is never acknowledged, so tombstones pile up behind it and get
        // compacted.
        let n = 20_000;
        let mut q = queue_with_all_in_flight(n);
        for lane in 0..8 {
            for id in (1..=n).filter(|i| i % 8 == lane && *i != 1) {
                assert_eq!(q.remove(RecordId(id)).map(|h| h.id), Some(RecordId(id)));
            }
        }
        assert_eq!(q.in_flight_len(), 1);
        assert_eq!(q.len(), 1);
        assert_eq!(q.bytes(), 11);
        assert!(q.in_flight.slots.len() <= 2 * q.in_flight.len() + COMPACT_SLACK);
        assert_eq!(q.oldest().map(|h| h.id), Some(RecordId(1)));
        assert_eq!(q.in_flight_ids(), [RecordId(1)]);
        assert!(q.remove(RecordId(2)).is_none(), "already removed");
        assert!(q.remove(RecordId(1)).is_some());
        assert!(q.is_empty());
        assert!(q.in_flight.slots.is_empty());
    }

    #[test]
    fn requeued_record_is_resent_into_its_place() {
        let mut q = queue_with_all_in_flight(10);
        assert!(q.requeue(RecordId(5)));
        assert!(!q.requeue(RecordId(5)), "no longer in flight");
        assert_eq!(q.waiting_len(), 1);
        assert_eq!(q.send_next(Instant::now()).map(|h| h.id), Some(RecordId(5)));
        assert_eq!(
            q.in_flight_ids(),
            (1..=10).map(RecordId).collect::<Vec<_>>()
        );
        for id in [2, 4, 6] {
            q.remove(RecordId(id));
        }
        assert_eq!(q.requeue_all(), 7);
        let order: Vec<_> = q.take_all().into_iter().map(|h| h.id.0).collect();
        assert_eq!(order, [1, 3, 5, 7, 8, 9, 10]);
        assert_eq!(q.bytes(), 0);
    }
}
