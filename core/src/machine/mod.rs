//! The sans-IO producer state machine: it takes inputs with `now` as an
//! argument and yields [`Command`]s, [`Event`]s and its next deadline. It
//! never reads a clock, sleeps or does I/O.
//!
//! Methods are grouped as in quinn-proto: getters, `handle_*` inputs,
//! mutators, and `poll_*` outputs. Every state transition goes through
//! [`Machine::step`], one `match` over (state, input).

mod ack_clock;
mod queue;

use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, trace, warn};

use crate::backoff::Backoff;
use crate::config::{Config, OverflowPolicy};
use crate::event::{Command, EnqueueError, Event};
use crate::record::{Record, RecordId};
use crate::state::State;
use crate::stats::{Health, Stats};
use crate::time::deadline_after;
use crate::transport::{Ack, ErrorClass, TransportError, TransportEvent};
use queue::{Held, RecordQueue};

/// After a [`ErrorClass::Backpressure`] failure, sending resumes on
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
    delivered: u64,
    retried: u64,
    dead_lettered: u64,
    dropped: u64,
    returned: u64,
    reconnect_attempts: u64,
    link_losses: u64,
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

    /// Whether every record with an id up to `target` has settled
    /// (delivered, dead-lettered, dropped or returned).
    pub fn is_settled(&self, target: RecordId) -> bool {
        self.queue.oldest().is_none_or(|h| h.id > target)
    }

    /// A snapshot of gauges and counters.
    pub fn stats(&self, now: Instant) -> Stats {
        let c = &self.counters;
        let fill_records = self.queue.len() as f64 / self.config.max_queued_records() as f64;
        let fill_bytes = self.queue.bytes() as f64 / self.config.max_queued_bytes() as f64;
        Stats {
            state: self.state(),
            time_in_state: now.saturating_duration_since(self.state_since),
            disconnected_for: self.down_since.map(|t| now.saturating_duration_since(t)),
            queued_records: self.queue.len(),
            queued_bytes: self.queue.bytes(),
            in_flight: self.queue.in_flight_len(),
            oldest_queued_age: self
                .queue
                .oldest()
                .map(|h| now.saturating_duration_since(h.accepted_at)),
            queue_fill: fill_records.max(fill_bytes),
            accepted: c.accepted,
            delivered: c.delivered,
            retried: c.retried,
            dead_lettered: c.dead_lettered,
            dropped: c.dropped,
            returned: c.returned,
            reconnect_attempts: c.reconnect_attempts,
            link_losses: c.link_losses,
            last_error: self.last_error.clone(),
            stalled: self.stalled.clone(),
        }
    }

    /// The health verdict, by the rules of [`HealthConfig`](crate::HealthConfig).
    pub fn health(&self, now: Instant) -> Health {
        Health::assess(&self.stats(now), self.config.health())
    }

    // ----- handle_* inputs -----------------------------------------------

    /// Accepts a record, or hands it back with the reason.
    ///
    /// # Errors
    ///
    /// [`EnqueueError`] when the record is malformed, too large, the queue
    /// is full under [`OverflowPolicy::Reject`] or [`OverflowPolicy::Block`]
    /// (the driver does the waiting), or the machine is closing.
    #[inline]
    pub fn enqueue(&mut self, record: Record, now: Instant) -> Result<RecordId, EnqueueError> {
        self.enqueue_with(record, now, |_, _| true)
    }

    /// Like [`Machine::enqueue`], with one more bound: `room(record,
    /// oldest_held)` says whether `record` fits beside the records held now,
    /// `oldest_held` being the id of the oldest of them (the spool uses it:
    /// everything before that record has settled). The overflow policy
    /// applies to this bound as to the memory bounds; `DropOldest` drops
    /// records for it only while the oldest held record is waiting (so that
    /// dropping it moves `oldest_held`), never the ones in flight.
    ///
    /// `room` must be a pure, cheap check; it may be called several times.
    ///
    /// # Errors
    ///
    /// As [`Machine::enqueue`], and [`EnqueueError::SpoolFull`] when `room`
    /// refuses under `Reject` or `Block`.
    #[inline]
    pub fn enqueue_with(
        &mut self,
        record: Record,
        now: Instant,
        mut room: impl FnMut(&Record, Option<RecordId>) -> bool,
    ) -> Result<RecordId, EnqueueError> {
        if self.link == Link::Closed || self.closing.is_some() {
            return Err(EnqueueError::Closed {
                record: Box::new(record),
            });
        }
        if !self
            .valid_topic
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, &record.topic))
        {
            if let Err(reason) = validate_topic(&record.topic) {
                return Err(EnqueueError::InvalidRecord {
                    record: Box::new(record),
                    reason,
                });
            }
            self.valid_topic = Some(Arc::clone(&record.topic));
        }
        let size = record.size();
        if size > self.config.max_record_bytes() {
            return Err(EnqueueError::RecordTooLarge {
                record: Box::new(record),
                size,
                max: self.config.max_record_bytes(),
                limit: "max_record_bytes",
            });
        }
        if let Some(max) = self.config.max_wire_bytes() {
            let wire = record.kafka_wire_size();
            if wire > max {
                return Err(EnqueueError::RecordTooLarge {
                    record: Box::new(record),
                    size: wire,
                    max,
                    limit: "the transport's message.max.bytes",
                });
            }
        }
        let mut external = room(&record, self.oldest_held());
        if !self.fits(size) || !external {
            match self.config.overflow() {
                OverflowPolicy::Reject | OverflowPolicy::Block { .. } => {
                    return Err(if self.fits(size) {
                        EnqueueError::SpoolFull {
                            record: Box::new(record),
                        }
                    } else {
                        EnqueueError::QueueFull {
                            record: Box::new(record),
                            held_records: self.queue.len(),
                            held_bytes: self.queue.bytes(),
                        }
                    });
                }
                OverflowPolicy::DropOldest => {
                    while !self.fits(size) || !external {
                        if !external && !self.queue.oldest_is_waiting() {
                            break; // only acknowledgements can move the oldest held record
                        }
                        let Some(old) = self.queue.pop_oldest_waiting() else {
                            break;
                        };
                        self.drop_record(old.id, old.record, "DropOldest");
                        external = room(&record, self.oldest_held());
                    }
                }
                OverflowPolicy::DropNewest => {}
            }
        }
        let id = RecordId(self.next_id);
        self.next_id += 1;
        self.counters.accepted += 1;
        if !self.fits(size) || !external {
            // DropNewest, or DropOldest with everything in flight.
            self.drop_record(id, record, "overflow");
            return Ok(id);
        }
        trace!(%id, size, "accepted");
        self.queue.push_new(Held {
            id,
            record,
            size,
            accepted_at: now,
            bucket: 0,
        });
        Ok(id)
    }

    /// Accepts a record recovered from a spool at start-up, whatever the
    /// bounds: it was accepted by an earlier session and must not be lost
    /// now. Call it before anything else is enqueued, in the records'
    /// original order; they get the first ids and are sent first. While
    /// recovered records exceed the bounds, new records meet the overflow
    /// policy.
    pub fn enqueue_recovered(&mut self, record: Record, now: Instant) -> RecordId {
        let id = RecordId(self.next_id);
        self.next_id += 1;
        self.counters.accepted += 1;
        let size = record.size();
        trace!(%id, size, "recovered");
        self.queue.push_new(Held {
            id,
            record,
            size,
            accepted_at: now,
            bucket: 0,
        });
        id
    }

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

    /// Asks for every record accepted so far to be delivered; enters
    /// [`State::Draining`] while connected. Returns the last id that must
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
        if !self.isolate.is_empty()
            && let Some(next) = self.queue.next_waiting_id()
            && self.isolate.contains(&next)
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

    // ----- internals -----------------------------------------------------

    /// Every state transition, in one match.
    fn step(&mut self, input: Input, now: Instant) {
        let next = match (self.link, input) {
            (Link::Closed, _) => return,
            (_, Input::ShutdownDeadline) => {
                self.close(now);
                return;
            }
            (Link::Disconnected { .. }, Input::ConnectDue) => {
                self.counters.reconnect_attempts += 1;
                debug!(attempt = self.counters.reconnect_attempts, "connecting");
                self.commands.push_back(PendingCommand::Connect);
                Link::Connecting {
                    deadline: deadline_after(now, self.config.connect_timeout()),
                }
            }
            (Link::Connecting { .. }, Input::Connected) => {
                if self.queue.is_empty() {
                    self.reconnect.reset();
                    Link::Connected
                } else {
                    self.reset_backoff_on_ack = true;
                    self.drain_target = self.drain_target.max(Some(RecordId(self.next_id - 1)));
                    Link::Draining
                }
            }
            (Link::Connecting { .. }, Input::ConnectFailed(reason) | Input::LinkLost(reason)) => {
                // Once per outage at `warn`: an outage's every retry is
                // expected, and reported at `info`.
                if self.reconnect.attempt() == 0 {
                    warn!(%reason, "connect failed; retrying with backoff");
                } else {
                    info!(%reason, attempt = self.reconnect.attempt(), "connect failed");
                }
                self.last_error = Some(reason);
                self.disconnected(now)
            }
            (Link::Connected | Link::Draining, Input::LinkLost(reason)) => {
                self.counters.link_losses += 1;
                let requeued = self.queue.requeue_all();
                self.solo = None;
                warn!(%reason, requeued, "link lost");
                self.last_error = Some(reason);
                self.retry_hold = None;
                self.backpressure_until = None;
                self.disconnected(now)
            }
            (link, Input::Progress) => {
                if self.closing.is_some() && self.queue.is_empty() {
                    self.close(now);
                    return;
                }
                let settled = self.drain_target.is_none_or(|t| self.is_settled(t));
                if settled {
                    self.drain_target = None;
                }
                match link {
                    Link::Draining if settled && self.closing.is_none() => Link::Connected,
                    Link::Connected if !settled || self.closing.is_some() => Link::Draining,
                    other => other,
                }
            }
            (link, input) => {
                debug!(state = %link.public(), ?input, "ignored stale input");
                return;
            }
        };
        self.set_link(next, now);
    }

    fn disconnected(&mut self, now: Instant) -> Link {
        self.reset_backoff_on_ack = false;
        self.stalled = None;
        let delay = self.reconnect.next().unwrap_or(self.config.backoff().max);
        debug!(?delay, "reconnect scheduled");
        Link::Disconnected {
            retry_at: deadline_after(now, delay),
        }
    }

    fn close(&mut self, now: Instant) {
        for held in self.queue.take_all() {
            self.counters.returned += 1;
            self.events.push_back(Event::Returned {
                id: held.id,
                record: Box::new(held.record),
            });
        }
        if self.counters.returned > 0 {
            warn!(
                returned = self.counters.returned,
                "closed with undelivered records handed back"
            );
        }
        self.closing = None;
        self.drain_target = None;
        self.isolate.clear();
        self.solo = None;
        self.retry_hold = None;
        self.backpressure_until = None;
        self.commands.push_back(PendingCommand::Close);
        self.set_link(Link::Closed, now);
    }

    fn set_link(&mut self, next: Link, now: Instant) {
        let (from, to) = (self.link.public(), next.public());
        self.link = next;
        if from == to {
            return;
        }
        debug_assert!(from.may_become(to), "{from} -> {to} is not on the diagram");
        self.state_since = now;
        if to.is_connected() {
            self.down_since = None;
        } else if from.is_connected() {
            self.down_since = Some(now);
        }
        info!(%from, %to, held = self.queue.len(), "state changed");
        self.events.push_back(Event::StateChanged { from, to });
    }

    fn on_delivered(&mut self, ack: Ack, now: Instant) {
        if !self.isolate.is_empty() {
            self.overtaken_by(ack.id, now);
        }
        if !self.queue.discard(ack.id) {
            trace!(id = %ack.id, "acknowledgement for a record no longer held");
            return;
        }
        self.flight_moved = now;
        self.stalled = None;
        trace!(id = %ack.id, "delivered");
        if self.solo == Some(ack.id) {
            self.solo = None;
        }
        if !self.isolate.is_empty() {
            self.isolate.remove(&ack.id);
        }
        self.counters.delivered += 1;
        self.retry.reset();
        if self.reset_backoff_on_ack {
            self.reset_backoff_on_ack = false;
            self.reconnect.reset();
        }
        self.events.push_back(Event::Delivered(ack));
        if self.drain_target.is_some() || self.closing.is_some() {
            self.step(Input::Progress, now);
        }
    }

    fn on_failed(&mut self, id: RecordId, error: TransportError, now: Instant) {
        if self.queue.get(id).is_some() {
            self.flight_moved = now;
        }
        let was_solo = self.solo == Some(id);
        if was_solo {
            self.solo = None;
        }
        match error.class {
            ErrorClass::Isolate if was_solo => {
                self.isolate.remove(&id);
                let reason = format!("{} (refused alone)", error.reason);
                self.dead_letter(id, reason, now);
            }
            ErrorClass::Isolate => {
                if self.queue.get(id).is_some() {
                    if self.queue.requeue(id) {
                        self.counters.retried += 1;
                    }
                    self.quiesce = true;
                    self.isolate.insert(id);
                    debug!(%id, reason = %error.reason, "refused with its batch; will be resent alone");
                    self.last_error = Some(error.reason);
                }
            }
            ErrorClass::Link | ErrorClass::Fatal => {
                if self.link.is_up() {
                    let input = Input::LinkLost(format!("{id}: {error}"));
                    self.step(input, now);
                }
            }
            ErrorClass::Retriable => {
                if self.queue.requeue(id) {
                    self.counters.retried += 1;
                    self.quiesce = true;
                    // One backoff step per burst of failures; every failed
                    // record still waits at least the initial delay.
                    let hold = match self.retry_hold.filter(|h| *h > now) {
                        None => deadline_after(
                            now,
                            self.retry.next().unwrap_or(self.config.backoff().max),
                        ),
                        Some(hold) => hold.max(deadline_after(now, self.config.backoff().initial)),
                    };
                    debug!(
                        %id,
                        reason = %error.reason,
                        paused_for = ?hold.saturating_duration_since(now),
                        "retriable failure; sending paused"
                    );
                    self.retry_hold = Some(hold);
                    self.last_error = Some(error.reason);
                }
            }
            ErrorClass::Backpressure => {
                if self.queue.requeue(id) {
                    self.backpressure_until = Some(deadline_after(now, BACKPRESSURE_PAUSE));
                    trace!(%id, "transport back-pressure");
                }
            }
            ErrorClass::Permanent => self.dead_letter(id, error.reason, now),
        }
    }

    /// Record `stored` (about to be acknowledged) was stored ahead of the
    /// records of its key that wait to be resent alone: resending them now
    /// would break the key's order, so they are dead-lettered instead. (A
    /// client can store later records of a partition after a batch was
    /// refused whole: librdkafka's idempotent producer retries them under a
    /// new epoch.)
    fn overtaken_by(&mut self, stored: RecordId, now: Instant) {
        let Some(key) = self.queue.get(stored).and_then(|h| h.record.key.clone()) else {
            return;
        };
        let overtaken: Vec<RecordId> = self
            .isolate
            .range(..stored)
            .copied()
            .filter(|id| {
                self.queue
                    .get(*id)
                    .is_some_and(|h| h.record.key.as_ref() == Some(&key))
            })
            .collect();
        for id in overtaken {
            let reason = format!(
                "refused with its batch, and {stored}, a later record of its key, was stored \
                 first: resending it would break the key's order"
            );
            self.dead_letter(id, reason, now);
        }
    }

    fn dead_letter(&mut self, id: RecordId, reason: String, now: Instant) {
        self.isolate.remove(&id);
        if self.solo == Some(id) {
            self.solo = None;
        }
        if let Some(held) = self.queue.remove(id) {
            self.counters.dead_lettered += 1;
            warn!(%id, %reason, "record dead-lettered");
            self.last_error = Some(reason.clone());
            self.events.push_back(Event::DeadLettered {
                id,
                record: Box::new(held.record),
                reason,
            });
            self.step(Input::Progress, now);
        }
    }

    fn drop_record(&mut self, id: RecordId, record: Record, policy: &'static str) {
        self.counters.dropped += 1;
        self.isolate.remove(&id);
        warn!(%id, policy, "queue full: record dropped by overflow policy");
        self.events.push_back(Event::Dropped {
            id,
            record: Box::new(record),
        });
    }

    fn fits(&self, size: usize) -> bool {
        self.queue.len() < self.config.max_queued_records()
            && self.queue.bytes() + size <= self.config.max_queued_bytes()
    }

    fn may_send(&self, now: Instant) -> bool {
        self.link.is_up()
            && self.queue.waiting_len() > 0
            && self.queue.in_flight_len() < self.config.max_in_flight()
            && !(self.quiesce && self.queue.in_flight_len() > 0)
            && self.solo.is_none()
            && self.retry_hold.is_none_or(|t| t <= now)
            && self.backpressure_until.is_none_or(|t| t <= now)
    }

    /// When the session counts as hung, while records are in flight: no
    /// report for `ack_timeout`, or one record unacknowledged for
    /// [`Machine::lost_ack_timeout`] while others keep being acknowledged
    /// (an acknowledgement lost by the transport).
    fn ack_deadline(&self) -> Option<Instant> {
        let oldest = self.queue.oldest_hand_off()?;
        let silent = deadline_after(self.flight_moved, self.config.ack_timeout());
        let lost = deadline_after(oldest, self.lost_ack_timeout());
        Some(silent.min(lost))
    }

    /// True when no report arrived for `ack_timeout` up to `now`.
    fn flight_silent_since(&self, now: Instant) -> bool {
        deadline_after(self.flight_moved, self.config.ack_timeout()) <= now
    }

    /// How long one record may stay unacknowledged while others are
    /// acknowledged: [`LOST_ACK_FACTOR`] times `ack_timeout`.
    fn lost_ack_timeout(&self) -> Duration {
        self.config.ack_timeout().saturating_mul(LOST_ACK_FACTOR)
    }
}

/// Kafka's topic name rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, and
/// not `.` or `..`.
fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 249 {
        return Err(format!(
            "topic name must have 1 to 249 characters (got {})",
            topic.len()
        ));
    }
    if topic == "." || topic == ".." {
        return Err(format!("topic name {topic:?} is reserved"));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {topic:?} has {bad:?}; only [a-zA-Z0-9._-] are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
