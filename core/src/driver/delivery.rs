//! Delivery handles: what `send` gives back, a future of the record's fate;
//! the slots where the driver leaves each outcome for its handle, and the
//! window of slots by record id.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, TryLockError, Weak};
use std::task::{Context, Poll, Waker};

use crate::record::RecordId;
use crate::spool::{DurableError, SpoolSignal};
use crate::transport::Ack;

use super::outcome::DeliveryError;
use super::shared::Shared;

type Outcome = Result<Ack, DeliveryError>;

#[derive(Debug, Default)]
enum SlotState {
    #[default]
    Waiting,
    Polled(Waker),
    Done(Outcome),
    Taken,
}

/// Where the driver puts a record's outcome for its handle.
#[derive(Debug, Default)]
pub(crate) struct Slot(Mutex<SlotState>);

impl Slot {
    fn complete(self: Arc<Self>, outcome: Outcome) {
        if Arc::strong_count(&self) == 1 {
            return; // the handle was dropped: nobody is listening
        }
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = std::mem::replace(&mut *state, SlotState::Done(outcome));
        drop(state);
        if let SlotState::Polled(waker) = previous {
            waker.wake();
        }
    }
}

/// Whether and how a record can become Durable.
#[derive(Debug, Clone)]
pub(crate) enum Durability {
    /// The producer has no spool.
    NoSpool,
    /// Dropped by the overflow policy before reaching the spool.
    NotSpooled,
    /// Appended to the spool; the signal says when it is Durable.
    Spooled(SpoolSignal),
}

/// The fate of one accepted record: await it for
/// [`Ack`] (Delivered) or the [`DeliveryError`] saying why not; or drop it.
/// With a spool, [`DeliveryHandle::durable`] also tells when it is Durable.
#[must_use = "a DeliveryHandle does nothing unless awaited; dropping it is fine"]
pub struct DeliveryHandle {
    id: RecordId,
    slot: Arc<Slot>,
    durability: Durability,
    /// Where the slot is registered, to release it when the handle is
    /// dropped before the record settles; `None` when the record was
    /// accepted with fewer than [`RELEASE_BEHIND`] records ahead of it.
    /// Weak: a handle kept after the producer is gone keeps neither its
    /// records nor its spool (and the spool directory's lock) alive.
    shared: Option<Weak<Shared>>,
}

impl fmt::Debug for DeliveryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryHandle")
            .field("id", &self.id)
            .field("slot", &self.slot)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl Drop for DeliveryHandle {
    /// Nobody will listen any more. For a record far from the front (see
    /// `RELEASE_BEHIND`) the slot leaves the window now, while it is
    /// still in the cache, instead of when the record settles (a
    /// fire-and-forget sender's slot would by then be cold: with a full
    /// queue the record settles some 100 000 records later, and reading
    /// the slot then cost about a sixth of the sending thread's time in the
    /// rdkafka bench). Only if the lock is free: otherwise, and near the
    /// front, the slot is released when the record settles.
    fn drop(&mut self) {
        let Some(shared) = self.shared.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        let mut g = match shared.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        g.slots.release(self.id, &self.slot);
    }
}

impl DeliveryHandle {
    /// The record's id.
    pub fn id(&self) -> RecordId {
        self.id
    }

    /// Waits until the record is Durable: written to the spool and synced as
    /// its fsync policy promises. It may be Delivered before or after that;
    /// await the handle itself for Delivered.
    ///
    /// # Errors
    ///
    /// [`DurableError::NoSpool`] without a spool,
    /// [`DurableError::NotSpooled`] when the overflow policy dropped the
    /// record as it was sent, [`DurableError::Failed`] when the spool stopped
    /// first.
    pub fn durable(&self) -> impl Future<Output = Result<(), DurableError>> + Send + '_ {
        std::future::poll_fn(move |cx| match &self.durability {
            Durability::NoSpool => Poll::Ready(Err(DurableError::NoSpool)),
            Durability::NotSpooled => Poll::Ready(Err(DurableError::NotSpooled)),
            Durability::Spooled(signal) => signal.poll_durable(self.id, cx),
        })
    }

    /// Whether the record is Durable now.
    pub fn is_durable(&self) -> bool {
        match &self.durability {
            Durability::Spooled(signal) => signal.durable_through() >= self.id,
            Durability::NoSpool | Durability::NotSpooled => false,
        }
    }
}

impl Future for DeliveryHandle {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut state = self.slot.0.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::take(&mut *state) {
            SlotState::Done(outcome) => {
                *state = SlotState::Taken;
                Poll::Ready(outcome)
            }
            SlotState::Taken => Poll::Ready(Err(DeliveryError::Abandoned)),
            SlotState::Waiting | SlotState::Polled(_) => {
                *state = SlotState::Polled(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Slots of unsettled records whose handles are alive, indexed by id. Ids
/// are given out one by one, so this is a window over a `VecDeque`, trimmed
/// at the front as records settle or their handles are dropped.
///
/// A dropped handle of a record far from the front takes its slot out of
/// the window itself (see `Drop for DeliveryHandle`): its memory is freed
/// while still in the cache and is what the next record's slot gets from
/// the allocator. Otherwise the slot stays until its record settles, and is
/// then kept for a later record instead of freed.
#[derive(Debug, Default)]
pub(crate) struct SlotWindow {
    base: u64,
    slots: VecDeque<Option<Arc<Slot>>>,
    spare: Vec<Arc<Slot>>,
}

/// A record accepted with at least this many records held before it settles
/// so much later that its slot will have left the cache (with the queue
/// slots and payloads of those records, a few megabytes): its handle
/// releases the slot when dropped. Closer to the front, settling reads the
/// slot while it is still cached, and the handle's drop skips the lock.
pub(crate) const RELEASE_BEHIND: usize = 4096;

/// The most slots kept for reuse. A slot takes under 100 bytes with its
/// `Arc` counts and allocation header, so the pool stays under 1.6 MB.
/// Acks come in batches of thousands while handles open a few at a time:
/// with a smaller pool most slots of a batch were freed and soon allocated
/// again (the slots of records far from the front are instead released by
/// their handles, see [`RELEASE_BEHIND`]).
const SPARE_SLOTS: usize = 16 * 1024;

impl SlotWindow {
    /// A handle for the record just accepted as `id`, with `ahead` records
    /// held before it; its drop releases the slot from `shared` (see
    /// [`RELEASE_BEHIND`]).
    #[inline]
    pub(crate) fn open(
        &mut self,
        id: RecordId,
        durability: Durability,
        ahead: usize,
        shared: &Arc<Shared>,
    ) -> DeliveryHandle {
        if self.slots.is_empty() {
            self.base = id.0;
        }
        debug_assert_eq!(id.0, self.base + self.slots.len() as u64);
        let slot = self.spare.pop().unwrap_or_default();
        self.slots.push_back(Some(Arc::clone(&slot)));
        DeliveryHandle {
            id,
            slot,
            durability,
            shared: (ahead >= RELEASE_BEHIND).then(|| Arc::downgrade(shared)),
        }
    }

    /// Removes `slot`, the slot of `id`, whose handle is being dropped; it
    /// is freed with the handle. Nothing if `id` settled already.
    #[inline]
    fn release(&mut self, id: RecordId, slot: &Arc<Slot>) {
        let Some(at) = id.0.checked_sub(self.base) else {
            return;
        };
        let Some(entry) = usize::try_from(at)
            .ok()
            .and_then(|at| self.slots.get_mut(at))
        else {
            return;
        };
        if entry.as_ref().is_some_and(|s| Arc::ptr_eq(s, slot)) {
            *entry = None;
            self.trim();
        }
    }

    /// Drops the released and taken slots at the front.
    #[inline]
    fn trim(&mut self) {
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// Takes the slot of `id`, to complete it; `None` if its handle was
    /// dropped (nobody is listening: the slot is kept for reuse).
    #[inline]
    pub(crate) fn take(&mut self, id: RecordId) -> Option<Arc<Slot>> {
        let at = usize::try_from(id.0.checked_sub(self.base)?).ok()?;
        let mut slot = self.slots.get_mut(at)?.take()?;
        self.trim();
        // Unique: the handle is gone, and no other reference can appear.
        let Some(unique) = Arc::get_mut(&mut slot) else {
            return Some(slot);
        };
        if self.spare.len() < SPARE_SLOTS {
            *unique.0.get_mut().unwrap_or_else(PoisonError::into_inner) = SlotState::default();
            self.spare.push(slot);
        }
        None
    }

    /// Takes every open slot.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = Arc<Slot>> + use<> {
        std::mem::take(&mut self.slots).into_iter().flatten()
    }
}

/// Outcomes to hand to handles once the shared lock is released.
#[derive(Debug, Default)]
pub(crate) struct Completions(Vec<(Arc<Slot>, Outcome)>);

impl Completions {
    #[inline]
    pub(crate) fn push(&mut self, slot: Option<Arc<Slot>>, outcome: Outcome) {
        if let Some(slot) = slot
            && Arc::strong_count(&slot) > 1
        {
            self.0.push((slot, outcome));
        }
    }

    pub(crate) fn run(&mut self) {
        for (slot, outcome) in self.0.drain(..) {
            slot.complete(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: u64) -> Outcome {
        Ok(Ack::new(RecordId(id)))
    }

    #[test]
    fn the_spare_pool_stays_small() {
        let size = std::mem::size_of::<Slot>();
        assert!(size <= 64, "SPARE_SLOTS's memory bound assumes it: {size}");
    }

    /// A runtime whose timers never fire, for a `Shared` in unit tests.
    struct NoTimers;

    impl crate::driver::runtime::Runtime for NoTimers {
        fn now(&self) -> std::time::Instant {
            std::time::Instant::now()
        }
        fn sleep_until(&self, _: std::time::Instant) -> crate::driver::runtime::BoxFuture {
            Box::pin(std::future::pending())
        }
        fn spawn(&self, _: crate::driver::runtime::BoxFuture) {}
    }

    fn shared() -> Arc<Shared> {
        let config = crate::Config::builder().build().unwrap();
        let machine = crate::machine::Machine::new(config, std::time::Instant::now());
        Arc::new(Shared::new(
            machine,
            Arc::new(NoTimers),
            Arc::new(|_| {}),
            None,
        ))
    }

    fn open(shared: &Arc<Shared>, id: u64) -> DeliveryHandle {
        shared
            .lock()
            .slots
            .open(RecordId(id), Durability::NoSpool, RELEASE_BEHIND, shared)
    }

    fn poll(handle: &mut DeliveryHandle) -> Poll<Outcome> {
        Pin::new(handle).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn dropped_handles_leave_the_window_at_once_and_kept_ones_complete() {
        let shared = shared();
        let kept = open(&shared, 1);
        drop(open(&shared, 2));
        drop(open(&shared, 3));
        {
            let g = shared.lock();
            // 2 and 3 are gone; 1 still waits at the front.
            assert_eq!(g.slots.slots.iter().flatten().count(), 1);
        }
        let mut completions = Completions::default();
        {
            let mut g = shared.lock();
            assert!(g.slots.take(RecordId(2)).is_none(), "nobody listens");
            completions.push(g.slots.take(RecordId(1)), ack(1));
            assert!(g.slots.slots.is_empty(), "trimmed: {:?}", g.slots.slots);
        }
        completions.run();
        let mut kept = kept;
        assert_eq!(poll(&mut kept), Poll::Ready(ack(1)));
        drop(kept); // settled already: nothing to release
        assert!(shared.lock().slots.slots.is_empty());
    }

    #[test]
    fn handles_move_between_threads() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<DeliveryHandle>();
    }

    #[test]
    fn a_record_near_the_front_keeps_its_slot_until_it_settles() {
        let shared = shared();
        let near = shared
            .lock()
            .slots
            .open(RecordId(1), Durability::NoSpool, 0, &shared);
        drop(near); // settles soon, its slot still cached: no lock taken
        let mut g = shared.lock();
        assert_eq!(g.slots.slots.len(), 1);
        assert!(g.slots.take(RecordId(1)).is_none(), "nobody listens");
        assert_eq!(g.slots.spare.len(), 1, "kept for the next record");
    }

    #[test]
    fn a_handle_does_not_keep_the_producer_alive() {
        let shared = shared();
        let handle = open(&shared, 1);
        let weak = Arc::downgrade(&shared);
        drop(shared);
        assert!(weak.upgrade().is_none(), "the handle held the shared state");
        drop(handle); // nothing left to release from
    }

    #[test]
    fn a_handle_dropped_while_the_lock_is_held_leaves_its_slot_for_reuse() {
        let shared = shared();
        let dropped = open(&shared, 1);
        let dropped_slot = Arc::as_ptr(&dropped.slot);
        {
            let mut g = shared.lock();
            drop(dropped); // the lock is taken: released when the record settles
            assert_eq!(g.slots.slots.len(), 1);
            assert!(g.slots.take(RecordId(1)).is_none(), "nobody listens");
        }
        // The next record gets that slot, reset, and completes normally.
        let next = open(&shared, 2);
        assert_eq!(Arc::as_ptr(&next.slot), dropped_slot);
        let mut completions = Completions::default();
        completions.push(shared.lock().slots.take(RecordId(2)), ack(2));
        completions.run();
        let mut next = next;
        assert_eq!(poll(&mut next), Poll::Ready(ack(2)));
    }
}
