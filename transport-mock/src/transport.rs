//! [`MockTransport`]: the [`Transport`] a producer under test talks to. It
//! is one client of a [`MockBroker`]; all the behaviour lives in the broker.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use robust_producer::{
    BoxFuture, Record, RecordId, Runtime, Transport, TransportError, TransportEvent, deadline_after,
};

use crate::broker::MockBroker;
use crate::idset::IdSet;
use crate::log::TransportId;
use crate::state::{Shared, lock};

/// A fault-injecting in-memory [`Transport`], created by
/// [`MockBroker::transport`]. Hand it to a producer; steer faults and
/// inspect what was stored through the broker.
///
/// It keeps the [transport contract](robust_producer::transport) exactly:
/// `connect` abandons the previous session and nothing about a record
/// handed off before it is reported afterwards; `send` only hands off; per
/// partition the stored records are a prefix of each session's hand-offs;
/// [`Transport::next_event`] is cancel-safe (events move into the
/// transport before one is returned, and the waker is stored in the broker,
/// which wakes it when a fault verb queues an event or a delay ends).
///
/// Events are taken from the broker in batches, one lock per batch:
/// [`Transport::try_next_event`] drains them without waiting.
pub struct MockTransport {
    shared: Arc<Mutex<Shared>>,
    index: usize,
    id: TransportId,
    /// Events taken from the broker, not yet returned to the core.
    inbox: VecDeque<TransportEvent>,
    /// Records whose acknowledgement was returned to the core.
    acked: IdSet,
    runtime: Option<Arc<dyn Runtime>>,
    timer: Option<(Instant, BoxFuture)>,
}

impl MockTransport {
    pub(crate) fn new(shared: Arc<Mutex<Shared>>) -> Self {
        let (index, id, runtime) = {
            let mut s = lock(&shared);
            let (index, id) = s.add_link();
            (index, id, s.runtime())
        };
        Self {
            shared,
            index,
            id,
            inbox: VecDeque::new(),
            acked: IdSet::default(),
            runtime,
            timer: None,
        }
    }

    /// This transport's id in the broker's log.
    pub fn id(&self) -> TransportId {
        self.id
    }

    /// The broker this transport talks to.
    pub fn broker(&self) -> MockBroker {
        MockBroker::from_shared(Arc::clone(&self.shared))
    }

    fn pop_inbox(&mut self) -> Option<TransportEvent> {
        let event = self.inbox.pop_front()?;
        if let TransportEvent::Delivered(ack) = &event {
            self.acked.insert(ack.id.0);
        }
        Some(event)
    }

    /// Acknowledgements taken from the broker but not returned to the core.
    fn unreported(inbox: &VecDeque<TransportEvent>) -> impl Iterator<Item = RecordId> + '_ {
        inbox.iter().filter_map(|e| match e {
            TransportEvent::Delivered(ack) => Some(ack.id),
            _ => None,
        })
    }

    /// Arms the timer for `at` (with a runtime clock) and polls it; true
    /// when it has fired.
    fn poll_timer(&mut self, at: Option<Instant>, cx: &mut Context<'_>) -> bool {
        let (Some(at), Some(rt)) = (at, &self.runtime) else {
            self.timer = None;
            return false;
        };
        if self.timer.as_ref().is_none_or(|(t, _)| *t != at) {
            self.timer = Some((at, rt.sleep_until(at)));
        }
        let fired = self
            .timer
            .as_mut()
            .is_some_and(|(_, sleep)| sleep.as_mut().poll(cx).is_ready());
        if fired {
            self.timer = None;
        }
        fired
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<TransportEvent> {
        loop {
            if let Some(event) = self.pop_inbox() {
                return Poll::Ready(event);
            }
            let next = {
                let mut s = lock(&self.shared);
                let now = s.now();
                s.refill(self.index, &mut self.inbox, now);
                if !self.inbox.is_empty() {
                    continue;
                }
                let link = &mut s.links[self.index];
                if !link.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    link.waker = Some(cx.waker().clone());
                }
                s.next_timer(self.index)
            };
            if self.poll_timer(next, cx) {
                continue;
            }
            return Poll::Pending;
        }
    }

    fn poll_close(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let next = {
                let mut s = lock(&self.shared);
                let now = s.now();
                s.run_due_on_link(self.index, now);
                let wait = s.close_wait(self.index, deadline);
                if wait.is_none() || now >= deadline || self.runtime.is_none() {
                    s.close_link(self.index, Self::unreported(&self.inbox));
                    self.inbox.clear();
                    self.timer = None;
                    return Poll::Ready(());
                }
                s.links[self.index].waker = Some(cx.waker().clone());
                wait
            };
            if self.poll_timer(next, cx) {
                continue;
            }
            return Poll::Pending;
        }
    }
}

#[async_trait]
impl Transport for MockTransport {
    /// Starts a new session: everything of the previous one (unreported
    /// events, unprocessed records) is dropped. The broker then refuses it
    /// ([`TransportEvent::ConnectFailed`]), lets it hang (partition: no
    /// event until [`MockBroker::heal`]), or accepts it after its delay
    /// ([`TransportEvent::Connected`]).
    fn connect(&mut self) {
        self.timer = None;
        let mut s = lock(&self.shared);
        let now = s.now();
        s.connect(self.index, Self::unreported(&self.inbox), now);
        self.inbox.clear();
    }

    /// Hands a record off. Fails with [`ErrorClass::Link`](robust_producer::ErrorClass::Link)
    /// when no session is up (never connected, refused, reset, closed) and
    /// with [`ErrorClass::Backpressure`](robust_producer::ErrorClass::Backpressure)
    /// beyond the capacity set by [`MockBroker::backpressure`].
    fn send(&mut self, id: RecordId, record: &Record) -> Result<(), TransportError> {
        let resent_after_ack = self.acked.contains(id.0);
        let mut s = lock(&self.shared);
        let now = s.now();
        s.send(self.index, id, record, resent_after_ack, now)
    }

    fn try_next_event(&mut self) -> Option<TransportEvent> {
        if let Some(event) = self.pop_inbox() {
            return Some(event);
        }
        {
            let mut s = lock(&self.shared);
            let now = s.now();
            s.refill(self.index, &mut self.inbox, now);
        }
        self.pop_inbox()
    }

    async fn next_event(&mut self) -> TransportEvent {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Waits, up to `timeout` on the broker's runtime clock, for the
    /// records the broker is still delaying or holding to be processed
    /// (they are stored; their outcomes are not reported), then ends the
    /// session. Returns at once with the manual clock. A later `connect`
    /// opens the transport again.
    async fn close(&mut self, timeout: Duration) {
        let deadline = {
            let s = lock(&self.shared);
            deadline_after(s.now(), timeout)
        };
        poll_fn(|cx| self.poll_close(deadline, cx)).await;
    }
}

impl Drop for MockTransport {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        s.close_link(self.index, Self::unreported(&self.inbox));
    }
}

impl fmt::Debug for MockTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockTransport")
            .field("id", &self.id)
            .field("unreported_events", &self.inbox.len())
            .finish_non_exhaustive()
    }
}
