//! A service that exports its producer's metrics and health over HTTP:
//! `/metrics` in Prometheus text, `/healthz` (the verdict as status, the
//! reasons and stats as JSON) and `/readyz`, while it trickles 20 events a
//! second to Kafka; on SIGTERM or Ctrl-C it stops serving, closes the
//! producer and logs what was handed back.
//!
//! With no bootstrap servers given it starts librdkafka's in-process mock
//! cluster, so it runs on any machine:
//!
//! ```text
//! cargo run -p robust-producer-examples --example metrics_service
//! curl -s localhost:9898/metrics | grep robust_producer_
//! curl -s localhost:9898/healthz
//! ```
//!
//! Against a real cluster, and elsewhere:
//!
//! ```text
//! cargo run -p robust-producer-examples --example metrics_service -- \
//!     --bootstrap kafka:9092 --listen 0.0.0.0:9898
//! ```
//!
//! (or `KAFKA_BOOTSTRAP_SERVERS` and `METRICS_LISTEN` in the environment).
//! The code lives in the examples' library, `src/metrics_service/`.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use robust_producer::{Config, Producer, TokioRuntime};
use robust_producer_examples::metrics_service::{
    MetricsService, TrickleConfig, install_prometheus,
};
use robust_producer_rdkafka::rdkafka::mocking::MockCluster;
use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};
use tokio::net::TcpListener;

/// The service name: the `service` label of every series.
const SERVICE: &str = "patient-service";
const TOPIC: &str = "patient-events";
const DEFAULT_LISTEN: &str = "127.0.0.1:9898";
/// How long `close` may take to deliver what is held at shutdown.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Where to connect and listen, from the arguments or the environment.
struct Args {
    bootstrap: Option<String>,
    listen: SocketAddr,
}

impl Args {
    fn parse() -> Result<Self, Box<dyn Error>> {
        let mut bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok();
        let mut listen = std::env::var("METRICS_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.into());
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            match arg.as_str() {
                "--bootstrap" => bootstrap = Some(value),
                "--listen" => listen = value,
                _ => {
                    return Err(format!("unknown argument {arg}: use --bootstrap, --listen").into());
                }
            }
        }
        let listen = listen
            .parse()
            .map_err(|e| format!("--listen {listen}: {e}"))?;
        Ok(Self { bootstrap, listen })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse()?;
    // The recorder first: the producer registers its series at start.
    let prometheus = install_prometheus()?;

    let (mock, bootstrap) = match args.bootstrap {
        Some(servers) => (None, servers),
        None => {
            let mock = MockCluster::new(1)?; // one broker, inside this process
            mock.create_topic(TOPIC, 3, 1)?;
            let servers = mock.bootstrap_servers();
            tracing::info!(bootstrap = %servers, "started librdkafka's mock cluster");
            (Some(mock), servers)
        }
    };

    let transport = RdkafkaTransport::new(
        RdkafkaConfig::new(bootstrap)
            // The transport's series carry client.id as their `service`.
            .set("client.id", SERVICE)
            .statistics_interval(Duration::from_secs(1)),
    )?;
    let config = Config::builder().service_name(SERVICE).build()?;
    let producer = Producer::builder(config).start(transport, TokioRuntime::new())?;

    let listener = TcpListener::bind(args.listen).await?;
    let service = MetricsService::start(
        producer,
        prometheus,
        listener,
        TrickleConfig::new(TOPIC, 20),
    )?;

    shutdown_signal().await?;
    tracing::info!("shutting down");
    let returned = service.shutdown(CLOSE_WITHIN).await?;
    if !returned.is_empty() {
        // A real service would write these somewhere durable.
        tracing::warn!(records = returned.len(), "records handed back undelivered");
    }
    drop(mock); // after the producer closed
    Ok(())
}

/// Waits for Ctrl-C, or SIGTERM on Unix (what an orchestrator sends).
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            ctrl_c = tokio::signal::ctrl_c() => ctrl_c,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
