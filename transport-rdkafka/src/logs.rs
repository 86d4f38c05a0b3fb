//! At which level the transport logs what librdkafka reports, so that the
//! logs of an outage read as an outage:
//!
//! * an expected outage (a broker that refuses or drops connections, a name
//!   that does not resolve, every broker down, a request timing out) is
//!   logged at `warn` once, then at `info` for repeats until
//!   [`REPEAT_AFTER`] has passed or a session came up;
//! * `error` is kept for what needs a person: authentication, TLS and
//!   authorization failures, configuration librdkafka cannot work with, and
//!   fatal errors (see [`Severity::Person`]);
//! * anything else librdkafka reports as an error is logged at `warn`.
//!
//! librdkafka reports a broker failure twice: as a `FAIL` log line (from
//! its broker thread) and as an error event with its code (served by
//! `poll`). The error event decides the level; the log line is logged at
//! `debug`, and both are kept as the last error, for connect-failure
//! reasons.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::error::RDKafkaErrorCode;

use crate::client::{micros, mono_us};

/// How long outage signals after the first are logged at `info`.
pub(crate) const REPEAT_AFTER: Duration = Duration::from_secs(30);

/// How much attention an error reported by librdkafka needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// Part of an expected outage: the core reconnects and resends; `warn`
    /// at most.
    Outage,
    /// Needs a person (credentials, certificates, permissions,
    /// configuration, a fatal error): `error`.
    Person,
    /// Anything else: `warn`.
    Other,
}

/// The severity of an error librdkafka reported with `code`.
pub(crate) fn severity(code: RDKafkaErrorCode) -> Severity {
    use RDKafkaErrorCode as C;
    match code {
        C::BrokerTransportFailure
        | C::Resolve
        | C::AllBrokersDown
        | C::OperationTimedOut
        | C::TimedOutQueue
        | C::MessageTimedOut
        | C::RequestTimedOut
        | C::NetworkException
        | C::BrokerNotAvailable
        | C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::BrokerDestroy
        | C::DestroyBroker
        | C::Interrupted
        | C::PurgeQueue
        | C::PurgeInflight
        | C::Retry
        | C::WaitCache
        | C::NodeUpdate
        | C::UnknownBroker
        | C::KafkaStorageError
        | C::RebootstrapRequired => Severity::Outage,
        C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::UnacceptableCredential
        | C::SSL
        | C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::DelegationTokenAuthorizationFailed
        | C::SecurityDisabled
        | C::InvalidArgument
        | C::InvalidConfig
        | C::InvalidRequiredAcks
        | C::UnsupportedFeature
        | C::UnsupportedVersion
        | C::UnknownProtocol
        | C::NotImplemented
        | C::CriticalSystemResource
        | C::Fatal => Severity::Person,
        _ => Severity::Other,
    }
}

/// Whether an outage signal is the first of its outage (logged at `warn`)
/// or a repeat (`info`). Shared by the producers of one transport.
#[derive(Debug, Default)]
pub(crate) struct OutageLog {
    /// [`mono_us`] (at least 1) of the last `warn`; 0: none since the last
    /// session came up.
    warned_at: AtomicU64,
}

impl OutageLog {
    /// True for the first outage signal since a session came up or since
    /// [`REPEAT_AFTER`]: the caller logs it at `warn`, and at `info`
    /// otherwise.
    pub(crate) fn first(&self) -> bool {
        let now = mono_us().max(1);
        let last = self.warned_at.load(Ordering::Acquire);
        if last != 0 && now.saturating_sub(last) < micros(REPEAT_AFTER) {
            return false;
        }
        self.warned_at
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// A session came up: the next outage is news again.
    pub(crate) fn reset(&self) {
        self.warned_at.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_not_errors_and_credentials_are() {
        use RDKafkaErrorCode as C;
        for code in [
            C::BrokerTransportFailure,
            C::Resolve,
            C::AllBrokersDown,
            C::OperationTimedOut,
            C::RequestTimedOut,
        ] {
            assert_eq!(severity(code), Severity::Outage, "{code:?}");
        }
        for code in [
            C::Authentication,
            C::SaslAuthenticationFailed,
            C::SSL,
            C::TopicAuthorizationFailed,
            C::Fatal,
        ] {
            assert_eq!(severity(code), Severity::Person, "{code:?}");
        }
    }

    #[test]
    fn repeats_are_quiet_until_a_session_came_up() {
        let log = OutageLog::default();
        assert!(log.first());
        assert!(!log.first());
        assert!(!log.first());
        log.reset();
        assert!(log.first());
    }
}
