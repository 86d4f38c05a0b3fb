//! [`MockBroker`]: the simulated Kafka cluster, its fault verbs and its log.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use robust_producer::{Record, RecordId, Runtime};

use crate::fault::{Action, Chaos, Matcher, Reset, RuleId};
use crate::log::{BrokerStats, Storage, StoredRecord, TransportId};
use crate::state::{Clock, Shared, lock};
use crate::transport::MockTransport;
use crate::verify::{self, Verification, VerifyError};

/// An in-memory "Kafka cluster" with fault verbs named like a network
/// simulator's, and the log of everything it stored.
///
/// It is a cheap handle (`Clone`, `Send`, `Sync`) over shared state: keep
/// one in the test, hand [`MockBroker::transport`]s to producers, call the
/// verbs from anywhere. Several transports may share one broker (a
/// restarted producer, two services); each gets its own [`TransportId`]
/// and sessions, and they share topics and offsets.
///
/// # Topics and partitions
///
/// A topic is created on first use with the broker's default partition
/// count (1 unless [`MockBrokerBuilder::partitions`] says otherwise), or
/// beforehand with [`MockBrokerBuilder::topic`] /
/// [`MockBroker::create_topic`]. A keyed record goes to the partition
/// Kafka's default partitioner picks (murmur2 of the key); a keyless record
/// goes to partition `id % partitions`, so its re-sends land where it
/// first went. Offsets count from 0 per partition, duplicates included.
///
/// # Time
///
/// With [`MockBrokerBuilder::runtime`] the broker reads the runtime's clock
/// and delayed acknowledgements are woken by its timers: use the runtime
/// the producer uses, for example `TokioRuntime` under tokio's paused
/// clock. Without one, the broker's clock is manual: it starts at creation
/// and moves only with [`MockBroker::advance`]; nothing delayed happens
/// until then.
///
/// # Faults
///
/// | verb | effect | undone by |
/// |---|---|---|
/// | [`refuse(n)`](Self::refuse) | the next `n` connect attempts fail with `ConnectFailed` | `heal` |
/// | [`refuse_until_healed`](Self::refuse_until_healed) | every connect attempt fails | `heal` |
/// | [`down`](Self::down) | `reset` + `refuse_until_healed`: a broker that stopped | `heal` |
/// | [`partition`](Self::partition) | connects and hand-offs hang: no event at all | `heal` |
/// | [`reset`](Self::reset) / [`reset_with`](Self::reset_with) | sessions end now with `LinkLost` | (the producer reconnects) |
/// | [`fatal`](Self::fatal) | sessions end now with `Fatal`; the next connect rebuilds | (the producer reconnects) |
/// | [`hold`](Self::hold) | records are taken but not processed: no outcome | `release` |
/// | [`delay(d)`](Self::delay), [`jitter(d)`](Self::jitter) | connects and records complete after `d` (plus up to the jitter) | `delay(ZERO)` |
/// | [`backpressure(n)`](Self::backpressure) | `send` fails with `Backpressure` beyond `n` outcomes not yet taken, then `Ready` | `clear_faults` |
/// | [`reject(m, reason)`](Self::reject) | matching records fail with `Permanent` | `remove_rule` |
/// | [`fail_retriable(m, reason)`](Self::fail_retriable) | matching records fail with `Retriable` | `remove_rule` |
/// | [`lose_acks(m)`](Self::lose_acks) | matching records are stored, never acknowledged | `remove_rule` |
/// | [`chaos(c)`](Self::chaos) | seeded random faults, see [`Chaos`] | `stop_chaos` |
///
/// [`clear_faults`](Self::clear_faults) undoes everything at once.
///
/// ## Partition, precisely
///
/// While partitioned, a connect attempt hangs (no event; the producer's
/// connect timeout notices) and a hand-off is taken (`Ok`) but never
/// processed: never stored, no event (the producer's ack timeout notices).
/// Records the broker was still delaying or holding are lost the same way.
/// A session that lost a record this way stays silent, even after `heal`,
/// until the next connect: like Kafka's idempotent producer, it cannot
/// store later records of a partition ahead of the lost ones. A session
/// that lost nothing resumes after `heal`. On `heal`, a connect attempt
/// still hanging completes (after the delay) with `Connected`, unless the
/// producer has started a new one since.
///
/// ## Per-partition order
///
/// When a record fails retriably, every later record of its partition
/// processed in the same session fails too (`OUT_OF_ORDER_SEQUENCE_NUMBER`),
/// until the failed record (or an earlier one) is handed off again. So the
/// stored records of a partition are always a prefix of each session's
/// hand-offs, as the transport contract requires.
#[derive(Clone)]
pub struct MockBroker {
    shared: Arc<Mutex<Shared>>,
}

/// Builds a [`MockBroker`].
pub struct MockBrokerBuilder {
    partitions: u32,
    topics: Vec<(String, u32)>,
    storage: Storage,
    seed: u64,
    runtime: Option<Arc<dyn Runtime>>,
}

impl MockBrokerBuilder {
    /// Partition count of topics created on first use (default 1; 0 counts
    /// as 1).
    #[must_use]
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = n;
        self
    }

    /// Creates `topic` with `partitions` partitions.
    #[must_use]
    pub fn topic(mut self, topic: impl Into<String>, partitions: u32) -> Self {
        self.topics.push((topic.into(), partitions));
        self
    }

    /// How much of the stored records is kept (default [`Storage::Full`]).
    #[must_use]
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Seed of the broker's own random choices: jitter and the prefixes
    /// stored by [`InFlight::Prefix`](crate::InFlight::Prefix) resets
    /// (default 0). [`Chaos`] has its own seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Follows this runtime's clock and timers instead of a manual clock.
    #[must_use]
    pub fn runtime(mut self, runtime: impl Runtime) -> Self {
        self.runtime = Some(Arc::new(runtime));
        self
    }

    /// The broker.
    pub fn build(self) -> MockBroker {
        let clock = match self.runtime {
            Some(rt) => Clock::Runtime(rt),
            None => Clock::Manual(std::time::Instant::now()),
        };
        let shared = Shared::new(clock, self.partitions, self.storage, self.seed, self.topics);
        MockBroker::from_shared(Arc::new(Mutex::new(shared)))
    }
}

impl fmt::Debug for MockBrokerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockBrokerBuilder")
            .field("partitions", &self.partitions)
            .field("topics", &self.topics)
            .field("storage", &self.storage)
            .field("seed", &self.seed)
            .field("runtime", &self.runtime.is_some())
            .finish()
    }
}

impl Default for MockBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MockBroker {
    /// A broker with the defaults: 1 partition per topic, full storage,
    /// seed 0, manual clock.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder.
    pub fn builder() -> MockBrokerBuilder {
        MockBrokerBuilder {
            partitions: 1,
            topics: Vec::new(),
            storage: Storage::Full,
            seed: 0,
            runtime: None,
        }
    }

    pub(crate) fn from_shared(shared: Arc<Mutex<Shared>>) -> Self {
        Self { shared }
    }

    /// A new client of this broker, not connected yet.
    pub fn transport(&self) -> MockTransport {
        MockTransport::new(Arc::clone(&self.shared))
    }

    /// Runs a fault verb: runs what is due, then wakes every waiting
    /// transport (outside the lock).
    fn verb<R>(&self, f: impl FnOnce(&mut Shared, std::time::Instant) -> R) -> R {
        let (out, wakers) = {
            let mut s = lock(&self.shared);
            let now = s.now();
            let out = f(&mut s, now);
            s.run_due();
            (out, s.take_wakers())
        };
        for w in wakers {
            w.wake();
        }
        out
    }

    /// Reads the state after running what is due; wakes the transports
    /// that this gave an event.
    fn read<R>(&self, f: impl FnOnce(&Shared) -> R) -> R {
        let (out, wakers) = {
            let mut s = lock(&self.shared);
            s.run_due();
            (f(&s), s.take_wakers_with_events())
        };
        for w in wakers {
            w.wake();
        }
        out
    }

    // ----- fault verbs ---------------------------------------------------

    /// The next `n` connect attempts (of any transport) are refused.
    pub fn refuse(&self, n: u64) {
        self.verb(|s, _| s.net.refuse_n = s.net.refuse_n.saturating_add(n));
    }

    /// Every connect attempt is refused until [`MockBroker::heal`].
    pub fn refuse_until_healed(&self) {
        self.verb(|s, _| s.net.refuse_all = true);
    }

    /// The broker stops: every session is reset ([`MockBroker::reset`]) and
    /// connects are refused until [`MockBroker::heal`].
    pub fn down(&self) {
        self.verb(|s, now| {
            s.net.refuse_all = true;
            s.reset(Reset::new(), now);
        });
    }

    /// A network partition: connects and hand-offs hang with no event until
    /// [`MockBroker::heal`]. See [the type docs](Self#partition-precisely).
    pub fn partition(&self) {
        self.verb(|s, now| s.partition(now));
    }

    /// Ends a partition and every refusal; hung connects complete.
    pub fn heal(&self) {
        self.verb(|s, now| s.heal(now));
    }

    /// Every session breaks now with
    /// [`TransportEvent::LinkLost`](robust_producer::TransportEvent::LinkLost)
    /// (a connect under way fails with `ConnectFailed`). Records not yet
    /// processed are lost; outcomes already queued are still reported
    /// before the `LinkLost`. See [`MockBroker::reset_with`] for other
    /// variants.
    pub fn reset(&self) {
        self.reset_with(Reset::new());
    }

    /// [`MockBroker::reset`], with what happens to the records in flight.
    pub fn reset_with(&self, reset: Reset) {
        self.verb(|s, now| s.reset(reset, now));
    }

    /// Every session (up or connecting) breaks now with
    /// [`TransportEvent::Fatal`](robust_producer::TransportEvent::Fatal);
    /// records not yet processed are lost. The next connect of each
    /// transport counts as a rebuild of its client ([`BrokerStats::rebuilds`]).
    pub fn fatal(&self) {
        self.verb(|s, now| s.fatal(now));
    }

    /// Records handed off from now on are taken but not processed: they get
    /// no outcome, as from a stalled broker, until [`MockBroker::release`].
    pub fn hold(&self) {
        self.verb(|s, _| s.net.held = true);
    }

    /// Processes the held records, in order, and resumes normal service.
    pub fn release(&self) {
        self.verb(|s, _| s.net.held = false);
    }

    /// Connects and records complete `delay` after they were started or
    /// handed off (applies to those started from now on). Needs a runtime
    /// clock or [`MockBroker::advance`].
    pub fn delay(&self, delay: Duration) {
        self.verb(|s, _| s.net.delay = delay);
    }

    /// Adds a random extra delay up to `jitter` to each record (drawn from
    /// the broker's seed; order per session is kept).
    pub fn jitter(&self, jitter: Duration) {
        self.verb(|s, _| s.net.jitter = jitter);
    }

    /// `send` fails with [`ErrorClass::Backpressure`](robust_producer::ErrorClass::Backpressure)
    /// while `capacity` records of the session have no outcome taken by the
    /// transport yet; once there is room again the transport reports
    /// [`TransportEvent::Ready`](robust_producer::TransportEvent::Ready).
    pub fn backpressure(&self, capacity: usize) {
        self.verb(|s, _| s.net.capacity = Some(capacity));
    }

    /// Records `matcher` picks fail with
    /// [`ErrorClass::Permanent`](robust_producer::ErrorClass::Permanent) and
    /// `reason` (for example `"MSG_SIZE_TOO_LARGE"`). Rules are checked in
    /// the order they were added; the first that picks a record applies.
    pub fn reject(&self, matcher: Matcher, reason: impl Into<String>) -> RuleId {
        let action = Action::Reject(reason.into());
        self.verb(|s, _| s.add_rule(matcher, action))
    }

    /// Records `matcher` picks fail with
    /// [`ErrorClass::Retriable`](robust_producer::ErrorClass::Retriable) and
    /// `reason`; so do the later records of their partition in the same
    /// session, until the failed record is handed off again.
    pub fn fail_retriable(&self, matcher: Matcher, reason: impl Into<String>) -> RuleId {
        let action = Action::FailRetriable(reason.into());
        self.verb(|s, _| s.add_rule(matcher, action))
    }

    /// Records `matcher` picks are stored but their acknowledgement never
    /// arrives: a later re-send is a duplicate.
    pub fn lose_acks(&self, matcher: Matcher) -> RuleId {
        self.verb(|s, _| s.add_rule(matcher, Action::LoseAck))
    }

    /// Removes a rule; false if it was not there (or used up).
    pub fn remove_rule(&self, rule: RuleId) -> bool {
        self.verb(|s, _| s.remove_rule(rule))
    }

    /// Starts a seeded random fault schedule (replacing any previous one).
    pub fn chaos(&self, chaos: Chaos) {
        self.verb(|s, _| s.chaos(Some(chaos)));
    }

    /// Stops the random fault schedule.
    pub fn stop_chaos(&self) {
        self.verb(|s, _| s.chaos(None));
    }

    /// Undoes every fault: heals, releases, removes delay, jitter,
    /// back-pressure, rules and chaos.
    pub fn clear_faults(&self) {
        self.verb(|s, now| {
            s.heal(now);
            s.net.held = false;
            s.net.delay = Duration::ZERO;
            s.net.jitter = Duration::ZERO;
            s.net.capacity = None;
            s.clear_rules();
            s.chaos(None);
        });
    }

    /// Moves the manual clock forward and processes what became due. Has
    /// no effect (returns false) when the broker follows a runtime.
    pub fn advance(&self, by: Duration) -> bool {
        self.verb(|s, _| s.advance(by))
    }

    /// Creates `topic` with `partitions` partitions, or grows an existing
    /// topic to that many (like Kafka, growing moves keys).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.verb(|s, _| {
            s.create_topic(topic, partitions);
        });
    }

    // ----- queries -------------------------------------------------------

    /// The records stored in `topic`'s `partition`, in offset order
    /// (empty with [`Storage::CountOnly`]).
    pub fn log(&self, topic: &str, partition: i32) -> Vec<StoredRecord> {
        self.read(|s| {
            let part = usize::try_from(partition).ok();
            s.topic(topic)
                .and_then(|t| part.and_then(|p| t.partitions.get(p)))
                .map(|p| p.records.clone())
                .unwrap_or_default()
        })
    }

    /// The records stored in `topic`, partition by partition, each in offset
    /// order (empty with [`Storage::CountOnly`]).
    pub fn records(&self, topic: &str) -> Vec<StoredRecord> {
        self.read(|s| {
            s.topic(topic)
                .map(|t| {
                    t.partitions
                        .iter()
                        .flat_map(|p| p.records.iter().cloned())
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// How many records `topic` stored, duplicates included (also with
    /// [`Storage::CountOnly`]).
    pub fn stored_count(&self, topic: &str) -> u64 {
        self.read(|s| s.topic(topic).map_or(0, |t| t.stored()))
    }

    /// Topics, in order of creation.
    pub fn topics(&self) -> Vec<String> {
        self.read(|s| s.topics.iter().map(|t| t.name.clone()).collect())
    }

    /// The partition count of `topic`, if it exists.
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.read(|s| s.topic(topic).map(|t| t.partitions.len() as u32))
    }

    /// The partition a record with `key` goes to in a topic of `partitions`
    /// partitions: Kafka's default partitioner (murmur2).
    pub fn partition_for_key(key: &[u8], partitions: u32) -> i32 {
        Shared::partition_of(Some(key), RecordId(0), partitions) as i32
    }

    /// Counters.
    pub fn stats(&self) -> BrokerStats {
        self.read(|s| s.stats.clone())
    }

    /// Every store of a record that was already stored (same transport and
    /// record id), in order.
    pub fn duplicates(&self) -> Vec<(TransportId, RecordId)> {
        self.read(|s| s.duplicates.clone())
    }

    /// Records stored whose acknowledgement the producer never got (lost
    /// ack rules and chaos, stored by a reset, dropped by a reset, a
    /// reconnect or a close), in order. Only these may be duplicated by a
    /// correct producer.
    pub fn stored_unacknowledged(&self) -> Vec<(TransportId, RecordId)> {
        self.read(|s| s.unacked.clone())
    }

    /// Hand-offs of records whose acknowledgement had already been reported
    /// to the producer. A correct producer never does this: non-empty means
    /// a bug in the producer.
    pub fn resent_after_ack(&self) -> Vec<(TransportId, RecordId)> {
        self.read(|s| s.resent_after_ack.clone())
    }

    /// Checks the log against the records a test expects delivered, given
    /// in the order they were sent: every one is stored, per topic and key
    /// their first copies are in send order, and no record was re-sent
    /// after its acknowledgement. Records are recognised by their
    /// `event_id` header, or their payload when they have none.
    ///
    /// # Errors
    ///
    /// The first [`VerifyError`] found.
    pub fn verify<'a>(
        &self,
        expected: impl IntoIterator<Item = &'a Record>,
    ) -> Result<Verification, VerifyError> {
        self.verify_with(expected, verify::default_identity)
    }

    /// [`MockBroker::verify`], recognising records by `identity` (which
    /// runs under the broker's lock: it must not call the broker).
    ///
    /// # Errors
    ///
    /// The first [`VerifyError`] found.
    pub fn verify_with<'a>(
        &self,
        expected: impl IntoIterator<Item = &'a Record>,
        identity: impl Fn(&Record) -> Vec<u8>,
    ) -> Result<Verification, VerifyError> {
        self.read(|s| verify::verify(s, expected, &identity))
    }
}

impl fmt::Debug for MockBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.shared);
        f.debug_struct("MockBroker")
            .field("topics", &s.topics.len())
            .field("transports", &s.links.len())
            .field("net", &s.net)
            .field("stats", &s.stats)
            .finish_non_exhaustive()
    }
}
