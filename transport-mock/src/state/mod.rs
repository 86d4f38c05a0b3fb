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
//! fails too), the rules, then stores it and queues its acknowledgement. A
//! session that breaks (reset, fatal error, blackhole, reconnect, close)
//! drops or partly stores its pending records by a per-partition prefix, so
//! the stored records of each partition are always a prefix of what was
//! handed off in a session.
//!
//! The rules live in four submodules, each an `impl Shared` block:
//! `topics` (topic logs and where a record goes), `sessions` (a
//! transport's link: connect, break, close, due work and events),
//! `pipeline` (a record from hand-off to stored, failed or acknowledged)
//! and `verbs` (the fault verbs the broker exposes).

mod pipeline;
mod sessions;
mod topics;
mod verbs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use robust_producer::{RecordId, Runtime};

use crate::fault::{ChaosState, Rule};
use crate::log::{BrokerStats, Storage, TransportId};
use crate::rng::Rng;

pub(crate) use sessions::Link;
pub(crate) use topics::TopicLog;

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
