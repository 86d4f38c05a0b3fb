//! The three-broker proof: robust-producer over librdkafka against an
//! Apache Kafka 4.4.0 KRaft cluster of three brokers and three dedicated
//! controllers (replication factor 3, `min.insync.replicas=2`, unclean
//! leader election off; see `robust_producer_tests::cluster`) under leader
//! crashes, clean shutdowns, in-sync replicas below `min.insync.replicas`,
//! rolling restarts, isolated brokers, a client cut from one broker,
//! controller pauses and a preferred-leader election after a crash.
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

#![expect(
    clippy::unwrap_used,
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "test code: a panic is a failure, output helps"
)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::{Duration, Instant};

use robust_producer::Verdict;
use robust_producer_tests::cluster::{Cluster, ClusterOptions};
use robust_producer_tests::prereq;
use robust_producer_tests::proxy::Mode;
use robust_producer_tests::scenario::{PARTITIONS, Run, catch_panic};

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
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in &all {
            println!("{name}: test");
        }
        return;
    }
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
    // The producers' own account of each fault: warnings and above
    // (`RUST_LOG` overrides).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
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
        catch_panic(fut).await
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

// ----- scenarios --------------------------------------------------------------

/// Waits until `partition`'s leader is no longer `node`: the fault took
/// effect.
async fn moved_away(r: &Run<'_>, partition: i32, node: i32, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let leaders = r.cluster.leaders(&r.topic).await.unwrap_or_default();
        if leaders.get(&partition).copied().flatten() != Some(node) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "partition {partition} still led by {node} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

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
        let killed = Instant::now();
        moved_away(r, 0, leader, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_secs(20).saturating_sub(killed.elapsed())).await;
        r.cluster.start_node(leader).await.unwrap();
        r.healed();
        r.wait_in_sync().await;
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
    r.wait_in_sync().await;
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
        r.wait_in_sync().await;
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
    let isolated = Instant::now();
    let deadline = isolated + Duration::from_secs(30);
    loop {
        let isr = r.cluster.isr(&r.topic).await.unwrap();
        if isr.get(&0).is_some_and(|n| !n.contains(&follower)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "isolated follower {follower} still in sync: {isr:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(isolated.elapsed())).await;
    r.cluster.rejoin(follower).await.unwrap();
    r.healed();
    r.wait_in_sync().await;
    let leader = r.leader_of(0).await;
    r.cluster.isolate(leader).await.unwrap();
    r.fault(format!("leader {leader} isolated"), false);
    let isolated = Instant::now();
    moved_away(r, 0, leader, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(isolated.elapsed())).await;
    r.cluster.rejoin(leader).await.unwrap();
    r.healed();
}

/// f. The client cut from the leader's broker only (its proxy blackholed)
/// for 30 s while the cluster itself is healthy.
async fn client_cut_from_the_leader(r: &mut Run<'_>) {
    let leader = r.leader_of(0).await;
    let led: Vec<i32> = r
        .cluster
        .leaders(&r.topic)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, l)| *l == Some(leader))
        .map(|(p, _)| p)
        .collect();
    r.cluster.cut_client(leader, Mode::Blackhole);
    r.fault(
        format!("client cut from leader {leader} of partitions {led:?}"),
        true,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = r.delivered_on(&led);
    tokio::time::sleep(Duration::from_secs(28)).await;
    let during = r.delivered_on(&led) - before;
    r.cluster.cut_client(leader, Mode::Pass);
    r.healed();
    assert_eq!(during, 0, "partitions {led:?} delivered through a cut path");
}

/// g. The active controller paused for 6 s, three times.
async fn controller_paused_three_times(r: &mut Run<'_>) {
    for round in 1..=3 {
        let controller = r.cluster.active_controller().await.unwrap();
        r.cluster.pause(controller).await.unwrap();
        r.fault(
            format!("round {round}: controller {controller} paused"),
            true,
        );
        let paused = Instant::now();
        let mut successor = None;
        while paused.elapsed() < Duration::from_secs(6) {
            if let Ok(c) = r.cluster.active_controller().await
                && c != controller
            {
                successor = Some(c);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            successor.is_some(),
            "no controller took over from {controller} within 6 s"
        );
        r.cluster.unpause(controller).await.unwrap();
        r.healed();
        r.wait_in_sync().await;
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
    r.wait_in_sync().await;
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
        r.wait_in_sync().await;
        tokio::time::sleep(Duration::from_secs(1 + next(10))).await;
    }
}
