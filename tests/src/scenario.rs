//! One cluster scenario in progress, for `tests/real_cluster.rs`: a fresh
//! topic, two [`Service`]s sending, a [`LeaderWatch`], the faults applied
//! and healed, and at the end the audit and every bound checked (see
//! [`Run::finish`]).
//!
//! Like a test, a scenario fails by panicking, with the reason.

#![expect(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "a scenario's failure is a test failure, and its progress is printed for the run's log"
)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use robust_producer::{Config, HealthConfig};
use robust_producer_rdkafka::RdkafkaConfig;
use robust_producer_rdkafka::readback::ReadBack;

use crate::audit::{AckTimeline, Audit};
use crate::cluster::{Cluster, LeaderWatch};
use crate::load::{LoadSpec, Service};

/// Partitions of every scenario's topic.
pub const PARTITIONS: i32 = 6;
/// A heal must be followed by deliveries on every partition within the
/// reconnect backoff cap plus this.
pub const RESUME_SLACK: Duration = Duration::from_secs(5);
/// A partition whose leader moved must deliver within this of the move
/// showing in metadata (polled every 200 ms).
pub const LEADER_MOVE_BOUND: Duration = Duration::from_secs(5);
/// Sending goes on this long after the last heal, so that every partition
/// shows when it resumed.
pub const TAIL: Duration = Duration::from_secs(8);

/// Awaits `fut`, turning a panic into its message.
pub async fn catch_panic(fut: impl Future<Output = ()>) -> Result<(), String> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(())) => std::task::Poll::Ready(Ok(())),
            Err(panic) => std::task::Poll::Ready(Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default())),
        }
    })
    .await
}

/// A fault window: when it started and healed, and how many events the
/// services had accepted at each end.
struct Fault {
    label: String,
    start: Instant,
    accepted_at_start: usize,
    heal: Option<(Instant, usize)>,
    /// Some partitions cannot take writes during it (no quorum of in-sync
    /// replicas, or the client cannot reach their leader): leader moves
    /// inside it are not held to [`LEADER_MOVE_BOUND`].
    blocks_writes: bool,
}

/// One scenario in progress on the shared cluster.
pub struct Run<'c> {
    name: String,
    /// The shared cluster.
    pub cluster: &'c Cluster,
    /// This scenario's topic.
    pub topic: String,
    /// The services sending to it.
    pub services: Vec<Service>,
    watch: LeaderWatch,
    faults: Vec<Fault>,
    /// Leader moves before this are the topic's creation.
    steady_since: Instant,
}

impl std::fmt::Debug for Run<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .field("faults", &self.faults.len())
            .finish_non_exhaustive()
    }
}

/// The core's defaults, but a queue that holds a minute of the scenario's
/// 1,000 events/s and more (scenario c's 60 s without any acknowledgement
/// would fill the default 100 000), and health that turns Unhealthy after
/// 30 s of waiting rather than 60.
pub fn producer_config(name: &str) -> Config {
    Config::builder()
        .service_name(name)
        .max_queued_records(250_000)
        .max_queued_bytes(256 << 20)
        .health(HealthConfig {
            unhealthy_oldest_age: Duration::from_secs(30),
            ..HealthConfig::default()
        })
        .build()
        .unwrap()
}

impl<'c> Run<'c> {
    /// Creates the scenario's topic, starts the leader watch and two
    /// services, and returns once both deliver.
    pub async fn start(cluster: &'c Cluster, name: &str) -> Self {
        let topic = format!(
            "{}-{}",
            name.replace('_', "-"),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        cluster.create_topic(&topic, PARTITIONS).await.unwrap();
        let watch = LeaderWatch::start(cluster.bootstrap(), topic.clone());
        let mut services = Vec::new();
        for svc in ["patient-service", "matching-service"] {
            services.push(
                Service::start_with(
                    svc,
                    RdkafkaConfig::new(cluster.bootstrap()),
                    producer_config(svc),
                    &topic,
                    LoadSpec::default(),
                )
                .unwrap(),
            );
        }
        let mut run = Self {
            name: name.to_owned(),
            cluster,
            topic,
            services,
            watch,
            faults: Vec::new(),
            steady_since: Instant::now(),
        };
        run.wait_delivering(Duration::from_secs(60)).await;
        run.steady_since = Instant::now();
        run
    }

    /// Events the services accepted so far.
    pub fn accepted(&self) -> usize {
        self.services.iter().map(Service::accepted).sum()
    }

    /// Waits (up to 2 minutes) until every partition of the topic has a
    /// leader and every broker in sync, as an operator would before the
    /// next step.
    pub async fn wait_in_sync(&self) {
        self.cluster
            .wait_in_sync(&self.topic, Duration::from_secs(120))
            .await
            .unwrap();
    }

    /// Acknowledgements the services saw so far on `partitions`.
    pub fn delivered_on(&self, partitions: &[i32]) -> usize {
        self.services.iter().map(|s| s.acks_on(partitions)).sum()
    }

    /// Waits until every service delivered something new.
    pub async fn wait_delivering(&self, within: Duration) {
        let before: Vec<u64> = self.services.iter().map(|s| s.stats().delivered).collect();
        let start = Instant::now();
        while self
            .services
            .iter()
            .zip(&before)
            .any(|(s, b)| s.stats().delivered <= *b)
        {
            assert!(
                start.elapsed() < within,
                "{}: no delivery within {within:?}: {:?}",
                self.name,
                self.services.iter().map(Service::stats).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A fault begins now.
    pub fn fault(&mut self, label: impl Into<String>, blocks_writes: bool) {
        let label = label.into();
        eprintln!("   {:>6.1}s fault: {label}", self.elapsed());
        self.faults.push(Fault {
            label,
            start: Instant::now(),
            accepted_at_start: self.accepted(),
            heal: None,
            blocks_writes,
        });
    }

    /// The last fault is healed now.
    pub fn healed(&mut self) {
        let now = Instant::now();
        let accepted = self.accepted();
        let elapsed = self.elapsed();
        let fault = self.faults.last_mut().expect("a fault to heal");
        eprintln!("   {elapsed:>6.1}s healed: {}", fault.label);
        fault.heal = Some((now, accepted));
    }

    /// Seconds since the services were delivering steadily.
    pub fn elapsed(&self) -> f64 {
        self.steady_since.elapsed().as_secs_f64()
    }

    /// The leader of `partition` of the topic (panics if it has none).
    pub async fn leader_of(&self, partition: i32) -> i32 {
        let leaders = self.cluster.leaders(&self.topic).await.unwrap();
        leaders
            .get(&partition)
            .copied()
            .flatten()
            .unwrap_or_else(|| panic!("partition {partition} has no leader: {leaders:?}"))
    }

    /// An in-sync follower of `partition` (panics if it has none).
    pub async fn follower_of(&self, partition: i32) -> i32 {
        let leader = self.leader_of(partition).await;
        let isr = self.cluster.isr(&self.topic).await.unwrap();
        isr.get(&partition)
            .and_then(|r| r.iter().copied().find(|n| *n != leader))
            .unwrap_or_else(|| panic!("partition {partition} has no follower in sync: {isr:?}"))
    }

    /// Keeps sending for [`TAIL`], then finishes the services, reads every
    /// partition back, audits, and checks every bound.
    pub async fn finish(&mut self) {
        tokio::time::sleep(TAIL).await;
        let mut finished = Vec::new();
        for s in std::mem::take(&mut self.services) {
            finished.push(s.finish(Duration::from_secs(120)).await);
        }
        for f in &finished {
            if let Err(e) = f.stats.check_accounting() {
                panic!("{}: {e}", f.name);
            }
        }
        let want: usize = finished.iter().map(|f| f.sent.len()).sum();
        let (bootstrap, topic) = (self.cluster.bootstrap(), self.topic.clone());
        let consumed = tokio::task::spawn_blocking(move || {
            ReadBack::new(bootstrap, topic)
                .until_quiet(want, Duration::from_secs(2))
                .timeout(Duration::from_secs(120))
                .read()
        })
        .await
        .unwrap()
        .unwrap();
        let audit = Audit::new(&finished, &consumed);
        let timeline = AckTimeline::new(finished.iter().flat_map(|f| &f.acks));
        let backoff_cap = producer_config("x").backoff().max;

        let mut problems = Vec::new();
        let mut slowest_heal = Duration::ZERO;
        for f in &self.faults {
            let Some((heal, accepted_at_heal)) = f.heal else {
                problems.push(format!("{}: never healed", f.label));
                continue;
            };
            let during = accepted_at_heal - f.accepted_at_start;
            if during < 100 {
                problems.push(format!(
                    "{}: only {during} events sent during the fault",
                    f.label
                ));
            }
            match timeline.resume_after(heal) {
                Some((p, d)) if d > backoff_cap + RESUME_SLACK => problems.push(format!(
                    "{}: partition {p} resumed {} after the heal (bound {:?})",
                    f.label,
                    fmt_wait(d),
                    backoff_cap + RESUME_SLACK
                )),
                Some((_, d)) => slowest_heal = slowest_heal.max(d),
                None => problems.push(format!("{}: no acknowledgement at all", f.label)),
            }
        }
        // The cluster kept answering in every scenario: a session given up
        // means a wait was taken for a hang, and its window resent.
        if audit.link_losses > 0 {
            problems.push(format!(
                "{} sessions given up although the cluster answered",
                audit.link_losses
            ));
        }
        let mut moves = 0;
        let mut slowest_move = Duration::ZERO;
        for change in self.watch.changes() {
            let Some(_leader) = change.leader else {
                continue;
            };
            let blocked = self.faults.iter().any(|f| {
                f.blocks_writes
                    && f.start <= change.at
                    && f.heal.is_none_or(|(h, _)| change.at <= h)
            });
            if change.at < self.steady_since || blocked {
                continue;
            }
            moves += 1;
            match timeline.first_after(change.partition, change.at) {
                Some(d) if d <= LEADER_MOVE_BOUND => slowest_move = slowest_move.max(d),
                other => problems.push(format!(
                    "partition {} moved to leader {:?} at {:.1}s and delivered {} later (bound {:?})",
                    change.partition,
                    change.leader,
                    change.at.duration_since(self.steady_since).as_secs_f64(),
                    other.map_or("nothing".to_owned(), fmt_wait),
                    LEADER_MOVE_BOUND
                )),
            }
        }
        eprintln!(
            "CLUSTER {}: {audit}; faults {}, slowest resume after a heal {} ms; leader moves {moves}, slowest delivery after a move {} ms",
            self.name,
            self.faults.len(),
            slowest_heal.as_millis(),
            slowest_move.as_millis(),
        );
        for f in finished.iter().filter(|f| f.stats.link_losses > 0) {
            eprintln!(
                "   {} gave {} sessions up; last error: {}",
                f.name,
                f.stats.link_losses,
                f.stats.last_error.as_deref().unwrap_or("-")
            );
        }
        assert!(audit.is_clean(), "{}: audit failed: {audit:?}", self.name);
        assert!(problems.is_empty(), "{}: {problems:#?}", self.name);
    }
}

fn fmt_wait(d: Duration) -> String {
    if d == Duration::MAX {
        "never".to_owned()
    } else {
        format!("{d:?}")
    }
}
