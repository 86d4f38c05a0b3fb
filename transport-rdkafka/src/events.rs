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
        if let Some(w) = self
            .enqueue(generation, event)
            .and_then(|mut g| g.waker.take())
        {
            w.wake();
        }
    }

    /// Queues an event of session `generation` without waking anyone: for
    /// the delivery reports of one `poll` call, which end with one
    /// [`notify`](Self::notify) instead of one wake-up per report (a waiting
    /// task would otherwise be woken, run and re-register once per report).
    pub(crate) fn push_quietly(&self, generation: u64, event: TransportEvent) {
        let _ = self.enqueue(generation, event);
    }

    /// Wakes the waiting task, events or not (to have it poll).
    pub(crate) fn wake_owner(&self) {
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Wakes the waiting task if events are queued.
    pub(crate) fn notify(&self) {
        let waker = {
            let mut g = self.lock();
            if g.events.is_empty() {
                return;
            }
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues the event unless it is stale; returns the lock it took.
    fn enqueue(&self, generation: u64, event: TransportEvent) -> Option<MutexGuard<'_, Pending>> {
        if generation != self.generation() {
            self.counters.stale_events.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut g = self.lock();
        g.events.push_back((generation, event));
        Some(g)
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

    /// Counts its wake-ups.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn quiet_pushes_wake_once_on_notify() {
        let q = EventQueue::new(Arc::new(Counters::default()));
        q.set_generation(1);
        let count = Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut out = VecDeque::new();
        assert!(q.take_or_register(&mut out, &mut cx).is_pending());
        q.notify(); // nothing queued: no wake-up
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        q.push_quietly(1, TransportEvent::Ready);
        q.push_quietly(1, TransportEvent::Connected);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        q.notify();
        q.notify(); // the waker was used up
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(q.take_or_register(&mut out, &mut cx).is_ready());
        assert_eq!(out.len(), 2);
    }
}
