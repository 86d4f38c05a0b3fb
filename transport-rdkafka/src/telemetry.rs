//! The transport's series through the [`metrics`] crate's facade (feature
//! `metrics`): their names, their descriptions (every `describe_*` call is
//! in this file), and the cached handles that set them.
//!
//! No exporter comes with this crate: the application installs one (for
//! example `metrics-exporter-prometheus`) **before** creating the
//! transport, whose handles are registered with the recorder installed at
//! that moment.
//!
//! | name | type | unit | labels | meaning |
//! |---|---|---|---|---|
//! | `robust_producer_transport_rebuilds_total` | counter | count | `service`, `reason` | librdkafka producers built after the first, by why the previous one could not serve the next session (see below) |
//! | `robust_producer_librdkafka_queue_messages` | gauge | count | `service` | records in librdkafka's queues (handed off, not yet acknowledged or failed) |
//! | `robust_producer_librdkafka_queue_bytes` | gauge | bytes | `service` | bytes of those records |
//! | `robust_producer_librdkafka_broker_up` | gauge | 0 or 1 | `service`, `broker` | 1 while librdkafka's connection to the broker is `UP`, else 0 |
//! | `robust_producer_librdkafka_broker_rtt_seconds` | gauge | seconds | `service`, `broker` | average request round-trip time over the last statistics interval in which a request completed |
//! | `robust_producer_librdkafka_broker_outstanding_requests` | gauge | count | `service`, `broker` | requests to the broker waiting to be sent or awaiting its response |
//!
//! * **`service`** is librdkafka's `client.id` (set it to the service's
//!   name with `RdkafkaConfig::set("client.id", ...)`), or
//!   `robust-producer` when it is unset. [`RdkafkaConfig::new`] sets it to
//!   `robust-producer`.
//! * **`reason`** is one of `fatal` (librdkafka failed fatally),
//!   `link_lost` (the session ended with a lost link and librdkafka's queue
//!   was discarded), `abandoned` (the core gave up on the session while
//!   records were still in librdkafka), `hand_off_failed` (a hand-off
//!   failed leaving librdkafka's state unknown) or `build_failed` (the
//!   previous attempt to build a producer failed). Every reason's series
//!   exists from the transport's creation, at zero.
//! * **`broker`** is librdkafka's name for the broker, `host:port/node_id`,
//!   bounded by the cluster's size. A broker that disappears from
//!   librdkafka's statistics is reported down.
//! * **`broker_up` is 0 for a broker not needed yet**: librdkafka connects
//!   to a broker only once it has requests for it (it leads a partition
//!   records go to, or is asked for metadata), so a broker that leads none
//!   of the partitions produced to stays in state `INIT`. Alert on the
//!   brokers up falling, or on records queued while a broker is down, not
//!   on a single broker's 0.
//! * The `librdkafka_*` gauges are set from librdkafka's statistics, so
//!   only when they are enabled
//!   ([`RdkafkaConfig::statistics_interval`]), once per interval; nothing
//!   is emitted per record.
//!
//! [`RdkafkaConfig::new`]: crate::RdkafkaConfig::new
//! [`RdkafkaConfig::statistics_interval`]: crate::RdkafkaConfig::statistics_interval

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use metrics::{
    Counter, Gauge, SharedString, Unit, counter, describe_counter, describe_gauge, gauge,
};

use crate::config::RdkafkaConfig;
use crate::rebuild::RebuildReason;
use crate::statistics::LibrdkafkaStatistics;

/// Counter: librdkafka producers built after the first, by reason.
pub const REBUILDS_TOTAL: &str = "robust_producer_transport_rebuilds_total";
/// Gauge: records in librdkafka's queues.
pub const QUEUE_MESSAGES: &str = "robust_producer_librdkafka_queue_messages";
/// Gauge: bytes of the records in librdkafka's queues.
pub const QUEUE_BYTES: &str = "robust_producer_librdkafka_queue_bytes";
/// Gauge: 1 while librdkafka's connection to a broker is up, else 0.
pub const BROKER_UP: &str = "robust_producer_librdkafka_broker_up";
/// Gauge: a broker's average request round-trip time, in seconds.
pub const BROKER_RTT_SECONDS: &str = "robust_producer_librdkafka_broker_rtt_seconds";
/// Gauge: requests to a broker waiting to be sent or awaiting a response.
pub const BROKER_OUTSTANDING_REQUESTS: &str =
    "robust_producer_librdkafka_broker_outstanding_requests";

/// The `service` label's value when `client.id` is unset.
pub const DEFAULT_SERVICE: &str = "robust-producer";

/// The label naming the service.
const SERVICE: &str = "service";

/// Describes every series to the recorder installed now.
fn describe() {
    describe_counter!(
        REBUILDS_TOTAL,
        Unit::Count,
        "librdkafka producers built after the first, by why the previous one could not serve \
         the next session"
    );
    describe_gauge!(
        QUEUE_MESSAGES,
        Unit::Count,
        "records in librdkafka's queues: handed off, not yet acknowledged or failed"
    );
    describe_gauge!(
        QUEUE_BYTES,
        Unit::Bytes,
        "bytes of the records in librdkafka's queues"
    );
    describe_gauge!(
        BROKER_UP,
        "1 while librdkafka's connection to the broker is UP, else 0"
    );
    describe_gauge!(
        BROKER_RTT_SECONDS,
        Unit::Seconds,
        "average request round-trip time to the broker over the last statistics interval \
         in which a request completed"
    );
    describe_gauge!(
        BROKER_OUTSTANDING_REQUESTS,
        Unit::Count,
        "requests to the broker waiting to be sent or awaiting its response"
    );
}

/// The gauges of one broker.
struct BrokerGauges {
    up: Gauge,
    rtt: Gauge,
    outstanding: Gauge,
}

/// The transport's metric handles, registered once with the recorder
/// installed when the transport was created.
pub(crate) struct Exporter {
    service: SharedString,
    rebuilds: [Counter; RebuildReason::ALL.len()],
    queue_messages: Gauge,
    queue_bytes: Gauge,
    /// By librdkafka's broker name; bounded by the cluster's size.
    brokers: Mutex<HashMap<String, BrokerGauges>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Describes the series and registers the transport-wide handles.
    pub(crate) fn new(config: &RdkafkaConfig) -> Self {
        describe();
        let service = SharedString::from(
            config
                .get("client.id")
                .unwrap_or(DEFAULT_SERVICE)
                .to_owned(),
        );
        let rebuilds = RebuildReason::ALL.map(|reason| {
            counter!(REBUILDS_TOTAL, SERVICE => service.clone(), "reason" => reason.as_str())
        });
        Self {
            rebuilds,
            queue_messages: gauge!(QUEUE_MESSAGES, SERVICE => service.clone()),
            queue_bytes: gauge!(QUEUE_BYTES, SERVICE => service.clone()),
            brokers: Mutex::new(HashMap::new()),
            service,
        }
    }

    /// Counts one rebuild.
    pub(crate) fn count_rebuild(&self, reason: RebuildReason) {
        if let Some(counter) = self.rebuilds.get(reason.index()) {
            counter.increment(1);
        }
    }

    /// Sets the gauges from a statistics snapshot.
    pub(crate) fn record(&self, stats: &LibrdkafkaStatistics) {
        self.queue_messages.set(stats.queue_messages as f64);
        self.queue_bytes.set(stats.queue_bytes as f64);
        let mut brokers = self.brokers.lock().unwrap_or_else(PoisonError::into_inner);
        for b in &stats.brokers {
            let gauges = brokers
                .entry(b.name.clone())
                .or_insert_with(|| self.broker_gauges(&b.name));
            gauges.up.set(if b.is_up() { 1.0 } else { 0.0 });
            if let Some(rtt) = b.rtt_avg {
                gauges.rtt.set(rtt.as_secs_f64());
            }
            gauges.outstanding.set(b.outstanding_requests() as f64);
        }
        for (name, gauges) in brokers.iter() {
            if !stats.brokers.iter().any(|b| &b.name == name) {
                gauges.up.set(0.0);
                gauges.outstanding.set(0.0);
            }
        }
    }

    fn broker_gauges(&self, broker: &str) -> BrokerGauges {
        let broker = SharedString::from(broker.to_owned());
        let service = &self.service;
        BrokerGauges {
            up: gauge!(BROKER_UP, SERVICE => service.clone(), "broker" => broker.clone()),
            rtt: gauge!(BROKER_RTT_SECONDS, SERVICE => service.clone(), "broker" => broker.clone()),
            outstanding: gauge!(
                BROKER_OUTSTANDING_REQUESTS,
                SERVICE => service.clone(),
                "broker" => broker
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use rdkafka::statistics::{Broker, Statistics};

    use super::*;

    fn stats(brokers: &[(&str, i32, &str)], queued: u64) -> LibrdkafkaStatistics {
        let brokers = brokers
            .iter()
            .map(|(name, id, state)| {
                let b = Broker {
                    name: (*name).to_owned(),
                    nodeid: *id,
                    source: "learned".to_owned(),
                    state: (*state).to_owned(),
                    outbuf_cnt: 1,
                    waitresp_cnt: 2,
                    ..Broker::default()
                };
                ((*name).to_owned(), b)
            })
            .collect();
        let raw = Statistics {
            msg_cnt: queued,
            msg_size: queued * 10,
            brokers,
            ..Statistics::default()
        };
        LibrdkafkaStatistics::from_rdkafka(&raw, Instant::now())
    }

    /// The emitted values on the test thread's local recorder, by series
    /// name and labels (`name{k=v,...}`, labels in registration order).
    fn emitted(run: impl FnOnce()) -> HashMap<String, DebugValue> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, run);
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect()
    }

    fn gauge(v: f64) -> DebugValue {
        DebugValue::Gauge(v.into())
    }

    #[test]
    fn gauges_follow_snapshots_and_rebuilds_count_by_reason() {
        let seen = emitted(|| {
            let config = RdkafkaConfig::new("k:9092").set("client.id", "svc");
            let exporter = Exporter::new(&config);
            exporter.record(&stats(&[("a/1", 1, "UP"), ("b/2", 2, "UP")], 7));
            // Broker a gone from librdkafka's list, b down.
            exporter.record(&stats(&[("b/2", 2, "DOWN")], 3));
            exporter.count_rebuild(RebuildReason::LinkLost);
            exporter.count_rebuild(RebuildReason::LinkLost);
        });
        let at = |k: &str| seen.get(k).unwrap_or_else(|| panic!("{k} in {seen:?}"));
        assert_eq!(at(&format!("{QUEUE_MESSAGES}{{service=svc}}")), &gauge(3.0));
        assert_eq!(at(&format!("{QUEUE_BYTES}{{service=svc}}")), &gauge(30.0));
        assert_eq!(
            at(&format!("{BROKER_UP}{{service=svc,broker=a/1}}")),
            &gauge(0.0)
        );
        assert_eq!(
            at(&format!("{BROKER_UP}{{service=svc,broker=b/2}}")),
            &gauge(0.0)
        );
        assert_eq!(
            at(&format!(
                "{BROKER_OUTSTANDING_REQUESTS}{{service=svc,broker=a/1}}"
            )),
            &gauge(0.0)
        );
        assert_eq!(
            at(&format!(
                "{BROKER_OUTSTANDING_REQUESTS}{{service=svc,broker=b/2}}"
            )),
            &gauge(3.0)
        );
        let rebuilds = |r: &str| at(&format!("{REBUILDS_TOTAL}{{service=svc,reason={r}}}"));
        assert_eq!(rebuilds("link_lost"), &DebugValue::Counter(2));
        for r in RebuildReason::ALL
            .iter()
            .filter(|r| **r != RebuildReason::LinkLost)
        {
            assert_eq!(rebuilds(r.as_str()), &DebugValue::Counter(0), "{r:?}");
        }
    }

    #[test]
    fn the_service_defaults_when_client_id_is_unset() {
        let seen = emitted(|| {
            let exporter = Exporter::new(&RdkafkaConfig::new("k:9092").unset("client.id"));
            exporter.record(&stats(&[("a/1", 1, "UP")], 0));
        });
        let key = format!("{BROKER_UP}{{service={DEFAULT_SERVICE},broker=a/1}}");
        assert_eq!(seen.get(&key), Some(&gauge(1.0)), "{seen:?}");
    }
}
