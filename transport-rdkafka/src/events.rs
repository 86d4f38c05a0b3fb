//! The hand-over of transport events from librdkafka's threads (delivery
//! callbacks on the poll thread, the probe thread) to the async side, with
//! no async runtime: a mutex-guarded queue plus the waker of the one task
//! that waits on it.
//!
//! Every event is tagged with the generation of the session it belongs to.
//! Events of an older generation are dropped on push and again on pop, which
//! is how the transport keeps the contract that, after `connect`, nothing is
//! reported about earlier hand-offs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use robust_producer::TransportEvent;

use crate::metrics::Counters;

/// An event and the generation of the session it is about.
pub(crate) type Tagged = (u64, TransportEvent);

#[derive(Default)]
struct Pending {
    events: VecDeque<Tagged>,
    waker: Option<Waker>,
}

/// Events waiting for the transport's owner.
pub(crate) struct EventQueue {
    pending: Mutex<Pending>,
    /// The generation whose events are wanted.
    current: AtomicU64,
    counters: std::sync::Arc<Counters>,
}

impl EventQueue {
    pub(crate) fn new(counters: std::sync::Arc<Counters>) -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            current: AtomicU64::new(0),
            counters,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `generation` the wanted one; older events will be dropped.
    pub(crate) fn set_generation(&self, generation: u64) {
        self.current.store(generation, Ordering::Release);
    }

    /// The wanted generation.
    pub(crate) fn generation(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// Queues an event of session `generation` and wakes the waiting task.
    pub(crate) fn push(&self, generation: u64, event: TransportEvent) {
        if generation != self.generation() {
            self.counters.stale_events.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let waker = {
            let mut g = self.lock();
            g.events.push_back((generation, event));
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Moves every queued event to `into` (which must be empty), in order.
    /// One lock for the whole batch.
    pub(crate) fn take_all(&self, into: &mut VecDeque<Tagged>) {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut self.lock().events, into);
    }

    /// Moves every queued event to `into` if there are any (`Ready`);
    /// otherwise registers `cx`'s waker, under the same lock as `push`, so no
    /// wake-up is lost (`Pending`).
    pub(crate) fn take_or_register(
        &self,
        into: &mut VecDeque<Tagged>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let mut g = self.lock();
        if g.events.is_empty() {
            if !g.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                g.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        std::mem::swap(&mut g.events, into);
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn stale_generations_are_dropped() {
        let q = EventQueue::new(Arc::new(Counters::default()));
        q.set_generation(2);
        q.push(1, TransportEvent::Connected);
        q.push(2, TransportEvent::Ready);
        let mut out = VecDeque::new();
        q.take_all(&mut out);
        assert_eq!(out, VecDeque::from([(2, TransportEvent::Ready)]));
    }
}
