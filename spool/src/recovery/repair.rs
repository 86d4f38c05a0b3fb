//! Recovery's I/O: reading the ledger and the directory, reading each
//! segment and carrying out the repair the pure phases decide (truncate,
//! quarantine, remove), and deleting segments that hold no live record.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use robust_producer::Record;
use tracing::{debug, error, warn};

use super::phases::{self, KeyProblem, Repair};
use super::{Damage, RecoveryReport, Segment};
use crate::encryption::Keyring;
use crate::error::SpoolError;
use crate::format::{Ledger, SEGMENT_HEADER_LEN};
use crate::permissions::spool_file_options;
use crate::spool_dir::{
    LEDGER, LEDGER_TMP, QUARANTINE_EXT, parse_segment_name, segment_path, sync_dir,
};

/// What the segments hold, once read and repaired.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Every record read, in order.
    pub(super) records: Vec<Record>,
    /// Their sequence numbers.
    pub(super) seqs: Vec<u64>,
    /// Every range the settled frames name.
    pub(super) ranges: Vec<(u64, u64)>,
    /// The segments kept, in order.
    pub(super) segments: Vec<Segment>,
    /// The highest record sequence number read.
    pub(super) last_seq: u64,
}

/// Reads the ledger; a bad one is reported and ignored (the default).
pub(super) fn read_ledger(dir: &Path, report: &mut RecoveryReport) -> Result<Ledger, SpoolError> {
    let path = dir.join(LEDGER);
    match fs::read(&path) {
        Ok(bytes) => match Ledger::decode(&bytes) {
            Ok(ledger) => Ok(ledger),
            Err(reason) => {
                let problem = format!("{}: {reason}; ignored", path.display());
                error!(%problem, "spool recovery: bad ledger");
                report.ledger_problem = Some(problem);
                Ok(Ledger::default())
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
        Err(e) => Err(SpoolError::Io {
            op: "read",
            path,
            source: e,
        }),
    }
}

/// The indexes of the segment files in `dir`, sorted. Removes a leftover
/// `ledger.tmp` on the way.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut indexes = Vec::new();
    let entries = fs::read_dir(dir).map_err(SpoolError::io("read directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(SpoolError::io("read directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(index) = parse_segment_name(name) {
            indexes.push(index);
        } else if name == LEDGER_TMP {
            // A ledger write that did not reach its rename: the old ledger
            // is still in place.
            let path = entry.path();
            fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
        }
    }
    indexes.sort_unstable();
    Ok(indexes)
}

/// Reads every segment (`indexes`, sorted) and repairs how each ends.
///
/// # Errors
///
/// [`SpoolError::UnknownKey`] or [`SpoolError::WrongKey`] for the first
/// encrypted segment `keys` cannot read (before anything in it is
/// repaired); [`SpoolError::Io`].
pub(super) fn read_segments(
    dir: &Path,
    indexes: &[u64],
    keys: &Keyring,
    report: &mut RecoveryReport,
) -> Result<Found, SpoolError> {
    let mut found = Found::default();
    let mut dir_dirty = false;
    for (i, &index) in indexes.iter().enumerate() {
        let path = segment_path(dir, index);
        let bytes = fs::read(&path).map_err(SpoolError::io("read", &path))?;
        report.segments_read += 1;
        let read =
            phases::read_segment(&bytes, index, found.last_seq, keys).map_err(|problem| {
                let segment = path.clone();
                let error = match problem {
                    KeyProblem::Unknown(key_id) => SpoolError::UnknownKey {
                        segment,
                        key_id,
                        supplied: keys.ids(),
                    },
                    KeyProblem::Wrong(key_id) => SpoolError::WrongKey { segment, key_id },
                };
                error!(%error, "spool recovery: an encrypted segment cannot be read");
                error
            })?;
        if keys.encrypting && !read.encrypted && read.valid_len > 0 {
            report.plaintext_segments += 1;
        }
        if let Some(&s) = read.seqs.last() {
            found.last_seq = s;
        }
        found.records.extend(read.records);
        found.seqs.extend(read.seqs);
        found.ranges.extend(read.ranges);
        let repair = phases::repair_for(read.end, i + 1 == indexes.len(), &bytes);
        let keep = repair.keeps_segment();
        dir_dirty |= apply_repair(dir, &path, &bytes, repair, report)?;
        if keep {
            found.segments.push(Segment {
                index,
                len: read.valid_len.max(SEGMENT_HEADER_LEN) as u64,
                first_live: None,
                last_seq: found.last_seq,
            });
        }
    }
    if dir_dirty {
        sync_dir(dir)?;
    }
    Ok(found)
}

/// Carries out `repair` on the segment at `path` (holding `bytes`) and
/// reports the damage. Returns whether the directory changed and needs
/// an fsync.
fn apply_repair(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    repair: Repair,
    report: &mut RecoveryReport,
) -> Result<bool, SpoolError> {
    let file_len = bytes.len() as u64;
    let damage = |offset: usize, reason: String, moved_to: Option<PathBuf>| Damage {
        file: path.to_owned(),
        offset: offset as u64,
        bytes: file_len - offset as u64,
        reason,
        moved_to,
    };
    match repair {
        Repair::Keep => {}
        Repair::CutUnused { offset } => {
            // The rest of a preallocated segment: cut off, so that the
            // files hold what the spool's bound counts.
            debug!(file = %path.display(), offset, "spool recovery: unused preallocated space cut off");
            truncate(path, offset as u64)?;
        }
        Repair::TruncateTorn { offset, reason } => {
            let damage = damage(offset, reason, None);
            warn!(%damage, "spool recovery: torn tail truncated (a write the process did not finish)");
            truncate(path, offset as u64)?;
            report.torn_tails.push(damage);
        }
        Repair::QuarantineTail { offset, reason } => {
            let to = quarantine_path(dir, path, Some(offset as u64));
            write_quarantine(&to, bytes.get(offset..).unwrap_or_default())?;
            sync_dir(dir)?;
            truncate(path, offset as u64)?;
            let damage = damage(offset, reason, Some(to));
            error!(%damage, "spool recovery: CORRUPTION; unreadable bytes quarantined, records in them are not replayed");
            report.quarantined.push(damage);
        }
        Repair::RemoveUnfinished { reason } => {
            // Created but its header never (fully) written: the process
            // died right after creating it.
            let damage = damage(0, reason, None);
            warn!(%damage, "spool recovery: unfinished segment removed");
            fs::remove_file(path).map_err(SpoolError::io("remove", path))?;
            report.torn_tails.push(damage);
            return Ok(true);
        }
        Repair::QuarantineWhole { reason } => {
            let to = quarantine_path(dir, path, None);
            fs::rename(path, &to).map_err(SpoolError::io("quarantine (rename)", path))?;
            let damage = damage(0, reason, Some(to));
            error!(%damage, "spool recovery: CORRUPTION; segment quarantined whole");
            report.quarantined.push(damage);
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes the segments `dead` (every record in them settled), then
/// fsyncs the directory.
pub(super) fn delete_segments(
    dir: &Path,
    dead: impl IntoIterator<Item = Segment>,
    report: &mut RecoveryReport,
) -> Result<(), SpoolError> {
    let mut deleted = false;
    for s in dead {
        let path = segment_path(dir, s.index);
        fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
        report.segments_deleted += 1;
        deleted = true;
    }
    if deleted {
        sync_dir(dir)?;
    }
    Ok(())
}

fn truncate(path: &Path, len: u64) -> Result<(), SpoolError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(SpoolError::io("open", path))?;
    f.set_len(len).map_err(SpoolError::io("truncate", path))?;
    f.sync_all().map_err(SpoolError::io("fsync", path))
}

/// A quarantine file name for `segment` (at `offset`), not yet taken.
fn quarantine_path(dir: &Path, segment: &Path, offset: Option<u64>) -> PathBuf {
    let base = segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = match offset {
        Some(o) => format!("{base}.{o}"),
        None => base,
    };
    let mut path = dir.join(format!("{stem}{QUARANTINE_EXT}"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{stem}.{n}{QUARANTINE_EXT}"));
        n += 1;
    }
    path
}

fn write_quarantine(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut f = spool_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(SpoolError::io("create", path))?;
    f.write_all(bytes).map_err(SpoolError::io("write", path))?;
    f.sync_all().map_err(SpoolError::io("fsync", path))
}
