//! When the oldest in-flight record was handed off, in O(1): in-flight
//! records are counted in time buckets of a fixed width, and the oldest
//! bucket with records still outstanding gives the ack deadline.
//!
//! A record whose acknowledgement is lost would otherwise stay in flight
//! while newer records keep being acknowledged; with this clock it is noticed
//! [`LOST_ACK_FACTOR`](super::LOST_ACK_FACTOR) times `ack_timeout` (plus at
//! most one bucket width) after its hand-off.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::time::deadline_after;

/// Buckets per `ack_timeout`: the deadline is late by at most 1/64 of it.
pub(crate) const BUCKETS_PER_TIMEOUT: u32 = 64;

#[derive(Debug)]
struct Bucket {
    start: Instant,
    outstanding: usize,
}

/// Outstanding in-flight records by hand-off time bucket.
#[derive(Debug)]
pub(crate) struct AckClock {
    width: Duration,
    /// Id of `buckets[0]`.
    base: u64,
    buckets: VecDeque<Bucket>,
}

impl AckClock {
    pub(crate) fn new(ack_timeout: Duration) -> Self {
        Self {
            width: (ack_timeout / BUCKETS_PER_TIMEOUT).max(Duration::from_micros(1)),
            base: 0,
            buckets: VecDeque::new(),
        }
    }

    /// A record is handed off at `now`; returns its bucket.
    #[inline]
    pub(crate) fn sent(&mut self, now: Instant) -> u64 {
        match self.buckets.back_mut() {
            Some(b) if now < deadline_after(b.start, self.width) => b.outstanding += 1,
            _ => self.buckets.push_back(Bucket {
                start: now,
                outstanding: 1,
            }),
        }
        self.base + self.buckets.len() as u64 - 1
    }

    /// A record of `bucket` left flight (acknowledged, failed, requeued).
    #[inline]
    pub(crate) fn settled(&mut self, bucket: u64) {
        let Some(at) = bucket.checked_sub(self.base) else {
            return;
        };
        if let Some(b) = usize::try_from(at)
            .ok()
            .and_then(|at| self.buckets.get_mut(at))
        {
            b.outstanding = b.outstanding.saturating_sub(1);
        }
        while self.buckets.front().is_some_and(|b| b.outstanding == 0) {
            self.buckets.pop_front();
            self.base += 1;
        }
    }

    /// Every in-flight record left flight at once.
    pub(crate) fn clear(&mut self) {
        self.base += self.buckets.len() as u64;
        self.buckets.clear();
    }

    /// The latest hand-off time of the oldest outstanding bucket.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.buckets
            .front()
            .map(|b| deadline_after(b.start, self.width))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_outstanding_bucket_gives_the_deadline() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = AckClock::new(ms(640)); // 10 ms buckets
        let a = c.sent(t0);
        let b = c.sent(t0 + ms(5));
        let later = c.sent(t0 + ms(100));
        assert_eq!(a, b);
        assert_eq!(c.oldest(), Some(t0 + ms(10)));
        c.settled(a);
        assert_eq!(
            c.oldest(),
            Some(t0 + ms(10)),
            "one left in the first bucket"
        );
        c.settled(b);
        assert_eq!(c.oldest(), Some(t0 + ms(110)));
        c.settled(later);
        assert_eq!(c.oldest(), None);
        let again = c.sent(t0 + ms(200));
        c.clear();
        c.settled(again); // stale: ignored
        assert_eq!(c.oldest(), None);
    }
}
