//! One librdkafka producer and the threads around it: the [`Client`] the
//! transport owns, and the [`ClientContext`] whose callbacks librdkafka
//! calls.
//!
//! * A **poll thread** per producer serves librdkafka's event queue:
//!   delivery reports arrive as [`ProducerContext::delivery`] callbacks,
//!   one per record but in batches, and become [`TransportEvent`]s; no
//!   future per record.
//! * A **probe thread** per session fetches metadata with a timeout, off the
//!   async executor's threads, and reports `Connected` or `ConnectFailed`.
//! * A **retire thread** purges and destroys a producer that is no longer
//!   wanted, so that `connect` never blocks on librdkafka's teardown.
//!
//! The context holds the session's generation and phase in one atomic word:
//! callbacks tag their events with it, and phase changes (probing → up →
//! down) are compare-and-swaps, so that a lost link is reported once per
//! session whatever the number of threads noticing it.

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext, PurgeConfig};
use robust_producer::{Ack, RecordId, TransportError, TransportEvent};
use tracing::{debug, error, info, trace, warn};

use crate::bell::{Bell, MainQueue};
use crate::classify::{Disposition, delivery_failure, describe};
use crate::config::{RdkafkaConfig, seconds};
use crate::error::Error;
use crate::events::EventQueue;
use crate::logs::{OutageLog, Severity, severity};
use crate::metrics::Counters;
use crate::produce::{Destination, TopicHandle, produce};
use crate::stall::{StallClock, StallWatch};

/// The longest the poll thread sleeps between two looks at librdkafka's
/// event queue when nothing rings its [`Bell`]: a safety net, and the
/// longest delay before a retired producer's poll thread notices it must
/// stop.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The most events the poll thread serves before it looks around again.
const SERVE_BATCH: usize = 1024;

/// While the transport's owner polled inline this recently (see
/// [`Client::poll_inline`]) the poll thread leaves delivery reports to it;
/// past this, it serves them itself (the owner's executor is stalled).
const INLINE_ACTIVE: Duration = Duration::from_millis(100);

/// The poll thread's nap while the owner is busy and polls inline;
/// [`Client::hand_over`] cuts it short (no wake-up is lost: see there), so
/// the nap only bounds how late the poll thread notices an owner that
/// stopped polling ([`INLINE_ACTIVE`]).
const INLINE_NAP: Duration = Duration::from_millis(10);

/// While the owner is idle with records awaiting their reports and
/// librdkafka has queued events, the poll thread nudges it (wakes it to
/// poll inline) this long after its last inline poll, doubling the wait
/// after each nudge up to [`NUDGE_MAX`] and starting again once reports
/// came in. While nothing is queued it sleeps until librdkafka rings.
const NUDGE_MIN: Duration = Duration::from_micros(200);

/// The longest wait between two nudges while events stay queued.
const NUDGE_MAX: Duration = Duration::from_millis(1);

/// Microseconds since the first call, on a monotonic clock.
pub(crate) fn mono_us() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    micros(epoch.elapsed())
}

/// `d` in whole microseconds, for comparisons with [`mono_us`].
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

thread_local! {
    /// Set on poll threads, to count the reports they serve.
    static ON_POLL_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The librdkafka producer type used.
pub(crate) type RdProducer = BaseProducer<Context>;

/// Serves one batch of librdkafka's events (waiting up to `timeout` for
/// one), then wakes the driver once for the delivery reports it queued.
fn poll(producer: &RdProducer, timeout: Duration) {
    producer.poll(timeout);
    producer.context().events.notify();
}

const PROBING: u64 = 0;
const UP: u64 = 1;
const DOWN: u64 = 2;

fn pack(generation: u64, phase: u64) -> u64 {
    generation << 2 | phase
}

fn generation_of(word: u64) -> u64 {
    word >> 2
}

fn phase_of(word: u64) -> u64 {
    word & 3
}

/// The callbacks' side of a producer: where events go and what the session
/// looks like.
pub(crate) struct Context {
    events: Arc<EventQueue>,
    counters: Arc<Counters>,
    /// `generation << 2 | phase` of the session this producer serves.
    session: AtomicU64,
    /// Records handed off and not yet reported by a delivery callback.
    outstanding: AtomicUsize,
    /// `fatal_error()` was seen set.
    fatal: AtomicBool,
    /// The producer must not serve another session: it is fatal, or its
    /// queue was purged (with idempotence a purge leaves a sequence gap that
    /// the broker would reject), or a hand-off failed in a way that leaves
    /// its state unknown.
    poisoned: AtomicBool,
    /// A hand-off was refused with `QueueFull`; report `Ready` on the next
    /// delivery report.
    backpressured: AtomicBool,
    /// The producer itself, to read `fatal_error()` and purge from callbacks.
    /// Weak: the producer owns this context.
    producer: OnceLock<Weak<RdProducer>>,
    /// The last error librdkafka reported (error callback or `FAIL` log
    /// line) since a session last came up, for connect-failure reasons.
    /// Not cleared per attempt: librdkafka reports an error identical to
    /// the previous one of its broker only once per 30 s.
    last_error: Mutex<Option<String>>,
    /// librdkafka reported every broker down since a session last came up.
    all_down: AtomicBool,
    /// `generation + 1` of the session whose "all brokers down" is being
    /// confirmed (see [`Context::confirm_all_down`]), 0 when none is.
    confirming: AtomicU64,
    /// How long the confirmation may wait for a broker to answer: the
    /// probe timeout.
    confirm_timeout: Duration,
    /// The topic whose metadata the probe and the confirmation fetch.
    probe_topic: Option<String>,
    /// Whether an outage signal is news (`warn`) or a repeat (`info`);
    /// shared by the transport's producers.
    outage_log: Arc<OutageLog>,
    /// [`mono_us`] of the owner's last inline poll.
    inline_polled_at: AtomicU64,
    /// The owner went idle after its last inline poll: the poll thread
    /// looks after librdkafka's events until the owner polls inline again.
    handed_over: AtomicBool,
    /// The poll thread naps (the driver was busy when it last looked): the
    /// driver going idle unparks it, to start nudging at once.
    poller_napping: AtomicBool,
    /// Rung by librdkafka when it queues an event: wakes the poll thread.
    pub(crate) bell: Bell,
    /// The topics sent to, for [`crate::stall`]'s checks.
    pub(crate) stall: StallWatch,
}

impl Context {
    fn new(
        config: &RdkafkaConfig,
        events: Arc<EventQueue>,
        counters: Arc<Counters>,
        outage_log: Arc<OutageLog>,
    ) -> Self {
        Self {
            events,
            counters,
            session: AtomicU64::new(pack(0, DOWN)),
            outstanding: AtomicUsize::new(0),
            fatal: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            backpressured: AtomicBool::new(false),
            producer: OnceLock::new(),
            last_error: Mutex::new(None),
            all_down: AtomicBool::new(false),
            confirming: AtomicU64::new(0),
            confirm_timeout: config.probe_timeout_value(),
            probe_topic: config.probe_topic_value().map(str::to_owned),
            outage_log,
            inline_polled_at: AtomicU64::new(0),
            handed_over: AtomicBool::new(true),
            poller_napping: AtomicBool::new(false),
            bell: Bell::default(),
            stall: StallWatch::new(config.client_config()),
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        generation_of(self.session.load(Ordering::Acquire))
    }

    /// Delivery reports received (acknowledgements and failures).
    pub(crate) fn reports(&self) -> u64 {
        self.counters.reports()
    }

    /// Records handed off and not yet reported.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Acquire)
    }

    /// The producer itself, while it exists.
    pub(crate) fn producer_arc(&self) -> Option<Arc<RdProducer>> {
        self.producer.get().and_then(Weak::upgrade)
    }

    /// Reports why records wait, if session `generation` is still up.
    pub(crate) fn report_stall(&self, generation: u64, event: TransportEvent) {
        if self.session.load(Ordering::Acquire) == pack(generation, UP) {
            self.push(generation, event);
        }
    }

    fn push(&self, generation: u64, event: TransportEvent) {
        self.events.push(generation, event);
    }

    /// For delivery reports, which librdkafka serves only inside `poll`:
    /// queued without a wake-up; [`poll`] wakes the driver once per batch.
    fn push_report(&self, generation: u64, event: TransportEvent) {
        self.events.push_quietly(generation, event);
    }

    /// librdkafka queued an event on its empty main queue (called from one
    /// of librdkafka's threads). If the driver sleeps while records await
    /// their reports, it is woken to serve them inline at once (should its
    /// executor be stalled, the poll thread serves them after
    /// [`INLINE_ACTIVE`]); otherwise the poll thread is woken if it waits
    /// for the bell.
    pub(crate) fn on_queue_event(&self) {
        if self.handed_over.load(Ordering::Acquire) && self.outstanding.load(Ordering::Acquire) > 0
        {
            self.events.wake_owner();
        } else {
            self.bell.ring();
        }
    }

    fn set_last_error(&self, reason: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A session came up: earlier errors no longer explain anything, and
    /// the next outage is news.
    fn forget_errors(&self) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.all_down.store(false, Ordering::Release);
        self.outage_log.reset();
    }

    /// Logs an outage signal at `warn` if it is the first of its outage,
    /// at `info` otherwise.
    fn log_outage(&self, what: &str, reason: &str) {
        if self.outage_log.first() {
            warn!(%reason, "{what}; the core keeps reconnecting (repeats are logged at info)");
        } else {
            info!(%reason, "{what}");
        }
    }

    /// Moves the session from probing to up; false if it is no longer the
    /// session probed.
    fn probe_succeeded(&self, generation: u64) -> bool {
        let up = self
            .session
            .compare_exchange(
                pack(generation, PROBING),
                pack(generation, UP),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if up {
            self.forget_errors();
        }
        up
    }

    /// Reports the current session's link lost, once, if it is up. With
    /// `purge`, also discards what librdkafka still queues, if anything (the
    /// core will resend it), which poisons the producer.
    fn end_session(&self, reason: String, purge: bool) {
        self.end_session_of(None, reason, purge);
    }

    /// [`Self::end_session`], only if the current session is `generation`
    /// (any session when `None`).
    fn end_session_of(&self, generation: Option<u64>, reason: String, purge: bool) {
        let mut word = self.session.load(Ordering::Acquire);
        loop {
            if phase_of(word) != UP || generation.is_some_and(|g| g != generation_of(word)) {
                return;
            }
            let down = pack(generation_of(word), DOWN);
            match self
                .session
                .compare_exchange(word, down, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        let outstanding = self.outstanding.load(Ordering::Acquire);
        warn!(%reason, outstanding, "kafka link lost; the core will reconnect and resend");
        self.counters.link_lost.fetch_add(1, Ordering::Relaxed);
        // With nothing outstanding (for example an idle connection closed by
        // the broker) there is nothing to discard and the producer stays
        // reusable for the next session.
        if purge && outstanding > 0 {
            self.purge_queue();
        }
        self.push(generation_of(word), TransportEvent::LinkLost(reason));
    }

    /// librdkafka reported every broker it knows down. That is not yet an
    /// unreachable cluster: since librdkafka 2.10 a client knows only the
    /// brokers its last metadata listed (a cluster lists only live brokers,
    /// so a client that started while one broker answered knows that one
    /// until its next refresh), and with this signal librdkafka
    /// re-bootstraps from `bootstrap.servers` (`metadata.recovery.strategy`
    /// `rebootstrap`, its default). So the session is given up only if no
    /// broker answers a metadata request within the probe timeout; if one
    /// does, librdkafka carries on with its queue, in order, and nothing is
    /// resent. Runs the request on a thread of its own; one per session.
    fn confirm_all_down(&self, reason: String) {
        let word = self.session.load(Ordering::Acquire);
        if phase_of(word) != UP {
            return;
        }
        let generation = generation_of(word);
        let mark = generation + 1;
        if self.confirming.swap(mark, Ordering::AcqRel) == mark {
            return; // this session's confirmation is under way
        }
        let Some(producer) = self.producer.get().and_then(Weak::upgrade) else {
            self.end_session_of(Some(generation), reason, true);
            return;
        };
        let timeout = self.confirm_timeout;
        let topic = self.probe_topic.clone();
        let why = reason.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("rdkafka-confirm-{generation}"))
            .spawn(move || confirm_down(&producer, generation, timeout, topic.as_deref(), why));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start a thread to confirm that every broker is down");
            let _ = self
                .confirming
                .compare_exchange(mark, 0, Ordering::AcqRel, Ordering::Acquire);
            self.end_session_of(Some(generation), reason, true);
        }
    }

    /// Discards the records librdkafka has not sent yet, without blocking
    /// (safe from callbacks), and poisons the producer.
    fn purge_queue(&self) {
        self.poisoned.store(true, Ordering::Release);
        if let Some(p) = self.producer.get().and_then(Weak::upgrade) {
            p.purge(PurgeConfig::default().queue().non_blocking());
        }
    }

    /// Puts the session in the down phase, whatever its phase; returns the
    /// word before.
    fn set_down(&self) -> u64 {
        let mut word = self.session.load(Ordering::Acquire);
        loop {
            let down = pack(generation_of(word), DOWN);
            match self
                .session
                .compare_exchange(word, down, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return word,
                Err(now) => word = now,
            }
        }
    }

    /// Whether the producer is fatally failed, reading `fatal_error()`; the
    /// first time it is, reports [`TransportEvent::Fatal`].
    fn check_fatal(&self) -> bool {
        if self.fatal.load(Ordering::Acquire) {
            return true;
        }
        let Some(producer) = self.producer.get().and_then(Weak::upgrade) else {
            return false;
        };
        let Some((code, reason)) = producer.client().fatal_error() else {
            return false;
        };
        self.declare_fatal(format!("{reason} ({code:?})"));
        true
    }

    /// Marks the producer unusable and reports it, once.
    fn declare_fatal(&self, reason: String) {
        self.poisoned.store(true, Ordering::Release);
        if self.fatal.swap(true, Ordering::AcqRel) {
            return;
        }
        error!(%reason, "librdkafka producer failed fatally; it will be rebuilt");
        self.counters.fatal.fetch_add(1, Ordering::Relaxed);
        self.set_last_error(reason.clone());
        let word = self.set_down();
        self.push(generation_of(word), TransportEvent::Fatal(reason));
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        // rdkafka may call this twice per error event: everything here is
        // idempotent.
        // Levels: see `crate::logs`.
        let code = error.rdkafka_error_code();
        match code {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                // Kept apart from `last_error`, which says why they are down.
                self.all_down.store(true, Ordering::Release);
                self.counters
                    .all_brokers_down
                    .fetch_add(1, Ordering::Relaxed);
                self.log_outage("all kafka brokers are down", reason);
                self.confirm_all_down(format!("all brokers down: {reason}"));
            }
            Some(RDKafkaErrorCode::Fatal) => {
                if !self.check_fatal() {
                    // The callback said fatal but the client does not (yet):
                    // trust the callback.
                    self.declare_fatal(reason.to_owned());
                }
            }
            Some(code) => {
                match severity(code) {
                    Severity::Outage => self.log_outage("kafka unreachable", reason),
                    Severity::Person => error!(
                        error = %describe(code),
                        %reason,
                        "librdkafka reported an error that needs attention \
                         (credentials, certificates, permissions or configuration)"
                    ),
                    Severity::Other => {
                        warn!(error = %describe(code), %reason, "librdkafka reported an error");
                    }
                }
                self.set_last_error(format!("{reason} ({code:?})"));
            }
            None => {
                warn!(%error, %reason, "librdkafka reported an error");
                self.set_last_error(reason.to_owned());
            }
        }
    }

    /// librdkafka's log lines, at levels that fit (see `crate::logs`):
    /// a broker failure (`FAIL`) is also reported to [`Self::error`] with its
    /// code, which decides how loud it is, so its log line goes to `debug`
    /// (or, below librdkafka's error level, `warn` once per outage); other
    /// lines keep librdkafka's level.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        use RDKafkaLogLevel as L;
        let broker_failure = fac == "FAIL";
        if broker_failure && !matches!(level, L::Debug) {
            self.set_last_error(log_message.to_owned());
        }
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                if broker_failure || fac == "ERROR" {
                    debug!(target: "librdkafka", facility = fac, "{log_message}");
                } else {
                    error!(target: "librdkafka", facility = fac, "{log_message}");
                }
            }
            L::Warning if broker_failure => {
                if self.outage_log.first() {
                    warn!(target: "librdkafka", facility = fac, "{log_message}");
                } else {
                    info!(target: "librdkafka", facility = fac, "{log_message}");
                }
            }
            L::Warning => warn!(target: "librdkafka", facility = fac, "{log_message}"),
            L::Notice | L::Info => info!(target: "librdkafka", facility = fac, "{log_message}"),
            L::Debug => debug!(target: "librdkafka", facility = fac, "{log_message}"),
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        if ON_POLL_THREAD.with(Cell::get) {
            self.counters
                .reports_by_poll_thread
                .fetch_add(1, Ordering::Relaxed);
        }
        let generation = self.generation();
        let id = RecordId(opaque as u64);
        match result {
            Ok(message) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                // librdkafka reports no offset with acks=0 (offset -1001,
                // RD_KAFKA_OFFSET_INVALID): a negative value is "unknown".
                let partition = message.partition();
                let offset = message.offset();
                self.push_report(
                    generation,
                    TransportEvent::Delivered(Ack {
                        id,
                        partition: (partition >= 0).then_some(partition),
                        offset: (offset >= 0).then_some(offset),
                    }),
                );
            }
            Err((error, _)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.on_failure(generation, id, error);
            }
        }
        // Read first: a swap on every report would be a locked write each.
        if self.backpressured.load(Ordering::Acquire)
            && self.backpressured.swap(false, Ordering::AcqRel)
        {
            self.push_report(generation, TransportEvent::Ready);
        }
    }
}

impl Context {
    fn on_failure(&self, generation: u64, id: RecordId, error: &KafkaError) {
        // After a fatal error librdkafka fails what it held (purged, fatal,
        // or the error that caused it); the core resends all of it.
        if self.fatal.load(Ordering::Acquire) || self.check_fatal() {
            trace!(%id, %error, "record failed after a fatal error");
            return;
        }
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        match delivery_failure(code) {
            Disposition::Record(e) => {
                debug!(%id, reason = %e.reason, "record failed");
                self.push_report(generation, TransportEvent::Failed { id, error: e });
            }
            Disposition::Session(reason) => {
                self.end_session(format!("{id} failed: {reason}"), true);
            }
            Disposition::Fatal(reason) => self.declare_fatal(format!("{id} failed: {reason}")),
            Disposition::Isolate(e) => {
                debug!(%id, reason = %e.reason, "record's batch refused; the core resends it alone");
                let reason = format!("{id}'s batch refused: {}", e.reason);
                self.push_report(generation, TransportEvent::Failed { id, error: e });
                self.end_session(reason, true);
            }
        }
    }
}

/// The most topics a producer keeps a librdkafka topic handle for; records
/// of further topics name theirs (see [`crate::produce`]).
const MAX_TOPIC_HANDLES: usize = 64;

/// A librdkafka producer with its poll thread.
pub(crate) struct Client {
    /// Declared before `producer`: dropped (destroyed) first.
    topics: RefCell<Vec<TopicHandle>>,
    producer: Arc<RdProducer>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
}

static CLIENT_SERIAL: AtomicU64 = AtomicU64::new(0);

impl Client {
    /// Creates a producer and starts its poll thread. Does not wait for, or
    /// contact, the cluster.
    pub(crate) fn build(
        config: &RdkafkaConfig,
        events: Arc<EventQueue>,
        counters: Arc<Counters>,
        outage_log: Arc<OutageLog>,
    ) -> Result<Self, Error> {
        let context = Context::new(config, events, Arc::clone(&counters), outage_log);
        let producer: RdProducer = config
            .client_config()
            .create_with_context(context)
            .map_err(Error::from_create)?;
        let producer = Arc::new(producer);
        // Set once, right after creation: cannot already be set.
        let _ = producer.context().producer.set(Arc::downgrade(&producer));
        let stop = Arc::new(AtomicBool::new(false));
        let serial = CLIENT_SERIAL.fetch_add(1, Ordering::Relaxed);
        let poller = {
            let producer = Arc::clone(&producer);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("rdkafka-poll-{serial}"))
                .spawn(move || run_poller(&producer, &stop))
                .map_err(|source| Error::Thread {
                    what: "poll",
                    source,
                })?
        };
        counters.producers_built.fetch_add(1, Ordering::Relaxed);
        debug!(serial, "librdkafka producer built");
        Ok(Self {
            topics: RefCell::new(Vec::new()),
            producer,
            stop,
            poller: Some(poller),
        })
    }

    fn context(&self) -> &Context {
        self.producer.context()
    }

    /// Whether this producer can serve a new session: not fatal, never
    /// purged, and nothing of an earlier session still outstanding.
    pub(crate) fn reusable(&self) -> bool {
        let c = self.context();
        !c.poisoned.load(Ordering::Acquire)
            && !c.fatal.load(Ordering::Acquire)
            && c.outstanding.load(Ordering::Acquire) == 0
    }

    /// Serves one batch of librdkafka's events (delivery reports) on the
    /// calling thread, without waiting. The driver calls this from
    /// `try_next_event` on every round: the reports are then handled on the
    /// thread that handed the records off, as raw rdkafka code polling
    /// inline does. That matters: librdkafka frees each reported message on
    /// the thread that serves the report, and frees into another thread's
    /// malloc arena contend with that thread's allocations (measured: with
    /// the poll thread serving the reports, the driver's thread blocked on
    /// malloc's arena lock hundreds of times per second and throughput fell
    /// by a third).
    pub(crate) fn poll_inline(&self) {
        let ctx = self.context();
        ctx.inline_polled_at.store(mono_us(), Ordering::Relaxed);
        ctx.handed_over.store(false, Ordering::Release);
        if self.outstanding() > 0 {
            poll(&self.producer, Duration::ZERO);
        }
    }

    /// The owner goes idle: from now on the poll thread nudges it while
    /// records await their reports, or serves librdkafka's events itself
    /// while none do (see [`run_poller`]).
    pub(crate) fn hand_over(&self) {
        let ctx = self.context();
        // SeqCst pairs with the poll thread's store of `poller_napping`
        // and load of `handed_over`: one of the two sees the other's write,
        // so a nap never outlasts the driver going idle.
        if !ctx.handed_over.swap(true, Ordering::SeqCst)
            && ctx.poller_napping.load(Ordering::SeqCst)
            && let Some(poller) = &self.poller
        {
            poller.thread().unpark();
        }
    }

    /// Records handed off and not yet reported.
    pub(crate) fn outstanding(&self) -> usize {
        self.context().outstanding.load(Ordering::Acquire)
    }

    /// Starts session `generation`: probes the cluster's metadata on a probe
    /// thread and reports the outcome.
    pub(crate) fn open_session(&self, generation: u64, timeout: Duration, topic: Option<&str>) {
        let ctx = self.context();
        ctx.session
            .store(pack(generation, PROBING), Ordering::Release);
        let producer = Arc::clone(&self.producer);
        let topic = topic.map(str::to_owned);
        let spawned = std::thread::Builder::new()
            .name(format!("rdkafka-probe-{generation}"))
            .spawn(move || probe(&producer, generation, timeout, topic.as_deref()));
        if let Err(e) = spawned {
            ctx.counters.connect_failed.fetch_add(1, Ordering::Relaxed);
            ctx.push(
                generation,
                TransportEvent::ConnectFailed(format!("cannot start the probe thread: {e}")),
            );
        }
    }

    /// Hands one record to librdkafka.
    pub(crate) fn send(
        &self,
        id: RecordId,
        record: &robust_producer::Record,
    ) -> Result<(), TransportError> {
        let ctx = self.context();
        if ctx.fatal.load(Ordering::Acquire) {
            return Err(TransportError::fatal(
                "the librdkafka producer failed fatally",
            ));
        }
        // Only an open session takes records. Once it ended (link lost, a
        // record retried at session granularity) a record handed off now
        // could be stored after an earlier record of its partition failed,
        // and before that one's resend: the core is about to reconnect and
        // resend both, in order, on a fresh session instead.
        if phase_of(ctx.session.load(Ordering::Acquire)) != UP {
            return Err(TransportError::link(
                "the session ended; waiting for the core to reconnect",
            ));
        }
        let Ok(opaque) = usize::try_from(id.0) else {
            return Err(TransportError::permanent(format!(
                "record id {id} does not fit this platform's pointer width"
            )));
        };
        // Counted before the hand-off: the delivery report may come first.
        ctx.outstanding.fetch_add(1, Ordering::AcqRel);
        let handed_off = match self.topic_handle(&record.topic) {
            Some(at) => produce(
                &self.producer,
                Destination::Handle(&self.topics.borrow()[at]),
                record,
                opaque,
            ),
            None => CString::new(record.topic.as_bytes())
                .map_err(KafkaError::from)
                .and_then(|name| produce(&self.producer, Destination::Name(&name), record, opaque)),
        };
        match handed_off {
            Ok(()) => {
                ctx.counters.handed_off.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                ctx.outstanding.fetch_sub(1, Ordering::AcqRel);
                Err(self.refused(id, &error))
            }
        }
    }

    /// Where `topic`'s handle is in `self.topics`, made on first use; `None`
    /// past [`MAX_TOPIC_HANDLES`] or if librdkafka refuses one.
    fn topic_handle(&self, topic: &Arc<str>) -> Option<usize> {
        let mut topics = self.topics.borrow_mut();
        if let Some(at) = topics.iter().position(|t| t.is_for(topic)) {
            return Some(at);
        }
        if topics.len() >= MAX_TOPIC_HANDLES {
            return None;
        }
        topics.push(TopicHandle::new(&self.producer, topic)?);
        self.context().stall.sending_to(topic);
        Some(topics.len() - 1)
    }

    fn refused(&self, id: RecordId, error: &KafkaError) -> TransportError {
        let ctx = self.context();
        if ctx.check_fatal() {
            return TransportError::fatal(format!("{id} refused after a fatal error: {error}"));
        }
        match crate::classify::send_failure(error) {
            Disposition::Record(e) => {
                if e.class == robust_producer::ErrorClass::Backpressure {
                    ctx.counters.backpressure.fetch_add(1, Ordering::Relaxed);
                    ctx.backpressured.store(true, Ordering::Release);
                    // A report may have raced the flag: make sure one comes.
                    if ctx.outstanding.load(Ordering::Acquire) == 0 {
                        ctx.backpressured.store(false, Ordering::Release);
                        ctx.push(ctx.generation(), TransportEvent::Ready);
                    }
                } else {
                    debug!(%id, reason = %e.reason, "hand-off refused");
                }
                e
            }
            Disposition::Session(reason) => {
                // Not taken, and librdkafka's state is unknown: use a fresh
                // producer for the next session.
                ctx.poisoned.store(true, Ordering::Release);
                TransportError::link(format!("{id} refused: {reason}"))
            }
            Disposition::Fatal(reason) => {
                ctx.declare_fatal(format!("{id} refused: {reason}"));
                TransportError::fatal(reason)
            }
            // Refused at hand-off, alone: the record's own failure.
            Disposition::Isolate(e) => TransportError::permanent(e.reason),
        }
    }

    /// Gives up on this producer: purges what it holds and destroys it on a
    /// background thread (librdkafka's teardown can take a while).
    pub(crate) fn retire(self) {
        // Right away, before the next session sends anything: nothing of this
        // producer's queue may reach the broker after the resends. (A
        // non-blocking purge: the blocking one follows on the retire thread.)
        self.context().set_down();
        self.producer
            .purge(PurgeConfig::default().queue().inflight().non_blocking());
        let job = move || self.destroy(Duration::ZERO);
        if let Err(e) = std::thread::Builder::new()
            .name("rdkafka-retire".to_owned())
            .spawn(job)
        {
            // The job was moved into the failed spawn and dropped with it,
            // which still purges and destroys the producer (inline).
            warn!(error = %e, "cannot start a retire thread; producer destroyed inline");
        }
    }

    /// Flushes for up to `flush` (when anything is outstanding), then purges,
    /// stops the poll thread and destroys the producer. Blocking.
    pub(crate) fn destroy(mut self, flush: Duration) {
        // Whatever it reports from now on is about an abandoned session.
        self.context().set_down();
        if !flush.is_zero()
            && self.outstanding() > 0
            && let Err(e) = self.producer.flush(flush)
        {
            info!(error = %e, outstanding = self.outstanding(), "flush on close incomplete");
        }
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        self.stop_poller();
        // Dropping the last reference runs BaseProducer's Drop (purge, short
        // flush, librdkafka destroy). A probe thread may hold another one
        // until its probe times out; it then drops the producer itself.
    }

    fn stop_poller(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = &self.poller {
            h.thread().unpark();
        }
        if let Some(h) = self.poller.take()
            && h.join().is_err()
        {
            warn!("the librdkafka poll thread panicked");
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop_poller();
    }
}

/// The poll thread. librdkafka reports only inside `poll`; the driver polls
/// inline while it runs (see [`Client::poll_inline`]). This thread covers
/// the rest:
///
/// * the driver is idle and records await their reports: once librdkafka
///   has queued events, it nudges the driver (wakes it to poll inline)
///   after [`NUDGE_MIN`], then at doubling intervals up to [`NUDGE_MAX`],
///   rather than serving the reports itself; while nothing is queued (all
///   through an outage, say) it sleeps until librdkafka rings its [`Bell`];
/// * the driver is idle and no record awaits a report (errors, statistics,
///   a cluster going down while idle), or the driver has not polled for
///   [`INLINE_ACTIVE`] (its executor is stalled): it serves librdkafka's
///   events itself, then sleeps until the bell rings;
/// * otherwise (the driver is busy and polls inline) it naps.
///
/// It never calls `poll` with a timeout: rdkafka's waits round down to
/// whole milliseconds and end in a busy loop (see [`crate::bell`]).
fn run_poller(producer: &RdProducer, stop: &AtomicBool) {
    ON_POLL_THREAD.with(|on| on.set(true));
    let ctx = producer.context();
    let Some(queue) = MainQueue::new(producer) else {
        warn!("librdkafka gave no handle on its event queue; the poll thread polls every 100 ms");
        let mut stall = StallClock::default();
        while !stop.load(Ordering::Acquire) {
            stall.tick(producer);
            poll(producer, POLL_INTERVAL);
        }
        return;
    };
    let active = micros(INLINE_ACTIVE);
    let mut nudge = NUDGE_MIN;
    let mut reports_seen = 0;
    let mut nudged_at = 0;
    let mut stall = StallClock::default();
    while !stop.load(Ordering::Acquire) {
        stall.tick(producer);
        let polled_at = ctx.inline_polled_at.load(Ordering::Relaxed);
        let since = mono_us().saturating_sub(polled_at);
        let idle = ctx.handed_over.load(Ordering::Acquire);
        let outstanding = ctx.outstanding.load(Ordering::Acquire);
        if since >= active || (idle && outstanding == 0) {
            // Nobody else serves librdkafka's events: serve what is queued,
            // then sleep until librdkafka queues more.
            serve(producer, &queue);
            ctx.bell.wait(&queue, POLL_INTERVAL);
            continue;
        }
        let reports = ctx.counters.reports();
        if reports != reports_seen {
            reports_seen = reports;
            nudge = NUDGE_MIN; // reports came in: the next ones may be close
        }
        if idle {
            if queue.len() == 0 {
                // Records await their reports and none is queued yet (for
                // the whole of an outage, say): sleep until one is.
                ctx.bell.wait(&queue, POLL_INTERVAL);
                continue;
            }
            // Something is queued: wake the driver to serve it inline,
            // counted from its last inline poll or the last nudge,
            // whichever is later. A stray unpark (the driver went idle just
            // as this thread stopped napping) must not cut the wait short,
            // or the two would ping-pong.
            let due = polled_at.max(nudged_at) + micros(nudge);
            let until =
                std::time::Instant::now() + Duration::from_micros(due.saturating_sub(mono_us()));
            while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                std::thread::park_timeout(left);
            }
            if ctx.handed_over.load(Ordering::Acquire)
                && ctx.inline_polled_at.load(Ordering::Relaxed) == polled_at
            {
                ctx.events.wake_owner();
                nudged_at = mono_us();
                nudge = (nudge * 2).min(NUDGE_MAX);
            }
        } else {
            // See `Client::hand_over`: the driver may have gone idle since
            // `idle` was read, before it could see this thread napping.
            ctx.poller_napping.store(true, Ordering::SeqCst);
            if !ctx.handed_over.load(Ordering::SeqCst) {
                std::thread::park_timeout(INLINE_NAP);
            }
            ctx.poller_napping.store(false, Ordering::Release);
        }
    }
}

/// Serves every event queued on the producer's main queue, without waiting
/// (a zero-timeout `poll` serves one event and never spins).
fn serve(producer: &RdProducer, queue: &MainQueue) {
    for _ in 0..SERVE_BATCH {
        if queue.len() == 0 {
            break;
        }
        poll(producer, Duration::ZERO);
    }
}

/// Confirms that every broker is down for session `generation` (see
/// [`Context::confirm_all_down`]): a broker answering a metadata request
/// within `timeout` keeps the session; otherwise it ends, with `reason`.
fn confirm_down(
    producer: &RdProducer,
    generation: u64,
    timeout: Duration,
    topic: Option<&str>,
    reason: String,
) {
    let ctx = producer.context();
    let outcome = producer.client().fetch_metadata(topic, timeout);
    let _ = ctx
        .confirming
        .compare_exchange(generation + 1, 0, Ordering::AcqRel, Ordering::Acquire);
    let failure = match outcome {
        Ok(md) if !md.brokers().is_empty() => {
            if ctx.generation() == generation {
                info!(
                    brokers = md.brokers().len(),
                    "kafka reachable again after every known broker went down \
                     (librdkafka re-bootstrapped); the session goes on"
                );
                ctx.forget_errors();
            }
            return;
        }
        Ok(_) => "metadata lists no brokers".to_owned(),
        Err(e) => match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::OperationTimedOut) => {
                format!("no broker answered within {}", seconds(timeout))
            }
            _ => format!("no broker answered: {e}"),
        },
    };
    ctx.end_session_of(Some(generation), format!("{reason}; {failure}"), true);
}

/// The probe: fetches metadata, then reports the session up or failed.
fn probe(producer: &RdProducer, generation: u64, timeout: Duration, topic: Option<&str>) {
    let ctx = producer.context();
    let outcome = producer.client().fetch_metadata(topic, timeout);
    let failure = match outcome {
        Ok(md) if md.brokers().is_empty() => "metadata lists no brokers".to_owned(),
        Ok(md) => {
            if ctx.probe_succeeded(generation) {
                ctx.counters.connected.fetch_add(1, Ordering::Relaxed);
                info!(
                    brokers = md.brokers().len(),
                    topics = md.topics().len(),
                    "kafka session up"
                );
                ctx.push(generation, TransportEvent::Connected);
            }
            return;
        }
        Err(e) => {
            let what = match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::OperationTimedOut) => {
                    format!("metadata probe timed out after {}", seconds(timeout))
                }
                _ => format!("metadata probe failed: {e}"),
            };
            let down = if ctx.all_down.load(Ordering::Acquire) {
                "; all brokers down"
            } else {
                ""
            };
            match ctx.last_error() {
                Some(last) => format!("{what}{down}; last client error: {last}"),
                None => format!("{what}{down}"),
            }
        }
    };
    if ctx.generation() == generation {
        debug!(reason = %failure, "kafka connect attempt failed");
        ctx.counters.connect_failed.fetch_add(1, Ordering::Relaxed);
        ctx.push(generation, TransportEvent::ConnectFailed(failure));
    }
}
