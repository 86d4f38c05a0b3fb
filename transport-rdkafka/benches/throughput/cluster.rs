//! Where the records go: librdkafka's mock cluster, or a real broker
//! (whose Docker container, if named, is stopped and started for the
//! backlog).

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;

/// Where the records go: librdkafka's mock cluster, or a real broker.
pub(crate) enum Cluster {
    Mock(MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
    /// A real broker; its container, if given, is stopped and started for
    /// the backlog.
    Real {
        bootstrap: String,
        container: Option<String>,
    },
}

impl Cluster {
    pub(crate) fn bootstrap(&self) -> String {
        match self {
            Cluster::Mock(m) => m.bootstrap_servers(),
            Cluster::Real { bootstrap, .. } => bootstrap.clone(),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Cluster::Mock(_) => "mock cluster 1 broker".to_owned(),
            Cluster::Real { bootstrap, .. } => format!("real broker at {bootstrap}"),
        }
    }

    /// Creates `topic` (a real broker creates it on first use, with its
    /// default partition count, when the admin request fails).
    pub(crate) fn create_topic(&self, rt: &tokio::runtime::Runtime, topic: &str, partitions: i32) {
        match self {
            Cluster::Mock(m) => m.create_topic(topic, partitions, 1).unwrap(),
            Cluster::Real { bootstrap, .. } => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .create()
                    .unwrap();
                let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
                let created = rt.block_on(admin.create_topics([&new], &AdminOptions::new()));
                if let Err(e) = created {
                    println!(
                        "  (topic {topic} not created: {e}; the broker creates it on first use)"
                    );
                }
            }
        }
    }

    pub(crate) fn can_go_down(&self) -> bool {
        matches!(
            self,
            Cluster::Mock(_)
                | Cluster::Real {
                    container: Some(_),
                    ..
                }
        )
    }

    pub(crate) fn down(&self) {
        match self {
            Cluster::Mock(m) => m.broker_down(-1).unwrap(),
            Cluster::Real { container, .. } => docker("stop", container),
        }
    }

    pub(crate) fn up(&self) {
        match self {
            Cluster::Mock(m) => m.broker_up(-1).unwrap(),
            Cluster::Real { container, .. } => docker("start", container),
        }
    }
}

/// `docker <verb> <container>`, which must succeed.
fn docker(verb: &str, container: &Option<String>) {
    let name = container.as_deref().expect("--container NAME");
    let status = std::process::Command::new("docker")
        .args([verb, name])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "docker {verb} {name} failed");
}
