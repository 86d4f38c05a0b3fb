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

/// How a connect failure caused by credentials starts: "authentication
/// failed: " and librdkafka's reason.
pub(crate) const AUTHENTICATION_FAILED: &str = "authentication failed";

/// How a connect failure caused by certificates starts: "TLS handshake
/// failed: " and librdkafka's reason.
pub(crate) const TLS_FAILED: &str = "TLS handshake failed";

/// Added to a TLS failure whose certificate did not verify: librdkafka
/// does not say which check failed, and its own hint names only the CA.
const VERIFY_HINT: &str = " [the broker's certificate must be signed by a CA in ssl.ca.pem / \
    ssl.ca.location, name the host as dialled (bootstrap and advertised listeners), and be \
    within its validity dates]";

/// Added to a TLS alert from the broker: it refused the handshake, most
/// often this client's certificate (with TLS 1.3 librdkafka sees that
/// only on its first read, as a receive failure).
const ALERT_HINT: &str = " [the broker refused the TLS handshake: when it requires a client \
    certificate, check ssl.certificate.* and ssl.key.*: present, signed by a CA the broker \
    trusts, within its validity dates]";

/// Whether librdkafka's text reports a TLS alert from the broker, for
/// example `SSL routines::sslv3 alert bad certificate: SSL alert number
/// 42`. (Other OpenSSL errors, such as an unexpected end of file while a
/// broker restarts, are outages.)
fn is_tls_alert(lower: &str) -> bool {
    lower.contains("ssl routines") && lower.contains("alert")
}

/// `reason` named as `what`, with [`VERIFY_HINT`] when a certificate did
/// not verify, [`ALERT_HINT`] when the broker refused the handshake.
fn named(what: &str, reason: &str) -> String {
    let hint = if what != TLS_FAILED {
        ""
    } else if reason.contains("certificate verify failed") {
        VERIFY_HINT
    } else if is_tls_alert(&reason.to_ascii_lowercase()) {
        ALERT_HINT
    } else {
        ""
    };
    format!("{what}: {reason}{hint}")
}

/// What needs a person among the client errors librdkafka reports by code:
/// wrong credentials ([`AUTHENTICATION_FAILED`]) or a certificate that
/// does not verify, on either side ([`TLS_FAILED`]).
fn misconfiguration(code: RDKafkaErrorCode) -> Option<&'static str> {
    use RDKafkaErrorCode as C;
    match code {
        C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::UnacceptableCredential => Some(AUTHENTICATION_FAILED),
        C::SSL => Some(TLS_FAILED),
        _ => None,
    }
}

/// A client error librdkafka reported with `code` and `reason`, as kept for
/// connect-failure reasons: an authentication or TLS failure is named
/// first, for example `authentication failed: sasl_ssl://k:9093/bootstrap:
/// SASL authentication error: ... (Authentication)`.
pub(crate) fn client_error(code: RDKafkaErrorCode, reason: &str) -> String {
    let alert = code == RDKafkaErrorCode::BrokerTransportFailure
        && is_tls_alert(&reason.to_ascii_lowercase());
    match misconfiguration(code).or(alert.then_some(TLS_FAILED)) {
        Some(what) => format!("{} ({code:?})", named(what, reason)),
        None => format!("{reason} ({code:?})"),
    }
}

/// A broker failure librdkafka logged (facility `FAIL`), named as
/// [`client_error`] names it: librdkafka's log lines carry no code, so its
/// wording decides ("SASL authentication error", "SSL handshake failed").
pub(crate) fn client_log_line(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let what = if lower.contains("sasl authentication error")
        || lower.contains("sasl authentication failed")
    {
        Some(AUTHENTICATION_FAILED)
    } else if lower.contains("ssl handshake failed") || is_tls_alert(&lower) {
        Some(TLS_FAILED)
    } else {
        None
    };
    match what {
        Some(what) => named(what, line),
        None => line.to_owned(),
    }
}

/// Whether a reason kept by [`client_error`] or [`client_log_line`] names
/// a problem of credentials or certificates, which retrying cannot fix.
pub(crate) fn is_misconfiguration(reason: &str) -> bool {
    reason.starts_with(AUTHENTICATION_FAILED) || reason.starts_with(TLS_FAILED)
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
        C::TopicAuthorizationFailed => Disposition::Record(TransportError::permanent(format!(
            "not authorized to write to this topic (check the ACLs of this client's user): \
             {reason}"
        ))),
        C::InvalidMessageSize
        | C::InvalidRecord
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
    fn credentials_and_certificates_are_named() {
        let auth = client_error(
            RDKafkaErrorCode::Authentication,
            "sasl_ssl://k:9093/bootstrap: SASL authentication error: invalid credentials",
        );
        assert!(
            auth.starts_with("authentication failed: sasl_ssl://"),
            "{auth}"
        );
        assert!(auth.contains("invalid credentials"), "{auth}");
        assert!(is_misconfiguration(&auth));
        let tls = client_error(
            RDKafkaErrorCode::SSL,
            "ssl://k:9093/bootstrap: SSL handshake failed: certificate verify failed",
        );
        assert!(tls.starts_with("TLS handshake failed: "), "{tls}");
        assert!(is_misconfiguration(&tls));
        let refused = client_error(
            RDKafkaErrorCode::BrokerTransportFailure,
            "k:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused",
        );
        assert!(refused.starts_with("k:9092"), "{refused}");
        assert!(!is_misconfiguration(&refused));

        let line = client_log_line(
            "ssl://k:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::\
             certificate verify failed (after 3ms in state SSL_HANDSHAKE)",
        );
        assert!(line.starts_with("TLS handshake failed: ssl://"), "{line}");
        assert!(line.contains("validity dates"), "{line}");
        let line = client_log_line(
            "sasl_ssl://k:9093/bootstrap: SASL authentication error: Authentication failed \
             during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
        );
        assert!(line.starts_with("authentication failed: "), "{line}");
        let line = client_log_line("k:9092/bootstrap: Disconnected (after 5ms in state UP)");
        assert!(!is_misconfiguration(&line), "{line}");

        // A client certificate refused (TLS 1.3: seen on the first read).
        let refused = client_error(
            RDKafkaErrorCode::BrokerTransportFailure,
            "ssl://k:9093/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert \
             bad certificate: SSL alert number 42 (after 0ms in state APIVERSION_QUERY)",
        );
        assert!(refused.starts_with("TLS handshake failed: "), "{refused}");
        assert!(refused.contains("client certificate"), "{refused}");
        // A broker going away mid-read is an outage.
        let eof = client_error(
            RDKafkaErrorCode::BrokerTransportFailure,
            "ssl://k:9093/1: Receive failed: error:0A000126:SSL routines::unexpected eof while \
             reading (after 2ms in state UP)",
        );
        assert!(!is_misconfiguration(&eof), "{eof}");
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
        let Disposition::Record(e) = delivery_failure(RDKafkaErrorCode::TopicAuthorizationFailed)
        else {
            panic!()
        };
        assert!(e.reason.starts_with("not authorized"), "{}", e.reason);
        assert!(
            e.reason.contains("TopicAuthorizationFailed"),
            "{}",
            e.reason
        );
    }
}
