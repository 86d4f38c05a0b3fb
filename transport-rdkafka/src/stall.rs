//! Why the cluster holds records back. While records await their reports
//! and none came for [`STALL_AFTER`], the poll thread starts a metadata
//! request on a short-lived thread. The request goes through a client of
//! its own, made on the first check: a broker answers the requests of one
//! connection in order, and the producer's connection to a broker that
//! holds produce requests (waiting for replicas that are gone, up to
//! `request.timeout.ms`) would hold the metadata request behind them. Partitions of the topics this producer
//! sends to that have no leader, or fewer in-sync replicas than replicas,
//! are reported to the core as [`TransportEvent::Stalled`]: the core shows
//! the reason in its stats and health, and does not take the explained wait
//! for a hung session (librdkafka keeps retrying, for example while
//! `NOT_ENOUGH_REPLICAS` lasts). A wait that metadata does not explain is
//! not reported, and the core's `ack_timeout` applies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, Producer};
use robust_producer::TransportEvent;
use tracing::{debug, info};

use crate::client::{RdProducer, micros, mono_us};

/// No report for this long while records are outstanding: look for a reason.
pub(crate) const STALL_AFTER: Duration = Duration::from_secs(5);

/// The metadata request's timeout.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Partitions named in one reason; the rest are counted.
const NAMED: usize = 5;

/// Topics this producer sends to, whether a check is running, and the
/// checks' own client.
pub(crate) struct StallWatch {
    topics: Mutex<Vec<Arc<str>>>,
    checking: AtomicBool,
    /// The producer's settings (security included), for the checks' client.
    config: ClientConfig,
    client: Mutex<Option<Arc<BaseProducer>>>,
}

impl StallWatch {
    /// Made with the producer's librdkafka settings.
    pub(crate) fn new(config: ClientConfig) -> Self {
        Self {
            topics: Mutex::default(),
            checking: AtomicBool::new(false),
            config,
            client: Mutex::default(),
        }
    }

    /// The checks' client, made on first use: the producer's settings
    /// without idempotence (it never produces, and needs no producer id),
    /// logging only what is critical (the producer already reports the
    /// cluster's state).
    fn client(&self) -> Option<Arc<BaseProducer>> {
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if client.is_none() {
            let mut config = self.config.clone();
            config
                .set("enable.idempotence", "false")
                .set("log_level", "2");
            match config.create::<BaseProducer>() {
                Ok(c) => *client = Some(Arc::new(c)),
                Err(e) => debug!(error = %e, "cannot make the stall check's client"),
            }
        }
        client.clone()
    }

    /// Remembers a topic records are sent to.
    pub(crate) fn sending_to(&self, topic: &Arc<str>) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if !topics.iter().any(|t| t == topic) {
            topics.push(Arc::clone(topic));
        }
    }

    fn topics(&self) -> Vec<Arc<str>> {
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The poll thread's side: when reports last moved, and the last check.
#[derive(Debug, Default)]
pub(crate) struct StallClock {
    reports_seen: u64,
    quiet_since: u64,
    checked_at: u64,
}

impl StallClock {
    /// Called on every round of the poll thread: starts a check when
    /// records are outstanding, no report came for [`STALL_AFTER`], and no
    /// check ran for as long.
    pub(crate) fn tick(&mut self, producer: &RdProducer) {
        let ctx = producer.context();
        let now = mono_us();
        let reports = ctx.reports();
        if reports != self.reports_seen || ctx.outstanding() == 0 {
            self.reports_seen = reports;
            self.quiet_since = now;
            return;
        }
        let after = micros(STALL_AFTER);
        if now.saturating_sub(self.quiet_since) < after
            || now.saturating_sub(self.checked_at) < after
            || ctx.stall.checking.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.checked_at = now;
        let Some(producer) = ctx.producer_arc() else {
            ctx.stall.checking.store(false, Ordering::Release);
            return;
        };
        let generation = ctx.generation();
        let spawned = std::thread::Builder::new()
            .name("rdkafka-stall".to_owned())
            .spawn(move || check(&producer, generation));
        if spawned.is_err() {
            ctx.stall.checking.store(false, Ordering::Release);
        }
    }
}

/// Fetches metadata for the producer's topics and reports what holds
/// records back, if anything.
fn check(producer: &RdProducer, generation: u64) {
    let ctx = producer.context();
    let Some(client) = ctx.stall.client() else {
        ctx.stall.checking.store(false, Ordering::Release);
        return;
    };
    let mut short = Vec::new();
    for topic in ctx.stall.topics() {
        match client
            .client()
            .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
        {
            Ok(md) => short.extend(shortfalls(&md)),
            Err(e) => debug!(%topic, error = %e, "metadata request for the stall check failed"),
        }
    }
    ctx.stall.checking.store(false, Ordering::Release);
    debug!(shortfalls = short.len(), "stall check done");
    if let Some(reason) = describe(&short) {
        info!(%reason, "records wait for the cluster");
        ctx.report_stall(generation, TransportEvent::Stalled(reason));
    }
}

/// One partition that cannot take writes as it should.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shortfall {
    topic: String,
    partition: i32,
    /// `None`: no leader.
    in_sync: Option<(usize, usize)>,
}

fn shortfalls(md: &Metadata) -> Vec<Shortfall> {
    let mut out = Vec::new();
    for t in md.topics() {
        for p in t.partitions() {
            let in_sync = (p.isr().len(), p.replicas().len());
            let short = if p.leader() < 0 {
                Some(None)
            } else if in_sync.0 < in_sync.1 {
                Some(Some(in_sync))
            } else {
                None
            };
            if let Some(in_sync) = short {
                out.push(Shortfall {
                    topic: t.name().to_owned(),
                    partition: p.id(),
                    in_sync,
                });
            }
        }
    }
    out
}

/// "replicas missing: orders/0 has 1 of 3 replicas in sync, orders/1 has no
/// leader, ... and 4 more partitions".
fn describe(short: &[Shortfall]) -> Option<String> {
    if short.is_empty() {
        return None;
    }
    let named: Vec<String> = short
        .iter()
        .take(NAMED)
        .map(|s| match s.in_sync {
            None => format!("{}/{} has no leader", s.topic, s.partition),
            Some((isr, replicas)) => format!(
                "{}/{} has {isr} of {replicas} replicas in sync",
                s.topic, s.partition
            ),
        })
        .collect();
    let more = match short.len().saturating_sub(NAMED) {
        0 => String::new(),
        n => format!(" and {n} more partitions"),
    };
    Some(format!(
        "replicas missing (records wait until enough are in sync again): {}{more}",
        named.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(partition: i32, in_sync: Option<(usize, usize)>) -> Shortfall {
        Shortfall {
            topic: "orders".to_owned(),
            partition,
            in_sync,
        }
    }

    #[test]
    fn the_reason_names_partitions_and_counts_the_rest() {
        assert_eq!(describe(&[]), None);
        let one = describe(&[s(0, Some((1, 3))), s(1, None)]).unwrap();
        assert!(one.starts_with("replicas missing"), "{one}");
        assert!(
            one.contains("orders/0 has 1 of 3 replicas in sync"),
            "{one}"
        );
        assert!(one.contains("orders/1 has no leader"), "{one}");
        let many: Vec<_> = (0..8).map(|p| s(p, Some((1, 3)))).collect();
        let reason = describe(&many).unwrap();
        assert!(reason.ends_with("and 3 more partitions"), "{reason}");
    }
}
