//! Every state transition, in one `match` over (state, input), and what
//! entering a state does.

use std::time::Instant;

use tracing::{debug, info, warn};

use super::{Input, Link, Machine, PendingCommand};
use crate::event::Event;
use crate::record::RecordId;
use crate::time::deadline_after;

impl Machine {
    /// Every state transition, in one match.
    pub(super) fn step(&mut self, input: Input, now: Instant) {
        let next = match (self.link, input) {
            (Link::Closed, _) => return,
            (_, Input::ShutdownDeadline) => {
                self.close(now);
                return;
            }
            (Link::Disconnected { .. }, Input::ConnectDue) => {
                self.counters.reconnect_attempts += 1;
                debug!(attempt = self.counters.reconnect_attempts, "connecting");
                self.commands.push_back(PendingCommand::Connect);
                Link::Connecting {
                    deadline: deadline_after(now, self.config.connect_timeout()),
                }
            }
            (Link::Connecting { .. }, Input::Connected) => {
                if self.queue.is_empty() {
                    self.reconnect.reset();
                    Link::Connected
                } else {
                    self.reset_backoff_on_ack = true;
                    self.drain_target = self.drain_target.max(Some(RecordId(self.next_id - 1)));
                    Link::Draining
                }
            }
            (Link::Connecting { .. }, Input::ConnectFailed(reason) | Input::LinkLost(reason)) => {
                // Once per outage at `warn`: an outage's every retry is
                // expected, and reported at `info`.
                if self.reconnect.attempt() == 0 {
                    warn!(%reason, "connect failed; retrying with backoff");
                } else {
                    info!(%reason, attempt = self.reconnect.attempt(), "connect failed");
                }
                self.last_error = Some(reason);
                self.disconnected(now)
            }
            (Link::Connected | Link::Draining, Input::LinkLost(reason)) => {
                self.counters.link_losses += 1;
                let requeued = self.queue.requeue_all();
                self.solo = None;
                warn!(%reason, requeued, "link lost");
                self.last_error = Some(reason);
                self.retry_hold = None;
                self.backpressure_until = None;
                self.disconnected(now)
            }
            (link, Input::Progress) => {
                if self.closing.is_some() && self.queue.is_empty() {
                    self.close(now);
                    return;
                }
                let settled = self.drain_target.is_none_or(|t| self.is_settled(t));
                if settled {
                    self.drain_target = None;
                }
                // A flush does not change the public state: a healthy,
                // flushing producer stays Connected.
                match link {
                    Link::Draining if settled && self.closing.is_none() => Link::Connected,
                    Link::Connected if self.closing.is_some() => Link::Draining,
                    other => other,
                }
            }
            (link, input) => {
                debug!(state = %link.public(), ?input, "ignored stale input");
                return;
            }
        };
        self.set_link(next, now);
    }

    pub(super) fn disconnected(&mut self, now: Instant) -> Link {
        self.reset_backoff_on_ack = false;
        self.stalled = None;
        let delay = self.reconnect.next().unwrap_or(self.config.backoff().max);
        debug!(?delay, "reconnect scheduled");
        Link::Disconnected {
            retry_at: deadline_after(now, delay),
        }
    }

    pub(super) fn close(&mut self, now: Instant) {
        for held in self.queue.take_all() {
            self.counters.returned += 1;
            self.counters.returned_bytes += held.size as u64;
            self.events.push_back(Event::Returned {
                id: held.id,
                record: Box::new(held.record),
            });
        }
        if self.counters.returned > 0 {
            warn!(
                returned = self.counters.returned,
                "closed with undelivered records handed back"
            );
        }
        self.drain_target = None;
        self.isolate.clear();
        self.solo = None;
        self.retry_hold = None;
        self.backpressure_until = None;
        self.commands.push_back(PendingCommand::Close);
        self.set_link(Link::Closed, now);
    }

    pub(super) fn set_link(&mut self, next: Link, now: Instant) {
        let (from, to) = (self.link.public(), next.public());
        self.link = next;
        if from == to {
            return;
        }
        debug_assert!(from.may_become(to), "{from} -> {to} is not on the diagram");
        self.state_since = now;
        if to.is_connected() {
            if let Some(since) = self.down_since.take() {
                self.counters.disconnected += now.saturating_duration_since(since);
            }
        } else if from.is_connected() {
            self.down_since = Some(now);
        }
        info!(%from, %to, held = self.queue.len(), "state changed");
        self.events.push_back(Event::StateChanged { from, to });
    }
}
