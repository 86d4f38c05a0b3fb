//! [`Error`]: why an [`RdkafkaTransport`](crate::RdkafkaTransport) could not
//! be created. Messages never contain the value of a secret property.

use rdkafka::error::KafkaError;

use crate::config::is_secret_property;

/// Why the transport could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// librdkafka rejected a property (unknown name or invalid value). The
    /// value is left out when the property is secret.
    #[error("invalid librdkafka property `{name}`: {reason}")]
    InvalidProperty {
        /// The property's name.
        name: String,
        /// What librdkafka said, or a redacted summary for a secret.
        reason: String,
    },
    /// A librdkafka property set to a value that would break the delivery
    /// guarantee (`acks` other than `all`, `enable.idempotence` off) or
    /// that the transport cannot work with (`transactional.id`). The
    /// message says why and what to do instead; the value is left out when
    /// the property is secret.
    #[error("librdkafka property `{name}` = {value:?} refused: {reason}")]
    Refused {
        /// The property's name.
        name: String,
        /// Its value as configured (`<redacted>` for a secret property,
        /// `<unset>` when the refusal is about its absence).
        value: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A setting of the transport itself (not a librdkafka property) that
    /// cannot work, for example a zero
    /// [`probe_timeout`](crate::RdkafkaConfig::probe_timeout).
    #[error("invalid transport setting `{name}`: {reason}")]
    InvalidSetting {
        /// The setting's name, as the method of
        /// [`RdkafkaConfig`](crate::RdkafkaConfig) that sets it.
        name: &'static str,
        /// Why the value cannot work, with the value.
        reason: String,
    },
    /// librdkafka could not create the producer (for example a TLS key that
    /// does not load, or a feature this build lacks).
    #[error("cannot create the librdkafka producer: {reason}")]
    Create {
        /// What librdkafka said.
        reason: String,
    },
    /// A thread the transport needs could not be started.
    #[error("cannot start the transport's {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Converts a librdkafka error from creating a producer, leaving out
    /// secret values.
    pub(crate) fn from_create(e: KafkaError) -> Self {
        match e {
            KafkaError::ClientConfig(_, desc, name, value) => {
                let reason = if is_secret_property(&name) {
                    "rejected by librdkafka (value redacted)".to_owned()
                } else {
                    format!("{desc} (value {value:?})")
                };
                Error::InvalidProperty { name, reason }
            }
            KafkaError::ClientCreation(reason) => Error::Create { reason },
            other => Error::Create {
                reason: other.to_string(),
            },
        }
    }
}
