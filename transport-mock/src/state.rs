//! The broker's shared state and every rule of the simulation. All of it
//! runs under the broker's one mutex; [`MockBroker`](crate::MockBroker) and
//! [`MockTransport`](crate::MockTransport) are thin handles over it.
//!
//! Life of a record: `send` hands it off into its session's link. If the
//! broker is neither holding nor delaying, it is processed at once;
//! otherwise it waits in the link's `pending` queue (FIFO, due times never
//! decrease) until it is due and the broker is not held. Processing applies,
//! in order: the chaos draw, the partition's gap (an earlier record of the
//! partition failed in this session and was not stored since: this one
//! fails too), the rules, then stores it and queues its acknowledgement. A session that breaks (reset, fatal error,
//! blackhole, reconnect, close) drops or partly stores its pending records
//! by a per-partition prefix, so the stored records of each partition are
//! always a prefix of what was handed off in a session.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use robust_producer::{
    Ack, Record, RecordId, Runtime, TransportError, TransportEvent, deadline_after,
};

use crate::fault::{
    Action, Chaos, ChaosState, ConnectFault, InFlight, Matcher, RecordFault, Reset, Rule, RuleId,
};
use crate::hash::partition_of_key;
use crate::idset::IdSet;
use crate::log::{BrokerStats, Storage, StoredRecord, TransportId};
use crate::rng::Rng;

/// Reason of the cascade failure that keeps a partition's order.
const OUT_OF_ORDER: &str =
    "OUT_OF_ORDER_SEQUENCE_NUMBER: an earlier record of this partition failed in this session";

/// Locks the shared state, recovering it if a panicking thread poisoned the
/// mutex (the state is only ever changed as a whole under the lock).
pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The broker's time.
pub(crate) enum Clock {
    /// Moves only with [`MockBroker::advance`](crate::MockBroker::advance).
    Manual(Instant),
    /// Follows a runtime's clock and timers.
    Runtime(Arc<dyn Runtime>),
}

impl Clock {
    fn now(&self) -> Instant {
        match self {
            Clock::Manual(t) => *t,
            Clock::Runtime(rt) => rt.now(),
        }
    }
}

/// Network-wide faults.
#[derive(Debug, Default)]
pub(crate) struct Net {
    pub(crate) partitioned: bool,
    pub(crate) refuse_all: bool,
    pub(crate) refuse_n: u64,
    pub(crate) held: bool,
    pub(crate) delay: Duration,
    pub(crate) jitter: Duration,
    pub(crate) capacity: Option<usize>,
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

/// A record handed off and not yet processed.
#[derive(Debug)]
struct Pending {
    id: RecordId,
    record: Record,
    topic: usize,
    partition: u32,
    due: Instant,
}

/// The records of one partition that failed retriably in this session and
/// were not stored since. While one of them is older than a record handed
/// off, that record fails too: nothing overtakes a failed record, as with
/// Kafka's idempotent producer (`OUT_OF_ORDER_SEQUENCE_NUMBER`).
#[derive(Debug, Clone)]
struct Gap {
    topic: usize,
    partition: u32,
    failed: BTreeSet<u64>,
}

/// One transport, as the broker sees it.
#[derive(Debug)]
pub(crate) struct Link {
    tid: TransportId,
    session: u64,
    pub(crate) state: LinkState,
    /// Events not yet taken by the transport.
    events: VecDeque<TransportEvent>,
    /// How many of `events` are about records.
    record_events: usize,
    pending: VecDeque<Pending>,
    last_due: Option<Instant>,
    /// Records taken in this session whose outcome the transport has not
    /// yet taken: what back-pressure counts.
    unserved: usize,
    /// A send was refused with back-pressure; report `Ready` when room is back.
    bp_refused: bool,
    gaps: Vec<Gap>,
    stored_ids: IdSet,
    pub(crate) waker: Option<Waker>,
    /// A fatal error happened: the next connect rebuilds the client.
    rebuild: bool,
    topic_cache: usize,
}

impl Link {
    fn new(tid: TransportId) -> Self {
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

    fn push_record_event(&mut self, event: TransportEvent) {
        self.events.push_back(event);
        self.record_events += 1;
    }
}

#[derive(Debug, Default)]
pub(crate) struct PartitionLog {
    next_offset: i64,
    pub(crate) records: Vec<StoredRecord>,
}

#[derive(Debug)]
pub(crate) struct TopicLog {
    pub(crate) name: String,
    pub(crate) partitions: Vec<PartitionLog>,
}

impl TopicLog {
    fn new(name: String, partitions: u32) -> Self {
        let mut t = Self {
            name,
            partitions: Vec::new(),
        };
        t.grow(partitions);
        t
    }

    fn grow(&mut self, partitions: u32) {
        let n = partitions.max(1) as usize;
        if self.partitions.len() < n {
            self.partitions.resize_with(n, PartitionLog::default);
        }
    }

    /// Records stored, duplicates included.
    pub(crate) fn stored(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| u64::try_from(p.next_offset).unwrap_or(0))
            .sum()
    }
}

/// How a session breaks.
#[derive(Debug, Clone, Copy)]
enum Break {
    LinkLost(&'static str),
    Fatal(&'static str),
    /// Silently: the session swallows everything until the next connect.
    Blackhole,
}

/// Everything behind the broker's mutex.
pub(crate) struct Shared {
    clock: Clock,
    start: Instant,
    default_partitions: u32,
    pub(crate) storage: Storage,
    pub(crate) topics: Vec<TopicLog>,
    topic_index: HashMap<String, usize>,
    pub(crate) links: Vec<Link>,
    pub(crate) net: Net,
    rules: Vec<Rule>,
    next_rule: u64,
    chaos: Option<ChaosState>,
    rng: Rng,
    pub(crate) stats: BrokerStats,
    pub(crate) duplicates: Vec<(TransportId, RecordId)>,
    pub(crate) unacked: Vec<(TransportId, RecordId)>,
    pub(crate) resent_after_ack: Vec<(TransportId, RecordId)>,
}

impl Shared {
    pub(crate) fn new(
        clock: Clock,
        default_partitions: u32,
        storage: Storage,
        seed: u64,
        topics: Vec<(String, u32)>,
    ) -> Self {
        let start = clock.now();
        let mut s = Self {
            clock,
            start,
            default_partitions: default_partitions.max(1),
            storage,
            topics: Vec::new(),
            topic_index: HashMap::new(),
            links: Vec::new(),
            net: Net::default(),
            rules: Vec::new(),
            next_rule: 1,
            chaos: None,
            rng: Rng::new(seed),
            stats: BrokerStats::default(),
            duplicates: Vec::new(),
            unacked: Vec::new(),
            resent_after_ack: Vec::new(),
        };
        for (name, n) in topics {
            s.create_topic(&name, n);
        }
        s
    }

    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The runtime, when the clock follows one.
    pub(crate) fn runtime(&self) -> Option<Arc<dyn Runtime>> {
        match &self.clock {
            Clock::Manual(_) => None,
            Clock::Runtime(rt) => Some(Arc::clone(rt)),
        }
    }

    /// Moves the manual clock forward; false with a runtime clock.
    pub(crate) fn advance(&mut self, by: Duration) -> bool {
        match &mut self.clock {
            Clock::Manual(t) => {
                *t += by;
                true
            }
            Clock::Runtime(_) => false,
        }
    }

    // ----- topics --------------------------------------------------------

    pub(crate) fn create_topic(&mut self, name: &str, partitions: u32) -> usize {
        if let Some(&t) = self.topic_index.get(name) {
            self.topics[t].grow(partitions);
            return t;
        }
        let t = self.topics.len();
        self.topics.push(TopicLog::new(name.to_owned(), partitions));
        self.topic_index.insert(name.to_owned(), t);
        t
    }

    pub(crate) fn topic(&self, name: &str) -> Option<&TopicLog> {
        self.topic_index.get(name).map(|&t| &self.topics[t])
    }

    /// The partition a key (or a keyless record id) goes to.
    pub(crate) fn partition_of(key: Option<&[u8]>, id: RecordId, partitions: u32) -> u32 {
        match key {
            Some(k) => partition_of_key(k, partitions),
            // Keyless records spread by id: stable across re-sends.
            None => (id.0 % u64::from(partitions.max(1))) as u32,
        }
    }

    fn locate(&mut self, li: usize, id: RecordId, record: &Record) -> (usize, u32) {
        let cached = self.links[li].topic_cache;
        let t = match self.topics.get(cached) {
            Some(tl) if *tl.name == *record.topic => cached,
            _ => {
                let t = match self.topic_index.get(&*record.topic) {
                    Some(&t) => t,
                    None => self.create_topic(&record.topic, self.default_partitions),
                };
                self.links[li].topic_cache = t;
                t
            }
        };
        let n = self.topics[t].partitions.len() as u32;
        (t, Self::partition_of(record.key.as_deref(), id, n))
    }

    // ----- transports ----------------------------------------------------

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
                self.settle_link(li, now);
            }
        }
    }

    /// Drops everything of the current session: queued events, pending
    /// records, back-pressure and gaps.
    fn end_session(&mut self, li: usize) {
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
    fn drop_events(&mut self, li: usize) {
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

    fn note_unacked(&mut self, tid: TransportId, id: RecordId) {
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

    /// Hands one record off on link `li`.
    pub(crate) fn send(
        &mut self,
        li: usize,
        id: RecordId,
        record: &Record,
        resent_after_ack: bool,
        now: Instant,
    ) -> Result<(), TransportError> {
        let link = &mut self.links[li];
        if resent_after_ack {
            self.stats.resent_after_ack += 1;
            self.resent_after_ack.push((link.tid, id));
        }
        match link.state {
            LinkState::Up { blackholed: false } => {}
            LinkState::Up { blackholed: true } => {
                self.stats.blackholed += 1;
                return Ok(());
            }
            LinkState::Closed => return Err(TransportError::link("mock transport is closed")),
            LinkState::Idle | LinkState::Connecting { .. } | LinkState::Down => {
                return Err(TransportError::link("not connected"));
            }
        }
        if self.net.partitioned {
            self.stats.blackholed += 1;
            self.break_link(li, Break::Blackhole, InFlight::Lost, false, now);
            return Ok(());
        }
        if let Some(cap) = self.net.capacity
            && link.unserved >= cap
        {
            link.bp_refused = true;
            self.stats.backpressured += 1;
            return Err(TransportError::backpressure(
                "QUEUE_FULL: mock transport buffer is full",
            ));
        }
        let (topic, partition) = self.locate(li, id, record);
        self.stats.handed_off += 1;
        let link = &mut self.links[li];
        link.unserved += 1;
        let net = &self.net;
        if net.held || !net.delay.is_zero() || !net.jitter.is_zero() || !link.pending.is_empty() {
            let mut due = deadline_after(now, net.delay);
            if !net.jitter.is_zero() {
                let nanos = u64::try_from(net.jitter.as_nanos()).unwrap_or(u64::MAX);
                due += Duration::from_nanos(self.rng.up_to(nanos));
            }
            let link = &mut self.links[li];
            if let Some(last) = link.last_due {
                due = due.max(last);
            }
            link.last_due = Some(due);
            link.pending.push_back(Pending {
                id,
                record: record.clone(),
                topic,
                partition,
                due,
            });
            return Ok(());
        }
        self.process(li, id, Cow::Borrowed(record), topic, partition, now);
        Ok(())
    }

    /// Processes one record of link `li`. Returns false when the session
    /// broke (chaos) and no further record of it may be processed.
    fn process(
        &mut self,
        li: usize,
        id: RecordId,
        record: Cow<'_, Record>,
        topic: usize,
        partition: u32,
        now: Instant,
    ) -> bool {
        let mut lose_ack = false;
        let mut chaos_fail = false;
        if let Some(fault) = self.chaos.as_mut().and_then(ChaosState::on_record) {
            let broken = match fault {
                RecordFault::Reset { drop_unreported } => Some((
                    Break::LinkLost("connection reset (mock broker chaos)"),
                    InFlight::Prefix,
                    drop_unreported,
                )),
                RecordFault::Fatal => Some((
                    Break::Fatal("fatal client error (mock broker chaos)"),
                    InFlight::Lost,
                    false,
                )),
                RecordFault::Hang => Some((Break::Blackhole, InFlight::Lost, false)),
                RecordFault::LoseAck => {
                    lose_ack = true;
                    None
                }
                RecordFault::FailRetriable => {
                    chaos_fail = true;
                    None
                }
            };
            if let Some((how, in_flight, drop_unreported)) = broken {
                self.links[li].pending.push_front(Pending {
                    id,
                    record: record.into_owned(),
                    topic,
                    partition,
                    due: now,
                });
                self.break_link(li, how, in_flight, drop_unreported, now);
                return false;
            }
        }
        if self.behind_gap(li, id, topic, partition) {
            self.fail_retriable(li, id, topic, partition, OUT_OF_ORDER.to_owned());
            return true;
        }
        match self.rule_action(id, &record) {
            Some(Action::Reject(reason)) => {
                self.stats.rejected += 1;
                // Never re-sent: it must not hold its partition back.
                self.close_gap(li, id, topic, partition);
                self.fail(li, id, TransportError::permanent(reason));
                return true;
            }
            Some(Action::FailRetriable(reason)) => {
                self.fail_retriable(li, id, topic, partition, reason);
                return true;
            }
            Some(Action::LoseAck) => lose_ack = true,
            None if chaos_fail => {
                let reason = "REQUEST_TIMED_OUT (mock broker chaos)".to_owned();
                self.fail_retriable(li, id, topic, partition, reason);
                return true;
            }
            None => {}
        }
        let offset = self.store(li, id, record, topic, partition, now);
        let link = &mut self.links[li];
        if lose_ack {
            link.unserved = link.unserved.saturating_sub(1);
            let tid = link.tid;
            self.note_unacked(tid, id);
        } else {
            self.stats.acked += 1;
            link.push_record_event(TransportEvent::Delivered(Ack {
                id,
                partition: Some(partition as i32),
                offset: Some(offset),
            }));
        }
        true
    }

    /// Whether a record of the partition older than `id` failed in this
    /// session and was not stored since.
    fn behind_gap(&self, li: usize, id: RecordId, topic: usize, partition: u32) -> bool {
        self.links[li]
            .gaps
            .iter()
            .find(|g| g.topic == topic && g.partition == partition)
            .and_then(|g| g.failed.first())
            .is_some_and(|&oldest| oldest < id.0)
    }

    /// Notes that `id` failed retriably: younger records of its partition
    /// fail until it is stored.
    fn open_gap(&mut self, li: usize, id: RecordId, topic: usize, partition: u32) {
        let gaps = &mut self.links[li].gaps;
        match gaps
            .iter_mut()
            .find(|g| g.topic == topic && g.partition == partition)
        {
            Some(g) => {
                g.failed.insert(id.0);
            }
            None => gaps.push(Gap {
                topic,
                partition,
                failed: BTreeSet::from([id.0]),
            }),
        }
    }

    /// Notes that `id` no longer holds its partition back (stored, or
    /// failed permanently).
    fn close_gap(&mut self, li: usize, id: RecordId, topic: usize, partition: u32) {
        let gaps = &mut self.links[li].gaps;
        if let Some(at) = gaps
            .iter()
            .position(|g| g.topic == topic && g.partition == partition)
        {
            gaps[at].failed.remove(&id.0);
            if gaps[at].failed.is_empty() {
                gaps.swap_remove(at);
            }
        }
    }

    fn rule_action(&mut self, id: RecordId, record: &Record) -> Option<Action> {
        self.rules
            .iter_mut()
            .find_map(|r| r.matcher.check(id, record).then(|| r.action.clone()))
    }

    fn fail_retriable(
        &mut self,
        li: usize,
        id: RecordId,
        topic: usize,
        partition: u32,
        reason: String,
    ) {
        self.open_gap(li, id, topic, partition);
        self.fail(li, id, TransportError::retriable(reason));
    }

    fn fail(&mut self, li: usize, id: RecordId, error: TransportError) {
        if error.class == robust_producer::ErrorClass::Retriable {
            self.stats.failed_retriable += 1;
        }
        self.links[li].push_record_event(TransportEvent::Failed { id, error });
    }

    fn store(
        &mut self,
        li: usize,
        id: RecordId,
        record: Cow<'_, Record>,
        topic: usize,
        partition: u32,
        now: Instant,
    ) -> i64 {
        if !self.links[li].gaps.is_empty() {
            self.close_gap(li, id, topic, partition);
        }
        let link = &mut self.links[li];
        let (tid, session) = (link.tid, link.session);
        if !link.stored_ids.insert(id.0) {
            self.stats.duplicates += 1;
            self.duplicates.push((tid, id));
        }
        self.stats.stored += 1;
        let log = &mut self.topics[topic].partitions[partition as usize];
        let offset = log.next_offset;
        log.next_offset += 1;
        if self.storage == Storage::Full {
            log.records.push(StoredRecord {
                record: record.into_owned(),
                partition: partition as i32,
                offset,
                id,
                transport: tid,
                session,
                at: now.saturating_duration_since(self.start),
            });
        }
        offset
    }

    /// Processes a pending record of a breaking session: stored without an
    /// acknowledgement unless a gap or a rule says otherwise.
    fn process_silently(&mut self, li: usize, p: Pending, now: Instant) {
        if self.behind_gap(li, p.id, p.topic, p.partition) {
            self.open_gap(li, p.id, p.topic, p.partition);
            self.stats.discarded += 1;
            return;
        }
        match self.rule_action(p.id, &p.record) {
            Some(Action::Reject(_)) => self.stats.discarded += 1,
            Some(Action::FailRetriable(_)) => {
                self.open_gap(li, p.id, p.topic, p.partition);
                self.stats.discarded += 1;
            }
            Some(Action::LoseAck) | None => {
                self.store(li, p.id, Cow::Owned(p.record), p.topic, p.partition, now);
                let tid = self.links[li].tid;
                self.note_unacked(tid, p.id);
            }
        }
    }

    /// Ends the current session of link `li`.
    fn break_link(
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
        let mut lost = 0u64;
        match in_flight {
            InFlight::Lost => lost = pending.len() as u64,
            InFlight::Stored => {
                for p in pending {
                    self.process_silently(li, p, now);
                }
            }
            InFlight::Prefix => {
                // Per partition, in order of first appearance: how many of
                // its pending records get stored.
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
            }
        }
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

    /// Completes every connect and processes every record of link `li`
    /// that is due at `now`.
    pub(crate) fn settle_link(&mut self, li: usize, now: Instant) {
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

    pub(crate) fn settle(&mut self) {
        let now = self.now();
        for li in 0..self.links.len() {
            self.settle_link(li, now);
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

    /// Moves the queued events of link `li` into `inbox` (empty), settling
    /// first, and reports `Ready` when back-pressure is over.
    pub(crate) fn refill(&mut self, li: usize, inbox: &mut VecDeque<TransportEvent>, now: Instant) {
        self.settle_link(li, now);
        let link = &mut self.links[li];
        mem::swap(&mut link.events, inbox);
        link.unserved = link.unserved.saturating_sub(link.record_events);
        link.record_events = 0;
        if link.bp_refused && self.net.capacity.is_none_or(|c| link.unserved < c) {
            link.bp_refused = false;
            inbox.push_back(TransportEvent::Ready);
        }
    }

    // ----- faults --------------------------------------------------------

    pub(crate) fn partition(&mut self, now: Instant) {
        self.net.partitioned = true;
        for li in 0..self.links.len() {
            match self.links[li].state {
                LinkState::Up { blackholed: false } if !self.links[li].pending.is_empty() => {
                    self.break_link(li, Break::Blackhole, InFlight::Lost, false, now);
                }
                LinkState::Connecting { due: Some(_) } => {
                    self.stats.hung_connects += 1;
                    self.links[li].state = LinkState::Connecting { due: None };
                }
                _ => {}
            }
        }
    }

    pub(crate) fn heal(&mut self, now: Instant) {
        self.net.partitioned = false;
        self.net.refuse_all = false;
        self.net.refuse_n = 0;
        for link in &mut self.links {
            if link.state == (LinkState::Connecting { due: None }) {
                link.state = LinkState::Connecting {
                    due: Some(deadline_after(now, self.net.delay)),
                };
            }
        }
    }

    pub(crate) fn reset(&mut self, r: Reset, now: Instant) {
        for li in 0..self.links.len() {
            match self.links[li].state {
                LinkState::Up { .. } => self.break_link(
                    li,
                    Break::LinkLost("connection reset by mock broker"),
                    r.in_flight,
                    r.drop_unreported,
                    now,
                ),
                LinkState::Connecting { .. } => {
                    let link = &mut self.links[li];
                    link.state = LinkState::Down;
                    link.events.push_back(TransportEvent::ConnectFailed(
                        "connection reset by mock broker".to_owned(),
                    ));
                }
                LinkState::Idle | LinkState::Down | LinkState::Closed => {}
            }
        }
    }

    pub(crate) fn fatal(&mut self, now: Instant) {
        for li in 0..self.links.len() {
            if matches!(
                self.links[li].state,
                LinkState::Up { .. } | LinkState::Connecting { .. }
            ) {
                self.break_link(
                    li,
                    Break::Fatal("fatal client error (mock broker)"),
                    InFlight::Lost,
                    false,
                    now,
                );
            }
        }
    }

    pub(crate) fn add_rule(&mut self, matcher: Matcher, action: Action) -> RuleId {
        let id = RuleId(self.next_rule);
        self.next_rule += 1;
        self.rules.retain(|r| !r.matcher.exhausted());
        self.rules.push(Rule {
            id,
            matcher,
            action,
        });
        id
    }

    pub(crate) fn remove_rule(&mut self, id: RuleId) -> bool {
        self.rules.retain(|r| !r.matcher.exhausted());
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        self.rules.len() != before
    }

    pub(crate) fn clear_rules(&mut self) {
        self.rules.clear();
    }

    pub(crate) fn chaos(&mut self, chaos: Option<Chaos>) {
        self.chaos = chaos.map(ChaosState::new);
    }

    /// Takes the wakers of every waiting transport.
    pub(crate) fn take_wakers(&mut self) -> Vec<Waker> {
        self.links
            .iter_mut()
            .filter_map(|l| l.waker.take())
            .collect()
    }

    /// Takes the wakers of the waiting transports that have an event.
    pub(crate) fn take_wakers_with_events(&mut self) -> Vec<Waker> {
        self.links
            .iter_mut()
            .filter(|l| !l.events.is_empty())
            .filter_map(|l| l.waker.take())
            .collect()
    }
}
