//! Whether a configuration needs TLS, and the refusal naming the `tls`
//! feature when this build lacks it: librdkafka built without OpenSSL would
//! otherwise refuse `security.protocol=SSL` with "OpenSSL not available at
//! build time", which does not say what to change.

use super::RdkafkaConfig;
use crate::error::Error;

/// What librdkafka needs OpenSSL for, as `(property, why)`, in the order
/// checked: the first match is reported.
fn needs_tls(config: &RdkafkaConfig) -> Option<(String, String)> {
    if let Some(protocol) = config.get("security.protocol") {
        let p = protocol.trim();
        if p.eq_ignore_ascii_case("ssl") || p.eq_ignore_ascii_case("sasl_ssl") {
            return Some((
                "security.protocol".to_owned(),
                format!("`{p}` encrypts with TLS"),
            ));
        }
    }
    for name in ["sasl.mechanisms", "sasl.mechanism"] {
        if let Some(mechanism) = config.get(name)
            && mechanism.trim().to_ascii_uppercase().starts_with("SCRAM-")
        {
            return Some((
                name.to_owned(),
                format!(
                    "`{}` (SASL/SCRAM) is computed with OpenSSL",
                    mechanism.trim()
                ),
            ));
        }
    }
    config
        .properties
        .keys()
        .find(|k| k.to_ascii_lowercase().starts_with("ssl"))
        .map(|k| (k.clone(), "it is a TLS setting".to_owned()))
}

/// Whether this build of the crate can do TLS (its `tls` feature).
pub(super) const TLS_BUILT: bool = cfg!(feature = "tls");

impl RdkafkaConfig {
    /// Refuses a setting that needs TLS when this build lacks it, naming
    /// the feature to enable. Values are not shown (an `ssl.*` value may be
    /// key material).
    pub(super) fn validate_tls_built(&self) -> Result<(), Error> {
        if TLS_BUILT {
            return Ok(());
        }
        match needs_tls(self) {
            None => Ok(()),
            Some((name, why)) => Err(Error::InvalidProperty {
                name,
                reason: format!(
                    "{why}, and this build of robust-producer-rdkafka has no TLS: enable its \
                     `tls` feature (OpenSSL from the system, e.g. Debian's libssl-dev and \
                     pkg-config) or `tls-vendored` (OpenSSL built from source)"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secure() -> [RdkafkaConfig; 4] {
        [
            RdkafkaConfig::new("SSL://k:9093").set("security.protocol", "SSL"),
            RdkafkaConfig::new("k:9093").set("security.protocol", " sasl_ssl "),
            RdkafkaConfig::new("k:9093")
                .set("security.protocol", "SASL_PLAINTEXT")
                .set("sasl.mechanisms", "SCRAM-SHA-512"),
            RdkafkaConfig::new("k:9093").set("ssl.key.password", "hunter2-secret"),
        ]
    }

    #[test]
    fn plaintext_needs_no_tls() {
        for c in [
            RdkafkaConfig::new("k:9092"),
            RdkafkaConfig::new("k:9092")
                .set("security.protocol", "SASL_PLAINTEXT")
                .set("sasl.mechanisms", "PLAIN"),
        ] {
            assert_eq!(needs_tls(&c), None, "{c:?}");
            c.validate().expect("plaintext is always accepted");
        }
        for c in secure() {
            assert!(needs_tls(&c).is_some(), "{c:?}");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_settings_are_accepted_with_the_feature() {
        for c in secure() {
            c.validate().expect("TLS is built in");
        }
        crate::RdkafkaTransport::new(
            RdkafkaConfig::new("SASL_SSL://127.0.0.1:1")
                .set("security.protocol", "SASL_SSL")
                .set("sasl.mechanisms", "SCRAM-SHA-512")
                .set("sasl.username", "u")
                .set("sasl.password", "p"),
        )
        .expect("librdkafka accepts SASL_SSL with SCRAM");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_settings_name_the_missing_feature() {
        for c in secure() {
            let e = c.validate().expect_err("no TLS in this build").to_string();
            assert!(e.contains("`tls` feature"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
