//! [`TransportMetrics`]: what the transport itself counts (producers built,
//! sessions, link losses, fatal errors) and librdkafka's latest statistics,
//! readable while the transport is owned by the producer's driver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::statistics::{LibrdkafkaStatistics, StatisticsStore};

/// The counters, shared with the transport's threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) producers_built: AtomicU64,
    pub(crate) sessions: AtomicU64,
    pub(crate) connected: AtomicU64,
    pub(crate) connect_failed: AtomicU64,
    pub(crate) link_lost: AtomicU64,
    pub(crate) all_brokers_down: AtomicU64,
    pub(crate) fatal: AtomicU64,
    pub(crate) handed_off: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) backpressure: AtomicU64,
    pub(crate) stale_events: AtomicU64,
    pub(crate) reports_by_poll_thread: AtomicU64,
}

impl Counters {
    /// Delivery reports served so far, successful or not.
    pub(crate) fn reports(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

/// A cloneable handle on the transport's counters and librdkafka's latest
/// statistics; see
/// [`RdkafkaTransport::metrics`](crate::RdkafkaTransport::metrics).
#[derive(Debug, Clone)]
pub struct TransportMetrics {
    pub(crate) counters: Arc<Counters>,
    pub(crate) statistics: Arc<StatisticsStore>,
}

/// The transport's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// librdkafka producers built (the first, plus one per rebuild after a
    /// lost session or a fatal error).
    pub producers_built: u64,
    /// Sessions started (`connect` calls).
    pub sessions: u64,
    /// Sessions whose metadata probe succeeded.
    pub connected: u64,
    /// Sessions whose metadata probe failed.
    pub connect_failed: u64,
    /// Sessions ended by a lost link (every broker down and none answering
    /// within the probe timeout, or a record failure retried at session
    /// granularity).
    pub link_lost: u64,
    /// Times librdkafka reported every broker it knew down. The session
    /// ends (a lost link) only if no broker then answers within the probe
    /// timeout: librdkafka re-bootstraps and may reach brokers it did not
    /// know.
    pub all_brokers_down: u64,
    /// Fatal errors (`fatal_error()` set, or idempotence state errors).
    pub fatal: u64,
    /// Records handed to librdkafka.
    pub handed_off: u64,
    /// Delivery reports with success.
    pub delivered: u64,
    /// Delivery reports with an error (any session).
    pub failed: u64,
    /// Hand-offs refused because librdkafka's queue was full.
    pub backpressure: u64,
    /// Events dropped because they were about an abandoned session.
    pub stale_events: u64,
    /// Delivery reports served by the transport's poll thread rather than
    /// inline on the driver's thread. Low under load: the driver serves
    /// them itself while it runs, and is nudged to when idle.
    pub reports_by_poll_thread: u64,
}

impl TransportMetrics {
    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            producers_built: get(&c.producers_built),
            sessions: get(&c.sessions),
            connected: get(&c.connected),
            connect_failed: get(&c.connect_failed),
            link_lost: get(&c.link_lost),
            all_brokers_down: get(&c.all_brokers_down),
            fatal: get(&c.fatal),
            handed_off: get(&c.handed_off),
            delivered: get(&c.delivered),
            failed: get(&c.failed),
            backpressure: get(&c.backpressure),
            stale_events: get(&c.stale_events),
            reports_by_poll_thread: get(&c.reports_by_poll_thread),
        }
    }

    /// librdkafka's latest statistics snapshot (queue depth, per-broker
    /// state, round-trip time and outstanding requests); `None` until the
    /// first arrives, and always when statistics are off (the default: see
    /// [`RdkafkaConfig::statistics_interval`](crate::RdkafkaConfig::statistics_interval)).
    /// Kept across producer rebuilds: check its
    /// [`age`](LibrdkafkaStatistics::age).
    pub fn librdkafka_statistics(&self) -> Option<LibrdkafkaStatistics> {
        self.statistics.latest()
    }
}
