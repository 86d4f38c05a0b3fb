//! The service's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use axum::Json;
use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use robust_producer::{Health, Producer, State, Stats};
use serde::Serialize;

use super::Readiness;

/// The `Content-Type` of Prometheus' text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The producer reported on.
    pub producer: Producer,
    /// Renders the installed Prometheus recorder.
    pub prometheus: PrometheusHandle,
    /// Whether `/readyz` says ready.
    pub readiness: Readiness,
}

/// The router serving the three endpoints over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// `/metrics`: every series of the recorder in Prometheus text, the
/// producer's copied from its stats just before rendering (so that the
/// counters of one scrape add up).
pub async fn metrics(Extract(app): Extract<AppState>) -> impl IntoResponse {
    app.producer.publish_metrics();
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        app.prometheus.render(),
    )
}

/// The body of `/healthz`.
#[derive(Debug, Serialize)]
pub struct HealthBody {
    /// The verdict and its reasons.
    pub health: Health,
    /// The producer's counters and gauges, read just after the verdict.
    pub stats: Stats,
}

/// `/healthz`: the status follows the verdict
/// ([`Verdict::http_status`](robust_producer::Verdict::http_status): 200
/// for healthy and degraded, 503 for unhealthy); the JSON body is
/// `{"health": {"verdict": ..., "reasons": [...]}, "stats": {...}}`.
pub async fn healthz(Extract(app): Extract<AppState>) -> (StatusCode, Json<HealthBody>) {
    let health = app.producer.health();
    let stats = app.producer.stats();
    let status = StatusCode::from_u16(health.verdict.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(HealthBody { health, stats }))
}

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub struct ReadyBody {
    /// Whether the service is ready.
    pub ready: bool,
    /// The producer's state now.
    pub state: State,
    /// Whether the producer has been connected since start.
    pub connected_once: bool,
}

/// `/readyz`: 200 once the producer has been connected at least once
/// since start, until the service starts shutting down (or the producer
/// is closed or failed); 503 before and after.
///
/// An outage after that first connection does not make the service
/// unready: the producer keeps accepting and holding events while Kafka
/// is down, and taking every replica out of rotation at once would turn a
/// Kafka outage into an outage of this service. `/healthz` reports the
/// outage instead. The first connection is required because it shows that
/// the configuration (addresses, credentials) works, so a rollout with a
/// wrong one stops at the first replica. Nothing else waits for Kafka: the
/// server answers from the start, so a liveness probe on any endpoint
/// (the TCP port, say) does not depend on the cluster.
pub async fn readyz(Extract(app): Extract<AppState>) -> (StatusCode, Json<ReadyBody>) {
    let state = app.producer.state();
    let ready = app.readiness.is_ready(state);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadyBody {
        ready,
        state,
        connected_once: app.readiness.connected_once(),
    };
    (status, Json(body))
}
