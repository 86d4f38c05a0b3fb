//! What the producer says about itself: [`Stats`] counters and gauges, and
//! the [`Health`] verdict computed from them by documented rules
//! (see [`HealthConfig`]); the accounting identity the counters keep; and
//! their JSON form (`serde::Serialize`: durations as seconds, enums as
//! `snake_case` strings).

use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::config::HealthConfig;
use crate::histogram::DurationHistogram;
use crate::state::State;

/// A snapshot of the producer's gauges and counters.
///
/// Serialized (for a health endpoint, say) with these field names;
/// durations are seconds as numbers, `null` when absent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Current state.
    pub state: State,
    /// Time since the last state change.
    #[serde(serialize_with = "seconds")]
    pub time_in_state: Duration,
    /// Time since the producer was last connected (or since start, if it
    /// never was); `None` while connected.
    #[serde(serialize_with = "maybe_seconds")]
    pub disconnected_for: Option<Duration>,
    /// Time spent not connected since start, the current span included.
    #[serde(serialize_with = "seconds")]
    pub disconnected_total: Duration,
    /// Records held: waiting plus in flight.
    pub queued_records: usize,
    /// Bytes held: waiting plus in flight.
    pub queued_bytes: usize,
    /// Records handed to the transport and not yet acknowledged.
    pub in_flight: usize,
    /// Age of the oldest record held.
    #[serde(serialize_with = "maybe_seconds")]
    pub oldest_queued_age: Option<Duration>,
    /// Fullness of the queue in `[0, 1]`, by records or bytes, whichever is
    /// fuller.
    pub queue_fill: f64,
    /// Records accepted since start.
    pub accepted: u64,
    /// Bytes of the records accepted (by [`Record::size`](crate::Record::size)).
    pub accepted_bytes: u64,
    /// Records the broker acknowledged.
    pub delivered: u64,
    /// Bytes of the records delivered (by [`Record::size`](crate::Record::size)).
    pub delivered_bytes: u64,
    /// How long delivered records waited, from acceptance to
    /// acknowledgement, outages included.
    pub delivery_duration: DurationHistogram,
    /// Record retries after retriable failures.
    pub retried: u64,
    /// Records dead-lettered after a permanent failure.
    pub dead_lettered: u64,
    /// Bytes of the records dead-lettered (by [`Record::size`](crate::Record::size)).
    pub dead_lettered_bytes: u64,
    /// Records dropped by the overflow policy.
    pub dropped: u64,
    /// Bytes of the records dropped (by [`Record::size`](crate::Record::size)).
    pub dropped_bytes: u64,
    /// Records handed back at shutdown.
    pub returned: u64,
    /// Bytes of the records handed back (by [`Record::size`](crate::Record::size)).
    pub returned_bytes: u64,
    /// Connect attempts made.
    pub reconnect_attempts: u64,
    /// Times an established link was lost (including hangs and fatal errors).
    pub link_losses: u64,
    /// The most recent error, if any.
    pub last_error: Option<String>,
    /// Why the cluster holds records back, as the transport reported it
    /// ([`TransportEvent::Stalled`](crate::TransportEvent::Stalled)); cleared by
    /// the next acknowledgement or the end of the session.
    pub stalled: Option<String>,
    /// What holds sending back while records wait on an established link,
    /// if anything does.
    pub send_held: Option<SendHold>,
    /// The spool's figures, when one is attached.
    pub spool: Option<SpoolFigures>,
}

/// What a spool attached to the producer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SpoolFigures {
    /// Bytes the spool keeps on disk, when it says
    /// ([`Spool::bytes`](crate::Spool::bytes)).
    pub bytes: Option<u64>,
    /// Records accepted after the last Durable one: what a crash of the
    /// machine could lose now (the spool's fsync policy bounds it).
    pub durable_lag: u64,
}

impl Stats {
    /// Checks the accounting identity, in records and in bytes: every
    /// record accepted is delivered, dead-lettered, dropped, returned, or
    /// still held (`queued_records`, `queued_bytes`). It holds at every
    /// moment; a mismatch names the numbers.
    ///
    /// # Errors
    ///
    /// [`AccountingMismatch`] when the counters do not add up.
    pub fn check_accounting(&self) -> Result<(), AccountingMismatch> {
        balance(
            Counted::Records,
            self.accepted,
            [
                self.delivered,
                self.dead_lettered,
                self.dropped,
                self.returned,
            ],
            self.queued_records as u64,
        )?;
        balance(
            Counted::Bytes,
            self.accepted_bytes,
            [
                self.delivered_bytes,
                self.dead_lettered_bytes,
                self.dropped_bytes,
                self.returned_bytes,
            ],
            self.queued_bytes as u64,
        )
    }
}

fn balance(
    unit: Counted,
    accepted: u64,
    ended: [u64; 4],
    held: u64,
) -> Result<(), AccountingMismatch> {
    let ended = ended.iter().fold(0u64, |sum, n| sum.saturating_add(*n));
    if accepted == ended.saturating_add(held) {
        Ok(())
    } else {
        Err(AccountingMismatch {
            unit,
            accepted,
            ended,
            held,
        })
    }
}

/// The counters of a [`Stats`] do not add up (see
/// [`Stats::check_accounting`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "accounting mismatch in {unit}: {accepted} accepted, but {ended} delivered, \
     dead-lettered, dropped or returned plus {held} held"
)]
#[non_exhaustive]
pub struct AccountingMismatch {
    /// What does not add up.
    pub unit: Counted,
    /// Records (or bytes) accepted.
    pub accepted: u64,
    /// Records (or bytes) delivered, dead-lettered, dropped or returned.
    pub ended: u64,
    /// Records (or bytes) held.
    pub held: u64,
}

/// What an [`AccountingMismatch`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Counted {
    /// Records.
    Records,
    /// Bytes, by [`Record::size`](crate::Record::size).
    Bytes,
}

impl std::fmt::Display for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Counted::Records => "records",
            Counted::Bytes => "bytes",
        })
    }
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn maybe_seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Why records wait although the link is up: the machine's reason for
/// not sending the next one now. Serialized as `{"reason": "in_flight_full"}`,
/// `{"reason": "spool_unrecorded", "unrecorded": 2}` and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SendHold {
    /// `max_in_flight` records are in flight.
    InFlightFull,
    /// The spool has not yet written down that `unrecorded` settled records
    /// settled; records in flight plus these reach `max_in_flight`, which
    /// bounds what a crash would send again
    /// ([`Spool::unrecorded`](crate::Spool::unrecorded)).
    SpoolUnrecorded {
        /// Settled records whose settle marks are not yet written.
        unrecorded: usize,
    },
    /// The transport pushed back; sending resumes on
    /// [`TransportEvent::Ready`](crate::TransportEvent::Ready) or after
    /// [`BACKPRESSURE_PAUSE`](crate::BACKPRESSURE_PAUSE).
    Backpressure,
    /// A retriable failure: sending pauses for a backoff.
    RetryPause,
    /// After a failure, the records still in flight are reported first, so
    /// that resends keep their order.
    Quiescing,
    /// A record refused with its batch goes alone: it waits for the records
    /// in flight, or is in flight alone.
    SendingAlone,
}

/// The overall verdict. Serialized as `"healthy"`, `"degraded"` or
/// `"unhealthy"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// Connected, queue shallow and fresh.
    Healthy,
    /// Working, but something needs watching.
    Degraded,
    /// Events are piling up or not flowing.
    Unhealthy,
}

impl Verdict {
    /// The HTTP status a health endpoint answers with: 200 for Healthy and
    /// Degraded (the producer works; Degraded is for watching), 503 for
    /// Unhealthy.
    pub fn http_status(self) -> u16 {
        match self {
            Verdict::Healthy | Verdict::Degraded => 200,
            Verdict::Unhealthy => 503,
        }
    }
}

/// A verdict with the reasons behind it (empty when healthy). Serialized
/// as `{"verdict": "degraded", "reasons": ["..."]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The verdict.
    pub verdict: Verdict,
    /// Why, one sentence each.
    pub reasons: Vec<String>,
}

impl Health {
    /// Applies the rules documented on [`HealthConfig`] to `stats`.
    pub fn assess(stats: &Stats, rules: &HealthConfig) -> Self {
        let mut unhealthy = Vec::new();
        let mut degraded = Vec::new();
        let fill = stats.queue_fill;
        let age = stats.oldest_queued_age.unwrap_or_default();

        let stopped = matches!(stats.state, State::Closed | State::Failed);
        if stats.state == State::Closed {
            unhealthy.push("producer is closed".to_owned());
        }
        if stats.state == State::Failed {
            let reason = stats.last_error.as_deref().unwrap_or("unknown reason");
            unhealthy.push(format!(
                "producer failed, nothing is sent any more: {reason}"
            ));
        }
        if let Some(down) = stats.disconnected_for
            && !stopped
        {
            // Why, when the transport said: "authentication failed: ..."
            // reads as a misconfiguration, not an outage.
            let why = stats
                .last_error
                .as_deref()
                .map_or(String::new(), |e| format!("; last error: {e}"));
            if down >= rules.unhealthy_after_disconnected {
                unhealthy.push(format!("not connected for {down:?}{why}"));
            } else {
                degraded.push(format!(
                    "not connected ({:?}) for {down:?}{why}",
                    stats.state
                ));
            }
        }
        if let Some(why) = &stats.stalled
            && stats.in_flight > 0
        {
            degraded.push(format!("the cluster holds records back: {why}"));
        }
        if fill >= rules.unhealthy_queue_fill {
            unhealthy.push(format!("queue {:.0}% full", fill * 100.0));
        } else if fill >= rules.degraded_queue_fill {
            degraded.push(format!("queue {:.0}% full", fill * 100.0));
        }
        if age >= rules.unhealthy_oldest_age {
            unhealthy.push(format!("oldest queued record waited {age:?}"));
        } else if age >= rules.degraded_oldest_age {
            degraded.push(format!("oldest queued record waited {age:?}"));
        }

        if !unhealthy.is_empty() {
            unhealthy.extend(degraded);
            Health {
                verdict: Verdict::Unhealthy,
                reasons: unhealthy,
            }
        } else if !degraded.is_empty() {
            Health {
                verdict: Verdict::Degraded,
                reasons: degraded,
            }
        } else {
            Health {
                verdict: Verdict::Healthy,
                reasons: Vec::new(),
            }
        }
    }
}
