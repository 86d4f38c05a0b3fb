//! How nobody polls librdkafka while nothing happens: librdkafka calls
//! [`Context::on_queue_event`] when its main event queue goes from empty to
//! non-empty. That wakes the driver at once when it sleeps while records
//! await their reports (it then serves them inline), and rings the
//! [`Bell`] the poll thread parks on (until then, or a timeout) instead of
//! calling librdkafka's `poll` with a timeout.
//!
//! That matters for CPU: rdkafka's `BaseProducer::poll(timeout)` waits in
//! whole milliseconds, rounded down, and loops until its deadline, so the
//! last fraction of a millisecond of every call is a busy loop; a poll
//! thread calling it in slices of a few milliseconds spins for a large share
//! of its time. With the bell, `poll` is only ever called with a zero
//! timeout, to serve what is queued.
//!
//! Unsafe code (librdkafka's C API) lives here and in `produce.rs` only.

#![expect(
    unsafe_code,
    reason = "librdkafka's queue event callback and main-queue handle have no safe binding"
)]

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::producer::Producer as _;

use crate::client::{Context, RdProducer};

/// Wakes the poll thread when librdkafka queues an event while it listens.
#[derive(Debug, Default)]
pub(crate) struct Bell {
    /// The poll thread is parked (or about to be) waiting for the bell.
    listening: AtomicBool,
    /// The thread to wake.
    thread: OnceLock<Thread>,
}

impl Bell {
    /// Parks the calling thread (the poll thread) until librdkafka queues an
    /// event on `queue`, [`Bell::wake`] is called, or `timeout` passes;
    /// returns at once if something is queued already.
    pub(crate) fn wait(&self, queue: &MainQueue, timeout: Duration) {
        let _ = self.thread.get_or_init(std::thread::current);
        // SeqCst pairs with `ring`: either the queue length read below sees
        // the event that librdkafka enqueued, or `ring` (called after the
        // enqueue) sees `listening` set and unparks this thread.
        self.listening.store(true, Ordering::SeqCst);
        if queue.len() == 0 {
            std::thread::park_timeout(timeout);
        }
        self.listening.store(false, Ordering::SeqCst);
    }

    /// Wakes the poll thread if it is waiting (park's token is kept, so a
    /// wake just before it parks is not lost).
    pub(crate) fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// Wakes the poll thread if it waits for the bell.
    pub(crate) fn ring(&self) {
        if self.listening.load(Ordering::SeqCst) {
            self.wake();
        }
    }
}

/// librdkafka's queue event callback, called from one of its threads when
/// an event is queued on the empty main queue: `opaque` is the producer's
/// [`Context`].
unsafe extern "C" fn on_queue_event(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the producer's context, registered by
    // `MainQueue::new`; the registration is removed before that handle is
    // destroyed, and the handle is destroyed before the producer (and so the
    // context) is dropped: see `MainQueue`.
    let context = unsafe { &*opaque.cast::<Context>() };
    context.on_queue_event();
}

/// A handle on a producer's main event queue (the one `BaseProducer::poll`
/// serves), with the producer's bell registered on it. Created and dropped
/// by the poll thread, which the client joins before it drops the producer:
/// librdkafka requires every queue handle to be destroyed before the client.
pub(crate) struct MainQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
}

// SAFETY: librdkafka's queue handles are thread-safe reference-counted
// objects; this one is only used and destroyed by the poll thread.
unsafe impl Send for MainQueue {}

impl MainQueue {
    /// Takes a handle on `producer`'s main queue and has librdkafka call
    /// [`Context::on_queue_event`] whenever an event is queued on it while it
    /// is empty. `None` if librdkafka gives no handle.
    pub(crate) fn new(producer: &RdProducer) -> Option<Self> {
        // SAFETY: the client pointer is valid while `producer` lives; the
        // returned handle holds a reference on the queue until destroyed.
        let queue =
            NonNull::new(unsafe { rd::rd_kafka_queue_get_main(producer.client().native_ptr()) })?;
        let context: &Context = producer.context();
        let opaque = std::ptr::from_ref(context).cast_mut().cast::<c_void>();
        // SAFETY: `queue` is valid; `on_queue_event` only reads the context
        // behind `opaque` (atomics and locks: it is `Sync`), which outlives
        // the registration (see above).
        unsafe { rd::rd_kafka_queue_cb_event_enable(queue.as_ptr(), Some(on_queue_event), opaque) };
        Some(Self { queue })
    }

    /// Events waiting in the queue.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: `queue` is valid until `drop`.
        unsafe { rd::rd_kafka_queue_length(self.queue.as_ptr()) }
    }
}

impl Drop for MainQueue {
    fn drop(&mut self) {
        // SAFETY: `queue` is valid; after the callback is removed librdkafka
        // no longer touches the context; the handle is not used again.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}
