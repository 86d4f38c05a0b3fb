//! The metrics service against librdkafka's mock cluster, scraped over
//! HTTP before, during and after an outage of every broker: the state
//! series leaves `connected` and comes back, records pile up and age while
//! Kafka is down and drain after, `/healthz` turns 503 past the Unhealthy
//! threshold and 200 after recovery, `/readyz` waits for the first
//! connection only, and the final scrape keeps the accounting identity.
//! Then every metric name the Grafana dashboard's queries use must appear
//! in that scrape.
//!
//! One test in this binary: the Prometheus recorder is global to the
//! process.

#![expect(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failure, output helps"
)]

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use robust_producer::metrics as names;
use robust_producer::{BackoffConfig, Config, HealthConfig, Producer, TokioRuntime};
use robust_producer_examples::metrics_service::{
    MetricsService, TrickleConfig, install_prometheus,
};
use robust_producer_rdkafka::rdkafka::mocking::MockCluster;
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport, TransportMetrics};
use serde_json::Value;
use support::http::get;
use support::prom::Scrape;
use tokio::net::TcpListener;

const SERVICE: &str = "scrape-test";
const TOPIC: &str = "scrape-events";
/// Not connected for this long: unhealthy (60 s by default).
const UNHEALTHY_AFTER: Duration = Duration::from_secs(3);
/// How long any awaited condition may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(90);

async fn scrape(addr: SocketAddr) -> Scrape {
    let answer = get(addr, "/metrics").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    Scrape::parse(&answer.body, SERVICE)
}

/// `/healthz` or `/readyz`: status and JSON body.
async fn probe(addr: SocketAddr, path: &str) -> (u16, Value) {
    let answer = get(addr, path).await;
    (answer.status, serde_json::from_str(&answer.body).unwrap())
}

/// Polls `check` until it gives a value; on timeout, fails with the last
/// observation it reported.
async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(found) => return found,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not within {PATIENCE:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A producer over the rdkafka transport with quick probes and the
/// Unhealthy threshold at [`UNHEALTHY_AFTER`], and the transport's counters.
fn producer(bootstrap: String) -> (Producer, TransportMetrics) {
    let transport = RdkafkaTransport::new(
        RdkafkaConfig::new(bootstrap)
            .probe_timeout(Duration::from_millis(1500))
            .set("client.id", SERVICE)
            .statistics_interval(Duration::from_millis(500)),
    )
    .unwrap();
    let transport_metrics = transport.metrics();
    let config = Config::builder()
        .service_name(SERVICE)
        .connect_timeout(Duration::from_secs(3))
        .backoff(BackoffConfig {
            initial: Duration::from_millis(50),
            multiplier: 2.0,
            max: Duration::from_millis(500),
            jitter: 0.5,
        })
        .health(HealthConfig {
            unhealthy_after_disconnected: UNHEALTHY_AFTER,
            ..HealthConfig::default()
        })
        .build()
        .unwrap();
    let producer = Producer::builder(config)
        .start(transport, TokioRuntime::new())
        .unwrap();
    (producer, transport_metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_follow_an_outage_and_the_dashboard_names_real_series() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let prometheus = install_prometheus().unwrap();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    cluster.broker_down(-1).unwrap(); // Kafka is down when the service starts

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (producer, transport_metrics) = producer(cluster.bootstrap_servers());
    let service = MetricsService::start(
        producer,
        prometheus,
        listener,
        TrickleConfig::new(TOPIC, 20),
    )
    .unwrap();
    let addr = service.local_addr();

    not_ready_before_connecting(addr).await;
    cluster.broker_up(-1).unwrap();
    let before = ready_and_healthy_once_connected(addr).await;
    cluster.broker_down(-1).unwrap();
    outage_shows(addr, &before).await;
    cluster.broker_up(-1).unwrap();
    let last = recovered_and_drained(&service).await;
    unready_on_shutdown(service).await;

    // The outage made the transport rebuild its client, so a scrape with
    // the transport's metrics has rebuilds to show.
    let transport = transport_metrics.snapshot();
    assert!(transport.producers_built >= 2, "{transport:?}");

    dashboard_uses_only_scraped_names(&last);
    eprintln!("took {:?}", started.elapsed());
}

/// Never connected: the server answers, but is not ready.
async fn not_ready_before_connecting(addr: SocketAddr) {
    // Never connected: the server answers, but is not ready.
    let (status, ready) = probe(addr, "/readyz").await;
    assert_eq!(
        (status, &ready["connected_once"]),
        (503, &Value::Bool(false)),
        "{ready}"
    );
    assert_ne!(
        scrape(addr).await.one_of(names::STATE, "state"),
        "connected"
    );
}

/// Kafka up: ready, connected, healthy, records delivered. Returns that
/// scrape.
async fn ready_and_healthy_once_connected(addr: SocketAddr) -> Scrape {
    until("ready after the first connection", async || {
        match probe(addr, "/readyz").await {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    until("connected, healthy, delivering", async || {
        let s = scrape(addr).await;
        let (status, health) = probe(addr, "/healthz").await;
        let state = s.one_of(names::STATE, "state");
        let sent = s.value(names::SENT_EVENTS, &[]);
        if state == "connected" && status == 200 && sent > 0.0 {
            Ok(s)
        } else {
            Err(format!("{state}, {sent} sent, /healthz {status} {health}"))
        }
    })
    .await
}

/// Every broker down: the state leaves connected, records pile up and age,
/// `/healthz` turns 503 past the threshold, `/readyz` stays 200.
async fn outage_shows(addr: SocketAddr, before: &Scrape) {
    let held_before = before.value(names::BUFFER_EVENTS, &[]);
    let outage = Instant::now();
    let down_state = until("state not connected", async || {
        let state = scrape(addr).await.one_of(names::STATE, "state");
        if state == "connected" {
            Err(state)
        } else {
            Ok(state)
        }
    })
    .await;
    assert!(
        ["disconnected", "connecting"].contains(&down_state.as_str()),
        "{down_state}"
    );
    let unhealthy = until("/healthz 503 past the threshold", async || {
        match probe(addr, "/healthz").await {
            (503, body) => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eprintln!("unhealthy {:?} into the outage", outage.elapsed());
    assert_eq!(unhealthy["health"]["verdict"], "unhealthy", "{unhealthy}");
    let reasons = unhealthy["health"]["reasons"].to_string();
    assert!(reasons.contains("not connected"), "{unhealthy}");
    let down_for = unhealthy["stats"]["disconnected_for"].as_f64().unwrap();
    assert!(down_for >= UNHEALTHY_AFTER.as_secs_f64(), "{unhealthy}");
    assert_eq!(
        probe(addr, "/readyz").await.0,
        200,
        "an outage does not make it unready"
    );

    let during = scrape(addr).await;
    let held = during.value(names::BUFFER_EVENTS, &[]);
    let age = during.value(names::OLDEST_EVENT_AGE, &[]);
    assert!(
        held > held_before && held >= 10.0,
        "{held} held, {held_before} before"
    );
    assert!(age >= 2.0, "oldest age {age} s, {down_for} s disconnected");
    assert_ne!(during.one_of(names::STATE, "state"), "connected");
    assert_eq!(during.one_of(names::HEALTH, "verdict"), "unhealthy");
    until("the oldest age grows", async || {
        let now = scrape(addr).await.value(names::OLDEST_EVENT_AGE, &[]);
        if now >= age + 0.5 {
            Ok(())
        } else {
            Err(format!("{now} s, was {age} s"))
        }
    })
    .await;
}

/// Kafka back: connected and healthy again; with the trickle paused,
/// everything drains and the counters add up. Returns the last scrape.
async fn recovered_and_drained(service: &MetricsService) -> Scrape {
    let addr = service.local_addr();
    until("connected and healthy after the outage", async || {
        let state = scrape(addr).await.one_of(names::STATE, "state");
        let (status, health) = probe(addr, "/healthz").await;
        if state == "connected" && status == 200 {
            Ok(())
        } else {
            Err(format!("{state}, {status} {health}"))
        }
    })
    .await;
    service.trickle().pause();
    let last = until("drained", async || {
        let s = scrape(addr).await;
        let held = s.value(names::BUFFER_EVENTS, &[]);
        let age = s.value(names::OLDEST_EVENT_AGE, &[]);
        if held == 0.0 && age == 0.0 {
            Ok(s)
        } else {
            Err(format!("{held} held, oldest {age} s"))
        }
    })
    .await;
    assert_eq!(last.one_of(names::STATE, "state"), "connected");
    assert_eq!(last.one_of(names::HEALTH, "verdict"), "healthy");
    assert_eq!(last.value(names::IN_FLIGHT_EVENTS, &[]), 0.0);
    assert!(last.value(names::LINK_LOSSES, &[]) >= 1.0);
    assert!(last.value(names::CONNECT_ATTEMPTS, &[]) >= 2.0);
    assert!(last.value(names::DISCONNECTED_MILLIS, &[]) >= UNHEALTHY_AFTER.as_millis() as f64);
    assert_identity(&last);
    let accepted = service.trickle().accepted() as f64;
    assert_eq!(last.value(names::RECEIVED_EVENTS, &[]), accepted);
    assert_eq!(
        last.value(names::SENT_EVENTS, &[]),
        accepted,
        "all delivered"
    );
    assert_eq!(last.value(names::DELIVERY_DURATION_COUNT, &[]), accepted);

    last
}

/// Shutting down: unready at once, although still connected; nothing is
/// handed back.
async fn unready_on_shutdown(service: MetricsService) {
    let addr = service.local_addr();
    // Shutting down: unready at once, although still connected.
    service.readiness().shutting_down();
    let (status, ready) = probe(addr, "/readyz").await;
    assert_eq!(
        (status, &ready["state"]),
        (503, &Value::from("connected")),
        "{ready}"
    );
    let returned = service.shutdown(Duration::from_secs(10)).await.unwrap();
    assert!(returned.is_empty());
}

/// received = sent + discarded (every label set) + returned + held, in
/// events and in bytes.
fn assert_identity(s: &Scrape) {
    for (received, sent, discarded, returned, held) in [
        (
            names::RECEIVED_EVENTS,
            names::SENT_EVENTS,
            names::DISCARDED_EVENTS,
            names::RETURNED_EVENTS,
            names::BUFFER_EVENTS,
        ),
        (
            names::RECEIVED_BYTES,
            names::SENT_BYTES,
            names::DISCARDED_BYTES,
            names::RETURNED_BYTES,
            names::BUFFER_BYTE_SIZE,
        ),
    ] {
        let ended =
            s.value(sent, &[]) + s.sum(discarded) + s.value(returned, &[]) + s.value(held, &[]);
        assert_eq!(s.value(received, &[]), ended, "{received}\n{}", s.text);
    }
}

/// Every metric name in the dashboard's queries is a series of `scrape`.
fn dashboard_uses_only_scraped_names(scrape: &Scrape) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/robust-producer.json");
    let exprs = support::dashboard::exprs(&path);
    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|e| support::dashboard::metric_names(e))
        .collect();
    for panel in [
        names::BUFFER_EVENTS,
        names::OLDEST_EVENT_AGE,
        names::STATE,
        names::SENT_EVENTS,
        names::DISCARDED_EVENTS,
        names::CONNECT_ATTEMPTS,
        names::LINK_LOSSES,
        names::DISCONNECTED_MILLIS,
        names::HEALTH,
        names::IN_FLIGHT_EVENTS,
        names::DELIVERY_DURATION_BUCKET,
    ] {
        assert!(
            used.contains(panel),
            "the dashboard has no query on {panel}: {used:?}"
        );
    }
    let scraped = scrape.names();
    let missing: Vec<_> = used
        .iter()
        .filter(|n| !scraped.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {} names absent from a real scrape: {missing:?}\nscraped: {scraped:?}",
        missing.len()
    );
}
