//! The callbacks' side of a librdkafka producer: the [`Context`] librdkafka
//! owns, with where events go, the counters, and the session's generation
//! and phase in one atomic word.
//!
//! Callbacks tag their events with the generation, and phase changes
//! (probing → up → down) are compare-and-swaps, so that a lost link is
//! reported once per session whatever the number of threads noticing it.
//! librdkafka's callbacks themselves are in [`super::callbacks`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use rdkafka::producer::{Producer, PurgeConfig};
use robust_producer::TransportEvent;
use tracing::{error, info, warn};

use super::{RdProducer, Shared};
use crate::bell::Bell;
use crate::config::RdkafkaConfig;
use crate::events::EventQueue;
use crate::logs::OutageLog;
use crate::metrics::Counters;
use crate::stall::StallWatch;
use crate::statistics::StatisticsStore;
#[cfg(feature = "metrics")]
use crate::telemetry::Exporter;

/// The session phase: a probe is under way.
pub(super) const PROBING: u64 = 0;
/// The session phase: the session is up and takes records.
pub(super) const UP: u64 = 1;
/// The session phase: the session ended (or none was started).
pub(super) const DOWN: u64 = 2;

/// The session word of `generation` in `phase`.
pub(super) fn pack(generation: u64, phase: u64) -> u64 {
    generation << 2 | phase
}

/// The generation of a session word.
pub(super) fn generation_of(word: u64) -> u64 {
    word >> 2
}

/// The phase of a session word.
pub(super) fn phase_of(word: u64) -> u64 {
    word & 3
}

/// The callbacks' side of a producer: where events go and what the session
/// looks like.
pub(crate) struct Context {
    pub(super) events: Arc<EventQueue>,
    pub(super) counters: Arc<Counters>,
    /// `generation << 2 | phase` of the session this producer serves.
    pub(super) session: AtomicU64,
    /// Records handed off and not yet reported by a delivery callback.
    pub(super) outstanding: AtomicUsize,
    /// `fatal_error()` was seen set.
    pub(super) fatal: AtomicBool,
    /// The producer must not serve another session: it is fatal, or its
    /// queue was purged (with idempotence a purge leaves a sequence gap that
    /// the broker would reject), or a hand-off failed in a way that leaves
    /// its state unknown.
    pub(super) poisoned: AtomicBool,
    /// A hand-off failed in a way that leaves librdkafka's state unknown
    /// (also poisons the producer); for the rebuild's reason.
    pub(super) hand_off_failed: AtomicBool,
    /// A hand-off was refused with `QueueFull`; report `Ready` on the next
    /// delivery report.
    pub(super) backpressured: AtomicBool,
    /// The producer itself, to read `fatal_error()` and purge from callbacks.
    /// Weak: the producer owns this context.
    pub(super) producer: OnceLock<Weak<RdProducer>>,
    /// The last error librdkafka reported (error callback or `FAIL` log
    /// line) since a session last came up, for connect-failure reasons.
    /// Not cleared per attempt: librdkafka reports an error identical to
    /// the previous one of its broker only once per 30 s.
    pub(super) last_error: Mutex<Option<String>>,
    /// librdkafka reported every broker down since a session last came up.
    pub(super) all_down: AtomicBool,
    /// `generation + 1` of the session whose "all brokers down" is being
    /// confirmed (see [`Context::confirm_all_down`]), 0 when none is.
    pub(super) confirming: AtomicU64,
    /// How long the confirmation may wait for a broker to answer: the
    /// probe timeout.
    pub(super) confirm_timeout: Duration,
    /// The topic whose metadata the probe and the confirmation fetch.
    pub(super) probe_topic: Option<String>,
    /// Whether an outage signal is news (`warn`) or a repeat (`info`);
    /// shared by the transport's producers.
    pub(super) outage_log: Arc<OutageLog>,
    /// [`mono_us`](super::mono_us) of the owner's last inline poll.
    pub(super) inline_polled_at: AtomicU64,
    /// The owner went idle after its last inline poll: the poll thread
    /// looks after librdkafka's events until the owner polls inline again.
    pub(super) handed_over: AtomicBool,
    /// The poll thread naps (the driver was busy when it last looked): the
    /// driver going idle unparks it, to start nudging at once.
    pub(super) poller_napping: AtomicBool,
    /// Rung by librdkafka when it queues an event: wakes the poll thread.
    pub(crate) bell: Bell,
    /// The topics sent to, for [`crate::stall`]'s checks.
    pub(crate) stall: StallWatch,
    /// This producer's serial, which tags its statistics snapshots.
    pub(super) serial: u64,
    /// Where its statistics snapshots go, shared with the transport.
    pub(super) statistics: Arc<StatisticsStore>,
    /// The metric handles the snapshots set (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(super) exporter: Arc<Exporter>,
}

impl Context {
    pub(super) fn new(config: &RdkafkaConfig, shared: Shared, serial: u64) -> Self {
        let Shared {
            events,
            counters,
            outage_log,
            statistics,
            #[cfg(feature = "metrics")]
            exporter,
        } = shared;
        Self {
            events,
            counters,
            session: AtomicU64::new(pack(0, DOWN)),
            outstanding: AtomicUsize::new(0),
            fatal: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            hand_off_failed: AtomicBool::new(false),
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
            serial,
            statistics,
            #[cfg(feature = "metrics")]
            exporter,
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

    pub(super) fn push(&self, generation: u64, event: TransportEvent) {
        self.events.push(generation, event);
    }

    /// For delivery reports, which librdkafka serves only inside `poll`:
    /// queued without a wake-up; [`poll`](super::poller::poll) wakes the driver once per batch.
    pub(super) fn push_report(&self, generation: u64, event: TransportEvent) {
        self.events.push_quietly(generation, event);
    }

    /// librdkafka queued an event on its empty main queue (called from one
    /// of librdkafka's threads). If the driver sleeps while records await
    /// their reports, it is woken to serve them inline at once (should its
    /// executor be stalled, the poll thread serves them after
    /// [`INLINE_ACTIVE`](super::poller::INLINE_ACTIVE)); otherwise the poll thread is woken if it waits
    /// for the bell.
    pub(crate) fn on_queue_event(&self) {
        if self.handed_over.load(Ordering::Acquire) && self.outstanding.load(Ordering::Acquire) > 0
        {
            self.events.wake_owner();
        } else {
            self.bell.ring();
        }
    }

    pub(super) fn set_last_error(&self, reason: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A session came up: earlier errors no longer explain anything, and
    /// the next outage is news.
    pub(super) fn forget_errors(&self) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.all_down.store(false, Ordering::Release);
        self.outage_log.reset();
    }

    /// Logs an outage signal at `warn` if it is the first of its outage,
    /// at `info` otherwise.
    pub(super) fn log_outage(&self, what: &str, reason: &str) {
        if self.outage_log.first() {
            warn!(%reason, "{what}; the core keeps reconnecting (repeats are logged at info)");
        } else {
            info!(%reason, "{what}");
        }
    }

    /// Moves the session from probing to up; false if it is no longer the
    /// session probed.
    pub(super) fn probe_succeeded(&self, generation: u64) -> bool {
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
    pub(super) fn end_session(&self, reason: String, purge: bool) {
        self.end_session_of(None, reason, purge);
    }

    /// [`Self::end_session`], only if the current session is `generation`
    /// (any session when `None`).
    pub(super) fn end_session_of(&self, generation: Option<u64>, reason: String, purge: bool) {
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

    /// Discards the records librdkafka has not sent yet, without blocking
    /// (safe from callbacks), and poisons the producer.
    pub(super) fn purge_queue(&self) {
        self.poisoned.store(true, Ordering::Release);
        if let Some(p) = self.producer.get().and_then(Weak::upgrade) {
            p.purge(PurgeConfig::default().queue().non_blocking());
        }
    }

    /// Puts the session in the down phase, whatever its phase; returns the
    /// word before.
    pub(super) fn set_down(&self) -> u64 {
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
    pub(super) fn check_fatal(&self) -> bool {
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
    pub(super) fn declare_fatal(&self, reason: String) {
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
