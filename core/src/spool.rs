//! The hook for an optional durable spool: the [`Spool`] trait a spool
//! implements (the disk spool is the `robust-producer-spool` crate), and
//! the [`SpoolSignal`] through which it reports back.
//!
//! The core does no file I/O. With a spool attached
//! ([`ProducerBuilder::spool`](crate::ProducerBuilder::spool)):
//!
//! 1. At build, [`Spool::open_session`] hands over the records an earlier
//!    session left Durable but not settled. They get the first ids, in their
//!    original order, and are sent before anything new.
//! 2. `send` asks [`Spool::room`] (inside the overflow policy, like the
//!    memory bounds) and, once the record is Accepted, calls
//!    [`Spool::append`]. Both run under the producer's lock: they must be a
//!    cheap, non-blocking buffer push; writing and fsyncing happen on the
//!    spool's own thread.
//! 3. The spool reports progress with [`SpoolSignal::durable`]; a
//!    [`DeliveryHandle::durable`](crate::DeliveryHandle::durable) future
//!    resolves when its record is Durable.
//! 4. The driver reports settled records (delivered, dead-lettered, dropped)
//!    with [`Spool::settled`], so the spool can forget them.
//! 5. At close, the driver calls [`Spool::close`] and waits (up to the close
//!    deadline plus [`SPOOL_CLOSE_GRACE`]) for [`SpoolSignal::closed`].
//!    Records not delivered but Durable stay in the spool for the next start
//!    and are not handed back by `close`; records not Durable are handed
//!    back as without a spool.
//!
//! Record ids restart at 1 in every session; mapping them to the spool's
//! own sequence numbers is the spool's business.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::record::{Record, RecordId};

/// How long `close` waits for the spool's final write and fsync beyond its
/// own deadline. A record that is not Durable by then is handed back.
pub const SPOOL_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Whether a record fits in the spool now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Room {
    /// It fits.
    Fits,
    /// Not now; room comes back as older records settle.
    Full,
    /// Never: it is larger than the spool can hold.
    TooLarge {
        /// Bytes the record takes in the spool.
        size: usize,
        /// The most the spool can take for one record.
        max: usize,
    },
    /// The spool has stopped after an I/O error and takes nothing more.
    Failed(String),
}

/// A durable journal of accepted records, attached to a producer with
/// [`ProducerBuilder::spool`](crate::ProducerBuilder::spool). See the
/// [module docs](self) for when the core calls each method.
///
/// Every method is called from async code, some under the producer's lock:
/// none may block on I/O.
pub trait Spool: Send + Sync + 'static {
    /// Starts the spool's one session and returns the records to replay (in
    /// their original order; they get ids `1..=n`), or why the spool cannot
    /// be used (the producer then refuses every record with
    /// [`EnqueueError::SpoolFailed`](crate::EnqueueError::SpoolFailed)).
    /// The spool keeps `signal` to report progress.
    ///
    /// # Errors
    ///
    /// A human-readable reason when the spool cannot start a session (for
    /// example it already served one).
    fn open_session(&self, signal: SpoolSignal) -> Result<Vec<Record>, String>;

    /// Whether `record` fits now, given that every record before
    /// `oldest_held` has settled (`None`: every record appended so far has
    /// settled). Called under the producer's lock.
    fn room(&self, record: &Record, oldest_held: Option<RecordId>) -> Room;

    /// Appends an Accepted record; ids only grow. Called under the
    /// producer's lock: a buffer push, nothing more.
    fn append(&self, id: RecordId, record: &Record);

    /// These records settled (delivered, dead-lettered or dropped by an
    /// overflow policy) and need not be replayed; every record before
    /// `oldest_held` has settled. Called under the producer's lock. Ids of
    /// records that were never appended may appear and must be ignored.
    fn settled(&self, ids: &[RecordId], oldest_held: Option<RecordId>);

    /// The producer closes: write and fsync everything appended (whatever
    /// the fsync policy), then report [`SpoolSignal::closed`]. Must not
    /// block.
    fn close(&self);

    /// Settled records whose settle marks are not yet where a crash of the
    /// process would keep them (written to the file). The driver keeps the
    /// records in flight plus these within `max_in_flight`, so that after a
    /// crash at most `max_in_flight` records are sent again; a spool calls
    /// [`SpoolSignal::progress`] when this falls. Default: 0 (marks are
    /// recorded as they are reported).
    fn unrecorded(&self) -> usize {
        0
    }

    /// Bytes the spool keeps on disk, for [`Stats::spool`](crate::Stats::spool)
    /// and the metrics. Called under the producer's lock, about once a
    /// second or per [`Producer::stats`](crate::Producer::stats) call.
    /// Default: `None` (not known).
    fn bytes(&self) -> Option<u64> {
        None
    }
}

/// How a spool reports back to the producer: which records are Durable,
/// that it failed, that it closed. Cheap to clone.
#[derive(Clone, Default)]
pub struct SpoolSignal(Arc<SignalInner>);

#[derive(Default)]
struct SignalInner {
    /// Every appended record with an id up to this is Durable.
    durable: AtomicU64,
    /// Set once `failed` was called.
    failed: AtomicBool,
    state: Mutex<SignalState>,
}

#[derive(Default)]
struct SignalState {
    failed: Option<String>,
    closed: bool,
    /// The driver, waiting for the spool to write settle marks.
    driver: Option<Waker>,
    /// Futures waiting for an id to become Durable, by id.
    waiters: BTreeMap<u64, Vec<Waker>>,
    /// Waiting for `closed`.
    close_waiters: Vec<Waker>,
}

impl fmt::Debug for SpoolSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("SpoolSignal")
            .field("durable_through", &self.durable_through())
            .field("failed", &s.failed)
            .field("closed", &s.closed)
            .finish()
    }
}

impl SpoolSignal {
    /// A new signal; the producer makes one per session.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every appended record with an id up to `through` is Durable. Calls
    /// must not go backwards; smaller values are ignored.
    pub fn durable(&self, through: RecordId) {
        let previous = self.0.durable.fetch_max(through.0, Ordering::AcqRel);
        if previous >= through.0 {
            return;
        }
        let mut s = self.lock();
        let later = s.waiters.split_off(&(through.0 + 1));
        let due = std::mem::replace(&mut s.waiters, later);
        drop(s);
        due.into_values().flatten().for_each(Waker::wake);
    }

    /// The spool stopped: no record not yet Durable will become so.
    pub fn failed(&self, reason: impl Into<String>) {
        let mut s = self.lock();
        if s.failed.is_none() {
            s.failed = Some(reason.into());
        }
        self.0.failed.store(true, Ordering::Release);
        let due = std::mem::take(&mut s.waiters);
        let mut close = std::mem::take(&mut s.close_waiters);
        drop(s);
        due.into_values().flatten().for_each(Waker::wake);
        close.drain(..).for_each(Waker::wake);
    }

    /// The spool finished [`Spool::close`]: everything appended that could
    /// be made Durable is.
    pub fn closed(&self) {
        let mut s = self.lock();
        s.closed = true;
        let close = std::mem::take(&mut s.close_waiters);
        let due = std::mem::take(&mut s.waiters);
        drop(s);
        close.into_iter().for_each(Waker::wake);
        due.into_values().flatten().for_each(Waker::wake);
    }

    /// The spool wrote down settle marks ([`Spool::unrecorded`] fell):
    /// wakes the driver if it paused sending for them.
    pub fn progress(&self) {
        let waker = self.lock().driver.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Registers the driver to be woken by [`SpoolSignal::progress`].
    pub(crate) fn wait_progress(&self, waker: &Waker) {
        let mut s = self.lock();
        if !s.driver.as_ref().is_some_and(|w| w.will_wake(waker)) {
            s.driver = Some(waker.clone());
        }
    }

    /// Every appended record up to this id is Durable.
    pub fn durable_through(&self) -> RecordId {
        RecordId(self.0.durable.load(Ordering::Acquire))
    }

    /// Why the spool failed, if it did.
    pub fn failure(&self) -> Option<String> {
        if !self.0.failed.load(Ordering::Acquire) {
            return None; // the common case, without the lock
        }
        self.lock().failed.clone()
    }

    /// Whether the spool finished closing, or failed.
    pub fn is_done(&self) -> bool {
        let s = self.lock();
        s.closed || s.failed.is_some()
    }

    /// Polls for record `id` to be Durable.
    pub(crate) fn poll_durable(
        &self,
        id: RecordId,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), DurableError>> {
        if self.durable_through() >= id {
            return Poll::Ready(Ok(()));
        }
        let mut s = self.lock();
        // Checked again under the lock: `durable` wakes under the same lock
        // order, so no wake-up is missed.
        if self.durable_through() >= id {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = &s.failed {
            return Poll::Ready(Err(DurableError::Failed(reason.clone())));
        }
        if s.closed {
            return Poll::Ready(Err(DurableError::Failed(
                "the spool closed before the record was Durable".to_owned(),
            )));
        }
        let list = s.waiters.entry(id.0).or_default();
        if !list.iter().any(|w| w.will_wake(cx.waker())) {
            list.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Polls for the spool to finish closing (or fail).
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.lock();
        if s.closed || s.failed.is_some() {
            return Poll::Ready(());
        }
        if !s.close_waiters.iter().any(|w| w.will_wake(cx.waker())) {
            s.close_waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Why [`DeliveryHandle::durable`](crate::DeliveryHandle::durable) did not
/// resolve to Durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    /// The producer has no spool: records are never Durable.
    #[error("the producer has no spool")]
    NoSpool,
    /// The overflow policy dropped the record as it was sent; it never
    /// reached the spool.
    #[error("the record was dropped by the overflow policy before reaching the spool")]
    NotSpooled,
    /// The spool stopped (I/O error, full disk) before the record was
    /// Durable.
    #[error("spool failed: {0}")]
    Failed(String),
}
