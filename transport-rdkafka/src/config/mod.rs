//! [`RdkafkaConfig`]: the librdkafka properties of the transport, with safe
//! defaults, pass-through of any property, and secrets kept out of `Debug`
//! and logs. The defaults and their reasons are documented on the type.
//!
//! The checks run at `RdkafkaTransport::new` are in [`validate`] (bootstrap
//! server lists in [`bootstrap`]); what counts as a secret, and the
//! redacting `Debug`, in [`secrets`].

mod bootstrap;
mod secrets;
mod tls;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

#[cfg(doc)]
use crate::error::Error;

pub use secrets::is_secret_property;
use validate::parse_bool;
pub(crate) use validate::seconds;

/// Default `linger.ms`.
pub const DEFAULT_LINGER_MS: u32 = 5;

/// Default timeout of the metadata probe that opens each session.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest [`RdkafkaConfig::probe_timeout`] accepted: one hour. A probe
/// that may take longer would leave a connect attempt without an outcome
/// for longer than any service waits for one.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The shortest [`RdkafkaConfig::statistics_interval`] accepted (other
/// than zero, off): 100 ms. librdkafka serializes every broker, topic and
/// partition it knows into each snapshot, which the transport then parses.
pub const MIN_STATISTICS_INTERVAL: Duration = Duration::from_millis(100);

/// The longest [`RdkafkaConfig::statistics_interval`] accepted: one day,
/// librdkafka's own limit.
pub const MAX_STATISTICS_INTERVAL: Duration = Duration::from_secs(86_400);

/// librdkafka's default `message.max.bytes`, which applies when the
/// property is not set.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Default `partitioner`: Kafka's Java client's partitioner for keyed
/// records (murmur2), random for keyless ones.
pub const DEFAULT_PARTITIONER: &str = "murmur2_random";

/// librdkafka's statistics interval property.
const STATISTICS_INTERVAL: &str = "statistics.interval.ms";

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
/// | `client.id` | `robust-producer` | librdkafka's name for the client in broker logs, and the `service` label of the `metrics` feature's series: set it to the service's name |
/// | `statistics.interval.ms` | unset (off) | see [`RdkafkaConfig::statistics_interval`] |
///
/// Every other librdkafka property keeps librdkafka's default and can be set
/// with [`RdkafkaConfig::set`], including `security.protocol`, `sasl.*` and
/// `ssl.*` (TLS and SASL/SCRAM need this crate's `tls` or `tls-vendored`
/// feature, Kerberos its `gssapi` feature).
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
///   [`MAX_PROBE_TIMEOUT`] ([`Error::InvalidSetting`]);
/// * a [`statistics_interval`](RdkafkaConfig::statistics_interval)
///   (`statistics.interval.ms`) other than zero and below
///   [`MIN_STATISTICS_INTERVAL`], or above [`MAX_STATISTICS_INTERVAL`]
///   ([`Error::InvalidProperty`]);
/// * in a build without the `tls` feature, `security.protocol` `SSL` or
///   `SASL_SSL`, a SCRAM `sasl.mechanisms`, or any `ssl.*` property
///   ([`Error::InvalidProperty`] naming the feature).
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
/// is, as a one-second `message.timeout.ms` on the mock cluster shows. The core bounds unacknowledged time instead: a
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
///
/// Credentials and certificates are read when the transport is built. A
/// wrong password or a certificate that does not verify makes every
/// connect attempt fail with `authentication failed: ...` or `TLS handshake
/// failed: ...` (records stay queued); fixing it means building a new
/// transport and producer, and sending through them what the old
/// producer's `close` hands back.
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

    /// Enables librdkafka's statistics, a snapshot every `interval`
    /// (librdkafka's `statistics.interval.ms`, rounded up to whole
    /// milliseconds; zero turns them off, the default). The latest snapshot
    /// is read with
    /// [`TransportMetrics::librdkafka_statistics`](crate::TransportMetrics::librdkafka_statistics)
    /// and, with the `metrics` feature, sets the `robust_producer_librdkafka_*`
    /// gauges. A few seconds to a minute suits most services. Anything
    /// between zero and [`MIN_STATISTICS_INTERVAL`], or above
    /// [`MAX_STATISTICS_INTERVAL`], is refused by
    /// [`RdkafkaTransport::new`](crate::RdkafkaTransport::new), whether set
    /// here or with [`RdkafkaConfig::set`].
    pub fn statistics_interval(self, interval: Duration) -> Self {
        let mut ms = interval.as_millis();
        if !interval.subsec_nanos().is_multiple_of(1_000_000) {
            ms += 1;
        }
        self.set(STATISTICS_INTERVAL, ms.to_string())
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
}
