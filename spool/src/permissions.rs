//! File modes of the spool: the directory is created `0700` and every file
//! the spool creates `0600` (owner only, whatever the process umask), and
//! a check at open that reports spool files group or others can read or
//! write. The spool holds the records' payloads in clear, so those modes
//! are what protects them at rest.
//!
//! An existing directory or file is never chmodded: its owner may share it
//! on purpose. It is reported instead (a warning in the log and
//! [`RecoveryReport::permission_warnings`](crate::RecoveryReport::permission_warnings)).
//! On targets without unix modes the spool creates files with the
//! platform's defaults and reports nothing.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::spool_dir::{LEDGER, LOCK, QUARANTINE_EXT, parse_segment_name};

/// The mode the spool directory is created with: owner only (`rwx------`).
pub const SPOOL_DIR_MODE: u32 = 0o700;

/// The mode of every file the spool creates (segments, ledger, lock,
/// quarantine files): owner only (`rw-------`).
pub const SPOOL_FILE_MODE: u32 = 0o600;

/// A spool directory or file found at open with a mode that lets group or
/// others read or write it. The spool leaves its mode as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PermissionWarning {
    /// The directory or file.
    pub path: PathBuf,
    /// Its mode bits (permissions, setuid/setgid and sticky), as
    /// `st_mode & 0o7777`, e.g. `0o755`.
    pub mode: u32,
    /// Whether it is the spool directory (otherwise one of its files).
    pub is_dir: bool,
}

impl PermissionWarning {
    /// The `chmod` that makes it owner-only, e.g. `chmod 700 /var/spool`.
    pub fn fix(&self) -> String {
        let mode = if self.is_dir {
            SPOOL_DIR_MODE
        } else {
            SPOOL_FILE_MODE
        };
        format!("chmod {mode:o} {}", self.path.display())
    }
}

impl fmt::Display for PermissionWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has mode {:04o}: group or others can read or write the records in it; \
             unless it is shared on purpose, run `{}`",
            self.path.display(),
            self.mode,
            self.fix()
        )
    }
}

/// Creates the spool directory `dir` with [`SPOOL_DIR_MODE`] if it does
/// not exist (its missing parents get the usual mode, under the umask). An
/// existing directory is left as it is.
pub(crate) fn create_spool_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, SPOOL_DIR_MODE);
    match builder.create(dir) {
        Ok(()) => {
            debug!(dir = %dir.display(), mode = format_args!("{SPOOL_DIR_MODE:04o}"), "spool directory created");
            Ok(())
        }
        // Created by someone else meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Options for opening a file the spool may create: if it creates it, the
/// file gets [`SPOOL_FILE_MODE`]. The caller adds the access and creation
/// flags.
pub(crate) fn spool_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, SPOOL_FILE_MODE);
    options
}

/// The spool directory and the spool files in it (segments, ledger, lock,
/// quarantine files) that group or others can read or write, each logged
/// as a warning. Other files in the directory are not the spool's and are
/// not looked at. A file whose mode cannot be read is skipped: this check
/// never makes opening fail.
pub(crate) fn loose_permissions(dir: &Path) -> Vec<PermissionWarning> {
    let mut found = Vec::new();
    if let Some(w) = check(dir, true) {
        found.push(w);
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            debug!(dir = %dir.display(), error = %e, "spool file modes not checked");
            return found;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_spool_file = parse_segment_name(name).is_some()
            || name == LEDGER
            || name == LOCK
            || name.ends_with(QUARANTINE_EXT);
        if is_spool_file && let Some(w) = check(&entry.path(), false) {
            found.push(w);
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    for w in &found {
        warn!(
            path = %w.path.display(),
            mode = format_args!("{:04o}", w.mode),
            fix = %w.fix(),
            "spool {} readable or writable by group or others: the records in it are in clear; \
             unless it is shared on purpose, make it owner-only (the spool does not change it)",
            if w.is_dir { "directory" } else { "file" },
        );
    }
    found
}

/// A warning for `path` if its mode lets group or others in.
#[cfg(unix)]
fn check(path: &Path, is_dir: bool) -> Option<PermissionWarning> {
    use std::os::unix::fs::PermissionsExt;

    /// The permission bits that let group or others read, write or search.
    const GROUP_OR_OTHERS: u32 = 0o077;

    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) => {
            debug!(path = %path.display(), error = %e, "spool file mode not checked");
            return None;
        }
    };
    (mode & GROUP_OR_OTHERS != 0).then(|| PermissionWarning {
        path: path.to_owned(),
        mode,
        is_dir,
    })
}

/// Without unix modes there is nothing to check.
#[cfg(not(unix))]
fn check(_path: &Path, _is_dir: bool) -> Option<PermissionWarning> {
    None
}
