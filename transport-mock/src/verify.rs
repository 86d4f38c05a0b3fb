//! Checking a broker's log against what a test sent: [`Verification`] and
//! [`VerifyError`], used by [`MockBroker::verify`](crate::MockBroker::verify).

use std::collections::HashMap;

use robust_producer::{Record, RecordId};

use crate::log::{Storage, TransportId};
use crate::state::Shared;

/// What [`MockBroker::verify`](crate::MockBroker::verify) found when the log
/// passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verification {
    /// Records expected, all stored.
    pub expected: usize,
    /// Extra copies of expected records (re-sends after a lost ack or a
    /// broken session).
    pub duplicates: usize,
    /// Stored records (copies included) that were not expected, in the
    /// topics of the expected ones, for example records handed back at
    /// shutdown that had reached the broker.
    pub unexpected: usize,
}

/// Why a broker's log does not match what a test sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Some expected records were never stored.
    #[error("{missing} of {expected} expected records were not stored (first: {first})")]
    Missing {
        /// How many.
        missing: usize,
        /// Records expected.
        expected: usize,
        /// Identity of the first missing one, in send order.
        first: String,
    },
    /// The first copies of two records with the same key are stored in the
    /// opposite order of their sending.
    #[error("topic {topic} key {key}: {later} was stored before {earlier}, which was sent first")]
    OutOfOrder {
        /// The topic.
        topic: String,
        /// The key.
        key: String,
        /// Identity of the record sent first.
        earlier: String,
        /// Identity of the record sent later but stored first.
        later: String,
    },
    /// A record was handed off again after its acknowledgement was
    /// reported to the producer.
    #[error("{count} hand-offs re-sent an acknowledged record (first: {} {})", first.0, first.1)]
    ResentAfterAck {
        /// How many.
        count: usize,
        /// The first one.
        first: (TransportId, RecordId),
    },
    /// Two expected records of one topic have the same identity.
    #[error("two expected records of topic {topic} have the identity {identity}")]
    AmbiguousIdentity {
        /// The topic.
        topic: String,
        /// The shared identity.
        identity: String,
    },
    /// The broker keeps no records ([`Storage::CountOnly`]).
    #[error("the broker keeps no records (Storage::CountOnly)")]
    NothingKept,
}

/// The `event_id` header, or the payload when there is none.
pub(crate) fn default_identity(record: &Record) -> Vec<u8> {
    record
        .header("event_id")
        .map_or_else(|| record.payload.to_vec(), <[u8]>::to_vec)
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn verify<'a>(
    s: &Shared,
    expected: impl IntoIterator<Item = &'a Record>,
    identity: &dyn Fn(&Record) -> Vec<u8>,
) -> Result<Verification, VerifyError> {
    if s.storage == Storage::CountOnly {
        return Err(VerifyError::NothingKept);
    }
    // (topic, identity) -> index in send order.
    let mut index: HashMap<(&str, Vec<u8>), usize> = HashMap::new();
    let mut idents: Vec<Vec<u8>> = Vec::new();
    for (i, r) in expected.into_iter().enumerate() {
        let ident = identity(r);
        if index.insert((&*r.topic, ident.clone()), i).is_some() {
            return Err(VerifyError::AmbiguousIdentity {
                topic: r.topic.to_string(),
                identity: show(&ident),
            });
        }
        idents.push(ident);
    }
    let mut seen = vec![false; idents.len()];
    let mut duplicates = 0;
    let mut unexpected = 0;
    // (topic, key) -> indices of first copies, in log order.
    let mut order: HashMap<(&str, &[u8]), Vec<usize>> = HashMap::new();
    let mut topics: Vec<&str> = index.keys().map(|(t, _)| *t).collect();
    topics.sort_unstable();
    topics.dedup();
    for topic in topics {
        let Some(log) = s.topic(topic) else { continue };
        for stored in log.partitions.iter().flat_map(|p| &p.records) {
            match index.get(&(topic, identity(&stored.record))) {
                Some(&i) if !seen[i] => {
                    seen[i] = true;
                    if let Some(key) = stored.key() {
                        order.entry((topic, key)).or_default().push(i);
                    }
                }
                Some(_) => duplicates += 1,
                None => unexpected += 1,
            }
        }
    }
    if let Some(first) = seen.iter().position(|s| !s) {
        return Err(VerifyError::Missing {
            missing: seen.iter().filter(|s| !**s).count(),
            expected: idents.len(),
            first: show(&idents[first]),
        });
    }
    let mut violations: Vec<_> = order
        .iter()
        .filter_map(|((topic, key), firsts)| {
            firsts
                .windows(2)
                .find(|w| w[0] > w[1])
                .map(|w| (w[1], w[0], *topic, *key))
        })
        .collect();
    // Report the earliest violation, whatever the map's order.
    violations.sort_unstable();
    if let Some(&(earlier, later, topic, key)) = violations.first() {
        return Err(VerifyError::OutOfOrder {
            topic: topic.to_owned(),
            key: show(key),
            earlier: show(&idents[earlier]),
            later: show(&idents[later]),
        });
    }
    if let Some(&first) = s.resent_after_ack.first() {
        return Err(VerifyError::ResentAfterAck {
            count: s.resent_after_ack.len(),
            first,
        });
    }
    Ok(Verification {
        expected: idents.len(),
        duplicates,
        unexpected,
    })
}
