//! One node of the cluster (a broker, a dedicated controller, or in
//! combined mode both), the faults applied to it, and its settings.

use std::sync::{Mutex, PoisonError};

use testcontainers::{ContainerAsync, GenericImage};

use crate::kafka::{Error, Ports};
use crate::proxy::{Mode, Proxy};

/// The first dedicated controller's id is `CONTROLLER_ID_BASE + 1`.
pub(crate) const CONTROLLER_ID_BASE: i32 = 100;

/// Faults the harness has applied to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Faults {
    pub(crate) stopped: bool,
    pub(crate) paused: bool,
    pub(crate) isolated: bool,
    pub(crate) client: Mode,
}

impl Faults {
    pub(crate) const NONE: Self = Self {
        stopped: false,
        paused: false,
        isolated: false,
        client: Mode::Pass,
    };
}

/// A broker's client side: its published port and the proxy in front.
pub(crate) struct Client {
    pub(crate) ports: Ports,
    pub(crate) proxy: Proxy,
}

pub(crate) struct Node {
    pub(crate) id: i32,
    pub(crate) name: String,
    /// `Some` for brokers (combined nodes too), `None` for dedicated
    /// controllers.
    pub(crate) client: Option<Client>,
    /// Host port publishing the controller listener (9093) of a node that
    /// is a controller, for the harness's own quorum queries only: peers
    /// use the cluster network.
    pub(crate) controller_port: Option<u16>,
    pub(crate) container: ContainerAsync<GenericImage>,
    pub(crate) faults: Mutex<Faults>,
}

impl Node {
    /// The proxy address of a broker.
    pub(crate) fn bootstrap(&self) -> Option<String> {
        self.client
            .as_ref()
            .map(|c| format!("127.0.0.1:{}", c.ports.proxy))
    }

    /// [`Node::bootstrap`], or an error naming a controller.
    pub(crate) fn broker_addr(&self) -> Result<String, Error> {
        self.bootstrap()
            .ok_or_else(|| format!("node {} is a controller, not a broker", self.id).into())
    }

    pub(crate) fn is_broker(&self) -> bool {
        self.client.is_some()
    }

    pub(crate) fn is_controller(&self) -> bool {
        self.controller_port.is_some()
    }

    pub(crate) fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Which nodes exist: brokers `1..=brokers`; controllers
/// `101..=100 + controllers`, or none (combined mode: the brokers are the
/// controllers).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) brokers: usize,
    pub(crate) controllers: usize,
}

impl Layout {
    pub(crate) fn combined(self) -> bool {
        self.controllers == 0
    }

    pub(crate) fn broker_ids(self) -> impl Iterator<Item = i32> {
        (1..=self.brokers).filter_map(|n| i32::try_from(n).ok())
    }

    /// The quorum's voters.
    pub(crate) fn voter_ids(self) -> Vec<i32> {
        if self.combined() {
            self.broker_ids().collect()
        } else {
            (1..=self.controllers)
                .filter_map(|n| i32::try_from(n).ok())
                .map(|n| CONTROLLER_ID_BASE + n)
                .collect()
        }
    }

    /// `controller.quorum.voters`.
    fn voters(self, network: &str) -> String {
        self.voter_ids()
            .iter()
            .map(|id| format!("{id}@{network}-node{id}:9093"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The environment of node `id`: `ports` for a broker, `None` for a
    /// dedicated controller.
    pub(crate) fn env(self, network: &str, id: i32, ports: Option<Ports>) -> Vec<(String, String)> {
        let n = self.brokers.to_string();
        let min_isr = self.brokers.min(2).to_string();
        let host = format!("{network}-node{id}");
        let mut env = vec![
            ("KAFKA_NODE_ID", id.to_string()),
            ("KAFKA_CONTROLLER_QUORUM_VOTERS", self.voters(network)),
            (
                "KAFKA_OPTS",
                "-Dsun.net.inetaddr.ttl=1 -Dsun.net.inetaddr.negative.ttl=1".to_owned(),
            ),
            // Cluster-wide defaults: controllers apply some of them too
            // (topic creation is validated there).
            ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false".to_owned()),
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", n.clone()),
            ("KAFKA_MIN_INSYNC_REPLICAS", min_isr.clone()),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", n.clone()),
            ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", n.clone()),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", min_isr.clone()),
            ("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", n),
            ("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", min_isr),
        ];
        match ports {
            Some(ports) => {
                let (roles, listeners) = if self.combined() {
                    (
                        "broker,controller",
                        "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9094,CONTROLLER://0.0.0.0:9093",
                    )
                } else {
                    ("broker", "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9094")
                };
                env.extend([
                    ("KAFKA_PROCESS_ROLES", roles.to_owned()),
                    ("KAFKA_LISTENERS", listeners.to_owned()),
                    (
                        "KAFKA_ADVERTISED_LISTENERS",
                        format!("PLAINTEXT://127.0.0.1:{},BROKER://{host}:9094", ports.proxy),
                    ),
                    ("KAFKA_INTER_BROKER_LISTENER_NAME", "BROKER".to_owned()),
                    ("KAFKA_HEAP_OPTS", "-Xmx384m -Xms128m".to_owned()),
                ]);
            }
            None => env.extend([
                ("KAFKA_PROCESS_ROLES", "controller".to_owned()),
                // Setting the listeners also keeps start-kafka.sh from
                // adding a BROKER listener to the advertised ones.
                ("KAFKA_LISTENERS", "CONTROLLER://0.0.0.0:9093".to_owned()),
                (
                    "KAFKA_ADVERTISED_LISTENERS",
                    format!("CONTROLLER://{host}:9093"),
                ),
                ("KAFKA_HEAP_OPTS", "-Xmx256m -Xms64m".to_owned()),
                // A light load: the C1 compiler alone and the serial
                // collector leave more of the CPU to the brokers starting
                // at the same time.
                (
                    "KAFKA_JVM_PERFORMANCE_OPTS",
                    "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData \
                     -Djava.awt.headless=true"
                        .to_owned(),
                ),
            ]),
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}
