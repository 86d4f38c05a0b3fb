//! How librdkafka's error codes map to the core's
//! [`ErrorClass`](robust_producer::ErrorClass), in one place. The table is
//! in the crate docs, section "Signals".

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use robust_producer::TransportError;

/// What to do about a failed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Report this failure for the record.
    Record(TransportError),
    /// End the session: the core resends this record and everything after
    /// it, in order.
    Session(String),
    /// The client is (or must be treated as) unusable: rebuild it.
    Fatal(String),
    /// The broker refused the record's whole batch for its size: report the
    /// record for a resend on its own ([`ErrorClass::Isolate`](robust_producer::ErrorClass::Isolate))
    /// and end the session, so that nothing handed off after it is stored
    /// ahead of that resend.
    Isolate(TransportError),
}

/// The name of `code` with librdkafka's description of it, for logs, stats
/// and dead letters, for example `MessageSizeTooLarge (Broker: Message size
/// too large)`.
pub(crate) fn describe(code: RDKafkaErrorCode) -> String {
    code.to_string()
}

/// Classifies the error of a failed delivery report.
///
/// A size refusal there comes from the broker, for a whole produce batch
/// (over the topic's `max.message.bytes`, which can be below the client's
/// `message.max.bytes`): the record may be innocent, so it is resent alone
/// before anything is decided.
pub(crate) fn delivery_failure(code: RDKafkaErrorCode) -> Disposition {
    use RDKafkaErrorCode as C;
    let reason = describe(code);
    match code {
        C::MessageSizeTooLarge | C::MessageBatchTooLarge => {
            Disposition::Isolate(TransportError::isolate(reason))
        }
        C::InvalidMessageSize
        | C::InvalidRecord
        | C::TopicAuthorizationFailed
        | C::InvalidTopic
        | C::UnknownTopicOrPartition
        | C::UnknownTopic
        | C::UnknownPartition
        | C::PolicyViolation
        | C::UnsupportedForMessageFormat
        | C::InvalidRequiredAcks
        | C::InvalidTimestamp
        | C::BadMessage
        | C::InvalidArgument => Disposition::Record(TransportError::permanent(reason)),
        C::Fatal
        | C::OutOfOrderSequenceNumber
        | C::InvalidProducerEpoch
        | C::UnknownProducerId
        | C::InvalidProducerIdMapping
        | C::ProducerFenced
        | C::ClusterAuthorizationFailed
        | C::Inconsistent
        | C::GaplessGuarantee
        | C::Fenced
        | C::State => Disposition::Fatal(reason),
        _ => Disposition::Session(reason),
    }
}

/// Classifies the error of a refused hand-off (`send`).
pub(crate) fn send_failure(error: &KafkaError) -> Disposition {
    match error {
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => Disposition::Record(
            TransportError::backpressure(describe(RDKafkaErrorCode::QueueFull)),
        ),
        // librdkafka refused this record itself, at hand-off: it is too
        // large on its own.
        KafkaError::MessageProduction(
            code @ (RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge),
        ) => Disposition::Record(TransportError::permanent(describe(*code))),
        KafkaError::MessageProduction(code) => delivery_failure(*code),
        KafkaError::Nul(e) => Disposition::Record(TransportError::permanent(format!(
            "invalid topic name: {e}"
        ))),
        other => Disposition::Session(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use robust_producer::ErrorClass;

    fn class(code: RDKafkaErrorCode) -> &'static str {
        match delivery_failure(code) {
            Disposition::Record(e) if e.class == ErrorClass::Permanent => "permanent",
            Disposition::Record(_) => "other",
            Disposition::Session(_) => "session",
            Disposition::Fatal(_) => "fatal",
            Disposition::Isolate(_) => "isolate",
        }
    }

    #[test]
    fn mapping_follows_the_design() {
        use RDKafkaErrorCode as C;
        assert_eq!(class(C::MessageSizeTooLarge), "isolate");
        assert_eq!(class(C::MessageBatchTooLarge), "isolate");
        let Disposition::Record(e) =
            send_failure(&KafkaError::MessageProduction(C::MessageSizeTooLarge))
        else {
            panic!("too large at hand-off is this record's own failure");
        };
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(class(C::TopicAuthorizationFailed), "permanent");
        assert_eq!(class(C::InvalidTopic), "permanent");
        assert_eq!(class(C::UnknownTopic), "permanent");
        assert_eq!(class(C::MessageTimedOut), "session");
        assert_eq!(class(C::BrokerTransportFailure), "session");
        assert_eq!(class(C::NotEnoughReplicas), "session");
        assert_eq!(class(C::PurgeQueue), "session");
        assert_eq!(class(C::OutOfOrderSequenceNumber), "fatal");
        assert_eq!(class(C::Fatal), "fatal");
        let Disposition::Record(e) = send_failure(&KafkaError::MessageProduction(C::QueueFull))
        else {
            panic!("queue full is per record");
        };
        assert_eq!(e.class, ErrorClass::Backpressure);
    }

    #[test]
    fn reasons_say_what_the_broker_said() {
        let Disposition::Isolate(e) = delivery_failure(RDKafkaErrorCode::MessageSizeTooLarge)
        else {
            panic!()
        };
        assert!(e.reason.contains("MessageSizeTooLarge"), "{}", e.reason);
        assert!(
            e.reason.to_lowercase().contains("too large"),
            "{}",
            e.reason
        );
    }
}
