//! Secrets in librdkafka properties: which property values are secret
//! ([`is_secret_property`]), and the `Debug` of [`RdkafkaConfig`] that
//! shows them as [`REDACTED`].

use std::collections::BTreeMap;
use std::fmt;

use super::RdkafkaConfig;

/// Shown in place of a secret value.
pub(super) const REDACTED: &str = "<redacted>";

/// Words that make a property's value secret. Matching is on the lowercase
/// property name, so over-redaction (for example `ssl.key.location`) is
/// possible and harmless.
const SECRET_WORDS: &[&str] = &[
    "password",
    "secret",
    "key",
    "token",
    "credential",
    "jaas",
    "oauthbearer.config",
];

/// Whether the value of librdkafka property `name` is treated as a secret:
/// never shown in `Debug`, logs or error messages.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// Lists every property, with secret values redacted.
impl fmt::Debug for RdkafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Props<'a>(&'a BTreeMap<String, String>);
        impl fmt::Debug for Props<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, v)| {
                        let shown = if is_secret_property(k) {
                            REDACTED
                        } else {
                            v.as_str()
                        };
                        (k, shown)
                    }))
                    .finish()
            }
        }
        f.debug_struct("RdkafkaConfig")
            .field("properties", &Props(&self.properties))
            .field("probe_timeout", &self.probe_timeout)
            .field("probe_topic", &self.probe_topic)
            .field("weaker_delivery", &self.weaker_delivery)
            .finish()
    }
}
