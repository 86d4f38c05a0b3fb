//! A three-node Apache Kafka cluster (KRaft, every node broker and
//! controller) for fault scenarios: kill, stop, start, pause, isolate a node
//! from its peers, cut the client's path to a node, elect preferred leaders.
//!
//! Networking:
//!
//! * The harness creates an `--internal` Docker network `rp-cluster-<random>`.
//!   The nodes are the containers `<network>-node<N>` on it (that name is
//!   their host name for each other; names unique per run let several runs
//!   share one Docker engine). Controller (`CONTROLLER`, 9093) and
//!   inter-broker (`BROKER`, 9094) traffic stays on this network:
//!   `controller.quorum.voters=1@<network>-node1:9093,...`.
//! * Each node's client listener (9092) is published on a fixed host port
//!   and fronted by a [`Proxy`] on another loopback port, which the node
//!   advertises (`PLAINTEXT://127.0.0.1:<proxy port>`). Ports are picked
//!   before the container exists, so a restarted node keeps its addresses.
//! * The controller listener is published too, for the harness's own
//!   quorum queries ([`Cluster::active_controller`]); nodes never use it.
//! * Published ports need a network with a gateway, and an internal network
//!   has none: every node is also connected to Docker's default `bridge`,
//!   which carries the published port. [`Cluster::isolate`] disconnects a
//!   node from the cluster network only: its peers lose it (and it them)
//!   while clients still reach it through its proxy.
//!
//! Settings besides the image's: heap `-Xmx384m -Xms128m` per node; the
//! internal topics and `default.replication.factor` at the node count,
//! `min.insync.replicas` 2 (1 for a single node); topic auto-creation off
//! (a topic created by a client's metadata request would have the wrong
//! settings); the JVM's DNS cache at 1 s (positive and negative), so a
//! rejoined node is found again at once. Kafka's timeouts stay at their
//! defaults (`broker.session.timeout.ms` 9 s: a killed or cut broker is
//! fenced and leaves the ISRs after about 9 s; `replica.lag.time.max.ms`
//! 30 s). [`ClusterOptions::env`] overrides any of these.
//!
//! Containers and the network carry the label `robust-producer.cluster`
//! and the owning process id; they are removed when the [`Cluster`] drops,
//! and those of a process that died are removed by the next
//! [`Cluster::start`].

mod docker;
mod meta;
mod watch;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

pub use self::meta::PartitionState;
pub use self::watch::{LeaderChange, LeaderWatch};
use crate::kafka::{self, Error, Ports};
use crate::prereq;
use crate::proxy::{Mode, Proxy};

/// How long [`Cluster::start`] and [`Cluster::start_node`] wait for nodes
/// to come up.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// Timeout of one metadata request to one node.
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// How often waits poll.
const POLL: Duration = Duration::from_millis(250);

/// Cluster settings a scenario may change.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of nodes (each broker and controller); 3 by default.
    pub nodes: usize,
    /// Extra `KAFKA_*` environment variables (broker properties) for every
    /// node; they override the harness's settings.
    pub env: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            env: Vec::new(),
        }
    }
}

/// Faults the harness has applied to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Faults {
    stopped: bool,
    paused: bool,
    isolated: bool,
    client: Mode,
}

impl Faults {
    const NONE: Self = Self {
        stopped: false,
        paused: false,
        isolated: false,
        client: Mode::Pass,
    };
}

struct Node {
    id: i32,
    name: String,
    ports: Ports,
    /// Host port publishing the controller listener (9093), for the
    /// harness's own quorum queries only: peers use the cluster network.
    controller_port: u16,
    proxy: Proxy,
    container: ContainerAsync<GenericImage>,
    faults: Mutex<Faults>,
}

impl Node {
    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.ports.proxy)
    }

    fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// A running cluster; its containers and network are removed on drop.
pub struct Cluster {
    // Dropped before the network (fields drop in order).
    nodes: Vec<Node>,
    network: docker::Network,
}

fn voters(network: &str, nodes: usize) -> String {
    (1..=nodes)
        .map(|id| format!("{id}@{network}-node{id}:9093"))
        .collect::<Vec<_>>()
        .join(",")
}

fn node_env(network: &str, id: i32, ports: Ports, nodes: usize) -> Vec<(String, String)> {
    let n = nodes.to_string();
    let min_isr = nodes.min(2).to_string();
    let env = vec![
        ("KAFKA_NODE_ID", id.to_string()),
        ("KAFKA_PROCESS_ROLES", "broker,controller".to_owned()),
        ("KAFKA_CONTROLLER_QUORUM_VOTERS", voters(network, nodes)),
        (
            "KAFKA_LISTENERS",
            "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9094,CONTROLLER://0.0.0.0:9093".to_owned(),
        ),
        (
            "KAFKA_ADVERTISED_LISTENERS",
            format!(
                "PLAINTEXT://127.0.0.1:{},BROKER://{network}-node{id}:9094",
                ports.proxy
            ),
        ),
        ("KAFKA_INTER_BROKER_LISTENER_NAME", "BROKER".to_owned()),
        ("KAFKA_HEAP_OPTS", "-Xmx384m -Xms128m".to_owned()),
        (
            "KAFKA_OPTS",
            "-Dsun.net.inetaddr.ttl=1 -Dsun.net.inetaddr.negative.ttl=1".to_owned(),
        ),
        ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false".to_owned()),
        ("KAFKA_DEFAULT_REPLICATION_FACTOR", n.clone()),
        ("KAFKA_MIN_INSYNC_REPLICAS", min_isr.clone()),
        ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", n.clone()),
        ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", n.clone()),
        ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", min_isr.clone()),
        ("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", n),
        ("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", min_isr),
    ];
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl Cluster {
    /// Removes leftovers of earlier runs (containers and networks carrying
    /// our label whose process is gone), creates the Docker network, starts
    /// the nodes (ids `1..=nodes`) concurrently, each behind its own
    /// [`Proxy`], and waits until every node answers through its proxy and
    /// lists all nodes as brokers (registered, unfenced).
    pub async fn start(options: ClusterOptions) -> Result<Self, Error> {
        prereq::require_kafka();
        if options.nodes == 0 {
            return Err("a cluster needs at least one node".into());
        }
        tokio::task::spawn_blocking(docker::remove_leftovers).await??;
        let name = format!(
            "rp-cluster-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let network = docker::Network::create(&name)?;
        let (repo, tag) = kafka::image_name();
        let mut starts = tokio::task::JoinSet::new();
        let mut proxies = BTreeMap::new();
        for id in (1..=options.nodes).filter_map(|n| i32::try_from(n).ok()) {
            let ports = Ports::reserve()?;
            let controller_port = Ports::reserve()?.broker;
            let proxy = kafka::Kafka::proxy_only(ports).await?;
            proxies.insert(id, (ports, controller_port, proxy));
            let container = format!("{name}-node{id}");
            let mut request = GenericImage::new(repo.clone(), tag.clone())
                .with_wait_for(WaitFor::Nothing)
                .with_container_name(&container)
                .with_hostname(&container)
                .with_network(&name)
                .with_label(docker::LABEL, &name)
                .with_label(docker::PID_LABEL, std::process::id().to_string())
                .with_mapped_port(ports.broker, 9092.tcp())
                .with_mapped_port(controller_port, 9093.tcp());
            for (k, v) in node_env(&name, id, ports, options.nodes)
                .into_iter()
                .chain(options.env.iter().cloned())
            {
                request = request.with_env_var(k, v);
            }
            starts.spawn(async move {
                let started = request.start().await;
                // The published port needs the default bridge (see the module doc).
                let connected = match &started {
                    Ok(_) => docker::run_async(
                        ["network", "connect", "bridge", &container]
                            .map(str::to_owned)
                            .into(),
                    )
                    .await
                    .map(drop),
                    Err(_) => Ok(()),
                };
                (id, container, started, connected)
            });
        }
        let mut nodes = Vec::new();
        let mut failure: Option<Error> = None;
        while let Some(joined) = starts.join_next().await {
            let (id, container_name, started, connected) = joined?;
            match (started, connected) {
                (Ok(container), Ok(())) => {
                    let Some((ports, controller_port, proxy)) = proxies.remove(&id) else {
                        continue;
                    };
                    nodes.push(Node {
                        id,
                        name: container_name,
                        ports,
                        controller_port,
                        proxy,
                        container,
                        faults: Mutex::new(Faults::NONE),
                    });
                }
                (Err(e), _) => failure = Some(format!("starting node {id}: {e}").into()),
                (_, Err(e)) => failure = Some(e),
            }
        }
        nodes.sort_by_key(|n| n.id);
        let cluster = Self { nodes, network };
        if let Some(e) = failure {
            return Err(e);
        }
        let ids = cluster.node_ids();
        cluster.wait_listed(&ids, &ids, START_TIMEOUT).await?;
        Ok(cluster)
    }

    /// The bootstrap addresses (the proxies), comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(Node::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node ids, ascending.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The Docker network's name.
    pub fn network(&self) -> &str {
        self.network.name()
    }

    /// The container name of `node` (for `docker` commands of one's own).
    pub fn container_name(&self, node: i32) -> Result<&str, Error> {
        Ok(&self.node(node)?.name)
    }

    /// The proxy in front of `node`.
    pub fn proxy(&self, node: i32) -> Result<&Proxy, Error> {
        Ok(&self.node(node)?.proxy)
    }

    fn node(&self, id: i32) -> Result<&Node, Error> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| format!("no node {id} (nodes: {:?})", self.node_ids()).into())
    }

    /// Nodes that should answer: not stopped, paused or cut from the
    /// client; those not isolated first (they have the majority's view).
    fn answering(&self) -> Vec<&Node> {
        let mut nodes: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| {
                let f = n.faults();
                !f.stopped && !f.paused && f.client == Mode::Pass
            })
            .collect();
        nodes.sort_by_key(|n| n.faults().isolated);
        nodes
    }

    /// Creates `topic` with replication factor = node count,
    /// `min.insync.replicas=2` (1 for a single node),
    /// `unclean.leader.election.enable=false` and
    /// `message.timestamp.type=LogAppendTime`, then waits (up to 60 s) until
    /// every partition has a leader and a full ISR.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        let rf = i32::try_from(self.nodes.len())?;
        let min_isr = rf.min(2).to_string();
        meta::create_topic(
            &self.bootstrap(),
            topic,
            partitions,
            rf,
            &[
                ("min.insync.replicas", &min_isr),
                ("unclean.leader.election.enable", "false"),
                ("message.timestamp.type", "LogAppendTime"),
            ],
        )
        .await?;
        self.wait_in_sync(topic, Duration::from_secs(60)).await
    }

    /// Every partition of `topic` as the first answering node sees it (not
    /// stopped, paused or cut from the client; not isolated if possible).
    pub async fn partitions(&self, topic: &str) -> Result<BTreeMap<i32, PartitionState>, Error> {
        let mut errors = Vec::new();
        for node in self.answering() {
            match wire::metadata(&node.bootstrap(), Some(topic), METADATA_TIMEOUT).await {
                Ok(snapshot) => return Ok(snapshot.partitions),
                Err(e) => errors.push(format!("node {}: {e}", node.id)),
            }
        }
        Err(format!("no node answered the metadata of {topic}: {errors:?}").into())
    }

    /// Every partition of `topic` as `node` itself sees it, asked through
    /// its proxy (an isolated node answers with its own, stale, view).
    pub async fn partitions_seen_by(
        &self,
        node: i32,
        topic: &str,
    ) -> Result<BTreeMap<i32, PartitionState>, Error> {
        let n = self.node(node)?;
        Ok(
            wire::metadata(&n.bootstrap(), Some(topic), METADATA_TIMEOUT)
                .await?
                .partitions,
        )
    }

    /// Each partition's leader (`None` when there is none), see
    /// [`Cluster::partitions`] for whose view.
    pub async fn leaders(&self, topic: &str) -> Result<BTreeMap<i32, Option<i32>>, Error> {
        Ok(self
            .partitions(topic)
            .await?
            .into_iter()
            .map(|(p, s)| (p, s.leader))
            .collect())
    }

    /// Each partition's ISR (sorted), see [`Cluster::partitions`].
    pub async fn isr(&self, topic: &str) -> Result<BTreeMap<i32, Vec<i32>>, Error> {
        Ok(self
            .partitions(topic)
            .await?
            .into_iter()
            .map(|(p, s)| (p, s.isr))
            .collect())
    }

    /// Each partition's preferred leader (its first replica).
    pub async fn preferred_leaders(&self, topic: &str) -> Result<BTreeMap<i32, i32>, Error> {
        Ok(self
            .partitions(topic)
            .await?
            .into_iter()
            .filter_map(|(p, s)| s.replicas.first().map(|&r| (p, r)))
            .collect())
    }

    /// The KRaft quorum leader (the active controller): `DescribeQuorum`
    /// sent straight to each running, unpaused node's controller listener
    /// (only the leader answers it). A node that is not isolated is asked
    /// first: an isolated former leader may still believe it leads for a
    /// moment. Asking brokers instead would hang while the controller they
    /// forward to is paused.
    pub async fn active_controller(&self) -> Result<i32, Error> {
        let mut nodes: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| !n.faults().stopped && !n.faults().paused)
            .collect();
        nodes.sort_by_key(|n| n.faults().isolated);
        let mut errors = Vec::new();
        for node in nodes {
            let addr = format!("127.0.0.1:{}", node.controller_port);
            match wire::quorum_leader(&addr).await {
                Ok(leader) => return Ok(leader),
                Err(e) => errors.push(format!("node {}: {e}", node.id)),
            }
        }
        Err(format!("no controller told the quorum leader: {errors:?}").into())
    }

    /// Kills `node` (SIGKILL: a crash) and waits until its container exited.
    pub async fn kill(&self, node: i32) -> Result<(), Error> {
        let n = self.node(node)?;
        docker::run_async(vec!["kill".into(), n.name.clone()]).await?;
        n.update(|f| f.stopped = true);
        let name = n.name.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::task::spawn_blocking({
            let name = name.clone();
            move || docker::status(&name)
        })
        .await??
            == "running"
        {
            if Instant::now() > deadline {
                return Err(format!("node {node} still running 30 s after SIGKILL").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops `node` gracefully (SIGTERM: a controlled shutdown, SIGKILL
    /// after 60 s) and waits until it exited.
    pub async fn stop(&self, node: i32) -> Result<(), Error> {
        let n = self.node(node)?;
        n.update(|f| f.stopped = true);
        Ok(n.container.stop_with_timeout(Some(60)).await?)
    }

    /// Starts a stopped or killed `node` (same ports, same data) and waits
    /// until it logged `Kafka Server started`, answers through its proxy,
    /// and every other answering node lists it as a broker (registered,
    /// unfenced). An isolated node is only started, not waited for by its
    /// peers: [`Cluster::rejoin`] it first.
    pub async fn start_node(&self, node: i32) -> Result<(), Error> {
        self.start_nodes(&[node]).await
    }

    async fn start_nodes(&self, ids: &[i32]) -> Result<(), Error> {
        let since = docker::now_for_since();
        for &id in ids {
            let n = self.node(id)?;
            n.container.start().await?;
            n.update(|f| {
                f.stopped = false;
                f.paused = false;
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        for &id in ids {
            let name = self.node(id)?.name.clone();
            loop {
                let since = since.clone();
                let name = name.clone();
                let log = tokio::task::spawn_blocking(move || docker::logs_since(&name, &since))
                    .await??;
                if log.contains("Kafka Server started") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "node {id} did not log 'Kafka Server started' within {START_TIMEOUT:?}"
                    )
                    .into());
                }
                tokio::time::sleep(POLL).await;
            }
        }
        let askers: Vec<i32> = self
            .answering()
            .iter()
            .filter(|n| !n.faults().isolated || ids.contains(&n.id))
            .map(|n| n.id)
            .collect();
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.wait_listed(&askers, ids, remaining).await
    }

    /// Waits until each node of `askers` answers through its proxy and lists
    /// every node of `listed` as a broker.
    async fn wait_listed(
        &self,
        askers: &[i32],
        listed: &[i32],
        timeout: Duration,
    ) -> Result<(), Error> {
        let want: BTreeSet<i32> = listed.iter().copied().collect();
        let deadline = Instant::now() + timeout;
        for &id in askers {
            let bootstrap = self.node(id)?.bootstrap();
            loop {
                let seen = wire::metadata(&bootstrap, None, METADATA_TIMEOUT).await;
                match seen {
                    Ok(s) if want.is_subset(&s.brokers) => break,
                    other if Instant::now() > deadline => {
                        return Err(format!(
                            "node {id} does not list brokers {want:?} after {timeout:?}: {other:?}"
                        )
                        .into());
                    }
                    _ => tokio::time::sleep(POLL).await,
                }
            }
        }
        Ok(())
    }

    /// Freezes `node` (`docker pause`): connections stay open, nothing
    /// answers.
    pub async fn pause(&self, node: i32) -> Result<(), Error> {
        let n = self.node(node)?;
        n.container.pause().await?;
        n.update(|f| f.paused = true);
        Ok(())
    }

    /// Thaws a paused `node`.
    pub async fn unpause(&self, node: i32) -> Result<(), Error> {
        let n = self.node(node)?;
        n.container.unpause().await?;
        n.update(|f| f.paused = false);
        Ok(())
    }

    /// Cuts `node` from the other nodes (disconnects it from the cluster
    /// network); clients still reach it through its proxy.
    pub async fn isolate(&self, node: i32) -> Result<(), Error> {
        let n = self.node(node)?;
        let args = ["network", "disconnect", self.network.name(), &n.name];
        docker::run_async(args.map(str::to_owned).into()).await?;
        n.update(|f| f.isolated = true);
        Ok(())
    }

    /// Connects an isolated `node` back to the cluster network (same name).
    pub async fn rejoin(&self, node: i32) -> Result<(), Error> {
        let n = self.node(node)?;
        let args = ["network", "connect", self.network.name(), &n.name];
        docker::run_async(args.map(str::to_owned).into()).await?;
        n.update(|f| f.isolated = false);
        Ok(())
    }

    /// Sets the proxy mode of the client's path to `node` (unknown nodes
    /// are ignored).
    pub fn cut_client(&self, node: i32, mode: Mode) {
        if let Ok(n) = self.node(node) {
            n.proxy.set_mode(mode);
            n.update(|f| f.client = mode);
        }
    }

    /// Moves every partition of `topic` to its preferred leader
    /// (`ElectLeaders`, type PREFERRED, sent to the first answering node;
    /// partitions already led by it are fine). Fails when a preferred
    /// leader cannot lead (not in the ISR, down). Leadership moves when the
    /// controller has decided, before every broker's metadata shows it.
    pub async fn elect_preferred_leaders(&self, topic: &str) -> Result<(), Error> {
        let partitions: Vec<i32> = self.partitions(topic).await?.into_keys().collect();
        let mut errors = Vec::new();
        for node in self.answering() {
            match wire::elect_preferred(&node.bootstrap(), topic, &partitions).await {
                Ok(()) => return Ok(()),
                Err(e) => errors.push(format!("node {}: {e}", node.id)),
            }
        }
        Err(format!("preferred election of {topic} failed: {errors:?}").into())
    }

    /// Waits until every node whose client path is not cut reports every
    /// partition of `topic` with a leader among the nodes and the ISR = all
    /// nodes.
    pub async fn wait_in_sync(&self, topic: &str, timeout: Duration) -> Result<(), Error> {
        let all = self.node_ids();
        let deadline = Instant::now() + timeout;
        loop {
            let mut last = String::new();
            let mut ok = true;
            for node in self
                .nodes
                .iter()
                .filter(|n| n.faults().client == Mode::Pass)
            {
                let seen = wire::metadata(&node.bootstrap(), Some(topic), METADATA_TIMEOUT).await;
                let synced = seen.as_ref().is_ok_and(|s| {
                    s.partitions
                        .values()
                        .all(|p| p.leader.is_some_and(|l| all.contains(&l)) && p.isr == all)
                });
                if !synced {
                    ok = false;
                    last = format!("node {}: {seen:?}", node.id);
                    break;
                }
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{topic} not in sync after {timeout:?}: {last}").into());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Undoes every fault: proxies back to pass, paused nodes unpaused,
    /// isolated nodes rejoined, stopped nodes started; then waits until
    /// every node lists all nodes as brokers.
    pub async fn heal(&self) -> Result<(), Error> {
        let mut stopped = Vec::new();
        for n in &self.nodes {
            self.cut_client(n.id, Mode::Pass);
            let f = n.faults();
            if f.paused {
                self.unpause(n.id).await?;
            }
            if f.isolated {
                self.rejoin(n.id).await?;
            }
            if f.stopped {
                stopped.push(n.id);
            }
        }
        if !stopped.is_empty() {
            self.start_nodes(&stopped).await?;
        }
        let ids = self.node_ids();
        self.wait_listed(&ids, &ids, START_TIMEOUT).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &self.nodes {
            if n.faults().paused {
                let _ = docker::run(&["unpause", &n.name]);
            }
            n.proxy.set_mode(Mode::Reset);
        }
        // Removes the containers (testcontainers' drop), then the network.
        self.nodes.clear();
    }
}
