//! One librdkafka producer and the threads around it: the [`Client`] the
//! transport owns, and the [`Context`] whose callbacks librdkafka calls.
//!
//! * A **poll thread** per producer ([`poller`]) serves librdkafka's event
//!   queue: delivery reports arrive as delivery callbacks ([`callbacks`]),
//!   one per record but in batches, and become [`TransportEvent`]s; no
//!   future per record.
//! * A **probe thread** per session ([`probe`](mod@probe)) fetches metadata with a
//!   timeout, off the async executor's threads, and reports `Connected` or
//!   `ConnectFailed`; a **confirmation thread** checks that every broker is
//!   really down before a session is given up.
//! * A **retire thread** purges and destroys a producer that is no longer
//!   wanted, so that `connect` never blocks on librdkafka's teardown.
//!
//! The context ([`context`]) holds the session's generation and phase in
//! one atomic word: callbacks tag their events with it, and phase changes
//! (probing → up → down) are compare-and-swaps, so that a lost link is
//! reported once per session whatever the number of threads noticing it.

mod callbacks;
mod context;
mod poller;
mod probe;

use std::cell::RefCell;
use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, PurgeConfig};
use robust_producer::{RecordId, TransportError, TransportEvent};
use tracing::{debug, info, warn};

pub(crate) use context::Context;
use context::{PROBING, UP, pack, phase_of};
pub(crate) use poller::{micros, mono_us};
use poller::{poll, run_poller};
use probe::probe;

use crate::classify::Disposition;
use crate::config::RdkafkaConfig;
use crate::error::Error;
use crate::events::EventQueue;
use crate::logs::OutageLog;
use crate::metrics::Counters;
use crate::produce::{Destination, TopicHandle, produce};
use crate::rebuild::RebuildReason;
use crate::statistics::StatisticsStore;
#[cfg(feature = "metrics")]
use crate::telemetry::Exporter;

/// The librdkafka producer type used.
pub(crate) type RdProducer = BaseProducer<Context>;

/// The most topics a producer keeps a librdkafka topic handle for; records
/// of further topics name theirs (see [`crate::produce`]).
const MAX_TOPIC_HANDLES: usize = 64;

/// What a producer's callbacks share with the transport, which keeps it
/// across rebuilds.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) events: Arc<EventQueue>,
    pub(crate) counters: Arc<Counters>,
    /// How loud the next outage signal is, across the producers built.
    pub(crate) outage_log: Arc<OutageLog>,
    /// librdkafka's latest statistics snapshot.
    pub(crate) statistics: Arc<StatisticsStore>,
    /// The metric handles (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) exporter: Arc<Exporter>,
}

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
    pub(crate) fn build(config: &RdkafkaConfig, shared: &Shared) -> Result<Self, Error> {
        let serial = CLIENT_SERIAL.fetch_add(1, Ordering::Relaxed);
        let context = Context::new(config, shared.clone(), serial);
        let producer: RdProducer = config
            .client_config()
            .create_with_context(context)
            .map_err(Error::from_create)?;
        let producer = Arc::new(producer);
        // Set once, right after creation: cannot already be set.
        let _ = producer.context().producer.set(Arc::downgrade(&producer));
        // From now on a retired producer's statistics are ignored.
        shared.statistics.follow(serial);
        let stop = Arc::new(AtomicBool::new(false));
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
        shared
            .counters
            .producers_built
            .fetch_add(1, Ordering::Relaxed);
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

    /// Why this producer cannot serve a new session; `None` when it can:
    /// not fatal, never purged, and nothing of an earlier session still
    /// outstanding.
    pub(crate) fn rebuild_reason(&self) -> Option<RebuildReason> {
        let c = self.context();
        RebuildReason::of(
            c.fatal.load(Ordering::Acquire),
            c.hand_off_failed.load(Ordering::Acquire),
            c.poisoned.load(Ordering::Acquire),
            c.outstanding.load(Ordering::Acquire),
        )
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
                ctx.hand_off_failed.store(true, Ordering::Release);
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
