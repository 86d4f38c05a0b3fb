//! The cluster scenarios' checker, independent of the producer: what the
//! services recorded ([`Finished`]) against what a consumer reads back from
//! every partition.
//!
//! * lost: accepted, not handed back, not dead-lettered, and absent;
//! * duplicates: copies beyond the first of an event id;
//! * reordered: keys whose first copies are not in send order;
//! * unidentified or under another key: records read back without an
//!   event id, or stored under a key other than the one sent;
//! * the accounting identity: accepted = delivered + dead-lettered +
//!   dropped + returned + still held;
//! * resume times, from the acknowledgements the services saw: after a
//!   fault heals, and after a partition's leader moved.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use crate::load::{AckSeen, Finished, event_id};
use robust_producer_rdkafka::readback::{Reordered, Sent, StoredRecord, check};

/// The audit of one scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Records the services accepted.
    pub accepted: u64,
    /// Records acknowledged, by the producers' stats.
    pub delivered: u64,
    /// Lost event ids (at most 10 kept) and their count.
    pub lost: (usize, Vec<String>),
    /// Copies beyond the first.
    pub duplicates: usize,
    /// Keys out of send order (at most 10 kept) and their count.
    pub reordered: (usize, Vec<Reordered>),
    /// Records read back without an event id.
    pub unidentified: usize,
    /// Records stored under another key than the one sent (at most 10
    /// kept) and their count.
    pub wrong_key: (usize, Vec<String>),
    /// Dead letters.
    pub dead_lettered: u64,
    /// Dropped by the overflow policy.
    pub dropped: u64,
    /// Handed back at close.
    pub returned: u64,
    /// Still held after the flush.
    pub held: u64,
    /// Sends the producers refused.
    pub refused: usize,
    /// Sessions the producers gave up.
    pub link_losses: u64,
    /// librdkafka clients rebuilt.
    pub rebuilds: u64,
    /// Flush failures, by service.
    pub flush_errors: Vec<String>,
}

impl Audit {
    /// Checks the services' records against what was read back.
    pub fn new(services: &[Finished], consumed: &[StoredRecord]) -> Self {
        let mut audit = Audit::default();
        let mut expected: Vec<Sent> = Vec::new();
        for s in services {
            let excluded: HashSet<String> = s
                .dead
                .iter()
                .map(|d| &d.record)
                .chain(&s.returned)
                .filter_map(event_id)
                .collect();
            expected.extend(s.sent.iter().filter(|x| !excluded.contains(&x.id)).cloned());
            audit.accepted += s.stats.accepted;
            audit.delivered += s.stats.delivered;
            audit.dead_lettered += s.stats.dead_lettered;
            audit.dropped += s.stats.dropped;
            audit.returned += s.stats.returned;
            audit.held += s.stats.queued_records as u64;
            audit.refused += s.refused.len();
            audit.link_losses += s.stats.link_losses;
            audit.rebuilds += s.rebuilds;
            if let Err(e) = &s.flushed {
                audit.flush_errors.push(format!("{}: {e}", s.name));
            }
        }
        // Dead letters and records handed back may or may not be stored.
        let report = check(&expected, &HashSet::new(), consumed);
        audit.lost = (
            report.missing.len(),
            report.missing.into_iter().take(10).collect(),
        );
        audit.duplicates = report.duplicates;
        audit.reordered = (
            report.reordered.len(),
            report.reordered.into_iter().take(10).collect(),
        );
        audit.unidentified = report.unidentified;
        audit.wrong_key = (
            report.wrong_key.len(),
            report.wrong_key.into_iter().take(10).collect(),
        );
        audit
    }

    /// accepted = delivered + dead-lettered + dropped + returned + held.
    pub fn balances(&self) -> bool {
        self.accepted
            == self.delivered + self.dead_lettered + self.dropped + self.returned + self.held
    }

    /// Every guarantee: nothing lost, reordered, unidentified, stored under
    /// another key, dead-lettered, dropped,
    /// returned, refused or held, flushes succeeded, and the identity holds.
    pub fn is_clean(&self) -> bool {
        self.lost.0 == 0
            && self.reordered.0 == 0
            && self.unidentified == 0
            && self.wrong_key.0 == 0
            && self.dead_lettered == 0
            && self.dropped == 0
            && self.returned == 0
            && self.held == 0
            && self.refused == 0
            && self.flush_errors.is_empty()
            && self.balances()
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted {}, delivered {}, lost {}, duplicates {}, reordered {}, unidentified {}, \
             under another key {}, dead-lettered {}, dropped {}, returned {}, held {}, refused {}, sessions given up {}, clients rebuilt {}",
            self.accepted,
            self.delivered,
            self.lost.0,
            self.duplicates,
            self.reordered.0,
            self.unidentified,
            self.wrong_key.0,
            self.dead_lettered,
            self.dropped,
            self.returned,
            self.held,
            self.refused,
            self.link_losses,
            self.rebuilds,
        )
    }
}

/// Acknowledgement times per partition, merged from every service.
#[derive(Debug, Default)]
pub struct AckTimeline {
    by_partition: BTreeMap<i32, Vec<Instant>>,
}

impl AckTimeline {
    /// Merges the services' acknowledgements.
    pub fn new<'a>(acks: impl IntoIterator<Item = &'a AckSeen>) -> Self {
        let mut by_partition: BTreeMap<i32, Vec<Instant>> = BTreeMap::new();
        for a in acks {
            by_partition.entry(a.partition).or_default().push(a.at);
        }
        for times in by_partition.values_mut() {
            times.sort_unstable();
        }
        Self { by_partition }
    }

    /// Partitions that saw acknowledgements.
    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.by_partition.keys().copied()
    }

    /// Time from `at` to the first acknowledgement on `partition` after it;
    /// `None` if there was none.
    pub fn first_after(&self, partition: i32, at: Instant) -> Option<Duration> {
        let times = self.by_partition.get(&partition)?;
        let i = times.partition_point(|t| *t < at);
        times.get(i).map(|t| t.duration_since(at))
    }

    /// The slowest partition's time from `at` to its first acknowledgement
    /// after it, with that partition; a partition with none counts as
    /// `Duration::MAX`.
    pub fn resume_after(&self, at: Instant) -> Option<(i32, Duration)> {
        self.partitions()
            .map(|p| (p, self.first_after(p, at).unwrap_or(Duration::MAX)))
            .max_by_key(|(_, d)| *d)
    }

    /// Acknowledgements on any partition within `[from, to)`.
    pub fn count_between(&self, from: Instant, to: Instant) -> usize {
        self.by_partition
            .values()
            .map(|t| t.partition_point(|x| *x < to) - t.partition_point(|x| *x < from))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_is_the_slowest_partitions_first_ack_after_the_heal() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let acks = [
            AckSeen {
                at: t0 + ms(100),
                partition: 0,
            },
            AckSeen {
                at: t0 + ms(900),
                partition: 0,
            },
            AckSeen {
                at: t0 + ms(2_000),
                partition: 1,
            },
        ];
        let t = AckTimeline::new(&acks);
        assert_eq!(t.first_after(0, t0 + ms(500)), Some(ms(400)));
        assert_eq!(t.first_after(0, t0 + ms(901)), None);
        assert_eq!(t.resume_after(t0 + ms(500)), Some((1, ms(1_500))));
        assert_eq!(t.resume_after(t0 + ms(950)), Some((0, Duration::MAX)));
        assert_eq!(t.count_between(t0, t0 + ms(1_000)), 2);
    }
}
