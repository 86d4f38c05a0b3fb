//! An Apache Kafka cluster (KRaft) for fault scenarios: three brokers and,
//! by default, three dedicated controllers. Kill, stop, start, pause any
//! node, isolate it from its peers, cut the client's path to a broker,
//! elect preferred leaders.
//!
//! Why dedicated controllers: with combined nodes (every node broker and
//! controller, `process.roles=broker,controller`), "two of three brokers
//! down" also takes two of the three quorum voters, so the quorum is lost
//! and the survivor's metadata freezes: its ISRs never shrink, nothing is
//! fenced, and the survivor keeps acting on a stale view. The scenarios
//! mean something else, "in-sync replicas below `min.insync.replicas`":
//! the controller fences the dead brokers and shrinks the ISRs to the
//! survivor, whose metadata says ISR 1 of 3 and whose produce answers are
//! `NOT_ENOUGH_REPLICAS`. Production KRaft clusters mostly run dedicated
//! controllers too. [`ClusterOptions::controllers`] `= 0` gives the
//! combined mode (the node ids are then the quorum too, and a broker fault
//! is a controller fault as well).
//!
//! Node ids: brokers `1..=nodes` ([`Cluster::node_ids`]), controllers
//! `101..=100 + controllers` ([`Cluster::controller_ids`]; in combined mode
//! the brokers). Every fault operation takes either kind of id.
//!
//! Networking:
//!
//! * The harness creates an `--internal` Docker network `rp-cluster-<random>`.
//!   The nodes are the containers `<network>-node<id>` on it (that name is
//!   their host name for each other; names unique per run let several runs
//!   share one Docker engine). Controller (`CONTROLLER`, 9093) and
//!   inter-broker (`BROKER`, 9094) traffic stays on this network:
//!   `controller.quorum.voters=101@<network>-node101:9093,...`.
//! * Each broker's client listener (9092) is published on a fixed host port
//!   and fronted by a [`Proxy`] on another loopback port, which the broker
//!   advertises (`PLAINTEXT://127.0.0.1:<proxy port>`). Ports are picked
//!   before the container exists, so a restarted node keeps its addresses.
//!   Controllers have no client listener and no proxy.
//! * Each controller's listener is published too, for the harness's own
//!   quorum queries ([`Cluster::active_controller`]); nodes never use it.
//! * Published ports need a network with a gateway, and an internal network
//!   has none: every node is also connected to Docker's default `bridge`,
//!   which carries the published port. [`Cluster::isolate`] disconnects a
//!   node from the cluster network only: its peers lose it (and it them)
//!   while clients still reach a broker through its proxy.
//!
//! Settings besides the image's: heap `-Xmx384m -Xms128m` per broker,
//! `-Xmx256m -Xms64m` per controller (with the serial collector and the C1
//! compiler only: cheaper to start, which matters on small machines where
//! six JVMs start at once); the internal topics and
//! `default.replication.factor` at the broker count, `min.insync.replicas`
//! 2 (1 for a single broker); topic auto-creation off (a topic created by a
//! client's metadata request would have the wrong settings); the JVM's DNS
//! cache at 1 s (positive and negative), so a rejoined node is found again
//! at once. Kafka's timeouts stay at their defaults
//! (`broker.session.timeout.ms` 9 s: a killed or cut broker is fenced and
//! leaves the ISRs after about 9 s; `replica.lag.time.max.ms` 30 s).
//! [`ClusterOptions::env`] overrides any of these.
//!
//! Containers and the network carry the label `robust-producer.cluster`
//! and the owning process id; they are removed when the [`Cluster`] drops,
//! and those of a process that died are removed by the next
//! [`Cluster::start`].

mod docker;
mod faults;
mod meta;
mod node;
mod topics;
mod watch;
pub(crate) mod wire;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

pub use self::meta::PartitionState;
use self::node::{Client, Faults, Layout, Node};
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
    /// Number of brokers (ids `1..=nodes`); 3 by default.
    pub nodes: usize,
    /// Number of dedicated controller-only nodes (ids
    /// `101..=100 + controllers`); 3 by default. 0: combined mode, every
    /// broker is a controller too (see the module doc).
    pub controllers: usize,
    /// Extra `KAFKA_*` environment variables (broker and controller
    /// properties) for every node; they override the harness's settings.
    pub env: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            controllers: 3,
            env: Vec::new(),
        }
    }
}

/// A running cluster; its containers and network are removed on drop.
pub struct Cluster {
    // Dropped before the network (fields drop in order).
    nodes: Vec<Node>,
    network: docker::Network,
    layout: Layout,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Removes leftovers of earlier runs (containers and networks carrying
    /// our label whose process is gone), creates the Docker network, starts
    /// all nodes concurrently, each broker behind its own [`Proxy`], and
    /// waits until every broker answers through its proxy and lists all
    /// brokers (registered, unfenced: so the quorum is up, too).
    pub async fn start(options: ClusterOptions) -> Result<Self, Error> {
        prereq::require_kafka();
        if options.nodes == 0 {
            return Err("a cluster needs at least one broker".into());
        }
        let layout = Layout {
            brokers: options.nodes,
            controllers: options.controllers,
        };
        tokio::task::spawn_blocking(docker::remove_leftovers).await??;
        let name = format!(
            "rp-cluster-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let network = docker::Network::create(&name)?;
        let (repo, tag) = kafka::image_name();
        let mut starts = tokio::task::JoinSet::new();
        let mut sides = BTreeMap::new();
        let ids: Vec<i32> = layout
            .broker_ids()
            .chain(if layout.combined() {
                Vec::new()
            } else {
                layout.voter_ids()
            })
            .collect();
        for id in ids {
            let is_broker = layout.broker_ids().any(|b| b == id);
            let is_controller = layout.voter_ids().contains(&id);
            let container = format!("{name}-node{id}");
            let mut request = GenericImage::new(repo.clone(), tag.clone())
                .with_wait_for(WaitFor::Nothing)
                .with_container_name(&container)
                .with_hostname(&container)
                .with_network(&name)
                .with_label(docker::LABEL, &name)
                .with_label(docker::PID_LABEL, std::process::id().to_string());
            let client = if is_broker {
                let ports = Ports::reserve()?;
                let proxy = kafka::Kafka::proxy_only(ports).await?;
                request = request.with_mapped_port(ports.broker, 9092.tcp());
                Some(Client { ports, proxy })
            } else {
                None
            };
            let controller_port = if is_controller {
                let port = Ports::reserve()?.broker;
                request = request.with_mapped_port(port, 9093.tcp());
                Some(port)
            } else {
                None
            };
            let env = layout.env(&name, id, client.as_ref().map(|c| c.ports));
            for (k, v) in env.into_iter().chain(options.env.iter().cloned()) {
                request = request.with_env_var(k, v);
            }
            sides.insert(id, (client, controller_port));
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
                    let Some((client, controller_port)) = sides.remove(&id) else {
                        continue;
                    };
                    nodes.push(Node {
                        id,
                        name: container_name,
                        client,
                        controller_port,
                        container,
                        faults: Mutex::new(Faults::NONE),
                    });
                }
                (Err(e), _) => failure = Some(format!("starting node {id}: {e}").into()),
                (_, Err(e)) => failure = Some(e),
            }
        }
        nodes.sort_by_key(|n| n.id);
        let cluster = Self {
            nodes,
            network,
            layout,
        };
        if let Some(e) = failure {
            return Err(e);
        }
        let ids = cluster.node_ids();
        cluster.wait_listed(&ids, &ids, START_TIMEOUT).await?;
        Ok(cluster)
    }

    /// The bootstrap addresses (the brokers' proxies), comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter_map(Node::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The broker ids, ascending (`1..=nodes`).
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|n| n.is_broker())
            .map(|n| n.id)
            .collect()
    }

    /// The controller (quorum voter) ids, ascending: `101..` with dedicated
    /// controllers, the broker ids in combined mode.
    pub fn controller_ids(&self) -> Vec<i32> {
        self.layout.voter_ids()
    }

    /// The Docker network's name.
    pub fn network(&self) -> &str {
        self.network.name()
    }

    /// The container name of `node` (for `docker` commands of one's own).
    pub fn container_name(&self, node: i32) -> Result<&str, Error> {
        Ok(&self.node(node)?.name)
    }

    /// The proxy in front of broker `node`.
    pub fn proxy(&self, node: i32) -> Result<&Proxy, Error> {
        match &self.node(node)?.client {
            Some(client) => Ok(&client.proxy),
            None => Err(format!("node {node} is a controller: no proxy").into()),
        }
    }

    fn node(&self, id: i32) -> Result<&Node, Error> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            let ids: Vec<i32> = self.nodes.iter().map(|n| n.id).collect();
            format!("no node {id} (nodes: {ids:?})").into()
        })
    }

    /// Brokers that should answer: not stopped, paused or cut from the
    /// client; those not isolated first (they have the majority's view).
    fn answering(&self) -> Vec<&Node> {
        let mut nodes: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| {
                let f = n.faults();
                n.is_broker() && !f.stopped && !f.paused && f.client == Mode::Pass
            })
            .collect();
        nodes.sort_by_key(|n| n.faults().isolated);
        nodes
    }

    /// The KRaft quorum leader (the active controller): `DescribeQuorum`
    /// sent straight to each running, unpaused controller's listener (only
    /// the leader answers it). A controller that is not isolated is asked
    /// first: an isolated former leader may still believe it leads for a
    /// moment. Asking brokers instead would hang while the controller they
    /// forward to is paused.
    pub async fn active_controller(&self) -> Result<i32, Error> {
        Ok(self.quorum().await?.leader)
    }

    /// The quorum as its leader describes it (see
    /// [`Cluster::active_controller`] for whom it asks).
    async fn quorum(&self) -> Result<wire::Quorum, Error> {
        let mut nodes: Vec<(&Node, u16)> = self
            .nodes
            .iter()
            .filter(|n| !n.faults().stopped && !n.faults().paused)
            .filter_map(|n| n.controller_port.map(|port| (n, port)))
            .collect();
        nodes.sort_by_key(|(n, _)| n.faults().isolated);
        let mut errors = Vec::new();
        for (node, port) in nodes {
            match wire::describe_quorum(&format!("127.0.0.1:{port}")).await {
                Ok(quorum) => return Ok(quorum),
                Err(e) => errors.push(format!("node {}: {e}", node.id)),
            }
        }
        Err(format!("no controller told the quorum leader: {errors:?}").into())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &self.nodes {
            if n.faults().paused {
                let _ = docker::run(&["unpause", &n.name]);
            }
            if let Some(client) = &n.client {
                client.proxy.set_mode(Mode::Reset);
            }
        }
        // Removes the containers (testcontainers' drop), then the network.
        self.nodes.clear();
    }
}
