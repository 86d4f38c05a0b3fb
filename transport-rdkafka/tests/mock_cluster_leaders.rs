//! Cluster failures below the producer, against librdkafka's mock cluster
//! (modelled on librdkafka's own tests 0143 and 0144): partitions without a
//! leader, leaders moving between brokers, produce requests refused for
//! lack of in-sync replicas, the leader dropping its connections with
//! requests in flight, and a client that knows one broker only when that
//! broker dies.
//!
//! Each scenario streams keyed records from a task while the failure
//! happens, samples the core's delivered count to measure how long delivery
//! stalled, then reads the topic back and checks every record, per-key order
//! and duplicates (see `common`).

#![expect(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failure, output helps"
)]
#![expect(
    clippy::await_holding_lock,
    reason = "SERIAL is held across awaits on purpose"
)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use robust_producer::{Producer, State};

use common::{
    Cluster, Under, assert_clean, core_config, init_tracing, record, serial, transport_config,
    wait_for_state,
};

/// Records a streaming task sends per burst, and the pause between bursts:
/// about 4 000 records a second, well within the mock cluster's pace.
const BURST: u64 = 20;
const BURST_PAUSE: Duration = Duration::from_millis(5);

/// The target: delivery resumes within this long after the partition has a
/// leader again (librdkafka re-queries a leaderless partition at most every
/// `retry.backoff.max.ms`, 1 s).
const RESUME_BOUND: Duration = Duration::from_secs(5);

/// Keyed records sent from a task, in sequence, until stopped.
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream {
    fn start(producer: &Producer) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let task = {
            let (producer, stop, sent) = (producer.clone(), Arc::clone(&stop), Arc::clone(&sent));
            tokio::spawn(async move {
                let mut seq = 0;
                while !stop.load(Ordering::Acquire) {
                    for _ in 0..BURST {
                        drop(producer.send(record(seq, 100)).await.expect("accepted"));
                        seq += 1;
                        sent.store(seq, Ordering::Release);
                    }
                    tokio::time::sleep(BURST_PAUSE).await;
                }
            })
        };
        Self { stop, sent, task }
    }

    /// Stops sending; returns how many records were sent.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("stream task");
        self.sent.load(Ordering::Acquire)
    }
}

/// The core's delivered count, sampled every 5 ms from a task.
struct Monitor {
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    fn start(producer: &Producer) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (producer, samples, stop) =
                (producer.clone(), Arc::clone(&samples), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    let delivered = producer.stats().delivered;
                    samples.lock().unwrap().push((Instant::now(), delivered));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        Self {
            samples,
            stop,
            task,
        }
    }

    fn delivered(&self) -> u64 {
        self.samples.lock().unwrap().last().map_or(0, |s| s.1)
    }

    /// Waits until nothing was delivered for `quiet` (the failure took
    /// hold); panics if that does not happen within `within`.
    async fn wait_stalled(&self, quiet: Duration, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            {
                let s = self.samples.lock().unwrap();
                if let Some(&(_, last)) = s.last() {
                    let since = s
                        .iter()
                        .rev()
                        .take_while(|&&(_, d)| d == last)
                        .last()
                        .map_or(Duration::ZERO, |&(t, _)| t.elapsed());
                    if since >= quiet {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "deliveries never stopped: the failure did not take hold"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How long after `from` the delivered count first rose above what it
    /// was at `from`, waiting up to `within`.
    async fn resumed_after(&self, from: Instant, within: Duration) -> Option<Duration> {
        let base = {
            let s = self.samples.lock().unwrap();
            s.iter()
                .rev()
                .find(|&&(t, _)| t <= from)
                .map_or(0, |&(_, d)| d)
        };
        let deadline = from + within;
        loop {
            {
                let s = self.samples.lock().unwrap();
                if let Some(&(t, _)) = s.iter().find(|&&(t, d)| t > from && d > base) {
                    return Some(t - from);
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The longest time between two sampled rises of the delivered count,
    /// between `from` and the last sample.
    fn longest_gap(&self, from: Instant) -> Duration {
        let s = self.samples.lock().unwrap();
        let mut gap = Duration::ZERO;
        let mut last_rise: Option<(Instant, u64)> = None;
        for &(t, d) in s.iter().filter(|&&(t, _)| t >= from) {
            match last_rise {
                None => last_rise = Some((t, d)),
                Some((t0, d0)) if d > d0 => {
                    gap = gap.max(t - t0);
                    last_rise = Some((t, d));
                }
                Some(_) => {}
            }
        }
        gap
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("monitor task");
    }
}

/// A producer over 3 mock brokers with every partition led by broker 1,
/// connected, records streaming and delivered.
async fn streaming(cluster: &Cluster) -> (Under, Stream, Monitor) {
    cluster.lead_all(Some(1));
    let under = Under::start(transport_config(cluster), core_config());
    wait_for_state(&under.producer, State::Connected, Duration::from_secs(10)).await;
    let stream = Stream::start(&under.producer);
    let monitor = Monitor::start(&under.producer);
    wait_delivered(&monitor, 2_000, Duration::from_secs(20)).await;
    (under, stream, monitor)
}

async fn wait_delivered(monitor: &Monitor, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while monitor.delivered() < n {
        assert!(
            Instant::now() < deadline,
            "only {} delivered, wanted {n}",
            monitor.delivered()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every partition without a leader for `outage` while records stream, then
/// led by broker 1 again.
async fn leaderless_for(outage: Duration) {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(3);
    // The mock cluster of librdkafka 2.12.1 dereferences the partition's
    // leader when it refuses a Produce request v10+ with NOT_LEADER (to
    // name the current leader, KIP-951), and crashes (SIGSEGV) when there
    // is none: Produce is kept at v9 here, which carries no leader hint.
    cluster
        .mock
        .apiversion(RDKafkaApiKey::Produce, Some(0), Some(9))
        .expect("produce api version");
    let (under, stream, monitor) = streaming(&cluster).await;
    let lost_leader = Instant::now();
    cluster.lead_all(None);
    // Nothing can be stored while no partition has a leader: deliveries stop
    // (a delivery within the first moments is a request answered before).
    monitor
        .wait_stalled(Duration::from_millis(300), outage + Duration::from_secs(5))
        .await;
    let stalled = under.producer.stats();
    if let Some(left) = outage.checked_sub(lost_leader.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let during = under.producer.stats();
    let back = Instant::now();
    cluster.lead_all(Some(1));
    let resumed = monitor.resumed_after(back, Duration::from_secs(30)).await;
    wait_delivered(&monitor, during.accepted, Duration::from_secs(30)).await;
    let drained = back.elapsed();
    let sent = stream.stop().await;
    monitor.stop().await;
    let (stats, m) = under.finish(sent).await;
    eprintln!(
        "leaderless for {outage:?}: stalled {stalled:?}\nresumed {resumed:?} after the leader \
         came back; backlog of {} drained in {drained:?}\nstats: {stats:?}\ntransport: {m:?}",
        during.accepted - during.delivered
    );
    assert_eq!(
        stalled.delivered, during.delivered,
        "delivered while no partition had a leader"
    );
    let resumed = resumed.expect("delivery resumed once the leader was back");
    assert!(
        resumed <= RESUME_BOUND,
        "delivery resumed {resumed:?} after the leader came back, bound {RESUME_BOUND:?}"
    );
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert_eq!(
        stats.link_losses, 0,
        "a leaderless partition is not a lost link"
    );
    assert_eq!(m.producers_built, 1, "{m:?}");
    let v = cluster.verify(sent, &HashSet::new());
    // librdkafka retried the refused requests itself, idempotently.
    assert_clean(&v, 0, "leaderless partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_for_1s() {
    leaderless_for(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_for_3s() {
    leaderless_for(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_for_6s() {
    leaderless_for(Duration::from_secs(6)).await;
}

/// Every partition's leader moves from broker 1 to 2, then to 3, while
/// records stream: no session is lost, nothing is dead-lettered, and
/// delivery goes on within the resume bound of each move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_moves_mid_stream() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(3);
    let (under, stream, monitor) = streaming(&cluster).await;
    let mut resumes = Vec::new();
    let mut gaps = Vec::new();
    for to in [2, 3] {
        let delivered = monitor.delivered();
        let moved = Instant::now();
        cluster.lead_all(Some(to));
        let resumed = monitor.resumed_after(moved, Duration::from_secs(30)).await;
        // Delivery continues on the new leader.
        wait_delivered(&monitor, delivered + 4_000, Duration::from_secs(30)).await;
        gaps.push(monitor.longest_gap(moved));
        resumes.push(resumed);
    }
    let sent = stream.stop().await;
    monitor.stop().await;
    let (stats, m) = under.finish(sent).await;
    eprintln!(
        "leader moves: delivered again {resumes:?} after each move; longest pause {gaps:?}\n\
         stats: {stats:?}\ntransport: {m:?}"
    );
    for gap in gaps {
        assert!(gap <= RESUME_BOUND, "delivery paused {gap:?} after a move");
    }
    assert_eq!(stats.link_losses, 0, "a leader move is not a lost link");
    assert_eq!(m.link_lost, 0, "{m:?}");
    assert_eq!(m.producers_built, 1, "{m:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let v = cluster.verify(sent, &HashSet::new());
    assert_clean(&v, 0, "leader moves");
}

/// The leader goes silent (it answers nothing for a minute, as a leader cut
/// from its peers but still reachable by clients does) and leadership moves
/// to broker 2: nothing tells the client, whose requests to the old leader
/// just wait. With the transport's defaults the client learns the new
/// leader from another broker within about 10 s
/// (`topic.metadata.refresh.interval.ms`; on a real cluster the 5 s
/// `socket.timeout.ms` drops the silent connection first, and librdkafka
/// asks another broker at once: see the cluster scenario e), in the same
/// session. librdkafka's defaults (300 s, 60 s) leave it waiting for the old
/// leader's answers, well past the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_old_leader_is_left_for_the_new_one() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(3);
    let (under, stream, monitor) = streaming(&cluster).await;
    cluster
        .mock
        .broker_round_trip_time(1, Duration::from_secs(60))
        .unwrap();
    let moved = Instant::now();
    cluster.lead_all(Some(2));
    let resumed = monitor.resumed_after(moved, Duration::from_secs(60)).await;
    let delivered = monitor.delivered();
    wait_delivered(&monitor, delivered + 4_000, Duration::from_secs(30)).await;
    let sent = stream.stop().await;
    monitor.stop().await;
    cluster
        .mock
        .broker_round_trip_time(1, Duration::ZERO)
        .unwrap();
    let (stats, m) = under.finish(sent).await;
    eprintln!(
        "silent old leader: delivered again {resumed:?} after the move\nstats: {stats:?}\ntransport: {m:?}"
    );
    let resumed = resumed.expect("delivery resumed");
    assert!(
        resumed <= Duration::from_secs(12),
        "delivery resumed {resumed:?} after the move"
    );
    assert_eq!(stats.link_losses, 0, "{stats:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let v = cluster.verify(sent, &HashSet::new());
    assert_clean(&v, 10_000, "silent old leader");
}

/// The leader refuses produce requests for lack of in-sync replicas, several
/// in a row, first before appending, then after appending (a refusal after
/// the append may store the batch and so duplicate it on retry; the mock
/// cluster does not append a refused batch, so none appear here): records
/// wait, and are then delivered, in order, without a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_enough_replicas_in_a_row() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(3);
    let (under, stream, monitor) = streaming(&cluster).await;
    use RDKafkaRespErr::*;
    let mut pauses = Vec::new();
    for error in [
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ] {
        let delivered = monitor.delivered();
        let from = Instant::now();
        cluster
            .mock
            .request_errors(RDKafkaApiKey::Produce, &[error; 8]);
        wait_delivered(&monitor, delivered + 4_000, Duration::from_secs(30)).await;
        pauses.push(monitor.longest_gap(from));
    }
    let sent = stream.stop().await;
    monitor.stop().await;
    let (stats, m) = under.finish(sent).await;
    eprintln!(
        "not enough replicas: longest pauses {pauses:?}; failed reports {}\nstats: {stats:?}\n\
         transport: {m:?}",
        m.failed
    );
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert_eq!(stats.link_losses, 0, "librdkafka retried them itself");
    assert_eq!(m.failed, 0, "{m:?}");
    let v = cluster.verify(sent, &HashSet::new());
    eprintln!("duplicates: {}", v.duplicates);
    // Idempotence: a retried batch that was appended is not stored twice.
    assert_clean(&v, 0, "not enough replicas");
}

/// The leader goes down (closing its connections, produce requests in
/// flight on them: it answers after 100 ms) and comes back 2 s later, while
/// the two other brokers stay up. librdkafka retries the requests whose
/// answers were lost, with their sequence numbers: nothing lost, nothing
/// reordered, no fatal error, no lost session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_disconnects_with_requests_in_flight() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(3);
    let (under, stream, monitor) = streaming(&cluster).await;
    cluster
        .mock
        .broker_round_trip_time(1, Duration::from_millis(100))
        .expect("rtt");
    wait_delivered(
        &monitor,
        monitor.delivered() + 2_000,
        Duration::from_secs(30),
    )
    .await;
    let in_flight = under.producer.stats().in_flight;
    cluster.mock.broker_down(1).expect("down");
    monitor
        .wait_stalled(Duration::from_millis(300), Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let back = Instant::now();
    cluster.mock.broker_up(1).expect("up");
    let resumed = monitor.resumed_after(back, Duration::from_secs(30)).await;
    let delivered = monitor.delivered();
    wait_delivered(&monitor, delivered + 4_000, Duration::from_secs(30)).await;
    let sent = stream.stop().await;
    monitor.stop().await;
    let (stats, m) = under.finish(sent).await;
    eprintln!(
        "leader disconnect: {in_flight} in flight (core) when it went down; resumed {resumed:?} \
         after it came back\nstats: {stats:?}\ntransport: {m:?}"
    );
    assert!(in_flight > 0, "records were in flight");
    let resumed = resumed.expect("delivery resumed");
    assert!(
        resumed <= RESUME_BOUND,
        "resumed {resumed:?} after the leader came back"
    );
    assert_eq!(m.fatal, 0, "{m:?}");
    assert_eq!(stats.link_losses, 0, "{stats:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let v = cluster.verify(sent, &HashSet::new());
    // librdkafka resends, with their sequence numbers, the requests whose
    // answers the disconnect lost; a Kafka broker drops those it stored
    // already, but the mock cluster checks sequences only for transactional
    // producers and stores them again: duplicates, at most the records
    // handed off (the core's window), all in the same session.
    assert_clean(&v, common::MAX_IN_FLIGHT, "leader disconnect");
}

/// A client whose first metadata came while one broker of three answered
/// knows only that broker: since librdkafka 2.10 a metadata response
/// replaces the bootstrap brokers with the brokers it lists, and the mock
/// cluster, like a KRaft cluster, lists only live brokers. The other two
/// come back (the client does not learn of them before its next metadata
/// refresh), then the one it knows dies and leadership moves to the others:
/// librdkafka reports "1/1 brokers are down" and re-bootstraps from
/// `bootstrap.servers`. Delivery must go on through the two others, on the
/// same session: no lost link, no rebuilt client, no resent window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_knowing_one_broker_reaches_the_others_when_it_dies() {
    let _serial = serial();
    init_tracing();
    let cluster = Cluster::new(3);
    cluster.lead_all(Some(1));
    cluster.mock.broker_down(2).expect("down");
    cluster.mock.broker_down(3).expect("down");
    let under = Under::start(transport_config(&cluster), core_config());
    wait_for_state(&under.producer, State::Connected, Duration::from_secs(10)).await;
    let stream = Stream::start(&under.producer);
    let monitor = Monitor::start(&under.producer);
    wait_delivered(&monitor, 2_000, Duration::from_secs(20)).await;
    cluster.mock.broker_up(2).expect("up");
    cluster.mock.broker_up(3).expect("up");
    wait_delivered(
        &monitor,
        monitor.delivered() + 2_000,
        Duration::from_secs(20),
    )
    .await;
    // The broker the client knows dies; a new leader is elected a second
    // later.
    let killed = Instant::now();
    cluster.mock.broker_down(1).expect("down");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let elected = Instant::now();
    cluster.lead_all(Some(2));
    let resumed = monitor
        .resumed_after(elected, Duration::from_secs(30))
        .await;
    wait_delivered(
        &monitor,
        monitor.delivered() + 4_000,
        Duration::from_secs(30),
    )
    .await;
    let gap = monitor.longest_gap(killed);
    let sent = stream.stop().await;
    monitor.stop().await;
    let (stats, m) = under.finish(sent).await;
    eprintln!(
        "one known broker dies: resumed {resumed:?} after the election, longest pause {gap:?}\n\
         stats: {stats:?}\ntransport: {m:?}"
    );
    assert!(
        m.all_brokers_down >= 1,
        "librdkafka reported the one broker it knew down: {m:?}"
    );
    let resumed = resumed.expect("delivery resumed through the other brokers");
    assert!(
        resumed <= RESUME_BOUND,
        "resumed {resumed:?} after the election"
    );
    assert_eq!(m.connected, 1, "{m:?}");
    assert_eq!(stats.link_losses, 0, "the session survived: {stats:?}");
    assert_eq!(m.link_lost, 0, "{m:?}");
    assert_eq!(m.producers_built, 1, "{m:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let v = cluster.verify(sent, &HashSet::new());
    assert_clean(&v, 0, "one known broker dies");
}
