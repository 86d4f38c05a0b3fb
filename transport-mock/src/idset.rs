//! A set of record ids: a bitmap for the dense ids a producer hands out
//! (1, 2, 3, ...), with a hash set for the rare huge id a hand-written test
//! may use. Inserting and testing cost a few nanoseconds and no allocation
//! beyond the bitmap's growth.

use std::collections::HashSet;

/// Ids below this go into the bitmap (at most 8 MiB of it).
const DENSE_LIMIT: u64 = 1 << 26;

#[derive(Debug, Default, Clone)]
pub(crate) struct IdSet {
    bits: Vec<u64>,
    sparse: HashSet<u64>,
}

impl IdSet {
    /// Inserts `id`; returns false when it was already there.
    pub(crate) fn insert(&mut self, id: u64) -> bool {
        if id >= DENSE_LIMIT {
            return self.sparse.insert(id);
        }
        let (word, bit) = split(id);
        if word >= self.bits.len() {
            let len = (word + 1).next_power_of_two().max(64);
            self.bits.resize(len, 0);
        }
        let was = self.bits[word] & bit != 0;
        self.bits[word] |= bit;
        !was
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        if id >= DENSE_LIMIT {
            return self.sparse.contains(&id);
        }
        let (word, bit) = split(id);
        self.bits.get(word).is_some_and(|w| w & bit != 0)
    }
}

fn split(id: u64) -> (usize, u64) {
    // `id < DENSE_LIMIT`, so the word index fits any usize.
    let word = (id / 64) as usize;
    (word, 1u64 << (id % 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_contains() {
        let mut s = IdSet::default();
        for id in [0, 1, 63, 64, 1000, DENSE_LIMIT - 1, DENSE_LIMIT, u64::MAX] {
            assert!(!s.contains(id));
            assert!(s.insert(id));
            assert!(s.contains(id));
            assert!(!s.insert(id));
        }
        assert!(!s.contains(2));
    }
}
