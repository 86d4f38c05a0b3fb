//! The three-node cluster harness (`robust_producer_tests::cluster`) proves
//! itself: start, topic creation, writes with acks=all, a killed leader
//! replaced (seen by the leader watch), restart, preferred election,
//! isolation from the peers (out of the ISR, still reachable by clients),
//! pause and kill of the active controller (dedicated controllers), two of
//! three brokers down (the quorum stays up, the ISRs shrink to the survivor,
//! acks=all writes are refused), heal, and nothing left behind.
//! Timings are printed (run with `--nocapture`).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _};
use robust_producer_tests::cluster::{Cluster, ClusterOptions, LeaderWatch};
use robust_producer_tests::prereq;
use robust_producer_tests::verify;

/// Runs the body on its own runtime (like `real_kafka.rs`).
fn scenario<F: Future<Output = ()>>(body: impl FnOnce() -> F) {
    if prereq::skip() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(body());
}

/// Produces `n` keyed records with acks=all; returns how many were
/// acknowledged within `timeout_ms`.
async fn try_produce(bootstrap: &str, topic: &str, tag: &str, n: usize, timeout_ms: u32) -> usize {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", timeout_ms.to_string())
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..n {
        let key = format!("{tag}-{}", i % 7);
        let payload = format!("{tag} record {i}");
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    let mut acked = 0;
    for p in pending {
        match p.await.unwrap() {
            Ok(_) => acked += 1,
            Err((e, m)) => eprintln!("not acknowledged: {e} (partition {})", m.partition()),
        }
    }
    acked
}

/// Produces `n` keyed records with acks=all; every one must be acknowledged.
async fn produce(bootstrap: &str, topic: &str, tag: &str, n: usize) {
    assert_eq!(try_produce(bootstrap, topic, tag, n, 30_000).await, n);
}

/// Polls `check` every 100 ms until it is true or `timeout` passed; returns
/// how long it took.
async fn until<F: Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

fn leftovers() -> String {
    let pid = format!("label=robust-producer.cluster.pid={}", std::process::id());
    let ps = Command::new("docker")
        .args(["ps", "-aq", "--filter", &pid])
        .output()
        .unwrap();
    let nets = Command::new("docker")
        .args(["network", "ls", "-q", "--filter", &pid])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&ps.stdout).trim(),
        String::from_utf8_lossy(&nets.stdout).trim()
    )
}

#[test]
fn cluster_harness() {
    scenario(|| async {
        let t = Instant::now();
        let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
        eprintln!("start(): {:?} ({})", t.elapsed(), cluster.bootstrap());
        let nodes = cluster.node_ids();
        assert_eq!(nodes, [1, 2, 3]);
        let controllers = cluster.controller_ids();
        assert_eq!(controllers, [101, 102, 103]);
        let bootstrap = cluster.bootstrap();

        let topic = format!("harness-{}", uuid::Uuid::new_v4());
        let t = Instant::now();
        cluster.create_topic(&topic, 6).await.unwrap();
        eprintln!("create_topic (6 partitions, RF 3): {:?}", t.elapsed());
        let isr = cluster.isr(&topic).await.unwrap();
        assert!(isr.values().all(|i| i == &nodes), "{isr:?}");

        let t = Instant::now();
        produce(&bootstrap, &topic, "a", 30).await;
        eprintln!("30 records acknowledged (acks=all): {:?}", t.elapsed());

        // Kill the leader of partition 0: the watch sees another node lead it.
        let watch = LeaderWatch::start(bootstrap.clone(), topic.clone());
        let victim = cluster.leaders(&topic).await.unwrap()[&0].unwrap();
        until(
            "watch sees the first leaders",
            Duration::from_secs(10),
            || async { watch.changes().iter().any(|c| c.partition == 0) },
        )
        .await;
        let t = Instant::now();
        cluster.kill(victim).await.unwrap();
        let killed = Instant::now();
        eprintln!("kill({victim}): {:?}", t.elapsed());
        until(
            "new leader of partition 0",
            Duration::from_secs(15),
            || async {
                watch.changes().iter().any(|c| {
                    c.partition == 0 && c.at > killed && c.leader.is_some_and(|l| l != victim)
                })
            },
        )
        .await;
        let after: Vec<_> = watch
            .changes()
            .into_iter()
            .filter(|c| c.partition == 0 && c.at > killed)
            .map(|c| (c.at - killed, c.leader))
            .collect();
        eprintln!("partition 0 after the kill of {victim}: {after:?}");

        let t = Instant::now();
        cluster.start_node(victim).await.unwrap();
        eprintln!("start_node({victim}) after kill: {:?}", t.elapsed());
        let t = Instant::now();
        cluster
            .wait_in_sync(&topic, Duration::from_secs(90))
            .await
            .unwrap();
        eprintln!("back in sync after the restart: {:?}", t.elapsed());

        // Leadership moves back to the preferred leaders.
        let preferred = cluster.preferred_leaders(&topic).await.unwrap();
        let before = cluster.leaders(&topic).await.unwrap();
        eprintln!("leaders before the election {before:?}, preferred {preferred:?}");
        assert!(
            preferred.iter().any(|(p, l)| before[p] != Some(*l)),
            "the restarted node should have lost its leaderships"
        );
        let t = Instant::now();
        cluster.elect_preferred_leaders(&topic).await.unwrap();
        let elected = t.elapsed();
        let moved = until("preferred leaders", Duration::from_secs(15), || async {
            let leaders = cluster.leaders(&topic).await.unwrap();
            preferred.iter().all(|(p, l)| leaders[p] == Some(*l))
        })
        .await;
        eprintln!("elect_preferred_leaders: {elected:?}, leaders moved back {moved:?} later");

        // Isolate a node: out of the ISR, still reachable through its proxy.
        let isolated = 3;
        let t = Instant::now();
        cluster.isolate(isolated).await.unwrap();
        let out = until(
            "isolated node leaves the ISR",
            Duration::from_secs(60),
            || async {
                cluster
                    .isr(&topic)
                    .await
                    .is_ok_and(|isr| isr.values().all(|i| !i.contains(&isolated)))
            },
        )
        .await;
        eprintln!(
            "isolate({isolated}): out of every ISR after {:?}",
            t.elapsed()
        );
        let _ = out;
        // Its own (stale) view, through its proxy: clients still reach it.
        let seen = cluster.partitions_seen_by(isolated, &topic).await.unwrap();
        let isr_seen: Vec<_> = seen.values().map(|p| p.isr.clone()).collect();
        eprintln!("the isolated node still answers through its proxy; its ISRs: {isr_seen:?}");
        // A fresh plain producer may take its metadata from the isolated
        // node (stale: it still leads its partitions in its own view) and
        // its writes there time out (acks=all, the followers follow the
        // new leader): that is the fault the scenarios are about.
        let acked = try_produce(&bootstrap, &topic, "b", 12, 10_000).await;
        eprintln!("writes with node {isolated} isolated: {acked} of 12 acknowledged within 10 s");
        let t = Instant::now();
        cluster.rejoin(isolated).await.unwrap();
        cluster
            .wait_in_sync(&topic, Duration::from_secs(90))
            .await
            .unwrap();
        eprintln!("rejoin({isolated}) -> in sync: {:?}", t.elapsed());

        // Pause the active controller.
        let t = Instant::now();
        let controller = cluster.active_controller().await.unwrap();
        eprintln!("active_controller() = {controller}: {:?}", t.elapsed());
        cluster.pause(controller).await.unwrap();
        let paused = Instant::now();
        let mut now_active = controller;
        while paused.elapsed() < Duration::from_secs(20) {
            if let Ok(c) = cluster.active_controller().await
                && c != controller
            {
                now_active = c;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "controller {controller} paused: active controller {now_active} after {:?}",
            paused.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.unpause(controller).await.unwrap();
        let t = Instant::now();
        let after_unpause = cluster.active_controller().await.unwrap();
        eprintln!("after unpause: active controller {after_unpause}");
        cluster
            .wait_in_sync(&topic, Duration::from_secs(90))
            .await
            .unwrap();
        eprintln!("unpause -> in sync: {:?}", t.elapsed());

        // Kill the active controller: another one takes over; restart it.
        let controller = cluster.active_controller().await.unwrap();
        let t = Instant::now();
        cluster.kill(controller).await.unwrap();
        let took = until(
            "another active controller",
            Duration::from_secs(20),
            || async {
                cluster
                    .active_controller()
                    .await
                    .is_ok_and(|c| c != controller)
            },
        )
        .await;
        eprintln!("kill({controller}) (active controller): another one active after {took:?}");
        let t2 = Instant::now();
        cluster.start_node(controller).await.unwrap();
        eprintln!(
            "start_node({controller}) (controller) after kill: {:?} (fault total {:?})",
            t2.elapsed(),
            t.elapsed()
        );
        produce(&bootstrap, &topic, "d", 5).await;

        // Two of three brokers down: the controllers (a quorum of their own)
        // fence them and shrink the ISRs to the survivor, and acks=all
        // writes are refused (NOT_ENOUGH_REPLICAS). A topic of its own, so
        // the count checked at the end is not affected.
        let small = format!("harness-minisr-{}", uuid::Uuid::new_v4());
        cluster.create_topic(&small, 3).await.unwrap();
        let survivor = cluster.leaders(&small).await.unwrap()[&0].unwrap();
        let down: Vec<i32> = nodes.iter().copied().filter(|n| *n != survivor).collect();
        let t = Instant::now();
        for n in &down {
            cluster.kill(*n).await.unwrap();
        }
        let shrunk = until(
            "ISRs shrink to the survivor",
            Duration::from_secs(20),
            || async {
                cluster
                    .isr(&small)
                    .await
                    .is_ok_and(|isr| isr.values().all(|i| i == &[survivor]))
            },
        )
        .await;
        let active = cluster.active_controller().await.unwrap();
        eprintln!(
            "brokers {down:?} killed: every ISR = [{survivor}] after {:?} \
             ({shrunk:?} after the kills); active controller {active}",
            t.elapsed()
        );
        let seen = cluster.partitions(&small).await.unwrap();
        assert!(
            seen.values()
                .all(|p| p.leader == Some(survivor) && p.replicas.len() == 3),
            "{seen:?}"
        );
        let t = Instant::now();
        let refused = try_produce(&bootstrap, &small, "e", 6, 5_000).await;
        assert_eq!(refused, 0, "acks=all writes succeeded with ISR 1 < 2");
        eprintln!(
            "acks=all writes with ISR 1 < 2: none acknowledged ({:?})",
            t.elapsed()
        );
        let t = Instant::now();
        for n in &down {
            let one = Instant::now();
            cluster.start_node(*n).await.unwrap();
            eprintln!("start_node({n}) (broker): {:?}", one.elapsed());
        }
        cluster
            .wait_in_sync(&small, Duration::from_secs(90))
            .await
            .unwrap();
        cluster
            .wait_in_sync(&topic, Duration::from_secs(90))
            .await
            .unwrap();
        eprintln!("brokers {down:?} restarted -> in sync: {:?}", t.elapsed());

        // Several faults at once (a controller among them), then heal.
        cluster.stop(103).await.unwrap();
        cluster.stop(1).await.unwrap();
        cluster.pause(2).await.unwrap();
        cluster.isolate(3).await.unwrap();
        cluster.cut_client(3, robust_producer_tests::proxy::Mode::Blackhole);
        let t = Instant::now();
        cluster.heal().await.unwrap();
        cluster
            .wait_in_sync(&topic, Duration::from_secs(120))
            .await
            .unwrap();
        eprintln!(
            "heal() of stop(103)+stop+pause+isolate+blackhole -> in sync: {:?}",
            t.elapsed()
        );

        // Everything written is there (the verify consumer works on the cluster).
        produce(&bootstrap, &topic, "c", 10).await;
        let read_from = bootstrap.clone();
        let read_topic = topic.clone();
        let consumed = tokio::task::spawn_blocking(move || {
            verify::consume(&read_from, &read_topic, 45 + acked, Duration::from_secs(60))
        })
        .await
        .unwrap()
        .unwrap();
        // 30 + 5 + 10 acknowledged for sure, `acked` of the 12 written
        // while a node was isolated (the others may be there too).
        assert!(
            (45 + acked..=57).contains(&consumed.len()),
            "every acknowledged record is on the topic: {} read, {acked} of 12 acknowledged",
            consumed.len()
        );

        drop(watch);
        let t = Instant::now();
        drop(cluster);
        eprintln!("drop: {:?}", t.elapsed());
        assert_eq!(leftovers(), "", "containers or network left behind");
    });
}
