//! Topic-level reads and actions: create a topic, each partition's
//! leader, ISR and preferred leader as one broker sees it, preferred
//! election, waiting for full ISRs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Cluster, METADATA_TIMEOUT, POLL, PartitionState, meta, wire};
use crate::kafka::Error;
use crate::proxy::Mode;

impl Cluster {
    /// Creates `topic` with replication factor = broker count,
    /// `min.insync.replicas=2` (1 for a single broker),
    /// `unclean.leader.election.enable=false` and
    /// `message.timestamp.type=LogAppendTime`, then waits (up to 60 s) until
    /// every partition has a leader and a full ISR.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        let rf = i32::try_from(self.layout.brokers)?;
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

    /// Every partition of `topic` as the first answering broker sees it (not
    /// stopped, paused or cut from the client; not isolated if possible).
    pub async fn partitions(&self, topic: &str) -> Result<BTreeMap<i32, PartitionState>, Error> {
        let mut errors = Vec::new();
        for node in self.answering() {
            match wire::metadata(&node.broker_addr()?, Some(topic), METADATA_TIMEOUT).await {
                Ok(snapshot) => return Ok(snapshot.partitions),
                Err(e) => errors.push(format!("node {}: {e}", node.id)),
            }
        }
        Err(format!("no broker answered the metadata of {topic}: {errors:?}").into())
    }

    /// Every partition of `topic` as broker `node` itself sees it, asked
    /// through its proxy (an isolated broker answers with its own, stale,
    /// view).
    pub async fn partitions_seen_by(
        &self,
        node: i32,
        topic: &str,
    ) -> Result<BTreeMap<i32, PartitionState>, Error> {
        let n = self.node(node)?;
        Ok(
            wire::metadata(&n.broker_addr()?, Some(topic), METADATA_TIMEOUT)
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

    /// Moves every partition of `topic` to its preferred leader
    /// (`ElectLeaders`, type PREFERRED, sent to the first answering broker;
    /// partitions already led by it are fine). Fails when a preferred
    /// leader cannot lead (not in the ISR, down). Leadership moves when the
    /// controller has decided, before every broker's metadata shows it.
    pub async fn elect_preferred_leaders(&self, topic: &str) -> Result<(), Error> {
        let partitions: Vec<i32> = self.partitions(topic).await?.into_keys().collect();
        let mut errors = Vec::new();
        for node in self.answering() {
            match wire::elect_preferred(&node.broker_addr()?, topic, &partitions).await {
                Ok(()) => return Ok(()),
                Err(e) => errors.push(format!("node {}: {e}", node.id)),
            }
        }
        Err(format!("preferred election of {topic} failed: {errors:?}").into())
    }

    /// Waits until every broker whose client path is not cut reports every
    /// partition of `topic` with a leader among the brokers and the ISR =
    /// all brokers.
    pub async fn wait_in_sync(&self, topic: &str, timeout: Duration) -> Result<(), Error> {
        let all = self.node_ids();
        let deadline = Instant::now() + timeout;
        loop {
            let mut last = String::new();
            let mut ok = true;
            for node in self
                .nodes
                .iter()
                .filter(|n| n.is_broker() && n.faults().client == Mode::Pass)
            {
                let seen =
                    wire::metadata(&node.broker_addr()?, Some(topic), METADATA_TIMEOUT).await;
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
}
