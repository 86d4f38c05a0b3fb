//! [`check`]: what was read back against what was sent. Every expected
//! record must be present, under the key it was sent with; records that
//! must not be stored must be absent; every stored record must carry an
//! event id and its identity; per key, the first copies must be
//! in send order. Copies beyond the first are counted as duplicates.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::StoredRecord;

/// One record sent, in send order: its key and its identity
/// (the event id, unless the read-back used another header).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sent {
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its identity: the value the read-back identifies it by.
    pub id: String,
}

impl Sent {
    /// A record sent with `key`.
    pub fn keyed(key: impl Into<Vec<u8>>, id: impl Into<String>) -> Self {
        Self {
            key: Some(key.into()),
            id: id.into(),
        }
    }

    /// A record sent without a key.
    pub fn unkeyed(id: impl Into<String>) -> Self {
        Self {
            key: None,
            id: id.into(),
        }
    }
}

/// A key whose first copies are not in send order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reordered {
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The first stored record of that key that differs from the send
    /// order.
    pub id: String,
}

impl fmt::Display for Reordered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "key {} at {}", String::from_utf8_lossy(k), self.id),
            None => write!(f, "no key, at {}", self.id),
        }
    }
}

/// What the read-back found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Records expected on the topic.
    pub expected: usize,
    /// Records read back, copies included.
    pub stored: usize,
    /// Distinct expected records found.
    pub present: usize,
    /// Expected records not found, in send order.
    pub missing: Vec<String>,
    /// Copies beyond the first of any record.
    pub duplicates: usize,
    /// Keys whose first copies are not in send order, with the first
    /// record out of place.
    pub reordered: Vec<Reordered>,
    /// First copies stored after a record of their key sent later.
    pub out_of_order: usize,
    /// Stored records without an `event_id` header or without an
    /// identity.
    pub unidentified: usize,
    /// Records that must not be stored (for example dead-lettered) but were.
    pub absent_stored: Vec<String>,
    /// Expected records stored under another key than the one sent.
    pub wrong_key: Vec<String>,
    /// Identified records neither expected nor forbidden (for example
    /// handed back at close, which may or may not have been stored).
    pub unexpected: usize,
}

impl Report {
    /// Nothing missing, reordered, unidentified, stored under the wrong key
    /// or stored when it must not be. Duplicates are allowed: compare
    /// [`Report::duplicates`] with what the scenario permits.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.reordered.is_empty()
            && self.out_of_order == 0
            && self.unidentified == 0
            && self.absent_stored.is_empty()
            && self.wrong_key.is_empty()
    }
}

/// Checks `stored` against `sent` (in send order; every id distinct) and
/// against `absent`, ids that must not be stored.
pub fn check(sent: &[Sent], absent: &HashSet<String>, stored: &[StoredRecord]) -> Report {
    let position: HashMap<&str, (usize, Option<&[u8]>)> = sent
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), (i, s.key.as_deref())))
        .collect();
    let mut report = Report {
        expected: sent.len(),
        stored: stored.len(),
        ..Report::default()
    };
    let mut in_place: Vec<&StoredRecord> = stored.iter().collect();
    in_place.sort_by_key(|c| (c.partition, c.offset));
    let mut seen: HashSet<&str> = HashSet::with_capacity(stored.len());
    // Per key, the send positions of its first copies, in stored order.
    let mut firsts: HashMap<Option<&[u8]>, Vec<usize>> = HashMap::new();
    for c in in_place {
        let (Some(_), Some(id)) = (c.event_id.as_deref(), c.id.as_deref()) else {
            report.unidentified += 1;
            continue;
        };
        if !seen.insert(id) {
            report.duplicates += 1;
            continue;
        }
        if absent.contains(id) {
            report.absent_stored.push(id.to_owned());
        }
        match position.get(id) {
            None => report.unexpected += 1,
            Some(&(_, key)) if key != c.key.as_deref() => report.wrong_key.push(id.to_owned()),
            Some(&(at, key)) => firsts.entry(key).or_default().push(at),
        }
    }
    // Per key, the send positions of every record found, whatever key it
    // was stored under: what the first copies must be, in this order.
    let mut want: HashMap<Option<&[u8]>, Vec<usize>> = HashMap::new();
    for (at, s) in sent.iter().enumerate() {
        if seen.contains(s.id.as_str()) {
            want.entry(s.key.as_deref()).or_default().push(at);
            report.present += 1;
        } else {
            report.missing.push(s.id.clone());
        }
    }
    for (key, got) in &firsts {
        report.out_of_order += out_of_order(got);
        let expected = want.get(key).map_or(&[][..], Vec::as_slice);
        if let Some((_, &g)) = expected.iter().zip(got).find(|(w, g)| w != g) {
            report.reordered.push(Reordered {
                key: key.map(<[u8]>::to_vec),
                id: sent[g].id.clone(),
            });
        }
    }
    report.reordered.sort_by(|a, b| a.key.cmp(&b.key));
    report
}

/// Positions below the largest one before them.
fn out_of_order(positions: &[usize]) -> usize {
    let mut highest = None;
    let mut late = 0;
    for &p in positions {
        match highest {
            Some(h) if p < h => late += 1,
            _ => highest = Some(p),
        }
    }
    late
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(partition: i32, offset: i64, key: &str, id: &str) -> StoredRecord {
        StoredRecord {
            partition,
            offset,
            key: Some(key.as_bytes().to_vec()),
            event_id: Some(id.to_owned()),
            id: Some(id.to_owned()),
            len: 0,
        }
    }

    fn s(key: &str, id: &str) -> Sent {
        Sent::keyed(key, id)
    }

    fn none() -> HashSet<String> {
        HashSet::new()
    }

    #[test]
    fn finds_missing_duplicates_and_reordering() {
        let sent = [s("a", "1"), s("a", "2"), s("b", "3"), s("a", "4")];
        let ok = [
            c(0, 0, "a", "1"),
            c(0, 1, "a", "2"),
            c(1, 0, "b", "3"),
            c(0, 2, "a", "1"),
            c(0, 3, "a", "4"),
        ];
        let r = check(&sent, &none(), &ok);
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(r.duplicates, 1);
        assert_eq!((r.expected, r.stored, r.present), (4, 5, 4));

        let bad = [c(0, 0, "a", "2"), c(0, 1, "a", "1"), c(1, 0, "b", "3")];
        let r = check(&sent, &none(), &bad);
        assert_eq!(r.missing, ["4"]);
        assert_eq!(
            r.reordered,
            [Reordered {
                key: Some(b"a".to_vec()),
                id: "2".to_owned()
            }]
        );
        assert_eq!(r.out_of_order, 1);
        assert!(!r.is_clean());
    }

    #[test]
    fn counts_every_record_stored_after_a_later_one_of_its_key() {
        let sent = [s("a", "1"), s("a", "2"), s("a", "3")];
        let r = check(
            &sent,
            &none(),
            &[c(0, 0, "a", "3"), c(0, 1, "a", "1"), c(0, 2, "a", "2")],
        );
        assert_eq!(r.out_of_order, 2);
        assert_eq!(r.reordered.len(), 1);
    }

    #[test]
    fn flags_unidentified_forbidden_and_misplaced_records() {
        let sent = [s("a", "1"), s("a", "2")];
        let mut no_event_id = c(0, 2, "a", "9");
        no_event_id.event_id = None;
        let mut no_id = c(0, 3, "a", "8");
        no_id.id = None;
        let absent: HashSet<String> = ["5".to_owned()].into();
        let r = check(
            &sent,
            &absent,
            &[
                c(0, 0, "a", "1"),
                c(1, 0, "b", "2"),
                no_event_id,
                no_id,
                c(0, 4, "a", "5"),
                c(0, 5, "a", "7"),
            ],
        );
        assert_eq!(r.unidentified, 2);
        assert_eq!(r.absent_stored, ["5"]);
        assert_eq!(r.wrong_key, ["2"]);
        assert_eq!(r.unexpected, 2, "5 and 7 were not expected");
        assert!(r.missing.is_empty());
        assert!(!r.is_clean());
    }

    #[test]
    fn order_is_by_offset_within_a_partition_whatever_the_read_order() {
        let sent = [s("a", "1"), s("a", "2")];
        let r = check(&sent, &none(), &[c(0, 1, "a", "2"), c(0, 0, "a", "1")]);
        assert!(r.is_clean(), "{r:?}");
    }
}
