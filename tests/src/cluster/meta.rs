//! Metadata types, metadata reads with an rdkafka client (for the leader
//! watch: any broker's view will do; one broker's own view is read with
//! `wire::metadata`), and topic creation through rdkafka's admin client.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, Producer as _};

use crate::kafka::Error;

/// One partition as a broker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// The leader's node id; `None` when the broker reports -1 (no leader).
    pub leader: Option<i32>,
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// In-sync replicas, sorted.
    pub isr: Vec<i32>,
}

/// What one metadata request returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Broker ids listed (registered and unfenced).
    pub(crate) brokers: BTreeSet<i32>,
    /// The topic's partitions, when a topic was asked for and exists.
    pub(crate) partitions: BTreeMap<i32, PartitionState>,
}

/// A metadata client for `bootstrap` that never auto-creates topics.
pub(crate) fn client(bootstrap: &str) -> Result<BaseProducer, Error> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .set("socket.timeout.ms", "3000")
        .set("log_level", "2")
        .create()?)
}

/// Reads the metadata of `topic` (or of the brokers only) with `client`.
pub(crate) fn read(
    client: &BaseProducer,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Snapshot, Error> {
    let md = client.client().fetch_metadata(topic, timeout)?;
    let mut snapshot = Snapshot {
        brokers: md.brokers().iter().map(|b| b.id()).collect(),
        partitions: BTreeMap::new(),
    };
    if let Some(topic) = topic {
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| format!("topic {topic} not in the metadata"))?;
        if let Some(err) = t.error() {
            return Err(format!("topic {topic}: {err:?}").into());
        }
        for p in t.partitions() {
            let mut isr = p.isr().to_vec();
            isr.sort_unstable();
            snapshot.partitions.insert(
                p.id(),
                PartitionState {
                    leader: (p.leader() >= 0).then_some(p.leader()),
                    replicas: p.replicas().to_vec(),
                    isr,
                },
            );
        }
        if snapshot.partitions.is_empty() {
            return Err(format!("topic {topic} has no partitions").into());
        }
    }
    Ok(snapshot)
}

/// Creates `topic` with `partitions` partitions, replication factor
/// `replication` and the topic `configs`.
pub(crate) async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&new], &options).await? {
        result.map_err(|(name, code)| format!("creating topic {name}: {code:?}"))?;
    }
    Ok(())
}
