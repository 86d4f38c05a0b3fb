//! The sans-IO producer state machine: it takes inputs with `now` as an
//! argument and yields [`Command`]s, [`Event`]s and its next deadline. It
//! never reads a clock, sleeps or does I/O.
//!
//! Methods are grouped as in quinn-proto: getters, `handle_*` inputs,
//! mutators, and `poll_*` outputs. Every state transition goes through
//! [`Machine::step`], one `match` over (state, input).

mod ack_clock;
mod admission;
mod flight;
mod queue;
mod transitions;

use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::event::{Command, Event};
use crate::histogram::DurationHistogram;
use crate::record::{Record, RecordId};
use crate::state::State;
use crate::stats::{Health, SendHold, Stats};
use crate::transport::{TransportError, TransportEvent};
use queue::RecordQueue;

/// After a [`ErrorClass::Backpressure`](crate::ErrorClass::Backpressure) failure, sending resumes on
/// [`TransportEvent::Ready`] or after this pause, whichever comes first.
pub const BACKPRESSURE_PAUSE: Duration = Duration::from_millis(10);

/// A session that keeps receiving acknowledgements is kept, yet one record
/// unacknowledged for this many times `ack_timeout` means its
/// acknowledgement was lost: the session is given up and the record resent.
pub const LOST_ACK_FACTOR: u32 = 10;

/// The private state: each variant carries only the data valid in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Disconnected { retry_at: Instant },
    Connecting { deadline: Instant },
    Connected,
    Draining,
    Closed,
}

impl Link {
    fn public(self) -> State {
        match self {
            Link::Disconnected { .. } => State::Disconnected,
            Link::Connecting { .. } => State::Connecting,
            Link::Connected => State::Connected,
            Link::Draining => State::Draining,
            Link::Closed => State::Closed,
        }
    }

    fn is_up(self) -> bool {
        matches!(self, Link::Connected | Link::Draining)
    }
}

/// What can move the machine from one state to another.
#[derive(Debug)]
enum Input {
    /// The reconnect timer fired.
    ConnectDue,
    /// The transport's session is up.
    Connected,
    /// The connect attempt failed or timed out.
    ConnectFailed(String),
    /// The established link is gone (lost, hung or fatal).
    LinkLost(String),
    /// Records settled, or a flush or shutdown was asked for: re-evaluate
    /// draining and closing.
    Progress,
    /// The shutdown deadline passed.
    ShutdownDeadline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingCommand {
    Connect,
    Close,
}

#[derive(Debug, Default, Clone)]
struct Counters {
    accepted: u64,
    accepted_bytes: u64,
    delivered: u64,
    delivered_bytes: u64,
    retried: u64,
    dead_lettered: u64,
    dead_lettered_bytes: u64,
    dropped: u64,
    dropped_bytes: u64,
    returned: u64,
    returned_bytes: u64,
    reconnect_attempts: u64,
    link_losses: u64,
    /// Time spent disconnected in spans that ended.
    disconnected: Duration,
    /// How long delivered records waited.
    delivery: DurationHistogram,
}

/// The producer state machine. See the [crate docs](crate) for the calling
/// contract.
#[derive(Debug)]
pub struct Machine {
    config: Config,
    link: Link,
    state_since: Instant,
    /// When the link was last lost (or the machine started); `None` while up.
    down_since: Option<Instant>,
    queue: RecordQueue,
    next_id: u64,
    reconnect: Backoff,
    retry: Backoff,
    /// Reset the reconnect backoff on the first acknowledgement of a session.
    reset_backoff_on_ack: bool,
    /// Sending pauses until then after a retriable failure.
    retry_hold: Option<Instant>,
    /// Sending pauses until then (or [`TransportEvent::Ready`]) after
    /// back-pressure.
    backpressure_until: Option<Instant>,
    /// After a retriable failure, resend only once nothing is in flight, so
    /// that failures not yet reported go back in order first.
    quiesce: bool,
    /// When flight last moved: a report (acknowledgement or failure) for an
    /// in-flight record, or a send into an empty flight. The session is hung
    /// when records are in flight and this is `ack_timeout` old.
    flight_moved: Instant,
    /// Shutdown deadline, once shutdown was asked for.
    closing: Option<Instant>,
    /// Records up to this id must settle before Draining becomes Connected.
    drain_target: Option<RecordId>,
    commands: VecDeque<PendingCommand>,
    events: VecDeque<Event>,
    counters: Counters,
    last_error: Option<String>,
    /// What the transport last said holds records back, until the next
    /// acknowledgement or the end of the session.
    stalled: Option<String>,
    /// The topic of the last record accepted: records sharing its `Arc`
    /// (the usual case) skip the name check.
    valid_topic: Option<Arc<str>>,
    /// Records to send alone ([`ErrorClass::Isolate`]): each waits until
    /// nothing is in flight, and nothing is sent until it settles.
    isolate: BTreeSet<RecordId>,
    /// The record in flight alone, if any.
    solo: Option<RecordId>,
    /// Settled records whose settle marks the spool has not yet written
    /// ([`Machine::handle_spool_unrecorded`]).
    spool_unrecorded: usize,
}

impl Machine {
    /// A machine in [`State::Disconnected`] whose first connect is due at
    /// `now`: start-up never waits for the broker.
    pub fn new(config: Config, now: Instant) -> Self {
        let seed = config
            .seed()
            .unwrap_or_else(|| RandomState::new().hash_one(now));
        let reconnect = Backoff::new(config.backoff().clone(), seed);
        let retry = Backoff::new(config.backoff().clone(), seed.rotate_left(32) ^ 0x5bd1_e995);
        let queue = RecordQueue::new(config.ack_timeout());
        Self {
            config,
            link: Link::Disconnected { retry_at: now },
            state_since: now,
            down_since: Some(now),
            queue,
            next_id: 1,
            reconnect,
            retry,
            reset_backoff_on_ack: false,
            retry_hold: None,
            backpressure_until: None,
            quiesce: false,
            flight_moved: now,
            closing: None,
            drain_target: None,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            last_error: None,
            stalled: None,
            valid_topic: None,
            isolate: BTreeSet::new(),
            solo: None,
            spool_unrecorded: 0,
        }
    }

    // ----- getters -------------------------------------------------------

    /// The current state.
    pub fn state(&self) -> State {
        self.link.public()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Records held, waiting or in flight.
    pub fn held_records(&self) -> usize {
        self.queue.len()
    }

    /// Bytes held, waiting or in flight.
    pub fn held_bytes(&self) -> usize {
        self.queue.bytes()
    }

    /// Records in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.in_flight_len()
    }

    /// The id of the oldest record held (waiting or in flight): every
    /// record accepted before it has settled.
    pub fn oldest_held(&self) -> Option<RecordId> {
        self.queue.oldest().map(|h| h.id)
    }

    /// The record `id`, if it is held (waiting or in flight).
    pub fn record(&self, id: RecordId) -> Option<&Record> {
        self.queue.get(id).map(|h| &h.record)
    }

    /// The id the next accepted record will get.
    pub fn next_id(&self) -> RecordId {
        RecordId(self.next_id)
    }

    /// The shutdown deadline, once [`Machine::shutdown`] was called (kept
    /// after the machine closed).
    pub fn shutdown_deadline(&self) -> Option<Instant> {
        self.closing
    }

    /// What holds sending back while records wait on an established link,
    /// if anything does (also in [`Stats::send_held`]).
    pub fn send_hold(&self, now: Instant) -> Option<SendHold> {
        if !self.link.is_up() || self.queue.waiting_len() == 0 {
            return None;
        }
        let in_flight = self.queue.in_flight_len();
        if in_flight >= self.config.max_in_flight() {
            Some(SendHold::InFlightFull)
        } else if in_flight + self.spool_unrecorded >= self.config.max_in_flight() {
            Some(SendHold::SpoolUnrecorded {
                unrecorded: self.spool_unrecorded,
            })
        } else if self.solo.is_some() || (in_flight > 0 && self.next_goes_alone()) {
            Some(SendHold::SendingAlone)
        } else if self.quiesce && in_flight > 0 {
            Some(SendHold::Quiescing)
        } else if self.retry_hold.is_some_and(|t| t > now) {
            Some(SendHold::RetryPause)
        } else if self.backpressure_until.is_some_and(|t| t > now) {
            Some(SendHold::Backpressure)
        } else {
            None
        }
    }

    /// Whether every record with an id up to `target` has settled
    /// (delivered, dead-lettered, dropped or returned).
    pub fn is_settled(&self, target: RecordId) -> bool {
        self.queue.oldest().is_none_or(|h| h.id > target)
    }

    /// The id of the last record accepted (`RecordId(0)` before the first).
    pub fn last_id(&self) -> RecordId {
        RecordId(self.next_id.saturating_sub(1))
    }

    /// A snapshot of gauges and counters.
    pub fn stats(&self, now: Instant) -> Stats {
        let c = &self.counters;
        let down_now = self.down_since.map(|t| now.saturating_duration_since(t));
        let fill_records = self.queue.len() as f64 / self.config.max_queued_records() as f64;
        let fill_bytes = self.queue.bytes() as f64 / self.config.max_queued_bytes() as f64;
        Stats {
            state: self.state(),
            time_in_state: now.saturating_duration_since(self.state_since),
            disconnected_for: down_now,
            disconnected_total: c.disconnected + down_now.unwrap_or_default(),
            queued_records: self.queue.len(),
            queued_bytes: self.queue.bytes(),
            in_flight: self.queue.in_flight_len(),
            oldest_queued_age: self
                .queue
                .oldest()
                .map(|h| now.saturating_duration_since(h.accepted_at)),
            queue_fill: fill_records.max(fill_bytes),
            accepted: c.accepted,
            accepted_bytes: c.accepted_bytes,
            delivered: c.delivered,
            delivered_bytes: c.delivered_bytes,
            retried: c.retried,
            dead_lettered: c.dead_lettered,
            dead_lettered_bytes: c.dead_lettered_bytes,
            dropped: c.dropped,
            dropped_bytes: c.dropped_bytes,
            returned: c.returned,
            returned_bytes: c.returned_bytes,
            delivery_duration: c.delivery,
            reconnect_attempts: c.reconnect_attempts,
            link_losses: c.link_losses,
            last_error: self.last_error.clone(),
            stalled: self.stalled.clone(),
            send_held: self.send_hold(now),
            spool: None,
        }
    }

    /// The health verdict, by the rules of [`HealthConfig`](crate::HealthConfig).
    pub fn health(&self, now: Instant) -> Health {
        Health::assess(&self.stats(now), self.config.health())
    }

    // ----- handle_* inputs -----------------------------------------------

    /// Feeds an event from the transport.
    pub fn handle_transport(&mut self, event: TransportEvent, now: Instant) {
        match event {
            TransportEvent::Connected => self.step(Input::Connected, now),
            TransportEvent::ConnectFailed(reason) => self.step(Input::ConnectFailed(reason), now),
            TransportEvent::LinkLost(reason) => self.step(Input::LinkLost(reason), now),
            TransportEvent::Fatal(reason) => self.step(
                Input::LinkLost(format!("fatal transport error: {reason}")),
                now,
            ),
            TransportEvent::Delivered(ack) => self.on_delivered(ack, now),
            TransportEvent::Failed { id, error } => self.on_failed(id, error, now),
            TransportEvent::Ready => self.backpressure_until = None,
            TransportEvent::Stalled(reason) => {
                if self.link.is_up() && self.queue.in_flight_len() > 0 {
                    // An explained wait is not a hang.
                    self.flight_moved = now;
                    self.stalled = Some(reason);
                }
            }
        }
    }

    /// Reports how many settled records the spool has not yet written down
    /// as settled ([`Spool::unrecorded`](crate::Spool::unrecorded)). Sending
    /// keeps the records in flight plus these within `max_in_flight`, so
    /// that after a crash at most `max_in_flight` records are sent again;
    /// while that holds sending back, [`Machine::send_hold`] says
    /// [`SendHold::SpoolUnrecorded`]. Without a spool it stays 0.
    pub fn handle_spool_unrecorded(&mut self, unrecorded: usize) {
        self.spool_unrecorded = unrecorded;
    }

    /// Reports that [`Transport::send`](crate::Transport::send) refused the
    /// record of a [`Command::Send`].
    pub fn handle_send_error(&mut self, id: RecordId, error: TransportError, now: Instant) {
        self.on_failed(id, error, now);
    }

    /// Fires every timer due at `now`. Call it when `now` reaches
    /// [`Machine::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closing.is_some_and(|d| d <= now) {
            self.step(Input::ShutdownDeadline, now);
            return;
        }
        if self.retry_hold.is_some_and(|t| t <= now) {
            self.retry_hold = None;
        }
        if self.backpressure_until.is_some_and(|t| t <= now) {
            self.backpressure_until = None;
        }
        match self.link {
            Link::Disconnected { retry_at } if retry_at <= now => self.step(Input::ConnectDue, now),
            Link::Connecting { deadline } if deadline <= now => {
                let reason = format!(
                    "connect timed out after {:?}",
                    self.config.connect_timeout()
                );
                self.step(Input::ConnectFailed(reason), now);
            }
            Link::Connected | Link::Draining if self.ack_deadline().is_some_and(|t| t <= now) => {
                let reason = if self.flight_silent_since(now) {
                    format!(
                        "no acknowledgement for {:?} with {} records in flight",
                        self.config.ack_timeout(),
                        self.queue.in_flight_len()
                    )
                } else {
                    format!(
                        "a record in flight unacknowledged for {:?} while others were \
                         acknowledged ({} records in flight)",
                        self.lost_ack_timeout(),
                        self.queue.in_flight_len()
                    )
                };
                self.step(Input::LinkLost(reason), now);
            }
            _ => {}
        }
    }

    // ----- mutators ------------------------------------------------------

    /// Asks for every record accepted so far to be delivered. The state
    /// does not change (a dashboard keyed on it must not flap). Returns the last id that must
    /// settle (see [`Machine::is_settled`]), or `None` if none was accepted.
    pub fn flush(&mut self, now: Instant) -> Option<RecordId> {
        let target = self
            .next_id
            .checked_sub(1)
            .filter(|&n| n > 0)
            .map(RecordId)?;
        if !self.is_settled(target) {
            self.drain_target = self.drain_target.max(Some(target));
            self.step(Input::Progress, now);
        }
        Some(target)
    }

    /// Stops accepting records and delivers what is held until `deadline`;
    /// then hands back the rest as [`Event::Returned`] and ends in
    /// [`State::Closed`]. A second call can only bring the deadline closer.
    pub fn shutdown(&mut self, deadline: Instant, now: Instant) {
        if self.link == Link::Closed {
            return;
        }
        self.closing = Some(self.closing.map_or(deadline, |d| d.min(deadline)));
        info!(
            held = self.queue.len(),
            within = ?deadline.saturating_duration_since(now),
            "shutdown requested"
        );
        if self.closing.is_some_and(|d| d <= now) {
            self.step(Input::ShutdownDeadline, now);
        } else {
            self.step(Input::Progress, now);
        }
    }

    // ----- poll_* outputs ------------------------------------------------

    /// The next thing the driver must do with the transport.
    #[must_use]
    #[inline]
    pub fn poll_command(&mut self, now: Instant) -> Option<Command<'_>> {
        if let Some(c) = self.commands.pop_front() {
            return Some(match c {
                PendingCommand::Connect => Command::Connect,
                PendingCommand::Close => Command::Close,
            });
        }
        if !self.may_send(now) {
            return None;
        }
        if self.queue.in_flight_len() == 0 {
            self.quiesce = false;
            self.flight_moved = now;
        }
        if self.next_goes_alone()
            && let Some(next) = self.queue.next_waiting_id()
        {
            if self.queue.in_flight_len() > 0 {
                return None; // it goes alone, once the others settle
            }
            debug!(id = %next, "sending a record alone after its batch was refused");
            self.solo = Some(next);
        }
        let held = self.queue.send_next(now)?;
        Some(Command::Send {
            id: held.id,
            record: &held.record,
        })
    }

    /// The next event for the application.
    #[must_use]
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Machine::handle_timeout`] must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state_timer = match self.link {
            Link::Disconnected { retry_at } => Some(retry_at),
            Link::Connecting { deadline } => Some(deadline),
            Link::Connected | Link::Draining => self.ack_deadline(),
            Link::Closed => return None,
        };
        [
            state_timer,
            self.closing,
            self.retry_hold,
            self.backpressure_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests;
