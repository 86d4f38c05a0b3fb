//! The driver's side of an attached [`Spool`]: opening its session and
//! replaying what it recovered, appending accepted records under its bound,
//! the send gate (the machine learns how many settle marks the spool has
//! yet to write, and the driver is woken when it writes them), reporting
//! settled records, and closing: waiting for the final sync, then deciding
//! which undelivered records stay in the spool and which go back.
//!
//! The contract a spool implements is in [`crate::spool`].

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use crate::event::EnqueueError;
use crate::machine::Machine;
use crate::record::{Record, RecordId};
use crate::spool::{Room, SPOOL_CLOSE_GRACE, Spool, SpoolSignal};
use crate::stats::SendHold;
use crate::stats::SpoolFigures;
use crate::time::deadline_after;

use super::delivery::{Completions, Durability};
use super::outcome::DeliveryError;
use super::shared::Shared;

/// An attached spool and the signal through which it reports back.
pub(crate) struct Spooling {
    spool: Arc<dyn Spool>,
    signal: SpoolSignal,
}

impl Spooling {
    /// Starts the spool's session and enqueues the records it recovered
    /// (they get the first ids and are sent first). A spool that cannot
    /// start is reported failed: every record is then refused.
    pub(crate) fn open(spool: Arc<dyn Spool>, machine: &mut Machine, now: Instant) -> Self {
        let signal = SpoolSignal::new();
        match spool.open_session(signal.clone()) {
            Ok(records) => {
                let n = records.len();
                for record in records {
                    machine.enqueue_recovered(record, now);
                }
                if n > 0 {
                    tracing::info!(records = n, "replaying records recovered from the spool");
                    signal.durable(RecordId(n as u64));
                }
            }
            Err(reason) => {
                tracing::error!(%reason, "the spool could not start; records will be refused");
                signal.failed(reason);
            }
        }
        Self { spool, signal }
    }

    /// The spool's figures for [`Stats::spool`](crate::Stats::spool),
    /// given the id of the last record accepted.
    pub(crate) fn figures(&self, last_id: RecordId) -> SpoolFigures {
        SpoolFigures {
            bytes: self.spool.bytes(),
            durable_lag: last_id.0.saturating_sub(self.signal.durable_through().0),
        }
    }

    /// Enqueues under the spool's bound too, and appends the accepted
    /// record.
    pub(crate) fn enqueue(
        &self,
        machine: &mut Machine,
        record: Record,
        now: Instant,
    ) -> Result<(RecordId, Durability), EnqueueError> {
        if let Some(reason) = self.signal.failure() {
            return Err(EnqueueError::SpoolFailed {
                record: Box::new(record),
                reason,
            });
        }
        match self.spool.room(&record, None) {
            Room::Failed(reason) => {
                return Err(EnqueueError::SpoolFailed {
                    record: Box::new(record),
                    reason,
                });
            }
            Room::TooLarge { size, max } => {
                return Err(EnqueueError::RecordTooLarge {
                    record: Box::new(record),
                    size,
                    max,
                    limit: "the spool's max_record_bytes",
                });
            }
            _ => {}
        }
        let spool = &*self.spool;
        let id =
            machine.enqueue_with(record, now, |r, oldest| spool.room(r, oldest) == Room::Fits)?;
        let durability = match machine.record(id) {
            Some(r) => {
                spool.append(id, r);
                Durability::Spooled(self.signal.clone())
            }
            None => Durability::NotSpooled, // dropped by the overflow policy
        };
        Ok((id, durability))
    }

    /// The send gate: tells the machine how many settled records the spool
    /// has yet to write down as settled. While that holds sending back, the
    /// driver (`waker`) is woken when the spool writes them. True when the
    /// gate opened between two reads: the driver should go round again.
    pub(crate) fn gate(&self, machine: &mut Machine, now: Instant, waker: &Waker) -> bool {
        let held = |m: &Machine| matches!(m.send_hold(now), Some(SendHold::SpoolUnrecorded { .. }));
        machine.handle_spool_unrecorded(self.spool.unrecorded());
        if !held(machine) {
            return false;
        }
        self.signal.wait_progress(waker);
        // Read again once registered: progress made in between is not
        // missed.
        machine.handle_spool_unrecorded(self.spool.unrecorded());
        !held(machine)
    }

    /// These records settled; every record before `oldest_held` has.
    pub(crate) fn settled(&self, ids: &[RecordId], oldest_held: Option<RecordId>) {
        self.spool.settled(ids, oldest_held);
    }

    /// Asks the spool for its final write and fsync; they run while the
    /// transport closes.
    pub(crate) fn start_close(&self) {
        self.spool.close();
    }

    /// Waits for the spool to finish closing, or for the close `deadline`
    /// plus [`SPOOL_CLOSE_GRACE`]; then hands back what is not Durable.
    pub(crate) async fn finish_close(&self, shared: &Shared, deadline: Instant) {
        let mut sleep = shared
            .runtime
            .sleep_until(deadline_after(deadline, SPOOL_CLOSE_GRACE));
        poll_fn(|cx| {
            if self.signal.poll_done(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
        self.resolve_returns(shared);
    }

    /// Decides, once the spool has synced what it could, what happens to
    /// the records the machine handed back: Durable ones stay in the spool
    /// for the next start; the others go back to the application (or to
    /// the dead-letter handler when every handle was dropped).
    pub(crate) fn resolve_returns(&self, shared: &Shared) {
        let through = self.signal.durable_through();
        let mut completions = Completions::default();
        let mut dead = Vec::new();
        let mut g = shared.lock();
        let mut kept = 0usize;
        for (id, record) in std::mem::take(&mut g.spool_returns) {
            if id <= through {
                kept += 1;
                completions.push(g.slots.take(id), Err(DeliveryError::Spooled));
            } else {
                g.hand_back(id, record, &mut completions, &mut dead);
            }
        }
        let handed_back = g.returned.len() + dead.len();
        drop(g);
        if kept > 0 || handed_back > 0 {
            tracing::info!(
                kept_in_spool = kept,
                handed_back,
                "closed: undelivered Durable records stay in the spool for the next start"
            );
        }
        completions.run();
        for letter in dead {
            shared.dead_letter(letter);
        }
    }
}
