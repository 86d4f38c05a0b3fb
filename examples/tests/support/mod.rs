//! Helpers of the scrape test: an HTTP client, a Prometheus text parser,
//! and the metric names a Grafana dashboard's queries use.

pub(crate) mod dashboard;
pub(crate) mod http;
pub(crate) mod prom;
