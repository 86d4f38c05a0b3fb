//! librdkafka's callbacks on a producer's [`Context`]: errors and log lines
//! ([`ClientContext`]), which end sessions, declare fatal errors and decide
//! how loud an outage is, and delivery reports ([`ProducerContext`]), which
//! become `Delivered` or `Failed` events.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;
use rdkafka::statistics::Statistics;
use robust_producer::{Ack, RecordId, TransportEvent};
use tracing::{debug, error, info, trace, warn};

use super::context::Context;
use super::poller::ON_POLL_THREAD;
use crate::classify::{
    Disposition, client_error, client_log_line, delivery_failure, describe, is_misconfiguration,
};
use crate::logs::{Severity, severity};
use crate::statistics::LibrdkafkaStatistics;

impl ClientContext for Context {
    /// A statistics snapshot (every `statistics.interval.ms`, when
    /// enabled): kept as the transport's latest unless this producer was
    /// retired, and turned into gauges with the `metrics` feature.
    fn stats(&self, statistics: Statistics) {
        let snapshot = LibrdkafkaStatistics::from_rdkafka(&statistics, Instant::now());
        debug!(
            client = %snapshot.client_name,
            queue_messages = snapshot.queue_messages,
            queue_bytes = snapshot.queue_bytes,
            brokers = snapshot.brokers.len(),
            brokers_up = snapshot.brokers_up(),
            "librdkafka statistics"
        );
        if !self.statistics.follows(self.serial) {
            return; // a retired producer's
        }
        #[cfg(feature = "metrics")]
        self.exporter.record(&snapshot);
        self.statistics.offer(self.serial, snapshot);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // rdkafka may call this twice per error event: everything here is
        // idempotent.
        // Levels: see `crate::logs`.
        let code = error.rdkafka_error_code();
        match code {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                // Kept apart from `last_error`, which says why they are down.
                self.all_down.store(true, Ordering::Release);
                self.counters
                    .all_brokers_down
                    .fetch_add(1, Ordering::Relaxed);
                self.log_outage("all kafka brokers are down", reason);
                self.confirm_all_down(format!("all brokers down: {reason}"));
            }
            Some(RDKafkaErrorCode::Fatal) => {
                if !self.check_fatal() {
                    // The callback said fatal but the client does not (yet):
                    // trust the callback.
                    self.declare_fatal(reason.to_owned());
                }
            }
            Some(code) => {
                let kept = client_error(code, reason);
                match severity(code) {
                    // Before the outage rule: a refused client certificate
                    // comes as a transport failure.
                    _ if is_misconfiguration(&kept) => error!(
                        error = %describe(code),
                        reason = %kept,
                        "kafka refused this client's credentials or certificates; \
                         retrying cannot fix that: correct the configuration and build a \
                         new transport (records stay queued meanwhile)"
                    ),
                    Severity::Outage => self.log_outage("kafka unreachable", reason),
                    Severity::Person => error!(
                        error = %describe(code),
                        %reason,
                        "librdkafka reported an error that needs attention \
                         (credentials, certificates, permissions or configuration)"
                    ),
                    Severity::Other => {
                        warn!(error = %describe(code), %reason, "librdkafka reported an error");
                    }
                }
                self.set_last_error(kept);
            }
            None => {
                warn!(%error, %reason, "librdkafka reported an error");
                self.set_last_error(reason.to_owned());
            }
        }
    }

    /// librdkafka's log lines, at levels that fit (see `crate::logs`):
    /// a broker failure (`FAIL`) is also reported to [`Self::error`] with its
    /// code, which decides how loud it is, so its log line goes to `debug`
    /// (or, below librdkafka's error level, `warn` once per outage); other
    /// lines keep librdkafka's level.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        use RDKafkaLogLevel as L;
        let broker_failure = fac == "FAIL";
        if broker_failure && !matches!(level, L::Debug) {
            self.set_last_error(client_log_line(log_message));
        }
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                if broker_failure || fac == "ERROR" {
                    debug!(target: "librdkafka", facility = fac, "{log_message}");
                } else {
                    error!(target: "librdkafka", facility = fac, "{log_message}");
                }
            }
            L::Warning if broker_failure => {
                if self.outage_log.first() {
                    warn!(target: "librdkafka", facility = fac, "{log_message}");
                } else {
                    info!(target: "librdkafka", facility = fac, "{log_message}");
                }
            }
            L::Warning => warn!(target: "librdkafka", facility = fac, "{log_message}"),
            L::Notice | L::Info => info!(target: "librdkafka", facility = fac, "{log_message}"),
            L::Debug => debug!(target: "librdkafka", facility = fac, "{log_message}"),
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        if ON_POLL_THREAD.with(Cell::get) {
            self.counters
                .reports_by_poll_thread
                .fetch_add(1, Ordering::Relaxed);
        }
        let generation = self.generation();
        let id = RecordId(opaque as u64);
        match result {
            Ok(message) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                // librdkafka reports no offset with acks=0 (offset -1001,
                // RD_KAFKA_OFFSET_INVALID): a negative value is "unknown".
                let partition = message.partition();
                let offset = message.offset();
                self.push_report(
                    generation,
                    TransportEvent::Delivered(Ack {
                        id,
                        partition: (partition >= 0).then_some(partition),
                        offset: (offset >= 0).then_some(offset),
                    }),
                );
            }
            Err((error, _)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.on_failure(generation, id, error);
            }
        }
        // Read first: a swap on every report would be a locked write each.
        if self.backpressured.load(Ordering::Acquire)
            && self.backpressured.swap(false, Ordering::AcqRel)
        {
            self.push_report(generation, TransportEvent::Ready);
        }
    }
}

impl Context {
    /// A record failed: reported for the record, for its session, or as
    /// fatal, as [`delivery_failure`] classifies it.
    fn on_failure(&self, generation: u64, id: RecordId, error: &KafkaError) {
        // After a fatal error librdkafka fails what it held (purged, fatal,
        // or the error that caused it); the core resends all of it.
        if self.fatal.load(Ordering::Acquire) || self.check_fatal() {
            trace!(%id, %error, "record failed after a fatal error");
            return;
        }
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        match delivery_failure(code) {
            Disposition::Record(e) => {
                debug!(%id, reason = %e.reason, "record failed");
                self.push_report(generation, TransportEvent::Failed { id, error: e });
            }
            Disposition::Session(reason) => {
                self.end_session(format!("{id} failed: {reason}"), true);
            }
            Disposition::Fatal(reason) => self.declare_fatal(format!("{id} failed: {reason}")),
            Disposition::Isolate(e) => {
                debug!(%id, reason = %e.reason, "record's batch refused; the core resends it alone");
                let reason = format!("{id}'s batch refused: {}", e.reason);
                self.push_report(generation, TransportEvent::Failed { id, error: e });
                self.end_session(reason, true);
            }
        }
    }
}
