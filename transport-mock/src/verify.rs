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

/// Expected records by (topic, identity), and each one's identity, in
/// send order.
type ExpectedIndex<'a> = (HashMap<(&'a str, Vec<u8>), usize>, Vec<Vec<u8>>);

/// What the logs hold of the expected records.
struct Scan<'a> {
    /// Whether each expected record was found.
    seen: Vec<bool>,
    duplicates: usize,
    unexpected: usize,
    /// (topic, key) -> indices of first copies, in log order.
    order: HashMap<(&'a str, &'a [u8]), Vec<usize>>,
}

pub(crate) fn verify<'a>(
    s: &Shared,
    expected: impl IntoIterator<Item = &'a Record>,
    identity: &dyn Fn(&Record) -> Vec<u8>,
) -> Result<Verification, VerifyError> {
    if s.storage == Storage::CountOnly {
        return Err(VerifyError::NothingKept);
    }
    let (index, idents) = index_expected(expected, identity)?;
    let scan = scan_logs(s, &index, idents.len(), identity);
    if let Some(first) = scan.seen.iter().position(|s| !s) {
        return Err(VerifyError::Missing {
            missing: scan.seen.iter().filter(|s| !**s).count(),
            expected: idents.len(),
            first: show(&idents[first]),
        });
    }
    if let Some((earlier, later, topic, key)) = first_order_violation(&scan.order) {
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
        duplicates: scan.duplicates,
        unexpected: scan.unexpected,
    })
}

/// Indexes the expected records by (topic, identity); two with the same
/// identity in one topic are an error.
fn index_expected<'a>(
    expected: impl IntoIterator<Item = &'a Record>,
    identity: &dyn Fn(&Record) -> Vec<u8>,
) -> Result<ExpectedIndex<'a>, VerifyError> {
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
    Ok((index, idents))
}

/// Reads the logs of the expected topics: which expected records are
/// stored, how many copies are duplicates or unexpected, and per key the
/// order of the first copies.
fn scan_logs<'a>(
    s: &'a Shared,
    index: &HashMap<(&'a str, Vec<u8>), usize>,
    expected: usize,
    identity: &dyn Fn(&Record) -> Vec<u8>,
) -> Scan<'a> {
    let mut scan = Scan {
        seen: vec![false; expected],
        duplicates: 0,
        unexpected: 0,
        order: HashMap::new(),
    };
    let mut topics: Vec<&str> = index.keys().map(|(t, _)| *t).collect();
    topics.sort_unstable();
    topics.dedup();
    for topic in topics {
        let Some(log) = s.topic(topic) else { continue };
        for stored in log.partitions.iter().flat_map(|p| &p.records) {
            match index.get(&(topic, identity(&stored.record))) {
                Some(&i) if !scan.seen[i] => {
                    scan.seen[i] = true;
                    if let Some(key) = stored.key() {
                        scan.order.entry((topic, key)).or_default().push(i);
                    }
                }
                Some(_) => scan.duplicates += 1,
                None => scan.unexpected += 1,
            }
        }
    }
    scan
}

/// The earliest pair of first copies of one key stored out of send order:
/// (earlier in send order, later in send order, topic, key).
fn first_order_violation<'a>(
    order: &HashMap<(&'a str, &'a [u8]), Vec<usize>>,
) -> Option<(usize, usize, &'a str, &'a [u8])> {
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
    violations.first().copied()
}
