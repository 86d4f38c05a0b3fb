//! Producer configuration: [`Config`], its [`ConfigBuilder`], and the policy
//! types it holds. Every value is validated by [`ConfigBuilder::build`]; an
//! invalid one is a [`ConfigError`] naming the field and the reason.
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `max_queued_records` | 100 000 | records held (queued + in flight) before the overflow policy applies |
//! | `max_queued_bytes` | 64 MiB | bytes held (see [`Record::size`](crate::Record::size)) before the overflow policy applies |
//! | `max_record_bytes` | 1 000 000 | larger records (by [`Record::size`](crate::Record::size)) are refused at once with [`EnqueueError::RecordTooLarge`](crate::EnqueueError::RecordTooLarge); so are records over the transport's own limit (see [`TransportLimits`](crate::TransportLimits)) |
//! | `overflow` | `Block { timeout: 1 s }` | what `send` does when the queue is full |
//! | `max_in_flight` | 10 000 | records handed to the transport and not yet acknowledged |
//! | `connect_timeout` | 10 s | a connect attempt with no outcome by then counts as failed |
//! | `ack_timeout` | 30 s | records in flight and no report at all (acknowledgement or failure) for this long: the session is hung, reconnect and resend. A session that is receiving acknowledgements is kept however old its oldest record in flight; only one record unacknowledged for 10 times this (`LOST_ACK_FACTOR`) while others are acknowledged ends it (a lost acknowledgement) |
//! | `backoff` | 100 ms × 2, cap 2 s, jitter 0.5 | delays between reconnects and between retries of a failed record |
//! | `health` | see [`HealthConfig`] | thresholds of the health verdict |
//! | `service_name` | `unknown-service` | the `producer` field of event envelopes |
//! | `seed` | random | seed of the backoff jitter (fix it for deterministic tests) |
//!
//! # Durations
//!
//! Every duration is accepted up to `Duration::MAX`, here and in every call
//! that takes one (`flush`, `close`, `drop_grace`, `Block { timeout }`): a
//! deadline too far to compute means "never" (see
//! [`deadline_after`](crate::deadline_after)). Zero is refused where it
//! cannot work (`connect_timeout`, `ack_timeout`, `Block { timeout }`,
//! `backoff.initial`), with an error naming the field.

use std::time::Duration;

use crate::transport::TransportLimits;

/// Default `max_record_bytes`: Kafka's and librdkafka's default
/// `message.max.bytes`.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;

/// What happens to a new record when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// `send` waits up to `timeout` for room, then hands the record back
    /// with [`EnqueueError::QueueFull`](crate::EnqueueError::QueueFull).
    /// Non-waiting calls behave like [`OverflowPolicy::Reject`].
    Block {
        /// Longest wait for room.
        timeout: Duration,
    },
    /// `send` hands the record back at once with
    /// [`EnqueueError::QueueFull`](crate::EnqueueError::QueueFull).
    Reject,
    /// The oldest records not yet handed to the transport are dropped to make
    /// room; each is counted, logged and reported as
    /// [`Event::Dropped`](crate::Event::Dropped).
    DropOldest,
    /// The new record is dropped; it is counted, logged and reported as
    /// [`Event::Dropped`](crate::Event::Dropped).
    DropNewest,
}

/// Shape of a jittered exponential backoff; see [`Backoff`](crate::Backoff).
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffConfig {
    /// First delay, and the lower bound of every delay.
    pub initial: Duration,
    /// Growth factor per attempt (at least 1).
    pub multiplier: f64,
    /// Upper bound of every delay (2 s by default; any value up to 10
    /// minutes is accepted).
    pub max: Duration,
    /// Fraction in `[0, 1]` by which a delay may be shortened at random.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(2),
            jitter: 0.5,
        }
    }
}

/// Thresholds of the health verdict (see [`Health`](crate::Health)).
///
/// The verdict is `Unhealthy` when the producer is closed, or has not been
/// connected for `unhealthy_after_disconnected`, or the queue is at least
/// `unhealthy_queue_fill` full, or its oldest record waited
/// `unhealthy_oldest_age`. Otherwise it is `Degraded` when the producer is
/// not connected, or the queue is at least `degraded_queue_fill` full, or its
/// oldest record waited `degraded_oldest_age`, or the transport reports that
/// the cluster holds records back ([`Stats::stalled`](crate::Stats::stalled),
/// for example replicas missing). Otherwise `Healthy`. Every reason that
/// applies is listed.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// Not connected for this long: unhealthy. Default 60 s.
    pub unhealthy_after_disconnected: Duration,
    /// Queue fill (by records or bytes, whichever is fuller) that makes the
    /// producer degraded. Default 0.5.
    pub degraded_queue_fill: f64,
    /// Queue fill that makes the producer unhealthy. Default 0.9.
    pub unhealthy_queue_fill: f64,
    /// Oldest queued record age that makes the producer degraded. Default 5 s.
    pub degraded_oldest_age: Duration,
    /// Oldest queued record age that makes the producer unhealthy. Default 60 s.
    pub unhealthy_oldest_age: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            unhealthy_after_disconnected: Duration::from_secs(60),
            degraded_queue_fill: 0.5,
            unhealthy_queue_fill: 0.9,
            degraded_oldest_age: Duration::from_secs(5),
            unhealthy_oldest_age: Duration::from_secs(60),
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `field` has a value that cannot work, for `reason`.
    #[error("invalid config `{field}`: {reason}")]
    Invalid {
        /// The field's name, as in the builder.
        field: &'static str,
        /// Why the value cannot work, with the value.
        reason: String,
    },
}

/// Validated producer configuration. Build one with [`Config::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) max_queued_records: usize,
    pub(crate) max_queued_bytes: usize,
    pub(crate) max_record_bytes: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) max_in_flight: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) ack_timeout: Duration,
    pub(crate) backoff: BackoffConfig,
    pub(crate) health: HealthConfig,
    pub(crate) service_name: String,
    pub(crate) seed: Option<u64>,
    /// The transport's limit on [`Record::kafka_wire_size`](crate::Record::kafka_wire_size),
    /// set when the producer starts.
    pub(crate) max_wire_bytes: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_queued_records: 100_000,
            max_queued_bytes: 64 << 20,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            overflow: OverflowPolicy::Block {
                timeout: Duration::from_secs(1),
            },
            max_in_flight: 10_000,
            connect_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
            health: HealthConfig::default(),
            service_name: "unknown-service".to_owned(),
            seed: None,
            max_wire_bytes: None,
        }
    }
}

impl Config {
    /// A builder starting from the documented defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Self::default())
    }

    /// Records held before the overflow policy applies.
    pub fn max_queued_records(&self) -> usize {
        self.max_queued_records
    }
    /// Bytes held before the overflow policy applies.
    pub fn max_queued_bytes(&self) -> usize {
        self.max_queued_bytes
    }
    /// Largest record accepted.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }
    /// What `send` does when the queue is full.
    pub fn overflow(&self) -> OverflowPolicy {
        self.overflow
    }
    /// Records handed to the transport and not yet acknowledged, at most.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
    /// Longest connect attempt.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// Longest silence from the transport while records are in flight.
    pub fn ack_timeout(&self) -> Duration {
        self.ack_timeout
    }
    /// Reconnect and retry backoff.
    pub fn backoff(&self) -> &BackoffConfig {
        &self.backoff
    }
    /// Health thresholds.
    pub fn health(&self) -> &HealthConfig {
        &self.health
    }
    /// The `producer` field of event envelopes.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }
    /// The jitter seed, if one was fixed.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }
    /// The transport's limit on a record's
    /// [`kafka_wire_size`](crate::Record::kafka_wire_size), once the
    /// producer has started with a transport that states one.
    pub fn max_wire_bytes(&self) -> Option<usize> {
        self.max_wire_bytes
    }

    /// Checks this configuration against what the transport says of itself
    /// and takes its record limit. Called when a producer starts.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `connect_timeout` when it is not
    /// longer than the transport's connect probe, or `ack_timeout` when it
    /// is not longer than the transport's wait for an unknown topic.
    pub fn with_transport_limits(mut self, limits: TransportLimits) -> Result<Self, ConfigError> {
        if let Some(wait) = limits.unknown_topic_after
            && self.ack_timeout <= wait
        {
            return Err(ConfigError::Invalid {
                field: "ack_timeout",
                reason: format!(
                    "must be longer than the transport's wait for an unknown topic ({wait:?}), \
                     or a record for a topic that does not exist would make every session \
                     look hung and never settle (got {:?}); raise ack_timeout or lower the \
                     transport's wait (librdkafka: topic.metadata.propagation.max.ms)",
                    self.ack_timeout
                ),
            });
        }
        if let Some(probe) = limits.connect_probe
            && self.connect_timeout <= probe
        {
            return Err(ConfigError::Invalid {
                field: "connect_timeout",
                reason: format!(
                    "must be longer than the transport's connect probe ({probe:?}), or every \
                     connect times out first (got {:?}); raise connect_timeout or lower the \
                     transport's probe timeout",
                    self.connect_timeout
                ),
            });
        }
        self.max_wire_bytes = limits.max_wire_bytes;
        Ok(self)
    }
}

/// Builds a [`Config`]; [`ConfigBuilder::build`] validates every field.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Records held (queued + in flight) before the overflow policy applies.
    pub fn max_queued_records(mut self, n: usize) -> Self {
        self.0.max_queued_records = n;
        self
    }
    /// Bytes held before the overflow policy applies.
    pub fn max_queued_bytes(mut self, n: usize) -> Self {
        self.0.max_queued_bytes = n;
        self
    }
    /// Largest record accepted; larger ones are refused at once.
    pub fn max_record_bytes(mut self, n: usize) -> Self {
        self.0.max_record_bytes = n;
        self
    }
    /// What `send` does when the queue is full.
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.0.overflow = policy;
        self
    }
    /// Records handed to the transport before their acknowledgements arrive.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.0.max_in_flight = n;
        self
    }
    /// Longest connect attempt.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.0.connect_timeout = d;
        self
    }
    /// Longest silence from the transport while records are in flight before
    /// the link is declared hung.
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.0.ack_timeout = d;
        self
    }
    /// Reconnect and retry backoff.
    pub fn backoff(mut self, b: BackoffConfig) -> Self {
        self.0.backoff = b;
        self
    }
    /// Health thresholds.
    pub fn health(mut self, h: HealthConfig) -> Self {
        self.0.health = h;
        self
    }
    /// The `producer` field of event envelopes.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.0.service_name = name.into();
        self
    }
    /// Fixes the jitter seed (for deterministic tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = Some(seed);
        self
    }

    /// Validates every field.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for the first field whose value cannot work.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = self.0;
        let fail = |field, reason: String| Err(ConfigError::Invalid { field, reason });
        if c.max_queued_records == 0 {
            return fail("max_queued_records", "must be at least 1 (got 0)".into());
        }
        if c.max_queued_bytes == 0 {
            return fail("max_queued_bytes", "must be at least 1 (got 0)".into());
        }
        if c.max_record_bytes == 0 || c.max_record_bytes > c.max_queued_bytes {
            return fail(
                "max_record_bytes",
                format!(
                    "must be between 1 and max_queued_bytes ({}) (got {})",
                    c.max_queued_bytes, c.max_record_bytes
                ),
            );
        }
        if let OverflowPolicy::Block { timeout } = c.overflow
            && timeout.is_zero()
        {
            return fail(
                "overflow",
                "Block needs a timeout above zero (use Reject for no wait)".into(),
            );
        }
        if c.max_in_flight == 0 || c.max_in_flight > c.max_queued_records {
            return fail(
                "max_in_flight",
                format!(
                    "must be between 1 and max_queued_records ({}) (got {})",
                    c.max_queued_records, c.max_in_flight
                ),
            );
        }
        if c.connect_timeout.is_zero() {
            return fail("connect_timeout", "must be above zero".into());
        }
        if c.ack_timeout.is_zero() {
            return fail("ack_timeout", "must be above zero".into());
        }
        validate_backoff(&c.backoff)?;
        validate_health(&c.health)?;
        if c.service_name.is_empty() {
            return fail("service_name", "must not be empty".into());
        }
        Ok(c)
    }
}

fn validate_backoff(b: &BackoffConfig) -> Result<(), ConfigError> {
    let fail = |reason: String| {
        Err(ConfigError::Invalid {
            field: "backoff",
            reason,
        })
    };
    if b.initial.is_zero() {
        return fail("initial must be above zero (a zero delay is a hot loop)".into());
    }
    if b.max < b.initial {
        return fail(format!(
            "max ({:?}) must be at least initial ({:?})",
            b.max, b.initial
        ));
    }
    if b.max > Duration::from_secs(600) {
        return fail(format!("max ({:?}) must be at most 10 minutes", b.max));
    }
    if !b.multiplier.is_finite() || b.multiplier < 1.0 {
        return fail(format!(
            "multiplier must be a finite number of at least 1 (got {})",
            b.multiplier
        ));
    }
    if !(0.0..=1.0).contains(&b.jitter) {
        return fail(format!("jitter must be within [0, 1] (got {})", b.jitter));
    }
    Ok(())
}

fn validate_health(h: &HealthConfig) -> Result<(), ConfigError> {
    let fail = |reason: String| {
        Err(ConfigError::Invalid {
            field: "health",
            reason,
        })
    };
    let fraction = |x: f64| x > 0.0 && x <= 1.0;
    if !fraction(h.degraded_queue_fill) || !fraction(h.unhealthy_queue_fill) {
        return fail("queue fill thresholds must be within (0, 1]".into());
    }
    if h.degraded_queue_fill > h.unhealthy_queue_fill {
        return fail("degraded_queue_fill must not exceed unhealthy_queue_fill".into());
    }
    if h.degraded_oldest_age > h.unhealthy_oldest_age {
        return fail("degraded_oldest_age must not exceed unhealthy_oldest_age".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<Config, ConfigError>) -> &'static str {
        match r {
            Err(ConfigError::Invalid { field, .. }) => field,
            Ok(_) => "accepted",
        }
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::builder().build().unwrap();
        assert_eq!(c.max_queued_records(), 100_000);
        assert_eq!(c.max_queued_bytes(), 64 << 20);
        assert_eq!(c.max_in_flight(), 10_000);
        assert!(c.backoff().max <= Duration::from_secs(10));
    }

    #[test]
    fn each_invalid_value_names_its_field() {
        let b = Config::builder;
        assert_eq!(
            field_of(b().max_queued_records(0).build()),
            "max_queued_records"
        );
        assert_eq!(
            field_of(b().max_queued_bytes(0).build()),
            "max_queued_bytes"
        );
        assert_eq!(
            field_of(b().max_queued_bytes(10).max_record_bytes(11).build()),
            "max_record_bytes"
        );
        assert_eq!(
            field_of(b().max_queued_records(5).max_in_flight(6).build()),
            "max_in_flight"
        );
        assert_eq!(
            field_of(b().ack_timeout(Duration::ZERO).build()),
            "ack_timeout"
        );
        assert_eq!(
            field_of(b().connect_timeout(Duration::ZERO).build()),
            "connect_timeout"
        );
        assert_eq!(
            field_of(
                b().overflow(OverflowPolicy::Block {
                    timeout: Duration::ZERO
                })
                .build()
            ),
            "overflow"
        );
        let bad = BackoffConfig {
            jitter: 1.5,
            ..BackoffConfig::default()
        };
        assert_eq!(field_of(b().backoff(bad).build()), "backoff");
        let bad = BackoffConfig {
            initial: Duration::ZERO,
            ..BackoffConfig::default()
        };
        assert_eq!(field_of(b().backoff(bad).build()), "backoff");
        let bad = BackoffConfig {
            multiplier: f64::NAN,
            ..BackoffConfig::default()
        };
        assert_eq!(field_of(b().backoff(bad).build()), "backoff");
        let bad = HealthConfig {
            degraded_queue_fill: 0.95,
            ..HealthConfig::default()
        };
        assert_eq!(field_of(b().health(bad).build()), "health");
        assert_eq!(field_of(b().service_name("").build()), "service_name");
    }

    #[test]
    fn error_message_names_field_and_value() {
        let err = Config::builder().max_in_flight(0).build().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("max_in_flight") && msg.contains("got 0"),
            "{msg}"
        );
    }
}
