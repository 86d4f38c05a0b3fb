//! [`RdkafkaConfig`]: the librdkafka properties of the transport, with safe
//! defaults, pass-through of any property, and secrets kept out of `Debug`
//! and logs. The defaults and their reasons are documented on the type.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;

/// Default `linger.ms`.
pub const DEFAULT_LINGER_MS: u32 = 5;

/// Default timeout of the metadata probe that opens each session.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Shown in place of a secret value.
pub(crate) const REDACTED: &str = "<redacted>";

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

/// Whether `name = value` would let librdkafka give up on records by itself.
fn is_overridden(name: &str, value: &str) -> bool {
    match name {
        "message.timeout.ms" | "delivery.timeout.ms" => value.trim() != "0",
        "message.send.max.retries" | "retries" => value
            .trim()
            .parse::<i64>()
            .is_ok_and(|n| n < i64::from(i32::MAX)),
        _ => false,
    }
}

/// Configuration of an [`RdkafkaTransport`](crate::RdkafkaTransport): the
/// librdkafka properties plus the transport's own settings.
///
/// # Defaults
///
/// | property | value | why |
/// |---|---|---|
/// | `enable.idempotence` | `true` | no duplicates from librdkafka's own retries, and per-partition order across them |
/// | `acks` | `all` | Delivered means stored by every in-sync replica |
/// | `linger.ms` | `5` | batches fill at high rates while a lone record waits at most 5 ms |
/// | `message.timeout.ms` | `0` (infinite, always) | librdkafka never expires a record on its own; see below |
/// | `reconnect.backoff.ms` / `reconnect.backoff.max.ms` | `100` / `1000` | once the broker is back, librdkafka's own reconnect finds it within a second (its default cap is 10 s); librdkafka jitters these |
/// | `client.id` | `robust-producer` | |
///
/// Every other librdkafka property keeps librdkafka's default and can be set
/// with [`RdkafkaConfig::set`], including `security.protocol`, `sasl.*` and
/// `ssl.*` (TLS needs this crate's `ssl` or `ssl-vendored` feature, Kerberos
/// its `gssapi` feature).
///
/// # `message.timeout.ms` and the core
///
/// librdkafka fails a record that was not acknowledged within
/// `message.timeout.ms` (300 s by default), which silently turns a long
/// outage into loss for a producer that trusts it. Here the core owns every
/// retry, so the default is `0`, infinite: librdkafka keeps retrying a
/// handed-off record, in order, for as long as its session lives. A session
/// does not live forever when something is wrong: the transport reports a
/// lost link on `AllBrokersDown`, and the core's `ack_timeout` (30 s by
/// default) declares a hung link when nothing is acknowledged for that long.
/// Either way the core reconnects, the transport discards the old
/// session's queue, and the core resends every unacknowledged record, in
/// order, on a fresh session.
///
/// A finite value is not passed to librdkafka: it is replaced by `0`
/// (logged at `warn` when the transport is created, and listed by
/// [`RdkafkaConfig::overridden`]); so is a limit on
/// `message.send.max.retries` (alias `retries`) below librdkafka's default of
/// 2147483647. Both let librdkafka give up on a record by itself, and when it
/// does it keeps sending the records behind it: librdkafka expires the head of
/// a partition's queue and, in the same pass of its broker thread, can send
/// the next records, which the broker then stores ahead of the expired
/// record's resend. No record is lost (the core resends it) but per-key order
/// is: the mock-cluster tests caught exactly this with a one-second
/// `message.timeout.ms`. To bound how long a record may stay unacknowledged,
/// use the core's `ack_timeout`: it ends the whole session and the core
/// resends everything unacknowledged, in order.
///
/// # `message.max.bytes`: match the broker's limit
///
/// Set it to the broker's `message.max.bytes` (or the topic's
/// `max.message.bytes`) when that is lower than librdkafka's default of
/// 1 000 000. librdkafka then refuses an oversized record at hand-off, alone,
/// and the core dead-letters just that record. Otherwise the broker refuses
/// the whole produce batch that contains it with `MESSAGE_TOO_LARGE`, and
/// librdkafka (unlike the Java client, which splits the batch) fails every
/// record of that batch: all of them are dead-lettered with that reason, none
/// is lost, but records that were not too large are among them.
///
/// # Secrets
///
/// Values of properties whose name mentions a password, secret, key, token,
/// credential or JAAS/OAuth configuration (see [`is_secret_property`]) are
/// shown as `<redacted>` by `Debug`, and never logged. Errors about an invalid
/// secret property name the property but not its value.
#[derive(Clone)]
#[must_use]
pub struct RdkafkaConfig {
    properties: BTreeMap<String, String>,
    probe_timeout: Duration,
    probe_topic: Option<String>,
}

impl RdkafkaConfig {
    /// The safe defaults, for a cluster reached through `bootstrap_servers`
    /// (`host:port[,host:port...]`).
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        let mut properties = BTreeMap::new();
        for (k, v) in [
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "0"),
            ("reconnect.backoff.ms", "100"),
            ("reconnect.backoff.max.ms", "1000"),
            ("client.id", "robust-producer"),
        ] {
            properties.insert(k.to_owned(), v.to_owned());
        }
        properties.insert("linger.ms".to_owned(), DEFAULT_LINGER_MS.to_string());
        properties.insert("bootstrap.servers".to_owned(), bootstrap_servers.into());
        Self {
            properties,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            probe_topic: None,
        }
    }

    /// Sets any librdkafka property, overriding a default. Invalid names or
    /// values are reported by [`RdkafkaTransport::new`](crate::RdkafkaTransport::new).
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// Removes a property, so that librdkafka's own default applies.
    pub fn unset(mut self, name: &str) -> Self {
        self.properties.remove(name);
        self
    }

    /// The value of a property, if set. Secret values are returned too: this
    /// is for the application's own use, never for logs.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }

    /// How long the metadata probe that opens a session may take. Keep it
    /// below the core's `connect_timeout` so that a failure carries the
    /// transport's reason. Default [`DEFAULT_PROBE_TIMEOUT`].
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Probes the metadata of this topic only (which also checks that it
    /// exists or can be auto-created) instead of the whole cluster's. Useful
    /// on clusters with very many topics.
    pub fn probe_topic(mut self, topic: impl Into<String>) -> Self {
        self.probe_topic = Some(topic.into());
        self
    }

    pub(crate) fn probe_timeout_value(&self) -> Duration {
        self.probe_timeout
    }

    pub(crate) fn probe_topic_value(&self) -> Option<&str> {
        self.probe_topic.as_deref()
    }

    /// The librdkafka client configuration, with the overrides of
    /// [`RdkafkaConfig::overridden`] applied.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            if !is_overridden(k, v) {
                c.set(k, v);
            }
        }
        c.set("message.timeout.ms", "0");
        c
    }

    /// The properties set to values the transport does not pass to
    /// librdkafka, with those values: a finite `message.timeout.ms` (alias
    /// `delivery.timeout.ms`), which becomes `0`, and a limit on
    /// `message.send.max.retries` (alias `retries`), which is dropped so that
    /// librdkafka's default (2147483647) applies. See the type's docs for why.
    pub fn overridden(&self) -> Vec<(&str, &str)> {
        self.properties
            .iter()
            .filter(|(k, v)| is_overridden(k, v))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Whether idempotence is on (it is unless the application turned it off).
    pub(crate) fn idempotent(&self) -> bool {
        self.get("enable.idempotence")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
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
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let c = RdkafkaConfig::new("k:9092");
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("message.timeout.ms"), Some("0"));
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("bootstrap.servers"), Some("k:9092"));
        assert!(c.idempotent());
        assert!(!c.clone().set("enable.idempotence", "false").idempotent());
    }

    #[test]
    fn expiry_and_retry_limits_are_overridden() {
        let c = RdkafkaConfig::new("k:9092")
            .set("message.timeout.ms", "5000")
            .set("delivery.timeout.ms", "300000")
            .set("retries", "3")
            .set("linger.ms", "20");
        let mut over = c.overridden();
        over.sort_unstable();
        assert_eq!(
            over,
            [
                ("delivery.timeout.ms", "300000"),
                ("message.timeout.ms", "5000"),
                ("retries", "3")
            ]
        );
        let cc = c.client_config();
        assert_eq!(cc.get("message.timeout.ms"), Some("0"));
        assert_eq!(cc.get("delivery.timeout.ms"), None);
        assert_eq!(cc.get("retries"), None);
        assert_eq!(cc.get("linger.ms"), Some("20"));
        assert!(RdkafkaConfig::new("k:9092").overridden().is_empty());
        assert!(
            RdkafkaConfig::new("k:9092")
                .set("retries", "2147483647")
                .overridden()
                .is_empty()
        );
    }

    #[test]
    fn secrets_are_recognised() {
        for name in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl.keystore.password",
            "ssl.truststore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "SASL.PASSWORD",
        ] {
            assert!(is_secret_property(name), "{name}");
        }
        for name in [
            "bootstrap.servers",
            "sasl.username",
            "security.protocol",
            "acks",
        ] {
            assert!(!is_secret_property(name), "{name}");
        }
    }
}
