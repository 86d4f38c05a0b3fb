//! [`RebuildReason`]: why `connect` builds a new librdkafka producer
//! instead of reusing the current one, decided from the producer's state.
//! The `reason` label of the rebuild counter (feature `metrics`).

/// Why a session gets a new librdkafka producer. A bounded set: each is a
/// label value of `robust_producer_transport_rebuilds_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RebuildReason {
    /// librdkafka failed fatally (`fatal_error()`, or an idempotence state
    /// error such as an out-of-order sequence number).
    Fatal,
    /// A hand-off failed in a way that leaves librdkafka's state unknown.
    HandOffFailed,
    /// The session ended with a lost link (every broker down, or a record
    /// failure retried at session granularity) and librdkafka's queue was
    /// discarded: with idempotence, a purge leaves a sequence gap.
    LinkLost,
    /// The core gave up on the session (connect timeout, stalled or
    /// unacknowledged records) while records were still in librdkafka.
    Abandoned,
    /// There is no producer: building one failed at the previous `connect`.
    BuildFailed,
}

impl RebuildReason {
    /// Every reason, in the order of [`RebuildReason::index`].
    #[cfg_attr(
        not(any(feature = "metrics", test)),
        expect(
            dead_code,
            reason = "registers the rebuild counters of feature `metrics`"
        )
    )]
    pub(crate) const ALL: [Self; 5] = [
        Self::Fatal,
        Self::HandOffFailed,
        Self::LinkLost,
        Self::Abandoned,
        Self::BuildFailed,
    ];

    /// Why a producer in this state cannot serve a new session; `None` if
    /// it can. `fatal` and `hand_off_failed` also poison the producer, so
    /// they are checked first.
    pub(crate) fn of(
        fatal: bool,
        hand_off_failed: bool,
        poisoned: bool,
        outstanding: usize,
    ) -> Option<Self> {
        if fatal {
            Some(Self::Fatal)
        } else if hand_off_failed {
            Some(Self::HandOffFailed)
        } else if poisoned {
            Some(Self::LinkLost)
        } else if outstanding > 0 {
            Some(Self::Abandoned)
        } else {
            None
        }
    }

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Fatal => "fatal",
            Self::HandOffFailed => "hand_off_failed",
            Self::LinkLost => "link_lost",
            Self::Abandoned => "abandoned",
            Self::BuildFailed => "build_failed",
        }
    }

    /// Its position in [`RebuildReason::ALL`].
    #[cfg_attr(
        not(any(feature = "metrics", test)),
        expect(
            dead_code,
            reason = "indexes the rebuild counters of feature `metrics`"
        )
    )]
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::RebuildReason as R;

    #[test]
    fn the_first_cause_wins() {
        assert_eq!(R::of(false, false, false, 0), None);
        assert_eq!(R::of(true, true, true, 9), Some(R::Fatal));
        assert_eq!(R::of(false, true, true, 9), Some(R::HandOffFailed));
        assert_eq!(R::of(false, false, true, 0), Some(R::LinkLost));
        assert_eq!(R::of(false, false, false, 3), Some(R::Abandoned));
    }

    #[test]
    fn labels_are_distinct_and_indexed_in_order() {
        for (at, reason) in R::ALL.iter().enumerate() {
            assert_eq!(reason.index(), at);
        }
        let mut labels: Vec<&str> = R::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), R::ALL.len());
    }
}
