//! Security against a real broker (`robust_producer_tests::secure`): TLS
//! and SASL_SSL with SCRAM-SHA-512, ACLs under KRaft's standard
//! authorizer, certificates made at run time. Each scenario ends with the
//! independent read-back (every record id the producer accepted is stored,
//! per key in order), or, where nothing can be delivered, with every
//! record handed back at `close` and none dead-lettered.
//!
//! * `sasl_ssl_broker_restart_mid_stream_loses_nothing`: the right
//!   credentials, the broker killed and restarted mid-stream.
//! * `mutual_tls_client_certificate_delivers_everything`: a client
//!   certificate (inline PEM) on a listener that requires one; without
//!   one, the client is refused, named as a TLS failure, and loses nothing.
//! * `misconfigured_clients_wait_and_lose_nothing`, on one broker: a wrong
//!   password, a CA that does not match, a host name the certificate does
//!   not carry, an expired certificate (server side), and a topic the user
//!   may not write.

#![expect(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failure, output helps"
)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use robust_producer::{
    DeadLetter, DeliveryHandle, EVENT_ID_HEADER, EventEnvelope, Producer, Record, TokioRuntime,
    Verdict,
};
use robust_producer_rdkafka::readback::Sent;
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};
use robust_producer_tests::secure::{ALLOWED_PREFIX, SecureKafka};
use robust_producer_tests::single::{core_config, first_delivery, read_back, scenario};

/// Every log line of the test process (level `info` and above).
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .try_init();
    });
}

/// The captured log lines at `WARN` or `ERROR` that contain `needle`.
fn loud_lines_with(needle: &str) -> Vec<String> {
    let logs = LOGS.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| (l.contains(" WARN ") || l.contains(" ERROR ")) && l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Whether `needle` appears anywhere in the captured logs.
fn logs_contain(needle: &str) -> bool {
    let logs = LOGS.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&logs).contains(needle)
}

/// One service's producer and what it sent.
struct Service {
    name: &'static str,
    producer: Producer,
    sent: Vec<Sent>,
    handles: Vec<DeliveryHandle>,
    dead: Arc<Mutex<Vec<DeadLetter>>>,
}

impl Service {
    fn start(name: &'static str, bootstrap: &str, settings: &[(String, String)]) -> Self {
        let mut rd = RdkafkaConfig::new(bootstrap)
            .set("topic.metadata.propagation.max.ms", "5000") // below ack_timeout
            .probe_timeout(Duration::from_secs(4)); // below connect_timeout
        for (k, v) in settings {
            rd = rd.set(k.as_str(), v.as_str());
        }
        let transport = RdkafkaTransport::new(rd).unwrap();
        let dead = Arc::new(Mutex::new(Vec::new()));
        let sink = dead.clone();
        let producer = Producer::builder(core_config(name))
            .on_dead_letter(move |dl| sink.lock().unwrap().push(dl))
            .start(transport, TokioRuntime::new())
            .expect("the producer config fits the transport");
        Self {
            name,
            producer,
            sent: Vec::new(),
            handles: Vec::new(),
            dead,
        }
    }

    /// Sends `n` events to `topic`, keyed over `keys` keys.
    async fn send_many(&mut self, topic: &str, n: usize, keys: usize) {
        for _ in 0..n {
            let seq = self.sent.len();
            let key = format!("{}-{}", self.name, seq % keys);
            let body = serde_json::json!({ "seq": seq, "pad": "x".repeat(40) });
            let envelope = EventEnvelope::new("test.event", self.name, body);
            let id = envelope.event_id.clone();
            let record = envelope.into_record(topic, Some(&key)).unwrap();
            self.handles
                .push(self.producer.send(record).await.expect("accepted"));
            self.sent.push(Sent::keyed(key, id));
        }
    }

    /// Resends records handed back by another producer.
    async fn resend(&mut self, records: Vec<Record>) {
        for record in records {
            let key = record.key.clone().unwrap().to_vec();
            let id = String::from_utf8(record.header(EVENT_ID_HEADER).unwrap().to_vec()).unwrap();
            self.handles
                .push(self.producer.send(record).await.expect("accepted"));
            self.sent.push(Sent::keyed(key, id));
        }
    }

    /// Waits for every handle; panics if one failed or they take too long.
    async fn settle(&mut self, timeout: Duration) -> usize {
        let handles = std::mem::take(&mut self.handles);
        let n = handles.len();
        let all = async {
            for h in handles {
                h.await.expect("delivered");
            }
        };
        tokio::time::timeout(timeout, all)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: not settled within {timeout:?}: {:?}",
                    self.name,
                    self.producer.stats()
                )
            });
        n
    }

    /// Waits until `last_error` contains `needle`; returns it.
    async fn wait_last_error(&self, needle: &str, within: Duration) -> String {
        let start = Instant::now();
        loop {
            let stats = self.producer.stats();
            if let Some(e) = stats.last_error.as_deref()
                && e.contains(needle)
            {
                return e.to_owned();
            }
            assert!(
                start.elapsed() < within,
                "{}: last_error never named {needle:?} within {within:?}: {stats:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead.lock().unwrap().clone()
    }
}

impl Drop for Service {
    /// Every scenario ends with the accounting identity checked.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let stats = self.producer.stats();
            if let Err(e) = stats.check_accounting() {
                panic!("{}: {e}: {stats:?}", self.name);
            }
        }
    }
}

/// Reads `topic` back over the harness's plaintext listener and checks
/// every id of `sent`, per key in order.
fn allowed_topic(name: &str) -> String {
    format!(
        "{ALLOWED_PREFIX}{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[test]
fn sasl_ssl_broker_restart_mid_stream_loses_nothing() {
    capture_logs();
    scenario(|| async {
        let t0 = Instant::now();
        let broker = SecureKafka::start().await.unwrap();
        let started = t0.elapsed();
        let topic = allowed_topic("restart");
        let settings = broker.sasl_ssl_settings(broker.producer_password());
        let mut svc = Service::start("patient-service", &broker.sasl_ssl_bootstrap(), &settings);
        svc.send_many(&topic, 3_000, 40).await;
        first_delivery(&svc.producer, 0, Duration::from_secs(60)).await;
        broker.kafka.kill().await.unwrap();
        svc.send_many(&topic, 3_000, 40).await; // accepted while the broker is dead
        broker.kafka.restart().await.unwrap();
        svc.send_many(&topic, 2_000, 40).await;
        let delivered = svc.settle(Duration::from_secs(120)).await;
        let (report, _) = read_back(&broker.kafka.bootstrap(), &topic, &svc.sent).await;
        eprintln!(
            "SCENARIO sasl_ssl restart: broker up in {} ms, accepted {}, delivered {delivered}, \
             present {}, duplicates {}, lost {}, reordered {}, total {} ms",
            started.as_millis(),
            svc.sent.len(),
            report.present,
            report.duplicates,
            report.missing.len(),
            report.reordered.len(),
            t0.elapsed().as_millis()
        );
        assert_eq!(delivered, 8_000);
        assert!(report.is_clean(), "{report:?}");
        assert!(svc.producer.stats().link_losses >= 1);
        assert!(svc.dead_letters().is_empty());
        assert!(svc.producer.close(Duration::from_secs(5)).await.is_empty());
    });
}

#[test]
fn mutual_tls_client_certificate_delivers_everything() {
    capture_logs();
    scenario(|| async {
        let t0 = Instant::now();
        let broker = SecureKafka::start().await.unwrap();
        let topic = allowed_topic("mtls");
        let mut svc = Service::start(
            "communication-service",
            &broker.mtls_bootstrap(),
            &broker.mtls_settings(),
        );
        svc.send_many(&topic, 2_000, 20).await;
        let delivered = svc.settle(Duration::from_secs(60)).await;
        let (report, _) = read_back(&broker.kafka.bootstrap(), &topic, &svc.sent).await;
        eprintln!(
            "SCENARIO mutual TLS: delivered {delivered}, present {}, lost {}, reordered {}, \
             total {} ms",
            report.present,
            report.missing.len(),
            report.reordered.len(),
            t0.elapsed().as_millis()
        );
        assert_eq!(delivered, 2_000);
        assert!(report.is_clean(), "{report:?}");
        let key = &broker.certificates.client_key;
        let body = key.lines().nth(1).unwrap();
        assert!(!logs_contain(body), "the client key reached the logs");
        assert!(svc.producer.close(Duration::from_secs(5)).await.is_empty());

        // Without a client certificate the listener refuses the client.
        let (_, last) = refused_client(
            "no client certificate",
            &broker.mtls_bootstrap(),
            &SecureKafka::ssl_settings(&broker.certificates.ca),
            &topic,
            "TLS handshake failed",
        )
        .await;
        assert!(last.contains("alert"), "{last}");
    });
}

/// A producer that cannot get past the handshake: `last_error`, `health()`
/// and a WARN/ERROR line name `what`; every record is handed back at
/// close, none dead-lettered. Returns the handed-back records and the
/// last error.
async fn refused_client(
    label: &str,
    bootstrap: &str,
    settings: &[(String, String)],
    topic: &str,
    what: &str,
) -> (Vec<Record>, String) {
    LOGS.lock().unwrap_or_else(PoisonError::into_inner).clear(); // this case's lines only
    let mut svc = Service::start("matching-service", bootstrap, settings);
    svc.send_many(topic, 200, 10).await;
    let last = svc.wait_last_error(what, Duration::from_secs(60)).await;
    assert!(!last.contains("timed out after"), "{label}: {last}");
    assert!(
        last.contains(bootstrap),
        "{label}: not this listener's error: {last}"
    );
    let health = svc.producer.health();
    assert_ne!(health.verdict, Verdict::Healthy, "{label}: {health:?}");
    assert!(
        health.reasons.iter().any(|r| r.contains(what)),
        "{label}: health does not name {what:?}: {health:?}"
    );
    let loud = loud_lines_with(what);
    assert!(
        !loud.is_empty(),
        "{label}: no WARN/ERROR log names {what:?}"
    );
    let stats = svc.producer.stats();
    assert_eq!((stats.accepted, stats.delivered), (200, 0), "{label}");
    let back = svc.producer.close(Duration::from_secs(2)).await;
    assert_eq!(back.len(), 200, "{label}: {:?}", svc.producer.stats());
    assert!(svc.dead_letters().is_empty(), "{label}");
    eprintln!("SCENARIO {label}: last_error = {last}");
    svc.sent.clear(); // handed back: checked below by the caller
    (back, last)
}

#[test]
fn misconfigured_clients_wait_and_lose_nothing() {
    capture_logs();
    scenario(|| async {
        let t0 = Instant::now();
        let broker = SecureKafka::start().await.unwrap();
        let started = t0.elapsed();

        // Wrong password: an authentication failure, no tight loop.
        let topic = allowed_topic("wrong-password");
        let wrong = "not-the-password-5e1f";
        let mut svc = Service::start(
            "matching-service",
            &broker.sasl_ssl_bootstrap(),
            &broker.sasl_ssl_settings(wrong),
        );
        svc.send_many(&topic, 200, 10).await;
        let last = svc
            .wait_last_error("authentication failed", Duration::from_secs(60))
            .await;
        assert!(last.contains("SASL authentication error"), "{last}");
        let (conns, attempts) = (
            broker.sasl_ssl_connections(),
            svc.producer.stats().reconnect_attempts,
        );
        let window = Duration::from_secs(15);
        tokio::time::sleep(window).await; // a measurement window, not a wait for a condition
        let conns = broker.sasl_ssl_connections() - conns;
        let attempts = svc.producer.stats().reconnect_attempts - attempts;
        eprintln!(
            "SCENARIO wrong password: {conns} connections and {attempts} connect attempts in \
             {window:?}; last_error = {last}"
        );
        // librdkafka's reconnect backoff (100 ms doubling to 1 s) and the
        // core's (up to 2 s after each 4 s probe) bound both; a spinning
        // client would make hundreds.
        assert!(conns <= 30, "{conns} connections in {window:?}");
        assert!(attempts <= 8, "{attempts} connect attempts in {window:?}");
        let health = svc.producer.health();
        assert!(
            health
                .reasons
                .iter()
                .any(|r| r.contains("authentication failed")),
            "{health:?}"
        );
        assert!(!loud_lines_with("authentication failed").is_empty());
        assert!(!logs_contain(wrong), "the password reached the logs");
        assert!(!format!("{:?}", svc.producer.stats()).contains(wrong));
        let back = svc.producer.close(Duration::from_secs(2)).await;
        assert_eq!(back.len(), 200);
        assert!(svc.dead_letters().is_empty());
        // Fixing the credentials means a new transport: the records handed
        // back are resent by a producer with the right password.
        let mut fixed = Service::start(
            "matching-service",
            &broker.sasl_ssl_bootstrap(),
            &broker.sasl_ssl_settings(broker.producer_password()),
        );
        fixed.resend(back).await;
        assert_eq!(fixed.settle(Duration::from_secs(60)).await, 200);
        let (report, _) = read_back(&broker.kafka.bootstrap(), &topic, &fixed.sent).await;
        assert!(report.is_clean(), "{report:?}");
        assert!(
            fixed
                .producer
                .close(Duration::from_secs(5))
                .await
                .is_empty()
        );
        svc.sent.clear();

        // TLS: a CA that does not match, a name the certificate does not
        // carry, an expired certificate.
        let topic = allowed_topic("tls");
        let (_, last) = refused_client(
            "unrelated CA",
            &broker.ssl_bootstrap(),
            &SecureKafka::ssl_settings(&broker.certificates.other_ca),
            &topic,
            "TLS handshake failed",
        )
        .await;
        assert!(last.contains("certificate verify failed"), "{last}");
        refused_client(
            "host name mismatch",
            &broker.ssl_bootstrap_by_wrong_name(),
            &SecureKafka::ssl_settings(&broker.certificates.ca),
            &topic,
            "TLS handshake failed",
        )
        .await;
        refused_client(
            "expired certificate",
            &broker.expired_bootstrap(),
            &SecureKafka::ssl_settings(&broker.certificates.ca),
            &topic,
            "TLS handshake failed",
        )
        .await;

        // A topic the user may not write: that record is dead-lettered,
        // the allowed topic's flow on.
        let allowed = allowed_topic("acl");
        let forbidden = format!(
            "sec-forbidden-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut svc = Service::start(
            "therapist-service",
            &broker.sasl_ssl_bootstrap(),
            &broker.sasl_ssl_settings(broker.producer_password()),
        );
        // The forbidden record travels among the allowed ones; it is kept
        // out of the read-back's list (it is in another topic).
        svc.send_many(&allowed, 100, 10).await;
        let keep = svc.sent.len();
        svc.send_many(&forbidden, 1, 1).await;
        svc.sent.pop().unwrap();
        let forbidden_handle = svc.handles.pop().unwrap();
        assert_eq!(svc.sent.len(), keep);
        svc.send_many(&allowed, 100, 10).await;
        let err = tokio::time::timeout(Duration::from_secs(60), forbidden_handle)
            .await
            .expect("the forbidden record is settled")
            .expect_err("the forbidden record is not delivered");
        eprintln!("SCENARIO unauthorized topic: {err}");
        assert_eq!(svc.settle(Duration::from_secs(60)).await, 200);
        let dead = svc.dead_letters();
        assert_eq!(dead.len(), 1, "{dead:?}");
        let reason = dead[0].reason.to_string();
        assert!(reason.contains("not authorized"), "{reason}");
        assert_eq!(&*dead[0].record.topic, forbidden.as_str());
        let (report, _) = read_back(&broker.kafka.bootstrap(), &allowed, &svc.sent).await;
        assert!(report.is_clean(), "{report:?}");
        assert!(svc.producer.close(Duration::from_secs(5)).await.is_empty());
        eprintln!(
            "SCENARIO misconfigured clients: broker up in {} ms, total {} ms",
            started.as_millis(),
            t0.elapsed().as_millis()
        );
    });
}
