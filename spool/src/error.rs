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
    /// An encrypted segment names a key id that is not among the keys
    /// supplied: the spool is not opened (nothing in that segment is
    /// changed or quarantined).
    #[error(
        "spool segment {segment} is encrypted under key id {key_id}, which is not among the keys \
         supplied (ids {supplied:?}); supply that key (SpoolConfigBuilder::encryption_key, or \
         ::decryption_key to read it only) and open the spool again"
    )]
    UnknownKey {
        /// The segment file.
        segment: PathBuf,
        /// The key id in its header.
        key_id: u32,
        /// The ids of the keys supplied.
        supplied: Vec<u32>,
    },
    /// The key supplied with an encrypted segment's key id does not
    /// authenticate that segment's header (whose checksum passed): a
    /// different key under the same id, or a header changed on purpose.
    /// The spool is not opened (nothing in that segment is changed or
    /// quarantined).
    #[error(
        "spool segment {segment} is encrypted under key id {key_id}, and the key supplied with \
         that id does not authenticate it (a wrong key for that id, or a tampered segment); \
         supply the key it was written with and open the spool again"
    )]
    WrongKey {
        /// The segment file.
        segment: PathBuf,
        /// The key id in its header.
        key_id: u32,
    },
    /// A frame could not be encrypted (a size beyond what AES-GCM seals;
    /// not expected with the spool's limits): the spool stops.
    #[error("spool: a frame for segment {0} could not be encrypted")]
    Seal(PathBuf),
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
