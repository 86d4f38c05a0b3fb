//! A transport's link to the broker and its sessions: connecting, ending a
//! session (reset, fatal error, blackhole, reconnect, close) with what that
//! does to its records in flight, running the work that is due, and
//! handing events to the transport.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::mem;
use std::task::Waker;
use std::time::Instant;

use robust_producer::{RecordId, TransportEvent, deadline_after};

use super::Shared;
use super::pipeline::{Gap, Pending};
use crate::fault::{ChaosState, ConnectFault, InFlight};
use crate::idset::IdSet;
use crate::log::TransportId;

/// How a session breaks.
#[derive(Debug, Clone, Copy)]
pub(super) enum Break {
    LinkLost(&'static str),
    Fatal(&'static str),
    /// Silently: the session swallows everything until the next connect.
    Blackhole,
}

/// The state of one transport's current session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// Never connected.
    Idle,
    /// Connect under way: completes at `due`, or hangs (`None`).
    Connecting { due: Option<Instant> },
    /// Session up. A blackholed session swallows everything, silently,
    /// until the next connect.
    Up { blackholed: bool },
    /// Session ended (refused, reset, fatal); the core must reconnect.
    Down,
    /// Transport closed or dropped.
    Closed,
}

/// One transport, as the broker sees it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(super) tid: TransportId,
    pub(super) session: u64,
    pub(crate) state: LinkState,
    /// Events not yet taken by the transport.
    pub(super) events: VecDeque<TransportEvent>,
    /// How many of `events` are about records.
    pub(super) record_events: usize,
    pub(super) pending: VecDeque<Pending>,
    pub(super) last_due: Option<Instant>,
    /// Records taken in this session whose outcome the transport has not
    /// yet taken: what back-pressure counts.
    pub(super) unserved: usize,
    /// A send was refused with back-pressure; report `Ready` when room is back.
    pub(super) bp_refused: bool,
    pub(super) gaps: Vec<Gap>,
    pub(super) stored_ids: IdSet,
    pub(crate) waker: Option<Waker>,
    /// A fatal error happened: the next connect rebuilds the client.
    pub(super) rebuild: bool,
    pub(super) topic_cache: usize,
}

impl Link {
    pub(super) fn new(tid: TransportId) -> Self {
        Self {
            tid,
            session: 0,
            state: LinkState::Idle,
            events: VecDeque::new(),
            record_events: 0,
            pending: VecDeque::new(),
            last_due: None,
            unserved: 0,
            bp_refused: false,
            gaps: Vec::new(),
            stored_ids: IdSet::default(),
            waker: None,
            rebuild: false,
            topic_cache: usize::MAX,
        }
    }

    pub(super) fn push_record_event(&mut self, event: TransportEvent) {
        self.events.push_back(event);
        self.record_events += 1;
    }
}

impl Shared {
    pub(crate) fn add_link(&mut self) -> (usize, TransportId) {
        let li = self.links.len();
        let tid = TransportId(li as u32);
        self.links.push(Link::new(tid));
        (li, tid)
    }

    /// A new session for link `li`. `unreported` are acknowledgements the
    /// transport had received but not yet reported to the core.
    pub(crate) fn connect(
        &mut self,
        li: usize,
        unreported: impl Iterator<Item = RecordId>,
        now: Instant,
    ) {
        self.stats.connect_attempts += 1;
        let tid = self.links[li].tid;
        for id in unreported {
            self.note_unacked(tid, id);
        }
        self.end_session(li);
        let link = &mut self.links[li];
        link.session += 1;
        if mem::take(&mut link.rebuild) {
            self.stats.rebuilds += 1;
        }
        let fault = if self.net.partitioned {
            Some(ConnectFault::Hang)
        } else if self.net.refuse_all || self.net.refuse_n > 0 {
            self.net.refuse_n = self.net.refuse_n.saturating_sub(1);
            Some(ConnectFault::Refuse)
        } else {
            self.chaos.as_mut().and_then(ChaosState::on_connect)
        };
        let link = &mut self.links[li];
        match fault {
            Some(ConnectFault::Hang) => {
                self.stats.hung_connects += 1;
                link.state = LinkState::Connecting { due: None };
            }
            Some(ConnectFault::Refuse) => {
                self.stats.refused += 1;
                link.state = LinkState::Down;
                link.events.push_back(TransportEvent::ConnectFailed(
                    "connection refused (mock broker)".to_owned(),
                ));
            }
            None => {
                link.state = LinkState::Connecting {
                    due: Some(deadline_after(now, self.net.delay)),
                };
                self.run_due_on_link(li, now);
            }
        }
    }

    /// Drops everything of the current session: queued events, pending
    /// records, back-pressure and gaps.
    pub(super) fn end_session(&mut self, li: usize) {
        self.drop_events(li);
        let link = &mut self.links[li];
        self.stats.discarded += link.pending.len() as u64;
        link.pending.clear();
        link.last_due = None;
        link.unserved = 0;
        link.bp_refused = false;
        link.gaps.clear();
    }

    /// Drops the queued events of link `li`; acknowledgements among them
    /// become stored-but-unacknowledged records.
    pub(super) fn drop_events(&mut self, li: usize) {
        let link = &mut self.links[li];
        let tid = link.tid;
        link.record_events = 0;
        let events = mem::take(&mut link.events);
        for e in &events {
            if let TransportEvent::Delivered(ack) = e {
                self.note_unacked(tid, ack.id);
            }
        }
        // Keep the allocation.
        let mut events = events;
        events.clear();
        self.links[li].events = events;
    }

    pub(super) fn note_unacked(&mut self, tid: TransportId, id: RecordId) {
        self.stats.stored_unacknowledged += 1;
        self.unacked.push((tid, id));
    }

    pub(crate) fn close_link(&mut self, li: usize, unreported: impl Iterator<Item = RecordId>) {
        let tid = self.links[li].tid;
        for id in unreported {
            self.note_unacked(tid, id);
        }
        self.end_session(li);
        let link = &mut self.links[li];
        link.state = LinkState::Closed;
        link.waker = None;
    }

    /// Ends the current session of link `li`.
    pub(super) fn break_link(
        &mut self,
        li: usize,
        how: Break,
        in_flight: InFlight,
        drop_unreported: bool,
        now: Instant,
    ) {
        if drop_unreported {
            self.drop_events(li);
        }
        let pending = mem::take(&mut self.links[li].pending);
        let lost = match in_flight {
            InFlight::Lost => pending.len() as u64,
            InFlight::Stored => {
                for p in pending {
                    self.process_silently(li, p, now);
                }
                0
            }
            InFlight::Prefix => self.store_prefixes(li, pending, now),
        };
        let link = &mut self.links[li];
        link.last_due = None;
        link.unserved = 0;
        link.bp_refused = false;
        match how {
            Break::LinkLost(reason) => {
                self.stats.discarded += lost;
                self.stats.resets += 1;
                link.state = LinkState::Down;
                link.events
                    .push_back(TransportEvent::LinkLost(reason.to_owned()));
            }
            Break::Fatal(reason) => {
                self.stats.discarded += lost;
                self.stats.fatals += 1;
                link.state = LinkState::Down;
                link.rebuild = true;
                link.events
                    .push_back(TransportEvent::Fatal(reason.to_owned()));
            }
            Break::Blackhole => {
                self.stats.blackholed += lost;
                link.state = LinkState::Up { blackholed: true };
            }
        }
    }

    // ----- time ----------------------------------------------------------

    /// Stores, per partition, a random prefix of a breaking session's
    /// pending records (without acknowledgement); returns how many were
    /// lost.
    fn store_prefixes(&mut self, li: usize, pending: VecDeque<Pending>, now: Instant) -> u64 {
        // Per partition, in order of first appearance: how many of its
        // pending records get stored.
        let mut quota: Vec<(usize, u32, u64)> = Vec::new();
        for p in &pending {
            match quota
                .iter_mut()
                .find(|q| q.0 == p.topic && q.1 == p.partition)
            {
                Some(q) => q.2 += 1,
                None => quota.push((p.topic, p.partition, 1)),
            }
        }
        for q in &mut quota {
            q.2 = self.rng.up_to(q.2);
        }
        let mut lost = 0;
        for p in pending {
            let q = quota
                .iter_mut()
                .find(|q| q.0 == p.topic && q.1 == p.partition);
            match q {
                Some(q) if q.2 > 0 => {
                    q.2 -= 1;
                    self.process_silently(li, p, now);
                }
                _ => lost += 1,
            }
        }
        lost
    }

    /// Completes every connect and processes every record of link `li`
    /// that is due at `now`.
    pub(crate) fn run_due_on_link(&mut self, li: usize, now: Instant) {
        let link = &mut self.links[li];
        if let LinkState::Connecting { due: Some(due) } = link.state
            && due <= now
        {
            link.state = LinkState::Up { blackholed: false };
            link.events.push_back(TransportEvent::Connected);
            self.stats.connects += 1;
        }
        if self.net.held || self.links[li].state != (LinkState::Up { blackholed: false }) {
            return;
        }
        while self.links[li].pending.front().is_some_and(|p| p.due <= now) {
            let Some(p) = self.links[li].pending.pop_front() else {
                break;
            };
            if !self.process(li, p.id, Cow::Owned(p.record), p.topic, p.partition, now) {
                break;
            }
        }
    }

    /// Runs what is due now on every link.
    pub(crate) fn run_due(&mut self) {
        let now = self.now();
        for li in 0..self.links.len() {
            self.run_due_on_link(li, now);
        }
    }

    /// When link `li` next has something to do on its own.
    pub(crate) fn next_timer(&self, li: usize) -> Option<Instant> {
        let link = &self.links[li];
        match link.state {
            LinkState::Connecting { due } => due,
            LinkState::Up { blackholed: false } if !self.net.held => {
                link.pending.front().map(|p| p.due)
            }
            _ => None,
        }
    }

    /// When a closing link `li` may still deliver something, if ever
    /// (before `deadline`).
    pub(crate) fn close_wait(&self, li: usize, deadline: Instant) -> Option<Instant> {
        let link = &self.links[li];
        if link.state != (LinkState::Up { blackholed: false }) {
            return None;
        }
        let front = link.pending.front()?;
        if self.net.held {
            Some(deadline)
        } else {
            (front.due <= deadline).then_some(front.due)
        }
    }

    /// Moves the queued events of link `li` into `inbox` (empty), after
    /// running what is due, and reports `Ready` when back-pressure is over.
    pub(crate) fn refill(&mut self, li: usize, inbox: &mut VecDeque<TransportEvent>, now: Instant) {
        self.run_due_on_link(li, now);
        let link = &mut self.links[li];
        mem::swap(&mut link.events, inbox);
        link.unserved = link.unserved.saturating_sub(link.record_events);
        link.record_events = 0;
        if link.bp_refused && self.net.capacity.is_none_or(|c| link.unserved < c) {
            link.bp_refused = false;
            inbox.push_back(TransportEvent::Ready);
        }
    }
}
