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

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use robust_producer::Record;
use tracing::{debug, error, info, warn};

use crate::codec;
use crate::error::SpoolError;
use crate::format::{self, End, FrameKind, Ledger, SEGMENT_HEADER_LEN};
use crate::spool_dir::{
    LEDGER, LEDGER_TMP, QUARANTINE_EXT, parse_segment_name, segment_path, sync_dir, write_ledger,
};

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

/// Reads and repairs the spool in `dir`.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    let mut report = RecoveryReport::default();
    let ledger = read_ledger(dir, &mut report)?;

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

    let mut records = Vec::new();
    let mut seqs = Vec::new();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut segments = Vec::new();
    let mut last_seq = 0u64;
    let mut dir_dirty = false;
    for (i, &index) in indexes.iter().enumerate() {
        let path = segment_path(dir, index);
        let is_last = i + 1 == indexes.len();
        let bytes = fs::read(&path).map_err(SpoolError::io("read", &path))?;
        report.segments_read += 1;
        let scan = format::scan(&bytes, Some(index), last_seq);
        let mut end = scan.end.clone();
        let mut valid_len = scan.valid_len();
        let first_record = records.len();
        for frame in &scan.frames {
            let decoded = match frame.kind {
                FrameKind::Record => codec::decode(frame.payload)
                    .map(|r| {
                        records.push(r);
                        seqs.push(frame.seq);
                    })
                    .map_err(|e| e.to_string()),
                FrameKind::Settled => format::parse_settled(frame.payload)
                    .map(|r| ranges.extend(r))
                    .ok_or_else(|| "malformed settled frame".to_owned()),
            };
            if let Err(reason) = decoded {
                // The checksum passed but the content is not ours: corrupt
                // from here on.
                end = End::Corrupt {
                    offset: frame.offset,
                    reason,
                };
                valid_len = frame.offset;
                break;
            }
        }
        if let Some(&s) = seqs[first_record..].last() {
            last_seq = s;
        }
        let file_len = bytes.len() as u64;
        match end {
            End::Clean => {}
            End::Unused { offset } => {
                // The rest of a preallocated segment: cut off, so that the
                // files hold what the spool's bound counts.
                debug!(file = %path.display(), offset, "spool recovery: unused preallocated space cut off");
                truncate(&path, offset as u64)?;
            }
            End::Torn { offset, reason } => {
                let damage = Damage {
                    file: path.clone(),
                    offset: offset as u64,
                    bytes: file_len - offset as u64,
                    reason,
                    moved_to: None,
                };
                warn!(%damage, "spool recovery: torn tail truncated (a write the process did not finish)");
                truncate(&path, offset as u64)?;
                report.torn_tails.push(damage);
            }
            End::Corrupt { offset, reason } => {
                let to = quarantine_path(dir, &path, Some(offset as u64));
                write_quarantine(&to, &bytes[offset..])?;
                sync_dir(dir)?;
                truncate(&path, offset as u64)?;
                let damage = Damage {
                    file: path.clone(),
                    offset: offset as u64,
                    bytes: file_len - offset as u64,
                    reason,
                    moved_to: Some(to),
                };
                error!(%damage, "spool recovery: CORRUPTION; unreadable bytes quarantined, records in them are not replayed");
                report.quarantined.push(damage);
            }
            End::BadHeader { reason } => {
                if is_last && (bytes.len() < SEGMENT_HEADER_LEN || bytes.iter().all(|&b| b == 0)) {
                    // Created but its header never (fully) written: the
                    // process died right after creating it.
                    let damage = Damage {
                        file: path.clone(),
                        offset: 0,
                        bytes: file_len,
                        reason,
                        moved_to: None,
                    };
                    warn!(%damage, "spool recovery: unfinished segment removed");
                    fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
                    dir_dirty = true;
                    report.torn_tails.push(damage);
                } else {
                    let to = quarantine_path(dir, &path, None);
                    fs::rename(&path, &to).map_err(SpoolError::io("quarantine (rename)", &path))?;
                    dir_dirty = true;
                    let damage = Damage {
                        file: path.clone(),
                        offset: 0,
                        bytes: file_len,
                        reason,
                        moved_to: Some(to),
                    };
                    error!(%damage, "spool recovery: CORRUPTION; segment quarantined whole");
                    report.quarantined.push(damage);
                }
                continue;
            }
        }
        segments.push(Segment {
            index,
            len: valid_len.max(SEGMENT_HEADER_LEN) as u64,
            first_live: None,
            last_seq,
        });
    }
    if dir_dirty {
        sync_dir(dir)?;
    }

    // Which records settled: those up to the ledger's watermark and those
    // named by settled frames.
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(m) if first <= m.1.saturating_add(1) => m.1 = m.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    let settled = |seq: u64| {
        seq <= ledger.watermark || {
            let i = merged.partition_point(|r| r.0 <= seq);
            i > 0 && merged[i - 1].1 >= seq
        }
    };
    let max_settled = merged.last().map_or(0, |r| r.1);
    let next_seq = [
        ledger.next_seq,
        last_seq + 1,
        max_settled.saturating_add(1),
        ledger.watermark + 1,
    ]
    .into_iter()
    .max()
    .unwrap_or(1);

    // Keep only live records; note the first live record of each segment.
    let mut live_records = Vec::new();
    let mut live_seqs = Vec::new();
    let mut seg = 0;
    for (record, seq) in records.into_iter().zip(seqs) {
        while seg < segments.len() && segments[seg].last_seq < seq {
            seg += 1;
        }
        if settled(seq) {
            report.settled += 1;
            continue;
        }
        if let Some(s) = segments.get_mut(seg) {
            s.first_live.get_or_insert(live_records.len());
        }
        live_records.push(record);
        live_seqs.push(seq);
    }
    report.replayed = live_records.len();

    // Segments before the first one holding a live record can go: sync the
    // ledger first, so that a segment the directory fsync did not remove
    // for good is known to be settled.
    let dead = segments
        .iter()
        .position(|s| s.first_live.is_some())
        .unwrap_or(segments.len());
    let watermark = segments[..dead]
        .iter()
        .map(|s| s.last_seq)
        .fold(ledger.watermark, u64::max);
    let next_index = indexes.last().map_or(1, |i| i + 1).max(ledger.next_index);
    let new_ledger = Ledger {
        watermark,
        next_seq,
        next_index: next_index + 1, // the session's first segment takes next_index
    };
    write_ledger(dir, &new_ledger)?;
    if dead > 0 {
        for s in segments.drain(..dead) {
            let path = segment_path(dir, s.index);
            fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
            report.segments_deleted += 1;
        }
        sync_dir(dir)?;
    }

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
        records: live_records,
        seqs: live_seqs,
        segments,
        watermark,
        next_seq,
        next_index,
        report,
    })
}

fn read_ledger(dir: &Path, report: &mut RecoveryReport) -> Result<Ledger, SpoolError> {
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
    let mut f = File::create(path).map_err(SpoolError::io("create", path))?;
    f.write_all(bytes).map_err(SpoolError::io("write", path))?;
    f.sync_all().map_err(SpoolError::io("fsync", path))
}
