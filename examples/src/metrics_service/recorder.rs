//! The Prometheus recorder the service renders `/metrics` from, with the
//! delivery-duration histogram in Prometheus' bucket layout.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use robust_producer::metrics::DELIVERY_DURATION;

use super::ServiceError;

/// Upper bounds, in seconds, of the delivery-duration histogram's buckets:
/// from a millisecond (a healthy cluster) to five minutes (a backlog
/// delivered after an outage).
pub const DELIVERY_DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// How often the recorder's upkeep runs (drains histogram samples).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder and returns the handle
/// that renders it. Call it once, before building any producer.
///
/// # Errors
///
/// [`ServiceError::Recorder`] when a recorder is installed already.
pub fn install_prometheus() -> Result<PrometheusHandle, ServiceError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(DELIVERY_DURATION.to_owned()),
            &DELIVERY_DURATION_BUCKETS,
        )?
        .install_recorder()?;
    Ok(handle)
}
