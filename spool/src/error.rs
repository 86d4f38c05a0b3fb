//! The spool's errors.

use std::io;
use std::path::PathBuf;

/// Why a spool could not be opened or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A configuration value is invalid.
    #[error("invalid spool config: {field}: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// An I/O operation failed.
    #[error("spool: {op} {path}: {source}")]
    Io {
        /// What was being done ("fdatasync", "write", "create", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another spool (in this or another process) has the directory open.
    #[error("spool directory {0} is in use by another spool (its lock file is held)")]
    Locked(PathBuf),
}

impl SpoolError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        move |source| SpoolError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether this is an I/O error saying the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, SpoolError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }
}
