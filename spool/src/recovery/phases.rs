//! Recovery's pure phases, over plain data: reading one segment's bytes
//! into records and settled ranges, deciding how to repair how it ends,
//! which records settled, which are live (replayed) and where each
//! segment's first live record is, which segments can go, and the
//! ledger's next values. The I/O around them is in the `repair` module.

use robust_producer::Record;

use crate::codec;
use crate::encryption::{self, Keyring};
use crate::format::{self, End, FrameKind};

use super::Segment;

/// What one segment's bytes hold, read up to the end of its valid prefix.
#[derive(Debug)]
pub(crate) struct SegmentRead {
    /// The records decoded, in file order.
    pub(crate) records: Vec<Record>,
    /// Their sequence numbers (strictly increasing).
    pub(crate) seqs: Vec<u64>,
    /// The ranges of sequence numbers its settled frames name.
    pub(crate) ranges: Vec<(u64, u64)>,
    /// How its valid prefix ends: as [`format::scan`] says, or corrupt at
    /// the first frame whose checksum passed but whose content does not
    /// decode.
    pub(crate) end: End,
    /// Length of the valid prefix (header included; 0 for a bad header).
    pub(crate) valid_len: usize,
    /// The segment is encrypted.
    pub(crate) encrypted: bool,
}

/// Why an encrypted segment cannot be read with the keys supplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyProblem {
    /// No key with the segment's key id was supplied.
    Unknown(u32),
    /// The key supplied with that id does not authenticate the header.
    Wrong(u32),
}

/// Reads segment `index`: scans it (its records' sequence numbers must
/// follow `after_seq`), opens sealed frames with the key its header names
/// (from `keys`), and decodes every valid frame, stopping at the first one
/// that does not authenticate or decode (corruption from there on).
///
/// # Errors
///
/// The segment is encrypted under a key not in `keys`, or under another
/// key with the same id: nothing in it can be read, and nothing is to be
/// repaired.
pub(crate) fn read_segment(
    bytes: &[u8],
    index: u64,
    after_seq: u64,
    keys: &Keyring,
) -> Result<SegmentRead, KeyProblem> {
    let scan = format::scan(bytes, Some(index), after_seq);
    let cipher = match &scan.encrypted {
        None => None,
        Some(h) => {
            let cipher = keys.get(h.key_id).ok_or(KeyProblem::Unknown(h.key_id))?;
            if !encryption::verify_header(cipher, &h.aad, &h.tag) {
                return Err(KeyProblem::Wrong(h.key_id));
            }
            Some((cipher, h))
        }
    };
    let mut read = SegmentRead {
        records: Vec::new(),
        seqs: Vec::new(),
        ranges: Vec::new(),
        valid_len: scan.valid_len(),
        end: scan.end.clone(),
        encrypted: scan.encrypted.is_some(),
    };
    for frame in &scan.frames {
        let opened;
        let payload = match cipher {
            None => frame.payload,
            Some((cipher, h)) => {
                let header = frame.authenticated_header();
                match encryption::open_frame(
                    cipher,
                    &h.aad,
                    frame.offset as u64,
                    &header,
                    frame.payload,
                ) {
                    Some(plain) => {
                        opened = plain;
                        &opened[..]
                    }
                    None => {
                        // The header authenticated under this key, and the
                        // frame's checksums passed: it was changed on
                        // purpose, or moved here from elsewhere.
                        read.end = End::Corrupt {
                            offset: frame.offset,
                            reason: format!(
                                "frame fails authentication under key id {} (its checksums pass: \
                                 changed or moved on purpose)",
                                h.key_id
                            ),
                        };
                        read.valid_len = frame.offset;
                        break;
                    }
                }
            }
        };
        let decoded = match frame.kind {
            FrameKind::Record => codec::decode(payload)
                .map(|r| {
                    read.records.push(r);
                    read.seqs.push(frame.seq);
                })
                .map_err(|e| e.to_string()),
            FrameKind::Settled => format::parse_settled(payload)
                .map(|r| read.ranges.extend(r))
                .ok_or_else(|| "malformed settled frame".to_owned()),
        };
        if let Err(reason) = decoded {
            // The checksum passed but the content is not ours: corrupt from
            // here on.
            read.end = End::Corrupt {
                offset: frame.offset,
                reason,
            };
            read.valid_len = frame.offset;
            break;
        }
    }
    Ok(read)
}

/// What to do with a segment file, given how its valid prefix ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Repair {
    /// It ends cleanly: nothing.
    Keep,
    /// Cut the unused preallocated space from `offset` (not damage).
    CutUnused {
        /// Where the unused space starts.
        offset: usize,
    },
    /// Truncate the torn tail from `offset`.
    TruncateTorn {
        /// Where the unfinished frame starts.
        offset: usize,
        /// What is unfinished.
        reason: String,
    },
    /// Move the bytes from `offset` on to a quarantine file, then truncate.
    QuarantineTail {
        /// Where the invalid frame starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// Remove the file: created, but its header never (fully) written.
    RemoveUnfinished {
        /// What is wrong with the header.
        reason: String,
    },
    /// Move the whole file to quarantine: its header is bad.
    QuarantineWhole {
        /// What is wrong with the header.
        reason: String,
    },
}

impl Repair {
    /// Whether the segment stays (with its valid prefix) after the repair.
    pub(crate) fn keeps_segment(&self) -> bool {
        !matches!(
            self,
            Repair::RemoveUnfinished { .. } | Repair::QuarantineWhole { .. }
        )
    }
}

/// How to repair a segment whose valid prefix ends with `end`. `is_last`:
/// it is the newest segment file; `bytes`: the file's content. Only the
/// newest segment may be one the process died creating (shorter than a
/// header, or all zeros): it is removed; any other bad header is
/// corruption.
pub(crate) fn repair_for(end: End, is_last: bool, bytes: &[u8]) -> Repair {
    match end {
        End::Clean => Repair::Keep,
        End::Unused { offset } => Repair::CutUnused { offset },
        End::Torn { offset, reason } => Repair::TruncateTorn { offset, reason },
        End::Corrupt { offset, reason } => Repair::QuarantineTail { offset, reason },
        End::BadHeader { reason } => {
            let header_len = format::segment_header_len(bytes);
            if is_last && (bytes.len() < header_len || bytes.iter().all(|&b| b == 0)) {
                Repair::RemoveUnfinished { reason }
            } else {
                Repair::QuarantineWhole { reason }
            }
        }
    }
}

/// The records that settled: every one up to the ledger's watermark, and
/// those the settled frames name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettledSeqs {
    watermark: u64,
    /// Sorted, disjoint and not adjacent.
    ranges: Vec<(u64, u64)>,
}

impl SettledSeqs {
    /// The records up to `watermark` and in `ranges` (in any order,
    /// overlapping or not).
    pub(crate) fn new(watermark: u64, ranges: Vec<(u64, u64)>) -> Self {
        Self {
            watermark,
            ranges: merge_ranges(ranges),
        }
    }

    /// Whether the record with sequence number `seq` settled.
    pub(crate) fn contains(&self, seq: u64) -> bool {
        seq <= self.watermark || {
            let i = self.ranges.partition_point(|r| r.0 <= seq);
            i > 0 && self.ranges[i - 1].1 >= seq
        }
    }

    /// The highest sequence number a settled frame names (0: none).
    pub(crate) fn max_named(&self) -> u64 {
        self.ranges.last().map_or(0, |r| r.1)
    }
}

/// The fewest ranges covering the same sequence numbers as `ranges`:
/// sorted, disjoint and not adjacent.
pub(crate) fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(m) if first <= m.1.saturating_add(1) => m.1 = m.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// The next free sequence number: above every one used, settled or named
/// by the ledger.
pub(crate) fn next_seq(ledger_next_seq: u64, last_seq: u64, settled: &SettledSeqs) -> u64 {
    [
        ledger_next_seq,
        last_seq.saturating_add(1),
        settled.max_named().saturating_add(1),
        settled.watermark.saturating_add(1),
    ]
    .into_iter()
    .max()
    .unwrap_or(1)
}

/// The records found, split into the live ones (replayed) and a count of
/// the settled ones.
#[derive(Debug)]
pub(crate) struct Live<R> {
    /// The records not settled, in their original order.
    pub(crate) records: Vec<R>,
    /// Their sequence numbers.
    pub(crate) seqs: Vec<u64>,
    /// How many records were dropped because they settled.
    pub(crate) settled: usize,
}

/// Keeps the records (with sequence numbers `seqs`, increasing) that did
/// not settle, and marks in each of `segments` (in order, each with the
/// highest sequence number in it or before it) its first live record.
pub(crate) fn keep_live<R>(
    records: Vec<R>,
    seqs: Vec<u64>,
    segments: &mut [Segment],
    settled: &SettledSeqs,
) -> Live<R> {
    let mut live = Live {
        records: Vec::new(),
        seqs: Vec::new(),
        settled: 0,
    };
    let mut seg = 0;
    for (record, seq) in records.into_iter().zip(seqs) {
        while seg < segments.len() && segments[seg].last_seq < seq {
            seg += 1;
        }
        if settled.contains(seq) {
            live.settled += 1;
            continue;
        }
        if let Some(s) = segments.get_mut(seg) {
            s.first_live.get_or_insert(live.records.len());
        }
        live.records.push(record);
        live.seqs.push(seq);
    }
    live
}

/// How many segments at the front hold no live record (they can go).
pub(crate) fn dead_prefix(segments: &[Segment]) -> usize {
    segments
        .iter()
        .position(|s| s.first_live.is_some())
        .unwrap_or(segments.len())
}

/// The watermark once the `dead` segments are deleted: every record in
/// them settled.
pub(crate) fn watermark_after(dead: &[Segment], watermark: u64) -> u64 {
    dead.iter().map(|s| s.last_seq).fold(watermark, u64::max)
}

/// The index of the session's first segment: above every segment file
/// found and every index the ledger says was used.
pub(crate) fn next_index(indexes: &[u64], ledger_next_index: u64) -> u64 {
    indexes.last().map_or(1, |i| i + 1).max(ledger_next_index)
}
