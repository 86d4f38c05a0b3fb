//! librdkafka's statistics as this crate's own stable types
//! ([`LibrdkafkaStatistics`], [`BrokerStatistics`]), converted from
//! rdkafka's, and the [`StatisticsStore`] that keeps the latest snapshot
//! for the transport across producer rebuilds.
//!
//! librdkafka emits a snapshot every `statistics.interval.ms` (off unless
//! [`RdkafkaConfig::statistics_interval`](crate::RdkafkaConfig::statistics_interval)
//! is set); it reaches the producer's statistics callback on whichever
//! thread serves librdkafka's events, where it is converted and stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::statistics::{Broker, Statistics, Window};

/// The broker state librdkafka reports for a broker it is connected to and
/// exchanging requests with.
pub const BROKER_STATE_UP: &str = "UP";

/// One snapshot of librdkafka's statistics, as the transport's current
/// librdkafka producer reported it; see
/// [`TransportMetrics::librdkafka_statistics`](crate::TransportMetrics::librdkafka_statistics).
///
/// A subset of librdkafka's statistics (its `STATISTICS.md` describes them
/// all) under names that do not change with rdkafka's versions.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LibrdkafkaStatistics {
    /// When the transport received this snapshot. See
    /// [`LibrdkafkaStatistics::age`].
    pub received_at: Instant,
    /// librdkafka's name for the producer that reported it (`client.id`
    /// and a serial, for example `robust-producer#producer-3`); it changes
    /// when the transport rebuilds its producer.
    pub client_name: String,
    /// How long that librdkafka producer had existed.
    pub client_age: Duration,
    /// Records in librdkafka's queues: handed off by the transport and not
    /// yet acknowledged or failed (librdkafka's `msg_cnt`).
    pub queue_messages: u64,
    /// Bytes of those records (librdkafka's `msg_size`).
    pub queue_bytes: u64,
    /// The most records librdkafka queues before refusing hand-offs
    /// (`queue.buffering.max.messages`, librdkafka's `msg_max`).
    pub queue_max_messages: u64,
    /// The most bytes librdkafka queues before refusing hand-offs
    /// (`queue.buffering.max.kbytes`, librdkafka's `msg_size_max`).
    pub queue_max_bytes: u64,
    /// The cluster's brokers the producer knows from metadata, by node id.
    ///
    /// librdkafka's own placeholders are left out: the bootstrap entries
    /// (node id -1, one per `bootstrap.servers` address, which duplicate a
    /// known broker once metadata arrived), its internal broker and logical
    /// ones (coordinators). So the list is empty until a broker first
    /// answered a metadata request. A broker the cluster's metadata stops
    /// listing (librdkafka's mock cluster leaves out a broker that is down)
    /// is forgotten by librdkafka, and so leaves this list.
    pub brokers: Vec<BrokerStatistics>,
}

impl LibrdkafkaStatistics {
    /// How old this snapshot is: a snapshot older than a few statistics
    /// intervals means the producer stopped reporting (it was being
    /// rebuilt, or librdkafka's event queue is not served).
    pub fn age(&self) -> Duration {
        self.received_at.elapsed()
    }

    /// The broker with node id `node_id`, if the producer knows it.
    pub fn broker(&self, node_id: i32) -> Option<&BrokerStatistics> {
        self.brokers.iter().find(|b| b.node_id == node_id)
    }

    /// How many known brokers are up ([`BrokerStatistics::is_up`]).
    pub fn brokers_up(&self) -> usize {
        self.brokers.iter().filter(|b| b.is_up()).count()
    }

    /// Converts rdkafka's statistics, received at `received_at`.
    pub(crate) fn from_rdkafka(stats: &Statistics, received_at: Instant) -> Self {
        let mut brokers: Vec<BrokerStatistics> = stats
            .brokers
            .values()
            .filter(|b| is_cluster_broker(b))
            .map(BrokerStatistics::from_rdkafka)
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        Self {
            received_at,
            client_name: stats.name.clone(),
            client_age: micros(stats.age),
            queue_messages: stats.msg_cnt,
            queue_bytes: stats.msg_size,
            queue_max_messages: stats.msg_max,
            queue_max_bytes: stats.msg_size_max,
            brokers,
        }
    }
}

/// One broker as librdkafka's statistics describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStatistics {
    /// librdkafka's name for it, `host:port/node_id`; the `broker` label of
    /// the per-broker metrics.
    pub name: String,
    /// The broker's node id in the cluster.
    pub node_id: i32,
    /// The connection's state as librdkafka reports it (librdkafka
    /// connects only to the brokers it has requests for: one not needed
    /// yet stays `INIT`): `UP`
    /// ([`BROKER_STATE_UP`]), `DOWN`, `INIT`, `TRY_CONNECT`, `CONNECT`,
    /// `SSL_HANDSHAKE`, `AUTH_LEGACY`, `AUTH_HANDSHAKE`, `AUTH_REQ`,
    /// `APIVERSION_QUERY`, `UPDATE` or `REAUTH`.
    pub state: String,
    /// How long the connection has been in that state.
    pub state_age: Duration,
    /// The average round-trip time of requests to this broker over the
    /// last statistics interval; `None` when no request completed in it.
    pub rtt_avg: Option<Duration>,
    /// The 99th percentile of those round-trip times; `None` likewise.
    pub rtt_p99: Option<Duration>,
    /// Requests waiting to be sent to this broker (librdkafka's
    /// `outbuf_cnt`).
    pub requests_awaiting_send: u64,
    /// Requests sent and awaiting the broker's response (librdkafka's
    /// `waitresp_cnt`).
    pub requests_awaiting_response: u64,
    /// Records in the requests waiting to be sent (`outbuf_msg_cnt`).
    pub messages_awaiting_send: u64,
    /// Records in the requests awaiting a response (`waitresp_msg_cnt`).
    pub messages_awaiting_response: u64,
    /// Requests to this broker that timed out, since the producer was
    /// built (`req_timeouts`).
    pub request_timeouts: u64,
    /// Connection attempts, successful or not, since the producer was
    /// built (`connects`); `None` if librdkafka did not report it.
    pub connects: Option<u64>,
    /// Disconnections since the producer was built (`disconnects`); `None`
    /// if librdkafka did not report it.
    pub disconnects: Option<u64>,
}

impl BrokerStatistics {
    /// Whether librdkafka's connection to this broker is up.
    pub fn is_up(&self) -> bool {
        self.state == BROKER_STATE_UP
    }

    /// Requests not yet answered: waiting to be sent plus awaiting a
    /// response.
    pub fn outstanding_requests(&self) -> u64 {
        self.requests_awaiting_send
            .saturating_add(self.requests_awaiting_response)
    }

    fn from_rdkafka(b: &Broker) -> Self {
        Self {
            name: b.name.clone(),
            node_id: b.nodeid,
            state: b.state.clone(),
            state_age: micros(b.stateage),
            rtt_avg: b.rtt.as_ref().and_then(|w| sampled(w, w.avg)),
            rtt_p99: b.rtt.as_ref().and_then(|w| sampled(w, w.p99)),
            requests_awaiting_send: count(b.outbuf_cnt),
            requests_awaiting_response: count(b.waitresp_cnt),
            messages_awaiting_send: count(b.outbuf_msg_cnt),
            messages_awaiting_response: count(b.waitresp_msg_cnt),
            request_timeouts: b.req_timeouts,
            connects: b.connects.map(count),
            disconnects: b.disconnects.map(count),
        }
    }
}

/// Whether a broker entry of librdkafka's statistics is a broker of the
/// cluster, rather than a bootstrap placeholder (node id -1), librdkafka's
/// internal broker or a logical one (a coordinator).
fn is_cluster_broker(b: &Broker) -> bool {
    b.nodeid >= 0 && b.source != "internal" && b.source != "logical"
}

/// A window statistic in microseconds, if the window holds any sample.
fn sampled(window: &Window, value_us: i64) -> Option<Duration> {
    (window.cnt > 0).then(|| micros(value_us))
}

/// librdkafka's microseconds (never negative in practice) as a duration.
fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// librdkafka's signed count (never negative in practice) as unsigned.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The latest snapshot, shared by the transport and the statistics
/// callbacks of its librdkafka producers, and kept across rebuilds.
#[derive(Debug, Default)]
pub(crate) struct StatisticsStore {
    latest: Mutex<Option<LibrdkafkaStatistics>>,
    /// The serial of the producer whose snapshots are kept: a retired
    /// producer may report once more while it is destroyed.
    current_client: AtomicU64,
}

impl StatisticsStore {
    /// From now on only producer `serial`'s snapshots are kept.
    pub(crate) fn follow(&self, serial: u64) {
        self.current_client.store(serial, Ordering::Release);
    }

    /// Whether producer `serial`'s snapshots are kept.
    pub(crate) fn follows(&self, serial: u64) -> bool {
        self.current_client.load(Ordering::Acquire) == serial
    }

    /// Keeps `snapshot` if it comes from the producer followed; returns
    /// whether it did.
    pub(crate) fn offer(&self, serial: u64, snapshot: LibrdkafkaStatistics) -> bool {
        if !self.follows(serial) {
            return false;
        }
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
        true
    }

    /// The latest snapshot kept, if any.
    pub(crate) fn latest(&self) -> Option<LibrdkafkaStatistics> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn broker(name: &str, nodeid: i32, source: &str, state: &str) -> Broker {
        Broker {
            name: name.to_owned(),
            nodeid,
            source: source.to_owned(),
            state: state.to_owned(),
            ..Broker::default()
        }
    }

    #[test]
    fn converts_and_leaves_out_placeholders() {
        let mut up = broker("h:1/1", 1, "learned", "UP");
        up.outbuf_cnt = 2;
        up.waitresp_cnt = 3;
        up.rtt = Some(Window {
            avg: 1500,
            p99: 4000,
            cnt: 7,
            ..Window::default()
        });
        let mut down = broker("h:2/2", 2, "learned", "DOWN");
        down.rtt = Some(Window::default());
        let brokers = HashMap::from([
            ("up".to_owned(), up),
            ("down".to_owned(), down),
            (
                "boot".to_owned(),
                broker("h:1/bootstrap", -1, "configured", "UP"),
            ),
            (
                "int".to_owned(),
                broker(":0/internal", -1, "internal", "UP"),
            ),
        ]);
        let stats = Statistics {
            name: "robust-producer#producer-1".to_owned(),
            msg_cnt: 5,
            msg_size: 500,
            msg_max: 100_000,
            msg_size_max: 1 << 30,
            age: 2_000_000,
            brokers,
            ..Statistics::default()
        };
        let s = LibrdkafkaStatistics::from_rdkafka(&stats, Instant::now());
        assert_eq!(s.client_name, "robust-producer#producer-1");
        assert_eq!(s.client_age, Duration::from_secs(2));
        assert_eq!((s.queue_messages, s.queue_bytes), (5, 500));
        assert_eq!(
            (s.queue_max_messages, s.queue_max_bytes),
            (100_000, 1 << 30)
        );
        let ids: Vec<i32> = s.brokers.iter().map(|b| b.node_id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(s.brokers_up(), 1);
        let b1 = s.broker(1).unwrap();
        assert!(b1.is_up());
        assert_eq!(b1.outstanding_requests(), 5);
        assert_eq!(b1.rtt_avg, Some(Duration::from_micros(1500)));
        assert_eq!(b1.rtt_p99, Some(Duration::from_micros(4000)));
        let b2 = s.broker(2).unwrap();
        assert!(!b2.is_up());
        assert_eq!(b2.rtt_avg, None, "no sample in the window");
        assert_eq!(b2.connects, None);
    }

    #[test]
    fn keeps_only_the_followed_producers_snapshots() {
        let store = StatisticsStore::default();
        let snapshot = |name: &str| LibrdkafkaStatistics {
            client_name: name.to_owned(),
            ..LibrdkafkaStatistics::from_rdkafka(&Statistics::default(), Instant::now())
        };
        store.follow(3);
        assert!(store.offer(3, snapshot("three")));
        store.follow(4);
        assert!(!store.offer(3, snapshot("retired")));
        assert_eq!(store.latest().unwrap().client_name, "three");
        assert!(store.offer(4, snapshot("four")));
        assert_eq!(store.latest().unwrap().client_name, "four");
    }
}
