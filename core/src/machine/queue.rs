//! The records the machine holds, waiting or in flight, in one deque sorted
//! by id, with the byte and record counts that the queue bounds apply to.
//!
//! Keeping them sorted by id is what preserves order: a record that fails
//! or whose link is lost goes back to waiting in its place, so nothing
//! newer overtakes it.
//!
//! A record stays in its entry from acceptance until it settles: sending it
//! flips a flag instead of moving it (a held record is 184 bytes, and with
//! 100 000 queued it is long out of the cache by the time it is sent).
//! Acknowledgements come in id order per partition but interleaved across
//! partitions, so most of them are not for the oldest record; removing from
//! the middle of a `VecDeque` would shift up to half of it, so a removed
//! record leaves a tombstone, tombstones are trimmed at both ends, and the
//! deque is compacted when they outnumber the live records.

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

/// An entry: a held record, waiting or in flight, or a tombstone.
#[derive(Debug)]
struct Entry {
    id: RecordId,
    held: Option<Held>,
    in_flight: bool,
}

impl Entry {
    fn waiting(&self) -> Option<&Held> {
        self.held.as_ref().filter(|_| !self.in_flight)
    }
}

/// Tombstones tolerated beyond the number of live records before compacting.
const COMPACT_SLACK: usize = 1024;

/// Held records, waiting and in flight, sorted by id. Invariants: the first
/// and last entries are live (or there are none); every entry before `cursor`
/// is in flight or a tombstone; tombstones never exceed `live +
/// COMPACT_SLACK` for long.
#[derive(Debug)]
pub(crate) struct RecordQueue {
    entries: VecDeque<Entry>,
    /// No waiting record before this entry.
    cursor: usize,
    waiting: usize,
    in_flight: usize,
    bytes: usize,
    clock: AckClock,
}

impl RecordQueue {
    pub(crate) fn new(ack_timeout: Duration) -> Self {
        Self {
            entries: VecDeque::new(),
            cursor: 0,
            waiting: 0,
            in_flight: 0,
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
        self.waiting + self.in_flight
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, waiting or in flight.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn waiting_len(&self) -> usize {
        self.waiting
    }

    pub(crate) fn in_flight_len(&self) -> usize {
        self.in_flight
    }

    /// The held record with the smallest id (the oldest accepted).
    pub(crate) fn oldest(&self) -> Option<&Held> {
        self.entries.front().and_then(|s| s.held.as_ref())
    }

    /// Whether the oldest held record is waiting (not in flight).
    pub(crate) fn oldest_is_waiting(&self) -> bool {
        self.entries.front().is_some_and(|s| s.waiting().is_some())
    }

    /// The held record `id`, waiting or in flight.
    pub(crate) fn get(&self, id: RecordId) -> Option<&Held> {
        let at = self.position(id).ok()?;
        self.entries.get(at).and_then(|s| s.held.as_ref())
    }

    /// Appends a newly accepted record; its id is above every held one.
    #[inline]
    pub(crate) fn push_new(&mut self, held: Held) {
        debug_assert!(self.entries.back().is_none_or(|b| b.id < held.id));
        self.bytes += held.size;
        self.waiting += 1;
        self.entries.push_back(Entry {
            id: held.id,
            held: Some(held),
            in_flight: false,
        });
    }

    /// Puts the first waiting record in flight at `now` and returns it.
    #[inline]
    pub(crate) fn send_next(&mut self, now: Instant) -> Option<&Held> {
        if self.waiting == 0 {
            return None;
        }
        let at = self.first_waiting()?;
        self.cursor = at + 1;
        let bucket = self.clock.sent(now);
        let entry = self.entries.get_mut(at)?;
        entry.in_flight = true;
        self.waiting -= 1;
        self.in_flight += 1;
        let held = entry.held.as_mut()?;
        held.bucket = bucket;
        Some(held)
    }

    /// The id of the record [`RecordQueue::send_next`] would send.
    pub(crate) fn next_waiting_id(&mut self) -> Option<RecordId> {
        if self.waiting == 0 {
            return None;
        }
        let at = self.first_waiting()?;
        self.entries.get(at).map(|s| s.id)
    }

    /// Like [`RecordQueue::next_waiting_id`], without moving the cursor.
    #[inline]
    pub(crate) fn peek_waiting_id(&self) -> Option<RecordId> {
        if self.waiting == 0 {
            return None;
        }
        self.entries
            .range(self.cursor..)
            .find(|s| s.waiting().is_some())
            .map(|s| s.id)
    }

    /// Removes a record, wherever it is held.
    pub(crate) fn remove(&mut self, id: RecordId) -> Option<Held> {
        let at = self.position(id).ok()?;
        let entry = self.entries.get_mut(at)?;
        let held = entry.held.take()?;
        let in_flight = entry.in_flight;
        self.removed(in_flight, held.size, held.bucket);
        Some(held)
    }

    /// Removes a record and drops it where it lies, sparing the copy of
    /// [`RecordQueue::remove`]; its size and acceptance time, or `None`
    /// when it is not held.
    #[inline]
    pub(crate) fn discard(&mut self, id: RecordId) -> Option<(usize, Instant)> {
        let entry = self
            .position(id)
            .ok()
            .and_then(|at| self.entries.get_mut(at))?;
        let &Held {
            size,
            bucket,
            accepted_at,
            ..
        } = entry.held.as_ref()?;
        let in_flight = entry.in_flight;
        entry.held = None;
        self.removed(in_flight, size, bucket);
        Some((size, accepted_at))
    }

    /// Updates the counts for a removed record, then trims tombstones.
    #[inline]
    fn removed(&mut self, in_flight: bool, size: usize, bucket: u64) {
        if in_flight {
            self.in_flight -= 1;
            self.clock.settled(bucket);
        } else {
            self.waiting -= 1;
        }
        self.bytes -= size;
        self.tidy();
    }

    /// Moves an in-flight record back to waiting, in its place. Returns
    /// false when it was not in flight.
    pub(crate) fn requeue(&mut self, id: RecordId) -> bool {
        let Ok(at) = self.position(id) else {
            return false;
        };
        let Some(entry) = self.entries.get_mut(at) else {
            return false;
        };
        let Some(held) = entry.held.as_ref().filter(|_| entry.in_flight) else {
            return false;
        };
        self.clock.settled(held.bucket);
        entry.in_flight = false;
        self.in_flight -= 1;
        self.waiting += 1;
        self.cursor = self.cursor.min(at);
        true
    }

    /// Moves every in-flight record back to waiting, in order. Returns how
    /// many moved.
    pub(crate) fn requeue_all(&mut self) -> usize {
        let moved = self.in_flight;
        if moved == 0 {
            return 0;
        }
        self.clock.clear();
        for entry in &mut self.entries {
            entry.in_flight = false;
        }
        self.waiting += moved;
        self.in_flight = 0;
        self.cursor = 0;
        moved
    }

    /// Removes the oldest waiting (not in flight) record.
    pub(crate) fn pop_oldest_waiting(&mut self) -> Option<Held> {
        if self.waiting == 0 {
            return None;
        }
        let at = self.first_waiting()?;
        let held = self.entries.get_mut(at)?.held.take()?;
        self.removed(false, held.size, held.bucket);
        Some(held)
    }

    /// Removes every held record, in id order.
    pub(crate) fn take_all(&mut self) -> Vec<Held> {
        self.requeue_all();
        self.bytes = 0;
        self.waiting = 0;
        self.cursor = 0;
        std::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|s| s.held)
            .collect()
    }

    /// Ids currently in flight, in order (for tests and checks).
    #[cfg(test)]
    pub(crate) fn in_flight_ids(&self) -> Vec<RecordId> {
        self.entries
            .iter()
            .filter(|s| s.in_flight && s.held.is_some())
            .map(|s| s.id)
            .collect()
    }

    /// The first waiting entry at or after the cursor (there is none
    /// before it); moves the cursor there.
    fn first_waiting(&mut self) -> Option<usize> {
        let offset = self
            .entries
            .range(self.cursor..)
            .position(|s| s.waiting().is_some())?;
        self.cursor += offset;
        Some(self.cursor)
    }

    /// Trims tombstones at both ends; compacts when they pile up.
    fn tidy(&mut self) {
        while self.entries.front().is_some_and(|s| s.held.is_none()) {
            self.entries.pop_front();
            self.cursor = self.cursor.saturating_sub(1);
        }
        while self.entries.back().is_some_and(|s| s.held.is_none()) {
            self.entries.pop_back();
        }
        self.cursor = self.cursor.min(self.entries.len());
        if self.entries.len() > 2 * self.len() + COMPACT_SLACK {
            // The cursor stays valid: compaction keeps the order, and no
            // waiting entry lies before it.
            let before = self
                .entries
                .range(..self.cursor)
                .filter(|s| s.held.is_some())
                .count();
            self.entries.retain(|s| s.held.is_some());
            self.cursor = before;
        }
    }

    /// The entry of `id`, or where it would go. Records are accepted in id
    /// order and tombstones keep their place, so entry ids are usually
    /// consecutive and `id - front` finds the entry at once. A compaction (or
    /// ids the overflow policy dropped before they were held) leaves gaps
    /// below the records accepted after it, which `back - id` still finds at
    /// once; the rest need a binary search.
    #[inline]
    fn position(&self, id: RecordId) -> Result<usize, usize> {
        let (Some(front), Some(back)) = (self.entries.front(), self.entries.back()) else {
            return Err(0);
        };
        let from_front = id.0.checked_sub(front.id.0);
        let from_back = back.id.0.checked_sub(id.0).and_then(|d| {
            let d = usize::try_from(d).ok()?;
            (self.entries.len() - 1).checked_sub(d)
        });
        for guess in [from_front.and_then(|d| usize::try_from(d).ok()), from_back] {
            if let Some(at) = guess
                && self.entries.get(at).is_some_and(|s| s.id == id)
            {
                return Ok(at);
            }
        }
        self.entries.binary_search_by_key(&id, |s| s.id)
    }
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
    #[cfg(target_pointer_width = "64")]
    fn a_held_record_is_the_size_the_module_doc_says() {
        assert_eq!(std::mem::size_of::<Held>(), 184);
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
                // Half the lanes discard (as acknowledgements do), half remove.
                if lane % 2 == 0 {
                    assert!(q.discard(RecordId(id)).is_some());
                } else {
                    assert_eq!(q.remove(RecordId(id)).map(|h| h.id), Some(RecordId(id)));
                }
            }
        }
        assert_eq!(q.in_flight_len(), 1);
        assert_eq!(q.len(), 1);
        assert_eq!(q.bytes(), 11);
        assert!(q.entries.len() <= 2 * q.len() + COMPACT_SLACK);
        assert_eq!(q.oldest().map(|h| h.id), Some(RecordId(1)));
        assert_eq!(q.in_flight_ids(), [RecordId(1)]);
        assert!(q.remove(RecordId(2)).is_none(), "already removed");
        assert!(q.discard(RecordId(3)).is_none(), "already discarded");
        assert!(q.remove(RecordId(1)).is_some());
        assert!(q.is_empty());
        assert!(q.entries.is_empty());
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

    #[test]
    fn the_oldest_waiting_record_is_found_behind_records_in_flight() {
        let now = Instant::now();
        let mut q = RecordQueue::new(Duration::from_secs(30));
        for id in 1..=6 {
            q.push_new(held(id, now));
        }
        for _ in 0..4 {
            assert!(q.send_next(now).is_some());
        }
        assert!(!q.oldest_is_waiting());
        // 5 and 6 wait behind 1..=4 in flight; 2 goes back to waiting.
        assert!(q.requeue(RecordId(2)));
        assert_eq!((q.waiting_len(), q.in_flight_len()), (3, 3));
        assert_eq!(q.pop_oldest_waiting().map(|h| h.id), Some(RecordId(2)));
        assert_eq!(q.pop_oldest_waiting().map(|h| h.id), Some(RecordId(5)));
        assert_eq!(q.send_next(now).map(|h| h.id), Some(RecordId(6)));
        assert!(q.send_next(now).is_none());
        assert_eq!(q.in_flight_ids(), [1, 3, 4, 6].map(RecordId));
        assert_eq!(q.bytes(), 4 * 11);
        // Removals in the middle leave tombstones; lookups and order hold.
        assert!(q.remove(RecordId(3)).is_some());
        assert!(q.discard(RecordId(4)).is_some());
        assert_eq!((q.waiting_len(), q.in_flight_len()), (0, 2));
        assert_eq!(q.get(RecordId(6)).map(|h| h.id), Some(RecordId(6)));
        assert_eq!(q.requeue_all(), 2);
        let order: Vec<_> = q.take_all().into_iter().map(|h| h.id.0).collect();
        assert_eq!(order, [1, 6]);
    }
}
