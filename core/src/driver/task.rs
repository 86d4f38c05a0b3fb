//! The driver task: owns the transport and a timer, feeds the machine, and
//! settles delivery handles. It is one future, runnable on any executor.
//!
//! Each round: (1) drain transport events, (2) fire due timers, (3) carry
//! out the machine's commands, (4) dispatch its events: handle outcomes,
//! dead letters, wake-ups and settled records for the spool, (5) arm the
//! timer for the next deadline.
//! Rounds repeat while there is work, yielding to the executor every few
//! rounds, and the task sleeps when there is none.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::event::{Command, Event};
use crate::machine::Machine;
use crate::record::RecordId;
use crate::state::State;
use crate::transport::Transport;

use super::delivery::Completions;
use super::outcome::{DeadLetter, DeadLetterReason, DeliveryError};
use super::runtime::BoxFuture;
use super::shared::{Inner, Shared, wake_all};

/// Events and commands handled per lock, so senders are not starved.
const BATCH: usize = 1024;
/// Busy rounds before the task yields to its executor.
const ROUNDS_BEFORE_YIELD: usize = 4;

/// The background half of a producer. Created by
/// [`ProducerBuilder::build`](crate::ProducerBuilder::build).
pub(crate) struct Driver<T> {
    shared: Arc<Shared>,
    transport: T,
    sleep: Option<(Instant, BoxFuture)>,
    completions: Completions,
    /// Records settled in a round, for the spool.
    settled: Vec<RecordId>,
    /// When to refresh the metrics unasked next.
    refresh_at: Option<Instant>,
}

enum Round {
    Busy,
    Idle,
    Closed,
}

impl<T: Transport> Driver<T> {
    pub(crate) fn new(shared: Arc<Shared>, transport: T) -> Self {
        Self {
            shared,
            transport,
            sleep: None,
            completions: Completions::default(),
            settled: Vec::new(),
            refresh_at: None,
        }
    }

    /// Runs until the machine is closed, then closes the transport and the
    /// spool.
    pub(crate) async fn run(mut self) {
        poll_fn(|cx| self.poll_until_closed(cx)).await;
        if let Some(spooling) = &self.shared.spool {
            spooling.start_close();
        }
        let now = self.shared.runtime.now();
        let deadline = self
            .shared
            .lock()
            .machine
            .shutdown_deadline()
            .unwrap_or(now);
        self.transport
            .close(deadline.saturating_duration_since(now))
            .await;
        if let Some(spooling) = &self.shared.spool {
            spooling.finish_close(&self.shared, deadline).await;
        }
        tracing::debug!("driver stopped");
    }

    fn poll_until_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS_BEFORE_YIELD {
            match self.round(cx) {
                Round::Busy => {}
                Round::Idle => {
                    self.transport.idle();
                    return Poll::Pending;
                }
                Round::Closed => return Poll::Ready(()),
            }
        }
        self.shared.runtime.yield_soon(cx);
        Poll::Pending
    }

    fn round(&mut self, cx: &mut Context<'_>) -> Round {
        let now = self.shared.runtime.now();
        let mut completions = std::mem::take(&mut self.completions);
        let mut dead = Vec::new();
        let mut wake = Vec::new();
        let (mut busy, closed, next_timeout) = {
            let mut g = self.shared.lock();
            let transitions = g.state.1;
            if !g.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                g.driver = Some(cx.waker().clone());
            }
            let mut busy = drain_transport(&mut self.transport, &mut g.machine, now, cx);
            if g.machine.poll_timeout().is_some_and(|t| t <= now) {
                g.machine.handle_timeout(now);
                busy = true;
            }
            let spool = self.shared.spool.as_ref();
            // Dispatch before sending too: the spool then counts the records
            // just acknowledged as unrecorded before the window refills.
            busy |= dispatch_events(
                &mut g,
                &self.shared,
                &mut self.settled,
                &mut completions,
                &mut dead,
                &mut wake,
            );
            if let Some(spooling) = spool {
                busy |= spooling.gate(&mut g.machine, now, cx.waker());
            }
            let (commands, closed) = run_commands(&mut self.transport, &mut g.machine, now);
            busy |= commands > 0;
            busy |= dispatch_events(
                &mut g,
                &self.shared,
                &mut self.settled,
                &mut completions,
                &mut dead,
                &mut wake,
            );
            if let Some(spooling) = spool {
                // The sends may have closed the gate: be woken when it opens.
                busy |= spooling.gate(&mut g.machine, now, cx.waker());
            }
            let changed = g.state.1 != transitions;
            refresh_metrics(&self.shared, &mut self.refresh_at, &g, now, changed);
            let next = match (g.machine.poll_timeout(), self.refresh_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            (busy, closed, next)
        };
        completions.run();
        self.completions = completions;
        for letter in dead {
            self.shared.dead_letter(letter);
        }
        wake_all(wake);
        if closed {
            return Round::Closed;
        }
        busy |= self.poll_timer(next_timeout, now, cx);
        if busy { Round::Busy } else { Round::Idle }
    }

    /// Arms the timer for `deadline`; true when it is already due.
    fn poll_timer(
        &mut self,
        deadline: Option<Instant>,
        now: Instant,
        cx: &mut Context<'_>,
    ) -> bool {
        let Some(deadline) = deadline else {
            self.sleep = None;
            return false;
        };
        if deadline <= now {
            return true;
        }
        let sleep = match &mut self.sleep {
            Some((at, sleep)) if *at == deadline => sleep,
            slot => {
                let sleep = self.shared.runtime.sleep_until(deadline);
                &mut slot.insert((deadline, sleep)).1
            }
        };
        if sleep.as_mut().poll(cx).is_ready() {
            self.sleep = None;
            return true;
        }
        false
    }
}

impl<T> Drop for Driver<T> {
    /// Whether it finished or its executor dropped it: nothing will settle
    /// any more (see [`finish`]). While a panic unwinds through the driver
    /// this is left to the supervisor, which knows the panic's message.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            finish(&self.shared);
        }
    }
}

/// The driver has stopped: open handles learn it, and records still held
/// stay in the machine for `close` to hand back.
///
/// Stopping before the machine closed is a failure (a panic caught by the
/// supervisor, or an executor that dropped the task): the producer becomes
/// [`State::Failed`] with the reason, open handles end with
/// [`DeliveryError::Failed`], and the records still held wait for `close`
/// to hand them back (or become dead letters if every handle is gone
/// already).
pub(crate) fn finish(shared: &Shared) {
    if let Some(spooling) = &shared.spool {
        spooling.resolve_returns(shared); // if the executor dropped the driver mid-close
    }
    let now = shared.runtime.now();
    let mut g = shared.lock();
    if g.stopped {
        return;
    }
    g.stopped = true;
    if g.machine.state() != State::Closed && g.failure.is_none() {
        g.failure = Some(
            "the driver task was dropped before the producer closed \
             (was its runtime shut down?)"
                .to_owned(),
        );
    }
    let outcome = match g.failure.clone() {
        Some(reason) => {
            tracing::error!(
                %reason,
                held = g.machine.held_records(),
                "producer failed: nothing is sent any more; close() hands back what is held"
            );
            let from = g.state.0;
            let mut woken = Vec::new();
            g.record_transition(from, State::Failed, &mut woken);
            g.progress.append(&mut woken);
            DeliveryError::Failed { reason }
        }
        None => DeliveryError::Abandoned,
    };
    let mut completions = Completions::default();
    for slot in g.slots.take_all() {
        completions.push(Some(slot), Err(outcome.clone()));
    }
    let dead = if g.failure.is_some() && g.abandoned {
        g.dead_letter_held(now)
    } else {
        Vec::new()
    };
    let mut wake = std::mem::take(&mut g.progress);
    wake.append(&mut g.state_watchers);
    g.wake_transition_readers(&mut wake);
    wake.extend(g.driver.take());
    shared.publish_metrics(&g, now);
    drop(g);
    completions.run();
    for letter in dead {
        shared.dead_letter(letter);
    }
    wake_all(wake);
}

/// Feeds ready transport events to the machine; true if there were any.
fn drain_transport<T: Transport>(
    transport: &mut T,
    machine: &mut Machine,
    now: Instant,
    cx: &mut Context<'_>,
) -> bool {
    let mut n = 0;
    while n < BATCH {
        match transport.try_next_event() {
            Some(event) => machine.handle_transport(event, now),
            None => break,
        }
        n += 1;
    }
    if n < BATCH {
        // Poll the waiting future once: it registers our waker. It is
        // cancel-safe, so dropping it loses nothing.
        if let Poll::Ready(event) = transport.next_event().as_mut().poll(cx) {
            machine.handle_transport(event, now);
            n += 1;
        }
    }
    n > 0
}

/// Carries out the machine's commands; returns how many, and whether the
/// machine closed.
fn run_commands<T: Transport>(
    transport: &mut T,
    machine: &mut Machine,
    now: Instant,
) -> (usize, bool) {
    let mut closed = false;
    let mut n = 0;
    while n < BATCH {
        let refused = match machine.poll_command(now) {
            None => break,
            Some(Command::Connect) => {
                transport.connect();
                None
            }
            Some(Command::Send { id, record }) => transport.send(id, record).err().map(|e| (id, e)),
            Some(Command::Close) => {
                closed = true;
                None
            }
        };
        if let Some((id, error)) = refused {
            machine.handle_send_error(id, error, now);
        }
        n += 1;
    }
    (n, closed)
}

/// Turns the machine's events into handle outcomes, dead letters and
/// wake-ups, and tells the spool what settled; true if there were any
/// events.
fn dispatch_events(
    g: &mut Inner,
    shared: &Shared,
    settled_ids: &mut Vec<RecordId>,
    completions: &mut Completions,
    dead: &mut Vec<DeadLetter>,
    wake: &mut Vec<Waker>,
) -> bool {
    let spool = shared.spool.as_ref();
    let mut any = false;
    let mut settled = false;
    while let Some(event) = g.machine.poll_event() {
        any = true;
        match event {
            Event::Delivered { ack, .. } => {
                settled = true;
                settled_ids.push(ack.id);
                completions.push(g.slots.take(ack.id), Ok(ack));
            }
            Event::DeadLettered { id, record, reason } => {
                let record = *record;
                settled = true;
                settled_ids.push(id);
                let outcome = Err(DeliveryError::DeadLettered {
                    reason: reason.clone(),
                });
                completions.push(g.slots.take(id), outcome);
                dead.push(DeadLetter::new(
                    id,
                    record,
                    DeadLetterReason::Rejected(reason),
                ));
            }
            Event::Dropped { id, record } => {
                let record = *record;
                settled = true;
                settled_ids.push(id);
                completions.push(g.slots.take(id), Err(DeliveryError::Dropped));
                dead.push(DeadLetter::new(id, record, DeadLetterReason::Overflow));
            }
            Event::Returned { id, record } => {
                let record = *record;
                settled = true;
                if spool.is_some() {
                    // Decided once the spool's final fsync is done.
                    g.spool_returns.push((id, record));
                } else {
                    g.hand_back(id, record, completions, dead);
                }
            }
            Event::StateChanged { from, to } => {
                g.record_transition(from, to, wake);
                if to == State::Closed {
                    settled = true;
                }
            }
        }
    }
    if let Some(spool) = spool.filter(|_| !settled_ids.is_empty()) {
        // Records handed back at shutdown are still unsettled in the spool.
        let kept = g.spool_returns.first().map(|(id, _)| *id);
        let oldest = g.machine.oldest_held().into_iter().chain(kept).min();
        spool.settled(settled_ids, oldest);
    }
    settled_ids.clear();
    if settled {
        wake.append(&mut g.progress);
    }
    any
}

/// Publishes the metrics when the state changed or a refresh is due,
/// and schedules the next refresh while the figures move by themselves
/// (ages grow while records are held; time disconnected grows while
/// not connected). The refresh after they stop moving publishes their
/// resting values.
fn refresh_metrics(
    shared: &Shared,
    refresh_at: &mut Option<Instant>,
    g: &Inner,
    now: Instant,
    state_changed: bool,
) {
    if state_changed || refresh_at.is_some_and(|at| at <= now) {
        shared.publish_metrics(g, now);
        *refresh_at = None;
    }
    if refresh_at.is_none() {
        let moving = g.machine.held_records() > 0 || !g.machine.state().is_connected();
        *refresh_at = shared.monitor.next_refresh(now, moving);
    }
}
