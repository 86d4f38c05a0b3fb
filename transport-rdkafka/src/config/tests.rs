//! Unit tests of [`RdkafkaConfig`]: defaults, overrides, refusals and
//! secrets.

use std::time::Duration;

use super::*;
use crate::error::Error;

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
fn statistics_interval_is_off_or_sane() {
    let interval = |d| RdkafkaConfig::new("k:9092").statistics_interval(d);
    assert_eq!(
        RdkafkaConfig::new("k:9092").get("statistics.interval.ms"),
        None
    );
    assert_eq!(
        interval(Duration::from_secs(5)).get("statistics.interval.ms"),
        Some("5000")
    );
    // Rounded up: a sub-millisecond rest never turns statistics off.
    assert_eq!(
        interval(Duration::from_micros(100_001)).get("statistics.interval.ms"),
        Some("101")
    );
    for ok in [
        Duration::ZERO,
        MIN_STATISTICS_INTERVAL,
        Duration::from_secs(60),
        MAX_STATISTICS_INTERVAL,
    ] {
        interval(ok).validate().expect("off or in range");
    }
    for low in [
        Duration::from_nanos(1),
        Duration::from_millis(1),
        MIN_STATISTICS_INTERVAL - Duration::from_millis(1),
    ] {
        let m = refusal(&interval(low), "statistics.interval.ms");
        assert!(m.contains("below the minimum of 100 ms"), "{m}");
        assert!(m.contains("use 0 (off)"), "{m}");
    }
    let m = refusal(
        &interval(MAX_STATISTICS_INTERVAL + Duration::from_millis(1)),
        "statistics.interval.ms",
    );
    assert!(m.contains("above librdkafka's maximum"), "{m}");
    // Set as a raw property, the same bounds apply.
    let raw = RdkafkaConfig::new("k:9092").set("statistics.interval.ms", " 5 ");
    let m = refusal(&raw, "statistics.interval.ms");
    assert!(m.contains("5 ms is below"), "{m}");
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
    RdkafkaConfig::new("SASL_PLAINTEXT://kafka:9093,kafka:9094")
        .set("security.protocol", "sasl_plaintext")
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
