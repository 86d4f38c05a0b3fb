//! The state signals a producer offers: [`StateWatch`], the latest state
//! (it may skip states that came and went between two reads), and
//! [`Transitions`], every transition in order, none skipped. Both are fed
//! under the shared lock by [`Inner::record_transition`].

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::state::State;

use super::shared::{Inner, Shared, register};

/// One state transition, as [`Transitions`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
}

/// The transitions not yet read by one [`Transitions`] subscriber.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    id: u64,
    pending: VecDeque<Transition>,
    waker: Option<Waker>,
}

impl Inner {
    /// The state changed: the latest-state watchers are woken, and every
    /// transition subscriber gets the transition.
    pub(crate) fn record_transition(&mut self, from: State, to: State, wake: &mut Vec<Waker>) {
        self.state = (to, self.state.1 + 1);
        wake.append(&mut self.state_watchers);
        for inbox in &mut self.inboxes {
            inbox.pending.push_back(Transition { from, to });
            wake.extend(inbox.waker.take());
        }
    }

    /// The producer stopped: transition readers learn the stream ended.
    pub(crate) fn wake_transition_readers(&mut self, wake: &mut Vec<Waker>) {
        wake.extend(self.inboxes.iter_mut().filter_map(|i| i.waker.take()));
    }
}

/// Follows a producer's state (see [`Producer::watch_state`]): each read
/// gives the latest state, skipping any that came and went since the last
/// read. For every transition in order, use [`Transitions`]. It does not
/// keep the producer open.
///
/// [`Producer::watch_state`]: crate::Producer::watch_state
pub struct StateWatch {
    shared: Arc<Shared>,
    seen: u64,
}

impl fmt::Debug for StateWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateWatch")
            .field("seen", &self.seen)
            .finish()
    }
}

impl StateWatch {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let seen = shared.lock().state.1;
        Self { shared, seen }
    }

    /// Waits for the next state change and returns the new state; `None`
    /// once the producer has stopped and no change will come.
    pub async fn changed(&mut self) -> Option<State> {
        poll_fn(|cx| {
            let mut g = self.shared.lock();
            let (state, version) = g.state;
            if version != self.seen {
                self.seen = version;
                return Poll::Ready(Some(state));
            }
            if g.stopped {
                return Poll::Ready(None);
            }
            register(&mut g.state_watchers, cx.waker());
            Poll::Pending
        })
        .await
    }
}

/// Every state transition of a producer from the moment it was made (see
/// [`Producer::transitions`]), in order, none skipped, ending with the
/// producer. Transitions wait until read: read them, or drop this. It does
/// not keep the producer open.
///
/// [`Producer::transitions`]: crate::Producer::transitions
pub struct Transitions {
    shared: Arc<Shared>,
    id: u64,
}

impl fmt::Debug for Transitions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transitions").field("id", &self.id).finish()
    }
}

impl Transitions {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let id = {
            let mut g = shared.lock();
            g.next_inbox += 1;
            let id = g.next_inbox;
            g.inboxes.push(Inbox {
                id,
                ..Inbox::default()
            });
            id
        };
        Self { shared, id }
    }

    /// The next transition; `None` once the producer has stopped and all
    /// its transitions were read.
    pub async fn next(&mut self) -> Option<Transition> {
        poll_fn(|cx| {
            let mut g = self.shared.lock();
            let stopped = g.stopped;
            let Some(inbox) = g.inboxes.iter_mut().find(|i| i.id == self.id) else {
                return Poll::Ready(None);
            };
            if let Some(t) = inbox.pending.pop_front() {
                return Poll::Ready(Some(t));
            }
            if stopped {
                return Poll::Ready(None);
            }
            if !inbox
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inbox.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for Transitions {
    fn drop(&mut self) {
        self.shared.lock().inboxes.retain(|i| i.id != self.id);
    }
}
