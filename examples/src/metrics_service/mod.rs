//! A service that exports its producer's metrics and health over HTTP:
//! `/metrics` (Prometheus text), `/healthz` and `/readyz` ([`routes`]),
//! a steady [`trickle`] of events so the numbers move, and a clean
//! shutdown ([`MetricsService::shutdown`]).
//!
//! Install the recorder ([`install_prometheus`]) before building the
//! producer, then hand both to [`MetricsService::start`].

mod error;
mod readiness;
mod recorder;
pub mod routes;
pub mod trickle;

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use robust_producer::{Producer, Record};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use error::ServiceError;
pub use readiness::Readiness;
pub use recorder::install_prometheus;
pub use trickle::{Trickle, TrickleConfig};

/// The running service: the HTTP server, the trickle, and the producer
/// they share.
#[derive(Debug)]
pub struct MetricsService {
    local_addr: SocketAddr,
    producer: Producer,
    readiness: Readiness,
    trickle: Trickle,
    stop_server: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl MetricsService {
    /// Serves `producer`'s metrics (rendered by `prometheus`, the handle of
    /// the installed recorder) and health on `listener`, and starts
    /// trickling events as `trickle` says. Call it inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Http`] when the listener has no local address.
    pub fn start(
        producer: Producer,
        prometheus: PrometheusHandle,
        listener: TcpListener,
        trickle: TrickleConfig,
    ) -> Result<Self, ServiceError> {
        let local_addr = listener.local_addr()?;
        let readiness = Readiness::follow(&producer);
        let app = routes::router(routes::AppState {
            producer: producer.clone(),
            prometheus,
            readiness: readiness.clone(),
        });
        let (stop_server, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped sender stops the server too.
                    let _ = stopped.await;
                })
                .await
        });
        let trickle = Trickle::start(producer.clone(), trickle);
        tracing::info!(%local_addr, "serving /metrics, /healthz and /readyz");
        Ok(Self {
            local_addr,
            producer,
            readiness,
            trickle,
            stop_server,
            server,
        })
    }

    /// The address the HTTP server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The producer the service publishes through.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// What `/readyz` answers from.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The trickle of events, to pause and resume it.
    pub fn trickle(&self) -> &Trickle {
        &self.trickle
    }

    /// Shuts down in order: `/readyz` turns 503, the trickle stops, the
    /// HTTP server stops gracefully (requests under way are answered), then
    /// the producer closes, delivering what it can within `close_within`.
    /// Returns the records it handed back (logged with their count).
    ///
    /// # Errors
    ///
    /// [`ServiceError`] when the HTTP server failed; the producer is closed
    /// all the same.
    pub async fn shutdown(self, close_within: Duration) -> Result<Vec<Record>, ServiceError> {
        self.readiness.shutting_down();
        self.trickle.stop().await;
        let _ = self.stop_server.send(());
        let served = self.server.await;
        let returned = self.producer.close(close_within).await;
        let stats = self.producer.stats();
        tracing::info!(
            handed_back = returned.len(),
            delivered = stats.delivered,
            dead_lettered = stats.dead_lettered,
            dropped = stats.dropped,
            "producer closed"
        );
        served??;
        Ok(returned)
    }
}
