//! Secrets never appear in `Debug` output, error messages or logs, even
//! with librdkafka's most verbose debug logging and a failing SASL login.
//!
//! Its own test binary: it installs a global tracing subscriber that
//! captures everything librdkafka and the transport log.

#![expect(clippy::unwrap_used, reason = "test code: a panic is a failure")]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use robust_producer::{Config, Producer, Record, TokioRuntime};
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};

const SECRETS: [(&str, &str); 6] = [
    ("sasl.password", "S3CRET-sasl-password"),
    ("ssl.key.password", "S3CRET-key-password"),
    ("ssl.keystore.password", "S3CRET-keystore-password"),
    ("ssl.truststore.password", "S3CRET-truststore-password"),
    ("sasl.oauthbearer.client.secret", "S3CRET-oauth-secret"),
    (
        "ssl.key.pem",
        "-----BEGIN PRIVATE KEY-----S3CRET-key-material-----END PRIVATE KEY-----",
    ),
];

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains("S3CRET"), "{what} shows a secret:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_debug_errors_or_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let cluster = MockCluster::new(1).unwrap();
    let mut config = RdkafkaConfig::new(cluster.bootstrap_servers());
    for (k, v) in SECRETS {
        config = config.set(k, v);
    }

    // Debug of the configuration.
    let debug = format!("{config:?}");
    assert_no_secret("Debug of RdkafkaConfig", &debug);
    assert!(
        debug.contains("<redacted>") && debug.contains("sasl.password"),
        "{debug}"
    );

    // Errors: this build has no TLS, so librdkafka refuses the TLS settings.
    if let Err(e) = RdkafkaTransport::new(config.clone()) {
        assert_no_secret("creation error", &format!("{e} / {e:?}"));
    }

    // Logs: SASL/PLAIN against a broker that does not speak SASL, with
    // librdkafka logging everything (including its configuration dump).
    let mut config = RdkafkaConfig::new(cluster.bootstrap_servers())
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", "svc")
        .set("debug", "all")
        .probe_timeout(Duration::from_millis(500));
    for (k, v) in SECRETS.iter().filter(|(k, _)| *k == "sasl.password") {
        config = config.set(*k, *v);
    }
    let transport = RdkafkaTransport::new(config).expect("SASL/PLAIN needs no TLS");
    assert_no_secret("Debug of RdkafkaTransport", &format!("{transport:?}"));
    let producer = Producer::builder(
        Config::builder()
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .start(transport, TokioRuntime::new())
    .expect("the producer config fits the transport");
    drop(producer.send(Record::new("t", b"x".to_vec())).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = producer.stats();
    assert_no_secret("stats", &format!("{stats:?}"));
    let returned = producer.close(Duration::from_millis(500)).await;
    assert_eq!(
        returned.len(),
        1,
        "nothing can be delivered without a login"
    );

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        logs.len() > 10_000 && logs.contains("sasl"),
        "the capture works: {} bytes",
        logs.len()
    );
    assert_no_secret("logs", &logs);
}
