//! How faults are described: [`Matcher`] picks the records a rule applies to,
//! [`Reset`] says what a reset does to records in flight, and [`Chaos`] is a
//! seeded random fault schedule.

use std::fmt;
use std::sync::Arc;

use robust_producer::{Record, RecordId};

type Pred = Arc<dyn Fn(RecordId, &Record) -> bool + Send + Sync>;

/// Picks the records a fault rule applies to: a predicate, optionally
/// limited to the `n`-th and following matches ([`Matcher::skip`]) and to a
/// number of matches ([`Matcher::times`]).
///
/// A rule is evaluated when the broker processes a record (at hand-off, or
/// when its delay has passed), once per hand-off: a re-sent record is
/// matched again.
///
/// Predicates run under the broker's lock: they must not call the broker.
///
/// ```
/// use robust_producer_mock::Matcher;
///
/// // The third record of topic "orders" whose key is "k1", once.
/// let m = Matcher::topic("orders").and(Matcher::key("k1")).skip(2).times(1);
/// # let _ = m;
/// ```
#[derive(Clone)]
pub struct Matcher {
    pred: Pred,
    desc: String,
    skip: u64,
    times: Option<u64>,
}

impl Matcher {
    /// Every record.
    pub fn any() -> Self {
        Self::new("any", |_, _| true)
    }

    /// Records whose topic is `topic`.
    pub fn topic(topic: impl Into<String>) -> Self {
        let topic = topic.into();
        let desc = format!("topic == {topic:?}");
        Self::new(desc, move |_, r| *r.topic == *topic)
    }

    /// Records whose key is `key`.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        let key = key.into();
        let desc = format!("key == {:?}", String::from_utf8_lossy(&key));
        Self::new(desc, move |_, r| r.key.as_deref() == Some(key.as_slice()))
    }

    /// Records that carry header `name` with value `value`.
    pub fn header(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        let (name, value) = (name.into(), value.into());
        let desc = format!("header {name} == {:?}", String::from_utf8_lossy(&value));
        Self::new(desc, move |_, r| r.header(&name) == Some(value.as_slice()))
    }

    /// Records whose [`Record::size`] exceeds `bytes` (think
    /// `MESSAGE_TOO_LARGE`).
    pub fn larger_than(bytes: usize) -> Self {
        Self::new(format!("size > {bytes}"), move |_, r| r.size() > bytes)
    }

    /// The record the producer handed off with this id (ids are per
    /// transport: a restarted producer reuses them).
    pub fn id(id: RecordId) -> Self {
        Self::new(format!("id == {id}"), move |i, _| i == id)
    }

    /// Records for which `pred` returns true.
    pub fn when(pred: impl Fn(&Record) -> bool + Send + Sync + 'static) -> Self {
        Self::new("custom predicate", move |_, r| pred(r))
    }

    /// Records for which `pred(id, record)` returns true.
    pub fn when_id(pred: impl Fn(RecordId, &Record) -> bool + Send + Sync + 'static) -> Self {
        Self::new("custom predicate", pred)
    }

    /// Records both matchers pick. Counters ([`Matcher::skip`],
    /// [`Matcher::times`]) of `self` apply to the combination; those of
    /// `other` are ignored.
    #[must_use]
    pub fn and(self, other: Matcher) -> Self {
        let (a, b) = (self.pred, other.pred);
        Self {
            pred: Arc::new(move |i, r| a(i, r) && b(i, r)),
            desc: format!("({}) and ({})", self.desc, other.desc),
            skip: self.skip,
            times: self.times,
        }
    }

    /// Lets the first `n` matching records through untouched.
    #[must_use]
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    /// Applies to at most `n` matching records (after the skipped ones),
    /// then never again.
    #[must_use]
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    fn new(
        desc: impl Into<String>,
        pred: impl Fn(RecordId, &Record) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            pred: Arc::new(pred),
            desc: desc.into(),
            skip: 0,
            times: None,
        }
    }

    /// Whether the rule is used up.
    pub(crate) fn exhausted(&self) -> bool {
        self.times == Some(0)
    }

    /// Tests `record` and counts the match.
    pub(crate) fn check(&mut self, id: RecordId, record: &Record) -> bool {
        if self.exhausted() || !(self.pred)(id, record) {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        if let Some(t) = &mut self.times {
            *t -= 1;
        }
        true
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matcher")
            .field("pred", &self.desc)
            .field("skip", &self.skip)
            .field("times", &self.times)
            .finish()
    }
}

/// Identifies a fault rule, to remove it with
/// [`MockBroker::remove_rule`](crate::MockBroker::remove_rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(pub(crate) u64);

/// What a rule does to the records its matcher picks.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Fail with [`ErrorClass::Permanent`](robust_producer::ErrorClass::Permanent).
    Reject(String),
    /// Fail with [`ErrorClass::Retriable`](robust_producer::ErrorClass::Retriable).
    FailRetriable(String),
    /// Store, but never acknowledge.
    LoseAck,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: RuleId,
    pub(crate) matcher: Matcher,
    pub(crate) action: Action,
}

/// What happens to the records of a session that the broker had not yet
/// processed (held or delayed) when the session breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InFlight {
    /// None of them is stored.
    #[default]
    Lost,
    /// For each partition, a random prefix of them (possibly empty or all,
    /// drawn from the broker's seed) is stored without an acknowledgement:
    /// the broker wrote them but its answers were lost. Re-sends are
    /// duplicates.
    Prefix,
    /// All of them are stored without an acknowledgement.
    Stored,
}

/// What [`MockBroker::reset_with`](crate::MockBroker::reset_with) does: the
/// connection of every session breaks and the transport reports
/// [`TransportEvent::LinkLost`](robust_producer::TransportEvent::LinkLost).
///
/// ```
/// use robust_producer_mock::{InFlight, Reset};
///
/// // The broker stored some in-flight records before the connection broke,
/// // and the acknowledgements not yet read by the producer are lost too.
/// let r = Reset::new().in_flight(InFlight::Prefix).drop_unreported_acks();
/// # let _ = r;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reset {
    pub(crate) in_flight: InFlight,
    pub(crate) drop_unreported: bool,
}

impl Reset {
    /// A clean reset: records not yet processed are lost, outcomes already
    /// sent by the broker still reach the producer before the `LinkLost`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what happens to the records not yet processed.
    #[must_use]
    pub fn in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = in_flight;
        self
    }

    /// Outcomes the transport has not yet reported (acknowledgements and
    /// failures queued for [`Transport::next_event`](robust_producer::Transport::next_event))
    /// are lost with the connection: their records stay stored, and their
    /// re-sends are duplicates.
    #[must_use]
    pub fn drop_unreported_acks(mut self) -> Self {
        self.drop_unreported = true;
        self
    }
}

/// A seeded random fault schedule, applied by
/// [`MockBroker::chaos`](crate::MockBroker::chaos).
///
/// Each probability is drawn once per connect attempt (refuse, hang) or once
/// per record the broker processes (the others), from a generator seeded
/// with `seed`: for the same sequence of calls on the transports, the same
/// seed gives the same faults and the same log. Probabilities are clamped to
/// `[0, 1]` (NaN counts as 0). Every fault heals by itself on the next
/// connect, so a producer that keeps reconnecting always gets through as
/// long as the probabilities are below 1.
///
/// ```
/// use robust_producer_mock::Chaos;
///
/// let chaos = Chaos::new(42)
///     .refuse_connect(0.3)
///     .reset(0.001)
///     .lose_ack(0.002)
///     .fail_retriable(0.002);
/// # let _ = chaos;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    pub(crate) seed: u64,
    pub(crate) refuse_connect: f64,
    pub(crate) hang_connect: f64,
    pub(crate) reset: f64,
    pub(crate) fatal: f64,
    pub(crate) hang: f64,
    pub(crate) lose_ack: f64,
    pub(crate) fail_retriable: f64,
}

impl Chaos {
    /// No faults yet, with this seed.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            refuse_connect: 0.0,
            hang_connect: 0.0,
            reset: 0.0,
            fatal: 0.0,
            hang: 0.0,
            lose_ack: 0.0,
            fail_retriable: 0.0,
        }
    }

    /// A connect attempt is refused.
    #[must_use]
    pub fn refuse_connect(mut self, p: f64) -> Self {
        self.refuse_connect = clamp(p);
        self
    }

    /// A connect attempt hangs (no outcome until the next connect, or
    /// [`MockBroker::heal`](crate::MockBroker::heal)).
    #[must_use]
    pub fn hang_connect(mut self, p: f64) -> Self {
        self.hang_connect = clamp(p);
        self
    }

    /// Before processing a record the connection resets: the record and the
    /// later unprocessed ones are lost except for a random per-partition
    /// prefix ([`InFlight::Prefix`]); unreported outcomes are dropped with
    /// probability 1/2.
    #[must_use]
    pub fn reset(mut self, p: f64) -> Self {
        self.reset = clamp(p);
        self
    }

    /// Before processing a record the client fails fatally
    /// ([`TransportEvent::Fatal`](robust_producer::TransportEvent::Fatal));
    /// unprocessed records are lost.
    #[must_use]
    pub fn fatal(mut self, p: f64) -> Self {
        self.fatal = clamp(p);
        self
    }

    /// Before processing a record the session goes silent: this record and
    /// everything after it in the session vanish with no event, until the
    /// producer notices (its ack timeout) and reconnects.
    #[must_use]
    pub fn hang(mut self, p: f64) -> Self {
        self.hang = clamp(p);
        self
    }

    /// A record is stored but its acknowledgement is lost.
    #[must_use]
    pub fn lose_ack(mut self, p: f64) -> Self {
        self.lose_ack = clamp(p);
        self
    }

    /// A record fails with a retriable error (and so do the later records
    /// of its partition in the session, until it is re-sent).
    #[must_use]
    pub fn fail_retriable(mut self, p: f64) -> Self {
        self.fail_retriable = clamp(p);
        self
    }
}

fn clamp(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

/// A fault the chaos schedule picked for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordFault {
    Reset { drop_unreported: bool },
    Fatal,
    Hang,
    LoseAck,
    FailRetriable,
}

/// What the chaos schedule picked for a connect attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectFault {
    Refuse,
    Hang,
}

/// A [`Chaos`] with its generator.
#[derive(Debug, Clone)]
pub(crate) struct ChaosState {
    cfg: Chaos,
    rng: crate::rng::Rng,
}

impl ChaosState {
    pub(crate) fn new(cfg: Chaos) -> Self {
        let rng = crate::rng::Rng::new(cfg.seed);
        Self { cfg, rng }
    }

    pub(crate) fn on_connect(&mut self) -> Option<ConnectFault> {
        let c = &self.cfg;
        if c.refuse_connect == 0.0 && c.hang_connect == 0.0 {
            return None;
        }
        let u = self.rng.unit();
        if u < c.refuse_connect {
            Some(ConnectFault::Refuse)
        } else if u < c.refuse_connect + c.hang_connect {
            Some(ConnectFault::Hang)
        } else {
            None
        }
    }

    pub(crate) fn on_record(&mut self) -> Option<RecordFault> {
        let c = &self.cfg;
        let total = c.reset + c.fatal + c.hang + c.lose_ack + c.fail_retriable;
        if total == 0.0 {
            return None;
        }
        let u = self.rng.unit();
        let mut edge = c.reset;
        if u < edge {
            let drop_unreported = self.rng.next_u64() & 1 == 1;
            return Some(RecordFault::Reset { drop_unreported });
        }
        for (p, fault) in [
            (c.fatal, RecordFault::Fatal),
            (c.hang, RecordFault::Hang),
            (c.lose_ack, RecordFault::LoseAck),
            (c.fail_retriable, RecordFault::FailRetriable),
        ] {
            edge += p;
            if u < edge {
                return Some(fault);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str) -> Record {
        Record::new("t", "payload").with_key(key.to_owned())
    }

    #[test]
    fn matcher_skip_and_times() {
        let mut m = Matcher::key("a").skip(1).times(2);
        let id = RecordId(1);
        assert!(!m.check(id, &rec("b")));
        assert!(!m.check(id, &rec("a")), "skipped");
        assert!(m.check(id, &rec("a")));
        assert!(!m.check(id, &rec("b")));
        assert!(m.check(id, &rec("a")));
        assert!(m.exhausted());
        assert!(!m.check(id, &rec("a")));
    }

    #[test]
    fn matcher_combinators() {
        let mut m = Matcher::topic("t").and(Matcher::header("h", "v"));
        assert!(!m.check(RecordId(1), &rec("a")));
        assert!(m.check(RecordId(1), &rec("a").with_header("h", "v")));
        let mut big = Matcher::larger_than(10);
        assert!(!big.check(RecordId(1), &Record::new("t", "x")));
        assert!(big.check(RecordId(1), &Record::new("t", vec![0u8; 20])));
        let mut by_id = Matcher::id(RecordId(3));
        assert!(by_id.check(RecordId(3), &rec("a")));
        assert!(!by_id.check(RecordId(4), &rec("a")));
        assert!(format!("{m:?}").contains("header h"));
    }

    #[test]
    fn chaos_probabilities_are_clamped_and_deterministic() {
        let c = Chaos::new(1)
            .reset(7.0)
            .lose_ack(f64::NAN)
            .fail_retriable(-1.0);
        assert_eq!(c.reset, 1.0);
        assert_eq!(c.lose_ack, 0.0);
        assert_eq!(c.fail_retriable, 0.0);
        let mut a = ChaosState::new(Chaos::new(9).lose_ack(0.3).refuse_connect(0.5));
        let mut b = ChaosState::new(Chaos::new(9).lose_ack(0.3).refuse_connect(0.5));
        for _ in 0..200 {
            assert_eq!(a.on_record(), b.on_record());
            assert_eq!(a.on_connect(), b.on_connect());
        }
        let mut quiet = ChaosState::new(Chaos::new(9));
        assert_eq!(quiet.on_record(), None);
        assert_eq!(quiet.on_connect(), None);
    }
}
