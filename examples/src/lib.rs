//! Code the examples share with their tests: the [`metrics_service`] that
//! `metrics_service.rs` runs and `tests/metrics_scrape.rs` scrapes.

pub mod metrics_service;
