//! The faults: kill, stop, start, pause, isolate a node from its peers, cut
//! the client's path to a broker, and heal. Every operation on a node
//! takes broker and controller ids alike (except [`Cluster::cut_client`]:
//! clients only talk to brokers).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{Cluster, POLL, START_TIMEOUT, docker, wire};
use crate::kafka::Error;
use crate::proxy::Mode;

impl Cluster {
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
    /// until it logged `Kafka Server started`, then, for a broker, until it
    /// answers through its proxy and every other answering broker lists it
    /// (registered, unfenced); for a controller, until the quorum leader
    /// sees its log caught up to the high watermark of the moment it
    /// started. An isolated node is only started, not waited for by its
    /// peers: [`Cluster::rejoin`] it first.
    pub async fn start_node(&self, node: i32) -> Result<(), Error> {
        self.start_nodes(&[node]).await
    }

    pub(super) async fn start_nodes(&self, ids: &[i32]) -> Result<(), Error> {
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
        let controllers: Vec<i32> = ids
            .iter()
            .copied()
            .filter(|&id| {
                self.node(id)
                    .is_ok_and(|n| n.is_controller() && !n.faults().isolated)
            })
            .collect();
        self.wait_voters(&controllers, deadline).await?;
        let brokers: Vec<i32> = ids
            .iter()
            .copied()
            .filter(|&id| self.node(id).is_ok_and(|n| n.is_broker()))
            .collect();
        if brokers.is_empty() {
            return Ok(());
        }
        let askers: Vec<i32> = self
            .answering()
            .iter()
            .filter(|n| !n.faults().isolated || ids.contains(&n.id))
            .map(|n| n.id)
            .collect();
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.wait_listed(&askers, &brokers, remaining).await
    }

    /// Waits until each broker of `askers` answers through its proxy and
    /// lists every broker of `listed`.
    pub(super) async fn wait_listed(
        &self,
        askers: &[i32],
        listed: &[i32],
        timeout: Duration,
    ) -> Result<(), Error> {
        let want: BTreeSet<i32> = listed.iter().copied().collect();
        let deadline = Instant::now() + timeout;
        for &id in askers {
            let bootstrap = self.node(id)?.broker_addr()?;
            loop {
                let seen = wire::metadata(&bootstrap, None, super::METADATA_TIMEOUT).await;
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

    /// Waits until the quorum leader sees each voter of `voters` with a log
    /// end offset at least the high watermark of the first answer (the
    /// metadata log grows by a no-op record every 500 ms, so a voter that
    /// was away is behind it until it fetched again).
    pub(super) async fn wait_voters(&self, voters: &[i32], deadline: Instant) -> Result<(), Error> {
        let mut target = None;
        for &id in voters {
            loop {
                let quorum = self.quorum().await;
                if let Ok(q) = &quorum {
                    let hw = *target.get_or_insert(q.high_watermark);
                    if q.voters.get(&id).is_some_and(|&leo| leo >= hw) {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "controller {id} not caught up in the quorum in time: {quorum:?}"
                    )
                    .into());
                }
                tokio::time::sleep(POLL).await;
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
    /// network); clients still reach a broker through its proxy.
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

    /// Sets the proxy mode of the client's path to broker `node` (unknown
    /// nodes and controllers are ignored).
    pub fn cut_client(&self, node: i32, mode: Mode) {
        if let Ok(n) = self.node(node)
            && let Some(client) = &n.client
        {
            client.proxy.set_mode(mode);
            n.update(|f| f.client = mode);
        }
    }

    /// Undoes every fault: proxies back to pass, paused nodes unpaused,
    /// isolated nodes rejoined, stopped nodes started (controllers
    /// included); then waits until every broker lists all brokers and the
    /// quorum leader sees every controller caught up.
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
        self.wait_listed(&ids, &ids, START_TIMEOUT).await?;
        self.wait_voters(&self.controller_ids(), Instant::now() + START_TIMEOUT)
            .await
    }
}
