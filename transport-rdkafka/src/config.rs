//! [`RdkafkaConfig`]: the librdkafka properties of the transport, with safe
//! defaults, pass-through of any property, and secrets kept out of `Debug`
//! and logs. The defaults and their reasons are documented on the type.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::error::Error;

/// Default `linger.ms`.
pub const DEFAULT_LINGER_MS: u32 = 5;

/// Default timeout of the metadata probe that opens each session.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest [`RdkafkaConfig::probe_timeout`] accepted: one hour. A probe
/// that may take longer would leave a connect attempt without an outcome
/// for longer than any service waits for one.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(3600);

/// librdkafka's default `message.max.bytes`, which applies when the
/// property is not set.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Default `partitioner`: Kafka's Java client's partitioner for keyed
/// records (murmur2), random for keyless ones.
pub const DEFAULT_PARTITIONER: &str = "murmur2_random";

/// The listener prefixes librdkafka accepts before a bootstrap server
/// (`PROTOCOL://host:port`), which must match `security.protocol`.
const LISTENER_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// The names of librdkafka's `acks` property.
const ACKS: [&str; 2] = ["acks", "request.required.acks"];

/// The names of librdkafka's bootstrap servers property.
const BOOTSTRAP: [&str; 2] = ["bootstrap.servers", "metadata.broker.list"];

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
/// | `topic.metadata.propagation.max.ms` | `10000` | a record for a topic the cluster does not have fails as `UnknownTopic` (dead-lettered) after 10 s; it must stay below the core's `ack_timeout` (checked when the producer starts), or the session would be given up as hung first, again and again |
/// | `socket.timeout.ms` | `5000` | a request unanswered for 5 s drops that broker's connection, and librdkafka then asks another broker for the partition leaders at once. A leader cut from its peers but still reachable by clients holds produce requests until its own timeout (30 s) and answers metadata as if it still led: librdkafka's default (60 s) would keep the client on it long after a new leader is elected, about 10 s into the cut. Slower answers only cost a reconnect and an idempotent resend |
/// | `topic.metadata.refresh.interval.ms` | `10000` | leaders and brokers are re-read every 10 s rather than 5 min: a client that started while one broker answered (the cluster then lists only that one) learns the others within 10 s of their return |
/// | `partitioner` | `murmur2_random` | a keyed record goes to the partition Kafka's Java client (and kafka-python) would pick: `(murmur2(key) & 0x7fffffff) % partitions`; keyless records go to a random partition. librdkafka's own default (`consistent_random`, CRC32) would put a key elsewhere than a Java service producing the same key |
/// | `client.id` | `robust-producer` | |
///
/// Every other librdkafka property keeps librdkafka's default and can be set
/// with [`RdkafkaConfig::set`], including `security.protocol`, `sasl.*` and
/// `ssl.*` (TLS needs this crate's `ssl` or `ssl-vendored` feature, Kerberos
/// its `gssapi` feature).
///
/// # Refused at [`RdkafkaTransport::new`](crate::RdkafkaTransport::new)
///
/// Settings that would break the delivery guarantee, or that cannot work,
/// are refused with an [`Error`] that names the property and says what to
/// do instead:
///
/// * `transactional.id`, whatever its value: the transport does not use
///   transactions, and librdkafka would fail every record
///   ([`Error::Refused`]);
/// * `acks` (alias `request.required.acks`) other than `all` / `-1`, and
///   `enable.idempotence` off or unset ([`Error::Refused`]), unless
///   [`RdkafkaConfig::allow_weaker_delivery`] was called;
/// * `bootstrap.servers` (alias `metadata.broker.list`) that is empty, or
///   with an entry that is not `host:port` (port 1 to 65535, IPv6 addresses
///   in brackets as in `[::1]:9092`), optionally after librdkafka's listener
///   prefix `PLAINTEXT://`, `SSL://`, `SASL_PLAINTEXT://` or `SASL_SSL://`
///   matching `security.protocol`; other schemes such as `http://` are
///   refused ([`Error::InvalidProperty`]);
/// * a [`probe_timeout`](RdkafkaConfig::probe_timeout) of zero or above
///   [`MAX_PROBE_TIMEOUT`] ([`Error::InvalidSetting`]).
///
/// # `message.timeout.ms` and the core
///
/// librdkafka fails a record that was not acknowledged within
/// `message.timeout.ms` (300 s by default), which silently turns a long
/// outage into loss for a producer that trusts it. Here the core owns every
/// retry, so the default is `0`, infinite: librdkafka keeps retrying a
/// handed-off record, in order, for as long as its session lives. A session
/// does not live forever when something is wrong: the transport reports a
/// lost link on `AllBrokersDown` when no broker then answers within the
/// probe timeout, and the core's `ack_timeout` (30 s by
/// default) declares a hung link when nothing is reported for that long and
/// the transport cannot say why (see [`TransportEvent::Stalled`](robust_producer::TransportEvent::Stalled)).
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
/// `message.timeout.ms`. The core bounds unacknowledged time instead: a
/// session with no report for its `ack_timeout`, or with one record
/// unacknowledged for `LOST_ACK_FACTOR` times that while others are
/// acknowledged, is given up and everything unacknowledged is resent, in
/// order.
///
/// # `message.max.bytes` and the topic's limit
///
/// A record over `message.max.bytes` (librdkafka's default 1 000 000) is
/// refused at `send`: the transport states the limit to the core. A topic
/// whose `max.message.bytes` is lower makes the broker refuse whole produce
/// batches with `MESSAGE_TOO_LARGE`, and librdkafka fails every record of
/// the batch: the transport reports each as
/// [`ErrorClass::Isolate`](robust_producer::ErrorClass::Isolate) and ends the
/// session, the core resends them one at a time, and only a record refused
/// alone is dead-lettered. Setting `message.max.bytes` to the topic's limit
/// avoids those resends.
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
    weaker_delivery: bool,
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
            ("topic.metadata.propagation.max.ms", "10000"),
            ("socket.timeout.ms", "5000"),
            ("topic.metadata.refresh.interval.ms", "10000"),
            ("partitioner", DEFAULT_PARTITIONER),
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
            weaker_delivery: false,
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
    /// transport's reason (the producer refuses to start otherwise: the
    /// transport states it in its `Transport::limits`).
    /// Default [`DEFAULT_PROBE_TIMEOUT`]; zero and anything above
    /// [`MAX_PROBE_TIMEOUT`] are refused by
    /// [`RdkafkaTransport::new`](crate::RdkafkaTransport::new).
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

    /// Accepts delivery weaker than the default guarantee: `acks` `0` or
    /// `1` and `enable.idempotence=false` are then passed to librdkafka
    /// instead of refused (a `transactional.id` stays refused).
    ///
    /// What changes: `Delivered` then means what librdkafka reports for
    /// that `acks` level: with `acks=1` the partition leader stored the
    /// record (it is lost if the leader fails before a replica copied it);
    /// with `acks=0` librdkafka sent it and the broker was not asked to
    /// answer (the acknowledgement carries no offset, and a record can be
    /// lost without any error). Without idempotence, librdkafka's own
    /// retries can store a record twice and, with more than one request in
    /// flight per broker, out of order; the core's resends after a lost
    /// session can duplicate as before.
    pub fn allow_weaker_delivery(mut self) -> Self {
        self.weaker_delivery = true;
        self
    }

    /// Whether [`RdkafkaConfig::allow_weaker_delivery`] was called.
    pub fn weaker_delivery_allowed(&self) -> bool {
        self.weaker_delivery
    }

    pub(crate) fn probe_timeout_value(&self) -> Duration {
        self.probe_timeout
    }

    /// librdkafka's largest record (`message.max.bytes`, as librdkafka
    /// counts it: key, value, headers and the record's framing), or
    /// librdkafka's default when it is not set.
    pub(crate) fn message_max_bytes(&self) -> usize {
        self.get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
    }

    /// How long librdkafka waits for an unknown topic to appear in the
    /// metadata before it fails its records (`topic.metadata.propagation.max.ms`,
    /// librdkafka's default 30 s when unset or not a number).
    pub(crate) fn unknown_topic_after(&self) -> Duration {
        let ms = self
            .get("topic.metadata.propagation.max.ms")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(30_000);
        Duration::from_millis(ms)
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
            .and_then(parse_bool)
            .unwrap_or(false)
    }

    /// Refuses what would break the delivery guarantee or cannot work; see
    /// the type's docs, "Refused at `RdkafkaTransport::new`". librdkafka
    /// validates the rest when the producer is created.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let Some(value) = self.get("transactional.id") {
            return Err(refused(
                "transactional.id",
                value,
                "this transport does not use transactions (it never begins one), so librdkafka \
                 would fail every record; remove it. Idempotence, on by default, already keeps \
                 librdkafka's own retries free of duplicates and reordering",
            ));
        }
        self.validate_probe_timeout()?;
        let mut any_bootstrap = false;
        for name in BOOTSTRAP {
            if let Some(servers) = self.get(name) {
                any_bootstrap = true;
                let protocol = self.get("security.protocol").unwrap_or("plaintext");
                check_bootstrap(servers, protocol).map_err(|reason| Error::InvalidProperty {
                    name: name.to_owned(),
                    reason,
                })?;
            }
        }
        if !any_bootstrap {
            return Err(Error::InvalidProperty {
                name: "bootstrap.servers".to_owned(),
                reason: "not set: list the cluster's brokers as host:port separated by commas, \
                         for example `kafka-1:9092,kafka-2:9092`"
                    .to_owned(),
            });
        }
        if self.weaker_delivery {
            return Ok(());
        }
        for name in ACKS {
            if let Some(value) = self.get(name)
                && !acks_all(value)
            {
                return Err(refused(
                    name,
                    value,
                    "`Delivered` would no longer mean stored by every in-sync replica (with acks=1 \
                     only the leader stored the record, with acks=0 the broker was not even asked \
                     to answer), and idempotence needs acks=all; remove it (the default is `all`), \
                     or call RdkafkaConfig::allow_weaker_delivery() to accept weaker delivery",
                ));
            }
        }
        match self.get("enable.idempotence") {
            None => Err(refused(
                "enable.idempotence",
                "<unset>",
                "librdkafka's default is off, and without idempotence librdkafka's own retries \
                 can duplicate and reorder records; set it to `true` (RdkafkaConfig::new does), \
                 or call RdkafkaConfig::allow_weaker_delivery() to accept that",
            )),
            Some(value) if parse_bool(value) == Some(false) => Err(refused(
                "enable.idempotence",
                value,
                "without idempotence librdkafka's own retries can duplicate and reorder \
                 records; remove it (the default is `true`), or call \
                 RdkafkaConfig::allow_weaker_delivery() to accept that",
            )),
            // `true`, or a value librdkafka refuses when the producer is built.
            Some(_) => Ok(()),
        }
    }

    fn validate_probe_timeout(&self) -> Result<(), Error> {
        let t = self.probe_timeout;
        if t.is_zero() {
            return Err(Error::InvalidSetting {
                name: "probe_timeout",
                reason: "is zero (0s): every connect attempt would fail before librdkafka could \
                         reach a broker; use a few seconds (the default is 5s)"
                    .to_owned(),
            });
        }
        if t > MAX_PROBE_TIMEOUT {
            return Err(Error::InvalidSetting {
                name: "probe_timeout",
                reason: format!(
                    "{} is above the maximum of {}: a connect attempt would stay without an \
                     outcome for that long; use a few seconds (the default is 5s)",
                    seconds(t),
                    seconds(MAX_PROBE_TIMEOUT)
                ),
            });
        }
        Ok(())
    }
}

/// `d` in seconds for messages, for example `1.5s` (whole for long ones).
pub(crate) fn seconds(d: Duration) -> String {
    if d.as_secs() >= 60 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A [`Error::Refused`] naming `name`, its value (unless secret) and why.
fn refused(name: &str, value: &str, reason: &str) -> Error {
    let value = if is_secret_property(name) {
        REDACTED
    } else {
        value
    };
    Error::Refused {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A librdkafka boolean, as librdkafka parses it; `None` when it is not one.
fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim();
    if ["true", "t", "1"].iter().any(|t| v.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if ["false", "f", "0"]
        .iter()
        .any(|f| v.eq_ignore_ascii_case(f))
    {
        Some(false)
    } else {
        None
    }
}

/// Whether an `acks` value means every in-sync replica.
fn acks_all(value: &str) -> bool {
    let v = value.trim();
    v.eq_ignore_ascii_case("all") || v == "-1"
}

/// Checks a bootstrap server list; the error says what is wrong and how to
/// write it.
fn check_bootstrap(servers: &str, security_protocol: &str) -> Result<(), String> {
    let entries: Vec<&str> = servers
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(
            "is empty: list the cluster's brokers as host:port separated by commas, \
                    for example `kafka-1:9092,kafka-2:9092`"
                .to_owned(),
        );
    }
    for entry in entries {
        if entry.contains('@') {
            // Possibly `user:password@host`: the entry is not repeated.
            return Err(
                "has an entry with `@`: entries are host:port only; credentials go in \
                        sasl.username and sasl.password"
                    .to_owned(),
            );
        }
        check_server(entry, security_protocol).map_err(|why| {
            format!(
                "entry `{entry}` {why}; write host:port separated by commas, for example \
                 `kafka-1:9092,[::1]:9092`"
            )
        })?;
    }
    Ok(())
}

/// Checks one `[PROTOCOL://]host:port` entry.
fn check_server(entry: &str, security_protocol: &str) -> Result<(), String> {
    if entry.chars().any(char::is_whitespace) {
        return Err("contains whitespace".to_owned());
    }
    let address = match entry.split_once("://") {
        None => entry,
        Some((scheme, rest)) => {
            let known = LISTENER_PROTOCOLS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(scheme));
            if !known {
                return Err(format!(
                    "has the scheme `{scheme}://`, which is not a Kafka listener protocol \
                     (librdkafka accepts only PLAINTEXT://, SSL://, SASL_PLAINTEXT:// and \
                     SASL_SSL://, matching security.protocol)"
                ));
            }
            if !scheme.eq_ignore_ascii_case(security_protocol.trim()) {
                return Err(format!(
                    "has the listener prefix `{scheme}://` but security.protocol is \
                     `{security_protocol}`: librdkafka ignores a broker whose prefix does not \
                     match; drop the prefix or set security.protocol"
                ));
            }
            rest
        }
    };
    if address.contains('/') {
        return Err("has a path (`/`)".to_owned());
    }
    let port = if let Some(inside) = address.strip_prefix('[') {
        let Some((v6, after)) = inside.split_once(']') else {
            return Err("has `[` without `]`".to_owned());
        };
        let addr = v6.split_once('%').map_or(v6, |(a, _zone)| a);
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("has `[{v6}]`, which is not an IPv6 address"));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err("has no port after the IPv6 address".to_owned());
        };
        port
    } else {
        let Some((host, port)) = address.rsplit_once(':') else {
            return Err("has no port".to_owned());
        };
        if host.contains(':') {
            return Err(
                "looks like an IPv6 address without brackets (write `[::1]:9092`)".to_owned(),
            );
        }
        if host.is_empty() {
            return Err("has no host".to_owned());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!(
                "has the host `{host}`, which is not a host name or address"
            ));
        }
        port
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "has the port `{port}`, not a number from 1 to 65535"
        )),
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
            .field("weaker_delivery", &self.weaker_delivery)
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
        assert_eq!(c.get("socket.timeout.ms"), Some("5000"));
        assert_eq!(c.get("topic.metadata.refresh.interval.ms"), Some("10000"));
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

    /// The refusal of `config`: its message, after checking that it names
    /// `name` and that the error is the expected variant.
    fn refusal(config: &RdkafkaConfig, name: &str) -> String {
        let err = match config.validate() {
            Ok(()) => panic!("accepted, {name} should be refused: {config:?}"),
            Err(e) => e,
        };
        let message = err.to_string();
        assert!(message.contains(name), "does not name {name}: {message}");
        match (&err, name) {
            (Error::InvalidSetting { name: n, .. }, "probe_timeout") => assert_eq!(*n, name),
            (Error::InvalidProperty { name: n, .. } | Error::Refused { name: n, .. }, _) => {
                assert_eq!(n, name);
            }
            _ => panic!("unexpected variant for {name}: {err:?}"),
        }
        message
    }

    #[test]
    fn defaults_pass_validation() {
        RdkafkaConfig::new("k:9092").validate().expect("defaults");
        assert_eq!(
            RdkafkaConfig::new("k:9092").get("partitioner"),
            Some("murmur2_random")
        );
    }

    #[test]
    fn transactional_id_is_refused_even_with_weaker_delivery() {
        for config in [
            RdkafkaConfig::new("k:9092").set("transactional.id", "tx-1"),
            RdkafkaConfig::new("k:9092").set("transactional.id", ""),
            RdkafkaConfig::new("k:9092")
                .allow_weaker_delivery()
                .set("transactional.id", "tx-1"),
        ] {
            let m = refusal(&config, "transactional.id");
            assert!(m.contains("transactions") && m.contains("remove it"), "{m}");
        }
        assert!(matches!(
            RdkafkaConfig::new("k:9092")
                .set("transactional.id", "x")
                .validate(),
            Err(Error::Refused { .. })
        ));
    }

    #[test]
    fn acks_other_than_all_is_refused_unless_weaker_delivery_is_allowed() {
        for name in ["acks", "request.required.acks"] {
            for value in ["0", "1", " 1 ", "2"] {
                let config = RdkafkaConfig::new("k:9092").set(name, value);
                let m = refusal(&config, name);
                assert!(m.contains("allow_weaker_delivery"), "{m}");
                assert!(matches!(config.validate(), Err(Error::Refused { .. })));
            }
            for value in ["all", "ALL", "-1"] {
                RdkafkaConfig::new("k:9092")
                    .set(name, value)
                    .validate()
                    .expect(value);
            }
        }
        for value in ["0", "1"] {
            RdkafkaConfig::new("k:9092")
                .allow_weaker_delivery()
                .set("acks", value)
                .set("enable.idempotence", "false")
                .validate()
                .expect("opted in");
        }
    }

    #[test]
    fn idempotence_off_or_unset_is_refused_unless_weaker_delivery_is_allowed() {
        for value in ["false", "FALSE", "0", "f"] {
            let config = RdkafkaConfig::new("k:9092").set("enable.idempotence", value);
            let m = refusal(&config, "enable.idempotence");
            assert!(
                m.contains("duplicate") && m.contains("allow_weaker_delivery"),
                "{m}"
            );
            assert!(!config.idempotent());
        }
        let unset = RdkafkaConfig::new("k:9092").unset("enable.idempotence");
        let m = refusal(&unset, "enable.idempotence");
        assert!(m.contains("default is off"), "{m}");
        for value in ["true", "1", "t"] {
            let config = RdkafkaConfig::new("k:9092").set("enable.idempotence", value);
            config.validate().expect(value);
            assert!(config.idempotent());
        }
        let weaker = RdkafkaConfig::new("k:9092")
            .set("enable.idempotence", "false")
            .allow_weaker_delivery();
        assert!(weaker.weaker_delivery_allowed());
        weaker.validate().expect("opted in");
    }

    #[test]
    fn probe_timeout_zero_or_absurd_is_refused() {
        let m = refusal(
            &RdkafkaConfig::new("k:9092").probe_timeout(Duration::ZERO),
            "probe_timeout",
        );
        assert!(m.contains("zero") && m.contains("0s"), "{m}");
        for t in [
            Duration::MAX,
            MAX_PROBE_TIMEOUT + Duration::from_nanos(1),
            Duration::from_secs(u64::MAX / 2),
        ] {
            let m = refusal(
                &RdkafkaConfig::new("k:9092").probe_timeout(t),
                "probe_timeout",
            );
            assert!(m.contains("maximum of 3600s"), "{m}");
        }
        for t in [Duration::from_millis(1), MAX_PROBE_TIMEOUT] {
            RdkafkaConfig::new("k:9092")
                .probe_timeout(t)
                .validate()
                .expect("in range");
        }
    }

    #[test]
    fn bootstrap_servers_must_be_host_port() {
        for bad in [
            "",
            "   ",
            ",,",
            " , ",
            "not a host",
            "kafka",
            "kafka:",
            "kafka:0",
            "kafka:65536",
            "kafka:port",
            ":9092",
            "::1:9092",
            "[::1]",
            "[::1]9092",
            "[nope]:9092",
            "kafka:9092/path",
            "kafka!:9092",
            "kafka-1:9092,kafka 2:9092",
            "SSL://kafka:9092",
        ] {
            let m = refusal(&RdkafkaConfig::new(bad), "bootstrap.servers");
            assert!(m.contains("host:port"), "{bad:?}: {m}");
        }
        let m = refusal(
            &RdkafkaConfig::new("http://kafka:9092"),
            "bootstrap.servers",
        );
        assert!(m.contains("`http://`"), "{m}");
        let m = refusal(&RdkafkaConfig::new("SSL://kafka:9092"), "bootstrap.servers");
        assert!(m.contains("security.protocol"), "{m}");
        let m = refusal(
            &RdkafkaConfig::new("user:S3CRET@kafka:9092"),
            "bootstrap.servers",
        );
        assert!(!m.contains("S3CRET"), "{m}");
        let m = refusal(
            &RdkafkaConfig::new("k:9092")
                .unset("bootstrap.servers")
                .set("metadata.broker.list", "http://k:9092"),
            "metadata.broker.list",
        );
        assert!(m.contains("`http://`"), "{m}");
        refusal(
            &RdkafkaConfig::new("k:9092").unset("bootstrap.servers"),
            "bootstrap.servers",
        );
        for good in [
            "kafka:9092",
            "kafka-1:9092, kafka-2:9093,",
            "127.0.0.1:1",
            "[::1]:9092",
            "[fe80::1%eth0]:9092",
            "my_broker.example.com:65535",
            "PLAINTEXT://kafka:9092",
            "plaintext://kafka:9092",
        ] {
            RdkafkaConfig::new(good).validate().expect(good);
        }
        RdkafkaConfig::new("SASL_SSL://kafka:9093,kafka:9094")
            .set("security.protocol", "sasl_ssl")
            .validate()
            .expect("prefix matches security.protocol");
    }

    #[test]
    fn limits_follow_message_max_bytes() {
        assert_eq!(
            RdkafkaConfig::new("k:9092").message_max_bytes(),
            DEFAULT_MESSAGE_MAX_BYTES
        );
        assert_eq!(
            RdkafkaConfig::new("k:9092")
                .set("message.max.bytes", " 20000 ")
                .message_max_bytes(),
            20_000
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
