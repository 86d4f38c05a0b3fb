//! The Prometheus recorder the service renders `/metrics` from.
//!
//! The producer publishes only counters and gauges (its delivery-duration
//! histogram comes already bucketed), so the recorder needs no buckets and
//! no upkeep task.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::ServiceError;

/// Installs the process-wide Prometheus recorder and returns the handle
/// that renders it. Call it once, before building any producer.
///
/// # Errors
///
/// [`ServiceError::Recorder`] when a recorder is installed already.
pub fn install_prometheus() -> Result<PrometheusHandle, ServiceError> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}
