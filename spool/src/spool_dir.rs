//! The spool directory's files and the durable operations on them: file
//! names, segment creation, directory fsync, the atomic ledger write, and
//! the directory lock. Every file created here is owner-only (see
//! `permissions`).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::debug;

use crate::error::SpoolError;
use crate::format::{self, Ledger};
use crate::permissions::spool_file_options;

/// The ledger's file name.
pub(crate) const LEDGER: &str = "ledger";
/// The temporary file a new ledger is written to before the rename.
pub(crate) const LEDGER_TMP: &str = "ledger.tmp";
/// The lock file's name.
pub(crate) const LOCK: &str = "lock";
/// Segment files end with this.
pub(crate) const SEGMENT_EXT: &str = ".seg";
/// Quarantined bytes are moved to files ending with this.
pub(crate) const QUARANTINE_EXT: &str = ".quarantine";

/// The path of segment `index`.
pub(crate) fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:020}{SEGMENT_EXT}"))
}

/// The index of a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXT)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Creates segment file `index` and writes its `header`. With `reserve`,
/// the file's space is reserved first (`fallocate`): appending into
/// reserved space spares each later `fdatasync` the file-size update,
/// which on journaling file systems costs a journal commit. Where reserving
/// fails (unsupported, or no room for the whole segment) the segment grows
/// as written; it is flagged preallocated either way (see the format
/// module), the header being built from the same configuration.
pub(crate) fn create_segment(
    dir: &Path,
    index: u64,
    header: &[u8],
    reserve: Option<u64>,
) -> Result<File, SpoolError> {
    let path = segment_path(dir, index);
    let mut file = spool_file_options()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(SpoolError::io("create", &path))?;
    if let Some(bytes) = reserve
        && let Err(e) = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, bytes)
    {
        debug!(file = %path.display(), error = %e, "segment space not reserved; it grows as written");
    }
    file.write_all(header)
        .map_err(SpoolError::io("write", &path))?;
    Ok(file)
}

/// The header of a segment `index` written in clear, flagged preallocated
/// with `preallocated` (whether or not reserving its space works: the flag
/// also says that frames carry their end byte, which the appenders add
/// when it is on).
pub(crate) fn plain_segment_header(index: u64, preallocated: bool) -> Vec<u8> {
    if preallocated {
        format::preallocated_segment_header(index).to_vec()
    } else {
        format::segment_header(index).to_vec()
    }
}

/// Fsyncs a directory, so that files created, renamed or removed in it
/// stay so after a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SpoolError::io("fsync directory", dir))
}

/// Replaces the ledger atomically: write a temporary file, fsync it, rename
/// it over the ledger, fsync the directory.
pub(crate) fn write_ledger(dir: &Path, ledger: &Ledger) -> Result<(), SpoolError> {
    let tmp = dir.join(LEDGER_TMP);
    let mut f = spool_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(SpoolError::io("create", &tmp))?;
    f.write_all(&ledger.encode())
        .map_err(SpoolError::io("write", &tmp))?;
    f.sync_all().map_err(SpoolError::io("fsync", &tmp))?;
    drop(f);
    let path = dir.join(LEDGER);
    fs::rename(&tmp, &path).map_err(SpoolError::io("rename ledger.tmp to", &path))?;
    sync_dir(dir)
}

/// Takes the directory's lock: an exclusive `flock` on its lock file, held
/// while the returned file is open (the kernel drops it when the process
/// dies, so a crash never leaves it stale).
pub(crate) fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK);
    let file = spool_file_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(SpoolError::io("open", &path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(SpoolError::Locked(dir.to_owned())),
        Err(e) => Err(SpoolError::Io {
            op: "flock",
            path,
            source: e.into(),
        }),
    }
}
