//! The state the `Producer` handles and the driver task share: the machine,
//! the delivery slots, and the wakers of everyone waiting on them, behind
//! one mutex.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockResult};
use std::task::Waker;
use std::time::Instant;

use crate::event::Event;
use crate::machine::Machine;
use crate::record::{Record, RecordId};
use crate::state::State;
use crate::stats::Stats;

use super::delivery::{Completions, SlotWindow};
use super::monitor::Monitor;
use super::outcome::{DeadLetter, DeadLetterReason, DeliveryError};
use super::runtime::Runtime;
use super::spooling::Spooling;
use super::transitions::Inbox;

/// Receives every record that leaves the producer undelivered (except those
/// `close` hands back).
pub(crate) type DeadLetterSink = Arc<dyn Fn(DeadLetter) + Send + Sync>;

/// Shared between the handles and the driver.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) dead_letters: DeadLetterSink,
    /// The spool, if any.
    pub(crate) spool: Option<Spooling>,
    /// The producer's metrics.
    pub(crate) monitor: Monitor,
}

/// Everything behind the lock.
pub(crate) struct Inner {
    pub(crate) machine: Machine,
    pub(crate) slots: SlotWindow,
    /// Woken when the application gives the driver work.
    pub(crate) driver: Option<Waker>,
    /// Woken when records settle or the driver stops: blocked senders,
    /// flushes and closes.
    pub(crate) progress: Vec<Waker>,
    /// Woken when the state changes.
    pub(crate) state_watchers: Vec<Waker>,
    /// Transitions not yet read, per [`Transitions`](super::transitions::Transitions).
    pub(crate) inboxes: Vec<Inbox>,
    /// The id of the last inbox made.
    pub(crate) next_inbox: u64,
    /// The last state the driver reported, and how many changes so far.
    pub(crate) state: (State, u64),
    /// Records `close` hands back, once the driver has stopped.
    pub(crate) returned: Vec<Record>,
    /// The driver has stopped: nothing will settle any more.
    pub(crate) stopped: bool,
    /// Every handle was dropped without `close`: records not delivered by
    /// the grace period become dead letters instead of being handed back.
    pub(crate) abandoned: bool,
    /// With a spool: records the machine handed back at shutdown, kept until
    /// the spool's final sync says whether they stay in the spool (Durable)
    /// or go back to the application.
    pub(crate) spool_returns: Vec<(RecordId, Record)>,
    /// Why the driver stopped unexpectedly, if it did: the producer is then
    /// [`State::Failed`].
    pub(crate) failure: Option<String>,
}

impl Inner {
    /// The stats the application sees: the machine's, with the driver's
    /// failure and the spool's figures.
    pub(crate) fn stats(&self, now: Instant, spool: Option<&Spooling>) -> Stats {
        let mut stats = self.machine.stats(now);
        if let Some(reason) = &self.failure {
            stats.state = State::Failed;
            stats.last_error = Some(reason.clone());
        }
        stats.spool = spool.map(|s| s.figures(self.machine.last_id()));
        stats
    }

    /// The state the application sees: the machine's, unless the driver
    /// failed.
    pub(crate) fn public_state(&self) -> State {
        if self.failure.is_some() {
            State::Failed
        } else {
            self.machine.state()
        }
    }

    /// A record the machine handed back at shutdown goes back to the
    /// application (`close` returns it) or, when every handle was dropped,
    /// to the dead-letter handler.
    pub(crate) fn hand_back(
        &mut self,
        id: RecordId,
        record: Record,
        completions: &mut Completions,
        dead: &mut Vec<DeadLetter>,
    ) {
        if self.abandoned {
            completions.push(self.slots.take(id), Err(DeliveryError::Abandoned));
            dead.push(DeadLetter::new(id, record, DeadLetterReason::Abandoned));
        } else {
            completions.push(self.slots.take(id), Err(DeliveryError::Returned));
            self.returned.push(record);
        }
    }

    /// After the driver failed: ends the machine at once and turns every
    /// record it still held into a dead letter (when nobody is left to take
    /// them back with `close`).
    pub(crate) fn dead_letter_held(&mut self, now: Instant) -> Vec<DeadLetter> {
        let reason = self.failure.clone().unwrap_or_default();
        self.machine.shutdown(now, now);
        let mut dead = Vec::new();
        while let Some(event) = self.machine.poll_event() {
            if let Event::Returned { id, record } = event {
                dead.push(DeadLetter::new(
                    id,
                    *record,
                    DeadLetterReason::Failed(reason.clone()),
                ));
            }
        }
        dead
    }
}

/// Releases the lock, then wakes the driver if it waits for work.
pub(crate) fn unlock_and_wake_driver(mut g: MutexGuard<'_, Inner>) {
    let waker = g.driver.take();
    drop(g);
    if let Some(w) = waker {
        w.wake();
    }
}

impl Shared {
    pub(crate) fn new(
        machine: Machine,
        runtime: Arc<dyn Runtime>,
        dead_letters: DeadLetterSink,
        spool: Option<Spooling>,
    ) -> Self {
        let state = machine.state();
        let monitor = Monitor::new(machine.config());
        Self {
            inner: Mutex::new(Inner {
                machine,
                slots: SlotWindow::default(),
                driver: None,
                progress: Vec::new(),
                state_watchers: Vec::new(),
                inboxes: Vec::new(),
                next_inbox: 0,
                state: (state, 0),
                returned: Vec::new(),
                stopped: false,
                abandoned: false,
                spool_returns: Vec::new(),
                failure: None,
            }),
            runtime,
            dead_letters,
            spool,
            monitor,
        }
    }

    /// Copies the stats to the metrics (with the `metrics` feature).
    pub(crate) fn publish_metrics(&self, g: &Inner, now: Instant) {
        if cfg!(feature = "metrics") {
            let stats = g.stats(now, self.spool.as_ref());
            self.monitor.publish(&stats, g.machine.config().health());
        }
    }

    /// Locks the shared state. A panic while it was held cannot leave it
    /// half-updated in a way that loses records, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `letter` to the application's dead-letter handler. A panic in
    /// the handler is caught and logged: it must not stop the driver.
    pub(crate) fn dead_letter(&self, letter: DeadLetter) {
        let id = letter.id;
        let handler = &self.dead_letters;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| handler(letter))) {
            tracing::error!(
                %id,
                panic = panic_message(&*panic),
                "the dead-letter handler panicked; the record is lost to it"
            );
        }
    }

    /// Locks the shared state if nobody holds it.
    pub(crate) fn try_lock(&self) -> TryLockResult<MutexGuard<'_, Inner>> {
        self.inner.try_lock()
    }
}

/// Adds `waker` to `list` unless an equivalent one is there.
pub(crate) fn register(list: &mut Vec<Waker>, waker: &Waker) {
    if !list.iter().any(|w| w.will_wake(waker)) {
        list.push(waker.clone());
    }
}

/// Wakes and empties `list`.
pub(crate) fn wake_all(list: Vec<Waker>) {
    for w in list {
        w.wake();
    }
}

/// The message of a panic payload, as `std` prints it.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
