//! The producer's metrics, through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): their names, and the recorder handles the
//! driver publishes to.
//!
//! Nothing is exported by this crate: install any `metrics` recorder (for
//! Prometheus, `metrics-exporter-prometheus`) before building the
//! producer, and every producer publishes to it. Every series carries the
//! label `service` ([`Config::service_name`](crate::Config::service_name)).
//!
//! # When values move
//!
//! - Everything is copied from [`Stats`] and [`Health`]: at each state
//!   transition, every [`REFRESH`] while records are held or the producer
//!   is not connected, and whenever
//!   [`Producer::publish_metrics`](crate::Producer::publish_metrics) is
//!   called (call it before rendering a scrape for exact values). A quiet,
//!   connected producer with nothing held does not wake up to refresh.
//! - The counters are the [`Stats`] counters, so the accounting identity of
//!   [`Stats::check_accounting`] holds on any scrape taken while nothing is
//!   sent: `buffer_received = buffer_sent + buffer_discarded (both reasons)
//!   + returned + buffer_events`, in events and in bytes.
//!
//! # The series
//!
//! Names follow Vector's buffer metrics where Vector defines the thing, and
//! OpenTelemetry's messaging conventions where those do; the last column
//! gives the equivalent.
//!
//! | name | type | unit | labels | meaning | equivalent |
//! |---|---|---|---|---|---|
//! | `robust_producer_state` | gauge | 1 | `state` | 1 for the current [`State`], 0 for the others | |
//! | `robust_producer_health` | gauge | 1 | `verdict` | 1 for the current [`Verdict`], 0 for the others | |
//! | `robust_producer_buffer_events` | gauge | records | | records held: waiting and in flight | Vector `buffer_events` |
//! | `robust_producer_buffer_byte_size` | gauge | bytes | | bytes held | Vector `buffer_byte_size` |
//! | `robust_producer_in_flight_events` | gauge | records | | records sent and not yet acknowledged | |
//! | `robust_producer_oldest_event_age_seconds` | gauge | seconds | | age of the oldest record held (0 when none) | |
//! | `robust_producer_buffer_received_events_total` | counter | records | | records accepted | Vector `buffer_received_events_total` |
//! | `robust_producer_buffer_received_event_bytes_total` | counter | bytes | | bytes accepted | Vector `buffer_received_event_bytes_total` |
//! | `robust_producer_buffer_sent_events_total` | counter | records | | records the broker acknowledged | Vector `buffer_sent_events_total`; OTel `messaging.client.sent.messages` (successes) |
//! | `robust_producer_buffer_sent_event_bytes_total` | counter | bytes | | bytes acknowledged | Vector `buffer_sent_event_bytes_total` |
//! | `robust_producer_buffer_discarded_events_total` | counter | records | `reason` (`dead_lettered`, `dropped`), `intentional` | records that left undelivered: dead-lettered (`intentional="false"`) or dropped by the overflow policy (`intentional="true"`) | Vector `buffer_discarded_events_total` |
//! | `robust_producer_buffer_discarded_event_bytes_total` | counter | bytes | as above | their bytes | Vector `buffer_discarded_event_bytes_total` |
//! | `robust_producer_returned_events_total` | counter | records | | records `close` handed back | |
//! | `robust_producer_returned_event_bytes_total` | counter | bytes | | their bytes | |
//! | `robust_producer_retried_events_total` | counter | records | | resends after retriable failures | |
//! | `robust_producer_delivery_duration_seconds_bucket` | counter | records | `le` | records acknowledged at most `le` seconds after acceptance (buckets: [`DELIVERY_BUCKETS`], and `+Inf`) | OTel `messaging.client.operation.duration` (`send`, measured end to end) |
//! | `robust_producer_delivery_duration_seconds_count` | counter | records | | records acknowledged | |
//! | `robust_producer_delivery_duration_seconds_sum` | gauge | seconds | | their waits added up | |
//! | `robust_producer_connect_attempts_total` | counter | attempts | | connect attempts | |
//! | `robust_producer_link_losses_total` | counter | losses | | established links lost (hangs and fatal errors included) | |
//! | `robust_producer_disconnected_milliseconds_total` | counter | milliseconds | | time spent not connected; `rate()` of it / 1000 is the fraction of time down | |
//! | `robust_producer_spool_byte_size` | gauge | bytes | | bytes the spool keeps on disk (with a spool that says) | |
//! | `robust_producer_spool_durable_lag_events` | gauge | records | | records accepted after the last Durable one (with a spool) | |
//!
//! The delivery duration is a histogram in Prometheus' layout
//! (`histogram_quantile(0.99, sum by (le) (rate(robust_producer_delivery_duration_seconds_bucket[5m])))`
//! works), counted by the producer in fixed buckets rather than recorded per
//! record through the facade: exact at any rate, with no per-record cost in
//! the recorder and no memory growing between scrapes. The `_sum` is a gauge
//! and the time disconnected is counted in milliseconds because `metrics`
//! counters are integers. Topics are not a label: their number is the
//! application's to bound, not ours. The rdkafka transport adds its own
//! series (client rebuilds, librdkafka's statistics) with its `metrics`
//! feature.

use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, SharedString, Unit};

use crate::config::{Config, HealthConfig};
use crate::histogram::DELIVERY_BUCKETS;
use crate::state::State;
use crate::stats::{Health, Stats, Verdict};
use crate::time::deadline_after;

/// How often a producer with records held, or not connected, refreshes
/// its gauges and counters without being asked.
pub const REFRESH: Duration = Duration::from_secs(1);

/// `robust_producer_state`: 1 for the current state (label `state`).
pub const STATE: &str = "robust_producer_state";
/// `robust_producer_health`: 1 for the current verdict (label `verdict`).
pub const HEALTH: &str = "robust_producer_health";
/// Records held.
pub const BUFFER_EVENTS: &str = "robust_producer_buffer_events";
/// Bytes held.
pub const BUFFER_BYTE_SIZE: &str = "robust_producer_buffer_byte_size";
/// Records in flight.
pub const IN_FLIGHT_EVENTS: &str = "robust_producer_in_flight_events";
/// Age of the oldest record held, in seconds.
pub const OLDEST_EVENT_AGE: &str = "robust_producer_oldest_event_age_seconds";
/// Records accepted.
pub const RECEIVED_EVENTS: &str = "robust_producer_buffer_received_events_total";
/// Bytes accepted.
pub const RECEIVED_BYTES: &str = "robust_producer_buffer_received_event_bytes_total";
/// Records acknowledged.
pub const SENT_EVENTS: &str = "robust_producer_buffer_sent_events_total";
/// Bytes acknowledged.
pub const SENT_BYTES: &str = "robust_producer_buffer_sent_event_bytes_total";
/// Records dead-lettered or dropped (labels `reason`, `intentional`).
pub const DISCARDED_EVENTS: &str = "robust_producer_buffer_discarded_events_total";
/// Bytes dead-lettered or dropped (labels `reason`, `intentional`).
pub const DISCARDED_BYTES: &str = "robust_producer_buffer_discarded_event_bytes_total";
/// Records handed back by `close`.
pub const RETURNED_EVENTS: &str = "robust_producer_returned_events_total";
/// Bytes handed back by `close`.
pub const RETURNED_BYTES: &str = "robust_producer_returned_event_bytes_total";
/// Resends after retriable failures.
pub const RETRIED_EVENTS: &str = "robust_producer_retried_events_total";
/// Records acknowledged at most `le` seconds after acceptance (label `le`).
pub const DELIVERY_DURATION_BUCKET: &str = "robust_producer_delivery_duration_seconds_bucket";
/// Records acknowledged.
pub const DELIVERY_DURATION_COUNT: &str = "robust_producer_delivery_duration_seconds_count";
/// Their waits added up, in seconds.
pub const DELIVERY_DURATION_SUM: &str = "robust_producer_delivery_duration_seconds_sum";
/// Connect attempts.
pub const CONNECT_ATTEMPTS: &str = "robust_producer_connect_attempts_total";
/// Established links lost.
pub const LINK_LOSSES: &str = "robust_producer_link_losses_total";
/// Time not connected, in milliseconds.
pub const DISCONNECTED_MILLIS: &str = "robust_producer_disconnected_milliseconds_total";
/// Bytes the spool keeps on disk.
pub const SPOOL_BYTE_SIZE: &str = "robust_producer_spool_byte_size";
/// Records accepted after the last Durable one.
pub const SPOOL_DURABLE_LAG: &str = "robust_producer_spool_durable_lag_events";

const STATES: [State; 6] = [
    State::Disconnected,
    State::Connecting,
    State::Connected,
    State::Draining,
    State::Closed,
    State::Failed,
];
const VERDICTS: [Verdict; 3] = [Verdict::Healthy, Verdict::Degraded, Verdict::Unhealthy];

/// Handles on one producer's series, registered once at start.
#[derive(Debug)]
pub(crate) struct Metrics {
    state: [Gauge; STATES.len()],
    health: [Gauge; VERDICTS.len()],
    buffer_events: Gauge,
    buffer_bytes: Gauge,
    in_flight: Gauge,
    oldest_age: Gauge,
    received: (Counter, Counter),
    sent: (Counter, Counter),
    dead_lettered: (Counter, Counter),
    dropped: (Counter, Counter),
    returned: (Counter, Counter),
    retried: Counter,
    connect_attempts: Counter,
    link_losses: Counter,
    disconnected_ms: Counter,
    spool_bytes: Gauge,
    durable_lag: Gauge,
    delivery_buckets: [Counter; DELIVERY_BUCKETS.len() + 1],
    delivery_count: Counter,
    delivery_sum: Gauge,
}

impl Metrics {
    /// Describes the series and registers this producer's handles.
    pub(crate) fn new(config: &Config) -> Self {
        describe();
        let service = SharedString::from(config.service_name().to_owned());
        let s = || service.clone();
        let discarded = |reason: &'static str, intentional: &'static str| {
            let labels = [
                ("service", s()),
                ("reason", reason.into()),
                ("intentional", intentional.into()),
            ];
            (
                metrics::counter!(DISCARDED_EVENTS, &labels),
                metrics::counter!(DISCARDED_BYTES, &labels),
            )
        };
        Self {
            state: STATES.map(|st| metrics::gauge!(STATE, "service" => s(), "state" => label(st))),
            health: VERDICTS
                .map(|v| metrics::gauge!(HEALTH, "service" => s(), "verdict" => verdict_label(v))),
            buffer_events: metrics::gauge!(BUFFER_EVENTS, "service" => s()),
            buffer_bytes: metrics::gauge!(BUFFER_BYTE_SIZE, "service" => s()),
            in_flight: metrics::gauge!(IN_FLIGHT_EVENTS, "service" => s()),
            oldest_age: metrics::gauge!(OLDEST_EVENT_AGE, "service" => s()),
            received: (
                metrics::counter!(RECEIVED_EVENTS, "service" => s()),
                metrics::counter!(RECEIVED_BYTES, "service" => s()),
            ),
            sent: (
                metrics::counter!(SENT_EVENTS, "service" => s()),
                metrics::counter!(SENT_BYTES, "service" => s()),
            ),
            dead_lettered: discarded("dead_lettered", "false"),
            dropped: discarded("dropped", "true"),
            returned: (
                metrics::counter!(RETURNED_EVENTS, "service" => s()),
                metrics::counter!(RETURNED_BYTES, "service" => s()),
            ),
            retried: metrics::counter!(RETRIED_EVENTS, "service" => s()),
            connect_attempts: metrics::counter!(CONNECT_ATTEMPTS, "service" => s()),
            link_losses: metrics::counter!(LINK_LOSSES, "service" => s()),
            disconnected_ms: metrics::counter!(DISCONNECTED_MILLIS, "service" => s()),
            spool_bytes: metrics::gauge!(SPOOL_BYTE_SIZE, "service" => s()),
            durable_lag: metrics::gauge!(SPOOL_DURABLE_LAG, "service" => s()),
            delivery_buckets: std::array::from_fn(|i| {
                let le = DELIVERY_BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| b.as_secs_f64().to_string());
                metrics::counter!(DELIVERY_DURATION_BUCKET, "service" => s(), "le" => le)
            }),
            delivery_count: metrics::counter!(DELIVERY_DURATION_COUNT, "service" => s()),
            delivery_sum: metrics::gauge!(DELIVERY_DURATION_SUM, "service" => s()),
        }
    }

    /// When to refresh the series unasked after publishing at `now`: every
    /// [`REFRESH`] while they `move` (records held, or not connected).
    pub(crate) fn next_refresh(&self, now: Instant, move_: bool) -> Option<Instant> {
        move_.then(|| deadline_after(now, REFRESH))
    }

    /// Copies `stats`, and the verdict `rules` give, to the series.
    pub(crate) fn publish(&self, stats: &Stats, rules: &HealthConfig) {
        let health = Health::assess(stats, rules);
        for (gauge, st) in self.state.iter().zip(STATES) {
            gauge.set(if st == stats.state { 1.0 } else { 0.0 });
        }
        for (gauge, v) in self.health.iter().zip(VERDICTS) {
            gauge.set(if v == health.verdict { 1.0 } else { 0.0 });
        }
        self.buffer_events.set(stats.queued_records as f64);
        self.buffer_bytes.set(stats.queued_bytes as f64);
        self.in_flight.set(stats.in_flight as f64);
        self.oldest_age
            .set(stats.oldest_queued_age.map_or(0.0, |age| age.as_secs_f64()));
        let pairs = [
            (&self.received, stats.accepted, stats.accepted_bytes),
            (&self.sent, stats.delivered, stats.delivered_bytes),
            (
                &self.dead_lettered,
                stats.dead_lettered,
                stats.dead_lettered_bytes,
            ),
            (&self.dropped, stats.dropped, stats.dropped_bytes),
            (&self.returned, stats.returned, stats.returned_bytes),
        ];
        for ((events, bytes), n, b) in pairs {
            events.absolute(n);
            bytes.absolute(b);
        }
        self.retried.absolute(stats.retried);
        self.connect_attempts.absolute(stats.reconnect_attempts);
        self.link_losses.absolute(stats.link_losses);
        let delivery = &stats.delivery_duration;
        for (counter, (_, n)) in self.delivery_buckets.iter().zip(delivery.cumulative()) {
            counter.absolute(n);
        }
        self.delivery_count.absolute(delivery.count());
        self.delivery_sum.set(delivery.sum().as_secs_f64());
        let down_ms = u64::try_from(stats.disconnected_total.as_millis()).unwrap_or(u64::MAX);
        self.disconnected_ms.absolute(down_ms);
        if let Some(spool) = &stats.spool {
            if let Some(bytes) = spool.bytes {
                self.spool_bytes.set(bytes as f64);
            }
            self.durable_lag.set(spool.durable_lag as f64);
        }
    }
}

/// The `state` label's value: the state's JSON name.
fn label(state: State) -> &'static str {
    match state {
        State::Disconnected => "disconnected",
        State::Connecting => "connecting",
        State::Connected => "connected",
        State::Draining => "draining",
        State::Closed => "closed",
        State::Failed => "failed",
    }
}

/// The `verdict` label's value: the verdict's JSON name.
fn verdict_label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Healthy => "healthy",
        Verdict::Degraded => "degraded",
        Verdict::Unhealthy => "unhealthy",
    }
}

/// A series' kind, for [`describe`].
enum Kind {
    Counter,
    Gauge,
}

/// Every series with its kind, unit and description.
const SERIES: [(&str, Kind, Unit, &str); 23] = [
    (
        STATE,
        Kind::Gauge,
        Unit::Count,
        "1 for the producer's current state, 0 for the others",
    ),
    (
        HEALTH,
        Kind::Gauge,
        Unit::Count,
        "1 for the producer's current health verdict, 0 for the others",
    ),
    (
        BUFFER_EVENTS,
        Kind::Gauge,
        Unit::Count,
        "Records held: waiting and in flight",
    ),
    (
        BUFFER_BYTE_SIZE,
        Kind::Gauge,
        Unit::Bytes,
        "Bytes held: waiting and in flight",
    ),
    (
        IN_FLIGHT_EVENTS,
        Kind::Gauge,
        Unit::Count,
        "Records sent and not yet acknowledged",
    ),
    (
        OLDEST_EVENT_AGE,
        Kind::Gauge,
        Unit::Seconds,
        "Age of the oldest record held",
    ),
    (
        RECEIVED_EVENTS,
        Kind::Counter,
        Unit::Count,
        "Records accepted",
    ),
    (RECEIVED_BYTES, Kind::Counter, Unit::Bytes, "Bytes accepted"),
    (
        SENT_EVENTS,
        Kind::Counter,
        Unit::Count,
        "Records the broker acknowledged",
    ),
    (
        SENT_BYTES,
        Kind::Counter,
        Unit::Bytes,
        "Bytes the broker acknowledged",
    ),
    (
        DISCARDED_EVENTS,
        Kind::Counter,
        Unit::Count,
        "Records dead-lettered or dropped by the overflow policy",
    ),
    (
        DISCARDED_BYTES,
        Kind::Counter,
        Unit::Bytes,
        "Bytes dead-lettered or dropped by the overflow policy",
    ),
    (
        RETURNED_EVENTS,
        Kind::Counter,
        Unit::Count,
        "Records handed back at shutdown",
    ),
    (
        RETURNED_BYTES,
        Kind::Counter,
        Unit::Bytes,
        "Bytes handed back at shutdown",
    ),
    (
        RETRIED_EVENTS,
        Kind::Counter,
        Unit::Count,
        "Resends after retriable failures",
    ),
    (
        DELIVERY_DURATION_BUCKET,
        Kind::Counter,
        Unit::Count,
        "Records acknowledged at most le seconds after acceptance",
    ),
    (
        DELIVERY_DURATION_COUNT,
        Kind::Counter,
        Unit::Count,
        "Records acknowledged (the delivery duration histogram's count)",
    ),
    (
        DELIVERY_DURATION_SUM,
        Kind::Gauge,
        Unit::Seconds,
        "Delivery durations added up",
    ),
    (
        CONNECT_ATTEMPTS,
        Kind::Counter,
        Unit::Count,
        "Connect attempts",
    ),
    (
        LINK_LOSSES,
        Kind::Counter,
        Unit::Count,
        "Established links lost",
    ),
    (
        DISCONNECTED_MILLIS,
        Kind::Counter,
        Unit::Milliseconds,
        "Time spent not connected",
    ),
    (
        SPOOL_BYTE_SIZE,
        Kind::Gauge,
        Unit::Bytes,
        "Bytes the spool keeps on disk",
    ),
    (
        SPOOL_DURABLE_LAG,
        Kind::Gauge,
        Unit::Count,
        "Records accepted after the last durable one",
    ),
];

/// Gives every series its unit and description (recorders that keep them
/// print them as `# HELP`).
fn describe() {
    for (name, kind, unit, help) in SERIES {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, unit, help),
            Kind::Gauge => metrics::describe_gauge!(name, unit, help),
        }
    }
}
