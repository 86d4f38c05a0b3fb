//! The records the machine holds: those waiting to be sent and those in
//! flight, each kept sorted by id, with the byte and record counts that the
//! queue bounds apply to.
//!
//! Keeping both sides sorted by id is what preserves order: a record that
//! fails or whose link is lost goes back among the waiting ones at its id's
//! place, so nothing newer overtakes it.

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
    in_flight: VecDeque<Held>,
    bytes: usize,
    clock: AckClock,
}

impl RecordQueue {
    pub(crate) fn new(ack_timeout: Duration) -> Self {
        Self {
            waiting: VecDeque::new(),
            in_flight: VecDeque::new(),
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
        find(&self.waiting, id).or_else(|| find(&self.in_flight, id))
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
        let at = insert_sorted(&mut self.in_flight, held);
        self.in_flight.get(at)
    }

    /// Removes a record, wherever it is held.
    pub(crate) fn remove(&mut self, id: RecordId) -> Option<Held> {
        let held = match take_sorted(&mut self.in_flight, id) {
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
        match take_sorted(&mut self.in_flight, id) {
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
        let mut flying = std::mem::take(&mut self.in_flight).into_iter().peekable();
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
        self.in_flight.iter().map(|h| h.id).collect()
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
