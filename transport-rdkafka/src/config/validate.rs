//! The checks [`RdkafkaConfig`] passes at `RdkafkaTransport::new`: settings
//! that would break the delivery guarantee, or that cannot work, are refused
//! with an [`Error`] that names the property and says what to do instead
//! (see the type's docs, "Refused at `RdkafkaTransport::new`").

use std::time::Duration;

use super::bootstrap::check_bootstrap;
use super::{
    MAX_PROBE_TIMEOUT, MAX_STATISTICS_INTERVAL, MIN_STATISTICS_INTERVAL, RdkafkaConfig,
    STATISTICS_INTERVAL, is_secret_property, secrets::REDACTED,
};
use crate::error::Error;

/// The names of librdkafka's `acks` property.
const ACKS: [&str; 2] = ["acks", "request.required.acks"];

/// The names of librdkafka's bootstrap servers property.
const BOOTSTRAP: [&str; 2] = ["bootstrap.servers", "metadata.broker.list"];

impl RdkafkaConfig {
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
        self.validate_statistics_interval()?;
        self.validate_tls_built()?;
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

impl RdkafkaConfig {
    /// `statistics.interval.ms`: zero (off) or between the bounds. A value
    /// that is not a number is left to librdkafka, which refuses it.
    fn validate_statistics_interval(&self) -> Result<(), Error> {
        let Some(ms) = self
            .get(STATISTICS_INTERVAL)
            .and_then(|v| v.trim().parse::<u128>().ok())
        else {
            return Ok(());
        };
        let min = MIN_STATISTICS_INTERVAL.as_millis();
        let max = MAX_STATISTICS_INTERVAL.as_millis();
        let problem = if ms != 0 && ms < min {
            format!(
                "{ms} ms is below the minimum of {min} ms: librdkafka would spend its time \
                 serializing statistics"
            )
        } else if ms > max {
            format!("{ms} ms is above librdkafka's maximum of {max} ms (one day)")
        } else {
            return Ok(());
        };
        Err(Error::InvalidProperty {
            name: STATISTICS_INTERVAL.to_owned(),
            reason: format!(
                "{problem}; use 0 (off) or an interval of a few seconds, for example \
                 RdkafkaConfig::statistics_interval(Duration::from_secs(5))"
            ),
        })
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
pub(super) fn parse_bool(value: &str) -> Option<bool> {
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
