//! The ledger file: the acknowledgement watermark and the next sequence
//! number and segment index, with its checksum.

use super::{LEDGER_LEN, LEDGER_MAGIC, VERSION};

/// The ledger: the acknowledgement watermark and the next sequence number
/// and segment index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ledger {
    /// Every record with a sequence number up to this has settled (its
    /// segment may be deleted).
    pub watermark: u64,
    /// Sequence numbers below this were used; new records get higher ones.
    pub next_seq: u64,
    /// Segment indexes below this were used; new segments get higher ones.
    pub next_index: u64,
}

impl Ledger {
    /// The ledger file's bytes.
    pub fn encode(&self) -> [u8; LEDGER_LEN] {
        let mut b = [0u8; LEDGER_LEN];
        b[0..8].copy_from_slice(&LEDGER_MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.watermark.to_le_bytes());
        b[24..32].copy_from_slice(&self.next_seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.next_index.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a ledger file.
    ///
    /// # Errors
    ///
    /// What is wrong with it, when it is not a valid ledger.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() != LEDGER_LEN {
            return Err(format!(
                "ledger has {} bytes, expected {LEDGER_LEN}",
                b.len()
            ));
        }
        let crc = u32::from_le_bytes([b[40], b[41], b[42], b[43]]);
        if crc32c::crc32c(&b[0..40]) != crc {
            return Err("ledger checksum mismatch".to_owned());
        }
        if b[0..8] != LEDGER_MAGIC || b[10..16].iter().any(|&x| x != 0) {
            return Err("not a spool ledger".to_owned());
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != VERSION {
            return Err(format!("unsupported ledger version {version}"));
        }
        Ok(Self {
            watermark: u64::from_le_bytes(b[16..24].try_into().unwrap_or_default()),
            next_seq: u64::from_le_bytes(b[24..32].try_into().unwrap_or_default()),
            next_index: u64::from_le_bytes(b[32..40].try_into().unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_round_trips_and_detects_damage() {
        let l = Ledger {
            watermark: 41,
            next_seq: 100,
            next_index: 3,
        };
        let b = l.encode();
        assert_eq!(Ledger::decode(&b), Ok(l));
        for bit in 0..LEDGER_LEN * 8 {
            let mut d = b;
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(Ledger::decode(&d).is_err(), "bit {bit}");
        }
    }
}
