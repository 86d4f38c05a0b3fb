//! The driver's metrics: [`crate::metrics::Metrics`] with the `metrics`
//! feature, and without it a twin whose calls do nothing.

#[cfg(feature = "metrics")]
pub(crate) use crate::metrics::Metrics as Monitor;

#[cfg(not(feature = "metrics"))]
pub(crate) use disabled::Monitor;

#[cfg(not(feature = "metrics"))]
mod disabled {
    use std::time::Instant;

    use crate::config::{Config, HealthConfig};
    use crate::stats::Stats;

    /// No metrics: the `metrics` feature is off.
    #[derive(Debug)]
    pub(crate) struct Monitor;

    impl Monitor {
        pub(crate) fn new(_: &Config) -> Self {
            Self
        }

        pub(crate) fn next_refresh(&self, _: Instant, _: bool) -> Option<Instant> {
            None
        }

        pub(crate) fn publish(&self, _: &Stats, _: &HealthConfig) {}
    }
}
