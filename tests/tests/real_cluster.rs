//! The three-broker proof: robust-producer over librdkafka against a
//! three-node Apache Kafka 4.4.0 KRaft cluster (replication factor 3,
//! `min.insync.replicas=2`, unclean leader election off) under leader
//! crashes, clean shutdowns, lost quorum, rolling restarts, isolated nodes,
//! a client cut from one broker, controller pauses and a preferred-leader
//! election after a crash.
//!
//! Each scenario runs while two services send 1,000 events/s each over
//! 1,000 keys each, with default producer settings except a larger queue
//! and a tighter health threshold (see [`producer_config`]). After it, every partition is read back and audited
//! (`robust_producer_tests::audit`): lost, reordered and dead-lettered must
//! be 0, duplicates are counted, and delivery must resume within the
//! reconnect backoff cap + 5 s of each heal, and within 5 s of a partition's
//! new leader showing in metadata.
//!
//! One cluster serves every scenario, one after the other, so this binary
//! has its own `main` (`harness = false`): `cargo test --test real_cluster
//! -- <filter>` runs the scenarios whose name contains a filter.
//! `ROBUST_PRODUCER_SOAK=N` runs the soak instead: N random leader kills and
//! bounces with random gaps, one summary line.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::{Duration, Instant};

use robust_producer::{Config, HealthConfig, Verdict};
use robust_producer_rdkafka::RdkafkaConfig;
use robust_producer_tests::audit::{AckTimeline, Audit};
use robust_producer_tests::cluster::{Cluster, ClusterOptions, LeaderWatch};
use robust_producer_tests::load::{LoadSpec, Service};
use robust_producer_tests::prereq;
use robust_producer_tests::proxy::Mode;
use robust_producer_tests::verify;

/// Partitions of every scenario's topic.
const PARTITIONS: i32 = 6;
/// A heal must be followed by deliveries on every partition within the
/// reconnect backoff cap plus this.
const RESUME_SLACK: Duration = Duration::from_secs(5);
/// A partition whose leader moved must deliver within this of the move
/// showing in metadata (polled every 200 ms).
const LEADER_MOVE_BOUND: Duration = Duration::from_secs(5);
/// Sending goes on this long after the last heal, so that every partition
/// shows when it resumed.
const TAIL: Duration = Duration::from_secs(8);

type Scenario = for<'a> fn(&'a mut Run<'_>) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all: [(&str, Scenario); 8] = [
        ("a_leader_killed_three_times", |r| {
            Box::pin(leader_killed_three_times(r))
        }),
        ("b_clean_shutdown_of_follower_then_leader", |r| {
            Box::pin(clean_shutdown_of_follower_then_leader(r))
        }),
        ("c_two_of_three_down_for_60s", |r| {
            Box::pin(two_of_three_down(r))
        }),
        ("d_rolling_restart", |r| Box::pin(rolling_restart(r))),
        ("e_follower_then_leader_isolated", |r| {
            Box::pin(follower_then_leader_isolated(r))
        }),
        ("f_client_cut_from_the_leader", |r| {
            Box::pin(client_cut_from_the_leader(r))
        }),
        ("g_controller_paused_three_times", |r| {
            Box::pin(controller_paused_three_times(r))
        }),
        ("h_crash_then_preferred_leader_election", |r| {
            Box::pin(crash_then_preferred_leader_election(r))
        }),
    ];
    let soak = soak_rounds();
    let chosen: Vec<_> = all
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if chosen.is_empty() && soak.is_none() {
        eprintln!("real_cluster: no scenario matches {filters:?}");
        return;
    }
    if prereq::skip() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let failed = rt.block_on(async {
        let started = Instant::now();
        let cluster = Cluster::start(ClusterOptions::default())
            .await
            .expect("three-node cluster");
        eprintln!(
            "cluster up in {:?}: {}",
            started.elapsed(),
            cluster.bootstrap()
        );
        let mut failed = Vec::new();
        if soak.is_some() {
            if run_one(&cluster, "soak", |r| Box::pin(soak_run(r)))
                .await
                .is_err()
            {
                failed.push("soak");
            }
        } else {
            for (name, body) in chosen {
                if run_one(&cluster, name, *body).await.is_err() {
                    failed.push(*name);
                }
            }
        }
        failed
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    if !failed.is_empty() {
        eprintln!("real_cluster: FAILED: {failed:?}");
        std::process::exit(1);
    }
    eprintln!("real_cluster: all passed");
}

/// Runs one scenario; a panic fails it, and the cluster is healed for the
/// next one either way.
async fn run_one(cluster: &Cluster, name: &str, body: Scenario) -> Result<(), ()> {
    eprintln!("== {name}");
    let started = Instant::now();
    let result = {
        let mut run = Run::start(cluster, name).await;
        let fut = AssertUnwindSafe(async {
            body(&mut run).await;
            run.finish().await;
        });
        futures_catch(fut).await
    };
    if let Err(e) = cluster.heal().await {
        eprintln!("{name}: healing the cluster failed: {e}");
    }
    match result {
        Ok(()) => {
            eprintln!("== {name}: ok in {:?}", started.elapsed());
            Ok(())
        }
        Err(message) => {
            eprintln!("== {name}: FAILED after {:?}: {message}", started.elapsed());
            Err(())
        }
    }
}

/// Awaits `fut`, turning a panic into its message.
async fn futures_catch(fut: impl Future<Output = ()>) -> Result<(), String> {
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
struct Run<'c> {
    name: String,
    cluster: &'c Cluster,
    topic: String,
    services: Vec<Service>,
    watch: LeaderWatch,
    faults: Vec<Fault>,
    /// Leader moves before this are the topic's creation.
    steady_since: Instant,
}

/// The core's defaults, but a queue that holds a minute of the scenario's
/// 1,000 events/s and more (scenario c's 60 s without any acknowledgement
/// would fill the default 100 000), and health that turns Unhealthy after
/// 30 s of waiting rather than 60.
fn producer_config(name: &str) -> Config {
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
    async fn start(cluster: &'c Cluster, name: &str) -> Self {
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

    fn accepted(&self) -> usize {
        self.services.iter().map(Service::accepted).sum()
    }

    /// Waits until every service delivered something new.
    async fn wait_delivering(&self, within: Duration) {
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
    fn fault(&mut self, label: impl Into<String>, blocks_writes: bool) {
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
    fn healed(&mut self) {
        let now = Instant::now();
        let accepted = self.accepted();
        let elapsed = self.elapsed();
        let fault = self.faults.last_mut().expect("a fault to heal");
        eprintln!("   {elapsed:>6.1}s healed: {}", fault.label);
        fault.heal = Some((now, accepted));
    }

    fn elapsed(&self) -> f64 {
        self.steady_since.elapsed().as_secs_f64()
    }

    async fn leader_of(&self, partition: i32) -> i32 {
        let leaders = self.cluster.leaders(&self.topic).await.unwrap();
        leaders
            .get(&partition)
            .copied()
            .flatten()
            .unwrap_or_else(|| panic!("partition {partition} has no leader: {leaders:?}"))
    }

    async fn follower_of(&self, partition: i32) -> i32 {
        let leader = self.leader_of(partition).await;
        let isr = self.cluster.isr(&self.topic).await.unwrap();
        isr.get(&partition)
            .and_then(|r| r.iter().copied().find(|n| *n != leader))
            .unwrap_or_else(|| panic!("partition {partition} has no follower in sync: {isr:?}"))
    }

    /// Keeps sending for [`TAIL`], then finishes the services, reads every
    /// partition back, audits, and checks every bound.
    async fn finish(&mut self) {
        tokio::time::sleep(TAIL).await;
        let mut finished = Vec::new();
        for s in std::mem::take(&mut self.services) {
            finished.push(s.finish(Duration::from_secs(120)).await);
        }
        let want: usize = finished.iter().map(|f| f.sent.len()).sum();
        let (bootstrap, topic) = (self.cluster.bootstrap(), self.topic.clone());
        let consumed = tokio::task::spawn_blocking(move || {
            verify::consume(&bootstrap, &topic, want, Duration::from_secs(120))
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

// ----- scenarios --------------------------------------------------------------

/// a. SIGKILL the leader of a busy partition; restart it 20 s later; three
/// times in a row.
async fn leader_killed_three_times(r: &mut Run<'_>) {
    for round in 1..=3 {
        let leader = r.leader_of(0).await;
        r.cluster.kill(leader).await.unwrap();
        r.fault(
            format!("round {round}: leader {leader} of partition 0 killed"),
            false,
        );
        tokio::time::sleep(Duration::from_secs(20)).await;
        r.cluster.start_node(leader).await.unwrap();
        r.healed();
        r.cluster
            .wait_in_sync(&r.topic, Duration::from_secs(120))
            .await
            .unwrap();
    }
}

/// b. Clean shutdown of a follower, then of the leader; restart each.
async fn clean_shutdown_of_follower_then_leader(r: &mut Run<'_>) {
    let follower = r.follower_of(0).await;
    r.fault(format!("follower {follower} shut down"), false);
    r.cluster.stop(follower).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    r.cluster.start_node(follower).await.unwrap();
    r.healed();
    r.cluster
        .wait_in_sync(&r.topic, Duration::from_secs(120))
        .await
        .unwrap();
    let leader = r.leader_of(0).await;
    r.fault(format!("leader {leader} shut down"), false);
    r.cluster.stop(leader).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    r.cluster.start_node(leader).await.unwrap();
    r.healed();
}

/// c. Two of three brokers down for 60 s: in-sync replicas below
/// `min.insync.replicas`. Records wait, health says why, and everything is
/// delivered once the brokers return.
async fn two_of_three_down(r: &mut Run<'_>) {
    let leader = r.leader_of(0).await;
    let down: Vec<i32> = r
        .cluster
        .node_ids()
        .into_iter()
        .filter(|n| *n != leader)
        .collect();
    for n in &down {
        r.cluster.kill(*n).await.unwrap();
    }
    r.fault(format!("nodes {down:?} down"), true);
    let start = Instant::now();
    let mut verdicts: Vec<(Verdict, Vec<String>)> = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        let h = r.services[0].producer().health();
        if verdicts.last().is_none_or(|(v, _)| *v != h.verdict) {
            eprintln!(
                "   {:>6.1}s health {:?}: {:?}",
                r.elapsed(),
                h.verdict,
                h.reasons
            );
        }
        verdicts.push((h.verdict, h.reasons));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for n in &down {
        r.cluster.start_node(*n).await.unwrap();
    }
    r.healed();
    let degraded = verdicts.iter().position(|(v, _)| *v == Verdict::Degraded);
    let unhealthy = verdicts.iter().position(|(v, _)| *v == Verdict::Unhealthy);
    assert!(
        matches!((degraded, unhealthy), (Some(d), Some(u)) if d < u),
        "health was not Degraded then Unhealthy: {:?}",
        verdicts
            .iter()
            .map(|(v, _)| *v)
            .collect::<std::collections::BTreeSet<_>>()
    );
    let said_why = verdicts
        .iter()
        .filter(|(v, _)| *v != Verdict::Healthy)
        .any(|(_, reasons)| reasons.iter().any(|x| x.contains("replica")));
    let reasons: std::collections::BTreeSet<String> = verdicts
        .iter()
        .flat_map(|(_, r)| {
            r.iter()
                .map(|x| x.replace(|c: char| c.is_ascii_digit(), ""))
        })
        .collect();
    assert!(
        said_why,
        "no health reason named missing replicas: {reasons:?}"
    );
    let stats = r.services[0].stats();
    assert_eq!(stats.dead_lettered, 0);
}

/// d. Rolling restart of all three nodes, one at a time, as an operator
/// upgrading the cluster would (waiting for full ISR before the next).
async fn rolling_restart(r: &mut Run<'_>) {
    for node in r.cluster.node_ids() {
        r.fault(format!("node {node} restarted"), false);
        r.cluster.stop(node).await.unwrap();
        r.cluster.start_node(node).await.unwrap();
        r.healed();
        r.cluster
            .wait_in_sync(&r.topic, Duration::from_secs(120))
            .await
            .unwrap();
    }
}

/// e. A follower isolated from the other nodes for 30 s, then the leader of
/// a busy partition isolated for 30 s (leadership moves; the old leader's
/// in-flight requests fail).
async fn follower_then_leader_isolated(r: &mut Run<'_>) {
    let follower = r.follower_of(0).await;
    r.cluster.isolate(follower).await.unwrap();
    // acks=all waits for the isolated follower until it drops out of the ISR
    // (replica.lag.time.max.ms): writes are held meanwhile.
    r.fault(format!("follower {follower} isolated"), true);
    tokio::time::sleep(Duration::from_secs(30)).await;
    r.cluster.rejoin(follower).await.unwrap();
    r.healed();
    r.cluster
        .wait_in_sync(&r.topic, Duration::from_secs(120))
        .await
        .unwrap();
    let leader = r.leader_of(0).await;
    r.cluster.isolate(leader).await.unwrap();
    r.fault(format!("leader {leader} isolated"), false);
    tokio::time::sleep(Duration::from_secs(30)).await;
    r.cluster.rejoin(leader).await.unwrap();
    r.healed();
}

/// f. The client cut from the leader's broker only (its proxy blackholed)
/// for 30 s while the cluster itself is healthy.
async fn client_cut_from_the_leader(r: &mut Run<'_>) {
    let leader = r.leader_of(0).await;
    r.cluster.cut_client(leader, Mode::Blackhole);
    r.fault(format!("client cut from leader {leader}"), true);
    tokio::time::sleep(Duration::from_secs(30)).await;
    r.cluster.cut_client(leader, Mode::Pass);
    r.healed();
}

/// g. The active controller paused for 6 s, three times.
async fn controller_paused_three_times(r: &mut Run<'_>) {
    for round in 1..=3 {
        let controller = r.cluster.active_controller().await.unwrap();
        r.cluster.pause(controller).await.unwrap();
        // Paused, the node is also a broker that answers nothing.
        r.fault(
            format!("round {round}: controller {controller} paused"),
            true,
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        r.cluster.unpause(controller).await.unwrap();
        r.healed();
        r.cluster
            .wait_in_sync(&r.topic, Duration::from_secs(120))
            .await
            .unwrap();
    }
}

/// h. A broker killed, 2 minutes of sending, the broker restarted, then a
/// preferred-leader election moves leadership back to it (where idempotent
/// producers have hit `OutOfOrderSequence`).
async fn crash_then_preferred_leader_election(r: &mut Run<'_>) {
    let leader = r.leader_of(0).await;
    r.cluster.kill(leader).await.unwrap();
    r.fault(format!("leader {leader} killed for 2 minutes"), false);
    tokio::time::sleep(Duration::from_secs(120)).await;
    r.cluster.start_node(leader).await.unwrap();
    r.healed();
    r.cluster
        .wait_in_sync(&r.topic, Duration::from_secs(120))
        .await
        .unwrap();
    r.fault("preferred-leader election".to_owned(), false);
    r.cluster.elect_preferred_leaders(&r.topic).await.unwrap();
    r.healed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.leader_of(0).await != leader {
        assert!(
            Instant::now() < deadline,
            "leadership of partition 0 did not move back to {leader}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `ROBUST_PRODUCER_SOAK`: a number of faults for the soak; any other
/// value (`on`, say): 100.
fn soak_rounds() -> Option<usize> {
    let v = std::env::var("ROBUST_PRODUCER_SOAK").ok()?;
    Some(v.parse().ok().filter(|n| *n > 0).unwrap_or(100))
}

/// The soak: `n` random faults (a leader SIGKILLed, or a node bounced
/// cleanly), each held 2-15 s, with 1-10 s gaps.
async fn soak_run(r: &mut Run<'_>) {
    let n = soak_rounds().unwrap_or(100);
    eprintln!("soak: {n} faults");
    let mut rng = uuid::Uuid::new_v4().as_u128();
    let mut next = |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u64::try_from(rng % u128::from(below)).unwrap()
    };
    for i in 1..=n {
        let partition = i32::try_from(next(PARTITIONS as u64)).unwrap();
        let node = r.leader_of(partition).await;
        let kill = next(2) == 0;
        if kill {
            r.cluster.kill(node).await.unwrap();
        } else {
            r.cluster.stop(node).await.unwrap();
        }
        let verb = if kill { "killed" } else { "stopped" };
        r.fault(
            format!("{i}/{n}: leader {node} of partition {partition} {verb}"),
            false,
        );
        tokio::time::sleep(Duration::from_secs(2 + next(14))).await;
        r.cluster.start_node(node).await.unwrap();
        r.healed();
        r.cluster
            .wait_in_sync(&r.topic, Duration::from_secs(120))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1 + next(10))).await;
    }
}
