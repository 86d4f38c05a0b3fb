//! Recovery when a spool opens: read every segment, keep the valid prefix,
//! truncate torn tails, move unreadable bytes to quarantine files, work out
//! which records are Durable but not settled, and delete segments that
//! hold none.
//!
//! Recovery never panics and never fails because of what it finds in the
//! files; only an I/O error (the directory cannot be read, a file cannot be
//! truncated or quarantined) stops it, with an error naming the file. Each
//! repair is idempotent, so a recovery killed half-way is simply redone on
//! the next open.
//!
//! The decisions are pure functions over plain data (`phases`); the
//! reading, repairing and deleting around them is in `repair`.

#[cfg(test)]
mod phase_props;
mod phases;
mod repair;

use std::fmt;
use std::path::{Path, PathBuf};

use robust_producer::Record;
use tracing::{info, warn};

use crate::encryption::Keyring;
use crate::error::SpoolError;
use crate::format::Ledger;
use crate::permissions::PermissionWarning;
use crate::spool_dir::write_ledger;
use phases::SettledSeqs;

/// Damage recovery found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Damage {
    /// The damaged file.
    pub file: PathBuf,
    /// Where the damage starts in it.
    pub offset: u64,
    /// How many bytes from there were cut off.
    pub bytes: u64,
    /// What was wrong.
    pub reason: String,
    /// Where the unreadable bytes were moved (quarantine), if they were kept.
    pub moved_to: Option<PathBuf>,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {}: {} ({} bytes",
            self.file.display(),
            self.offset,
            self.reason,
            self.bytes
        )?;
        match &self.moved_to {
            Some(to) => write!(f, " moved to {})", to.display()),
            None => f.write_str(" truncated)"),
        }
    }
}

/// What recovery found when the spool opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments_read: usize,
    /// Records found Durable and not settled: they are replayed.
    pub replayed: usize,
    /// Records found settled (skipped).
    pub settled: usize,
    /// Segment files deleted because every record in them had settled.
    pub segments_deleted: usize,
    /// Torn tails truncated: a write the process did not finish, expected
    /// after a crash. Those bytes were never reported Durable.
    pub torn_tails: Vec<Damage>,
    /// Corruption: bytes that failed their checksum, and everything after
    /// them in the same file, moved to quarantine files. Records in them are
    /// not replayed.
    pub quarantined: Vec<Damage>,
    /// A problem with the ledger (it was then ignored: records are replayed
    /// from the segments, possibly a few more than needed).
    pub ledger_problem: Option<String>,
    /// The spool directory and spool files that group or others can read
    /// or write, as found once recovery is done (each also logged as a
    /// warning). The spool does not change their modes; see
    /// [`PermissionWarning::fix`]. Always empty on targets without unix
    /// modes.
    pub permission_warnings: Vec<PermissionWarning>,
    /// With encryption on: segments found that are not encrypted (written
    /// before encryption was turned on). Their records are replayed as
    /// usual and the files deleted once those records settle; until then
    /// they hold payloads in clear. Logged as a warning.
    pub plaintext_segments: usize,
}

impl RecoveryReport {
    /// Whether recovery found corruption (not just torn tails).
    pub fn found_corruption(&self) -> bool {
        !self.quarantined.is_empty() || self.ledger_problem.is_some()
    }
}

/// A segment that survives recovery.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) index: u64,
    /// Its length after repairs.
    pub(crate) len: u64,
    /// The first replayed record in it (an index into `records`), if any.
    pub(crate) first_live: Option<usize>,
    /// The highest record sequence number in it (or before it).
    pub(crate) last_seq: u64,
}

/// Everything recovery hands to the spool.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Records to replay, in order.
    pub(crate) records: Vec<Record>,
    /// Their sequence numbers.
    pub(crate) seqs: Vec<u64>,
    /// Surviving segments, in order.
    pub(crate) segments: Vec<Segment>,
    /// Every record up to this sequence number has settled.
    pub(crate) watermark: u64,
    /// The next free sequence number.
    pub(crate) next_seq: u64,
    /// The next free segment index.
    pub(crate) next_index: u64,
    pub(crate) report: RecoveryReport,
}

/// Reads and repairs the spool in `dir`, opening encrypted segments with
/// `keys`.
pub(crate) fn recover(dir: &Path, keys: &Keyring) -> Result<Recovered, SpoolError> {
    let mut report = RecoveryReport::default();
    let ledger = repair::read_ledger(dir, &mut report)?;
    let indexes = repair::list_segments(dir)?;
    let found = repair::read_segments(dir, &indexes, keys, &mut report)?;
    if report.plaintext_segments > 0 {
        warn!(
            segments = report.plaintext_segments,
            "spool: segments written before encryption was turned on are not encrypted; \
             their records are replayed, and the files deleted once those records settle"
        );
    }

    let settled = SettledSeqs::new(ledger.watermark, found.ranges);
    let next_seq = phases::next_seq(ledger.next_seq, found.last_seq, &settled);
    let mut segments = found.segments;
    let live = phases::keep_live(found.records, found.seqs, &mut segments, &settled);
    report.settled = live.settled;
    report.replayed = live.records.len();

    // Segments before the first one holding a live record can go: sync the
    // ledger first, so that a segment the directory fsync did not remove
    // for good is known to be settled.
    let dead = phases::dead_prefix(&segments);
    let watermark = phases::watermark_after(&segments[..dead], ledger.watermark);
    let next_index = phases::next_index(&indexes, ledger.next_index);
    let new_ledger = Ledger {
        watermark,
        next_seq,
        next_index: next_index + 1, // the session's first segment takes next_index
    };
    write_ledger(dir, &new_ledger)?;
    repair::delete_segments(dir, segments.drain(..dead), &mut report)?;

    info!(
        segments = report.segments_read,
        replayed = report.replayed,
        settled = report.settled,
        deleted = report.segments_deleted,
        torn = report.torn_tails.len(),
        quarantined = report.quarantined.len(),
        "spool recovered"
    );
    Ok(Recovered {
        records: live.records,
        seqs: live.seqs,
        segments,
        watermark,
        next_seq,
        next_index,
        report,
    })
}
