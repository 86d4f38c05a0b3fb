//! The poll thread of a producer: librdkafka reports only inside `poll`;
//! the driver polls inline while it runs ([`super::Client::poll_inline`])
//! and this thread covers the rest (see [`run_poller`]), waking on
//! librdkafka's [`Bell`](crate::bell::Bell) rather than spinning. Also the monotonic clock in
//! microseconds shared with the stall and outage-log checks.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::producer::Producer;
use tracing::warn;

use super::RdProducer;
use crate::bell::MainQueue;
use crate::stall::StallClock;

/// The longest the poll thread sleeps between two looks at librdkafka's
/// event queue when nothing rings its [`Bell`](crate::bell::Bell): a safety net, and the
/// longest delay before a retired producer's poll thread notices it must
/// stop.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The most events the poll thread serves before it looks around again.
pub(super) const SERVE_BATCH: usize = 1024;

/// While the transport's owner polled inline this recently (see
/// [`Client::poll_inline`](super::Client::poll_inline)) the poll thread leaves delivery reports to it;
/// past this, it serves them itself (the owner's executor is stalled).
pub(super) const INLINE_ACTIVE: Duration = Duration::from_millis(100);

/// The poll thread's nap while the owner is busy and polls inline;
/// [`Client::hand_over`](super::Client::hand_over) cuts it short (no wake-up is lost: see there), so
/// the nap only bounds how late the poll thread notices an owner that
/// stopped polling ([`INLINE_ACTIVE`]).
pub(super) const INLINE_NAP: Duration = Duration::from_millis(10);

/// While the owner is idle with records awaiting their reports and
/// librdkafka has queued events, the poll thread nudges it (wakes it to
/// poll inline) this long after its last inline poll, doubling the wait
/// after each nudge up to [`NUDGE_MAX`] and starting again once reports
/// came in. While nothing is queued it sleeps until librdkafka rings.
pub(super) const NUDGE_MIN: Duration = Duration::from_micros(200);

/// The longest wait between two nudges while events stay queued.
pub(super) const NUDGE_MAX: Duration = Duration::from_millis(1);

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
    pub(super) static ON_POLL_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Serves one batch of librdkafka's events (waiting up to `timeout` for
/// one), then wakes the driver once for the delivery reports it queued.
pub(super) fn poll(producer: &RdProducer, timeout: Duration) {
    producer.poll(timeout);
    producer.context().events.notify();
}

/// The poll thread. librdkafka reports only inside `poll`; the driver polls
/// inline while it runs (see [`Client::poll_inline`](super::Client::poll_inline)). This thread covers
/// the rest:
///
/// * the driver is idle and records await their reports: once librdkafka
///   has queued events, it nudges the driver (wakes it to poll inline)
///   after [`NUDGE_MIN`], then at doubling intervals up to [`NUDGE_MAX`],
///   rather than serving the reports itself; while nothing is queued (all
///   through an outage, say) it sleeps until librdkafka rings its [`Bell`](crate::bell::Bell);
/// * the driver is idle and no record awaits a report (errors, statistics,
///   a cluster going down while idle), or the driver has not polled for
///   [`INLINE_ACTIVE`] (its executor is stalled): it serves librdkafka's
///   events itself, then sleeps until the bell rings;
/// * otherwise (the driver is busy and polls inline) it naps.
///
/// It never calls `poll` with a timeout: rdkafka's waits round down to
/// whole milliseconds and end in a busy loop (see [`crate::bell`]).
pub(super) fn run_poller(producer: &RdProducer, stop: &AtomicBool) {
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
