//! The producer's public, data-free [`State`] and its transition diagram.

use std::fmt;

/// Where the producer is in its life, as the application sees it.
///
/// ```text
///                 start
///                   │
///                   ▼
///          ┌──────────────┐  retry timer   ┌────────────┐
///     ┌───▶│ Disconnected │───────────────▶│ Connecting │
///     │    └──────────────┘                └────────────┘
///     │       ▲  ▲   connect failed / timed out  │  │
///     │       │  └───────────────────────────────┘  │ connected
///     │       │                          ┌──────────┴───────────┐
///     │       │ link lost / hung / fatal │ backlog              │ nothing queued
///     │       │                          ▼                      ▼
///     │       │                   ┌──────────┐  drained   ┌───────────┐
///     │       └───────────────────│ Draining │───────────▶│ Connected │
///     │                           └──────────┘◀───────────└───────────┘
///     │                                │            shutdown      │
///     └────────── link lost ───────────┼──────────────────────────┘
///                                      │ shutdown done or deadline
///                                      ▼ (from any state)
///                                 ┌────────┐
///                                 │ Closed │
///                                 └────────┘
/// ```
///
/// Serialized as its `snake_case` name (`"connected"`).
///
/// Every transition is reported once as
/// [`Event::StateChanged`](crate::Event::StateChanged) and traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// No session; the next connect attempt is scheduled after a backoff.
    Disconnected,
    /// A connect attempt is under way, with a deadline.
    Connecting,
    /// Connected; records flow as they arrive.
    Connected,
    /// Connected and working through records that waited: a backlog after a
    /// reconnect, or what is held at shutdown. A flush does not change the
    /// state, so a dashboard keyed on it does not flap.
    Draining,
    /// Shut down; nothing is accepted or sent any more.
    Closed,
    /// Terminal and off the diagram: the producer's driver stopped
    /// unexpectedly (it panicked, or its executor dropped it before the
    /// producer closed). Nothing is sent any more; `send` refuses with
    /// [`EnqueueError::Failed`](crate::EnqueueError::Failed), `stats()`
    /// gives the reason as `last_error`, the health verdict is `Unhealthy`,
    /// and `close` hands back every record still held. Only
    /// [`Producer::state`](crate::Producer::state) reports it; the
    /// [`Machine`](crate::Machine) never enters it.
    Failed,
}

impl State {
    /// Whether the diagram above has an arrow from `self` to `to`.
    pub fn may_become(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Disconnected, Connecting | Closed)
                | (Connecting, Connected | Draining | Disconnected | Closed)
                | (Connected, Draining | Disconnected | Closed)
                | (Draining, Connected | Disconnected | Closed)
        )
    }

    /// Whether records can be handed to the transport in this state.
    pub fn is_connected(self) -> bool {
        matches!(self, State::Connected | State::Draining)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
