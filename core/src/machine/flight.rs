//! Records in flight: what an acknowledgement or a failure does to them,
//! when sending may go on, and when a silent flight means the session hung.

use std::time::{Duration, Instant};

use tracing::{debug, trace, warn};

use super::{BACKPRESSURE_PAUSE, Input, LOST_ACK_FACTOR, Machine};
use crate::event::Event;
use crate::record::RecordId;
use crate::time::deadline_after;
use crate::transport::{Ack, ErrorClass, TransportError};

impl Machine {
    #[inline]
    pub(super) fn on_delivered(&mut self, ack: Ack, now: Instant) {
        if !self.isolate.is_empty() {
            self.overtaken_by(ack.id, now);
        }
        let Some((size, accepted_at)) = self.queue.discard(ack.id) else {
            trace!(id = %ack.id, "acknowledgement for a record no longer held");
            return;
        };
        self.flight_moved = now;
        self.stalled = None;
        trace!(id = %ack.id, "delivered");
        if self.solo == Some(ack.id) {
            self.solo = None;
        }
        if !self.isolate.is_empty() {
            self.isolate.remove(&ack.id);
        }
        self.counters.delivered += 1;
        self.counters.delivered_bytes += size as u64;
        self.retry.reset();
        if self.reset_backoff_on_ack {
            self.reset_backoff_on_ack = false;
            self.reconnect.reset();
        }
        let waited = now.saturating_duration_since(accepted_at);
        self.counters.delivery.record(waited);
        self.events.push_back(Event::Delivered { ack, waited });
        if self.drain_target.is_some() || self.closing.is_some() {
            self.step(Input::Progress, now);
        }
    }

    pub(super) fn on_failed(&mut self, id: RecordId, error: TransportError, now: Instant) {
        if self.queue.get(id).is_some() {
            self.flight_moved = now;
        }
        let was_solo = self.solo == Some(id);
        if was_solo {
            self.solo = None;
        }
        match error.class {
            ErrorClass::Isolate if was_solo => {
                self.isolate.remove(&id);
                let reason = format!("{} (refused alone)", error.reason);
                self.dead_letter(id, reason, now);
            }
            ErrorClass::Isolate => {
                if self.queue.get(id).is_some() {
                    if self.queue.requeue(id) {
                        self.counters.retried += 1;
                    }
                    self.quiesce = true;
                    self.isolate.insert(id);
                    debug!(%id, reason = %error.reason, "refused with its batch; will be resent alone");
                    self.last_error = Some(error.reason);
                }
            }
            ErrorClass::Link | ErrorClass::Fatal => {
                if self.link.is_up() {
                    let input = Input::LinkLost(format!("{id}: {error}"));
                    self.step(input, now);
                }
            }
            ErrorClass::Retriable => {
                if self.queue.requeue(id) {
                    self.counters.retried += 1;
                    self.quiesce = true;
                    // One backoff step per burst of failures; every failed
                    // record still waits at least the initial delay.
                    let hold = match self.retry_hold.filter(|h| *h > now) {
                        None => deadline_after(
                            now,
                            self.retry.next().unwrap_or(self.config.backoff().max),
                        ),
                        Some(hold) => hold.max(deadline_after(now, self.config.backoff().initial)),
                    };
                    debug!(
                        %id,
                        reason = %error.reason,
                        paused_for = ?hold.saturating_duration_since(now),
                        "retriable failure; sending paused"
                    );
                    self.retry_hold = Some(hold);
                    self.last_error = Some(error.reason);
                }
            }
            ErrorClass::Backpressure => {
                if self.queue.requeue(id) {
                    self.backpressure_until = Some(deadline_after(now, BACKPRESSURE_PAUSE));
                    trace!(%id, "transport back-pressure");
                }
            }
            ErrorClass::Permanent => self.dead_letter(id, error.reason, now),
        }
    }

    /// Record `stored` (about to be acknowledged) was stored ahead of the
    /// records of its key that wait to be resent alone: resending them now
    /// would break the key's order, so they are dead-lettered instead. (A
    /// client can store later records of a partition after a batch was
    /// refused whole: librdkafka's idempotent producer retries them under a
    /// new epoch.)
    pub(super) fn overtaken_by(&mut self, stored: RecordId, now: Instant) {
        let Some(key) = self.queue.get(stored).and_then(|h| h.record.key.clone()) else {
            return;
        };
        let overtaken: Vec<RecordId> = self
            .isolate
            .range(..stored)
            .copied()
            .filter(|id| {
                self.queue
                    .get(*id)
                    .is_some_and(|h| h.record.key.as_ref() == Some(&key))
            })
            .collect();
        for id in overtaken {
            let reason = format!(
                "refused with its batch, and {stored}, a later record of its key, was stored \
                 first: resending it would break the key's order"
            );
            self.dead_letter(id, reason, now);
        }
    }

    pub(super) fn dead_letter(&mut self, id: RecordId, reason: String, now: Instant) {
        self.isolate.remove(&id);
        if self.solo == Some(id) {
            self.solo = None;
        }
        if let Some(held) = self.queue.remove(id) {
            self.counters.dead_lettered += 1;
            self.counters.dead_lettered_bytes += held.size as u64;
            warn!(%id, %reason, "record dead-lettered");
            self.last_error = Some(reason.clone());
            self.events.push_back(Event::DeadLettered {
                id,
                record: Box::new(held.record),
                reason,
            });
            self.step(Input::Progress, now);
        }
    }

    #[inline]
    pub(super) fn may_send(&self, now: Instant) -> bool {
        self.link.is_up()
            && self.queue.waiting_len() > 0
            && self.queue.in_flight_len() + self.spool_unrecorded < self.config.max_in_flight()
            && !(self.quiesce && self.queue.in_flight_len() > 0)
            && self.solo.is_none()
            && self.retry_hold.is_none_or(|t| t <= now)
            && self.backpressure_until.is_none_or(|t| t <= now)
    }

    /// Whether the next waiting record was refused with its batch and must
    /// go alone.
    #[inline]
    pub(super) fn next_goes_alone(&self) -> bool {
        !self.isolate.is_empty()
            && self
                .queue
                .peek_waiting_id()
                .is_some_and(|next| self.isolate.contains(&next))
    }

    /// When the session counts as hung, while records are in flight: no
    /// report for `ack_timeout`, or one record unacknowledged for
    /// [`Machine::lost_ack_timeout`] while others keep being acknowledged
    /// (an acknowledgement lost by the transport).
    pub(super) fn ack_deadline(&self) -> Option<Instant> {
        let oldest = self.queue.oldest_hand_off()?;
        let silent = deadline_after(self.flight_moved, self.config.ack_timeout());
        let lost = deadline_after(oldest, self.lost_ack_timeout());
        Some(silent.min(lost))
    }

    /// True when no report arrived for `ack_timeout` up to `now`.
    pub(super) fn flight_silent_since(&self, now: Instant) -> bool {
        deadline_after(self.flight_moved, self.config.ack_timeout()) <= now
    }

    /// How long one record may stay unacknowledged while others are
    /// acknowledged: [`LOST_ACK_FACTOR`] times `ack_timeout`.
    pub(super) fn lost_ack_timeout(&self) -> Duration {
        self.config.ack_timeout().saturating_mul(LOST_ACK_FACTOR)
    }
}
